/*-------------------------------------------------------------------------
 *
 * oauth_cache.c
 *	  The worker's OAuth tokens: one per target, shared by the workers of
 *	  the database (target_state.c's shared memory), fetched by one of them
 *	  through its curl multi; and the 401 refresh-and-replay rule.
 *
 * Nothing blocks: a batch that needs a token no worker has waits
 * (BULKOPS_OAUTH_WAIT) while one fetch per target and auth is in flight,
 * in whichever worker started it.  The end of a fetch wakes that worker's
 * waiting batches of the target; the other workers' batches look again
 * every SHARED_WAIT_RECHECK_MS meanwhile.  Tokens are keyed by database
 * and a digest of the target's name, url and auth, so an altered auth
 * never uses a token the old one obtained.  A token answer may name an
 * instance_url: it then replaces the target url as the API base the
 * dialect sees.  A 401 to a request that carried a token drops that
 * token, for every worker, and replays the request once with a new one,
 * without using up an attempt; tokens have serial numbers, so the batches
 * that got a 401 to the same token drop it only once.
 *
 * Token endpoint failures: transport errors, 408, 429 and 5xx are retried
 * with backoff, up to a batch's max_attempts consecutive failures; any
 * other answer is permanent and fails the batches that waited for it, and
 * for FAILURE_STANDS_MS every batch of any worker that asks for the token
 * (a batch another worker took a moment later must not fetch again, and
 * a secret fixed in its file is seen soon after).  The failures, the time
 * of the next try and the error are shared too: the workers together
 * fetch as one would.
 *
 * Secrets: a token lives in its shared slot (as sensitive as the process
 * memory that held it before tokens were shared, see target_state.c) and,
 * while a request is made, in that request's Authorization header; a
 * batch keeps only the token's serial number.  Copies on the stack and in
 * the token answer are wiped once used.  A token longer than the slot
 * (BULKOPS_TOKEN_MAX) is refused with an error that says so, never cut.
 *
 * Memory: the fetches this worker has in flight are listed in their own
 * context under TopMemoryContext; what a batch keeps (its API base) is
 * copied into the batch's context.  Nothing here opens a transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "oauth.h"
#include "ratelimit.h"
#include "stats.h"
#include "target_state.h"

/* a batch waiting for this worker's own fetch looks again this often */
#define WAIT_RECHECK_MS		60000

/* ... and one waiting for another worker's fetch, this often */
#define SHARED_WAIT_RECHECK_MS	50

/* ... and one that found every token slot mid-fetch */
#define FULL_RECHECK_MS		1000

/* a fetch not ended this long after its time limit is taken over */
#define FETCH_GRACE_MS		10000

/* a permanent failure fails every batch that asks this long after it */
#define FAILURE_STANDS_MS	10000

StaticAssertDecl(sizeof(((BulkopsOAuthUse *) 0)->key) == BULKOPS_TOKEN_KEY_LEN,
				 "a batch's token key has the length of a slot's");

/* A token fetch this worker has in flight. */
typedef struct Fetch
{
	BulkopsHttpCall *call;
	uint8		key[BULKOPS_TOKEN_KEY_LEN];
	char	   *target;
	char	   *token_url;
	long		cap_ms;			/* the fetching batch's retry_after_max */
} Fetch;

static MemoryContext fetch_cxt = NULL;
static List *fetches = NIL;		/* of Fetch *, in fetch_cxt */

/*
 * The key of w's token: SHA-256 of its target's name, url and auth.  The
 * auth may hold secrets: the buffer is wiped.
 */
static void
set_key(Work *w)
{
	StringInfoData buf;
	unsigned int len = 0;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, w->target, strlen(w->target) + 1);
	appendBinaryStringInfo(&buf, w->oauth.target_url, strlen(w->oauth.target_url) + 1);
	appendBinaryStringInfo(&buf, (char *) w->auth, VARSIZE(w->auth));
	if (EVP_Digest(buf.data, buf.len, w->oauth.key, &len, EVP_sha256(), NULL) != 1 ||
		len != BULKOPS_TOKEN_KEY_LEN)
		elog(ERROR, "bulkops: could not compute a token key");
	explicit_bzero(buf.data, buf.len);
	pfree(buf.data);
	w->oauth.has_key = true;
}

/* Wake this worker's batches of target that wait for a token. */
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

/* msg, cut at a character boundary, into a slot's error buffer */
static void
copy_error(char *dest, const char *msg)
{
	int			len = strlen(msg);

	if (len >= BULKOPS_TOKEN_ERROR_MAX)
		len = pg_mbcliplen(msg, len, BULKOPS_TOKEN_ERROR_MAX - 1);
	memcpy(dest, msg, len);
	dest[len] = '\0';
}

