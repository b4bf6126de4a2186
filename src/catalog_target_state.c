/*-------------------------------------------------------------------------
 *
 * catalog_target_state.c
 *	  The statements on bulkops.target_state: until when each target's
 *	  requests are held after it refused one for a rate or usage limit
 *	  (the holds themselves live in shared memory: target_state.c; when
 *	  they begin and end: ratelimit.c).
 *
 * The worker writes a hold when it begins or grows, in a short transaction
 * of its own, and reads the holds back when it starts, so that a restarted
 * server does not send to a target before the time it asked for.  A saved
 * time only ever grows while the row lasts: two workers may save holds of
 * one target in either order.  A row goes with its target (ON DELETE
 * CASCADE); a time in the past holds nothing.
 *
 * Like catalog.c, every statement runs in the worker's transaction with
 * its fixed settings (search_path = pg_catalog, pg_temp) and names its
 * tables with their schema.  What the functions return is allocated in
 * the current memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "bulkops.h"
#include "catalog.h"
#include "exec.h"

/*
 * Save that target's requests are held until then, after it answered
 * http_status.  A later time already saved stands (another worker may
 * have saved a longer hold); a target dropped meanwhile saves nothing.
 */
void
bulkops_catalog_save_target_hold(const char *target, TimestampTz until,
								 int http_status)
{
	Oid			types[3] = {TEXTOID, TIMESTAMPTZOID, INT4OID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(target);
	values[1] = TimestampTzGetDatum(until);
	values[2] = Int32GetDatum(http_status);
	bulkops_exec("INSERT INTO bulkops.target_state AS s"
				 " (target, next_request_at, http_status, updated_at)"
				 " SELECT $1, $2, $3, now() FROM bulkops.targets WHERE name = $1 "
				 "ON CONFLICT (target) DO UPDATE"
				 " SET next_request_at = greatest(s.next_request_at, excluded.next_request_at),"
				 "  http_status = excluded.http_status, updated_at = now()",
				 3, types, values, NULL, false, SPI_OK_INSERT);
}

/* The holds saved that have not ended yet. */
BulkopsSavedHold *
bulkops_catalog_target_holds(int *n)
{
	BulkopsSavedHold *holds;
	uint64		i;

	bulkops_exec("SELECT target, next_request_at, coalesce(http_status, 0)"
				 " FROM bulkops.target_state WHERE next_request_at > now()",
				 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	*n = (int) SPI_processed;
	holds = palloc(sizeof(BulkopsSavedHold) * Max(*n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;

		holds[i].target = SPI_getvalue(t, d, 1);
		holds[i].until = DatumGetTimestampTz(SPI_getbinval(t, d, 2, &isnull));
		holds[i].http_status = DatumGetInt32(SPI_getbinval(t, d, 3, &isnull));
	}
	return holds;
}
