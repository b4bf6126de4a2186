-- security_attacks: one case per class of attack on bulkops, each proving
-- that it fails.  (The attacks that need a second session or a worker with
-- tampered settings are in test/t/017_security_attacks.pl.)
--  1. functions and operators planted in a schema the caller puts before
--     pg_catalog in its search_path are never run by bulkops' own
--     statements, at any entry point (a positive control shows they would
--     be run by anything that resolved names through that path);
--  2. each per-target privilege missing in turn refuses the call before
--     anything is enqueued or sent; NOINHERIT membership does not count;
--  3. bulkops_admin cannot write bulkops' tables, and a secret that breaks
--     the rules however it got into the table is not read by the worker;
--  4. target URLs cannot carry credentials or a query; messages a job's
--     creator reads name no secret file path or variable;
--  5. owner sections run as the extension's owner, not the schema's.
SET client_min_messages = warning;
SELECT current_setting('test.mock_url') AS mock \gset
SELECT test.mock('POST', '/_control/reset');

CREATE ROLE mallory;
GRANT bulkops_admin TO mallory;
CREATE SCHEMA evil AUTHORIZATION mallory;
CREATE TABLE atk_src (id int, name text);
INSERT INTO atk_src SELECT i, 'row ' || i FROM generate_series(1, 30) i;
GRANT SELECT ON atk_src TO PUBLIC;
CREATE TABLE atk_export ("Id" text, "Name" text);
GRANT INSERT ON atk_export TO PUBLIC;

-- 1. The planted functions and operators log who ran them and then try to
-- make mallory a superuser (which only works when a superuser runs them).
SET ROLE mallory;
\i test/attack_plants.sql

-- the positive control: through this path, names resolve to the plants
SET search_path = evil, pg_catalog;
SELECT now() IS NOT NULL AS t1, 1::bigint = 1::bigint AS t2, 'a'::text = 'a'::text AS t3,
       1 = 1 AS t4;
SELECT count(*) AS control_calls, bool_or(superuser) AS by_a_superuser FROM evil.log;
TRUNCATE evil.log;
RESET search_path;
RESET ROLE;

-- every entry point, called by mallory with that path
SELECT bulkops.create_target('atk_sf', 'salesforce', :'mock' || '/salesforce', 'Account');
SET ROLE mallory;
SET search_path = evil, pg_catalog;
SELECT bulkops.create_target('atk', 'clinia', :'mock' || '/clinia/sources/atk/v1', 'Doc',
                             '{"type": "bearer", "token": "atk-token"}');
SELECT bulkops.alter_target('atk', options => '{"batch_size": 10}');
SELECT bulkops.grant_target('atk', 'mallory', 'push');
SELECT bulkops.revoke_target('atk', 'mallory', 'push');
SELECT bulkops.has_target_privilege('atk', 'push') AS owner_may_push,
       bulkops.has_target_privilege('mallory', 'atk', 'delete') AS owner_may_delete,
       bulkops.is_admin() AS admin, bulkops.worker_pid() > 0 AS worker;
SELECT bulkops.bulk_upsert('atk', 'public.atk_src', key => 'id') AS job \gset
SELECT bulkops.bulk_insert('atk', 'SELECT id, name FROM public.atk_src WHERE id < 5', key => 'id')
       IS NOT NULL AS inserted;
SELECT bulkops.bulk_delete('atk', 'SELECT id FROM public.atk_src WHERE id > 25', key => 'id')
       IS NOT NULL AS deleted;
-- syncs, previews and retries
SELECT bulkops.create_sync('atk_sync', 'atk', 'public.atk_src', 'id', 'mirror');
SELECT count(*) AS previewed FROM bulkops.preview_sync('atk_sync');
SELECT count(*) AS previewed FROM bulkops.preview('atk', 'public.atk_src', 'id', 'delete');
SELECT bulkops.run_sync('atk_sync') AS sync_job \gset
SELECT bulkops.wait(:sync_job, '60 s');
SELECT bulkops.run_sync('atk_sync') IS NULL AS nothing_to_send;
SELECT bulkops.retry(:sync_job, '{failed,unknown,cancelled}') IS NULL AS nothing_to_retry;
SELECT bulkops.alter_sync('atk_sync', mode => 'upsert');
SELECT bulkops.drop_sync('atk_sync');
SELECT test.try($$SELECT bulkops.bulk_update('atk', 'public.atk_src', key => 'id')$$) AS no_update;
SELECT test.try($$SELECT bulkops.bulk_overwrite('atk', 'public.atk_src', key => 'id')$$) AS no_overwrite;
-- a job that is still queued, cancelled in its own transaction
BEGIN;
SELECT bulkops.bulk_upsert('atk', 'public.atk_src', key => 'id') AS cancelled_job \gset
SELECT bulkops.cancel(:cancelled_job);
COMMIT;
SELECT bulkops.wait(:job, '60 s');
SELECT bulkops.cancel(:job) AS cancel_after_the_end;
-- no export privilege on another's target, then with it
SELECT test.try($$SELECT bulkops.bulk_query('atk_sf', 'SELECT Id FROM Account', 'public.atk_export')$$)
       AS no_export;
