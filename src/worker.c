/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The per-database worker: claims batches, drives each through its
 *	  dialect's steps over HTTP, and writes what happened.  A database may
 *	  have several (bulkops.workers_per_database), each a "lane" taking
 *	  batches from the same queue.
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
 *	 attempt is counted, and the batch marked maybe_applied, before it is
 *	 sent.  On start, batches this lane left "active" in a crash are
 *	 resumed: a poll is simply repeated; a submit is repeated unless it was
 *	 marked and is not safe to repeat, in which case its rows become
 *	 "unknown".
 * - At most this lane's share of `concurrency` batches per target are
 *	 held, so memory is bounded by targets x concurrency x batch size;
 *	 twice that while results wait to be stored, at most one per batch.
 * - A rate or usage limit (429, 503, a dialect's) holds the whole target,
 *	 for every worker of the database (plan.c, ratelimit.c), and uses up no
 *	 attempt: its batches wait, and the worker drives the other targets
 *	 meanwhile.  A hold is saved (bulkops.target_state) when it begins or
 *	 grows, and read back when the worker starts.
 * - An error while handling one batch is reported and settles that batch;
 *	 it never stops the worker or other jobs.
 * - No statement waits long for a lock (LOCK_TIMEOUT_MS), and none waits at
 *	 all for a job another transaction holds: a role that keeps its job's
 *	 row or its export's table locked, or whose triggers run long, delays
 *	 only that job.  Its batches are skipped or their results kept in
 *	 memory (results.c) and tried again later, while the worker goes on
 *	 driving everyone else's requests.
 *
 * The file reads top-down: the loop, then sending (start_due and what it
 * calls), then answers (handle_answer and what it calls).  Below it, and
 * never calling back up: claim.c takes batches, plan.c decides what a
 * batch does next after an answer (steps, attempts, holds), results.c
 * stores what an answer meant, batch.c is a held batch's lifecycle (a Work, which owns a
 * memory context under TopMemoryContext, deleted when the batch is done),
 * catalog.c every statement on bulkops' tables, exec.c transactions,
 * http.c libcurl, oauth_cache.c tokens, ratelimit.c pacing, retention.c
 * partitions and the purge, stats.c and counters.c what monitoring reads.
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
#include "mb/pg_wchar.h"
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
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "catalog.h"
#include "claim.h"
#include "counters.h"
#include "plan.h"
#include "exec.h"
#include "ratelimit.h"
#include "results.h"
#include "retention.h"
#include "stats.h"

static TimestampTz next_claim = 0;

/*
 * After a claim skipped a job another transaction held, the next claim
 * comes this soon, once: another lane's transaction is over by then.
 */
#define CLAIM_RETRY_MS 20

static void worker_exit(int code, Datum arg);
static bool extension_ready(void);
static long next_wait_ms(void);
static void start_due(void);
static void send_request(Work *w, bool abort);
static bool mark_maybe_applied(Work *w);
static void give_up(Work *w);
static void settle_stopped(Work *w);
static void settle_now(Work *w, BulkopsRowStatus status, const char *error);
static const char *stop_reason(Work *w);
static void handle_answer(Work *w, BulkopsHttpCall *call);
static void abort_answered(Work *w, BulkopsHttpCall *call);
static void dialect_answer(Work *w, BulkopsHttpCall *call, BulkopsResult *res);
static bool same_text(const char *a, const char *b);

/* ---- the loop: claim -> send -> answer -> store, again ---- */

static void
worker_exit(int code, Datum arg)
{
	/* the token fetches this worker started will never end */
	bulkops_oauth_forget_fetches();
	bulkops_worker_unregister_self();
}

