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

-- Receipts are kept with their batch (the format: src/receipts.c): one
-- slot per source row in compact arrays on the batch's row, written in the
-- transaction that stores each answer, instead of a row and two index
-- entries per source row.  bulkops.receipts becomes a view that unnests
-- them, with the columns it had.
--
-- Batches are partitioned by their job's generation: the start (seconds
-- since the epoch) of the bulkops.partition_interval the job was enqueued
-- in.  The worker creates each generation's partition ahead of time, and
-- retention truncates and drops a generation's partition whole once all
-- its jobs have expired, which gives the space back to the file system.
-- The default partition takes the rest: the batches of jobs enqueued
-- before 1.3 (generation 0) and of any generation whose partition was not
-- there yet.
--
-- Batches no longer reference jobs with a foreign key: a partition that
-- pg_dump writes is restored in name order, before the jobs it would
-- reference.  Only bulkops' functions write either table (nobody else
-- may), and retention removes a job's batches with the job.
DROP VIEW @extschema@.latest_receipts;
ALTER TABLE @extschema@.jobs ADD COLUMN generation bigint NOT NULL DEFAULT 0;
ALTER TABLE @extschema@.jobs ALTER COLUMN generation DROP DEFAULT;
CREATE INDEX jobs_generation_idx ON @extschema@.jobs (generation);

CREATE TABLE @extschema@.batches_new (
    job_id          bigint NOT NULL,
    batch_no        integer NOT NULL,
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'active', 'done')),
    first_row       bigint NOT NULL,
    row_count       integer NOT NULL,
    step            integer NOT NULL DEFAULT 0,
    remote_id       text,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    http_status     integer,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    keys            text[] NOT NULL,
    offsets         integer[],      -- NULL once the batch is done
    body            bytea,          -- NULL once the batch is done
    progress        jsonb,
    step_data       text,
    maybe_applied   boolean NOT NULL DEFAULT false,
    lane            smallint,
    generation      bigint NOT NULL,
    outcomes        bytea,
    answer_of       bytea,
    remote_ids      text[],
    error_codes     text[],
    error_messages  text[],
    answer_http     integer[],
    answer_attempts integer[],
    answer_at       timestamptz[],
    answer_codes    text[],
    answer_messages text[],
    operation       text NOT NULL,  -- what its rows are sent for
    prologue        bytea,          -- what its requests start with, if not its job's
    hashes          bytea,          -- a sync's: each row's content hash, 8 bytes
    remote_versions text[],
    error_fields    text[],
    -- one slot per row: a row cannot have two receipts
    CONSTRAINT batches_one_outcome_per_row
        CHECK (outcomes IS NULL OR pg_catalog.octet_length(outcomes) = row_count),
    CONSTRAINT batches_one_answer_per_row
        CHECK (answer_of IS NULL OR pg_catalog.octet_length(answer_of) = 2 * row_count)
) PARTITION BY LIST (generation);
-- lz4 keeps the WAL of a large enqueue small at a fraction of pglz's cost;
-- a partition created with LIKE ... INCLUDING COMPRESSION keeps it.
ALTER TABLE @extschema@.batches_new
    ALTER COLUMN body SET COMPRESSION lz4, ALTER COLUMN keys SET COMPRESSION lz4,
    ALTER COLUMN offsets SET COMPRESSION lz4, ALTER COLUMN outcomes SET COMPRESSION lz4,
    ALTER COLUMN answer_of SET COMPRESSION lz4, ALTER COLUMN remote_ids SET COMPRESSION lz4,
    ALTER COLUMN error_codes SET COMPRESSION lz4,
    ALTER COLUMN error_messages SET COMPRESSION lz4, ALTER COLUMN hashes SET COMPRESSION lz4,
    ALTER COLUMN remote_versions SET COMPRESSION lz4,
    ALTER COLUMN error_fields SET COMPRESSION lz4;
-- Each partition has its own indexes, not the parent: pg_dump restores a
-- partition the worker created by attaching it to the parent the extension
-- script made, and an index on that parent would be made for the partition
-- twice.  A job's batches are all in its generation's partition, so a key
-- per partition is a key of the whole.
CREATE TABLE @extschema@.batches_default PARTITION OF @extschema@.batches_new DEFAULT;
ALTER TABLE @extschema@.batches_default ADD PRIMARY KEY (job_id, batch_no);
CREATE INDEX batches_default_runnable_idx ON @extschema@.batches_default (job_id, batch_no)
    WHERE state <> 'done';

