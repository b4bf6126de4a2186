-- salesforce: Bulk API 2.0 ingest jobs against the mock, one receipt per source row.
-- Proves: every operation (insert, update, upsert, delete, hardDelete) and its job
-- request; the CSV encoding (header, quoting, #N/A or empty for NULL, booleans,
-- dates, timestamps with zone, arrays, UTF-8) and its NUL-byte error; results
-- matched by key or whole record whatever their order (shuffled, reversed); per-row
-- failures split into error_code, error_message and error_fields; jobs split by
-- batch_size, 10,000 rows unless set; column_delimiter and line_ending;
-- 403 REQUEST_LIMIT_EXCEEDED waited out without using attempts; UNABLE_TO_LOCK_ROW
-- rows sent again in a new job up to max_attempts; a Failed job's unprocessed rows;
-- rows no result file mentions; cancel aborting the remote job; progress published
-- while the job runs; a large result file read as a stream.
SET client_min_messages = warning;  -- wait()'s progress NOTICEs depend on timing
SET TimeZone = 'Asia/Kolkata';    -- timestamps carry the session's offset, +05:30
SELECT current_setting('test.mock_url') || '/salesforce' AS url \gset
SELECT bulkops.create_target('sf', 'salesforce', :'url', 'Account', NULL,
                             '{"batch_size": 1000, "poll_interval": 0.05, "limit_backoff": 0.002}');
SELECT test.mock('POST', '/_control/reset');

-- the job requests the mock saw, oldest first
CREATE FUNCTION sf_jobs() RETURNS TABLE (operation text, object text, ext_id text,
                                         state text, records int, uploads int)
LANGUAGE sql AS $$
    SELECT j.value->>'operation', j.value->>'object', j.value->>'externalIdFieldName',
           j.value->>'state', (j.value->>'records')::int, (j.value->>'uploads')::int
    FROM jsonb_each(test.mock('GET', '/_control/salesforce/jobs')) AS j
    ORDER BY j.key
$$;
-- the body of the last CSV upload the mock saw
CREATE FUNCTION sf_last_upload() RETURNS text LANGUAGE sql AS $$
    SELECT r->>'body'
    FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r
    WHERE r->>'method' = 'PUT' ORDER BY (r->>'time')::float8 DESC LIMIT 1
$$;

-- 1. upsert: every type's CSV form, the header, quoting, NULL as #N/A
CREATE TABLE sf_accounts (
    ext text, name text, active boolean, since date, seen timestamptz,
    local timestamp, score numeric, tags text[], n int, note text);
INSERT INTO sf_accounts VALUES
    ('A1', 'Plain', true, '2024-02-29', '2024-03-01 12:30:00+00', '2024-03-01 08:00',
     12.50, '{red,green}', 1, NULL),
    ('A2', 'Comma, Inc.', false, '1999-12-31', '2000-01-01 00:00:00.123+02', NULL,
     -1, '{}', NULL, 'says "hi"'),
    ('A3', E'Two\nlines', NULL, NULL, NULL, NULL, NULL, NULL, 3, 'Ünïcødé ✓'),
    ('A4', 'cr' || chr(13) || 'lf', true, '2024-01-01', NULL, NULL, 1e3, '{a}', 4, '');
SELECT bulkops.bulk_upsert('sf', $$SELECT ext AS "Ext__c", name AS "Name",
        active AS "Active__c", since AS "Since__c", seen AS "Seen__c",
        local AS "Local__c", score AS "Score__c", tags AS "Tags__c", n AS "N__c",
        note AS "Note__c" FROM sf_accounts$$, key => 'Ext__c') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed, rows_unknown, batches_total
