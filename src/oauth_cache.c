/*-------------------------------------------------------------------------
 *
 * oauth_cache.c
 *	  The worker's OAuth tokens: one cache entry per target, fetched through
 *	  the worker's curl multi, and the 401 refresh-and-replay rule.
 *
 * Nothing blocks: a batch that needs a token it does not have waits
 * (BULKOPS_OAUTH_WAIT) while one fetch per target and auth is in flight,
 * and the fetch's end wakes every batch of that target.  Entries are keyed
 * by target name, target url and the auth JSON itself, so an altered auth
 * never uses a token the old one obtained.  A token answer may name an
 * instance_url: it then replaces the target url as the API base the
 * dialect sees.  A 401 to a request that carried a token drops that token
 * and replays the request once with a new one, without using up an
 * attempt.
 *
 * Token endpoint failures: transport errors, 408, 429 and 5xx are retried
 * with backoff, up to a batch's max_attempts consecutive failures; any
 * other answer is permanent and fails the batches that waited for it.
 *
 * Memory: the cache lives in its own context under TopMemoryContext, one
 * child context per entry; what a batch keeps (its token, its API base)
 * is copied into the batch's context.  Nothing here opens a transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "oauth.h"
#include "ratelimit.h"
#include "stats.h"

/* a waiting batch looks again this often, should a wake-up be lost */
#define WAIT_RECHECK_MS		60000

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

/* Forget e's token, leaving no copy of it in freed memory. */
static void
drop_token(TokenEntry *e)
{
	explicit_bzero(e->access_token, strlen(e->access_token));
	pfree(e->access_token);
	e->access_token = NULL;
}

/*
 * Read a 2xx token answer into e; its errors come back as a message (NULL
 * when the answer was a token).
 */
static char *
store_token_answer(TokenEntry *e, BulkopsHttpCall *call)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile bad = NULL;
	BulkopsOAuthToken tok;

	PG_TRY();
	{
		bulkops_oauth_read_answer(call->body.data, call->body.len, &tok);
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
	if (bad)
		return bad;

	if (e->access_token)
		drop_token(e);
	if (e->instance_url)
		pfree(e->instance_url);
	e->access_token = MemoryContextStrdup(e->cxt, tok.access_token);
	e->instance_url = tok.instance_url
		? MemoryContextStrdup(e->cxt, tok.instance_url) : NULL;
	/* renew a little early, so that no request carries a dying token */
	e->expires_at = tok.expires_in <= 0 ? 0
		: TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									  (tok.expires_in - Min(60, tok.expires_in / 10)) * 1000);
	explicit_bzero(tok.access_token, strlen(tok.access_token));
	return NULL;
}

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
		drop_token(e);
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
	e->token_url = bulkops_oauth_token_url(e->auth, w->dialect, url);
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
	bulkops_oauth_request(e->auth, e->token_url, e->target, &req);
	bulkops_http_options(w->batch.options, &opts);
	e->call = bulkops_http_start(&req, NIL, &opts, e);
	bulkops_stats_request(e->target, true);
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
		drop_token(e);
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
		bulkops_stats_token_result(e->target, false);
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
			drop_token(e);
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
	{
		if (((TokenEntry *) lfirst(lc))->call == call)
			e = lfirst(lc);
	}
	if (e == NULL)
		return false;

	e->call = NULL;
	e->gen++;
	if (call->refused)
		set_error(e, call->error, true);
	else if (call->error)
		set_error(e, call->error, false);
	else if (call->status == 408 || call->status == 429 || call->status >= 500)
		set_error(e, bulkops_oauth_error_message(call->body.data, call->body.len,
												 call->status), false);
	else if (call->status >= 200 && call->status < 300)
	{
		char	   *bad = store_token_answer(e, call);

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
		set_error(e, bulkops_oauth_error_message(call->body.data, call->body.len,
												 call->status), true);

	if (e->error && !e->permanent)
	{
		e->failures++;
		e->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  bulkops_backoff_ms(e->failures,
																	 call->has_retry_after ? call->retry_after_ms : -1));
	}
	else if (e->error)
		e->retry_at = 0;
	bulkops_stats_token_result(e->target, e->error == NULL);
	bulkops_http_free(call);
	wake_waiters(e->target);
	return true;
}
