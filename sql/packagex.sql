-- packagex: the PackageX Batches API dialect end to end against the mock.
-- Proves: targets and options are checked; actions a resource does not allow
-- are refused before anything is sent; merge, delete and overwrite reach the
-- remote side as batches in the right mode; the errors file (fetched without
-- the API key, through the host policy) maps to rows by index with the id
-- checked, also when shuffled and with duplicate rows; each failure answer
-- (failed, timed_out, expired, a 4xx, an errors file that does not match, an
-- expired link, a lost batch) ends every row; stats and phases show up as the
-- job's remote_progress; an overwrite is one request that leaves the remote
-- side holding exactly the source's keys, and a source needing more than one
-- request is refused with nothing sent.
SET client_min_messages = warning;  -- wait()'s progress NOTICEs depend on timing
SELECT current_setting('test.mock_url') || '/packagex/v1' AS url \gset
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"packagex": {"api_key": "px-secret"}}');
\set auth '{"type": "header", "name": "PX-API-KEY", "value": "px-secret"}'

-- what the mock holds for a resource, as sorted keys
CREATE FUNCTION px_keys(resource text) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(k, ',' ORDER BY k::int), '')
    FROM jsonb_object_keys(test.mock('GET', '/_control/packagex/store?resource=' || resource)) AS k
$$;
CREATE FUNCTION px_stat(name text) RETURNS int LANGUAGE sql AS $$
    SELECT (test.mock('GET', '/_control/stats')->'packagex'->>name)::int
$$;
-- the JSON bodies bulkops sent to POST .../batches (the mock logs 2000 bytes each)
CREATE FUNCTION px_submits() RETURNS SETOF jsonb LANGUAGE sql AS $$
    SELECT (r->>'body')::jsonb
    FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r
    WHERE r->>'method' = 'POST' AND r->>'path' LIKE '%/batches'
$$;
CREATE FUNCTION px_receipts(job bigint)
RETURNS TABLE (key text, status text, error_code text, error_message text) LANGUAGE sql AS $$
    SELECT key, status, error_code, error_message FROM bulkops.receipts
    WHERE job_id = job ORDER BY key::int, row_no
$$;

-- 1. targets: resource and options are checked at create_target
SELECT test.try($$SELECT bulkops.create_target('px_bad', 'packagex', '$$ || :'url' || $$')$$);
SELECT test.try($$SELECT bulkops.create_target('px_bad', 'packagex', '$$ || :'url' || $$', 'contacts')$$);
SELECT test.try($$SELECT bulkops.create_target('px_bad', 'packagex', '$$ || :'url' || $$', 'contact',
                  options => '{"mode": "fast"}')$$);
SELECT test.try($$SELECT bulkops.create_target('px_bad', 'packagex', '$$ || :'url' || $$', 'contact',
                  options => '{"duplicate_handling": "use_last"}')$$);
SELECT test.try($$SELECT bulkops.create_target('px_bad', 'packagex', '$$ || :'url' || $$', 'contact',
                  options => '{"sync_max_items": 20000}')$$);
SELECT test.try($$SELECT bulkops.create_target('px_bad', 'packagex', '$$ || :'url' || $$', 'contact',
                  options => '{"resources": ["contact"]}')$$);
SELECT test.try($$SELECT bulkops.create_target('px_bad', 'packagex', '$$ || :'url' || $$', 'contact',
                  options => '{"resources": {"shipment": "merge"}}')$$);
SELECT test.try($$SELECT bulkops.create_target('px_bad', 'packagex', '$$ || :'url' || $$', 'contact',
                  options => '{"resources": {"shipment": ["merge", "upsert"]}}')$$);
-- a resource the defaults do not know is fine once listed with its actions
SELECT bulkops.create_target('px_loc', 'packagex', :'url', 'location', :'auth',
                             '{"resources": {"location": ["merge", "delete"]}}');
SELECT bulkops.create_target('px', 'packagex', :'url', 'contact', :'auth');
SELECT bulkops.create_target('px_ship', 'packagex', :'url', 'shipment', :'auth');
SELECT count(*) AS px_targets FROM bulkops.targets WHERE dialect = 'packagex';

