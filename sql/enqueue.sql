-- enqueue: bulk_* runs the source with the caller's rights, cuts it into
-- batches in the caller's transaction (a rollback leaves no job), and refuses
-- bad sources, keys and options with clear errors and no job.
-- Every push here is rolled back, so the worker never sees these jobs.
\set VERBOSITY default
SELECT current_setting('test.mock_url') || '/clinia/sources/enq/v1' AS url \gset
SELECT bulkops.create_target('enq', 'clinia', :'url', 'Thing', NULL,
                             '{"batch_size": 1000}');
CREATE TABLE things AS
SELECT i AS id, 'thing ' || i AS label FROM generate_series(1, 2500) AS i;

-- a table name: 3 batches of 1000, 1000 and 500 rows
BEGIN;
SELECT bulkops.bulk_upsert('enq', 'things', key => 'id') AS job \gset
SELECT target, dialect, operation, key_column, state, rows_total, batches_total,
       bytes_total > 0 AS has_bytes, created_by::text = current_user AS mine
FROM bulkops.jobs WHERE id = :job;
SELECT batch_no, state, first_row, row_count, step, attempts,
       array_length(keys, 1) AS nkeys, keys[1] AS first_key,
       array_length(offsets, 1) AS noffsets,
       offsets[array_length(offsets, 1)] = octet_length(body) AS offsets_span_body
FROM bulkops.batches WHERE job_id = :job ORDER BY batch_no;
-- row 1's encoding, cut out of the body by its offsets
SELECT convert_from(substring(body FROM offsets[1] + 1 FOR offsets[2] - offsets[1]), 'UTF8')
FROM bulkops.batches WHERE job_id = :job AND batch_no = 1;
ROLLBACK;
-- rolled back: no job, no batches
SELECT count(*) AS jobs_after_rollback FROM bulkops.jobs;
SELECT count(*) AS batches_after_rollback FROM bulkops.batches;

-- schema-qualified name, a view, VALUES, TABLE, WITH; job options win (within
-- the target's limits)
CREATE VIEW few_things AS SELECT * FROM things WHERE id <= 10;
BEGIN;
SELECT bulkops.bulk_upsert('enq', 'public.things', key => 'id', options => '{"batch_size": 500}') AS j1 \gset
SELECT bulkops.bulk_upsert('enq', 'few_things', key => 'id') AS j2 \gset
SELECT bulkops.bulk_delete('enq', $$VALUES ('a'), ('b')$$, key => 'column1') AS j3 \gset
SELECT bulkops.bulk_upsert('enq', 'TABLE things', key => 'label') AS j4 \gset
SELECT bulkops.bulk_insert('enq', 'WITH x AS (SELECT 1 AS n) SELECT n FROM x') AS j5 \gset
SELECT id = :j1 AS j1, operation, rows_total, batches_total, options->>'batch_size' AS batch_size
FROM bulkops.jobs WHERE id IN (:j1, :j2, :j3, :j4, :j5) ORDER BY id;
-- delete sends only the id; insert without a key has null keys
SELECT convert_from(body, 'UTF8') FROM bulkops.batches WHERE job_id = :j3;
SELECT keys, convert_from(body, 'UTF8') FROM bulkops.batches WHERE job_id = :j5;
ROLLBACK;

-- an empty source is a job that is done at once
BEGIN;
SELECT bulkops.bulk_upsert('enq', 'SELECT * FROM things WHERE false', key => 'id') AS job \gset
SELECT state, rows_total, batches_total, finished_at IS NOT NULL AS finished
FROM bulkops.jobs WHERE id = :job;
ROLLBACK;

-- several pushes in one transaction are several jobs
BEGIN;
SELECT bulkops.bulk_upsert('enq', 'few_things', key => 'id') IS NOT NULL AS a,
       bulkops.bulk_upsert('enq', 'few_things', key => 'id') IS NOT NULL AS b;
SELECT count(*) FROM bulkops.jobs;
ROLLBACK;

-- mistakes: each is an error and leaves no job
SELECT bulkops.bulk_upsert('nosuch', 'things', key => 'id');
SELECT bulkops.bulk_upsert('enq', 'nosuch_table', key => 'id');
SELECT bulkops.bulk_upsert('enq', NULL, key => 'id');
SELECT bulkops.bulk_upsert(NULL, 'things', key => 'id');
SELECT bulkops.bulk_upsert('enq', 'SELEC id FROM things', key => 'id');
SELECT bulkops.bulk_upsert('enq', 'SELECT nope FROM things', key => 'id');
SELECT bulkops.bulk_upsert('enq', 'things', key => 'nope');
SELECT bulkops.bulk_upsert('enq', 'things');
SELECT bulkops.bulk_update('enq', 'things', key => 'id');
SELECT bulkops.bulk_overwrite('enq', 'things', key => 'id');
SELECT bulkops.bulk_upsert('enq', 'things', key => 'id', options => '{"bogus": 1}');
SELECT bulkops.bulk_upsert('enq', 'things', key => 'id', options => '{"max_attempts": "many"}');
SELECT bulkops.bulk_upsert('enq', 'SELECT id, label AS id FROM things', key => 'id');
SELECT bulkops.bulk_upsert('enq', 'SELECT CASE WHEN id = 7 THEN NULL ELSE id END AS id FROM things', key => 'id');
SELECT bulkops.bulk_upsert('enq', 'SELECT * FROM things FOR UPDATE', key => 'id');
SELECT bulkops.bulk_upsert('enq', 'WITH d AS (DELETE FROM things RETURNING *) SELECT * FROM d', key => 'id');
SELECT bulkops.bulk_upsert('enq', 'SELECT 1 AS id; SELECT 2 AS id', key => 'id');
SELECT bulkops.bulk_upsert('enq', 'DELETE FROM things RETURNING *', key => 'id');
SELECT count(*) AS things_left FROM things;
SELECT count(*) AS jobs_after_errors FROM bulkops.jobs;

-- the source runs with the caller's rights
CREATE ROLE enq_user;
SELECT bulkops.grant_target('enq', 'enq_user', 'push');
SET ROLE enq_user;
SELECT bulkops.bulk_upsert('enq', 'things', key => 'id');
RESET ROLE;
SELECT bulkops.revoke_target('enq', 'enq_user');
DROP ROLE enq_user;

-- wait() on a job of the calling transaction would wait forever: refused
BEGIN;
SELECT bulkops.bulk_upsert('enq', 'few_things', key => 'id') AS job \gset
SELECT bulkops.wait(:job);
ROLLBACK;
SELECT bulkops.wait(123456789);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT bulkops.wait(1);
ROLLBACK;

SELECT bulkops.drop_target('enq');