FROM bulkops.jobs WHERE id = :job;
SELECT sf_last_upload() AS uploaded_csv;
SELECT * FROM sf_jobs();
SELECT key, status, remote_id, created, error_code, error_message, attempts
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
-- what the remote side stored, as it parsed our CSV
SELECT s.value->>'Ext__c' AS ext, s.value->>'Name' AS name, s.value->'Note__c' AS note,
       s.value->'Active__c' AS active, s.value->>'Tags__c' AS tags
FROM jsonb_each(test.mock('GET', '/_control/salesforce/store?object=Account')) AS s
ORDER BY 1;

-- 2. upsert again, with nulls => keep: NULL is sent empty (left unchanged)
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_upsert('sf', $$SELECT ext AS "Ext__c", note AS "Note__c" FROM sf_accounts
        WHERE ext IN ('A1', 'A2')$$, key => 'Ext__c',
        options => '{"nulls": "keep"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT sf_last_upload() AS uploaded_csv;
SELECT s.value->'Note__c' AS note_after_keep
FROM jsonb_each(test.mock('GET', '/_control/salesforce/store?object=Account')) AS s
WHERE s.value->>'Ext__c' = 'A1';

-- 2b. the other types: floats, json, composites, arrays with NULLs and nesting
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_insert('sf', $$SELECT 1.5::float8 AS "F8__c", 'NaN'::float8 AS "Nan__c",
        '-Infinity'::float4 AS "Inf__c", '{"a": [1, "x,y"]}'::jsonb AS "J__c",
        '{"b":2}'::json AS "Js__c", row(1, 'two')::record AS "Rec__c",
        ARRAY[ARRAY[1, NULL], ARRAY[3, 4]] AS "Multi__c", ARRAY['a;b', NULL, 'c'] AS "Pick__c",
        'x'::name AS "Name__c", '10.0.0.1'::inet AS "Ip__c", 7::oid AS "Oid__c"$$) AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT sf_last_upload() AS uploaded_csv;

-- 3. insert: no key; results (reversed here) matched by the whole uploaded record,
-- identical records included; the new ids come back with created = true
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"salesforce": {"result_order": "reverse"}}');
CREATE TABLE sf_people (n int, last text, first text, _fail text);
INSERT INTO sf_people VALUES (1, 'Curie', 'Marie', NULL), (2, 'Twin', 'Same', NULL),
    (3, 'Twin', 'Same', NULL), (4, 'Bad', 'Row', 'REQUIRED_FIELD_MISSING:Required fields are missing: [Email]'),
    (5, 'Lovelace', 'Ada', NULL);
SELECT bulkops.bulk_insert('sf', $$SELECT last AS "LastName", first AS "FirstName", _fail
        FROM sf_people ORDER BY n$$) AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed, rows_unknown FROM bulkops.jobs WHERE id = :job;
SELECT row_no, key, status, remote_id ~ '^001' AS has_id, created, error_code, error_message
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT count(DISTINCT remote_id) AS distinct_ids FROM bulkops.receipts WHERE job_id = :job;
SELECT * FROM sf_jobs();
-- the store holds exactly the sf_inserted rows, under the ids the receipts name
SELECT count(*) AS stored,
       count(*) FILTER (WHERE s.key IN (SELECT remote_id FROM bulkops.receipts
                                        WHERE job_id = :job)) AS matching_receipts
FROM jsonb_each(test.mock('GET', '/_control/salesforce/store?object=Account')) AS s;

