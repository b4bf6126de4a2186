-- sap_fsm: the SAP Field Service dialect end to end against the mock.  Targets
-- refuse a missing dto_version and bad options; PATCH and PUT upserts and
-- DELETE go to the bulk endpoints by externalId with the X-Client/Account/
-- Company headers and dtos; force adds forceUpdate/forceDelete; lastChanged is
-- sent and its conflicts (409) fail their rows only; 207 answers, shuffled,
-- are matched by externalId (201 created, ids as remote_id, ex.error and
-- ex.message on failures, unknown rows without an element, strangers
-- ignored); duplicate keys of a batch go in separate requests, each row with
-- its own outcome; answers other than 207 are retried or fail the batch.
\set VERBOSITY default
SET client_min_messages = warning;  -- wait()'s progress NOTICEs depend on timing
SELECT current_setting('test.mock_url') || '/sap_fsm' AS url \gset
SELECT test.mock('POST', '/_control/reset');

-- 1. options are checked at create_target, alter_target and enqueue
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', 'Activity');
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', NULL, NULL, '{"dto_version": 43}');
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', 'Activity/../x', NULL, '{"dto_version": 43}');
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', 'Activity', NULL, '{"dto_version": "43"}');
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', 'Activity', NULL, '{"dto_version": 43, "method": "POST"}');
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', 'Activity', NULL,
                             '{"dto_version": 43, "account_id": "1\r\nX-Evil: 1"}');
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', 'Activity', NULL, '{"dto_version": 43, "forse": true}');

SELECT bulkops.create_target('fsm', 'sap_fsm', :'url', 'Activity',
       '{"type": "bearer", "token": "fsm-token"}',
       '{"dto_version": 43, "client_id": "acme-sync", "client_version": "2.1",
         "account_id": "1234", "company_id": "5678"}');
SELECT bulkops.alter_target('fsm', options => '{"client_id": "acme-sync"}');
SELECT options->>'dto_version' AS dto_version FROM bulkops.targets WHERE name = 'fsm';
SELECT bulkops.bulk_upsert('fsm', 'SELECT 1 AS id', key => 'id', options => '{"method": "GET"}');
SELECT bulkops.bulk_insert('fsm', 'SELECT 1 AS id', key => 'id');
SELECT bulkops.bulk_upsert('fsm', 'SELECT 1 AS id');
SELECT bulkops.bulk_upsert('fsm', 'SELECT 1 AS id, 2 AS "externalId"', key => 'id');
SELECT count(*) AS jobs_left_behind FROM bulkops.jobs WHERE target = 'fsm';

CREATE TABLE activities AS
SELECT 'A-' || i AS ext, 'visit ' || i AS subject, i % 3 AS priority,
       CASE WHEN i % 10 = 0 THEN 'subject ' || i || ' is too long' END AS _fail
FROM generate_series(1, 30) AS i;

-- 2. PATCH: created, with the remote ids, the headers and dtos; per-row failures
SELECT test.mock('POST', '/_control/config',
                 '{"sap_fsm": {"bearer": "fsm-token", "headers": {"X-Account-ID": "1234"}}}');
