-- upgrade: 1.0 installs and walks to the current version; what 1.1, 1.2
-- and 1.3 changed is there afterwards, and 1.3 carries the data it finds
-- (owners and creators by name, destinations as text) to its new types
CREATE DATABASE bulkops_upgrade;
\c bulkops_upgrade
CREATE EXTENSION bulkops VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'bulkops';
SELECT count(*) AS prologue_before FROM pg_attribute
WHERE attrelid = 'bulkops.jobs'::regclass AND attname = 'prologue';
ALTER EXTENSION bulkops UPDATE TO '1.2';

-- what a 1.2 database holds: names, some of roles that no longer exist
CREATE ROLE up_admin;
CREATE ROLE up_user;
CREATE ROLE up_gone;
CREATE TABLE public.up_dest (x text);
INSERT INTO bulkops.targets (name, dialect, url, resource, auth, owner) VALUES
    ('up_t', 'clinia', 'http://127.0.0.1:1/c', 'Doc', '{"type": "bearer", "token": "x"}', 'up_admin'),
    ('up_env', 'clinia', 'http://127.0.0.1:1/c', 'Doc',
     '{"type": "bearer", "token": {"env": "HOME"}}', 'up_admin'),
    ('up_orphan', 'clinia', 'http://127.0.0.1:1/c', 'Doc', NULL, 'up_gone');
INSERT INTO bulkops.jobs (target, dialect, operation, created_by, state, destination) VALUES
    ('up_t', 'clinia', 'upsert', 'up_user', 'succeeded', NULL),
    ('up_t', 'clinia', 'overwrite', 'up_user', 'succeeded', NULL),
    ('up_t', 'clinia', 'query', 'up_user', 'succeeded', 'public.up_dest'),
    ('up_t', 'clinia', 'query', 'up_admin', 'queued', 'public."Up Missing"'),
    ('up_t', 'clinia', 'delete', 'up_gone', 'succeeded', NULL);
DROP ROLE up_gone;
-- receipts as 1.2 kept them, a row each: every status, remote ids that are
-- and are not the key, created and updated, errors, answers at different
-- times, and two rows that have none yet
INSERT INTO bulkops.batches (job_id, batch_no, first_row, row_count, keys, offsets, body, state)
SELECT id, b.no, b.first_row, b.n, b.keys, b.offsets, b.body, 'done'
FROM bulkops.jobs, (VALUES (1, 1, 4, '{a,b,c,d}'::text[], '{0,1,2,3,4}'::int[], '\x61626364'::bytea),
                           (2, 5, 3, '{e,f,NULL}', '{0,1,2,3}', '\x656667')) AS b(no, first_row, n, keys, offsets, body)
WHERE operation = 'upsert';
INSERT INTO bulkops.receipts (job_id, row_no, key, status, remote_id, created, http_status,
                              error_code, error_message, attempts, updated_at)
SELECT id, r.* FROM bulkops.jobs, (VALUES
    (1, 'a', 'succeeded', 'a', true, 200, NULL, NULL, 1, '2026-01-01 00:00:00+00'::timestamptz),
    (2, 'b', 'succeeded', 'B-1', false, 200, NULL, NULL, 1, '2026-01-01 00:00:00+00'),
    (3, 'c', 'failed', NULL, NULL, 207, 'E1', 'bad row', 2, '2026-01-01 00:01:00+00'),
    (4, 'd', 'unknown', NULL, NULL, NULL, NULL, 'gone', 2, '2026-01-01 00:02:00+00'),
    (5, 'e', 'cancelled', NULL, NULL, NULL, NULL, 'cancelled by bulkops.cancel()', 0,
     '2026-01-01 00:03:00+00')) AS r
WHERE operation = 'upsert';
CREATE TEMP TABLE receipts_1_2 AS SELECT * FROM bulkops.receipts;
-- counters of the jobs kept, which 1.3 counts in per target
UPDATE bulkops.jobs SET rows_succeeded = 2, rows_failed = 1, rows_cancelled = 1, rows_unknown = 1
WHERE operation IN ('upsert', 'delete');
UPDATE bulkops.jobs SET rows_succeeded = 7 WHERE operation = 'query';
ALTER EXTENSION bulkops UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'bulkops';
SELECT attrelid::regclass, attname, atttypid::regtype FROM pg_attribute
WHERE (attrelid, attname) IN (('bulkops.jobs'::regclass, 'prologue'),
                              ('bulkops.batches'::regclass, 'progress'),
                              ('bulkops.batches'::regclass, 'step_data'))
