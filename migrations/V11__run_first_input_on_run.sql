-- A requested run's first input (by dataset id) is kept on the run row
-- itself; `run_dataset_updates` holds the others (issue 23, BENCHMARKS.md
-- "Less database work per message"). A run with two inputs, the common
-- case, then costs one provenance row and one index entry instead of two of
-- each (~290 bytes of WAL each), and its provenance is still guarded by a
-- foreign key. `run_inputs` is the whole provenance, whichever place holds
-- it; every reader goes through it. Runs requested before this migration,
-- retried copies of them, operator-triggered and adopted runs keep every
-- input in `run_dataset_updates`, which the view reads as before.
ALTER TABLE metric_runs
    ADD COLUMN input_update_id text COLLATE "C" REFERENCES dataset_updates (id) ON DELETE SET NULL;

CREATE VIEW run_inputs AS
    SELECT run_id, dataset_update_id FROM run_dataset_updates
    UNION ALL
    SELECT id, input_update_id FROM metric_runs WHERE input_update_id IS NOT NULL;
