/*-------------------------------------------------------------------------
 *
 * plan.c
 *	  What a batch does next after an answer, decided in memory before the
 *	  transaction that stores the answer: the next step and when it is due,
 *	  whether a retry is allowed and what it costs in attempts, and the
 *	  hold on the whole target after a rate or usage limit.
 *
 * Rules:
 * - Nothing here sends or waits: worker.c acts on what is decided here.
 * - A repeat of what may have been applied is allowed only for operations
 *	 the dialect calls idempotent; otherwise the rows become "unknown".
 * - A limit uses up no attempt: the target is held for every worker
 *	 (ratelimit.c, in shared memory), the hold saved in its own short
 *	 transaction (bulkops.target_state) when it begins or grows, and read
 *	 back when a worker starts (bulkops_restore_holds).
 * - Memory: what outlives the answer goes into the Work's contexts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "catalog.h"
#include "exec.h"
#include "plan.h"
#include "ratelimit.h"
#include "stats.h"

static void save_hold(const char *target, TimestampTz until, int status);
static long poll_delay_ms(Work *w);
static void set_memo(Work *w, void *memo);

/*
 * The holds saved before this worker started: a restart must not send to
 * a target before the time it asked for.  Without them (an error, said in
 * the log) the worker only risks more refusals.
 */
void
bulkops_restore_holds(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		BulkopsSavedHold *holds;
		int			n;
		int			i;

		bulkops_begin_tx("reading targets' holds");
		holds = bulkops_catalog_target_holds(&n);
		for (i = 0; i < n; i++)
			bulkops_target_restore_hold(holds[i].target, holds[i].until,
										holds[i].http_status);
		bulkops_commit_tx();
	}
	PG_CATCH();
	{
		bulkops_abort_tx(cxt);
	}
	PG_END_TRY();
}

/* The longest Retry-After w's job honours (option retry_after_max). */
long
bulkops_retry_after_max_ms(Work *w)
{
	return 1000L * bulkops_opt_int(w->batch.options, "retry_after_max",
								   BULKOPS_RETRY_AFTER_MAX_DEFAULT);
}

/*
 * w's target refused its request for a rate or usage limit: hold every
 * request to the target, in every worker, and w until the hold ends.  The
 * dialect's delay, else Retry-After up to the job's retry_after_max, else
 * a backoff (ratelimit.c).  A hold that began or grew is saved first, so
 * that a restart honours it.  The error says until when.
 */
void
bulkops_hold_target(Work *w, long status, BulkopsResult *res, long retry_after_ms)
{
	bool		save;
	TimestampTz until = bulkops_target_limited(w->target, (int) status,
											   res->delay_ms, retry_after_ms,
											   bulkops_retry_after_max_ms(w), &save);

	if (save)
		save_hold(w->target, until, (int) status);
	w->due = until;
	if (res->delay_ms <= 0)
	{
		MemoryContext old = MemoryContextSwitchTo(w->step_cxt);

		res->error = psprintf("%s; the target's requests are held until %s",
							  res->error, timestamptz_to_str(until));
		MemoryContextSwitchTo(old);
	}
}

/* Write a target's hold in its own short transaction. */
static void
save_hold(const char *target, TimestampTz until, int status)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		bulkops_begin_tx("saving a target's hold");
		bulkops_catalog_save_target_hold(target, until, status);
		bulkops_commit_tx();
	}
	PG_CATCH();
	{
		/* the hold stands in shared memory all the same */
		bulkops_abort_tx(cxt);
	}
	PG_END_TRY();
}

/*
 * Decide the next state in memory (before the transaction that persists
 * it): steps, attempts, and whether a retry is allowed at all.
 */
void
bulkops_plan_next(Work *w, BulkopsResult *res, bool not_applied, long retry_after_ms)
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
			w->batch.step_data = res->step_data ? pstrdup(res->step_data) : NULL;
			set_memo(w, res->memo);
			w->poll_errors = 0;
			w->due = TimestampTzPlusMilliseconds(now, res->delay_ms > 0 ? res->delay_ms
												 : poll_delay_ms(w));
			break;
		case BULKOPS_NEXT_RESUBMIT:
			if (res->maybe_applied && !w->dialect->idempotent[w->batch.op])
			{
				res->next = BULKOPS_NEXT_FAIL;
				res->fail_status = BULKOPS_ROW_UNKNOWN;
				res->error = psprintf("%s; the rows may have been applied, and %s is not safe to repeat",
									  res->error ? res->error : "the remote task was lost",
									  bulkops_op_name(w->batch.op));
				break;
			}
			if (res->maybe_applied)
				w->maybe_applied = true;
			w->batch.step = 0;
			w->batch.remote_id = NULL;
			/* the dialect's note for the submits to come (dialect.h) */
			w->batch.step_data = res->step_data ? pstrdup(res->step_data) : NULL;
			set_memo(w, NULL);
			if (res->counts_attempt)
			{
				if (w->attempts >= w->max_attempts)
				{
					res->next = BULKOPS_NEXT_FAIL;
					res->error = psprintf("gave up after %d attempts: %s", w->attempts,
										  res->error ? res->error : "resubmission needed");
					break;
				}
				w->attempts++;
			}
			w->due = now;
			break;
		case BULKOPS_NEXT_RETRY:
			if (res->limited)
			{
				/*
				 * Refused for a rate or usage limit, nothing applied: waiting
				 * is the cure, and however long it takes is no fault of the
				 * batch, so it uses up neither attempts nor poll errors.  w
				 * is due when its target's hold ends (bulkops_hold_target);
				 * the job's deadline bounds the wait.
				 */
				break;
			}
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
				w->due = TimestampTzPlusMilliseconds(now, res->delay_ms > 0 ? res->delay_ms
													 : bulkops_backoff_ms(w->poll_errors, retry_after_ms));
				break;
			}
			/* a submit that only opens a remote job never applies a row */
			if (w->dialect->submit_is_safe)
				not_applied = true;
			if (!not_applied && !w->dialect->idempotent[w->batch.op])
			{
				res->next = BULKOPS_NEXT_FAIL;
				res->fail_status = BULKOPS_ROW_UNKNOWN;
				res->error = psprintf("%s; the request may have been applied, and %s is not safe to repeat",
									  res->error, bulkops_op_name(w->batch.op));
				break;
			}
			if (!not_applied)
				w->maybe_applied = true;
			if (w->attempts >= w->max_attempts)
			{
				res->next = BULKOPS_NEXT_FAIL;
				res->error = psprintf("gave up after %d attempts: %s",
									  w->attempts, res->error);
				break;
			}
			w->attempts++;
			w->due = TimestampTzPlusMilliseconds(now, res->delay_ms > 0 ? res->delay_ms
												 : bulkops_backoff_ms(w->attempts - 1, retry_after_ms));
			break;
		case BULKOPS_NEXT_DONE:
		case BULKOPS_NEXT_FAIL:
			break;
	}
	MemoryContextSwitchTo(old);
	bulkops_stats_planned(w->target, res);
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

/* What the dialect keeps between steps (BulkopsBatch.memo). */
static void
set_memo(Work *w, void *memo)
{
	w->batch.memo = memo;
	if (memo == NULL)
		MemoryContextReset(w->batch.memo_cxt);
}
