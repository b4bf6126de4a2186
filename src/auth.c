/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  A target's credentials: validation when a target is written, and the
 *	  request headers that carry them when the worker sends.
 *
 * Kinds: bearer {"token"}, basic {"username", "password"}, header {"name",
 * "value"}, and the OAuth kinds, whose token requests live in oauth.c.
 * Each secret is a string or {"file": "/path"} or {"env": "NAME"}, read by
 * the worker at request time so a rotated secret needs no ALTER.  No
 * message here ever contains a secret's value: only which member or source
 * was wrong.  Allocations go to CurrentMemoryContext.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "catalog/pg_authid.h"
#include "common/base64.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/jsonb.h"

#include "bulkops.h"
#include "oauth.h"

typedef struct AuthKind
{
	const char *type;
	const char *members[3];		/* required secret-or-string members */
} AuthKind;

static const AuthKind auth_kinds[] = {
	{"bearer", {"token"}},
	{"basic", {"username", "password"}},
	{"header", {"name", "value"}},
	{"oauth2_client_credentials", {"client_id", "client_secret"}},
	{"oauth2_jwt", {"client_id", "username"}},
	{NULL}
};

static const AuthKind *
find_kind(Jsonb *auth)
{
	char	   *type = bulkops_opt_string(auth, "type", NULL);
	const AuthKind *k;

	if (type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth must have a \"type\" member"),
				 errhint("Use one of: bearer, basic, header, oauth2_client_credentials, oauth2_jwt.")));
	for (k = auth_kinds; k->type; k++)
		if (strcmp(k->type, type) == 0)
			return k;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized auth type \"%s\"", type),
			 errhint("Use one of: bearer, basic, header, oauth2_client_credentials, oauth2_jwt.")));
	return NULL;				/* keep compiler quiet */
}

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
 * Check auth as create_target and alter_target receive it, for a target of
 * dialect d at url.
 */
void
bulkops_validate_auth(Jsonb *auth, const BulkopsDialect *d, const char *url)
{
	const AuthKind *kind;
	int			i;

	if (auth == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(auth))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth must be a JSON object")));
	kind = find_kind(auth);
	for (i = 0; i < lengthof(kind->members) && kind->members[i]; i++)
		bulkops_validate_secret(auth, kind->type, kind->members[i]);
	if (bulkops_auth_is_oauth(auth))
		bulkops_oauth_validate(auth, kind->type, d, url);
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

static BulkopsHeader *
make_header(const char *name, const char *value)
{
	BulkopsHeader *h = palloc(sizeof(BulkopsHeader));

	h->name = name;
	h->value = value;
	return h;
}

/*
 * The headers that authenticate a request to target.  Errors (a missing
 * file, an unset variable) are raised here; the worker turns them into the
 * batch's failure.
 */
List *
bulkops_auth_headers(Jsonb *auth, const char *target)
{
	const AuthKind *kind;

	/* OAuth tokens come from the worker's cache, not from auth itself */
	if (auth == NULL || bulkops_auth_is_oauth(auth))
		return NIL;
	kind = find_kind(auth);
	if (strcmp(kind->type, "bearer") == 0)
		return list_make1(make_header("Authorization",
									  psprintf("Bearer %s",
											   bulkops_resolve_secret(auth, "token", target, false))));
	if (strcmp(kind->type, "basic") == 0)
	{
		char	   *pair = psprintf("%s:%s",
									bulkops_resolve_secret(auth, "username", target, false),
									bulkops_resolve_secret(auth, "password", target, false));
		int			len = strlen(pair);
		char	   *enc = palloc(pg_b64_enc_len(len) + 1);
		int			n = pg_b64_encode(pair, len, enc, pg_b64_enc_len(len));

		if (n < 0)
			elog(ERROR, "could not encode basic credentials");
		enc[n] = '\0';
		return list_make1(make_header("Authorization",
									  psprintf("Basic %s", enc)));
	}
	/* header */
	return list_make1(make_header(bulkops_resolve_secret(auth, "name", target, false),
								  bulkops_resolve_secret(auth, "value", target, false)));
}
