-- Initial schema.
-- Identifier columns use the "C" collation: ids are ASCII, compared byte by
-- byte (as Rust does) without the cost of locale-aware comparison. Table and column names follow the reference service
-- (metrics-engine-cp) so that existing operator queries keep working; the
-- additions (docs/architecture.md, "State store") are marked "added".

CREATE TABLE datasets (
    id          text COLLATE "C" PRIMARY KEY CHECK (id <> ''),
    name        text,
    description text,
    bucket      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE series (
    code        text COLLATE "C" PRIMARY KEY CHECK (code <> ''),
    name        text,
    description text,
    unit        text,
    frequency   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dataset_series (
    dataset_id  text COLLATE "C" NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    series_code text COLLATE "C" NOT NULL REFERENCES series (code) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset_id, series_code)
);
-- series -> datasets, used to find a metric's required datasets.
CREATE INDEX dataset_series_series_code_idx ON dataset_series (series_code, dataset_id);

CREATE TABLE metrics (
    id              text COLLATE "C" PRIMARY KEY CHECK (id <> ''),
    code            text COLLATE "C" NOT NULL UNIQUE CHECK (code <> ''),
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
    metric_id   text COLLATE "C" NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    series_code text COLLATE "C" NOT NULL REFERENCES series (code) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (metric_id, series_code)
);
-- The hot path: dataset -> its series -> the metrics that reference them.
CREATE INDEX metric_dependencies_series_code_idx ON metric_dependencies (series_code, metric_id);

-- Derived at catalog apply from metric_dependencies and dataset_series: the
-- datasets each metric requires. The hot path reads it by dataset (metrics of
-- D) and by metric (datasets of M), each an index range scan.
CREATE TABLE metric_required_datasets (
    metric_id  text COLLATE "C" NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    dataset_id text COLLATE "C" NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    PRIMARY KEY (metric_id, dataset_id)
);
CREATE INDEX metric_required_datasets_dataset_idx ON metric_required_datasets (dataset_id, metric_id);

CREATE TABLE dataset_updates (
    id                    text COLLATE "C" PRIMARY KEY,              -- UUID v7: sorts by creation
    dataset_id            text COLLATE "C" NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    version_manifest_path text NOT NULL CHECK (version_manifest_path <> ''),
    projections_path      text NOT NULL CHECK (projections_path <> ''),
    bucket                text,
    event_key             text COLLATE "C" NOT NULL UNIQUE,
    created_at            timestamptz NOT NULL DEFAULT now()
);
-- "newest fresh update of a dataset".
CREATE INDEX dataset_updates_newest_idx ON dataset_updates (dataset_id, created_at DESC, id DESC);

CREATE TABLE metric_runs (
    id                text COLLATE "C" PRIMARY KEY,                  -- UUID v7
    metric_id         text COLLATE "C" NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    metric_code       text COLLATE "C" NOT NULL,
    status            text COLLATE "C" NOT NULL CHECK (status IN (
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
    retry_of          text COLLATE "C" REFERENCES metric_runs (id),                           -- added
    -- Database-clock time the fleet last heard of the run (requested, started or
    -- heartbeat received): timeouts are measured from here, never from the
    -- runner's own timestamps.
    last_contact_at   timestamptz,
    -- Sorted ids of the dataset updates an automatically requested run uses.
    update_set_key    text COLLATE "C",
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (status = 'pending_dependencies' OR status = 'canceled' OR requested_at IS NOT NULL)
);
-- At most one open pending run per metric (docs/semantics.md).
CREATE UNIQUE INDEX metric_runs_one_pending_per_metric
    ON metric_runs (metric_id) WHERE status = 'pending_dependencies';
-- No two automatic runs of a metric use the identical set of dataset updates.
CREATE UNIQUE INDEX metric_runs_unique_update_set
    ON metric_runs (metric_id, update_set_key) WHERE update_set_key IS NOT NULL;
-- A run is retried at most once (a retry is itself retried through its own row).
CREATE UNIQUE INDEX metric_runs_one_retry ON metric_runs (retry_of) WHERE retry_of IS NOT NULL;
-- Listing by metric (operators filter by code).
CREATE INDEX metric_runs_metric_code_idx ON metric_runs (metric_code, created_at DESC);
-- Listing by status: open statuses are found through the timeout index below,
-- succeeded runs (the common case) by scanning the newest (primary key); the rare statuses
-- get their own partial index so that the hot path (queued → dispatched →
-- running → succeeded) does not maintain it.
CREATE INDEX metric_runs_rare_status_idx ON metric_runs (status, created_at DESC)
    WHERE status IN ('pending_dependencies', 'failed', 'timed_out', 'canceled');
-- Newest first: run ids are UUID v7 and sort by creation, so the primary key serves.
-- Timeout sweep: only open, requested runs.
CREATE INDEX metric_runs_open_contact_idx ON metric_runs (last_contact_at)
    WHERE status IN ('queued', 'dispatched', 'running');

-- What a pending run waits for: one row per required dataset. A run that is
-- complete when it is created never waits and has no rows here; the updates
-- every requested run uses are in run_dataset_updates.
CREATE TABLE metric_run_pending_datasets (
    run_id             text COLLATE "C" NOT NULL REFERENCES metric_runs (id) ON DELETE CASCADE,
    dataset_id         text COLLATE "C" NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    required_days      integer NOT NULL DEFAULT 7 CHECK (required_days >= 0),
    received           boolean NOT NULL DEFAULT false,
    received_update_id text COLLATE "C" REFERENCES dataset_updates (id) ON DELETE SET NULL,
    -- created_at of the received update (database clock): freshness is judged on it.
    received_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, dataset_id),
    CHECK (received = (received_update_id IS NOT NULL))
);
-- No index on dataset_id: no query looks rows up by dataset, and datasets are
-- never deleted; every index here costs on the hot path (see BENCHMARKS.md).

CREATE TABLE run_dataset_updates (
    run_id            text COLLATE "C" NOT NULL REFERENCES metric_runs (id) ON DELETE CASCADE,
    dataset_update_id text COLLATE "C" NOT NULL REFERENCES dataset_updates (id) ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, dataset_update_id)
);
-- No index on dataset_update_id: no query reads runs by update on the hot
-- path, and dataset updates are never deleted (BENCHMARKS.md).

CREATE TABLE event_log (
    event_key     text COLLATE "C" PRIMARY KEY,
    event_type    text NOT NULL,
    event_payload jsonb NOT NULL,
    processed_at  timestamptz,
    run_id        text COLLATE "C",
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_log_type_idx ON event_log (event_type, created_at DESC);
CREATE INDEX event_log_run_idx ON event_log (run_id) WHERE run_id IS NOT NULL;

-- Transactional outbox (docs/semantics.md): written in the business transaction,
-- published to SNS after commit by the relay.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          text COLLATE "C" NOT NULL REFERENCES metric_runs (id) ON DELETE CASCADE,
    metric_code     text COLLATE "C" NOT NULL,   -- the SNS metric_code attribute
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
-- No index on run_id: the relay works by id; an operator's lookup by run is rare.

-- The freshness rule of docs/semantics.md in one place for SQL (inlined by the planner).
CREATE FUNCTION update_is_fresh(update_created_at timestamptz, required_days integer)
RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT required_days = 0 OR update_created_at >= now() - make_interval(days => required_days)
$$;
