-- bulkops 1.2 -> 1.3: who may do what.
\echo Use "ALTER EXTENSION bulkops UPDATE TO '1.3'" to load this file. \quit

-- CREATE EXTENSION reuses a schema named bulkops that already exists.
-- Whoever owns it could drop and replace the tables the worker trusts, so
-- it must be the extension's owner.
DO $$
BEGIN
    IF (SELECT n.nspowner FROM pg_catalog.pg_namespace n WHERE n.nspname = 'bulkops')
       IS DISTINCT FROM
       (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'bulkops') THEN
        RAISE EXCEPTION 'schema "bulkops" is not owned by the owner of extension "bulkops"'
            USING HINT = 'Drop or rename the existing schema "bulkops", then create the extension.';
    END IF;
END
$$;

-- Roles are stored as regrole, not as names: a name compared with
-- current_user breaks on a rename, and pg_dump writes a regrole as the
-- role's name, so it survives a restore.  A role that no longer exists
-- hands what it owned to the extension's owner.
DROP POLICY jobs_own ON @extschema@.jobs;
DROP POLICY batches_own ON @extschema@.batches;
DROP POLICY receipts_own ON @extschema@.receipts;
DROP VIEW @extschema@.job_progress;

UPDATE @extschema@.targets t SET owner = r.rolname
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_roles r ON r.oid = e.extowner
WHERE e.extname = 'bulkops'
  AND pg_catalog.to_regrole(pg_catalog.quote_ident(t.owner::text)) IS NULL;
UPDATE @extschema@.jobs j SET created_by = r.rolname
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_roles r ON r.oid = e.extowner
WHERE e.extname = 'bulkops'
  AND pg_catalog.to_regrole(pg_catalog.quote_ident(j.created_by::text)) IS NULL;
ALTER TABLE @extschema@.targets ALTER COLUMN owner DROP DEFAULT,
    ALTER COLUMN owner TYPE regrole
        USING pg_catalog.to_regrole(pg_catalog.quote_ident(owner::text));
ALTER TABLE @extschema@.jobs ALTER COLUMN created_by DROP DEFAULT,
    ALTER COLUMN created_by TYPE regrole
        USING pg_catalog.to_regrole(pg_catalog.quote_ident(created_by::text));

-- Who set a target's auth.  The rules on secrets ({"env": ...} needs a
-- superuser, {"file": ...} pg_read_server_files) are checked against this
-- role when auth is set and again each time the worker takes a batch, so
-- they hold however the value got into the table.  Existing targets count
-- as set by their owner; a target whose owner could not have set its
-- secrets stops sending until a role that can sets them again.
ALTER TABLE @extschema@.targets ADD COLUMN auth_set_by regrole;
UPDATE @extschema@.targets SET auth_set_by = owner WHERE auth IS NOT NULL;
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT name FROM @extschema@.targets
        WHERE (pg_catalog.jsonb_path_exists(auth, 'strict $.**.env')
               AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = owner))
           OR ((pg_catalog.jsonb_path_exists(auth, 'strict $.**.file')
                OR auth ? 'key_file')
               AND NOT pg_catalog.pg_has_role(owner, 'pg_read_server_files', 'USAGE'))
    LOOP
        RAISE WARNING 'target "%" reads secrets its owner may not set', t.name
            USING HINT = 'A superuser (for {"env": ...}) or a role with the privileges of pg_read_server_files (for files) must set its auth again with @extschema@.alter_target().';
    END LOOP;
END
$$;

-- Where an export goes: a table, by OID (regclass, dumped as its name),
-- or the schema and name of the table the worker will create (quoted when
-- it does).  Never SQL text.
ALTER TABLE @extschema@.jobs ADD COLUMN destination_schema text,
    ADD COLUMN destination_table text;
UPDATE @extschema@.jobs
SET destination_schema = (pg_catalog.parse_ident(destination))[1],
    destination_table = (pg_catalog.parse_ident(destination))[2]
