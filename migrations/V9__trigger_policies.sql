-- Trigger policies (docs/semantics.md, "Trigger policies").
--
-- The policy is the catalog's own `trigger` object, validated by `catalog
-- apply` and read back through the same parser; NULL is the default rule.
-- A held metric records updates and requests nothing until it is resumed.
-- `last_auto_requested_at` is kept only for metrics with a cooldown.
ALTER TABLE metrics
    ADD COLUMN trigger_policy         jsonb CHECK (jsonb_typeof(trigger_policy) = 'object'),
    ADD COLUMN held_at                timestamptz,
    ADD COLUMN held_by                text,
    ADD COLUMN last_auto_requested_at timestamptz,
    ADD CONSTRAINT metrics_hold_has_holder CHECK ((held_at IS NULL) = (held_by IS NULL));

-- What a run requested with stale or missing inputs went without:
-- {"stale": [dataset ids], "missing": [dataset ids]}; NULL when it had every
-- input fresh.
ALTER TABLE metric_runs ADD COLUMN degraded jsonb CHECK (jsonb_typeof(degraded) = 'object');

-- The timers of a pending run whose metric has a policy or a hold (runs
-- under the default rule never get a row). `decide_at` is when the policy
-- is to be asked again; the workers' periodic sweep takes the due ones.
CREATE TABLE metric_run_timers (
    run_id          text COLLATE "C" PRIMARY KEY REFERENCES metric_runs (id) ON DELETE CASCADE,
    metric_id       text COLLATE "C" NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    opened_at       timestamptz NOT NULL,
    ready_at        timestamptz,
    last_trigger_at timestamptz,
    decide_at       timestamptz
);
CREATE INDEX metric_run_timers_due_idx ON metric_run_timers (decide_at) WHERE decide_at IS NOT NULL;

-- Every triggering update a run folded in while it waited with its
-- condition holding (a settle window, a cooldown or a hold).
CREATE TABLE metric_run_folded_updates (
    run_id    text COLLATE "C" NOT NULL REFERENCES metric_runs (id) ON DELETE CASCADE,
    update_id text COLLATE "C" NOT NULL REFERENCES dataset_updates (id) ON DELETE CASCADE,
    folded_at timestamptz NOT NULL,
    PRIMARY KEY (run_id, update_id)
);
CREATE INDEX metric_run_folded_updates_update_idx ON metric_run_folded_updates (update_id);

-- Operators see what a run went without next to its status (a column added
-- at the end: the view's other columns are unchanged).
CREATE OR REPLACE VIEW run_status AS
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
       r.status IN ('pending_dependencies', 'queued', 'dispatched', 'running') AS is_open,
       r.degraded
  FROM metric_runs r;
