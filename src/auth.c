/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  A target's credentials: validation when a target is written, and the
 *	  request headers that carry them when the worker sends.
 *
 * Kinds: bearer {"token"}, basic {"username", "password"}, header {"name",
 * "value"}, and the OAuth kinds, whose token requests live in oauth.c.
 * Each secret member is checked and read by secrets.c.  No message here
 * ever contains a secret's value: only which member was wrong.
 * Allocations go to CurrentMemoryContext.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "miscadmin.h"
#include "utils/jsonb.h"

#include "bulkops.h"
#include "oauth.h"

typedef struct AuthKind
{
	const char *type;
	const char *members[4];		/* required secret-or-string members */
} AuthKind;

static const AuthKind auth_kinds[] = {
	{"bearer", {"token"}},
	{"basic", {"username", "password"}},
	{"header", {"name", "value"}},
	{"oauth2_client_credentials", {"client_id", "client_secret"}},
	{"oauth2_jwt", {"client_id", "username"}},
	{"oauth2_refresh_token", {"client_id", "refresh_token"}},
	{"oauth2_password", {"client_id", "client_secret", "username", "password"}},
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
				 errhint("Use one of: bearer, basic, header, oauth2_client_credentials, oauth2_jwt, oauth2_refresh_token, oauth2_password.")));
	for (k = auth_kinds; k->type; k++)
		if (strcmp(k->type, type) == 0)
			return k;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized auth type \"%s\"", type),
			 errhint("Use one of: bearer, basic, header, oauth2_client_credentials, oauth2_jwt, oauth2_refresh_token, oauth2_password.")));
	return NULL;				/* keep compiler quiet */
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
