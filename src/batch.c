/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  A batch in the worker's hands (a Work): made from its claimed row,
 *	  the rows still pending, stopped when its job is, freed when done.
 *
 * A Work owns a memory context under TopMemoryContext, with a child for
 * one request and its answer (step_cxt), one for what the dialect keeps
 * between steps (memo_cxt) and one for its rows' receipts (receipts_cxt);
 * freeing the Work deletes them all.  The list
 * of held Works (bulkops_works) lives in TopMemoryContext.  Nothing here
 * opens a transaction: the claimed row is read by the caller (catalog.c)
 * inside its transaction, and its columns are taken by name here, copied
 * into the Work's context before that transaction ends; the receipts are
 * read again (catalog.c) in the caller's transaction too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "batch.h"
#include "catalog.h"

List	   *bulkops_works = NIL;
bool		bulkops_room_freed = false;

/* A column of a claimed row, by name (a missing one is a bug of ours). */
static Datum
col(HeapTuple row, TupleDesc desc, const char *name, bool *isnull)
{
	int			n = SPI_fnumber(desc, name);

	if (n <= 0)
		elog(ERROR, "bulkops: claimed row has no column \"%s\"", name);
	return SPI_getbinval(row, desc, n, isnull);
}

/* A text column of a claimed row, copied; NULL for SQL NULL. */
static char *
col_text(HeapTuple row, TupleDesc desc, const char *name)
{
	bool		isnull;
	Datum		d = col(row, desc, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * A batch's keys, and the rows' wire form.  A done batch has none (NULL),
 * but only a batch that is not done is taken.
 */
static void
load_rows(Work *w, Datum keys, Datum offsets, bool no_offsets, Datum body,
		  bool no_body)
{
	ArrayType  *ka = DatumGetArrayTypeP(keys);
	ArrayType  *oa;
	bytea	   *b;
	Datum	   *kd;
	bool	   *kn;
	int			nk;
	int			i;
	char	   *bodycopy;
	int			blen;

	deconstruct_array(ka, TEXTOID, -1, false, TYPALIGN_INT, &kd, &kn, &nk);
	w->keys = palloc(sizeof(char *) * Max(nk, 1));
	for (i = 0; i < nk; i++)
		w->keys[i] = kn[i] ? NULL : TextDatumGetCString(kd[i]);
	if (no_offsets || no_body)
		elog(ERROR, "bulkops: batch %d of job " INT64_FORMAT " has no rows to send",
			 w->batch.batch_no, w->batch.job_id);
	oa = DatumGetArrayTypeP(offsets);
	b = DatumGetByteaPP(body);
	blen = VARSIZE_ANY_EXHDR(b);
	w->batch.offsets = palloc(sizeof(int32) * ArrayGetNItems(ARR_NDIM(oa), ARR_DIMS(oa)));
	memcpy((void *) w->batch.offsets, ARR_DATA_PTR(oa),
		   sizeof(int32) * ArrayGetNItems(ARR_NDIM(oa), ARR_DIMS(oa)));
	bodycopy = palloc(blen + 1);
	memcpy(bodycopy, VARDATA_ANY(b), blen);
	bodycopy[blen] = '\0';
	w->batch.body = bodycopy;
}

/*
 * A Work for batch (job_id, batch_no) from its claimed row (the batch's
 * and its job's columns, with its receipts so far, see catalog.c),
 * allocated in a new context of its own.  Its target is set apart
 * (bulkops_work_set_target).
 */
Work *
bulkops_work_new(int64 job_id, int32 batch_no, HeapTuple row, TupleDesc desc)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "bulkops batch",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Work	   *w = palloc0(sizeof(Work));
	bool		isnull;
	Datum		d;

	w->cxt = cxt;
	w->step_cxt = AllocSetContextCreate(cxt, "bulkops batch step",
										ALLOCSET_DEFAULT_SIZES);
	w->batch.memo_cxt = AllocSetContextCreate(cxt, "bulkops batch memo",
											  ALLOCSET_SMALL_SIZES);
	w->batch.job_id = job_id;
	w->batch.batch_no = batch_no;
	w->batch.first_row = DatumGetInt64(col(row, desc, "first_row", &isnull));
	w->batch.nrows = DatumGetInt32(col(row, desc, "row_count", &isnull));
	w->generation = DatumGetInt64(col(row, desc, "generation", &isnull));
	w->batch.step = DatumGetInt32(col(row, desc, "step", &isnull));
	w->batch.remote_id = col_text(row, desc, "remote_id");
	w->batch.step_data = col_text(row, desc, "step_data");
	w->attempts = DatumGetInt32(col(row, desc, "attempts", &isnull));
	w->batch.op = bulkops_op_from_name(col_text(row, desc, "operation"));
	w->batch.options = DatumGetJsonbPCopy(col(row, desc, "options", &isnull));
	w->batch.key = col_text(row, desc, "key_column");
	w->target = col_text(row, desc, "target");
	w->maybe_applied = DatumGetBool(col(row, desc, "maybe_applied", &isnull));
	w->last_progress = col_text(row, desc, "progress");
	w->batch.progress = w->last_progress;

	w->is_export = (w->batch.op == BULKOPS_OP_QUERY);
	d = col(row, desc, "destination", &isnull);
	w->destination.relid = isnull ? InvalidOid : DatumGetObjectId(d);
	w->destination.schema = col_text(row, desc, "destination_schema");
	w->destination.table = col_text(row, desc, "destination_table");
	w->created_by = DatumGetObjectId(col(row, desc, "created_by", &isnull));

	d = col(row, desc, "prologue", &isnull);
	if (isnull)
		w->batch.prologue = "";
	else
	{
		bytea	   *p = DatumGetByteaPP(d);

		w->batch.prologue_len = VARSIZE_ANY_EXHDR(p);
		w->batch.prologue = pnstrdup(VARDATA_ANY(p), w->batch.prologue_len);
	}
	{
		bool		n1,
					n2,
					n3;
		Datum		keys = col(row, desc, "keys", &n1);
		Datum		offsets = col(row, desc, "offsets", &n2);
		Datum		body = col(row, desc, "body", &n3);

		load_rows(w, keys, offsets, n2, body, n3);
	}
	w->receipts_cxt = AllocSetContextCreate(cxt, "bulkops batch receipts",
											ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(w->receipts_cxt);
	w->receipts = bulkops_receipts_from_row(w->batch.nrows, row, desc);
	MemoryContextSwitchTo(cxt);
	bulkops_work_settled(w);
	w->max_attempts = bulkops_opt_int(w->batch.options, "max_attempts",
									  bulkops_max_attempts);
	w->concurrency = bulkops_opt_int(w->batch.options, "concurrency",
									 bulkops_concurrency);
	if (DatumGetBool(col(row, desc, "cancel_requested", &isnull)))
		bulkops_work_stop(w, DatumGetBool(col(row, desc, "timed_out", &isnull)));
	MemoryContextSwitchTo(old);
	return w;
}

/*
 * w's target as it is now (its URL and credentials may have changed since
 * the job was enqueued), from its row in bulkops.targets, or NULL when the
 * target is gone.  What cannot be sent is said in w->settle_error.
 */
void
bulkops_work_set_target(Work *w, HeapTuple row, TupleDesc desc)
{
	MemoryContext old = MemoryContextSwitchTo(w->cxt);
	bool		isnull;
	Datum		d;
	char	   *dialect;

	if (row == NULL)
	{
		w->settle_error = psprintf("target \"%s\" no longer exists", w->target);
		MemoryContextSwitchTo(old);
		return;
	}
	dialect = col_text(row, desc, "dialect");
	w->dialect = bulkops_find_dialect(dialect, true);
	w->batch.url = col_text(row, desc, "url");
	w->batch.resource = col_text(row, desc, "resource");
	d = col(row, desc, "auth", &isnull);
	w->auth = isnull ? NULL : DatumGetJsonbPCopy(d);
	if (w->dialect == NULL)
		w->settle_error = psprintf("dialect \"%s\" is not known to this build",
								   dialect);
	else if (w->auth != NULL)
	{
		/* the secrets' rules, however the stored value got there */
		d = col(row, desc, "auth_set_by", &isnull);
		w->settle_error = bulkops_auth_refusal(w->auth, w->target,
											   isnull ? InvalidOid : DatumGetObjectId(d));
	}
	MemoryContextSwitchTo(old);
}

/*
 * Every row of w is pending but those that have a receipt in w->receipts:
 * set w->pending (and the dialect's view of it) from them.
 */
void
bulkops_work_settled(Work *w)
{
	int			i;

	if (w->pending == NULL)
		w->pending = MemoryContextAlloc(w->cxt, sizeof(bool) * Max(w->batch.nrows, 1));
	w->batch.npending = 0;
	for (i = 0; i < w->batch.nrows; i++)
	{
		w->pending[i] = bulkops_receipts_pending(w->receipts, i);
		if (w->pending[i])
			w->batch.npending++;
	}
	w->batch.pending = w->pending;
}

/*
 * w's receipts as the tables say inside the caller's transaction, after a
 * store that failed changed them in memory only.
 */
void
bulkops_work_reload_pending(Work *w)
{
	HeapTuple	row;
	TupleDesc	desc;

	if (!bulkops_catalog_batch_receipts(w->batch.job_id, w->batch.batch_no,
										w->generation, &row, &desc))
		elog(ERROR, "bulkops: batch %d of job " INT64_FORMAT " is gone",
			 w->batch.batch_no, w->batch.job_id);
	{
		/* the old ones stay whole until the new ones are read */
		MemoryContext cxt = AllocSetContextCreate(w->cxt, "bulkops batch receipts",
												  ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		w->receipts = bulkops_receipts_from_row(w->batch.nrows, row, desc);
		MemoryContextSwitchTo(old);
		MemoryContextDelete(w->receipts_cxt);
		w->receipts_cxt = cxt;
	}
	bulkops_work_settled(w);
}

void
bulkops_works_add(Work *w)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	bulkops_works = lappend(bulkops_works, w);
	MemoryContextSwitchTo(old);
}

/* The Work of batch (job_id, batch_no), if this worker holds it. */
Work *
bulkops_work_find(int64 job_id, int32 batch_no)
{
	ListCell   *lc;

	foreach(lc, bulkops_works)
	{
		Work	   *w = lfirst(lc);

		if (w->batch.job_id == job_id && w->batch.batch_no == batch_no)
			return w;
	}
	return NULL;
}

/*
 * w's job was cancelled or timed out: queued work is dropped, a remote
 * task under way is aborted (where the dialect can) and followed for
 * STOP_GRACE_MS.
 */
void
bulkops_work_stop(Work *w, bool timed_out)
{
	if (w->cancel)
		return;
	w->cancel = true;
	w->timed_out = timed_out;
	w->batch.stopping = true;
	w->stop_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), STOP_GRACE_MS);
	/* learn where a running task stands now, not at its next poll */
	w->polls = 0;
	w->due = GetCurrentTimestamp();
}

void
bulkops_work_free(Work *w)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	bulkops_works = list_delete_ptr(bulkops_works, w);
	MemoryContextSwitchTo(old);
	bulkops_room_freed = true;
	if (w->call)
		bulkops_http_free(w->call);
	if (w->deferred_call)
		bulkops_http_free(w->deferred_call);
	MemoryContextDelete(w->cxt);
}
