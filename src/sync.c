/*-------------------------------------------------------------------------
 *
 * sync.c
 *	  Syncs: a source pushed again and again, each run sending only what
 *	  changed since the last successful push of each key
 *	  (bulkops.create_sync, alter_sync, drop_sync, run_sync, preview_sync),
 *	  and bulkops.preview, a plain push's dry run.
 *
 * A run, in the caller's transaction:
 *	1. locks the sync's row (overlapping runs queue up here) and returns
 *	   NULL when one of its jobs is still queued or running;
 *	2. loads what the sync knows of its keys (sync_state.c) and folds in
 *	   the receipts of its jobs since, oldest first: a key's content hash
 *	   advances only where its receipt says succeeded;
 *	3. runs the source with the caller's rights through enqueue.c, with a
 *	   filter that sees each row's key and encoding: a key it never pushed
 *	   successfully is "new", one whose encoding hashes differently
 *	   "changed", one whose last push did not succeed "retry"; the rest is
 *	   not sent.  Mode insert sends new keys only; mode mirror then adds a
 *	   delete for every key it pushed successfully that the source no
 *	   longer has (never another's key: only this sync's state is read);
 *	4. writes one job (created with its first batch, so a run that sends
 *	   nothing leaves none), and stores the folded state when enough has
 *	   gathered since it was last stored.  Retention keeps the jobs not yet
 *	   stored (syncs.folded_through).
 *
 * The content hash is 64 bits of the encoded row (what is sent), seeded
 * with the dialect, the operation, the target's resource and the job's
 * options, so that changing any of them sends every row again.
 *
 * Rules: a sync is its owner's; running, previewing, altering or dropping
 * it needs the owner's privileges, and running it the target privileges of
 * what it may send (push, and delete for a mirror), checked before the
 * source is read.  Every statement on bulkops' tables is catalog*.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "bulkops.h"
#include "catalog.h"
#include "enqueue.h"
#include "sync_state.h"

/* store the folded state once this share of its keys changed since */
#define FOLD_SHARE 10
/* ... or once this many jobs are waiting to be folded */
#define FOLD_JOBS 8

typedef enum SyncChange
{
	CHANGE_NEW,
	CHANGE_CHANGED,
	CHANGE_RETRY,
	CHANGE_DELETE,
	CHANGE_UNCHANGED
} SyncChange;

static const char *const change_names[] = {
	"new", "changed", "retry", "delete", "unchanged"
};

/* One run (or preview) of a sync. */
typedef struct SyncRun
{
	BulkopsSyncRow sync;
	bool		mirror;
	bool		insert_only;
	char	   *resource;
	SyncState  *state;
	uint64		seed;
	int64		counts[5];		/* by SyncChange */
	SyncChange	last;			/* the change of the row just accepted */
	Tuplestorestate *out;		/* a preview's rows */
	TupleDesc	out_desc;
} SyncRun;

/* ---- arguments ---- */

static char *
text_arg(FunctionCallInfo fcinfo, int n, const char *what)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static void
check_mode(const char *mode)
{
	if (strcmp(mode, "upsert") != 0 && strcmp(mode, "mirror") != 0 &&
		strcmp(mode, "insert") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sync mode must be \"upsert\", \"mirror\" or \"insert\", not \"%s\"",
						mode)));
}

/* The operation a mode sends its rows with. */
static BulkopsOp
mode_op(const char *mode)
{
	return strcmp(mode, "insert") == 0 ? BULKOPS_OP_INSERT : BULKOPS_OP_UPSERT;
}

/*
 * Refuse a mode the target's dialect cannot carry out, or that the caller
 * may not run through the target: before anything is stored or read.
 */
static BulkopsTargetRow
check_target_for(const char *target, const char *mode)
{
	BulkopsTargetRow t;
	const BulkopsDialect *d;
	BulkopsOp	op = mode_op(mode);
	bool		mirror = strcmp(mode, "mirror") == 0;

	if (!bulkops_catalog_read_target(target, false, &t))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("target \"%s\" does not exist", target),
				 errhint("Create it with bulkops.create_target().")));
	d = bulkops_find_dialect(t.dialect, false);
	if (d->op_names[op] == NULL || (mirror && d->op_names[BULKOPS_OP_DELETE] == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("dialect \"%s\" cannot run a sync in mode \"%s\"", d->name, mode),
				 errdetail("Mode \"%s\" sends %s%s; dialect \"%s\" has no %s operation.",
						   mode, bulkops_op_name(op), mirror ? " and delete" : "",
						   d->name,
						   d->op_names[op] == NULL ? bulkops_op_name(op) : "delete")));
	bulkops_require_op_privilege(target, t.owner, op);
	if (mirror)
		bulkops_require_op_privilege(target, t.owner, BULKOPS_OP_DELETE);
	return t;
}

