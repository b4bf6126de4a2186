/*-------------------------------------------------------------------------
 *
 * retry.c
 *	  bulkops.retry(): a new job with exactly the rows of an ended job whose
 *	  receipts have the given statuses, sent as they were sent the first
 *	  time.
 *
 * The source is not run again: each row goes out with the encoding its
 * batch kept (a batch keeps its body until all of its rows succeeded, see
 * results.c), with its batch's operation and prologue, its key and, for a
 * sync's job, its content hash, so that the sync's state learns from the
 * new job's receipts as from the old one's.  The new job belongs to the
 * caller and to the same sync.  Rows of one old batch stay together and in
 * their order; the writer cuts new batches by the job's own limits.
 *
 * Rules: the caller must see the job (row-level security on bulkops.jobs
 * decides), and have the target privileges of every operation the job
 * sent, checked before anything is written; the job's options must still
 * be within what its target allows.  The new job is the caller's.  A row to send again whose
 * batch lost its body (a job from before version 1.3, or statuses asking
 * for rows whose batch all succeeded) is an ERROR: nothing is enqueued.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "batch_writer.h"
#include "bulkops.h"
#include "catalog.h"
#include "enqueue.h"
#include "receipts.h"
#include "sync_state.h"

typedef struct RetryState
{
	BulkopsJobRow job;
	const BulkopsDialect *dialect;
	BulkopsBatchWriter *writer;
	int			wanted;			/* 1 << BulkopsRowStatus, each wanted */
	int64		new_job;
	bool		started;		/* the writer has an operation set */
	BulkopsOp	op;				/* the operation rows go out with now */
	bytea	   *prologue;		/* the batch's own prologue now, or NULL */
	MemoryContext tmp;			/* one old batch's arrays */
} RetryState;

/* The statuses asked for, as a mask; an unknown name is an ERROR. */
static int
wanted_statuses(ArrayType *arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			mask = 0;
	int			i;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *name;
		int			s;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("statuses must not contain null")));
		name = TextDatumGetCString(elems[i]);
		for (s = 0; s < BULKOPS_RECEIPT_NSTATUSES; s++)
			if (strcmp(name, bulkops_receipt_status_names[s]) == 0)
				break;
		if (s == BULKOPS_RECEIPT_NSTATUSES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" is not a receipt status", name),
					 errhint("Receipt statuses are succeeded, failed, cancelled and unknown.")));
		mask |= 1 << s;
	}
	return mask;
}

static int64
make_job(void *arg)
{
	RetryState *st = arg;

	st->new_job = bulkops_catalog_insert_job(st->job.target, st->dialect->name,
											 st->job.op, st->job.key,
											 st->job.options, st->job.sync_id);
	return st->new_job;
}

static bool
same_bytes(const bytea *a, const bytea *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/*
 * Rows from now on go out as op with the batch's own prologue (NULL: the
 * job's); the writer starts a new batch when either changes.
 */
static void
set_op(RetryState *st, BulkopsOp op, bytea *prologue)
{
	const bytea *p = prologue ? prologue : st->job.prologue;
	StringInfoData s;

	if (st->started && op == st->op && same_bytes(prologue, st->prologue))
		return;
	initStringInfo(&s);
	if (p)
		appendBinaryStringInfo(&s, VARDATA_ANY(p), VARSIZE_ANY_EXHDR(p));
	bulkops_writer_set_op(st->writer, op, &s, prologue != NULL);
	st->started = true;
	st->op = op;
	st->prologue = prologue ? DatumGetByteaPCopy(PointerGetDatum(prologue)) : NULL;
}

/*
 * One batch of the old job: its rows with a wanted status, copied.  The
 * columns are those retry_columns names, in order.
 */
#define RETRY_COLUMNS "batch_no, operation, keys, outcomes, body, offsets, prologue, hashes"

static void
retry_batch(void *arg, HeapTuple tup, TupleDesc desc)
{
	RetryState *st = arg;
	MemoryContext old;
	bool		isnull;
	int32		batch_no;
	BulkopsOp	op;
	Datum	   *kd;
	bool	   *kn;
	int			nkeys;
	bytea	   *outcomes;
	const uint8 *flags;
	Datum		d;
	bytea	   *body = NULL;
	Datum	   *od = NULL;
	bool	   *on;
	int			noff = 0;
	bytea	   *prologue = NULL;
	const uint8 *hashes = NULL;
	int			i;

	MemoryContextReset(st->tmp);
	old = MemoryContextSwitchTo(st->tmp);
	batch_no = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	op = bulkops_op_from_name(SPI_getvalue(tup, desc, 2));
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 3, &isnull)),
					  TEXTOID, -1, false, TYPALIGN_INT, &kd, &kn, &nkeys);
	d = SPI_getbinval(tup, desc, 4, &isnull);
	if (isnull)
	{
		/* an ended job's batches all have receipts; a cancelled one too */
		MemoryContextSwitchTo(old);
		return;
	}
	outcomes = DatumGetByteaPP(d);
	flags = (const uint8 *) VARDATA_ANY(outcomes);
	if (VARSIZE_ANY_EXHDR(outcomes) != nkeys)
		elog(ERROR, "bulkops: the receipts of batch %d of job " INT64_FORMAT " are damaged",
			 batch_no, st->job.id);

	for (i = 0; i < nkeys; i++)
	{
		int			status = BULKOPS_RECEIPT_STATUS(flags[i]);
		int			start;
		int			end;
		uint64		hash = 0;

		if (status < 0 || !(st->wanted & (1 << status)))
			continue;
		if (body == NULL)
		{
			/* the first row of this batch to send again: read its rows */
			d = SPI_getbinval(tup, desc, 5, &isnull);
			if (isnull)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("the rows of job " INT64_FORMAT " are gone", st->job.id),
						 errdetail("Batch %d has rows to send again, but its payload was not kept: "
								   "a batch keeps it only while one of its rows has not succeeded, "
								   "and jobs enqueued before version 1.3 kept none.",
								   batch_no),
						 errhint("Push those rows again from their source.")));
			body = DatumGetByteaPP(d);
			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 6, &isnull)),
							  INT4OID, 4, true, TYPALIGN_INT, &od, &on, &noff);
			if (noff != nkeys + 1)
				elog(ERROR, "bulkops: the rows of batch %d of job " INT64_FORMAT " are damaged",
					 batch_no, st->job.id);
			d = SPI_getbinval(tup, desc, 7, &isnull);
			if (!isnull)
				prologue = DatumGetByteaPP(d);
			d = SPI_getbinval(tup, desc, 8, &isnull);
			if (!isnull && VARSIZE_ANY_EXHDR(DatumGetByteaPP(d)) == 8 * nkeys)
				hashes = (const uint8 *) VARDATA_ANY(DatumGetByteaPP(d));
			MemoryContextSwitchTo(old);
			set_op(st, op, prologue);
			MemoryContextSwitchTo(st->tmp);
		}
		start = DatumGetInt32(od[i]);
		end = DatumGetInt32(od[i + 1]);
		if (start < 0 || end < start || end > VARSIZE_ANY_EXHDR(body))
			elog(ERROR, "bulkops: the rows of batch %d of job " INT64_FORMAT " are damaged",
				 batch_no, st->job.id);
		if (hashes)
			hash = bulkops_sync_read_hash(hashes + 8 * i);
		bulkops_writer_add_row(st->writer,
							   kn[i] ? NULL : TextDatumGetCString(kd[i]),
							   VARDATA_ANY(body) + start, end - start, hash);
	}
	MemoryContextSwitchTo(old);
}

