/*-------------------------------------------------------------------------
 *
 * results.c
 *	  Storing what an answer meant for a batch, in one short transaction:
 *	  its receipts, a query job's page, the remote side's counters, and the
 *	  batch's new step and remote id, or the batch's end.
 *
 * The worker (worker.c) decides in memory what comes next (plan_next);
 * this file makes that durable.  When storing fails, the batch is settled
 * in a second transaction with the reason, so no row is left without an
 * outcome.
 *
 * Except when it failed for want of time, not for what it stores: a lock
 * timeout (another transaction holds the job's row, or the export's
 * table) or the user code's time limit (bulkops.user_code_timeout, in
 * sink.c).  Such a result is deferred: kept in memory with the Work, and
 * stored again later, for as long as the lock is held; only user code
 * that overruns its limit USER_CODE_OVERRUNS times in a row makes it an
 * error.  The answer it came from cannot always be asked for again (a
 * synchronous 207 answer, a page of an export), so it is not dropped.
 * Until it is stored, the batch sends nothing and its job gets no new
 * batch (claim.c): the worker holds at most one result per batch it
 * holds.
 *
 * A crash while a result is deferred loses only memory.  Its transaction
 * rolled back whole, so the tables say what they said before the answer
 * arrived: the batch is active, at its old step, its submit marked
 * maybe_applied if it was sent.  That is the state of a crash while the
 * request was in flight, which the existing rules resolve with exactly one
 * receipt per row: a poll or page fetch is repeated (a page is written in
 * the transaction that records the locator after it, so none is lost or
 * written twice); a submit is repeated where that is safe, and otherwise
 * its rows become unknown.  No receipt of the deferred result exists to
 * be written twice, and a row's one slot in its batch's receipts
 * (receipts.c) could not take a second one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "exec.h"
#include "joblog.h"
#include "results.h"

/*
 * Write a page of a query job's rows into its table (sink.c) and count
 * them on the job, in the transaction that also stores where the remote
 * query stands.
 */
static void
write_page(Work *w, const char *page, size_t len)
{
	BulkopsSinkCounts c;
	Oid			relid;

	bulkops_sink_page(&w->destination, w->created_by, w->batch.job_id,
					  w->batch.options, page, len, &relid, &c);
	/* the worker's memory keeps the names, which find the same table */
	bulkops_catalog_count_export(w->batch.job_id, c.total, c.stored,
								 c.rejected, relid);
}

/*
 * A query job's batch ends, completed or not, in the transaction that
 * closes it: what its mode does then (replace: the table's rows replaced,
 * or left alone) happens with the job's end.
 */
static void
end_export(Work *w, bool completed)
{
	BulkopsSinkCounts c;

	bulkops_sink_finish(&w->destination, w->created_by, w->batch.job_id,
						w->batch.options, completed, &c);
	if (c.total != 0 || c.stored != 0 || c.rejected != 0)
		bulkops_catalog_count_export(w->batch.job_id, c.total, c.stored,
									 c.rejected, InvalidOid);
}

/*
 * Give w's rows the outcomes a dialect reported for them, in w's receipts
 * (w->receipts_dirty says they changed), and count them on the job.
 * Outcomes for rows already settled (or out of range) are ignored: a row
 * gets exactly one receipt.  The receipts reach the table with the
 * batch's next state (close_batch, or save_step in apply_result), in one
 * new version of its row.
 */
static void
write_outcomes(Work *w, List *outcomes, int http_status, bool *dirty)
{
	BulkopsOutcome **outs = palloc(sizeof(BulkopsOutcome *) * Max(list_length(outcomes), 1));
	int64		counts[4] = {0};
	MemoryContext old;
	int			m = 0;
	int			settled;
	ListCell   *lc;

	foreach(lc, outcomes)
		outs[m++] = lfirst(lc);
	if (m == 0)
		return;
	old = MemoryContextSwitchTo(w->receipts_cxt);
	settled = bulkops_receipts_add(w->receipts, (const char *const *) w->keys,
								   outs, m, http_status,
								   w->answered_attempts ? w->answered_attempts : w->attempts,
								   GetCurrentTransactionStartTimestamp(), counts);
	MemoryContextSwitchTo(old);
	if (settled == 0)
		return;
	bulkops_work_settled(w);
	bulkops_catalog_count_outcomes(w->batch.job_id, counts,
								   counts[BULKOPS_ROW_FAILED] > 0
								   ? bulkops_joblog_failed_codes(w->receipts) : NULL);
	*dirty = true;
}

