/*-------------------------------------------------------------------------
 *
 * receipts.c
 *	  Writing outcomes: receipts in bulk, batch and job counters, the end of
 *	  a job.
 *
 * Every function runs inside the caller's transaction and opens its own
 * (possibly nested) SPI connection.  A batch's receipts, its state and its
 * job's counters change in one transaction, so a crash can never leave a
 * receipt without its count or a row with two receipts (the primary key
 * (job_id, row_no) would refuse the second anyway).  Receipts are inserted
 * in bulk, as COPY does: no per-row statement, no per-row UPDATE.
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
#include "mb/pg_wchar.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "bulkops.h"
#include "exec.h"
#include "receipts.h"

static const char *const status_names[] = {
	"succeeded", "failed", "cancelled", "unknown"
};

static void
exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
	 int expect)
{
	(void) bulkops_exec(sql, nargs, types, values, nulls, false, expect);
}

static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(bulkops_clean_text(s, 8192)) : (Datum) 0;
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
fill_slot(TupleTableSlot *slot, const ReceiptCols *c, Work *w,
		  BulkopsOutcome *o, int http_status, Datum now,
		  ResultRelInfo *rri, EState *estate)
{
	Datum	   *v = slot->tts_values;
	bool	   *n = slot->tts_isnull;
	const char *key = w->keys[o->row];

	ExecClearTuple(slot);
	memset(n, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	v[c->job_id] = Int64GetDatum(w->batch.job_id);
	n[c->job_id] = false;
	v[c->row_no] = Int64GetDatum(w->batch.first_row + o->row);
	n[c->row_no] = false;
	if (key)
	{
		v[c->key] = CStringGetTextDatum(key);
		n[c->key] = false;
	}
	v[c->status] = CStringGetTextDatum(status_names[o->status]);
	n[c->status] = false;
	v[c->remote_id] = text_or_null(o->remote_id, &n[c->remote_id]);
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
	v[c->error_code] = text_or_null(o->error_code, &n[c->error_code]);
	v[c->error_message] = text_or_null(o->error_message, &n[c->error_message]);
	v[c->attempts] = Int32GetDatum(w->attempts);
	n[c->attempts] = false;
	v[c->updated_at] = now;
	n[c->updated_at] = false;
	ExecStoreVirtualTuple(slot);
	if (RelationGetDescr(rri->ri_RelationDesc)->constr)
		ExecConstraints(rri, slot, estate);
}

/*
 * Insert the receipts the way COPY does: heap_multi_insert through a bulk
 * insert ring, then the index entries.  Compared with INSERT ... unnest()
 * over SPI this skips parsing, planning and array (de)construction, writes
 * one WAL record per heap page instead of one per row, and keeps the worker
 * from dragging a million heap pages through its own share of
 * shared_buffers.  The table's only constraint is a CHECK on status, which
 * our fixed vocabulary satisfies; it is still checked, so a hand-edited
 * table cannot be corrupted silently.
 */
