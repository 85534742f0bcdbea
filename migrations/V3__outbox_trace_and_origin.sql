-- Where a run request came from, for telemetry: the W3C trace context to put
-- on the published message (`traceparent`, docs/contracts.md), and when the inbound
-- message that caused it was sent (update-to-request latency).
ALTER TABLE outbox ADD COLUMN traceparent text;
ALTER TABLE outbox ADD COLUMN source_sent_at timestamptz;
