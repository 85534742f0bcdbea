-- A run an evaluation requests carries its own request on its row: the run
-- row is its own outbox entry (issue 23, BENCHMARKS.md "The run row as its
-- own outbox"). Before, each such run wrote a second row to `outbox`, with
-- its primary key, two more index entries and a foreign-key check back to
-- the run; publishing it then wrote both rows again (the outbox row
-- published, the run dispatched). Now the run's insert (or the update that
-- queues a pending run) writes the request's recipe, and publishing is one
-- update of the run: `request_published_at` set and `queued → dispatched`.
--
-- The columns mean what `outbox`'s did (V1, V3, V10): `request_id` is the
-- message id, from the sequence of `outbox_messages`'s ids, so that the relay
-- keeps one id space; `request_requested_at` is the request's `requestedAt`
-- (the deciding worker's clock); `request_base_path` its `output.basePath`;
-- `request_trigger_note` its trigger object; `request_group_id` its FIFO
-- group; `request_traceparent` and `request_source_sent_at` what caused it;
-- `request_attempts`, `request_next_attempt_at`, `request_last_error` and
-- `request_published_at` the relay's lease and progress. Nullable columns
-- without a default: adding them does not rewrite the table.
--
-- Every other message (alerts, retries, operator triggers, requests written
-- before this migration) stays a row of the outbox table, renamed
-- `outbox_messages`. `outbox` becomes a view of both, with the old table's
-- columns, so that an operator's (and a test's) query of it keeps its
-- answer: one row per message, published or not.
ALTER TABLE outbox RENAME TO outbox_messages;
ALTER SEQUENCE outbox_id_seq RENAME TO outbox_messages_id_seq;

ALTER TABLE metric_runs
    ADD COLUMN request_id              bigint,
    ADD COLUMN request_requested_at    timestamptz,
    ADD COLUMN request_base_path       text,
    ADD COLUMN request_trigger_note    jsonb CHECK (jsonb_typeof(request_trigger_note) = 'object'),
    ADD COLUMN request_group_id        text,
    ADD COLUMN request_traceparent     text,
    ADD COLUMN request_source_sent_at  timestamptz,
    ADD COLUMN request_attempts        integer CHECK (request_attempts >= 0),
    ADD COLUMN request_next_attempt_at timestamptz,
    ADD COLUMN request_published_at    timestamptz,
    ADD COLUMN request_last_error      text,
    ADD CONSTRAINT metric_runs_request_recipe CHECK (
        request_id IS NULL
        OR (requested_at IS NOT NULL AND request_requested_at IS NOT NULL
            AND request_base_path IS NOT NULL AND request_attempts IS NOT NULL
            AND request_next_attempt_at IS NOT NULL));

-- The relay's and the sweeper's way in, as `outbox_unpublished_idx` is for
-- `outbox_messages`: it holds only requests not yet published, so it stays
-- small, and a run leaves it when its request is published.
CREATE INDEX metric_runs_request_due_idx ON metric_runs (request_next_attempt_at, request_id)
    WHERE request_id IS NOT NULL AND request_published_at IS NULL;

CREATE VIEW outbox AS
    SELECT id, run_id, metric_code, payload, message_group_id, created_at, published_at,
           attempts, next_attempt_at, last_error, traceparent, source_sent_at, alert_type,
           dedup_key, requested_at, output_base_path, trigger_note
      FROM outbox_messages
    UNION ALL
    SELECT request_id, id, metric_code, NULL::text, request_group_id, requested_at,
           request_published_at, request_attempts, request_next_attempt_at, request_last_error,
           request_traceparent, request_source_sent_at, NULL::text, NULL::text,
           request_requested_at, request_base_path, request_trigger_note
      FROM metric_runs
     WHERE request_id IS NOT NULL;
