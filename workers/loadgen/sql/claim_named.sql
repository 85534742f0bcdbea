-- The relay's claim of named run requests among a backlog of due ones
-- (BENCHMARKS.md, "Claiming named requests by their runs' key"): the
-- statement as it was (by request id) against the statement as it is (by
-- the run's primary key and request id), alternating, on the same rows.
--
-- Run on a freshly migrated, empty database (`orchestrator migrate`):
--   psql "$URL" -v backlog=50000 -v named=33 -v rounds=200 -f claim_named.sql
-- It writes a synthetic metric and `backlog` queued runs whose requests are
-- due (a worker's publisher down for a while, say), then claims `named`
-- random ones per round with each statement, as plpgsql statements: their
-- plans are cached like the relay's prepared statements. Every claim is
-- rolled back, so each round sees the same backlog.
-- The two claims are written out in full, alike but for their filter: as
-- static SQL their plans are cached (dynamic SQL would be planned afresh
-- for each call, which the relay's statements are not).
\set ON_ERROR_STOP on
INSERT INTO metrics (id, code, expression_type, expression_json)
VALUES ('bench-claim', 'bench.claim', 'series_math', '{}');
INSERT INTO metric_runs (id, metric_id, metric_code, status, requested_at, request_id,
                         request_requested_at, request_base_path, request_attempts,
                         request_next_attempt_at)
SELECT 'run-' || lpad(i::text, 8, '0'), 'bench-claim', 'bench.claim', 'queued', now(),
       nextval('outbox_messages_id_seq'), now(), 's3://bench/', 0, now() - interval '1 minute'
  FROM generate_series(1, :backlog) i;
ANALYZE metric_runs;

CREATE TEMP TABLE claim_times (form text, ms float8);
CREATE FUNCTION pg_temp.claim_round(named int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
    runs text[];
    t timestamptz;
    d float8;
BEGIN
    SELECT array_agg(request_id), array_agg(id) INTO ids, runs
      FROM (SELECT request_id, id FROM metric_runs ORDER BY random() LIMIT named) s;
    BEGIN
        t := clock_timestamp();
        UPDATE metric_runs u
           SET request_attempts = u.request_attempts + 1,
               request_next_attempt_at = now() + make_interval(secs => 30)
          FROM (SELECT id FROM metric_runs
                 WHERE request_id IS NOT NULL AND request_published_at IS NULL
                   AND request_next_attempt_at <= now() AND request_id = ANY(ids)
                 ORDER BY request_next_attempt_at, request_id LIMIT 100
                   FOR UPDATE SKIP LOCKED) c
         WHERE u.id = c.id;
        d := 1e3 * extract(epoch FROM clock_timestamp() - t);
        RAISE EXCEPTION 'roll back' USING ERRCODE = 'P0001';
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
    INSERT INTO claim_times VALUES ('by request id', d);
    BEGIN
        t := clock_timestamp();
        UPDATE metric_runs u
           SET request_attempts = u.request_attempts + 1,
               request_next_attempt_at = now() + make_interval(secs => 30)
          FROM (SELECT id FROM metric_runs
                 WHERE request_id IS NOT NULL AND request_published_at IS NULL
                   AND request_next_attempt_at <= now() AND id = ANY(runs)
                   AND request_id = ANY(ids)
                 ORDER BY request_next_attempt_at, request_id LIMIT 100
                   FOR UPDATE SKIP LOCKED) c
         WHERE u.id = c.id;
        d := 1e3 * extract(epoch FROM clock_timestamp() - t);
        RAISE EXCEPTION 'roll back' USING ERRCODE = 'P0001';
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
    INSERT INTO claim_times VALUES ('by run key', d);
END $$;
SELECT count(*) AS rounds FROM (SELECT pg_temp.claim_round(:named) FROM generate_series(1, :rounds)) r;
SELECT form, count(*) AS claims,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3) AS median_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 3) AS p99_ms
  FROM claim_times GROUP BY form ORDER BY form;
