-- metrics: bulkops.metrics counts what the worker did for a target, with the
-- values this test's jobs produce (rows by status, requests, answers by
-- class, a 429 retried, a timeout, token fetches and failures, a backoff);
-- counters add up over jobs; each role sees the targets it owns or holds a
-- privilege on and the jobs row-level security shows it, nothing else;
-- bulkops.health and bulkops.check_health() name a failed token fetch and a
-- backoff; job_progress has eta and rows_per_second, job_summary() the
-- line the server log gets.
SET client_min_messages = warning;  -- wait()'s NOTICEs depend on timing
SELECT current_setting('test.mock_url') AS mock \gset
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('DELETE', '/_control/faults');
CREATE ROLE met_owner;
GRANT bulkops_admin TO met_owner;
CREATE ROLE met_user;
CREATE ROLE met_other;
CREATE TABLE met_rows AS
SELECT i AS id, 'r ' || i AS name,
       CASE WHEN i % 25 = 0 THEN 'no' END AS _fail
FROM generate_series(1, 250) AS i;
GRANT SELECT ON met_rows TO met_owner, met_user, met_other;

SET ROLE met_owner;
SELECT bulkops.create_target('met', 'clinia', :'mock' || '/_t/met/clinia/sources/met/v1', 'Person',
                             NULL, '{"batch_size": 100, "concurrency": 1, "http_timeout": 1, "max_attempts": 5}');
SELECT bulkops.grant_target('met', 'met_user', 'push');
RESET ROLE;

-- every counter of a target nobody sent through is there, at 0
SELECT metric, labels, value FROM bulkops.metrics WHERE target = 'met' ORDER BY 1, labels::text COLLATE "C";

-- 1. a job of 250 rows in 3 batches, 10 of them refused (VALIDATION); the
-- first submit is answered 429 (Retry-After: 0) and retried, the first
-- poll's answer (PENDING) comes later than http_timeout and the poll is
-- repeated: 4 submits and 6 polls, 8 answered 2xx
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"path": "^/_t/met/.*/bulk$", "method": "POST", "action": "status", "status": 429,
     "headers": {"Retry-After": "0"}, "body": ""},
    {"path": "^/_t/met/.*/bulk/", "method": "GET", "action": "delay", "seconds": 3,
     "when": "after"}]}');
