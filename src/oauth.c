/*-------------------------------------------------------------------------
 *
 * oauth.c
 *	  OAuth 2.0 grants for targets: the auth kinds oauth2_client_credentials,
 *	  oauth2_jwt (RFC 7523 JWT bearer grant, signed RS256),
 *	  oauth2_refresh_token (a refresh token obtained once by a person, RFC
 *	  6749 section 6) and oauth2_password (the resource owner's password,
 *	  RFC 6749 section 4.3), checked when a target is written, the token
 *	  request they make and the answer it gets.  Keeping tokens is
 *	  oauth_cache.c's.
 *
 * A refresh token is used as it is stored: an answer that carries a new
 * one (a provider that rotates them) is not kept, since the worker never
 * writes a target's auth; rotation must be off for such a client.
 *
 * Nothing here keeps state or opens a transaction; allocations go to
 * CurrentMemoryContext.  No message contains a secret, a key or a token:
 * only which member or source was wrong, and the token endpoint's own
 * error code and description.  The private key and the client secret are
 * wiped from memory once used.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/base64.h"

#include "bulkops.h"
#include "json_out.h"
#include "oauth.h"

/* the JWT's life: Salesforce allows at most three minutes */
#define JWT_LIFETIME_SECS	180

typedef struct OAuthKind
{
	const char *type;
	const char *members[9];		/* every member it accepts */
} OAuthKind;

static const OAuthKind oauth_kinds[] = {
	{
		"oauth2_client_credentials",
		{"type", "client_id", "client_secret", "token_url", "scope"}
	},
	{
		"oauth2_jwt",
		{"type", "client_id", "username", "key", "key_file", "token_url",
		"audience", "scope"}
	},
	{
		"oauth2_refresh_token",
		{"type", "client_id", "client_secret", "refresh_token", "token_url",
		"scope"}
	},
	{
		"oauth2_password",
		{"type", "client_id", "client_secret", "username", "password",
		"token_url", "scope"}
	},
	{NULL}
};

/* the JOSE header of every assertion */
static const char jwt_header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";

/* ---- validation (at create_target and alter_target) ---- */

static const OAuthKind *
find_oauth_kind(Jsonb *auth)
{
	JsonbValue *v;
	const OAuthKind *k;

	if (auth == NULL || !JB_ROOT_IS_OBJECT(auth))
		return NULL;
	v = bulkops_jsonb_get(auth, "type");
	if (v == NULL || v->type != jbvString)
		return NULL;
	for (k = oauth_kinds; k->type; k++)
		if (strlen(k->type) == v->val.string.len &&
			memcmp(k->type, v->val.string.val, v->val.string.len) == 0)
			return k;
	return NULL;
}

bool
bulkops_auth_is_oauth(Jsonb *auth)
{
	return find_oauth_kind(auth) != NULL;
}

/* A misspelt member would otherwise be silently ignored. */
static void
check_members(Jsonb *auth, const OAuthKind *kind)
{
	JsonbIterator *it = JsonbIteratorInit(&auth->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *name;
		StringInfoData known;
		int			i;
		bool		ok = false;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		initStringInfo(&known);
		for (i = 0; i < lengthof(kind->members) && kind->members[i]; i++)
		{
			if (strcmp(kind->members[i], name) == 0)
				ok = true;
			appendStringInfo(&known, "%s%s", i ? ", " : "", kind->members[i]);
		}
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized member \"%s\" in auth of type \"%s\"",
							name, kind->type),
					 errhint("Auth of type \"%s\" takes: %s.", kind->type,
							 known.data)));
	}
}

/* A plain string member, or NULL when absent. */
static char *
string_member(Jsonb *auth, const char *member)
{
	JsonbValue *v = bulkops_jsonb_get(auth, member);

	if (v == NULL)
		return NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth member \"%s\" must be a string", member)));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* The token endpoint: "token_url", else the dialect's path under url. */
