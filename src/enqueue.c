/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *	  Turn a source (table, view or query) into a job: run it with the
 *	  caller's rights, encode each row once in the dialect's wire encoding,
 *	  and hand the rows to a batch writer (batch_writer.c), which cuts them
 *	  into batches and writes them with their job.
 *
 * Runs in the caller's backend and transaction, so a rollback leaves no
 * job.  The source streams through a DestReceiver: rows are encoded as the
 * executor produces them, straight into the writer's buffer, and a batch is
 * written as soon as it is full, so memory holds one batch whatever the
 * size of the source.  Writes to bulkops' tables run in owner sections
 * (owner.c), after the caller's privilege on the target was checked
 * (privileges.c).
 *
 * A caller that sends only some rows (a sync, sync.c) passes a filter,
 * which sees each row's key and encoding and says whether to send it;
 * rows it adds after the source (a mirror's deletes) are encoded from
 * their key alone.  A preview hands each row to a sink and writes nothing.
 * The job is created with its first batch: a run that sends nothing
 * leaves no job.
 *
 * A dialect may ask for the remote version of each row's key (SAP FSM's
 * lastChanged, for optimistic locking across jobs): the versions the
 * target's earlier receipts recorded, as the caller may see them, are read
 * once at the job's start into a hash table by key (catalog_jobs.c), whose
 * size is the target's keys with a version.
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
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/regproc.h"
#include "utils/acl.h"
#include "utils/rls.h"
#include "utils/varlena.h"

#include "batch_writer.h"
#include "bulkops.h"
#include "catalog.h"
#include "enqueue.h"

struct BulkopsEnqueue
{
	DestReceiver pub;			/* must be first */

	const BulkopsEnqueueSpec *spec;
	const BulkopsDialect *dialect;
	BulkopsEncodeTarget target;
	BulkopsEncoder *enc;
	const char *target_name;
	const char *key;
	HTAB	   *versions;		/* key -> remote version, if the dialect wants
								 * them */
	Jsonb	   *options;		/* the job's, merged over its target's */
	int64		job_id;			/* 0 until its first batch is written */
	BulkopsBatchWriter *writer;
	MemoryContext job_cxt;		/* encoder, writer */
	MemoryContext row_cxt;		/* one row's temporaries */
	int64		source_rows;	/* rows the source gave */

	/* rows encoded from their key alone (bulkops_enqueue_key_row) */
	BulkopsEncodeTarget key_target;
	BulkopsEncoder *key_enc;
};

typedef struct BulkopsEnqueue EnqueueState;

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

/* ---- earlier receipts' remote versions, by key ---- */

typedef struct VersionEntry
{
	const char *key;			/* the hash key: the pointer, hashed and
								 * compared as the string it points to */
	const char *version;
} VersionEntry;

static uint32
version_hash(const void *key, Size keysize)
{
	const char *s = *(const char *const *) key;

	return hash_bytes((const unsigned char *) s, strlen(s));
}

static int
version_match(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(const char *const *) key1, *(const char *const *) key2);
}

static void
add_version(void *arg, const char *key, const char *version)
{
	EnqueueState *st = arg;
	MemoryContext cxt = st->job_cxt;
	char	   *k = MemoryContextStrdup(cxt, key);
	VersionEntry *e;
	bool		found;

	e = hash_search(st->versions, &k, HASH_ENTER, &found);
	if (!found)
		e->version = MemoryContextStrdup(cxt, version);
}

static void
load_versions(EnqueueState *st)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(VersionEntry);
	ctl.hash = version_hash;
	ctl.match = version_match;
	ctl.hcxt = st->job_cxt;
	st->versions = hash_create("bulkops remote versions", 1024, &ctl,
							   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE |
							   HASH_CONTEXT);
	bulkops_catalog_remote_versions(st->target_name, add_version, st);
}

static const char *
version_of(EnqueueState *st, const char *key)
{
	VersionEntry *e;

	if (key == NULL || st->versions == NULL)
		return NULL;
	e = hash_search(st->versions, &key, HASH_FIND, NULL);
	return e ? e->version : NULL;
}

/* ---- the DestReceiver that sees every source row ---- */

