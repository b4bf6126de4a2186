-- sync: syncs push only what changed since the last successful push of each
-- key.  Proves: create_sync refuses bad modes, dialects that cannot carry a
-- mode, missing keys and options before storing anything; preview_sync and
-- preview send and store nothing and show each row as it would be sent;
-- run_sync sends new, changed and failed keys and nothing else, one job per
-- run, NULL with a NOTICE when nothing changed, when a job of the sync is
-- still open, and on a second call in one transaction; a mirror deletes,
-- across many batches, exactly the keys it pushed that left the source and
-- never a key pushed by anything else; mode insert sends keys it never
-- pushed only; failed rows are sent again until they succeed; receipts say
-- each row's operation; duplicate keys are an error naming the key; running
-- needs the target privileges of what a mode sends; retry() sends exactly
-- the rows of a job with the statuses asked, with their first payload, and
-- refuses when that payload is gone.
-- the mock's control API, quietly (test.mock's temporary table NOTICEs)
CREATE FUNCTION sy_mock(method text, path text, body jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE sql SET client_min_messages = warning RETURN test.mock(method, path, body);
SELECT current_setting('test.mock_url') || '/clinia/sources/sync/v1' AS url \gset
SELECT current_setting('test.mock_url') || '/packagex/v1' AS px_url \gset
SELECT sy_mock('POST', '/_control/reset');
SELECT sy_mock('POST', '/_control/config',
                 '{"clinia": {"pending_polls": 0}, "packagex": {"api_key": "px-key"}}');
SELECT bulkops.create_target('sy', 'clinia', :'url', 'Thing');
SELECT bulkops.create_target('sy_px', 'packagex', :'px_url', 'contact',
       '{"type": "header", "name": "PX-API-KEY", "value": "px-key"}');

-- wait without wait()'s progress NOTICEs, whose count depends on timing
CREATE FUNCTION sy_wait(job bigint) RETURNS text LANGUAGE sql
SET client_min_messages = warning
RETURN bulkops.wait(job, '60 s');
-- what the mock holds for the sync's source, as sorted keys
CREATE FUNCTION sy_remote() RETURNS text[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(k ORDER BY k::int), '{}')
    FROM jsonb_object_keys(sy_mock('GET', '/_control/clinia/store?src=sync&type=Thing')) AS k
$$;
CREATE FUNCTION sy_requests() RETURNS int LANGUAGE sql AS $$
    SELECT jsonb_array_length(sy_mock('GET', '/_control/requests'))
$$;
CREATE FUNCTION sy_receipts(job bigint)
RETURNS TABLE (operation text, status text, n bigint) LANGUAGE sql AS $$
    SELECT operation, status, count(*) FROM bulkops.receipts WHERE job_id = job
    GROUP BY 1, 2 ORDER BY 1, 2
$$;

CREATE TABLE sy_things AS
SELECT i AS id, 'thing ' || i AS name, NULL::text AS _fail
FROM generate_series(1, 1200) AS i;

-- 1. refused before anything is stored
SELECT test.try($$SELECT bulkops.create_sync('s', 'sy', 'sy_things', 'id', 'merge')$$);
SELECT test.try($$SELECT bulkops.create_sync('s', 'nope', 'sy_things', 'id')$$);
SELECT test.try($$SELECT bulkops.create_sync('s', 'sy', 'sy_things', 'no_such_column')$$);
SELECT test.try($$SELECT bulkops.create_sync('s', 'sy', 'no_such_table', 'id')$$);
SELECT test.try($$SELECT bulkops.create_sync('s', 'sy', 'sy_things', 'id', options => '{"colour": 1}')$$);
SELECT test.try($$SELECT bulkops.create_sync('s', 'sy', 'DELETE FROM sy_things RETURNING id', 'id')$$);
SELECT test.try($$SELECT bulkops.create_sync('', 'sy', 'sy_things', 'id')$$);
-- PackageX and BlueConic have no insert: mode insert cannot be done there
SELECT test.try($$SELECT bulkops.create_sync('s', 'sy_px', 'sy_things', 'id', 'insert')$$);
SELECT count(*) AS no_syncs FROM bulkops.syncs;

-- 2. a mirror, in batches of 250
SELECT bulkops.create_sync('sy_things', 'sy', 'sy_things', 'id', 'mirror', '{"batch_size": 250}');
SELECT test.try($$SELECT bulkops.create_sync('sy_things', 'sy', 'sy_things', 'id')$$);
SELECT name, target, mode, source, key, options, owner = current_user::regrole AS mine,
       last_job, last_run_at FROM bulkops.syncs;

-- a key pushed by a plain push through the same target: not the sync's
SELECT bulkops.bulk_upsert('sy', $$SELECT 90001 AS id, 'foreign' AS name$$, key => 'id') AS job \gset
SELECT sy_wait(:job);

-- the dry run sends nothing, stores nothing
SELECT sy_requests() AS requests_before \gset
SELECT change, count(*), min(key::int), max(key::int) FROM bulkops.preview_sync('sy_things')
GROUP BY 1 ORDER BY 1;
SELECT key, body FROM bulkops.preview_sync('sy_things') WHERE key IN ('1', '2') ORDER BY key;
SELECT sy_requests() - :requests_before AS requests_sent,
       (SELECT count(*) FROM bulkops.jobs WHERE sync_id IS NOT NULL) AS sync_jobs,
       (SELECT last_run_at FROM bulkops.syncs) AS last_run_at;
-- a plain push's dry run: each row as the dialect encodes it
SELECT row_no, key, body FROM bulkops.preview('sy', 'SELECT * FROM sy_things WHERE id <= 2', 'id');
SELECT row_no, key, body FROM bulkops.preview('sy', 'SELECT id FROM sy_things WHERE id = 1', 'id', 'delete');
SELECT test.try($$SELECT * FROM bulkops.preview('sy', 'sy_things', 'id', 'overwrite')$$);
SELECT test.try($$SELECT * FROM bulkops.preview('sy', 'sy_things', 'id', 'launch')$$);

-- the first run sends everything; a second call in the same transaction,
-- and any run while its job is open, enqueues nothing
-- (their NOTICEs name the job, whose number depends on the suites before:
-- test/t/002_pg_cron.pl reads them)
BEGIN;
SELECT bulkops.run_sync('sy_things') AS job \gset
SET LOCAL client_min_messages = warning;
SELECT bulkops.run_sync('sy_things') IS NULL AS second_call_enqueues_nothing;
COMMIT;
SET client_min_messages = warning;
SELECT bulkops.run_sync('sy_things') IS NULL AS open_job_enqueues_nothing;
RESET client_min_messages;
SELECT sy_wait(:job);
SELECT :job AS first_job \gset
SELECT rows_total, batches_total, sync_id IS NOT NULL AS a_sync_job FROM bulkops.jobs WHERE id = :job;
SELECT * FROM sy_receipts(:job);
SELECT last_job = :job AS last_job, last_new, last_changed, last_retry, last_deleted,
       last_unchanged FROM bulkops.syncs;
SELECT cardinality(sy_remote()) AS remote_keys;

-- nothing changed: nothing sent
SELECT bulkops.run_sync('sy_things') IS NULL AS nothing_to_send;
SELECT last_new, last_changed, last_retry, last_deleted, last_unchanged FROM bulkops.syncs;

-- 3. changes: 10 updated, 2 updated to fail remotely, 3 new, 600 gone
-- (more than two batches of deletes)
UPDATE sy_things SET name = name || ' v2' WHERE id <= 10;
UPDATE sy_things SET _fail = 'no such thing' WHERE id IN (11, 12);
INSERT INTO sy_things SELECT i, 'thing ' || i, NULL FROM generate_series(1201, 1203) AS i;
DELETE FROM sy_things WHERE id > 600 AND id <= 1200;
SELECT change, count(*), min(key::int), max(key::int) FROM bulkops.preview_sync('sy_things')
GROUP BY 1 ORDER BY 1;
SELECT bulkops.run_sync('sy_things') AS job \gset
SELECT sy_wait(:job);
SELECT * FROM sy_receipts(:job);
SELECT operation, count(*) AS batches, sum(row_count) AS rows
FROM bulkops.batches WHERE job_id = :job GROUP BY 1 ORDER BY 1;
SELECT key, status, error_message FROM bulkops.receipts WHERE job_id = :job AND status <> 'succeeded';
-- the remote side holds the source's keys, and the key it did not push
SELECT sy_remote() = (SELECT array_agg(id::text ORDER BY id) FROM sy_things) || '{90001}'::text[]
       AS remote_is_source_and_foreign;
SELECT last_new, last_changed, last_retry, last_deleted, last_unchanged FROM bulkops.syncs;
SELECT :job AS changes_job \gset

-- 4. failed rows are sent again though unchanged, until they succeed
SELECT change, key FROM bulkops.preview_sync('sy_things') ORDER BY key;
SELECT bulkops.run_sync('sy_things') AS job \gset
SELECT sy_wait(:job);
SELECT * FROM sy_receipts(:job);
UPDATE sy_things SET _fail = NULL WHERE id = 11;
SELECT change, key FROM bulkops.preview_sync('sy_things') ORDER BY key;
SELECT bulkops.run_sync('sy_things') AS job \gset
SELECT sy_wait(:job);
SELECT key, status FROM bulkops.receipts WHERE job_id = :job ORDER BY key;
SELECT change, key FROM bulkops.preview_sync('sy_things') ORDER BY key;

-- 5. retry(): exactly the rows asked for, with their first payload
SELECT test.try($$SELECT bulkops.retry(1, '{failed,lost}')$$);
SELECT test.try($$SELECT bulkops.retry(999999)$$);
BEGIN;
SELECT bulkops.retry(:changes_job) AS retry_job \gset
SELECT operation, key FROM bulkops.batches b, unnest(b.keys) AS key
WHERE job_id = :retry_job ORDER BY key;
-- the bytes each row is sent with are those of the first time
WITH rows_of(job, wanted) AS (VALUES (:changes_job, 2), (:retry_job, NULL)),
     r AS (
    SELECT o.job, b.keys[i] AS key,
           substring(b.body FROM b.offsets[i] + 1 FOR b.offsets[i + 1] - b.offsets[i]) AS row
    FROM rows_of o JOIN bulkops.batches b ON b.job_id = o.job,
         generate_subscripts(b.keys, 1) AS i
    WHERE o.wanted IS NULL OR get_byte(b.outcomes, i - 1) & 7 = o.wanted)
SELECT key, count(*) AS jobs, count(DISTINCT row) AS payloads FROM r GROUP BY key ORDER BY key;
COMMIT;
SELECT sy_wait(:retry_job);
SELECT * FROM sy_receipts(:retry_job);
-- a retry of a sync's job is the sync's: its receipts reach the state
SELECT sync_id IS NOT NULL AS the_syncs FROM bulkops.jobs WHERE id = :retry_job;
-- nothing with those statuses: NULL; payloads gone (a batch whose rows
-- all succeeded keeps none): an error
SET client_min_messages = warning;
SELECT bulkops.retry(:first_job) IS NULL AS nothing_failed;
RESET client_min_messages;
SELECT test.try('SELECT bulkops.retry(' || :first_job || ', ''{succeeded}'')');
-- a batch with a row to send again keeps its payload, its successes' too
BEGIN;
SELECT bulkops.retry(:job, '{succeeded}') AS retry_job \gset
SELECT key FROM bulkops.batches b, unnest(b.keys) AS key WHERE job_id = :retry_job;
ROLLBACK;
-- an open job cannot be retried
BEGIN;
UPDATE sy_things SET name = name || ' v3' WHERE id = 1;
SET LOCAL client_min_messages = warning;
SELECT bulkops.run_sync('sy_things') AS open_job \gset
SELECT test.try('SELECT bulkops.retry(' || :open_job || ')');
ROLLBACK;

-- 6. mode insert: keys it never pushed, and nothing else
SELECT bulkops.create_target('sy_ins', 'clinia',
       current_setting('test.mock_url') || '/clinia/sources/syncins/v1', 'Thing');
SELECT bulkops.create_sync('things_ins', 'sy_ins', 'SELECT id, name FROM sy_things WHERE id <= 20', 'id', 'insert');
SELECT bulkops.run_sync('things_ins') AS job \gset
SELECT sy_wait(:job);
SELECT * FROM sy_receipts(:job);
UPDATE sy_things SET name = name || ' v4' WHERE id <= 5;
SELECT bulkops.run_sync('things_ins') IS NULL AS changes_not_sent;
SELECT bulkops.alter_sync('things_ins', source => 'SELECT id, name FROM sy_things WHERE id <= 22');
SELECT change, key FROM bulkops.preview_sync('things_ins');
SELECT bulkops.run_sync('things_ins') AS job \gset
SELECT sy_wait(:job);
SELECT * FROM sy_receipts(:job);

-- 7. a key twice in one run's source is an error that names it
SELECT bulkops.create_sync('dups', 'sy_ins', 'SELECT 7 AS id UNION ALL SELECT 7', 'id');
SELECT test.try($$SELECT bulkops.run_sync('dups')$$);
SELECT bulkops.drop_sync('dups');

-- 8. changing what is sent (the source's columns, the options) sends every
-- row again: the hash is of the encoded row
SELECT bulkops.alter_sync('things_ins', source => 'SELECT id, name, 1 AS v FROM sy_things WHERE id <= 22',
                          mode => 'upsert');
SELECT change, count(*) FROM bulkops.preview_sync('things_ins') GROUP BY 1;
SELECT test.try($$SELECT bulkops.alter_sync('things_ins', mode => 'sideways')$$);
SELECT name, mode, source FROM bulkops.syncs WHERE name = 'things_ins';

-- 9. PackageX mirrors through merges and deletes, far past one request
SELECT sy_mock('POST', '/_control/reset');
SELECT sy_mock('POST', '/_control/config', '{"packagex": {"api_key": "px-key"}}');
CREATE TABLE sy_contacts AS SELECT i AS id, 'contact ' || i AS name FROM generate_series(1, 700) AS i;
SELECT bulkops.create_sync('sy_contacts', 'sy_px', 'sy_contacts', 'id', 'mirror', '{"batch_size": 100}');
SELECT bulkops.run_sync('sy_contacts') AS job \gset
SELECT sy_wait(:job);
DELETE FROM sy_contacts WHERE id % 3 = 0;
UPDATE sy_contacts SET name = 'renamed' WHERE id = 1;
SELECT bulkops.run_sync('sy_contacts') AS job \gset
SELECT sy_wait(:job);
SELECT * FROM sy_receipts(:job);
SELECT operation, count(*) AS batches FROM bulkops.batches WHERE job_id = :job GROUP BY 1 ORDER BY 1;
SELECT (SELECT array_agg(k::int ORDER BY k::int)
        FROM jsonb_object_keys(sy_mock('GET', '/_control/packagex/store?resource=contact')) AS k)
       = (SELECT array_agg(id ORDER BY id) FROM sy_contacts) AS remote_is_source;

-- 10. privileges: running needs what the mode sends; a sync is its owner's
CREATE ROLE sync_pusher;
CREATE ROLE sync_other;
CREATE TABLE pusher_rows (id int, name text);
INSERT INTO pusher_rows VALUES (1, 'a'), (2, 'b');
ALTER TABLE pusher_rows OWNER TO sync_pusher;
SELECT bulkops.grant_target('sy_ins', 'sync_pusher', 'push');
SET ROLE sync_pusher;
SELECT test.try($$SELECT bulkops.create_sync('p_mirror', 'sy_ins', 'pusher_rows', 'id', 'mirror')$$);
SELECT bulkops.create_sync('p_upsert', 'sy_ins', 'pusher_rows', 'id');
SELECT change, key FROM bulkops.preview_sync('p_upsert') ORDER BY key;
SELECT name FROM bulkops.syncs ORDER BY name;
SELECT bulkops.run_sync('p_upsert') AS p_job \gset
SELECT sy_wait(:p_job);
SELECT bulkops.bulk_upsert('sy_ins', $$SELECT id, name, CASE WHEN id = 2 THEN 'no' END AS _fail
                                      FROM pusher_rows$$, key => 'id') AS p_plain \gset
SELECT sy_wait(:p_plain);
SELECT bulkops.retry(:p_plain) AS p_retry \gset
RESET ROLE;
-- the jobs a role's run and retry make are its own
SELECT id = :p_job AS run, created_by, rows_total FROM bulkops.jobs
WHERE id IN (:p_job, :p_retry) ORDER BY id;
SET ROLE sync_other;
SELECT name FROM bulkops.syncs ORDER BY name;
SELECT test.try('SELECT bulkops.retry(' || :p_plain || ')') AS others_retry;
SELECT test.try($$SELECT bulkops.run_sync('p_upsert')$$);
SELECT test.try($$SELECT bulkops.drop_sync('p_upsert')$$);
SELECT test.try($$SELECT * FROM bulkops.sync_state$$);
RESET ROLE;
SELECT bulkops.revoke_target('sy_ins', 'sync_pusher', 'push');
SET ROLE sync_pusher;
SELECT test.try($$SELECT bulkops.run_sync('p_upsert')$$);
SELECT test.try('SELECT bulkops.retry(' || :p_plain || ')') AS retry_without_push;
SELECT test.try($$SELECT * FROM bulkops.preview('sy_ins', 'pusher_rows', 'id')$$) AS preview_without_push;
RESET ROLE;
SELECT sy_wait(:p_retry);

-- 11. drop_sync: the state goes, the jobs stay as plain jobs
SELECT id AS sync_id, state_keys FROM bulkops.syncs WHERE name = 'sy_things' \gset
SELECT :state_keys AS state_keys,
       (SELECT sum(cardinality(keys)) FROM bulkops.sync_state WHERE sync_id = :sync_id) AS stored;
SELECT bulkops.drop_sync('sy_things');
SELECT count(*) AS state_rows FROM bulkops.sync_state WHERE sync_id = :sync_id;
SELECT count(*) FILTER (WHERE sync_id IS NULL) > 0 AS jobs_kept FROM bulkops.jobs WHERE target = 'sy';
SELECT bulkops.drop_sync('p_upsert');
DROP TABLE pusher_rows;
DROP ROLE sync_pusher;
DROP ROLE sync_other;