char *
bulkops_oauth_token_url(Jsonb *auth, const BulkopsDialect *d, const char *url)
{
	char	   *token_url = string_member(auth, "token_url");

	if (token_url != NULL)
		return token_url;
	if (d != NULL && d->token_path != NULL)
		return psprintf("%s%s", url, d->token_path);
	return NULL;
}

static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

/*
 * Parse pem as an RSA private key.  On failure returns NULL with *why set;
 * never a piece of the key in it.
 */
static EVP_PKEY *
load_rsa_key(const char *pem, const char **why)
{
	BIO		   *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY   *pkey;

	if (bio == NULL)
		elog(ERROR, "out of memory");
	/* the callback keeps OpenSSL from asking a terminal for a passphrase */
	pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (pkey == NULL)
		*why = "it is not a PEM-encoded private key without a passphrase";
	else if (EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA)
	{
		EVP_PKEY_free(pkey);
		pkey = NULL;
		*why = "RS256 needs an RSA key";
	}
	return pkey;
}

void
bulkops_oauth_validate(Jsonb *auth, const char *type, const BulkopsDialect *d,
					   const char *url)
{
	const OAuthKind *kind = find_oauth_kind(auth);
	char	   *token_url;

	check_members(auth, kind);
	(void) string_member(auth, "scope");
	token_url = bulkops_oauth_token_url(auth, d, url);
	if (token_url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth type \"%s\" needs a \"token_url\" member", type),
				 errdetail("Dialect \"%s\" has no default token endpoint.",
						   d->name)));
	bulkops_check_url(token_url, ERROR, NULL);

	/* optional for a refresh token: a client may be set up without one */
	if (strcmp(type, "oauth2_refresh_token") == 0 &&
		bulkops_jsonb_get(auth, "client_secret") != NULL)
		bulkops_validate_secret(auth, type, "client_secret");

	if (strcmp(type, "oauth2_jwt") == 0)
	{
		JsonbValue *key = bulkops_jsonb_get(auth, "key");
		char	   *key_file = string_member(auth, "key_file");

		(void) string_member(auth, "audience");
		if (key != NULL && key_file != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("auth type \"%s\" takes \"key\" or \"key_file\", not both",
							type)));
		if (key == NULL && key_file == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("auth type \"%s\" needs a \"key\" or \"key_file\" member",
							type),
					 errhint("Give the RSA private key that signs the JWT, in PEM.")));
		if (key_file != NULL)
			bulkops_check_secret_file(key_file);
		else
		{
			bulkops_validate_secret(auth, type, "key");
			/* an inline key can be checked now rather than at the first job */
			if (key->type == jbvString)
			{
				char	   *pem = pnstrdup(key->val.string.val, key->val.string.len);
				const char *why = NULL;
				EVP_PKEY   *pkey = load_rsa_key(pem, &why);

				explicit_bzero(pem, strlen(pem));
				if (pkey == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("auth member \"key\" is not a usable private key"),
							 errdetail("%s.", why)));
				EVP_PKEY_free(pkey);
			}
		}
	}
}

/* ---- the token request ---- */

/* application/x-www-form-urlencoded: every byte but the unreserved ones */
static void
append_form_param(StringInfo body, const char *name, const char *value)
{
	const unsigned char *p;

	appendStringInfo(body, "%s%s=", body->len > 0 ? "&" : "", name);
	for (p = (const unsigned char *) value; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
			*p == '_' || *p == '~')
			appendStringInfoChar(body, (char) *p);
		else
			appendStringInfo(body, "%%%02X", *p);
	}
}

