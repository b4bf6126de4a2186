/*-------------------------------------------------------------------------
 *
 * catalog_partitions.c
 *	  The partitions of bulkops.batches: which generation a job enqueued
 *	  now belongs to, and the statements that create a generation's
 *	  partition, give its space back and drop it (when: retention.c).
 *
 * A job's generation is the start, in seconds since the epoch, of the
 * bulkops.partition_interval its transaction began in; its batches, with
 * their receipts, go to that generation's partition, or to the default
 * partition when it has none.  A partition is named for its generation's
 * start in UTC (batches_20261206_0000), and its generation is read back
 * from its bound, so that a restored dump is understood as well.
 *
 * Rules:
 *	- Partitions are created by the worker only, ahead of their time: a
 *	  backend that enqueues never runs DDL in its caller's transaction.
 *	- A partition is emptied (TRUNCATE) only when no job of its generation
 *	  is left that retention keeps, checked again under an ACCESS EXCLUSIVE
 *	  lock taken with NOWAIT: a transaction that is writing into it holds
 *	  it, and one that has not written yet finds it empty, not gone.
 *	- A partition is dropped only once empty, when its generation has
 *	  passed and no job of it is left: a late writer then goes to the
 *	  default partition.  The drop waits for the parent's lock at most the
 *	  worker's lock_timeout; a busy parent makes it wait for a later tick,
 *	  its space already given back.
 *	- Partitions are owned by the owner of bulkops.batches and have no
 *	  grants: everyone reads them through the parent, under its row-level
 *	  security.
 *
 * Like catalog.c, every statement runs in the worker's transaction with
 * its fixed settings (search_path = pg_catalog, pg_temp) and names its
 * tables with their schema.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "bulkops.h"
#include "catalog.h"
#include "exec.h"

/* a partition smaller than this with nothing in it is left alone */
#define EMPTY_PARTITION_BYTES (64 * 1024)

/* The generation a job enqueued at t belongs to. */
int64
bulkops_generation_at(TimestampTz t)
{
	pg_time_t	s = timestamptz_to_time_t(t);
	int64		interval = Max(bulkops_partition_interval_s, 1);

	/* rounded down, also before the epoch */
	return s - ((s % interval) + interval) % interval;
}

/* The name of generation's partition (without its schema). */
static char *
partition_name(int64 generation)
{
	pg_time_t	t = (pg_time_t) generation;
	struct pg_tm *tm = pg_gmtime(&t);

	return psprintf("batches_%04d%02d%02d_%02d%02d", tm->tm_year + 1900,
					tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min);
}

static char *
qualified(const char *name)
{
	return quote_qualified_identifier("bulkops", name);
}

/*
 * The partitions there are, oldest generation first, the default one last,
 * and whether jobs of each one's generation remain, and ones that
 * retention (retention_s; 0: none) keeps.
 */
BulkopsPartition *
bulkops_catalog_partitions(int retention_s, int *n)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(retention_s)};
	BulkopsPartition *p;
	uint64		i;

	bulkops_exec("SELECT c.relname, g.generation IS NULL, g.generation,"
				 " EXISTS (SELECT 1 FROM bulkops.jobs j"
				 "  WHERE j.generation = g.generation),"
				 " EXISTS (SELECT 1 FROM bulkops.jobs j"
				 "  WHERE j.generation = g.generation"
				 "  AND (j.state IN ('queued', 'running') OR $1 <= 0"
				 "   OR j.finished_at >= now() - make_interval(secs => $1)"
				 "   OR " BULKOPS_SQL_UNFOLDED ")),"
				 " pg_total_relation_size(c.oid) "
				 "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid,"
				 " LATERAL (SELECT CASE WHEN pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'"
				 "  THEN substring(pg_get_expr(c.relpartbound, c.oid) FROM '-?[0-9]+')::int8"
				 "  END AS generation) g "
				 "WHERE i.inhparent = 'bulkops.batches'::regclass "
				 "ORDER BY g.generation NULLS LAST",
				 1, types, values, NULL, true, SPI_OK_SELECT);
	*n = (int) SPI_processed;
	p = palloc0(sizeof(BulkopsPartition) * Max(*n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;

		p[i].name = SPI_getvalue(t, d, 1);
		p[i].is_default = DatumGetBool(SPI_getbinval(t, d, 2, &isnull));
		if (!p[i].is_default)
		{
			p[i].generation = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
			p[i].has_jobs = DatumGetBool(SPI_getbinval(t, d, 4, &isnull));
			p[i].has_live_jobs = DatumGetBool(SPI_getbinval(t, d, 5, &isnull));
		}
		p[i].bytes = DatumGetInt64(SPI_getbinval(t, d, 6, &isnull));
	}
	return p;
}

/*
 * Create generation's partition, owned as its parent is.  Attaching it
 * checks that the default partition holds no batch of that generation:
 * when it does (jobs were enqueued before the partition was there), this
 * fails, and that generation stays in the default partition.
 */