WHERE destination IS NOT NULL AND pg_catalog.to_regclass(destination) IS NULL;
ALTER TABLE @extschema@.jobs ALTER COLUMN destination TYPE regclass
    USING pg_catalog.to_regclass(destination);

-- Per-target privileges, granted by the target's owner with
-- @extschema@.grant_target() (see privileges.c): push (insert, update,
-- upsert), delete (delete, overwrite, hard delete) and export (bulk_query).
-- grantee 0 ('-') is PUBLIC.  Like PostgreSQL's own ACLs, who may use
-- which target is visible to everyone.
CREATE TABLE @extschema@.target_privileges (
    target      text NOT NULL REFERENCES @extschema@.targets (name) ON DELETE CASCADE,
    grantee     regrole NOT NULL,
    privilege   text NOT NULL CHECK (privilege IN ('push', 'delete', 'export')),
    grantor     regrole NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (target, grantee, privilege)
);

-- Until 1.3 any role could push through any target.  A role that did so
-- keeps the privileges its jobs used; nobody else gets any.
INSERT INTO @extschema@.target_privileges (target, grantee, privilege, grantor)
SELECT DISTINCT j.target, j.created_by, p.privilege, t.owner
FROM @extschema@.jobs j
JOIN @extschema@.targets t ON t.name = j.target
JOIN (VALUES ('insert', 'push'), ('update', 'push'), ('upsert', 'push'),
             ('delete', 'delete'), ('overwrite', 'push'), ('overwrite', 'delete'),
             ('query', 'export')) AS p (operation, privilege)
  ON p.operation = j.operation
JOIN pg_catalog.pg_roles r ON r.oid = j.created_by
WHERE j.created_by OPERATOR(pg_catalog.<>) t.owner AND NOT r.rolsuper
ON CONFLICT DO NOTHING;

-- Nobody writes bulkops' tables directly, bulkops_admin included: every
-- change goes through the functions, which check who may make it.  This is
-- a matter of privileges, not triggers, so pg_restore still loads the data.
-- Credentials (targets.auth) are readable by superusers only.
REVOKE ALL ON ALL TABLES IN SCHEMA bulkops FROM bulkops_admin;
GRANT SELECT ON @extschema@.jobs, @extschema@.batches, @extschema@.receipts,
    @extschema@.target_privileges TO PUBLIC;
GRANT SELECT (auth_set_by) ON @extschema@.targets TO PUBLIC;

-- Who sees which jobs, batches and receipts: superusers all; a role those
-- created by itself or by roles whose privileges it has; a target's owner
-- those sent through its target.  bulkops_admin alone sees no one else's.
CREATE POLICY jobs_visible ON @extschema@.jobs
    USING (pg_catalog.pg_has_role(created_by, 'USAGE')
           OR target IN (SELECT t.name FROM @extschema@.targets t
                         WHERE pg_catalog.pg_has_role(t.owner, 'USAGE')));
CREATE POLICY batches_visible ON @extschema@.batches
    USING (job_id IN (SELECT j.id FROM @extschema@.jobs j));
CREATE POLICY receipts_visible ON @extschema@.receipts
    USING (job_id IN (SELECT j.id FROM @extschema@.jobs j));

CREATE VIEW @extschema@.job_progress WITH (security_invoker = true, security_barrier = true) AS
SELECT j.id, j.target, j.operation, j.state, j.rows_total,
       j.rows_succeeded + j.rows_failed + j.rows_cancelled + j.rows_unknown AS rows_done,
       CASE WHEN j.rows_total > 0
            THEN round(100.0 * (j.rows_succeeded + j.rows_failed + j.rows_cancelled
                                + j.rows_unknown) / j.rows_total, 1)
            ELSE 100.0 END AS percent,
       CASE WHEN j.started_at IS NOT NULL
                 AND coalesce(j.finished_at, now()) > j.started_at
            THEN round((j.rows_succeeded + j.rows_failed + j.rows_cancelled + j.rows_unknown)
                       / extract(epoch FROM coalesce(j.finished_at, now()) - j.started_at))
            END AS rows_per_second,
       (SELECT jsonb_object_agg(s.key, s.total)
          FROM (SELECT e.key, sum(e.value::text::numeric) AS total
                  FROM @extschema@.batches b, jsonb_each(b.progress) e
                 WHERE b.job_id = j.id AND jsonb_typeof(e.value) = 'number'
                 GROUP BY e.key) s) AS remote_progress,
       j.created_by, j.created_at, j.started_at, j.finished_at, j.last_error
