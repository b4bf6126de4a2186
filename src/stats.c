/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  What the workers count about each target since the server started,
 *	  in shared memory: requests sent, answers by class, timeouts and other
 *	  transport failures, retries, OAuth token fetches and their failures.
 *
 * One slot per target (of a database) that a worker sent to since the
 * server started, BULKOPS_STATS_SLOTS for all databases together; when
 * every slot is in use, the one used least recently goes to the newcomer
 * and its counters start again at 0, which Prometheus reads as a counter
 * reset.  One LWLock guards the slots: an update is a lookup among them
 * and a few additions, made a few times per request.  Workers write;
 * backends read a copy (bulkops_stats_get, for monitor.c).
 *
 * Counters since the server started suit Prometheus' counters, which
 * expect resets.  Rows by receipt status must survive restarts: they are
 * counted in a table, in the receipts' transaction (catalog.c).
 *
 * Backoff.  What monitoring shows of a target's backoff is the hold its
 * workers share (target_state.c, read by monitor.c), and the LOG lines on
 * entering and leaving it are ratelimit.c's; here only the retries are
 * counted.
 *
 * Nothing here opens a transaction or names a secret.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "stats.h"

#define TRANCHE_NAME "bulkops stats"

typedef struct StatsShared
{
	LWLock	   *lock;
	BulkopsTargetStats slots[BULKOPS_STATS_SLOTS];
} StatsShared;

static StatsShared *shared = NULL;

Size
bulkops_stats_shmem_size(void)
{
	return MAXALIGN(sizeof(StatsShared));
}

void
bulkops_stats_shmem_request(void)
{
	RequestNamedLWLockTranche(TRANCHE_NAME, 1);
}

/* In the shmem startup hook, under AddinShmemInitLock. */
void
bulkops_stats_shmem_init(void)
{
	bool		found;

	shared = ShmemInitStruct("bulkops stats", sizeof(StatsShared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(StatsShared));
		shared->lock = &(GetNamedLWLockTranche(TRANCHE_NAME))->lock;
	}
}

/*
 * The slot of target in this database, taken if it has none; under the
 * lock, held exclusively.
 */
static BulkopsTargetStats *
slot_for(const char *target, TimestampTz now)
{
	BulkopsTargetStats *free_slot = NULL;
	BulkopsTargetStats *oldest = &shared->slots[0];
	BulkopsTargetStats *s;
	int			i;

	for (i = 0; i < BULKOPS_STATS_SLOTS; i++)
	{
		s = &shared->slots[i];
		if (s->dboid == InvalidOid)
		{
			if (free_slot == NULL)
				free_slot = s;
			continue;
		}
		if (s->dboid == MyDatabaseId && strcmp(s->target, target) == 0)
		{
			s->used_at = now;
			return s;
		}
		if (s->used_at < oldest->used_at)
			oldest = s;
	}
	s = free_slot ? free_slot : oldest;
	memset(s, 0, sizeof(BulkopsTargetStats));
	s->dboid = MyDatabaseId;
	strlcpy(s->target, target, sizeof(s->target));
	s->used_at = now;
	return s;
}

/*
 * Lock the slots and return target's; NULL (and nothing locked) when the
 * library was not preloaded, so that there is no shared memory.
 */
static BulkopsTargetStats *
begin(const char *target, TimestampTz now)
{
	if (shared == NULL)
		return NULL;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	return slot_for(target, now);
}

static void
end(void)
{
	LWLockRelease(shared->lock);
}

/*
 * A request to target is on its way: one of its batches' (token false), or
 * an OAuth token fetch.
 */
void
bulkops_stats_request(const char *target, bool token)
{
	BulkopsTargetStats *s = begin(target, GetCurrentTimestamp());

	if (s == NULL)
		return;
	if (token)
		s->token_fetches++;
	else
		s->requests++;
	end();
}

/* A request to target ended: an answer, or none (call->error). */
void
bulkops_stats_answer(const char *target, const BulkopsHttpCall *call)
{
	BulkopsTargetStats *s = begin(target, GetCurrentTimestamp());
	long		st = call->status;

	if (s == NULL)
		return;
	if (call->error && call->curl_code == CURLE_OPERATION_TIMEDOUT)
		s->timeouts++;
	else if (call->error)
		s->failures++;
	else if (st == 429)
		s->answers[BULKOPS_ANSWER_429]++;
	else if (st >= 200 && st < 600)
		s->answers[BULKOPS_ANSWER_2XX + (st / 100 - 2)]++;
	end();
}

/*
 * What the worker planned after an answer to target (res, as plan.c left
 * it): a retry is counted.  A target's backoff is the hold its workers
 * share (target_state.c), which monitor.c reads.
 */
void
bulkops_stats_planned(const char *target, const BulkopsResult *res)
{
	BulkopsTargetStats *s;

	if (res->next != BULKOPS_NEXT_RETRY)
		return;
	s = begin(target, GetCurrentTimestamp());
	if (s == NULL)
		return;
	s->retries++;
	end();
}

/* A token fetch for target ended: a token (ok), or none. */
void
bulkops_stats_token_result(const char *target, bool ok)
{
	TimestampTz now = GetCurrentTimestamp();
	BulkopsTargetStats *s = begin(target, now);

	if (s == NULL)
		return;
	if (!ok)
		s->token_failures++;
	s->token_failed = !ok;
	s->token_at = now;
	end();
}

/* A copy of target's slot in database dboid, if it has one. */
bool
bulkops_stats_get(Oid dboid, const char *target, BulkopsTargetStats *out)
{
	bool		found = false;
	int			i;

	if (shared == NULL)
		return false;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (i = 0; i < BULKOPS_STATS_SLOTS && !found; i++)
		if (shared->slots[i].dboid == dboid &&
			strcmp(shared->slots[i].target, target) == 0)
		{
			*out = shared->slots[i];
			found = true;
		}
	LWLockRelease(shared->lock);
	return found;
}
