-- blueconic: the BlueConic groups and profiles dialect end to end against the
-- mock.  Targets refuse resources other than groups and profiles and groups
-- without group_type_id; a batch_size above 1,000 is capped with a NOTICE;
-- rows go as PUT /rest/v2/groups|profiles entries whose identifier is the
-- row number, every other column a property (arrays as several values, NULL
-- as none), strategy UPSERT with create_missing, else UPDATE, and DELETE;
-- shuffled answers are matched by identifier, duplicates within a request
-- included; CREATED/MODIFIED/UNCHANGED/DELETED succeed, SKIPPED, NOTFOUND,
-- UNKNOWN_GROUP_TYPE and unknown states fail with the state as error_code,
-- rows without an element are unknown; a 413 resends the entries beyond the
-- first 1,000 and leaves unlisted ones among those in doubt; 429 and 503
-- are retried, other 4xx fail the batch with the remote message; option
-- feedback sums each answer's counts on job_progress and logs them (its
-- NOTIFY is TAP 027's); property_strategies sends a strategy per column; OAuth
-- client credentials find the token endpoint under the target's url.
\set VERBOSITY default
SET client_min_messages = warning;  -- wait()'s progress NOTICEs depend on timing
SELECT current_setting('test.mock_url') || '/blueconic' AS url \gset
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"blueconic": {"bearer": "bc-token"}}');

-- the last request's entries, as sent
CREATE FUNCTION bc_sent(n int DEFAULT 1) RETURNS SETOF jsonb LANGUAGE sql AS $$
    SELECT (r->>'body')::jsonb
    FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=' || n)) AS r
$$;
-- option feedback's lines in the server log for a job (its id masked);
-- pg_regress writes the log next to the temporary instance's directory
CREATE FUNCTION bc_logged(job bigint) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT regexp_replace(m[1], '^bulkops job \d+ ', 'bulkops job N ')
    FROM regexp_matches(pg_read_file(current_setting('data_directory') || '/../../log/postmaster.log'),
                        '(bulkops job ' || job || ' batch \d+: blueconic answered [^\n]*)', 'g') AS m
    ORDER BY 1
$$;
-- a group's stored properties
CREATE FUNCTION bc_group(key text, type text DEFAULT 'company') RETURNS jsonb LANGUAGE sql AS $$
    SELECT test.mock('GET', '/_control/blueconic/store?resource=groups')
           -> (type || '/' || key) -> 'properties'
$$;

-- 1. targets: resource and options are checked at create_target, alter_target
-- and enqueue
SELECT bulkops.create_target('bc_bad', 'blueconic', :'url', 'segments', NULL, '{"group_type_id": "company"}');
SELECT bulkops.create_target('bc_bad', 'blueconic', :'url', NULL, NULL, '{"group_type_id": "company"}');
SELECT bulkops.create_target('bc_bad', 'blueconic', :'url', 'groups');
SELECT bulkops.create_target('bc_bad', 'blueconic', :'url', 'groups', NULL, '{"group_type_id": ""}');
SELECT bulkops.create_target('bc_bad', 'blueconic', :'url', 'profiles', NULL, '{"group_type_id": "company"}');
SELECT bulkops.create_target('bc_bad', 'blueconic', :'url', 'groups', NULL,
                             '{"group_type_id": "company", "create_missing": "yes"}');
SELECT bulkops.create_target('bc_bad', 'blueconic', :'url', 'groups', NULL,
                             '{"group_type_id": "company", "feedbak": true}');

SELECT bulkops.create_target('bc', 'blueconic', :'url', 'groups',
       '{"type": "bearer", "token": "bc-token"}',
       '{"group_type_id": "company", "create_missing": true}');
SELECT bulkops.create_target('bc_profiles', 'blueconic', :'url', 'profiles',
       '{"type": "bearer", "token": "bc-token"}');
SELECT bulkops.alter_target('bc', options => '{"create_missing": true}');
SELECT bulkops.alter_target('bc_profiles', resource => 'segments');
SELECT bulkops.bulk_upsert('bc', 'SELECT 1 AS id', key => 'id', options => '{"group_type_id": ""}');
SELECT bulkops.bulk_insert('bc', 'SELECT 1 AS id', key => 'id');
SELECT bulkops.bulk_upsert('bc', 'SELECT 1 AS id');
SELECT count(*) AS jobs_left_behind FROM bulkops.jobs WHERE target LIKE 'bc%';

