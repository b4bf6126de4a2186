/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  What the workers count about each target since the server started,
 *	  in shared memory (stats.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_STATS_H
#define BULKOPS_STATS_H

#include "datatype/timestamp.h"

#include "dialect.h"
#include "http.h"

/*
 * How many targets, of all databases together, have counters: when more
 * are in use, the one used least recently starts again at 0 (a counter
 * reset, to Prometheus).
 */
#define BULKOPS_STATS_SLOTS 256

/* The classes of HTTP answers counted, in this order. */
typedef enum BulkopsAnswerClass
{
	BULKOPS_ANSWER_2XX,
	BULKOPS_ANSWER_3XX,
	BULKOPS_ANSWER_4XX,			/* but 429 */
	BULKOPS_ANSWER_429,
	BULKOPS_ANSWER_5XX,
	BULKOPS_ANSWER_CLASSES
} BulkopsAnswerClass;

/* One target's counters and what was seen of it lately. */
typedef struct BulkopsTargetStats
{
	Oid			dboid;			/* InvalidOid: a free slot */
	char		target[NAMEDATALEN];	/* a target's name has 63 bytes at
										 * most */
	TimestampTz used_at;
	uint64		requests;		/* sent, token fetches apart */
	uint64		answers[BULKOPS_ANSWER_CLASSES];
	uint64		timeouts;		/* requests that ran out of http_timeout */
	uint64		failures;		/* other transport failures: no answer */
	uint64		retries;		/* requests to be repeated after a failure */
	uint64		token_fetches;	/* OAuth token requests */
	uint64		token_failures; /* ... that got no token */
	bool		token_failed;	/* the last one got none */
	TimestampTz token_at;		/* when the last one ended */

} BulkopsTargetStats;

/* shared memory: bulkops.c's hooks */
extern Size bulkops_stats_shmem_size(void);
extern void bulkops_stats_shmem_request(void);
extern void bulkops_stats_shmem_init(void);

/* the worker */
extern void bulkops_stats_request(const char *target, bool token);
extern void bulkops_stats_answer(const char *target,
								 const BulkopsHttpCall *call);
extern void bulkops_stats_planned(const char *target,
								  const BulkopsResult *res);
extern void bulkops_stats_token_result(const char *target, bool ok);

/* readers */
extern bool bulkops_stats_get(Oid dboid, const char *target,
							  BulkopsTargetStats *out);

#endif							/* BULKOPS_STATS_H */
