/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *	  How fast requests may go: requests per second per target (option
 *	  rate_limit), a token bucket; how long to wait before a retry; and the
 *	  hold on a target that refused a request for a rate or usage limit.
 *
 * Many APIs meter calls per second as well as calls in flight.  The bucket
 * holds at most one second's worth of requests, so a target idle for a
 * while may send a short burst of rate_limit requests, then one every
 * 1/rate_limit seconds.  Polls and result fetches count: the remote side
 * counts every call.
 *
 * A limit (429, 503, a dialect's usage limit) is the target's, not one
 * request's: the remote side counts every call of its client.  So the
 * target is held, for every worker of the database (target_state.c's
 * shared memory), until the time it asked for (Retry-After, at most the
 * option retry_after_max), or the dialect's own delay, or else a backoff
 * that doubles with each limit in a row.  One LOG line says when a target
 * goes into backoff (held, until when and why), one when it answers
 * without a limit again; the holds in between, each after a request made
 * when the last ended was refused again, are logged at DEBUG1.
 * Saving a hold across restarts is the caller's (worker.c): this file
 * opens no transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"

#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "ratelimit.h"
#include "target_state.h"

typedef struct Bucket
{
	char		target[NAMEDATALEN * 2];	/* hash key */
	double		tokens;
	TimestampTz refilled;
} Bucket;

static HTAB *buckets = NULL;

/*
 * Take one request's token for target at rate requests per second.
 * Returns 0 when taken, else the milliseconds until a token is due.
 */
long
bulkops_rate_take(const char *target, double rate)
{
	Bucket	   *b;
	bool		found;
	TimestampTz now = GetCurrentTimestamp();
	char		key[NAMEDATALEN * 2];

	if (buckets == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(key);
		ctl.entrysize = sizeof(Bucket);
		buckets = hash_create("bulkops rate limits", 16, &ctl,
							  HASH_ELEM | HASH_STRINGS);
	}
	memset(key, 0, sizeof(key));
	strlcpy(key, target, sizeof(key));
	b = hash_search(buckets, key, HASH_ENTER, &found);
	if (!found)
	{
		b->tokens = Max(rate, 1.0);
		b->refilled = now;
	}
	else
	{
		b->tokens = Min(Max(rate, 1.0),
						b->tokens + rate * (double) (now - b->refilled) / USECS_PER_SEC);
		b->refilled = now;
	}
	if (b->tokens >= 1.0)
	{
		b->tokens -= 1.0;
		return 0;
	}
	return (long) ceil((1.0 - b->tokens) * 1000.0 / rate);
}

/*
 * How long to wait before the attempt-th retry: exponential from half a
 * second up to a minute, with jitter, unless the remote side said how long
 * (retry_after_ms >= 0).
 */
long
bulkops_backoff_ms(int attempt, long retry_after_ms)
{
	double		base = 500.0 * pow(2.0, Min(attempt, 16) - 1);
	long		ms;

	if (base > 60000.0)
		base = 60000.0;
	/* jitter spreads retries of many batches hitting one limit */
	ms = (long) (base * (0.5 + 0.5 * pg_prng_double(&pg_global_prng_state)));
	/* the remote side knows its limits better than any formula */
	return retry_after_ms >= 0 ? retry_after_ms : ms;
}

/* ---- holding a target that refused a request for a limit ---- */

/* Until when every request to target is held, or 0 when it is not. */
TimestampTz
bulkops_target_held_until(const char *target)
{
	BulkopsHold hold;

	if (!bulkops_hold_get(target, &hold) || hold.until <= GetCurrentTimestamp())
		return 0;
	return hold.until;
}

/*
 * target refused a request for a rate or usage limit, answering HTTP
 * status: hold every request to it, in every worker of the database.  For
 * delay_ms when the dialect gives a delay of its own (it comes from the
 * target's options); else for what Retry-After asked (retry_after_ms >= 0),
 * at most cap_ms (retry_after_max); else for a backoff with jitter that
 * doubles with each limit in a row, up to a minute (and cap_ms).  Returns
 * the end of the hold (a longer one already under way stands); *save is
 * set when the hold began or grew longer, and is worth saving.
 */
TimestampTz
bulkops_target_limited(const char *target, int status, long delay_ms,
					   long retry_after_ms, long cap_ms, bool *save)
{
	static bool warned_full = false;
	TimestampTz now = GetCurrentTimestamp();
	BulkopsHold hold;
	int			strikes = 1;
	long		ms;
	char	   *how;

	if (bulkops_hold_get(target, &hold))
		strikes = hold.until > now ? hold.strikes
			: hold.limited ? hold.strikes + 1 : 1;
	if (delay_ms > 0)
	{
		ms = delay_ms;
		how = psprintf("it is held for the dialect's delay, %ld s", ms / 1000);
	}
	else if (retry_after_ms >= 0)
	{
		ms = Min(retry_after_ms, cap_ms);
		how = retry_after_ms > cap_ms
			? psprintf("Retry-After asked for %ld s, cut to retry_after_max, %ld s",
					   retry_after_ms / 1000, cap_ms / 1000)
			: psprintf("Retry-After asked for %ld s", (retry_after_ms + 999) / 1000);
	}
	else
	{
		ms = Min(bulkops_backoff_ms(strikes, -1), cap_ms);
		how = psprintf("no Retry-After: backoff %d in a row", strikes);
	}
	*save = false;
	switch (bulkops_hold_extend(target, now, TimestampTzPlusMilliseconds(now, ms),
								status, &hold))
	{
		case BULKOPS_HOLD_BEGUN:
			/* the first hold of a backoff; the next ones retell it */
			ereport(hold.strikes > 1 ? DEBUG1 : LOG,
					(errmsg("bulkops holds every request to target \"%s\" until %s",
							target, timestamptz_to_str(hold.until)),
					 errdetail("It answered HTTP %d, a rate or usage limit; %s.",
							   status, how)));
			*save = true;
			break;
		case BULKOPS_HOLD_EXTENDED:
			*save = true;
			break;
		case BULKOPS_HOLD_KEPT:
			break;
		case BULKOPS_HOLD_FULL:
			/* the refused batch waits all the same; the others may not */
			if (!warned_full)
				ereport(WARNING,
						(errmsg("bulkops cannot hold target \"%s\" for every worker: %d targets are held already",
								target, BULKOPS_HOLD_SLOTS),
						 errdetail("Only the batch that was refused waits until %s.",
								   timestamptz_to_str(hold.until))));
			warned_full = true;
			break;
	}
	return hold.until;
}

/*
 * A hold saved before this worker started (bulkops.target_state): held
 * again, for every worker, until it ends.
 */
void
bulkops_target_restore_hold(const char *target, TimestampTz until, int status)
{
	TimestampTz now = GetCurrentTimestamp();
	BulkopsHold held;

	if (until <= now)
		return;
	if (bulkops_hold_extend(target, now, until, status, &held) == BULKOPS_HOLD_BEGUN)
		ereport(LOG,
				(errmsg("bulkops holds every request to target \"%s\" until %s",
						target, timestamptz_to_str(held.until)),
				 errdetail("A hold saved before the worker started: it answered HTTP %d, a rate or usage limit.",
						   status)));
}

/*
 * target answered (HTTP status) without a limit: if that ends its
 * backoff, say so once.
 */
void
bulkops_target_answered(const char *target, int status)
{
	BulkopsHold was;

	if (bulkops_hold_end(target, GetCurrentTimestamp(), &was))
		ereport(LOG,
				(errmsg("bulkops sends to target \"%s\" again", target),
				 errdetail_plural("It answered HTTP %d, without a limit; its requests were held from %s, %d time.",
								  "It answered HTTP %d, without a limit; its requests were held from %s, %d times in a row.",
								  was.strikes, status,
								  timestamptz_to_str(was.since), was.strikes)));
}
