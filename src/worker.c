/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The per-database worker: claims batches, drives each through its
 *	  dialect's steps over HTTP, and writes what happened.
 *
 * A batch the worker holds is a Work: its rows (already encoded), its
 * persisted (step, remote_id), and at most one HTTP call.  The loop is
 *
 *	 claim runnable batches (short transaction) -> start the requests that
 *	 are due -> sleep on latch + sockets -> for each answer: classify it
 *	 (transport rules here, API rules in the dialect) and apply the result
 *	 (short transaction) -> again.
 *
 * Rules:
 * - No transaction is open while a request is in flight or while waiting.
 * - A batch's new step is committed before the worker acts on it; a submit
 *	 attempt is counted before it is sent.  On start, batches left "active"
 *	 by a crash are resumed: a poll is simply repeated; a submit is repeated
 *	 only for idempotent operations, else its rows become "unknown".
 * - At most `concurrency` batches per target are held, so memory is
 *	 bounded by targets x concurrency x batch size.
 * - An error while handling one batch is reported and settles that batch;
 *	 it never stops the worker or other jobs.
 *
 * Each Work owns a memory context under TopMemoryContext, deleted when the
 * batch is done.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "bulkops.h"
#include "http.h"

typedef struct Work
{
	MemoryContext cxt;
	BulkopsBatchRef ref;		/* what receipts.c needs */
	BulkopsBatch batch;			/* what the dialect sees */
	const BulkopsDialect *dialect;
	char	   *target;
	Jsonb	   *auth;
	int			max_attempts;
	int			concurrency;
	int			poll_errors;
	int			polls;			/* polls at the current step */
	bool		cancel;			/* its job was cancelled */
	bool		in_doubt;		/* resumed submit of a non-idempotent op */
	char	   *settle_error;	/* settle at once as failed, with this */
	TimestampTz due;			/* send the next request then */
	BulkopsHttpCall *call;		/* in flight, or NULL */
	long		last_status;
} Work;

static List *works = NIL;		/* in TopMemoryContext */
static TimestampTz next_claim = 0;

static void
works_add(Work *w)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	works = lappend(works, w);
	MemoryContextSwitchTo(old);
}

/* ---- transactions ---- */

static void
begin_tx(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
commit_tx(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* After an error inside begin_tx/commit_tx: report it and clean up. */
static void
abort_tx(MemoryContext cxt)
{
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}

static bool
extension_ready(void)
{
	bool		ok;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	ok = OidIsValid(get_extension_oid("bulkops", true));
	CommitTransactionCommand();
	return ok;
}

/* ---- loading batches ---- */

static char *
getstr(int col)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);
}

static Datum
getbin(int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, isnull);
}

static void
load_rows(Work *w, Datum keys, Datum offsets, Datum body)
{
	ArrayType  *ka = DatumGetArrayTypeP(keys);
	ArrayType  *oa = DatumGetArrayTypeP(offsets);
	bytea	   *b = DatumGetByteaPP(body);
	Datum	   *kd;
	bool	   *kn;
	int			nk;
	int			i;
	char	   *bodycopy;
	int			blen = VARSIZE_ANY_EXHDR(b);

	deconstruct_array(ka, TEXTOID, -1, false, TYPALIGN_INT, &kd, &kn, &nk);
	w->ref.keys = palloc(sizeof(char *) * Max(nk, 1));
	for (i = 0; i < nk; i++)
		w->ref.keys[i] = kn[i] ? NULL : TextDatumGetCString(kd[i]);
	w->batch.offsets = palloc(sizeof(int32) * ArrayGetNItems(ARR_NDIM(oa), ARR_DIMS(oa)));
	memcpy((void *) w->batch.offsets, ARR_DATA_PTR(oa),
		   sizeof(int32) * ArrayGetNItems(ARR_NDIM(oa), ARR_DIMS(oa)));
	bodycopy = palloc(blen + 1);
	memcpy(bodycopy, VARDATA_ANY(b), blen);
	bodycopy[blen] = '\0';
	w->batch.body = bodycopy;
}

