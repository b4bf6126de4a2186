-- bulk_query_typed: exports into typed tables.  Values in Salesforce's
-- notation load ("" is NULL outside text columns, "23.0" fits an integer,
-- its datetimes, dates and booleans as they are); a record the table still
-- refuses goes to bulkops.export_rejects with its line and reason while
-- the rest load, unless strict fails the job; mode replace swaps the rows
-- when the export ends (readers see the old ones until then), mode merge
-- upserts by merge_key; include_deleted sends queryAll; bad options and
-- missing privileges are refused at bulk_query time, with nothing enqueued.
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SELECT current_setting('test.mock_url') || '/salesforce' AS url \gset
SELECT bulkops.create_target('sft', 'salesforce', :'url', 'Contact', NULL,
                             '{"poll_interval": 0.05}');
SELECT test.mock('POST', '/_control/reset');
-- what every query returns, as Salesforce writes it: every field quoted,
-- "" for empty and null, numbers with a decimal point even when integral;
-- T3 to T6 and the second T2 are what a table may refuse, T5 is deleted
SELECT test.mock('POST', '/_control/config', $${"salesforce": {"query_records": [
  {"Ext__c": "T1", "Name": "Typed one", "Employees__c": "23.0", "Revenue__c": "1234.50",
   "Big__c": "9007199254740993.0", "Active__c": "true", "Since__c": "2024-05-01",
   "Seen__c": "2024-05-01T12:34:56.000+0000", "Note__c": ""},
  {"Ext__c": "T2", "Name": "", "Employees__c": "", "Revenue__c": "", "Big__c": "",
   "Active__c": "false", "Since__c": "", "Seen__c": "2024-04-16T19:00:00.000Z",
   "Note__c": "first"},
  {"Ext__c": "T3", "Name": "Half", "Employees__c": "23.5", "Active__c": "true"},
  {"Ext__c": "T4", "Name": "Bad date", "Since__c": "2024-13-01", "Active__c": "true"},
  {"Ext__c": "T5", "Name": "Gone", "Active__c": "false", "IsDeleted": "true"},
  {"Ext__c": "T6", "Name": "Negative", "Employees__c": "-1.0", "Active__c": "true"},
  {"Ext__c": "T2", "Name": "Again", "Active__c": "true", "Note__c": "second"}
]}}$$::jsonb);
\set fields 'Ext__c, Name, Employees__c, Revenue__c, Big__c, Active__c, Since__c, Seen__c, Note__c'

-- 1. a typed table: the values load, what cannot be stored is a reject
CREATE TABLE t_typed ("Ext__c" text PRIMARY KEY, "Name" text,
                      "Employees__c" integer CHECK ("Employees__c" >= 0),
                      "Revenue__c" numeric(12, 2), "Big__c" bigint,
                      "Active__c" boolean, "Since__c" date, "Seen__c" timestamptz,
                      "Note__c" text);
SELECT bulkops.bulk_query('sft', 'SELECT ' || :'fields' || ' FROM Contact', 't_typed') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed, last_error
FROM bulkops.jobs WHERE id = :job;
SELECT * FROM t_typed ORDER BY "Ext__c";
SELECT "Name" = '' AS empty_name_kept, "Note__c" IS NULL AS null_note
FROM t_typed WHERE "Ext__c" = 'T2';
SELECT row_no, column_name, sqlstate, reason, line
FROM bulkops.export_rejects WHERE job_id = :job ORDER BY row_no;
SELECT count(*) AS receipts FROM bulkops.receipts WHERE job_id = :job;

-- 1b. a domain over integer converts as integer does, and its check is a
--     reject naming the column; an identity column takes the value given,
--     as COPY does (and NULL is no value it can take)
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE t_dom ("Ext__c" text, "Employees__c" positive);
SELECT bulkops.bulk_query('sft', 'SELECT Ext__c, Employees__c FROM Contact', 't_dom') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT "Ext__c", "Employees__c" FROM t_dom ORDER BY "Ext__c", "Employees__c";
SELECT row_no, column_name, sqlstate, reason
FROM bulkops.export_rejects WHERE job_id = :job ORDER BY row_no;
CREATE TABLE t_ident ("Ext__c" text, "Employees__c" integer GENERATED ALWAYS AS IDENTITY);
SELECT bulkops.bulk_query('sft', 'SELECT Ext__c, Employees__c FROM Contact', 't_ident') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT "Ext__c", "Employees__c" FROM t_ident ORDER BY "Ext__c";
SELECT column_name, sqlstate, count(*)
FROM bulkops.export_rejects WHERE job_id = :job GROUP BY 1, 2 ORDER BY 1, 2;

