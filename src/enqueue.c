/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *	  Turn a source (table, view or query) into a job: run it with the
 *	  caller's rights, encode each row once in the dialect's wire encoding,
 *	  cut the rows into batches and write job and batches.
 *
 * Runs in the caller's backend and transaction, so a rollback leaves no
 * job.  The source streams through a DestReceiver: rows are encoded as the
 * executor produces them and a batch is written as soon as it is full, so
 * memory holds one batch whatever the size of the source.  Row memory lives
 * in a per-batch context reset after each flush.  Writes to bulkops' tables
 * run in owner sections (owner.c), after the caller's privilege on the
 * target was checked (privileges.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/dest.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/regproc.h"
#include "utils/acl.h"
#include "utils/rls.h"
#include "utils/varlena.h"

#include "bulkops.h"
#include "catalog.h"

typedef struct EnqueueState
{
	DestReceiver pub;			/* must be first */

	const BulkopsDialect *dialect;
	BulkopsEncodeTarget target;
	BulkopsEncoder *enc;
	const char *key;
	int64		job_id;
	int			batch_size;
	int			batch_bytes;
	int			max_bytes;		/* the dialect's hard cap on a batch's rows,
								 * or 0 */
	MemoryContext job_cxt;		/* encoder, kept plan, batch buffers */
	MemoryContext batch_cxt;	/* one batch's keys and temporaries, reset per
								 * flush */

	/* the batch being filled */
	StringInfoData body;		/* starts with room for a varlena header */
	int32	   *offsets;
	Datum	   *keys;
	bool	   *key_nulls;
	int			nrows;

	/* totals */
	int64		rows;
	int64		bytes;
	int32		batches;
} EnqueueState;

/* ---- the source ---- */

static bool
looks_like_query(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '(')
		s++;
	return pg_strncasecmp(s, "select", 6) == 0 ||
		pg_strncasecmp(s, "with", 4) == 0 ||
		pg_strncasecmp(s, "values", 6) == 0 ||
		pg_strncasecmp(s, "table", 5) == 0;
}

/* Does s parse as [schema.]name?  (No error either way.) */
static bool
is_qualified_name(const char *s)
{
	char	   *copy = pstrdup(s);
	List	   *parts;
	bool		ok = SplitIdentifierString(copy, '.', &parts) &&
	list_length(parts) >= 1 && list_length(parts) <= 3;

	return ok;
}

/* The query to run for source: itself, or SELECT * FROM the relation. */
static char *
source_query(const char *source)
{
	List	   *names;
	RangeVar   *rv;
	Oid			relid;

	if (looks_like_query(source) || !is_qualified_name(source))
		return pstrdup(source);

	names = stringToQualifiedNameList(source);
	rv = makeRangeVarFromNameList(names);
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s\" does not exist", source),
				 errhint("The source is a table or view name, or a query starting with SELECT, WITH, VALUES or TABLE.")));
	return psprintf("SELECT * FROM %s",
					quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
											   get_rel_name(relid)));
}

/*
 * Refuse anything but one plain query: bulkops reads the source and must
 * never change data or take row locks on the caller's behalf.
 */
static void
check_read_only(SPIPlanPtr plan)
{
	List	   *sources = SPI_plan_get_plan_sources(plan);
	CachedPlanSource *ps;
	Query	   *q;

	if (list_length(sources) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source must be a single query")));
	ps = linitial(sources);
	if (list_length(ps->query_list) != 1)
		goto refuse;
	q = linitial_node(Query, ps->query_list);
	if (q->commandType != CMD_SELECT || q->utilityStmt != NULL ||
		q->hasModifyingCTE || q->rowMarks != NIL)
		goto refuse;
	return;

refuse:
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("source must be a read-only query"),
			 errdetail("The source may not modify data, lock rows or create tables."),
			 errhint("Move data changes out of the source query.")));
}

/* ---- batches ---- */

/*
 * Start an empty batch.  The body and the per-row arrays outlive batches:
 * freeing and growing megabytes again for every batch costs more in page
 * faults than the encoding of its rows.
 */