/* Rows that already have a receipt (a resumed batch) are not pending. */
static void
load_pending(Work *w)
{
	Oid			types[3] = {INT8OID, INT8OID, INT8OID};
	Datum		values[3];
	uint64		i;
	int			rc;

	w->ref.pending = MemoryContextAlloc(w->cxt, sizeof(bool) * Max(w->ref.nrows, 1));
	for (i = 0; i < (uint64) w->ref.nrows; i++)
		w->ref.pending[i] = true;
	w->ref.npending = w->ref.nrows;

	values[0] = Int64GetDatum(w->ref.job_id);
	values[1] = Int64GetDatum(w->ref.first_row);
	values[2] = Int64GetDatum(w->ref.first_row + w->ref.nrows - 1);
	rc = SPI_execute_with_args("SELECT row_no FROM bulkops.receipts "
							   "WHERE job_id = $1 AND row_no BETWEEN $2 AND $3",
							   3, types, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read receipts: %s", SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		r = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 1,
													&isnull));
		int			idx = (int) (r - w->ref.first_row);

		if (idx >= 0 && idx < w->ref.nrows && w->ref.pending[idx])
		{
			w->ref.pending[idx] = false;
			w->ref.npending--;
		}
	}
	w->batch.pending = w->ref.pending;
	w->batch.npending = w->ref.npending;
}

/*
 * Take batch (job_id, batch_no) into the worker: mark it active (counting
 * a submit attempt at step 0) and load it.  Runs inside a transaction.
 */
