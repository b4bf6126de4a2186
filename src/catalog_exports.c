/*-------------------------------------------------------------------------
 *
 * catalog_exports.c
 *	  Every statement the worker runs on what an export (bulk_query) keeps
 *	  in bulkops' tables, named by what it does: its counters on its job,
 *	  its rejects, the staged pages of a replace (the rest: catalog.c).
 *
 * They run inside the worker's transaction (exec.c) that writes the page,
 * or that ends the export, with the worker session's fixed settings
 * (search_path = pg_catalog, pg_temp), never inside a user section
 * (sink.c leaves it first): the job's creator may neither write rejects
 * nor read staged pages.  The job's row is locked by the first statement
 * of that transaction that updates it, and waited for at most
 * LOCK_TIMEOUT_MS (exec.c).
 *
 * Memory: what these functions return is allocated in the caller's
 * memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"

#include "bulkops.h"
#include "catalog.h"
#include "exec.h"

/*
 * Count what a page of an export (or its end) did: records received,
 * stored and refused (the last two in the job's recent rate too).  A
 * table the export created (relid, or InvalidOid) is named by its OID from
 * now on.
 */
void
bulkops_catalog_count_export(int64 job_id, int64 total, int64 stored,
							 int64 rejected, Oid relid)
{
	Oid			types[5] = {INT8OID, INT8OID, OIDOID, INT8OID, INT8OID};
	Datum		values[5] = {Int64GetDatum(job_id), Int64GetDatum(total),
		ObjectIdGetDatum(relid), Int64GetDatum(stored),
	Int64GetDatum(rejected)};
	char		nulls[5] = {' ', ' ', OidIsValid(relid) ? ' ' : 'n', ' ', ' '};

	bulkops_exec("UPDATE bulkops.jobs SET rows_total = rows_total + $2, "
				 "rows_succeeded = rows_succeeded + $4, "
				 "rows_failed = rows_failed + $5, "
				 "recent_rows = bulkops._decayed(recent_rows, recent_at, now()) + $4 + $5, "
				 "recent_at = now(), "
				 "destination = coalesce(destination, $3::regclass), "
				 "destination_schema = CASE WHEN $3 IS NULL THEN destination_schema END, "
				 "destination_table = CASE WHEN $3 IS NULL THEN destination_table END "
				 "WHERE id = $1",
				 5, types, values, nulls, false, SPI_OK_UPDATE);
}

/* How many records the export has received so far (its rows_total). */
int64
bulkops_catalog_export_received(int64 job_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};
	bool		isnull;
	int64		n = 0;

	/* not read-only: it sees what this transaction wrote */
	bulkops_exec("SELECT rows_total FROM bulkops.jobs WHERE id = $1",
				 1, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 1)
		n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return n;
}

/*
 * Has the export been cancelled, or its deadline passed?  Locks the job's
 * row, so that a cancel either came first or finds the job ended.
 */
bool
bulkops_catalog_export_stopped(int64 job_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};
	bool		isnull;
	bool		stopped = true;

	bulkops_exec("SELECT cancel_requested OR timed_out FROM bulkops.jobs "
				 "WHERE id = $1 FOR NO KEY UPDATE",
				 1, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed == 1)
		stopped = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return stopped;
}

/*
 * Store rejects of an export: five arrays of one element per reject,
 * row_nos (int8), lines, columns (NULL where not known), sqlstates and
 * reasons (text).
 */
void
bulkops_catalog_insert_rejects(int64 job_id, Datum row_nos, Datum lines,
							   Datum columns, Datum sqlstates, Datum reasons)
{
	Oid			types[6] = {INT8OID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[6] = {Int64GetDatum(job_id), row_nos, lines, columns,
	sqlstates, reasons};

	bulkops_exec("INSERT INTO bulkops.export_rejects "
				 "(job_id, row_no, line, column_name, sqlstate, reason) "
				 "SELECT $1, r.row_no, r.line, r.column_name, r.sqlstate, r.reason "
				 "FROM unnest($2, $3, $4, $5, $6) "
				 "AS r (row_no, line, column_name, sqlstate, reason)",
				 6, types, values, NULL, false, SPI_OK_INSERT);
}

/* Keep a page (body: its CSV, header line included) until the export ends. */
void
bulkops_catalog_stage_page(int64 job_id, int64 first_row, bytea *body)
{
	Oid			types[3] = {INT8OID, INT8OID, BYTEAOID};
	Datum		values[3] = {Int64GetDatum(job_id), Int64GetDatum(first_row),
	PointerGetDatum(body)};

	bulkops_exec("INSERT INTO bulkops.export_pages (job_id, first_row, body) "
				 "VALUES ($1, $2, $3)",
				 3, types, values, NULL, false, SPI_OK_INSERT);
}

/*
 * The staged page of an export that follows the one whose first row is
 * after (0: the first page), or NULL when there is none; *first_row is its
 * first row.  One page at a time: together they may be large.
 */
bytea *
bulkops_catalog_next_staged_page(int64 job_id, int64 after, int64 *first_row)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(job_id), Int64GetDatum(after)};
	bytea	   *body = NULL;
	bool		isnull;

	/* not read-only: it sees the page this transaction staged last */
	bulkops_exec("SELECT first_row, body FROM bulkops.export_pages "
				 "WHERE job_id = $1 AND first_row > $2 ORDER BY first_row LIMIT 1",
				 2, types, values, NULL, false, SPI_OK_SELECT);
	MemoryContextSwitchTo(cxt);
	if (SPI_processed == 1)
	{
		*first_row = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
		body = DatumGetByteaPCopy(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	return body;
}

/* Forget the staged pages of an export. */
void
bulkops_catalog_drop_staged_pages(int64 job_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};

	bulkops_exec("DELETE FROM bulkops.export_pages WHERE job_id = $1",
				 1, types, values, NULL, false, SPI_OK_DELETE);
}
