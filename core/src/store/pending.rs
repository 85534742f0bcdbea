//! `metric_run_pending_datasets`: which datasets a pending run still waits for.

use super::{StoreResult, Transaction};

/// D's rows take the new update U; every other row that is not received, or
/// whose update is no longer fresh, takes the newest fresh update of its
/// dataset if there is one, else becomes not received (SPEC §5.3).
pub async fn absorb(
    tx: &Transaction<'_>,
    run_ids: &[String],
    dataset_id: &str,
    update: &super::updates::InsertedUpdate,
) -> StoreResult<()> {
    let own = tx
        .prepare_cached(
            "UPDATE metric_run_pending_datasets
                SET received = true, received_update_id = $3, received_at = $4
              WHERE run_id = ANY($1) AND dataset_id = $2",
        )
        .await?;
    // The newest update decides: if it is not fresh, no older one is.
    let others = tx
        .prepare_cached(
            "UPDATE metric_run_pending_datasets p
                SET (received_update_id, received_at, received) = (
                    SELECT n.id, n.created_at, n.id IS NOT NULL
                      FROM (SELECT 1) one
                      LEFT JOIN LATERAL (
                          SELECT du.id, du.created_at FROM dataset_updates du
                           WHERE du.dataset_id = p.dataset_id
                           ORDER BY du.created_at DESC, du.id DESC LIMIT 1
                      ) n ON update_is_fresh(n.created_at, p.required_days))
              WHERE p.run_id = ANY($1) AND p.dataset_id <> $2
                AND (NOT p.received OR NOT update_is_fresh(p.received_at, p.required_days))",
        )
        .await?;
    let own_params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&run_ids, &dataset_id, &update.id, &update.created_at];
    let other_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&run_ids, &dataset_id];
    futures::try_join!(tx.execute(&own, &own_params), tx.execute(&others, &other_params))?;
    Ok(())
}

/// Runs (among `run_ids`) whose every row is received, with the sorted ids of
/// the updates they hold.
pub async fn complete_runs(tx: &Transaction<'_>, run_ids: &[String]) -> StoreResult<Vec<(String, Vec<String>)>> {
    let stmt = tx
        .prepare_cached(
            "SELECT run_id, array_agg(received_update_id ORDER BY received_update_id)
               FROM metric_run_pending_datasets
              WHERE run_id = ANY($1)
              GROUP BY run_id
             HAVING bool_and(received)",
        )
        .await?;
    let rows = tx.query(&stmt, &[&run_ids]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// One row of a pending run, for operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PendingDataset {
    pub dataset_id: String,
    pub required_days: i32,
    pub received: bool,
    pub received_update_id: Option<String>,
    pub received_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Age of the received update in seconds, on the database clock.
    pub age_secs: Option<f64>,
    pub fresh: Option<bool>,
}

pub async fn for_run(tx: &Transaction<'_>, run_id: &str) -> StoreResult<Vec<PendingDataset>> {
    let rows = tx
        .query(
            "SELECT dataset_id, required_days, received, received_update_id, received_at,
                    EXTRACT(EPOCH FROM now() - received_at)::float8,
                    CASE WHEN received THEN update_is_fresh(received_at, required_days) END
               FROM metric_run_pending_datasets WHERE run_id = $1 ORDER BY dataset_id",
            &[&run_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PendingDataset {
            dataset_id: r.get(0),
            required_days: r.get(1),
            received: r.get(2),
            received_update_id: r.get(3),
            received_at: r.get(4),
            age_secs: r.get(5),
            fresh: r.get(6),
        })
        .collect())
}
