/*-------------------------------------------------------------------------
 *
 * receipts.c
 *	  Writing outcomes: receipts in bulk, batch and job counters, the end of
 *	  a job.
 *
 * Every function runs inside the caller's transaction and opens its own
 * (possibly nested) SPI connection.  A batch's receipts, its state and its
 * job's counters change in one transaction, so a crash can never leave a
 * receipt without its count or a row with two receipts (the primary key
 * (job_id, row_no) would refuse the second anyway).  Receipts are inserted
 * with one statement per batch over unnest()ed arrays: no per-row UPDATE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "bulkops.h"

static const char *const status_names[] = {
	"succeeded", "failed", "cancelled", "unknown"
};

/*
 * Remote text made safe to store: valid in the database encoding, no NUL,
 * bounded.  Remote answers are not trusted to be any of these.
 */
char *
bulkops_clean_text(const char *s, int maxlen)
{
	int			len;
	StringInfoData buf;
	const char *p;

	if (s == NULL)
		return NULL;
	len = strlen(s);
	if (len > maxlen)
		len = maxlen;
	initStringInfo(&buf);
	p = s;
	while (p < s + len)
	{
		int			l = pg_encoding_verifymbchar(GetDatabaseEncoding(), p,
												 s + len - p);

		if (l <= 0)
		{
			appendStringInfoChar(&buf, '?');
			p++;
		}
		else
		{
			appendBinaryStringInfo(&buf, p, l);
			p += l;
		}
	}
	return buf.data;
}

static void
exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
	 int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls,
										   false, 0);

	if (rc != expect)
		elog(ERROR, "bulkops: could not run \"%.40s...\": %s", sql,
			 SPI_result_code_string(rc));
}

static Datum
text_array(Datum *elems, bool *nulls, int n)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};

	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(bulkops_clean_text(s, 8192)) : (Datum) 0;
}

/*
 * Store the outcomes a dialect reported for ref's rows and count them on
 * the job.  Outcomes for rows already settled (or out of range) are
 * ignored: a row gets exactly one receipt.
 */
