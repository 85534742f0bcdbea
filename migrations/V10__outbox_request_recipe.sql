-- A run request's outbox row no longer carries the ~1 KB request (issue 23,
-- BENCHMARKS.md "A smaller record per run"): it keeps only what the run's own
-- rows do not say, and the relay assembles the request when it publishes,
-- from the run, the updates it uses (`run_dataset_updates`) and the catalog.
--
-- * `requested_at`: the request's `requestedAt` (the deciding worker's clock,
--   which the run's database-clock `requested_at` is not);
-- * `output_base_path`: the request's `output.basePath` under the settings of
--   the worker that decided (OUTPUT_BUCKET / OUTPUT_PREFIX may differ between
--   a worker and the API);
-- * `trigger_note`: the request's `trigger` object, for the rare run decided
--   under a trigger policy that went without an input or folded updates in.
--
-- Rows written before this migration, and alerts, keep their `payload` and
-- are published byte for byte as before. A recipe row is ~150 bytes where a
-- request was ~1.2 KB: its insert, and the relay's two updates (claim, then
-- published), each write that much less WAL.
ALTER TABLE outbox
    ALTER COLUMN payload DROP NOT NULL,
    ADD COLUMN requested_at     timestamptz,
    ADD COLUMN output_base_path text,
    ADD COLUMN trigger_note     jsonb CHECK (jsonb_typeof(trigger_note) = 'object'),
    ADD CONSTRAINT outbox_payload_or_recipe CHECK (
        payload IS NOT NULL
        OR (run_id IS NOT NULL AND requested_at IS NOT NULL AND output_base_path IS NOT NULL));
