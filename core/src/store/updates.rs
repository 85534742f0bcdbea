//! `datasets` registration on first sight and `dataset_updates`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{StoreError, StoreResult, Transaction};
use crate::domain::events::ProjectionUpdate;
use crate::domain::ids::{DatasetId, MetricId, UpdateId};
use crate::domain::run_request::UsedUpdate;

#[derive(Debug, Clone)]
pub struct InsertedUpdate {
    pub id: UpdateId,
    /// The database clock at the start of the transaction (`now()`).
    pub created_at: DateTime<Utc>,
    /// The row as a run request names it.
    pub used: UsedUpdate,
}

const REGISTER: &str = "INSERT INTO datasets (id) VALUES ($1) ON CONFLICT (id) DO NOTHING";

const INSERT: &str = "INSERT INTO dataset_updates
         (id, dataset_id, version_manifest_path, projections_path, bucket, event_key)
     VALUES ($1, $2, $3, $4,
             COALESCE($5, (SELECT bucket FROM datasets WHERE id = $2), ''), $6)
     ON CONFLICT (event_key) DO NOTHING
     RETURNING created_at, bucket";

/// Prepares the statements of an update's receipt (its event key, its row,
/// the claim of its dependent metrics) before the caller pipelines them: a
/// statement prepared on first use would be sent once its preparation
/// returns, after the later statements of the pipeline.
pub async fn prepare_receipt(tx: &Transaction<'_>) -> StoreResult<()> {
    for sql in [
        super::event_log::RECORD,
        REGISTER,
        INSERT,
        super::catalog::CLAIM_DEPENDENT_METRICS,
        &super::freshness::ON_UPDATE,
    ] {
        tx.prepare_cached(sql).await?;
    }
    Ok(())
}

/// Registers an unknown dataset (nothing is lost: a metric added later can
/// use it) and inserts the update row; both statements are pipelined.
/// Returns `None` when an update with the same idempotency key exists.
pub async fn insert(
    tx: &Transaction<'_>,
    id: &UpdateId,
    u: &ProjectionUpdate,
) -> StoreResult<Option<InsertedUpdate>> {
    let register = tx.prepare_cached(REGISTER).await?;
    let insert = tx.prepare_cached(INSERT).await?;
    let key = u.event_key();
    let register_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&u.dataset_id];
    let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &id,
        &u.dataset_id,
        &u.version_manifest_path,
        &u.projections_path,
        &u.bucket,
        &key,
    ];
    let (_, row) = futures::try_join!(
        tx.execute(&register, &register_params),
        tx.query_opt(&insert, &insert_params)
    )
    .map_err(StoreError::from)?;
    Ok(row.map(|r| InsertedUpdate {
        id: id.clone(),
        created_at: r.get(0),
        used: UsedUpdate {
            dataset_id: u.dataset_id.clone(),
            update_id: id.clone(),
            bucket: r.get(1),
            manifest_path: u.version_manifest_path.clone(),
            projections_path: u.projections_path.clone(),
            created_at: r.get(0),
        },
    }))
}

pub(super) fn used_update(r: &tokio_postgres::Row) -> UsedUpdate {
    UsedUpdate {
        dataset_id: r.get(0),
        update_id: r.get(1),
        bucket: r.get(2),
        manifest_path: r.get(3),
        projections_path: r.get(4),
        created_at: r.get(5),
    }
}

/// The newest update of every dataset these metrics require, by dataset
/// (one index probe per dataset, however long its history).
pub async fn newest_for_metrics(
    tx: &Transaction<'_>,
    metric_ids: &[MetricId],
) -> StoreResult<HashMap<DatasetId, UsedUpdate>> {
    let stmt = tx
        .prepare_cached(
            "WITH req AS (
                 SELECT DISTINCT dataset_id FROM metric_required_datasets WHERE metric_id = ANY($1)
             )
             SELECT u.dataset_id, u.id, COALESCE(u.bucket, ''), u.version_manifest_path, u.projections_path, u.created_at
               FROM req CROSS JOIN LATERAL (
                    SELECT * FROM dataset_updates du WHERE du.dataset_id = req.dataset_id
                     ORDER BY du.created_at DESC, du.id DESC LIMIT 1) u",
        )
        .await?;
    let rows = tx.query(&stmt, &[&metric_ids]).await?;
    Ok(rows.iter().map(|r| (r.get(0), used_update(r))).collect())
}
