-- Updates a metric still has to evaluate (docs/semantics.md, "Contention").
-- An update's transaction claims its dependent metrics with SKIP LOCKED; for
-- each metric another transaction holds, it writes a row here in the same
-- transaction instead of waiting. Whoever holds the metric next evaluates
-- its rows in update order and deletes them. The origin columns carry the
-- inbound message's trace context and send time to the requests a row ends
-- up completing.
CREATE TABLE metric_update_backlog (
    metric_id      text COLLATE "C" NOT NULL REFERENCES metrics (id) ON DELETE CASCADE,
    update_id      text COLLATE "C" NOT NULL REFERENCES dataset_updates (id) ON DELETE CASCADE,
    traceparent    text,
    source_sent_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (metric_id, update_id)
);
-- The periodic sweep: rows left by a handler that stopped after its commit.
CREATE INDEX metric_update_backlog_age_idx ON metric_update_backlog (created_at);
