-- A backfill computes metrics over a past range, each point with the input
-- versions that were current at that moment (docs/semantics.md,
-- "Backfills"). The plan is written whole when the backfill is created;
-- workers then request its points a few at a time, in order.
CREATE TABLE backfills (
    id              text COLLATE "C" PRIMARY KEY,
    -- The caller's key (or a definition change's): one backfill per key, ever.
    idempotency_key text UNIQUE,
    -- The request as written: the same request made again while its
    -- backfill is running or paused is that backfill.
    request_key     text NOT NULL,
    metric_codes    text[] NOT NULL,
    downstream      boolean NOT NULL,
    from_at         timestamptz NOT NULL,
    to_at           timestamptz NOT NULL CHECK (to_at >= from_at),
    -- 'runs', 'updates', 'daily' or a cron expression.
    points          text NOT NULL,
    reprocess       text NOT NULL CHECK (reprocess IN ('missing', 'failed', 'stale', 'all')),
    max_in_flight   integer NOT NULL CHECK (max_in_flight BETWEEN 1 AND 1000),
    status          text NOT NULL CHECK (status IN ('running', 'paused', 'canceled', 'completed', 'failed')),
    created_by      text NOT NULL,
    -- Why it was made when not by hand (a definition change).
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    -- Set by the first point that fails its last attempt (alerted once).
    first_failure_at timestamptz
);
CREATE UNIQUE INDEX backfills_request_key_idx ON backfills (request_key) WHERE status IN ('running', 'paused');
-- Workers look only at backfills with work left.
CREATE INDEX backfills_active_idx ON backfills (created_at) WHERE status IN ('running', 'paused');

CREATE TABLE backfill_points (
    backfill_id text COLLATE "C" NOT NULL REFERENCES backfills (id) ON DELETE CASCADE,
    metric_id   text COLLATE "C" NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    as_of       timestamptz NOT NULL,
    -- The metric's place in the backfill's dependency order (0: no
    -- upstream metric in this backfill).
    depth       integer NOT NULL DEFAULT 0,
    -- What the plan found: the run a reader saw at that moment.
    found       text NOT NULL CHECK (found IN ('missing', 'failed', 'stale', 'current', 'unready')),
    status      text NOT NULL CHECK (status IN ('waiting', 'requested', 'succeeded', 'failed', 'skipped', 'canceled')),
    -- The input updates current at `as_of`, one per required dataset.
    inputs      text[] NOT NULL DEFAULT '{}',
    run_id      text COLLATE "C",
    detail      text,
    requested_at timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (backfill_id, metric_id, as_of)
);
-- The next points to request and the ones in flight, in order.
CREATE INDEX backfill_points_open_idx ON backfill_points (backfill_id, status, as_of)
    WHERE status IN ('waiting', 'requested');

-- Which of the backfill's metrics reads which (a metric reads another's
-- output as the series named by its code): a point waits for its upstream
-- metrics' points at or before its moment.
CREATE TABLE backfill_edges (
    backfill_id text COLLATE "C" NOT NULL REFERENCES backfills (id) ON DELETE CASCADE,
    metric_id   text COLLATE "C" NOT NULL,
    upstream_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (backfill_id, metric_id, upstream_id)
);

-- A backfill's run says which backfill and which moment it computes.
ALTER TABLE metric_runs
    ADD COLUMN backfill_id text,
    ADD COLUMN as_of timestamptz;
-- One first attempt per point, whatever requests it.
CREATE UNIQUE INDEX metric_runs_backfill_point_idx ON metric_runs (backfill_id, metric_id, as_of, attempt)
    WHERE backfill_id IS NOT NULL;

-- on_change: {backfill: {since: 90d}} (docs/semantics.md, "on_change").
ALTER TABLE metrics DROP CONSTRAINT metrics_on_change_check;
ALTER TABLE metrics
    ADD CONSTRAINT metrics_on_change_check CHECK (on_change IN ('none', 'rerun', 'backfill')),
    ADD COLUMN on_change_since_secs bigint CHECK (on_change_since_secs > 0);
ALTER TABLE metric_definition_versions DROP CONSTRAINT metric_definition_versions_action_check;
ALTER TABLE metric_definition_versions
    ADD CONSTRAINT metric_definition_versions_action_check
        CHECK (action IN ('created', 'adopted', 'rerun', 'none', 'backfill'));

-- Operators see a run's backfill and moment.
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
       r.code_version,
       r.backfill_id,
       r.as_of
  FROM metric_runs r;