-- The existing receipts, packed per batch.  A batch's answers are its
-- receipts' distinct (http_status, attempts, updated_at), numbered from 0
-- in that order; a row keeps its remote id where it is not its key, and
-- its error code and message.
INSERT INTO @extschema@.batches_new
    (job_id, batch_no, state, first_row, row_count, step, remote_id, attempts,
     next_attempt_at, http_status, last_error, updated_at, keys, offsets, body,
     progress, step_data, maybe_applied, lane, generation,
     outcomes, answer_of, remote_ids, error_codes, error_messages,
     answer_http, answer_attempts, answer_at, operation)
SELECT b.job_id, b.batch_no, b.state, b.first_row, b.row_count, b.step, b.remote_id,
       b.attempts, b.next_attempt_at, b.http_status, b.last_error, b.updated_at,
       b.keys, b.offsets, b.body, b.progress, b.step_data, b.maybe_applied, b.lane, 0,
       p.outcomes, p.answer_of, p.remote_ids, p.error_codes, p.error_messages,
       a.answer_http, a.answer_attempts, a.answer_at, j.operation
FROM @extschema@.batches b
JOIN @extschema@.jobs j ON j.id = b.job_id
CROSS JOIN LATERAL (
    SELECT pg_catalog.array_agg(x.http_status ORDER BY x.n) AS answer_http,
           pg_catalog.array_agg(x.attempts ORDER BY x.n) AS answer_attempts,
           pg_catalog.array_agg(x.updated_at ORDER BY x.n) AS answer_at
    FROM (SELECT DISTINCT r.http_status, r.attempts, r.updated_at,
                 pg_catalog.dense_rank() OVER (ORDER BY r.http_status, r.attempts,
                                                        r.updated_at) AS n
          FROM @extschema@.receipts r
          WHERE r.job_id = b.job_id
            AND r.row_no BETWEEN b.first_row AND b.first_row + b.row_count - 1) x
) a
CROSS JOIN LATERAL (
    SELECT pg_catalog.string_agg(pg_catalog.set_byte('\x00'::bytea, 0,
               CASE r.status WHEN 'succeeded' THEN 1 WHEN 'failed' THEN 2
                             WHEN 'cancelled' THEN 3 WHEN 'unknown' THEN 4 ELSE 0 END
               + CASE r.created WHEN true THEN 8 WHEN false THEN 16 ELSE 0 END
               + CASE WHEN r.remote_id = b.keys[i] THEN 32 ELSE 0 END),
               ''::bytea ORDER BY i) AS outcomes,
           pg_catalog.string_agg(pg_catalog.set_byte(pg_catalog.set_byte('\x0000'::bytea,
                   0, (coalesce(r.answer, 1) - 1)::int % 256),
                   1, (coalesce(r.answer, 1) - 1)::int / 256),
               ''::bytea ORDER BY i) AS answer_of,
           CASE WHEN pg_catalog.bool_or(r.remote_id IS DISTINCT FROM b.keys[i]
                                        AND r.remote_id IS NOT NULL)
                THEN pg_catalog.array_agg(CASE WHEN r.remote_id IS DISTINCT FROM b.keys[i]
                                               THEN r.remote_id END ORDER BY i)
                END AS remote_ids,
           CASE WHEN pg_catalog.bool_or(r.error_code IS NOT NULL)
                THEN pg_catalog.array_agg(r.error_code ORDER BY i) END AS error_codes,
           CASE WHEN pg_catalog.bool_or(r.error_message IS NOT NULL)
                THEN pg_catalog.array_agg(r.error_message ORDER BY i) END AS error_messages
    FROM pg_catalog.generate_series(1, b.row_count) AS i
    LEFT JOIN (SELECT r.*, pg_catalog.dense_rank() OVER (ORDER BY r.http_status,
                                                                  r.attempts,
                                                                  r.updated_at) AS answer
               FROM @extschema@.receipts r
               WHERE r.job_id = b.job_id
                 AND r.row_no BETWEEN b.first_row AND b.first_row + b.row_count - 1) r
      ON r.row_no = b.first_row + i - 1
) p;
-- answers without an error shared by all their rows
UPDATE @extschema@.batches_new
SET answer_codes = pg_catalog.array_fill(NULL::text, ARRAY[pg_catalog.cardinality(answer_attempts)]),
    answer_messages = pg_catalog.array_fill(NULL::text, ARRAY[pg_catalog.cardinality(answer_attempts)])
WHERE answer_attempts IS NOT NULL;

DROP TABLE @extschema@.receipts;
DROP TABLE @extschema@.batches;
ALTER TABLE @extschema@.batches_new RENAME TO batches;
ALTER TABLE @extschema@.batches ENABLE ROW LEVEL SECURITY;

