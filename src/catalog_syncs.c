/*-------------------------------------------------------------------------
 *
 * catalog_syncs.c
 *	  Every statement on bulkops.syncs and bulkops.sync_state, and those
 *	  that read a sync's jobs back for its state (sync.c decides when),
 *	  and those that read a job back for bulkops.retry() (retry.c).
 *
 * These run in the caller's transaction, in owner sections (owner.c):
 * nobody else may read a sync's state, and the caller's right to act on
 * the sync or job was checked by the caller of these functions.  What
 * they return is allocated in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "bulkops.h"
#include "catalog.h"
#include "sync_state.h"

/* keys per row of bulkops.sync_state */
#define STATE_CHUNK 8192

static Datum
text_or_null(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* ---- syncs ---- */

/*
 * The sync named name in *row (copied into the caller's context), locked
 * until the end of the transaction when for_update; false when there is
 * none.
 */
bool
bulkops_catalog_read_sync(const char *name, bool for_update,
						  BulkopsSyncRow *row)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	bool		found;

	memset(row, 0, sizeof(*row));
	SPI_connect();
	found = bulkops_catalog_run_as_owner(for_update
										 ? "SELECT id, name, target, mode, source, key, options, owner, "
										 "folded_through FROM bulkops.syncs WHERE name = $1 FOR UPDATE"
										 : "SELECT id, name, target, mode, source, key, options, owner, "
										 "folded_through FROM bulkops.syncs WHERE name = $1",
										 1, types, values, NULL, SPI_OK_SELECT) > 0;
	if (found)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext spi = MemoryContextSwitchTo(caller);
		bool		isnull;

		row->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		row->name = SPI_getvalue(tup, desc, 2);
		row->target = SPI_getvalue(tup, desc, 3);
		row->mode = SPI_getvalue(tup, desc, 4);
		row->source = SPI_getvalue(tup, desc, 5);
		row->key = SPI_getvalue(tup, desc, 6);
		row->options = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 7, &isnull));
		row->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 8, &isnull));
		row->folded_through = DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return found;
}

void
bulkops_catalog_insert_sync(const char *name, const char *target,
							const char *mode, const char *source,
							const char *key, Jsonb *options, Oid owner)
{
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID,
	OIDOID};
	Datum		values[7] = {CStringGetTextDatum(name), CStringGetTextDatum(target),
		CStringGetTextDatum(mode), CStringGetTextDatum(source),
	CStringGetTextDatum(key), JsonbPGetDatum(options), ObjectIdGetDatum(owner)};

	SPI_connect();
	(void) bulkops_catalog_run_as_owner("INSERT INTO bulkops.syncs "
										"(name, target, mode, source, key, options, owner) "
										"VALUES ($1, $2, $3, $4, $5, $6, $7::regrole)",
										7, types, values, NULL, SPI_OK_INSERT);
	SPI_finish();
}

/*
 * Change a sync: NULL keeps a value.  forget_state drops what it knows of
 * the keys it pushed (a new key column makes them other keys).
 */
void
bulkops_catalog_update_sync(int32 id, const char *source, const char *key,
							const char *mode, Jsonb *options,
							bool forget_state)
{
	Oid			types[5] = {INT4OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[5];
	char		nulls[5] = "     ";

	values[0] = Int32GetDatum(id);
	values[1] = text_or_null(source, &nulls[1]);
	values[2] = text_or_null(key, &nulls[2]);
	values[3] = text_or_null(mode, &nulls[3]);
	values[4] = options ? JsonbPGetDatum(options) : (Datum) 0;
	nulls[4] = options ? ' ' : 'n';
	SPI_connect();
	(void) bulkops_catalog_run_as_owner("UPDATE bulkops.syncs SET "
										"source = coalesce($2, source), key = coalesce($3, key), "
										"mode = coalesce($4, mode), options = coalesce($5, options) "
										"WHERE id = $1",
										5, types, values, nulls, SPI_OK_UPDATE);
	if (forget_state)
	{
		(void) bulkops_catalog_run_as_owner("DELETE FROM bulkops.sync_state WHERE sync_id = $1",
											1, types, values, NULL, SPI_OK_DELETE);
		(void) bulkops_catalog_run_as_owner("UPDATE bulkops.syncs SET state_keys = 0, "
											"folded_through = coalesce((SELECT max(id) FROM bulkops.jobs "
											"WHERE sync_id = $1), 0) WHERE id = $1",
											1, types, values, NULL, SPI_OK_UPDATE);
	}
	SPI_finish();
}

/* Drop a sync, and its state; its jobs stay, no longer a sync's. */
void
bulkops_catalog_delete_sync(int32 id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};

	SPI_connect();
	(void) bulkops_catalog_run_as_owner("DELETE FROM bulkops.syncs WHERE id = $1",
										1, types, values, NULL, SPI_OK_DELETE);
	SPI_finish();
}

