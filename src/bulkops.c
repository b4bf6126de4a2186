/*-------------------------------------------------------------------------
 *
 * bulkops.c
 *	  Module load: settings, shared memory, the launcher's registration and
 *	  the wake-at-commit hook.
 *
 * Shared memory holds one small table: which process serves which lane of
 * which database.  Backends read it at commit to set the latches of that
 * database's workers; tests read it to know a worker is up.  A spinlock guards it: every
 * critical section is a few loads and stores.  Each worker also notes
 * there when its loop last went round, for monitoring (monitor.c).  What
 * the workers share about each target (a backoff, an OAuth token) is
 * target_state.c's, and the counters they keep per target stats.c's, in
 * shared memory requested here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "bulkops.h"
#include "netpolicy.h"
#include "target_state.h"
#include "stats.h"

PG_MODULE_MAGIC;

/* settings */
char	   *bulkops_database_names = NULL;
int			bulkops_batch_size = 1000;
int			bulkops_concurrency = 4;
int			bulkops_max_attempts = 5;
int			bulkops_http_timeout_ms = 30000;
int			bulkops_poll_interval_ms = 1000;
int			bulkops_max_response_size = 256 * 1024 * 1024;
int			bulkops_launcher_naptime_ms = 1000;
int			bulkops_receipt_retention_s = 0;
int			bulkops_partition_interval_s = 86400;
int			bulkops_workers_per_database = 1;
int			bulkops_max_target_memory_kb = 256 * 1024;
int			bulkops_user_code_timeout_ms = 5000;

/* in a worker: which of its database's workers it is, from 0 */
int			bulkops_lane = 0;

bool		bulkops_preloaded = false;

typedef struct BulkopsWorkerSlot
{
	Oid			dboid;
	int			lane;
	int			pid;
	int			pgprocno;
	TimestampTz last_loop;		/* when its loop last went round */
} BulkopsWorkerSlot;

typedef struct BulkopsShared
{
	slock_t		mutex;
	BulkopsWorkerSlot slots[BULKOPS_MAX_DATABASES * BULKOPS_MAX_LANES];
} BulkopsShared;

static BulkopsShared *bulkops_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_at_commit = false;
static int	my_slot = -1;		/* in a worker: its slot */

void		_PG_init(void);
static void bulkops_shmem_request(void);
static void bulkops_shmem_startup(void);
static void bulkops_xact_callback(XactEvent event, void *arg);
static void define_settings(void);
static void register_launcher(void);