SELECT bulkops.bulk_upsert('fsm', 'activities', key => 'ext',
                           options => '{"batch_size": 12}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed, rows_unknown, batches_total
FROM bulkops.jobs WHERE id = :job;
SELECT status, created, http_status, error_code, error_message, count(*)
FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 5;
SELECT r->>'method' AS method, r->>'path' AS path, r->'query' AS query,
       r->'headers'->>'X-Client-ID' AS client_id,
       r->'headers'->>'X-Client-Version' AS client_version,
       r->'headers'->>'X-Account-ID' AS account, r->'headers'->>'X-Company-ID' AS company,
       r->'headers'->>'Authorization' AS auth, r->'headers'->>'Content-Type' AS content_type
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;
-- the key is sent as externalId only; the other columns as they are
SELECT (r->>'body')::jsonb->0 AS first_item
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=3')) AS r
WHERE (r->>'body')::jsonb->0->>'externalId' = 'A-1';

-- 3. answers come shuffled: every receipt carries its own row's remote id
SELECT count(*) AS receipts_checked,
       count(*) FILTER (WHERE r.remote_id = s.value->>'id') AS remote_id_matches,
       count(*) FILTER (WHERE s.value->>'subject' = 'visit ' || substr(r.key, 3)) AS data_matches
FROM bulkops.receipts r
JOIN jsonb_each(test.mock('GET', '/_control/sap_fsm/store?resource=Activity')) AS s
  ON s.key = r.key
WHERE r.job_id = :job AND r.status = 'succeeded';

-- 4. again: updated, not created
SELECT bulkops.bulk_upsert('fsm', 'SELECT ext, subject || '' (2)'' AS subject FROM activities WHERE _fail IS NULL',
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status, created, count(*) FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2;
SELECT s->'sap_fsm'->'created' AS created, s->'sap_fsm'->'updated' AS updated,
       s->'sap_fsm'->'max_applications_per_id' AS max_applied
FROM test.mock('GET', '/_control/stats') AS s;

-- 5. PUT replaces whole objects (a target's choice: a job may not widen PATCH)
SELECT bulkops.create_target('fsm_put', 'sap_fsm', :'url', 'Activity',
       '{"type": "bearer", "token": "fsm-token"}',
       '{"dto_version": 43, "account_id": "1234", "company_id": "5678", "method": "PUT"}');
SELECT bulkops.bulk_upsert('fsm_put', 'SELECT ext, priority FROM activities WHERE ext = ''A-1''',
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status, created FROM bulkops.receipts WHERE job_id = :job;
SELECT r->>'method' AS method FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;
SELECT (s->'A-1') - 'id'::text - 'lastChanged'::text AS stored
FROM test.mock('GET', '/_control/sap_fsm/store?resource=Activity') AS s;

-- 6. lastChanged: a stale one is a 409 for its row only; the current one passes
CREATE TABLE remote AS
SELECT key AS ext, (value->>'lastChanged')::bigint AS last_changed
FROM jsonb_each(test.mock('GET', '/_control/sap_fsm/store?resource=Activity'));
SELECT bulkops.bulk_upsert('fsm', $$SELECT ext, 'moved' AS subject,
        CASE WHEN ext IN ('A-2', 'A-3') THEN last_changed - 1 ELSE last_changed END AS "lastChanged"
        FROM remote WHERE ext IN ('A-2', 'A-3', 'A-4', 'A-5')$$, key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed FROM bulkops.jobs WHERE id = :job;
SELECT key, status, error_code, error_message ~ '^object was changed' AS conflict_message
FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT jsonb_path_query_array((r->>'body')::jsonb, '$[*].lastChanged.type()') AS last_changed_sent_as
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;

-- 7. force: the same stale lastChanged passes with forceUpdate=true (on a
-- target that has it: a job may not turn it on)
SELECT bulkops.create_target('fsm_force', 'sap_fsm', :'url', 'Activity',
       '{"type": "bearer", "token": "fsm-token"}',
       '{"dto_version": 43, "account_id": "1234", "company_id": "5678", "force": true}');
SELECT bulkops.bulk_upsert('fsm_force', $$SELECT ext, 'forced' AS subject, last_changed - 1 AS "lastChanged"
        FROM remote WHERE ext IN ('A-2', 'A-3')$$, key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, created FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT r->'query' AS query FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;

-- 8. DELETE: externalId (and lastChanged) only; unknown ids fail 404, stale
-- ones 409, force deletes them anyway
SELECT bulkops.bulk_delete('fsm', $$SELECT ext, subject FROM activities WHERE ext IN ('A-6', 'A-7')
                                    UNION ALL SELECT 'nope', 'gone'$$,
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, created, remote_id IS NOT NULL AS has_remote_id, error_code, error_message
FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT r->>'method' AS method, r->>'path' AS path, r->'query' AS query, (r->>'body')::jsonb AS body
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;
SELECT bulkops.bulk_delete('fsm', $$SELECT ext, last_changed - 1 AS "lastChanged" FROM remote WHERE ext = 'A-8'$$,
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_code FROM bulkops.receipts WHERE job_id = :job;
SELECT bulkops.bulk_delete('fsm_force', $$SELECT ext, last_changed - 1 AS "lastChanged" FROM remote WHERE ext = 'A-8'$$,
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status FROM bulkops.receipts WHERE job_id = :job;
SELECT r->'query' AS query FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;
SELECT s ? 'A-6' AS a6_left, s ? 'A-8' AS a8_left
FROM test.mock('GET', '/_control/sap_fsm/store?resource=Activity') AS s;

-- 9. duplicate keys in one batch: one request per occurrence, each row its
-- own true outcome (created first, then updated), never two in a request
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"sap_fsm": {"bearer": "fsm-token"}}');
SELECT bulkops.bulk_upsert('fsm', $$VALUES ('D-1', 1), ('D-2', 2), ('D-1', 3), ('D-3', 4), ('D-1', 5), ('D-2', 6)$$,
                           key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT row_no, key, status, created, attempts FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT (s->'sap_fsm'->>'requests')::int AS requests,
       (s->'sap_fsm'->>'requests_with_duplicates')::int AS requests_with_duplicates
FROM test.mock('GET', '/_control/stats') AS s;
SELECT test.mock('GET', '/_control/sap_fsm/applied?resource=Activity') AS applied;
SELECT s->'D-1'->'column2' AS last_write_wins
FROM test.mock('GET', '/_control/sap_fsm/store?resource=Activity') AS s;
SELECT n, r->>'body' AS body
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) WITH ORDINALITY AS e(r, n)
ORDER BY n;

-- 10. an element missing: that row is unknown; an element for an externalId
-- never sent is ignored
SELECT test.mock('POST', '/_control/config',
                 '{"sap_fsm": {"omit_external_ids": ["A-2"], "extra_external_ids": ["A-99", "A-1"]}}');
SELECT bulkops.bulk_upsert('fsm', 'SELECT ext, subject FROM activities WHERE ext IN (''A-2'', ''A-3'')',
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, created, error_message FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT count(*) AS receipts_for_strangers FROM bulkops.receipts
WHERE job_id = :job AND key IN ('A-99', 'A-1');

-- 11. answers other than 207
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"sap_fsm": {"bearer": "fsm-token"}}');
-- a 503 and a 200 are retried: every row still succeeds, applied once
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"path": "/externalId/bulk$", "action": "status", "status": 503, "headers": {"Retry-After": "0"}},
    {"path": "/externalId/bulk$", "action": "status", "status": 200, "body": "[]"},
    {"path": "/externalId/bulk$", "action": "malformed", "status": 207, "body": "[{\"status\": 20"}]}');
SELECT bulkops.bulk_upsert('fsm', 'SELECT ext, subject FROM activities WHERE ext IN (''A-1'', ''A-2'')',
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT key, status, created, attempts, http_status FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT (s->>'faults_fired')::int AS faults_fired,
       (s->'sap_fsm'->>'max_applications_per_id')::int AS max_applied
FROM test.mock('GET', '/_control/stats') AS s;
-- a 400 (no account header: the target has no account_id) fails the batch
-- with the remote code and message, at once
SELECT bulkops.create_target('fsm_noacct', 'sap_fsm', :'url', 'Activity',
       '{"type": "bearer", "token": "fsm-token"}', '{"dto_version": 43, "company_id": "5678"}');
SELECT bulkops.bulk_upsert('fsm_noacct', 'SELECT ext FROM activities WHERE ext IN (''A-1'', ''A-2'')',
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_failed, last_error FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT status, attempts, http_status, error_code, error_message
FROM bulkops.receipts WHERE job_id = :job;
SELECT r->'headers' ? 'X-Account-ID' AS account_sent, r->'headers'->>'X-Client-ID' AS default_client_id,
       r->'headers'->>'X-Client-Version' AS default_client_version
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;
-- a 401 fails too
SELECT bulkops.alter_target('fsm_noacct', auth => '{"type": "bearer", "token": "wrong"}',
                            options => '{"dto_version": 43, "company_id": "5678", "account_id": "1"}');
SELECT bulkops.bulk_delete('fsm_noacct', 'SELECT ext FROM activities WHERE ext = ''A-1''',
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT DISTINCT status, http_status, error_code, error_message FROM bulkops.receipts WHERE job_id = :job;
-- a 413 for a single row fails it alone, with the remote code
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"path": "/externalId/bulk$", "action": "status", "status": 413,
     "body": "{\"error\": \"CA-413\", \"message\": \"too many items\"}"}]}');
SELECT bulkops.bulk_upsert('fsm', 'SELECT ext FROM activities WHERE ext = ''A-1''', key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status, http_status, error_code, error_message FROM bulkops.receipts WHERE job_id = :job;
-- a remote side that keeps answering 502: rows fail after max_attempts
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"path": "/externalId/bulk$", "times": -1, "action": "status", "status": 502}]}');
SELECT bulkops.bulk_upsert('fsm', 'SELECT ext FROM activities WHERE ext = ''A-1''', key => 'ext',
                           options => '{"max_attempts": 2}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status, attempts, http_status, error_message FROM bulkops.receipts WHERE job_id = :job;
SELECT test.mock('DELETE', '/_control/faults');

-- 12. several DTO versions in one request: option dto_versions adds the
-- versions of the DTOs the objects embed or refer to to dtos, checked like
-- dto_version
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', 'Activity', NULL,
                             '{"dto_version": 43, "dto_versions": {"Address": "22"}}');
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', 'Activity', NULL,
                             '{"dto_version": 43, "dto_versions": {"Address;x": 22}}');
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', 'Activity', NULL,
                             '{"dto_version": 43, "dto_versions": {"Activity": 44}}');
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', 'Activity', NULL,
                             '{"dto_version": 43, "dto_versions": [22]}');
