/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL-callable functions: targets, bulk_*, wait and cancel.
 *
 * They run in the caller's backend and transaction, and check their
 * arguments; what each does lives in the file that owns it.  Reads that a user may
 * make run as the caller, so row-level security decides what they see;
 * writes to bulkops' tables run as the extension's owner after the
 * caller's right to make them was checked (privileges.c), so no role, not
 * even bulkops_admin, needs write access to those tables and nobody can
 * forge a target, a job or a receipt by hand.  Every statement of ours
 * runs in a section with a fixed search_path (owner.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "bulkops.h"
#include "catalog.h"
#include "monitor.h"

static char *
text_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static char *
normalize_url(const char *url)
{
	char	   *u = pstrdup(url);
	int			len = strlen(u);

	while (len > 0 && u[len - 1] == '/')
		u[--len] = '\0';
	return u;
}

/* ---- targets ---- */

static void
check_target_name(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len > 63 ||
		strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != len)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid target name \"%s\"", name),
				 errdetail("A target name has 1 to 63 letters, digits, \"_\", \".\" or \"-\".")));
}

/*
 * A target URL is a base that paths are appended to (no query, fragment,
 * whitespace or control character), and carries no credentials: they
 * belong in auth, where they are hidden and checked.
 */
static void
check_target_url(const char *url)
{
	const char *authority = strstr(url, "://");
	const char *at;

	bulkops_check_base_url(url);
	if (authority && (at = strchr(authority + 3, '@')) != NULL &&
		memchr(authority + 3, '/', at - (authority + 3)) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("target URL must not contain a user name or password"),
				 errhint("Give credentials in auth, e.g. '{\"type\": \"basic\", \"username\": ..., \"password\": ...}'.")));
}

static void
validate_target(const BulkopsDialect *d, const char *url, const char *resource,
				Jsonb *auth, Jsonb *options)
{
	bulkops_check_url(url, ERROR, NULL);
	check_target_url(url);
	bulkops_validate_auth(auth, d, url);
	bulkops_validate_options(options, d, "target");
	d->validate_target(url, resource, options);
}

PG_FUNCTION_INFO_V1(bulkops_create_target);
Datum
bulkops_create_target(PG_FUNCTION_ARGS)
{
	char	   *name = text_arg(fcinfo, 0, "name");
	char	   *dialect = text_arg(fcinfo, 1, "dialect");
	char	   *url = normalize_url(text_arg(fcinfo, 2, "url"));
	char	   *resource = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	Jsonb	   *auth = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	Jsonb	   *options = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);
	const BulkopsDialect *d;

	bulkops_require_current_schema();
	bulkops_require_admin("create targets");
	check_target_name(name);
	d = bulkops_find_dialect(dialect, false);
	validate_target(d, url, resource, auth, options);

	if (bulkops_catalog_target_exists(name))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("target \"%s\" already exists", name),
				 errhint("Use bulkops.alter_target() to change it.")));
	/* the secrets' rules are checked again, against the setter, at use */
	bulkops_catalog_insert_target(name, dialect, url, resource, auth,
								  options ? options
								  : DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
																	   CStringGetDatum("{}"))),
								  GetUserId());
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(bulkops_alter_target);
Datum
bulkops_alter_target(PG_FUNCTION_ARGS)
{
	char	   *name = text_arg(fcinfo, 0, "name");
	BulkopsTargetRow t;
	char	   *url;
	char	   *resource;
	Jsonb	   *auth;
	Jsonb	   *options;

	bulkops_require_current_schema();
	bulkops_require_admin("alter targets");
	if (!bulkops_catalog_read_target(name, true, &t))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("target \"%s\" does not exist", name)));
	bulkops_require_target_owner(name, t.owner, "alter");
	url = PG_ARGISNULL(1) ? t.url : normalize_url(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	resource = PG_ARGISNULL(2) ? t.resource : text_to_cstring(PG_GETARG_TEXT_PP(2));
	auth = PG_ARGISNULL(3) ? t.auth : PG_GETARG_JSONB_P(3);
	options = PG_ARGISNULL(4) ? t.options : PG_GETARG_JSONB_P(4);

	/*
	 * Only a new auth is checked against the current user: a stored one keeps
	 * the rights of whoever set it (auth_set_by), which the worker checks
	 * again at every claim.
	 */
	validate_target(bulkops_find_dialect(t.dialect, false), url, resource,
					PG_ARGISNULL(3) ? NULL : auth, options);
	bulkops_catalog_update_target(name, url, resource, auth, options,
								  PG_ARGISNULL(3) ? InvalidOid : GetUserId());
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(bulkops_drop_target);
Datum
bulkops_drop_target(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	BulkopsTargetRow t;

	bulkops_require_current_schema();
	bulkops_require_admin("drop targets");
	if (!bulkops_catalog_read_target(name, true, &t))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("target \"%s\" does not exist", name)));
	bulkops_require_target_owner(name, t.owner, "drop");
	if (bulkops_catalog_target_busy(name))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("target \"%s\" has unfinished jobs", name),
				 errhint("Wait for them or cancel them with bulkops.cancel() first.")));
	bulkops_catalog_delete_target(name);
	PG_RETURN_VOID();
}

