//! Operator reads of datasets for the HTTP API and console. Read-only.

use chrono::{DateTime, Utc};

use super::metric_views::{freshness, Freshness};
use super::{Pool, StoreError, StoreResult};
use crate::domain::expectation::DatasetExpectation;
use crate::domain::freshness_state::DatasetState;
use crate::domain::ids::{DatasetId, UpdateId};

#[derive(Debug, Clone)]
pub struct DatasetSummary {
    pub id: DatasetId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub bucket: Option<String>,
    pub series: Vec<String>,
    pub metric_count: i64,
    pub newest_update_at: Option<DateTime<Utc>>,
    /// Its freshness expectation, as `catalog apply` prints it.
    pub expectation: Option<String>,
    pub freshness: Option<Freshness<DatasetState>>,
}

#[derive(Debug, Clone)]
pub struct UpdateRow {
    pub id: UpdateId,
    pub version_manifest_path: String,
    pub projections_path: String,
    pub bucket: Option<String>,
    pub created_at: DateTime<Utc>,
}

const SUMMARY: &str = "
SELECT d.id, d.name, d.description, d.bucket,
       ARRAY(SELECT s.series_code FROM dataset_series s WHERE s.dataset_id = d.id ORDER BY 1),
       (SELECT count(*) FROM metric_required_datasets r WHERE r.dataset_id = d.id),
       (SELECT u.created_at FROM dataset_updates u WHERE u.dataset_id = d.id
         ORDER BY u.created_at DESC, u.id DESC LIMIT 1),
       f.state, f.since, f.overdue_since, NULL::text[],
       d.expected_every_secs, d.expected_by, d.expectation_grace_secs
  FROM datasets d LEFT JOIN dataset_freshness f ON f.dataset_id = d.id";

fn summary(r: &tokio_postgres::Row) -> StoreResult<DatasetSummary> {
    let by: Option<String> = r.get(12);
    let expectation = DatasetExpectation::from_columns(r.get(11), by.as_deref(), r.get(13))
        .map_err(StoreError::Corrupt)?
        .map(|e| e.to_string());
    Ok(DatasetSummary {
        id: r.get(0),
        name: r.get(1),
        description: r.get(2),
        bucket: r.get(3),
        series: r.get(4),
        metric_count: r.get(5),
        newest_update_at: r.get(6),
        freshness: freshness(r, 7, DatasetState::parse)?,
        expectation,
    })
}

/// Datasets in id order after `after` (keyset pagination), only those in
/// `freshness` when given.
pub async fn list(
    pool: &Pool,
    after: Option<&str>,
    freshness: Option<DatasetState>,
    limit: i64,
) -> Result<Vec<DatasetSummary>, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "{SUMMARY} WHERE ($1::text IS NULL OR d.id > $1) AND ($2::text IS NULL OR f.state = $2)
          ORDER BY d.id LIMIT $3"
    );
    let state = freshness.map(DatasetState::as_str);
    client
        .query(&sql, &[&after, &state, &limit.max(1)])
        .await?
        .iter()
        .map(summary)
        .collect()
}

pub async fn get(pool: &Pool, id: &str) -> Result<Option<DatasetSummary>, StoreError> {
    let client = pool.get().await?;
    let sql = format!("{SUMMARY} WHERE d.id = $1");
    client
        .query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(summary)
        .transpose()
}

/// Codes of the metrics that require the dataset.
pub async fn dependent_metrics(pool: &Pool, id: &str) -> Result<Vec<String>, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .query(
            "SELECT m.code FROM metric_required_datasets r JOIN metrics m ON m.id = r.metric_id
              WHERE r.dataset_id = $1 ORDER BY 1",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The dataset's newest updates, newest first.
pub async fn recent_updates(
    pool: &Pool,
    id: &str,
    limit: i64,
) -> Result<Vec<UpdateRow>, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .query(
            "SELECT id, version_manifest_path, projections_path, bucket, created_at FROM dataset_updates
              WHERE dataset_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
            &[&id, &limit],
        )
        .await?
        .iter()
        .map(|r| UpdateRow {
            id: r.get(0),
            version_manifest_path: r.get(1),
            projections_path: r.get(2),
            bucket: r.get(3),
            created_at: r.get(4),
        })
        .collect())
}
