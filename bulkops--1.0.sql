/* bulkops--1.0.sql: the install script.  Released scripts are never edited. */

\echo Use "CREATE EXTENSION bulkops" to load this file. \quit

-- Refuse early, with a hint, when the library was not preloaded: without the
-- worker nothing would ever be sent.
CREATE FUNCTION bulkops._check_preloaded() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'bulkops_check_preloaded';
SELECT bulkops._check_preloaded();
DROP FUNCTION bulkops._check_preloaded();

-- Members of bulkops_admin manage targets and see every job.  Roles are
-- cluster-wide, so a second database's CREATE EXTENSION finds it existing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bulkops_admin') THEN
        CREATE ROLE bulkops_admin NOLOGIN;
    END IF;
END
$$;

CREATE FUNCTION bulkops.is_admin() RETURNS boolean
    LANGUAGE sql STABLE
    RETURN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
           OR pg_has_role(current_user, 'bulkops_admin', 'MEMBER');

CREATE TABLE bulkops.targets (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    dialect     text NOT NULL,
    url         text NOT NULL,
    resource    text,
    options     jsonb NOT NULL DEFAULT '{}',
    auth        jsonb,
    owner       name NOT NULL DEFAULT current_user,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bulkops.jobs (
    id              bigserial PRIMARY KEY,
    target          text NOT NULL,
    dialect         text NOT NULL,
    operation       text NOT NULL,
    key_column      text,
    options         jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'succeeded', 'partial',
                                     'failed', 'cancelled', 'timed_out')),
    rows_total      bigint NOT NULL DEFAULT 0,
    rows_succeeded  bigint NOT NULL DEFAULT 0,
    rows_failed     bigint NOT NULL DEFAULT 0,
    rows_cancelled  bigint NOT NULL DEFAULT 0,
    rows_unknown    bigint NOT NULL DEFAULT 0,
    bytes_total     bigint NOT NULL DEFAULT 0,
    batches_total   integer NOT NULL DEFAULT 0,
    batches_done    integer NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_by      name NOT NULL DEFAULT current_user,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    last_error      text
);
CREATE INDEX jobs_active_idx ON bulkops.jobs (id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_created_by_idx ON bulkops.jobs (created_by);

-- One row per request-sized slice of a job.  body holds the rows already in
-- the dialect's wire encoding, back to back; row i is
-- body[offsets[i] + 1 .. offsets[i + 1]] (offsets has row_count + 1 entries).
CREATE TABLE bulkops.batches (
    job_id          bigint NOT NULL REFERENCES bulkops.jobs (id) ON DELETE CASCADE,
    batch_no        integer NOT NULL,
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'active', 'done')),
    first_row       bigint NOT NULL,
    row_count       integer NOT NULL,
    step            integer NOT NULL DEFAULT 0,
    remote_id       text,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    http_status     integer,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    keys            text[] NOT NULL,
    offsets         integer[] NOT NULL,
    body            bytea NOT NULL,
    PRIMARY KEY (job_id, batch_no)
);
-- lz4 keeps the WAL of a large enqueue small at a fraction of pglz's cost.
ALTER TABLE bulkops.batches ALTER COLUMN body SET COMPRESSION lz4;
CREATE INDEX batches_runnable_idx ON bulkops.batches (job_id, batch_no)
    WHERE state <> 'done';

CREATE TABLE bulkops.receipts (
    job_id          bigint NOT NULL,
    row_no          bigint NOT NULL,
    key             text,
    status          text NOT NULL
                    CHECK (status IN ('succeeded', 'failed', 'cancelled', 'unknown')),
    remote_id       text,
    created         boolean,
    http_status     integer,
    error_code      text,
    error_message   text,
    attempts        integer NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, row_no)
);
CREATE INDEX receipts_key_idx ON bulkops.receipts (key);

CREATE VIEW bulkops.job_progress AS
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
       j.created_by, j.created_at, j.started_at, j.finished_at, j.last_error
FROM bulkops.jobs j;

-- Privileges: ordinary roles read their own jobs, batches and receipts, and
-- every column of targets but auth.  All writes go through the functions.
REVOKE ALL ON ALL TABLES IN SCHEMA bulkops FROM PUBLIC;
GRANT USAGE ON SCHEMA bulkops TO PUBLIC;
GRANT SELECT (name, dialect, url, resource, options, owner, created_at, updated_at)
    ON bulkops.targets TO PUBLIC;
GRANT SELECT ON bulkops.jobs, bulkops.batches, bulkops.receipts, bulkops.job_progress
    TO PUBLIC;
GRANT SELECT, UPDATE, INSERT, DELETE ON ALL TABLES IN SCHEMA bulkops TO bulkops_admin;
REVOKE UPDATE, INSERT, DELETE ON bulkops.job_progress FROM bulkops_admin;

ALTER TABLE bulkops.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE bulkops.batches ENABLE ROW LEVEL SECURITY;
ALTER TABLE bulkops.receipts ENABLE ROW LEVEL SECURITY;
-- The admin test is an initplan, evaluated once per query, not per row.
CREATE POLICY jobs_own ON bulkops.jobs
    USING ((SELECT bulkops.is_admin()) OR created_by = current_user);
CREATE POLICY batches_own ON bulkops.batches
    USING ((SELECT bulkops.is_admin()) OR job_id IN (SELECT id FROM bulkops.jobs));
CREATE POLICY receipts_own ON bulkops.receipts
    USING ((SELECT bulkops.is_admin()) OR job_id IN (SELECT id FROM bulkops.jobs));
ALTER VIEW bulkops.job_progress SET (security_barrier = true);

-- Targets
CREATE FUNCTION bulkops.create_target(name text, dialect text, url text,
                                      resource text DEFAULT NULL,
                                      auth jsonb DEFAULT NULL,
                                      options jsonb DEFAULT '{}')
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_create_target';

CREATE FUNCTION bulkops.alter_target(name text, url text DEFAULT NULL,
                                     resource text DEFAULT NULL,
                                     auth jsonb DEFAULT NULL,
                                     options jsonb DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_alter_target';

CREATE FUNCTION bulkops.drop_target(name text)
RETURNS void LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'bulkops_drop_target';

-- Pushes
CREATE FUNCTION bulkops.bulk_insert(target text, source text, key text DEFAULT NULL,
                                    options jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_bulk_insert';
CREATE FUNCTION bulkops.bulk_update(target text, source text, key text DEFAULT NULL,
                                    options jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_bulk_update';
CREATE FUNCTION bulkops.bulk_upsert(target text, source text, key text DEFAULT NULL,
                                    options jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_bulk_upsert';
CREATE FUNCTION bulkops.bulk_delete(target text, source text, key text DEFAULT NULL,
                                    options jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_bulk_delete';
CREATE FUNCTION bulkops.bulk_overwrite(target text, source text, key text DEFAULT NULL,
                                       options jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_bulk_overwrite';

-- Watching and steering
CREATE FUNCTION bulkops.wait(job bigint, timeout interval DEFAULT '1 hour')
RETURNS text LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_wait';

CREATE FUNCTION bulkops.cancel(job bigint)
RETURNS boolean LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'bulkops_cancel';

CREATE FUNCTION bulkops.worker_pid()
RETURNS integer LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_worker_pid_sql';

REVOKE ALL ON FUNCTION bulkops.create_target, bulkops.alter_target,
    bulkops.drop_target FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bulkops.create_target, bulkops.alter_target,
    bulkops.drop_target TO bulkops_admin;
