/*-------------------------------------------------------------------------
 *
 * enqueue.h
 *	  Turning a source into a job (enqueue.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_ENQUEUE_H
#define BULKOPS_ENQUEUE_H

#include "utils/jsonb.h"

#include "batch_writer.h"
#include "dialect.h"

typedef struct BulkopsEnqueue BulkopsEnqueue;

/*
 * What decides which source rows are sent (a sync): begin sees the
 * dialect and the job's options before the first row; row sees each row's
 * key and encoding, says whether to send it and sets its content hash;
 * after may add rows once the source is done (bulkops_enqueue_key_row).
 */
typedef struct BulkopsRowFilter
{
	void		(*begin) (void *arg, const BulkopsDialect *dialect,
						  Jsonb *options);
	bool		(*row) (void *arg, const char *key, const char *data, int len,
						int64 source_row, uint64 *hash);
	void		(*after) (void *arg, BulkopsEnqueue *e);
	void	   *arg;
} BulkopsRowFilter;

/* A run of a source. */
typedef struct BulkopsEnqueueSpec
{
	const char *target;
	BulkopsOp	op;
	const char *source;			/* a table or view name, or a query */
	const char *key;			/* key column, or NULL */
	Jsonb	   *options;		/* the job's own, or NULL */
	const BulkopsRowFilter *filter; /* NULL: every row */
	BulkopsRowSink sink;		/* a preview: rows go here, no job */
	void	   *sink_arg;
	int32		sync_id;		/* the sync it runs for, or 0 */
} BulkopsEnqueueSpec;

extern int64 bulkops_enqueue_run(const BulkopsEnqueueSpec *spec, int64 *sent);
extern BulkopsBatchWriter *bulkops_enqueue_writer(const BulkopsDialect *d,
												  Jsonb *options,
												  MemoryContext cxt);
extern void bulkops_enqueue_key_row(BulkopsEnqueue *e, BulkopsOp op,
									const char *key, uint64 hash);

#endif							/* BULKOPS_ENQUEUE_H */