void
_PG_init(void)
{
	define_settings();
	/* estimates only: right wherever the library is loaded */
	bulkops_install_receipts_stats();

	/*
	 * Loaded by CREATE EXTENSION in a backend rather than at server start:
	 * keep the settings (so they can be shown) but start nothing;
	 * bulkops_check_preloaded() refuses the install with a hint.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	bulkops_preloaded = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = bulkops_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = bulkops_shmem_startup;
	register_launcher();
}

static void
define_settings(void)
{
	DefineCustomStringVariable("bulkops.database_name",
							   "Comma-separated list of databases the bulkops worker serves.",
							   NULL, &bulkops_database_names, "postgres",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	bulkops_define_netpolicy_settings();

	/*
	 * Not settable per session: a job may only narrow its target's
	 * batch_size, and a target that sets none has this one.
	 */
	DefineCustomIntVariable("bulkops.batch_size",
							"Default number of rows per request.",
							NULL, &bulkops_batch_size, 1000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("bulkops.concurrency",
							"Default number of batches in flight per target.",
							NULL, &bulkops_concurrency, 4, 1, 64,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("bulkops.max_attempts",
							"Default number of times a batch is submitted before its rows fail.",
							NULL, &bulkops_max_attempts, 5, 1, 100,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("bulkops.http_timeout",
							"Time limit of one HTTP request.",
							NULL, &bulkops_http_timeout_ms, 30000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("bulkops.poll_interval",
							"Time between two polls of a remote task.",
							NULL, &bulkops_poll_interval_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("bulkops.max_response_size",
							"Largest answer body the worker accepts.",
							NULL, &bulkops_max_response_size, 256 * 1024 * 1024,
							1024, INT_MAX, PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("bulkops.max_target_memory",
							"Largest batch_bytes times concurrency of a target or a job.",
							"The worker holds up to concurrency batches of a target "
							"at once, each of up to batch_bytes.",
							&bulkops_max_target_memory_kb, 256 * 1024, 1024, MAX_KILOBYTES,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	/* not per session: the worker serves every role with it */
	DefineCustomIntVariable("bulkops.user_code_timeout",
							"Time limit of the user code the worker runs to write one page of an export.",
							"The triggers, defaults and domains of a bulk_query destination. "
							"A page whose code runs longer is tried again later; "
							"after three times in a row, the export fails.",
							&bulkops_user_code_timeout_ms, 5000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("bulkops.launcher_naptime",
							"Time the launcher waits before it restarts a worker that stopped.",
							NULL, &bulkops_launcher_naptime_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("bulkops.receipt_retention",
							"How long finished jobs are kept, with their batches and receipts.",
							"0 keeps them until deleted by hand.",
							&bulkops_receipt_retention_s, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	/* server-wide: every backend must put a job in the same generation */
	DefineCustomIntVariable("bulkops.partition_interval",
							"Span of time whose jobs share a partition of bulkops.batches.",
							"Retention gives a partition's space back once all its jobs "
							"have expired.",
							&bulkops_partition_interval_s, 86400, 60, 366 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	/* a backend that loads the library late may not define this one */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("bulkops.workers_per_database",
								"Number of worker processes serving each database.",
								"They share the batches: each takes its part of every "
								"target's concurrency and rate_limit.",
								&bulkops_workers_per_database, 1, 1, BULKOPS_MAX_LANES,
								PGC_POSTMASTER, 0, NULL, NULL, NULL);
	bulkops_define_crash_setting();
	MarkGUCPrefixReserved("bulkops");
}

static void
register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	/* a connection to no database, to read pg_database */
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 1;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "bulkops");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "bulkops_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "bulkops launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "bulkops launcher");
	RegisterBackgroundWorker(&bgw);
}

static void
bulkops_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(BulkopsShared)));
	RequestAddinShmemSpace(bulkops_target_state_shmem_size());
	bulkops_target_state_shmem_request();
	RequestAddinShmemSpace(bulkops_stats_shmem_size());
	bulkops_stats_shmem_request();
}

static void
bulkops_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	bulkops_shared = ShmemInitStruct("bulkops", sizeof(BulkopsShared), &found);
	if (!found)
	{
		memset(bulkops_shared, 0, sizeof(BulkopsShared));
		SpinLockInit(&bulkops_shared->mutex);
	}
	bulkops_target_state_shmem_init();
	bulkops_stats_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * A worker announces itself so that committing backends can wake it.
 */
void
bulkops_worker_register_self(Oid dboid, int lane)
{
	int			i;
	int			free_slot = -1;

	SpinLockAcquire(&bulkops_shared->mutex);
	for (i = 0; i < lengthof(bulkops_shared->slots); i++)
	{
		BulkopsWorkerSlot *slot = &bulkops_shared->slots[i];

		if (slot->pid != 0 && slot->dboid == dboid && slot->lane == lane)
		{
			free_slot = i;
			break;
		}
		if (slot->pid == 0 && free_slot < 0)
			free_slot = i;
	}
	if (free_slot >= 0)
	{
		bulkops_shared->slots[free_slot].dboid = dboid;
		bulkops_shared->slots[free_slot].lane = lane;
		bulkops_shared->slots[free_slot].pid = MyProcPid;
		bulkops_shared->slots[free_slot].pgprocno = MyProc->pgprocno;
		bulkops_shared->slots[free_slot].last_loop = GetCurrentTimestamp();
	}
	SpinLockRelease(&bulkops_shared->mutex);
	my_slot = free_slot;

	if (free_slot < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("bulkops serves at most %d databases",
						BULKOPS_MAX_DATABASES)));
}

void
bulkops_worker_unregister_self(void)
{
	int			i;

	if (bulkops_shared == NULL)
		return;
	SpinLockAcquire(&bulkops_shared->mutex);
	for (i = 0; i < lengthof(bulkops_shared->slots); i++)
	{
		if (bulkops_shared->slots[i].pid == MyProcPid)
			memset(&bulkops_shared->slots[i], 0, sizeof(BulkopsWorkerSlot));
	}
	SpinLockRelease(&bulkops_shared->mutex);
	my_slot = -1;
}

/* A worker's loop goes round: note when. */
void
bulkops_worker_beat(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (my_slot < 0)
		return;
	SpinLockAcquire(&bulkops_shared->mutex);
	if (bulkops_shared->slots[my_slot].pid == MyProcPid)
		bulkops_shared->slots[my_slot].last_loop = now;
	SpinLockRelease(&bulkops_shared->mutex);
}

/*
 * The workers serving database dboid, in out (room for BULKOPS_MAX_LANES);
 * returns how many there are.
 */
int
bulkops_worker_list(Oid dboid, BulkopsWorkerInfo *out)
{
	int			i;
	int			n = 0;

	if (bulkops_shared == NULL)
		return 0;
	SpinLockAcquire(&bulkops_shared->mutex);
	for (i = 0; i < lengthof(bulkops_shared->slots) && n < BULKOPS_MAX_LANES; i++)
		if (bulkops_shared->slots[i].pid != 0 &&
			bulkops_shared->slots[i].dboid == dboid)
		{
			out[n].lane = bulkops_shared->slots[i].lane;
			out[n].pid = bulkops_shared->slots[i].pid;
			out[n].last_loop = bulkops_shared->slots[i].last_loop;
			n++;
		}
	SpinLockRelease(&bulkops_shared->mutex);
	return n;
}

/* The pid of the database's first worker (lane 0), or 0. */
int
bulkops_worker_pid(Oid dboid)
{
	int			i;
	int			pid = 0;

	if (bulkops_shared == NULL)
		return 0;
	SpinLockAcquire(&bulkops_shared->mutex);
	for (i = 0; i < lengthof(bulkops_shared->slots); i++)
		if (bulkops_shared->slots[i].pid != 0 &&
			bulkops_shared->slots[i].dboid == dboid &&
			bulkops_shared->slots[i].lane == 0)
			pid = bulkops_shared->slots[i].pid;
	SpinLockRelease(&bulkops_shared->mutex);
	return pid;
}

/*
 * Called by enqueue: set the latches of the database's workers once this
 * transaction commits.  Many enqueues in one transaction cause one wake; a
 * rollback causes none.
 */
void
bulkops_wake_worker_at_commit(void)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(bulkops_xact_callback, NULL);
		registered = true;
	}
	wake_at_commit = true;
}

static void
bulkops_xact_callback(XactEvent event, void *arg)
{
	int			i;
	int			procnos[BULKOPS_MAX_LANES];
	int			n = 0;

	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		wake_at_commit = false;
		return;
	}
	if (event != XACT_EVENT_COMMIT || !wake_at_commit)
		return;
	wake_at_commit = false;
	bulkops_crash_point("enqueue_commit");
	if (bulkops_shared == NULL)
		return;

	SpinLockAcquire(&bulkops_shared->mutex);
	for (i = 0; i < lengthof(bulkops_shared->slots) && n < BULKOPS_MAX_LANES; i++)
		if (bulkops_shared->slots[i].pid != 0 &&
			bulkops_shared->slots[i].dboid == MyDatabaseId)
			procnos[n++] = bulkops_shared->slots[i].pgprocno;
	SpinLockRelease(&bulkops_shared->mutex);

	for (i = 0; i < n; i++)
		SetLatch(&ProcGlobal->allProcs[procnos[i]].procLatch);
}

PG_FUNCTION_INFO_V1(bulkops_check_preloaded);
Datum
bulkops_check_preloaded(PG_FUNCTION_ARGS)
{
	if (!bulkops_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bulkops must be loaded via shared_preload_libraries"),
				 errhint("Add bulkops to shared_preload_libraries in postgresql.conf and restart the server.")));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(bulkops_worker_pid_sql);
Datum
bulkops_worker_pid_sql(PG_FUNCTION_ARGS)
{
	int			pid = bulkops_worker_pid(MyDatabaseId);

	if (pid == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(pid);
}
