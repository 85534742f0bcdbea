-- Where a run request came from, for telemetry: the W3C trace context to put
-- on the published message (SPEC §3.3 `traceparent`), and when the inbound
-- message that caused it was sent (update-to-request latency).
ALTER TABLE outbox ADD COLUMN traceparent text;
ALTER TABLE outbox ADD COLUMN source_sent_at timestamptz;
