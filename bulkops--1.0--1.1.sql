-- bulkops 1.0 -> 1.1
\echo Use "ALTER EXTENSION bulkops UPDATE TO '1.1'" to load this file. \quit

-- What a dialect puts in front of every request body of a job (a CSV
-- header row), written once at enqueue.
ALTER TABLE bulkops.jobs ADD COLUMN prologue bytea;

-- The remote side's own counters for a batch (records processed, phases),
-- as its dialect reads them from each answer.
ALTER TABLE bulkops.batches ADD COLUMN progress jsonb;

-- What a dialect needs for a batch's next request beyond its remote id (the
-- URL of a result file), kept with the step so a restarted worker can go on.
ALTER TABLE bulkops.batches ADD COLUMN step_data text;

-- In 1.0 the view ran with its owner's rights, so row-level security on
-- jobs was checked against the owner and every role saw every job through
-- it.  Views created by a superuser must run as the invoker.
DROP VIEW bulkops.job_progress;
CREATE VIEW bulkops.job_progress WITH (security_invoker = true, security_barrier = true) AS
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
                  FROM bulkops.batches b, jsonb_each(b.progress) e
                 WHERE b.job_id = j.id AND jsonb_typeof(e.value) = 'number'
                 GROUP BY e.key) s) AS remote_progress,
       j.created_by, j.created_at, j.started_at, j.finished_at, j.last_error
FROM bulkops.jobs j;
GRANT SELECT ON bulkops.job_progress TO PUBLIC;
GRANT SELECT ON bulkops.job_progress TO bulkops_admin;

-- Query jobs (bulk_query) write what the remote side returns into a local
-- table, named here as the caller gave it.
ALTER TABLE bulkops.jobs ADD COLUMN destination text;

CREATE FUNCTION bulkops.bulk_query(target text, query text, "into" text,
                                   options jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bulkops_bulk_query';

-- The last word on each key of each target, whichever job said it: what a
-- user joins against to learn the remote state of a row.
CREATE VIEW bulkops.latest_receipts WITH (security_invoker = true) AS
SELECT DISTINCT ON (j.target, r.key)
       j.target, r.key, r.job_id, r.row_no, j.operation, r.status, r.remote_id,
       r.created, r.http_status, r.error_code, r.error_message, r.attempts,
       r.updated_at
FROM bulkops.receipts r JOIN bulkops.jobs j ON j.id = r.job_id
WHERE r.key IS NOT NULL
ORDER BY j.target, r.key, r.updated_at DESC, r.job_id DESC, r.row_no DESC;
GRANT SELECT ON bulkops.latest_receipts TO PUBLIC;

-- A stopped job says why: bulkops.cancel() (cancel_requested alone) or its
-- deadline (job option "deadline"), which ends it timed_out.
ALTER TABLE bulkops.jobs ADD COLUMN timed_out boolean NOT NULL DEFAULT false;

-- lz4 for the other bulky columns every batch is written with: pglz on keys
-- and offsets took a quarter of an enqueue's time (body is lz4 since 1.0).
ALTER TABLE bulkops.batches ALTER COLUMN keys SET COMPRESSION lz4,
    ALTER COLUMN offsets SET COMPRESSION lz4;

-- Whether the remote side may have applied the batch's pending rows: set
-- just before a submit is sent, and kept after its answer only where that
-- answer leaves it open (a 500 to an upsert, which is then sent again).
-- After a crash only such a batch of an insert is in doubt; one merely
-- claimed, or waiting to retry after a 429, was never applied and is sent
-- again.  A cancel settles such rows 'unknown', not 'cancelled'.
ALTER TABLE bulkops.batches ADD COLUMN maybe_applied boolean NOT NULL DEFAULT false;
