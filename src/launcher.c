/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: a static background worker that keeps
 *	  bulkops.workers_per_database bulkops workers (lanes 0, 1, ...)
 *	  running per database named in bulkops.database_name.
 *
 * Workers are dynamic and BGW_NEVER_RESTART: the launcher itself restarts
 * a worker that stopped, after bulkops.launcher_naptime, so that after a
 * crash-and-restart of the server (which forgets such workers while it
 * restarts the launcher) no lane of a database ends up with two workers.  The
 * launcher connects to no database and holds no transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "bulkops.h"

typedef struct LaunchedWorker
{
	char		dbname[NAMEDATALEN];
	int			lane;
	BackgroundWorkerHandle *handle;
	TimestampTz started_at;
	TimestampTz restart_at;
	int			quick_deaths;	/* stopped soon after starting, in a row */
	bool		wanted;
	bool		missing_said;	/* logged that the database does not exist */
} LaunchedWorker;

static LaunchedWorker launched[BULKOPS_MAX_DATABASES * BULKOPS_MAX_LANES];
static int	nlaunched = 0;

static LaunchedWorker *
find_or_add(const char *dbname, int lane)
{
	int			i;
	int			ndb = 0;

	for (i = 0; i < nlaunched; i++)
	{
		if (strcmp(launched[i].dbname, dbname) == 0 && launched[i].lane == lane)
			return &launched[i];
		if (launched[i].lane == 0)
			ndb++;
	}
	if (lane == 0 && ndb >= BULKOPS_MAX_DATABASES)
	{
		ereport(WARNING,
				(errmsg("bulkops serves at most %d databases; \"%s\" is ignored",
						BULKOPS_MAX_DATABASES, dbname)));
		return NULL;
	}
	memset(&launched[nlaunched], 0, sizeof(LaunchedWorker));
	strlcpy(launched[nlaunched].dbname, dbname, NAMEDATALEN);
	launched[nlaunched].lane = lane;
	return &launched[nlaunched++];
}

static void
start_worker(LaunchedWorker *lw)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "bulkops");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "bulkops_worker_main");
	if (lw->lane == 0)
		snprintf(bgw.bgw_name, BGW_MAXLEN, "bulkops worker for %s", lw->dbname);
	else
		snprintf(bgw.bgw_name, BGW_MAXLEN, "bulkops worker %d for %s",
				 lw->lane, lw->dbname);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "bulkops worker");
	strlcpy(bgw.bgw_extra, lw->dbname, BGW_EXTRALEN);
	bgw.bgw_main_arg = Int32GetDatum(lw->lane);
	bgw.bgw_notify_pid = MyProcPid;

	if (lw->handle)
		pfree(lw->handle);
	lw->handle = NULL;
	if (!RegisterDynamicBackgroundWorker(&bgw, &lw->handle))
		ereport(WARNING,
				(errmsg("could not start %s", bgw.bgw_name),
				 errhint("Raise max_worker_processes: bulkops needs one for its launcher "
						 "and bulkops.workers_per_database for each database it serves.")));
	lw->started_at = GetCurrentTimestamp();
}

/*
 * When to start a stopped worker again.  One that keeps dying at once (its
 * database does not exist yet, say) is retried less and less often, up to
 * a minute, so it does not fill the log.
 */
static void
schedule_restart(LaunchedWorker *lw)
{
	TimestampTz now = GetCurrentTimestamp();
	long		delay;

	if (lw->started_at != 0 && !TimestampDifferenceExceeds(lw->started_at, now, 10000))
		lw->quick_deaths++;
	else
		lw->quick_deaths = 0;
	delay = (long) bulkops_launcher_naptime_ms << Min(lw->quick_deaths, 10);
	lw->restart_at = TimestampTzPlusMilliseconds(now, Min(delay, 60000));
	lw->started_at = 0;
}

static bool
worker_running(LaunchedWorker *lw)
{
	pid_t		pid;

	return lw->handle != NULL &&
		GetBackgroundWorkerPid(lw->handle, &pid) != BGWH_STOPPED;
}

/*
 * Does database dbname exist (and accept connections)?  A worker started
 * for one that does not would die at once, and the restart backoff would
 * then delay it for up to a minute after the database is created.
 */
static bool
database_exists(const char *dbname)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		ok = false;

	/*
	 * A heap scan, as autovacuum's launcher reads pg_database: with no
	 * database selected, the relation cache cannot load an index of a shared
	 * catalog before some backend has written its init file.
	 */
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!ok && HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		ok = strcmp(NameStr(db->datname), dbname) == 0 && db->datallowconn;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return ok;
}

/* Bring the set of workers in line with bulkops.database_name. */
static void
reconcile(void)
{
	char	   *names = pstrdup(bulkops_database_names ? bulkops_database_names : "");
	List	   *list;
	ListCell   *lc;
	int			i;

	if (!SplitGUCList(names, ',', &list))
	{
		ereport(WARNING,
				(errmsg("invalid list syntax in bulkops.database_name")));
		return;
	}
	for (i = 0; i < nlaunched; i++)
		launched[i].wanted = false;
	foreach(lc, list)
	{
		int			lane;

		for (lane = 0; lane < bulkops_workers_per_database; lane++)
		{
			LaunchedWorker *lw = find_or_add((char *) lfirst(lc), lane);

			if (lw == NULL)
				break;
			lw->wanted = true;
		}
	}
	for (i = 0; i < nlaunched; i++)
	{
		LaunchedWorker *lw = &launched[i];

		if (!lw->wanted)
		{
			if (worker_running(lw))
				TerminateBackgroundWorker(lw->handle);
			continue;
		}
		if (worker_running(lw))
			continue;
		if (lw->started_at != 0)
			schedule_restart(lw);	/* it stopped since the last look */
		if (GetCurrentTimestamp() < lw->restart_at)
			continue;
		if (!database_exists(lw->dbname))
		{
			/*
			 * not a failure of the worker: start it once the database is
			 * there
			 */
			if (lw->lane == 0 && !lw->missing_said)
				ereport(LOG,
						(errmsg("bulkops: database \"%s\" named in bulkops.database_name does not exist or does not accept connections",
								lw->dbname)));
			lw->missing_said = true;
			lw->quick_deaths = 0;
			continue;
		}
		lw->missing_said = false;
		start_worker(lw);
	}
	list_free(list);
	pfree(names);
}

void
bulkops_launcher_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* no database: only the shared catalogs, for pg_database */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	ereport(LOG, (errmsg("bulkops launcher started")));
	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		reconcile();
		MemoryContextSwitchTo(old);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 bulkops_launcher_naptime_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