CREATE TABLE contacts AS
SELECT i AS ref, 'contact ' || i AS name, 'c' || i || '@example.com' AS email,
       NULL::text AS _fail
FROM generate_series(1, 10) AS i;

-- 2. refused before anything is sent: no job, no request
SELECT count(*) AS jobs_before FROM bulkops.jobs \gset
SELECT test.try($$SELECT bulkops.bulk_delete('px_ship', 'SELECT ref FROM contacts', key => 'ref')$$);
SELECT test.try($$SELECT bulkops.bulk_overwrite('px_ship', 'SELECT ref FROM contacts', key => 'ref')$$);
SELECT test.try($$SELECT bulkops.bulk_delete('px', 'SELECT ref FROM contacts', key => 'ref',
                  options => '{"resources": {"contact": ["merge"]}}')$$);
SELECT test.try($$SELECT bulkops.bulk_insert('px', 'contacts')$$);
SELECT test.try($$SELECT bulkops.bulk_upsert('px', 'contacts')$$);
SELECT test.try($$SELECT bulkops.bulk_upsert('px', 'SELECT ref, ref AS id FROM contacts', key => 'ref')$$);
SELECT test.try($$SELECT bulkops.bulk_upsert('px', 'contacts', key => 'ref',
                  options => '{"mode": "later"}')$$);
SELECT count(*) - :jobs_before AS new_jobs FROM bulkops.jobs;
SELECT px_stat('submits') AS submits;