static void
insert_receipts(Work *w, BulkopsOutcome **outs, int m,
				int http_status)
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
	nslots = Min(m, RECEIPT_CHUNK);
	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	slots = palloc(sizeof(TupleTableSlot *) * nslots);
	for (i = 0; i < nslots; i++)
		slots[i] = MakeSingleTupleTableSlot(desc, table_slot_callbacks(rel));

	for (done = 0; done < m; done += nslots)
	{
		int			chunk = Min(nslots, m - done);

		for (i = 0; i < chunk; i++)
			fill_slot(slots[i], &c, w, outs[done + i], http_status, now,
					  rri, estate);
		table_multi_insert(rel, slots, chunk, cid, 0, bistate);
		for (i = 0; i < chunk; i++)
		{
			/* the primary key refuses a second receipt for a row */
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

/*
 * Store the outcomes a dialect reported for ref's rows and count them on
 * the job.  Outcomes for rows already settled (or out of range) are
 * ignored: a row gets exactly one receipt.
 */
void
bulkops_write_outcomes(Work *w, List *outcomes, int http_status)
{
	BulkopsOutcome **outs = palloc(sizeof(BulkopsOutcome *) * Max(list_length(outcomes), 1));
	int64		counts[4] = {0};
	int			m = 0;
	ListCell   *lc;
	Oid			types[5] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		values[5];

	foreach(lc, outcomes)
	{
		BulkopsOutcome *o = lfirst(lc);

		if (o->row < 0 || o->row >= w->batch.nrows || !w->pending[o->row])
			continue;
		w->pending[o->row] = false;
		w->batch.npending--;
		counts[o->status]++;
		outs[m++] = o;
	}
	if (m == 0)
		return;

	insert_receipts(w, outs, m, http_status);

	values[0] = Int64GetDatum(w->batch.job_id);
	values[1] = Int64GetDatum(counts[BULKOPS_ROW_SUCCEEDED]);
	values[2] = Int64GetDatum(counts[BULKOPS_ROW_FAILED]);
	values[3] = Int64GetDatum(counts[BULKOPS_ROW_CANCELLED]);
	values[4] = Int64GetDatum(counts[BULKOPS_ROW_UNKNOWN]);
	SPI_connect();
	exec("UPDATE bulkops.jobs SET rows_succeeded = rows_succeeded + $2, "
		 "rows_failed = rows_failed + $3, rows_cancelled = rows_cancelled + $4, "
		 "rows_unknown = rows_unknown + $5 WHERE id = $1",
		 5, types, values, NULL, SPI_OK_UPDATE);
	SPI_finish();
}

/* Mark ref's batch done and end its job if it was the last one. */
void
bulkops_close_batch(Work *w, const char *last_error,
					int http_status)
{
	Oid			types[4] = {INT8OID, INT4OID, TEXTOID, INT4OID};
	Datum		values[4];
	char		nulls[4] = "    ";

	values[0] = Int64GetDatum(w->batch.job_id);
	values[1] = Int32GetDatum(w->batch.batch_no);
	values[2] = last_error ? CStringGetTextDatum(bulkops_clean_text(last_error, 8192)) : (Datum) 0;
	nulls[2] = last_error ? ' ' : 'n';
	values[3] = Int32GetDatum(http_status);
	nulls[3] = http_status > 0 ? ' ' : 'n';

	SPI_connect();
	/* a done batch makes no next request: its step note (a link) goes */
	exec("UPDATE bulkops.batches SET state = 'done', last_error = $3, "
		 "http_status = coalesce($4, http_status), step_data = NULL, "
		 "updated_at = now() WHERE job_id = $1 AND batch_no = $2",
		 4, types, values, nulls, SPI_OK_UPDATE);
	exec("UPDATE bulkops.jobs SET batches_done = batches_done + 1, "
		 "last_error = coalesce($3, last_error) WHERE id = $1 AND $2 IS NOT NULL",
		 3, types, values, nulls, SPI_OK_UPDATE);
	SPI_finish();
	bulkops_finish_job_if_done(w->batch.job_id);
}

/*
 * Give a job whose batches are all done its final state, and tell
 * listeners on channel bulkops_jobs.  Any role may listen on any channel,
 * so the payload is the job's id and nothing else: ids are sequential and
 * say nothing, and what a listener may learn of the job (its state, its
 * target, its creator) it reads from bulkops.jobs, where row-level
 * security applies.
 */
void
bulkops_finish_job_if_done(int64 job_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};

	SPI_connect();
	exec("WITH done AS ("
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
	if (SPI_processed > 0)
		bulkops_crash_point("finish_job");
	SPI_finish();
}

/*
 * Mark job cancelled (or timed out) and settle its batches that were never
 * sent: their rows become cancelled.  Batches already in the worker's hands
 * are the worker's to settle, since a remote task may be applying them.
 * Returns false, changing nothing, when the job has already ended (perhaps
 * while the caller was looking at it).
 *
 * Locks are taken in the order every writer of a job's batches takes them
 * (bulkops_lock_job): the job first, then its batches by number, so that
 * a cancel racing the worker's deadline sweep waits instead of
 * deadlocking: the UPDATE alone would lock batches in the heap's order.
 * The worker never waits for this: it skips a job whose row is held.
 */
bool
bulkops_cancel_queued_batches(int64 job_id, bool timed_out)
{
	Oid			btypes[2] = {INT8OID, BOOLOID};
	Datum		bvalues[2] = {Int64GetDatum(job_id), BoolGetDatum(timed_out)};
	Oid			types[5] = {INT8OID, INT8OID, INT8OID, BOOLOID, INT8OID};
	Datum		values[5];
	bool		isnull;
	bool		stopped;

	/*
	 * A queued batch whose earlier submit may have been applied (it was in
	 * flight at a crash, or failed without saying) is not merely cancelled:
	 * its rows may be there.
	 */
	(void) bulkops_lock_job(job_id, false);
	SPI_connect();
	exec("SELECT 1 FROM bulkops.batches WHERE job_id = $1 AND state = 'queued' AND step = 0"
		 " ORDER BY batch_no FOR UPDATE",
		 1, btypes, bvalues, NULL, SPI_OK_SELECT);
	exec("WITH b AS ("
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
	values[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	values[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	values[3] = BoolGetDatum(timed_out);
	values[4] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);

	/*
	 * A job that ended meanwhile had no queued batch left to settle above;
	 * it must not look cancelled afterwards.
	 */
	exec("UPDATE bulkops.jobs SET cancel_requested = true, timed_out = timed_out OR $4,"
		 " rows_cancelled = rows_cancelled + $2, rows_unknown = rows_unknown + $5,"
		 " batches_done = batches_done + $3,"
		 " last_error = CASE WHEN $4 THEN 'the job''s deadline passed' ELSE last_error END"
		 " WHERE id = $1 AND state IN ('queued', 'running')",
		 5, types, values, NULL, SPI_OK_UPDATE);
	stopped = (SPI_processed == 1);
	SPI_finish();
	return stopped;
}

/*
 * Lock job's row as an UPDATE of it does (FOR NO KEY UPDATE), until the
 * end of the transaction.  Whoever changes a job's queued batches takes
 * this lock first: bulkops.cancel() waits for it, as a user's statement
 * may; the worker passes skip_locked, never waits for a job another
 * transaction holds, and hears false (as it does for a job that is gone).
 */
bool
bulkops_lock_job(int64 job_id, bool skip_locked)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};
	bool		locked;

	SPI_connect();
	exec(skip_locked
		 ? "SELECT 1 FROM bulkops.jobs WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED"
		 : "SELECT 1 FROM bulkops.jobs WHERE id = $1 FOR NO KEY UPDATE",
		 1, types, values, NULL, SPI_OK_SELECT);
	locked = (SPI_processed == 1);
	SPI_finish();
	return locked;
}
