/*-------------------------------------------------------------------------
 *
 * privileges.c
 *	  Who may do what through a target: managing targets, and the
 *	  per-target privileges push, delete and export with their grants.
 *
 * The model follows postgres_fdw's foreign servers.  Superusers and members
 * of bulkops_admin create targets; a target's owner (and superusers) alter,
 * drop and grant it, and hold every privilege on it.  Any other role needs
 * a grant, in bulkops.target_privileges, to the role, to a role whose
 * privileges it has (inheritance, as has_privs_of_role), or to PUBLIC:
 *
 *	 push	 bulk_insert, bulk_update, bulk_upsert (and bulk_overwrite)
 *	 delete	 bulk_delete, bulk_overwrite, Salesforce hard deletes
 *	 export	 bulk_query
 *
 * Every check is made before anything is enqueued.  The grants are read
 * and written through catalog_targets.c.
 * Everything runs inside the caller's transaction and allocates in the
 * current memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

#include "bulkops.h"
#include "catalog.h"

static const struct
{
	const char *name;
	BulkopsPrivilege bit;
}			privilege_names[] = {
	{"push", BULKOPS_PRIV_PUSH},
	{"delete", BULKOPS_PRIV_DELETE},
	{"export", BULKOPS_PRIV_EXPORT},
};

#define ALL_PRIVILEGES (BULKOPS_PRIV_PUSH | BULKOPS_PRIV_DELETE | BULKOPS_PRIV_EXPORT)

/* ---- managing targets ---- */

bool
bulkops_is_admin(void)
{
	Oid			admin = get_role_oid("bulkops_admin", true);

	return superuser() ||
		(OidIsValid(admin) && has_privs_of_role(GetUserId(), admin));
}

void
bulkops_require_admin(const char *action)
{
	if (!bulkops_is_admin())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s", action),
				 errhint("Only superusers and members of \"bulkops_admin\" manage targets.")));
}

static bool
owns(Oid role, Oid owner)
{
	return superuser_arg(role) || has_privs_of_role(role, owner);
}

/* Refuse unless the current user owns target (or is a superuser). */
void
bulkops_require_target_owner(const char *target, Oid owner, const char *action)
{
	if (!owns(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of target \"%s\"", target),
				 errdetail("Only the target's owner and superusers may %s it.",
						   action)));
}

/* ---- privileges ---- */

static const char *
privilege_name(BulkopsPrivilege bit)
{
	int			i;

	for (i = 0; i < lengthof(privilege_names); i++)
		if (privilege_names[i].bit == bit)
			return privilege_names[i].name;
	return "?";
}

/* "push, delete" (or "all") as a bit mask. */
static int
parse_privileges(const char *text)
{
	char	   *copy = pstrdup(text);
	List	   *words;
	ListCell   *lc;
	int			mask = 0;

	if (!SplitIdentifierString(copy, ',', &words) || words == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid target privilege list \"%s\"", text),
				 errhint("List push, delete and export separated by commas, or say all.")));
	foreach(lc, words)
	{
		const char *w = lfirst(lc);
		int			i;
		int			bit = 0;

		if (pg_strcasecmp(w, "all") == 0)
			bit = ALL_PRIVILEGES;
		for (i = 0; i < lengthof(privilege_names); i++)
			if (pg_strcasecmp(w, privilege_names[i].name) == 0)
				bit = privilege_names[i].bit;
		if (bit == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized target privilege \"%s\"", w),
					 errhint("Target privileges are push, delete and export (or all).")));
		mask |= bit;
	}
	return mask;
}

/* The owner of target. */
static Oid
target_owner(const char *target)
{
	BulkopsTargetRow t;

	bulkops_require_current_schema();
	if (!bulkops_catalog_read_target(target, false, &t))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("target \"%s\" does not exist", target)));
	return t.owner;
}

/* The privileges role holds on target, whose owner is owner. */
static int
privileges_of(Oid role, const char *target, Oid owner)
{
	ListCell   *lc;
	int			mask = 0;

	if (owns(role, owner))
		return ALL_PRIVILEGES;
	foreach(lc, bulkops_catalog_granted(target, role))
	{
		int			j;

		for (j = 0; j < lengthof(privilege_names); j++)
			if (strcmp(lfirst(lc), privilege_names[j].name) == 0)
				mask |= privilege_names[j].bit;
	}
	return mask;
}

static int
op_privileges(BulkopsOp op)
{
	switch (op)
	{
		case BULKOPS_OP_INSERT:
		case BULKOPS_OP_UPDATE:
		case BULKOPS_OP_UPSERT:
			return BULKOPS_PRIV_PUSH;
		case BULKOPS_OP_DELETE:
			return BULKOPS_PRIV_DELETE;
		case BULKOPS_OP_OVERWRITE:
			/* replacing everything remotely is both */
			return BULKOPS_PRIV_PUSH | BULKOPS_PRIV_DELETE;
		case BULKOPS_OP_QUERY:
			return BULKOPS_PRIV_EXPORT;
		case BULKOPS_NUM_OPS:
			break;
	}
	elog(ERROR, "unexpected operation %d", (int) op);
	return 0;					/* keep compiler quiet */
}

/*
 * Refuse op through target unless the current user holds what it needs.
 * Called before the source is read and before anything is written.
 */
void
bulkops_require_op_privilege(const char *target, Oid owner, BulkopsOp op)
{
	int			needed = op_privileges(op);
	int			missing = needed & ~privileges_of(GetUserId(), target, owner);
	BulkopsPrivilege bit;

	if (missing == 0)
		return;
	bit = (missing & BULKOPS_PRIV_DELETE) ? BULKOPS_PRIV_DELETE
		: (missing & BULKOPS_PRIV_PUSH) ? BULKOPS_PRIV_PUSH : BULKOPS_PRIV_EXPORT;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s through target \"%s\"",
					privilege_name(bit), target),
			 errdetail("bulk_%s needs privilege \"%s\" on the target.",
					   bulkops_op_name(op), privilege_name(bit)),
			 errhint("The target's owner grants it with bulkops.grant_target('%s', '%s', '%s').",
					 target, GetUserNameFromId(GetUserId(), false),
					 privilege_name(bit))));
}

/* ---- grants ---- */

/*
 * Grant (or revoke) privileges, a list such as "push, delete" or "all", on
 * target to grantee (InvalidOid: PUBLIC).  Only the target's owner may.
 */
void
bulkops_change_grants(const char *target, Oid grantee, const char *privileges,
					  bool grant)
{
	int			mask = parse_privileges(privileges);
	int			i;

	bulkops_require_target_owner(target, target_owner(target),
								 grant ? "grant privileges on" : "revoke privileges on");
	for (i = 0; i < lengthof(privilege_names); i++)
		if (mask & privilege_names[i].bit)
			bulkops_catalog_grant(target, grantee, privilege_names[i].name,
								  GetUserId(), grant);
}

/* Does role hold any of privileges (a list, as for grants) on target? */
bool
bulkops_has_target_privilege(Oid role, const char *target,
							 const char *privileges)
{
	return (privileges_of(role, target, target_owner(target)) &
			parse_privileges(privileges)) != 0;
}
