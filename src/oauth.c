/*-------------------------------------------------------------------------
 *
 * oauth.c
 *	  OAuth 2.0 for targets: the auth kinds oauth2_client_credentials and
 *	  oauth2_jwt (RFC 7523 JWT bearer grant, signed RS256), checked when a
 *	  target is written, and in the worker a token cache per target.
 *
 * In the worker a token is fetched through the same curl multi as every
 * other request, so nothing blocks: a batch that needs a token it does not
 * have waits (BULKOPS_OAUTH_WAIT) while one fetch per target and auth is
 * in flight, and the fetch's end wakes every batch of that target.  The
 * cache is keyed by target name, target url and the auth JSON itself, so
 * an altered auth never uses a token the old one obtained.  A token answer
 * may name an instance_url: it then replaces the target url as the API
 * base the dialect sees.  A 401 to a request that carried a token drops
 * that token and replays the request once with a new one, without using
 * up an attempt.
 *
 * Token endpoint failures: transport errors, 408, 429 and 5xx are retried
 * with backoff, up to a batch's max_attempts consecutive failures; any
 * other answer is permanent and fails the batches that waited for it.
 * Messages name the token URL and the endpoint's error, never a secret.
 *
 * Memory: the cache lives in its own context under TopMemoryContext, one
 * child context per entry; what a batch keeps (its token, its API base)
 * is copied into the batch's context.  Nothing here opens a transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/base64.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "encode.h"
#include "oauth.h"
#include "worker.h"

/* the JWT's life: Salesforce allows at most three minutes */
#define JWT_LIFETIME_SECS	180
/* a waiting batch looks again this often, should a wake-up be lost */
#define WAIT_RECHECK_MS		60000

typedef struct OAuthKind
{
	const char *type;
	const char *members[9];		/* every member it accepts */
} OAuthKind;

static const OAuthKind oauth_kinds[] = {
	{"oauth2_client_credentials",
	{"type", "client_id", "client_secret", "token_url", "scope"}},
	{"oauth2_jwt",
		{"type", "client_id", "username", "key", "key_file", "token_url",
	"audience", "scope"}},
	{NULL}
};

/* One cached token: for one target, target url and auth. */
typedef struct TokenEntry
{
	MemoryContext cxt;
	char	   *target;
	char	   *url;			/* the target's url */
	Jsonb	   *auth;
	char	   *token_url;
	char	   *access_token;	/* NULL: none yet, or dropped */
	char	   *instance_url;	/* NULL: the target's url */
	TimestampTz expires_at;		/* 0: until a 401 says otherwise */
	BulkopsHttpCall *call;		/* the fetch in flight, or NULL */
	uint32		gen;			/* fetches ended so far */
	int			failures;		/* consecutive transient failures */
	TimestampTz retry_at;		/* no fetch before then */
	char	   *error;			/* the last fetch's failure, or NULL */
	bool		permanent;		/* ... and retrying would not help */
} TokenEntry;

static MemoryContext oauth_cxt = NULL;
static List *entries = NIL;		/* of TokenEntry *, in oauth_cxt */

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
static char *
token_url_for(Jsonb *auth, const BulkopsDialect *d, const char *url)
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
	token_url = token_url_for(auth, d, url);
	if (token_url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth type \"%s\" needs a \"token_url\" member", type),
				 errdetail("Dialect \"%s\" has no default token endpoint.",
						   d->name)));
	bulkops_check_url(token_url, ERROR, NULL);

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
					 base64url((const unsigned char *) "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", 27),
					 base64url((const unsigned char *) claims.data, claims.len));
	pem = key_file ? bulkops_read_secret_file(key_file, target)
		: bulkops_resolve_secret(auth, "key", target, true);
	appendStringInfo(&jwt, ".%s", sign_rs256(pem, jwt.data, target));
	return jwt.data;
}