-- One row per batch row that has its receipt: the batch's arrays,
-- unnested.  Its output depends on its arguments alone.
CREATE FUNCTION @extschema@._receipts(
    first_row bigint, keys text[], outcomes bytea, answer_of bytea,
    remote_ids text[], error_codes text[], error_messages text[],
    answer_http integer[], answer_attempts integer[], answer_at timestamptz[],
    answer_codes text[], answer_messages text[],
    remote_versions text[] DEFAULT NULL, error_fields text[] DEFAULT NULL,
    OUT row_no bigint, OUT key text, OUT status text, OUT remote_id text,
    OUT created boolean, OUT http_status integer, OUT error_code text,
    OUT error_message text, OUT attempts integer, OUT updated_at timestamptz,
    OUT remote_version text, OUT error_fields text[])
RETURNS SETOF record LANGUAGE c IMMUTABLE PARALLEL SAFE ROWS 1000
    AS 'MODULE_PATHNAME', 'bulkops_receipts_sql';

-- One row per source row that has its outcome, as the table it replaces
-- had, and after those columns what some answers say of a row besides:
-- the version of the remote object after the write (remote_version, SAP
-- FSM's lastChanged) and the fields an error is about (error_fields).
-- Row-level security on batches decides whose a role sees.
CREATE VIEW @extschema@.receipts WITH (security_invoker = true) AS
SELECT b.job_id, r.row_no, r.key, r.status, r.remote_id, r.created,
       r.http_status, r.error_code, r.error_message, r.attempts, r.updated_at,
       r.remote_version, r.error_fields, b.operation
FROM @extschema@.batches b,
     LATERAL @extschema@._receipts(b.first_row, b.keys, b.outcomes, b.answer_of,
                                   b.remote_ids, b.error_codes, b.error_messages,
                                   b.answer_http, b.answer_attempts, b.answer_at,
                                   b.answer_codes, b.answer_messages,
                                   b.remote_versions, b.error_fields) r;

-- The last word on each key of each target, whichever job said it.  It
-- reads every receipt kept: join it to a few keys, or to one target's,
-- rather than scanning it whole on a large history.
CREATE VIEW @extschema@.latest_receipts WITH (security_invoker = true) AS
SELECT DISTINCT ON (j.target, r.key)
       j.target, r.key, r.job_id, r.row_no, r.operation, r.status, r.remote_id,
       r.created, r.http_status, r.error_code, r.error_message, r.attempts,
       r.updated_at, r.remote_version, r.error_fields
FROM @extschema@.receipts r JOIN @extschema@.jobs j ON j.id = r.job_id
WHERE r.key IS NOT NULL
ORDER BY j.target, r.key, r.updated_at DESC, r.job_id DESC, r.row_no DESC;
GRANT SELECT ON @extschema@.latest_receipts TO PUBLIC;

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

-- (bulkops.job_progress, dropped above, is made again with the monitoring
-- section's columns at the end of this script)

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
-- A partitioned table has no data of its own: its default partition is
-- dumped here, and the partitions the worker creates are dumped as any
-- table that is not the extension's is.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.batches_default', '');

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

-- Syncs: a source pushed again and again, sending each time only what
-- changed since the last successful push of each key (see src/sync.c).
-- A sync is owned by its creator; running it needs the target privileges
-- of the operations it may send, and reads the source with the runner's
-- rights.
CREATE TABLE @extschema@.syncs (
    id              serial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    target          text NOT NULL REFERENCES @extschema@.targets (name),
    mode            text NOT NULL CHECK (mode IN ('upsert', 'mirror', 'insert')),
    source          text NOT NULL,
    key             text NOT NULL,
    options         jsonb NOT NULL DEFAULT '{}',
    owner           regrole NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_job        bigint,
    last_run_at     timestamptz,
    last_new        bigint,
    last_changed    bigint,
    last_retry      bigint,
    last_deleted    bigint,
    last_unchanged  bigint,
    -- its jobs up to this id are in sync_state; retention keeps the later
    -- ones, whose receipts the next run reads
    folded_through  bigint NOT NULL DEFAULT 0,
    state_keys      bigint NOT NULL DEFAULT 0
);
ALTER TABLE @extschema@.syncs ENABLE ROW LEVEL SECURITY;
CREATE POLICY syncs_visible ON @extschema@.syncs
    USING (pg_catalog.pg_has_role(owner, 'USAGE')
           OR target IN (SELECT t.name FROM @extschema@.targets t
                         WHERE pg_catalog.pg_has_role(t.owner, 'USAGE')));
GRANT SELECT ON @extschema@.syncs TO PUBLIC;

-- What a sync knows of each key it pushed successfully: the hash of what
-- it sent last (of the encoded row, as the dialect wrote it) and whether
-- its last push of the key did not succeed, in chunks of keys, so that a
-- key costs about 20 bytes and the key's text.  Only bulkops reads it.
CREATE TABLE @extschema@.sync_state (
    sync_id     integer NOT NULL REFERENCES @extschema@.syncs (id) ON DELETE CASCADE,
    chunk       integer NOT NULL,
    keys        text[] NOT NULL,
    hashes      bytea NOT NULL,     -- 8 bytes per key
    flags       bytea NOT NULL,     -- 1 byte per key: 1, send it again
    PRIMARY KEY (sync_id, chunk),
    CHECK (pg_catalog.octet_length(hashes) = 8 * pg_catalog.cardinality(keys)),
    CHECK (pg_catalog.octet_length(flags) = pg_catalog.cardinality(keys))
);
ALTER TABLE @extschema@.sync_state
    ALTER COLUMN keys SET COMPRESSION lz4, ALTER COLUMN hashes SET COMPRESSION lz4,
    ALTER COLUMN flags SET COMPRESSION lz4;

-- The sync a job was run for.
ALTER TABLE @extschema@.jobs ADD COLUMN sync_id integer
    REFERENCES @extschema@.syncs (id) ON DELETE SET NULL;

CREATE FUNCTION @extschema@.create_sync(name text, target text, source text, key text,
                                        mode text DEFAULT 'upsert',
                                        options jsonb DEFAULT '{}')
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_create_sync';
CREATE FUNCTION @extschema@.alter_sync(name text, source text DEFAULT NULL,
                                       key text DEFAULT NULL, mode text DEFAULT NULL,
                                       options jsonb DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_alter_sync';
CREATE FUNCTION @extschema@.drop_sync(name text)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_drop_sync';
CREATE FUNCTION @extschema@.run_sync(name text)
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_run_sync';
CREATE FUNCTION @extschema@.preview_sync(name text)
RETURNS TABLE (change text, key text, body text)
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_preview_sync';
CREATE FUNCTION @extschema@.preview(target text, source text, key text DEFAULT NULL,
                                    operation text DEFAULT 'upsert',
                                    options jsonb DEFAULT '{}')
RETURNS TABLE (row_no bigint, key text, body text)
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_preview';
CREATE FUNCTION @extschema@.retry(job bigint, statuses text[] DEFAULT '{failed,unknown}')
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_retry';

REVOKE ALL ON @extschema@.syncs, @extschema@.sync_state FROM bulkops_admin;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.syncs', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.syncs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_state', '');

-- ---- rate limits: targets held across a restart (issue 13) ----

-- Until when a target's requests are held, after it refused one for a rate
-- or usage limit (429, 503, a dialect's limit): the worker holds them in
-- shared memory, for every worker of the database, and writes the time
-- here when a hold begins or grows, so that a restarted server does not
-- send before it.  One row per target that was ever held; a past time
-- holds nothing.  Not dumped: a restored database starts afresh.
CREATE TABLE @extschema@.target_state (
    target          text PRIMARY KEY
                    REFERENCES @extschema@.targets (name) ON DELETE CASCADE,
    next_request_at timestamptz NOT NULL,
    http_status     integer,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
GRANT SELECT ON @extschema@.target_state TO PUBLIC;
-- ---- 1.3: a fair queue ----
-- The worker serves the jobs of a target in turn, not oldest first: each
-- claim takes the next batch of the job it served least recently
-- (last_claim_at, NULL for a job never served, set when the worker takes a
-- batch of it), so that a small job does not wait behind a large one.  A
-- claim finds the targets and generations of unfinished jobs, and each
-- target's next jobs, by probes with a limit into these partial indexes,
-- which hold unfinished jobs only: its cost grows neither with the number
-- of queued jobs nor with the history.
ALTER TABLE @extschema@.jobs ADD COLUMN last_claim_at timestamptz;
CREATE INDEX jobs_claim_idx ON @extschema@.jobs (target, last_claim_at NULLS FIRST, id)
    WHERE state IN ('queued', 'running');
CREATE INDEX jobs_queued_generation_idx ON @extschema@.jobs (generation)
    WHERE state IN ('queued', 'running');
-- What the worker looks at each time it is woken, besides the claim: jobs
-- cancelled while it holds their batches, and jobs whose deadline may have
-- passed (those with one).  Partial indexes of just those, so that these
-- reads do not grow with the queue either.
CREATE INDEX jobs_cancel_requested_idx ON @extschema@.jobs (id)
    WHERE cancel_requested AND state IN ('queued', 'running');
CREATE INDEX jobs_deadline_idx ON @extschema@.jobs (created_at)
    WHERE state IN ('queued', 'running') AND NOT cancel_requested
        AND options OPERATOR(pg_catalog.?) 'deadline';
-- ==== Monitoring: counters, bulkops.metrics, bulkops.health, progress ====

-- A job's recent rate: rows settled, decayed with a time constant of one
-- minute (recent_rows as of recent_at), added to as receipts are stored;
-- and how many of its failed rows had each error code (at most 32 codes,
-- the rest under "(other)").  bulkops.job_progress reads both.
ALTER TABLE @extschema@.jobs ADD COLUMN recent_rows float8 NOT NULL DEFAULT 0,
    ADD COLUMN recent_at timestamptz,
    ADD COLUMN error_counts jsonb;

-- v, as of at, decayed to now.
CREATE FUNCTION @extschema@._decayed(v float8, at timestamptz, now timestamptz)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN at IS NULL THEN 0
            ELSE v * pg_catalog.exp(-GREATEST(pg_catalog.date_part('epoch', now - at), 0) / 60)
       END;

-- Two objects of counts by error code, added; beyond 32 codes the rows of
-- the least frequent are counted under "(other)".
CREATE FUNCTION @extschema@._add_counts(a jsonb, b jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT pg_catalog.jsonb_object_agg(g.code, g.n)
        FROM (SELECT CASE WHEN r.rank <= 31 THEN r.code ELSE '(other)' END AS code,
                     pg_catalog.sum(r.n) AS n
              FROM (SELECT s.code, s.n,
                           pg_catalog.row_number() OVER (ORDER BY s.code = '(other)',
                                                         s.n DESC, s.code) AS rank
                    FROM (SELECT e.key AS code,
                                 pg_catalog.sum((e.value OPERATOR(pg_catalog.#>>) '{}')::bigint) AS n
                          FROM (SELECT * FROM pg_catalog.jsonb_each(COALESCE(a, '{}'))
                                UNION ALL
                                SELECT * FROM pg_catalog.jsonb_each(COALESCE(b, '{}'))) e
                          GROUP BY e.key) s) r
              GROUP BY 1) g);

-- Rows by receipt status per target and creator since install, counted in
-- the transaction that stores the receipts: each such transaction adds a
-- row (so that no writer waits for another), and the database's first
-- worker folds them into one per target and creator once a minute.  The
-- jobs kept at the upgrade are counted in.  Exports have no receipts: their
-- records are counted in their jobs only.  Whoever may see a job sent
-- through a target by a creator sees that creator's counts on it.
CREATE TABLE @extschema@.row_counts (
    target      text NOT NULL,
    created_by  regrole NOT NULL,
    succeeded   bigint NOT NULL DEFAULT 0,
    failed      bigint NOT NULL DEFAULT 0,
    cancelled   bigint NOT NULL DEFAULT 0,
    unknown     bigint NOT NULL DEFAULT 0
);
CREATE INDEX row_counts_target_idx ON @extschema@.row_counts (target, created_by);
INSERT INTO @extschema@.row_counts (target, created_by, succeeded, failed, cancelled, unknown)
SELECT target, created_by, pg_catalog.sum(rows_succeeded), pg_catalog.sum(rows_failed),
       pg_catalog.sum(rows_cancelled), pg_catalog.sum(rows_unknown)
FROM @extschema@.jobs WHERE operation <> 'query' GROUP BY target, created_by;
ALTER TABLE @extschema@.row_counts ENABLE ROW LEVEL SECURITY;
CREATE POLICY row_counts_visible ON @extschema@.row_counts
    USING (pg_catalog.pg_has_role(created_by, 'USAGE')
           OR target IN (SELECT t.name FROM @extschema@.targets t
                         WHERE pg_catalog.pg_has_role(t.owner, 'USAGE')));
GRANT SELECT ON @extschema@.row_counts TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.row_counts', '');

-- What the workers counted per target since the server started (shared
-- memory), for the targets the caller owns or holds a privilege on, and
-- each one's backoff: no request before backoff_until.
CREATE FUNCTION @extschema@._target_stats(
    OUT target text, OUT requests bigint, OUT answers_2xx bigint,
    OUT answers_3xx bigint, OUT answers_4xx bigint, OUT answers_429 bigint,
    OUT answers_5xx bigint, OUT timeouts bigint, OUT transport_failures bigint,
    OUT retries bigint, OUT token_fetches bigint, OUT token_failures bigint,
    OUT token_failed boolean, OUT token_at timestamptz,
    OUT backoff_until timestamptz, OUT backoff_since timestamptz,
    OUT backoff_status integer)
RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_target_stats_sql';

-- The workers serving this database and when each one's loop last went round.
CREATE FUNCTION @extschema@._workers(OUT lane integer, OUT pid integer,
                                     OUT last_loop timestamptz)
RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_workers_sql';

-- What a job came to (so far), in one line, as the server log says it.
CREATE FUNCTION @extschema@.job_summary(job bigint)
RETURNS text LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'bulkops_job_summary_sql';

-- One row per metric and set of labels, for Prometheus (the README's
-- table; contrib/postgres_exporter/queries.yaml).  A role sees the jobs,
-- row counts and queues that row-level security shows it, and the
-- counters and backoff of the targets it owns or holds a privilege on.
CREATE VIEW @extschema@.metrics WITH (security_invoker = true, security_barrier = true) AS
-- The metrics read from tables are each a constant of their branch, so
-- that a query for one metric (as each of the exporter's is) plans the
-- others away, and a CTE no remaining branch reads is never run; those of
-- shared memory cost one call of _target_stats().  The queue is read from
-- the unfinished jobs (an index) to their queued batches (each partition's
-- index of batches not done), however long the history.
WITH ts AS MATERIALIZED (SELECT * FROM @extschema@._target_stats()),
queue AS MATERIALIZED (
    SELECT j.target, pg_catalog.sum(b.batches) AS batches, pg_catalog.sum(b.nrows) AS nrows,
           pg_catalog.min(j.created_at) FILTER (WHERE b.batches > 0) AS oldest
    FROM @extschema@.jobs j,
    LATERAL (SELECT pg_catalog.count(*) AS batches, pg_catalog.sum(b.row_count) AS nrows
             FROM @extschema@.batches b
             WHERE b.job_id = j.id AND b.generation = j.generation AND b.state = 'queued') b
    WHERE j.state IN ('queued', 'running')
    GROUP BY j.target),
qt AS MATERIALIZED (SELECT ts.target FROM ts UNION SELECT queue.target FROM queue),
jobs AS MATERIALIZED (
    SELECT j.target, j.state, pg_catalog.count(*) AS n,
           pg_catalog.sum(j.rows_succeeded + j.rows_failed + j.rows_cancelled
                          + j.rows_unknown) AS receipts
    FROM @extschema@.jobs j GROUP BY j.target, j.state)
SELECT 'jobs'::text AS metric, 'gauge'::text AS kind, j.target,
       pg_catalog.jsonb_build_object('target', j.target, 'state', j.state) AS labels,
       j.n::float8 AS value
FROM jobs j
UNION ALL
SELECT 'rows_total', 'counter', r.target,
       pg_catalog.jsonb_build_object('target', r.target, 'status', s.status),
       pg_catalog.sum(s.n)::float8
FROM @extschema@.row_counts r,
     LATERAL (VALUES ('succeeded', r.succeeded), ('failed', r.failed),
                     ('cancelled', r.cancelled), ('unknown', r.unknown)) s (status, n)
GROUP BY r.target, s.status
UNION ALL
SELECT 'queued_batches', 'gauge', t.target, pg_catalog.jsonb_build_object('target', t.target),
       COALESCE(q.batches, 0)::float8
FROM qt t LEFT JOIN queue q ON q.target = t.target
UNION ALL
SELECT 'queued_rows', 'gauge', t.target, pg_catalog.jsonb_build_object('target', t.target),
       COALESCE(q.nrows, 0)::float8
FROM qt t LEFT JOIN queue q ON q.target = t.target
UNION ALL
SELECT 'oldest_queued_batch_age_seconds', 'gauge', t.target,
       pg_catalog.jsonb_build_object('target', t.target),
       COALESCE(GREATEST(pg_catalog.date_part('epoch', pg_catalog.now() - q.oldest), 0), 0)::float8
FROM qt t LEFT JOIN queue q ON q.target = t.target
UNION ALL
SELECT m.metric, m.kind, ts.target,
       pg_catalog.jsonb_build_object('target', ts.target) || m.labels, m.value
FROM ts,
LATERAL (VALUES ('requests_total', 'counter', '{}'::jsonb, ts.requests::float8),
                ('answers_total', 'counter', '{"class": "2xx"}', ts.answers_2xx),
                ('answers_total', 'counter', '{"class": "3xx"}', ts.answers_3xx),
                ('answers_total', 'counter', '{"class": "4xx"}', ts.answers_4xx),
                ('answers_total', 'counter', '{"class": "429"}', ts.answers_429),
                ('answers_total', 'counter', '{"class": "5xx"}', ts.answers_5xx),
                ('retries_total', 'counter', '{}', ts.retries),
                ('timeouts_total', 'counter', '{}', ts.timeouts),
                ('transport_failures_total', 'counter', '{}', ts.transport_failures),
                ('oauth_token_fetches_total', 'counter', '{}', ts.token_fetches),
                ('oauth_token_failures_total', 'counter', '{}', ts.token_failures),
                ('backoff_seconds', 'gauge', '{}',
                 COALESCE(GREATEST(pg_catalog.date_part('epoch', ts.backoff_until
                                                        - pg_catalog.clock_timestamp()), 0), 0))
        ) m (metric, kind, labels, value)
UNION ALL
SELECT 'receipts_stored', 'gauge', j.target, pg_catalog.jsonb_build_object('target', j.target),
       pg_catalog.sum(j.receipts)::float8
FROM jobs j GROUP BY j.target
UNION ALL
SELECT 'receipts_bytes', 'gauge', NULL, '{}',
       COALESCE(pg_catalog.sum(pg_catalog.pg_total_relation_size(p.relid)), 0)::float8
FROM pg_catalog.pg_partition_tree('@extschema@.batches'::regclass) p
UNION ALL
SELECT 'workers', 'gauge', NULL, '{}', pg_catalog.count(*)::float8
FROM @extschema@._workers()
UNION ALL
SELECT 'worker_loop_lag_seconds', 'gauge', NULL,
       pg_catalog.jsonb_build_object('lane', w.lane),
       GREATEST(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - w.last_loop), 0)
FROM @extschema@._workers() w;
GRANT SELECT ON @extschema@.metrics TO PUBLIC;

-- One row for the database: its workers, their loop, targets in backoff
-- (until when) and whose last token fetch failed, jobs past their
-- deadline (and when the first one passed), the oldest queued batch.
-- Visibility as for bulkops.metrics.
CREATE VIEW @extschema@.health WITH (security_invoker = true, security_barrier = true) AS
WITH ts AS MATERIALIZED (SELECT * FROM @extschema@._target_stats()),
w AS MATERIALIZED (SELECT * FROM @extschema@._workers())
SELECT pg_catalog.current_database() AS database,
       (SELECT pg_catalog.count(*) FROM w)::integer AS workers,
       (SELECT pg_catalog.array_agg(w.pid ORDER BY w.lane) FROM w) AS worker_pids,
       (SELECT pg_catalog.min(w.last_loop) FROM w) AS last_loop,
       (SELECT GREATEST(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()
                                             - pg_catalog.min(w.last_loop)), 0) FROM w)
           AS loop_lag_seconds,
       (SELECT pg_catalog.jsonb_object_agg(ts.target, ts.backoff_until ORDER BY ts.target)
        FROM ts WHERE ts.backoff_until > pg_catalog.clock_timestamp()) AS targets_in_backoff,
       (SELECT pg_catalog.min(ts.backoff_since) FROM ts
        WHERE ts.backoff_until > pg_catalog.clock_timestamp()) AS backoff_since,
       (SELECT pg_catalog.array_agg(ts.target ORDER BY ts.target) FROM ts WHERE ts.token_failed)
           AS token_failed_targets,
       d.jobs_past_deadline, d.deadline_passed_at,
       (SELECT pg_catalog.min(j.created_at)
        FROM @extschema@.jobs j
        JOIN @extschema@.batches b ON b.job_id = j.id AND b.generation = j.generation
        WHERE j.state IN ('queued', 'running') AND b.state = 'queued') AS oldest_queued_since
FROM (SELECT pg_catalog.count(*) AS jobs_past_deadline, pg_catalog.min(x.deadline) AS deadline_passed_at
      FROM (SELECT j.created_at + (j.options OPERATOR(pg_catalog.->>) 'deadline')::float8
                   * interval '1 second' AS deadline
            FROM @extschema@.jobs j
            WHERE j.state IN ('queued', 'running') AND j.options ? 'deadline') x
      WHERE x.deadline <= pg_catalog.clock_timestamp()) d;
GRANT SELECT ON @extschema@.health TO PUBLIC;

-- check_postgres style: 0 OK, 1 WARNING, 2 CRITICAL, and a message naming
-- every problem, worst first.
CREATE FUNCTION @extschema@.check_health(
    lag_warning interval DEFAULT '1 minute', lag_critical interval DEFAULT '5 minutes',
    queue_warning interval DEFAULT '15 minutes', queue_critical interval DEFAULT '1 hour',
    backoff_warning interval DEFAULT '10 minutes',
    OUT severity integer, OUT message text)
RETURNS record LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    h record;
    problems text[] := '{}';
    sev integer[] := '{}';
    lag interval;
    waited interval;
    i integer;
BEGIN
    SELECT * INTO h FROM @extschema@.health;
    lag := make_interval(secs => h.loop_lag_seconds);
    IF h.workers = 0 THEN
        sev := sev || 2;
        problems := problems || format('no bulkops worker serves database "%s"', h.database);
    ELSIF lag >= lag_critical OR lag >= lag_warning THEN
        sev := sev || CASE WHEN lag >= lag_critical THEN 2 ELSE 1 END;
        problems := problems || format('a worker''s loop last went round %s s ago',
                                       round(h.loop_lag_seconds::numeric));
    END IF;
    waited := clock_timestamp() - h.oldest_queued_since;
    IF waited >= queue_warning THEN
        sev := sev || CASE WHEN waited >= queue_critical THEN 2 ELSE 1 END;
        problems := problems || format('the oldest queued batch has waited %s s',
                                       round(extract(epoch FROM waited)));
    END IF;
    IF h.targets_in_backoff IS NOT NULL
       AND clock_timestamp() - h.backoff_since >= backoff_warning THEN
        sev := sev || 1;
        problems := problems || format('in backoff for %s s: %s',
            round(extract(epoch FROM clock_timestamp() - h.backoff_since)),
            (SELECT string_agg(format('target "%s" until %s', k, v #>> '{}'), ', ' ORDER BY k)
             FROM jsonb_each(h.targets_in_backoff) AS e (k, v)));
    END IF;
    IF h.token_failed_targets IS NOT NULL THEN
        sev := sev || 1;
        problems := problems || format('the last token fetch failed for %s',
            (SELECT string_agg(format('target "%s"', t), ', ')
             FROM unnest(h.token_failed_targets) AS t));
    END IF;
    -- the worker times a job out within a poll_interval of its deadline
    IF clock_timestamp() - h.deadline_passed_at >= lag_warning THEN
        sev := sev || 1;
        problems := problems || format('%s job(s) past their deadline, the first by %s s',
            h.jobs_past_deadline, round(extract(epoch FROM clock_timestamp() - h.deadline_passed_at)));
    END IF;
    severity := COALESCE((SELECT max(s) FROM unnest(sev) AS s), 0);
    IF severity = 0 THEN
        message := format('OK: %s worker(s), nothing queued for more than %s s', h.workers,
                          round(extract(epoch FROM queue_warning)));
        RETURN;
    END IF;
    SELECT string_agg(p, '; ' ORDER BY s DESC, n) INTO message
    FROM unnest(sev, problems) WITH ORDINALITY AS x (s, p, n);
    message := CASE severity WHEN 2 THEN 'CRITICAL: ' ELSE 'WARNING: ' END || message;
END
$$;
GRANT EXECUTE ON FUNCTION @extschema@.check_health(interval, interval, interval, interval, interval) TO PUBLIC;

-- Progress you can read: rows_per_second over the last minute while the
-- job runs (decayed, as if that rate had held since it started when it
-- started less than a minute ago), over its whole run once it has ended;
-- eta from that recent rate (finished_at once it has ended).  The clock,
-- not now(): bulkops.wait() reads this view all through one statement.
CREATE VIEW @extschema@.job_progress WITH (security_invoker = true, security_barrier = true) AS
SELECT j.id, j.target, j.operation, j.state, j.rows_total,
       j.rows_succeeded + j.rows_failed + j.rows_cancelled + j.rows_unknown AS rows_done,
       CASE WHEN j.rows_total > 0
            THEN round(100.0 * (j.rows_succeeded + j.rows_failed + j.rows_cancelled
                                + j.rows_unknown) / j.rows_total, 1)
            ELSE 100.0 END AS percent,
       r.rate AS rows_per_second,
       (SELECT jsonb_object_agg(s.key, s.total)
          FROM (SELECT e.key, sum(e.value::text::numeric) AS total
                  FROM @extschema@.batches b, jsonb_each(b.progress) e
                 WHERE b.job_id = j.id AND jsonb_typeof(e.value) = 'number'
                 GROUP BY e.key) s) AS remote_progress,
       j.created_by, j.created_at, j.started_at, j.finished_at, j.last_error,
       CASE WHEN j.finished_at IS NOT NULL THEN j.finished_at
            WHEN r.rate > 0
            THEN clock_timestamp() + (greatest(j.rows_total - (j.rows_succeeded + j.rows_failed
                                                   + j.rows_cancelled + j.rows_unknown), 0)
                          / r.rate) * interval '1 second'
            END AS eta
FROM @extschema@.jobs j,
LATERAL (SELECT CASE
    WHEN j.started_at IS NULL THEN NULL
    WHEN j.finished_at IS NOT NULL THEN
        CASE WHEN j.finished_at > j.started_at
             THEN round((j.rows_succeeded + j.rows_failed + j.rows_cancelled + j.rows_unknown)
                        / extract(epoch FROM j.finished_at - j.started_at), 1) END
    ELSE round((@extschema@._decayed(j.recent_rows, j.recent_at, clock_timestamp())
                / (60 * (1 - exp(-greatest(extract(epoch FROM clock_timestamp() - j.started_at)::float8,
                                           0.001) / 60))))::numeric, 1)
    END AS rate) r;
GRANT SELECT ON @extschema@.job_progress TO PUBLIC;