/* ---- privileges ---- */

PG_FUNCTION_INFO_V1(bulkops_is_admin_sql);
Datum
bulkops_is_admin_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(bulkops_is_admin());
}

/* A grantee as given: a role's name, or PUBLIC (InvalidOid). */
static Oid
grantee_arg(FunctionCallInfo fcinfo, int n)
{
	const char *name;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("grantee must not be null")));
	name = NameStr(*PG_GETARG_NAME(n));
	if (pg_strcasecmp(name, "public") == 0)
		return InvalidOid;
	return get_role_oid(name, false);
}

PG_FUNCTION_INFO_V1(bulkops_grant_target);
Datum
bulkops_grant_target(PG_FUNCTION_ARGS)
{
	char	   *target = text_arg(fcinfo, 0, "target");
	Oid			grantee = grantee_arg(fcinfo, 1);

	bulkops_change_grants(target, grantee, text_arg(fcinfo, 2, "privileges"),
						  true);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(bulkops_revoke_target);
Datum
bulkops_revoke_target(PG_FUNCTION_ARGS)
{
	char	   *target = text_arg(fcinfo, 0, "target");
	Oid			grantee = grantee_arg(fcinfo, 1);

	bulkops_change_grants(target, grantee, text_arg(fcinfo, 2, "privileges"),
						  false);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(bulkops_has_target_privilege_sql);
Datum
bulkops_has_target_privilege_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(bulkops_has_target_privilege(GetUserId(),
												text_to_cstring(PG_GETARG_TEXT_PP(0)),
												text_to_cstring(PG_GETARG_TEXT_PP(1))));
}

PG_FUNCTION_INFO_V1(bulkops_has_target_privilege_role);
Datum
bulkops_has_target_privilege_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(bulkops_has_target_privilege(get_role_oid(NameStr(*PG_GETARG_NAME(0)), false),
												text_to_cstring(PG_GETARG_TEXT_PP(1)),
												text_to_cstring(PG_GETARG_TEXT_PP(2))));
}

/* ---- pushes ---- */

static Datum
bulk_op(FunctionCallInfo fcinfo, BulkopsOp op)
{
	char	   *target = text_arg(fcinfo, 0, "target");
	text	   *source;
	char	   *key = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	Jsonb	   *options = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source must not be null")));
	source = PG_GETARG_TEXT_PP(1);
	PG_RETURN_INT64(bulkops_enqueue(target, op, source, key, options));
}

PG_FUNCTION_INFO_V1(bulkops_bulk_insert);
Datum
bulkops_bulk_insert(PG_FUNCTION_ARGS)
{
	return bulk_op(fcinfo, BULKOPS_OP_INSERT);
}

PG_FUNCTION_INFO_V1(bulkops_bulk_update);
Datum
bulkops_bulk_update(PG_FUNCTION_ARGS)
{
	return bulk_op(fcinfo, BULKOPS_OP_UPDATE);
}