-- 1c. the remote side's column names are quoted in the statements bulkops
--     makes (the mock echoes the field names of the query)
CREATE TABLE t_odd ("Ext__c" text, "x""y) z" text);
SELECT bulkops.bulk_query('sft', 'SELECT Ext__c, x"y) z FROM Contact', 't_odd') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT count(*) AS odd_rows, count(*) FILTER (WHERE "x""y) z" = '') AS empty FROM t_odd;

-- 2. empty_as_null: "" is NULL in text columns too
CREATE TABLE t_empty ("Ext__c" text, "Name" text, "Note__c" text);
SELECT bulkops.bulk_query('sft', 'SELECT Ext__c, Name, Note__c FROM Contact', 't_empty',
                          '{"empty_as_null": true}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT "Ext__c", "Name", "Name" IS NULL AS name_null, "Note__c", "Note__c" IS NULL AS note_null
FROM t_empty ORDER BY "Ext__c", "Name" NULLS FIRST;

-- 3. strict: the first value that cannot be stored fails the job, and
--    nothing of its page stays
CREATE TABLE t_strict (LIKE t_typed INCLUDING ALL);
SELECT bulkops.bulk_query('sft', 'SELECT ' || :'fields' || ' FROM Contact', 't_strict',
                          '{"strict": true}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed, last_error FROM bulkops.jobs WHERE id = :job;
SELECT count(*) AS rows_kept FROM t_strict;
SELECT count(*) AS rejects FROM bulkops.export_rejects WHERE job_id = :job;

-- 4. replace: the old rows stay, untouched and alone, while the pages land
--    (one record each, 0.2 s apart); the job's end swaps them for the new
CREATE TABLE t_repl (LIKE t_typed INCLUDING ALL);
INSERT INTO t_repl ("Ext__c", "Name") VALUES ('OLD1', 'old one'), ('OLD2', 'old two');
SELECT test.mock('POST', '/_control/faults', '{"rules": [{"action": "delay", "seconds": 0.2,
    "method": "GET", "path": "/jobs/query/[^/]+/results", "times": 6}]}');
SELECT bulkops.bulk_query('sft', 'SELECT ' || :'fields' || ' FROM Contact', 't_repl',
                          '{"mode": "replace", "max_records": 1}') AS job \gset
SELECT set_config('test.job', :'job', false) IS NOT NULL AS job_noted;
-- one statement sees the job running with pages staged, and the table
CREATE TEMP TABLE half_way (rows_total bigint, rows_succeeded bigint, staged bigint,
                            seen text[]);
DO $$
BEGIN
    FOR i IN 1 .. 3000 LOOP
        INSERT INTO half_way
        SELECT j.rows_total, j.rows_succeeded,
               (SELECT count(*) FROM bulkops.export_pages p WHERE p.job_id = j.id),
               (SELECT array_agg("Ext__c" ORDER BY "Ext__c") FROM t_repl)
        FROM bulkops.jobs j
        WHERE j.id = current_setting('test.job')::bigint AND j.state = 'running'
          AND j.rows_total >= 2;
        EXIT WHEN FOUND;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
SELECT rows_total >= 2 AS pages_landed, rows_succeeded AS counted_yet, staged >= 2 AS staged,
       seen AS rows_seen_half_way
FROM half_way;
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed, last_error
FROM bulkops.jobs WHERE id = :job;
SELECT "Ext__c", "Name", "Employees__c" FROM t_repl ORDER BY "Ext__c";
SELECT count(*) AS staged_left FROM bulkops.export_pages WHERE job_id = :job;
SELECT row_no, reason FROM bulkops.export_rejects WHERE job_id = :job ORDER BY row_no;
SELECT (m -> b.remote_id ->> 'pages')::int AS pages_of_one_record
FROM bulkops.batches b, test.mock('GET', '/_control/salesforce/queries') AS m
WHERE b.job_id = :job;

-- a replace that fails leaves the table as it was and forgets its pages
SELECT test.mock('POST', '/_control/faults', '{"rules": [{"action": "status", "status": 400,
    "method": "GET", "path": "/jobs/query/[^/]+/results", "skip": 2, "times": 1}]}');