static void
batch_reset(EnqueueState *st)
{
	MemoryContext old;

	MemoryContextReset(st->batch_cxt);
	if (st->offsets == NULL)
	{
		old = MemoryContextSwitchTo(st->job_cxt);
		initStringInfo(&st->body);
		st->offsets = palloc(sizeof(int32) * (st->batch_size + 1));
		st->keys = palloc(sizeof(Datum) * st->batch_size);
		st->key_nulls = palloc(sizeof(bool) * st->batch_size);
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(&st->body);
	appendStringInfoSpaces(&st->body, VARHDRSZ);
	st->nrows = 0;
}

/*
 * Write the batch being filled (from inside the executor of the source
 * query: catalog.c opens a nested SPI connection for it).
 */
static void
batch_flush(EnqueueState *st)
{
	Datum		keys;
	Datum		offsets;
	int			dims[1];
	int			lbs[1] = {1};
	bytea	   *body;
	MemoryContext old;

	if (st->nrows == 0)
		return;
	old = MemoryContextSwitchTo(st->batch_cxt);

	/* body was built with its varlena header in front: no copy needed */
	body = (bytea *) st->body.data;
	SET_VARSIZE(body, st->body.len);
	dims[0] = st->nrows;

	keys = PointerGetDatum(construct_md_array(st->keys, st->key_nulls, 1,
											  dims, lbs, TEXTOID, -1,
											  false, TYPALIGN_INT));
	{
		Datum	   *od = palloc(sizeof(Datum) * (st->nrows + 1));
		int			i;

		for (i = 0; i <= st->nrows; i++)
			od[i] = Int32GetDatum(st->offsets[i]);
		offsets = PointerGetDatum(construct_array(od, st->nrows + 1, INT4OID,
												  4, true, TYPALIGN_INT));
	}
	bulkops_catalog_insert_batch(st->job_id, st->batches + 1,
								 st->rows - st->nrows + 1, st->nrows, keys,
								 offsets, PointerGetDatum(body));
	MemoryContextSwitchTo(old);

	st->bytes += st->body.len - VARHDRSZ;
	st->batches++;
	batch_reset(st);
	bulkops_crash_point("enqueue");
}

/*
 * The last row took the batch past the dialect's hard cap: write the batch
 * without it, and start the next batch with it.
 */
static void
carry_last_row(EnqueueState *st)
{
	int			last = st->nrows - 1;
	int			start = st->offsets[last];
	int			len = st->offsets[st->nrows] - start;
	char	   *row;
	char	   *key = NULL;
	MemoryContext old;

	if (st->nrows == 1)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("row " INT64_FORMAT " of the source is too large for one request of dialect \"%s\"",
						st->rows, st->dialect->name),
				 errdetail("Its encoding takes %d bytes; at most %d fit.", len, st->max_bytes)));

	old = MemoryContextSwitchTo(st->job_cxt);
	row = palloc(len);
	memcpy(row, st->body.data + VARHDRSZ + start, len);
	if (!st->key_nulls[last])
		key = TextDatumGetCString(st->keys[last]);
	MemoryContextSwitchTo(old);

	st->nrows--;
	st->body.len = VARHDRSZ + start;
	st->rows--;
	batch_flush(st);
	st->rows++;

	old = MemoryContextSwitchTo(st->batch_cxt);
	appendBinaryStringInfo(&st->body, row, len);
	st->offsets[0] = 0;
	st->offsets[1] = len;
	st->keys[0] = key ? CStringGetTextDatum(key) : (Datum) 0;
	st->key_nulls[0] = (key == NULL);
	st->nrows = 1;
	MemoryContextSwitchTo(old);
	pfree(row);
	if (key)
		pfree(key);
}

/* ---- the DestReceiver that sees every source row ---- */

