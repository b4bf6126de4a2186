-- http_json: the dialect a target's options describe, end to end against the
-- mock's four shapes.  Every option is checked (create_target, alter_target,
-- enqueue) with an error naming it, and a job may not change the API's
-- description; (a) a synchronous array in order: receipts per row, inserts
-- always new, {operation} in the path, deletes of the keys themselves; (b)
-- results keyed by "ref", shuffled, partly failed, templates with "$key",
-- "$row" and "$operation", given as JSON and as JSON text, deletes with their
-- own method and path; (c) a remote task polled until done, its id kept as
-- the batch's remote_id, {operation} in the owner's query, a task that fails
-- without results; Salesforce sObject Collections (create, upsert with created,
-- per-record errors, at most 200 records per request); answers that go wrong
-- (fewer results, strangers, repeats, null results, 4xx with the answer's
-- text, 408, other 5xx, malformed 2xx) and idempotent_insert; without "ok" a
-- result fails only where an error pointer finds something, and "ok"'s
-- values compare by type, numbers as numbers; duplicate keys matched by key
-- go in separate requests; a mirror sync's upserts and deletes, each batch
-- built for its own operation.
\set VERBOSITY default
SET client_min_messages = warning;  -- wait()'s progress NOTICEs depend on timing
SELECT current_setting('test.mock_url') || '/http_json' AS url \gset
SELECT test.mock('POST', '/_control/reset');

-- the requests the mock took last: method, path and query, body (unless the
-- log keeps only its start)
CREATE FUNCTION hj_requests(n int) RETURNS TABLE (method text, path text, query jsonb, body jsonb)
LANGUAGE sql AS $$
    SELECT r->>'method', regexp_replace(r->>'path', '^(/_t/[^/]+)?/http_json', ''), r->'query',
           CASE WHEN r->>'body' <> '' AND (r->>'body_len')::int <= 2000 THEN (r->>'body')::jsonb END
    FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=' || n))
         WITH ORDINALITY AS t(r, i)
    ORDER BY i
$$;

-- 1. options: each is checked at create_target, naming it
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"method": "FETCH"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"delete_method": 1}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"path": "items"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"path": "/{oops}"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"path": "/{task_id}"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"path": "/a?b=1?c=2"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"path": "/a b"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"path": "/a#b"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"delete_path": "/a/../b"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"delete_path": "/%zz"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"path": "/{resource}"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"body": {"data": "$row"}}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"body": {"a": 1}}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"body": ["$rows", "$rows"]}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"body": "{\"rows\": $rows}"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"row": {"id": 1}}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"row": ["$rows"]}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"results": "data/results"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"remote_id": "/a~2b"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"match": "id"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"ok": 42}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"ok": {"pointer": "/s", "values": [{"a": 1}]}}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"ok": {"pointer": "/s", "value": ["ok"]}}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"ok": {"pointer": "s"}}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"ok": {"values": ["ok"]}}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"task_id": "/id"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL,
       '{"task_id": "/id", "poll_path": "/jobs", "done": {"pointer": "/done"}}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"poll_path": "/jobs/{task_id}"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"done": {"pointer": "/state", "values": ["done"]}}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL,
       '{"task_id": "/id", "poll_path": "/jobs/{task_id}", "done": "/done"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL,
       '{"task_id": "/id", "poll_path": "/jobs/{task_id}", "done": {"pointer": "/state", "values": []}}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"max_rows": 0}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL,
       jsonb_build_object('max_bytes', 1024, 'body', jsonb_build_object('pad', repeat('x', 1100), 'rows', '$rows')));
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"idempotent_insert": "yes"}');
SELECT bulkops.create_target('hj_bad', 'http_json', :'url', NULL, NULL, '{"row_template": "$row"}');
SELECT count(*) AS bad_targets_created FROM bulkops.targets WHERE name = 'hj_bad';
SELECT name, operations, idempotent, needs_key, options, max_batch_rows, max_batch_bytes, has_abort
FROM bulkops.dialects() WHERE name = 'http_json';

