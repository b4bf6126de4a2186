/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  Forgetting finished jobs after bulkops.receipt_retention.
 *
 * Receipts are what users join against, so nothing is deleted unless the
 * setting asks for it.  When it does, the worker removes a few finished
 * jobs at a time, with their batches and receipts, in short transactions
 * of their own, so a purge never holds up sending.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "bulkops.h"
#include "catalog.h"
#include "exec.h"
#include "retention.h"

#define PURGE_JOBS_PER_TXN 10
#define PURGE_EVERY_MS (60 * 1000)

static TimestampTz next_purge = 0;

/*
 * Called from the worker's loop; does something only when a retention is
 * set, at most once a minute (or once per retention, if that is shorter).
 */
void
bulkops_purge_expired(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();
	int			n;

	if (bulkops_receipt_retention_s <= 0 || now < next_purge)
		return;
	/* a short retention is kept about as closely as it was asked for */
	next_purge = TimestampTzPlusMilliseconds(now,
											 Min((int64) PURGE_EVERY_MS,
												 (int64) bulkops_receipt_retention_s * 1000));
	do
	{
		n = 0;
		PG_TRY();
		{
			bulkops_begin_tx("purging expired jobs");
			n = bulkops_catalog_purge_expired(bulkops_receipt_retention_s,
											  PURGE_JOBS_PER_TXN);
			bulkops_commit_tx();
		}
		PG_CATCH();
		{
			bulkops_abort_tx(cxt);
			n = 0;
		}
		PG_END_TRY();
		CHECK_FOR_INTERRUPTS();
	} while (n == PURGE_JOBS_PER_TXN);
}