/* The sync named name, for its owner (or a role with its privileges). */
static BulkopsSyncRow
own_sync(const char *name, bool for_update, const char *action)
{
	BulkopsSyncRow row;

	bulkops_require_current_schema();
	if (!bulkops_catalog_read_sync(name, for_update, &row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sync \"%s\" does not exist", name),
				 errhint("Create it with bulkops.create_sync().")));
	if (!superuser() && !has_privs_of_role(GetUserId(), row.owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s sync \"%s\"", action, name),
				 errdetail("Only its owner, %s, and roles with its privileges may.",
						   GetUserNameFromId(row.owner, false))));
	return row;
}

/* ---- the state ---- */

typedef struct FoldJob
{
	SyncState  *state;
	int64		rows;
	MemoryContext tmp;			/* one batch's keys, reset per batch */
} FoldJob;

/* One batch of a job, folded into the state (sync_state.c says how). */
static void
fold_batch(void *arg, HeapTuple tup, TupleDesc desc)
{
	FoldJob    *f = arg;
	bool		isnull;
	Datum		d;
	Datum	   *kd;
	bool	   *kn;
	char	  **keys;
	int			nkeys;
	const uint8 *outcomes = NULL;
	const uint8 *hashes = NULL;
	MemoryContext old;
	int			i;

	MemoryContextReset(f->tmp);
	old = MemoryContextSwitchTo(f->tmp);
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2, &isnull)),
					  TEXTOID, -1, false, TYPALIGN_INT, &kd, &kn, &nkeys);
	keys = palloc(sizeof(char *) * Max(nkeys, 1));
	for (i = 0; i < nkeys; i++)
		keys[i] = kn[i] ? NULL : TextDatumGetCString(kd[i]);
	d = SPI_getbinval(tup, desc, 3, &isnull);
	if (!isnull)
	{
		bytea	   *b = DatumGetByteaPP(d);

		if (VARSIZE_ANY_EXHDR(b) == nkeys)
			outcomes = (const uint8 *) VARDATA_ANY(b);
	}
	d = SPI_getbinval(tup, desc, 4, &isnull);
	if (!isnull)
	{
		bytea	   *b = DatumGetByteaPP(d);

		if (VARSIZE_ANY_EXHDR(b) == 8 * nkeys)
			hashes = (const uint8 *) VARDATA_ANY(b);
	}
	bulkops_sync_state_fold(f->state,
							bulkops_op_from_name(SPI_getvalue(tup, desc, 1)),
							keys, outcomes, hashes, nkeys);
	f->rows += nkeys;
	MemoryContextSwitchTo(old);
}

/*
 * What the sync knows now: its stored state, and the receipts of its jobs
 * since.  Returns the last job folded in (0: none), and in *rows how many
 * rows they had.
 */
static int64
load_state(SyncRun *run, MemoryContext cxt, int64 *rows, int *njobs)
{
	int64	   *generations;
	int64	   *jobs;
	int			i;

	run->state = bulkops_sync_state_create(cxt);
	bulkops_catalog_load_sync_state(run->sync.id, run->state);
	jobs = bulkops_catalog_sync_jobs_to_fold(run->sync.id, run->sync.folded_through,
											 njobs, &generations);
	*rows = 0;
	for (i = 0; i < *njobs; i++)
	{
		FoldJob		f = {run->state, 0, NULL};

		f.tmp = AllocSetContextCreate(cxt, "bulkops sync fold", ALLOCSET_DEFAULT_SIZES);
		bulkops_catalog_each_batch(jobs[i], generations[i],
								   "operation, keys, outcomes, hashes", fold_batch, &f);
		MemoryContextDelete(f.tmp);
		*rows += f.rows;
	}
	return *njobs > 0 ? jobs[*njobs - 1] : 0;
}

/* ---- the filter enqueue.c runs the source through ---- */

static void
sync_begin(void *arg, const BulkopsDialect *dialect, Jsonb *options)
{
	SyncRun    *run = arg;
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "%s|%s|%s|", dialect->name,
					 bulkops_op_name(mode_op(run->sync.mode)),
					 run->resource ? run->resource : "");
	appendStringInfoString(&s, JsonbToCString(NULL, &options->root, VARSIZE(options)));
	run->seed = hash_bytes_extended((const unsigned char *) s.data, s.len, 0);
}

