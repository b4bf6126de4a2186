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

static const char *const status_names[] = {
	"succeeded", "failed", "cancelled", "unknown"
};

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
 * Runnable batches: a few per target, so that one target's long queue
 * cannot hide another target's work, in job order.  "state <> 'done'" is
 * implied by "state = 'queued'" but spelled out so that the partial index
 * of runnable batches serves it: this runs each time a batch ends, and the
 * table keeps every batch ever sent.
 */
BulkopsCandidate *
bulkops_catalog_claim_candidates(int *n)
{
	BulkopsCandidate *c;
	uint64		i;

	bulkops_exec("SELECT job_id, batch_no, target, concurrency FROM ("
				 " SELECT b.job_id, b.batch_no, j.target,"
				 "  coalesce((j.options->>'concurrency')::int, 0) AS concurrency,"
				 "  row_number() OVER (PARTITION BY j.target"
				 "                     ORDER BY b.job_id, b.batch_no) AS n"
				 " FROM bulkops.batches b JOIN bulkops.jobs j ON j.id = b.job_id"
				 " WHERE b.state <> 'done' AND b.state = 'queued'"
				 "  AND b.next_attempt_at <= now()) c "
				 "WHERE n <= 64 ORDER BY job_id, batch_no",
				 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	*n = (int) SPI_processed;
	c = palloc(sizeof(BulkopsCandidate) * Max(*n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		c[i].job_id = DatumGetInt64(getbin(i, 1, &isnull));
		c[i].batch_no = DatumGetInt32(getbin(i, 2, &isnull));
		c[i].target = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
		c[i].concurrency = DatumGetInt32(getbin(i, 4, &isnull));
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
	"b.first_row, b.row_count, b.step, b.remote_id, b.attempts, b.keys, " \
	"b.offsets, b.body, b.step_data, b.progress, b.maybe_applied, " \
	"j.operation, j.options, j.cancel_requested, j.timed_out, j.target, " \
	"j.prologue, j.key_column, j.created_by, j.destination, " \
	"j.destination_schema, j.destination_table"

/*
 * Take batch (job_id, batch_no) for this worker's lane: mark a queued one
 * active, counting a submit attempt at step 0 (or, with resume, re-own an
 * active one), and return its row with its job's in *row and *desc.  A
 * queued batch another transaction holds (a cancel) is not waited for:
 * false, as for a batch that is no longer queued.
 */
bool
bulkops_catalog_take_batch(int64 job_id, int32 batch_no, int lane,
						   bool resume, HeapTuple *row, TupleDesc *desc)
{
	Oid			types[3] = {INT8OID, INT4OID, INT2OID};
	Datum		values[3] = {Int64GetDatum(job_id), Int32GetDatum(batch_no),
	Int16GetDatum(lane)};

	bulkops_exec(resume
				 ? "UPDATE bulkops.batches b SET updated_at = now(), lane = $3 "
				 "FROM bulkops.jobs j WHERE b.job_id = $1 AND b.batch_no = $2 "
				 "AND j.id = b.job_id AND b.state = 'active' "
				 "RETURNING " CLAIMED_COLUMNS
				 : "UPDATE bulkops.batches b SET state = 'active', updated_at = now(), lane = $3, "
				 "attempts = b.attempts + (b.step = 0)::int "
				 "FROM bulkops.jobs j WHERE b.job_id = $1 AND b.batch_no = $2 "
				 "AND j.id = b.job_id AND b.state = 'queued' "
				 "AND (b.job_id, b.batch_no) = (SELECT job_id, batch_no "
				 " FROM bulkops.batches WHERE job_id = $1 AND batch_no = $2 "
				 " AND state = 'queued' FOR UPDATE SKIP LOCKED) "
				 "RETURNING " CLAIMED_COLUMNS,
				 3, types, values, NULL, false, SPI_OK_UPDATE_RETURNING);
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

/* A job starts running when its first batch is taken (its row is ours). */
void
bulkops_catalog_job_running(int64 job_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};

	bulkops_exec("UPDATE bulkops.jobs SET state = 'running', "
				 "started_at = coalesce(started_at, now()) "
				 "WHERE id = $1 AND state = 'queued'",
				 1, types, values, NULL, false, SPI_OK_UPDATE);
}

/* The rows of a batch that already have a receipt, as job row numbers. */
int64 *
bulkops_catalog_settled_rows(int64 job_id, int64 first_row, int nrows,
							 uint64 *n)
{
	Oid			types[3] = {INT8OID, INT8OID, INT8OID};
	Datum		values[3] = {Int64GetDatum(job_id), Int64GetDatum(first_row),
	Int64GetDatum(first_row + nrows - 1)};
	int64	   *rows;
	uint64		i;

	bulkops_exec("SELECT row_no FROM bulkops.receipts "
				 "WHERE job_id = $1 AND row_no BETWEEN $2 AND $3",
				 3, types, values, NULL, true, SPI_OK_SELECT);
	*n = SPI_processed;
	rows = palloc(sizeof(int64) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		rows[i] = DatumGetInt64(getbin(i, 1, &isnull));
	}
	return rows;
}

/*
 * The batches left active by lane's previous worker; the first lane also
 * takes those of lanes that no longer exist (lane >= lanes) and those
 * taken before lanes were recorded.
 */
BulkopsActiveBatch *
bulkops_catalog_active_batches(int lane, int lanes, int *n)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(lane), Int32GetDatum(lanes)};
	BulkopsActiveBatch *a;
	uint64		i;

	bulkops_exec("SELECT b.job_id, b.batch_no, j.dialect, j.operation, b.step, "
				 "b.maybe_applied "
				 "FROM bulkops.batches b JOIN bulkops.jobs j ON j.id = b.job_id "
				 "WHERE b.state <> 'done' AND b.state = 'active' "
				 "AND (b.lane = $1 OR ($1 = 0 AND (b.lane IS NULL OR b.lane >= $2))) "
				 "ORDER BY 1, 2",
				 2, types, values, NULL, true, SPI_OK_SELECT);
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
	}
	return a;
}

/* Put an active batch back in the queue, to be claimed again at once. */
void
bulkops_catalog_requeue_batch(int64 job_id, int32 batch_no)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(job_id), Int32GetDatum(batch_no)};

	bulkops_exec("UPDATE bulkops.batches SET state = 'queued', next_attempt_at = now() "
				 "WHERE job_id = $1 AND batch_no = $2",
				 2, types, values, NULL, false, SPI_OK_UPDATE);
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
bulkops_catalog_mark_maybe_applied(int64 job_id, int32 batch_no)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(job_id), Int32GetDatum(batch_no)};

	bulkops_exec("UPDATE bulkops.batches SET maybe_applied = true "
				 "WHERE job_id = $1 AND batch_no = $2",
				 2, types, values, NULL, false, SPI_OK_UPDATE);
}

