/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  What worker.c (the loop, sending, results) and claim.c (taking
 *	  batches from the tables) share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_WORKER_H
#define BULKOPS_WORKER_H

#include "utils/timestamp.h"

#include "bulkops.h"
#include "exec.h"
#include "ratelimit.h"
#include "http.h"
#include "oauth.h"

/* One batch in the worker's hands; owns the memory context cxt. */
typedef struct Work
{
	MemoryContext cxt;
	MemoryContext step_cxt;		/* one request and its answer */
	BulkopsBatchRef ref;		/* what receipts.c needs */
	BulkopsBatch batch;			/* what the dialect sees */
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
	TimestampTz stop_until;		/* after a cancel: stop waiting for the
								 * remote side then */
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
	 * needs was locked by another transaction, or the destination's user
	 * code ran out of time.  It is kept here, with the answer it came from,
	 * and stored again at store_due; until then the batch sends nothing, so
	 * a batch holds at most one.  The state above (step, attempts, ...) is
	 * already the one that result leads to.
	 */
	BulkopsResult *deferred;	/* in deferred_cxt, or NULL */
	MemoryContext deferred_cxt;
	BulkopsHttpCall *deferred_call; /* the answer it may point into */
	TimestampTz store_due;		/* try to store it again then */
	int			deferrals;		/* failed tries to store it */
	int			overruns;		/* tries in a row stopped by
								 * bulkops.user_code_timeout */
	bool		pending_stale;	/* a failed store left ref.pending wrong:
								 * reload it from the receipts first */
} Work;

/* the batches held, in TopMemoryContext */
extern List *bulkops_works;

/* worker.c */
extern void bulkops_works_add(Work *w);
extern void bulkops_work_stop(Work *w, bool timed_out);
extern void bulkops_work_free(Work *w);

/* results.c */
extern bool bulkops_commit_result(Work *w, BulkopsResult *res);
extern void bulkops_store_deferred(Work *w);

/* retention.c */
extern void bulkops_purge_expired(void);

/* claim.c */
extern bool bulkops_claim(void);
extern bool bulkops_recover(void);
extern int	bulkops_lane_share(int concurrency);
extern void bulkops_refresh_cancels(void);
extern void bulkops_load_pending(Work *w);

#endif							/* BULKOPS_WORKER_H */
