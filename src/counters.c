/*-------------------------------------------------------------------------
 *
 * counters.c
 *	  The per-target row counters since install (bulkops.row_counts), kept
 *	  small: each transaction that stores receipts adds a row of its own
 *	  (catalog.c), and the first worker of the database (lane 0) folds them
 *	  into one row per target and creator, once a minute (every 60
 *	  poll_intervals when that is shorter, as in the tests).
 *
 * The fold is one short transaction of its own, between the worker's
 * requests; it waits for no lock (catalog_metrics.c says why), and one
 * that fails is logged and tried again at the next tick: until then the
 * rows are only more numerous, never wrong.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "bulkops.h"
#include "catalog.h"
#include "counters.h"
#include "exec.h"

#define TICK_MAX_MS (60 * 1000)

static TimestampTz next_tick = 0;

void
bulkops_counters_tick(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();

	if (now < next_tick)
		return;
	next_tick = TimestampTzPlusMilliseconds(now, Min((int64) TICK_MAX_MS,
													 60 * (int64) bulkops_poll_interval_ms));
	PG_TRY();
	{
		bulkops_begin_tx("folding bulkops.row_counts");
		(void) bulkops_catalog_fold_row_counts();
		bulkops_commit_tx();
	}
	PG_CATCH();
	{
		bulkops_abort_tx(cxt);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
}
