/*-------------------------------------------------------------------------
 *
 * dialect.h
 *	  The contract between bulkops' generic machinery and one remote API
 *	  family.
 *
 * A dialect is a table of functions.  It turns one source row into the
 * API's wire encoding (at enqueue, in the caller's backend), turns a batch
 * into the next HTTP request, and turns each HTTP answer into per-row
 * outcomes or the next step.  It never touches SPI, tables, latches or
 * curl: it sees plain C structs and palloc'd memory in the caller's
 * current memory context, and reports bad input with ereport(ERROR).
 *
 * The worker owns persistence and retry.  While a remote step is under way
 * the set of pending rows does not change: outcomes land only when a step
 * ends.  So a dialect may map the n-th operation of a request to the n-th
 * pending row, at submit time and when it reads the answer.
 *
 * A batch is a list of encoded rows plus a persisted (step, remote_id)
 * pair.  Step 0 always means "submit the rows that have no outcome yet";
 * the meaning of every other step belongs to the dialect.  The worker
 * persists a new step and remote_id before it acts on them, so a dialect
 * must be able to resume a batch from (step, remote_id) alone after a
 * crash.
 *
 * A new dialect is one file here, one line in src/dialects/registry.c, a
 * mock module and a regress suite: see docs/adding-a-dialect.md.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_DIALECT_H
#define BULKOPS_DIALECT_H

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#include "encode.h"
#include "json_out.h"

typedef enum BulkopsOp
{
	BULKOPS_OP_INSERT,
	BULKOPS_OP_UPDATE,
	BULKOPS_OP_UPSERT,
	BULKOPS_OP_DELETE,
	BULKOPS_OP_OVERWRITE,
	BULKOPS_OP_QUERY,			/* export: rows come back, into a local table */
	BULKOPS_NUM_OPS
} BulkopsOp;

typedef enum BulkopsRowStatus
{
	BULKOPS_ROW_SUCCEEDED,
	BULKOPS_ROW_FAILED,
	BULKOPS_ROW_CANCELLED,
	BULKOPS_ROW_UNKNOWN
} BulkopsRowStatus;

/* The final outcome of one row, as a dialect learned it from an answer. */
typedef struct BulkopsOutcome
{
	int			row;			/* index within the batch, from 0 */
	BulkopsRowStatus status;
	int			created;		/* 1 inserted, 0 updated, -1 not said */
	char	   *remote_id;		/* may be NULL */
	char	   *error_code;		/* may be NULL */
	char	   *error_message;	/* may be NULL */
	char	   *remote_version; /* may be NULL: the version the remote object
								 * has after this write, as the answer gave it
								 * (SAP FSM's lastChanged), for a later push's
								 * optimistic locking */
	char	   *error_fields;	/* may be NULL: the fields the error is about,
								 * separated by commas */
} BulkopsOutcome;

/*
 * A target as a dialect sees it at enqueue time: enough to encode rows.
 */
typedef struct BulkopsEncodeTarget
{
	const char *resource;		/* may be NULL */
	BulkopsOp	op;
	const char *key;			/* key column name, may be NULL */
	int			key_att;		/* its index in the source, or -1 */
	Jsonb	   *options;		/* effective options of the job */
	void	   *private;		/* dialect's own cache, set by begin_encode */
	const char *key_text;		/* the current row's key as text, set before
								 * each encode_row; NULL without a key */
	StringInfo	prologue;		/* begin_encode may append what every request
								 * body of the job starts with (a CSV header) */

	/*
	 * begin_encode sets want_versions to be told, before each encode_row, the
	 * remote_version of the current row's key: the one recorded by the newest
	 * succeeded receipt of the same key and target among those the caller may
	 * see (enqueue.c), or NULL when there is none.
	 */
	bool		want_versions;
	const char *remote_version;
} BulkopsEncodeTarget;

/*
 * A batch as a dialect sees it in the worker.  Row i's encoding is
 * body[offsets[i] .. offsets[i + 1]).  pending[i] is true while row i has
 * no outcome.  A query job has one batch with no rows: its body is the
 * remote query, and it ends when the dialect says DONE.
 */
typedef struct BulkopsBatch
{
	int64		job_id;
	int32		batch_no;
	BulkopsOp	op;
	const char *url;			/* target base URL, no trailing slash; with
								 * OAuth, the token's instance_url if any */
	const char *resource;
	Jsonb	   *options;		/* effective options of the job */
	int64		first_row;		/* job row number of row 0 */
	int			nrows;
	const char *prologue;		/* from begin_encode; "" if none */
	int			prologue_len;
	const char *body;
	const int32 *offsets;		/* nrows + 1 entries */
	const bool *pending;
	int			npending;
	int			step;
	const char *remote_id;		/* NULL at step 0 */
	const char *step_data;		/* the dialect's note kept with (step,
								 * remote_id), see BulkopsResult; or NULL. At
								 * step 0, what the last NEXT_RESUBMIT left
								 * for the next submit, or NULL */
	bool		stopping;		/* the job was cancelled or timed out: see
								 * build_abort */
	const char *progress;		/* the batch's counters as last recorded (see
								 * BulkopsResult.progress), or NULL: a dialect
								 * whose batch takes several requests adds its
								 * answers' counts to them */
	const char *key;			/* the job's key column, or NULL */

	/*
	 * What the dialect kept in memory from an earlier step of this batch
	 * (BulkopsResult.memo).  It does not survive a restart of the worker:
	 * after one it is NULL at whatever step the batch resumes, and the
	 * dialect must be able to rebuild it (e.g. by going back a step).
	 */
	void	   *memo;
	MemoryContext memo_cxt;		/* where a memo must be allocated */
} BulkopsBatch;

