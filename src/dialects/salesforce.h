/*-------------------------------------------------------------------------
 *
 * salesforce.h
 *	  What the three files of the "salesforce" dialect share: salesforce.c
 *	  (ingest jobs: options, encoding, requests, answers), salesforce_results.c
 *	  (reading the result files into outcomes) and salesforce_query.c (query
 *	  jobs for bulk_query).  Private to them; the worker sees only the
 *	  dialect in registry.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_SALESFORCE_H
#define BULKOPS_SALESFORCE_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "dialect.h"

#define SF_STEP_CREATE		0
#define SF_STEP_UPLOAD		1
#define SF_STEP_CLOSE		2
#define SF_STEP_POLL		3
#define SF_STEP_SUCCESSES	4
#define SF_STEP_FAILURES	5
#define SF_STEP_UNPROCESSED	6

/* the steps of a query job (bulk_query), described with its functions */
#define SF_QSTEP_CREATE		0
#define SF_QSTEP_POLL		1
#define SF_QSTEP_PAGE		2
#define SF_DEFAULT_MAX_RECORDS 50000

/* Salesforce takes 150 MB per job after base64, i.e. 100 MB of raw CSV */
#define SF_MAX_JOB_BYTES	(100 * 1024 * 1024)

/*
 * What one record of a result file may hold: the fields of one uploaded row
 * (or of the header), which Salesforce echoes, with room for values it
 * writes out longer (twice the longest), plus its own sf__Id, sf__Created
 * and sf__Error.  A file that is hostile or broken gets no further than
 * that, however long its record or however many its fields.
 */
#define SF_RESULT_EXTRA_BYTES	(64 * 1024)
#define SF_RESULT_EXTRA_FIELDS	16

/*
 * The most bytes of one page of a query export held in memory (and never
 * more than bulkops.max_response_size): 50,000 records (the default
 * max_records) of about 2.6 kB each.
 */
#define SF_MAX_PAGE_BYTES	(128 * 1024 * 1024)
/*
 * Rows per job unless the target or job says otherwise.  Salesforce
 * processes a job in internal batches of 10,000 records, and each counts
 * against the org's 15,000 batches per 24 hours whether it holds 10,000
 * records or one: jobs of 1,000 rows would spend the allocation ten times
 * as fast, on ten times the API calls.  One full internal batch per job
 * wastes none, and keeps a job's upload (8 MB by batch_bytes) and result
 * files small.
 */
#define SF_DEFAULT_BATCH_SIZE 10000
#define SF_SET_NULL			"#N/A"
#define SF_DEFAULT_API		"62.0"
#define SF_DEFAULT_LIMIT_BACKOFF_MIN 10.0

/* how a row is marked for a new job in the memo */
#define SF_MARK_LOCKED		'L'
#define SF_MARK_UNPROCESSED	'U'

#define DIGITS "0123456789"
#define LETTERS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/* What steps 4 to 6 learn and the last one decides with. */
typedef struct SfMemo
{
	char	   *state;			/* the job's final state */
	char	   *error;			/* its errorMessage, or NULL */
	char	   *mark;			/* per row: SF_MARK_* or 0 */
	char	   *lock_message;	/* the first UNABLE_TO_LOCK_ROW message */
} SfMemo;

/* one result file being read (salesforce_results.c) */
typedef struct SfStream SfStream;

/* salesforce.c */
extern bool sf_all_chars(const char *s, const char *allowed_first, const char *allowed);
extern char *sf_error_text(const BulkopsResponse *resp, const char *what);
extern bool sf_key_is_id(BulkopsOp op);
extern char sf_delimiter(Jsonb *options);
extern const char *sf_line_ending(Jsonb *options);
extern void sf_next_step(const BulkopsBatch *batch, BulkopsResult *result, int step,
						 const char *remote_id);
extern char *sf_progress_json(JsonbContainer *root);
extern void sf_set_json_body(BulkopsRequest *req, const char *method, char *url,
							 StringInfo body);

/* salesforce_results.c */
extern SfStream *sf_make_stream(const BulkopsBatch *batch, int step);
extern void sf_stream_data(void *arg, const char *data, size_t len);
extern void sf_handle_result_file(const BulkopsBatch *batch, const BulkopsResponse *resp,
								  BulkopsResult *result);

/* salesforce_query.c */
extern char *sf_query_jobs_url(const BulkopsBatch *batch);
extern bool sf_include_deleted(Jsonb *options);
extern void sf_query_build_request(const BulkopsBatch *batch, BulkopsRequest *req);
extern void sf_query_handle_response(const BulkopsBatch *batch,
									 const BulkopsResponse *resp,
									 BulkopsResult *result);

#endif							/* BULKOPS_SALESFORCE_H */
