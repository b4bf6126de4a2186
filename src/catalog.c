/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Every statement the worker runs on bulkops' jobs, batches and
 *	  receipts, named by what it does (what backends run on them when they
 *	  enqueue or cancel: catalog_jobs.c; on an export's own tables:
 *	  catalog_exports.c; targets and grants: catalog_targets.c).
 *
 * One place to audit for locking, privileges and names.  Every statement
 * names its tables with their schema and runs with search_path =
 * pg_catalog, pg_temp: the worker's session has it fixed (owner.c), and
 * the functions for backends enter an owner section (to write on the
 * caller's behalf, after the caller's right was checked elsewhere) or a
 * safe section (to read as the caller, under row-level security).
 *
 * Locks: a job's row is locked before its batches (bulkops_catalog_lock_
 * job), by everyone who changes its queued batches, so that a cancel and
 * the worker's deadline sweep wait for each other instead of deadlocking;
 * the worker never waits for a job another transaction holds (SKIP LOCKED)
 * and waits at most LOCK_TIMEOUT_MS (exec.c) for anything else.
 *
 * Memory: what these functions return is allocated in the current memory
 * context (for the worker, SPI's, which lasts until its transaction ends).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "bulkops.h"
#include "catalog.h"
#include "exec.h"
#include "joblog.h"
#include "receipts.h"

/* Run one of the statements below; SPI must be connected. */
static void
run(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
	int expect)
{
	(void) bulkops_exec(sql, nargs, types, values, nulls, false, expect);
}

static Datum
getbin(uint64 row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
						 isnull);
}

static Datum
text_or_null(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(bulkops_clean_text(s, 8192)) : (Datum) 0;
}

/* ---- the worker: claiming and recovering batches ---- */

/*
 * The distinct values of column of the unfinished jobs, as the rows of
 * "d (v)" (and a last NULL), by a skip scan of a partial index of
 * unfinished jobs that leads with column: one probe per value, however
 * many jobs share it.
 */
#define UNFINISHED_JOBS_DISTINCT(column) \
	"WITH RECURSIVE d (v) AS (" \
	" (SELECT " column " FROM bulkops.jobs" \
	"  WHERE state IN ('queued', 'running') ORDER BY " column " LIMIT 1)" \
	" UNION ALL" \
	" SELECT (SELECT j." column " FROM bulkops.jobs j" \
	"         WHERE j.state IN ('queued', 'running') AND j." column " > d.v" \
	"         ORDER BY j." column " LIMIT 1)" \
	" FROM d WHERE d.v IS NOT NULL) "

/*
 * The generations (partitions of bulkops.batches) that unfinished jobs'
 * batches are in, as an int8[].  A statement on batches that names them
 * as a constant is planned over those partitions only, whatever the
 * history kept: the claim's cost does not grow with it.  Read by a skip
 * scan of jobs_queued_generation_idx, one probe per generation, so that
 * it does not grow with the number of queued jobs either.
 */
