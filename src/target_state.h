/*-------------------------------------------------------------------------
 *
 * target_state.h
 *	  What the workers of a database share about each target, in shared
 *	  memory (target_state.c): until when its requests are held, and its
 *	  OAuth token.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_TARGET_STATE_H
#define BULKOPS_TARGET_STATE_H

#include "storage/lwlock.h"
#include "utils/timestamp.h"

/*
 * How many targets of all databases together may be held at once: a
 * target whose hold finds no free slot is held for the batch that was
 * refused only (ratelimit.c says so in the log).
 */
#define BULKOPS_HOLD_SLOTS 256

/*
 * How many OAuth tokens are shared, for all databases together; when
 * more are in use, the one used least recently is given up (and fetched
 * again when it is needed).
 */
#define BULKOPS_TOKEN_SLOTS 64

/* the longest access token and instance_url shared, with the NUL */
#define BULKOPS_TOKEN_MAX 8192
#define BULKOPS_INSTANCE_URL_MAX 2048
#define BULKOPS_TOKEN_ERROR_MAX 1024

/* a token slot's key: SHA-256 of the target's name, url and auth */
#define BULKOPS_TOKEN_KEY_LEN 32

/* What came of a hold asked for (bulkops_hold_extend). */
typedef enum BulkopsHoldChange
{
	BULKOPS_HOLD_BEGUN,			/* the target was not held: now it is */
	BULKOPS_HOLD_EXTENDED,		/* it was held, now until later */
	BULKOPS_HOLD_KEPT,			/* it was held at least that long already */
	BULKOPS_HOLD_FULL			/* no slot was free: nothing is held */
} BulkopsHoldChange;

/* A target's hold, as it stood. */
typedef struct BulkopsHold
{
	TimestampTz until;			/* no request before then */
	TimestampTz since;			/* when the first hold of those in a row began */
	int			status;			/* the HTTP status that began it */
	int			strikes;		/* holds begun since the target last answered
								 * without a limit */
	bool		limited;		/* a backoff began, and no answer without a
								 * limit has ended it since */
} BulkopsHold;

/*
 * One shared OAuth token, for one target, target url and auth, with the
 * state of its fetch.  Read and written under the lock
 * (bulkops_target_state_lock) only.
 */
typedef struct BulkopsTokenSlot
{
	Oid			dboid;			/* InvalidOid: a free slot */
	uint8		key[BULKOPS_TOKEN_KEY_LEN];
	TimestampTz last_used;

	/* the token: "" when there is none (not yet, dropped, expired) */
	char		token[BULKOPS_TOKEN_MAX];
	char		instance_url[BULKOPS_INSTANCE_URL_MAX]; /* "": the target's */
	TimestampTz expires_at;		/* 0: until a 401 says otherwise */
	uint64		serial;			/* which token it is, unique in the server */

	/* its fetch: at most one at a time, by one worker */
	int			fetcher;		/* that worker's pid, or 0 */
	TimestampTz fetch_deadline; /* after then, another may take over */
	uint32		gen;			/* fetches ended so far */
	int			failures;		/* consecutive transient failures */
	TimestampTz retry_at;		/* no fetch before then (after a permanent
								 * failure, a batch that asks fails) */
	bool		permanent;		/* error: retrying would not help */
	char		error[BULKOPS_TOKEN_ERROR_MAX]; /* the last failure, or "" */
} BulkopsTokenSlot;

/* shared memory: bulkops.c's hooks */
extern Size bulkops_target_state_shmem_size(void);
extern void bulkops_target_state_shmem_request(void);
extern void bulkops_target_state_shmem_init(void);
extern void bulkops_target_state_lock(LWLockMode mode);
extern void bulkops_target_state_unlock(void);

/* holds (ratelimit.c) */
extern bool bulkops_hold_get(const char *target, BulkopsHold *hold);
extern BulkopsHoldChange bulkops_hold_extend(const char *target,
											 TimestampTz now,
											 TimestampTz until, int status,
											 BulkopsHold *held);
extern bool bulkops_hold_end(const char *target, TimestampTz now,
							 BulkopsHold *was);

/* tokens (oauth_cache.c), under the lock */
extern BulkopsTokenSlot *bulkops_token_slot(const uint8 *key, TimestampTz now,
											bool create);
extern uint64 bulkops_token_next_serial(void);
extern void bulkops_token_wipe(BulkopsTokenSlot *slot);
extern void bulkops_token_fetches_end(int pid);

#endif							/* BULKOPS_TARGET_STATE_H */
