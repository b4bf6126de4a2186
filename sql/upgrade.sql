-- upgrade: 1.0 installs and walks to the current version; what 1.1 and 1.2
-- changed is there afterwards
CREATE DATABASE bulkops_upgrade;
\c bulkops_upgrade
CREATE EXTENSION bulkops VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'bulkops';
SELECT count(*) AS prologue_before FROM pg_attribute
WHERE attrelid = 'bulkops.jobs'::regclass AND attname = 'prologue';
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
-- 1.2: batches say which worker holds them; the key index compares bytes,
-- and a join on key still uses it
SELECT atttypid::regtype AS lane FROM pg_attribute
WHERE attrelid = 'bulkops.batches'::regclass AND attname = 'lane';
SELECT pg_get_indexdef('bulkops.receipts_key_idx'::regclass);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT r.status FROM (VALUES (17)) AS a(id) JOIN bulkops.receipts r ON r.key = a.id::text;
RESET enable_seqscan;
\c contrib_regression
DROP DATABASE bulkops_upgrade;
-- the regression database got the current version directly
SELECT extversion FROM pg_extension WHERE extname = 'bulkops';