static Work *
take_batch(int64 job_id, int32 batch_no, bool resume)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(job_id), Int32GetDatum(batch_no)};
	MemoryContext cxt;
	MemoryContext old;
	Work	   *w;
	bool		isnull;
	Datum		d;
	int			rc;

	rc = SPI_execute_with_args(resume
							   ? "UPDATE bulkops.batches b SET updated_at = now() "
							   "FROM bulkops.jobs j WHERE b.job_id = $1 AND b.batch_no = $2 "
							   "AND j.id = b.job_id AND b.state = 'active' "
							   "RETURNING b.first_row, b.row_count, b.step, b.remote_id, b.attempts, "
							   "j.operation, j.options, j.cancel_requested, j.target, "
							   "b.keys, b.offsets, b.body"
							   : "UPDATE bulkops.batches b SET state = 'active', updated_at = now(), "
							   "attempts = b.attempts + (b.step = 0)::int "
							   "FROM bulkops.jobs j WHERE b.job_id = $1 AND b.batch_no = $2 "
							   "AND j.id = b.job_id AND b.state = 'queued' "
							   "RETURNING b.first_row, b.row_count, b.step, b.remote_id, b.attempts, "
							   "j.operation, j.options, j.cancel_requested, j.target, "
							   "b.keys, b.offsets, b.body",
							   2, types, values, NULL, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim batch: %s", SPI_result_code_string(rc));
	if (SPI_processed != 1)
		return NULL;

	cxt = AllocSetContextCreate(TopMemoryContext, "bulkops batch",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	w = palloc0(sizeof(Work));
	w->cxt = cxt;
	w->ref.job_id = job_id;
	w->ref.batch_no = batch_no;
	w->ref.first_row = DatumGetInt64(getbin(1, &isnull));
	w->ref.nrows = DatumGetInt32(getbin(2, &isnull));
	w->batch.step = DatumGetInt32(getbin(3, &isnull));
	w->batch.remote_id = getstr(4);
	w->ref.attempts = DatumGetInt32(getbin(5, &isnull));
	w->batch.op = bulkops_op_from_name(getstr(6));
	w->batch.options = DatumGetJsonbPCopy(getbin(7, &isnull));
	w->cancel = DatumGetBool(getbin(8, &isnull));
	w->target = getstr(9);
	w->batch.job_id = job_id;
	w->batch.batch_no = batch_no;
	w->batch.nrows = w->ref.nrows;
	d = getbin(10, &isnull);
	{
		Datum		offs = getbin(11, &isnull);
		Datum		body = getbin(12, &isnull);

		load_rows(w, d, offs, body);
	}
	w->max_attempts = bulkops_opt_int(w->batch.options, "max_attempts",
									  bulkops_max_attempts);
	w->concurrency = bulkops_opt_int(w->batch.options, "concurrency",
									 bulkops_concurrency);

	/* the target as it is now: URL and credentials may have changed */
	{
		Oid			ttypes[1] = {TEXTOID};
		Datum		tvals[1] = {CStringGetTextDatum(w->target)};

		rc = SPI_execute_with_args("SELECT dialect, url, resource, auth FROM bulkops.targets "
								   "WHERE name = $1", 1, ttypes, tvals, NULL, true, 1);
		/* SPI leaves us in its own context after every call */
		MemoryContextSwitchTo(cxt);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not read target: %s", SPI_result_code_string(rc));
		if (SPI_processed == 0)
			w->settle_error = psprintf("target \"%s\" no longer exists", w->target);
		else
		{
			w->dialect = bulkops_find_dialect(getstr(1), true);
			w->batch.url = getstr(2);
			w->batch.resource = getstr(3);
			d = getbin(4, &isnull);
			w->auth = isnull ? NULL : DatumGetJsonbPCopy(d);
			if (w->dialect == NULL)
				w->settle_error = psprintf("dialect \"%s\" is not known to this build",
										   getstr(1));
		}
	}
	load_pending(w);
	MemoryContextSwitchTo(old);

	/* a job starts running when its first batch is taken */
	{
		Oid			jtypes[1] = {INT8OID};
		Datum		jvals[1] = {Int64GetDatum(job_id)};

		SPI_execute_with_args("UPDATE bulkops.jobs SET state = 'running', "
							  "started_at = coalesce(started_at, now()) "
							  "WHERE id = $1 AND state = 'queued'",
							  1, jtypes, jvals, NULL, false, 0);
	}
	return w;
}

static int
held_for_target(const char *target)
{
	ListCell   *lc;
	int			n = 0;

	foreach(lc, works)
		if (strcmp(((Work *) lfirst(lc))->target, target) == 0)
			n++;
	return n;
}

/*
 * Claim runnable batches, up to each target's concurrency.  Candidates are
 * read without their bodies; only the chosen ones are loaded.
 */
static void
claim(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			rc;
	uint64		i;
	uint64		n;
	int64	   *jobs;
	int32	   *nos;
	char	  **targets;
	int		   *limits;
	List	   *volatile taken = NIL;

	PG_TRY();
	{
		begin_tx("claiming batches");
		rc = SPI_execute("SELECT b.job_id, b.batch_no, j.target, "
						 "coalesce((j.options->>'concurrency')::int, 0) "
						 "FROM bulkops.batches b JOIN bulkops.jobs j ON j.id = b.job_id "
						 "WHERE b.state = 'queued' AND b.next_attempt_at <= now() "
						 "ORDER BY b.job_id, b.batch_no LIMIT 1000",
						 true, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not find batches: %s", SPI_result_code_string(rc));
		n = SPI_processed;
		jobs = palloc(sizeof(int64) * Max(n, 1));
		nos = palloc(sizeof(int32) * Max(n, 1));
		targets = palloc(sizeof(char *) * Max(n, 1));
		limits = palloc(sizeof(int) * Max(n, 1));
		for (i = 0; i < n; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	td = SPI_tuptable->tupdesc;
			bool		isnull;

			jobs[i] = DatumGetInt64(SPI_getbinval(t, td, 1, &isnull));
			nos[i] = DatumGetInt32(SPI_getbinval(t, td, 2, &isnull));
			targets[i] = SPI_getvalue(t, td, 3);
			limits[i] = DatumGetInt32(SPI_getbinval(t, td, 4, &isnull));
			if (limits[i] <= 0)
				limits[i] = bulkops_concurrency;
		}
		for (i = 0; i < n; i++)
		{
			Work	   *w;
			ListCell   *lc;
			int			held = held_for_target(targets[i]);

			foreach(lc, taken)
				if (strcmp(((Work *) lfirst(lc))->target, targets[i]) == 0)
					held++;
			if (held >= limits[i])
				continue;
			w = take_batch(jobs[i], nos[i], false);
			if (w)
			{
				MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

				taken = lappend(taken, w);
				MemoryContextSwitchTo(old);
			}
		}
		commit_tx();
	}
	PG_CATCH();
	{
		ListCell   *lc;

		abort_tx(cxt);
		/* the claim was rolled back: forget what it loaded */
		foreach(lc, taken)
			MemoryContextDelete(((Work *) lfirst(lc))->cxt);
		list_free(taken);
		return;
	}
	PG_END_TRY();
	{
		ListCell   *lc;

		foreach(lc, taken)
			works_add(lfirst(lc));
		list_free(taken);
	}
}

/*
 * After a restart: batches left active by the previous worker.  Polls are
 * repeated; submits only where repeating cannot apply a row twice.
 */
static void
recover(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		uint64		i;
		uint64		n;
		int64	   *jobs;
		int32	   *nos;
		int			rc;

		begin_tx("resuming batches");
		rc = SPI_execute("SELECT b.job_id, b.batch_no, j.dialect, j.operation, b.step "
						 "FROM bulkops.batches b JOIN bulkops.jobs j ON j.id = b.job_id "
						 "WHERE b.state = 'active' ORDER BY 1, 2", true, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not find active batches: %s", SPI_result_code_string(rc));
		n = SPI_processed;
		jobs = palloc(sizeof(int64) * Max(n, 1));
		nos = palloc(sizeof(int32) * Max(n, 1));
		for (i = 0; i < n; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	td = SPI_tuptable->tupdesc;
			bool		isnull;
			const BulkopsDialect *d = bulkops_find_dialect(SPI_getvalue(t, td, 3), true);
			BulkopsOp	op = bulkops_op_from_name(SPI_getvalue(t, td, 4));
			int			step = DatumGetInt32(SPI_getbinval(t, td, 5, &isnull));

			jobs[i] = DatumGetInt64(SPI_getbinval(t, td, 1, &isnull));
			nos[i] = DatumGetInt32(SPI_getbinval(t, td, 2, &isnull));
			/* in doubt: a submit that may have reached the remote side */
			if (step == 0 && d != NULL && !d->idempotent[op])
				nos[i] = -nos[i] - 1;
		}
		for (i = 0; i < n; i++)
		{
			if (nos[i] < 0)
			{
				Work	   *w = take_batch(jobs[i], -nos[i] - 1, true);

				if (w)
				{
					w->in_doubt = true;
					works_add(w);
				}
			}
			else
			{
				Oid			types[2] = {INT8OID, INT4OID};
				Datum		vals[2] = {Int64GetDatum(jobs[i]), Int32GetDatum(nos[i])};

				SPI_execute_with_args("UPDATE bulkops.batches SET state = 'queued', "
									  "next_attempt_at = now() "
									  "WHERE job_id = $1 AND batch_no = $2",
									  2, types, vals, NULL, false, 0);
			}
		}
		commit_tx();
		if (n > 0)
			ereport(LOG, (errmsg("bulkops worker resumed %d batches", (int) n)));
	}
	PG_CATCH();
	{
		abort_tx(cxt);
	}
	PG_END_TRY();
}

/* Mark works whose job was cancelled since they were taken. */
static void
refresh_cancels(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (works == NIL)
		return;
	PG_TRY();
	{
		uint64		i;

		begin_tx("checking cancels");
		if (SPI_execute("SELECT id FROM bulkops.jobs WHERE cancel_requested "
						"AND state IN ('queued', 'running')", true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read cancelled jobs");
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 1,
														 &isnull));
			ListCell   *lc;

			foreach(lc, works)
				if (((Work *) lfirst(lc))->ref.job_id == id)
					((Work *) lfirst(lc))->cancel = true;
		}
		commit_tx();
	}
	PG_CATCH();
	{
		abort_tx(cxt);
	}
	PG_END_TRY();
}

/* ---- applying results ---- */

static void
free_work(Work *w)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	works = list_delete_ptr(works, w);
	MemoryContextSwitchTo(old);
	next_claim = 0;				/* room for another batch: look now */
	if (w->call)
		bulkops_http_free(w->call);
	MemoryContextDelete(w->cxt);
}

