-- Every metric's definition (expression, inputs, required_days, trigger
-- policy) has numbered versions with a content hash. A run records the
-- version it was requested with; a runner may report the code version it
-- executed. Runs requested before this migration have no version: they
-- count as version 1, which every metric present now receives when
-- `migrate` finishes (computed from its stored definition).
CREATE TABLE metric_definition_versions (
    metric_id       text COLLATE "C" NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    version         integer NOT NULL CHECK (version >= 1),
    -- sha256 of the canonical definition; of all but the trigger policy;
    -- of the trigger policy alone (what tells a policy change apart).
    hash            text NOT NULL,
    core_hash       text NOT NULL,
    policy_hash     text NOT NULL,
    definition      jsonb NOT NULL,
    -- The expression as applied: the requests of this version's runs carry it.
    expression_type text NOT NULL,
    expression_json jsonb NOT NULL,
    applied_at      timestamptz NOT NULL DEFAULT now(),
    applied_by      text NOT NULL,
    -- What changed from the previous version, for people: [{section, path, from, to}].
    changes         jsonb NOT NULL DEFAULT '[]',
    -- What the change asked for: the metric's on_change when it was applied,
    -- or 'created' / 'adopted' for a first version.
    action          text NOT NULL CHECK (action IN ('created', 'adopted', 'rerun', 'none')),
    PRIMARY KEY (metric_id, version)
);

ALTER TABLE metrics
    ADD COLUMN definition_version integer,
    ADD COLUMN on_change text NOT NULL DEFAULT 'none' CHECK (on_change IN ('none', 'rerun'));
CREATE INDEX metrics_unversioned_idx ON metrics (id) WHERE definition_version IS NULL;

ALTER TABLE metric_runs
    ADD COLUMN definition_version integer,
    ADD COLUMN code_version text;

-- Definition changes a worker has yet to act on (alert, re-run), taken in
-- order at a bounded rate so that a change to many metrics at once does not
-- starve projection updates. A row leaves when it has been acted on.
CREATE TABLE metric_definition_changes (
    metric_id  text COLLATE "C" NOT NULL,
    version    integer NOT NULL,
    due_at     timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (metric_id, version),
    FOREIGN KEY (metric_id, version) REFERENCES metric_definition_versions (metric_id, version) ON DELETE CASCADE
);
CREATE INDEX metric_definition_changes_due_idx ON metric_definition_changes (due_at);

-- Operators see each run's definition version and reported code version.
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
       r.degraded,
       r.definition_version,
       r.code_version
  FROM metric_runs r;