typedef struct BulkopsHeader
{
	const char *name;
	const char *value;
} BulkopsHeader;

/* What the worker should send next for a batch. */
typedef struct BulkopsRequest
{
	const char *method;			/* "GET", "POST", "PUT", "PATCH", "DELETE" */
	char	   *url;			/* absolute; usually batch->url + path */
	StringInfo	body;			/* NULL for none */
	const char *content_type;	/* NULL when there is no body */
	List	   *headers;		/* of BulkopsHeader *, besides auth */
	bool		no_auth;		/* leave the target's credentials out: the URL
								 * is not the target's (a presigned link to a
								 * file elsewhere) */

	/*
	 * Optional: take the answer's body piece by piece as it arrives instead
	 * of whole, for answers too large to hold (result files).  on_data may
	 * raise ERROR, which ends the transfer; handle_response then sees
	 * resp->body empty and resp->stream_state set.
	 */
	void		(*on_data) (void *state, const char *data, size_t len);
	void	   *stream_state;
} BulkopsRequest;

typedef struct BulkopsResponse
{
	long		status;
	const char *body;			/* NUL-terminated */
	size_t		len;
	const char *content_type;	/* may be NULL */
	List	   *headers;		/* of BulkopsHeader *, names lower-cased */
	void	   *stream_state;	/* the request's, when it streamed */
} BulkopsResponse;

/* What to do with a batch after an answer. */
typedef enum BulkopsNext
{
	BULKOPS_NEXT_DONE,			/* every pending row has an outcome now */
	BULKOPS_NEXT_STEP,			/* persist (step, remote_id), act after
								 * delay_ms */
	BULKOPS_NEXT_RESUBMIT,		/* outcomes given; resend the rest at step 0 */
	BULKOPS_NEXT_RETRY,			/* transient: repeat the same step later */
	BULKOPS_NEXT_FAIL			/* the remaining rows fail with error */
} BulkopsNext;

typedef struct BulkopsResult
{
	BulkopsNext next;
	List	   *outcomes;		/* of BulkopsOutcome * */
	int			step;			/* for NEXT_STEP */
	char	   *remote_id;		/* for NEXT_STEP */
	char	   *step_data;		/* for NEXT_STEP, optional: what the next
								 * request needs beyond remote_id (a result
								 * file's URL), persisted with the step so a
								 * resumed batch can make that request; for
								 * NEXT_RESUBMIT, optional: a note the next
								 * submits (step 0) see, kept through their
								 * retries until the next NEXT_STEP or
								 * NEXT_RESUBMIT (how many rows a request may
								 * carry after a 413) */
	int			delay_ms;		/* for NEXT_STEP and NEXT_RETRY; 0 = default */
	bool		counts_attempt; /* NEXT_RESUBMIT: does the resend use up an
								 * attempt? */
	bool		maybe_applied;	/* NEXT_RESUBMIT: the rows may already have
								 * been applied; the worker resends them only
								 * for idempotent operations, else they become
								 * unknown */
	char	   *error;			/* for NEXT_RETRY and NEXT_FAIL */
	BulkopsRowStatus fail_status;	/* NEXT_FAIL: FAILED (the default, also
									 * when left SUCCEEDED), UNKNOWN or
									 * CANCELLED */
	char	   *error_code;		/* for NEXT_FAIL, optional */

	/*
	 * A query job's rows: CSV (RFC 4180, UTF-8) whose first line names the
	 * columns.  The worker appends them to the job's table in the same
	 * transaction that stores the step and remote_id given with them, so a
	 * page is written exactly once however the worker stops.
	 */
	const char *page;
	size_t		page_len;
	char	   *progress;		/* optional JSON object of the remote side's
								 * numeric counters for this batch (records
								 * processed, ...); shown summed over the
								 * job's batches in bulkops.job_progress */
	char	   *notify;			/* optional: a payload (under 8,000 bytes) to
								 * NOTIFY on BULKOPS_FEEDBACK_CHANNEL when
								 * this result is stored */
	bool		limited;		/* NEXT_RETRY: the remote side refused the
								 * request for a rate or usage limit and
								 * applied nothing; repeat it after delay_ms
								 * without using up an attempt */
	void	   *memo;			/* NEXT_STEP: keep for the next steps
								 * (allocated in batch->memo_cxt); NULL drops
								 * it.  Other results drop it too, except
								 * NEXT_RETRY, which keeps it. */
} BulkopsResult;

