/*-------------------------------------------------------------------------
 *
 * target_state.c
 *	  What the workers of a database share about each target, in shared
 *	  memory: until when its requests are held (the remote side asked to be
 *	  left alone: a rate or usage limit), and its OAuth token.
 *
 * Two fixed-size tables under one LWLock.  Every critical section is a
 * scan of a few hundred slots and some copies: nothing under the lock
 * allocates, raises an error or waits for anything else.  What the slots
 * mean is decided above: ratelimit.c holds and releases targets,
 * oauth_cache.c fetches, shares and drops tokens.  A slot belongs to a
 * database (targets are rows of each database's bulkops.targets), and the
 * tables are sized for all databases together: BULKOPS_HOLD_SLOTS and
 * BULKOPS_TOKEN_SLOTS.  A hold that finds no free slot is not kept (the
 * caller then holds only the batch that was refused, and says so); a
 * token that finds none takes the slot used least recently whose fetch is
 * not under way.
 *
 * Shared memory is reset by a crash of any server process, so a hold is
 * also saved in bulkops.target_state (worker.c) and read back when a
 * worker starts; a token is simply fetched again.
 *
 * Secrets: a token here is as sensitive as the process memory that held
 * it before tokens were shared (each worker's own cache), and no more
 * exposed: shared memory belongs to the server's processes, like their
 * private memory, and is readable by the same operating system user only.
 * A token is wiped (explicit_bzero, the whole buffer) when it is dropped,
 * replaced, expires or its slot is taken for another.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "target_state.h"

#define TRANCHE_NAME "bulkops target state"

/* One target's hold. */
typedef struct HoldSlot
{
	Oid			dboid;			/* InvalidOid: a free slot */
	char		target[NAMEDATALEN];
	BulkopsHold hold;
} HoldSlot;

typedef struct TargetState
{
	LWLock	   *lock;
	uint64		last_serial;	/* of the last token stored */
	HoldSlot	holds[BULKOPS_HOLD_SLOTS];
	BulkopsTokenSlot tokens[BULKOPS_TOKEN_SLOTS];
} TargetState;

static TargetState *state = NULL;

/* ---- shared memory ---- */

Size
bulkops_target_state_shmem_size(void)
{
	return MAXALIGN(sizeof(TargetState));
}

/* In the shmem_request hook: the lock. */
void
bulkops_target_state_shmem_request(void)
{
	RequestNamedLWLockTranche(TRANCHE_NAME, 1);
}

/* In the shmem_startup hook, holding AddinShmemInitLock. */
void
bulkops_target_state_shmem_init(void)
{
	bool		found;

	state = ShmemInitStruct("bulkops target state", sizeof(TargetState), &found);
	if (!found)
	{
		memset(state, 0, sizeof(TargetState));
		state->lock = &(GetNamedLWLockTranche(TRANCHE_NAME))->lock;
	}
}

void
bulkops_target_state_lock(LWLockMode mode)
{
	if (state == NULL)
		elog(ERROR, "bulkops: shared memory is not set up (was the library preloaded?)");
	LWLockAcquire(state->lock, mode);
}

void
bulkops_target_state_unlock(void)
{
	LWLockRelease(state->lock);
}

/* ---- holds ---- */

/* target's hold slot in this database, or NULL; under the lock */
static HoldSlot *
find_hold(const char *target)
{
	int			i;

	for (i = 0; i < BULKOPS_HOLD_SLOTS; i++)
	{
		HoldSlot   *s = &state->holds[i];

		if (s->dboid == MyDatabaseId && strcmp(s->target, target) == 0)
			return s;
	}
	return NULL;
}

/*
 * A slot for target, under the exclusive lock: a free one, else one whose
 * hold is over and ended (its target answered normally since), else the
 * one whose hold ended longest ago; NULL when every target is held now.
 */
static HoldSlot *
new_hold(const char *target, TimestampTz now)
{
	HoldSlot   *best = NULL;
	int			i;

	if (strlen(target) >= NAMEDATALEN)
		return NULL;			/* target names are shorter */
	for (i = 0; i < BULKOPS_HOLD_SLOTS; i++)
	{
		HoldSlot   *s = &state->holds[i];

		if (s->dboid == InvalidOid)
		{
			best = s;
			break;
		}
		if (s->hold.until > now)
			continue;
		if (best == NULL ||
			(best->hold.limited && !s->hold.limited) ||
			(best->hold.limited == s->hold.limited && s->hold.until < best->hold.until))
			best = s;
	}
	if (best)
	{
		memset(best, 0, sizeof(HoldSlot));
		best->dboid = MyDatabaseId;
		strlcpy(best->target, target, NAMEDATALEN);
	}
	return best;
}

/* target's hold in this database, if it has a slot. */
bool
bulkops_hold_get(const char *target, BulkopsHold *hold)
{
	HoldSlot   *s;

	bulkops_target_state_lock(LW_SHARED);
	s = find_hold(target);
	if (s)
		*hold = s->hold;
	bulkops_target_state_unlock();
	return s != NULL;
}

/*
 * Hold every request to target until then, for a limit the remote side
 * answered with status at now: a hold begins if the target was not held
 * at now, else it only ever grows longer.  *held is the hold as it is
 * now (when no slot was free, as it would have begun).
 */