/* Mark w's batch done and end its job if it was the last one. */
static void
close_batch(Work *w, const char *last_error, int http_status, bool dirty)
{
	bulkops_catalog_close_batch(w->batch.job_id, w->batch.batch_no,
								w->generation, last_error, http_status,
								dirty ? w->receipts : NULL,
								w->batch.nrows > 0 &&
								bulkops_receipts_all_succeeded(w->receipts));
	(void) bulkops_catalog_finish_job(w->batch.job_id);
}

/* A query job's table, for a message; inside a transaction. */
static char *
destination_name(Work *w)
{
	Oid			relid = w->destination.relid;

	if (OidIsValid(relid) && get_rel_name(relid) != NULL)
		return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										  get_rel_name(relid));
	if (w->destination.schema && w->destination.table)
		return quote_qualified_identifier(w->destination.schema,
										  w->destination.table);
	return pstrdup("the destination table");
}

/*
 * Carry out result for w inside one transaction.  Returns true if the
 * batch is finished (and w may be freed).
 */
static bool
apply_result(Work *w, BulkopsResult *res)
{
	bool		finished = false;
	bool		dirty = false;
	int			status = (int) w->last_status;

	write_outcomes(w, res->outcomes, status, &dirty);
	if (res->page && w->is_export)
		write_page(w, res->page, res->page_len);
	if (res->progress)
		bulkops_catalog_save_progress(w->batch.job_id, w->batch.batch_no,
									  w->generation, res->progress);
	/* sent at commit, with what it tells of */
	if (res->notify)
		Async_Notify(BULKOPS_FEEDBACK_CHANNEL, res->notify);

	switch (res->next)
	{
		case BULKOPS_NEXT_DONE:
			if (w->batch.npending > 0)
			{
				BulkopsResult rest = {0};

				bulkops_result_settle_rest(&w->batch, &rest, BULKOPS_ROW_UNKNOWN,
										   "the remote answer did not mention this row");
				write_outcomes(w, rest.outcomes, status, &dirty);
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
				write_outcomes(w, rest.outcomes, status, &dirty);
				finished = true;
			}
			break;
		case BULKOPS_NEXT_STEP:
		case BULKOPS_NEXT_RESUBMIT:
		case BULKOPS_NEXT_RETRY:
			break;
	}
	/* a query job has no rows to settle: only the dialect says it is done */
	if (w->batch.npending == 0 && w->batch.nrows > 0)
		finished = true;

	if (finished)
	{
		if (w->is_export)
			end_export(w, res->next == BULKOPS_NEXT_DONE);
		/* a DONE with an error: every row has its outcome, yet not as asked */
		close_batch(w, res->error, status, dirty);
		return true;
	}

	/* persist where the batch stands before acting on it */
	bulkops_catalog_save_step(w->batch.job_id, w->batch.batch_no, w->generation,
							  w->batch.step, w->batch.remote_id, w->attempts,
							  res->error, w->batch.step_data, w->maybe_applied,
							  dirty ? w->receipts : NULL);
	return false;
}

/* How storing a result went, as far as what to do next goes. */
typedef enum StoreStatus
{
	STORE_OK,
	STORE_LOCKED,				/* a row or table it needs was locked */
	STORE_OVERRUN,				/* user code ran out of time (or someone
								 * cancelled the statement) */
	STORE_ERROR					/* it can never be stored as it is */
} StoreStatus;

