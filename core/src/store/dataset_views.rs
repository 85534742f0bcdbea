//! Operator reads of datasets for the HTTP API and console. Read-only.

use chrono::{DateTime, Utc};

use super::{Pool, StoreError};
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
         ORDER BY u.created_at DESC, u.id DESC LIMIT 1)
  FROM datasets d";

fn summary(r: &tokio_postgres::Row) -> DatasetSummary {
    DatasetSummary {
        id: r.get(0),
        name: r.get(1),
        description: r.get(2),
        bucket: r.get(3),
        series: r.get(4),
        metric_count: r.get(5),
        newest_update_at: r.get(6),
    }
}

/// Datasets in id order after `after` (keyset pagination).
pub async fn list(
    pool: &Pool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<DatasetSummary>, StoreError> {
    let client = pool.get().await?;
    let sql = format!("{SUMMARY} WHERE $1::text IS NULL OR d.id > $1 ORDER BY d.id LIMIT $2");
    Ok(client
        .query(&sql, &[&after, &limit.max(1)])
        .await?
        .iter()
        .map(summary)
        .collect())
}

pub async fn get(pool: &Pool, id: &str) -> Result<Option<DatasetSummary>, StoreError> {
    let client = pool.get().await?;
    let sql = format!("{SUMMARY} WHERE d.id = $1");
    Ok(client.query_opt(&sql, &[&id]).await?.as_ref().map(summary))
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
