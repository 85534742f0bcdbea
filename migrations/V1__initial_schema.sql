-- Initial schema. Table and column names follow the reference service
-- (metrics-engine-cp) so that existing operator queries keep working; the
-- additions of SPEC §4 are marked "added".

CREATE TABLE datasets (
    id          text PRIMARY KEY CHECK (id <> ''),
    name        text,
    description text,
    bucket      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE series (
    code        text PRIMARY KEY CHECK (code <> ''),
    name        text,
    description text,
    unit        text,
    frequency   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dataset_series (
    dataset_id  text NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    series_code text NOT NULL REFERENCES series (code) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset_id, series_code)
);
-- series -> datasets, used to find a metric's required datasets.
CREATE INDEX dataset_series_series_code_idx ON dataset_series (series_code, dataset_id);

CREATE TABLE metrics (
    id              text PRIMARY KEY CHECK (id <> ''),
    code            text NOT NULL UNIQUE CHECK (code <> ''),
    expression_type text NOT NULL CHECK (expression_type IN ('series_math', 'window_op', 'composite')),
    expression_json jsonb NOT NULL,
    frequency       text,
    unit            text,
    description     text,
    required_days   integer NOT NULL DEFAULT 7 CHECK (required_days >= 0),   -- added
    enabled         boolean NOT NULL DEFAULT true,                            -- added
    max_attempts    integer NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),     -- added
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE metric_dependencies (
    metric_id   text NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    series_code text NOT NULL REFERENCES series (code) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (metric_id, series_code)
);
-- The hot path: dataset -> its series -> the metrics that reference them.
CREATE INDEX metric_dependencies_series_code_idx ON metric_dependencies (series_code, metric_id);

CREATE TABLE dataset_updates (
    id                    text PRIMARY KEY,              -- UUID v7: sorts by creation
    dataset_id            text NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    version_manifest_path text NOT NULL CHECK (version_manifest_path <> ''),
    projections_path      text NOT NULL CHECK (projections_path <> ''),
    bucket                text,
    event_key             text NOT NULL UNIQUE,
    created_at            timestamptz NOT NULL DEFAULT now()
);
-- "newest fresh update of a dataset".
CREATE INDEX dataset_updates_newest_idx ON dataset_updates (dataset_id, created_at DESC, id DESC);

CREATE TABLE metric_runs (
    id                text PRIMARY KEY,                  -- UUID v7
    metric_id         text NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    metric_code       text NOT NULL,
    status            text NOT NULL CHECK (status IN (
                          'pending_dependencies', 'queued', 'dispatched', 'running',
                          'succeeded', 'failed', 'timed_out', 'canceled')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    requested_at      timestamptz,
    dispatched_at     timestamptz,                       -- added
    started_at        timestamptz,
    finished_at       timestamptz,
    last_heartbeat_at timestamptz,
    progress          double precision CHECK (progress >= 0 AND progress <= 100), -- added
    error             text,
    version_ts        text,
    manifest_path     text,
    row_count         bigint CHECK (row_count >= 0),
    attempt           integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),            -- added
    retry_of          text REFERENCES metric_runs (id),                           -- added
    -- Database-clock time the fleet last heard of the run (requested, started or
    -- heartbeat received): timeouts are measured from here, never from the
    -- runner's own timestamps.
    last_contact_at   timestamptz,
    -- Sorted ids of the dataset updates an automatically requested run uses.
    update_set_key    text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (status = 'pending_dependencies' OR status = 'canceled' OR requested_at IS NOT NULL)
);
-- At most one open pending run per metric (SPEC §5.3).
CREATE UNIQUE INDEX metric_runs_one_pending_per_metric
    ON metric_runs (metric_id) WHERE status = 'pending_dependencies';
-- No two automatic runs of a metric use the identical set of dataset updates.
CREATE UNIQUE INDEX metric_runs_unique_update_set
    ON metric_runs (metric_id, update_set_key) WHERE update_set_key IS NOT NULL;
-- A run is retried at most once (a retry is itself retried through its own row).
CREATE UNIQUE INDEX metric_runs_one_retry ON metric_runs (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX metric_runs_metric_idx ON metric_runs (metric_id, created_at DESC);
CREATE INDEX metric_runs_status_idx ON metric_runs (status, created_at DESC);
-- Timeout sweep: only open, requested runs.
CREATE INDEX metric_runs_open_contact_idx ON metric_runs (last_contact_at)
    WHERE status IN ('queued', 'dispatched', 'running');

CREATE TABLE metric_run_pending_datasets (
    run_id             text NOT NULL REFERENCES metric_runs (id) ON DELETE CASCADE,
    dataset_id         text NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    required_days      integer NOT NULL DEFAULT 7 CHECK (required_days >= 0),
    received           boolean NOT NULL DEFAULT false,
    received_update_id text REFERENCES dataset_updates (id) ON DELETE SET NULL,
    -- created_at of the received update (database clock): freshness is judged on it.
    received_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, dataset_id),
    CHECK (received = (received_update_id IS NOT NULL))
);
CREATE INDEX metric_run_pending_datasets_dataset_idx ON metric_run_pending_datasets (dataset_id);

CREATE TABLE run_dataset_updates (
    run_id            text NOT NULL REFERENCES metric_runs (id) ON DELETE CASCADE,
    dataset_update_id text NOT NULL REFERENCES dataset_updates (id) ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, dataset_update_id)
);
CREATE INDEX run_dataset_updates_update_idx ON run_dataset_updates (dataset_update_id);

CREATE TABLE event_log (
    event_key     text PRIMARY KEY,
    event_type    text NOT NULL,
    event_payload jsonb NOT NULL,
    processed_at  timestamptz,
    run_id        text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_log_type_idx ON event_log (event_type, created_at DESC);
CREATE INDEX event_log_run_idx ON event_log (run_id) WHERE run_id IS NOT NULL;

-- Transactional outbox (SPEC §5.4): written in the business transaction,
-- published to SNS after commit by the relay.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          text NOT NULL REFERENCES metric_runs (id) ON DELETE CASCADE,
    -- The exact run request JSON (text, not jsonb, to keep it byte for byte).
    payload         text NOT NULL,
    message_group_id text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    -- A claim leases the row until this time; a failed publish backs off to it.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);
CREATE INDEX outbox_unpublished_idx ON outbox (next_attempt_at, id) WHERE published_at IS NULL;
CREATE INDEX outbox_run_idx ON outbox (run_id);

-- The freshness rule of SPEC §5.2 in one place for SQL (inlined by the planner).
CREATE FUNCTION update_is_fresh(update_created_at timestamptz, required_days integer)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT required_days = 0 OR update_created_at >= now() - make_interval(days => required_days)
$$;
