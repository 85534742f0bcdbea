-- What the operator API (`orchestrator serve`) looks up that the hot path
-- does not: a run's request in the outbox by run id (GET /api/v1/runs/{id}).
-- Measured in BENCHMARKS.md ("Operator API").
CREATE INDEX outbox_run_idx ON outbox (run_id);
