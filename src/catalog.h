/*-------------------------------------------------------------------------
 *
 * catalog.h
 *	  Every statement on bulkops' own tables, named by what it does
 *	  (catalog.c: the worker's, on jobs, batches and receipts;
 *	  catalog_jobs.c: the backends' on jobs and batches; catalog_exports.c:
 *	  the worker's on an export's counters, rejects and staged pages;
 *	  catalog_targets.c: targets and their grants; catalog_metrics.c: what
 *	  monitoring reads and the worker's fold of the row counters).
 *
 * The worker's functions run inside its transaction (exec.c), with the
 * worker session's fixed settings; what they return lives in SPI's
 * context until that transaction ends.  The backends' functions run in
 * the caller's transaction and enter the section their statement needs
 * (owner.c) themselves: an owner section to write, a safe section to read
 * as the caller.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_CATALOG_H
#define BULKOPS_CATALOG_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include "dialect.h"
#include "receipts.h"

/* ---- the worker: claiming and recovering batches ---- */

/* A target with unfinished jobs. */
typedef struct BulkopsQueuedTarget
{
	char	   *target;
	int			concurrency;	/* the target's, or 0 for the setting's */
} BulkopsQueuedTarget;

/* A job a claim may serve, with its lowest runnable batches. */
typedef struct BulkopsCandidate
{
	int64		job_id;
	int64		generation;		/* its batches' partition */
	int			concurrency;	/* the job's, or 0 for the setting's */
	int			nbatches;
	int32	   *batch_nos;		/* ascending */
} BulkopsCandidate;

/* A batch left active, as recovery finds it. */
typedef struct BulkopsActiveBatch
{
	int64		job_id;
	int32		batch_no;
	int64		generation;
	char	   *dialect;
	BulkopsOp	op;
	int			step;
	bool		maybe_applied;
} BulkopsActiveBatch;

/* A job whose batches must stop. */
typedef struct BulkopsStoppedJob
{
	int64		job_id;
	bool		timed_out;
} BulkopsStoppedJob;

extern BulkopsQueuedTarget *bulkops_catalog_queued_targets(int *n,
														   Datum *generations);
extern BulkopsCandidate *bulkops_catalog_next_jobs(const char *target,
												   Datum generations,
												   int njobs, int nbatches,
												   const int64 *exclude,
												   int nexclude, int *n);
extern bool bulkops_catalog_lock_job(int64 job_id, bool skip_locked);
extern bool bulkops_catalog_take_batch(int64 job_id, int32 batch_no,
									   int64 generation, int lane,
									   bool resume, HeapTuple *row,
									   TupleDesc *desc);
extern bool bulkops_catalog_target_now(const char *target, HeapTuple *row,
									   TupleDesc *desc);
extern void bulkops_catalog_job_served(int64 job_id);
extern bool bulkops_catalog_batch_receipts(int64 job_id, int32 batch_no,
										   int64 generation, HeapTuple *row,
										   TupleDesc *desc);
extern BulkopsActiveBatch *bulkops_catalog_active_batches(int lane, int lanes,
														  int *n);
extern void bulkops_catalog_requeue_batch(int64 job_id, int32 batch_no,
										  int64 generation);
extern int64 *bulkops_catalog_expired_jobs(int *n);
extern BulkopsStoppedJob *bulkops_catalog_cancelled_jobs(int *n);

/* ---- the worker: storing what an answer meant ---- */

extern void bulkops_catalog_mark_maybe_applied(int64 job_id, int32 batch_no,
											   int64 generation);
extern void bulkops_catalog_count_outcomes(int64 job_id, const int64 *counts,
										   const char *error_codes);
extern void bulkops_catalog_save_progress(int64 job_id, int32 batch_no,
										  int64 generation,
										  const char *progress);
extern void bulkops_catalog_save_step(int64 job_id, int32 batch_no,
									  int64 generation, int step,
									  const char *remote_id, int attempts,
									  const char *error, const char *step_data,
									  bool maybe_applied,
									  const BulkopsReceiptSet *receipts);
extern void bulkops_catalog_close_batch(int64 job_id, int32 batch_no,
										int64 generation,
										const char *last_error,
										int http_status,
										const BulkopsReceiptSet *receipts,
										bool all_succeeded);
