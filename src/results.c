/*-------------------------------------------------------------------------
 *
 * results.c
 *	  Storing what an answer meant for a batch, in one short transaction:
 *	  its receipts, a query job's page, the remote side's counters, and the
 *	  batch's new step and remote id, or the batch's end.
 *
 * The worker (worker.c) decides in memory what comes next (plan_next);
 * this file makes that durable.  When storing fails, the batch is settled
 * in a second transaction with the reason, so no row is left without an
 * outcome.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "worker.h"

/*
 * Append a page of a query job's rows to its table and count them on the
 * job, in the transaction that also stores where the remote query stands.
 */
static void
write_page(Work *w, const char *page, size_t len)
{
	Oid			relid;
	uint64		n = bulkops_sink_page(&w->destination, w->created_by, page, len,
									  &relid);
	Oid			types[3] = {INT8OID, INT8OID, OIDOID};
	Datum		values[3] = {Int64GetDatum(w->ref.job_id), Int64GetDatum((int64) n),
	ObjectIdGetDatum(relid)};
	char		nulls[3] = {' ', ' ', OidIsValid(relid) ? ' ' : 'n'};

	/*
	 * A table the export created is named by its OID from now on; the
	 * worker's memory keeps the names, which find the same table.
	 */
	bulkops_exec("UPDATE bulkops.jobs SET rows_total = rows_total + $2, "
				 "rows_succeeded = rows_succeeded + $2, "
				 "destination = coalesce(destination, $3::regclass), "
				 "destination_schema = CASE WHEN $3 IS NULL THEN destination_schema END, "
				 "destination_table = CASE WHEN $3 IS NULL THEN destination_table END "
				 "WHERE id = $1",
				 3, types, values, nulls, false, SPI_OK_UPDATE);
}

/* A query job's table, for a message; inside a transaction. */
static char *
destination_name(Work *w)
{
	Oid			relid = w->destination.relid;

	if (OidIsValid(relid) && get_rel_name(relid) != NULL)
		return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										  get_rel_name(relid));
	if (w->destination.schema && w->destination.table)
		return quote_qualified_identifier(w->destination.schema,
										  w->destination.table);
	return pstrdup("the destination table");
}

