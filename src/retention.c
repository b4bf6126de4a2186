/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  The space bulkops' history takes: a partition of bulkops.batches
 *	  for each generation, created ahead of time, and finished jobs
 *	  forgotten after bulkops.receipt_retention, their space given back.
 *
 * Receipts are what users join against, so nothing is deleted unless the
 * setting asks for it.  When it does, the worker removes what expired in
 * short transactions of its own, so that housekeeping never holds up
 * sending:
 *	- a generation whose jobs have all expired loses its partition whole
 *	  (TRUNCATE, then DROP once its time has passed): the space goes back
 *	  to the file system at once, with no dead row left for VACUUM;
 *	- a job that expired while others of its generation are kept is
 *	  deleted alone: a few batch rows, since each holds all its rows'
 *	  receipts, whose space its generation's later jobs reuse.
 * The default partition, which holds the batches of jobs enqueued before
 * 1.3 and of generations that had no partition yet, is truncated once it
 * is empty.  What the catalog statements check and lock: catalog_
 * partitions.c.
 *
 * Only the first worker of a database (lane 0) calls this.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/timestamp.h"

#include "bulkops.h"
#include "catalog.h"
#include "exec.h"
#include "retention.h"

#define PURGE_JOBS_PER_TXN 10
#define TICK_MS (60 * 1000)

static TimestampTz next_tick = 0;
static int	tick_retention_s = -1;	/* the setting next_tick was planned with */

/* the last generation whose partition could not be created, said once */
static int64 refused_generation = PG_INT64_MIN;

typedef void (*PartitionStep) (void *arg);

/*
 * Run fn in a transaction of its own; false if it failed.  A partition
 * that is busy (its lock not free at once) is not an event: it is tried
 * again on the next tick.  Anything else is logged.
 */
static bool
in_own_tx(const char *activity, PartitionStep fn, void *arg, bool quiet)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		bulkops_begin_tx(activity);
		fn(arg);
		bulkops_commit_tx();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		if (!quiet && edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ereport(LOG,
					(errmsg("bulkops could not finish %s", activity),
					 errdetail("%s", edata->message)));
		FreeErrorData(edata);
		bulkops_discard_tx(cxt);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	return ok;
}

/* ---- the steps, each in its own transaction ---- */

typedef struct PartitionList
{
	int			retention_s;
	MemoryContext cxt;			/* where the list outlives its transaction */
	BulkopsPartition *parts;
	int			n;
} PartitionList;

static void
list_partitions(void *arg)
{
	PartitionList *l = arg;
	MemoryContext cxt = l->cxt;
	BulkopsPartition *parts;
	int			i;

	parts = bulkops_catalog_partitions(l->retention_s, &l->n);
	l->parts = MemoryContextAlloc(cxt, sizeof(BulkopsPartition) * Max(l->n, 1));
	for (i = 0; i < l->n; i++)
	{
		l->parts[i] = parts[i];
		l->parts[i].name = MemoryContextStrdup(cxt, parts[i].name);
	}
}

static void
create_partition(void *arg)
{
	bulkops_catalog_create_partition(*(int64 *) arg);
}

typedef struct EmptyArg
{
	const BulkopsPartition *p;
	int			retention_s;
} EmptyArg;

static void
empty_partition(void *arg)
{
	EmptyArg   *e = arg;

	(void) bulkops_catalog_empty_partition(e->p, e->retention_s);
}

static void
drop_partition(void *arg)
{
	bulkops_catalog_drop_partition(arg);
}

typedef struct PurgeArg
{
	int			retention_s;
	int			n;
} PurgeArg;

static void
purge_some(void *arg)
{
	PurgeArg   *p = arg;

	p->n = bulkops_catalog_purge_expired(p->retention_s, PURGE_JOBS_PER_TXN);
}

/* ---- the tick ---- */

static bool
has_partition(const PartitionList *l, int64 generation)
{
	int			i;

	for (i = 0; i < l->n; i++)
		if (!l->parts[i].is_default && l->parts[i].generation == generation)
			return true;
	return false;
}

/* The partitions of this generation and the next, if they are missing. */
static void
create_ahead(const PartitionList *l, int64 now_gen)
{
	int64		gens[2] = {now_gen, now_gen + bulkops_partition_interval_s};
	int			i;

	for (i = 0; i < 2; i++)
	{
		if (has_partition(l, gens[i]) || gens[i] == refused_generation)
			continue;
		if (!in_own_tx("creating a partition of bulkops.batches", create_partition,
					   &gens[i], true))
		{
			/* most likely its jobs' batches went to the default partition */
			refused_generation = gens[i];
			ereport(LOG,
					(errmsg("bulkops keeps the batches of generation " INT64_FORMAT " in partition bulkops.batches_default",
							gens[i]),
					 errdetail("Its partition could not be created, most likely because jobs of it were enqueued before."),
					 errhint("Retention gives their space back once the default partition holds no batch.")));
		}
	}
}

/*
 * Called from the worker's loop at every claim; does something at most
 * once a minute (or once per retention, if that is shorter).
 */
void
bulkops_retention_tick(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			retention_s = bulkops_receipt_retention_s;
	int64		now_gen = bulkops_generation_at(now);
	PartitionList l = {0};
	PurgeArg	purge = {0};
	int			i;

	/* a new setting is acted on at once */
	if (now < next_tick && retention_s == tick_retention_s)
		return;
	tick_retention_s = retention_s;
	/* a short retention is kept about as closely as it was asked for */
	next_tick = TimestampTzPlusMilliseconds(now, retention_s > 0
											? Min((int64) TICK_MS, (int64) retention_s * 1000)
											: TICK_MS);

	l.retention_s = retention_s;
	l.cxt = CurrentMemoryContext;
	if (!in_own_tx("listing the partitions of bulkops.batches", list_partitions, &l, false))
		return;
	create_ahead(&l, now_gen);

	if (retention_s > 0)
	{
		/* whole generations first: nothing of them is deleted row by row */
		for (i = 0; i < l.n; i++)
		{
			EmptyArg	e = {&l.parts[i], retention_s};

			if (!l.parts[i].is_default)
				(void) in_own_tx("emptying an expired partition of bulkops.batches",
								 empty_partition, &e, false);
			CHECK_FOR_INTERRUPTS();
		}
		purge.retention_s = retention_s;
		do
		{
			purge.n = 0;
			if (!in_own_tx("purging expired jobs", purge_some, &purge, false))
				break;
			CHECK_FOR_INTERRUPTS();
		} while (purge.n == PURGE_JOBS_PER_TXN);
		if (!in_own_tx("listing the partitions of bulkops.batches", list_partitions,
					   &l, false))
			return;
	}

	/*
	 * What is empty now: a generation that has passed with no job left loses
	 * its partition, and the default one its space once it holds no batch.
	 */
	for (i = 0; i < l.n; i++)
	{
		BulkopsPartition *p = &l.parts[i];

		if (p->is_default)
		{
			EmptyArg	e = {p, retention_s};

			(void) in_own_tx("emptying partition bulkops.batches_default",
							 empty_partition, &e, false);
		}
		else if (p->generation < now_gen && !p->has_jobs)
			(void) in_own_tx("dropping an empty partition of bulkops.batches",
							 drop_partition, p, false);
		CHECK_FOR_INTERRUPTS();
	}
}