extern int	bulkops_catalog_purge_expired(int retention_s, int limit);

/* ---- the worker: the partitions of bulkops.batches (catalog_partitions.c) ---- */

/* A partition of bulkops.batches. */
typedef struct BulkopsPartition
{
	char	   *name;			/* in schema bulkops */
	bool		is_default;
	int64		generation;		/* of a partition that is not the default */
	bool		has_jobs;		/* jobs of its generation remain */
	bool		has_live_jobs;	/* ... some not expired */
	int64		bytes;			/* with its TOAST table and indexes */
} BulkopsPartition;

extern int64 bulkops_generation_at(TimestampTz t);
extern BulkopsPartition *bulkops_catalog_partitions(int retention_s, int *n);
extern void bulkops_catalog_create_partition(int64 generation);
extern bool bulkops_catalog_empty_partition(const BulkopsPartition *p,
											int retention_s);
extern void bulkops_catalog_drop_partition(const BulkopsPartition *p);

/* ---- the worker: what an export keeps (catalog_exports.c) ---- */

extern void bulkops_catalog_count_export(int64 job_id, int64 total,
										 int64 stored, int64 rejected,
										 Oid relid);
extern int64 bulkops_catalog_export_received(int64 job_id);
extern bool bulkops_catalog_export_stopped(int64 job_id);
extern void bulkops_catalog_insert_rejects(int64 job_id, Datum row_nos,
										   Datum lines, Datum columns,
										   Datum sqlstates, Datum reasons);
extern void bulkops_catalog_stage_page(int64 job_id, int64 first_row,
									   bytea *body);
extern bytea *bulkops_catalog_next_staged_page(int64 job_id, int64 after,
											   int64 *first_row);
extern void bulkops_catalog_drop_staged_pages(int64 job_id);

/* ---- the worker: targets held for a limit (catalog_target_state.c) ---- */

/* A hold saved in bulkops.target_state. */
typedef struct BulkopsSavedHold
{
	char	   *target;
	TimestampTz until;
	int			http_status;
} BulkopsSavedHold;

extern void bulkops_catalog_save_target_hold(const char *target,
											 TimestampTz until,
											 int http_status);
extern BulkopsSavedHold *bulkops_catalog_target_holds(int *n);

/* ---- jobs: both sides ---- */

extern bool bulkops_catalog_finish_job(int64 job_id);
extern bool bulkops_catalog_cancel_queued(int64 job_id, bool timed_out);

/* ---- backends: jobs (catalog_jobs.c) ---- */

/* A job as the caller sees it (row-level security applies). */
typedef struct BulkopsJobStatus
{
	bool		found;
	bool		this_xact;		/* created by the calling transaction */
	char	   *state;
	int64		total;
	int64		done;
} BulkopsJobStatus;

extern BulkopsJobStatus bulkops_catalog_read_job(int64 job_id);
extern bool bulkops_catalog_cancel_job(int64 job_id);
extern int64 bulkops_catalog_insert_job(const char *target,
										const char *dialect, BulkopsOp op,
										const char *key, Jsonb *options,
										int32 sync_id);
extern void bulkops_catalog_insert_batch(int64 job_id, int32 batch_no,
										 int64 first_row, int nrows,
										 Datum keys, Datum offsets,
										 Datum body, BulkopsOp op,
										 bytea *prologue, Datum hashes);
extern void bulkops_catalog_close_job(int64 job_id, int64 rows,
									  int32 batches, int64 bytes,
									  bytea *prologue);
extern void bulkops_catalog_insert_export(int64 job_id, Oid relid,
										  const char *schema,
										  const char *table, bytea *query);
typedef void (*BulkopsVersionFn) (void *arg, const char *key,
								  const char *version);
extern void bulkops_catalog_remote_versions(const char *target,
											BulkopsVersionFn fn, void *arg);

/* ---- backends: targets and grants (catalog_targets.c) ---- */

extern uint64 bulkops_catalog_run_as_owner(const char *sql, int nargs,
										   Oid *types, Datum *values,
										   const char *nulls, int expect);

/* A target's row, as much of it as the caller asked for. */
typedef struct BulkopsTargetRow
{
	char	   *dialect;
	char	   *url;
	char	   *resource;
	Jsonb	   *auth;
	Jsonb	   *options;
	Oid			owner;
} BulkopsTargetRow;

