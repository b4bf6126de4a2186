-- security: ordinary roles push through a target only with a privilege on
-- it, with their own rights; they see only their own jobs and receipts (and
-- a target's owner those of its target), cannot read credentials, cannot
-- write bulkops' tables by hand and cannot manage targets.  bulkops_admin
-- members manage their own targets only.
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

-- without a grant nothing is enqueued; with push, alice pushes
SET ROLE alice;
SELECT bulkops.bulk_upsert('sec', 'alice_docs', key => 'id');
SELECT bulkops.has_target_privilege('sec', 'push') AS alice_may_push;
RESET ROLE;
SELECT count(*) AS no_jobs FROM bulkops.jobs WHERE target = 'sec';
SELECT bulkops.grant_target('sec', 'alice', 'push');
SELECT target, grantee, privilege, grantor = current_user::text::regrole AS by_me
FROM bulkops.target_privileges WHERE target = 'sec';
SET ROLE alice;
SELECT bulkops.has_target_privilege('sec', 'push') AS alice_may_push,
       bulkops.has_target_privilege('sec', 'delete') AS alice_may_delete;
SELECT bulkops.bulk_upsert('sec', 'alice_docs', key => 'id') AS job \gset
SELECT bulkops.bulk_delete('sec', 'alice_docs', key => 'id');
RESET ROLE;
SELECT bulkops.wait(:job, '60 s');

SET ROLE alice;
SELECT state, created_by FROM bulkops.jobs;
SELECT count(*) AS alice_receipts FROM bulkops.receipts;
SELECT count(*) AS alice_batches FROM bulkops.batches;
SELECT name, dialect FROM bulkops.targets WHERE name = 'sec';
SELECT auth FROM bulkops.targets;
SELECT * FROM bulkops.targets;
INSERT INTO bulkops.jobs (target, dialect, operation) VALUES ('sec', 'clinia', 'upsert');
UPDATE bulkops.receipts SET status = 'succeeded';
DELETE FROM bulkops.receipts;
UPDATE bulkops.batches SET outcomes = NULL;
DELETE FROM bulkops.batches;
INSERT INTO bulkops.target_privileges VALUES ('sec', 'alice', 'delete', 'alice');
SELECT bulkops.grant_target('sec', 'alice', 'delete');
SELECT bulkops.create_target('mine', 'clinia', :'url', 'Doc');
SELECT bulkops.alter_target('sec', url => 'https://evil.example.com');
SELECT bulkops.drop_target('sec');
RESET ROLE;

-- bob sees none of it, and cannot push through a target he has no grant on
SET ROLE bob;
SELECT count(*) AS bob_jobs FROM bulkops.jobs;
SELECT count(*) AS bob_receipts FROM bulkops.receipts;
SELECT count(*) AS bob_progress FROM bulkops.job_progress;
SELECT count(*) AS bob_batches FROM bulkops.batches;
SELECT test.try('SELECT bulkops.cancel(' || :job || ')') AS cancel_alices;
SELECT test.try('SELECT bulkops.wait(' || :job || ')') AS wait_alices;
SELECT bulkops.bulk_upsert('sec', 'alice_docs', key => 'id');
RESET ROLE;

-- carol (bulkops_admin) manages her own targets, sees the jobs sent through
-- them, and nothing else: not alice's job on a target she does not own,
-- not another target's credentials, not another target to alter
SET ROLE carol;
SELECT count(*) AS carol_jobs FROM bulkops.jobs WHERE id = :job;
SELECT count(*) AS carol_receipts FROM bulkops.receipts WHERE job_id = :job;
SELECT bulkops.alter_target('sec', options => '{"batch_size": 50}');
SELECT bulkops.grant_target('sec', 'carol', 'all');
SELECT bulkops.create_target('carols', 'clinia', :'url', 'Doc');
SELECT bulkops.alter_target('carols', options => '{"batch_size": 50}');
SELECT bulkops.grant_target('carols', 'alice', 'push, delete');
SELECT owner, auth_set_by FROM bulkops.targets WHERE name = 'carols';
SELECT bulkops.create_target('secfile', 'clinia', :'url', 'Doc',
       '{"type": "bearer", "token": {"file": "/etc/hostname"}}');
SELECT bulkops.create_target('secenv', 'clinia', :'url', 'Doc',
       '{"type": "bearer", "token": {"env": "HOME"}}');
UPDATE bulkops.targets SET auth = '{"type": "bearer", "token": {"env": "HOME"}}'
WHERE name = 'carols';
UPDATE bulkops.jobs SET created_by = 'carol';
RESET ROLE;
SET ROLE alice;
SELECT bulkops.bulk_upsert('carols', 'alice_docs', key => 'id') AS carols_job \gset
RESET ROLE;
SELECT bulkops.wait(:carols_job, '60 s');
SET ROLE carol;
SELECT count(*) AS carol_sees_job_on_her_target FROM bulkops.jobs WHERE id = :carols_job;
SELECT count(*) AS carol_sees_its_receipts FROM bulkops.receipts WHERE job_id = :carols_job;
SELECT bulkops.drop_target('carols');
RESET ROLE;

-- the token was sent, and is stored nowhere a user can see
SELECT count(*) > 0 AS sent_with_token
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r
WHERE r->'headers'->>'Authorization' = 'Bearer top-secret-token';
SELECT count(*) AS secret_in_receipts FROM bulkops.receipts
WHERE error_message LIKE '%top-secret%';

-- revoking takes the privilege back; PUBLIC and inherited grants count
SELECT bulkops.revoke_target('sec', 'alice');
SET ROLE alice;
SELECT bulkops.has_target_privilege('sec', 'push') AS alice_after_revoke;
RESET ROLE;
CREATE ROLE pushers;
GRANT pushers TO bob;
SELECT bulkops.grant_target('sec', 'pushers', 'push');
SELECT bulkops.grant_target('sec', 'public', 'export');
SELECT bulkops.has_target_privilege('bob', 'sec', 'push') AS bob_through_pushers,
       bulkops.has_target_privilege('alice', 'sec', 'export') AS alice_through_public,
       bulkops.has_target_privilege('alice', 'sec', 'push, delete') AS alice_push_or_delete;
SELECT grantee, privilege FROM bulkops.target_privileges WHERE target = 'sec'
ORDER BY 1, 2;
SELECT bulkops.grant_target('sec', 'nobody_by_that_name', 'push');
SELECT bulkops.grant_target('sec', 'bob', 'launch');
SELECT bulkops.grant_target('nosuch', 'bob', 'push');
SELECT bulkops.has_target_privilege('nosuch', 'push');
SELECT bulkops.revoke_target('sec', 'public');
SELECT bulkops.revoke_target('sec', 'pushers');

DROP TABLE alice_docs;
DROP OWNED BY alice, bob, carol, pushers;
DROP ROLE alice, bob, carol, pushers;
