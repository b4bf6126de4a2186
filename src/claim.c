/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  Taking batches from the tables into the worker: claiming runnable
 *	  ones up to each target's concurrency, resuming those a crash left
 *	  active, and noticing cancelled jobs.
 *
 * Every function here runs its own short transaction (bulkops_begin_tx);
 * its statements are catalog.c's, and the Works it makes are batch.c's,
 * allocated in their own contexts.  A claim
 * whose transaction fails forgets everything it loaded: the worker never
 * holds a batch the tables do not say it holds.
 *
 * Nothing here waits for a job another transaction holds: a role may keep
 * its job's row locked for as long as it likes (bulkops.cancel() in a
 * transaction left open), and the worker serves everyone else meanwhile.
 * Such a job is locked with SKIP LOCKED before anything of it is touched,
 * and skipped this time if that fails; claims, recovery and deadline
 * sweeps come back to it on a later tick.  Each job is claimed and swept
 * in a subtransaction of its own, so that one job's error does not undo
 * the others'.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "claim.h"
#include "exec.h"

/*
 * Take batch (job_id, batch_no) into the worker: mark it active (counting
 * a submit attempt at step 0) and load it, with its target as it is now.
 * Runs inside a transaction; NULL when the batch is not (any more) there
 * to take.
 */
static Work *
take_batch(int64 job_id, int32 batch_no, int64 generation, bool resume)
{
	HeapTuple	row;
	TupleDesc	desc;
	Work	   *w;

	if (!bulkops_catalog_take_batch(job_id, batch_no, generation, bulkops_lane,
									resume, &row, &desc))
		return NULL;
	w = bulkops_work_new(job_id, batch_no, row, desc);
	if (!bulkops_catalog_target_now(w->target, &row, &desc))
		row = NULL;
	bulkops_work_set_target(w, row, desc);
	bulkops_catalog_job_running(job_id);
	return w;
}

/*
 * This worker's part of a target's concurrency.  The database's workers
 * split it, the first ones taking the remainder, so that together they
 * never hold more batches of a target than its concurrency; a worker whose
 * part is 0 leaves that target to the others.
 */
int
bulkops_lane_share(int concurrency)
{
	int			n = bulkops_workers_per_database;

	return concurrency / n + (bulkops_lane < concurrency % n ? 1 : 0);
}

/*
 * How many of this worker's share of target's concurrency its batches
 * take, those just taken included.  A batch whose result waits to be
 * stored (Work.deferred) sends nothing, so it takes no slot: a job whose
 * row another transaction holds must not keep the other jobs of its target
 * waiting.  Only up to a share's worth, though: beyond that, deferred
 * batches take slots again, so that the worker never holds more than twice
 * its share of a target's batches, each with at most one result.
 */
static int
slots_taken(const char *target, int share, List *taken)
{
	ListCell   *lc;
	int			sending = 0;
	int			deferred = 0;

	foreach(lc, bulkops_works)
	{
		Work	   *w = lfirst(lc);

		if (strcmp(w->target, target) != 0)
			continue;
		if (w->deferred)
			deferred++;
		else
			sending++;
	}
	foreach(lc, taken)
	{
		if (strcmp(((Work *) lfirst(lc))->target, target) == 0)
			sending++;
	}
	return sending + Max(deferred - share, 0);
}

/* Is a result of job waiting to be stored? */
static bool
job_deferred(int64 job_id)
{
	ListCell   *lc;

	foreach(lc, bulkops_works)
	{
		if (((Work *) lfirst(lc))->batch.job_id == job_id &&
			((Work *) lfirst(lc))->deferred)
			return true;
	}
	return false;
}

/* One claim: its candidates, and the job being claimed (from .. to - 1). */
typedef struct ClaimRound
{
	int64	   *jobs;
	int32	   *nos;
	int64	   *generations;
	char	  **targets;
	int		   *limits;
	uint64		from;
	uint64		to;
	List	   *taken;			/* of Work, in TopMemoryContext */
	bool		skipped;		/* a job was held by another transaction */
} ClaimRound;

