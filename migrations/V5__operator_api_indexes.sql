-- What the operator API (`orchestrator serve`) looks up that the hot path
-- does not: a run's request in the outbox by run id (GET /api/v1/runs/{id}).
-- Measured in BENCHMARKS.md ("Operator API").
CREATE INDEX outbox_run_idx ON outbox (run_id);
-- GET /api/v1/metrics?status=pending: the pending runs in metric-code order,
-- so that a page stops after its last row instead of sorting them all. Like
-- metric_runs_one_pending_per_metric it holds only pending runs.
CREATE INDEX metric_runs_pending_code_idx ON metric_runs (metric_code)
    WHERE status = 'pending_dependencies';