/*
 * Poll soon after a step starts, then less and less often up to
 * poll_interval: small tasks finish in milliseconds, large ones take
 * minutes, and neither should wait on the other's cadence.
 */
static long
poll_delay_ms(Work *w)
{
	long		cap = (long) (1000 * bulkops_opt_real(w->batch.options, "poll_interval",
													  bulkops_poll_interval_ms / 1000.0));
	long		ms = 20L << Min(w->polls, 20);

	w->polls++;
	return Min(ms, cap);
}

static long
backoff_ms(int attempt, long retry_after_ms)
{
	double		base = 500.0 * pow(2.0, Min(attempt, 16) - 1);
	long		ms;

	if (base > 60000.0)
		base = 60000.0;
	/* jitter spreads retries of many batches hitting one limit */
	ms = (long) (base * (0.5 + 0.5 * pg_prng_double(&pg_global_prng_state)));
	/* the remote side knows its limits better than any formula */
	return retry_after_ms >= 0 ? retry_after_ms : ms;
}

/*
 * Carry out result for w inside one transaction.  Returns true if the
 * batch is finished (and w may be freed).
 */
static bool
apply_result(Work *w, BulkopsResult *res)
{
	bool		finished = false;
	int			status = (int) w->last_status;
	Oid			types[6] = {INT8OID, INT4OID, INT4OID, TEXTOID, INT4OID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = "      ";

	bulkops_write_outcomes(&w->ref, res->outcomes, status);

	switch (res->next)
	{
		case BULKOPS_NEXT_DONE:
			if (w->ref.npending > 0)
			{
				BulkopsResult rest = {0};

				bulkops_result_settle_rest(&w->batch, &rest, BULKOPS_ROW_UNKNOWN,
										   "the remote answer did not mention this row");
				bulkops_write_outcomes(&w->ref, rest.outcomes, status);
			}
			finished = true;
			break;
		case BULKOPS_NEXT_FAIL:
			{
				BulkopsResult rest = {0};

				bulkops_result_settle_rest(&w->batch, &rest,
										   res->fail_status == BULKOPS_ROW_SUCCEEDED
										   ? BULKOPS_ROW_FAILED : res->fail_status,
										   res->error);
				if (res->error_code)
				{
					ListCell   *lc;

					foreach(lc, rest.outcomes)
						((BulkopsOutcome *) lfirst(lc))->error_code = res->error_code;
				}
				bulkops_write_outcomes(&w->ref, rest.outcomes, status);
				finished = true;
			}
			break;
		case BULKOPS_NEXT_STEP:
		case BULKOPS_NEXT_RESUBMIT:
		case BULKOPS_NEXT_RETRY:
			break;
	}
	w->batch.npending = w->ref.npending;
	if (w->ref.npending == 0)
		finished = true;

	if (finished)
	{
		bulkops_close_batch(&w->ref, res->next == BULKOPS_NEXT_DONE ? NULL : res->error,
							status);
		return true;
	}

	/* persist where the batch stands before acting on it */
	values[0] = Int64GetDatum(w->ref.job_id);
	values[1] = Int32GetDatum(w->ref.batch_no);
	values[2] = Int32GetDatum(w->batch.step);
	values[3] = w->batch.remote_id ? CStringGetTextDatum(w->batch.remote_id) : (Datum) 0;
	nulls[3] = w->batch.remote_id ? ' ' : 'n';
	values[4] = Int32GetDatum(w->ref.attempts);
	values[5] = res->error ? CStringGetTextDatum(bulkops_clean_text(res->error, 8192)) : (Datum) 0;
	nulls[5] = res->error ? ' ' : 'n';
	if (SPI_execute_with_args("UPDATE bulkops.batches SET step = $3, remote_id = $4, "
							  "attempts = $5, last_error = coalesce($6, last_error), "
							  "updated_at = now() WHERE job_id = $1 AND batch_no = $2",
							  6, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update batch");
	return false;
}

/*
 * Decide the next state in memory (before the transaction that persists
 * it): steps, attempts, and whether a retry is allowed at all.
 */
static void
plan_next(Work *w, BulkopsResult *res, bool not_applied, long retry_after_ms)
{
	MemoryContext old = MemoryContextSwitchTo(w->cxt);
	TimestampTz now = GetCurrentTimestamp();

	switch (res->next)
	{
		case BULKOPS_NEXT_STEP:
			if (res->step != w->batch.step)
				w->polls = 0;
			w->batch.step = res->step;
			w->batch.remote_id = res->remote_id ? pstrdup(res->remote_id) : NULL;
			w->poll_errors = 0;
			w->due = TimestampTzPlusMilliseconds(now, res->delay_ms > 0 ? res->delay_ms
												 : poll_delay_ms(w));
			break;
		case BULKOPS_NEXT_RESUBMIT:
			w->batch.step = 0;
			w->batch.remote_id = NULL;
			if (res->counts_attempt)
			{
				if (w->ref.attempts >= w->max_attempts)
				{
					res->next = BULKOPS_NEXT_FAIL;
					res->error = psprintf("gave up after %d attempts: %s", w->ref.attempts,
										  res->error ? res->error : "resubmission needed");
					break;
				}
				w->ref.attempts++;
			}
			w->due = now;
			break;
		case BULKOPS_NEXT_RETRY:
			if (w->batch.step > 0)
			{
				/* polls and fetches are always safe to repeat, within reason */
				if (++w->poll_errors > Max(w->max_attempts, 1) * 4)
				{
					res->next = BULKOPS_NEXT_FAIL;
					res->fail_status = BULKOPS_ROW_UNKNOWN;
					res->error = psprintf("could not learn the outcome of remote task %s: %s",
										  w->batch.remote_id, res->error);
					break;
				}
				w->due = TimestampTzPlusMilliseconds(now, backoff_ms(w->poll_errors,
																	 retry_after_ms));
				break;
			}
			if (!not_applied && !w->dialect->idempotent[w->batch.op])
			{
				res->next = BULKOPS_NEXT_FAIL;
				res->fail_status = BULKOPS_ROW_UNKNOWN;
				res->error = psprintf("%s; the request may have been applied, and %s is not safe to repeat",
									  res->error, bulkops_op_name(w->batch.op));
				break;
			}
			if (w->ref.attempts >= w->max_attempts)
			{
				res->next = BULKOPS_NEXT_FAIL;
				res->error = psprintf("gave up after %d attempts: %s",
									  w->ref.attempts, res->error);
				break;
			}
			w->ref.attempts++;
			w->due = TimestampTzPlusMilliseconds(now, backoff_ms(w->ref.attempts - 1,
																 retry_after_ms));
			break;
		case BULKOPS_NEXT_DONE:
		case BULKOPS_NEXT_FAIL:
			break;
	}
	MemoryContextSwitchTo(old);
}

/* Persist res for w; on any error, settle the batch as unknown. */
static void
commit_result(Work *w, BulkopsResult *res)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool finished = false;
	volatile bool failed = false;

	PG_TRY();
	{
		begin_tx("writing receipts");
		finished = apply_result(w, res);
		commit_tx();
	}
	PG_CATCH();
	{
		abort_tx(cxt);
		failed = true;
	}
	PG_END_TRY();

	if (failed)
	{
		/* reload what is pending from the table: the failed write changed it */
		BulkopsResult rest = {0};

		PG_TRY();
		{
			begin_tx("settling a batch after an error");
			load_pending(w);
			rest.next = BULKOPS_NEXT_FAIL;
			rest.fail_status = BULKOPS_ROW_UNKNOWN;
			rest.error = "bulkops could not record this row's outcome (see the server log)";
			finished = apply_result(w, &rest);
			commit_tx();
		}
		PG_CATCH();
		{
			abort_tx(cxt);
			ereport(WARNING,
					(errmsg("bulkops batch %d of job " INT64_FORMAT " is left for the next restart",
							w->ref.batch_no, w->ref.job_id)));
			finished = true;
		}
		PG_END_TRY();
	}
	if (finished)
		free_work(w);
}

/* The dialect's reading of an answer, with its errors turned into a retry. */
static void
dialect_answer(Work *w, BulkopsHttpCall *call, BulkopsResult *res)
{
	MemoryContext old = MemoryContextSwitchTo(w->cxt);
	BulkopsResponse resp;

	resp.status = call->status;
	resp.body = call->body.data;
	resp.len = call->body.len;
	resp.content_type = call->content_type;
	PG_TRY();
	{
		w->dialect->handle_response(&w->batch, &resp, res);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(w->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		memset(res, 0, sizeof(*res));
		res->next = BULKOPS_NEXT_RETRY;
		res->error = psprintf("could not read the answer (HTTP %ld): %s",
							  call->status, edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
}

static void
handle_answer(Work *w, BulkopsHttpCall *call)
{
	BulkopsResult res = {0};
	bool		not_applied = false;
	MemoryContext old = MemoryContextSwitchTo(w->cxt);

	w->call = NULL;
	w->last_status = call->status;
	if (call->refused)
	{
		res.next = BULKOPS_NEXT_FAIL;
		res.error = pstrdup(call->error);
	}
	else if (call->error)
	{
		res.next = BULKOPS_NEXT_RETRY;
		res.error = psprintf("%s %s: %s", w->batch.step == 0 ? "submit" : "poll",
							 "failed", call->error);
		not_applied = call->nothing_sent;
	}
	else if (call->status == 429 || call->status == 503)
	{
		res.next = BULKOPS_NEXT_RETRY;
		res.error = psprintf("HTTP %ld from the remote side", call->status);
		not_applied = true;
	}
	else if (call->status == 500 || call->status == 502 || call->status == 504)
	{
		res.next = BULKOPS_NEXT_RETRY;
		res.error = psprintf("HTTP %ld from the remote side", call->status);
	}
	else
		dialect_answer(w, call, &res);
	MemoryContextSwitchTo(old);

	plan_next(w, &res, not_applied,
			  call->has_retry_after ? call->retry_after_ms : -1);
	bulkops_http_free(call);
	commit_result(w, &res);
}

/* ---- sending ---- */

static void
settle_now(Work *w, BulkopsRowStatus status, const char *error)
{
	BulkopsResult res = {0};

	res.next = BULKOPS_NEXT_FAIL;
	res.fail_status = status;
	res.error = pstrdup(error);
	commit_result(w, &res);
}

static void
send_request(Work *w)
{
	MemoryContext cxt = CurrentMemoryContext;
	BulkopsRequest req = {0};
	List	   *volatile auth = NIL;
	BulkopsHttpOptions opts;
	char	   *volatile error = NULL;
	MemoryContext old = MemoryContextSwitchTo(w->cxt);

	PG_TRY();
	{
		w->dialect->build_request(&w->batch, &req);
		auth = bulkops_auth_headers(w->auth, w->target);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(w->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		error = pstrdup(edata->message);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	if (error)
	{
		settle_now(w, BULKOPS_ROW_FAILED, error);
		return;
	}

	opts.timeout_ms = (int) (1000 * bulkops_opt_real(w->batch.options, "http_timeout",
													  bulkops_http_timeout_ms / 1000.0));
	opts.max_response_size = bulkops_max_response_size;
	opts.ca_file = bulkops_opt_string(w->batch.options, "ca_file", NULL);
	w->call = bulkops_http_start(&req, auth, &opts, w);
	(void) cxt;
}

/* Start every due request; settle works that need no request. */
static void
start_due(void)
{
	TimestampTz now = GetCurrentTimestamp();
	List	   *snapshot = list_copy(works);
	ListCell   *lc;

	foreach(lc, snapshot)
	{
		Work	   *w = lfirst(lc);

		if (w->call != NULL)
			continue;
		if (w->settle_error)
			settle_now(w, BULKOPS_ROW_FAILED, w->settle_error);
		else if (w->in_doubt)
			settle_now(w, BULKOPS_ROW_UNKNOWN,
					   "the worker stopped while this row's request was in flight; "
					   "the remote side may or may not have applied it");
		else if (w->cancel && w->batch.step == 0)
			settle_now(w, BULKOPS_ROW_CANCELLED, "cancelled by bulkops.cancel()");
		else if (w->due <= now)
			send_request(w);
	}
	list_free(snapshot);
}

static long
next_wait_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = next_claim;
	ListCell   *lc;
	long		secs;
	int			usecs;

	foreach(lc, works)
	{
		Work	   *w = lfirst(lc);

		if (w->call == NULL && w->due < next)
			next = w->due;
	}
	if (next <= now)
		return 0;
	TimestampDifference(now, next, &secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
}

/* ---- main ---- */

static void
worker_exit(int code, Datum arg)
{
	bulkops_worker_unregister_self();
}

void
bulkops_worker_main(Datum arg)
{
	char		dbname[NAMEDATALEN];
	bool		woken = true;
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	bulkops_worker_register_self(MyDatabaseId);
	before_shmem_exit(worker_exit, (Datum) 0);
	bulkops_http_init();
	ereport(LOG, (errmsg("bulkops worker started for database \"%s\"", dbname)));

	/* sleep until CREATE EXTENSION has run here */
	while (!extension_ready())
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(bulkops_poll_interval_ms, 1000), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "bulkops worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(loop_cxt);
	recover();

	for (;;)
	{
		BulkopsHttpCall *call;

		/* whatever one turn of the loop allocates dies with it */
		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (woken || GetCurrentTimestamp() >= next_claim)
		{
			if (!extension_ready())
				proc_exit(0);	/* dropped: the launcher starts a fresh one */
			refresh_cancels();
			claim();
			next_claim = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 bulkops_poll_interval_ms);
		}
		start_due();
		woken = bulkops_http_wait(next_wait_ms());
		while ((call = bulkops_http_next_done()) != NULL)
			handle_answer((Work *) call->arg, call);
	}
}