static Datum
active_generations(void)
{
	bool		isnull;
	Datum		d;

	bulkops_exec(UNFINISHED_JOBS_DISTINCT("generation")
				 "SELECT coalesce(array_agg(v), '{}') FROM d WHERE v IS NOT NULL",
				 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	d = getbin(0, 1, &isnull);
	return PointerGetDatum(DatumGetArrayTypePCopy(d));
}

/*
 * The targets that have unfinished jobs, with their concurrency option (0:
 * none, or the target is gone), and in *generations the generations their
 * batches are in (for bulkops_catalog_next_jobs).  A skip scan of the claim
 * index: one probe per target, however many jobs each has queued.
 */
BulkopsQueuedTarget *
bulkops_catalog_queued_targets(int *n, Datum *generations)
{
	BulkopsQueuedTarget *t;
	uint64		i;

	*generations = active_generations();

	bulkops_exec(UNFINISHED_JOBS_DISTINCT("target")
				 "SELECT d.v, coalesce((t.options->>'concurrency')::int, 0) "
				 "FROM d LEFT JOIN bulkops.targets t ON t.name = d.v "
				 "WHERE d.v IS NOT NULL",
				 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	*n = (int) SPI_processed;
	t = palloc(sizeof(BulkopsQueuedTarget) * Max(*n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		t[i].target = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		t[i].concurrency = DatumGetInt32(getbin(i, 2, &isnull));
	}
	return t;
}

/*
 * The next jobs of target to serve: at most njobs unfinished jobs that have
 * a runnable batch, the one served least recently first (never served
 * before all), leaving out the exclude[] ones, each with its lowest
 * runnable batch numbers (at most nbatches).  generations: as
 * bulkops_catalog_queued_targets gave them.
 *
 * Each step is an index probe with a limit: the jobs come in order from
 * jobs_claim_idx, and a job's runnable batches from the runnable-batches
 * index of its generation's partition ("state <> 'done'" is implied by
 * "state = 'queued'" but spelled out so that the partial index serves it;
 * it also holds the job's active batches, at most its concurrency).  The
 * statement is planned over the partitions of the generations given, and
 * each job's look-up reads its own.  Jobs without a runnable batch are
 * passed over: those whose every batch is in a worker's hands, or waits to
 * be retried, at most a few per slot of the target.  Nothing here grows
 * with the number of queued jobs or with the history.
 */
BulkopsCandidate *
bulkops_catalog_next_jobs(const char *target, Datum generations, int njobs,
						  int nbatches, const int64 *exclude, int nexclude,
						  int *n)
{
	Oid			types[5] = {TEXTOID, INT4OID, INT4OID, INT8ARRAYOID, INT8ARRAYOID};
	Datum	   *ex = palloc(sizeof(Datum) * Max(nexclude, 1));
	Datum		values[5];
	BulkopsCandidate *c;
	uint64		i;
	int			k;

	for (k = 0; k < nexclude; k++)
		ex[k] = Int64GetDatum(exclude[k]);
	values[0] = CStringGetTextDatum(target);
	values[1] = Int32GetDatum(njobs);
	values[2] = Int32GetDatum(nbatches);
	values[3] = PointerGetDatum(construct_array(ex, nexclude, INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[4] = generations;
	bulkops_exec("SELECT j.id, coalesce((j.options->>'concurrency')::int, 0), b.nos, "
				 "j.generation "
				 "FROM bulkops.jobs j CROSS JOIN LATERAL ("
				 " SELECT array_agg(r.batch_no ORDER BY r.batch_no) AS nos FROM ("
				 "  SELECT batch_no FROM bulkops.batches"
				 "  WHERE generation = ANY ($5) AND generation = j.generation"
				 "  AND job_id = j.id AND state <> 'done' AND state = 'queued'"
				 "  AND next_attempt_at <= now() ORDER BY batch_no LIMIT $3) r) b "
				 "WHERE j.target = $1 AND j.state IN ('queued', 'running') "
				 "AND j.id <> ALL ($4) AND b.nos IS NOT NULL "
				 "ORDER BY j.last_claim_at NULLS FIRST, j.id LIMIT $2",
				 5, types, values, NULL, true, SPI_OK_SELECT);
	*n = (int) SPI_processed;
	c = palloc(sizeof(BulkopsCandidate) * Max(*n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum	   *nos;
		int			m;

		c[i].job_id = DatumGetInt64(getbin(i, 1, &isnull));
		c[i].concurrency = DatumGetInt32(getbin(i, 2, &isnull));
		c[i].generation = DatumGetInt64(getbin(i, 4, &isnull));
		deconstruct_array(DatumGetArrayTypeP(getbin(i, 3, &isnull)), INT4OID,
						  sizeof(int32), true, TYPALIGN_INT, &nos, NULL, &m);
		c[i].nbatches = m;
		c[i].batch_nos = palloc(sizeof(int32) * Max(m, 1));
		for (k = 0; k < m; k++)
			c[i].batch_nos[k] = DatumGetInt32(nos[k]);
	}
	return c;
}

/*
 * Lock job's row as an UPDATE of it does (FOR NO KEY UPDATE), until the
 * end of the transaction.  Whoever changes a job's queued batches takes
 * this lock first: bulkops.cancel() waits for it, as a user's statement
 * may; the worker passes skip_locked, never waits for a job another
 * transaction holds, and hears false (as it does for a job that is gone).
 */
bool
bulkops_catalog_lock_job(int64 job_id, bool skip_locked)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};
	bool		locked;

	SPI_connect();
	run(skip_locked
		? "SELECT 1 FROM bulkops.jobs WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED"
		: "SELECT 1 FROM bulkops.jobs WHERE id = $1 FOR NO KEY UPDATE",
		1, types, values, NULL, SPI_OK_SELECT);
	locked = (SPI_processed == 1);
	SPI_finish();
	return locked;
}

/* What a claimed batch's Work is made of (batch.c reads it by name). */
#define CLAIMED_COLUMNS \
	"b.first_row, b.row_count, b.generation, b.step, b.remote_id, " \
	"b.attempts, b.keys, b.offsets, b.body, b.step_data, b.progress, " \
	"b.maybe_applied, b.operation, j.options, j.cancel_requested, " \
	"j.timed_out, j.target, coalesce(b.prologue, j.prologue) AS prologue, " \
	"j.key_column, j.created_by, " \
	"j.destination, j.destination_schema, j.destination_table, " \
	BULKOPS_RECEIPT_COLUMNS

/*
 * Take batch (job_id, batch_no) of generation for this worker's lane: mark
 * a queued one active, counting a submit attempt at step 0 (or, with
 * resume, re-own an active one), and return its row with its job's in
 * *row and *desc.  A queued batch another transaction holds (a cancel) is
 * not waited for: false, as for a batch that is no longer queued.
 */
bool
bulkops_catalog_take_batch(int64 job_id, int32 batch_no, int64 generation,
						   int lane, bool resume, HeapTuple *row,
						   TupleDesc *desc)
{
	Oid			types[4] = {INT8OID, INT4OID, INT2OID, INT8OID};
	Datum		values[4] = {Int64GetDatum(job_id), Int32GetDatum(batch_no),
	Int16GetDatum(lane), Int64GetDatum(generation)};

	bulkops_exec(resume
				 ? "UPDATE bulkops.batches b SET updated_at = now(), lane = $3 "
				 "FROM bulkops.jobs j WHERE b.job_id = $1 AND b.batch_no = $2 "
				 "AND b.generation = $4 AND j.id = b.job_id AND b.state = 'active' "
				 "RETURNING " CLAIMED_COLUMNS
				 : "UPDATE bulkops.batches b SET state = 'active', updated_at = now(), lane = $3, "
				 "attempts = b.attempts + (b.step = 0)::int "
				 "FROM bulkops.jobs j WHERE b.job_id = $1 AND b.batch_no = $2 "
				 "AND b.generation = $4 AND j.id = b.job_id AND b.state = 'queued' "
				 "AND (b.job_id, b.batch_no) = (SELECT job_id, batch_no "
				 " FROM bulkops.batches WHERE job_id = $1 AND batch_no = $2 "
				 " AND generation = $4 AND state = 'queued' FOR UPDATE SKIP LOCKED) "
				 "RETURNING " CLAIMED_COLUMNS,
				 4, types, values, NULL, false, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed != 1)
		return false;
	*row = SPI_tuptable->vals[0];
	*desc = SPI_tuptable->tupdesc;
	return true;
}

/*
 * A target as the worker sends to it now (its URL and credentials may have
 * changed since the job was enqueued): false when it is gone.
 */
bool
bulkops_catalog_target_now(const char *target, HeapTuple *row, TupleDesc *desc)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(target)};

	bulkops_exec("SELECT dialect, url, resource, auth, auth_set_by "
				 "FROM bulkops.targets WHERE name = $1",
				 1, types, values, NULL, true, SPI_OK_SELECT);
	*desc = SPI_tuptable->tupdesc;
	if (SPI_processed == 0)
		return false;
	*row = SPI_tuptable->vals[0];
	return true;
}

/*
 * A batch of job was taken (its row is ours): the job is running from its
 * first one on, and goes to the back of its target's queue (last_claim_at;
 * clock_timestamp(), not now(), so that the jobs served by one claim line up
 * in the order they were served).
 */
void
bulkops_catalog_job_served(int64 job_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};

	bulkops_exec("UPDATE bulkops.jobs SET state = 'running', "
				 "started_at = coalesce(started_at, now()), "
				 "last_claim_at = clock_timestamp() "
				 "WHERE id = $1 AND state IN ('queued', 'running')",
				 1, types, values, NULL, false, SPI_OK_UPDATE);
}

/*
 * A batch's receipts as the tables hold them now: its row_count and the
 * BULKOPS_RECEIPT_COLUMNS, in *row and *desc (false if it is gone).
 */
bool
bulkops_catalog_batch_receipts(int64 job_id, int32 batch_no, int64 generation,
							   HeapTuple *row, TupleDesc *desc)
{
	Oid			types[3] = {INT8OID, INT4OID, INT8OID};
	Datum		values[3] = {Int64GetDatum(job_id), Int32GetDatum(batch_no),
	Int64GetDatum(generation)};

	bulkops_exec("SELECT row_count, " BULKOPS_RECEIPT_COLUMNS
				 " FROM bulkops.batches"
				 " WHERE job_id = $1 AND batch_no = $2 AND generation = $3",
				 3, types, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	*row = SPI_tuptable->vals[0];
	*desc = SPI_tuptable->tupdesc;
	return true;
}

/*
 * The batches left active by lane's previous worker; the first lane also
 * takes those of lanes that no longer exist (lane >= lanes) and those
 * taken before lanes were recorded.
 */
BulkopsActiveBatch *
bulkops_catalog_active_batches(int lane, int lanes, int *n)
{
	Oid			types[3] = {INT4OID, INT4OID, INT8ARRAYOID};
	Datum		values[3] = {Int32GetDatum(lane), Int32GetDatum(lanes),
	active_generations()};
	BulkopsActiveBatch *a;
	uint64		i;

	bulkops_exec("SELECT b.job_id, b.batch_no, j.dialect, b.operation, b.step, "
				 "b.maybe_applied, b.generation "
				 "FROM bulkops.batches b JOIN bulkops.jobs j ON j.id = b.job_id "
				 "WHERE b.generation = ANY ($3) AND b.state <> 'done' AND b.state = 'active' "
				 "AND (b.lane = $1 OR ($1 = 0 AND (b.lane IS NULL OR b.lane >= $2))) "
				 "ORDER BY 1, 2",
				 3, types, values, NULL, true, SPI_OK_SELECT);
	*n = (int) SPI_processed;
	a = palloc(sizeof(BulkopsActiveBatch) * Max(*n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;

		a[i].job_id = DatumGetInt64(getbin(i, 1, &isnull));
		a[i].batch_no = DatumGetInt32(getbin(i, 2, &isnull));
		a[i].dialect = SPI_getvalue(t, td, 3);
		a[i].op = bulkops_op_from_name(SPI_getvalue(t, td, 4));
		a[i].step = DatumGetInt32(getbin(i, 5, &isnull));
		a[i].maybe_applied = DatumGetBool(getbin(i, 6, &isnull));
		a[i].generation = DatumGetInt64(getbin(i, 7, &isnull));
	}
	return a;
}

/* Put an active batch back in the queue, to be claimed again at once. */
void
bulkops_catalog_requeue_batch(int64 job_id, int32 batch_no, int64 generation)
{
	Oid			types[3] = {INT8OID, INT4OID, INT8OID};
	Datum		values[3] = {Int64GetDatum(job_id), Int32GetDatum(batch_no),
	Int64GetDatum(generation)};

	bulkops_exec("UPDATE bulkops.batches SET state = 'queued', next_attempt_at = now() "
				 "WHERE job_id = $1 AND batch_no = $2 AND generation = $3",
				 3, types, values, NULL, false, SPI_OK_UPDATE);
}

/*
 * Unfinished jobs whose deadline (option "deadline": seconds from the
 * job's creation) has passed.
 */
int64 *
bulkops_catalog_expired_jobs(int *n)
{
	int64	   *ids;
	uint64		i;

	bulkops_exec("SELECT id FROM bulkops.jobs "
				 "WHERE state IN ('queued', 'running') AND NOT cancel_requested "
				 "AND options ? 'deadline' AND created_at + "
				 "(options->>'deadline')::float8 * interval '1 second' <= now()",
				 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	*n = (int) SPI_processed;
	ids = palloc(sizeof(int64) * Max(*n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt64(getbin(i, 1, &isnull));
	}
	return ids;
}

/* Unfinished jobs that were cancelled or timed out. */
BulkopsStoppedJob *
bulkops_catalog_cancelled_jobs(int *n)
{
	BulkopsStoppedJob *jobs;
	uint64		i;

	bulkops_exec("SELECT id, timed_out FROM bulkops.jobs WHERE cancel_requested "
				 "AND state IN ('queued', 'running')",
				 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	*n = (int) SPI_processed;
	jobs = palloc(sizeof(BulkopsStoppedJob) * Max(*n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		jobs[i].job_id = DatumGetInt64(getbin(i, 1, &isnull));
		jobs[i].timed_out = DatumGetBool(getbin(i, 2, &isnull));
	}
	return jobs;
}

/* ---- the worker: storing what an answer meant ---- */

/*
 * Say, durably, that a batch's rows may be applied from now on, as its
 * submit is about to leave (see worker.c).
 */
void
bulkops_catalog_mark_maybe_applied(int64 job_id, int32 batch_no,
								   int64 generation)
{
	Oid			types[3] = {INT8OID, INT4OID, INT8OID};
	Datum		values[3] = {Int64GetDatum(job_id), Int32GetDatum(batch_no),
	Int64GetDatum(generation)};

	bulkops_exec("UPDATE bulkops.batches SET maybe_applied = true "
				 "WHERE job_id = $1 AND batch_no = $2 AND generation = $3",
				 3, types, values, NULL, false, SPI_OK_UPDATE);
}

/*
 * Add counts (by status: succeeded, failed, cancelled, unknown) to a job,
 * to its recent rate, and to its failed rows' error codes (error_codes: a
 * JSON object of counts, or NULL); and to its target's counters since
 * install (bulkops.row_counts: one row per transaction, which the worker
 * folds; an insert waits for no other writer).
 */
void
bulkops_catalog_count_outcomes(int64 job_id, const int64 *counts,
							   const char *error_codes)
{
	Oid			types[6] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = "     ";

	values[0] = Int64GetDatum(job_id);
	values[1] = Int64GetDatum(counts[BULKOPS_ROW_SUCCEEDED]);
	values[2] = Int64GetDatum(counts[BULKOPS_ROW_FAILED]);
	values[3] = Int64GetDatum(counts[BULKOPS_ROW_CANCELLED]);
	values[4] = Int64GetDatum(counts[BULKOPS_ROW_UNKNOWN]);
	values[5] = text_or_null(error_codes, &nulls[5]);
	SPI_connect();
	run("WITH j AS ("
		" UPDATE bulkops.jobs SET rows_succeeded = rows_succeeded + $2,"
		" rows_failed = rows_failed + $3, rows_cancelled = rows_cancelled + $4,"
		" rows_unknown = rows_unknown + $5,"
		" recent_rows = bulkops._decayed(recent_rows, recent_at, now()) + $2 + $3 + $4 + $5,"
		" recent_at = now(),"
		" error_counts = CASE WHEN $6 IS NULL THEN error_counts"
		"  ELSE bulkops._add_counts(error_counts, $6::jsonb) END"
		" WHERE id = $1 RETURNING target, created_by) "
		"INSERT INTO bulkops.row_counts"
		" (target, created_by, succeeded, failed, cancelled, unknown)"
		" SELECT target, created_by, $2, $3, $4, $5 FROM j",
		6, types, values, nulls, SPI_OK_INSERT);
	SPI_finish();
}

/* Keep the remote side's counters for a batch (JSON), for job_progress. */
void
bulkops_catalog_save_progress(int64 job_id, int32 batch_no, int64 generation,
							  const char *progress)
{
	Oid			types[4] = {INT8OID, INT4OID, INT8OID, TEXTOID};
	Datum		values[4] = {Int64GetDatum(job_id), Int32GetDatum(batch_no),
	Int64GetDatum(generation), CStringGetTextDatum(progress)};

	bulkops_exec("UPDATE bulkops.batches SET progress = $4::jsonb "
				 "WHERE job_id = $1 AND batch_no = $2 AND generation = $3",
				 4, types, values, NULL, false, SPI_OK_UPDATE);
}

/* Room for a batch's key (3) and the columns an UPDATE of it sets. */
#define MAX_BATCH_PARAMS (16 + BULKOPS_RECEIPT_NCOLUMNS)

/*
 * An UPDATE of one batch, built up: "UPDATE bulkops.batches SET ..." with
 * its parameters, of which $1, $2 and $3 are the batch's job, number and
 * generation.
 */
typedef struct BatchUpdate
{
	StringInfoData sql;
	int			n;
	Oid			types[MAX_BATCH_PARAMS];
	Datum		values[MAX_BATCH_PARAMS];
	char		nulls[MAX_BATCH_PARAMS];
} BatchUpdate;

static void
update_start(BatchUpdate *u, int64 job_id, int32 batch_no, int64 generation,
			 const char *set)
{
	initStringInfo(&u->sql);
	appendStringInfo(&u->sql, "UPDATE bulkops.batches SET %s", set);
	u->types[0] = INT8OID;
	u->values[0] = Int64GetDatum(job_id);
	u->types[1] = INT4OID;
	u->values[1] = Int32GetDatum(batch_no);
	u->types[2] = INT8OID;
	u->values[2] = Int64GetDatum(generation);
	memset(u->nulls, ' ', sizeof(u->nulls));
	u->n = 3;
}

/* ", column = $k" with value (NULL when isnull), of type type. */
static void
update_set(BatchUpdate *u, const char *column, Oid type, Datum value,
		   bool isnull)
{
	if (u->n >= MAX_BATCH_PARAMS)
		elog(ERROR, "bulkops: too many columns in an update of a batch");
	u->types[u->n] = type;
	u->values[u->n] = value;
	u->nulls[u->n] = isnull ? 'n' : ' ';
	u->n++;
	appendStringInfo(&u->sql, ", %s = $%d", column, u->n);
}

/* The batch's receipts, all of them, as set says they are now. */
static void
update_set_receipts(BatchUpdate *u, const BulkopsReceiptSet *set)
{
	Datum		values[BULKOPS_RECEIPT_NCOLUMNS];
	bool		nulls[BULKOPS_RECEIPT_NCOLUMNS];
	int			i;

	bulkops_receipts_datums(set, values, nulls);
	for (i = 0; i < BULKOPS_RECEIPT_NCOLUMNS; i++)
		update_set(u, bulkops_receipt_columns[i], bulkops_receipt_types[i],
				   values[i], nulls[i]);
}

static void
update_run(BatchUpdate *u)
{
	appendStringInfoString(&u->sql,
						   " WHERE job_id = $1 AND batch_no = $2 AND generation = $3");
	bulkops_exec_built(u->sql.data, u->n, u->types, u->values, u->nulls,
					   false, SPI_OK_UPDATE);
	if (SPI_processed != 1)
		elog(ERROR, "bulkops: batch %d of job " INT64_FORMAT " is not in generation " INT64_FORMAT,
			 DatumGetInt32(u->values[1]), DatumGetInt64(u->values[0]),
			 DatumGetInt64(u->values[2]));
}

/*
 * Persist where a batch stands before the worker acts on it: its step and
 * remote id, attempts, the step's note, whether its pending rows may have
 * been applied (only what earlier attempts left open stays open), and
 * its receipts if they changed (receipts, or NULL), all in one new version
 * of its row.
 */
void
bulkops_catalog_save_step(int64 job_id, int32 batch_no, int64 generation,
						  int step, const char *remote_id, int attempts,
						  const char *error, const char *step_data,
						  bool maybe_applied,
						  const BulkopsReceiptSet *receipts)
{
	BatchUpdate u;
	char		null;
	Datum		d;

	update_start(&u, job_id, batch_no, generation, "updated_at = now()");
	update_set(&u, "step", INT4OID, Int32GetDatum(step), false);
	update_set(&u, "remote_id", TEXTOID,
			   remote_id ? CStringGetTextDatum(remote_id) : (Datum) 0,
			   remote_id == NULL);
	update_set(&u, "attempts", INT4OID, Int32GetDatum(attempts), false);
	d = text_or_null(error, &null);
	if (null != 'n')
		update_set(&u, "last_error", TEXTOID, d, false);
	update_set(&u, "step_data", TEXTOID,
			   step_data ? CStringGetTextDatum(step_data) : (Datum) 0,
			   step_data == NULL);
	update_set(&u, "maybe_applied", BOOLOID, BoolGetDatum(maybe_applied), false);
	if (receipts)
		update_set_receipts(&u, receipts);
	update_run(&u);
	if (receipts)
		bulkops_crash_point("receipts");
}

/*
 * Mark a batch done, with its last receipts (receipts, or NULL if they did
 * not change), and count it on its job.  A done batch makes no request
 * again: its step's note (a link) goes, and so do its rows' wire form
 * (body, offsets) once every row succeeded.  Rows that did not are kept as
 * they were sent, for bulkops.retry(); an export's batch keeps its body,
 * the remote query.
 */
void
bulkops_catalog_close_batch(int64 job_id, int32 batch_no, int64 generation,
							const char *last_error, int http_status,
							const BulkopsReceiptSet *receipts,
							bool all_succeeded)
{
	Oid			types[3] = {INT8OID, TEXTOID, INT4OID};
	Datum		values[3];
	char		nulls[3] = "   ";
	BatchUpdate u;

	values[0] = Int64GetDatum(job_id);
	values[1] = text_or_null(last_error, &nulls[1]);
	values[2] = Int32GetDatum(http_status);
	nulls[2] = http_status > 0 ? ' ' : 'n';

	update_start(&u, job_id, batch_no, generation,
				 "state = 'done', updated_at = now(), step_data = NULL");
	if (all_succeeded)
	{
		update_set(&u, "offsets", INT4ARRAYOID, (Datum) 0, true);
		update_set(&u, "body", BYTEAOID, (Datum) 0, true);
	}
	update_set(&u, "last_error", TEXTOID, values[1], nulls[1] == 'n');
	if (http_status > 0)
		update_set(&u, "http_status", INT4OID, values[2], false);
	if (receipts)
		update_set_receipts(&u, receipts);

	SPI_connect();
	update_run(&u);
	if (receipts)
		bulkops_crash_point("receipts");
	run("UPDATE bulkops.jobs SET batches_done = batches_done + 1, "
		"last_error = coalesce($2, last_error) WHERE id = $1",
		2, types, values, nulls, SPI_OK_UPDATE);
	SPI_finish();
}

/*
 * Delete up to limit jobs that finished more than retention_s ago, with
 * their batches, skipping any another transaction holds and those a sync
 * has not stored in its state yet; returns how many.
 * A batch row holds all its rows' receipts, so this deletes a few rows per
 * job, not one per row; the space a whole generation took goes back at
 * once when its partition is truncated (bulkops_catalog_empty_generation).
 */
int
bulkops_catalog_purge_expired(int retention_s, int limit)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(retention_s), Int32GetDatum(limit)};
	bool		isnull;

	bulkops_exec("WITH j AS ("
				 " SELECT id, generation FROM bulkops.jobs j"
				 " WHERE finished_at < now() - make_interval(secs => $1)"
				 " AND state NOT IN ('queued', 'running')"
				 " AND NOT " BULKOPS_SQL_UNFOLDED
				 " ORDER BY finished_at LIMIT $2 FOR UPDATE OF j SKIP LOCKED),"
				 "b AS (DELETE FROM bulkops.batches b USING j"
				 " WHERE b.job_id = j.id AND b.generation = j.generation),"
				 "d AS (DELETE FROM bulkops.jobs WHERE id IN (SELECT id FROM j) RETURNING 1)"
				 "SELECT count(*)::int4 FROM d",
				 2, types, values, NULL, false, SPI_OK_SELECT);
	return DatumGetInt32(getbin(0, 1, &isnull));
}

/* ---- jobs: both sides ---- */

/*
 * Give a job whose batches are all done its final state, and tell
 * listeners on channel bulkops_jobs; true if it ended now.  Any role may
 * listen on any channel, so the payload is the job's id and nothing else:
 * ids are sequential and say nothing, and what a listener may learn of the
 * job (its state, its target, its creator) it reads from bulkops.jobs,
 * where row-level security applies.
 */
bool
bulkops_catalog_finish_job(int64 job_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};
	bool		ended;

	SPI_connect();
	run("WITH done AS ("
		" UPDATE bulkops.jobs SET finished_at = now(), state = CASE"
		"  WHEN timed_out THEN 'timed_out'"
		"  WHEN cancel_requested THEN 'cancelled'"
	/* a query job has no rows to fail: its one batch failed or not */
		"  WHEN operation = 'query' AND last_error IS NOT NULL"
		"   THEN CASE WHEN rows_succeeded > 0 THEN 'partial' ELSE 'failed' END"
		"  WHEN rows_succeeded = rows_total THEN 'succeeded'"
		"  WHEN rows_succeeded = 0 THEN 'failed'"
		"  ELSE 'partial' END"
		" WHERE id = $1 AND batches_done >= batches_total"
		" AND state IN ('queued', 'running')"
		" RETURNING *)"
		"SELECT pg_notify('bulkops_jobs', id::text), "
		BULKOPS_JOB_SUMMARY_COLUMNS " FROM done",
		1, types, values, NULL, SPI_OK_SELECT);
	ended = (SPI_processed > 0);
	if (ended)
	{
		BulkopsJobSummary summary;

		/* a line in the server log, if this commits */
		bulkops_job_summary_read(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								 2, &summary);
		bulkops_joblog_ended(&summary);
		bulkops_crash_point("finish_job");
	}
	SPI_finish();
	return ended;
}

/* A queued batch a cancel settles, with its receipts so far. */
typedef struct QueuedBatch
{
	int32		batch_no;
	int			attempts;
	bool		maybe_applied;
	BulkopsReceiptSet *receipts;
} QueuedBatch;

/*
 * Mark job cancelled (or timed out) and settle its batches that were never
 * sent: their rows that have no receipt yet become cancelled, or unknown
 * where an earlier submit may have been applied.  Batches already in a
 * worker's hands are its to settle, since a remote task may be applying
 * them.  Returns false, changing nothing, when the job has already ended
 * (perhaps while the caller was looking at it).
 *
 * The job's row is locked first, then its queued batches by number: the
 * order every writer of a job's batches keeps (see the top of this file).
 */
bool
bulkops_catalog_cancel_queued(int64 job_id, bool timed_out)
{
	Oid			jtypes[1] = {INT8OID};
	Datum		jvalues[1] = {Int64GetDatum(job_id)};
	Oid			types[5] = {INT8OID, INT8OID, INT8OID, BOOLOID, INT8OID};
	Datum		values[5];
	int64		counts[4] = {0};
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	QueuedBatch *queued;
	int64		generation;
	int			nqueued;
	bool		isnull;
	bool		stopped;
	int			i;

	(void) bulkops_catalog_lock_job(job_id, false);
	SPI_connect();
	run("SELECT generation FROM bulkops.jobs WHERE id = $1",
		1, jtypes, jvalues, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
	{
		SPI_finish();
		return false;
	}
	generation = DatumGetInt64(getbin(0, 1, &isnull));
	{
		Oid			btypes[2] = {INT8OID, INT8OID};
		Datum		bvalues[2] = {Int64GetDatum(job_id), Int64GetDatum(generation)};

		run("SELECT batch_no, attempts, maybe_applied, row_count, "
			BULKOPS_RECEIPT_COLUMNS " FROM bulkops.batches"
			" WHERE job_id = $1 AND generation = $2 AND state = 'queued' AND step = 0"
			" ORDER BY batch_no FOR UPDATE",
			2, btypes, bvalues, NULL, SPI_OK_SELECT);
	}
	nqueued = (int) SPI_processed;
	queued = palloc(sizeof(QueuedBatch) * Max(nqueued, 1));
	for (i = 0; i < nqueued; i++)
	{
		queued[i].batch_no = DatumGetInt32(getbin(i, 1, &isnull));
		queued[i].attempts = DatumGetInt32(getbin(i, 2, &isnull));
		queued[i].maybe_applied = DatumGetBool(getbin(i, 3, &isnull));
		queued[i].receipts =
			bulkops_receipts_from_row(DatumGetInt32(getbin(i, 4, &isnull)),
									  SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
	}
	for (i = 0; i < nqueued; i++)
	{
		QueuedBatch *q = &queued[i];
		BatchUpdate u;
		const char *why;

		if (q->maybe_applied)
			why = timed_out
				? "the job's deadline passed before this row was sent again; an earlier attempt may have been applied"
				: "the job was cancelled before this row was sent again; an earlier attempt may have been applied";
		else
			why = timed_out ? "the job's deadline passed before this row was sent"
				: "cancelled by bulkops.cancel()";
		bulkops_receipts_settle_all(q->receipts,
									q->maybe_applied ? BULKOPS_ROW_UNKNOWN
									: BULKOPS_ROW_CANCELLED,
									why, q->attempts, now, counts);
		/* its rows are kept as they are, for bulkops.retry() */
		update_start(&u, job_id, q->batch_no, generation,
					 "state = 'done', updated_at = now()");
		update_set(&u, "last_error", TEXTOID,
				   CStringGetTextDatum(psprintf("%s%s",
												timed_out
												? "the job's deadline passed before it was sent"
												: "cancelled before it was sent",
												q->maybe_applied ? " again" : "")),
				   false);
		update_set_receipts(&u, q->receipts);
		update_run(&u);
	}
	values[0] = Int64GetDatum(job_id);
	values[1] = Int64GetDatum(counts[BULKOPS_ROW_CANCELLED]);
	values[2] = Int64GetDatum(nqueued);
	values[3] = BoolGetDatum(timed_out);
	values[4] = Int64GetDatum(counts[BULKOPS_ROW_UNKNOWN]);

	/*
	 * A job that ended meanwhile had no queued batch left to settle above; it
	 * must not look cancelled afterwards.
	 */
	run("WITH j AS ("
		" UPDATE bulkops.jobs SET cancel_requested = true, timed_out = timed_out OR $4,"
		" rows_cancelled = rows_cancelled + $2, rows_unknown = rows_unknown + $5,"
		" batches_done = batches_done + $3,"
		" last_error = CASE WHEN $4 THEN 'the job''s deadline passed' ELSE last_error END"
		" WHERE id = $1 AND state IN ('queued', 'running')"
		" RETURNING target, created_by, 0::bigint AS s, 0::bigint AS f, $2 AS c, $5 AS u),"
		"counted AS ("
		" INSERT INTO bulkops.row_counts (target, created_by, succeeded, failed, cancelled, unknown)"
		" SELECT target, created_by, s, f, c, u FROM j WHERE c + u > 0) "
		"SELECT 1 FROM j",
		5, types, values, NULL, SPI_OK_SELECT);
	stopped = (SPI_processed == 1);
	SPI_finish();
	return stopped;
}
