-- security: ordinary roles push with their own rights, see only their own jobs
-- and receipts, cannot read credentials, cannot write bulkops' tables by hand
-- and cannot manage targets; bulkops_admin members see everything.
SET client_min_messages = warning;
SELECT current_setting('test.mock_url') || '/clinia/sources/sec/v1' AS url \gset
SELECT bulkops.create_target('sec', 'clinia', :'url', 'Doc',
       '{"type": "bearer", "token": "top-secret-token"}');
SELECT test.mock('POST', '/_control/reset');
CREATE ROLE alice;
CREATE ROLE bob;
CREATE ROLE carol;
GRANT bulkops_admin TO carol;
CREATE TABLE alice_docs (id int, title text);
INSERT INTO alice_docs SELECT i, 'doc ' || i FROM generate_series(1, 20) AS i;
ALTER TABLE alice_docs OWNER TO alice;

SET ROLE alice;
SELECT bulkops.bulk_upsert('sec', 'alice_docs', key => 'id') AS job \gset
RESET ROLE;
SELECT bulkops.wait(:job, '60 s');

SET ROLE alice;
SELECT state, created_by FROM bulkops.jobs;
SELECT count(*) AS alice_receipts FROM bulkops.receipts;
SELECT count(*) AS alice_batches FROM bulkops.batches;
SELECT name, dialect FROM bulkops.targets ORDER BY name;
SELECT auth FROM bulkops.targets;
SELECT * FROM bulkops.targets;
INSERT INTO bulkops.jobs (target, dialect, operation) VALUES ('sec', 'clinia', 'upsert');
UPDATE bulkops.receipts SET status = 'succeeded';
DELETE FROM bulkops.receipts;
SELECT bulkops.create_target('mine', 'clinia', :'url', 'Doc');
SELECT bulkops.alter_target('sec', url => 'https://evil.example.com');
SELECT bulkops.drop_target('sec');
RESET ROLE;

-- bob sees none of it, and cannot push what he cannot read
SET ROLE bob;
SELECT count(*) AS bob_jobs FROM bulkops.jobs;
SELECT count(*) AS bob_receipts FROM bulkops.receipts;
SELECT count(*) AS bob_progress FROM bulkops.job_progress;
SELECT count(*) AS bob_batches FROM bulkops.batches;
SELECT test.try('SELECT bulkops.cancel(' || :job || ')') AS cancel_alices;
SELECT test.try('SELECT bulkops.wait(' || :job || ')') AS wait_alices;
SELECT bulkops.bulk_upsert('sec', 'alice_docs', key => 'id');
RESET ROLE;

-- carol (bulkops_admin) sees all jobs and manages targets
SET ROLE carol;
SELECT count(*) AS carol_jobs FROM bulkops.jobs WHERE id = :job;
SELECT count(*) AS carol_progress FROM bulkops.job_progress WHERE id = :job;
SELECT count(*) AS carol_receipts FROM bulkops.receipts WHERE job_id = :job;
SELECT bulkops.alter_target('sec', options => '{"batch_size": 50}');
SELECT bulkops.create_target('secfile', 'clinia', :'url', 'Doc',
       '{"type": "bearer", "token": {"file": "/etc/hostname"}}');
SELECT bulkops.create_target('secenv', 'clinia', :'url', 'Doc',
       '{"type": "bearer", "token": {"env": "HOME"}}');
RESET ROLE;

-- the token was sent, and is stored nowhere a user can see
SELECT r->'headers'->>'Authorization' AS sent
FROM jsonb_array_elements(test.mock('GET', '/_control/requests?last=1')) AS r;
SELECT count(*) AS secret_in_receipts FROM bulkops.receipts
WHERE error_message LIKE '%top-secret%';

DROP TABLE alice_docs;
DROP OWNED BY alice, bob, carol;
DROP ROLE alice, bob, carol;