SELECT bulkops.bulk_query('sft', 'SELECT ' || :'fields' || ' FROM Contact', 't_repl',
                          '{"mode": "replace", "max_records": 1}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded,
       regexp_replace(last_error, 'job \w+', 'job X') AS last_error
FROM bulkops.jobs WHERE id = :job;
SELECT array_agg("Ext__c" ORDER BY "Ext__c") AS unchanged FROM t_repl;
SELECT count(*) AS staged_left FROM bulkops.export_pages WHERE job_id = :job;
SELECT test.mock('DELETE', '/_control/faults');

-- 5. merge by Ext__c: existing rows updated, new ones added, others kept;
--    the second T2 updates the first
CREATE TABLE t_merge (LIKE t_typed INCLUDING ALL);
INSERT INTO t_merge ("Ext__c", "Name", "Employees__c") VALUES ('T1', 'old name', 5),
                                                              ('Z9', 'keep me', 9);
SELECT bulkops.bulk_query('sft', 'SELECT ' || :'fields' || ' FROM Contact', 't_merge',
                          '{"mode": "merge", "merge_key": "Ext__c"}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed FROM bulkops.jobs WHERE id = :job;
SELECT "Ext__c", "Name", "Employees__c", "Note__c" FROM t_merge ORDER BY "Ext__c";
SELECT row_no, column_name, sqlstate FROM bulkops.export_rejects WHERE job_id = :job
ORDER BY row_no;

-- 6. include_deleted sends queryAll (deleted records too); a job may turn it
--    off, under either name, and a target's older query_all counts as it
SELECT bulkops.create_target('sft_all', 'salesforce', :'url', 'Contact', NULL,
                             '{"poll_interval": 0.05, "include_deleted": true}');
SELECT bulkops.create_target('sft_qa', 'salesforce', :'url', 'Contact', NULL,
                             '{"poll_interval": 0.05, "query_all": true}');
CREATE TABLE t_all ("Ext__c" text, "IsDeleted" boolean, job bigint);
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config', $${"salesforce": {"query_records": [
  {"Ext__c": "A1"}, {"Ext__c": "A2", "IsDeleted": "true"}]}}$$::jsonb);
SELECT bulkops.bulk_query('sft_all', 'SELECT Ext__c, IsDeleted FROM Contact', 't_all') AS j1 \gset
SELECT bulkops.wait(:j1, '60 s');
UPDATE t_all SET job = 1 WHERE job IS NULL;
SELECT bulkops.bulk_query('sft_all', 'SELECT Ext__c, IsDeleted FROM Contact', 't_all',
                          '{"query_all": false}') AS j2 \gset
SELECT bulkops.wait(:j2, '60 s');
UPDATE t_all SET job = 2 WHERE job IS NULL;
SELECT bulkops.bulk_query('sft_qa', 'SELECT Ext__c, IsDeleted FROM Contact', 't_all',
                          '{"include_deleted": true}') AS j3 \gset
SELECT bulkops.wait(:j3, '60 s');
UPDATE t_all SET job = 3 WHERE job IS NULL;
SELECT job, array_agg("Ext__c" || CASE WHEN "IsDeleted" THEN ' (deleted)' ELSE '' END
                      ORDER BY "Ext__c") AS records
FROM t_all GROUP BY job ORDER BY job;
SELECT q.value->>'operation' AS operation, count(*)
FROM test.mock('GET', '/_control/salesforce/queries') AS m, jsonb_each(m) AS q
GROUP BY 1 ORDER BY 1;

-- 7. refused at bulk_query time, naming the option; nothing is enqueued
SELECT count(*) AS jobs_before FROM bulkops.jobs \gset
CREATE FUNCTION pg_temp.refused(tbl text, opts text) RETURNS text LANGUAGE sql
    RETURN test.try(format('SELECT bulkops.bulk_query(%L, %L, %L, %L)',
                           'sft', 'SELECT Id FROM Contact', tbl, opts));
SELECT pg_temp.refused('t_typed', '{"mode": "upsert"}') AS bad_mode;
SELECT pg_temp.refused('t_merge', '{"mode": "merge"}') AS merge_without_key;
SELECT pg_temp.refused('t_merge', '{"mode": "merge", "merge_key": ""}') AS empty_key;
SELECT pg_temp.refused('t_merge', '{"mode": "merge", "merge_key": "Nope"}') AS unknown_key;
-- no unique index on the key (the hint says how to add one)
SELECT bulkops.bulk_query('sft', 'SELECT Id FROM Contact', 't_merge',
                          '{"mode": "merge", "merge_key": "Name"}');