-- 2. (a) a synchronous array in order: POST {url}/sync/{resource} with the rows
-- as they are ($row), results paired by position
SELECT bulkops.create_target('hj_sync', 'http_json', :'url' || '/sync', 'items', NULL,
       '{"path": "/{resource}", "ok": {"pointer": "/status", "values": ["ok", "created"]},
         "remote_id": "/id", "error_code": "/error/code", "error_message": "/error/message"}');
SELECT options FROM bulkops.targets WHERE name = 'hj_sync';
CREATE TABLE hj_items AS
SELECT 'K-' || i AS id, 'item ' || i AS name, i * 10 AS qty,
       CASE WHEN i % 5 = 0 THEN 'qty ' || i * 10 || ' is too many' END AS _fail
FROM generate_series(1, 12) AS i;
SELECT bulkops.bulk_upsert('hj_sync', 'hj_items', key => 'id',
                           options => '{"batch_size": 6, "concurrency": 1}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed, rows_unknown, batches_total
FROM bulkops.jobs WHERE id = :job;
SELECT row_no, key, status, remote_id, created, http_status, error_code, error_message, attempts
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT method, path, query, body->0 AS first_item, jsonb_array_length(body) AS items
FROM hj_requests(2);

-- again: updated ("ok"), the same remote ids; created is not said (no option
-- "created"), and the stored items hold every column, the key included
SELECT bulkops.bulk_upsert('hj_sync', 'SELECT id, name || '' (2)'' AS name FROM hj_items WHERE _fail IS NULL',
                           key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status, created, count(*), min(remote_id) AS min_id, max(remote_id) AS max_id
FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2;
SELECT s->'K-1' AS stored FROM test.mock('GET', '/_control/http_json/store?shape=sync&resource=items') AS s;

-- 3. {operation} in the path: one target, an endpoint per operation.  An
-- insert always makes a new record (not idempotent), its key is optional,
-- and created is only what the API says (here nothing); an update or delete
-- of a key the API does not have fails with the API's error
SELECT bulkops.create_target('hj_ops', 'http_json', :'url' || '/sync', 'items', NULL,
       '{"path": "/{resource}/{operation}", "delete_method": "POST",
         "ok": {"pointer": "/status", "values": ["ok", "created"]},
         "remote_id": "/id", "error_code": "/error/code", "error_message": "/error/message"}');
SELECT bulkops.bulk_insert('hj_ops', $$SELECT 'new ' || i AS name FROM generate_series(1, 3) AS i$$) AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT row_no, key, status, remote_id, created FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT bulkops.bulk_insert('hj_ops', $$SELECT 'K-1' AS id, 'twin' AS name$$, key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, remote_id, created FROM bulkops.receipts WHERE job_id = :job;
SELECT method, path, body FROM hj_requests(1);
SELECT s->'http_json'->'created' AS created, s->'http_json'->'updated' AS updated,
       s->'http_json'->'max_applications_per_id' AS max_applied
FROM test.mock('GET', '/_control/stats') AS s;
SELECT bulkops.bulk_update('hj_ops', $$SELECT * FROM (VALUES ('K-2', 'changed'), ('K-404', 'nobody')) AS v(id, name)$$,
                           key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, remote_id, error_code, error_message FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT method, path, body FROM hj_requests(1);
SELECT bulkops.bulk_delete('hj_ops', $$SELECT * FROM (VALUES ('K-3'), ('K-404')) AS v(id)$$, key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, remote_id, error_code, error_message FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT method, path, body FROM hj_requests(1);

-- a delete with a method and path of its own, sending the keys themselves
-- (row template "$key"); deleting again fails, as for any idempotent delete
SELECT bulkops.create_target('hj_sync_del', 'http_json', :'url' || '/sync', 'items', NULL,
       '{"row": "$key", "delete_method": "DELETE", "delete_path": "/{resource}",
         "ok": {"pointer": "/status", "values": ["ok"]}, "remote_id": "/id",
         "error_code": "/error/code", "error_message": "/error/message"}');
SELECT bulkops.bulk_delete('hj_sync_del', $$VALUES ('K-4'), ('K-3')$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, remote_id, error_code FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT method, path, body FROM hj_requests(1);

-- 4. a job may not change the API's description, only send less at once
-- (max_rows, max_bytes) and turn idempotent_insert off; alter_target checks
-- as create_target does
SELECT bulkops.bulk_upsert('hj_sync', 'SELECT 1 AS id', key => 'id', options => '{"path": "/elsewhere"}');
SELECT bulkops.bulk_upsert('hj_sync', 'SELECT 1 AS id', key => 'id', options => '{"ok": "/fine"}');
SELECT bulkops.bulk_upsert('hj_sync', 'SELECT 1 AS id', key => 'id', options => '{"max_rows": 5000}');
SELECT bulkops.bulk_insert('hj_sync', 'SELECT 1 AS id', key => 'id', options => '{"idempotent_insert": true}');
SELECT bulkops.alter_target('hj_sync', options => '{"path": "/{resource}", "remote_id": "id"}');
SELECT bulkops.alter_target('hj_sync', resource => '');
SELECT count(*) AS jobs_left_behind FROM bulkops.jobs WHERE target = 'hj_sync' AND rows_total = 1;

-- 5. (b) results keyed by "ref", in another order, some failed: the body
-- carries the operation ("$operation"), each row is {"ref": key, "fields":
-- row}; the templates may also be given as JSON text in a string; deletes
-- have their own method and path
SELECT bulkops.create_target('hj_keyed', 'http_json', :'url' || '/keyed', 'products',
       '{"type": "header", "name": "X-Api-Key", "value": "keyed-key"}',
       '{"path": "/v2/{resource}/batch", "delete_path": "/v2/{resource}/batch/delete",
         "delete_method": "post",
         "body": "{\"mode\": \"$operation\", \"records\": \"$rows\"}",
         "row": {"ref": "$key", "fields": "$row"},
         "results": "/data/results", "match": "/ref", "ok": "/success",
         "remote_id": "/id", "created": "/created",
         "error_code": "/error/code", "error_message": "/error/message"}');
SELECT test.mock('POST', '/_control/config', '{"http_json": {"api_key": "keyed-key"}}');
SELECT bulkops.bulk_upsert('hj_keyed', 'SELECT id AS sku, name, qty, _fail FROM hj_items',
                           key => 'sku') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed, rows_unknown FROM bulkops.jobs WHERE id = :job;
SELECT row_no, key, status, remote_id, created, error_code, error_message
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT method, path, body->'mode' AS mode, body->'records'->0 AS first_record,
       jsonb_array_length(body->'records') AS records
FROM hj_requests(1);
-- the answer's order was not the request's, yet every receipt has its own row's id
SELECT count(*) AS receipts_checked,
       count(*) FILTER (WHERE r.remote_id = s.value->>'_remote_id') AS remote_id_matches,
       count(*) FILTER (WHERE s.value->>'name' = 'item ' || substr(r.key, 3)) AS data_matches
FROM bulkops.receipts r
JOIN jsonb_each(test.mock('GET', '/_control/http_json/store?shape=keyed&resource=products')) AS s
  ON s.key = r.key
WHERE r.job_id = :job AND r.status = 'succeeded';
SELECT bulkops.bulk_insert('hj_keyed', $$SELECT 'P-1' AS sku, 'again' AS name$$, key => 'sku') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, remote_id, created FROM bulkops.receipts WHERE job_id = :job;
SELECT bulkops.bulk_delete('hj_keyed', $$SELECT * FROM (VALUES ('K-1'), ('K-5'), ('nope')) AS v(sku)$$,
                           key => 'sku') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, remote_id, created, error_code, error_message
FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT method, path, body FROM hj_requests(1);
-- without the API key the whole request is refused: every row fails with the
-- answer's code and message, read with the same pointers as a result's
SELECT test.mock('POST', '/_control/config', '{"http_json": {"api_key": "other"}}');
SELECT bulkops.bulk_upsert('hj_keyed', $$SELECT 'K-1' AS sku$$, key => 'sku') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, http_status, error_code, error_message FROM bulkops.receipts WHERE job_id = :job;
SELECT test.mock('POST', '/_control/config', '{"http_json": {"api_key": null}}');

-- 6. at enqueue: matching by key, or "$key" in the row template, needs a key;
-- a row that cannot fit in one request (max_bytes) is refused
SELECT count(*) AS jobs_before FROM bulkops.jobs \gset
SELECT bulkops.bulk_insert('hj_keyed', $$SELECT 'x' AS name$$);
SELECT bulkops.bulk_insert('hj_sync_del', $$SELECT 'x' AS name$$);
SELECT bulkops.create_target('hj_small', 'http_json', :'url' || '/sync', 'items', NULL,
       '{"path": "/{resource}", "max_bytes": 1024}');
SELECT bulkops.bulk_upsert('hj_small', $$SELECT i AS id, repeat('x', 500 * i) AS note
                                        FROM generate_series(1, 3) AS i$$, key => 'id');
SELECT count(*) - :jobs_before AS jobs_left_behind FROM bulkops.jobs;

-- 7. (c) a remote task: the submit's answer gives its id, kept as the batch's
-- remote_id before it is polled until done holds; the results are read from
-- that poll's answer, matched by key; {operation} fills the owner's query;
-- max_rows cuts the batch into requests of two rows, one after the other
SELECT bulkops.create_target('hj_async', 'http_json', :'url' || '/async', 'orders', NULL,
       '{"path": "/{resource}/jobs?mode={operation}", "body": {"items": "$rows"},
         "row": {"key": "$key", "data": "$row"},
         "task_id": "/job/id", "poll_path": "/jobs/{task_id}",
         "done": {"pointer": "/state", "values": ["done", "failed"]},
         "results": "/items", "match": "/key", "ok": {"pointer": "/outcome", "values": ["ok"]},
         "remote_id": "/id", "created": "/created",
         "error_code": "/error/code", "error_message": "/error/message", "max_rows": 2}');
SELECT test.mock('POST', '/_control/config', '{"http_json": {"pending_polls": 2}}');
SELECT bulkops.bulk_upsert('hj_async', $$SELECT i AS id, 'order ' || i AS label,
                                         CASE WHEN i = 3 THEN 'no stock' END AS _fail
                                         FROM generate_series(1, 5) AS i$$, key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT row_no, key, status, remote_id, created, error_code, error_message, attempts
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT step, remote_id, last_error FROM bulkops.batches WHERE job_id = :job;
SELECT t.key AS task, t.value->>'op' AS op, t.value->>'state' AS state,
       (t.value->>'polls')::int AS polls, (t.value->>'items')::int AS items
FROM jsonb_each(test.mock('GET', '/_control/http_json/tasks')) AS t ORDER BY 1;
SELECT method, path, query, jsonb_path_query_array(body, '$.items[*].key') AS keys
FROM hj_requests(20) WHERE method = 'POST';
-- a delete goes to the same path with DELETE (the default delete_method)
SELECT bulkops.bulk_delete('hj_async', $$VALUES (1), (9)$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, remote_id, error_code FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT method, path, query, body FROM hj_requests(4) WHERE method <> 'GET';
-- a task that ends "failed" without results: its rows are unknown
SELECT test.mock('POST', '/_control/config', '{"http_json": {"pending_polls": 0, "fail_all": true}}');
SELECT bulkops.bulk_insert('hj_async', $$VALUES (21), (22)$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_message FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT test.mock('POST', '/_control/config', '{"http_json": {"fail_all": false}}');

-- 8. Salesforce sObject Collections, as its documentation describes them:
-- create (POST) and upsert by external id (PATCH) of up to 200 records, the
-- records' "attributes" given by the source, one SaveResult per record in
-- order (success, id, errors[0].statusCode and .message, created on upsert);
-- a batch of 250 goes as 200 and 50.  Create names no resource in its path
-- (each record names its type): its target has none
SELECT bulkops.create_target('hj_sf_insert', 'http_json', :'url' || '/salesforce/services/data/v62.0',
       NULL, '{"type": "bearer", "token": "sf-token"}',
       '{"path": "/composite/sobjects", "body": {"allOrNone": false, "records": "$rows"},
         "ok": "/success", "remote_id": "/id",
         "error_code": "/errors/0/statusCode", "error_message": "/errors/0/message",
         "max_rows": 200}');
SELECT bulkops.create_target('hj_sf_upsert', 'http_json', :'url' || '/salesforce/services/data/v62.0',
       'Account', '{"type": "bearer", "token": "sf-token"}',
       '{"method": "PATCH", "path": "/composite/sobjects/{resource}/External_Id__c",
         "body": {"allOrNone": false, "records": "$rows"},
         "ok": "/success", "remote_id": "/id", "created": "/created",
         "error_code": "/errors/0/statusCode", "error_message": "/errors/0/message",
         "max_rows": 200}');
SELECT test.mock('POST', '/_control/config', '{"http_json": {"bearer": "sf-token"}}');
SELECT bulkops.bulk_insert('hj_sf_insert', $$SELECT jsonb_build_object('type', 'Account') AS attributes,
        'Acme ' || i AS "Name", CASE WHEN i = 2 THEN 'Name is reserved' END AS _fail
        FROM generate_series(1, 3) AS i$$) AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT row_no, status, remote_id, created, error_code, error_message FROM bulkops.receipts
WHERE job_id = :job ORDER BY row_no;
SELECT method, path, body->'allOrNone' AS all_or_none, body->'records'->0 AS first_record FROM hj_requests(1);
SELECT bulkops.bulk_upsert('hj_sf_upsert', $$SELECT jsonb_build_object('type', 'Account') AS attributes,
        'EXT-' || i AS "External_Id__c", 'Account ' || i AS "Name"
        FROM generate_series(1, 250) AS i$$, key => 'External_Id__c',
        options => '{"batch_size": 250}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status, created, count(*) FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2;
SELECT s->'requests'->'PATCH /http_json/salesforce/services/data/{version}/composite/sobjects/{sobject}/{field}' AS requests,
       s->'http_json'->'bad_requests' AS refused
FROM test.mock('GET', '/_control/stats') AS s;
SELECT bulkops.bulk_upsert('hj_sf_upsert', $$SELECT jsonb_build_object('type', 'Account') AS attributes,
        'EXT-' || i AS "External_Id__c", 'Account ' || i || ' (2)' AS "Name"
        FROM generate_series(249, 251) AS i$$, key => 'External_Id__c') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, created, remote_id ~ '^001[0-9A-Z]{15}$' AS sf_id FROM bulkops.receipts
WHERE job_id = :job ORDER BY key;
-- an expired session: the whole request is refused with Salesforce's error array
SELECT test.mock('POST', '/_control/config', '{"http_json": {"bearer": "renewed"}}');
SELECT bulkops.bulk_upsert('hj_sf_upsert', $$SELECT jsonb_build_object('type', 'Account') AS attributes,
        'EXT-1' AS "External_Id__c"$$, key => 'External_Id__c') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, http_status, error_code, error_message FROM bulkops.receipts WHERE job_id = :job;
SELECT test.mock('POST', '/_control/config', '{"http_json": {"bearer": null}}');

-- 9. answers that go wrong (the mock's faults, each on a target of its own);
-- an option given null in hj_case's options is left out
SELECT current_setting('test.mock_url') AS mock \gset
CREATE FUNCTION hj_case(tag text, options jsonb DEFAULT '{}') RETURNS text
LANGUAGE sql AS $$
    SELECT bulkops.create_target(tag, 'http_json',
               current_setting('test.mock_url') || '/_t/' || tag || '/http_json/sync', 'items', NULL,
               jsonb_strip_nulls('{"path": "/{resource}", "ok": {"pointer": "/status", "values": ["ok", "created"]},
                 "remote_id": "/id", "error_code": "/error/code", "error_message": "/error/message",
                 "max_attempts": 3}'::jsonb || options))::text || tag
$$;
CREATE FUNCTION hj_fault(tag text, rule jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT test.mock('POST', '/_control/faults',
                     jsonb_build_object('rules', jsonb_build_array(
                         jsonb_build_object('path', '^/_t/' || tag || '/') || rule)))
$$;
CREATE FUNCTION hj_outcome(job bigint) RETURNS TABLE (key text, status text, attempts int, error_message text)
LANGUAGE sql AS $$
    SELECT key, status, attempts, error_message FROM bulkops.receipts WHERE job_id = job ORDER BY row_no
$$;
SELECT test.mock('DELETE', '/_control/faults');
SELECT hj_case('f_fewer'), hj_case('f_null'), hj_case('f_422'), hj_case('f_413'),
       hj_case('f_408_up'), hj_case('f_408_in'), hj_case('f_507_up'), hj_case('f_507_in'),
       hj_case('f_bad_in'), hj_case('f_bad_idem', '{"idempotent_insert": true}'),
       hj_case('f_500_idem', '{"idempotent_insert": true}'),
       hj_case('f_tilde', '{"remote_id": "/x~1y~0z", "ok": "/a/1/s"}'),
       hj_case('f_no_ok', '{"ok": null}'),
       hj_case('f_ok_num', '{"ok": {"pointer": "/status", "values": ["ok", "created", 200]}}');
SELECT hj_fault('f_fewer', '{"action": "mutate", "edits": [{"at": "", "drop": 1}]}'),
       hj_fault('f_null', '{"action": "mutate", "edits": [{"at": "0", "set": null}, {"at": "1", "set": "ok"}]}'),
       hj_fault('f_422', '{"action": "status", "status": 422, "content_type": "text/plain",
                           "body": "quota of\r\nrows exceeded  "}'),
       hj_fault('f_413', '{"action": "status", "status": 413, "body": ""}'),
       hj_fault('f_408_up', '{"action": "status", "status": 408}'),
       hj_fault('f_408_in', '{"action": "status", "status": 408}'),
       hj_fault('f_507_up', '{"action": "status", "status": 507, "when": "after", "body": "disk full"}'),
       hj_fault('f_507_in', '{"action": "status", "status": 507, "when": "after", "body": "disk full"}'),
       hj_fault('f_bad_in', '{"action": "malformed", "when": "after"}'),
       hj_fault('f_bad_idem', '{"action": "malformed", "when": "after"}'),
       hj_fault('f_500_idem', '{"action": "status", "status": 500, "when": "after"}'),
       -- pointers with escaped names and array indexes
       hj_fault('f_tilde', '{"action": "mutate", "edits": [{"at": "*.x/y~z", "set": "escaped"},
                             {"at": "*.a", "set": [0, {"s": true}]}, {"at": "2.a.1.s", "set": false}]}'),
       -- without "ok" a result succeeds unless an error pointer finds a value
       -- other than null: the second has an error beside its status "ok"
       hj_fault('f_no_ok', '{"action": "mutate", "edits": [{"at": "1.error", "set": {"code": "E42", "message": "refused"}},
                             {"at": "2.error", "set": null}]}'),
       -- values of ok are compared by type, numbers as numbers
       hj_fault('f_ok_num', '{"action": "mutate", "edits": [{"at": "0.status", "set": 200},
                             {"at": "1.status", "set": 200.0}, {"at": "2.status", "set": "200"}]}') IS NOT NULL AS faults_set;
SELECT test.mock('POST', '/_control/marks', '{"pattern": "(mark-f_[a-z0-9_]+-[0-9])"}');
CREATE TABLE hj_fault_jobs AS
SELECT tag, CASE WHEN tag ~ '_(in|idem)$' THEN
            bulkops.bulk_insert(tag, format($$SELECT 'R-' || i AS id, 'mark-%s-' || i AS tag FROM generate_series(1, 3) AS i$$, tag), key => 'id')
       ELSE bulkops.bulk_upsert(tag, format($$SELECT 'R-' || i AS id, 'mark-%s-' || i AS tag FROM generate_series(1, 3) AS i$$, tag), key => 'id')
       END AS job
FROM unnest(ARRAY['f_fewer', 'f_null', 'f_422', 'f_413', 'f_408_up', 'f_408_in', 'f_507_up',
                  'f_507_in', 'f_bad_in', 'f_bad_idem', 'f_500_idem', 'f_tilde', 'f_no_ok',
                  'f_ok_num']) AS tag;
SELECT tag, bulkops.wait(job, '60 s') FROM hj_fault_jobs ORDER BY job;
SELECT f.tag, o.*, r.faulted
FROM hj_fault_jobs f, hj_outcome(f.job) o,
     LATERAL (SELECT count(*) FILTER (WHERE x->>'fired' <> '0') AS faulted
              FROM jsonb_array_elements(test.mock('GET', '/_control/faults')->'rules') x
              WHERE x->>'path' LIKE '%' || f.tag || '%') r
ORDER BY f.job, o.key;
SELECT f.tag, b.last_error FROM hj_fault_jobs f JOIN bulkops.batches b ON b.job_id = f.job ORDER BY f.job;
SELECT key, status, remote_id, error_message FROM bulkops.receipts
WHERE job_id = (SELECT job FROM hj_fault_jobs WHERE tag = 'f_tilde') ORDER BY row_no;
SELECT key, status, error_code, error_message FROM bulkops.receipts
WHERE job_id = (SELECT job FROM hj_fault_jobs WHERE tag = 'f_no_ok') ORDER BY row_no;
-- how often the remote side was given each insert's rows: a 408 applied
-- nothing (resent), an insert the target says is idempotent went twice; a 500
-- still leaves its rows unknown (the worker's own rule, see the protocol page)
SELECT f.tag, m->'sent' AS rows_sent, m->'sent_total' AS times_sent
FROM hj_fault_jobs f,
     test.mock('GET', '/_control/marks?upto=3&prefix=mark-' || f.tag || '-') AS m
WHERE f.tag ~ '_(in|idem)$' ORDER BY f.job;
SELECT test.mock('DELETE', '/_control/faults');
SELECT test.mock('POST', '/_control/marks', '{}');

-- results matched by key: one for a key not sent and one repeating a key
-- are ignored and said in last_error
SELECT hj_fault('f_odd_keys', '{"action": "mutate", "edits": [{"at": "data.results", "dup": 1},
                                {"at": "data.results.0.ref", "set": "stranger"}]}') IS NOT NULL AS fault_set;
SELECT test.mock('POST', '/_control/config', '{"http_json": {"shuffle": false}}');
SELECT bulkops.create_target('f_odd_keys', 'http_json', :'mock' || '/_t/f_odd_keys/http_json/keyed', 'odd', NULL,
       (SELECT options FROM bulkops.targets WHERE name = 'hj_keyed'));
SELECT bulkops.bulk_upsert('f_odd_keys', $$VALUES ('D-1'), ('D-2'), ('D-3')$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT row_no, key, status, created, error_message FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT last_error FROM bulkops.batches WHERE job_id = :job;
SELECT test.mock('DELETE', '/_control/faults');

-- the same key twice in a batch matched by key: the answer could not tell the
-- two apart, so the second goes in a request of its own once the first has
-- its outcome (created, then updated)
SELECT bulkops.bulk_upsert('hj_keyed', $$VALUES ('D-1', 1), ('D-2', 2), ('D-1', 3), ('D-3', 4)$$,
                           key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT row_no, key, status, created, attempts FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT method, path, jsonb_path_query_array(body, '$.records[*].fields.column2') AS rows_sent
FROM hj_requests(2);

-- 10. a mirror sync: one job whose batches each carry one operation, each sent
-- with its own method, path and "$operation"; a delete's row is its key alone
CREATE TABLE hj_mirror AS SELECT 'M-' || i AS sku, 'item ' || i AS name FROM generate_series(1, 4) AS i;
SELECT bulkops.create_sync('hj_mirror', 'hj_keyed', 'hj_mirror', 'sku', 'mirror');
SELECT bulkops.run_sync('hj_mirror') AS job \gset
SELECT bulkops.wait(:job, '60 s');
DELETE FROM hj_mirror WHERE sku IN ('M-2', 'M-3');
UPDATE hj_mirror SET name = 'renamed' WHERE sku = 'M-4';
SELECT bulkops.run_sync('hj_mirror') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT operation, key, status, created FROM bulkops.receipts WHERE job_id = :job ORDER BY operation, key;
-- (the two batches go out side by side: in either order)
SELECT method, path, body->'mode' AS mode, body->'records' AS records FROM hj_requests(2)
ORDER BY path;
SELECT array_agg(k ORDER BY k) AS remote_mirror_keys
FROM jsonb_object_keys(test.mock('GET', '/_control/http_json/store?shape=keyed&resource=products')) AS k
WHERE k LIKE 'M-%';
-- sql/sync.sql counts every sync of the database
SELECT bulkops.drop_sync('hj_mirror');

SELECT count(*) AS unfinished FROM bulkops.jobs WHERE state IN ('queued', 'running');
