-- clinia: the options of the clinia dialect against the mock.
-- Proves: kind => 'relationships' submits to and polls .../relationships/bulk,
-- and what it writes lands among the source's relationships, not its
-- resources (a poll under the other kind would be a 404); upsert and delete
-- both.  resubmit_cancelled => false: the operations a REJECTED request
-- cancelled, or a final task's CANCELLED receipts, become cancelled receipts
-- without a second submit, while the default sends them again (the rejected
-- request at once, without an attempt; the task's with one).
SET client_min_messages = warning;  -- wait()'s progress NOTICEs depend on timing
SELECT current_setting('test.mock_url') || '/clinia/sources/cl/v1' AS url \gset
SELECT test.mock('POST', '/_control/reset');

-- the paths the mock was asked, in order, with the mock's own prefix cut
CREATE FUNCTION pg_temp.paths() RETURNS TABLE (method text, path text) LANGUAGE sql AS $$
    SELECT r->>'method', regexp_replace(r->>'path', '^.*/sources/cl/v1', '')
    FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r
    ORDER BY (r->>'time')::float8
$$;

-- 1. relationships
SELECT bulkops.create_target('cl_rel', 'clinia', :'url', 'worksAt', NULL,
                             '{"kind": "relationships", "poll_interval": 0.05}');
SELECT bulkops.bulk_upsert('cl_rel', $$SELECT 'r-' || i AS id, 'p-' || i AS "from", 'o-1' AS "to"
                                        FROM generate_series(1, 3) AS i$$, key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, remote_id FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT DISTINCT method, regexp_replace(path, 'bk_\d+', 'bk_N') AS path FROM pg_temp.paths() ORDER BY 1;
SELECT (r->>'body')::jsonb->'operations'->0 AS first_operation
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r WHERE r->>'method' = 'POST';
SELECT test.mock('GET', '/_control/clinia/store?kind=relationships&src=cl') AS relationships;
SELECT test.mock('GET', '/_control/clinia/store?kind=resources&src=cl') AS resources;
SELECT bulkops.bulk_delete('cl_rel', $$VALUES ('r-2'), ('r-9')$$, key => 'column1') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_code FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT jsonb_object_keys(test.mock('GET', '/_control/clinia/store?kind=relationships&src=cl')) AS still_there;

-- 2. a REJECTED request: by default its cancelled operations go again at once ...
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.create_target('cl', 'clinia', :'url', 'Person', NULL, '{"poll_interval": 0.05}');
CREATE TABLE cl_people AS
SELECT i AS id, 'person ' || i AS name,
       CASE WHEN i = 2 THEN 'invalid name' END AS _reject
FROM generate_series(1, 4) AS i;
SELECT bulkops.bulk_upsert('cl', 'cl_people', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_code, error_message, attempts
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT count(*) FILTER (WHERE method = 'POST') AS submits FROM pg_temp.paths();
-- ... and with resubmit_cancelled => false they are cancelled, with one submit only
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_upsert('cl', 'cl_people', key => 'id',
                           options => '{"resubmit_cancelled": false}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, rows_failed, rows_cancelled FROM bulkops.jobs WHERE id = :job;
SELECT key, status, error_code, error_message, attempts
FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT count(*) FILTER (WHERE method = 'POST') AS submits FROM pg_temp.paths();
SELECT count(*) AS stored FROM jsonb_object_keys(test.mock('GET', '/_control/clinia/store?src=cl'));

-- 3. a final task whose receipt for the second operation says CANCELLED (an
-- answer edited on its way): sent again by default, using an attempt ...
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "GET", "path": "/bulk/", "skip": 1, "times": 1, "when": "after",
     "action": "mutate", "edits": [{"at": "receipts.1.status", "set": "CANCELLED"}]}]}');
SELECT bulkops.bulk_upsert('cl', 'SELECT id, name FROM cl_people', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT count(*) FILTER (WHERE status = 'succeeded') AS succeeded FROM bulkops.receipts WHERE job_id = :job;
-- the rows the first answer settled were sent once; the cancelled one twice
SELECT key, status, attempts FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT array_agg(jsonb_array_length((r->>'body')::jsonb->'operations') ORDER BY (r->>'time')::float8)
       AS operations_per_submit
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r WHERE r->>'method' = 'POST';
SELECT count(*) FILTER (WHERE method = 'POST') AS submits,
       (SELECT (s->>'faults_fired')::int FROM test.mock('GET', '/_control/stats') AS s) AS faults_fired
FROM pg_temp.paths();
-- ... and cancelled with resubmit_cancelled => false
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/faults', '{"rules": [
    {"method": "GET", "path": "/bulk/", "skip": 1, "times": 1, "when": "after",
     "action": "mutate", "edits": [{"at": "receipts.1.status", "set": "CANCELLED"}]}]}');
SELECT bulkops.bulk_upsert('cl', 'SELECT id, name FROM cl_people', key => 'id',
                           options => '{"resubmit_cancelled": false}') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT key, status, error_message, attempts FROM bulkops.receipts WHERE job_id = :job ORDER BY row_no;
SELECT count(*) FILTER (WHERE method = 'POST') AS submits FROM pg_temp.paths();

SELECT bulkops.drop_target('cl');
SELECT bulkops.drop_target('cl_rel');
SELECT test.mock('POST', '/_control/reset');