-- 4. update by Id: the key column is sent as "Id" whatever its name; an unknown Id fails
SELECT test.mock('POST', '/_control/config', '{"salesforce": {"result_order": "shuffle"}}');
CREATE TABLE sf_inserted AS
SELECT r.remote_id AS sf_id, p.last FROM bulkops.receipts r JOIN sf_people p ON p.n = r.row_no
WHERE r.job_id = :job AND r.status = 'succeeded';
SELECT bulkops.bulk_update('sf', $$SELECT sf_id, upper(last) AS "LastName" FROM sf_inserted
        UNION ALL SELECT '001999999999999AAA', 'Nobody'$$, key => 'sf_id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT split_part(sf_last_upload(), E'\n', 1) AS header;
SELECT key = '001999999999999AAA' AS bogus, status, created, error_code, error_message
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT s.value->>'LastName' AS stored_last
FROM jsonb_each(test.mock('GET', '/_control/salesforce/store?object=Account')) AS s ORDER BY 1;

-- 5. delete sends the Id column only; hard_delete => true makes it hardDelete
SELECT bulkops.bulk_delete('sf', $$SELECT sf_id AS "Id", last FROM sf_inserted WHERE last = 'Curie'
        UNION ALL SELECT '001999999999999AAA', 'x'$$, key => 'Id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT sf_last_upload() AS uploaded_csv;
SELECT key = '001999999999999AAA' AS bogus, status, error_code, error_message
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT bulkops.create_target('sf_hard', 'salesforce', :'url', 'Account', NULL,
                             '{"poll_interval": 0.05, "hard_delete": true}');
SELECT bulkops.bulk_delete('sf_hard', $$SELECT sf_id FROM sf_inserted WHERE last = 'Lovelace'$$,
        key => 'sf_id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status FROM bulkops.receipts WHERE job_id = :job;
SELECT operation, ext_id, state FROM sf_jobs();
SELECT count(*) AS left_in_store
FROM jsonb_each(test.mock('GET', '/_control/salesforce/store?object=Account'));

-- 6. what cannot be sent as CSV is refused at enqueue, naming the row; bytea is sent
-- as its bytes (UTF-8 text)
SELECT bulkops.bulk_insert('sf', $$SELECT n AS "N__c",
        CASE WHEN n = 3 THEN '\x6100'::bytea ELSE 'ok'::bytea END AS "Body__c"
        FROM generate_series(1, 4) AS n$$);
SELECT bulkops.bulk_insert('sf', $$SELECT '\xff'::bytea AS "Body__c"$$);
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_insert('sf', $q$SELECT convert_to('héllo, "world"', 'UTF8') AS "Body__c"$q$) AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT sf_last_upload() AS uploaded_csv;
SELECT count(*) AS jobs_after_refusals FROM sf_jobs();

-- 7. shuffled results, per-row failures, and jobs cut by batch_size: each row's receipt
-- comes from its own record, never from its position
SELECT test.mock('POST', '/_control/reset');
CREATE TABLE sf_many AS
SELECT i AS ext, 'name ' || i AS name,
       CASE WHEN i % 7 = 0 THEN 'FIELD_CUSTOM_VALIDATION_EXCEPTION:row ' || i || ' is odd: really' END AS _fail
FROM generate_series(1, 300) AS i;
SELECT bulkops.bulk_upsert('sf', $$SELECT ext AS "Ext__c", name AS "Name", _fail FROM sf_many$$,
        key => 'Ext__c', options => '{"batch_size": 100}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT count(*) AS jobs, sum(records) AS records FROM sf_jobs();
SELECT count(*) FILTER (WHERE r.status = 'failed') AS failed,
       count(*) FILTER (WHERE r.status = 'failed' AND m._fail IS NOT NULL
                        AND r.error_code = 'FIELD_CUSTOM_VALIDATION_EXCEPTION'
                        AND r.error_message = 'row ' || m.ext || ' is odd: really') AS failed_as_asked,
       count(*) FILTER (WHERE r.status = 'succeeded' AND m._fail IS NULL
                        AND r.remote_id IS NOT NULL AND r.created) AS succeeded_as_asked
FROM bulkops.receipts r JOIN sf_many m ON r.key = m.ext::text WHERE r.job_id = :job;
-- and the remote id of each row is the one the store gave that external id
SELECT count(*) AS ids_match
FROM bulkops.receipts r
JOIN jsonb_each(test.mock('GET', '/_control/salesforce/store?object=Account')) AS s
  ON s.key = r.remote_id AND s.value->>'Ext__c' = r.key
WHERE r.job_id = :job;

-- 8. 403 REQUEST_LIMIT_EXCEEDED is waited out (limit_backoff, minutes), using no
-- attempt: three refusals with max_attempts = 1 still succeed
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"salesforce": {"request_limit_exceeded": 3}}');
SELECT bulkops.bulk_upsert('sf', $$SELECT ext AS "Ext__c", name AS "Name" FROM sf_many WHERE ext <= 5$$,
        key => 'Ext__c', options => '{"max_attempts": 1, "limit_backoff": 0.002}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT status, attempts FROM bulkops.receipts WHERE job_id = :job;
SELECT (s->'salesforce'->>'limited')::int AS refused_for_limit,
       (s->'salesforce'->>'jobs')::int AS jobs
FROM test.mock('GET', '/_control/stats') AS s;

-- 9. UNABLE_TO_LOCK_ROW: those rows go to a new job, up to max_attempts
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_upsert('sf', $$SELECT ext AS "Ext__c", name AS "Name",
        CASE WHEN ext % 4 = 0 THEN 1 END AS _lock FROM sf_many WHERE ext <= 12$$,
        key => 'Ext__c') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT attempts, count(*), min(key::int), max(key::int) FROM bulkops.receipts
WHERE job_id = :job GROUP BY 1 ORDER BY 1;
SELECT records FROM sf_jobs();
SELECT (s->'salesforce'->>'max_applications_per_id')::int AS max_applied
FROM test.mock('GET', '/_control/stats') AS s;
-- a lock that never goes away: the rows fail once the attempts are used up
SELECT bulkops.bulk_upsert('sf', $$SELECT ext AS "Ext__c", name AS "Name",
        CASE WHEN ext = 2 THEN 99 END AS _lock FROM sf_many WHERE ext <= 3$$,
        key => 'Ext__c', options => '{"max_attempts": 2}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, attempts, error_code, error_message FROM bulkops.receipts
WHERE job_id = :job ORDER BY row_no;

-- 10. a job that ends Failed: processed rows as the result files say, unprocessed ones
-- go to a new job (even for insert: Salesforce says they were not processed)...
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"salesforce": {"fail_job":
        {"after": 4, "times": 1, "message": "InvalidBatch : Too sf_many records"}}}');
SELECT bulkops.bulk_insert('sf', $$SELECT ext AS "Ext__c", name AS "Name", _fail FROM sf_many
        WHERE ext <= 10 ORDER BY ext$$) AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed, rows_unknown FROM bulkops.jobs WHERE id = :job;
SELECT attempts, status, count(*) FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2 ORDER BY 1, 2;
SELECT state, records FROM sf_jobs();
SELECT (s->'salesforce'->>'store_size')::int AS stored,
       (s->'salesforce'->>'max_applications_per_id')::int AS max_applied
FROM test.mock('GET', '/_control/stats') AS s;
-- ... or fail with the job's message, with resubmit_unprocessed => false
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"salesforce": {"fail_job":
        {"after": 2, "times": 1, "message": "InvalidBatch : Too sf_many records"}}}');
SELECT bulkops.bulk_upsert('sf', $$SELECT ext AS "Ext__c", name AS "Name" FROM sf_many
        WHERE ext <= 5$$, key => 'Ext__c', options => '{"resubmit_unprocessed": false}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT status, error_code, regexp_replace(error_message, '750[0-9A-Z]+', '750...') AS error_message
FROM bulkops.receipts WHERE job_id = :job ORDER BY 1;

-- ... and a job someone aborted: its unprocessed rows are cancelled, not sent again
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"salesforce": {"fail_job":
        {"after": 2, "state": "Aborted"}}}');
SELECT bulkops.bulk_upsert('sf', $$SELECT ext AS "Ext__c", name AS "Name",
        CASE WHEN ext = 1 THEN 99 END AS _lock FROM sf_many WHERE ext <= 5$$,
        key => 'Ext__c') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed, rows_cancelled FROM bulkops.jobs WHERE id = :job;
SELECT key, status, error_code, regexp_replace(error_message, '750[0-9A-Z]+', '750...') AS error_message
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT state FROM sf_jobs();

-- 11. rows no result file mentions: unknown for insert (it may have been applied)
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_insert('sf', $$SELECT ext AS "Ext__c", CASE WHEN ext = 2 THEN 'x' END AS _lost
        FROM sf_many WHERE ext <= 3$$) AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, regexp_replace(error_message, '750[0-9A-Z]+', '750...') AS error_message
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT count(*) AS jobs FROM sf_jobs();

-- 12. an upload whose answer was lost is sent again; the job with two uploads refuses
-- to close, stays Open, and its rows go to a new job: nothing is applied twice
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "PUT", "path": "/batches$", "times": 1, "when": "after", "action": "reset"}]}');
SELECT bulkops.bulk_insert('sf', $$SELECT ext AS "Ext__c" FROM sf_many WHERE ext <= 6$$) AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT attempts FROM bulkops.receipts WHERE job_id = :job;
SELECT state, uploads FROM sf_jobs();
SELECT (s->'salesforce'->>'store_size')::int AS stored,
       (s->'salesforce'->>'max_applications_per_id')::int AS max_applied
