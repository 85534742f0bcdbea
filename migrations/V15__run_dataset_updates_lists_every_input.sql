-- `run_dataset_updates` answers every input of every run again, as it did
-- in metrics-engine-cp: queries written for that system (which runs used an
-- update, what a run was computed from) read it and get the whole
-- provenance. A run's first two inputs live on its row (V11, V13); the
-- others live in the table that held them all, renamed `run_extra_inputs`.
-- `run_dataset_updates` is the view over both, with the reference table's
-- columns (`created_at` of an input on the run row is the run's request
-- time, when the input was chosen). `run_inputs` stays, the same rows
-- without the time. The write path is unchanged: the same rows are written
-- to the same table under its new name.
DROP VIEW run_inputs;

ALTER TABLE run_dataset_updates RENAME TO run_extra_inputs;
ALTER TABLE run_extra_inputs RENAME CONSTRAINT run_dataset_updates_pkey TO run_extra_inputs_pkey;
ALTER TABLE run_extra_inputs
    RENAME CONSTRAINT run_dataset_updates_run_id_fkey TO run_extra_inputs_run_id_fkey;
ALTER TABLE run_extra_inputs
    RENAME CONSTRAINT run_dataset_updates_dataset_update_id_fkey TO run_extra_inputs_dataset_update_id_fkey;

CREATE VIEW run_dataset_updates AS
    SELECT run_id, dataset_update_id, created_at FROM run_extra_inputs
    UNION ALL
    SELECT id, input_update_id, COALESCE(requested_at, created_at)
      FROM metric_runs WHERE input_update_id IS NOT NULL
    UNION ALL
    SELECT id, second_input_update_id, COALESCE(requested_at, created_at)
      FROM metric_runs WHERE second_input_update_id IS NOT NULL;

CREATE VIEW run_inputs AS
    SELECT run_id, dataset_update_id FROM run_dataset_updates;