SET ROLE met_user;
SELECT bulkops.bulk_upsert('met', 'met_rows', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
RESET ROLE;
SELECT test.mock('DELETE', '/_control/faults');
SELECT state, rows_succeeded, rows_failed FROM bulkops.jobs WHERE id = :job;
SELECT metric, labels, value FROM bulkops.metrics WHERE target = 'met' ORDER BY 1, labels::text COLLATE "C";
SELECT (s->'clinia'->>'submits')::int AS mock_submits, (s->>'faults_fired')::int AS faults_fired
FROM test.mock('GET', '/_control/stats') AS s;

-- 2. the same again, without faults: the rows' counters add up
SET ROLE met_user;
SELECT bulkops.bulk_upsert('met', 'met_rows', key => 'id') AS job2 \gset
SELECT bulkops.wait(:job2, '60 s');
RESET ROLE;
SELECT labels->>'status' AS status, value FROM bulkops.metrics
WHERE target = 'met' AND metric = 'rows_total' ORDER BY 1;
SELECT labels->>'state' AS state, value FROM bulkops.metrics
WHERE target = 'met' AND metric = 'jobs' ORDER BY 1;
SELECT value AS receipts_stored FROM bulkops.metrics
WHERE target = 'met' AND metric = 'receipts_stored';
SELECT value > 0 AS receipts_take_room FROM bulkops.metrics WHERE metric = 'receipts_bytes';
SELECT value >= 1 AS a_worker FROM bulkops.metrics WHERE metric = 'workers';
SELECT count(*) >= 1 AS lanes, bool_and(value >= 0 AND value < 60) AS lag_sane
FROM bulkops.metrics WHERE metric = 'worker_loop_lag_seconds';

-- 3. who sees what: met_user (push granted, its own jobs) sees the
-- target's counters and its jobs; met_owner owns the target and sees
-- everything on it; met_other sees neither, though the target is there
SET ROLE met_user;
SELECT metric, count(*), sum(value) FROM bulkops.metrics
WHERE target = 'met' AND metric IN ('jobs', 'rows_total', 'requests_total') GROUP BY 1 ORDER BY 1;
SET ROLE met_owner;
SELECT metric, count(*), sum(value) FROM bulkops.metrics
WHERE target = 'met' AND metric IN ('jobs', 'rows_total', 'requests_total') GROUP BY 1 ORDER BY 1;
SET ROLE met_other;
SELECT count(*) AS others_see_of_met FROM bulkops.metrics WHERE target = 'met';
SELECT count(*) AS others_row_counts FROM bulkops.row_counts;
SELECT count(*) AS targets_listed FROM bulkops.targets WHERE name = 'met';
-- positive control: what met_other sees once it may push through the target
RESET ROLE;
SELECT bulkops.grant_target('met', 'met_other', 'push');
SET ROLE met_other;
SELECT metric, count(*) FROM bulkops.metrics
WHERE target = 'met' AND metric IN ('jobs', 'rows_total', 'requests_total') GROUP BY 1 ORDER BY 1;
RESET ROLE;
SELECT bulkops.revoke_target('met', 'met_other');

-- 4. progress: a job that ended has its end as eta and its average rate;
-- its summary is the line the server log got
SELECT eta = finished_at AS eta_is_end, rows_per_second > 0 AS has_rate, rows_done, percent
FROM bulkops.job_progress WHERE id = :job;
SELECT regexp_replace(regexp_replace(bulkops.job_summary(:job), '^job \d+', 'job N'),
                      'in [0-9.]+ s$', 'in S s') AS summary;
SELECT error_counts FROM bulkops.jobs WHERE id = :job;
-- a job counts at most 32 error codes, the rarest beyond them as "(other)"
SELECT count(*) AS codes, sum(value::text::int) AS rows, (c->>'(other)')::int AS other,
       c->>'E01' AS e01, c ? 'E40' AS rarest_kept
FROM (SELECT bulkops._add_counts(
        (SELECT jsonb_object_agg('E' || lpad(i::text, 2, '0'), 100 - i) FROM generate_series(1, 20) i),
        (SELECT jsonb_object_agg('E' || lpad(i::text, 2, '0'), 100 - i) FROM generate_series(11, 40) i)) AS c) x,
     jsonb_each(c) GROUP BY c;
-- the recent rate's sum keeps 1/e of itself after a minute
SELECT round(bulkops._decayed(100, '2026-01-01 00:00:00+00', '2026-01-01 00:01:00+00')::numeric, 2) AS after_a_minute,
       bulkops._decayed(100, NULL, now()) AS never;
SET ROLE met_other;
SELECT test.try('SELECT bulkops.job_summary(' || :job || ')') AS others_summary;
RESET ROLE;
SELECT test.try('SELECT bulkops.job_summary(-1)') AS no_such_job;

-- 5. health: a token fetch that fails names its target; a target told to
-- wait 600 s is in backoff until then
SET ROLE met_owner;
SELECT bulkops.create_target('met_oa', 'clinia', :'mock' || '/_t/meto/clinia/sources/met/v1', 'Person',
    jsonb_build_object('type', 'oauth2_client_credentials', 'client_id', 'bulkops',
                       'client_secret', 'met-wrong-secret',
                       'token_url', :'mock' || '/oauth2/token'),
    '{"batch_size": 100}');
SELECT bulkops.create_target('met_bo', 'clinia', :'mock' || '/_t/metb/clinia/sources/met/v1', 'Person',
                             NULL, '{"batch_size": 100}');
SELECT bulkops.grant_target('met_oa', 'met_user', 'push');
SELECT bulkops.grant_target('met_bo', 'met_user', 'push');
RESET ROLE;
SELECT test.mock('POST', '/_control/config',
  '{"oauth": {"client_id": "bulkops", "client_secret": "met-right-secret"}}');
SET ROLE met_user;
SELECT bulkops.bulk_upsert('met_oa', 'SELECT id, name FROM met_rows WHERE id <= 5', key => 'id') AS job3 \gset
SELECT bulkops.wait(:job3, '60 s');
RESET ROLE;
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"path": "^/_t/metb/", "action": "status", "status": 429, "times": -1,
     "headers": {"Retry-After": "600"}, "body": ""}]}');
