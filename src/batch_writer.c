/*-------------------------------------------------------------------------
 *
 * batch_writer.c
 *	  Cutting a job's encoded rows into batches and writing them: what
 *	  enqueue.c does with a source's rows, sync.c with what changed, and
 *	  retry.c with the rows of an earlier job.
 *
 * A row is encoded straight into the writer's buffer (row_begin hands it
 * out, row_end takes the row, row_drop forgets it), or copied in whole
 * (add_row).  A batch is written as soon as it is full, so memory holds
 * one batch whatever the number of rows: its body, its rows' offsets,
 * keys and, for a sync, content hashes.  All of a batch's rows have one
 * operation; a change of operation (a mirror's deletes after its upserts)
 * starts a new batch, which carries the prologue its operation needs when
 * that is not the job's.
 *
 * A writer made for a preview writes nothing: it hands each row to a sink.
 *
 * Rules: memory is the writer's context (given at creation) and a child
 * reset after each batch; batches are written by catalog_jobs.c in the
 * caller's transaction, from inside the executor of the source query
 * (hence its own SPI connection).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "batch_writer.h"
#include "bulkops.h"
#include "catalog.h"

struct BulkopsBatchWriter
{
	int64		job_id;			/* 0 until make_job made it */
	int64		(*make_job) (void *arg);
	void	   *make_job_arg;
	const BulkopsDialect *dialect;
	int			batch_size;
	int			batch_bytes;
	int			max_bytes;		/* the dialect's cap on a batch's rows, or 0 */
	MemoryContext cxt;
	MemoryContext batch_cxt;	/* a batch's keys and temporaries */

	BulkopsRowSink sink;		/* a preview's, or NULL */
	void	   *sink_arg;
	bool		keep_hashes;

	/* what the batch being filled is for */
	BulkopsOp	op;
	bytea	   *prologue;		/* its own, or NULL for the job's */

	/* the batch being filled */
	StringInfoData body;		/* starts with room for a varlena header */
	int32	   *offsets;
	Datum	   *keys;
	bool	   *key_nulls;
	uint64	   *hashes;
	int			nrows;
	int			row_start;		/* where the row being encoded begins */

	/* totals */
	int64		rows;
	int64		bytes;
	int32		batches;
};

/*
 * Start an empty batch.  The body and the per-row arrays outlive batches:
 * freeing and growing megabytes again for every batch costs more in page
 * faults than the encoding of its rows.
 */
static void
batch_reset(BulkopsBatchWriter *w)
{
	MemoryContextReset(w->batch_cxt);
	resetStringInfo(&w->body);
	appendStringInfoSpaces(&w->body, VARHDRSZ);
	w->nrows = 0;
}

BulkopsBatchWriter *
bulkops_writer_create(int64 job_id, const BulkopsDialect *dialect,
					  int batch_size, int batch_bytes, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	BulkopsBatchWriter *w = palloc0(sizeof(BulkopsBatchWriter));

	w->job_id = job_id;
	w->dialect = dialect;
	w->batch_size = batch_size;
	w->batch_bytes = batch_bytes;
	w->max_bytes = dialect->max_batch_bytes;
	w->cxt = cxt;
	w->batch_cxt = AllocSetContextCreate(cxt, "bulkops batch",
										 ALLOCSET_DEFAULT_SIZES);
	w->op = BULKOPS_OP_UPSERT;
	initStringInfo(&w->body);
	w->offsets = palloc(sizeof(int32) * (batch_size + 1));
	w->keys = palloc(sizeof(Datum) * batch_size);
	w->key_nulls = palloc(sizeof(bool) * batch_size);
	w->hashes = palloc(sizeof(uint64) * batch_size);
	MemoryContextSwitchTo(old);
	batch_reset(w);
	return w;
}

/*
 * Call make_job for the job's id when the first batch is to be written,
 * so that a run that writes none leaves no job.
 */
void
bulkops_writer_on_first_batch(BulkopsBatchWriter *w, int64 (*make_job) (void *arg),
							  void *arg)
{
	w->make_job = make_job;
	w->make_job_arg = arg;
}

/* The job the batches belong to, made already. */
void
bulkops_writer_set_job(BulkopsBatchWriter *w, int64 job_id)
{
	w->job_id = job_id;
}

/* Hand rows to sink instead of writing batches (a preview). */
void
bulkops_writer_emit_to(BulkopsBatchWriter *w, BulkopsRowSink sink, void *arg)
{
	w->sink = sink;
	w->sink_arg = arg;
}

