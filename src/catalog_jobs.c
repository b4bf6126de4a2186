/*-------------------------------------------------------------------------
 *
 * catalog_jobs.c
 *	  Every statement backends run on bulkops' jobs and batches: enqueueing
 *	  a job, reading one or earlier receipts as the caller, cancelling one
 *	  (the worker's are in catalog.c, targets and grants in
 *	  catalog_targets.c).
 *
 * These run in the caller's transaction, after the caller's right to make
 * the change was checked (privileges.c): a statement that writes runs in
 * an owner section, one that reads for the caller in a safe section
 * (owner.c), both with search_path = pg_catalog, pg_temp.  What they
 * return is allocated in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "bulkops.h"
#include "catalog.h"

/*
 * bulkops.cancel(): stop job and settle its queued batches, in the
 * caller's transaction, as the extension's owner (the caller's right to
 * cancel it was checked: it may see the job); false if it had ended.
 */
bool
bulkops_catalog_cancel_job(int64 job_id)
{
	BulkopsSection s;
	bool		stopped;

	SPI_connect();
	bulkops_enter_owner(&s);
	stopped = bulkops_catalog_cancel_queued(job_id, false);
	(void) bulkops_catalog_finish_job(job_id);
	bulkops_leave(&s);
	SPI_finish();
	return stopped;
}

/* A job as the caller sees it: row-level security decides whether at all. */
BulkopsJobStatus
bulkops_catalog_read_job(int64 job_id)
{
	BulkopsJobStatus js = {0};
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};
	MemoryContext caller = CurrentMemoryContext;
	BulkopsSection s;
	int			rc;

	SPI_connect();
	bulkops_enter_safe(&s);
	rc = SPI_execute_with_args("SELECT state, rows_total, "
							   "rows_succeeded + rows_failed + rows_cancelled + rows_unknown, "
							   "xmin::text "
							   "FROM bulkops.jobs WHERE id = $1",
							   1, types, values, NULL, false, 1);
	bulkops_leave(&s);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read job " INT64_FORMAT ": %s", job_id,
			 SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		js.found = true;
		/* SPI's memory goes at SPI_finish */
		js.state = MemoryContextStrdup(caller, SPI_getvalue(tup, desc, 1));
		js.total = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		js.done = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		js.this_xact = TransactionIdIsCurrentTransactionId((TransactionId)
														   strtoul(SPI_getvalue(tup, desc, 4), NULL, 10));
	}
	SPI_finish();
	return js;
}

