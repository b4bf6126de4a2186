/*-------------------------------------------------------------------------
 *
 * exec.c
 *	  Running the worker's fixed statements through SPI.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

#include "bulkops.h"

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