FROM test.mock('GET', '/_control/stats') AS s;
SELECT test.mock('DELETE', '/_control/faults');

-- 13. remote errors: a refused job fails its rows with the error array's code
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"salesforce": {"objects": ["Account"]}}');
SELECT bulkops.create_target('sf_nope', 'salesforce', :'url', 'Nope__c');
SELECT bulkops.bulk_insert('sf_nope', $$SELECT 1 AS "N__c"$$) AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT DISTINCT status, error_code, error_message FROM bulkops.receipts WHERE job_id = :job;
-- and api_version picks the path, bearer credentials are sent
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"salesforce": {"bearer": "tok"}}');
SELECT bulkops.create_target('sf_v', 'salesforce', :'url', 'Account',
       '{"type": "bearer", "token": "tok"}', '{"api_version": "58.0"}');
SELECT bulkops.bulk_insert('sf_v', $$SELECT 1 AS "N__c"$$) AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT DISTINCT r->>'path' ~ '/services/data/v58\.0/jobs/ingest' AS v58,
       r->'headers'->>'Authorization' AS auth
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r WHERE r->>'method' = 'POST';
SELECT test.mock('POST', '/_control/reset');

-- 14. cancel: the running remote job is aborted; what it processed keeps its
-- outcome when it is learned within the worker's grace, the rest is cancelled
-- (or unknown, should the grace end first).  While it runs, its progress is
-- published.
SELECT test.mock('POST', '/_control/config', '{"salesforce": {"in_progress_polls": 1000}}');
SELECT bulkops.bulk_upsert('sf', $$SELECT ext AS "Ext__c", name AS "Name" FROM sf_many$$,
        key => 'Ext__c') AS job \gset