extern bool bulkops_catalog_target_exists(const char *name);
extern bool bulkops_catalog_read_target(const char *name, bool for_update,
										BulkopsTargetRow *row);
extern void bulkops_catalog_insert_target(const char *name,
										  const char *dialect,
										  const char *url,
										  const char *resource, Jsonb *auth,
										  Jsonb *options, Oid owner);
extern void bulkops_catalog_update_target(const char *name, const char *url,
										  const char *resource, Jsonb *auth,
										  Jsonb *options, Oid auth_set_by);
extern bool bulkops_catalog_target_busy(const char *name);
extern void bulkops_catalog_delete_target(const char *name);
extern List *bulkops_catalog_granted(const char *target, Oid role);
extern void bulkops_catalog_grant(const char *target, Oid grantee,
								  const char *privilege, Oid grantor,
								  bool grant);

/* ---- backends: syncs, their state, and jobs read back (catalog_syncs.c) ---- */

typedef struct BulkopsSyncRow
{
	int32		id;
	char	   *name;
	char	   *target;
	char	   *mode;
	char	   *source;
	char	   *key;
	Jsonb	   *options;
	Oid			owner;
	int64		folded_through;
} BulkopsSyncRow;

struct SyncState;

extern bool bulkops_catalog_read_sync(const char *name, bool for_update,
									  BulkopsSyncRow *row);
extern void bulkops_catalog_insert_sync(const char *name, const char *target,
										const char *mode, const char *source,
										const char *key, Jsonb *options,
										Oid owner);
extern void bulkops_catalog_update_sync(int32 id, const char *source,
										const char *key, const char *mode,
										Jsonb *options, bool forget_state);
extern void bulkops_catalog_delete_sync(int32 id);
extern int64 bulkops_catalog_sync_busy(int32 id);
extern void bulkops_catalog_sync_ran(int32 id, int64 job_id,
									 const int64 *counts);
extern void bulkops_catalog_load_sync_state(int32 id, struct SyncState *s);
extern void bulkops_catalog_save_sync_state(int32 id, struct SyncState *s,
											int64 folded_through);
extern int64 *bulkops_catalog_sync_jobs_to_fold(int32 id, int64 folded_through,
												int *n, int64 **generations);

/*
 * A condition on job j (an alias of bulkops.jobs): it is a sync's, and its
 * receipts are not in the sync's stored state yet, so retention keeps it.
 */
#define BULKOPS_SQL_UNFOLDED \
	"(j.sync_id IS NOT NULL AND j.id > (SELECT s.folded_through" \
	" FROM bulkops.syncs s WHERE s.id = j.sync_id))"

/* A job read back for bulkops.retry() (the caller may see it: checked). */
typedef struct BulkopsJobRow
{
	int64		id;
	char	   *state;
	char	   *target;
	char	   *dialect;
	BulkopsOp	op;
	char	   *key;
	Jsonb	   *options;
	bytea	   *prologue;		/* NULL: none */
	int64		generation;
	int32		sync_id;		/* 0: none */
	int			ops;			/* its batches' operations, 1 << op each */
} BulkopsJobRow;

extern void bulkops_catalog_job_row(int64 job_id, BulkopsJobRow *row);
extern void bulkops_catalog_each_batch(int64 job_id, int64 generation,
									   const char *columns,
									   void (*fn) (void *arg, HeapTuple tup,
												   TupleDesc desc),
									   void *arg);

/* ---- monitoring (catalog_metrics.c) ---- */

struct BulkopsJobSummary;

/* A job's progress, as bulkops.job_progress shows it. */
typedef struct BulkopsJobProgress
{
	int64		done;
	int64		total;
	double		rate;			/* rows per second over the last minute; < 0:
								 * unknown */
	TimestampTz eta;			/* 0: unknown */
} BulkopsJobProgress;

extern int64 bulkops_catalog_fold_row_counts(void);
extern List *bulkops_catalog_owned_targets(void);
extern bool bulkops_catalog_job_summary(int64 job_id,
										struct BulkopsJobSummary *summary);
extern bool bulkops_catalog_job_progress(int64 job_id, BulkopsJobProgress *p);

#endif							/* BULKOPS_CATALOG_H */