/* Store each row's content hash with its batch (a sync's rows). */
void
bulkops_writer_keep_hashes(BulkopsBatchWriter *w)
{
	w->keep_hashes = true;
}

/*
 * Write the batch being filled, with its rows' operation and, if it is not
 * the job's, its prologue.
 */
static void
batch_flush(BulkopsBatchWriter *w)
{
	Datum		keys;
	Datum		offsets;
	Datum		hashes = (Datum) 0;
	Datum	   *od;
	int			dims[1];
	int			lbs[1] = {1};
	bytea	   *body;
	MemoryContext old;
	int			i;

	if (w->nrows == 0)
		return;
	if (w->job_id == 0)
		w->job_id = w->make_job(w->make_job_arg);
	old = MemoryContextSwitchTo(w->batch_cxt);

	/* body was built with its varlena header in front: no copy needed */
	body = (bytea *) w->body.data;
	SET_VARSIZE(body, w->body.len);
	dims[0] = w->nrows;
	keys = PointerGetDatum(construct_md_array(w->keys, w->key_nulls, 1,
											  dims, lbs, TEXTOID, -1,
											  false, TYPALIGN_INT));
	od = palloc(sizeof(Datum) * (w->nrows + 1));
	for (i = 0; i <= w->nrows; i++)
		od[i] = Int32GetDatum(w->offsets[i]);
	offsets = PointerGetDatum(construct_array(od, w->nrows + 1, INT4OID,
											  4, true, TYPALIGN_INT));
	if (w->keep_hashes)
	{
		bytea	   *h = palloc(VARHDRSZ + 8 * w->nrows);
		uint8	   *p = (uint8 *) VARDATA(h);

		SET_VARSIZE(h, VARHDRSZ + 8 * w->nrows);
		/* little-endian, whatever the machine: dumps move */
		for (i = 0; i < w->nrows; i++)
		{
			int			b;

			for (b = 0; b < 8; b++)
				p[8 * i + b] = (uint8) (w->hashes[i] >> (8 * b));
		}
		hashes = PointerGetDatum(h);
	}
	bulkops_catalog_insert_batch(w->job_id, w->batches + 1,
								 w->rows - w->nrows + 1, w->nrows, keys,
								 offsets, PointerGetDatum(body), w->op,
								 w->prologue, hashes);
	MemoryContextSwitchTo(old);

	w->bytes += w->body.len - VARHDRSZ;
	w->batches++;
	batch_reset(w);
	bulkops_crash_point("enqueue");
}

/*
 * From now on, rows are for op, whose requests start with prologue (NULL:
 * none); own_prologue says it is not the job's, so each batch carries it.
 * A batch in progress for another operation is written first.
 */
void
bulkops_writer_set_op(BulkopsBatchWriter *w, BulkopsOp op,
					  const StringInfo prologue, bool own_prologue)
{
	int			len = prologue ? prologue->len : 0;

	if (w->nrows > 0 && !w->sink)
		batch_flush(w);
	w->op = op;
	w->prologue = NULL;
	if (own_prologue && len > 0)
	{
		w->prologue = MemoryContextAlloc(w->cxt, VARHDRSZ + len);
		SET_VARSIZE(w->prologue, VARHDRSZ + len);
		memcpy(VARDATA(w->prologue), prologue->data, len);
	}
	if (w->dialect->max_batch_bytes > 0)
	{
		/* every request carries the prologue in front of the rows */
		w->max_bytes = w->dialect->max_batch_bytes - len;
		if (w->max_bytes <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the source's header is too large for one request of dialect \"%s\"",
							w->dialect->name)));
	}
}

/* The buffer to encode the next row into, at its end. */
StringInfo
bulkops_writer_row_begin(BulkopsBatchWriter *w)
{
	w->row_start = w->body.len;
	return &w->body;
}

/* The row encoded since row_begin. */
const char *
bulkops_writer_row_data(BulkopsBatchWriter *w, int *len)
{
	*len = w->body.len - w->row_start;
	return w->body.data + w->row_start;
}

/* Forget the row encoded since row_begin. */
void
bulkops_writer_row_drop(BulkopsBatchWriter *w)
{
	w->body.len = w->row_start;
	w->body.data[w->body.len] = '\0';
}