/* A job of the sync that is queued or running, or 0. */
int64
bulkops_catalog_sync_busy(int32 id)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};
	int64		job = 0;

	SPI_connect();
	if (bulkops_catalog_run_as_owner("SELECT id FROM bulkops.jobs WHERE sync_id = $1 "
									 "AND state IN ('queued', 'running') ORDER BY id LIMIT 1",
									 1, types, values, NULL, SPI_OK_SELECT) > 0)
	{
		bool		isnull;

		job = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	return job;
}

/* What a run did: its job (0: none) and how many keys of each change. */
void
bulkops_catalog_sync_ran(int32 id, int64 job_id, const int64 *counts)
{
	Oid			types[7] = {INT4OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
	INT8OID};
	Datum		values[7];
	char		nulls[7] = "       ";
	int			i;

	values[0] = Int32GetDatum(id);
	values[1] = Int64GetDatum(job_id);
	nulls[1] = job_id ? ' ' : 'n';
	for (i = 0; i < 5; i++)
		values[2 + i] = Int64GetDatum(counts[i]);
	SPI_connect();
	(void) bulkops_catalog_run_as_owner("UPDATE bulkops.syncs SET "
										"last_job = coalesce($2, last_job), last_run_at = now(), "
										"last_new = $3, last_changed = $4, last_retry = $5, "
										"last_deleted = $6, last_unchanged = $7 WHERE id = $1",
										7, types, values, nulls, SPI_OK_UPDATE);
	SPI_finish();
}

/* ---- the state ---- */

/* Load what sync id stored of its keys into s. */
void
bulkops_catalog_load_sync_state(int32 id, SyncState *s)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};
	BulkopsSection sec;
	Portal		portal;

	SPI_connect();
	bulkops_enter_owner(&sec);
	portal = SPI_cursor_open_with_args(NULL, "SELECT keys, hashes, flags FROM bulkops.sync_state "
									   "WHERE sync_id = $1 ORDER BY chunk",
									   1, types, values, NULL, true, 0);
	for (;;)
	{
		uint64		r;

		SPI_cursor_fetch(portal, true, 4);
		if (SPI_processed == 0)
			break;
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum	   *keys;
			bool	   *knulls;
			int			nkeys;
			bytea	   *hashes = DatumGetByteaPP(SPI_getbinval(tup, desc, 2, &isnull));
			bytea	   *flags = DatumGetByteaPP(SPI_getbinval(tup, desc, 3, &isnull));
			const uint8 *h = (const uint8 *) VARDATA_ANY(hashes);
			const uint8 *f = (const uint8 *) VARDATA_ANY(flags);
			int			i;

			deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 1, &isnull)),
							  TEXTOID, -1, false, TYPALIGN_INT, &keys, &knulls, &nkeys);
			if (VARSIZE_ANY_EXHDR(hashes) != 8 * nkeys || VARSIZE_ANY_EXHDR(flags) != nkeys)
				elog(ERROR, "bulkops: the state of sync %d is damaged", id);
			for (i = 0; i < nkeys; i++)
				if (!knulls[i])
					bulkops_sync_state_add(s, TextDatumGetCString(keys[i]),
										   bulkops_sync_read_hash(h + 8 * i), f[i]);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	bulkops_leave(&sec);
	SPI_finish();
}