CREATE TABLE companies AS
SELECT 'C-' || i AS id, 'Company ' || i AS name,
       ARRAY['tag' || i, 'all'] AS tags, i * 10 AS employees,
       CASE WHEN i % 2 = 0 THEN 'https://c' || i || '.example' END AS website
FROM generate_series(1, 12) AS i;

-- 2. UPSERT (create_missing): one entry per row, identifier = row number, the
-- key as groupId, every other column a property set to its values
SELECT bulkops.bulk_upsert('bc', 'companies', key => 'id',
                           options => '{"batch_size": 5}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed, rows_unknown, batches_total
FROM bulkops.jobs WHERE id = :job;
SELECT status, created, http_status, error_code, count(*)
FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2, 3, 4;
SELECT count(*) FILTER (WHERE remote_id = key) AS remote_id_is_the_group_id
FROM bulkops.receipts WHERE job_id = :job;
SELECT r->>'method' AS method, r->>'path' AS path, r->'headers'->>'Authorization' AS auth,
       r->'headers'->>'Content-Type' AS content_type
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;
SELECT jsonb_pretty(e) AS entry_of_c2
FROM bc_sent(3) AS b, jsonb_array_elements(b) AS e WHERE e->>'groupId' = 'C-2';
-- identifiers are the rows' row numbers
SELECT count(*) AS entries, count(*) FILTER (WHERE (e->>'identifier')::bigint = r.row_no) AS identifier_is_row_no
FROM bc_sent(3) AS b, jsonb_array_elements(b) AS e
JOIN bulkops.receipts r ON r.job_id = :job AND r.key = e->>'groupId';
SELECT bc_group('C-1') AS c1, bc_group('C-2') AS c2;

-- 3. answers come shuffled and mixed: each row gets its own state, so
-- matching by position would show here
UPDATE companies SET name = name || ' Ltd' WHERE id IN ('C-3', 'C-7', 'C-11');
INSERT INTO companies VALUES ('C-13', 'Company 13', '{}', 130, NULL);
SELECT bulkops.bulk_upsert('bc', 'companies', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, created, remote_id FROM bulkops.receipts
WHERE job_id = :job AND (created OR key IN ('C-3', 'C-7', 'C-11')) ORDER BY row_no;
SELECT status, created, count(*) FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2;
SELECT s->'blueconic'->'modified' AS modified, s->'blueconic'->'unchanged' AS unchanged
FROM test.mock('GET', '/_control/stats') AS s;
SELECT bc_group('C-3')->'name' AS c3_name, bc_group('C-13') AS c13;

-- 4. values: arrays give several values (nested ones flattened, null
-- elements dropped), NULL and empty arrays none (clearing the property),
-- json arrays their elements, objects their JSON text, other scalars their
-- JSON text as strings
SELECT bulkops.bulk_upsert('bc', $$SELECT 'V-1' AS id, ARRAY[1, NULL, 3] AS ints,
        ARRAY[['a', 'b'], ['c', 'd']] AS grid, '{}'::text[] AS empty, NULL::text AS nothing,
        '["x", 2, false, null, {"k": [1]}]'::jsonb AS mixed, '{"a": "b"}'::json AS obj,
        12.50 AS amount, true AS flag, date '2024-02-29' AS day, 'say "hi" \ bye' AS quoted$$,
        key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status FROM bulkops.receipts WHERE job_id = :job;
SELECT jsonb_pretty(b->0->'properties') AS properties FROM bc_sent() AS b;
SELECT bc_group('V-1') AS stored;

-- 5. UPDATE (create_missing off): existing groups are modified, missing ones
-- SKIPPED (failed, state as error_code) and not created
SELECT bulkops.bulk_upsert('bc', $$SELECT * FROM (VALUES ('C-1', 'one'), ('nope-1', 'x'), ('C-2', 'two'), ('nope-2', 'y')) AS v(id, name)$$,
                           key => 'id', options => '{"create_missing": false}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed FROM bulkops.jobs WHERE id = :job;
SELECT key, status, created, error_code, error_message FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT DISTINCT e->>'strategy' AS strategy FROM bc_sent() AS b, jsonb_array_elements(b) AS e;
SELECT bc_group('nope-1') IS NULL AS nope_not_created, bc_group('C-1')->'name' AS c1_name;

-- 6. DELETE: groupId, groupTypeId, strategy and identifier only; a missing
-- group is NOTFOUND
SELECT bulkops.bulk_delete('bc', $$SELECT * FROM (VALUES ('C-12', 'a'), ('gone', 'b')) AS v(id, name)$$,
                           key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, created, remote_id, error_code, error_message FROM bulkops.receipts
WHERE job_id = :job ORDER BY row_no;
SELECT e FROM bc_sent() AS b, jsonb_array_elements(b) AS e ORDER BY e->>'identifier';
SELECT bc_group('C-12') IS NULL AS c12_deleted;

-- 7. profiles: profileId, no group type (create_missing on the target: a job
-- may not turn it on)
SELECT bulkops.alter_target('bc_profiles', options => '{"create_missing": true}');
SELECT bulkops.bulk_upsert('bc_profiles', $$SELECT 'P-' || i AS "profileKey", 'p' || i || '@example.com' AS email
                                           FROM generate_series(1, 3) AS i$$,
                           key => 'profileKey') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, created, remote_id FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT r->>'path' AS path, (r->>'body')::jsonb->0 AS first_entry
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;
SELECT bulkops.bulk_delete('bc_profiles', $$VALUES ('P-1'), ('P-9')$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_code FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT test.mock('GET', '/_control/blueconic/store?resource=profiles') AS profiles;
SELECT bulkops.alter_target('bc_profiles', options => '{}');

-- 8. the other failure states: an unknown group type, states forced by the
-- mock (a documented profile state, unrecognized ones) with validationErrors
-- in the message
SELECT bulkops.create_target('bc_planets', 'blueconic', :'url', 'groups',
       '{"type": "bearer", "token": "bc-token"}', '{"group_type_id": "planet", "create_missing": true}');
SELECT bulkops.bulk_upsert('bc_planets', 'SELECT ''Mars'' AS id', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_code, error_message FROM bulkops.receipts WHERE job_id = :job;
SELECT bulkops.bulk_upsert('bc_profiles', $$SELECT * FROM (VALUES
        ('F-1', 'CONSENT_MISMATCH', NULL), ('F-2', 'WEIRD', NULL), ('F-3', '', NULL),
        ('F-4', 'SKIPPED', 'email: not an address'), ('F-5', NULL, NULL)) AS v(id, _state, _invalid)$$,
        key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_code, error_message FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;

-- 9. duplicate keys in one request: each row is its own entry and gets its
-- own state (created first, then modified), in one request
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"blueconic": {"bearer": "bc-token"}}');
SELECT bulkops.bulk_upsert('bc', $$VALUES ('D-1', 1), ('D-2', 2), ('D-1', 3), ('D-3', 4), ('D-1', 5), ('D-2', 2)$$,
                           key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT row_no, key, status, created, attempts FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT (s->'blueconic'->>'requests')::int AS requests,
       (s->'blueconic'->>'requests_with_duplicates')::int AS requests_with_duplicates
FROM test.mock('GET', '/_control/stats') AS s;
SELECT bc_group('D-1') AS last_write_wins;

-- 10. batch_size above 1,000 is capped, with a NOTICE; no request carries
-- more than 1,000 entries
SELECT bulkops.alter_target('bc', options => '{"group_type_id": "company", "create_missing": true,
                                               "batch_size": 5000}');
SET client_min_messages = notice;
SELECT bulkops.bulk_upsert('bc', 'SELECT ''B-'' || i AS id, i AS n FROM generate_series(1, 2500) AS i',
                           key => 'id', options => '{"batch_size": 5000}') AS job \gset
SET client_min_messages = warning;
SELECT bulkops.alter_target('bc', options => '{"group_type_id": "company", "create_missing": true}');
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT batch_no, row_count FROM bulkops.batches WHERE job_id = :job ORDER BY batch_no;
SELECT (s->'blueconic'->>'max_entries_per_request')::int AS max_entries_per_request,
       (s->'blueconic'->>'requests_413')::int AS requests_413
FROM test.mock('GET', '/_control/stats') AS s;

-- 11. an element missing: that row is unknown; elements for identifiers
-- never sent are ignored
SELECT test.mock('POST', '/_control/config',
                 '{"blueconic": {"omit_identifiers": ["1"], "extra_identifiers": ["999999", "x"]}}');
SELECT bulkops.bulk_upsert('bc', $$VALUES ('M-1'), ('M-2'), ('M-3')$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_message FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT min(row_no) AS first_row_no FROM bulkops.receipts WHERE job_id = :job;
SELECT test.mock('POST', '/_control/config', '{"blueconic": {"omit_identifiers": [], "extra_identifiers": []}}');

-- 12. 413: a request of more than 1,000 entries (the cap prevents them; a
-- batch enqueued by a build without it is made here by merging a job's
-- batches before the worker sees them).  The first 1,000 are applied and
-- answered, the rest sent again; with feedback the batch's counts add up
-- over both answers
CREATE FUNCTION bc_merge_batches(job bigint) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    b record;
    all_body bytea := '';
    all_offsets int[] := '{0}';
    all_keys text[] := '{}';
    n int := 0;
BEGIN
    FOR b IN SELECT * FROM bulkops.batches WHERE job_id = job ORDER BY batch_no LOOP
        all_offsets := all_offsets || ARRAY(SELECT o + length(all_body) FROM unnest(b.offsets[2:]) AS o);
        all_body := all_body || b.body;
        all_keys := all_keys || b.keys;
        n := n + b.row_count;
    END LOOP;
    DELETE FROM bulkops.batches WHERE job_id = job AND batch_no > 1;
    UPDATE bulkops.batches SET body = all_body, offsets = all_offsets, keys = all_keys, row_count = n
    WHERE job_id = job AND batch_no = 1;
    UPDATE bulkops.jobs SET batches_total = 1 WHERE id = job;
    RETURN n;
END
$$;
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"blueconic": {"bearer": "bc-token"}}');
BEGIN;
SELECT bulkops.bulk_upsert('bc', $$SELECT 'T-' || i AS id, i AS n FROM generate_series(1, 1003) AS i$$,
                           key => 'id', options => '{"feedback": true}') AS job \gset
SELECT bc_merge_batches(:job) AS rows_in_one_batch;
COMMIT;
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_unknown, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT status, created, http_status, count(*), min(row_no), max(row_no)
FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2, 3 ORDER BY 5;
SELECT count(*) FILTER (WHERE remote_id = key) AS remote_id_is_the_group_id
FROM bulkops.receipts WHERE job_id = :job;
SELECT remote_progress FROM bulkops.job_progress WHERE id = :job;
SELECT * FROM bc_logged(:job);
SELECT (s->'blueconic'->>'requests')::int AS requests, (s->'blueconic'->>'requests_413')::int AS requests_413,
       (s->'blueconic'->>'operations')::int AS entries,
       (s->'blueconic'->>'max_entries_per_request')::int AS max_entries_per_request,
       (s->'blueconic'->>'max_applications_per_id')::int AS max_applied
FROM test.mock('GET', '/_control/stats') AS s;
SELECT e FROM bc_sent() AS b, jsonb_array_elements(b) AS e ORDER BY e->>'identifier';
-- a 413 that does not list one of the first 1,000: that one is in doubt, and
-- only the rows beyond the first 1,000 are sent again
SELECT test.mock('POST', '/_control/config', '{"blueconic": {"omit_identifiers": ["5"]}}');
BEGIN;
SELECT bulkops.bulk_upsert('bc', $$SELECT 'U-' || i AS id FROM generate_series(1, 1001) AS i$$,
                           key => 'id') AS job \gset
SELECT bc_merge_batches(:job) AS rows_in_one_batch;
COMMIT;
SELECT bulkops.wait(:job, '60 s');
SELECT status, http_status, error_message, count(*), min(row_no), max(row_no)
FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2, 3 ORDER BY 5;
SELECT e->>'identifier' AS resent FROM bc_sent() AS b, jsonb_array_elements(b) AS e;
-- a 413 with no list at all (not from the entry cap): every row sent is in doubt
SELECT test.mock('POST', '/_control/config', '{"blueconic": {"omit_identifiers": []}}');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"path": "^/blueconic/rest/v2/", "action": "status", "status": 413, "body": "request entity too large"}]}');
SELECT bulkops.bulk_upsert('bc', $$VALUES ('W-1'), ('W-2')$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, http_status, error_message FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;

-- 13. 429 and 503 are retried (Retry-After honoured); a malformed 200 and a
-- 500 too: every row still succeeds, applied once per successful request
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"blueconic": {"bearer": "bc-token"}}');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"path": "^/blueconic/rest/v2/", "action": "status", "status": 429, "headers": {"Retry-After": "0"},
     "body": ""},
    {"path": "^/blueconic/rest/v2/", "action": "status", "status": 503, "headers": {"Retry-After": "0"}},
    {"path": "^/blueconic/rest/v2/", "action": "malformed", "status": 200, "body": "[{\"state\": \"CRE"},
    {"path": "^/blueconic/rest/v2/", "action": "status", "status": 500}]}');
SELECT bulkops.bulk_upsert('bc', $$VALUES ('R-1'), ('R-2')$$, key => 'column1',
                           options => '{"max_attempts": 5}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT key, status, created, attempts, http_status FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT (s->>'faults_fired')::int AS faults_fired, (s->'blueconic'->>'requests')::int AS requests
FROM test.mock('GET', '/_control/stats') AS s;

-- 14. other 4xx fail the batch at once with the remote message: a 400 and a
-- 401 (wrong token)
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"path": "^/blueconic/rest/v2/", "action": "status", "status": 400,
     "body": "{\"code\": 400, \"message\": \"One or more required parameters are missing or invalid.\", \"errors\": [{\"field\": \"[0].groupTypeId\", \"message\": \"required\"}]}"}]}');