static bool
enqueue_receive(TupleTableSlot *slot, DestReceiver *self)
{
	EnqueueState *st = (EnqueueState *) self;
	MemoryContext old;
	int			row;

	slot_getallattrs(slot);
	old = MemoryContextSwitchTo(st->batch_cxt);
	row = st->nrows;
	st->rows++;

	if (st->target.key_att >= 0)
	{
		int			k = st->target.key_att;

		if (slot->tts_isnull[k])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("key column \"%s\" is null in row " INT64_FORMAT " of the source",
							st->key, st->rows),
					 errhint("Every row needs a key; filter out rows whose key is null.")));
		/* converted once: the receipt's key and the dialect share it */
		st->target.key_text = bulkops_encode_text(st->enc, k, slot->tts_values[k]);
		st->keys[row] = CStringGetTextDatum(st->target.key_text);
		st->key_nulls[row] = false;
	}
	else
	{
		st->target.key_text = NULL;
		st->keys[row] = (Datum) 0;
		st->key_nulls[row] = true;
	}

	st->offsets[row] = st->body.len - VARHDRSZ;
	st->dialect->encode_row(&st->target, st->enc, slot->tts_values,
							slot->tts_isnull, &st->body);
	st->nrows++;
	st->offsets[st->nrows] = st->body.len - VARHDRSZ;
	MemoryContextSwitchTo(old);

	/*
	 * A batch ends with the row that fills it, so it holds less than
	 * batch_bytes plus one row.  A row larger than batch_bytes would be a
	 * batch of its own of any size, up to a gigabyte, and the bound on what
	 * the worker holds (batch_bytes times concurrency, kept within
	 * bulkops.max_target_memory) would mean nothing.
	 */
	if (st->offsets[st->nrows] - st->offsets[row] > st->batch_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("row " INT64_FORMAT " of the source is larger than batch_bytes",
						st->rows),
				 errdetail("Its encoding takes %d bytes; batch_bytes is %d.",
						   st->offsets[st->nrows] - st->offsets[row], st->batch_bytes),
				 errhint("Raise batch_bytes (a job only within its target's limit), or leave the large values out of the source.")));
	if (st->max_bytes > 0 && st->body.len - VARHDRSZ > st->max_bytes)
		carry_last_row(st);
	if (st->nrows >= st->batch_size || st->body.len >= st->batch_bytes)
		batch_flush(st);
	return true;
}

static void
check_columns(EnqueueState *st)
{
	int			n = bulkops_encoder_natts(st->enc);
	int			i;
	int			j;

	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			if (strcmp(bulkops_encoder_attname(st->enc, i),
					   bulkops_encoder_attname(st->enc, j)) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("source has more than one column named \"%s\"",
								bulkops_encoder_attname(st->enc, i)),
						 errhint("Give the columns distinct names with AS.")));

	st->target.key_att = st->key ? bulkops_encoder_find(st->enc, st->key) : -1;
	if (st->key && st->target.key_att < 0)
	{
		StringInfoData cols;

		initStringInfo(&cols);
		for (i = 0; i < n; i++)
			appendStringInfo(&cols, "%s%s", i ? ", " : "",
							 quote_identifier(bulkops_encoder_attname(st->enc, i)));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("key column \"%s\" is not in the source", st->key),
				 errdetail("The source's columns are: %s.", cols.data)));
	}
}

static void
enqueue_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	EnqueueState *st = (EnqueueState *) self;

	st->enc = bulkops_encoder_create(typeinfo, st->job_cxt);
	check_columns(st);
	if (st->dialect->begin_encode)
	{
		MemoryContext old = MemoryContextSwitchTo(st->job_cxt);

		st->target.prologue = makeStringInfo();
		st->dialect->begin_encode(&st->target, st->enc);
		MemoryContextSwitchTo(old);
	}
	if (st->dialect->max_batch_bytes > 0)
	{
		/* every request carries the prologue in front of the rows */
		st->max_bytes = st->dialect->max_batch_bytes -
			(st->target.prologue ? st->target.prologue->len : 0);
		if (st->max_bytes <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the source's header is too large for one request of dialect \"%s\"",
							st->dialect->name)));
	}
	batch_reset(st);
}

static void
enqueue_shutdown(DestReceiver *self)
{
	EnqueueState *st = (EnqueueState *) self;

	batch_flush(st);
	if (st->dialect->end_encode)
		st->dialect->end_encode(&st->target, st->rows, st->batches);
}

static void
enqueue_destroy(DestReceiver *self)
{
}

/* ---- the job ---- */

typedef struct TargetInfo
{
	const BulkopsDialect *dialect;
	char	   *url;
	char	   *resource;
	Jsonb	   *options;
	Oid			owner;
} TargetInfo;