FROM @extschema@.jobs j;
GRANT SELECT ON @extschema@.job_progress TO PUBLIC;

-- The same test in SQL as in C (has_privs_of_role): a NOINHERIT member of
-- bulkops_admin is not an admin until it SET ROLEs.
CREATE OR REPLACE FUNCTION @extschema@.is_admin() RETURNS boolean
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'bulkops_is_admin_sql';

CREATE FUNCTION @extschema@.grant_target(target text, grantee name,
                                     privileges text DEFAULT 'push')
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_grant_target';
CREATE FUNCTION @extschema@.revoke_target(target text, grantee name,
                                      privileges text DEFAULT 'all')
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_revoke_target';
CREATE FUNCTION @extschema@.has_target_privilege(target text, privilege text)
RETURNS boolean LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'bulkops_has_target_privilege_sql';
CREATE FUNCTION @extschema@.has_target_privilege(role name, target text, privilege text)
RETURNS boolean LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'bulkops_has_target_privilege_role';

-- The dialects this server has, built in or added by another preloaded
-- library, with what tests and tools need to drive each without a list of
-- their own: operations (those safe to repeat, those that need a key), the
-- dialect's own options, its limits per request and whether it can abort a
-- remote task.
CREATE FUNCTION @extschema@.dialects(OUT name text, OUT operations text[],
                                 OUT idempotent text[], OUT needs_key text[],
                                 OUT options text[], OUT max_batch_rows integer,
                                 OUT max_batch_bytes integer, OUT has_abort boolean)
RETURNS SETOF record LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'bulkops_dialects_sql';

-- pg_dump keeps what bulkops holds: targets (with their credentials, as it
-- does for user mappings), grants, jobs, batches, receipts and the job id
-- sequence.  Dumping needs a superuser (row-level security, auth).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.targets', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.target_privileges', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.batches', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.receipts', '');

-- Exports into typed tables (bulk_query).  A record the destination
-- refuses (a value its column cannot take, a constraint) is kept here with
-- the reason instead of failing the export, written by the worker in the
-- transaction of its page.  Whoever may see the job sees its rejects; only
-- bulkops writes them.  They go with their job (retention).
CREATE TABLE @extschema@.export_rejects (
    job_id      bigint NOT NULL REFERENCES @extschema@.jobs (id) ON DELETE CASCADE,
    row_no      bigint NOT NULL,    -- 1-based position in the export
    line        text,               -- the record as received (its first 8 kB)
    column_name text,               -- the column whose value failed, if known
    sqlstate    text NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (job_id, row_no)
);
ALTER TABLE @extschema@.export_rejects ENABLE ROW LEVEL SECURITY;
CREATE POLICY export_rejects_visible ON @extschema@.export_rejects
    USING (job_id IN (SELECT j.id FROM @extschema@.jobs j));
GRANT SELECT ON @extschema@.export_rejects TO PUBLIC;

-- The pages of an export in mode "replace", as received, until the
-- transaction that ends the job loads them all into the destination in
-- place of its rows (or drops them, when the export does not complete).
-- Each is written with the locator of the page after it, so an export
-- resumes after a crash with what it had.  Only bulkops reads them: they
-- hold the creator's data.
CREATE TABLE @extschema@.export_pages (
    job_id      bigint NOT NULL REFERENCES @extschema@.jobs (id) ON DELETE CASCADE,
    first_row   bigint NOT NULL,    -- row_no of the page's first record
    body        bytea NOT NULL,     -- its CSV, header line included
    PRIMARY KEY (job_id, first_row)
);

-- pg_dump keeps them too: a job restored in the middle of a replace needs
-- the pages it had.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.export_rejects', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.export_pages', '');