SELECT bulkops.bulk_upsert('bc', $$VALUES ('E-1'), ('E-2')$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_failed, last_error FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT status, attempts, http_status, error_code, error_message FROM bulkops.receipts WHERE job_id = :job;
SELECT bulkops.alter_target('bc_profiles', auth => '{"type": "bearer", "token": "wrong"}');
SELECT bulkops.bulk_delete('bc_profiles', $$VALUES ('P-2')$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status, http_status, error_code, error_message FROM bulkops.receipts WHERE job_id = :job;
SELECT test.mock('DELETE', '/_control/faults');

-- 15. feedback: every answer's counts summed on the job as they arrive, and
-- logged (one line per answer); without it neither
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"blueconic": {"bearer": "bc-token"}}');
SELECT bulkops.bulk_upsert('bc', $$SELECT 'G-' || i AS id FROM generate_series(1, 5) AS i$$, key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT remote_progress FROM bulkops.job_progress WHERE id = :job;
SELECT count(*) AS logged FROM bc_logged(:job);
SELECT bulkops.bulk_upsert('bc', $$SELECT 'G-' || i AS id, i AS n FROM generate_series(1, 8) AS i
                                  UNION ALL SELECT 'G-1', 1$$,
                           key => 'id', options => '{"feedback": true, "create_missing": false, "batch_size": 4,
                                      "concurrency": 1}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT remote_progress FROM bulkops.job_progress WHERE id = :job;
SELECT batch_no, progress FROM bulkops.batches WHERE job_id = :job ORDER BY batch_no;
SELECT * FROM bc_logged(:job);

-- 16. OAuth client credentials with no token_url: the token comes from
-- {url}/rest/v2/oauth/token, once for all batches; an expired token is
-- fetched again on the 401 and the request replayed; a wrong secret fails
-- the rows with the token endpoint's error, never showing the secret
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config',
  '{"oauth": {"client_id": "bulkops", "client_secret": "bc-secret-1"}, "blueconic": {"oauth": true}}');
SELECT bulkops.create_target('bc_oauth', 'blueconic', :'url', 'groups',
       '{"type": "oauth2_client_credentials", "client_id": "bulkops", "client_secret": "bc-secret-1"}',
       '{"group_type_id": "company", "create_missing": true, "batch_size": 2, "concurrency": 1}');
SELECT bulkops.bulk_upsert('bc_oauth', $$SELECT 'O-' || i AS id FROM generate_series(1, 6) AS i$$,
                           key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT (s->'oauth'->>'token_requests')::int AS token_requests,
       (s->'oauth'->>'bearer_ok')::int AS requests_with_the_token,
       (s->'oauth'->>'bearer_refused')::int AS refused
FROM test.mock('GET', '/_control/stats') AS s;
SELECT r->>'method' AS method, r->>'path' AS path, r->>'body' ~ '^grant_type=client_credentials&' AS grant
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r
WHERE r->>'path' ~ 'token$';
SELECT test.mock('POST', '/_control/oauth/expire');
SELECT bulkops.bulk_delete('bc_oauth', $$VALUES ('O-1'), ('O-2')$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, attempts, http_status FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT (s->'oauth'->>'token_requests')::int AS token_requests,
       (s->'oauth'->>'expired_refused')::int AS expired_refused
FROM test.mock('GET', '/_control/stats') AS s;
SELECT bulkops.alter_target('bc_oauth',
       auth => '{"type": "oauth2_client_credentials", "client_id": "bulkops", "client_secret": "bc-wrong-2"}');
SELECT bulkops.bulk_upsert('bc_oauth', $$VALUES ('O-9')$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT status, replace(error_message, :'url', 'URL') AS error_message FROM bulkops.receipts WHERE job_id = :job;
SELECT count(*) AS secret_shown FROM bulkops.receipts r JOIN bulkops.batches b USING (job_id)
WHERE r.error_message ~ 'bc-(secret|wrong)' OR b.last_error ~ 'bc-(secret|wrong)';

-- per-property strategies (option property_strategies): each named column's
-- property is sent with its strategy, the others with SET; the store shows what
-- each did.  INCREMENT (not safe to send twice), unknown strategies and columns
-- the source does not send are refused
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', '{"blueconic": {"bearer": "bc-token"}}');
SELECT bulkops.bulk_upsert('bc', $$SELECT 'S-1' AS id, ARRAY['a'] AS tags, 'first' AS label,
                                          ARRAY['x', 'y'] AS dropped, 'n1' AS note$$,
                           key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT bulkops.bulk_upsert('bc', $$SELECT 'S-1' AS id, ARRAY['b', 'a'] AS tags, 'second' AS label,
                                          ARRAY['x'] AS dropped, 'n2' AS note$$,
       key => 'id',
       options => '{"property_strategies": {"tags": "ADD", "label": "SET_IF_EMPTY", "dropped": "REMOVE"}}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT p->>'id' AS property, p->'values' AS sent, p->>'strategy' AS strategy
FROM bc_sent() AS b, jsonb_array_elements(b->0->'properties') AS p ORDER BY 1;
SELECT bc_group('S-1') AS stored;
SELECT bulkops.bulk_upsert('bc', 'SELECT 1 AS id, 2 AS n', key => 'id',
                           options => '{"property_strategies": {"n": "INCREMENT"}}');
SELECT bulkops.bulk_upsert('bc', 'SELECT 1 AS id, 2 AS n', key => 'id',
                           options => '{"property_strategies": {"n": "APPEND"}}');
SELECT bulkops.bulk_upsert('bc', 'SELECT 1 AS id, 2 AS n', key => 'id',
                           options => '{"property_strategies": {"m": "ADD"}}');
SELECT bulkops.bulk_upsert('bc', 'SELECT 1 AS id, 2 AS n', key => 'id',
                           options => '{"property_strategies": {"id": "ADD"}}');
SELECT bulkops.create_target('bc_bad', 'blueconic', :'url', 'groups', NULL,
                             '{"group_type_id": "company", "property_strategies": {"n": 1}}');

SELECT count(*) AS unfinished FROM bulkops.jobs WHERE state IN ('queued', 'running');