/*
 * Read the target, as the owner (its auth is none of the caller's
 * business, and is not read), and check that the caller may run op through
 * it: before anything is read from the source or written.
 */
static TargetInfo
read_target(const char *name, BulkopsOp op)
{
	TargetInfo	ti;
	BulkopsTargetRow t;

	bulkops_require_current_schema();
	if (!bulkops_catalog_read_target(name, false, &t))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("target \"%s\" does not exist", name),
				 errhint("Create it with bulkops.create_target().")));
	ti.dialect = bulkops_find_dialect(t.dialect, false);
	ti.url = t.url;
	ti.resource = t.resource;
	ti.options = t.options;
	ti.owner = t.owner;
	bulkops_require_op_privilege(name, ti.owner, op);
	return ti;
}

static void
close_job(EnqueueState *st)
{
	bytea	   *p = NULL;

	if (st->target.prologue && st->target.prologue->len > 0)
	{
		p = palloc(VARHDRSZ + st->target.prologue->len);
		SET_VARSIZE(p, VARHDRSZ + st->target.prologue->len);
		memcpy(VARDATA(p), st->target.prologue->data, st->target.prologue->len);
	}
	bulkops_catalog_close_job(st->job_id, st->rows, st->batches, st->bytes, p);
}

/*
 * The job's option name (batch_size or batch_bytes), else dflt, but at most
 * max, what the dialect takes in one request (0: no limit of its own); a
 * NOTICE says when the option asked for more.
 */
static int
batch_limit(Jsonb *options, const char *name, int dflt, int max,
			const BulkopsDialect *d)
{
	int			value = bulkops_opt_int(options, name, dflt);

	if (max > 0 && value > max)
	{
		ereport(NOTICE,
				(errmsg("%s %d is more than dialect \"%s\" takes in one request; using %d",
						name, value, d->name, max)));
		value = max;
	}
	return value;
}

static void
check_op(const BulkopsDialect *d, BulkopsOp op, const char *key)
{
	if (d->op_names[op] == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("dialect \"%s\" has no %s operation", d->name,
						bulkops_op_name(op))));
	if (d->needs_key[op] && key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s with dialect \"%s\" needs a key column",
						bulkops_op_name(op), d->name),
				 errhint("Pass key => 'column', naming the source column that identifies each row remotely.")));
}

int64
bulkops_enqueue(const char *target, BulkopsOp op, text *source,
				const char *key, Jsonb *job_options)
{
	EnqueueState st;
	TargetInfo	ti;
	Jsonb	   *options;
	SPIPlanPtr	plan;
	SPIExecuteOptions xopts;
	char	   *query;
	int			rc;

	memset(&st, 0, sizeof(st));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");

	ti = read_target(target, op);
	check_op(ti.dialect, op, key);
	options = bulkops_job_options(target, ti.options, job_options, ti.dialect,
								  ti.url, ti.resource);

	query = source_query(text_to_cstring(source));
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare source: %s",
			 SPI_result_code_string(SPI_result));
	check_read_only(plan);

	st.job_cxt = AllocSetContextCreate(CurrentMemoryContext, "bulkops enqueue",
									   ALLOCSET_DEFAULT_SIZES);
	st.batch_cxt = AllocSetContextCreate(st.job_cxt, "bulkops batch",
										 ALLOCSET_DEFAULT_SIZES);
	st.pub.receiveSlot = enqueue_receive;
	st.pub.rStartup = enqueue_startup;
	st.pub.rShutdown = enqueue_shutdown;
	st.pub.rDestroy = enqueue_destroy;
	st.pub.mydest = DestNone;
	st.dialect = ti.dialect;
	st.key = key;
	st.target.resource = ti.resource;
	st.target.op = op;
	st.target.key = key;
	st.target.options = options;
	st.batch_size = batch_limit(options, "batch_size", bulkops_batch_size,
								ti.dialect->max_batch_rows, ti.dialect);
	st.batch_bytes = batch_limit(options, "batch_bytes",
								 BULKOPS_DEFAULT_BATCH_BYTES,
								 ti.dialect->max_batch_bytes, ti.dialect);
	st.job_id = bulkops_catalog_insert_job(target, ti.dialect->name, op, key,
										   options);

	memset(&xopts, 0, sizeof(xopts));
	xopts.read_only = true;
	xopts.dest = (DestReceiver *) &st;
	rc = SPI_execute_plan_extended(plan, &xopts);
	/* SPI says UTILITY for a SELECT whose rows go to a DestNone receiver */
	if (rc != SPI_OK_SELECT && rc != SPI_OK_UTILITY)
		elog(ERROR, "could not run source: %s", SPI_result_code_string(rc));

	close_job(&st);
	MemoryContextDelete(st.job_cxt);
	SPI_finish();

	bulkops_wake_worker_at_commit();
	return st.job_id;
}