/* Write one chunk of n keys. */
static void
save_chunk(int32 id, int chunk, Datum *keys, uint8 *hashes, uint8 *flags, int n)
{
	Oid			types[5] = {INT4OID, INT4OID, TEXTARRAYOID, BYTEAOID, BYTEAOID};
	Datum		values[5];
	bytea	   *h = palloc(VARHDRSZ + 8 * n);
	bytea	   *f = palloc(VARHDRSZ + n);

	SET_VARSIZE(h, VARHDRSZ + 8 * n);
	memcpy(VARDATA(h), hashes, 8 * n);
	SET_VARSIZE(f, VARHDRSZ + n);
	memcpy(VARDATA(f), flags, n);
	values[0] = Int32GetDatum(id);
	values[1] = Int32GetDatum(chunk);
	values[2] = PointerGetDatum(construct_array(keys, n, TEXTOID, -1, false,
												TYPALIGN_INT));
	values[3] = PointerGetDatum(h);
	values[4] = PointerGetDatum(f);
	(void) bulkops_catalog_run_as_owner("INSERT INTO bulkops.sync_state "
										"(sync_id, chunk, keys, hashes, flags) "
										"VALUES ($1, $2, $3, $4, $5)",
										5, types, values, NULL, SPI_OK_INSERT);
}

/*
 * Store s as sync id's state, the receipts of its jobs up to
 * folded_through in it.
 */
void
bulkops_catalog_save_sync_state(int32 id, SyncState *s, int64 folded_through)
{
	Oid			types[3] = {INT4OID, INT8OID, INT8OID};
	Datum		values[3];
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "bulkops sync state chunk",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;
	Datum	   *keys = palloc(sizeof(Datum) * STATE_CHUNK);
	uint8	   *hashes = palloc(8 * STATE_CHUNK);
	uint8	   *flags = palloc(STATE_CHUNK);
	SyncEntry  *e;
	int64		total = 0;
	int			chunk = 0;
	int			n = 0;

	SPI_connect();
	values[0] = Int32GetDatum(id);
	(void) bulkops_catalog_run_as_owner("DELETE FROM bulkops.sync_state WHERE sync_id = $1",
										1, types, values, NULL, SPI_OK_DELETE);
	old = MemoryContextSwitchTo(cxt);
	bulkops_sync_state_begin(s);
	while ((e = bulkops_sync_state_next(s)) != NULL)
	{
		keys[n] = CStringGetTextDatum(e->key);
		bulkops_sync_write_hash(hashes + 8 * n, e->hash);
		flags[n] = e->flags;
		n++;
		total++;
		if (n == STATE_CHUNK)
		{
			save_chunk(id, ++chunk, keys, hashes, flags, n);
			MemoryContextReset(cxt);
			n = 0;
		}
	}
	if (n > 0)
		save_chunk(id, ++chunk, keys, hashes, flags, n);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	values[1] = Int64GetDatum(folded_through);
	values[2] = Int64GetDatum(total);
	(void) bulkops_catalog_run_as_owner("UPDATE bulkops.syncs SET folded_through = $2, "
										"state_keys = $3 WHERE id = $1",
										3, types, values, NULL, SPI_OK_UPDATE);
	SPI_finish();
}

/*
 * The jobs of sync id after folded_through, which are not in its state
 * yet, oldest first, with their generations (all of them are final: the
 * caller checked that none is queued or running).
 */