static bool
sync_row(void *arg, const char *key, const char *data, int len,
		 int64 source_row, uint64 *hash)
{
	SyncRun    *run = arg;
	SyncEntry  *e = bulkops_sync_state_insert(run->state, key);

	if (e->seen)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("key \"%s\" appears more than once in the source of sync \"%s\"",
						key, run->sync.name),
				 errdetail("Row " INT64_FORMAT " of the source has it again.", source_row),
				 errhint("A sync sends each key once per run: make the key column unique in its source.")));
	e->seen = true;
	*hash = hash_bytes_extended((const unsigned char *) data, len, run->seed);
	if (!e->stored)
		run->last = CHANGE_NEW;
	else if (run->insert_only)
		run->last = CHANGE_UNCHANGED;
	else if (e->flags & SYNC_KEY_RETRY)
		run->last = CHANGE_RETRY;
	else if (e->hash != *hash)
		run->last = CHANGE_CHANGED;
	else
		run->last = CHANGE_UNCHANGED;
	run->counts[run->last]++;
	return run->last != CHANGE_UNCHANGED;
}

/* A mirror: delete every key pushed successfully that the source lacks. */
static void
sync_after(void *arg, BulkopsEnqueue *e)
{
	SyncRun    *run = arg;
	SyncEntry  *entry;

	if (!run->mirror)
		return;
	bulkops_sync_state_begin(run->state);
	while ((entry = bulkops_sync_state_next(run->state)) != NULL)
	{
		if (entry->seen)
			continue;
		run->last = CHANGE_DELETE;
		run->counts[CHANGE_DELETE]++;
		bulkops_enqueue_key_row(e, BULKOPS_OP_DELETE, entry->key, 0);
	}
}

/* A preview's row: what would be sent, and why. */
static void
sync_preview_row(void *arg, int64 row_no, const char *key, BulkopsOp op,
				 const char *data, int len)
{
	SyncRun    *run = arg;
	Datum		values[3];
	bool		nulls[3] = {false, key == NULL, false};

	values[0] = CStringGetTextDatum(change_names[run->last]);
	values[1] = key ? CStringGetTextDatum(key) : (Datum) 0;
	values[2] = PointerGetDatum(cstring_to_text_with_len(data, len));
	tuplestore_putvalues(run->out, run->out_desc, values, nulls);
}

/* Run (or, with out, preview) the sync; its job's id, or 0. */
static int64
run(SyncRun *sr, bool preview)
{
	BulkopsRowFilter filter = {sync_begin, sync_row, sync_after, sr};
	BulkopsEnqueueSpec spec = {0};
	BulkopsTargetRow t;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "bulkops sync",
											  ALLOCSET_DEFAULT_SIZES);
	int64		folded_rows;
	int64		folded_to;
	int			njobs;
	int64		job;
	int64		stored;

	t = check_target_for(sr->sync.target, sr->sync.mode);
	sr->resource = t.resource;
	sr->mirror = strcmp(sr->sync.mode, "mirror") == 0;
	sr->insert_only = strcmp(sr->sync.mode, "insert") == 0;
	folded_to = load_state(sr, cxt, &folded_rows, &njobs);

	spec.target = sr->sync.target;
	spec.op = mode_op(sr->sync.mode);
	spec.source = sr->sync.source;
	spec.key = sr->sync.key;
	spec.options = sr->sync.options;
	spec.filter = &filter;
	spec.sync_id = sr->sync.id;
	if (preview)
	{
		spec.sink = sync_preview_row;
		spec.sink_arg = sr;
	}
	job = bulkops_enqueue_run(&spec, NULL);

	if (!preview)
	{
		/* store what was folded in when enough gathered since */
		stored = bulkops_sync_state_count(sr->state);
		if (njobs >= FOLD_JOBS ||
			(njobs > 0 && folded_rows * FOLD_SHARE >= stored))
			bulkops_catalog_save_sync_state(sr->sync.id, sr->state, folded_to);
		bulkops_catalog_sync_ran(sr->sync.id, job, sr->counts);
	}
	MemoryContextDelete(cxt);
	return job;
}

/* ---- SQL ---- */

