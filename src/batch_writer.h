/*-------------------------------------------------------------------------
 *
 * batch_writer.h
 *	  Cutting a job's encoded rows into batches and writing them
 *	  (batch_writer.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_BATCH_WRITER_H
#define BULKOPS_BATCH_WRITER_H

#include "lib/stringinfo.h"

#include "dialect.h"

typedef struct BulkopsBatchWriter BulkopsBatchWriter;

/*
 * Where a writer hands each row instead of writing batches (a preview):
 * its number, key (or NULL), operation and encoding.
 */
typedef void (*BulkopsRowSink) (void *arg, int64 row_no, const char *key,
								BulkopsOp op, const char *data, int len);

extern BulkopsBatchWriter *bulkops_writer_create(int64 job_id,
												 const BulkopsDialect *dialect,
												 int batch_size,
												 int batch_bytes,
												 MemoryContext cxt);
extern void bulkops_writer_on_first_batch(BulkopsBatchWriter *w,
										  int64 (*make_job) (void *arg),
										  void *arg);
extern void bulkops_writer_set_job(BulkopsBatchWriter *w, int64 job_id);
extern void bulkops_writer_emit_to(BulkopsBatchWriter *w, BulkopsRowSink sink,
								   void *arg);
extern void bulkops_writer_keep_hashes(BulkopsBatchWriter *w);
extern void bulkops_writer_set_op(BulkopsBatchWriter *w, BulkopsOp op,
								  const StringInfo prologue, bool own_prologue);
extern StringInfo bulkops_writer_row_begin(BulkopsBatchWriter *w);
extern const char *bulkops_writer_row_data(BulkopsBatchWriter *w, int *len);
extern void bulkops_writer_row_end(BulkopsBatchWriter *w, const char *key,
								   uint64 hash, int64 source_row);
extern void bulkops_writer_row_drop(BulkopsBatchWriter *w);
extern void bulkops_writer_add_row(BulkopsBatchWriter *w, const char *key,
								   const char *data, int len, uint64 hash);
extern void bulkops_writer_finish(BulkopsBatchWriter *w);
extern int64 bulkops_writer_rows(const BulkopsBatchWriter *w);
extern int64 bulkops_writer_bytes(const BulkopsBatchWriter *w);
extern int32 bulkops_writer_batches(const BulkopsBatchWriter *w);

#endif							/* BULKOPS_BATCH_WRITER_H */