-- 3. merge (mode mixed, the default): rows in shuffled order, one key twice,
-- rows that fail validation, an errors file listing them in random order
SELECT test.mock('POST', '/_control/config', '{"packagex": {"shuffle_errors": true}}');
SELECT bulkops.bulk_upsert('px', $$
    SELECT * FROM (SELECT ref, name, email,
                          CASE WHEN ref IN (4, 9) THEN 'email ' || ref || ' is invalid' END AS _fail
                   FROM contacts
                   UNION ALL SELECT 7, 'contact 7 again', NULL, NULL) s
    ORDER BY md5(name)$$, key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed, rows_unknown, batches_total
FROM bulkops.jobs WHERE id = :job;
SELECT * FROM px_receipts(:job);
-- the remote side holds the rows that succeeded, each applied once, with the
-- key sent as "id" and the other columns as they are
SELECT px_keys('contact') AS stored, px_stat('max_applications_per_id') AS max_applied;
SELECT test.mock('GET', '/_control/packagex/store?resource=contact')->'3' AS item_3;
SELECT b->>'resource' AS resource, b->>'action' AS action, b->>'mode' AS mode,
       b->>'duplicate_handling' AS duplicates, jsonb_array_length(b->'data') AS items,
       b->'data'->0 ? 'id' AND NOT b->'data'->0 ? 'ref' AS key_sent_as_id
FROM px_submits() AS b;
-- the errors file came from its own link, without the API key
SELECT px_stat('errors_fetches') AS errors_fetches,
       px_stat('errors_fetches_with_key') AS fetched_with_key;
-- stats and phases, summed over the job's batches
SELECT remote_progress->'created' AS created, remote_progress->'parsing_error' AS parsing_error,
       remote_progress->'validation_error' AS validation_error,
       remote_progress->'processing_success' AS processing_success
FROM bulkops.job_progress WHERE id = :job;
-- a done batch keeps no link
SELECT count(*) AS notes_left FROM bulkops.batches WHERE job_id = :job AND step_data IS NOT NULL;

-- 4. duplicate_handling use_first: the first of a key is taken, the later ones fail
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_upsert('px', $$SELECT * FROM (VALUES (1, 'first'), (2, 'two'), (1, 'second'),
                                   (1, 'third')) v(ref, name)$$, key => 'ref',
                           options => '{"duplicate_handling": "use_first"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT row_no, key, status, error_code, error_message FROM bulkops.receipts
WHERE job_id = :job ORDER BY row_no;
SELECT test.mock('GET', '/_control/packagex/store?resource=contact') AS stored;

-- 5. modes: sync up to sync_max_items (no poll when there is no error), mixed
-- beyond it (the API refuses larger sync batches), async
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"packagex": {"api_key": "px-secret", "sync_max_items": 5}}');
SELECT bulkops.bulk_upsert('px', 'SELECT ref, name FROM contacts', key => 'ref',
                           options => '{"mode": "sync", "sync_max_items": 5, "batch_size": 4,
                                        "concurrency": 1}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT value->>'mode' AS mode, value->>'items' AS items, value->>'polls' AS polls
FROM jsonb_each(test.mock('GET', '/_control/packagex/batches')) ORDER BY key;
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_upsert('px', 'SELECT ref, name FROM contacts', key => 'ref',
                           options => '{"mode": "sync", "sync_max_items": 5}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT value->>'mode' AS mode, value->>'items' AS items
FROM jsonb_each(test.mock('GET', '/_control/packagex/batches')) ORDER BY key;
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_upsert('px', 'SELECT ref, name FROM contacts', key => 'ref',
                           options => '{"mode": "async"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT value->>'mode' AS mode, value->>'status' AS status, (value->>'polls')::int >= 3 AS polled_through
FROM jsonb_each(test.mock('GET', '/_control/packagex/batches'));

-- 6. delete: present keys are deleted, a missing one fails with the remote error
SELECT bulkops.bulk_delete('px', 'SELECT ref FROM contacts WHERE ref >= 8 UNION ALL SELECT 42',
                           key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT * FROM px_receipts(:job);
SELECT px_keys('contact') AS stored;
SELECT remote_progress->'deleted' AS deleted FROM bulkops.job_progress WHERE id = :job;
-- a resource of its own, listed with its actions on both sides
SELECT test.mock('POST', '/_control/config',
       '{"packagex": {"resources": {"location": ["merge", "delete"]}}}');
SELECT bulkops.bulk_upsert('px_loc', 'SELECT ref, name FROM contacts WHERE ref <= 2',
                           key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT px_keys('location') AS locations;

-- 7. failure answers
-- 7a. a batch that ends "failed": listed rows fail with their errors, the
-- rest with the reason once max_attempts is used up
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config',
       '{"packagex": {"final_status": "failed", "reason": "storage unavailable"}}');
SELECT bulkops.bulk_upsert('px', $$SELECT ref, name, CASE WHEN ref = 2 THEN 'no name' END AS _fail
                                   FROM contacts WHERE ref <= 3$$, key => 'ref',
                           options => '{"max_attempts": 1}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, last_error FROM bulkops.jobs WHERE id = :job;
SELECT * FROM px_receipts(:job);
-- 7b. "timed_out" once: retried by policy, the second batch completes
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config',
       '{"packagex": {"final_status": "timed_out", "final_status_times": 1}}');
SELECT bulkops.bulk_upsert('px', 'SELECT ref, name FROM contacts WHERE ref <= 3', key => 'ref',
                           options => '{"max_attempts": 2}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT status, attempts FROM bulkops.receipts WHERE job_id = :job;
SELECT value->>'status' AS status FROM jsonb_each(test.mock('GET', '/_control/packagex/batches'))
ORDER BY key;
-- 7c. "expired" every time: the rows fail with the reason and the status as code
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"packagex": {"final_status": "expired"}}');
SELECT bulkops.bulk_upsert('px', 'SELECT ref, name FROM contacts WHERE ref <= 2', key => 'ref',
                           options => '{"max_attempts": 2}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT * FROM px_receipts(:job);
SELECT px_stat('batches') AS batches_sent;
-- 7d. a 4xx with {"error": ...} on submit fails the whole batch: a resource
-- option that claims more than the API allows (the target's: a job may not)
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.alter_target('px_ship', options => '{"resources": {"shipment": ["merge", "delete"]}}');
SELECT bulkops.bulk_delete('px_ship', 'SELECT ref FROM contacts WHERE ref <= 2', key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, last_error FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT status, error_code, error_message, http_status FROM bulkops.receipts WHERE job_id = :job;
-- wrong credentials: 401, the whole batch fails
SELECT test.mock('POST', '/_control/config', '{"packagex": {"api_key": "other"}}');
SELECT bulkops.bulk_upsert('px', 'SELECT ref, name FROM contacts WHERE ref <= 2', key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT DISTINCT status, error_code, error_message, http_status FROM bulkops.receipts WHERE job_id = :job;
-- 7e. an errors file whose ids do not match the rows sent: nothing is guessed
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"packagex": {"wrong_error_ids": true}}');
SELECT bulkops.bulk_upsert('px', $$SELECT ref, name, CASE WHEN ref = 2 THEN 'no' END AS _fail
                                   FROM contacts WHERE ref <= 3$$, key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT * FROM px_receipts(:job);
-- 7f. an expired errors link (403): polled again for a fresh one
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "GET", "path": "/files/", "times": 1, "action": "status", "status": 403}]}');
SELECT bulkops.bulk_upsert('px', $$SELECT ref, name, CASE WHEN ref = 2 THEN 'no' END AS _fail
                                   FROM contacts WHERE ref <= 3$$, key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT * FROM px_receipts(:job);
SELECT (s->>'faults_fired')::int AS faults_fired, (s->'packagex'->>'errors_fetches')::int AS fetched
FROM test.mock('GET', '/_control/stats') AS s;
-- 7g. an errors link on a host the policy refuses: it is never fetched
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"packagex": {"errors_host": "files.example.invalid"}}');
SELECT bulkops.bulk_upsert('px', $$SELECT ref, name, CASE WHEN ref = 2 THEN 'no' END AS _fail
                                   FROM contacts WHERE ref <= 3$$, key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT DISTINCT status, error_message FROM bulkops.receipts WHERE job_id = :job;
SELECT px_stat('errors_fetches') AS fetched;
-- 7h. a batch the remote side no longer knows (404 to a poll): sent again
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "GET", "path": "/batches/", "times": 1, "action": "status", "status": 404}]}');
SELECT bulkops.bulk_upsert('px', 'SELECT ref, name FROM contacts WHERE ref <= 3', key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT DISTINCT status, attempts FROM bulkops.receipts WHERE job_id = :job;
SELECT px_stat('batches') AS batches_sent;

-- 8. overwrite
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_upsert('px', 'SELECT ref, name FROM contacts', key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT px_keys('contact') AS before_overwrite;
-- 8a. a source that needs more than one request is refused, nothing is sent
-- (the target allows large batches: a job may only ask for smaller ones)
SELECT bulkops.alter_target('px', options => '{"batch_size": 50000}');
SELECT count(*) AS jobs_before FROM bulkops.jobs \gset
SELECT px_stat('submits') AS submits_before \gset

SELECT bulkops.bulk_overwrite('px', 'SELECT ref, name FROM contacts', key => 'ref',
                              options => '{"batch_size": 4}');
SELECT bulkops.bulk_overwrite('px', 'SELECT i AS ref FROM generate_series(1, 10001) i',
                              key => 'ref', options => '{"batch_size": 20000}');
SELECT bulkops.bulk_overwrite('px', 'SELECT ref FROM contacts WHERE false', key => 'ref');

SELECT count(*) - :jobs_before AS new_jobs FROM bulkops.jobs;
SELECT px_stat('submits') - :submits_before AS new_submits, px_keys('contact') AS unchanged;
-- 8b. one request: the remote side ends holding exactly the source's keys
CREATE TABLE mirror AS SELECT i AS ref, 'mirror ' || i AS name FROM generate_series(6, 14) AS i;
SELECT bulkops.bulk_overwrite('px', 'mirror', key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT px_keys('contact') = (SELECT string_agg(ref::text, ',' ORDER BY ref) FROM mirror)
       AS remote_holds_source, px_keys('contact') AS stored;
SELECT test.mock('GET', '/_control/packagex/store?resource=contact')->'6' AS item_6;
SELECT remote_progress->'created' AS created, remote_progress->'overwritten' AS overwritten,
       remote_progress->'deleted' AS deleted
FROM bulkops.job_progress WHERE id = :job;
SELECT b->>'action' AS action, jsonb_array_length(b->'data') AS items
FROM px_submits() AS b ORDER BY 1;
-- 8c. a failed overwrite with a listed row is not resent without it
SELECT test.mock('POST', '/_control/config', '{"packagex": {"final_status": "failed"}}');
SELECT bulkops.bulk_overwrite('px', $$SELECT ref, name, CASE WHEN ref = 7 THEN 'no' END AS _fail
                                      FROM mirror$$, key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status, error_code, count(*) FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2 ORDER BY 1, 2;
SELECT DISTINCT error_message FROM bulkops.receipts WHERE job_id = :job AND error_code = 'failed';
SELECT px_keys('contact') = (SELECT string_agg(ref::text, ',' ORDER BY ref) FROM mirror)
       AS remote_unchanged;

-- 8d. a failed overwrite with no listed row is resent whole, by policy
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_upsert('px', 'SELECT ref, name FROM contacts', key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT test.mock('POST', '/_control/config',
       '{"packagex": {"final_status": "timed_out", "final_status_times": 1}}');
SELECT bulkops.bulk_overwrite('px', 'mirror', key => 'ref',
                              options => '{"max_attempts": 2}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT DISTINCT status, attempts FROM bulkops.receipts WHERE job_id = :job;
SELECT b->>'action' AS action, jsonb_array_length(b->'data') AS items
FROM px_submits() AS b WHERE b->>'action' = 'overwrite';
SELECT value->>'status' AS status FROM jsonb_each(test.mock('GET', '/_control/packagex/batches'))
WHERE value->>'action' = 'overwrite' ORDER BY key;
SELECT px_keys('contact') = (SELECT string_agg(ref::text, ',' ORDER BY ref) FROM mirror)
       AS remote_holds_source;

-- 9. the overwrite rule holds for any cut: batch_size above the API's maximum
-- is capped (with a NOTICE) and the job still goes as one request
SELECT test.mock('POST', '/_control/reset');
SET client_min_messages = notice;
SELECT bulkops.bulk_overwrite('px', 'SELECT i AS ref FROM generate_series(1, 3) i', key => 'ref',
                              options => '{"batch_size": 50000}') AS job \gset
SET client_min_messages = warning;
SELECT bulkops.wait(:job, '60 s');
SELECT px_keys('contact') AS stored;

-- 10. created vs updated: the stats count per batch, so a row's created is said
-- only when every succeeded row of its batch was created, or every one updated
-- (an overwrite's carried rows too); a mixed batch, failed rows and deletes say
-- nothing
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"packagex": {"api_key": "px-secret"}}');
CREATE FUNCTION px_created(job bigint) RETURNS TABLE (status text, created boolean, n bigint)
LANGUAGE sql AS $$
    SELECT status, created, count(*) FROM bulkops.receipts WHERE job_id = job
    GROUP BY 1, 2 ORDER BY 1, 2
$$;
SELECT bulkops.bulk_upsert('px', 'SELECT i AS ref, ''n'' || i AS name FROM generate_series(1, 4) i',
                           key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT * FROM px_created(:job);
SELECT bulkops.bulk_upsert('px', 'SELECT i AS ref, ''m'' || i AS name FROM generate_series(1, 4) i',
                           key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT * FROM px_created(:job);
-- new and existing in one batch, and a row that fails: nothing said of either
SELECT bulkops.bulk_upsert('px', $q$SELECT i AS ref, CASE WHEN i = 6 THEN 'bad' END AS _fail
                                    FROM generate_series(3, 6) i$q$, key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT * FROM px_created(:job);
-- per batch: 8 and 7 (new) are created, 6 (new) and 5 (existing) say nothing
SELECT bulkops.bulk_upsert('px', 'SELECT i AS ref FROM generate_series(5, 8) i ORDER BY i DESC',
                           key => 'ref', options => '{"batch_size": 2}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, created FROM bulkops.receipts WHERE job_id = :job ORDER BY key::int;
SELECT bulkops.bulk_overwrite('px', 'SELECT i AS ref FROM generate_series(1, 8) i', key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT * FROM px_created(:job);
SELECT bulkops.bulk_delete('px', 'SELECT i AS ref FROM generate_series(1, 2) i', key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT * FROM px_created(:job);

-- 11. upload csv: the same items as a CSV file in a data URL (the API's file
-- upload), "id" first, NULL as an empty field; the errors file and its id check,
-- the stats and every action work as with JSON; nested values are refused
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"packagex": {"api_key": "px-secret"}}');
CREATE FUNCTION px_csv_sent() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT convert_from(decode(substr(b->>'data', length('data:text/csv;base64,') + 1), 'base64'), 'UTF8')
    FROM px_submits() AS b WHERE b->>'data' LIKE 'data:text/csv;base64,%'
$$;
SELECT bulkops.bulk_upsert('px', $q$SELECT i AS ref, 'n, "' || i || '"' AS name,
                                           CASE WHEN i <> 2 THEN i * 1.5 END AS score,
                                           CASE WHEN i = 3 THEN 'bad' END AS _fail
                                    FROM generate_series(1, 4) i$q$,
                           key => 'ref', options => '{"upload": "csv"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT px_csv_sent() AS csv_sent;
SELECT * FROM px_receipts(:job);
SELECT * FROM px_created(:job);
SELECT test.mock('GET', '/_control/packagex/store?resource=contact') AS stored;
SELECT value->>'via' AS via, value->>'items' AS items
FROM jsonb_each(test.mock('GET', '/_control/packagex/batches'));
-- an errors file naming other ids than the CSV's: nothing guessed
SELECT test.mock('POST', '/_control/config',
       '{"packagex": {"api_key": "px-secret", "wrong_error_ids": true}}');
SELECT bulkops.bulk_upsert('px', $q$SELECT i AS ref, CASE WHEN i = 1 THEN 'bad' END AS _fail
                                    FROM generate_series(1, 2) i$q$,
                           key => 'ref', options => '{"upload": "csv"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT DISTINCT status FROM bulkops.receipts WHERE job_id = :job;
SELECT test.mock('POST', '/_control/config', '{"packagex": {"api_key": "px-secret"}}');
-- overwrite and delete as CSV
SELECT bulkops.bulk_overwrite('px', 'SELECT i AS ref FROM generate_series(2, 5) i', key => 'ref',
                              options => '{"upload": "csv"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT px_keys('contact') AS after_overwrite;
SELECT bulkops.bulk_delete('px', 'SELECT i AS ref FROM generate_series(4, 5) i', key => 'ref',
                           options => '{"upload": "csv"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT px_keys('contact') AS after_delete;
SELECT (array_agg(c ORDER BY c DESC))[1] AS last_csv_sent FROM px_csv_sent() AS c WHERE c LIKE E'id\n4%';
-- the request sizes for 100 rows of eight named columns of short values: the CSV
-- file, base64 and all, is the smaller request
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"packagex": {"api_key": "px-secret"}}');
CREATE TABLE px_wide AS
SELECT i AS ref, 'a' || i AS first_name, 'b' || i AS last_name, 'c' || i AS company_name,
       'd' || i AS street_address, 'e' || i AS postal_code, 'f' || i AS city_name,
       'g' || i AS country_code, 'h' || i AS phone_number
FROM generate_series(1, 100) i;
SELECT bulkops.bulk_upsert('px', 'px_wide', key => 'ref') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT bulkops.bulk_upsert('px', 'px_wide', key => 'ref', options => '{"upload": "csv"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT CASE WHEN r->>'body' LIKE '%data:text/csv%' THEN 'csv' ELSE 'json' END AS upload,
       (r->>'body_len')::int AS request_bytes
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r
WHERE r->>'method' = 'POST' ORDER BY 2;
SELECT test.try($$SELECT bulkops.bulk_upsert('px', 'SELECT 1 AS ref, ARRAY[1, 2] AS tags', key => 'ref',
                  options => '{"upload": "csv"}')$$);
SELECT test.try($$SELECT bulkops.bulk_upsert('px', 'SELECT 1 AS ref', key => 'ref',
                  options => '{"upload": "xml"}')$$);

-- every job of this suite is final
SELECT count(*) AS unfinished FROM bulkops.jobs WHERE state IN ('queued', 'running');