void
bulkops_worker_main(Datum arg)
{
	char		dbname[NAMEDATALEN];
	bool		woken = true;
	bool		recovered;
	bool		claim_retried = false;
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	bulkops_lane = DatumGetInt32(arg);
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	/* before any statement: the database's own settings may not apply */
	bulkops_fix_session_settings();
	bulkops_worker_register_self(MyDatabaseId, bulkops_lane);
	before_shmem_exit(worker_exit, (Datum) 0);
	bulkops_http_init();
	if (bulkops_lane == 0)
		ereport(LOG, (errmsg("bulkops worker started for database \"%s\"", dbname)));
	else
		ereport(LOG, (errmsg("bulkops worker %d started for database \"%s\"",
							 bulkops_lane, dbname)));

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
	bulkops_restore_holds();
	recovered = bulkops_recover();

	for (;;)
	{
		BulkopsHttpCall *call;
		bool		room;

		/* whatever one turn of the loop allocates dies with it */
		MemoryContextSwitchTo(loop_cxt);
		MemoryContextReset(loop_cxt);
		bulkops_worker_beat();
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		room = bulkops_room_freed;
		bulkops_room_freed = false;
		if (woken || GetCurrentTimestamp() >= next_claim)
		{
			bool		skipped;

			if (!extension_ready())
				proc_exit(0);	/* dropped (or not at our version): the
								 * launcher starts a fresh one */
			bulkops_refresh_cancels();
			/* batches of jobs another transaction held at the start */
			if (!recovered)
				recovered = bulkops_recover();
			skipped = bulkops_claim();
			if (bulkops_lane == 0)
			{
				bulkops_retention_tick();
				bulkops_counters_tick();
			}
			claim_retried = skipped && !claim_retried;
			next_claim = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 claim_retried
													 ? Min(CLAIM_RETRY_MS, bulkops_poll_interval_ms)
													 : bulkops_poll_interval_ms);
		}
		else if (room)
		{
			/*
			 * Only a claim: a cancel wakes us, and deadlines are looked at on
			 * the poll_interval tick.
			 */
			(void) bulkops_claim();
		}
		start_due();
		woken = bulkops_http_wait(next_wait_ms());
		while ((call = bulkops_http_next_done()) != NULL)
			if (!bulkops_oauth_call_done(call))
				handle_answer((Work *) call->arg, call);
	}
}

/*
 * Whether bulkops is installed in this database at the version this
 * library's statements are written for.  After an upgrade of the library,
 * until ALTER EXTENSION bulkops UPDATE has run, every claim would fail on
 * a column the old schema lacks; the worker waits instead, and says why
 * once.
 */
static bool
extension_ready(void)
{
	static bool said = false;
	bool		ok = false;
	bool		installed;
	char	   *version = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = bulkops_extension_info(NULL, &version);
	if (installed)
	{
		ok = version != NULL && strcmp(version, BULKOPS_SCHEMA_VERSION) == 0;
		if (!ok && !said)
			ereport(LOG,
					(errmsg("bulkops worker: the bulkops extension in this database is version %s, this library needs %s",
							version ? version : "(none)", BULKOPS_SCHEMA_VERSION),
					 errhint("Run ALTER EXTENSION bulkops UPDATE; the worker starts once it has.")));
		said = !ok;
	}
	CommitTransactionCommand();
	return ok;
}

static long
next_wait_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = bulkops_room_freed ? 0 : next_claim;
	ListCell   *lc;
	long		secs;
	int			usecs;

	foreach(lc, bulkops_works)
	{
		Work	   *w = lfirst(lc);

		if (w->deferred)
		{
			if (w->store_due < next)
				next = w->store_due;
			continue;
		}
		if (w->call == NULL && w->due < next)
			next = w->due;
		if (w->cancel && w->stop_until < next)
			next = w->stop_until;
	}
	if (next <= now)
		return 0;
	TimestampDifference(now, next, &secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
}

/* ---- sending ---- */