typedef struct BulkopsOptionDef BulkopsOptionDef;

/* where BulkopsResult.notify goes: LISTEN bulkops_feedback */
#define BULKOPS_FEEDBACK_CHANNEL "bulkops_feedback"

typedef struct BulkopsDialect
{
	const char *name;
	/* the operations it has; NULL where it has none */
	const char *op_names[BULKOPS_NUM_OPS];
	/* may repeating a submit of this op never double-apply it? */
	bool		idempotent[BULKOPS_NUM_OPS];
	/* does an op need a key column? */
	bool		needs_key[BULKOPS_NUM_OPS];
	/* its own options, terminated by a NULL name */
	const BulkopsOptionDef *options;
	/* the most rows one request may carry; 0 = no limit of its own */
	int			max_batch_rows;

	/*
	 * Where its OAuth token endpoint is, relative to the target's url (e.g.
	 * "/rest/v2/oauth/token"), for auth that gives no "token_url"; NULL makes
	 * "token_url" required.
	 */
	const char *token_path;
	/* the most bytes (prologue + rows) one request may carry; 0 = none */
	int			max_batch_bytes;

	/*
	 * step 0 applies no row (it only opens a remote job that later steps fill
	 * and start), so repeating or resuming it is safe for every operation
	 */
	bool		submit_is_safe;

	/* refuse a target the API cannot serve (bad resource, options) */
	void		(*validate_target) (const char *url, const char *resource,
									Jsonb *options);
	/* once per job, after the source's columns are known */
	void		(*begin_encode) (BulkopsEncodeTarget *target,
								 BulkopsEncoder *enc);
	/* append one row's wire encoding to out */
	void		(*encode_row) (BulkopsEncodeTarget *target, BulkopsEncoder *enc,
							   Datum *values, bool *nulls, StringInfo out);
	/* the request that carries out the batch's current step */
	void		(*build_request) (const BulkopsBatch *batch,
								  BulkopsRequest *req);
	/* what a (non-429, non-transport-error) answer means */
	void		(*handle_response) (const BulkopsBatch *batch,
									const BulkopsResponse *resp,
									BulkopsResult *result);

	/* optional: after the last row; may refuse the job (ERROR) */
	void		(*end_encode) (BulkopsEncodeTarget *target, int64 nrows,
							   int32 nbatches);

	/*
	 * optional: the request that stops the batch's remote task when its job
	 * is cancelled or times out; returns false when there is nothing to stop
	 * at this step.  The worker sends it once per batch whose remote task is
	 * under way (step > 0); its answer is only logged when it is not 2xx.
	 * Then, for a short grace period, the worker goes on calling
	 * build_request and handle_response to learn the task's real outcome,
	 * with batch->stopping set: a dialect must then build only requests that
	 * learn (polls, result fetches), never ones that add work (uploads,
	 * "upload complete").  Rows still pending when the grace ends become
	 * unknown.
	 */
	bool		(*build_abort) (const BulkopsBatch *batch, BulkopsRequest *req);
} BulkopsDialect;

/* dialects/registry.c: the list of dialects */
extern const BulkopsDialect *bulkops_find_dialect(const char *name,
												  bool missing_ok);
extern void bulkops_register_dialect(const BulkopsDialect *dialect);
extern const BulkopsDialect *bulkops_dialect_at(int i);

/* dialects/common.c: what dialects share */
extern const char *bulkops_op_name(BulkopsOp op);
extern BulkopsOp bulkops_op_from_name(const char *name);
extern BulkopsOutcome *bulkops_outcome(BulkopsResult *result, int row,
									   BulkopsRowStatus status);
extern void bulkops_result_settle_rest(const BulkopsBatch *batch,
									   BulkopsResult *result,
									   BulkopsRowStatus status,
									   const char *error);
extern void bulkops_append_pending(const BulkopsBatch *batch, StringInfo out);
extern void bulkops_result_task_gone(BulkopsResult *result, char *error);

/* reading answers: parse raises ERROR on malformed JSON */
extern Jsonb *bulkops_json_parse(const char *body, size_t len);
extern Jsonb *bulkops_json_try_parse(const char *body, size_t len);
extern bool bulkops_read_answer(const BulkopsResponse *resp,
								BulkopsResult *result, JsonbContainer **root);
extern JsonbValue *bulkops_jget(JsonbContainer *obj, const char *key);
extern JsonbContainer *bulkops_jcontainer(JsonbValue *v);
extern int	bulkops_jarray_size(JsonbContainer *arr);
extern JsonbValue *bulkops_jarray_get(JsonbContainer *arr, int i);
extern char *bulkops_jtext(JsonbValue *v);
extern const char *bulkops_response_header(const BulkopsResponse *resp,
										   const char *name);
extern char *bulkops_url_segment(const char *s);
extern void bulkops_check_identifier(const char *dialect, const char *option,
									 const char *value);
extern bool bulkops_is_base_url(const char *url);
extern void bulkops_check_base_url(const char *url);

#endif							/* BULKOPS_DIALECT_H */