/* Take what the target's concurrency allows of one job's candidates. */
static void
claim_job(void *arg)
{
	ClaimRound *r = arg;
	uint64		i;

	if (!bulkops_catalog_lock_job(r->jobs[r->from], true))
	{
		r->skipped = true;
		return;
	}
	for (i = r->from; i < r->to; i++)
	{
		Work	   *w;

		if (slots_taken(r->targets[i], r->limits[i], r->taken) >= r->limits[i])
			continue;
		w = take_batch(r->jobs[i], r->nos[i], r->generations[i], false);
		if (w)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			r->taken = lappend(r->taken, w);
			MemoryContextSwitchTo(old);
		}
	}
}

/*
 * Claim runnable batches, up to each target's concurrency.  Candidates are
 * read without their bodies; only the chosen ones are loaded.  Returns
 * true when a job was skipped because another transaction held it.
 */
bool
bulkops_claim(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	BulkopsCandidate *cands;
	int			ncands;
	uint64		i;
	uint64		n;

	/* not on the stack: the error path reads what the loop changed */
	ClaimRound *r = palloc0(sizeof(ClaimRound));

	PG_TRY();
	{
		bulkops_begin_tx("claiming batches");
		cands = bulkops_catalog_claim_candidates(&ncands);
		n = (uint64) ncands;
		r->jobs = palloc(sizeof(int64) * Max(n, 1));
		r->nos = palloc(sizeof(int32) * Max(n, 1));
		r->generations = palloc(sizeof(int64) * Max(n, 1));
		r->targets = palloc(sizeof(char *) * Max(n, 1));
		r->limits = palloc(sizeof(int) * Max(n, 1));
		for (i = 0; i < n; i++)
		{
			r->jobs[i] = cands[i].job_id;
			r->nos[i] = cands[i].batch_no;
			r->generations[i] = cands[i].generation;
			r->targets[i] = cands[i].target;
			r->limits[i] = cands[i].concurrency;
			if (r->limits[i] <= 0)
				r->limits[i] = bulkops_concurrency;
			r->limits[i] = bulkops_lane_share(r->limits[i]);
		}
		/* job by job: the candidates come ordered by job */
		for (i = 0; i < n; i = r->to)
		{
			int			before = list_length(r->taken);

			r->from = i;
			for (r->to = i + 1; r->to < n && r->jobs[r->to] == r->jobs[i]; r->to++)
				;

			/*
			 * A job with a result that could not be stored yet gets no more
			 * batches until it is: its row is likely still held, and each
			 * batch would only add another result to keep.  Nor is a job
			 * locked for nothing: its batches share its target, which may be
			 * full (and each job locked takes a subtransaction's xid).
			 */
			if (job_deferred(r->jobs[i]) ||
				slots_taken(r->targets[i], r->limits[i], r->taken) >= r->limits[i])
				continue;
			if (!bulkops_in_subxact(claim_job, r))
			{
				/* that job's claim was rolled back: forget what it loaded */
				while (list_length(r->taken) > before)
				{
					MemoryContextDelete(((Work *) llast(r->taken))->cxt);
					r->taken = list_delete_last(r->taken);
				}
			}
		}
		bulkops_commit_tx();
	}
	PG_CATCH();
	{
		ListCell   *lc;

		bulkops_abort_tx(cxt);
		/* the claim was rolled back: forget what it loaded */
		foreach(lc, r->taken)
			MemoryContextDelete(((Work *) lfirst(lc))->cxt);
		list_free(r->taken);
		return false;
	}
	PG_END_TRY();
	{
		ListCell   *lc;

		foreach(lc, r->taken)
			bulkops_works_add(lfirst(lc));
		if (r->taken != NIL)
			bulkops_crash_point("claim");
		list_free(r->taken);
	}
	return r->skipped;
}

