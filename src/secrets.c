/*-------------------------------------------------------------------------
 *
 * secrets.c
 *	  A credential's secrets: where each comes from, who may use which
 *	  source, and reading them when a request needs them.
 *
 * A secret member of auth is a string, {"file": "/absolute/path"} (needs
 * the privileges of pg_read_server_files) or {"env": "NAME"} (needs a
 * superuser).  The rules are checked against the current user when auth is
 * set (create_target, alter_target) and against the role that set it
 * (targets.auth_set_by) each time the worker takes a batch, so they hold
 * however the value got into the table.  Files and variables are read at
 * request time, so a rotated secret needs no ALTER.  No message here
 * contains a secret's value, its file's path or its variable's name: only
 * the target and the member (the log gets the rest, as errdetail_log).
 * Allocations go to CurrentMemoryContext.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/jsonb.h"

#include "bulkops.h"

/* Is v a secret source object, {"file": ...} or {"env": ...}? */
static const char *
secret_source(JsonbValue *v, char **arg)
{
	Jsonb	   *obj;
	char	   *s;

	if (v->type != jbvBinary)
		return NULL;
	obj = JsonbValueToJsonb(v);
	if ((s = bulkops_opt_string(obj, "file", NULL)) != NULL)
	{
		*arg = s;
		return "file";
	}
	if ((s = bulkops_opt_string(obj, "env", NULL)) != NULL)
	{
		*arg = s;
		return "env";
	}
	return NULL;
}

/*
 * Check one secret member of auth: present, and a string or a source the
 * current user may read.
 */
void
bulkops_validate_secret(Jsonb *auth, const char *type, const char *member)
{
	JsonbValue *v = bulkops_jsonb_get(auth, member);
	const char *src;
	char	   *arg;

	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth type \"%s\" needs a \"%s\" member",
						type, member)));
	if (v->type == jbvString)
		return;
	src = secret_source(v, &arg);
	if (src == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth member \"%s\" must be a string, {\"file\": ...} or {\"env\": ...}",
						member)));
	if (strcmp(src, "file") == 0)
		bulkops_check_secret_file(arg);
	else if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read secrets from the server's environment"),
				 errhint("Only superusers may use {\"env\": ...}.")));
}

/*
 * May the current user make the worker read path?  Reading a server file
 * and sending it (or what it signs) to a URL of one's choosing is what
 * pg_read_server_files guards.
 */
void
bulkops_check_secret_file(const char *path)
{
	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read secrets from server files"),
				 errhint("Only roles with privileges of the \"pg_read_server_files\" role may use {\"file\": ...}.")));
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("secret file path must be absolute")));
}

/*
 * Where a stored auth's secrets come from, checked against the role that
 * set it (targets.auth_set_by), at every claim: {"env": ...} needs a
 * superuser, {"file": ...} and "key_file" the privileges of
 * pg_read_server_files, as when they are set.  However the value got into
 * the table (a restore, a role that lost its rights since), the worker
 * reads no secret the setter could not have set.  Returns NULL when auth
 * passes, else why not, naming neither a path nor a variable.
 */
char *
bulkops_auth_refusal(Jsonb *auth, const char *target, Oid set_by)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		env = false;
	bool		file = false;
	const char *who;

	if (auth == NULL || !JB_ROOT_IS_OBJECT(auth))
		return NULL;
	it = JsonbIteratorInit(&auth->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *arg;
		const char *src;
		bool		key_file;

		if (tok != WJB_KEY)
			continue;
		key_file = (v.val.string.len == 8 &&
					strncmp(v.val.string.val, "key_file", 8) == 0);
		tok = JsonbIteratorNext(&it, &v, true);
		if (key_file)
			file = true;
		else if ((src = secret_source(&v, &arg)) != NULL)
		{
			if (strcmp(src, "env") == 0)
				env = true;
			else
				file = true;
		}
	}
	if (!env && !file)
		return NULL;
	who = OidIsValid(set_by) ? GetUserNameFromId(set_by, true) : NULL;
	if (env && !(OidIsValid(set_by) && superuser_arg(set_by)))
		return psprintf("target \"%s\" may not read secrets from the server's environment: "
						"its auth was set by %s%s%s, not by a superuser; a superuser must set it again with bulkops.alter_target()",
						target, who ? "role \"" : "an unknown role", who ? who : "",
						who ? "\"" : "");
	if (file && !(OidIsValid(set_by) &&
				  has_privs_of_role(set_by, ROLE_PG_READ_SERVER_FILES)))
		return psprintf("target \"%s\" may not read secrets from server files: "
						"its auth was set by %s%s%s, without the privileges of pg_read_server_files; such a role must set it again with bulkops.alter_target()",
						target, who ? "role \"" : "an unknown role", who ? who : "",
						who ? "\"" : "");
	return NULL;
}

/*
 * Messages here reach the job's last_error and its receipts, which the
 * job's creator reads: they name the target and the auth member, never the
 * file's path or the variable's name (those go to the server log only).
 */
char *
bulkops_read_secret_file(const char *path, const char *target)
{
	FILE	   *f;
	StringInfoData buf;
	char		chunk[1024];
	size_t		n;

	f = AllocateFile(path, "r");
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open a secret file of target \"%s\": %m",
						target),
				 errdetail_log("The file is \"%s\".", path)));
	initStringInfo(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		appendBinaryStringInfo(&buf, chunk, n);
	FreeFile(f);
	while (buf.len > 0 && (buf.data[buf.len - 1] == '\n' ||
						   buf.data[buf.len - 1] == '\r'))
		buf.data[--buf.len] = '\0';
	return buf.data;
}

/*
 * The value of one secret member, from wherever it lives.  Unless
 * multiline (a PEM key), a line break is refused.
 */
char *
bulkops_resolve_secret(Jsonb *auth, const char *member, const char *target,
					   bool multiline)
{
	JsonbValue *v = bulkops_jsonb_get(auth, member);
	const char *src;
	char	   *arg = NULL;
	char	   *val;

	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth of target \"%s\" has no \"%s\" member", target,
						member)));
	if (v->type == jbvString)
		val = pnstrdup(v->val.string.val, v->val.string.len);
	else if ((src = secret_source(v, &arg)) != NULL && strcmp(src, "file") == 0)
		val = bulkops_read_secret_file(arg, target);
	else if (src != NULL)
	{
		const char *e = getenv(arg);

		if (e == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("the environment variable of auth member \"%s\" of target \"%s\" is not set",
							member, target),
					 errdetail_log("The variable is \"%s\".", arg)));
		val = pstrdup(e);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth member \"%s\" of target \"%s\" is malformed",
						member, target)));

	/* a CR or LF would let a secret inject headers */
	if (!multiline && strpbrk(val, "\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth member \"%s\" of target \"%s\" contains a line break",
						member, target)));
	return val;
}
