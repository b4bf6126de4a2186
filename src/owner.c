/*-------------------------------------------------------------------------
 *
 * owner.c
 *	  Sections of code that run with other rights than the caller's, or
 *	  with settings the caller does not control.
 *
 * Three kinds, each entered and left in pairs within one transaction:
 *
 * - An owner section (bulkops_enter_owner): bulkops' own statements that
 *	 write its tables on a caller's behalf run as the extension's owner
 *	 (pg_extension.extowner, a superuser), after the caller's right to make
 *	 the change was checked.
 * - A safe section (bulkops_enter_safe): bulkops' own statements that read
 *	 as the caller (so row-level security decides what they see).
 * - A user section (bulkops_enter_user): code that belongs to a user and
 *	 that the worker must run on that user's behalf (the triggers, defaults
 *	 and domains of a bulk_query destination), as that user.
 *
 * Rules.  Every section runs inside its own GUC nest level with a fixed
 * search_path, pg_catalog then pg_temp, so that no function, operator or
 * type a caller created in a schema of its path is ever resolved by a
 * statement of ours, and it always runs as a security-restricted
 * operation when it changes the user.  Leaving pops the nest level with
 * AtEOXact_GUC(false, ...): whatever the code inside set, even with
 * set_config(..., false), is discarded.  An error inside a section needs
 * no leave: aborting the (sub)transaction pops the nest level and restores
 * the user, as it does for PostgreSQL's own SECURITY DEFINER functions.
 *
 * The worker's session itself also gets fixed settings at start
 * (bulkops_fix_session_settings), so that database- and role-level
 * settings cannot change how its statements resolve names or make them
 * fail.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"

#include "bulkops.h"

/*
 * Settings our own statements need, whatever the caller set.  search_path
 * is the one that matters for safety; the next three change how the text
 * of a statement is read.  The worker's session gets all of them, since
 * database- and role-level settings (ALTER DATABASE ... SET, which a
 * database's owner may run) must not make its statements fail, wait
 * forever or change meaning; sections get the first four.
 */
#define SECTION_SETTINGS 4

static const struct
{
	const char *name;
	const char *value;
}			fixed_settings[] = {
	{"search_path", "pg_catalog, pg_temp"},
	{"transform_null_equals", "off"},
	{"array_nulls", "on"},
	{"standard_conforming_strings", "on"},
	/* the worker's session only */
	{"statement_timeout", "0"},
	{"lock_timeout", "0"},
	{"idle_in_transaction_session_timeout", "0"},
	{"default_transaction_read_only", "off"},
	{"default_transaction_isolation", "read committed"},
	{"default_transaction_deferrable", "off"},
	{"session_replication_role", "origin"},
	{"exit_on_error", "off"},
	{"row_security", "on"},
};

/*
 * The bulkops extension's row in pg_extension: its owner, and its version
 * (palloc'd; NULL when *version is NULL).  Returns false when bulkops is
 * not installed in this database.
 */
bool
bulkops_extension_info(Oid *owner, char **version)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("bulkops"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	found = HeapTupleIsValid(tup);
	if (found && owner)
		*owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	if (found && version)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		*version = isnull ? NULL : TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* The role that owns the bulkops extension in this database. */
Oid
bulkops_extension_owner(void)
{
	Oid			owner;

	if (!bulkops_extension_info(&owner, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"bulkops\" is not installed in this database")));
	return owner;
}

/*
 * Refuse to act on a schema older than this library: after an upgrade of
 * the library and before ALTER EXTENSION bulkops UPDATE, the statements
 * here would meet missing tables and columns, and the checks they make
 * (the per-target privileges, for one) would not be there to make.
 */
void
bulkops_require_current_schema(void)
{
	char	   *version = NULL;

	if (bulkops_extension_info(NULL, &version) && version != NULL &&
		strcmp(version, BULKOPS_SCHEMA_VERSION) == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the bulkops extension in this database is version %s, this library needs %s",
					version ? version : "(none)", BULKOPS_SCHEMA_VERSION),
			 errhint("Run ALTER EXTENSION bulkops UPDATE.")));
}

static void
apply_settings(int n, GucAction action)
{
	int			i;

	for (i = 0; i < n; i++)
		(void) set_config_option(fixed_settings[i].name,
								 fixed_settings[i].value,
								 PGC_SUSET, PGC_S_SESSION, action,
								 true, 0, false);
}

static void
enter(BulkopsSection *s, Oid userid, bool restricted)
{
	GetUserIdAndSecContext(&s->saved_uid, &s->saved_sec);
	if (OidIsValid(userid))
		SetUserIdAndSecContext(userid, s->saved_sec |
							   SECURITY_LOCAL_USERID_CHANGE |
							   (restricted ? SECURITY_RESTRICTED_OPERATION : 0));
	s->nestlevel = NewGUCNestLevel();
	apply_settings(SECTION_SETTINGS, GUC_ACTION_SAVE);
}

/* Become the extension's owner, with the fixed settings. */
void
bulkops_enter_owner(BulkopsSection *s)
{
	enter(s, bulkops_extension_owner(), true);
}

/* Stay the caller, with the fixed settings. */
void
bulkops_enter_safe(BulkopsSection *s)
{
	enter(s, InvalidOid, false);
}

/*
 * Run as role, a user whose code is about to run: its triggers may call
 * anything, so the operation is restricted (no SET ROLE, no temporary
 * objects, no cursors or prepared statements outliving it).
 */
void
bulkops_enter_user(BulkopsSection *s, Oid role)
{
	enter(s, role, true);
}

void
bulkops_leave(BulkopsSection *s)
{
	AtEOXact_GUC(false, s->nestlevel);
	SetUserIdAndSecContext(s->saved_uid, s->saved_sec);
}

/*
 * Leave a user section: also drop the session-level advisory locks its
 * code may have taken, which would otherwise outlive the transaction in
 * the worker's long-lived session.
 */
void
bulkops_leave_user(BulkopsSection *s)
{
	bulkops_leave(s);
	LockReleaseSession(USER_LOCKMETHOD);
}

/*
 * The worker's session settings, once at start.  They have the session's
 * priority, above the database's and the role's, and survive a reload of
 * the configuration file.
 */
void
bulkops_fix_session_settings(void)
{
	apply_settings(lengthof(fixed_settings), GUC_ACTION_SET);

	/*
	 * A receipt or a "may have been applied" mark that a crash could lose
	 * would let a row be sent twice: never commit less durably than the
	 * server's own default, "on".
	 */
	if (strcmp(GetConfigOption("synchronous_commit", false, false), "off") == 0)
		(void) set_config_option("synchronous_commit", "on",
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SET,
								 true, 0, false);
}
