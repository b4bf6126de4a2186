/*-------------------------------------------------------------------------
 *
 * monitor.c
 *	  What monitoring reads that no table holds: the SQL functions the
 *	  views bulkops.metrics and bulkops.health are made of (the database's
 *	  workers, each target's counters since the server started and its
 *	  backoff), bulkops.job_summary(), and what bulkops.wait() says while
 *	  it waits and when it is done.
 *
 * Trust follows the tables': a target's counters and backoff are shown to
 * the roles that own it or hold a privilege on it (every target, to a
 * superuser): whoever may send through a target may know whether it is
 * refused or throttled; a job's summary and
 * progress to whoever may see the job (row-level security, read as the
 * caller by catalog_metrics.c).  Which workers serve the database is
 * anyone's to know, as bulkops.worker_pid() and pg_stat_activity tell.
 *
 * A target's backoff is read in one place, target_backoff(): the hold the
 * database's workers share for it in shared memory (target_state.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "bulkops.h"
#include "catalog.h"
#include "joblog.h"
#include "monitor.h"
#include "stats.h"
#include "target_state.h"

/* A target's backoff: no request before until. */
typedef struct Backoff
{
	TimestampTz until;
	TimestampTz since;			/* when it began */
	int			status;			/* the HTTP status that began it */
} Backoff;

/*
 * Whether target's requests wait for a rate or usage limit now, and if so
 * until when (*b).  The one place that knows where a backoff is kept.
 */
static bool
target_backoff(const char *target, TimestampTz now, Backoff *b)
{
	BulkopsHold h;

	if (!bulkops_hold_get(target, &h) || h.until <= now)
		return false;
	b->until = h.until;
	b->since = h.since;
	b->status = h.status;
	return true;
}

/* ---- the SQL functions the views are made of ---- */

#define TARGET_STATS_COLUMNS 17

/*
 * bulkops._target_stats(): one row per target the caller owns (see the
 * top of this file), with what the workers counted since the server
 * started (zeros for a target they have not sent to) and its backoff.
 */
PG_FUNCTION_INFO_V1(bulkops_target_stats_sql);
Datum
bulkops_target_stats_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = GetCurrentTimestamp();
	List	   *targets;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	targets = bulkops_catalog_owned_targets();
	foreach(lc, targets)
	{
		const char *target = lfirst(lc);
		BulkopsTargetStats s;
		Backoff		b;
		Datum		values[TARGET_STATS_COLUMNS];
		bool		nulls[TARGET_STATS_COLUMNS];
		int			c = 0;
		int			i;

		if (!bulkops_stats_get(MyDatabaseId, target, &s))
			memset(&s, 0, sizeof(s));
		memset(nulls, false, sizeof(nulls));
		values[c++] = CStringGetTextDatum(target);
		values[c++] = Int64GetDatum((int64) s.requests);
		for (i = 0; i < BULKOPS_ANSWER_CLASSES; i++)
			values[c++] = Int64GetDatum((int64) s.answers[i]);
		values[c++] = Int64GetDatum((int64) s.timeouts);
		values[c++] = Int64GetDatum((int64) s.failures);
		values[c++] = Int64GetDatum((int64) s.retries);
		values[c++] = Int64GetDatum((int64) s.token_fetches);
		values[c++] = Int64GetDatum((int64) s.token_failures);
		values[c++] = BoolGetDatum(s.token_at != 0 && s.token_failed);
		nulls[c] = (s.token_at == 0);
		values[c++] = TimestampTzGetDatum(s.token_at);
		if (target_backoff(target, now, &b))
		{
			values[c++] = TimestampTzGetDatum(b.until);
			values[c++] = TimestampTzGetDatum(b.since);
			values[c++] = Int32GetDatum(b.status);
		}
		else
		{
			for (i = 0; i < 3; i++)
			{
				nulls[c] = true;
				values[c++] = (Datum) 0;
			}
		}
		Assert(c == TARGET_STATS_COLUMNS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * bulkops._workers(): the workers serving this database, with when each
 * one's loop last went round.
 */
PG_FUNCTION_INFO_V1(bulkops_workers_sql);
Datum
bulkops_workers_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BulkopsWorkerInfo workers[BULKOPS_MAX_LANES];
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	n = bulkops_worker_list(MyDatabaseId, workers);
	for (i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = Int32GetDatum(workers[i].lane);
		values[1] = Int32GetDatum(workers[i].pid);
		values[2] = TimestampTzGetDatum(workers[i].last_loop);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---- one job, as whoever waits for it sees it ---- */

static void
job_not_found(int64 job)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("job " INT64_FORMAT " does not exist", job)));
}

/* bulkops.job_summary(job): what the job came to (so far), in one line. */
PG_FUNCTION_INFO_V1(bulkops_job_summary_sql);
Datum
bulkops_job_summary_sql(PG_FUNCTION_ARGS)
{
	int64		job = PG_GETARG_INT64(0);
	BulkopsJobSummary s;

	if (!bulkops_catalog_job_summary(job, &s))
		job_not_found(job);
	PG_RETURN_TEXT_P(cstring_to_text(bulkops_job_summary_text(&s)));
}

/*
 * bulkops.wait()'s NOTICE while it waits: rows done, the rate over the
 * last minute and when the job should end at that rate.
 */
void
bulkops_monitor_progress_notice(int64 job)
{
	BulkopsJobProgress p;
	char	   *rate;

	if (!bulkops_catalog_job_progress(job, &p))
		return;
	if (p.rate < 0)
		rate = pstrdup("not started");
	else if (p.eta == 0)
		rate = psprintf("%.0f rows/s, ETA unknown", p.rate);
	else
	{
		long		secs;
		int			usecs;

		TimestampDifference(GetCurrentTimestamp(), p.eta, &secs, &usecs);
		/* to the second: the estimate is no finer */
		rate = psprintf("%.0f rows/s, ETA %s (in %ld s)", p.rate,
						timestamptz_to_str(p.eta - p.eta % USECS_PER_SEC), secs);
	}
	ereport(NOTICE,
			(errmsg("job " INT64_FORMAT ": " INT64_FORMAT " of " INT64_FORMAT " rows done, %s",
					job, p.done, p.total, rate)));
}

/* bulkops.wait()'s NOTICE when the job it waited for has ended. */
void
bulkops_monitor_summary_notice(int64 job)
{
	BulkopsJobSummary s;

	if (bulkops_catalog_job_summary(job, &s))
		ereport(NOTICE, (errmsg("%s", bulkops_job_summary_text(&s))));
}
