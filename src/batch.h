/*-------------------------------------------------------------------------
 *
 * batch.h
 *	  A batch in the worker's hands (Work) and its lifecycle (batch.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_BATCH_H
#define BULKOPS_BATCH_H

#include "access/htup.h"
#include "utils/timestamp.h"

#include "bulkops.h"
#include "http.h"
#include "oauth.h"
#include "receipts.h"

/* One batch in the worker's hands; owns the memory context cxt. */
typedef struct Work
{
	MemoryContext cxt;
	MemoryContext step_cxt;		/* one request and its answer */
	BulkopsBatch batch;			/* what the dialect sees; the batch's identity
								 * and rows */
	int64		generation;		/* its partition of bulkops.batches */
	char	  **keys;			/* batch.nrows entries: each row's key, or
								 * NULL */
	BulkopsReceiptSet *receipts;	/* its rows' receipts so far, in
									 * receipts_cxt */
	MemoryContext receipts_cxt;
	bool	   *pending;		/* the same array as batch.pending, which the
								 * dialect may only read: the rows without a
								 * receipt */
	int			attempts;		/* submits counted so far */
	int			answered_attempts;	/* while an answer is stored: the attempts
									 * it answers (0: attempts) */
	const BulkopsDialect *dialect;
	char	   *target;
	bool		is_export;		/* a query job: its rows go to destination */
	BulkopsSinkDest destination;
	Oid			created_by;
	Jsonb	   *auth;
	int			max_attempts;
	int			concurrency;
	int			poll_errors;
	int			polls;			/* polls at the current step */
	bool		cancel;			/* its job was cancelled or timed out */
	bool		timed_out;		/* ... by its deadline */
	TimestampTz stop_until;		/* after a cancel: stop waiting for the remote
								 * side then */
	bool		abort_sent;		/* the dialect's abort went out (or none) */
	bool		aborting;		/* call is that abort request */
	bool		maybe_applied;	/* an earlier submit may have been applied */
	bool		in_doubt;		/* resumed submit of a non-idempotent op */
	char	   *settle_error;	/* settle at once as failed, with this */
	TimestampTz due;			/* send the next request then */
	BulkopsHttpCall *call;		/* in flight, or NULL */
	long		last_status;
	char	   *last_progress;	/* as last stored, to skip repeats */
	BulkopsOAuthUse oauth;		/* oauth.c's: its token, its API base */

	/*
	 * A result that could not be stored yet (results.c): a row or table it
	 * needs was locked by another transaction, or the destination's user code
	 * ran out of time.  It is kept here, with the answer it came from, and
	 * stored again at store_due; until then the batch sends nothing, so a
	 * batch holds at most one.  The state above (step, attempts, ...) is
	 * already the one that result leads to.
	 */
	BulkopsResult *deferred;	/* in deferred_cxt, or NULL */
	MemoryContext deferred_cxt;
	BulkopsHttpCall *deferred_call; /* the answer it may point into */
	TimestampTz store_due;		/* try to store it again then */
	int			deferrals;		/* failed tries to store it */
	int			overruns;		/* tries in a row stopped by
								 * bulkops.user_code_timeout */
	bool		pending_stale;	/* a failed store left receipts and pending
								 * wrong: reload them from the table first */
} Work;

/*
 * How long a cancelled or timed-out job's batches may wait for the remote
 * side's answers (to a request in flight, an abort, the polls after it)
 * before their rows are settled unknown: short enough that a cancel ends
 * the job within about a second however slow the remote side is.
 */
#define STOP_GRACE_MS 750

/* the batches this worker holds, in TopMemoryContext */
extern List *bulkops_works;

/* a batch ended since the loop last looked: there is room to claim */
extern bool bulkops_room_freed;

extern Work *bulkops_work_new(int64 job_id, int32 batch_no, HeapTuple row,
							  TupleDesc desc);
extern void bulkops_work_set_target(Work *w, HeapTuple row, TupleDesc desc);
extern void bulkops_work_settled(Work *w);
extern void bulkops_work_reload_pending(Work *w);
extern void bulkops_works_add(Work *w);
extern Work *bulkops_work_find(int64 job_id, int32 batch_no);
extern void bulkops_work_stop(Work *w, bool timed_out);
extern void bulkops_work_free(Work *w);

#endif							/* BULKOPS_BATCH_H */