/* Start every due request; settle the works that need no request. */
static void
start_due(void)
{
	TimestampTz now = GetCurrentTimestamp();
	List	   *snapshot = list_copy(bulkops_works);
	ListCell   *lc;

	foreach(lc, snapshot)
	{
		Work	   *w = lfirst(lc);

		if (w->deferred)
		{
			/*
			 * Nothing else happens to the batch until its result is stored; a
			 * stopped job's grace for the remote side starts after that.
			 */
			if (w->cancel)
				w->stop_until = Max(w->stop_until,
									TimestampTzPlusMilliseconds(now, STOP_GRACE_MS));
			if (now >= w->store_due)
				bulkops_store_deferred(w);
			continue;
		}
		if (w->settle_error && w->call == NULL)
			settle_now(w, BULKOPS_ROW_FAILED, w->settle_error);
		else if (w->cancel && now >= w->stop_until &&
				 (w->call != NULL || w->batch.step > 0))
			give_up(w);
		else if (w->call != NULL)
			continue;
		else if (w->in_doubt)
			settle_now(w, BULKOPS_ROW_UNKNOWN,
					   "the worker stopped while this row's request was in flight; "
					   "the remote side may or may not have applied it");
		else if (w->cancel && w->batch.step == 0)
			settle_stopped(w);
		else
		{
			/* one abort per running task, not held back by rate_limit */
			if (w->cancel && !w->abort_sent)
				send_request(w, true);
			if (w->call == NULL && w->due <= now)
			{
				/* a target that asked to be left alone, by any worker */
				TimestampTz held = bulkops_target_held_until(w->target);
				double		rate = bulkops_opt_real(w->batch.options, "rate_limit", 0) *
				Max(bulkops_lane_share(w->concurrency), 1) / w->concurrency;
				long		wait_ms;

				if (held > now)
				{
					w->due = held;
					continue;
				}
				wait_ms = rate > 0 ? bulkops_rate_take(w->target, rate) : 0;
				if (wait_ms > 0)
					w->due = TimestampTzPlusMilliseconds(now, wait_ms);
				else
					send_request(w, false);
			}
		}
	}
	list_free(snapshot);
}

/*
 * Send the batch's next request, or with abort its dialect's abort request
 * (once; nothing is sent when the dialect has none for this step).
 */