DO $$
BEGIN
    FOR i IN 1 .. 600 LOOP
        EXIT WHEN (SELECT (remote_progress->>'numberRecordsProcessed')::int > 0
                   FROM bulkops.job_progress WHERE id = currval('bulkops.jobs_id_seq'));
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT state, jsonb_typeof(remote_progress->'numberRecordsProcessed') AS processed,
       remote_progress->'numberRecordsFailed' AS failed
FROM bulkops.job_progress WHERE id = :job;
SELECT bulkops.cancel(:job);
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total = rows_succeeded + rows_cancelled + rows_unknown AS all_settled,
       rows_failed AS failed
FROM bulkops.jobs WHERE id = :job;
SELECT state FROM sf_jobs();
SELECT count(*) = 300 AS one_receipt_per_row FROM bulkops.receipts WHERE job_id = :job;
-- every succeeded receipt is a record the remote side stored, under its id
SELECT count(*) FILTER (WHERE s.key IS NULL) AS succeeded_but_not_stored
FROM bulkops.receipts r
LEFT JOIN jsonb_each(test.mock('GET', '/_control/salesforce/store?object=Account')) AS s
  ON s.key = r.remote_id
WHERE r.job_id = :job AND r.status = 'succeeded';

-- 15. a large result file is read as it streams: 200,000 rows in one job, with
-- answers limited to 64 kB (the success file is megabytes)
SELECT test.mock('POST', '/_control/reset');
ALTER SYSTEM SET bulkops.max_response_size = '64kB';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);  -- let the worker take the reload
SELECT bulkops.alter_target('sf', options => '{"batch_size": 200000, "poll_interval": 0.05}');
SELECT bulkops.bulk_upsert('sf', $$SELECT i AS "Ext__c", 'account number ' || i AS "Name"
        FROM generate_series(1, 200000) AS i$$, key => 'Ext__c',
        options => '{"batch_size": 200000}') AS job \gset