void
bulkops_write_outcomes(BulkopsBatchRef *ref, List *outcomes, int http_status)
{
	int			n = list_length(outcomes);
	Datum	   *rowno = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *keys = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *keynulls = palloc(sizeof(bool) * Max(n, 1));
	Datum	   *status = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *rid = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *ridnulls = palloc(sizeof(bool) * Max(n, 1));
	Datum	   *created = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *creatednulls = palloc(sizeof(bool) * Max(n, 1));
	Datum	   *ecode = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *ecodenulls = palloc(sizeof(bool) * Max(n, 1));
	Datum	   *emsg = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *emsgnulls = palloc(sizeof(bool) * Max(n, 1));
	int64		counts[4] = {0};
	int			m = 0;
	ListCell   *lc;
	int			dims[1];
	int			lbs[1] = {1};
	Oid			types[12] = {INT8OID, INT4OID, INT4OID, INT8ARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, BOOLARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, INT8OID, INT8OID};
	Datum		values[12];
	char		nulls[12] = "            ";

	foreach(lc, outcomes)
	{
		BulkopsOutcome *o = lfirst(lc);

		if (o->row < 0 || o->row >= ref->nrows || !ref->pending[o->row])
			continue;
		ref->pending[o->row] = false;
		ref->npending--;
		rowno[m] = Int64GetDatum(ref->first_row + o->row);
		keys[m] = ref->keys[o->row] ? CStringGetTextDatum(ref->keys[o->row]) : (Datum) 0;
		keynulls[m] = (ref->keys[o->row] == NULL);
		status[m] = CStringGetTextDatum(status_names[o->status]);
		rid[m] = text_or_null(o->remote_id, &ridnulls[m]);
		created[m] = BoolGetDatum(o->created == 1);
		creatednulls[m] = (o->created < 0);
		ecode[m] = text_or_null(o->error_code, &ecodenulls[m]);
		emsg[m] = text_or_null(o->error_message, &emsgnulls[m]);
		counts[o->status]++;
		m++;
	}
	if (m == 0)
		return;

	dims[0] = m;
	values[0] = Int64GetDatum(ref->job_id);
	values[1] = Int32GetDatum(http_status);
	nulls[1] = http_status > 0 ? ' ' : 'n';
	values[2] = Int32GetDatum(ref->attempts);
	values[3] = PointerGetDatum(construct_md_array(rowno, NULL, 1, dims, lbs,
												   INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[4] = text_array(keys, keynulls, m);
	values[5] = text_array(status, NULL, m);
	values[6] = text_array(rid, ridnulls, m);
	values[7] = PointerGetDatum(construct_md_array(created, creatednulls, 1, dims,
												   lbs, BOOLOID, 1, true, TYPALIGN_CHAR));
	values[8] = text_array(ecode, ecodenulls, m);
	values[9] = text_array(emsg, emsgnulls, m);
	values[10] = Int64GetDatum(counts[BULKOPS_ROW_SUCCEEDED]);
	values[11] = Int64GetDatum(counts[BULKOPS_ROW_FAILED]);

	SPI_connect();
	exec("INSERT INTO bulkops.receipts (job_id, row_no, key, status, remote_id, created, "
		 "http_status, error_code, error_message, attempts) "
		 "SELECT $1, u.r, u.k, u.s, u.i, u.c, $2, u.ec, u.em, $3 "
		 "FROM unnest($4, $5, $6, $7, $8, $9, $10) AS u(r, k, s, i, c, ec, em)",
		 10, types, values, nulls, SPI_OK_INSERT);
	values[1] = Int64GetDatum(counts[BULKOPS_ROW_SUCCEEDED]);
	values[2] = Int64GetDatum(counts[BULKOPS_ROW_FAILED]);
	values[3] = Int64GetDatum(counts[BULKOPS_ROW_CANCELLED]);
	values[4] = Int64GetDatum(counts[BULKOPS_ROW_UNKNOWN]);
	{
		Oid			ctypes[5] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};

		exec("UPDATE bulkops.jobs SET rows_succeeded = rows_succeeded + $2, "
			 "rows_failed = rows_failed + $3, rows_cancelled = rows_cancelled + $4, "
			 "rows_unknown = rows_unknown + $5 WHERE id = $1",
			 5, ctypes, values, NULL, SPI_OK_UPDATE);
	}
	SPI_finish();
}

/* Mark ref's batch done and end its job if it was the last one. */
void
bulkops_close_batch(BulkopsBatchRef *ref, const char *last_error,
					int http_status)
{
	Oid			types[4] = {INT8OID, INT4OID, TEXTOID, INT4OID};
	Datum		values[4];
	char		nulls[4] = "    ";

	values[0] = Int64GetDatum(ref->job_id);
	values[1] = Int32GetDatum(ref->batch_no);
	values[2] = last_error ? CStringGetTextDatum(bulkops_clean_text(last_error, 8192)) : (Datum) 0;
	nulls[2] = last_error ? ' ' : 'n';
	values[3] = Int32GetDatum(http_status);
	nulls[3] = http_status > 0 ? ' ' : 'n';

	SPI_connect();
	exec("UPDATE bulkops.batches SET state = 'done', last_error = $3, "
		 "http_status = coalesce($4, http_status), updated_at = now() "
		 "WHERE job_id = $1 AND batch_no = $2",
		 4, types, values, nulls, SPI_OK_UPDATE);
	exec("UPDATE bulkops.jobs SET batches_done = batches_done + 1, "
		 "last_error = coalesce($3, last_error) WHERE id = $1 AND $2 IS NOT NULL",
		 3, types, values, nulls, SPI_OK_UPDATE);
	SPI_finish();
	bulkops_finish_job_if_done(ref->job_id);
}

/*
 * Give a job whose batches are all done its final state, and tell
 * listeners on channel bulkops_jobs.
 */
void
bulkops_finish_job_if_done(int64 job_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};

	SPI_connect();
	exec("WITH done AS ("
		 " UPDATE bulkops.jobs SET finished_at = now(), state = CASE"
		 "  WHEN cancel_requested THEN 'cancelled'"
		 "  WHEN rows_succeeded = rows_total THEN 'succeeded'"
		 "  WHEN rows_succeeded = 0 THEN 'failed'"
		 "  ELSE 'partial' END"
		 " WHERE id = $1 AND batches_done >= batches_total"
		 " AND state IN ('queued', 'running')"
		 " RETURNING id, state)"
		 "SELECT pg_notify('bulkops_jobs', id || ' ' || state) FROM done",
		 1, types, values, NULL, SPI_OK_SELECT);
	SPI_finish();
}

/*
 * Mark job cancelled and settle its batches that were never sent: their
 * rows become cancelled.  Batches already in the worker's hands are the
 * worker's to settle, since a remote task may be applying them.
 *
 * Locks are taken in the worker's order, batches before their job, so a
 * cancel racing a claim waits instead of deadlocking.
 */
void
bulkops_cancel_queued_batches(int64 job_id)
{
	Oid			types[3] = {INT8OID, INT8OID, INT8OID};
	Datum		values[3] = {Int64GetDatum(job_id)};
	bool		isnull;

	SPI_connect();
	exec("WITH b AS ("
		 " UPDATE bulkops.batches SET state = 'done', updated_at = now(),"
		 "  last_error = 'cancelled before it was sent'"
		 " WHERE job_id = $1 AND state = 'queued' AND step = 0"
		 " RETURNING first_row, keys, attempts),"
		 "ins AS ("
		 " INSERT INTO bulkops.receipts (job_id, row_no, key, status, error_message, attempts)"
		 " SELECT $1, b.first_row + i - 1, b.keys[i], 'cancelled', 'cancelled by bulkops.cancel()',"
		 "  b.attempts"
		 " FROM b, generate_subscripts(b.keys, 1) AS i"
		 " WHERE NOT EXISTS (SELECT 1 FROM bulkops.receipts r"
		 "  WHERE r.job_id = $1 AND r.row_no = b.first_row + i - 1)"
		 " RETURNING 1)"
		 "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM b)",
		 1, types, values, NULL, SPI_OK_SELECT);
	values[1] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	values[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	exec("UPDATE bulkops.jobs SET cancel_requested = true,"
		 " rows_cancelled = rows_cancelled + $2, batches_done = batches_done + $3"
		 " WHERE id = $1",
		 3, types, values, NULL, SPI_OK_UPDATE);
	SPI_finish();
}
