/*-------------------------------------------------------------------------
 *
 * sync_state.h
 *	  What a sync knows of the keys it pushed, in memory (sync_state.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_SYNC_STATE_H
#define BULKOPS_SYNC_STATE_H

#include "receipts.h"

/* A key's last push did not succeed: send it again. */
#define SYNC_KEY_RETRY 0x01

/* One key, as a run sees it. */
typedef struct SyncEntry
{
	const char *key;
	uint32		hashkey;		/* simplehash's: the hash of key */
	char		status;			/* simplehash's */
	uint8		flags;			/* SYNC_KEY_RETRY */
	bool		stored;			/* pushed successfully once: in the state */
	bool		seen;			/* in this run's source */
	uint64		hash;			/* content hash of its last successful push */
} SyncEntry;

typedef struct SyncState SyncState;

extern SyncState *bulkops_sync_state_create(MemoryContext cxt);
extern void bulkops_sync_state_add(SyncState *s, const char *key, uint64 hash,
								   uint8 flags);
extern SyncEntry *bulkops_sync_state_find(SyncState *s, const char *key);
extern SyncEntry *bulkops_sync_state_insert(SyncState *s, const char *key);
extern void bulkops_sync_state_fold(SyncState *s, BulkopsOp op,
									char **keys, const uint8 *outcomes,
									const uint8 *hashes, int nrows);
extern int64 bulkops_sync_state_count(SyncState *s);
extern bool bulkops_sync_state_changed(SyncState *s);

/* every stored entry, in no order: begin, then next until NULL */
extern void bulkops_sync_state_begin(SyncState *s);
extern SyncEntry *bulkops_sync_state_next(SyncState *s);

extern uint64 bulkops_sync_read_hash(const uint8 *p);
extern void bulkops_sync_write_hash(uint8 *p, uint64 hash);

#endif							/* BULKOPS_SYNC_STATE_H */
