/*-------------------------------------------------------------------------
 *
 * exec.c
 *	  The worker's transactions and statements.
 *
 * A worker transaction is short and holds no request in flight: begin,
 * a few statements, commit (or, after an error, abort and go on with the
 * next job).  Every one waits at most LOCK_TIMEOUT_MS for a lock, since a
 * user's transaction may hold a job's row or an export's table for as long
 * as it stays open.  Statements run with the worker session's fixed
 * settings (owner.c): no name in them resolves through anybody's
 * search_path.  Memory: what the statements return lives in SPI's context
 * until the transaction ends; callers copy what must outlive it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "exec.h"

/*
 * The longest any statement of the worker waits for a lock.  The worker's
 * own transactions (another lane's) hold a job's row for milliseconds; a
 * user's may hold it, or an export's table, for as long as it stays open,
 * and while the worker waits it drives no request and stores no answer for
 * anyone.  Whatever a lock held up is tried again later.
 */
#define LOCK_TIMEOUT_MS "100ms"

void
bulkops_begin_tx(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* for this transaction only: the session keeps the fixed 0 (owner.c) */
	(void) set_config_option("lock_timeout", LOCK_TIMEOUT_MS,
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
							 true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
bulkops_commit_tx(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* After an error inside begin_tx/commit_tx: report it and clean up. */
void
bulkops_abort_tx(MemoryContext cxt)
{
	EmitErrorReport();
	bulkops_discard_tx(cxt);
}

/* The same without the report, for an error the caller has dealt with. */
void
bulkops_discard_tx(MemoryContext cxt)
{
	FlushErrorState();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Run fn(arg) in a subtransaction of the current transaction.  On error,
 * report it, roll back what fn did (its locks included) and return false:
 * the trouble of one job must not undo what the same transaction did for
 * the others.
 */
bool
bulkops_in_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

/* ---- statements ---- */

/*
 * Run one of the worker's fixed statements.  Each is parsed once per
 * process and kept (the statements are string literals, so the text's
 * address identifies them), but planned at every execution with its actual
 * parameters.  A generic plan would be made once, when the worker first
 * runs the statement: typically against an empty bulkops.receipts, where a
 * sequential scan is cheapest, and it would be kept until the next ANALYZE
 * however large the table grows.  That made every claim scan all receipts.
 */
#define MAX_KEPT_PLANS 32

static struct
{
	const char *sql;
	SPIPlanPtr	plan;
}			kept_plans[MAX_KEPT_PLANS];

int
bulkops_exec(const char *sql, int nargs, Oid *types, Datum *values,
			 const char *nulls, bool read_only, int expect)
{
	SPIPlanPtr	plan = NULL;
	int			i;
	int			rc;

	for (i = 0; i < MAX_KEPT_PLANS && kept_plans[i].sql; i++)
		if (kept_plans[i].sql == sql)
		{
			plan = kept_plans[i].plan;
			break;
		}
	if (plan == NULL)
	{
		plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_CUSTOM_PLAN);
		if (plan == NULL)
			elog(ERROR, "bulkops: could not prepare \"%.40s...\": %s", sql,
				 SPI_result_code_string(SPI_result));
		if (i < MAX_KEPT_PLANS)
		{
			SPI_keepplan(plan);
			kept_plans[i].sql = sql;
			kept_plans[i].plan = plan;
		}
	}
	rc = SPI_execute_plan(plan, values, nulls, read_only, 0);
	if (expect != 0 && rc != expect)
		elog(ERROR, "bulkops: could not run \"%.40s...\": %s", sql,
			 SPI_result_code_string(rc));
	return rc;
}

/*
 * Run a statement built at run time (its text in memory that will be
 * reused, so never kept by address as above): parsed and planned each
 * time, its parameters' values known to the planner.
 */
int
bulkops_exec_built(const char *sql, int nargs, Oid *types, Datum *values,
				   const char *nulls, bool read_only, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls,
										   read_only, 0);

	if (expect != 0 && rc != expect)
		elog(ERROR, "bulkops: could not run \"%.40s...\": %s", sql,
			 SPI_result_code_string(rc));
	return rc;
}