/* Keep the remote side's counters for the batch, for job_progress. */
static void
record_progress(Work *w, const char *progress)
{
	Oid			types[3] = {INT8OID, INT4OID, TEXTOID};
	Datum		values[3];

	values[0] = Int64GetDatum(w->ref.job_id);
	values[1] = Int32GetDatum(w->ref.batch_no);
	values[2] = CStringGetTextDatum(progress);
	if (bulkops_exec("UPDATE bulkops.batches SET progress = $3::jsonb "
							  "WHERE job_id = $1 AND batch_no = $2",
							  3, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record batch progress");
}

/*
 * Carry out result for w inside one transaction.  Returns true if the
 * batch is finished (and w may be freed).
 */
static bool
apply_result(Work *w, BulkopsResult *res)
{
	bool		finished = false;
	int			status = (int) w->last_status;
	Oid			types[8] = {INT8OID, INT4OID, INT4OID, TEXTOID, INT4OID, TEXTOID,
	TEXTOID, BOOLOID};
	Datum		values[8];
	char		nulls[8] = "        ";

	bulkops_write_outcomes(&w->ref, res->outcomes, status);
	if (res->page && w->is_export)
		write_page(w, res->page, res->page_len);
	if (res->progress)
		record_progress(w, res->progress);

	switch (res->next)
	{
		case BULKOPS_NEXT_DONE:
			if (w->ref.npending > 0)
			{
				BulkopsResult rest = {0};

				bulkops_result_settle_rest(&w->batch, &rest, BULKOPS_ROW_UNKNOWN,
										   "the remote answer did not mention this row");
				bulkops_write_outcomes(&w->ref, rest.outcomes, status);
			}
			finished = true;
			break;
		case BULKOPS_NEXT_FAIL:
			{
				BulkopsResult rest = {0};

				bulkops_result_settle_rest(&w->batch, &rest,
										   res->fail_status == BULKOPS_ROW_SUCCEEDED
										   ? BULKOPS_ROW_FAILED : res->fail_status,
										   res->error);
				if (res->error_code)
				{
					ListCell   *lc;

					foreach(lc, rest.outcomes)
						((BulkopsOutcome *) lfirst(lc))->error_code = res->error_code;
				}
				bulkops_write_outcomes(&w->ref, rest.outcomes, status);
				finished = true;
			}
			break;
		case BULKOPS_NEXT_STEP:
		case BULKOPS_NEXT_RESUBMIT:
		case BULKOPS_NEXT_RETRY:
			break;
	}
	w->batch.npending = w->ref.npending;
	/* a query job has no rows to settle: only the dialect says it is done */
	if (w->ref.npending == 0 && w->ref.nrows > 0)
		finished = true;

	if (finished)
	{
		/* a DONE with an error: every row has its outcome, yet not as asked */
		bulkops_close_batch(&w->ref, res->error, status);
		return true;
	}

	/* persist where the batch stands before acting on it */
	values[0] = Int64GetDatum(w->ref.job_id);
	values[1] = Int32GetDatum(w->ref.batch_no);
	values[2] = Int32GetDatum(w->batch.step);
	values[3] = w->batch.remote_id ? CStringGetTextDatum(w->batch.remote_id) : (Datum) 0;
	nulls[3] = w->batch.remote_id ? ' ' : 'n';
	values[4] = Int32GetDatum(w->ref.attempts);
	values[5] = res->error ? CStringGetTextDatum(bulkops_clean_text(res->error, 8192)) : (Datum) 0;
	nulls[5] = res->error ? ' ' : 'n';
	values[6] = w->batch.step_data ? CStringGetTextDatum(w->batch.step_data) : (Datum) 0;
	/* the answer is in: only what earlier attempts left open stays open */
	values[7] = BoolGetDatum(w->maybe_applied);
	nulls[6] = w->batch.step_data ? ' ' : 'n';
	if (bulkops_exec("UPDATE bulkops.batches SET step = $3, remote_id = $4, "
							  "attempts = $5, last_error = coalesce($6, last_error), "
							  "step_data = $7, maybe_applied = $8, "
							  "updated_at = now() WHERE job_id = $1 AND batch_no = $2",
							  8, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update batch");
	return false;
}

/* Persist res for w; on any error, settle the batch as unknown. */
void
bulkops_commit_result(Work *w, BulkopsResult *res)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool finished = false;
	volatile bool failed = false;
	char	   *volatile why = NULL;

	PG_TRY();
	{
		bulkops_begin_tx("writing receipts");
		finished = apply_result(w, res);
		bulkops_commit_tx();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* kept for the receipts: "see the server log" helps nobody */
		MemoryContextSwitchTo(w->cxt);
		edata = CopyErrorData();
		why = pstrdup(edata->message);
		FreeErrorData(edata);
		bulkops_abort_tx(cxt);
		failed = true;
	}
	PG_END_TRY();

	if (failed)
	{
		/* reload what is pending from the table: the failed write changed it */
		BulkopsResult rest = {0};

		PG_TRY();
		{
			bulkops_begin_tx("settling a batch after an error");
			bulkops_load_pending(w);
			rest.next = BULKOPS_NEXT_FAIL;
			rest.fail_status = BULKOPS_ROW_UNKNOWN;
			rest.error = w->is_export
				? psprintf("could not write the results into %s: %s",
						   destination_name(w), why)
				: psprintf("bulkops could not record this row's outcome: %s", why);
			finished = apply_result(w, &rest);
			bulkops_commit_tx();
		}
		PG_CATCH();
		{
			bulkops_abort_tx(cxt);
			ereport(WARNING,
					(errmsg("bulkops batch %d of job " INT64_FORMAT " is left for the next restart",
							w->ref.batch_no, w->ref.job_id)));
			finished = true;
		}
		PG_END_TRY();
	}
	if (finished)
	{
		bulkops_crash_point("batch_done");
		bulkops_work_free(w);
	}
}

/*
 * What a result would have the worker store as it is (the remote id, the
 * step's note, the progress) comes from the remote side: it must be valid
 * in the database encoding, as text columns may hold nothing else, and the
 * progress must be JSON.  Checked here, where an ERROR means "could not read
 * the answer", rather than in the receipts' transaction, which it would
 * abort.  Receipts' texts need no check: receipts.c cleans them.  The
 * fuzzing harness (test/fuzz/) applies it too.
 */
void
bulkops_check_stored_text(BulkopsResult *res)
{
	if (res->remote_id)
		(void) pg_verifymbstr(res->remote_id, strlen(res->remote_id), false);
	if (res->step_data)
		(void) pg_verifymbstr(res->step_data, strlen(res->step_data), false);
	if (res->progress)
	{
		(void) pg_verifymbstr(res->progress, strlen(res->progress), false);
		(void) bulkops_json_parse(res->progress, strlen(res->progress));
	}
}