/*
 * Start fetching a token for w from token_url, as this worker's fetch.
 * Raises ERROR if the request cannot be built (nothing was sent).
 */
static void
start_fetch(Work *w, const char *token_url)
{
	BulkopsRequest req;
	BulkopsHttpOptions opts;
	MemoryContext old;
	Fetch	   *f;

	if (token_url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth of target \"%s\" has no \"token_url\"", w->target)));
	bulkops_oauth_request(w->auth, token_url, w->target, &req);
	bulkops_http_options(w->batch.options, &opts);

	if (fetch_cxt == NULL)
		fetch_cxt = AllocSetContextCreate(TopMemoryContext, "bulkops oauth fetches",
										  ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(fetch_cxt);
	f = palloc0(sizeof(Fetch));
	memcpy(f->key, w->oauth.key, BULKOPS_TOKEN_KEY_LEN);
	f->target = pstrdup(w->target);
	f->token_url = pstrdup(token_url);
	f->cap_ms = 1000L * bulkops_opt_int(w->batch.options, "retry_after_max",
										BULKOPS_RETRY_AFTER_MAX_DEFAULT);
	f->call = bulkops_http_start(&req, NIL, &opts, f);
	bulkops_stats_request(w->target, true);
	fetches = lappend(fetches, f);
	MemoryContextSwitchTo(old);
	explicit_bzero(req.body->data, req.body->len);
}

static BulkopsOAuthState
wait_for(Work *w, uint32 gen, TimestampTz until)
{
	w->oauth.waiting = true;
	w->oauth.wait_gen = gen;
	w->due = until;
	return BULKOPS_OAUTH_WAIT;
}