ORDER BY 1, 2;
-- whether a batch's rows may have been applied: false for every batch before
SELECT atttypid::regtype AS maybe_applied, attnotnull, pg_get_expr(adbin, adrelid) AS dflt
FROM pg_attribute JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
WHERE attrelid = 'bulkops.batches'::regclass AND attname = 'maybe_applied';
SELECT reloptions FROM pg_class WHERE oid = 'bulkops.job_progress'::regclass;
SELECT attname, attcompression FROM pg_attribute
WHERE attrelid = 'bulkops.batches'::regclass AND attname IN ('keys', 'offsets', 'body')
ORDER BY 1;
-- the view still belongs to the extension, and the public may read it
SELECT count(*) AS view_in_extension FROM pg_depend
WHERE objid = 'bulkops.job_progress'::regclass AND refobjid =
      (SELECT oid FROM pg_extension WHERE extname = 'bulkops') AND deptype = 'e';
SELECT has_table_privilege('public', 'bulkops.job_progress', 'SELECT') AS public_reads;
-- 1.2: batches say which worker holds them
SELECT atttypid::regtype AS lane FROM pg_attribute
WHERE attrelid = 'bulkops.batches'::regclass AND attname = 'lane';
-- 1.3: receipts are kept with their batch, in partitions by generation;
-- the view bulkops.receipts shows the very rows 1.2 had, no more, no less
SELECT relkind, pg_get_partkeydef(oid) FROM pg_class WHERE oid = 'bulkops.batches'::regclass;
SELECT relkind FROM pg_class WHERE oid = 'bulkops.receipts'::regclass;
SELECT count(*) AS receipts_kept FROM bulkops.receipts;
-- the same receipts, column for column; 1.3 adds each row's operation,
-- the job's before
(SELECT 'only in 1.3' AS what, job_id, row_no, key, status, remote_id, created,
        http_status, error_code, error_message, attempts, updated_at FROM bulkops.receipts
 EXCEPT SELECT 'only in 1.3', * FROM receipts_1_2)
UNION ALL
(SELECT 'only in 1.2', * FROM receipts_1_2
 EXCEPT SELECT 'only in 1.2', job_id, row_no, key, status, remote_id, created,
        http_status, error_code, error_message, attempts, updated_at FROM bulkops.receipts);
SELECT r.operation, j.operation AS jobs_operation, count(*)
FROM bulkops.receipts r JOIN bulkops.jobs j ON j.id = r.job_id GROUP BY 1, 2;
-- the columns 1.3 adds before operation are empty for what 1.2 recorded
SELECT count(*) FILTER (WHERE remote_version IS NOT NULL OR error_fields IS NOT NULL)
       AS with_new_columns
FROM bulkops.receipts;
SELECT batch_no, generation, encode(outcomes, 'hex') AS outcomes,
       encode(answer_of, 'hex') AS answer_of, remote_ids, error_codes, error_messages,
       answer_http, answer_attempts
FROM bulkops.batches ORDER BY job_id, batch_no;
SELECT tableoid::regclass AS batches_of_1_2_in FROM bulkops.batches GROUP BY 1;
-- 1.3: roles are regroles (a role that is gone hands over to the extension's
-- owner), destinations a regclass or the names of the table to create, a
-- role that pushed before keeps the privileges it used, stored secrets
-- count as set by the target's owner, and nobody writes the tables directly
SELECT attrelid::regclass, attname, atttypid::regtype FROM pg_attribute
WHERE (attrelid, attname) IN (('bulkops.targets'::regclass, 'owner'),
                              ('bulkops.targets'::regclass, 'auth_set_by'),
                              ('bulkops.jobs'::regclass, 'created_by'),
                              ('bulkops.jobs'::regclass, 'destination'))
ORDER BY 1, 2;
SELECT name, CASE WHEN owner::text = current_user THEN '(extension owner)'
                  ELSE owner::text END AS owner, auth_set_by
FROM bulkops.targets ORDER BY name;
SELECT operation, CASE WHEN created_by::text = current_user THEN '(extension owner)'
                       ELSE created_by::text END AS created_by,
       destination, destination_schema, destination_table
FROM bulkops.jobs ORDER BY id;
SELECT target, grantee, privilege, grantor FROM bulkops.target_privileges
ORDER BY 1, 2, 3;
SELECT has_table_privilege('up_admin', 'bulkops.targets', 'UPDATE') AS admin_updates,
       has_column_privilege('up_admin', 'bulkops.targets', 'auth', 'SELECT') AS admin_reads_auth,
       has_table_privilege('bulkops_admin', 'bulkops.batches', 'DELETE') AS bulkops_admin_deletes;