CREATE TABLE t_partial_key (k text, v text);
CREATE UNIQUE INDEX ON t_partial_key (k) WHERE v IS NOT NULL;
-- a partial unique index cannot arbitrate ON CONFLICT
SELECT bulkops.bulk_query('sft', 'SELECT Id FROM Contact', 't_partial_key',
                          '{"mode": "merge", "merge_key": "k"}');
-- replace needs a table to replace
SELECT bulkops.bulk_query('sft', 'SELECT Id FROM Contact', 'nowhere',
                          '{"mode": "replace"}');
SELECT pg_temp.refused('t_typed', '{"strict": "yes"}') AS strict_not_boolean;
SELECT pg_temp.refused('t_typed', '{"empty_as_null": 1}') AS empty_as_null_not_boolean;
SELECT pg_temp.refused('t_typed', '{"include_deleted": true}') AS include_deleted_widens;
SELECT pg_temp.refused('t_typed', '{"query_all": true}') AS query_all_widens;
SELECT test.try($$SELECT bulkops.create_target('sft_bad', 'salesforce', 'http://127.0.0.1:1/s',
                  'Contact', NULL, '{"mode": "sideways"}')$$) AS target_bad_mode;
SELECT count(*) - :jobs_before AS jobs_enqueued FROM bulkops.jobs;

-- 8. privileges, with the caller's rights: replace needs DELETE or TRUNCATE,
--    merge UPDATE and SELECT on the key; the rejects of a job are seen by
--    whoever sees the job, and written by bulkops alone
CREATE ROLE qt_user;
CREATE ROLE qt_other;
SELECT bulkops.grant_target('sft', 'qt_user', 'export');
GRANT INSERT ON t_repl, t_merge TO qt_user;
SET ROLE qt_user;
-- replace without DELETE or TRUNCATE
SELECT bulkops.bulk_query('sft', 'SELECT Id FROM Contact', 't_repl',
                          '{"mode": "replace"}');
-- merge without UPDATE
SELECT bulkops.bulk_query('sft', 'SELECT Id FROM Contact', 't_merge',
                          '{"mode": "merge", "merge_key": "Ext__c"}');
RESET ROLE;
GRANT UPDATE ON t_merge TO qt_user;
SET ROLE qt_user;
-- merge without SELECT on the key
SELECT bulkops.bulk_query('sft', 'SELECT Id FROM Contact', 't_merge',
                          '{"mode": "merge", "merge_key": "Ext__c"}');
RESET ROLE;
SELECT count(*) - :jobs_before AS jobs_enqueued FROM bulkops.jobs;
-- TRUNCATE is enough: the worker empties the table that way
SELECT test.mock('POST', '/_control/config', $${"salesforce": {"query_records": [
  {"Ext__c": "U1", "Name": "by qt_user", "Employees__c": "7.0"},
  {"Ext__c": "U2", "Name": "refused", "Employees__c": "x"}]}}$$::jsonb);
GRANT TRUNCATE ON t_repl TO qt_user;
SET ROLE qt_user;
SELECT bulkops.bulk_query('sft', 'SELECT Ext__c, Name, Employees__c FROM Contact', 't_repl',
                          '{"mode": "replace"}') AS job \gset
RESET ROLE;
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed, last_error
FROM bulkops.jobs WHERE id = :job;
SELECT "Ext__c", "Name", "Employees__c" FROM t_repl ORDER BY "Ext__c";
SET ROLE qt_user;
SELECT count(*) AS own_rejects FROM bulkops.export_rejects WHERE job_id = :job;
SELECT count(*) AS others_rejects FROM bulkops.export_rejects WHERE job_id <> :job;
SELECT test.try($$INSERT INTO bulkops.export_rejects (job_id, row_no, sqlstate, reason)
                  VALUES (1, 99, 'XX000', 'forged')$$) AS insert_reject;
SELECT test.try($$DELETE FROM bulkops.export_rejects$$) AS delete_rejects;
SELECT test.try($$SELECT count(*) FROM bulkops.export_pages$$) AS read_staged_pages;
SET ROLE qt_other;
SELECT count(*) AS visible_to_others FROM bulkops.export_rejects;
RESET ROLE;
SELECT bulkops.revoke_target('sft', 'qt_user');
REVOKE ALL ON t_repl, t_merge FROM qt_user;
DROP ROLE qt_user, qt_other;
SELECT bulkops.drop_target('sft_all');
SELECT bulkops.drop_target('sft_qa');