/* What w's slot allows, as bulkops_oauth_prepare reads it. */
typedef enum SlotVerdict
{
	SLOT_TOKEN,					/* a token: send */
	SLOT_FETCHING_HERE,			/* this worker fetches one */
	SLOT_FETCHING_ELSEWHERE,	/* another worker does */
	SLOT_BACKOFF,				/* the last fetch failed; try again later */
	SLOT_FAILED,				/* the fetch w waited for failed for good */
	SLOT_FETCH,					/* w is to fetch one: the slot says so now */
	SLOT_NONE					/* every slot is mid-fetch */
} SlotVerdict;

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
	BulkopsTokenSlot *s;
	SlotVerdict verdict;
	char		token[BULKOPS_TOKEN_MAX];
	char		base[BULKOPS_INSTANCE_URL_MAX];
	char		failed[BULKOPS_TOKEN_ERROR_MAX];
	uint64		serial = 0;
	uint32		gen = 0;
	TimestampTz retry_at = 0;
	BulkopsHttpOptions opts;
	char	   *volatile token_url = NULL;
	char	   *volatile failure = NULL;

	if (w->oauth.target_url == NULL)
		w->oauth.target_url = MemoryContextStrdup(w->cxt, w->batch.url);
	if (!w->oauth.has_key)
		set_key(w);
	bulkops_http_options(w->batch.options, &opts);

	/* decide under the lock, act after it */
	bulkops_target_state_lock(LW_EXCLUSIVE);
	s = bulkops_token_slot(w->oauth.key, now, true);
	if (s == NULL)
		verdict = SLOT_NONE;
	else
	{
		s->last_used = now;
		if (s->token[0] != '\0' && s->expires_at != 0 && now >= s->expires_at)
			bulkops_token_wipe(s);
		gen = s->gen;
		if (s->token[0] != '\0')
		{
			verdict = SLOT_TOKEN;
			strlcpy(token, s->token, sizeof(token));
			strlcpy(base, s->instance_url, sizeof(base));
			serial = s->serial;
		}
		else if (s->fetcher != 0 && now < s->fetch_deadline)
			verdict = s->fetcher == MyProcPid ? SLOT_FETCHING_HERE
				: SLOT_FETCHING_ELSEWHERE;
		/* a fetch failed for good a moment ago: so would this batch's */
		else if (s->error[0] != '\0' && s->permanent && now < s->retry_at)
		{
			verdict = SLOT_FAILED;
			strlcpy(failed, s->error, sizeof(failed));
		}
		/* the fetch this batch waited for failed: give up, or try again */
		else if (s->error[0] != '\0' && w->oauth.waiting && w->oauth.wait_gen != s->gen &&
				 (s->permanent || s->failures >= w->max_attempts))
		{
			verdict = SLOT_FAILED;
			strlcpy(failed, s->error, sizeof(failed));
		}
		else if (now < s->retry_at)
		{
			verdict = SLOT_BACKOFF;
			retry_at = s->retry_at;
		}
		else
		{
			/* a fetcher past its time limit is gone or stuck: take over */
			verdict = SLOT_FETCH;
			s->fetcher = MyProcPid;
			s->fetch_deadline = TimestampTzPlusMilliseconds(now, opts.timeout_ms +
															FETCH_GRACE_MS);
		}
	}
	bulkops_target_state_unlock();

	switch (verdict)
	{
		case SLOT_TOKEN:
			{
				const char *api = base[0] != '\0' ? base : w->oauth.target_url;

				w->oauth.waiting = false;
				w->oauth.serial = serial;
				if (strcmp(w->batch.url, api) != 0)
					w->batch.url = MemoryContextStrdup(w->cxt, api);
				*headers = list_make1(palloc(sizeof(BulkopsHeader)));
				((BulkopsHeader *) linitial(*headers))->name = "Authorization";
				((BulkopsHeader *) linitial(*headers))->value =
					psprintf("Bearer %s", token);
				explicit_bzero(token, sizeof(token));
				return BULKOPS_OAUTH_READY;
			}
		case SLOT_FETCHING_HERE:
			return wait_for(w, gen, TimestampTzPlusMilliseconds(now, WAIT_RECHECK_MS));
		case SLOT_FETCHING_ELSEWHERE:
			return wait_for(w, gen, TimestampTzPlusMilliseconds(now, SHARED_WAIT_RECHECK_MS));
		case SLOT_NONE:
			return wait_for(w, gen, TimestampTzPlusMilliseconds(now, FULL_RECHECK_MS));
		case SLOT_BACKOFF:
			return wait_for(w, gen, retry_at);
		case SLOT_FAILED:
			w->oauth.waiting = false;
			*error = pstrdup(failed);
			return BULKOPS_OAUTH_FAIL;
		case SLOT_FETCH:
			break;
	}

	PG_TRY();
	{
		token_url = bulkops_oauth_token_url(w->auth, w->dialect,
											w->oauth.target_url);
		start_fetch(w, token_url);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		failure = psprintf("could not obtain an OAuth token from %s: %s",
						   token_url ? token_url : "(no URL)", edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	if (failure)
	{
		/* nothing was sent; the batches already waiting would fail alike */
		bulkops_target_state_lock(LW_EXCLUSIVE);
		s = bulkops_token_slot(w->oauth.key, now, false);
		if (s)
		{
			if (s->fetcher == MyProcPid)
				s->fetcher = 0;
			copy_error(s->error, failure);
			s->permanent = true;
			s->retry_at = TimestampTzPlusMilliseconds(now, FAILURE_STANDS_MS);
			s->gen++;
		}
		bulkops_target_state_unlock();
		bulkops_stats_token_result(w->target, false);
		wake_waiters(w->target);
		w->oauth.waiting = false;
		*error = failure;
		return BULKOPS_OAUTH_FAIL;
	}
	return wait_for(w, gen, TimestampTzPlusMilliseconds(now, WAIT_RECHECK_MS));
}

/*
 * After an answer to w: true if it was a 401 to a request that carried a
 * token and is worth one replay with a new token.  w is then due again and
 * the answer is the caller's to discard.
 */
bool
bulkops_oauth_replay(Work *w, long status)
{
	BulkopsTokenSlot *s;

	if (w->oauth.serial == 0)
		return false;
	if (status != 401 || w->oauth.replayed)
	{
		w->oauth.replayed = false;
		return false;
	}
	/* batches that got a 401 to the same token, in any worker, drop it once */
	bulkops_target_state_lock(LW_EXCLUSIVE);
	s = bulkops_token_slot(w->oauth.key, GetCurrentTimestamp(), false);
	if (s && s->token[0] != '\0' && s->serial == w->oauth.serial)
		bulkops_token_wipe(s);
	bulkops_target_state_unlock();
	w->oauth.replayed = true;
	w->due = GetCurrentTimestamp();
	return true;
}

/* A token answer that was read, its strings in CurrentMemoryContext. */
typedef struct FetchOutcome
{
	BulkopsOAuthToken tok;		/* when error is NULL */
	char	   *error;			/* what went wrong, for the message */
	bool		permanent;		/* ... and retrying would not help */
} FetchOutcome;

/* What the answer to fetch f says. */
static void
read_fetch(Fetch *f, BulkopsHttpCall *call, FetchOutcome *out)
{
	MemoryContext cxt = CurrentMemoryContext;

	memset(out, 0, sizeof(*out));
	if (call->refused)
	{
		out->error = call->error;
		out->permanent = true;
	}
	else if (call->error)
		out->error = call->error;
	else if (call->status == 408 || call->status == 429 || call->status >= 500)
		out->error = bulkops_oauth_error_message(call->body.data, call->body.len,
												 call->status);
	else if (call->status < 200 || call->status >= 300)
	{
		out->error = bulkops_oauth_error_message(call->body.data, call->body.len,
												 call->status);
		out->permanent = true;
	}
	else
	{
		PG_TRY();
		{
			bulkops_oauth_read_answer(call->body.data, call->body.len, &out->tok);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			out->error = psprintf("unusable answer: %s", edata->message);
			FreeErrorData(edata);
		}
		PG_END_TRY();
		if (out->error == NULL && strlen(out->tok.access_token) >= BULKOPS_TOKEN_MAX)
		{
			/* the same token would come again: no retry */
			out->error = psprintf("the access token is %zu bytes long; bulkops shares tokens of at most %d bytes between its workers",
								  strlen(out->tok.access_token), BULKOPS_TOKEN_MAX - 1);
			out->permanent = true;
		}
		else if (out->error == NULL && out->tok.instance_url &&
				 strlen(out->tok.instance_url) >= BULKOPS_INSTANCE_URL_MAX)
		{
			out->error = psprintf("the instance_url is %zu bytes long; bulkops takes at most %d bytes",
								  strlen(out->tok.instance_url), BULKOPS_INSTANCE_URL_MAX - 1);
			out->permanent = true;
		}
		if (out->error && out->tok.access_token)
			explicit_bzero(out->tok.access_token, strlen(out->tok.access_token));
	}
	if (out->error)
		out->error = psprintf("could not obtain an OAuth token from %s: %s",
							  f->token_url, out->error);
}

/*
 * A finished HTTP call: if it is one of this worker's token fetches,
 * share what it brought, wake this worker's batches waiting for it, free
 * it and return true.
 */
bool
bulkops_oauth_call_done(BulkopsHttpCall *call)
{
	Fetch	   *f = NULL;
	ListCell   *lc;
	FetchOutcome out;
	TimestampTz now = GetCurrentTimestamp();
	BulkopsTokenSlot *s;
	long		retry_after = call->has_retry_after ? call->retry_after_ms : -1;

	foreach(lc, fetches)
	{
		if (((Fetch *) lfirst(lc))->call == call)
			f = lfirst(lc);
	}
	if (f == NULL)
		return false;

	read_fetch(f, call, &out);
	if (retry_after >= 0)
		retry_after = Min(retry_after, f->cap_ms);

	bulkops_target_state_lock(LW_EXCLUSIVE);
	/* its slot may have been given to another token meanwhile: take one */
	s = bulkops_token_slot(f->key, now, true);
	if (s)
	{
		if (s->fetcher == MyProcPid)
			s->fetcher = 0;
		s->gen++;
		if (out.error == NULL)
		{
			bulkops_token_wipe(s);
			strlcpy(s->token, out.tok.access_token, sizeof(s->token));
			if (out.tok.instance_url)
				strlcpy(s->instance_url, out.tok.instance_url, sizeof(s->instance_url));
			/* renew a little early, so that no request carries a dying token */
			s->expires_at = out.tok.expires_in <= 0 ? 0
				: TimestampTzPlusMilliseconds(now, (out.tok.expires_in -
													Min(60, out.tok.expires_in / 10)) * 1000);
			s->serial = bulkops_token_next_serial();
			s->error[0] = '\0';
			s->permanent = false;
			s->failures = 0;
			s->retry_at = 0;
		}
		else
		{
			copy_error(s->error, out.error);
			s->permanent = out.permanent;
			if (out.permanent)
				s->retry_at = TimestampTzPlusMilliseconds(now, FAILURE_STANDS_MS);
			else
			{
				s->failures++;
				s->retry_at = TimestampTzPlusMilliseconds(now,
														  bulkops_backoff_ms(s->failures,
																			 retry_after));
			}
		}
	}
	bulkops_target_state_unlock();
	bulkops_stats_token_result(f->target, out.error == NULL);

	if (out.error == NULL)
		explicit_bzero(out.tok.access_token, strlen(out.tok.access_token));
	/* the answer held the token too */
	if (call->body.data)
		explicit_bzero(call->body.data, call->body.len);
	bulkops_http_free(call);
	wake_waiters(f->target);
	fetches = list_delete_ptr(fetches, f);
	pfree(f->target);
	pfree(f->token_url);
	pfree(f);
	return true;
}

/*
 * This worker is going away: its fetches in flight will never end, so
 * the other workers may start theirs at once.
 */
void
bulkops_oauth_forget_fetches(void)
{
	bulkops_token_fetches_end(MyProcPid);
}