static bool
enqueue_receive(TupleTableSlot *slot, DestReceiver *self)
{
	EnqueueState *st = (EnqueueState *) self;
	const BulkopsRowFilter *filter = st->spec->filter;
	MemoryContext old;
	StringInfo	buf;
	uint64		hash = 0;

	slot_getallattrs(slot);
	MemoryContextReset(st->row_cxt);
	old = MemoryContextSwitchTo(st->row_cxt);
	st->source_rows++;

	if (st->target.key_att >= 0)
	{
		int			k = st->target.key_att;

		if (slot->tts_isnull[k])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("key column \"%s\" is null in row " INT64_FORMAT " of the source",
							st->key, st->source_rows),
					 errhint("Every row needs a key; filter out rows whose key is null.")));
		/* converted once: the receipt's key and the dialect share it */
		st->target.key_text = bulkops_encode_text(st->enc, k, slot->tts_values[k]);
	}
	else
		st->target.key_text = NULL;

	if (st->versions)
		st->target.remote_version = version_of(st, st->target.key_text);
	buf = bulkops_writer_row_begin(st->writer);
	st->dialect->encode_row(&st->target, st->enc, slot->tts_values,
							slot->tts_isnull, buf);
	if (filter)
	{
		int			len;
		const char *data = bulkops_writer_row_data(st->writer, &len);

		if (!filter->row(filter->arg, st->target.key_text, data, len,
						 st->source_rows, &hash))
		{
			bulkops_writer_row_drop(st->writer);
			MemoryContextSwitchTo(old);
			return true;
		}
	}
	bulkops_writer_row_end(st->writer, st->target.key_text, hash,
						   st->source_rows);
	MemoryContextSwitchTo(old);
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
	MemoryContext old = MemoryContextSwitchTo(st->job_cxt);

	st->enc = bulkops_encoder_create(typeinfo, st->job_cxt);
	check_columns(st);
	if (st->dialect->begin_encode)
	{
		st->target.prologue = makeStringInfo();
		st->dialect->begin_encode(&st->target, st->enc);
	}
	if (st->target.want_versions)
		load_versions(st);
	/* the job's own operation: its prologue is the job's */
	bulkops_writer_set_op(st->writer, st->target.op, st->target.prologue, false);
	MemoryContextSwitchTo(old);
}

static void
enqueue_shutdown(DestReceiver *self)
{
	EnqueueState *st = (EnqueueState *) self;
	const BulkopsRowFilter *filter = st->spec->filter;

	if (filter && filter->after)
		filter->after(filter->arg, st);
	bulkops_writer_finish(st->writer);
	if (st->dialect->end_encode)
		st->dialect->end_encode(&st->target, bulkops_writer_rows(st->writer),
								bulkops_writer_batches(st->writer));
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

/* Record the job's totals and prologue; a job with no batch ends here. */
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
	bulkops_catalog_close_job(st->job_id, bulkops_writer_rows(st->writer),
							  bulkops_writer_batches(st->writer),
							  bulkops_writer_bytes(st->writer), p);
}

/* Create the job, as its first batch is about to be written. */
static int64
make_job(void *arg)
{
	EnqueueState *st = arg;

	st->job_id = bulkops_catalog_insert_job(st->spec->target, st->dialect->name,
											st->spec->op, st->key, st->options,
											st->spec->sync_id);
	return st->job_id;
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

/*
 * Run spec's source and make its job (see the top of this file).  Returns
 * the job's id, or 0 when no row was sent (with a filter) or for a
 * preview.  *sent, if not NULL, is set to the number of rows sent.
 */
int64
bulkops_enqueue_run(const BulkopsEnqueueSpec *spec, int64 *sent)
{
	EnqueueState st;
	TargetInfo	ti;
	SPIPlanPtr	plan;
	SPIExecuteOptions xopts;
	char	   *query;
	int			rc;

	memset(&st, 0, sizeof(st));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");

	ti = read_target(spec->target, spec->op);
	check_op(ti.dialect, spec->op, spec->key);
	st.options = bulkops_job_options(spec->target, ti.options, spec->options,
									 ti.dialect, ti.url, ti.resource);

	query = source_query(spec->source);
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare source: %s",
			 SPI_result_code_string(SPI_result));
	check_read_only(plan);

	st.spec = spec;
	st.job_cxt = AllocSetContextCreate(CurrentMemoryContext, "bulkops enqueue",
									   ALLOCSET_DEFAULT_SIZES);
	st.row_cxt = AllocSetContextCreate(st.job_cxt, "bulkops row",
									   ALLOCSET_SMALL_SIZES);
	st.pub.receiveSlot = enqueue_receive;
	st.pub.rStartup = enqueue_startup;
	st.pub.rShutdown = enqueue_shutdown;
	st.pub.rDestroy = enqueue_destroy;
	st.pub.mydest = DestNone;
	st.dialect = ti.dialect;
	st.key = spec->key;
	st.target_name = spec->target;
	st.target.resource = ti.resource;
	st.target.op = spec->op;
	st.target.key = spec->key;
	st.target.options = st.options;
	st.writer = bulkops_enqueue_writer(ti.dialect, st.options, st.job_cxt);
	if (spec->sink)
		bulkops_writer_emit_to(st.writer, spec->sink, spec->sink_arg);
	else
	{
		bulkops_writer_on_first_batch(st.writer, make_job, &st);
		if (spec->filter)
			bulkops_writer_keep_hashes(st.writer);
		else
		{
			/* every push is a job, an empty source's too: it ends at once */
			(void) make_job(&st);
			bulkops_writer_set_job(st.writer, st.job_id);
		}
	}
	if (spec->filter && spec->filter->begin)
		spec->filter->begin(spec->filter->arg, ti.dialect, st.options);

	memset(&xopts, 0, sizeof(xopts));
	xopts.read_only = true;
	xopts.dest = (DestReceiver *) &st;
	rc = SPI_execute_plan_extended(plan, &xopts);
	/* SPI says UTILITY for a SELECT whose rows go to a DestNone receiver */
	if (rc != SPI_OK_SELECT && rc != SPI_OK_UTILITY)
		elog(ERROR, "could not run source: %s", SPI_result_code_string(rc));

	if (st.job_id != 0)
		close_job(&st);
	if (sent)
		*sent = bulkops_writer_rows(st.writer);
	MemoryContextDelete(st.job_cxt);
	SPI_finish();

	if (st.job_id != 0)
		bulkops_wake_worker_at_commit();
	return st.job_id;
}

