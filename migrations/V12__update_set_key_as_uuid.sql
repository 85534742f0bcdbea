-- The update-set key is 16 bytes of a SHA-256 of the run's sorted update ids
-- (docs/semantics.md). As 32 hex characters it took 33 bytes in every
-- requested run's row and again in `metric_runs_unique_update_set`; as a
-- uuid it takes 16 (issue 23, BENCHMARKS.md "Less database work per
-- message"). The hex text casts to uuid as it is, so every existing key
-- keeps its value and its uniqueness. The table is rewritten once.
ALTER TABLE metric_runs ALTER COLUMN update_set_key TYPE uuid USING update_set_key::uuid;
