/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *	  How fast requests may go: requests per second per target (option
 *	  rate_limit), a token bucket; and how long to wait before a retry.
 *
 * Many APIs meter calls per second as well as calls in flight.  The bucket
 * holds at most one second's worth of requests, so a target idle for a
 * while may send a short burst of rate_limit requests, then one every
 * 1/rate_limit seconds.  Polls and result fetches count: the remote side
 * counts every call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"

#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "ratelimit.h"

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