BulkopsHoldChange
bulkops_hold_extend(const char *target, TimestampTz now, TimestampTz until,
					int status, BulkopsHold *held)
{
	HoldSlot   *s;
	BulkopsHoldChange change;

	bulkops_target_state_lock(LW_EXCLUSIVE);
	s = find_hold(target);
	if (s == NULL)
		s = new_hold(target, now);
	if (s == NULL)
		change = BULKOPS_HOLD_FULL;
	else if (s->hold.until <= now)
	{
		/* backoffs in a row, with no normal answer between, grow */
		s->hold.strikes = s->hold.limited ? s->hold.strikes + 1 : 1;
		if (!s->hold.limited)
			s->hold.since = now;
		s->hold.limited = true;
		s->hold.status = status;
		s->hold.until = until;
		change = BULKOPS_HOLD_BEGUN;
	}
	else if (until > s->hold.until)
	{
		s->hold.until = until;
		change = BULKOPS_HOLD_EXTENDED;
	}
	else
		change = BULKOPS_HOLD_KEPT;
	if (s)
		*held = s->hold;
	else
	{
		memset(held, 0, sizeof(*held));
		held->until = until;
		held->since = now;
		held->status = status;
		held->strikes = 1;
		held->limited = true;
	}
	bulkops_target_state_unlock();
	return change;
}

/*
 * target answered without a limit at now: end its backoff, if it was in
 * one that is over.  True (with the hold as it was in *was) for the one
 * caller that ended it.  An answer to a request sent before a hold began
 * says nothing about it: while the hold lasts, it stands.
 */
bool
bulkops_hold_end(const char *target, TimestampTz now, BulkopsHold *was)
{
	HoldSlot   *s;
	bool		ended = false;

	/* the usual case, on every answer: nothing to end */
	bulkops_target_state_lock(LW_SHARED);
	s = find_hold(target);
	ended = s != NULL && s->hold.limited;
	bulkops_target_state_unlock();
	if (!ended)
		return false;

	bulkops_target_state_lock(LW_EXCLUSIVE);
	s = find_hold(target);
	ended = s != NULL && s->hold.limited && s->hold.until <= now;
	if (ended)
	{
		*was = s->hold;
		s->hold.limited = false;
		s->hold.strikes = 0;
	}
	bulkops_target_state_unlock();
	return ended;
}

/* ---- tokens (the caller holds the lock) ---- */

/* Wipe slot's token, every byte of its buffer. */
void
bulkops_token_wipe(BulkopsTokenSlot *slot)
{
	explicit_bzero(slot->token, sizeof(slot->token));
	slot->instance_url[0] = '\0';
	slot->expires_at = 0;
}

/* A serial number for a new token, under the exclusive lock. */
uint64
bulkops_token_next_serial(void)
{
	return ++state->last_serial;
}

/*
 * The token slot of key in this database.  With create (and the exclusive
 * lock), one is made when there is none: a free slot, else the one used
 * least recently whose fetch is not under way (its token wiped); NULL when
 * every slot is being fetched.  Tokens past their expiry are wiped on the
 * way.
 */
BulkopsTokenSlot *
bulkops_token_slot(const uint8 *key, TimestampTz now, bool create)
{
	BulkopsTokenSlot *free_slot = NULL;
	BulkopsTokenSlot *oldest = NULL;
	BulkopsTokenSlot *best;
	int			i;

	for (i = 0; i < BULKOPS_TOKEN_SLOTS; i++)
	{
		BulkopsTokenSlot *s = &state->tokens[i];

		if (s->dboid == MyDatabaseId && memcmp(s->key, key, BULKOPS_TOKEN_KEY_LEN) == 0)
			return s;
	}
	if (!create)
		return NULL;

	for (i = 0; i < BULKOPS_TOKEN_SLOTS; i++)
	{
		BulkopsTokenSlot *s = &state->tokens[i];

		if (s->token[0] != '\0' && s->expires_at != 0 && now >= s->expires_at)
			bulkops_token_wipe(s);
		if (s->dboid == InvalidOid)
		{
			if (free_slot == NULL)
				free_slot = s;
		}
		else if ((s->fetcher == 0 || now >= s->fetch_deadline) &&
				 (oldest == NULL || s->last_used < oldest->last_used))
			oldest = s;
	}
	best = free_slot ? free_slot : oldest;
	if (best)
	{
		bulkops_token_wipe(best);
		memset(best, 0, sizeof(BulkopsTokenSlot));
		best->dboid = MyDatabaseId;
		memcpy(best->key, key, BULKOPS_TOKEN_KEY_LEN);
		/* any start: a batch's wait_gen from an earlier slot must not match */
		best->gen = (uint32) ++state->last_serial;
		best->last_used = now;
	}
	return best;
}

/*
 * Process pid is going away: its fetches will not end, so others may
 * start theirs at once.
 */
void
bulkops_token_fetches_end(int pid)
{
	int			i;

	if (state == NULL)
		return;
	if (LWLockHeldByMe(state->lock))
		LWLockRelease(state->lock);
	bulkops_target_state_lock(LW_EXCLUSIVE);
	for (i = 0; i < BULKOPS_TOKEN_SLOTS; i++)
	{
		BulkopsTokenSlot *s = &state->tokens[i];

		if (s->fetcher == pid)
		{
			s->fetcher = 0;
			s->gen++;
		}
	}
	bulkops_target_state_unlock();
}
