-- An optional bound on a run's time from its start, per metric: for runners
-- that send no heartbeats (docs/operations.md, "Timeouts").
ALTER TABLE metrics ADD COLUMN run_timeout_secs integer CHECK (run_timeout_secs > 0);