-- pg_dump keeps what bulkops holds
SELECT c.relname AS dumped FROM pg_extension e, unnest(e.extconfig) AS cfg(oid)
JOIN pg_class c ON c.oid = cfg.oid
WHERE e.extname = 'bulkops' ORDER BY 1;
-- 1.3: an export's rejects, readable as its job is (row-level security),
-- and the staged pages of a replace, readable by bulkops alone; both go
-- with their job
SELECT c.relname, c.relrowsecurity,
       has_table_privilege('public', c.oid, 'SELECT') AS public_reads,
       has_table_privilege('bulkops_admin', c.oid, 'INSERT') AS admin_writes,
       (SELECT string_agg(confdeltype::text, ',') FROM pg_constraint
        WHERE conrelid = c.oid AND contype = 'f') AS on_job_delete
FROM pg_class c WHERE c.relnamespace = 'bulkops'::regnamespace
  AND c.relname IN ('export_rejects', 'export_pages') ORDER BY 1;
SELECT polname FROM pg_policy WHERE polrelid = 'bulkops.export_rejects'::regclass;
-- 1.3 lists the dialects, with a function of the extension
SELECT count(*) > 0 AS dialects_listed FROM bulkops.dialects();
SELECT count(*) AS dialects_in_extension FROM pg_depend
WHERE objid = 'bulkops.dialects()'::regprocedure AND deptype = 'e';
-- 1.3: when each target may be sent to again, after a rate limit: readable
-- by all, written by the worker only, gone with its target, never dumped
SELECT attname, atttypid::regtype, attnotnull FROM pg_attribute
WHERE attrelid = 'bulkops.target_state'::regclass AND attnum > 0 ORDER BY attnum;
SELECT has_table_privilege('up_user', 'bulkops.target_state', 'SELECT') AS public_reads_holds,
       has_table_privilege('bulkops_admin', 'bulkops.target_state', 'INSERT') AS admin_writes_holds;
INSERT INTO bulkops.target_state (target, next_request_at, http_status)
VALUES ('up_t', now() + interval '1 hour', 429);
DELETE FROM bulkops.targets WHERE name = 'up_t';
SELECT count(*) AS holds_of_dropped_target FROM bulkops.target_state;
-- 1.3 serves a target's jobs in turn: each job's last claim, and the
-- partial indexes of unfinished jobs a claim (and the worker's look at
-- cancels and deadlines) probes
SELECT atttypid::regtype AS last_claim_at FROM pg_attribute
WHERE attrelid = 'bulkops.jobs'::regclass AND attname = 'last_claim_at';
SELECT c.relname, pg_get_indexdef(i.indexrelid) ~ 'WHERE' AS partial
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'bulkops.jobs'::regclass
  AND c.relname IN ('jobs_claim_idx', 'jobs_queued_generation_idx',
                    'jobs_cancel_requested_idx', 'jobs_deadline_idx') ORDER BY 1;
-- 1.3: rows by status per target and creator since install start from
-- the jobs kept (an export's records are no receipts); metrics and health
-- are for everyone to read, row-level security deciding what they count;
-- job_progress gains eta; with no worker serving this database,
-- check_health() is critical
SELECT target, CASE WHEN created_by::text = current_user THEN '(extension owner)'
                    ELSE created_by::text END AS created_by,
       succeeded, failed, cancelled, unknown
FROM bulkops.row_counts ORDER BY 1, 2;
SELECT c.relname, c.relkind, c.relrowsecurity,
       has_table_privilege('public', c.oid, 'SELECT') AS public_reads,
       has_table_privilege('bulkops_admin', c.oid, 'INSERT') AS admin_writes
FROM pg_class c WHERE c.relnamespace = 'bulkops'::regnamespace
  AND c.relname IN ('row_counts', 'metrics', 'health') ORDER BY 1;
SELECT attname, atttypid::regtype FROM pg_attribute
WHERE attrelid = 'bulkops.job_progress'::regclass AND attname IN ('rows_per_second', 'eta')
ORDER BY 1;
SELECT * FROM bulkops.check_health();
\c contrib_regression
DROP DATABASE bulkops_upgrade;
DROP ROLE up_admin, up_user;
-- the regression database got the current version directly
SELECT extversion FROM pg_extension WHERE extname = 'bulkops';
