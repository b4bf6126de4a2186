/*-------------------------------------------------------------------------
 *
 * target_state.h
 *	  What the workers of a database share about each target, in shared
 *	  memory (target_state.c): until when its requests are held.
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

#endif							/* BULKOPS_TARGET_STATE_H */