/* user code over its time limit this many times in a row is an error */
#define USER_CODE_OVERRUNS 3
/* a deferred result is tried again after this, doubling up to ... */
#define STORE_RETRY_FIRST_MS 50
/* ... this */
#define STORE_RETRY_MAX_MS 2000

/*
 * One transaction that stores res for w.  A retry first asks, without
 * waiting, whether another transaction still holds the job's row, which
 * the store would wait for: it is not tried while that is so.  Every
 * failure leaves w's receipts as the failed write changed them in memory:
 * they are reloaded from the table, in the transaction of the next try.
 */
static StoreStatus
try_store(Work *w, BulkopsResult *res, bool retry, bool *finished,
		  char **why)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile StoreStatus st = STORE_OK;
	volatile bool done = false;

	PG_TRY();
	{
		bulkops_begin_tx("writing receipts");
		if (retry && !bulkops_catalog_lock_job(w->batch.job_id, true))
		{
			st = STORE_LOCKED;
			MemoryContextSwitchTo(cxt);
			*why = psprintf("another transaction holds job " INT64_FORMAT,
							w->batch.job_id);
		}
		else
		{
			if (w->pending_stale)
				bulkops_work_reload_pending(w);
			done = apply_result(w, res);
		}
		bulkops_commit_tx();
		if (st == STORE_OK)
			w->pending_stale = false;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		/* kept for the receipts: "see the server log" helps nobody */
		*why = pstrdup(edata->message);
		if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
			st = STORE_LOCKED;
		else if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			st = STORE_OVERRUN;
		else
		{
			st = STORE_ERROR;
			EmitErrorReport();
		}
		FreeErrorData(edata);
		bulkops_discard_tx(cxt);
		w->pending_stale = true;
	}
	PG_END_TRY();
	/* a commit leaves us in TopMemoryContext */
	MemoryContextSwitchTo(cxt);
	*finished = done;
	return st;
}

static char *
dup_or_null(const char *s)
{
	return s ? pstrdup(s) : NULL;
}

/*
 * A copy of res in cxt, as deep as the answer and the loop's memory would
 * otherwise take it away.  A query job's page is not copied (it can be
 * large): it lives in the Work's step context or in the answer, which are
 * both kept as long as it is (defer, handle_answer).
 */
static BulkopsResult *
copy_result(const BulkopsResult *res, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	BulkopsResult *c = palloc(sizeof(BulkopsResult));
	ListCell   *lc;

	*c = *res;
	c->outcomes = NIL;
	foreach(lc, res->outcomes)
	{
		BulkopsOutcome *o = palloc(sizeof(BulkopsOutcome));

		*o = *(BulkopsOutcome *) lfirst(lc);
		o->remote_id = dup_or_null(o->remote_id);
		o->error_code = dup_or_null(o->error_code);
		o->error_message = dup_or_null(o->error_message);
		o->remote_version = dup_or_null(o->remote_version);
		o->error_fields = dup_or_null(o->error_fields);
		c->outcomes = lappend(c->outcomes, o);
	}
	c->remote_id = dup_or_null(res->remote_id);
	c->step_data = dup_or_null(res->step_data);
	c->error = dup_or_null(res->error);
	c->error_code = dup_or_null(res->error_code);
	c->progress = dup_or_null(res->progress);
	c->notify = dup_or_null(res->notify);
	c->memo = NULL;				/* plan_next took it */
	MemoryContextSwitchTo(old);
	return c;
}