/* The token request of auth, in CurrentMemoryContext. */
static void
build_token_request(Jsonb *auth, const char *token_url, const char *target,
					BulkopsRequest *req)
{
	StringInfo	body = makeStringInfo();
	char	   *scope = string_member(auth, "scope");
	char	   *secret;

	if (strcmp(find_oauth_kind(auth)->type, "oauth2_jwt") == 0)
	{
		append_form_param(body, "grant_type",
						  "urn:ietf:params:oauth:grant-type:jwt-bearer");
		append_form_param(body, "assertion", make_jwt(auth, token_url, target));
	}
	else
	{
		append_form_param(body, "grant_type", "client_credentials");
		append_form_param(body, "client_id",
						  bulkops_resolve_secret(auth, "client_id", target, false));
		secret = bulkops_resolve_secret(auth, "client_secret", target, false);
		append_form_param(body, "client_secret", secret);
		explicit_bzero(secret, strlen(secret));
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
 * Read a 2xx token answer into e.  Raises ERROR when it is not one (the
 * caller treats that as transient: a proxy's error page, a cut answer).
 */
static void
read_token_answer(TokenEntry *e, const char *body, size_t len)
{
	Jsonb	   *root = bulkops_json_parse(body, len);
	char	   *token = bulkops_jtext(bulkops_jget(&root->root, "access_token"));
	char	   *type = bulkops_jtext(bulkops_jget(&root->root, "token_type"));
	char	   *instance = bulkops_jtext(bulkops_jget(&root->root, "instance_url"));
	JsonbValue *expires = bulkops_jget(&root->root, "expires_in");
	MemoryContext old;

	if (token == NULL || token[0] == '\0')
		elog(ERROR, "the answer has no \"access_token\"");
	if (strpbrk(token, "\r\n") != NULL)
		elog(ERROR, "the access token contains a line break");
	if (type != NULL && pg_strcasecmp(type, "bearer") != 0)
		elog(ERROR, "token type \"%s\" is not supported", type);
	if (instance != NULL && strncmp(instance, "https://", 8) != 0 &&
		strncmp(instance, "http://", 7) != 0)
		elog(ERROR, "instance_url is not an http(s) URL");

	old = MemoryContextSwitchTo(e->cxt);
	if (e->access_token)
		pfree(e->access_token);
	if (e->instance_url)
		pfree(e->instance_url);
	e->access_token = pstrdup(token);
	e->instance_url = NULL;
	if (instance != NULL && instance[0] != '\0')
	{
		size_t		l = strlen(instance);

		/* the API base carries no trailing slash, like a target url */
		while (l > 0 && instance[l - 1] == '/')
			l--;
		e->instance_url = pnstrdup(instance, l);
	}
	MemoryContextSwitchTo(old);

	e->expires_at = 0;
	if (expires != NULL)
	{
		char	   *s = bulkops_jtext(expires);
		long		secs = s ? strtol(s, NULL, 10) : 0;

		/* renew a little early, so that no request carries a dying token */
		if (secs > 0)
			e->expires_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														(secs - Min(60, secs / 10)) * 1000);
	}
}

/* read_token_answer, its errors returned as a message (NULL: none) */
static char *
try_read_token_answer(TokenEntry *e, BulkopsHttpCall *call)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile bad = NULL;

	PG_TRY();
	{
		read_token_answer(e, call->body.data, call->body.len);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		bad = psprintf("unusable answer: %s", edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return bad;
}

/* "code: description" of an OAuth error answer, or "HTTP n". */
static char *
error_of_answer(BulkopsHttpCall *call)
{
	char	   *volatile msg = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		Jsonb	   *root = bulkops_json_parse(call->body.data, call->body.len);
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
		return psprintf("HTTP %ld", call->status);
	return psprintf("%s (HTTP %ld)", bulkops_clean_text(msg, 500), call->status);
}

/* ---- the cache ---- */

static bool
jsonb_equal(Jsonb *a, Jsonb *b)
{
	return VARSIZE(a) == VARSIZE(b) && memcmp(a, b, VARSIZE(a)) == 0;
}

static bool
entry_serves(TokenEntry *e, const char *target, const char *url, Jsonb *auth)
{
	return strcmp(e->target, target) == 0 && strcmp(e->url, url) == 0 &&
		jsonb_equal(e->auth, auth);
}

static void
free_entry(TokenEntry *e)
{
	if (e->access_token)
		explicit_bzero(e->access_token, strlen(e->access_token));
	entries = list_delete_ptr(entries, e);
	MemoryContextDelete(e->cxt);
}

/*
 * The entry for w, created on first use.  Entries of w's target that no
 * batch held now uses are dropped then: that is how an altered auth's old
 * tokens go away.
 */
static TokenEntry *
entry_for(Work *w)
{
	const char *url = w->oauth.target_url;
	ListCell   *lc;
	List	   *unused = NIL;
	TokenEntry *e;
	MemoryContext old;

	foreach(lc, entries)
	{
		e = lfirst(lc);
		if (entry_serves(e, w->target, url, w->auth))
			return e;
	}

	if (oauth_cxt == NULL)
		oauth_cxt = AllocSetContextCreate(TopMemoryContext, "bulkops oauth",
										  ALLOCSET_SMALL_SIZES);
	foreach(lc, entries)
	{
		ListCell   *wc;
		bool		used = false;

		e = lfirst(lc);
		if (e->call != NULL || strcmp(e->target, w->target) != 0)
			continue;
		foreach(wc, bulkops_works)
		{
			Work	   *other = lfirst(wc);

			if (other->auth && other->oauth.target_url &&
				entry_serves(e, other->target, other->oauth.target_url, other->auth))
				used = true;
		}
		if (!used)
			unused = lappend(unused, e);
	}
	foreach(lc, unused)
		free_entry(lfirst(lc));
	list_free(unused);

	old = MemoryContextSwitchTo(oauth_cxt);
	e = palloc0(sizeof(TokenEntry));
	e->cxt = AllocSetContextCreate(oauth_cxt, "bulkops oauth token",
								   ALLOCSET_SMALL_SIZES);
	entries = lappend(entries, e);
	MemoryContextSwitchTo(e->cxt);
	e->target = pstrdup(w->target);
	e->url = pstrdup(url);
	e->auth = DatumGetJsonbPCopy(JsonbPGetDatum(w->auth));
	e->token_url = token_url_for(e->auth, w->dialect, url);
	MemoryContextSwitchTo(old);
	return e;
}

/* Wake the batches of target that wait for a token. */
static void
wake_waiters(const char *target)
{
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	foreach(lc, bulkops_works)
	{
		Work	   *w = lfirst(lc);

		if (w->oauth.waiting && strcmp(w->target, target) == 0)
			w->due = now;
	}
}

static void
set_error(TokenEntry *e, const char *why, bool permanent)
{
	if (e->error)
		pfree(e->error);
	e->error = MemoryContextStrdup(e->cxt,
								   psprintf("could not obtain an OAuth token from %s: %s",
											e->token_url ? e->token_url : "(no URL)",
											why));
	e->permanent = permanent;
}

/* Start fetching a token for e.  Raises ERROR if the request cannot be built. */
static void
start_fetch(TokenEntry *e, Work *w)
{
	BulkopsRequest req;
	BulkopsHttpOptions opts;

	if (e->token_url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth of target \"%s\" has no \"token_url\"", e->target)));
	build_token_request(e->auth, e->token_url, e->target, &req);
	bulkops_http_options(w, &opts);
	e->call = bulkops_http_start(&req, NIL, &opts, e);
	explicit_bzero(req.body->data, req.body->len);
}

static BulkopsOAuthState
wait_for(Work *w, TokenEntry *e, TimestampTz until)
{
	w->oauth.waiting = true;
	w->oauth.wait_gen = e->gen;
	w->due = until;
	return BULKOPS_OAUTH_WAIT;
}

/*
 * Before w's next request: a token, or a reason to wait or to fail.  On
 * READY, *headers gets the Authorization header and w->batch.url the API
 * base.  Never raises: errors come back in *error.
 */
BulkopsOAuthState
bulkops_oauth_prepare(Work *w, List **headers, char **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();
	TokenEntry *e;
	char	   *volatile failure = NULL;

	if (w->oauth.target_url == NULL)
		w->oauth.target_url = MemoryContextStrdup(w->cxt, w->batch.url);
	e = entry_for(w);

	if (e->access_token && e->expires_at != 0 && now >= e->expires_at)
	{
		pfree(e->access_token);
		e->access_token = NULL;
	}
	if (e->access_token)
	{
		const char *base = e->instance_url ? e->instance_url : w->oauth.target_url;

		w->oauth.waiting = false;
		if (w->oauth.token == NULL || strcmp(w->oauth.token, e->access_token) != 0)
			w->oauth.token = MemoryContextStrdup(w->cxt, e->access_token);
		if (strcmp(w->batch.url, base) != 0)
			w->batch.url = MemoryContextStrdup(w->cxt, base);
		*headers = list_make1(palloc(sizeof(BulkopsHeader)));
		((BulkopsHeader *) linitial(*headers))->name = "Authorization";
		((BulkopsHeader *) linitial(*headers))->value =
			psprintf("Bearer %s", w->oauth.token);
		return BULKOPS_OAUTH_READY;
	}
	if (e->call != NULL)
		return wait_for(w, e, TimestampTzPlusMilliseconds(now, WAIT_RECHECK_MS));

	/* the fetch this batch waited for failed: give up, or try again */
	if (e->error && w->oauth.waiting && w->oauth.wait_gen != e->gen &&
		(e->permanent || e->failures >= w->max_attempts))
	{
		w->oauth.waiting = false;
		*error = pstrdup(e->error);
		return BULKOPS_OAUTH_FAIL;
	}
	if (now < e->retry_at)
		return wait_for(w, e, e->retry_at);

	PG_TRY();
	{
		start_fetch(e, w);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		failure = pstrdup(edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	if (failure)
	{
		/* nothing was sent; the batches already waiting would fail alike */
		set_error(e, failure, true);
		e->gen++;
		wake_waiters(e->target);
		w->oauth.waiting = false;
		*error = pstrdup(e->error);
		return BULKOPS_OAUTH_FAIL;
	}
	return wait_for(w, e, TimestampTzPlusMilliseconds(now, WAIT_RECHECK_MS));
}

/*
 * After an answer to w: true if it was a 401 to a request that carried a
 * token and is worth one replay with a new token.  w is then due again and
 * the answer is the caller's to discard.
 */
bool
bulkops_oauth_replay(Work *w, long status)
{
	ListCell   *lc;

	if (w->oauth.token == NULL)
		return false;
	if (status != 401 || w->oauth.replayed)
	{
		w->oauth.replayed = false;
		return false;
	}
	foreach(lc, entries)
	{
		TokenEntry *e = lfirst(lc);

		/* batches that got the same 401 drop the token only once */
		if (e->access_token && strcmp(e->access_token, w->oauth.token) == 0)
		{
			explicit_bzero(e->access_token, strlen(e->access_token));
			pfree(e->access_token);
			e->access_token = NULL;
		}
	}
	w->oauth.replayed = true;
	w->due = GetCurrentTimestamp();
	return true;
}

/*
 * A finished HTTP call: if it is a token fetch, learn from it, wake the
 * batches waiting for it, free it and return true.
 */
bool
bulkops_oauth_call_done(BulkopsHttpCall *call)
{
	TokenEntry *e = NULL;
	ListCell   *lc;

	foreach(lc, entries)
		if (((TokenEntry *) lfirst(lc))->call == call)
			e = lfirst(lc);
	if (e == NULL)
		return false;

	e->call = NULL;
	e->gen++;
	if (call->refused)
		set_error(e, call->error, true);
	else if (call->error)
		set_error(e, call->error, false);
	else if (call->status == 408 || call->status == 429 || call->status >= 500)
		set_error(e, error_of_answer(call), false);
	else if (call->status >= 200 && call->status < 300)
	{
		char	   *bad = try_read_token_answer(e, call);

		if (bad)
			set_error(e, bad, false);
		else
		{
			if (e->error)
				pfree(e->error);
			e->error = NULL;
			e->permanent = false;
			e->failures = 0;
			e->retry_at = 0;
		}
	}
	else
		set_error(e, error_of_answer(call), true);

	if (e->error && !e->permanent)
	{
		e->failures++;
		e->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  bulkops_backoff_ms(e->failures,
																	 call->has_retry_after ? call->retry_after_ms : -1));
	}
	else if (e->error)
		e->retry_at = 0;
	bulkops_http_free(call);
	wake_waiters(e->target);
	return true;
}