/* Column numbers of bulkops.receipts, looked up by name once per call. */
typedef struct ReceiptCols
{
	int			job_id,
				row_no,
				key,
				status,
				remote_id,
				created,
				http_status,
				error_code,
				error_message,
				attempts,
				updated_at;
} ReceiptCols;

#define RECEIPT_CHUNK 1000

static int
col(Relation rel, const char *name)
{
	AttrNumber	n = attnameAttNum(rel, name, false);

	if (n <= 0)
		elog(ERROR, "bulkops.receipts has no column \"%s\"", name);
	return n - 1;
}

static void
slot_text(TupleTableSlot *slot, int col, const char *s)
{
	char		null;

	slot->tts_values[col] = text_or_null(s, &null);
	slot->tts_isnull[col] = (null == 'n');
}

/* The receipt of one row, in slot. */
static void
fill_slot(TupleTableSlot *slot, const ReceiptCols *c, int64 job_id,
		  int64 first_row, char **keys, int attempts, BulkopsOutcome *o,
		  int http_status, Datum now, ResultRelInfo *rri, EState *estate)
{
	Datum	   *v = slot->tts_values;
	bool	   *n = slot->tts_isnull;
	const char *key = keys[o->row];

	ExecClearTuple(slot);
	memset(n, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	v[c->job_id] = Int64GetDatum(job_id);
	n[c->job_id] = false;
	v[c->row_no] = Int64GetDatum(first_row + o->row);
	n[c->row_no] = false;
	if (key)
	{
		v[c->key] = CStringGetTextDatum(key);
		n[c->key] = false;
	}
	v[c->status] = CStringGetTextDatum(status_names[o->status]);
	n[c->status] = false;
	slot_text(slot, c->remote_id, o->remote_id);
	if (o->created >= 0)
	{
		v[c->created] = BoolGetDatum(o->created == 1);
		n[c->created] = false;
	}
	if (http_status > 0)
	{
		v[c->http_status] = Int32GetDatum(http_status);
		n[c->http_status] = false;
	}
	slot_text(slot, c->error_code, o->error_code);
	slot_text(slot, c->error_message, o->error_message);
	v[c->attempts] = Int32GetDatum(attempts);
	n[c->attempts] = false;
	v[c->updated_at] = now;
	n[c->updated_at] = false;
	ExecStoreVirtualTuple(slot);
	if (RelationGetDescr(rri->ri_RelationDesc)->constr)
		ExecConstraints(rri, slot, estate);
}

/*
 * Insert the receipts of n outcomes of a batch (row o->row is job row
 * first_row + o->row, its key keys[o->row]) the way COPY does:
 * heap_multi_insert through a bulk insert ring, then the index entries.
 * Compared with INSERT ... unnest() over SPI this skips parsing, planning
 * and array (de)construction, writes one WAL record per heap page instead
 * of one per row, and keeps the worker from dragging a million heap pages
 * through its own share of shared_buffers.  The table's only constraint is
 * a CHECK on status, which our fixed vocabulary satisfies; it is still
 * checked, so a hand-edited table cannot be corrupted silently.  The
 * primary key (job_id, row_no) refuses a second receipt for a row.
 */
void
bulkops_catalog_insert_receipts(int64 job_id, int64 first_row, char **keys,
								int attempts, BulkopsOutcome **outcomes,
								int n, int http_status)
{
	Relation	rel;
	ResultRelInfo *rri;
	EState	   *estate;
	BulkInsertState bistate;
	TupleTableSlot **slots;
	TupleDesc	desc;
	ReceiptCols c;
	CommandId	cid = GetCurrentCommandId(true);
	Datum		now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	Oid			relid;
	int			nslots;
	int			done;
	int			i;

	if (n == 0)
		return;
	relid = get_relname_relid("receipts", get_namespace_oid("bulkops", false));
	rel = table_open(relid, RowExclusiveLock);
	c.job_id = col(rel, "job_id");
	c.row_no = col(rel, "row_no");
	c.key = col(rel, "key");
	c.status = col(rel, "status");
	c.remote_id = col(rel, "remote_id");
	c.created = col(rel, "created");
	c.http_status = col(rel, "http_status");
	c.error_code = col(rel, "error_code");
	c.error_message = col(rel, "error_message");
	c.attempts = col(rel, "attempts");
	c.updated_at = col(rel, "updated_at");

	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	bistate = GetBulkInsertState();

	/*
	 * As COPY does, a bounded set of slots reused chunk after chunk.  They
	 * share a private copy of the descriptor: over the relation's own, each
	 * slot would pin it in the resource owner, and pinning a thousand cost
	 * more than filling them.
	 */
	nslots = Min(n, RECEIPT_CHUNK);
	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	slots = palloc(sizeof(TupleTableSlot *) * nslots);
	for (i = 0; i < nslots; i++)
		slots[i] = MakeSingleTupleTableSlot(desc, table_slot_callbacks(rel));

	for (done = 0; done < n; done += nslots)
	{
		int			chunk = Min(nslots, n - done);

		for (i = 0; i < chunk; i++)
			fill_slot(slots[i], &c, job_id, first_row, keys, attempts,
					  outcomes[done + i], http_status, now, rri, estate);
		table_multi_insert(rel, slots, chunk, cid, 0, bistate);
		for (i = 0; i < chunk; i++)
		{
			List	   *recheck = ExecInsertIndexTuples(rri, slots[i], estate,
														false, false, NULL, NIL);

			list_free(recheck);
			ResetPerTupleExprContext(estate);
		}
		bulkops_crash_point("receipts");
	}
	for (i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	FreeTupleDesc(desc);

	FreeBulkInsertState(bistate);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	CommandCounterIncrement();
}

/* Add counts (by status: succeeded, failed, cancelled, unknown) to a job. */
void
bulkops_catalog_count_outcomes(int64 job_id, const int64 *counts)
{
	Oid			types[5] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		values[5];

	values[0] = Int64GetDatum(job_id);
	values[1] = Int64GetDatum(counts[BULKOPS_ROW_SUCCEEDED]);
	values[2] = Int64GetDatum(counts[BULKOPS_ROW_FAILED]);
	values[3] = Int64GetDatum(counts[BULKOPS_ROW_CANCELLED]);
	values[4] = Int64GetDatum(counts[BULKOPS_ROW_UNKNOWN]);
	SPI_connect();
	run("UPDATE bulkops.jobs SET rows_succeeded = rows_succeeded + $2, "
		"rows_failed = rows_failed + $3, rows_cancelled = rows_cancelled + $4, "
		"rows_unknown = rows_unknown + $5 WHERE id = $1",
		5, types, values, NULL, SPI_OK_UPDATE);
	SPI_finish();
}

/* Keep the remote side's counters for a batch (JSON), for job_progress. */
void
bulkops_catalog_save_progress(int64 job_id, int32 batch_no, const char *progress)
{
	Oid			types[3] = {INT8OID, INT4OID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(job_id), Int32GetDatum(batch_no),
	CStringGetTextDatum(progress)};

	bulkops_exec("UPDATE bulkops.batches SET progress = $3::jsonb "
				 "WHERE job_id = $1 AND batch_no = $2",
				 3, types, values, NULL, false, SPI_OK_UPDATE);
}

/*
 * Persist where a batch stands before the worker acts on it: its step and
 * remote id, attempts, the step's note, and whether its pending rows may
 * have been applied (only what earlier attempts left open stays open).
 */
void
bulkops_catalog_save_step(int64 job_id, int32 batch_no, int step,
						  const char *remote_id, int attempts,
						  const char *error, const char *step_data,
						  bool maybe_applied)
{
	Oid			types[8] = {INT8OID, INT4OID, INT4OID, TEXTOID, INT4OID, TEXTOID,
	TEXTOID, BOOLOID};
	Datum		values[8];
	char		nulls[8] = "        ";

	values[0] = Int64GetDatum(job_id);
	values[1] = Int32GetDatum(batch_no);
	values[2] = Int32GetDatum(step);
	values[3] = remote_id ? CStringGetTextDatum(remote_id) : (Datum) 0;
	nulls[3] = remote_id ? ' ' : 'n';
	values[4] = Int32GetDatum(attempts);
	values[5] = text_or_null(error, &nulls[5]);
	values[6] = step_data ? CStringGetTextDatum(step_data) : (Datum) 0;
	nulls[6] = step_data ? ' ' : 'n';
	values[7] = BoolGetDatum(maybe_applied);
	bulkops_exec("UPDATE bulkops.batches SET step = $3, remote_id = $4, "
				 "attempts = $5, last_error = coalesce($6, last_error), "
				 "step_data = $7, maybe_applied = $8, "
				 "updated_at = now() WHERE job_id = $1 AND batch_no = $2",
				 8, types, values, nulls, false, SPI_OK_UPDATE);
}

/* Mark a batch done and count it on its job. */
void
bulkops_catalog_close_batch(int64 job_id, int32 batch_no,
							const char *last_error, int http_status)
{
	Oid			types[4] = {INT8OID, INT4OID, TEXTOID, INT4OID};
	Datum		values[4];
	char		nulls[4] = "    ";

	values[0] = Int64GetDatum(job_id);
	values[1] = Int32GetDatum(batch_no);
	values[2] = text_or_null(last_error, &nulls[2]);
	values[3] = Int32GetDatum(http_status);
	nulls[3] = http_status > 0 ? ' ' : 'n';

	SPI_connect();
	/* a done batch makes no next request: its step note (a link) goes */
	run("UPDATE bulkops.batches SET state = 'done', last_error = $3, "
		"http_status = coalesce($4, http_status), step_data = NULL, "
		"updated_at = now() WHERE job_id = $1 AND batch_no = $2",
		4, types, values, nulls, SPI_OK_UPDATE);
	run("UPDATE bulkops.jobs SET batches_done = batches_done + 1, "
		"last_error = coalesce($3, last_error) WHERE id = $1 AND $2 IS NOT NULL",
		3, types, values, nulls, SPI_OK_UPDATE);
	SPI_finish();
}

/*
 * Delete up to limit jobs that finished more than retention_s ago, with
 * their batches and receipts, skipping any another transaction holds;
 * returns how many.
 */
int
bulkops_catalog_purge_expired(int retention_s, int limit)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(retention_s), Int32GetDatum(limit)};
	bool		isnull;

	bulkops_exec("WITH j AS ("
				 " SELECT id FROM bulkops.jobs"
				 " WHERE finished_at < now() - make_interval(secs => $1)"
				 " AND state NOT IN ('queued', 'running')"
				 " ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED),"
				 "r AS (DELETE FROM bulkops.receipts WHERE job_id IN (SELECT id FROM j)),"
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
		" RETURNING id, state)"
		"SELECT pg_notify('bulkops_jobs', id::text) FROM done",
		1, types, values, NULL, SPI_OK_SELECT);
	ended = (SPI_processed > 0);
	if (ended)
		bulkops_crash_point("finish_job");
	SPI_finish();
	return ended;
}