void
bulkops_catalog_create_partition(int64 generation)
{
	char	   *name = qualified(partition_name(generation));
	bool		isnull;
	Oid			owner;

	bulkops_exec_built(psprintf("CREATE TABLE %s (LIKE bulkops.batches INCLUDING DEFAULTS"
								" INCLUDING CONSTRAINTS INCLUDING COMPRESSION"
								" INCLUDING STORAGE)", name),
					   0, NULL, NULL, NULL, false, SPI_OK_UTILITY);
	/* its own indexes, as the default partition has (see the 1.3 script) */
	bulkops_exec_built(psprintf("ALTER TABLE %s ADD PRIMARY KEY (job_id, batch_no)", name),
					   0, NULL, NULL, NULL, false, SPI_OK_UTILITY);
	bulkops_exec_built(psprintf("CREATE INDEX ON %s (job_id, batch_no) WHERE state <> 'done'",
								name),
					   0, NULL, NULL, NULL, false, SPI_OK_UTILITY);
	bulkops_exec("SELECT relowner FROM pg_class WHERE oid = 'bulkops.batches'::regclass",
				 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	bulkops_exec_built(psprintf("ALTER TABLE %s OWNER TO %s", name,
								quote_identifier(GetUserNameFromId(owner, false))),
					   0, NULL, NULL, NULL, false, SPI_OK_UTILITY);
	bulkops_exec_built(psprintf("ALTER TABLE bulkops.batches ATTACH PARTITION %s"
								" FOR VALUES IN (" INT64_FORMAT ")", name, generation),
					   0, NULL, NULL, NULL, false, SPI_OK_UTILITY);
}

/*
 * Lock partition p as TRUNCATE and DROP do, at once or not at all: an
 * error ends the caller's transaction, which tries again on a later tick.
 */
static void
lock_partition(const BulkopsPartition *p)
{
	bulkops_exec_built(psprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT",
								qualified(p->name)),
					   0, NULL, NULL, NULL, false, SPI_OK_UTILITY);
}

/* Does partition p hold any batch (live, as this transaction sees)? */
static bool
partition_has_rows(const BulkopsPartition *p)
{
	bool		isnull;

	bulkops_exec_built(psprintf("SELECT EXISTS (SELECT 1 FROM %s)", qualified(p->name)),
					   0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
}

/* Are jobs of generation left (any, or only those retention keeps)? */
static bool
generation_has_jobs(int64 generation, int retention_s, bool live_only)
{
	Oid			types[3] = {INT8OID, INT4OID, BOOLOID};
	Datum		values[3] = {Int64GetDatum(generation), Int32GetDatum(retention_s),
	BoolGetDatum(live_only)};
	bool		isnull;

	bulkops_exec("SELECT EXISTS (SELECT 1 FROM bulkops.jobs j WHERE j.generation = $1"
				 " AND (NOT $3 OR j.state IN ('queued', 'running') OR $2 <= 0"
				 "  OR j.finished_at >= now() - make_interval(secs => $2)"
				 "  OR " BULKOPS_SQL_UNFOLDED "))",
				 3, types, values, NULL, true, SPI_OK_SELECT);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Give partition p's space back to the file system, if nothing in it is
 * kept: for a generation's partition, once every job of the generation
 * has expired (they are deleted with it); for the default one, once it
 * holds no batch.  Returns false when it was not the time.  A lock that
 * is not free at once ends the caller's transaction with an error.
 */
bool
bulkops_catalog_empty_partition(const BulkopsPartition *p, int retention_s)
{
	if (p->is_default ? p->bytes <= EMPTY_PARTITION_BYTES
		: (p->has_live_jobs || (!p->has_jobs && p->bytes <= EMPTY_PARTITION_BYTES)))
		return false;
	lock_partition(p);
	if (p->is_default)
	{
		if (partition_has_rows(p))
			return false;
	}
	else
	{
		Oid			types[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(p->generation)};

		/* again, now that nobody can write into it */
		if (generation_has_jobs(p->generation, retention_s, true))
			return false;
		bulkops_exec("DELETE FROM bulkops.jobs WHERE generation = $1",
					 1, types, values, NULL, false, SPI_OK_DELETE);
	}
	bulkops_exec_built(psprintf("TRUNCATE %s", qualified(p->name)),
					   0, NULL, NULL, NULL, false, SPI_OK_UTILITY);
	return true;
}

/*
 * Drop partition p, empty and of a generation that has passed, unless a
 * job of its generation appeared meanwhile.
 */
void
bulkops_catalog_drop_partition(const BulkopsPartition *p)
{
	Assert(!p->is_default);
	lock_partition(p);
	if (generation_has_jobs(p->generation, 0, false) || partition_has_rows(p))
		return;
	bulkops_exec_built(psprintf("DROP TABLE %s", qualified(p->name)),
					   0, NULL, NULL, NULL, false, SPI_OK_UTILITY);
}
