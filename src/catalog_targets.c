/*-------------------------------------------------------------------------
 *
 * catalog_targets.c
 *	  Every statement on bulkops' targets and their grants, named by what
 *	  it does (jobs, batches and receipts: catalog.c).
 *
 * Called by backends, after the caller's right to make the change was
 * checked (privileges.c): each statement runs in an owner section
 * (owner.c), as the extension's owner with search_path = pg_catalog,
 * pg_temp, in the caller's transaction.  A target's row is locked (FOR
 * UPDATE) by whoever changes or drops it, so that two changes of one
 * target wait for each other.  What these functions return is allocated
 * in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "bulkops.h"
#include "catalog.h"

/*
 * Run one statement in an owner section; SPI must be connected.  Returns
 * SPI_processed.  (The other catalog files of backends use it too.)
 */
uint64
bulkops_catalog_run_as_owner(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, int expect)
{
	BulkopsSection s;
	int			rc;

	bulkops_enter_owner(&s);
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	bulkops_leave(&s);
	if (rc != expect)
		elog(ERROR, "bulkops: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
	return SPI_processed;
}

/* A text value for a statement, or a NULL. */
static Datum
text_param(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* Does sql, with the target's name as $1, give a row? */
static bool
any_row(const char *sql, const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	bool		found;

	SPI_connect();
	found = bulkops_catalog_run_as_owner(sql, 1, types, values, NULL, SPI_OK_SELECT) > 0;
	SPI_finish();
	return found;
}

bool
bulkops_catalog_target_exists(const char *name)
{
	return any_row("SELECT 1 FROM bulkops.targets WHERE name = $1", name);
}

/*
 * A target's row in *row (copied into the caller's context), locked until
 * the end of the transaction when for_update; false when there is none.
 * Its credentials are read only when for_update (the caller alters it).
 */
bool
bulkops_catalog_read_target(const char *name, bool for_update,
							BulkopsTargetRow *row)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	bool		found;

	memset(row, 0, sizeof(*row));
	SPI_connect();
	found = bulkops_catalog_run_as_owner(for_update
										 ? "SELECT dialect, url, resource, options, owner, auth "
										 "FROM bulkops.targets WHERE name = $1 FOR UPDATE"
										 : "SELECT dialect, url, resource, options, owner, NULL::jsonb AS auth "
										 "FROM bulkops.targets WHERE name = $1",
										 1, types, values, NULL, SPI_OK_SELECT) > 0;
	if (found)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext spi = MemoryContextSwitchTo(caller);
		bool		isnull;
		Datum		d;

		row->dialect = SPI_getvalue(tup, desc, 1);
		row->url = SPI_getvalue(tup, desc, 2);
		row->resource = SPI_getvalue(tup, desc, 3);
		row->options = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
		row->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		d = SPI_getbinval(tup, desc, 6, &isnull);
		row->auth = isnull ? NULL : DatumGetJsonbPCopy(d);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return found;
}

/* A new target owned by owner, who also counts as having set its auth. */
void
bulkops_catalog_insert_target(const char *name, const char *dialect,
							  const char *url, const char *resource,
							  Jsonb *auth, Jsonb *options, Oid owner)
{
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID, OIDOID};
	Datum		values[7];
	char		nulls[7] = "       ";

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(dialect);
	values[2] = CStringGetTextDatum(url);
	values[3] = text_param(resource, &nulls[3]);
	values[4] = auth ? JsonbPGetDatum(auth) : (Datum) 0;
	nulls[4] = auth ? ' ' : 'n';
	values[5] = JsonbPGetDatum(options);
	values[6] = ObjectIdGetDatum(owner);
	SPI_connect();
	(void) bulkops_catalog_run_as_owner("INSERT INTO bulkops.targets "
										"(name, dialect, url, resource, auth, options, owner, auth_set_by) "
										"VALUES ($1, $2, $3, $4, $5, $6, $7::regrole, "
										"CASE WHEN $5 IS NOT NULL THEN $7::regrole END)",
										7, types, values, nulls, SPI_OK_INSERT);
	SPI_finish();
}