/*
 * Mark job cancelled (or timed out) and settle its batches that were never
 * sent: their rows become cancelled, or unknown where an earlier submit
 * may have been applied.  Batches already in a worker's hands are its to
 * settle, since a remote task may be applying them.  Returns false,
 * changing nothing, when the job has already ended (perhaps while the
 * caller was looking at it).
 *
 * The job's row is locked first, then its queued batches by number: the
 * order every writer of a job's batches keeps (see the top of this file).
 */
bool
bulkops_catalog_cancel_queued(int64 job_id, bool timed_out)
{
	Oid			btypes[2] = {INT8OID, BOOLOID};
	Datum		bvalues[2] = {Int64GetDatum(job_id), BoolGetDatum(timed_out)};
	Oid			types[5] = {INT8OID, INT8OID, INT8OID, BOOLOID, INT8OID};
	Datum		values[5];
	bool		isnull;
	bool		stopped;

	(void) bulkops_catalog_lock_job(job_id, false);
	SPI_connect();
	run("SELECT 1 FROM bulkops.batches WHERE job_id = $1 AND state = 'queued' AND step = 0"
		" ORDER BY batch_no FOR UPDATE",
		1, btypes, bvalues, NULL, SPI_OK_SELECT);
	run("WITH b AS ("
		" UPDATE bulkops.batches SET state = 'done', updated_at = now(),"
		"  last_error = CASE WHEN $2 THEN 'the job''s deadline passed before it was sent'"
		"   ELSE 'cancelled before it was sent' END"
		"   || CASE WHEN maybe_applied THEN ' again' ELSE '' END"
		" WHERE job_id = $1 AND state = 'queued' AND step = 0"
		" RETURNING first_row, keys, attempts, maybe_applied),"
		"ins AS ("
		" INSERT INTO bulkops.receipts (job_id, row_no, key, status, error_message, attempts)"
		" SELECT $1, b.first_row + i - 1, b.keys[i],"
		"  CASE WHEN b.maybe_applied THEN 'unknown' ELSE 'cancelled' END,"
		"  CASE WHEN b.maybe_applied THEN"
		"    CASE WHEN $2 THEN 'the job''s deadline passed' ELSE 'the job was cancelled' END"
		"    || ' before this row was sent again; an earlier attempt may have been applied'"
		"   WHEN $2 THEN 'the job''s deadline passed before this row was sent'"
		"   ELSE 'cancelled by bulkops.cancel()' END,"
		"  b.attempts"
		" FROM b, generate_subscripts(b.keys, 1) AS i"
		" WHERE NOT EXISTS (SELECT 1 FROM bulkops.receipts r"
		"  WHERE r.job_id = $1 AND r.row_no = b.first_row + i - 1)"
		" RETURNING status)"
		"SELECT (SELECT count(*) FROM ins WHERE status = 'cancelled'), (SELECT count(*) FROM b),"
		" (SELECT count(*) FROM ins WHERE status = 'unknown')",
		2, btypes, bvalues, NULL, SPI_OK_SELECT);
	values[0] = Int64GetDatum(job_id);
	values[1] = getbin(0, 1, &isnull);
	values[2] = getbin(0, 2, &isnull);
	values[3] = BoolGetDatum(timed_out);
	values[4] = getbin(0, 3, &isnull);

	/*
	 * A job that ended meanwhile had no queued batch left to settle above; it
	 * must not look cancelled afterwards.
	 */
	run("UPDATE bulkops.jobs SET cancel_requested = true, timed_out = timed_out OR $4,"
		" rows_cancelled = rows_cancelled + $2, rows_unknown = rows_unknown + $5,"
		" batches_done = batches_done + $3,"
		" last_error = CASE WHEN $4 THEN 'the job''s deadline passed' ELSE last_error END"
		" WHERE id = $1 AND state IN ('queued', 'running')",
		5, types, values, NULL, SPI_OK_UPDATE);
	stopped = (SPI_processed == 1);
	SPI_finish();
	return stopped;
}
