-- bulk_query: a Salesforce query job's pages, followed by Sforce-Locator,
-- land in a local table as the caller: created with text columns when
-- absent, cast to the columns' types (matched by name) when present.  Bad
-- destinations are refused before anything is sent; a failed remote query,
-- or with strict a page the table cannot take, fails the job with a clear
-- last_error.
SET client_min_messages = warning;
SELECT current_setting('test.mock_url') || '/salesforce' AS url \gset
SELECT bulkops.create_target('sfq', 'salesforce', :'url', 'Account', NULL,
                             '{"poll_interval": 0.05}');
SELECT current_setting('test.mock_url') || '/clinia/sources/q/v1' AS curl \gset
SELECT bulkops.create_target('cq', 'clinia', :'curl', 'Thing');
SELECT test.mock('POST', '/_control/reset');

-- records in the remote store, put there with an upsert
CREATE TABLE q_src AS SELECT 'E' || i AS "Ext__c", 'Account ' || i AS "Name",
                             i * 10 AS "NumberOfEmployees"
                      FROM generate_series(1, 5) i;
SELECT bulkops.bulk_upsert('sfq', 'q_src', key => 'Ext__c') AS job \gset
SELECT bulkops.wait(:job, '60 s');

-- 1. a new table: text columns named as the header, one row per record
SELECT bulkops.bulk_query('sfq', 'SELECT Id, Name, NumberOfEmployees FROM Account',
                          'q_new') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT operation, state, rows_total, rows_succeeded, destination, last_error
FROM bulkops.jobs WHERE id = :job;
SELECT attname, atttypid::regtype FROM pg_attribute
WHERE attrelid = 'q_new'::regclass AND attnum > 0 ORDER BY attnum;
SELECT "Name", "NumberOfEmployees", "Id" ~ '^001' AS has_id FROM q_new ORDER BY "Name";
SELECT count(*) AS receipts FROM bulkops.receipts WHERE job_id = :job;

-- 2. an existing table: columns matched by name, values cast to their types;
--    pages of 40 followed to the end; quoted commas, quotes and line breaks
SELECT test.mock('POST', '/_control/config', '{"salesforce": {"query_rows": 100}}');
CREATE SCHEMA staging;
CREATE TABLE staging.typed ("NumberOfEmployees" text, "Name" text, "Id" varchar(18),
                            loaded_at timestamptz DEFAULT now());
SELECT bulkops.bulk_query('sfq', 'SELECT Id, Name FROM Account', 'staging.typed',
                          '{"max_records": 40}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT (s->'salesforce'->>'query_pages')::int AS pages
FROM test.mock('GET', '/_control/stats') AS s;
SELECT count(*) AS all_rows, count(DISTINCT "Id") AS distinct_ids,
       count(*) FILTER (WHERE "Name" IS NULL) AS null_names,
       count(*) FILTER (WHERE loaded_at IS NOT NULL) AS defaults_applied
FROM staging.typed;
SELECT "Name" FROM staging.typed WHERE "Id" = '001000000007QRY';
SELECT remote_progress FROM bulkops.job_progress WHERE id = :job;

-- 3. a typed column the remote text does not fit, with strict: the job
--    fails and says why (without it such records are set aside as rejects:
--    bulk_query_typed)
CREATE TABLE q_int ("Name" integer);
SELECT bulkops.bulk_query('sfq', 'SELECT Name FROM Account', 'q_int',
                          '{"strict": true}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, last_error FROM bulkops.jobs WHERE id = :job;
SELECT count(*) AS rows_kept FROM q_int;

-- 4. a query Salesforce fails
SELECT test.mock('POST', '/_control/config',
                 '{"salesforce": {"fail_query": {"message": "INVALID_FIELD: No such column Nope"}}}');
SELECT bulkops.bulk_query('sfq', 'SELECT Nope FROM Account', 'q_never') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, last_error FROM bulkops.jobs WHERE id = :job;
SELECT to_regclass('q_never') AS not_created;

-- 5. refused before anything is sent
SELECT test.try($$SELECT bulkops.bulk_query('cq', 'SELECT 1', 'x')$$) AS clinia_has_no_query;
SELECT test.try($$SELECT bulkops.bulk_query('sfq', '', 'x')$$) AS empty_query;
SELECT test.try($$SELECT bulkops.bulk_query('sfq', 'SELECT Id FROM Account', 'pg_class')$$) AS catalog;
CREATE VIEW q_view AS SELECT 1 AS a;
SELECT test.try($$SELECT bulkops.bulk_query('sfq', 'SELECT Id FROM Account', 'q_view')$$) AS a_view;
CREATE ROLE q_user;
SELECT bulkops.grant_target('sfq', 'q_user', 'export');
GRANT USAGE ON SCHEMA staging TO q_user;
SET ROLE q_user;
SELECT test.try($$SELECT bulkops.bulk_query('sfq', 'SELECT Id FROM Account', 'staging.typed')$$) AS no_insert;
SELECT test.try($$SELECT bulkops.bulk_query('sfq', 'SELECT Id FROM Account', 'staging.other')$$) AS no_create;
RESET ROLE;
ALTER TABLE q_new ENABLE ROW LEVEL SECURITY;
GRANT INSERT ON q_new TO q_user;
SET ROLE q_user;
SELECT test.try($$SELECT bulkops.bulk_query('sfq', 'SELECT Id FROM Account', 'q_new')$$) AS rls_table;
RESET ROLE;

-- 6. an ordinary role's table is created by the worker as that role
GRANT CREATE ON SCHEMA staging TO q_user;
SET ROLE q_user;
SELECT bulkops.bulk_query('sfq', 'SELECT Id, Name FROM Account', 'staging.mine') AS job \gset
RESET ROLE;
SELECT bulkops.wait(:job, '60 s');
SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'staging.mine'::regclass;
SELECT count(*) AS mine_rows FROM staging.mine;
DROP TABLE staging.mine;
REVOKE ALL ON q_new FROM q_user;
REVOKE ALL ON SCHEMA staging FROM q_user;
SELECT bulkops.revoke_target('sfq', 'q_user');
DROP ROLE q_user;
SELECT bulkops.drop_target('cq');