/*
 * After a restart: batches left active by this lane's previous worker (the
 * first lane also takes those of lanes that no longer exist).  Polls are
 * repeated; submits too, unless one may have reached the remote side
 * (maybe_applied) and repeating it could apply a row twice.  A batch put
 * back in the queue keeps maybe_applied, so that a cancel before it is
 * sent again says "unknown", not "cancelled".  The batches of a job another
 * transaction holds are left for a later call; returns true when none was
 * left (or, after an error, false: the worker calls again).
 */
bool
bulkops_recover(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool done = true;

	PG_TRY();
	{
		BulkopsActiveBatch *active;
		int			n;
		int			i;
		int			resumed = 0;

		bulkops_begin_tx("resuming batches");
		active = bulkops_catalog_active_batches(bulkops_lane,
												bulkops_workers_per_database, &n);
		for (i = 0; i < n; i++)
		{
			BulkopsActiveBatch *a = &active[i];
			const BulkopsDialect *d = bulkops_find_dialect(a->dialect, true);

			/* resumed by an earlier call */
			if (bulkops_work_find(a->job_id, a->batch_no))
				continue;
			if (!bulkops_catalog_lock_job(a->job_id, true))
			{
				done = false;
				continue;
			}
			resumed++;
			/* in doubt: a submit that may have reached the remote side */
			if (a->step == 0 && a->maybe_applied && d != NULL &&
				!d->idempotent[a->op] && !d->submit_is_safe)
			{
				Work	   *w = take_batch(a->job_id, a->batch_no, a->generation,
										   true);

				if (w)
				{
					w->in_doubt = true;
					bulkops_works_add(w);
				}
			}
			else
				bulkops_catalog_requeue_batch(a->job_id, a->batch_no,
											  a->generation);
		}
		bulkops_crash_point("recover");
		bulkops_commit_tx();
		if (resumed > 0)
			ereport(LOG, (errmsg("bulkops worker resumed %d batches", resumed)));
	}
	PG_CATCH();
	{
		bulkops_abort_tx(cxt);
		done = false;
	}
	PG_END_TRY();
	return done;
}

/* Time out one job, unless another transaction holds it: then next tick. */
static void
expire_job(void *arg)
{
	int64		id = *(int64 *) arg;

	if (!bulkops_catalog_lock_job(id, true))
		return;
	if (bulkops_catalog_cancel_queued(id, true))
		ereport(LOG,
				(errmsg("bulkops job " INT64_FORMAT " timed out: its deadline passed",
						id)));
	(void) bulkops_catalog_finish_job(id);
}

/*
 * Stop the jobs whose deadline (option "deadline": seconds from the job's
 * creation) has passed, as bulkops.cancel() would, but ending timed_out.
 * Runs inside the caller's transaction, each job in a subtransaction.
 */
static void
expire_deadlines(void)
{
	int			n;
	int			i;
	int64	   *ids = bulkops_catalog_expired_jobs(&n);

	for (i = 0; i < n; i++)
		(void) bulkops_in_subxact(expire_job, &ids[i]);
	/* the other lanes may hold batches of these jobs: they look at commit */
	if (n > 0 && bulkops_workers_per_database > 1)
		bulkops_wake_worker_at_commit();
}

/*
 * Time out the jobs past their deadline (the first lane only, waking the
 * others when it does), and mark bulkops_works whose job was cancelled or
 * timed out since they were taken.
 */
void
bulkops_refresh_cancels(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		BulkopsStoppedJob *stopped;
		int			n;
		int			i;

		bulkops_begin_tx("checking cancels and deadlines");
		/* one sweep per database; the other lanes see its cancels below */
		if (bulkops_lane == 0)
			expire_deadlines();
		if (bulkops_works != NIL)
		{
			stopped = bulkops_catalog_cancelled_jobs(&n);
			for (i = 0; i < n; i++)
			{
				ListCell   *lc;

				foreach(lc, bulkops_works)
				{
					Work	   *w = lfirst(lc);

					if (w->batch.job_id == stopped[i].job_id)
						bulkops_work_stop(w, stopped[i].timed_out);
				}
			}
		}
		bulkops_commit_tx();
	}
	PG_CATCH();
	{
		bulkops_abort_tx(cxt);
	}
	PG_END_TRY();
}
