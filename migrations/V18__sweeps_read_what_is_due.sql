-- Periodic work that costs what is due (docs/semantics.md, "Freshness
-- expectations"; docs/architecture.md, "Periodic work").
--
-- When each dataset's and metric's freshness is to be judged again: the
-- moment its state can next change on its own (a deadline, a threshold, a
-- schedule's tick), or at once when a fact it is judged on changed. The
-- sweep reads only the rows whose `due_at` has come, through the index; an
-- entity whose state the clock alone can no longer change has no row until
-- a fact changes. Only the sweep (one replica at a time) writes this table.
CREATE TABLE freshness_due (
    kind      text NOT NULL CHECK (kind IN ('dataset', 'metric')),
    entity_id text COLLATE "C" NOT NULL,
    due_at    timestamptz NOT NULL,
    PRIMARY KEY (kind, entity_id)
);
CREATE INDEX freshness_due_at_idx ON freshness_due (kind, due_at, entity_id);

-- The facts that changed since the sweep last looked: appended by the
-- transactions that change them (an update, a success, an expectation), so
-- that they never wait on each other nor on the sweep, and taken (deleted)
-- by the next sweep, which makes those entities due at once. A mark a
-- sweep does not see yet is taken by the next one.
CREATE TABLE freshness_marks (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind      text NOT NULL CHECK (kind IN ('dataset', 'metric')),
    entity_id text COLLATE "C" NOT NULL
);

-- Both tables churn (every judgement rewrites a due row, every sweep
-- empties the marks): vacuumed after a few thousand dead rows rather than a
-- fifth of the table, so that the due index and the marks stay as small as
-- what is live.
ALTER TABLE freshness_due SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                               autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE freshness_marks SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000);

-- Everything is judged by the first sweep after this migration, as every
-- sweep judged everything before it.
INSERT INTO freshness_due (kind, entity_id, due_at)
SELECT 'dataset', id, now() FROM datasets
 WHERE expected_every_secs IS NOT NULL OR expected_by IS NOT NULL
UNION
SELECT 'dataset', dataset_id, now() FROM dataset_freshness
UNION
SELECT 'metric', id, now() FROM metrics
 WHERE max_age_fail_secs IS NOT NULL OR expected_by IS NOT NULL
UNION
SELECT 'metric', metric_id, now() FROM metric_freshness;

-- Marks that a fact of an entity changed. The facts change in many places
-- (the catalog, the API, the runners' reports); marking from the tables
-- themselves, in the transaction that changes them, leaves none out.
CREATE FUNCTION freshness_mark(k text, id text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO freshness_marks (kind, entity_id) VALUES (k, id)
$$;

-- A dataset's expectation set, changed or removed.
CREATE FUNCTION datasets_expectation_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM freshness_mark('dataset', NEW.id);
    RETURN NULL;
END $$;

CREATE TRIGGER datasets_expectation_set
    AFTER INSERT ON datasets FOR EACH ROW
    WHEN (NEW.expected_every_secs IS NOT NULL OR NEW.expected_by IS NOT NULL)
    EXECUTE FUNCTION datasets_expectation_changed();

CREATE TRIGGER datasets_expectation_changed
    AFTER UPDATE OF expected_every_secs, expected_by, expectation_grace_secs, expectation_set_at
    ON datasets FOR EACH ROW
    WHEN ((OLD.expected_every_secs, OLD.expected_by, OLD.expectation_grace_secs, OLD.expectation_set_at)
          IS DISTINCT FROM
          (NEW.expected_every_secs, NEW.expected_by, NEW.expectation_grace_secs, NEW.expectation_set_at))
    EXECUTE FUNCTION datasets_expectation_changed();

-- A metric's expectation set, changed or removed, or the metric enabled or
-- disabled.
CREATE FUNCTION metrics_expectation_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM freshness_mark('metric', NEW.id);
    RETURN NULL;
END $$;

CREATE TRIGGER metrics_expectation_set
    AFTER INSERT ON metrics FOR EACH ROW
    WHEN (NEW.max_age_fail_secs IS NOT NULL OR NEW.expected_by IS NOT NULL)
    EXECUTE FUNCTION metrics_expectation_changed();

CREATE TRIGGER metrics_expectation_changed
    AFTER UPDATE OF max_age_warn_secs, max_age_fail_secs, expected_by, expectation_grace_secs,
                    expectation_set_at, enabled
    ON metrics FOR EACH ROW
    WHEN ((OLD.max_age_warn_secs, OLD.max_age_fail_secs, OLD.expected_by, OLD.expectation_grace_secs,
           OLD.expectation_set_at, OLD.enabled)
          IS DISTINCT FROM
          (NEW.max_age_warn_secs, NEW.max_age_fail_secs, NEW.expected_by, NEW.expectation_grace_secs,
           NEW.expectation_set_at, NEW.enabled))
    EXECUTE FUNCTION metrics_expectation_changed();

-- A metric's inputs changed: what a warning or failing metric waits on may
-- have too.
CREATE FUNCTION metric_inputs_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    m text := COALESCE(NEW.metric_id, OLD.metric_id);
BEGIN
    IF EXISTS (SELECT 1 FROM metric_freshness f WHERE f.metric_id = m AND f.state IN ('warn', 'fail')) THEN
        PERFORM freshness_mark('metric', m);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER metric_inputs_changed
    AFTER INSERT OR DELETE ON metric_required_datasets FOR EACH ROW
    EXECUTE FUNCTION metric_inputs_changed();

-- A run's status changed. A success (not a backfill's) is the fact a
-- metric's freshness is judged on; a run leaving `pending_dependencies`
-- ends its policy timer (the policy sweep then never reads it) and what a
-- warning or failing metric waits on.
CREATE FUNCTION metric_run_status_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'succeeded' AND NEW.backfill_id IS NULL THEN
        PERFORM freshness_mark('metric', m.id) FROM metrics m
          WHERE m.id = NEW.metric_id AND (m.max_age_fail_secs IS NOT NULL OR m.expected_by IS NOT NULL);
    END IF;
    IF OLD.status = 'pending_dependencies' THEN
        DELETE FROM metric_run_timers WHERE run_id = NEW.id;
        PERFORM freshness_mark('metric', f.metric_id) FROM metric_freshness f
          WHERE f.metric_id = NEW.metric_id AND f.state IN ('warn', 'fail');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER metric_run_status_changed
    AFTER UPDATE OF status ON metric_runs FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND (NEW.status = 'succeeded' OR OLD.status = 'pending_dependencies'))
    EXECUTE FUNCTION metric_run_status_changed();

-- The timers of runs that already left `pending_dependencies` (the trigger
-- above ends them from now on).
DELETE FROM metric_run_timers t USING metric_runs r
 WHERE r.id = t.run_id AND r.status <> 'pending_dependencies';
