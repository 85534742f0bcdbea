-- A requested run's second input (by dataset id) is kept on the run row
-- too, beside the first (V11); `run_dataset_updates` holds the third and
-- later ones (issue 23, BENCHMARKS.md "Less database work per message").
-- A run with two inputs, the common case, then writes no provenance row at
-- all: one foreign-key check on the run row instead of a row, its primary
-- key's index entry and two foreign-key checks. `run_inputs` stays the whole
-- provenance, whichever place holds it; every reader goes through it. Runs
-- requested before this migration keep their second input in
-- `run_dataset_updates`, which the view reads as before. Adding a nullable
-- column without a default does not rewrite the table.
ALTER TABLE metric_runs
    ADD COLUMN second_input_update_id text COLLATE "C" REFERENCES dataset_updates (id) ON DELETE SET NULL;

CREATE OR REPLACE VIEW run_inputs AS
    SELECT run_id, dataset_update_id FROM run_dataset_updates
    UNION ALL
    SELECT id, input_update_id FROM metric_runs WHERE input_update_id IS NOT NULL
    UNION ALL
    SELECT id, second_input_update_id FROM metric_runs WHERE second_input_update_id IS NOT NULL;
