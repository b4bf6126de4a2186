/*-------------------------------------------------------------------------
 *
 * catalog_metrics.c
 *	  The statements monitoring runs on bulkops' tables: the worker folding
 *	  the per-target row counters, and backends reading, as the caller,
 *	  the targets it owns and a job's summary and progress.
 *
 * bulkops.row_counts gets one row per transaction that stores receipts
 * (catalog.c), so that no writer waits for another; the first worker of
 * the database folds them, once a minute, into one row per target and
 * creator.  The fold deletes only rows its snapshot sees committed, and
 * nobody else deletes or updates that table, so it waits for nobody and
 * no count is lost or counted twice.
 *
 * The backends' statements run in a safe section (owner.c), as the
 * caller: row-level security decides which jobs they see, and
 * pg_has_role() on a target's owner and grantees which targets' counters
 * the caller sees.  What they return is
 * allocated in the caller's memory context.
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
#include "joblog.h"

/* ---- the worker ---- */

/*
 * Fold the row counters of every target and creator that has more than
 * one row into one; returns how many rows were folded.  In the worker's
 * transaction.
 */
int64
bulkops_catalog_fold_row_counts(void)
{
	bool		isnull;
	Datum		d;

	bulkops_exec("WITH many AS ("
				 " SELECT target, created_by FROM bulkops.row_counts"
				 " GROUP BY target, created_by HAVING count(*) > 1),"
				 "gone AS ("
				 " DELETE FROM bulkops.row_counts r USING many m"
				 " WHERE r.target = m.target AND r.created_by = m.created_by"
				 " RETURNING r.*),"
				 "folded AS ("
				 " INSERT INTO bulkops.row_counts"
				 " (target, created_by, succeeded, failed, cancelled, unknown)"
				 " SELECT target, created_by, sum(succeeded), sum(failed),"
				 "  sum(cancelled), sum(unknown)"
				 " FROM gone GROUP BY target, created_by)"
				 "SELECT count(*) FROM gone",
				 0, NULL, NULL, NULL, false, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/* ---- backends, as the caller ---- */

/*
 * Run a query as the caller, in a safe section; SPI is connected.  Not
 * read-only: each query takes a snapshot of its own, so that bulkops.wait()
 * sees what the worker committed since its statement began.
 */
static void
read_as_caller(const char *sql, int nargs, Oid *types, Datum *values)
{
	BulkopsSection s;
	int			rc;

	bulkops_enter_safe(&s);
	rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);
	bulkops_leave(&s);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "bulkops: could not run \"%.40s...\": %s", sql,
			 SPI_result_code_string(rc));
}

/*
 * The names of the targets the caller owns (has its owner's privileges) or
 * holds a privilege on, directly, through a role or as PUBLIC (every
 * target, for a superuser), sorted, as a List of strings.
 */
List *
bulkops_catalog_owned_targets(void)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *names = NIL;
	uint64		i;

	SPI_connect();
	read_as_caller("SELECT t.name FROM bulkops.targets t"
				   " WHERE pg_has_role(t.owner, 'USAGE')"
				   " OR EXISTS (SELECT FROM bulkops.target_privileges p"
				   "  WHERE p.target = t.name AND CASE WHEN p.grantee::oid = 0"
				   "   THEN true ELSE pg_has_role(p.grantee::oid, 'USAGE') END)"
				   " ORDER BY t.name",
				   0, NULL, NULL);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i],
										SPI_tuptable->tupdesc, 1);
		MemoryContext old = MemoryContextSwitchTo(caller);

		names = lappend(names, pstrdup(name));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return names;
}

/* Job job_id's summary, if the caller may see the job. */
bool
bulkops_catalog_job_summary(int64 job_id, BulkopsJobSummary *summary)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};
	bool		found;

	SPI_connect();
	read_as_caller("SELECT " BULKOPS_JOB_SUMMARY_COLUMNS
				   " FROM bulkops.jobs WHERE id = $1",
				   1, types, values);
	found = (SPI_processed == 1);
	if (found)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		bulkops_job_summary_read(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								 1, summary);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return found;
}

/*
 * Job job_id's progress as bulkops.job_progress shows it, if the caller may
 * see the job: rows done of total, rows per second over the last minute
 * (negative when unknown) and when it should end (0 when unknown).
 */
bool
bulkops_catalog_job_progress(int64 job_id, BulkopsJobProgress *p)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};
	bool		found;

	SPI_connect();
	read_as_caller("SELECT rows_done, rows_total, rows_per_second::float8, eta"
				   " FROM bulkops.job_progress WHERE id = $1",
				   1, types, values);
	found = (SPI_processed == 1);
	if (found)
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		p->done = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		p->total = DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
		d = SPI_getbinval(row, desc, 3, &isnull);
		p->rate = isnull ? -1 : DatumGetFloat8(d);
		d = SPI_getbinval(row, desc, 4, &isnull);
		p->eta = isnull ? 0 : DatumGetTimestampTz(d);
	}
	SPI_finish();
	return found;
}