PG_FUNCTION_INFO_V1(bulkops_retry);
Datum
bulkops_retry(PG_FUNCTION_ARGS)
{
	int64		job = PG_GETARG_INT64(0);
	RetryState	st;
	BulkopsJobStatus js;
	BulkopsTargetRow t;
	MemoryContext cxt;
	int			op;

	bulkops_require_current_schema();
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("statuses must not be null")));
	memset(&st, 0, sizeof(st));
	st.wanted = wanted_statuses(PG_GETARG_ARRAYTYPE_P(1));

	/* what the caller may see of the job: row-level security decides */
	js = bulkops_catalog_read_job(job);
	if (!js.found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job " INT64_FORMAT " does not exist", job)));
	if (strcmp(js.state, "queued") == 0 || strcmp(js.state, "running") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("job " INT64_FORMAT " is still %s", job, js.state),
				 errhint("Wait for it to end with bulkops.wait(" INT64_FORMAT "), then retry it.",
						 job)));
	bulkops_catalog_job_row(job, &st.job);
	if (st.job.op == BULKOPS_OP_QUERY)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("job " INT64_FORMAT " is an export, which has no rows to send again", job),
				 errhint("Run bulkops.bulk_query() again.")));
	if (!bulkops_catalog_read_target(st.job.target, false, &t))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("target \"%s\" of job " INT64_FORMAT " does not exist",
						st.job.target, job)));
	for (op = 0; op < BULKOPS_NUM_OPS; op++)
		if (st.job.ops & (1 << op))
			bulkops_require_op_privilege(st.job.target, t.owner, (BulkopsOp) op);

	st.dialect = bulkops_find_dialect(st.job.dialect, false);

	/*
	 * The job's options as they were (the payload was encoded with them), but
	 * only as far as the target allows them now: a target narrowed since
	 * refuses what it no longer allows, naming the option.
	 */
	st.job.options = bulkops_job_options(st.job.target, t.options, st.job.options,
										 st.dialect, t.url, t.resource);
	cxt = AllocSetContextCreate(CurrentMemoryContext, "bulkops retry",
								ALLOCSET_DEFAULT_SIZES);
	st.tmp = AllocSetContextCreate(cxt, "bulkops retry batch",
								   ALLOCSET_DEFAULT_SIZES);
	st.writer = bulkops_enqueue_writer(st.dialect, st.job.options, cxt);
	bulkops_writer_on_first_batch(st.writer, make_job, &st);
	if (st.job.sync_id)
		bulkops_writer_keep_hashes(st.writer);
	bulkops_catalog_each_batch(job, st.job.generation, RETRY_COLUMNS,
							   retry_batch, &st);
	bulkops_writer_finish(st.writer);
	if (st.new_job != 0)
		bulkops_catalog_close_job(st.new_job, bulkops_writer_rows(st.writer),
								  bulkops_writer_batches(st.writer),
								  bulkops_writer_bytes(st.writer),
								  st.job.prologue);
	MemoryContextDelete(cxt);
	if (st.new_job == 0)
	{
		ereport(NOTICE,
				(errmsg("job " INT64_FORMAT " has no rows with those statuses: nothing enqueued",
						job)));
		PG_RETURN_NULL();
	}
	bulkops_wake_worker_at_commit();
	PG_RETURN_INT64(st.new_job);
}
