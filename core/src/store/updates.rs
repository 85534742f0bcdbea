//! `datasets` registration on first sight and `dataset_updates`.

use chrono::{DateTime, Utc};

use super::{StoreError, StoreResult, Transaction};
use crate::domain::events::ProjectionUpdate;

#[derive(Debug, Clone)]
pub struct InsertedUpdate {
    pub id: String,
    /// The database clock at the start of the transaction (`now()`).
    pub created_at: DateTime<Utc>,
}

/// Registers an unknown dataset (nothing is lost: a metric added later can
/// use it) and inserts the update row; both statements are pipelined.
pub async fn insert(tx: &Transaction<'_>, id: &str, u: &ProjectionUpdate) -> StoreResult<InsertedUpdate> {
    let register = tx
        .prepare_cached("INSERT INTO datasets (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
        .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO dataset_updates
                 (id, dataset_id, version_manifest_path, projections_path, bucket, event_key)
             VALUES ($1, $2, $3, $4,
                     COALESCE($5, (SELECT bucket FROM datasets WHERE id = $2), ''), $6)
             RETURNING created_at",
        )
        .await?;
    let key = u.event_key();
    let register_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&u.dataset_id];
    let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&id, &u.dataset_id, &u.version_manifest_path, &u.projections_path, &u.bucket, &key];
    let (_, row) = futures::try_join!(
        tx.execute(&register, &register_params),
        tx.query_one(&insert, &insert_params)
    )
    .map_err(StoreError::from)?;
    Ok(InsertedUpdate {
        id: id.to_string(),
        created_at: row.get(0),
    })
}
