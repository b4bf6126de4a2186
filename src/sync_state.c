/*-------------------------------------------------------------------------
 *
 * sync_state.c
 *	  What a sync knows of the keys it pushed, in memory while it runs: a
 *	  hash table from each key to the content hash of its last successful
 *	  push, and whether its last push did not succeed.
 *
 * A run loads the stored state (bulkops.sync_state, chunks of keys:
 * catalog_syncs.c), folds in the receipts of the sync's jobs that are not
 * in it yet, then looks up every source row's key once.  Memory: the
 * table and the keys' text, in the context given at creation, about 40
 * bytes per key and the key; nothing is written from here.
 *
 * Folding a job's rows (in job order, so the last word wins):
 *	- a succeeded upsert, insert or update stores the row's content hash,
 *	  and the key is pushed as it is now;
 *	- a succeeded delete forgets the key;
 *	- any other outcome marks a stored key to be sent again (its delete,
 *	  if it is still gone), and leaves a key the sync never pushed
 *	  successfully unknown, so that a mirror never deletes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/memutils.h"

#include "sync_state.h"

#define SH_PREFIX synctab
#define SH_ELEMENT_TYPE SyncEntry
#define SH_KEY_TYPE const char *
#define SH_KEY key
#define SH_HASH_KEY(tb, k) hash_bytes((const unsigned char *) (k), strlen(k))
#define SH_EQUAL(tb, a, b) (strcmp(a, b) == 0)
#define SH_SCOPE static inline
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) a->hashkey
#define SH_DEFINE
#define SH_DECLARE
#include "lib/simplehash.h"

struct SyncState
{
	MemoryContext cxt;
	MemoryContext keys_cxt;		/* the keys' text */
	synctab_hash *tab;
	synctab_iterator iter;
	bool		changed;		/* a fold changed what is stored */
};

SyncState *
bulkops_sync_state_create(MemoryContext cxt)
{
	SyncState  *s = MemoryContextAllocZero(cxt, sizeof(SyncState));

	s->cxt = cxt;
	s->keys_cxt = AllocSetContextCreate(cxt, "bulkops sync keys",
										ALLOCSET_DEFAULT_SIZES);
	s->tab = synctab_create(cxt, 1024, NULL);
	return s;
}

/* Little-endian 8 bytes, as batches and the stored state keep hashes. */
uint64
bulkops_sync_read_hash(const uint8 *p)
{
	uint64		h = 0;
	int			b;

	for (b = 7; b >= 0; b--)
		h = (h << 8) | p[b];
	return h;
}

void
bulkops_sync_write_hash(uint8 *p, uint64 hash)
{
	int			b;

	for (b = 0; b < 8; b++)
		p[b] = (uint8) (hash >> (8 * b));
}

SyncEntry *
bulkops_sync_state_find(SyncState *s, const char *key)
{
	return synctab_lookup(s->tab, key);
}

/* key's entry, made (not stored, not seen) if it has none. */
SyncEntry *
bulkops_sync_state_insert(SyncState *s, const char *key)
{
	SyncEntry  *e = synctab_lookup(s->tab, key);
	bool		found;

	if (e)
		return e;
	e = synctab_insert(s->tab, MemoryContextStrdup(s->keys_cxt, key), &found);
	e->flags = 0;
	e->stored = false;
	e->seen = false;
	e->hash = 0;
	return e;
}

/* A key of the stored state. */
void
bulkops_sync_state_add(SyncState *s, const char *key, uint64 hash, uint8 flags)
{
	SyncEntry  *e = bulkops_sync_state_insert(s, key);

	e->stored = true;
	e->hash = hash;
	e->flags = flags;
}

/*
 * Fold in the rows of one batch of a finished job of the sync: its
 * operation, keys, outcome bytes (receipts.c's format) and content hashes
 * (8 bytes each).
 */
void
bulkops_sync_state_fold(SyncState *s, BulkopsOp op, char **keys,
						const uint8 *outcomes, const uint8 *hashes, int nrows)
{
	int			i;

	for (i = 0; i < nrows; i++)
	{
		bool		succeeded = outcomes &&
		BULKOPS_RECEIPT_STATUS(outcomes[i]) == BULKOPS_ROW_SUCCEEDED;
		SyncEntry  *e;

		if (keys[i] == NULL)
			continue;
		if (succeeded && op == BULKOPS_OP_DELETE)
		{
			if (synctab_delete(s->tab, keys[i]))
				s->changed = true;
			continue;
		}
		if (succeeded)
		{
			e = bulkops_sync_state_insert(s, keys[i]);
			e->stored = true;
			e->flags = 0;
			e->hash = hashes ? bulkops_sync_read_hash(hashes + 8 * i) : 0;
			s->changed = true;
			continue;
		}
		e = synctab_lookup(s->tab, keys[i]);
		if (e && e->stored && !(e->flags & SYNC_KEY_RETRY))
		{
			e->flags |= SYNC_KEY_RETRY;
			s->changed = true;
		}
	}
}

/* The number of stored keys. */
int64
bulkops_sync_state_count(SyncState *s)
{
	SyncEntry  *e;
	int64		n = 0;

	bulkops_sync_state_begin(s);
	while ((e = bulkops_sync_state_next(s)) != NULL)
		n++;
	return n;
}

bool
bulkops_sync_state_changed(SyncState *s)
{
	return s->changed;
}

void
bulkops_sync_state_begin(SyncState *s)
{
	synctab_start_iterate(s->tab, &s->iter);
}

/* The next stored entry, or NULL. */
SyncEntry *
bulkops_sync_state_next(SyncState *s)
{
	SyncEntry  *e;

	while ((e = synctab_iterate(s->tab, &s->iter)) != NULL)
		if (e->stored)
			return e;
	return NULL;
}