PG_FUNCTION_INFO_V1(bulkops_create_sync);
Datum
bulkops_create_sync(PG_FUNCTION_ARGS)
{
	char	   *name = text_arg(fcinfo, 0, "name");
	char	   *target = text_arg(fcinfo, 1, "target");
	char	   *source = text_arg(fcinfo, 2, "source");
	char	   *key = text_arg(fcinfo, 3, "key");
	char	   *mode = text_arg(fcinfo, 4, "mode");
	Jsonb	   *options = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);
	BulkopsSyncRow existing;
	BulkopsTargetRow t;

	bulkops_require_current_schema();
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sync name must not be empty")));
	check_mode(mode);
	t = check_target_for(target, mode);
	/* refused now rather than at the first run */
	(void) bulkops_job_options(target, t.options, options,
							   bulkops_find_dialect(t.dialect, false),
							   t.url, t.resource);
	bulkops_check_source(source, key);
	if (bulkops_catalog_read_sync(name, false, &existing))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("sync \"%s\" already exists", name)));
	bulkops_catalog_insert_sync(name, target, mode, source, key,
								options ? options : DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))),
								GetUserId());
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(bulkops_alter_sync);
Datum
bulkops_alter_sync(PG_FUNCTION_ARGS)
{
	char	   *name = text_arg(fcinfo, 0, "name");
	BulkopsSyncRow sync = own_sync(name, true, "alter");
	char	   *source = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *key = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *mode = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	Jsonb	   *options = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	BulkopsTargetRow t;
	bool		new_key;

	if (mode)
		check_mode(mode);
	t = check_target_for(sync.target, mode ? mode : sync.mode);
	if (options)
		(void) bulkops_job_options(sync.target, t.options, options,
								   bulkops_find_dialect(t.dialect, false),
								   t.url, t.resource);
	bulkops_check_source(source ? source : sync.source, key ? key : sync.key);
	if (bulkops_catalog_sync_busy(sync.id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("sync \"%s\" has a job queued or running", name),
				 errhint("Wait for it, or cancel it with bulkops.cancel(), then alter the sync.")));
	/* other keys: what it knew of the old ones means nothing for them */
	new_key = key && strcmp(key, sync.key) != 0;
	bulkops_catalog_update_sync(sync.id, source, key, mode, options, new_key);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(bulkops_drop_sync);
Datum
bulkops_drop_sync(PG_FUNCTION_ARGS)
{
	BulkopsSyncRow sync = own_sync(text_arg(fcinfo, 0, "name"), true, "drop");

	bulkops_catalog_delete_sync(sync.id);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(bulkops_run_sync);
Datum
bulkops_run_sync(PG_FUNCTION_ARGS)
{
	SyncRun		sr = {0};
	int64		busy;
	int64		job;

	sr.sync = own_sync(text_arg(fcinfo, 0, "name"), true, "run");
	busy = bulkops_catalog_sync_busy(sr.sync.id);
	if (busy)
	{
		ereport(NOTICE,
				(errmsg("sync \"%s\" still has job " INT64_FORMAT " queued or running: nothing enqueued",
						sr.sync.name, busy)));
		PG_RETURN_NULL();
	}
	job = run(&sr, false);
	if (job == 0)
	{
		ereport(NOTICE,
				(errmsg("sync \"%s\": nothing to send (" INT64_FORMAT " keys unchanged)",
						sr.sync.name, sr.counts[CHANGE_UNCHANGED])));
		PG_RETURN_NULL();
	}
	PG_RETURN_INT64(job);
}

PG_FUNCTION_INFO_V1(bulkops_preview_sync);
Datum
bulkops_preview_sync(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SyncRun		sr = {0};

	sr.sync = own_sync(text_arg(fcinfo, 0, "name"), false, "preview");
	InitMaterializedSRF(fcinfo, 0);
	sr.out = rsinfo->setResult;
	sr.out_desc = rsinfo->setDesc;
	(void) run(&sr, true);
	return (Datum) 0;
}

/* ---- bulkops.preview(): a plain push's rows, as they would be sent ---- */

typedef struct PreviewOut
{
	Tuplestorestate *out;
	TupleDesc	desc;
} PreviewOut;

static void
preview_row(void *arg, int64 row_no, const char *key, BulkopsOp op,
			const char *data, int len)
{
	PreviewOut *p = arg;
	Datum		values[3];
	bool		nulls[3] = {false, key == NULL, false};

	values[0] = Int64GetDatum(row_no);
	values[1] = key ? CStringGetTextDatum(key) : (Datum) 0;
	values[2] = PointerGetDatum(cstring_to_text_with_len(data, len));
	tuplestore_putvalues(p->out, p->desc, values, nulls);
}

PG_FUNCTION_INFO_V1(bulkops_preview);
Datum
bulkops_preview(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BulkopsEnqueueSpec spec = {0};
	PreviewOut	p;
	char	   *operation = text_arg(fcinfo, 3, "operation");
	int			op;

	for (op = 0; op < BULKOPS_NUM_OPS; op++)
		if (op != BULKOPS_OP_QUERY && strcmp(bulkops_op_name((BulkopsOp) op), operation) == 0)
			break;
	if (op == BULKOPS_NUM_OPS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("operation must be insert, update, upsert, delete or overwrite, not \"%s\"",
						operation)));
	spec.target = text_arg(fcinfo, 0, "target");
	spec.source = text_arg(fcinfo, 1, "source");
	spec.key = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	spec.op = (BulkopsOp) op;
	spec.options = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	InitMaterializedSRF(fcinfo, 0);
	p.out = rsinfo->setResult;
	p.desc = rsinfo->setDesc;
	spec.sink = preview_row;
	spec.sink_arg = &p;
	(void) bulkops_enqueue_run(&spec, NULL);
	return (Datum) 0;
}