RESET ROLE;
SELECT bulkops.grant_target('atk_sf', 'mallory', 'export');
SET ROLE mallory;
SET search_path = evil, pg_catalog;
SELECT bulkops.bulk_query('atk_sf', 'SELECT Id, Name FROM Account', 'public.atk_export') AS export \gset
SELECT bulkops.wait(:export, '60 s');
DO $$
BEGIN
    PERFORM bulkops.wait(id, '60 s') FROM bulkops.jobs WHERE state IN ('queued', 'running');
END
$$;
SELECT bulkops.drop_target('atk');
RESET search_path;
RESET ROLE;

SELECT count(*) AS calls_by_privileged_code FROM evil.log WHERE superuser OR who <> 'mallory';
SELECT rolsuper AS mallory_became_superuser FROM pg_roles WHERE rolname = 'mallory';
SELECT state, count(*) FROM bulkops.jobs WHERE target = 'atk' GROUP BY 1 ORDER BY 1;

-- 2. Each privilege missing in turn: refused, nothing enqueued, nothing sent.
SELECT bulkops.create_target('atk2', 'packagex', :'mock' || '/packagex', 'contact');
CREATE ROLE pusher;
CREATE ROLE deleter;
CREATE ROLE heir NOINHERIT;
GRANT pusher TO heir;
SELECT bulkops.grant_target('atk2', 'pusher', 'push');
SELECT bulkops.grant_target('atk2', 'deleter', 'delete');
SELECT test.mock('POST', '/_control/reset');
SELECT count(*) AS jobs_before FROM bulkops.jobs \gset
SET ROLE pusher;
SELECT test.try($$SELECT bulkops.bulk_delete('atk2', 'atk_src', key => 'id')$$) AS pusher_delete;
SELECT test.try($$SELECT bulkops.bulk_overwrite('atk2', 'atk_src', key => 'id')$$) AS pusher_overwrite;
SELECT test.try($$SELECT bulkops.bulk_query('atk2', 'x', 'atk_export')$$) AS pusher_export;
SET ROLE deleter;
SELECT test.try($$SELECT bulkops.bulk_upsert('atk2', 'atk_src', key => 'id')$$) AS deleter_upsert;
SELECT test.try($$SELECT bulkops.bulk_overwrite('atk2', 'atk_src', key => 'id')$$) AS deleter_overwrite;
SET ROLE heir;
SELECT test.try($$SELECT bulkops.bulk_upsert('atk2', 'atk_src', key => 'id')$$) AS noinherit_upsert;
SELECT bulkops.has_target_privilege('atk2', 'push') AS noinherit_has_push;
SET ROLE pusher;
SELECT bulkops.has_target_privilege('atk2', 'push') AS after_set_role;
RESET ROLE;
SELECT count(*) - :jobs_before AS jobs_enqueued FROM bulkops.jobs;
SELECT jsonb_array_length(test.mock('GET', '/_control/requests')) AS requests_sent;
-- NOINHERIT membership of bulkops_admin is no admin either (as in C)
CREATE ROLE half_admin NOINHERIT;
GRANT bulkops_admin TO half_admin;
SET ROLE half_admin;
SELECT bulkops.is_admin() AS noinherit_is_admin;
SELECT test.try($$SELECT bulkops.drop_target('atk2')$$) AS noinherit_drops;
RESET ROLE;

-- 3. bulkops_admin writes nothing directly: not credentials, not who
-- created a job, not where an export goes, not receipts, not grants.
SET ROLE mallory;
SELECT test.try($$UPDATE bulkops.targets SET auth = '{"type": "bearer", "token": {"env": "HOME"}}'$$)
       AS admin_sets_auth;
