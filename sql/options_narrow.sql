-- options_narrow: a job's options may only narrow its target's.  Each option's
-- rule (at most, at least, the target's only, off only, rate_limit's 0) is
-- held by bulk_* and bulk_query, with the target's own value or the
-- setting's default; batch_bytes times concurrency stays within
-- bulkops.max_target_memory; rows larger than batch_bytes are refused;
-- values that would change a request's URL or headers are refused at
-- create_target, alter_target and enqueue, for every dialect.  Everything
-- refused is refused before anything is enqueued: no job, no request.
SET client_min_messages = warning;
\set VERBOSITY default
-- tagged paths: the mock logs them whole, so this suite's requests are told apart
SELECT current_setting('test.mock_url') || '/_t/nar' AS mock \gset
SELECT test.mock('POST', '/_control/reset');
SELECT count(*) AS jobs_before FROM bulkops.jobs \gset

-- push one row with job options, then roll the push back whatever happens:
-- 'accepted' with the job's merged options, or the error with its detail
CREATE FUNCTION pg_temp.push(target text, options jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    job bigint;
    merged jsonb;
    detail text;
BEGIN
    job := bulkops.bulk_upsert(target, $q$SELECT 1 AS id, 'x' AS name$q$, key => 'id',
                               options => options);
    SELECT j.options INTO merged FROM bulkops.jobs j WHERE j.id = job;
    RAISE EXCEPTION USING ERRCODE = 'BKOK0', MESSAGE = merged::text;
EXCEPTION
    WHEN SQLSTATE 'BKOK0' THEN
        RETURN 'accepted: ' || SQLERRM;
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
        RETURN SQLSTATE || ': ' || SQLERRM || coalesce(E'\n' || nullif(detail, ''), '');
END
$$;
-- the same for bulk_query, and for any statement that must fail
CREATE FUNCTION pg_temp.export(target text, options jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bulkops.bulk_query(target, 'SELECT Id FROM Account', 'nar_export', options);
    RAISE EXCEPTION USING ERRCODE = 'BKOK0', MESSAGE = 'accepted';
EXCEPTION
    WHEN SQLSTATE 'BKOK0' THEN
        RETURN 'accepted';
    WHEN OTHERS THEN
        RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
CREATE FUNCTION pg_temp.fails(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

SELECT bulkops.create_target('nar', 'clinia', :'mock' || '/clinia/sources/nar/v1', 'Thing', NULL,
       '{"batch_size": 100, "batch_bytes": 1048576, "concurrency": 2, "max_attempts": 3,
         "poll_interval": 1, "http_timeout": 10, "rate_limit": 5, "deadline": 60,
         "ca_file": "/etc/bulkops/ca.pem"}');
SELECT bulkops.create_target('nar_dflt', 'clinia', :'mock' || '/clinia/sources/nar/v1', 'Thing');

-- 1. the full message of a refusal: which option, what the target allows, who
-- can change it
SELECT bulkops.bulk_upsert('nar', 'SELECT 1 AS id', key => 'id', options => '{"concurrency": 8}');
SELECT bulkops.bulk_upsert('nar_dflt', 'SELECT 1 AS id', key => 'id', options => '{"concurrency": 8}');

-- 2. at most the target's: batch_size, batch_bytes, concurrency, max_attempts,
-- http_timeout, deadline (a target without one allows any)
SELECT pg_temp.push('nar', '{"batch_size": 101}') AS batch_size_raised;
SELECT pg_temp.push('nar', '{"batch_bytes": 1048577}') AS batch_bytes_raised;
SELECT pg_temp.push('nar', '{"max_attempts": 4}') AS max_attempts_raised;
SELECT pg_temp.push('nar', '{"http_timeout": 10.5}') AS http_timeout_raised;
SELECT pg_temp.push('nar', '{"deadline": 61}') AS deadline_extended;
SELECT pg_temp.push('nar_dflt', '{"max_attempts": 6}') AS max_attempts_over_default;
SELECT pg_temp.push('nar_dflt', '{"batch_bytes": 8388609}') AS batch_bytes_over_default;
SELECT pg_temp.push('nar_dflt', '{"deadline": 31536000}') AS deadline_where_none;
-- 3. at least the target's: poll_interval (the default here is 50 ms),
-- retry_after_max (the default is an hour, at most a day)
SELECT pg_temp.push('nar', '{"poll_interval": 0.5}') AS poll_interval_lowered;
SELECT pg_temp.push('nar_dflt', '{"poll_interval": 0.01}') AS poll_interval_under_default;
SELECT pg_temp.push('nar_dflt', '{"retry_after_max": 60}') AS retry_after_max_lowered;
SELECT pg_temp.push('nar_dflt', '{"retry_after_max": 7200}') AS retry_after_max_raised;
SELECT pg_temp.push('nar_dflt', '{"retry_after_max": 86401}') AS retry_after_max_over_a_day;
-- 4. rate_limit: at most the target's, and never 0 (no limit) when it has one
SELECT pg_temp.push('nar', '{"rate_limit": 0}') AS rate_limit_unlimited;
SELECT pg_temp.push('nar', '{"rate_limit": 6}') AS rate_limit_raised;
SELECT pg_temp.push('nar_dflt', '{"rate_limit": 0}') AS rate_limit_where_none;
-- 5. the target's only: ca_file may be repeated, not changed nor added
SELECT pg_temp.push('nar', '{"ca_file": "/tmp/mine.pem"}') AS ca_file_changed;
SELECT pg_temp.push('nar_dflt', '{"ca_file": "/etc/bulkops/ca.pem"}') AS ca_file_added;
-- 6. narrowing is fine, and the job keeps what it asked for
SELECT pg_temp.push('nar', '{"batch_size": 100, "batch_bytes": 4096, "concurrency": 1,
                             "max_attempts": 1, "poll_interval": 30, "http_timeout": 2,
                             "rate_limit": 0.5, "deadline": 5,
                             "ca_file": "/etc/bulkops/ca.pem"}') AS narrowed;
SELECT pg_temp.push('nar_dflt', '{"concurrency": 4, "poll_interval": 0.05}') AS at_the_defaults;

-- 7. memory: batch_bytes times concurrency within bulkops.max_target_memory,
-- for a target (create and alter) and for a job's merged options once the
-- setting is lowered
SHOW bulkops.max_target_memory;
SELECT pg_temp.fails($$SELECT bulkops.create_target('nar_big', 'clinia', 'http://127.0.0.1/x', 'Thing',
                       NULL, '{"batch_bytes": 134217728, "concurrency": 4}')$$) AS create_too_big;
SELECT pg_temp.fails($$SELECT bulkops.alter_target('nar', options => '{"batch_bytes": 536870912}')$$)
       AS alter_too_big;
SELECT bulkops.create_target('nar_mem', 'clinia', 'http://127.0.0.1/x', 'Thing', NULL,
                             '{"batch_bytes": 67108864, "concurrency": 4}');
ALTER SYSTEM SET bulkops.max_target_memory = '128MB';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SELECT bulkops.bulk_upsert('nar_mem', 'SELECT 1 AS id', key => 'id');
SELECT pg_temp.push('nar_mem', '{"concurrency": 2}') AS narrowed_within;
ALTER SYSTEM RESET bulkops.max_target_memory;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SELECT bulkops.drop_target('nar_mem');

-- 8. a batch holds less than batch_bytes plus one row; a row larger than
-- batch_bytes is refused
BEGIN;
SELECT bulkops.bulk_upsert('nar', 'SELECT i AS id, repeat(''x'', 300) AS pad FROM generate_series(1, 20) i',
                           key => 'id', options => '{"batch_bytes": 1024}') AS job \gset
SELECT count(*) AS batches, bool_and(offsets[row_count] < 1024) AS each_ends_with_the_row_that_filled_it
FROM bulkops.batches WHERE job_id = :job;
ROLLBACK;
SELECT bulkops.bulk_upsert('nar', 'SELECT i AS id, repeat(''x'', 2000) AS pad FROM generate_series(1, 2) i',
                           key => 'id', options => '{"batch_bytes": 1024}');

-- 9. bulk_query: the same rules, and the dialect's checks of the merged options
SELECT bulkops.create_target('nar_sf', 'salesforce', :'mock' || '/salesforce', 'Account', NULL,
                             '{"max_records": 1000, "limit_backoff": 5}');
SELECT pg_temp.export('nar_sf', '{"max_records": 1001}') AS max_records_raised;
SELECT pg_temp.export('nar_sf', '{"query_all": true}') AS query_all_turned_on;
SELECT pg_temp.export('nar_sf', '{"concurrency": 5}') AS concurrency_raised;
SELECT pg_temp.export('nar_sf', '{"nulls": "drop"}') AS dialect_checks_the_merged;
SELECT pg_temp.export('nar_sf', '{"max_records": 10, "query_all": false}') AS narrowed;
-- include_deleted is query_all's newer name: the same rule under either
-- name, and a target's older query_all counts for a job's include_deleted
SELECT pg_temp.export('nar_sf', '{"include_deleted": true}') AS include_deleted_turned_on;
SELECT pg_temp.export('nar_sf', '{"include_deleted": false}') AS include_deleted_off;
SELECT bulkops.alter_target('nar_sf', options => '{"max_records": 1000, "limit_backoff": 5,
                                                   "query_all": true}');
SELECT pg_temp.export('nar_sf', '{"include_deleted": true}') AS include_deleted_as_target_has;
SELECT bulkops.alter_target('nar_sf', options => '{"max_records": 1000, "limit_backoff": 5}');
-- the attack: an api_version that turns a query's request into another one
SELECT pg_temp.export('nar_sf',
       '{"api_version": "60.0/sobjects/Account/001000000000001AAA?_HttpMethod=DELETE#"}') AS api_version_path;
SELECT pg_temp.export('nar_sf', '{"api_version": "62.0"}') AS api_version_repeated;

-- 10. the dialects' options
-- clinia: kind is the target's
SELECT pg_temp.push('nar', '{"kind": "relationships"}') AS clinia_kind;
SELECT pg_temp.push('nar', '{"kind": "resources/../relationships"}') AS clinia_kind_path;
SELECT pg_temp.push('nar', '{"kind": "resources", "resubmit_cancelled": false}') AS clinia_narrowed;
-- sap_fsm: tenant and client headers and dto_version are the target's; PUT
-- and force only where the target has them
SELECT bulkops.create_target('nar_fsm', 'sap_fsm', :'mock' || '/sap_fsm', 'Activity', NULL,
                             '{"dto_version": 43, "account_id": "1234", "company_id": "5678"}');
SELECT bulkops.create_target('nar_fsm_put', 'sap_fsm', :'mock' || '/sap_fsm', 'Activity', NULL,
                             '{"dto_version": 43, "method": "PUT", "force": true}');
SELECT pg_temp.push('nar_fsm', '{"account_id": "9999"}') AS fsm_account;
SELECT pg_temp.push('nar_fsm', '{"account_id": "1234\r\nX-Evil: 1"}') AS fsm_account_crlf;
SELECT pg_temp.push('nar_fsm', '{"company_id": "5679"}') AS fsm_company;
SELECT pg_temp.push('nar_fsm', '{"client_id": "other"}') AS fsm_client_id;
SELECT pg_temp.push('nar_fsm', '{"client_version": "9.9"}') AS fsm_client_version;
SELECT pg_temp.push('nar_fsm', '{"dto_version": 44}') AS fsm_dto_version;
SELECT pg_temp.push('nar_fsm', '{"method": "PUT"}') AS fsm_put;
SELECT pg_temp.push('nar_fsm', '{"force": true}') AS fsm_force;
SELECT pg_temp.push('nar_fsm', '{"account_id": "1234", "client_id": "bulkops", "method": "PATCH",
                                 "force": false}') AS fsm_narrowed;
SELECT pg_temp.push('nar_fsm_put', '{"method": "PATCH", "force": false}') AS fsm_put_narrowed;
-- packagex: the allowed actions are the target's; sync_max_items at most
SELECT bulkops.create_target('nar_px', 'packagex', :'mock' || '/packagex/v1', 'contact');
SELECT pg_temp.push('nar_px', '{"resources": {"contact": ["merge"]}}') AS px_resources;
SELECT pg_temp.push('nar_px', '{"sync_max_items": 101}') AS px_sync_max_items;
SELECT pg_temp.push('nar_px', '{"mode": "async", "duplicate_handling": "use_first",
                                "sync_max_items": 10}') AS px_narrowed;
-- blueconic: the group type is the target's; create_missing off only
SELECT bulkops.create_target('nar_bc', 'blueconic', :'mock' || '/blueconic', 'groups', NULL,
                             '{"group_type_id": "company"}');
SELECT pg_temp.push('nar_bc', '{"group_type_id": "person"}') AS bc_group_type;
SELECT pg_temp.push('nar_bc', '{"create_missing": true}') AS bc_create_missing;
SELECT pg_temp.push('nar_bc', '{"group_type_id": "company", "create_missing": false,
                                "feedback": true}') AS bc_narrowed;
-- salesforce: hard_delete off only, limit_backoff at least, api_version the target's
SELECT pg_temp.push('nar_sf', '{"hard_delete": true}') AS sf_hard_delete;
SELECT pg_temp.push('nar_sf', '{"limit_backoff": 1}') AS sf_limit_backoff;
SELECT pg_temp.push('nar_sf', '{"api_version": "61.0"}') AS sf_api_version;
SELECT pg_temp.push('nar_sf', '{"hard_delete": false, "limit_backoff": 30, "nulls": "keep",
                                "resubmit_unprocessed": false}') AS sf_narrowed;

-- 11. values that would change a request's URL or headers, refused at
-- create_target and alter_target, for every dialect
SELECT n, what, pg_temp.fails(stmt) AS refused
FROM (VALUES
 (1, 'clinia url with a query',
  $$SELECT bulkops.create_target('nar_x', 'clinia', 'http://127.0.0.1/c?x=1', 'Thing')$$),
 (2, 'clinia url with a fragment',
  $$SELECT bulkops.create_target('nar_x', 'clinia', 'http://127.0.0.1/c#x', 'Thing')$$),
 (3, 'clinia resource ../',
  $$SELECT bulkops.create_target('nar_x', 'clinia', 'http://127.0.0.1/c', '../Thing')$$),
 (4, 'clinia kind with a path',
  $$SELECT bulkops.create_target('nar_x', 'clinia', 'http://127.0.0.1/c', 'Thing', NULL,
                                 '{"kind": "resources/../x"}')$$),
 (5, 'sap_fsm resource ../',
  $$SELECT bulkops.create_target('nar_x', 'sap_fsm', 'http://127.0.0.1/s', 'Activity/../x', NULL,
                                 '{"dto_version": 43}')$$),
 (6, 'sap_fsm account_id with LF',
  $$SELECT bulkops.create_target('nar_x', 'sap_fsm', 'http://127.0.0.1/s', 'Activity', NULL,
                                 '{"dto_version": 43, "account_id": "1\nX-Evil: 1"}')$$),
 (7, 'sap_fsm company_id with ?',
  $$SELECT bulkops.create_target('nar_x', 'sap_fsm', 'http://127.0.0.1/s', 'Activity', NULL,
                                 '{"dto_version": 43, "company_id": "5678?x=1"}')$$),
 (8, 'sap_fsm client_version with /../',
  $$SELECT bulkops.create_target('nar_x', 'sap_fsm', 'http://127.0.0.1/s', 'Activity', NULL,
                                 '{"dto_version": 43, "client_version": "2.1/../x"}')$$),
 (9, 'sap_fsm client_id with a space',
  $$SELECT bulkops.create_target('nar_x', 'sap_fsm', 'http://127.0.0.1/s', 'Activity', NULL,
                                 '{"dto_version": 43, "client_id": "a b"}')$$),
 (10, 'sap_fsm account_id escaped CR LF (alter)',
  $$SELECT bulkops.alter_target('nar_fsm', options => '{"dto_version": 43, "account_id": "12%0d%0a34"}')$$),
 (11, 'packagex resource ../',
  $$SELECT bulkops.create_target('nar_x', 'packagex', 'http://127.0.0.1/p', '../contact', NULL,
                                 '{"resources": {"../contact": ["merge"]}}')$$),
 (12, 'packagex url with a query',
  $$SELECT bulkops.create_target('nar_x', 'packagex', 'http://127.0.0.1/p?a=b', 'contact')$$),
 (13, 'blueconic resource ../',
  $$SELECT bulkops.create_target('nar_x', 'blueconic', 'http://127.0.0.1/b', '../groups', NULL,
                                 '{"group_type_id": "company"}')$$),
 (14, 'blueconic group_type_id with /../',
  $$SELECT bulkops.create_target('nar_x', 'blueconic', 'http://127.0.0.1/b', 'groups', NULL,
                                 '{"group_type_id": "company/../person"}')$$),
 (15, 'salesforce api_version with /',
  $$SELECT bulkops.create_target('nar_x', 'salesforce', 'http://127.0.0.1/f', 'Account', NULL,
                                 '{"api_version": "60.0/sobjects"}')$$),
 (16, 'salesforce api_version with ?',
  $$SELECT bulkops.create_target('nar_x', 'salesforce', 'http://127.0.0.1/f', 'Account', NULL,
                                 '{"api_version": "60.0?_HttpMethod=DELETE"}')$$),
 (17, 'salesforce api_version with #',
  $$SELECT bulkops.create_target('nar_x', 'salesforce', 'http://127.0.0.1/f', 'Account', NULL,
                                 '{"api_version": "60.0#"}')$$),
 (18, 'salesforce resource ../ (alter)',
  $$SELECT bulkops.alter_target('nar_sf', resource => 'Account/../Contact')$$),
 (19, 'salesforce url with a query (alter)',
  $$SELECT bulkops.alter_target('nar_sf', url => 'http://127.0.0.1/f?x')$$)
) AS c(n, what, stmt)
ORDER BY n;

-- nothing was enqueued and the remote side heard nothing
SELECT count(*) - :jobs_before AS new_jobs FROM bulkops.jobs;
SELECT count(*) AS requests_received
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r
WHERE r->>'path' LIKE '/_t/nar/%';
SELECT bulkops.drop_target(name) FROM bulkops.targets WHERE name LIKE 'nar%' ORDER BY name;