static char *
base64url(const unsigned char *data, int len)
{
	int			enclen = pg_b64_enc_len(len);
	char	   *out = palloc(enclen + 1);
	int			n = pg_b64_encode((const char *) data, len, out, enclen);
	int			i;

	if (n < 0)
		elog(ERROR, "could not encode base64");
	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (i = 0; i < n; i++)
	{
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	return out;
}

/* The RS256 signature of input, base64url-encoded. */
static char *
sign_rs256(char *pem, const char *input, const char *target)
{
	const char *why = NULL;
	EVP_PKEY   *pkey = load_rsa_key(pem, &why);
	EVP_MD_CTX *md;
	unsigned char *sig;
	size_t		siglen = 0;
	bool		ok;

	explicit_bzero(pem, strlen(pem));
	if (pkey == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the private key of target \"%s\" is not usable: %s",
						target, why)));
	md = EVP_MD_CTX_new();
	ok = md != NULL &&
		EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
		EVP_DigestSign(md, NULL, &siglen, (const unsigned char *) input,
					   strlen(input)) == 1;
	sig = ok ? palloc(siglen) : NULL;
	ok = ok && EVP_DigestSign(md, sig, &siglen, (const unsigned char *) input,
							  strlen(input)) == 1;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not sign the OAuth assertion of target \"%s\"",
						target)));
	return base64url(sig, (int) siglen);
}

/* "scheme://host[:port]" of url, the usual audience of an assertion */
static char *
url_origin(const char *url)
{
	const char *p = strstr(url, "://");
	const char *host;
	const char *end;
	const char *at;

	if (p == NULL)
		return pstrdup(url);
	host = p + 3;
	end = host + strcspn(host, "/?#");
	at = memchr(host, '@', end - host);
	if (at != NULL)
		host = at + 1;
	return psprintf("%.*s%.*s", (int) (p + 3 - url), url, (int) (end - host), host);
}

static char *
make_jwt(Jsonb *auth, const char *token_url, const char *target)
{
	StringInfoData claims;
	StringInfoData jwt;
	char	   *client_id = bulkops_resolve_secret(auth, "client_id", target, false);
	char	   *username = bulkops_resolve_secret(auth, "username", target, false);
	char	   *audience = string_member(auth, "audience");
	char	   *key_file = string_member(auth, "key_file");
	char	   *pem;

	if (audience == NULL)
		audience = url_origin(token_url);
	initStringInfo(&claims);
	appendStringInfoString(&claims, "{\"iss\":");
	bulkops_json_string(&claims, client_id, strlen(client_id));
	appendStringInfoString(&claims, ",\"sub\":");
	bulkops_json_string(&claims, username, strlen(username));
	appendStringInfoString(&claims, ",\"aud\":");
	bulkops_json_string(&claims, audience, strlen(audience));
	appendStringInfo(&claims, ",\"exp\":%lld}",
					 (long long) time(NULL) + JWT_LIFETIME_SECS);

	initStringInfo(&jwt);
	appendStringInfo(&jwt, "%s.%s",
					 base64url((const unsigned char *) jwt_header, sizeof(jwt_header) - 1),
					 base64url((const unsigned char *) claims.data, claims.len));
	pem = key_file ? bulkops_read_secret_file(key_file, target)
		: bulkops_resolve_secret(auth, "key", target, true);
	appendStringInfo(&jwt, ".%s", sign_rs256(pem, jwt.data, target));
	return jwt.data;
}

/* A secret member as a form parameter, wiped from memory once there. */
static void
append_secret_param(StringInfo body, Jsonb *auth, const char *member,
					const char *target)
{
	char	   *secret = bulkops_resolve_secret(auth, member, target, false);

	append_form_param(body, member, secret);
	explicit_bzero(secret, strlen(secret));
}

/*
 * The token request of auth for target, to send to token_url.  The body
 * holds secrets: it is never logged (http.c logs no request body).
 */
