/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  Taking batches from the tables into the worker: claiming runnable
 *	  ones up to each target's concurrency, resuming those a crash left
 *	  active, and noticing cancelled jobs.
 *
 * Every function here runs its own short transaction (bulkops_begin_tx)
 * or, for the loaders, inside the caller's.  SPI switches to its own
 * memory context after every call, so whatever must outlive the
 * transaction is allocated in the Work's context explicitly.  A claim
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
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "claim.h"
#include "exec.h"
#include "receipts.h"

/* Rows that already have a receipt (a resumed batch) are not pending. */
void
bulkops_load_pending(Work *w)
{
	Oid			types[3] = {INT8OID, INT8OID, INT8OID};
	Datum		values[3];
	int64	   *settled;
	uint64		i;
	int			rc;

	values[0] = Int64GetDatum(w->batch.job_id);
	values[1] = Int64GetDatum(w->batch.first_row);
	values[2] = Int64GetDatum(w->batch.first_row + w->batch.nrows - 1);
	rc = bulkops_exec("SELECT row_no FROM bulkops.receipts "
					  "WHERE job_id = $1 AND row_no BETWEEN $2 AND $3",
					  3, types, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read receipts: %s", SPI_result_code_string(rc));
	settled = palloc(sizeof(int64) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		settled[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
												 SPI_tuptable->tupdesc, 1,
												 &isnull));
	}
	bulkops_work_load_pending(w, settled, SPI_processed);
}

/* What a claimed batch's Work is made of (bulkops_work_new reads it). */
#define CLAIMED_COLUMNS \
	"b.first_row, b.row_count, b.step, b.remote_id, b.attempts, b.keys, " \
	"b.offsets, b.body, b.step_data, b.progress, b.maybe_applied, " \
	"j.operation, j.options, j.cancel_requested, j.timed_out, j.target, " \
	"j.prologue, j.key_column, j.created_by, j.destination, " \
	"j.destination_schema, j.destination_table"

/*
 * Take batch (job_id, batch_no) into the worker: mark it active (counting
 * a submit attempt at step 0) and load it.  Runs inside a transaction.
 */