SELECT bulkops.wait(:job, '300 s');
SELECT state, rows_succeeded, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT count(*) AS ids_match
FROM bulkops.receipts r
JOIN jsonb_each(test.mock('GET', '/_control/salesforce/store?object=Account')) AS s
  ON s.key = r.remote_id AND s.value->>'Ext__c' = r.key
WHERE r.job_id = :job;
ALTER SYSTEM RESET bulkops.max_response_size;
SELECT pg_reload_conf();

-- 16. targets and jobs the dialect refuses
SELECT test.try($$SELECT bulkops.create_target('x', 'salesforce', 'https://a.example.com')$$);
SELECT test.try($$SELECT bulkops.create_target('x', 'salesforce', 'https://a.example.com', 'Bad Name')$$);
SELECT test.try($$SELECT bulkops.create_target('x', 'salesforce', 'https://a.example.com', 'Account',
                  options => '{"api_version": "v62"}')$$);
SELECT test.try($$SELECT bulkops.create_target('x', 'salesforce', 'https://a.example.com', 'Account',
                  options => '{"nulls": "drop"}')$$);
SELECT test.try($$SELECT bulkops.bulk_upsert('sf', 'SELECT 1 AS a')$$);
SELECT test.try($$SELECT bulkops.bulk_update('sf', 'SELECT 1 AS sf_id, 2 AS "ID"', key => 'sf_id')$$);
SELECT test.try($$SELECT bulkops.bulk_overwrite('sf', 'SELECT 1 AS "Id"', key => 'Id')$$);
SELECT test.try($$SELECT bulkops.bulk_insert('sf', 'SELECT 1 AS a', options => '{"nulls": 1}')$$);
SELECT test.try($$SELECT bulkops.bulk_insert('sf', 'SELECT 1 AS a', options => '{"nulls": "never"}')$$);

-- 17. sf__Error "CODE:message:fields --": the fields go to error_fields, apart from
-- the message; an error naming none, or without that ending, keeps its message whole
SELECT test.mock('POST', '/_control/reset');
CREATE TABLE sf_errs (ext text, _fail text);
INSERT INTO sf_errs VALUES
    ('E1', 'REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --'),
    ('E2', 'FIELD_INTEGRITY_EXCEPTION:bad values: a, b:Phone, Email__c,Account.Name --'),
    ('E3', 'DUPLICATE_VALUE:duplicate value found: Ext__c duplicates value on record with id: 001:--'),
    ('E4', 'CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY:trigger failed: line 3, column 1'),
    ('E5', 'not even a code -- at all --');
SELECT bulkops.bulk_upsert('sf', $$SELECT ext AS "Ext__c", _fail FROM sf_errs$$,
                           key => 'Ext__c') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_code, error_message, error_fields