/*
 * The last row took the batch past the dialect's hard cap: write the batch
 * without it, and start the next batch with it.
 */
static void
carry_last_row(BulkopsBatchWriter *w, int64 source_row)
{
	int			last = w->nrows - 1;
	int			start = w->offsets[last];
	int			len = w->offsets[w->nrows] - start;
	char	   *row;
	char	   *key = NULL;
	uint64		hash = w->hashes[last];
	MemoryContext old;

	if (w->nrows == 1)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("row " INT64_FORMAT " of the source is too large for one request of dialect \"%s\"",
						source_row, w->dialect->name),
				 errdetail("Its encoding takes %d bytes; at most %d fit.", len, w->max_bytes)));

	old = MemoryContextSwitchTo(w->cxt);
	row = palloc(len);
	memcpy(row, w->body.data + VARHDRSZ + start, len);
	if (!w->key_nulls[last])
		key = TextDatumGetCString(w->keys[last]);
	MemoryContextSwitchTo(old);

	w->nrows--;
	w->body.len = VARHDRSZ + start;
	w->rows--;
	batch_flush(w);
	w->rows++;

	old = MemoryContextSwitchTo(w->batch_cxt);
	appendBinaryStringInfo(&w->body, row, len);
	w->offsets[0] = 0;
	w->offsets[1] = len;
	w->keys[0] = key ? CStringGetTextDatum(key) : (Datum) 0;
	w->key_nulls[0] = (key == NULL);
	w->hashes[0] = hash;
	w->nrows = 1;
	MemoryContextSwitchTo(old);
	pfree(row);
	if (key)
		pfree(key);
}

/*
 * Take the row encoded since row_begin, with its key (or NULL) and content
 * hash; source_row numbers it in messages.
 */
void
bulkops_writer_row_end(BulkopsBatchWriter *w, const char *key, uint64 hash,
					   int64 source_row)
{
	int			len = w->body.len - w->row_start;
	int			row = w->nrows;
	MemoryContext old;

	/*
	 * A batch ends with the row that fills it, so it holds less than
	 * batch_bytes plus one row.  A row larger than batch_bytes would be a
	 * batch of its own of any size, up to a gigabyte, and the bound on what
	 * the worker holds (batch_bytes times concurrency, kept within
	 * bulkops.max_target_memory) would mean nothing.
	 */
	if (len > w->batch_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("row " INT64_FORMAT " of the source is larger than batch_bytes",
						source_row),
				 errdetail("Its encoding takes %d bytes; batch_bytes is %d.",
						   len, w->batch_bytes),
				 errhint("Raise batch_bytes (a job only within its target's limit), or leave the large values out of the source.")));
	w->rows++;
	if (w->sink)
	{
		w->sink(w->sink_arg, w->rows, key, w->op, w->body.data + w->row_start, len);
		bulkops_writer_row_drop(w);
		return;
	}
	old = MemoryContextSwitchTo(w->batch_cxt);
	w->keys[row] = key ? CStringGetTextDatum(key) : (Datum) 0;
	w->key_nulls[row] = (key == NULL);
	MemoryContextSwitchTo(old);
	w->hashes[row] = hash;
	w->offsets[row] = w->row_start - VARHDRSZ;
	w->nrows++;
	w->offsets[w->nrows] = w->body.len - VARHDRSZ;

	if (w->max_bytes > 0 && w->body.len - VARHDRSZ > w->max_bytes)
		carry_last_row(w, source_row);
	if (w->nrows >= w->batch_size || w->body.len >= w->batch_bytes)
		batch_flush(w);
}

/* A row encoded already (an earlier job's), copied in. */
void
bulkops_writer_add_row(BulkopsBatchWriter *w, const char *key,
					   const char *data, int len, uint64 hash)
{
	StringInfo	buf = bulkops_writer_row_begin(w);

	appendBinaryStringInfo(buf, data, len);
	bulkops_writer_row_end(w, key, hash, w->rows + 1);
}

/* Write what is left. */
void
bulkops_writer_finish(BulkopsBatchWriter *w)
{
	if (!w->sink)
		batch_flush(w);
}

int64
bulkops_writer_rows(const BulkopsBatchWriter *w)
{
	return w->rows;
}

int64
bulkops_writer_bytes(const BulkopsBatchWriter *w)
{
	return w->bytes;
}

int32
bulkops_writer_batches(const BulkopsBatchWriter *w)
{
	return w->batches;
}
