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

/*
 * How many rounds of a target's next jobs one claim reads at most, when
 * those it read could not fill the target's free slots (jobs another
 * transaction holds, or whose results wait to be stored): the rest waits
 * for the next claim, which comes soon after a skipped job.
 */
#define CLAIM_ROUNDS 4

/* One claim: the batches taken so far, and the job being claimed. */
typedef struct ClaimRound
{
	const char *target;
	BulkopsCandidate *job;		/* being claimed */
	int			limit;			/* its share of its concurrency */
	int			want;			/* batches to take of it */
	List	   *taken;			/* of Work, in TopMemoryContext */
	bool		skipped;		/* a job was held by another transaction */
} ClaimRound;

/* This worker's share of a concurrency option (0: the setting's). */
static int
share_of(int concurrency)
{
	return bulkops_lane_share(concurrency > 0 ? concurrency : bulkops_concurrency);
}

/*
 * Take r->want batches of r->job, its lowest runnable ones first (another
 * lane may have taken some since they were read), within its share of its
 * concurrency, and send the job to the back of its target's queue.
 */
static void
claim_job(void *arg)
{
	ClaimRound *r = arg;
	int			got = 0;
	int			k;

	if (!bulkops_catalog_lock_job(r->job->job_id, true))
	{
		r->skipped = true;
		return;
	}
	for (k = 0; k < r->job->nbatches && got < r->want; k++)
	{
		Work	   *w;

		if (slots_taken(r->target, r->limit, r->taken) >= r->limit)
			break;
		w = take_batch(r->job->job_id, r->job->batch_nos[k], r->job->generation,
					   false);
		if (w)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			r->taken = lappend(r->taken, w);
			MemoryContextSwitchTo(old);
			got++;
		}
	}
	if (got > 0)
		bulkops_catalog_job_served(r->job->job_id);
}

/*
 * Claim what target's free slots allow, round-robin across its jobs: its
 * next jobs come least recently served first, and each gets one batch per
 * round, until the slots are full or the jobs have no more runnable
 * batches.  A job that cannot be served now (another transaction holds it,
 * or a result of it waits to be stored) is passed over, and the target's
 * next jobs read, a few rounds at most.
 */
static void
claim_target(ClaimRound *r, BulkopsQueuedTarget *t, Datum generations)
{
	int			limit = share_of(t->concurrency);
	int64	   *exclude;
	int			nexclude = 0;
	int			round;

	if (limit <= 0)
		return;					/* the other lanes serve this target */
	exclude = palloc(sizeof(int64) * limit * CLAIM_ROUNDS);
	r->target = t->target;
	for (round = 0; round < CLAIM_ROUNDS; round++)
	{
		int			nfree = limit - slots_taken(t->target, limit, r->taken);
		BulkopsCandidate *jobs;
		int		   *want;
		int			n;
		int			planned = 0;
		int			i;
		int			k;

		if (nfree <= 0)
			break;

		/*
		 * More batches of each than the slots free: the other lanes may take
		 * the lowest ones meanwhile.
		 */
		jobs = bulkops_catalog_next_jobs(t->target, generations, nfree,
										 nfree * bulkops_workers_per_database,
										 exclude, nexclude, &n);
		if (n == 0)
			break;
		want = palloc0(sizeof(int) * n);
		for (i = 0; i < n; i++)
			exclude[nexclude++] = jobs[i].job_id;

		/* one batch per job and round, each job within its own share */
		for (k = 0; planned < nfree; k++)
		{
			bool		any = false;

			for (i = 0; i < n && planned < nfree; i++)
			{
				int			lim = Min(share_of(jobs[i].concurrency), limit);

				if (k >= jobs[i].nbatches || job_deferred(jobs[i].job_id) ||
					slots_taken(t->target, lim, r->taken) + planned >= lim)
					continue;
				want[i]++;
				planned++;
				any = true;
			}
			if (!any)
				break;
		}

		/* in the order served: the first goes to the back of the queue first */
		for (i = 0; i < n; i++)
		{
			int			before = list_length(r->taken);

			if (want[i] == 0)
				continue;
			r->job = &jobs[i];
			r->want = want[i];
			r->limit = Min(share_of(jobs[i].concurrency), limit);
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
		if (n < nfree)
			break;				/* no more jobs with runnable batches */
	}
}

/*
 * Claim runnable batches, up to each target's concurrency, the jobs of a
 * target in turn (claim_target).  Candidates are read without their
 * bodies; only the chosen ones are loaded.  Every statement is a probe
 * with a limit, into partial indexes of unfinished jobs and of runnable
 * batches: the claim costs the same with 10 or 10,000 queued jobs and any
 * history.  Returns true when a job was skipped because another
 * transaction held it.
 */
bool
bulkops_claim(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	/* not on the stack: the error path reads what the loop changed */
	ClaimRound *r = palloc0(sizeof(ClaimRound));

	PG_TRY();
	{
		BulkopsQueuedTarget *targets;
		Datum		generations;
		int			ntargets;
		int			i;

		bulkops_begin_tx("claiming batches");
		targets = bulkops_catalog_queued_targets(&ntargets, &generations);
		for (i = 0; i < ntargets; i++)
			claim_target(r, &targets[i], generations);
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
					bulkops_catalog_job_served(a->job_id);
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
