-- fuzz_findings: what test/fuzz/run.sh found in answer handling, each replayed
-- through the mock: a task id that is not valid UTF-8 is refused (it would be
-- stored as it is); a remote task id goes into the next URL escaped
-- (or is refused when escaping cannot make it safe); a packagex errors file
-- link that no client can send is refused with a message that says so.
SET client_min_messages = warning;
SELECT current_setting('test.mock_url') || '/clinia/sources/f/v1' AS url \gset
SELECT bulkops.create_target('f', 'clinia', :'url', 'Person', NULL,
                             '{"max_attempts": 2, "poll_interval": 0.05}');
CREATE TABLE fz AS SELECT i AS id, 'name ' || i AS name FROM generate_series(1, 3) AS i;

-- 1. ACCEPTED with a task id that is not UTF-8: refused, submitted again
SELECT test.mock('POST', '/_control/reset');
SELECT jsonb_build_object('rules', jsonb_build_array(
    jsonb_build_object('method', 'POST', 'path', '/bulk$', 'action', 'malformed',
        'status', 202, 'body_base64',
        encode('{"status": "ACCEPTED", "taskId": "bk'::bytea || '\x95a2'::bytea || '"}'::bytea,
               'base64')))) AS not_utf8 \gset
SELECT test.mock('POST', '/_control/faults', :'not_utf8');
SELECT bulkops.bulk_upsert('f', 'fz', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
-- no poll went to the garbled task
SELECT r->>'method' AS method, r->>'path' ~ '/bulk(/bk_[0-9]+)?$' AS known_path, count(*)
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r GROUP BY 1, 2 ORDER BY 1;
-- the same answer to an insert: it may have been applied, so unknown, and said why
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', :'not_utf8');
SELECT bulkops.bulk_insert('f', 'SELECT name FROM fz') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT DISTINCT status, error_message FROM bulkops.receipts WHERE job_id = :job;

-- 2. a task id with a space, a control and a percent sign is polled escaped:
-- the remote side does not know it (404), so the idempotent upsert is sent again
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "POST", "path": "/bulk$", "action": "malformed", "status": 202,
     "body": "{\"status\": \"ACCEPTED\", \"taskId\": \"b k\\u007f%41\"}"}]}');
SELECT bulkops.bulk_upsert('f', 'fz', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT r->>'path' AS polled FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r
WHERE r->>'method' = 'GET' AND r->>'path' !~ '/bk_[0-9]+$';
-- a dot segment cannot be escaped: refused like a missing task id
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "POST", "path": "/bulk$", "action": "malformed", "status": 202,
     "body": "{\"status\": \"ACCEPTED\", \"taskId\": \"..\"}"}]}');
SELECT bulkops.bulk_upsert('f', 'fz', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT count(*) FILTER (WHERE r->>'method' = 'GET' AND r->>'path' !~ '/bk_[0-9]+$') AS odd_polls
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r;

-- 3. packagex: an errors file link with a space in it
SELECT current_setting('test.mock_url') || '/packagex/v1' AS px_url \gset
SELECT bulkops.create_target('fpx', 'packagex', :'px_url', 'contact', NULL,
                             '{"max_attempts": 1, "poll_interval": 0.05}');
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', jsonb_build_object('packagex', jsonb_build_object(
    'pending_polls', 0, 'errors_host', regexp_replace(:'px_url', '^http://([^/]*)/.*$', '\1/x y'))))
       IS NOT NULL AS configured;  -- (it echoes the port)
SELECT bulkops.bulk_upsert('fpx', $$SELECT id, name, CASE WHEN id = 2 THEN 'no' END AS _fail FROM fz$$,
                           key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT DISTINCT status, regexp_replace(error_message, 'batch_[0-9]+', 'batch_N', 'g') AS error_message
FROM bulkops.receipts WHERE job_id = :job;
-- a batch id ".." would be a dot segment in the poll's URL: refused, so the
-- idempotent merge is sent again and no request goes to another path
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "POST", "path": "/batches$", "action": "malformed", "status": 201,
     "body": "{\"id\": \"..\", \"status\": \"queued\"}"}]}');
SELECT bulkops.alter_target('fpx', options => '{"max_attempts": 2, "poll_interval": 0.05}');
SELECT bulkops.bulk_upsert('fpx', 'fz', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT r->>'method' AS method, r->>'path' ~ '/batches(/batch_[0-9]+)?$' AS known_path, count(*)
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r GROUP BY 1, 2 ORDER BY 1;

-- before the errors link fix, the link reached the host policy, whose refusal
-- quoted it whole, signature included: a URL in a message loses query and
-- user info
SELECT test.try($$SELECT bulkops.create_target('fbad', 'clinia',
    'http://ann:pw@ho st/files/e.json?sig=s3cret#x', 'Person')$$);

-- later suites count the targets: leave none behind
SELECT bulkops.drop_target('f'), bulkops.drop_target('fpx');
DROP TABLE fz;
