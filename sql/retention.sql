-- retention: latest_receipts gives the last word per target and key; with
-- bulkops.receipt_retention set, the worker forgets finished jobs and their
-- receipts, and only those.  Runs last: it deletes jobs.
SET client_min_messages = warning;
SELECT current_setting('test.mock_url') || '/clinia/sources/ret/v1' AS url \gset
SELECT bulkops.create_target('ret', 'clinia', :'url', 'Thing');
SELECT test.mock('POST', '/_control/reset');
CREATE TABLE ret_src AS SELECT i AS id, 'v' || i AS v FROM generate_series(1, 5) i;

SELECT bulkops.bulk_upsert('ret', 'ret_src', key => 'id') AS job1 \gset
SELECT bulkops.wait(:job1, '60 s');
-- the second push fails key 3 on purpose; it is the latest word on key 3
SELECT bulkops.bulk_upsert('ret', $$SELECT id, v, CASE WHEN id = 3 THEN 'no' END AS _fail
                                   FROM ret_src WHERE id >= 3$$, key => 'id') AS job2 \gset
SELECT bulkops.wait(:job2, '60 s');
SELECT key, job_id = :job2 AS from_job2, status
FROM bulkops.latest_receipts WHERE target = 'ret' ORDER BY key;

-- a role sees only its own jobs' receipts through the view too
CREATE ROLE ret_user;
SET ROLE ret_user;
SELECT count(*) AS others_latest FROM bulkops.latest_receipts;
RESET ROLE;
DROP ROLE ret_user;

-- retention: finished jobs older than the setting go, with their rows
SELECT count(*) > 0 AS jobs_before FROM bulkops.jobs;
ALTER SYSTEM SET bulkops.receipt_retention = '3s';
SELECT pg_reload_conf();
SELECT pg_sleep(3.2);
-- a job finishing now is younger than the retention and stays
SELECT bulkops.bulk_upsert('ret', 'ret_src', key => 'id') AS job3 \gset
SELECT bulkops.wait(:job3, '60 s');
DO $$
BEGIN
    FOR i IN 1 .. 100 LOOP
        EXIT WHEN NOT EXISTS (SELECT FROM bulkops.jobs j
                              WHERE finished_at < now() - interval '3 s'
                                AND id <> currval('bulkops.jobs_id_seq')
                                AND NOT coalesce(id > (SELECT folded_through FROM bulkops.syncs s
                                                       WHERE s.id = j.sync_id), false));
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT count(*) FILTER (WHERE id = :job3) AS young_job_kept,
       count(*) FILTER (WHERE id IN (:job1, :job2)) AS old_jobs_kept
FROM bulkops.jobs;
SELECT count(*) AS old_receipts FROM bulkops.receipts WHERE job_id IN (:job1, :job2);
SELECT count(*) AS old_batches FROM bulkops.batches WHERE job_id IN (:job1, :job2);
SELECT count(*) AS young_receipts FROM bulkops.receipts WHERE job_id = :job3;
-- the jobs a sync has not stored in its state yet stay, whatever their age
-- (the syncs the sync suite left), with their receipts; the others went
SELECT count(*) FILTER (WHERE j.id > s.folded_through) > 0 AS unstored_sync_jobs_kept,
       count(*) FILTER (WHERE j.id <= s.folded_through) AS stored_sync_jobs_kept,
       bool_and(j.id > s.folded_through AND EXISTS (SELECT FROM bulkops.receipts r
                                                   WHERE r.job_id = j.id)) AS with_receipts
FROM bulkops.jobs j JOIN bulkops.syncs s ON s.id = j.sync_id;
ALTER SYSTEM RESET bulkops.receipt_retention;
SELECT pg_reload_conf();