FROM bulkops.receipts WHERE job_id = :job ORDER BY key;

-- 18. column_delimiter and line_ending: the header, the records and the job request
-- use them (a field holding the delimiter is quoted), and the result files, written
-- the same way, are matched as before: by key, and for insert by the whole record
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.create_target('sf_pipe', 'salesforce', :'url', 'Account', NULL,
                             '{"column_delimiter": "PIPE", "line_ending": "CRLF", "poll_interval": 0.05}');
CREATE TABLE sf_delims (ext text, name text, _fail text);
INSERT INTO sf_delims VALUES ('D1', 'a|b', NULL), ('D2', 'c,d;e', NULL), ('D3', 'tab	here "q"', NULL),
    ('D4', NULL, 'REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --');
SELECT bulkops.bulk_upsert('sf_pipe', $$SELECT ext AS "Ext__c", name AS "Name", _fail FROM sf_delims$$,
                           key => 'Ext__c') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT replace(sf_last_upload(), E'\r\n', '<CRLF>') AS uploaded_csv;
SELECT (r->>'body')::jsonb->>'columnDelimiter' AS delimiter, (r->>'body')::jsonb->>'lineEnding' AS line_ending
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r
WHERE r->>'method' = 'POST' AND r->>'path' LIKE '%/jobs/ingest';
SELECT key, status, error_code, error_fields, remote_id IS NOT NULL AS has_id
FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT s.value->>'Ext__c' AS ext, s.value->>'Name' AS stored_name
FROM jsonb_each(test.mock('GET', '/_control/salesforce/store?object=Account')) AS s
ORDER BY 1;
-- insert matches by every uploaded column, read back with the job's delimiter: TAB
SELECT bulkops.bulk_insert('sf_pipe', $$SELECT name AS "Name", ext AS "Ext__c" FROM sf_delims WHERE _fail IS NULL$$,
                           options => '{"column_delimiter": "TAB", "line_ending": "LF"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT replace(sf_last_upload(), E'\t', '<TAB>') AS uploaded_csv;
SELECT status, count(*), count(DISTINCT remote_id) AS ids, bool_and(created) AS created
FROM bulkops.receipts WHERE job_id = :job GROUP BY status;
SELECT test.try($$SELECT bulkops.create_target('x', 'salesforce', 'https://a.example.com', 'Account',
                  options => '{"column_delimiter": "COLON"}')$$);
SELECT test.try($$SELECT bulkops.bulk_insert('sf', 'SELECT 1 AS a', options => '{"line_ending": "CR"}')$$);

-- 19. batch_size defaults to 10,000 rows for salesforce (one job, one of the org's
-- daily batches per 10,000 records): a job may narrow that, not go past it
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_upsert('sf_pipe', $$SELECT 'B' || i AS "Ext__c" FROM generate_series(1, 10001) AS i$$,
                           key => 'Ext__c') AS job \gset
SELECT bulkops.wait(:job, '120 s');
SELECT state, rows_succeeded, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT records FROM sf_jobs() ORDER BY records DESC;
SELECT test.try($$SELECT bulkops.bulk_upsert('sf_pipe', 'SELECT 1 AS "Ext__c"', key => 'Ext__c',
                  options => '{"batch_size": 10001}')$$);
SELECT bulkops.bulk_upsert('sf_pipe', $$SELECT 'B' || i AS "Ext__c" FROM generate_series(1, 6000) AS i$$,
                           key => 'Ext__c', options => '{"batch_size": 5000}') AS job \gset
SELECT bulkops.wait(:job, '120 s');
SELECT state, rows_succeeded, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT bulkops.drop_target('sf_pipe');

-- every job of this suite is final, and no batch is left open
SELECT count(*) AS unfinished FROM bulkops.jobs WHERE state IN ('queued', 'running');
SELECT count(*) AS open_batches FROM bulkops.batches WHERE state <> 'done';