/*
 * Change a target (every column given as it is to be).  auth_set_by is
 * who set auth now, or InvalidOid when auth is the stored one, which keeps
 * whoever set it; no auth, no setter.
 */
void
bulkops_catalog_update_target(const char *name, const char *url,
							  const char *resource, Jsonb *auth,
							  Jsonb *options, Oid auth_set_by)
{
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID, OIDOID};
	Datum		values[6];
	char		nulls[6] = "      ";

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(url);
	values[2] = text_param(resource, &nulls[2]);
	values[3] = auth ? JsonbPGetDatum(auth) : (Datum) 0;
	nulls[3] = auth ? ' ' : 'n';
	values[4] = JsonbPGetDatum(options);
	values[5] = ObjectIdGetDatum(auth_set_by);
	nulls[5] = OidIsValid(auth_set_by) ? ' ' : 'n';
	SPI_connect();
	(void) bulkops_catalog_run_as_owner("UPDATE bulkops.targets SET url = $2, resource = $3, auth = $4, "
										"options = $5, auth_set_by = CASE WHEN $4 IS NULL THEN NULL "
										"ELSE coalesce($6::regrole, auth_set_by) END, "
										"updated_at = now() WHERE name = $1",
										6, types, values, nulls, SPI_OK_UPDATE);
	SPI_finish();
}

/* Has target a job that is not finished? */
bool
bulkops_catalog_target_busy(const char *name)
{
	return any_row("SELECT 1 FROM bulkops.jobs WHERE target = $1 "
				   "AND state IN ('queued', 'running')", name);
}

/* Drop a target; its grants go with it (ON DELETE CASCADE). */
void
bulkops_catalog_delete_target(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	SPI_connect();
	(void) bulkops_catalog_run_as_owner("DELETE FROM bulkops.targets WHERE name = $1",
										1, types, values, NULL, SPI_OK_DELETE);
	SPI_finish();
}

/*
 * The privileges (their names, in the caller's context) granted on target
 * to role, to a role whose privileges it has, or to PUBLIC.
 */
List *
bulkops_catalog_granted(const char *target, Oid role)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		values[2] = {CStringGetTextDatum(target), ObjectIdGetDatum(role)};
	List	   *names = NIL;
	uint64		i;
	uint64		n;

	SPI_connect();
	n = bulkops_catalog_run_as_owner("SELECT privilege FROM bulkops.target_privileges "
									 "WHERE target = $1 AND (grantee::oid = 0 "
									 "OR pg_has_role($2, grantee::oid, 'USAGE'))",
									 2, types, values, NULL, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		char	   *p = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		MemoryContext spi = MemoryContextSwitchTo(caller);

		names = lappend(names, pstrdup(p));
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return names;
}

/*
 * Grant privilege on target to grantee (InvalidOid: PUBLIC), by grantor;
 * or, with grant false, revoke it.  Granting twice, or revoking what was
 * not granted, does nothing.
 */
void
bulkops_catalog_grant(const char *target, Oid grantee, const char *privilege,
					  Oid grantor, bool grant)
{
	Oid			types[4] = {TEXTOID, OIDOID, TEXTOID, OIDOID};
	Datum		values[4] = {CStringGetTextDatum(target), ObjectIdGetDatum(grantee),
	CStringGetTextDatum(privilege), ObjectIdGetDatum(grantor)};

	SPI_connect();
	if (grant)
		(void) bulkops_catalog_run_as_owner("INSERT INTO bulkops.target_privileges "
											"(target, grantee, privilege, grantor) "
											"VALUES ($1, $2::regrole, $3, $4::regrole) "
											"ON CONFLICT DO NOTHING",
											4, types, values, NULL, SPI_OK_INSERT);
	else
		(void) bulkops_catalog_run_as_owner("DELETE FROM bulkops.target_privileges "
											"WHERE target = $1 AND grantee::oid = $2 AND privilege = $3",
											3, types, values, NULL, SPI_OK_DELETE);
	SPI_finish();
}