SET ROLE met_user;
SELECT bulkops.bulk_upsert('met_bo', 'SELECT id, name FROM met_rows WHERE id <= 5', key => 'id') AS job4 \gset
RESET ROLE;
-- wait (up to 30 s) for the 429 to be answered
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN EXISTS (SELECT FROM bulkops.metrics
                          WHERE target = 'met_bo' AND metric = 'backoff_seconds' AND value > 0);
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SET ROLE met_user;
SELECT metric, value FROM bulkops.metrics
WHERE target = 'met_oa' AND metric LIKE 'oauth%' ORDER BY 1;
SELECT value BETWEEN 500 AND 600 AS backoff_seconds FROM bulkops.metrics
WHERE target = 'met_bo' AND metric = 'backoff_seconds';
SELECT workers >= 1 AS has_workers, cardinality(worker_pids) = workers AS pids,
       loop_lag_seconds < 60 AS lag_sane,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(targets_in_backoff) AS k) AS in_backoff,
       (targets_in_backoff->>'met_bo')::timestamptz > now() + interval '500 s' AS backoff_until,
       token_failed_targets, jobs_past_deadline, oldest_queued_since IS NULL AS nothing_queued
FROM bulkops.health;
-- a backoff is a warning only once it has lasted backoff_warning
SELECT severity, regexp_replace(message, '^OK: \d+', 'OK: N') AS message
FROM bulkops.check_health(backoff_warning => '1 hour');
SELECT severity, regexp_replace(message, 'for \d+ s: target "met_bo" until [^;]*',
                                'for S s: target "met_bo" until T') AS message
FROM bulkops.check_health(backoff_warning => '0');
-- met_other sees no problem of targets it has nothing to do with
SET ROLE met_other;
SELECT severity, regexp_replace(message, '^OK: \d+', 'OK: N') AS message
FROM bulkops.check_health();
SELECT token_failed_targets, targets_in_backoff FROM bulkops.health;
RESET ROLE;
SELECT bulkops.cancel(:job4);
SELECT bulkops.wait(:job4, '60 s');
SELECT test.mock('DELETE', '/_control/faults');
SELECT test.mock('POST', '/_control/reset');

-- 6. queued batches: a job enqueued and read back in the transaction that
-- enqueues it (the worker cannot take it yet) shows in the queue gauges
BEGIN;
SET LOCAL ROLE met_user;
SELECT bulkops.bulk_upsert('met', 'met_rows', key => 'id') AS job5 \gset
SELECT metric, value FROM bulkops.metrics
WHERE target = 'met' AND metric IN ('queued_batches', 'queued_rows') ORDER BY 1;
SELECT value >= 0 AND value < 60 AS age_sane FROM bulkops.metrics
WHERE target = 'met' AND metric = 'oldest_queued_batch_age_seconds';
-- a job past its deadline: a warning once it is lag_warning past it
SELECT bulkops.bulk_upsert('met', 'met_rows', key => 'id', options => '{"deadline": 0.01}') AS job6 \gset
SELECT pg_sleep(0.05);
SELECT jobs_past_deadline, deadline_passed_at < clock_timestamp() AS passed FROM bulkops.health;
SELECT severity, message FROM bulkops.check_health();
SELECT severity, regexp_replace(message, '\d+', 'N', 'g') AS message
FROM bulkops.check_health(lag_warning => '0', lag_critical => '1 hour');
ROLLBACK;

SELECT bulkops.drop_target('met_oa');
SELECT bulkops.drop_target('met_bo');
