//! Checks every concurrency and fault scenario ends with (SPEC §5.3, §5.4).

use crate::TestDb;

/// At most one pending run per metric; no run requested twice; every
/// requested run has its outbox row and one used update per required dataset;
/// no two runs of a metric (retries aside) with the identical set of updates.
pub async fn assert_invariants(db: &TestDb) {
    let two_pending = db
        .count(
            "SELECT count(*) FROM (SELECT metric_id FROM metric_runs WHERE status = 'pending_dependencies'
               GROUP BY metric_id HAVING count(*) > 1) x",
        )
        .await;
    assert_eq!(two_pending, 0, "a metric has two pending runs");
    let twice_requested = db
        .count("SELECT count(*) FROM (SELECT run_id FROM outbox GROUP BY run_id HAVING count(*) > 1) x")
        .await;
    assert_eq!(twice_requested, 0, "a run was requested twice");
    let requested_without_outbox = db
        .count(
            "SELECT count(*) FROM metric_runs r WHERE r.requested_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.run_id = r.id)",
        )
        .await;
    assert_eq!(
        requested_without_outbox, 0,
        "a requested run has no outbox row"
    );
    let same_set = db
        .count(
            "SELECT count(*) FROM (
                 SELECT metric_id, s FROM (
                     SELECT r.metric_id, string_agg(rdu.dataset_update_id, ',' ORDER BY rdu.dataset_update_id) s
                       FROM metric_runs r JOIN run_dataset_updates rdu ON rdu.run_id = r.id
                      WHERE r.retry_of IS NULL GROUP BY r.id, r.metric_id) x
                  GROUP BY metric_id, s HAVING count(*) > 1) d",
        )
        .await;
    assert_eq!(
        same_set, 0,
        "two runs of a metric use the identical set of updates"
    );
    let incomplete_queued = db
        .count(
            "SELECT count(*) FROM metric_runs r WHERE r.requested_at IS NOT NULL AND
               (SELECT count(*) FROM run_dataset_updates rdu WHERE rdu.run_id = r.id) <>
               (SELECT count(DISTINCT ds.dataset_id) FROM metric_dependencies md
                  JOIN dataset_series ds ON ds.series_code = md.series_code WHERE md.metric_id = r.metric_id)",
        )
        .await;
    assert_eq!(
        incomplete_queued, 0,
        "a queued run does not record one update per required dataset"
    );
}
