-- Views for operators (README "Querying run status") and for
-- `orchestrator runs list|show|watch`. Views only: nothing to migrate back.

-- One row per run: its metric, status, attempt and timing. Durations are
-- intervals on the database clock; NULL while the phase has not happened.
CREATE VIEW run_status AS
SELECT r.id                                   AS run_id,
       r.metric_id,
       r.metric_code,
       r.status,
       r.attempt,
       r.retry_of,
       r.created_at,
       r.requested_at,
       r.dispatched_at,
       r.started_at,
       r.last_heartbeat_at,
       r.finished_at,
       r.progress,
       r.error,
       r.version_ts,
       r.manifest_path,
       r.row_count,
       r.requested_at - r.created_at          AS waited_for_dependencies,
       r.started_at - r.requested_at          AS queued_for,
       r.finished_at - r.started_at           AS ran_for,
       now() - r.created_at                   AS age,
       r.status IN ('pending_dependencies', 'queued', 'dispatched', 'running') AS is_open
  FROM metric_runs r;

-- One row per pending run and required dataset: whether an update was
-- received, which one and how old it is, and how long the run has waited.
CREATE VIEW pending_run_datasets AS
SELECT r.id                                   AS run_id,
       r.metric_code,
       p.dataset_id,
       p.required_days,
       p.received,
       p.received_update_id,
       du.version_manifest_path               AS received_manifest_path,
       p.received_at,
       now() - p.received_at                  AS received_update_age,
       CASE WHEN p.received THEN update_is_fresh(p.received_at, p.required_days) END
                                              AS received_update_fresh,
       now() - r.created_at                   AS pending_for
  FROM metric_runs r
  JOIN metric_run_pending_datasets p ON p.run_id = r.id
  LEFT JOIN dataset_updates du ON du.id = p.received_update_id
 WHERE r.status = 'pending_dependencies';

-- Counts by status, for dashboards and `runs watch`.
CREATE VIEW run_status_counts AS
SELECT status, count(*) AS runs, max(created_at) AS newest
  FROM metric_runs GROUP BY status;