void
bulkops_oauth_request(Jsonb *auth, const char *token_url, const char *target,
					  BulkopsRequest *req)
{
	StringInfo	body = makeStringInfo();
	const char *type = find_oauth_kind(auth)->type;
	char	   *scope = string_member(auth, "scope");

	if (strcmp(type, "oauth2_jwt") == 0)
	{
		append_form_param(body, "grant_type",
						  "urn:ietf:params:oauth:grant-type:jwt-bearer");
		append_form_param(body, "assertion", make_jwt(auth, token_url, target));
	}
	else
	{
		if (strcmp(type, "oauth2_refresh_token") == 0)
			append_form_param(body, "grant_type", "refresh_token");
		else if (strcmp(type, "oauth2_password") == 0)
			append_form_param(body, "grant_type", "password");
		else
			append_form_param(body, "grant_type", "client_credentials");
		append_form_param(body, "client_id",
						  bulkops_resolve_secret(auth, "client_id", target, false));
		if (strcmp(type, "oauth2_refresh_token") != 0 ||
			bulkops_jsonb_get(auth, "client_secret") != NULL)
			append_secret_param(body, auth, "client_secret", target);
		if (strcmp(type, "oauth2_refresh_token") == 0)
			append_secret_param(body, auth, "refresh_token", target);
		else if (strcmp(type, "oauth2_password") == 0)
		{
			append_form_param(body, "username",
							  bulkops_resolve_secret(auth, "username", target, false));
			append_secret_param(body, auth, "password", target);
		}
	}
	if (scope != NULL)
		append_form_param(body, "scope", scope);

	memset(req, 0, sizeof(*req));
	req->method = "POST";
	req->url = pstrdup(token_url);
	req->body = body;
	req->content_type = "application/x-www-form-urlencoded";
}

/* ---- the token answer ---- */

/*
 * Read a 2xx token answer.  Raises ERROR when it is not one (a caller may
 * treat that as transient: a proxy's error page, a cut answer).
 */
void
bulkops_oauth_read_answer(const char *body, size_t len, BulkopsOAuthToken *tok)
{
	Jsonb	   *root = bulkops_json_parse(body, len);
	char	   *token = bulkops_jtext(bulkops_jget(&root->root, "access_token"));
	char	   *type = bulkops_jtext(bulkops_jget(&root->root, "token_type"));
	char	   *instance = bulkops_jtext(bulkops_jget(&root->root, "instance_url"));
	char	   *expires = bulkops_jtext(bulkops_jget(&root->root, "expires_in"));

	if (token == NULL || token[0] == '\0')
		elog(ERROR, "the answer has no \"access_token\"");
	/* RFC 6749 A.12: VSCHARs only; anything else could not go in a header */
	for (const char *c = token; *c; c++)
		if ((unsigned char) *c < 0x20 || (unsigned char) *c > 0x7e)
			elog(ERROR, "the access token contains a character a header cannot carry");
	if (type != NULL && pg_strcasecmp(type, "bearer") != 0)
		elog(ERROR, "token type \"%s\" is not supported", type);
	if (instance != NULL && strncmp(instance, "https://", 8) != 0 &&
		strncmp(instance, "http://", 7) != 0)
		elog(ERROR, "instance_url is not an http(s) URL");
	/* it becomes the base every request's path is appended to */
	if (instance != NULL && !bulkops_is_base_url(instance))
		elog(ERROR, "instance_url has a query, a fragment, whitespace or control characters");

	memset(tok, 0, sizeof(*tok));
	tok->access_token = token;
	if (instance != NULL && instance[0] != '\0')
	{
		size_t		l = strlen(instance);

		/* the API base carries no trailing slash, like a target url */
		while (l > 0 && instance[l - 1] == '/')
			l--;
		tok->instance_url = pnstrdup(instance, l);
	}
	if (expires != NULL)
		tok->expires_in = Max(strtol(expires, NULL, 10), 0);
}

/*
 * What an answer that is no token says: "code: description (HTTP n)" of
 * an OAuth error answer, else "HTTP n".
 */
char *
bulkops_oauth_error_message(const char *body, size_t len, long status)
{
	char	   *volatile msg = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		Jsonb	   *root = bulkops_json_parse(body, len);
		char	   *code = NULL;
		char	   *desc = NULL;

		if (JB_ROOT_IS_OBJECT(root))
		{
			code = bulkops_jtext(bulkops_jget(&root->root, "error"));
			desc = bulkops_jtext(bulkops_jget(&root->root, "error_description"));
		}
		if (code && desc)
			msg = psprintf("%s: %s", code, desc);
		else if (code)
			msg = pstrdup(code);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
	}
	PG_END_TRY();
	if (msg == NULL)
		return psprintf("HTTP %ld", status);
	return psprintf("%s (HTTP %ld)", bulkops_clean_text(msg, 500), status);
}
