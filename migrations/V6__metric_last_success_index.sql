-- GET /api/v1/metrics (and the console's metric pages): a metric's newest
-- success is read from its own small index instead of walking every run of
-- the metric from the newest (a failing metric walks past all its failures).
-- It holds succeeded runs only, so just the run's final transition pays for
-- it; `finished_at` is included so the probe does not visit the table for
-- runs on all-visible pages. Measured in BENCHMARKS.md ("Operator API").
CREATE INDEX metric_runs_success_idx ON metric_runs (metric_code, created_at DESC)
    INCLUDE (finished_at) WHERE status = 'succeeded';