PG_FUNCTION_INFO_V1(bulkops_bulk_upsert);
Datum
bulkops_bulk_upsert(PG_FUNCTION_ARGS)
{
	return bulk_op(fcinfo, BULKOPS_OP_UPSERT);
}

PG_FUNCTION_INFO_V1(bulkops_bulk_delete);
Datum
bulkops_bulk_delete(PG_FUNCTION_ARGS)
{
	return bulk_op(fcinfo, BULKOPS_OP_DELETE);
}

PG_FUNCTION_INFO_V1(bulkops_bulk_overwrite);
Datum
bulkops_bulk_overwrite(PG_FUNCTION_ARGS)
{
	return bulk_op(fcinfo, BULKOPS_OP_OVERWRITE);
}

PG_FUNCTION_INFO_V1(bulkops_bulk_query);
Datum
bulkops_bulk_query(PG_FUNCTION_ARGS)
{
	Jsonb	   *options;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("target, query and into must not be null")));
	options = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	PG_RETURN_INT64(bulkops_enqueue_query(text_to_cstring(PG_GETARG_TEXT_PP(0)),
										  text_to_cstring(PG_GETARG_TEXT_PP(1)),
										  text_to_cstring(PG_GETARG_TEXT_PP(2)),
										  options));
}

/* ---- wait and cancel ---- */

static bool
state_is_final(const char *state)
{
	return strcmp(state, "queued") != 0 && strcmp(state, "running") != 0;
}

PG_FUNCTION_INFO_V1(bulkops_wait);
Datum
bulkops_wait(PG_FUNCTION_ARGS)
{
	int64		job = PG_GETARG_INT64(0);
	Interval   *timeout = PG_ARGISNULL(1) ? NULL : PG_GETARG_INTERVAL_P(1);
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = 0;
	TimestampTz last_notice = start;
	BulkopsJobStatus js;
	char	   *result;
	MemoryContext fcxt = CurrentMemoryContext;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("bulkops.wait() cannot run in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errdetail("Such a transaction would never see the job advance.")));
	if (timeout)
		deadline = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														   TimestampTzGetDatum(start),
														   PointerGetDatum(timeout)));

	for (;;)
	{
		js = bulkops_catalog_read_job(job);
		if (!js.found)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("job " INT64_FORMAT " does not exist", job)));
		if (state_is_final(js.state))
			break;
		if (js.this_xact)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("job " INT64_FORMAT " was created by this transaction", job),
					 errdetail("The worker starts a job only once the transaction that created it commits."),
					 errhint("Commit, then call bulkops.wait().")));
		if (deadline && GetCurrentTimestamp() >= deadline)
		{
			ereport(NOTICE,
					(errmsg("job " INT64_FORMAT " is still %s after the wait's timeout",
							job, js.state)));
			break;
		}
		if (TimestampDifferenceExceeds(last_notice, GetCurrentTimestamp(), 5000))
		{
			bulkops_monitor_progress_notice(job);
			last_notice = GetCurrentTimestamp();
		}
		pfree(js.state);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	/* what it came to, in one line */
	if (state_is_final(js.state))
		bulkops_monitor_summary_notice(job);
	result = MemoryContextStrdup(fcxt, js.state);
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

PG_FUNCTION_INFO_V1(bulkops_cancel);
Datum
bulkops_cancel(PG_FUNCTION_ARGS)
{
	int64		job = PG_GETARG_INT64(0);
	BulkopsJobStatus js;
	bool		stopped;

	bulkops_require_current_schema();

	/*
	 * whom the caller may see, it may cancel: the job's creator, the target's
	 * owner
	 */
	js = bulkops_catalog_read_job(job);
	if (!js.found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job " INT64_FORMAT " does not exist", job)));
	if (state_is_final(js.state))
		PG_RETURN_BOOL(false);
	stopped = bulkops_catalog_cancel_job(job);
	if (stopped)
		bulkops_wake_worker_at_commit();
	PG_RETURN_BOOL(stopped);
}