SELECT bulkops.create_target('fsm_dtos', 'sap_fsm', :'url', 'Activity',
       '{"type": "bearer", "token": "fsm-token"}',
       '{"dto_version": 43, "dto_versions": {"Address": 22, "UdfValue": 13},
         "account_id": "1234", "company_id": "5678"}');
SELECT bulkops.bulk_upsert('fsm_dtos', 'SELECT 1 AS id', key => 'id',
                           options => '{"dto_versions": {"Address": 23}}');
SELECT bulkops.bulk_upsert('fsm_dtos', $$SELECT 'T-1' AS ext, json_build_object('city', 'Bern') AS address$$,
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status, created FROM bulkops.receipts WHERE job_id = :job;
SELECT r->'query'->>'dtos' AS dtos FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;

-- 13. remote_version: each upsert's receipt keeps the lastChanged its 207
-- element gave (deletes and failures none), as the store has it now
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"sap_fsm": {"bearer": "fsm-token"}}');
SELECT bulkops.bulk_upsert('fsm', $$SELECT 'V-' || i AS ext, 'first' AS subject,
        CASE WHEN i = 4 THEN 'no' END AS _fail FROM generate_series(1, 5) AS i$$,
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT r.key, r.status, r.remote_version = (s.value->>'lastChanged') AS is_stored_version,
       r.remote_version IS NULL AS no_version
FROM bulkops.receipts r
LEFT JOIN jsonb_each(test.mock('GET', '/_control/sap_fsm/store?resource=Activity')) AS s ON s.key = r.key
WHERE r.job_id = :job ORDER BY r.key;
SELECT bulkops.bulk_delete('fsm', $$SELECT 'V-5' AS ext$$, key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, remote_version FROM bulkops.receipts WHERE job_id = :job;
SELECT key, job_id = :job AS from_the_delete, remote_version IS NULL AS no_version
FROM bulkops.latest_receipts WHERE target = 'fsm' AND key = 'V-5';

-- 14. last_changed = from_receipts: each key's last successful upsert through
-- the target gives the lastChanged sent, so a write made elsewhere since (V-2,
-- through another target) is a 409, the others pass without force; a key
-- without one (V-4 failed, V-5 deleted, V-6 new) sends none; a source column
-- that is not null wins (V-3)
SELECT bulkops.create_target('fsm_bad', 'sap_fsm', :'url', 'Activity', NULL,
                             '{"dto_version": 43, "last_changed": "latest"}');
SELECT bulkops.bulk_upsert('fsm_force', $$SELECT 'V-2' AS ext, 'elsewhere' AS subject$$,
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT bulkops.bulk_upsert('fsm', $$SELECT 'V-' || i AS ext, 'second' AS subject,
        CASE WHEN i = 3 THEN 1 END AS "lastChanged" FROM generate_series(1, 6) AS i$$,
                           key => 'ext', options => '{"last_changed": "from_receipts"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_code, remote_version IS NOT NULL AS has_version
FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT e->>'externalId' AS ext, e->'lastChanged' AS sent
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r,
     jsonb_array_elements((r->>'body')::jsonb) AS e ORDER BY 1;
-- and again: the versions the job just recorded pass in turn (V-1), the
-- conflict stays until it is resolved (V-2)
SELECT bulkops.bulk_upsert('fsm', $$SELECT 'V-' || i AS ext, 'third' AS subject FROM generate_series(1, 2) AS i$$,
                           key => 'ext', options => '{"last_changed": "from_receipts"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_code FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
-- without the option nothing is sent: the last write wins
SELECT bulkops.bulk_upsert('fsm', $$SELECT 'V-2' AS ext, 'fourth' AS subject$$, key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status FROM bulkops.receipts WHERE job_id = :job;
SELECT (r->>'body')::jsonb->0 ? 'lastChanged' AS sent
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;
-- the versions are read with the caller's rights: a role that may push through
-- the target but not see its owner's receipts finds none, and sends none
CREATE ROLE fsm_pusher;
SELECT bulkops.grant_target('fsm', 'fsm_pusher', 'push');
SET ROLE fsm_pusher;
SELECT count(*) AS receipts_it_sees FROM bulkops.receipts r JOIN bulkops.jobs j ON j.id = r.job_id
WHERE j.target = 'fsm';
SELECT bulkops.bulk_upsert('fsm', $$SELECT 'V-1' AS ext, 'fifth' AS subject$$, key => 'ext',
                           options => '{"last_changed": "from_receipts"}') AS job \gset
RESET ROLE;
SELECT bulkops.wait(:job, '60 s');
SELECT key, status FROM bulkops.receipts WHERE job_id = :job;
SELECT (r->>'body')::jsonb->0 ? 'lastChanged' AS sent
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;

-- 15. 413: the request's rows go again half at a time, not counted as
-- attempts, the limit doubling back after each 207; a row too large alone
-- fails by itself and the rest go on
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config',
                 '{"sap_fsm": {"bearer": "fsm-token", "max_items": 3, "shuffle": false}}');
SELECT bulkops.bulk_upsert('fsm', $$SELECT 'S-' || i AS ext, i AS n FROM generate_series(1, 10) AS i$$,
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed, last_error FROM bulkops.jobs WHERE id = :job;
SELECT status, attempts, count(*) FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2;
SELECT n, jsonb_array_length((r->>'body')::jsonb) AS items
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) WITH ORDINALITY AS e(r, n)
ORDER BY n;
SELECT (s->'sap_fsm'->>'too_large')::int AS answered_413,
       s->'sap_fsm'->'max_applications_per_id' AS max_applied
FROM test.mock('GET', '/_control/stats') AS s;
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config',
                 '{"sap_fsm": {"bearer": "fsm-token", "too_large_external_ids": ["L-3"]}}');
SELECT bulkops.bulk_upsert('fsm', $$SELECT 'L-' || i AS ext, i AS n FROM generate_series(1, 6) AS i$$,
                           key => 'ext') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed FROM bulkops.jobs WHERE id = :job;
SELECT key, status, attempts, http_status, error_code, error_message
FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT n, jsonb_path_query_array((r->>'body')::jsonb, '$[*].externalId') AS items
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) WITH ORDINALITY AS e(r, n)
ORDER BY n;

SELECT count(*) AS unfinished FROM bulkops.jobs WHERE state IN ('queued', 'running');