/*
 * A writer for a job of dialect d with options (its batch_size and
 * batch_bytes, within the dialect's limits), in cxt.
 */
BulkopsBatchWriter *
bulkops_enqueue_writer(const BulkopsDialect *d, Jsonb *options,
					   MemoryContext cxt)
{
	return bulkops_writer_create(0, d,
								 batch_limit(options, "batch_size",
											 (int) bulkops_opt_default(d, "batch_size"),
											 d->max_batch_rows, d),
								 batch_limit(options, "batch_bytes",
											 BULKOPS_DEFAULT_BATCH_BYTES,
											 d->max_batch_bytes, d),
								 cxt);
}

/*
 * Check a source for later (a sync's): it must parse, as the caller, be
 * read-only, and have the key column.
 */
void
bulkops_check_source(const char *source, const char *key)
{
	SPIPlanPtr	plan;
	CachedPlanSource *ps;
	TupleDesc	desc;
	int			i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	plan = SPI_prepare(source_query(source), 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare source: %s",
			 SPI_result_code_string(SPI_result));
	check_read_only(plan);
	ps = linitial(SPI_plan_get_plan_sources(plan));
	desc = ps->resultDesc;
	for (i = 0; desc && i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped &&
			strcmp(NameStr(TupleDescAttr(desc, i)->attname), key) == 0)
			break;
	if (desc == NULL || i == desc->natts)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("key column \"%s\" is not in the source", key)));
	SPI_finish();
}

/* bulk_insert() and the others: every row of source, as op. */
int64
bulkops_enqueue(const char *target, BulkopsOp op, text *source,
				const char *key, Jsonb *job_options)
{
	BulkopsEnqueueSpec spec = {0};

	spec.target = target;
	spec.op = op;
	spec.source = text_to_cstring(source);
	spec.key = key;
	spec.options = job_options;
	return bulkops_enqueue_run(&spec, NULL);
}

/*
 * Add a row made of its key alone, for op (a mirror's delete of a key no
 * longer in the source), after the source's rows: encoded as the dialect
 * encodes a source with that one column, in batches of their own, which
 * carry the prologue that encoding needs.
 */
void
bulkops_enqueue_key_row(BulkopsEnqueue *st, BulkopsOp op, const char *key,
						uint64 hash)
{
	MemoryContext old = MemoryContextSwitchTo(st->job_cxt);
	Datum		value;
	bool		isnull = false;
	StringInfo	buf;

	if (st->key_enc == NULL || st->key_target.op != op)
	{
		TupleDesc	desc = CreateTemplateTupleDesc(1);

		TupleDescInitEntry(desc, 1, st->key, TEXTOID, -1, 0);
		st->key_enc = bulkops_encoder_create(desc, st->job_cxt);
		st->key_target = st->target;
		st->key_target.op = op;
		st->key_target.key_att = 0;
		st->key_target.private = NULL;
		st->key_target.prologue = NULL;
		if (st->dialect->begin_encode)
		{
			st->key_target.prologue = makeStringInfo();
			st->dialect->begin_encode(&st->key_target, st->key_enc);
		}
		if (st->key_target.want_versions && st->versions == NULL)
			load_versions(st);
		bulkops_writer_set_op(st->writer, op, st->key_target.prologue, true);
	}
	MemoryContextReset(st->row_cxt);
	MemoryContextSwitchTo(st->row_cxt);
	value = CStringGetTextDatum(key);
	st->key_target.key_text = key;
	st->key_target.remote_version = version_of(st, key);
	buf = bulkops_writer_row_begin(st->writer);
	st->dialect->encode_row(&st->key_target, st->key_enc, &value, &isnull, buf);
	bulkops_writer_row_end(st->writer, key, hash, 0);
	MemoryContextSwitchTo(old);
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
										BULKOPS_OP_QUERY, NULL, options, 0);
	body = palloc(VARHDRSZ + qlen);
	SET_VARSIZE(body, VARHDRSZ + qlen);
	memcpy(VARDATA(body), query, qlen);
	bulkops_catalog_insert_export(job_id, dest.relid, dest.schema, dest.table,
								  body);
	bulkops_wake_worker_at_commit();
	return job_id;
}