/* Keep res with w, to be stored again at w->store_due. */
static void
defer(Work *w, BulkopsResult *res, const char *why)
{
	if (res != w->deferred)
	{
		MemoryContext cxt = AllocSetContextCreate(w->cxt, "bulkops deferred result",
												  ALLOCSET_DEFAULT_SIZES);
		BulkopsResult *copy = copy_result(res, cxt);

		if (w->deferred_cxt)
			MemoryContextDelete(w->deferred_cxt);
		w->deferred_cxt = cxt;
		w->deferred = copy;

		/*
		 * What reading the answer left in the step context (a parsed 207
		 * body) is not needed any more, unless it holds the page.  A batch
		 * that sends nothing keeps nothing else there.
		 */
		if (copy->page == NULL)
			MemoryContextReset(w->step_cxt);
	}
	if (w->deferrals == 0)
		ereport(LOG,
				(errmsg("bulkops keeps the result for batch %d of job " INT64_FORMAT " until it can be stored",
						w->batch.batch_no, w->batch.job_id),
				 errdetail("%s", why)));
	w->deferrals++;
	w->store_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   Min(STORE_RETRY_FIRST_MS << Min(w->deferrals - 1, 10),
												   STORE_RETRY_MAX_MS));
}

/* A deferred result has been stored, or settled otherwise: forget it. */
static void
forget_deferred(Work *w, bool stored)
{
	if (w->deferred == NULL)
		return;
	if (stored)
		ereport(LOG,
				(errmsg("bulkops stored the result for batch %d of job " INT64_FORMAT " after %d tries",
						w->batch.batch_no, w->batch.job_id, w->deferrals + 1)));
	MemoryContextDelete(w->deferred_cxt);
	w->deferred_cxt = NULL;
	w->deferred = NULL;
	w->deferrals = 0;
	if (w->deferred_call)
		bulkops_http_free(w->deferred_call);
	w->deferred_call = NULL;
}

/* The settling result's message for rows that cannot be stored. */
static char *
unstorable(Work *w, const char *why)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *name;

	if (!w->is_export)
		return psprintf("bulkops could not record this row's outcome: %s", why);
	/* the table's name comes from the catalogs */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);
	name = destination_name(w);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return psprintf("could not write the results into %s: %s", name, why);
}

/*
 * Store res for w, or settle the batch when that cannot be done, or keep
 * res to store it later (see the top of this file).  Returns true when
 * res (or the settling result) was deferred; else w may have been freed.
 */
static bool
store(Work *w, BulkopsResult *res, bool retry)
{
	bool		finished = false;
	char	   *why = NULL;
	StoreStatus st = try_store(w, res, retry, &finished, &why);
	bool		stored = (st == STORE_OK);

	if (st == STORE_OVERRUN && ++w->overruns >= USER_CODE_OVERRUNS)
	{
		why = psprintf("%s (%d times in a row)", why, w->overruns);
		st = STORE_ERROR;
	}
	if (st == STORE_LOCKED || st == STORE_OVERRUN)
	{
		defer(w, res, why);
		return true;
	}
	if (st == STORE_ERROR)
	{
		/* the failed write changed w's receipts: they are read back first */
		BulkopsResult rest = {0};

		rest.next = BULKOPS_NEXT_FAIL;
		rest.fail_status = BULKOPS_ROW_UNKNOWN;
		rest.error = unstorable(w, why);
		st = try_store(w, &rest, false, &finished, &why);
		if (st == STORE_LOCKED || st == STORE_OVERRUN)
		{
			defer(w, &rest, why);
			return true;
		}
		if (st == STORE_ERROR)
		{
			ereport(WARNING,
					(errmsg("bulkops batch %d of job " INT64_FORMAT " is left for the next restart",
							w->batch.batch_no, w->batch.job_id)));
			finished = true;
		}
	}
	forget_deferred(w, stored);
	w->overruns = 0;
	if (finished)
	{
		bulkops_crash_point("batch_done");
		bulkops_work_free(w);
	}
	return false;
}

/*
 * Persist res for w.  Returns true when it was deferred: then w keeps a
 * copy, and the caller keeps the answer res came from (Work.deferred_call).
 */
bool
bulkops_commit_result(Work *w, BulkopsResult *res)
{
	return store(w, res, false);
}

/* Try again to store w's deferred result (at w->store_due). */
void
bulkops_store_deferred(Work *w)
{
	(void) store(w, w->deferred, true);
}
