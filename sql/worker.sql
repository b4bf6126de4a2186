-- worker: pushed jobs reach the (mock) remote API and come back as exactly one
-- receipt per source row: per-row failures, REJECTED requests whose cancelled
-- operations are resubmitted, created ids, retries on 429/503 and broken
-- connections, "unknown" where a non-idempotent submit may have been applied,
-- authentication, and cancellation.
SET client_min_messages = warning;  -- wait()'s progress NOTICEs depend on timing
SELECT current_setting('test.mock_url') || '/clinia/sources/w/v1' AS url \gset
SELECT bulkops.create_target('w', 'clinia', :'url', 'Person', NULL,
                             '{"batch_size": 1000, "concurrency": 3}');
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"clinia": {"pending_polls": 2}}');

CREATE TABLE people AS
SELECT i AS id, 'person ' || i AS name, i % 7 AS team,
       CASE WHEN i % 100 = 0 THEN 'name ' || i || ' is taken' END AS _fail
FROM generate_series(1, 2500) AS i;

-- 1. per-row failures among successes: partial
SELECT bulkops.bulk_upsert('w', 'people', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed, rows_cancelled, rows_unknown,
       batches_total, batches_done, started_at <= finished_at AS timed
FROM bulkops.jobs WHERE id = :job;
SELECT count(*) AS receipts, count(DISTINCT row_no) AS distinct_rows,
       min(row_no), max(row_no) FROM bulkops.receipts WHERE job_id = :job;
SELECT status, error_code, count(*), min(attempts), max(attempts)
FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2 ORDER BY 1;
-- receipts join back to the source by key
SELECT p.id, p.name, r.status, r.remote_id, r.error_code, r.error_message, r.http_status
FROM people p JOIN bulkops.receipts r ON r.job_id = :job AND r.key = p.id::text
WHERE p.id IN (99, 100, 2500) ORDER BY p.id;
-- the remote side applied each row once
SELECT (s->'clinia'->>'max_applications_per_id')::int AS max_applied,
       (s->'clinia'->>'store_size')::int AS stored
FROM test.mock('GET', '/_control/stats') AS s;

-- 2. a REJECTED request: failing operations fail, the cancelled rest is resubmitted
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_upsert('w', $$SELECT id, name,
        CASE WHEN id IN (3, 1500) THEN 'invalid name' END AS _reject FROM people$$,
        key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed FROM bulkops.jobs WHERE id = :job;
SELECT key, status, error_code, error_message, attempts FROM bulkops.receipts
WHERE job_id = :job AND status <> 'succeeded' ORDER BY row_no;
SELECT (s->'clinia'->>'rejected')::int AS rejected_requests,
       (s->'clinia'->>'max_applications_per_id')::int AS max_applied
FROM test.mock('GET', '/_control/stats') AS s;

-- 3. insert: created remote ids come back, keyless rows are matched in order
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_insert('w', 'SELECT name, team FROM people WHERE id <= 5') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT row_no, key, status, remote_id LIKE 'gen_%' AS has_remote_id, created
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;

-- 4. delete: present ids succeed, missing ones fail with the remote error
SELECT bulkops.bulk_upsert('w', 'SELECT id, name FROM people WHERE id <= 3', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT bulkops.bulk_delete('w', 'SELECT id FROM people WHERE id BETWEEN 2 AND 4', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_code, error_message FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;

-- 5. 429 with Retry-After, then a connection reset: retried, each row applied once
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "POST", "path": "/bulk$", "times": 1, "action": "status", "status": 429,
     "headers": {"Retry-After": "0"}},
    {"method": "POST", "path": "/bulk$", "times": 1, "action": "reset"}]}');
SELECT bulkops.bulk_upsert('w', 'SELECT id, name FROM people WHERE id <= 300', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT status, attempts, count(*) FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2;
SELECT (s->>'faults_fired')::int AS faults_fired,
       (s->'clinia'->>'max_applications_per_id')::int AS max_applied
FROM test.mock('GET', '/_control/stats') AS s;

-- 6. a malformed answer to a poll: the poll is repeated, nothing is lost
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "GET", "path": "/bulk/", "times": 2, "action": "malformed"}]}');
SELECT bulkops.bulk_upsert('w', 'SELECT id, name FROM people WHERE id <= 10', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;

-- 7. an insert whose submit gets a 500: it may have been applied, so unknown
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "POST", "path": "/bulk$", "times": 1, "when": "after", "action": "status", "status": 500}]}');
SELECT bulkops.bulk_insert('w', 'SELECT name FROM people WHERE id <= 4') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_unknown FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT status, error_message FROM bulkops.receipts WHERE job_id = :job;