static void
send_request(Work *w, bool abort)
{
	BulkopsRequest req = {0};
	List	   *volatile auth = NIL;
	BulkopsHttpOptions opts;
	char	   *volatile error = NULL;
	volatile bool wanted = true;
	MemoryContext old;

	if (abort && w->dialect->build_abort == NULL)
	{
		w->abort_sent = true;
		return;
	}

	/* what the last request and its answer left behind is no longer needed */
	MemoryContextReset(w->step_cxt);
	old = MemoryContextSwitchTo(w->step_cxt);

	/* an OAuth token first: it may also change the API base (batch.url) */
	if (bulkops_auth_is_oauth(w->auth))
	{
		List	   *headers = NIL;
		char	   *why = NULL;

		switch (bulkops_oauth_prepare(w, &headers, &why))
		{
			case BULKOPS_OAUTH_READY:
				auth = headers;
				break;
			case BULKOPS_OAUTH_WAIT:
				MemoryContextSwitchTo(old);
				return;
			case BULKOPS_OAUTH_FAIL:
				MemoryContextSwitchTo(old);
				/* a remote task already exists: its rows' fate is unknown */
				settle_now(w, w->batch.step == 0 ? BULKOPS_ROW_FAILED
						   : BULKOPS_ROW_UNKNOWN, why);
				return;
		}
	}

	/* once the token is there (the abort waits for it like any request) */
	if (abort)
		w->abort_sent = true;
	PG_TRY();
	{
		if (abort)
			wanted = w->dialect->build_abort(&w->batch, &req);
		else
			w->dialect->build_request(&w->batch, &req);
		if (wanted)
			auth = list_concat(auth, bulkops_auth_headers(w->auth, w->target));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(w->step_cxt);
		edata = CopyErrorData();
		/* the log gets its details (a secret file's path), the rows not */
		EmitErrorReport();
		FlushErrorState();
		error = pstrdup(edata->message);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	if (error && abort)
	{
		/* the polls that follow still learn the outcome */
		ereport(LOG,
				(errmsg("bulkops could not abort remote task %s of job " INT64_FORMAT ": %s",
						w->batch.remote_id, w->batch.job_id, error)));
		return;
	}
	if (error)
	{
		settle_now(w, BULKOPS_ROW_FAILED, error);
		return;
	}
	if (!wanted)
		return;

	bulkops_http_options(w->batch.options, &opts);
	/* a submit that only opens a remote job never applies a row */
	if (!abort && w->batch.step == 0 && !w->dialect->submit_is_safe &&
		!w->maybe_applied && !mark_maybe_applied(w))
	{
		w->due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
		return;
	}
	if (!abort)
		bulkops_crash_point(w->batch.step == 0 ? "submit" : "poll");
	w->call = bulkops_http_start(&req, auth, &opts, w);
	bulkops_stats_request(w->target, false);
	if (w->batch.step > 0 && !abort)
		w->call->crash_point = "fetch";
	w->aborting = abort;
}

/*
 * Say, durably, that w's rows may be applied from now on, as its submit is
 * about to leave.  Only a batch so marked is in doubt after a crash: one
 * that was claimed, or is waiting to retry after a 429, was never applied
 * and may be sent.  Returns false if that could not be recorded (then
 * nothing is sent).
 */
static bool
mark_maybe_applied(Work *w)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		bulkops_begin_tx("marking a submit");
		bulkops_catalog_mark_maybe_applied(w->batch.job_id, w->batch.batch_no,
										   w->generation);
		bulkops_commit_tx();
	}
	PG_CATCH();
	{
		bulkops_abort_tx(cxt);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * A stopped batch's grace is over: stop waiting for the remote side, and
 * say honestly that its pending rows may or may not have been applied.
 */
static void
give_up(Work *w)
{
	char	   *msg;

	if (w->call)
	{
		bulkops_http_abandon(w->call);
		w->call = NULL;
		w->aborting = false;
	}
	if (w->batch.step == 0)
		msg = psprintf("%s while this row's request was in flight; "
					   "the remote side may or may not have applied it",
					   stop_reason(w));
	else
		msg = psprintf("%s while remote task %s was running%s; "
					   "its outcome was not learned in time",
					   stop_reason(w),
					   w->batch.remote_id ? w->batch.remote_id : "(without an id)",
					   w->dialect && w->dialect->build_abort ? " (abort requested)" : "");
	settle_now(w, BULKOPS_ROW_UNKNOWN, msg);
}

/* Rows of a stopped job that were not sent (again). */
static void
settle_stopped(Work *w)
{
	if (w->maybe_applied)
		settle_now(w, BULKOPS_ROW_UNKNOWN,
				   psprintf("%s before this row was sent again; an earlier attempt "
							"may have been applied", stop_reason(w)));
	else
		settle_now(w, BULKOPS_ROW_CANCELLED,
				   w->timed_out ? "the job's deadline passed before this row was sent"
				   : "cancelled by bulkops.cancel()");
}

static void
settle_now(Work *w, BulkopsRowStatus status, const char *error)
{
	BulkopsResult res = {0};

	res.next = BULKOPS_NEXT_FAIL;
	res.fail_status = status;
	res.error = pstrdup(error);
	bulkops_commit_result(w, &res);
}

static const char *
stop_reason(Work *w)
{
	return w->timed_out ? "the job's deadline passed" : "the job was cancelled";
}

/* ---- answers ---- */

static void
handle_answer(Work *w, BulkopsHttpCall *call)
{
	BulkopsResult res = {0};
	bool		not_applied = false;
	int			old_step = w->batch.step;
	const char *old_remote_id = w->batch.remote_id;
	bool		new_step;
	bool		deferred;
	MemoryContext old;

	bulkops_stats_answer(w->target, call);
	if (w->aborting)
	{
		abort_answered(w, call);
		return;
	}
	bulkops_crash_point(old_step == 0 ? "submit_answered" : "poll_answered");
	old = MemoryContextSwitchTo(w->step_cxt);
	w->call = NULL;
	/* a 401 to an OAuth token: a new token, and the same request again */
	if (call->error == NULL && bulkops_oauth_replay(w, call->status))
	{
		MemoryContextSwitchTo(old);
		bulkops_http_free(call);
		return;
	}
	w->last_status = call->status;
	if (call->refused)
	{
		/* final, as repeating cannot help; but what was sent may have acted */
		res.next = BULKOPS_NEXT_FAIL;
		if (w->batch.step > 0)
		{
			res.fail_status = BULKOPS_ROW_UNKNOWN;
			res.error = psprintf("%s; the outcome of remote task %s is unknown",
								 call->error,
								 w->batch.remote_id ? w->batch.remote_id : "(none)");
		}
		else if (!call->nothing_sent)
		{
			res.fail_status = BULKOPS_ROW_UNKNOWN;
			res.error = psprintf("%s; the remote side may have applied the request",
								 call->error);
		}
		else
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
		/* the remote side's limit, not a failure of the request */
		res.next = BULKOPS_NEXT_RETRY;
		res.limited = true;
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

	/* a limit holds the whole target; any other answer may end a hold */
	if (res.next == BULKOPS_NEXT_RETRY && res.limited)
		bulkops_hold_target(w, call->status, &res,
							call->has_retry_after ? call->retry_after_ms : -1);
	else if (call->error == NULL)
		bulkops_target_answered(w->target, (int) call->status);

	/* a remote task still running, as the last poll saw it: nothing to store */
	if (res.next == BULKOPS_NEXT_STEP && res.step == w->batch.step &&
		res.outcomes == NIL && res.error == NULL && res.page == NULL &&
		same_text(res.remote_id, w->batch.remote_id) &&
		same_text(res.step_data, w->batch.step_data))
	{
		if (res.progress && w->last_progress &&
			strcmp(res.progress, w->last_progress) == 0)
			res.progress = NULL;
		if (res.progress == NULL)
		{
			bulkops_plan_next(w, &res, not_applied, -1);
			bulkops_http_free(call);
			return;
		}
	}
	if (res.progress)
	{
		MemoryContext o = MemoryContextSwitchTo(w->cxt);

		if (w->last_progress)
			pfree(w->last_progress);
		w->last_progress = pstrdup(res.progress);
		w->batch.progress = w->last_progress;
		MemoryContextSwitchTo(o);
	}

	/*
	 * Rows this answer settles were sent in the attempt it answers, even when
	 * the rest go out again as the next one (bulkops_plan_next counts it).
	 */
	w->answered_attempts = w->attempts;
	bulkops_plan_next(w, &res, not_applied, !call->has_retry_after ? -1
					  : Min(call->retry_after_ms, bulkops_retry_after_max_ms(w)));
	new_step = res.next == BULKOPS_NEXT_STEP &&
		(w->batch.step != old_step ||
		 (w->batch.remote_id == NULL) != (old_remote_id == NULL) ||
		 (old_remote_id && strcmp(w->batch.remote_id, old_remote_id) != 0));
	/* the result may point into the answer (a query job's page) */
	deferred = bulkops_commit_result(w, &res);
	w->answered_attempts = 0;
	if (deferred && res.page != NULL)
		w->deferred_call = call;	/* kept as long as the page is */
	else
		bulkops_http_free(call);
	if (new_step && !deferred)
		bulkops_crash_point("step_saved");
}

/*
 * The answer to an abort request changes nothing by itself: the polls that
 * follow learn what the remote side did.
 */
static void
abort_answered(Work *w, BulkopsHttpCall *call)
{
	w->call = NULL;
	w->aborting = false;
	if (call->error || call->status < 200 || call->status >= 300)
		ereport(LOG,
				(errmsg("bulkops could not abort remote task %s of job " INT64_FORMAT ": %s",
						w->batch.remote_id ? w->batch.remote_id : "(none)",
						w->batch.job_id,
						call->error ? call->error
						: psprintf("HTTP %ld", call->status))));
	bulkops_http_free(call);
	w->due = GetCurrentTimestamp();
}

/* The dialect's reading of an answer, with its errors turned into a retry. */
static void
dialect_answer(Work *w, BulkopsHttpCall *call, BulkopsResult *res)
{
	MemoryContext old = MemoryContextSwitchTo(w->step_cxt);
	BulkopsResponse resp;

	resp.status = call->status;
	resp.body = call->body.data;
	resp.len = call->body.len;
	resp.content_type = call->content_type;
	resp.headers = call->resp_headers;
	resp.stream_state = call->stream_state;
	PG_TRY();
	{
		w->dialect->handle_response(&w->batch, &resp, res);
		bulkops_check_stored_text(res);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(w->step_cxt);
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

/* Are a and b the same string, or both NULL? */
static bool
same_text(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}