/* ---- query jobs ---- */

/*
 * Where a query job's rows go: a table that exists (relid), or the schema
 * and name of one the worker will create.  Never SQL text: the worker
 * opens the table by OID, or quotes both names when it creates it.
 */
typedef struct Destination
{
	Oid			relid;
	char	   *schema;
	char	   *table;
} Destination;

/*
 * Check where a query job's rows will go, now, with the caller's rights
 * (and the caller's search_path, since the name is the caller's), so that
 * a job that could never write is refused before anything is sent.  What
 * the job's mode (option "mode") needs besides INSERT is sink.c's to say.
 */
static Destination
check_destination(const char *into, Jsonb *options)
{
	Destination dest = {InvalidOid, NULL, NULL};
	List	   *names;
	RangeVar   *rv;
	Oid			relid;
	Oid			nsp;
	Oid			userid = GetUserId();

	names = stringToQualifiedNameList(into);
	rv = makeRangeVarFromNameList(names);
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid))
	{
		char	   *mode = bulkops_opt_string(options, "mode", "append");

		/* only appending fills a table from nothing */
		if (strcmp(mode, "append") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation \"%s\" does not exist", into),
					 errdetail("Option \"mode\" \"%s\" needs an existing table.", mode),
					 errhint("Create the table first, or export with mode \"append\", which creates it.")));
		/* created by the worker as the caller: CREATE on the schema */
		nsp = RangeVarGetCreationNamespace(rv);
		if (pg_namespace_aclcheck(nsp, userid, ACL_CREATE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to create table \"%s\" in schema \"%s\"",
							rv->relname, get_namespace_name(nsp))));
		dest.schema = get_namespace_name(nsp);
		dest.table = rv->relname;
		return dest;
	}
	if (get_rel_relkind(relid) != RELKIND_RELATION &&
		get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", into)));
	if (IsCatalogRelationOid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("bulk_query cannot write into system catalog \"%s\"", into)));
	if (pg_class_aclcheck(relid, userid, ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid))));
	/* as COPY FROM: rows the policies could not vet are refused */
	if (check_enable_rls(relid, userid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("bulk_query cannot write into table \"%s\", which has row-level security enabled",
						get_rel_name(relid))));
	bulkops_sink_check_destination(relid, options);
	dest.relid = relid;
	return dest;
}

/*
 * bulk_query: one batch with no rows, the remote query as its body.  The
 * worker runs it through the dialect and appends each page of results to
 * the destination table as the job's creator.
 */
int64
bulkops_enqueue_query(const char *target, const char *query, const char *into,
					  Jsonb *job_options)
{
	TargetInfo	ti;
	Jsonb	   *options;
	Destination dest;
	int64		job_id;
	bytea	   *body;
	size_t		qlen = strlen(query);

	ti = read_target(target, BULKOPS_OP_QUERY);
	check_op(ti.dialect, BULKOPS_OP_QUERY, NULL);
	if (qlen == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must not be empty")));
	options = bulkops_job_options(target, ti.options, job_options, ti.dialect,
								  ti.url, ti.resource);
	dest = check_destination(into, options);

	job_id = bulkops_catalog_insert_job(target, ti.dialect->name,
										BULKOPS_OP_QUERY, NULL, options);
	body = palloc(VARHDRSZ + qlen);
	SET_VARSIZE(body, VARHDRSZ + qlen);
	memcpy(VARDATA(body), query, qlen);
	bulkops_catalog_insert_export(job_id, dest.relid, dest.schema, dest.table,
								  body);
	bulkops_wake_worker_at_commit();
	return job_id;
}