SELECT test.try($$UPDATE bulkops.jobs SET created_by = 'mallory'$$) AS admin_rewrites_creator;
SELECT test.try($$UPDATE bulkops.jobs SET destination = 'pg_authid'::regclass$$) AS admin_redirects_export;
SELECT test.try($$UPDATE bulkops.batches SET outcomes = NULL$$) AS admin_forges_receipt;
SELECT test.try($$INSERT INTO bulkops.target_privileges VALUES ('atk2', 'mallory', 'push', 'mallory')$$)
       AS admin_grants_itself;
SELECT test.try($$SELECT auth FROM bulkops.targets$$) AS admin_reads_auth;
RESET ROLE;
-- a value that got into the table without the checks (here a superuser's
-- UPDATE, as a restore could bring one): the worker does not read it
SELECT bulkops.create_target('atk3', 'clinia', :'mock' || '/clinia/sources/atk3/v1', 'Doc');
UPDATE bulkops.targets
SET auth = '{"type": "bearer", "token": {"env": "BULKOPS_ATTACK_SECRET_VAR"}}',
    auth_set_by = 'mallory'
WHERE name = 'atk3';
SELECT bulkops.bulk_upsert('atk3', 'atk_src', key => 'id') AS job3 \gset
SELECT bulkops.wait(:job3, '60 s');
SELECT last_error FROM bulkops.jobs WHERE id = :job3;
SELECT count(*) AS rows_failed_with_it FROM bulkops.receipts
WHERE job_id = :job3 AND status = 'failed' AND error_message LIKE '%may not read secrets%';

-- 4. No credentials or query in a target URL; no secret's whereabouts in
-- what a job's creator reads.
SELECT test.try(format($$SELECT bulkops.create_target('atk4', 'clinia', %L, 'Doc')$$,
       'http://user:secret@127.0.0.1:1/x')) AS url_with_password;
SELECT test.try(format($$SELECT bulkops.alter_target('atk3', url => %L)$$,
       'http://127.0.0.1:1/x?token=secret')) AS url_with_query;
-- 0.0.0.0 and :: reach the database host itself: blocked by default
SELECT test.try(format($$SELECT bulkops.create_target('atk4', 'clinia', %L, 'Doc')$$,
       'https://0.0.0.0:1/x')) AS this_host_v4;
SELECT test.try(format($$SELECT bulkops.create_target('atk4', 'clinia', %L, 'Doc')$$,
       'https://[::]:1/x')) AS this_host_v6;
SELECT bulkops.alter_target('atk3',
       auth => '{"type": "bearer", "token": {"file": "/nonexistent/bulkops-attack-token"}}');
SELECT bulkops.bulk_upsert('atk3', 'atk_src', key => 'id') AS job3 \gset
SELECT bulkops.wait(:job3, '60 s');
SELECT last_error FROM bulkops.jobs WHERE id = :job3;
SELECT count(*) AS receipts_naming_the_file FROM bulkops.receipts
WHERE job_id = :job3 AND error_message LIKE '%bulkops-attack-token%';
SELECT bulkops.alter_target('atk3',
       auth => '{"type": "bearer", "token": {"env": "BULKOPS_ATTACK_SECRET_VAR"}}');
SELECT bulkops.bulk_upsert('atk3', 'atk_src', key => 'id') AS job3 \gset
SELECT bulkops.wait(:job3, '60 s');
SELECT last_error FROM bulkops.jobs WHERE id = :job3;

-- 5. Owner sections act as pg_extension.extowner: with the schema handed
-- to a role that may write none of bulkops' tables, a push still works.
ALTER SCHEMA bulkops OWNER TO mallory;
SELECT bulkops.bulk_upsert('atk3', 'SELECT 1 AS id WHERE false', key => 'id') IS NOT NULL
       AS pushed_with_schema_owned_by_another;
RESET ROLE;
ALTER SCHEMA bulkops OWNER TO CURRENT_USER;

SELECT bulkops.drop_target('atk2');
SELECT bulkops.drop_target('atk3');
SELECT bulkops.drop_target('atk_sf');
DROP TABLE atk_src, atk_export;
DROP SCHEMA evil CASCADE;
DROP OWNED BY mallory, pusher, deleter, heir, half_admin;
DROP ROLE mallory, pusher, deleter, heir, half_admin;