static Work *
take_batch(int64 job_id, int32 batch_no, bool resume)
{
	Oid			types[3] = {INT8OID, INT4OID, INT2OID};
	Datum		values[3] = {Int64GetDatum(job_id), Int32GetDatum(batch_no),
	Int16GetDatum(bulkops_lane)};
	Oid			ttypes[1] = {TEXTOID};
	Datum		tvals[1];
	Work	   *w;
	int			rc;

	rc = bulkops_exec(resume
					  ? "UPDATE bulkops.batches b SET updated_at = now(), lane = $3 "
					  "FROM bulkops.jobs j WHERE b.job_id = $1 AND b.batch_no = $2 "
					  "AND j.id = b.job_id AND b.state = 'active' "
					  "RETURNING " CLAIMED_COLUMNS
					  : "UPDATE bulkops.batches b SET state = 'active', updated_at = now(), lane = $3, "
					  "attempts = b.attempts + (b.step = 0)::int "
					  "FROM bulkops.jobs j WHERE b.job_id = $1 AND b.batch_no = $2 "
					  "AND j.id = b.job_id AND b.state = 'queued' "
	/* never wait for a user's transaction: a cancel may hold it */
					  "AND (b.job_id, b.batch_no) = (SELECT job_id, batch_no "
					  " FROM bulkops.batches WHERE job_id = $1 AND batch_no = $2 "
					  " AND state = 'queued' FOR UPDATE SKIP LOCKED) "
					  "RETURNING " CLAIMED_COLUMNS,
					  3, types, values, NULL, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim batch: %s", SPI_result_code_string(rc));
	if (SPI_processed != 1)
		return NULL;
	w = bulkops_work_new(job_id, batch_no, SPI_tuptable->vals[0],
						 SPI_tuptable->tupdesc);

	/* the target as it is now: URL and credentials may have changed */
	tvals[0] = CStringGetTextDatum(w->target);
	rc = bulkops_exec("SELECT dialect, url, resource, auth, auth_set_by "
					  "FROM bulkops.targets WHERE name = $1",
					  1, ttypes, tvals, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read target: %s", SPI_result_code_string(rc));
	bulkops_work_set_target(w, SPI_processed ? SPI_tuptable->vals[0] : NULL,
							SPI_tuptable->tupdesc);
	bulkops_load_pending(w);

	/* a job starts running when its first batch is taken (its row is ours) */
	{
		Oid			jtypes[1] = {INT8OID};
		Datum		jvals[1] = {Int64GetDatum(job_id)};

		bulkops_exec("UPDATE bulkops.jobs SET state = 'running', "
					 "started_at = coalesce(started_at, now()) "
					 "WHERE id = $1 AND state = 'queued'",
					 1, jtypes, jvals, NULL, false, 0);
	}
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
		if (strcmp(((Work *) lfirst(lc))->target, target) == 0)
			sending++;
	return sending + Max(deferred - share, 0);
}

/* Is a result of job waiting to be stored? */
static bool
job_deferred(int64 job_id)
{
	ListCell   *lc;

	foreach(lc, bulkops_works)
		if (((Work *) lfirst(lc))->batch.job_id == job_id &&
			((Work *) lfirst(lc))->deferred)
			return true;
	return false;
}

/* One claim: its candidates, and the job being claimed (from .. to - 1). */
typedef struct ClaimRound
{
	int64	   *jobs;
	int32	   *nos;
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

	if (!bulkops_lock_job(r->jobs[r->from], true))
	{
		r->skipped = true;
		return;
	}
	for (i = r->from; i < r->to; i++)
	{
		Work	   *w;

		if (slots_taken(r->targets[i], r->limits[i], r->taken) >= r->limits[i])
			continue;
		w = take_batch(r->jobs[i], r->nos[i], false);
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
	int			rc;
	uint64		i;
	uint64		n;
	/* not on the stack: the error path reads what the loop changed */
	ClaimRound *r = palloc0(sizeof(ClaimRound));

	PG_TRY();
	{
		bulkops_begin_tx("claiming batches");
		/*
		 * A few candidates per target, so that one target's long queue
		 * cannot hide another target's work.  "state <> 'done'" is implied
		 * by "state = 'queued'" but spelled out so that the partial index
		 * of runnable batches is used: this runs each time a batch ends,
		 * and the table keeps every batch ever sent.
		 */
		rc = bulkops_exec("SELECT job_id, batch_no, target, concurrency FROM ("
						 " SELECT b.job_id, b.batch_no, j.target,"
						 "  coalesce((j.options->>'concurrency')::int, 0) AS concurrency,"
						 "  row_number() OVER (PARTITION BY j.target"
						 "                     ORDER BY b.job_id, b.batch_no) AS n"
						 " FROM bulkops.batches b JOIN bulkops.jobs j ON j.id = b.job_id"
						 " WHERE b.state <> 'done' AND b.state = 'queued'"
						 "  AND b.next_attempt_at <= now()) c "
						 "WHERE n <= 64 ORDER BY job_id, batch_no",
						 0, NULL, NULL, NULL, true, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not find batches: %s", SPI_result_code_string(rc));
		n = SPI_processed;
		r->jobs = palloc(sizeof(int64) * Max(n, 1));
		r->nos = palloc(sizeof(int32) * Max(n, 1));
		r->targets = palloc(sizeof(char *) * Max(n, 1));
		r->limits = palloc(sizeof(int) * Max(n, 1));
		for (i = 0; i < n; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	td = SPI_tuptable->tupdesc;
			bool		isnull;

			r->jobs[i] = DatumGetInt64(SPI_getbinval(t, td, 1, &isnull));
			r->nos[i] = DatumGetInt32(SPI_getbinval(t, td, 2, &isnull));
			r->targets[i] = SPI_getvalue(t, td, 3);
			r->limits[i] = DatumGetInt32(SPI_getbinval(t, td, 4, &isnull));
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
			 * locked for nothing: its batches share its target, which may
			 * be full (and each job locked takes a subtransaction's xid).
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
		uint64		i;
		uint64		n;
		int64	   *jobs;
		int32	   *nos;
		int			rc;
		int			resumed = 0;
		Oid			lane_types[2] = {INT4OID, INT4OID};
		Datum		lane_values[2] = {Int32GetDatum(bulkops_lane),
		Int32GetDatum(bulkops_workers_per_database)};

		bulkops_begin_tx("resuming batches");
		rc = bulkops_exec("SELECT b.job_id, b.batch_no, j.dialect, j.operation, b.step, "
						 "b.maybe_applied "
						 "FROM bulkops.batches b JOIN bulkops.jobs j ON j.id = b.job_id "
						 "WHERE b.state <> 'done' AND b.state = 'active' "
						 "AND (b.lane = $1 OR ($1 = 0 AND (b.lane IS NULL OR b.lane >= $2))) "
						 "ORDER BY 1, 2",
						 2, lane_types, lane_values, NULL, true, 0);
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
			bool		maybe_applied = DatumGetBool(SPI_getbinval(t, td, 6, &isnull));

			jobs[i] = DatumGetInt64(SPI_getbinval(t, td, 1, &isnull));
			nos[i] = DatumGetInt32(SPI_getbinval(t, td, 2, &isnull));
			/* in doubt: a submit that may have reached the remote side */
			if (step == 0 && maybe_applied && d != NULL && !d->idempotent[op] &&
				!d->submit_is_safe)
				nos[i] = -nos[i] - 1;
		}
		for (i = 0; i < n; i++)
		{
			/* resumed by an earlier call */
			if (bulkops_work_find(jobs[i], nos[i] < 0 ? -nos[i] - 1 : nos[i]))
				continue;
			if (!bulkops_lock_job(jobs[i], true))
			{
				done = false;
				continue;
			}
			resumed++;
			if (nos[i] < 0)
			{
				Work	   *w = take_batch(jobs[i], -nos[i] - 1, true);

				if (w)
				{
					w->in_doubt = true;
					bulkops_works_add(w);
				}
			}
			else
			{
				Oid			types[2] = {INT8OID, INT4OID};
				Datum		vals[2] = {Int64GetDatum(jobs[i]), Int32GetDatum(nos[i])};

				bulkops_exec("UPDATE bulkops.batches SET state = 'queued', "
									  "next_attempt_at = now() "
									  "WHERE job_id = $1 AND batch_no = $2",
									  2, types, vals, NULL, false, 0);
			}
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

	if (!bulkops_lock_job(id, true))
		return;
	if (bulkops_cancel_queued_batches(id, true))
		ereport(LOG,
				(errmsg("bulkops job " INT64_FORMAT " timed out: its deadline passed",
						id)));
	bulkops_finish_job_if_done(id);
}

/*
 * Stop the jobs whose deadline (option "deadline": seconds from the job's
 * creation) has passed, as bulkops.cancel() would, but ending timed_out.
 * Runs inside the caller's transaction, each job in a subtransaction.
 */
static void
expire_deadlines(void)
{
	uint64		i;
	uint64		n;
	int64	   *ids;

	if (bulkops_exec("SELECT id FROM bulkops.jobs "
					 "WHERE state IN ('queued', 'running') AND NOT cancel_requested "
					 "AND options ? 'deadline' AND created_at + "
					 "(options->>'deadline')::float8 * interval '1 second' <= now()",
					 0, NULL, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read job deadlines");
	n = SPI_processed;
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
	}
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
		uint64		i;

		bulkops_begin_tx("checking cancels and deadlines");
		/* one sweep per database; the other lanes see its cancels below */
		if (bulkops_lane == 0)
			expire_deadlines();
		if (bulkops_works != NIL &&
			bulkops_exec("SELECT id, timed_out FROM bulkops.jobs WHERE cancel_requested "
						 "AND state IN ('queued', 'running')",
						 0, NULL, NULL, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read cancelled jobs");
		for (i = 0; bulkops_works != NIL && i < SPI_processed; i++)
		{
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 1,
														 &isnull));
			bool		timed_out = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
															   SPI_tuptable->tupdesc, 2,
															   &isnull));
			ListCell   *lc;

			foreach(lc, bulkops_works)
				if (((Work *) lfirst(lc))->batch.job_id == id)
					bulkops_work_stop((Work *) lfirst(lc), timed_out);
		}
		bulkops_commit_tx();
	}
	PG_CATCH();
	{
		bulkops_abort_tx(cxt);
	}
	PG_END_TRY();
}