int64 *
bulkops_catalog_sync_jobs_to_fold(int32 id, int64 folded_through, int *n,
								  int64 **generations)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[2] = {INT4OID, INT8OID};
	Datum		values[2] = {Int32GetDatum(id), Int64GetDatum(folded_through)};
	int64	   *ids;
	uint64		i;

	SPI_connect();
	(void) bulkops_catalog_run_as_owner("SELECT id, generation FROM bulkops.jobs "
										"WHERE sync_id = $1 AND id > $2 ORDER BY id",
										2, types, values, NULL, SPI_OK_SELECT);
	*n = (int) SPI_processed;
	ids = MemoryContextAlloc(caller, sizeof(int64) * Max(*n, 1));
	*generations = MemoryContextAlloc(caller, sizeof(int64) * Max(*n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
		(*generations)[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_finish();
	return ids;
}

/*
 * Call fn for every batch of job, in order, with the batch's columns in
 * columns (a select list naming bulkops.batches' columns), a few at a
 * time: a job's batches can hold more than memory should.  Only the
 * cursor runs in the owner's section: fn runs as the caller (retry()
 * creates a job there, which must be the caller's).
 */
void
bulkops_catalog_each_batch(int64 job_id, int64 generation, const char *columns,
						   void (*fn) (void *arg, HeapTuple tup, TupleDesc desc),
						   void *arg)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(job_id), Int64GetDatum(generation)};
	BulkopsSection sec;
	Portal		portal;

	SPI_connect();
	bulkops_enter_owner(&sec);
	portal = SPI_cursor_open_with_args(NULL,
									   psprintf("SELECT %s FROM bulkops.batches "
												"WHERE job_id = $1 AND generation = $2 "
												"ORDER BY batch_no", columns),
									   2, types, values, NULL, true, 0);
	bulkops_leave(&sec);
	for (;;)
	{
		uint64		r;

		bulkops_enter_owner(&sec);
		SPI_cursor_fetch(portal, true, 8);
		bulkops_leave(&sec);
		if (SPI_processed == 0)
			break;
		for (r = 0; r < SPI_processed; r++)
			fn(arg, SPI_tuptable->vals[r], SPI_tuptable->tupdesc);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();
}

/* ---- a job read back for bulkops.retry() ---- */

/*
 * The job job_id in *row (in the caller's context), and the operations of
 * its batches.  The caller checked that it may see the job.
 */
void
bulkops_catalog_job_row(int64 job_id, BulkopsJobRow *row)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(job_id), (Datum) 0};
	HeapTuple	tup;
	TupleDesc	desc;
	MemoryContext spi;
	bool		isnull;
	Datum		d;
	uint64		i;

	memset(row, 0, sizeof(*row));
	SPI_connect();
	if (bulkops_catalog_run_as_owner("SELECT id, state, target, dialect, operation, key_column, "
									 "options, prologue, generation, sync_id "
									 "FROM bulkops.jobs WHERE id = $1",
									 1, types, values, NULL, SPI_OK_SELECT) != 1)
		elog(ERROR, "bulkops: job " INT64_FORMAT " vanished", job_id);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	spi = MemoryContextSwitchTo(caller);
	row->id = job_id;
	row->state = SPI_getvalue(tup, desc, 2);
	row->target = SPI_getvalue(tup, desc, 3);
	row->dialect = SPI_getvalue(tup, desc, 4);
	row->op = bulkops_op_from_name(SPI_getvalue(tup, desc, 5));
	row->key = SPI_getvalue(tup, desc, 6);
	row->options = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 7, &isnull));
	d = SPI_getbinval(tup, desc, 8, &isnull);
	row->prologue = isnull ? NULL : DatumGetByteaPCopy(d);
	row->generation = DatumGetInt64(SPI_getbinval(tup, desc, 9, &isnull));
	d = SPI_getbinval(tup, desc, 10, &isnull);
	row->sync_id = isnull ? 0 : DatumGetInt32(d);
	MemoryContextSwitchTo(spi);

	values[1] = Int64GetDatum(row->generation);
	(void) bulkops_catalog_run_as_owner("SELECT DISTINCT operation FROM bulkops.batches "
										"WHERE job_id = $1 AND generation = $2",
										2, types, values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
		row->ops |= 1 << bulkops_op_from_name(SPI_getvalue(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1));
	SPI_finish();
}