-- 8. a remote side that stays unavailable (503, without Retry-After): the
-- rows wait, using up no attempt, until the job's deadline; the target (one
-- of its own: the others' requests must not wait) is held, and the hold saved
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "POST", "path": "/bulk$", "times": -1, "action": "status", "status": 503}]}');
SELECT bulkops.create_target('w_down', 'clinia', :'url', 'Person');
SELECT bulkops.bulk_upsert('w_down', 'SELECT id, name FROM people WHERE id <= 4', key => 'id',
                           options => '{"max_attempts": 2, "deadline": 2}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_failed, rows_cancelled, last_error FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT status, attempts, http_status, error_message FROM bulkops.receipts WHERE job_id = :job;
SELECT target, http_status FROM bulkops.target_state ORDER BY target;

-- 9. a task that fails as a whole: every row failed with the remote error
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"clinia": {"task_failure_all": true}}');
SELECT bulkops.bulk_upsert('w', 'SELECT id, name FROM people WHERE id <= 3', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_failed FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT status, error_code, error_message FROM bulkops.receipts WHERE job_id = :job;

-- 10. credentials: the right API key passes, a wrong one fails the rows
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"clinia": {"api_key": "sesame"}}');
SELECT bulkops.create_target('w_auth', 'clinia', :'url', 'Person',
       '{"type": "header", "name": "X-Clinia-API-Key", "value": "sesame"}');
SELECT bulkops.bulk_upsert('w_auth', 'SELECT id, name FROM people WHERE id <= 3', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT r->'headers'->>'X-Clinia-API-Key' AS key_sent, r->'headers'->>'User-Agent' AS agent
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;
SELECT bulkops.alter_target('w_auth', auth => '{"type": "header", "name": "X-Clinia-API-Key", "value": "wrong"}');
SELECT bulkops.bulk_upsert('w_auth', 'SELECT id, name FROM people WHERE id <= 3', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, last_error FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT status, http_status, error_message FROM bulkops.receipts WHERE job_id = :job;

-- 11. cancel: batches not yet sent are cancelled, every row still gets a receipt
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "POST", "path": "/bulk$", "times": -1, "action": "delay", "seconds": 0.3}]}');
SELECT bulkops.bulk_upsert('w', 'people', key => 'id',
                           options => '{"batch_size": 100, "concurrency": 1}') AS job \gset
SELECT bulkops.cancel(:job);
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total = rows_succeeded + rows_failed + rows_cancelled + rows_unknown AS all_settled,
       rows_cancelled > 0 AS some_cancelled
FROM bulkops.jobs WHERE id = :job;
SELECT count(*) = 2500 AS one_receipt_per_row, count(DISTINCT row_no) = 2500 AS no_duplicates
FROM bulkops.receipts WHERE job_id = :job;
SELECT bulkops.cancel(:job) AS cancel_again;

-- 12. basic credentials
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"clinia": {"basic": "ann:pa:ss"}}');
SELECT bulkops.create_target('w_basic', 'clinia', :'url', 'Person',
       '{"type": "basic", "username": "ann", "password": "pa:ss"}');
SELECT bulkops.bulk_upsert('w_basic', 'SELECT id, name FROM people WHERE id <= 3', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT r->'headers'->>'Authorization' AS sent
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;

-- 13. allowed_hosts is enforced before every request, not only at create_target:
-- a host allowed then is refused once the setting changes, and nothing is sent
SELECT test.mock('POST', '/_control/reset');
ALTER SYSTEM SET bulkops.allowed_hosts = 'api.example.com';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);  -- let the worker take the reload
SELECT bulkops.bulk_upsert('w', 'SELECT id, name FROM people WHERE id <= 3', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT DISTINCT status, error_message FROM bulkops.receipts WHERE job_id = :job;
SELECT coalesce((s->'clinia'->>'submits')::int, 0) AS submits_seen
FROM test.mock('GET', '/_control/stats') AS s;
ALTER SYSTEM RESET bulkops.allowed_hosts;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);

-- every job of this suite is final, and no target has unfinished work
SELECT count(*) AS unfinished FROM bulkops.jobs WHERE state IN ('queued', 'running');
SELECT count(*) AS open_batches FROM bulkops.batches WHERE state <> 'done';
