/*-------------------------------------------------------------------------
 *
 * receipts_stats.c
 *	  What the planner may assume of bulkops._receipts()'s output, which
 *	  the view bulkops.receipts is made of: within one batch, row_no and
 *	  key are unique.
 *
 * A function's output has no statistics, so the planner takes 200
 * distinct values for any of its columns, and a hash table on one as ten
 * percent of its rows in each bucket.  Joining a job's receipts to the
 * source by key (r.key = src.id::text AND r.job_id = $1, what users do
 * most) was then planned as a merge join sorting both sides, at twice the
 * time of the same join on a plain table.  Knowing the column unique
 * within each call, the planner hashes it and the join costs what it does
 * on a table.
 *
 * Rules: only the planner's estimates change, never a result; the hook
 * looks at function scans of bulkops._receipts() alone and passes every
 * other question to the hook installed before it, or to PostgreSQL.  It
 * is installed when the library is loaded (at server start, as bulkops
 * must be preloaded); a backend that plans before loading it gets the
 * default estimates, and the same rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/primnodes.h"
#include "parser/parsetree.h"
#include "utils/lsyscache.h"
#include "utils/selfuncs.h"

#include "bulkops.h"

/* bulkops._receipts()'s output columns that are unique within a call */
#define RECEIPTS_ROW_NO 1
#define RECEIPTS_KEY 2

static get_relation_stats_hook_type prev_get_relation_stats = NULL;

/* Is funcid bulkops._receipts()? */
static bool
is_receipts_function(Oid funcid)
{
	char	   *name = get_func_name(funcid);
	char	   *schema;

	if (name == NULL || strcmp(name, "_receipts") != 0)
		return false;
	schema = get_namespace_name(get_func_namespace(funcid));
	return schema != NULL && strcmp(schema, "bulkops") == 0;
}

static bool
receipts_relation_stats(PlannerInfo *root, RangeTblEntry *rte,
						AttrNumber attnum, VariableStatData *vardata)
{
	RangeTblFunction *rtfunc;

	if (prev_get_relation_stats &&
		prev_get_relation_stats(root, rte, attnum, vardata))
		return true;
	if (rte->rtekind != RTE_FUNCTION || list_length(rte->functions) != 1 ||
		rte->funcordinality)
		return false;
	rtfunc = linitial_node(RangeTblFunction, rte->functions);
	if (!IsA(rtfunc->funcexpr, FuncExpr) ||
		!is_receipts_function(((FuncExpr *) rtfunc->funcexpr)->funcid))
		return false;
	if (attnum == RECEIPTS_ROW_NO || attnum == RECEIPTS_KEY)
		vardata->isunique = true;
	/* no statistics tuple: PostgreSQL goes on, and finds none */
	return false;
}

void
bulkops_install_receipts_stats(void)
{
	prev_get_relation_stats = get_relation_stats_hook;
	get_relation_stats_hook = receipts_relation_stats;
}