/* Create a job for the current user (its row, before its batches). */
int64
bulkops_catalog_insert_job(const char *target, const char *dialect,
						   BulkopsOp op, const char *key, Jsonb *options,
						   int32 sync_id)
{
	Oid			types[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, OIDOID,
	INT8OID, INT4OID};
	Datum		values[8];
	char		nulls[8] = "        ";
	BulkopsSection s;
	bool		isnull;
	int64		id;
	int			rc;

	values[0] = CStringGetTextDatum(target);
	values[1] = CStringGetTextDatum(dialect);
	values[2] = CStringGetTextDatum(bulkops_op_name(op));
	values[3] = key ? CStringGetTextDatum(key) : (Datum) 0;
	nulls[3] = key ? ' ' : 'n';
	values[4] = JsonbPGetDatum(options);
	values[5] = ObjectIdGetDatum(GetUserId());
	values[6] = Int64GetDatum(bulkops_generation_at(GetCurrentTransactionStartTimestamp()));
	values[7] = Int32GetDatum(sync_id);
	nulls[7] = sync_id ? ' ' : 'n';
	SPI_connect();
	bulkops_enter_owner(&s);
	rc = SPI_execute_with_args("INSERT INTO bulkops.jobs "
							   "(target, dialect, operation, key_column, options, created_by, "
							   "generation, sync_id) "
							   "VALUES ($1, $2, $3, $4, $5, $6::regrole, $7, $8) RETURNING id",
							   8, types, values, nulls, false, 1);

	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not create job: %s", SPI_result_code_string(rc));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1, &isnull));

	/*
	 * The worker attaches a generation's partition while jobs are enqueued.
	 * An INSERT that routed a batch by the partitions as they were before, to
	 * the default partition, would then fail its check against the default's
	 * new bound: take the default partition's lock first, so that an attach
	 * under way ends before this job's batches are routed (and one that
	 * starts later waits for this transaction, or gives up and tries again on
	 * its next tick).
	 */
	if (SPI_execute("LOCK TABLE ONLY bulkops.batches_default IN ROW EXCLUSIVE MODE",
					false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not lock bulkops.batches_default");
	bulkops_leave(&s);
	SPI_finish();
	return id;
}

/*
 * Write one batch of a job being enqueued, in its job's generation.
 * Called from inside the executor of the caller's source query, hence its
 * own (nested) SPI connection; the statement is parsed once per backend,
 * in an owner section, and kept.
 */
void
bulkops_catalog_insert_batch(int64 job_id, int32 batch_no, int64 first_row,
							 int nrows, Datum keys, Datum offsets, Datum body,
							 BulkopsOp op, bytea *prologue, Datum hashes)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[10] = {Int64GetDatum(job_id), Int32GetDatum(batch_no),
		Int64GetDatum(first_row), Int32GetDatum(nrows), keys, offsets, body,
		CStringGetTextDatum(bulkops_op_name(op)), PointerGetDatum(prologue),
	hashes};
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
	prologue ? ' ' : 'n', hashes ? ' ' : 'n'};
	BulkopsSection s;
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	bulkops_enter_owner(&s);
	if (plan == NULL)
	{
		Oid			types[10] = {INT8OID, INT4OID, INT8OID, INT4OID,
			TEXTARRAYOID, INT4ARRAYOID, BYTEAOID, TEXTOID, BYTEAOID,
		BYTEAOID};
		SPIPlanPtr	p = SPI_prepare("INSERT INTO bulkops.batches "
									"(job_id, batch_no, first_row, row_count, keys, offsets, body, "
									"operation, prologue, hashes, generation) "
									"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
									"(SELECT generation FROM bulkops.jobs WHERE id = $1))",
									10, types);

		if (p == NULL)
			elog(ERROR, "could not prepare batch insert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		plan = p;
	}
	rc = SPI_execute_plan(plan, values, nulls, false, 0);
	bulkops_leave(&s);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not write batch: %s", SPI_result_code_string(rc));
	SPI_finish();
}

/*
 * Record an enqueued job's totals and what every request of it starts with
 * (prologue, or NULL); a job with no batch ends here, as any other does.
 */
void
bulkops_catalog_close_job(int64 job_id, int64 rows, int32 batches, int64 bytes,
						  bytea *prologue)
{
	Oid			types[5] = {INT8OID, INT8OID, INT4OID, INT8OID, BYTEAOID};
	Datum		values[5] = {Int64GetDatum(job_id), Int64GetDatum(rows),
	Int32GetDatum(batches), Int64GetDatum(bytes), PointerGetDatum(prologue)};
	char		nulls[5] = {' ', ' ', ' ', ' ', prologue ? ' ' : 'n'};
	BulkopsSection s;
	int			rc;

	SPI_connect();
	bulkops_enter_owner(&s);
	rc = SPI_execute_with_args("UPDATE bulkops.jobs SET rows_total = $2, batches_total = $3, "
							   "bytes_total = $4, prologue = $5 "
							   "WHERE id = $1", 5, types, values, nulls, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not update job: %s", SPI_result_code_string(rc));
	if (batches == 0)
		(void) bulkops_catalog_finish_job(job_id);
	bulkops_leave(&s);
	SPI_finish();
}

/*
 * An export's one batch, with no rows and the remote query as its body,
 * and where its rows go: a table (relid), or the schema and name of one to
 * create.
 */
void
bulkops_catalog_insert_export(int64 job_id, Oid relid, const char *schema,
							  const char *table, bytea *query)
{
	Oid			types[5] = {INT8OID, OIDOID, BYTEAOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = "     ";
	BulkopsSection s;
	int			rc;

	values[0] = Int64GetDatum(job_id);
	values[1] = ObjectIdGetDatum(relid);
	nulls[1] = OidIsValid(relid) ? ' ' : 'n';
	values[2] = PointerGetDatum(query);
	values[3] = schema ? CStringGetTextDatum(schema) : (Datum) 0;
	nulls[3] = schema ? ' ' : 'n';
	values[4] = table ? CStringGetTextDatum(table) : (Datum) 0;
	nulls[4] = table ? ' ' : 'n';
	SPI_connect();
	bulkops_enter_owner(&s);
	rc = SPI_execute_with_args("WITH b AS (INSERT INTO bulkops.batches "
							   "(job_id, batch_no, first_row, row_count, keys, offsets, body, "
							   "operation, generation) "
							   "VALUES ($1, 1, 1, 0, '{}', '{0}', $3, 'query', "
							   "(SELECT generation FROM bulkops.jobs WHERE id = $1))) "
							   "UPDATE bulkops.jobs SET destination = $2::regclass, "
							   "destination_schema = $4, destination_table = $5, "
							   "batches_total = 1, bytes_total = octet_length($3) "
							   "WHERE id = $1",
							   5, types, values, nulls, false, 0);
	bulkops_leave(&s);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not create query job: %s", SPI_result_code_string(rc));
	SPI_finish();
}

/* rows fetched at a time from the receipts' cursor */
#define VERSIONS_FETCH 10000

/*
 * For a job whose dialect asks for the remote versions of its keys
 * (BulkopsEncodeTarget.want_versions): call fn for each key of target
 * whose newest succeeded receipt recorded a remote_version.  Read through
 * the view bulkops.receipts as the caller, in a safe section: row-level
 * security decides whose jobs count, and no name resolves through the
 * caller's search_path.  A key whose newest success recorded none (a
 * delete) has no version.  Every receipt the target has kept is read once,
 * as a cursor, so memory holds a fetch at a time besides what fn keeps.
 */
void
bulkops_catalog_remote_versions(const char *target, BulkopsVersionFn fn,
								void *arg)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	BulkopsSection s;
	Portal		portal;

	values[0] = CStringGetTextDatum(target);
	SPI_connect();
	bulkops_enter_safe(&s);
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT key, remote_version FROM ("
									   "SELECT DISTINCT ON (r.key) r.key, r.remote_version"
									   " FROM bulkops.receipts r"
									   " JOIN bulkops.jobs j ON j.id = r.job_id"
									   " WHERE j.target = $1 AND r.status = 'succeeded'"
									   " AND r.key IS NOT NULL"
									   " ORDER BY r.key, r.updated_at DESC, r.job_id DESC,"
									   " r.row_no DESC) s"
									   " WHERE remote_version IS NOT NULL",
									   1, types, values, NULL, true, 0);
	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, VERSIONS_FETCH);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			char	   *key = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
			char	   *version = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);

			/* fn copies what it keeps */
			fn(arg, key, version);
			pfree(key);
			pfree(version);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	bulkops_leave(&s);
	SPI_finish();
}
