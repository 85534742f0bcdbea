-- Freshness expectations and alerts (docs/semantics.md, "Freshness
-- expectations"; docs/contracts.md, "Outbound: alerts").
--
-- What the catalog expects, as written by `catalog apply`. A NULL schedule
-- means no expectation. `expectation_set_at` is when the expectation last
-- changed: deadlines that passed before it are not held against anyone.
ALTER TABLE datasets
    ADD COLUMN expected_every_secs    bigint CHECK (expected_every_secs > 0),
    ADD COLUMN expected_by            text CHECK (expected_by <> ''),
    ADD COLUMN expectation_grace_secs bigint NOT NULL DEFAULT 0 CHECK (expectation_grace_secs >= 0),
    ADD COLUMN expectation_set_at     timestamptz,
    ADD CONSTRAINT datasets_one_schedule CHECK (expected_every_secs IS NULL OR expected_by IS NULL);

ALTER TABLE metrics
    ADD COLUMN max_age_warn_secs      bigint CHECK (max_age_warn_secs > 0),
    ADD COLUMN max_age_fail_secs      bigint CHECK (max_age_fail_secs > 0),
    ADD COLUMN expected_by            text CHECK (expected_by <> ''),
    ADD COLUMN expectation_grace_secs bigint NOT NULL DEFAULT 0 CHECK (expectation_grace_secs >= 0),
    ADD COLUMN expectation_set_at     timestamptz,
    ADD CONSTRAINT metrics_warn_before_fail
        CHECK (max_age_warn_secs IS NULL OR (max_age_fail_secs IS NOT NULL AND max_age_warn_secs < max_age_fail_secs)),
    ADD CONSTRAINT metrics_one_expectation CHECK (max_age_fail_secs IS NULL OR expected_by IS NULL);

-- The state the freshness sweep last found, one row per entity with an
-- expectation (a row is written only when the state changes, so a sweep
-- that finds nothing new writes nothing). `since` is when the state last
-- changed; `overdue_since` the deadline or threshold that a late / warn /
-- fail state passed.
CREATE TABLE dataset_freshness (
    dataset_id    text COLLATE "C" PRIMARY KEY REFERENCES datasets (id) ON DELETE CASCADE,
    state         text NOT NULL CHECK (state IN ('on_time', 'late', 'unknown')),
    since         timestamptz NOT NULL,
    overdue_since timestamptz
);
CREATE INDEX dataset_freshness_state_idx ON dataset_freshness (state);

CREATE TABLE metric_freshness (
    metric_id     text COLLATE "C" PRIMARY KEY REFERENCES metrics (id) ON DELETE CASCADE,
    state         text NOT NULL CHECK (state IN ('pass', 'warn', 'fail', 'unknown')),
    since         timestamptz NOT NULL,
    overdue_since timestamptz,
    -- The datasets a warning or failing metric waits on (late, or missing
    -- from its pending run).
    blocking      text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX metric_freshness_state_idx ON metric_freshness (state);

-- Alerts leave through the same outbox as run requests (never lost, never
-- twice), to the alerts topic. A run request has a run; an alert has a type
-- and a key that is unique per transition, so that the same transition
-- cannot be queued twice whatever the number of replicas.
ALTER TABLE outbox
    ALTER COLUMN run_id DROP NOT NULL,
    ALTER COLUMN metric_code DROP NOT NULL,
    ADD COLUMN alert_type text,
    ADD COLUMN dedup_key  text,
    ADD CONSTRAINT outbox_request_or_alert CHECK (
        (run_id IS NOT NULL AND metric_code IS NOT NULL AND alert_type IS NULL AND dedup_key IS NULL)
        OR (run_id IS NULL AND alert_type IS NOT NULL AND dedup_key IS NOT NULL));
CREATE UNIQUE INDEX outbox_alert_dedup_idx ON outbox (dedup_key) WHERE dedup_key IS NOT NULL;
