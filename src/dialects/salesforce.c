/*-------------------------------------------------------------------------
 *
 * salesforce.c
 *	  The "salesforce" dialect: Salesforce Bulk API 2.0 ingest jobs
 *	  (PROTOCOLS.md section 1).
 *
 * Rows are encoded as CSV records at enqueue; the job's header row is its
 * prologue.  One batch is one Salesforce ingest job, driven through these
 * steps (remote_id is the job's id from step 1 on):
 *
 *	 0 create the job (POST jobs/ingest)
 *	 1 upload the header row and the pending rows (PUT .../batches)
 *	 2 close the upload (PATCH state UploadComplete): processing starts
 *	 3 poll the job (GET .../{id}/) until JobComplete, Failed or Aborted,
 *	   publishing numberRecordsProcessed/Failed as the batch's progress
 *	 4 successfulResults, 5 failedResults, 6 unprocessedrecords: CSV files
 *	   read as they stream in, each record matched to a pending row by the
 *	   key column (by the whole uploaded record for insert), never by
 *	   position, since Salesforce keeps no order
 *
 * After step 6 the rows to send again (UNABLE_TO_LOCK_ROW failures,
 * records the job left unprocessed) go to a new job through
 * NEXT_RESUBMIT, counted against max_attempts; rows no file mentions are
 * unknown (insert) or sent again (the idempotent operations).  Steps 4-6
 * remember which rows go again in the batch's memo; a worker restart loses
 * it, and the batch then goes back to step 3 and reads the files again.
 *
 * Why no step can apply a row twice: Salesforce applies a job's rows only
 * once its upload is closed, and a job whose data was uploaded twice
 * refuses to close (INVALIDJOB).  So creating, uploading and closing may
 * all be repeated after an unclear answer or a crash: at worst an Open job
 * is left behind, which Salesforce never processes.  A job that stays Open
 * after its close is given up and its rows go to a new job.
 *
 * Like every dialect this file knows nothing of tables or the worker loop.
 * It allocates in the caller's memory context, except the memo (in
 * batch->memo_cxt) and what on_data builds (in the stream's context, which
 * is the step's).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/jsonb.h"

#include "bulkops.h"
#include "csv.h"
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
#define SF_SET_NULL			"#N/A"
#define SF_DEFAULT_API		"62.0"
#define SF_DEFAULT_LIMIT_BACKOFF_MIN 10.0

/* how a row is marked for a new job in the memo */
#define SF_MARK_LOCKED		'L'
#define SF_MARK_UNPROCESSED	'U'

typedef struct SfEncodeState
{
	int		   *cols;			/* the source columns sent, in order */
	int			ncols;
	const char *null_text;
	int64		row;			/* rows encoded so far */
} SfEncodeState;

/* What steps 4 to 6 learn and the last one decides with. */
typedef struct SfMemo
{
	char	   *state;			/* the job's final state */
	char	   *error;			/* its errorMessage, or NULL */
	char	   *mark;			/* per row: SF_MARK_* or 0 */
	char	   *lock_message;	/* the first UNABLE_TO_LOCK_ROW message */
} SfMemo;

/* ---- matching result records to rows ---- */

typedef struct SfKey
{
	const char *p;
	int			len;
} SfKey;

typedef struct SfRowEntry
{
	SfKey		key;
	uint32		hash;
	char		status;			/* simplehash's */
	int			head;			/* first unmatched row with this key, or -1 */
	int			tail;
} SfRowEntry;

#define SH_PREFIX sfrows
#define SH_ELEMENT_TYPE SfRowEntry
#define SH_KEY_TYPE SfKey
#define SH_KEY key
#define SH_HASH_KEY(tb, k) hash_bytes((const unsigned char *) (k).p, (k).len)
#define SH_EQUAL(tb, a, b) ((a).len == (b).len && memcmp((a).p, (b).p, (a).len) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* One result file being read. */
typedef struct SfStream
{
	const BulkopsBatch *batch;
	MemoryContext cxt;
	int			step;
	SfMemo	   *memo;
	BulkopsCsvReader reader;

	/* the uploaded columns a record is matched by, as the header names them */
	char	  **match_names;
	int			nmatch;
	int		   *own_idx;		/* their positions in our own CSV */

	/* the pending rows by match key; rows sharing a key are chained */
	sfrows_hash *rows;
	int		   *next;
	StringInfoData keybuf;
	int			own_row;		/* the row being indexed */

	/* the result file's layout, from its header */
	bool		header_done;
	int			col_id;
	int			col_created;
	int			col_error;
	int		   *res_idx;		/* each match column's position in it */

	List	   *outcomes;
	int64		records;
	int64		unmatched;
} SfStream;

/* ---- options ---- */

static const BulkopsOptionDef sf_options[] = {
	{"api_version", BULKOPS_OPT_STRING, 0, 0},
	{"nulls", BULKOPS_OPT_STRING, 0, 0},
	{"hard_delete", BULKOPS_OPT_BOOL, 0, 0},
	{"limit_backoff", BULKOPS_OPT_REAL, 0, 1440},
	{"resubmit_unprocessed", BULKOPS_OPT_BOOL, 0, 0},
	{"max_records", BULKOPS_OPT_INT, 1, 1000000},
	{"query_all", BULKOPS_OPT_BOOL, 0, 0},
	{NULL}
};

static bool
all_chars(const char *s, const char *allowed_first, const char *allowed)
{
	if (s == NULL || s[0] == '\0' || strchr(allowed_first, s[0]) == NULL)
		return false;
	return strspn(s, allowed) == strlen(s);
}

#define DIGITS "0123456789"
#define LETTERS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

static void
sf_check_options(Jsonb *options)
{
	char	   *api = bulkops_opt_string(options, "api_version", SF_DEFAULT_API);
	char	   *nulls = bulkops_opt_string(options, "nulls", "set_null");
	char	   *dot = strchr(api, '.');

	if (dot == NULL || dot == api || !all_chars(api, DIGITS, DIGITS ".") ||
		strchr(dot + 1, '.') != NULL || dot[1] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("salesforce option \"api_version\" must look like \"%s\"",
						SF_DEFAULT_API)));
	if (strcmp(nulls, "set_null") != 0 && strcmp(nulls, "keep") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("salesforce option \"nulls\" must be \"set_null\" or \"keep\"")));
}

static void
sf_validate_target(const char *url, const char *resource, Jsonb *options)
{
	if (resource == NULL || resource[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("salesforce targets need a resource"),
				 errdetail("The resource is the object every job writes to."),
				 errhint("Pass resource => 'Account', for example.")));
	if (!all_chars(resource, LETTERS, LETTERS DIGITS "_"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a Salesforce object name", resource),
				 errhint("Use the object's API name, such as Account or Invoice__c.")));
	sf_check_options(options);
}

static const char *
sf_operation(BulkopsOp op, Jsonb *options)
{
	switch (op)
	{
		case BULKOPS_OP_INSERT:
			return "insert";
		case BULKOPS_OP_UPDATE:
			return "update";
		case BULKOPS_OP_UPSERT:
			return "upsert";
		case BULKOPS_OP_DELETE:
			return bulkops_opt_bool(options, "hard_delete", false)
				? "hardDelete" : "delete";
		default:
			elog(ERROR, "salesforce has no %s operation", bulkops_op_name(op));
	}
	return NULL;				/* keep compiler quiet */
}

/* update and delete name the record by its Id: the key is sent as "Id" */
static bool
key_is_id(BulkopsOp op)
{
	return op == BULKOPS_OP_UPDATE || op == BULKOPS_OP_DELETE;
}

/* ---- encoding ---- */

static void
sf_begin_encode(BulkopsEncodeTarget *target, BulkopsEncoder *enc)
{
	SfEncodeState *st = palloc0(sizeof(SfEncodeState));
	int			natts = bulkops_encoder_natts(enc);
	bool		id_key = key_is_id(target->op);
	int			i;

	sf_check_options(target->options);
	st->null_text = strcmp(bulkops_opt_string(target->options, "nulls", "set_null"),
						   "keep") == 0 ? "" : SF_SET_NULL;
	st->cols = palloc(sizeof(int) * Max(natts, 1));
	for (i = 0; i < natts; i++)
	{
		const char *name = bulkops_encoder_attname(enc, i);

		if (name == NULL)
			continue;
		/* a delete sends the record's Id and nothing else */
		if (target->op == BULKOPS_OP_DELETE && i != target->key_att)
			continue;
		if (id_key && i != target->key_att && pg_strcasecmp(name, "Id") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("source column \"%s\" would be sent as a second Id", name),
					 errdetail("For %s, the key column \"%s\" is sent as the record's Id.",
							   bulkops_op_name(target->op), target->key),
					 errhint("Use key => '%s', or rename or leave out the other column.",
							 name)));
		st->cols[st->ncols++] = i;
	}
	if (st->ncols == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("source has no column to send")));

	/* the header row, sent in front of every job's rows */
	for (i = 0; i < st->ncols; i++)
	{
		int			att = st->cols[i];
		const char *name = (id_key && att == target->key_att)
			? "Id" : bulkops_encoder_attname(enc, att);

		if (i > 0)
			appendStringInfoChar(target->prologue, ',');
		(void) bulkops_csv_field(target->prologue, name, strlen(name));
	}
	appendStringInfoChar(target->prologue, '\n');
	target->private = st;
}

static void
sf_encode_row(BulkopsEncodeTarget *target, BulkopsEncoder *enc,
			  Datum *values, bool *nulls, StringInfo out)
{
	SfEncodeState *st = target->private;
	int			problem = 0;
	int			bad;

	st->row++;
	bad = bulkops_encode_csv_record(enc, values, nulls, st->cols, st->ncols,
									st->null_text, out, &problem);
	if (unlikely(bad >= 0))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("row " INT64_FORMAT " of the source cannot be sent as CSV", st->row),
				 errdetail("Column \"%s\" holds %s.", bulkops_encoder_attname(enc, bad),
						   problem == BULKOPS_CSV_NUL ? "a NUL byte"
						   : "bytes that are not valid UTF-8"),
				 errhint("Remove or replace those bytes in the source query.")));
}

/* ---- requests ---- */

static char *
jobs_url(const BulkopsBatch *batch)
{
	char	   *api = bulkops_opt_string(batch->options, "api_version", SF_DEFAULT_API);

	return psprintf("%s/services/data/v%s/jobs/ingest", batch->url, api);
}

static char *
job_url(const BulkopsBatch *batch, const char *suffix)
{
	return psprintf("%s/%s/%s", jobs_url(batch), batch->remote_id, suffix);
}

/*
 * The step to act on.  A memo is lost when the worker restarts: the files
 * are then read again from a fresh poll of the job, which is final by then.
 * A stopping batch (its job cancelled or timed out) adds no work: instead
 * of uploading or closing, it polls to learn where its job stands.
 */
static int
effective_step(const BulkopsBatch *batch)
{
	if (batch->step >= SF_STEP_SUCCESSES && batch->memo == NULL)
		return SF_STEP_POLL;
	if (batch->stopping &&
		(batch->step == SF_STEP_UPLOAD || batch->step == SF_STEP_CLOSE))
		return SF_STEP_POLL;
	return batch->step;
}

static void
set_json_body(BulkopsRequest *req, const char *method, char *url,
			  StringInfo body)
{
	req->method = method;
	req->url = url;
	req->content_type = "application/json";
	req->body = body;
}

static StringInfo
state_body(const char *state)
{
	StringInfo	body = makeStringInfo();

	appendStringInfo(body, "{\"state\":\"%s\"}", state);
	return body;
}

static void
build_create(const BulkopsBatch *batch, BulkopsRequest *req)
{
	StringInfo	body = makeStringInfo();

	appendStringInfoString(body, "{\"object\":");
	bulkops_json_string(body, batch->resource, strlen(batch->resource));
	appendStringInfo(body, ",\"operation\":\"%s\"",
					 sf_operation(batch->op, batch->options));
	if (batch->op == BULKOPS_OP_UPSERT)
	{
		appendStringInfoString(body, ",\"externalIdFieldName\":");
		bulkops_json_string(body, batch->key, strlen(batch->key));
	}
	appendStringInfoString(body, ",\"contentType\":\"CSV\",\"columnDelimiter\":\"COMMA\","
						   "\"lineEnding\":\"LF\"}");
	set_json_body(req, "POST", jobs_url(batch), body);
}

static void
build_upload(const BulkopsBatch *batch, BulkopsRequest *req)
{
	StringInfo	body = makeStringInfo();
	int			i;

	appendBinaryStringInfo(body, batch->prologue, batch->prologue_len);
	for (i = 0; i < batch->nrows; i++)
	{
		int			start = batch->offsets[i];
		int			end = batch->offsets[i];

		if (!batch->pending[i])
			continue;
		/* runs of pending rows are contiguous in the body: copy them whole */
		while (i < batch->nrows && batch->pending[i])
			end = batch->offsets[++i];
		appendBinaryStringInfo(body, batch->body + start, end - start);
	}
	req->method = "PUT";
	req->url = job_url(batch, "batches");
	req->content_type = "text/csv";
	req->body = body;
}

static SfStream *make_stream(const BulkopsBatch *batch, int step);
static void stream_data(void *arg, const char *data, size_t len);
static char *query_jobs_url(const BulkopsBatch *batch);
static void query_build_request(const BulkopsBatch *batch, BulkopsRequest *req);

static void
sf_build_request(const BulkopsBatch *batch, BulkopsRequest *req)
{
	int			step = effective_step(batch);
	static const char *const files[] = {
		"successfulResults/", "failedResults/", "unprocessedrecords/"
	};

	if (batch->op == BULKOPS_OP_QUERY)
	{
		query_build_request(batch, req);
		return;
	}
	switch (step)
	{
		case SF_STEP_CREATE:
			build_create(batch, req);
			break;
		case SF_STEP_UPLOAD:
			build_upload(batch, req);
			break;
		case SF_STEP_CLOSE:
			set_json_body(req, "PATCH", job_url(batch, ""), state_body("UploadComplete"));
			break;
		case SF_STEP_POLL:
			req->method = "GET";
			req->url = job_url(batch, "");
			break;
		default:
			req->method = "GET";
			req->url = job_url(batch, files[step - SF_STEP_SUCCESSES]);
			req->headers = list_make1(palloc(sizeof(BulkopsHeader)));
			((BulkopsHeader *) linitial(req->headers))->name = "Accept";
			((BulkopsHeader *) linitial(req->headers))->value = "text/csv";
			req->stream_state = make_stream(batch, step);
			req->on_data = stream_data;
			break;
	}
}

static bool
sf_build_abort(const BulkopsBatch *batch, BulkopsRequest *req)
{
	if (batch->op == BULKOPS_OP_QUERY)
	{
		/* a query job can be stopped while it runs; its pages are just data */
		if (batch->remote_id == NULL || batch->step != SF_QSTEP_POLL)
			return false;
		set_json_body(req, "PATCH", psprintf("%s/%s", query_jobs_url(batch), batch->remote_id),
					  state_body("Aborted"));
		return true;
	}
	/* before step 1 there is no job yet; from step 4 on it is final */
	if (batch->remote_id == NULL || effective_step(batch) < SF_STEP_UPLOAD ||
		effective_step(batch) > SF_STEP_POLL)
		return false;
	set_json_body(req, "PATCH", job_url(batch, ""), state_body("Aborted"));
	return true;
}

/* ---- answers ---- */

/*
 * The error of an answer: Salesforce sends [{"errorCode", "message"}]; an
 * OAuth-style {"error", "error_description"} is taken too.
 */
static void
answer_error(const BulkopsResponse *resp, char **code, char **message)
{
	Jsonb	   *jb = bulkops_json_try_parse(resp->body, resp->len);
	JsonbContainer *obj = NULL;

	*code = NULL;
	*message = NULL;
	if (jb != NULL && JB_ROOT_IS_ARRAY(jb) && !JB_ROOT_IS_SCALAR(jb))
	{
		if (bulkops_jarray_size(&jb->root) > 0)
			obj = bulkops_jcontainer(bulkops_jarray_get(&jb->root, 0));
	}
	else if (jb != NULL && JB_ROOT_IS_OBJECT(jb))
		obj = &jb->root;
	if (obj != NULL)
	{
		*code = bulkops_jtext(bulkops_jget(obj, "errorCode"));
		*message = bulkops_jtext(bulkops_jget(obj, "message"));
		if (*code == NULL)
			*code = bulkops_jtext(bulkops_jget(obj, "error"));
		if (*message == NULL)
			*message = bulkops_jtext(bulkops_jget(obj, "error_description"));
	}
	if (*message == NULL)
		*message = psprintf("HTTP %ld", resp->status);
}

static char *
error_text(const BulkopsResponse *resp, const char *what)
{
	char	   *code;
	char	   *message;

	answer_error(resp, &code, &message);
	return psprintf("%s: HTTP %ld%s%s: %s", what, resp->status,
					code ? " " : "", code ? code : "", message);
}

/*
 * 403 REQUEST_LIMIT_EXCEEDED is an API usage limit, not a permission: the
 * request was refused whole and may be made again once the limit eases.
 */
static bool
limit_exceeded(const BulkopsBatch *batch, const BulkopsResponse *resp,
			   BulkopsResult *result)
{
	char	   *code;
	char	   *message;
	double		minutes = bulkops_opt_real(batch->options, "limit_backoff",
										   SF_DEFAULT_LIMIT_BACKOFF_MIN);

	if (resp->status != 403)
		return false;
	answer_error(resp, &code, &message);
	if (code == NULL || strcmp(code, "REQUEST_LIMIT_EXCEEDED") != 0)
		return false;
	result->next = BULKOPS_NEXT_RETRY;
	result->limited = true;
	/* at least a moment: a zero delay would mean the worker's default */
	result->delay_ms = Max((int) (minutes * 60000.0), 1);
	result->error = psprintf("REQUEST_LIMIT_EXCEEDED: %s; trying again in %.0f s",
							 message, result->delay_ms / 1000.0);
	return true;
}

static void
next_step(const BulkopsBatch *batch, BulkopsResult *result, int step,
		  const char *remote_id)
{
	result->next = BULKOPS_NEXT_STEP;
	result->step = step;
	result->remote_id = pstrdup(remote_id);
}

/* the rows of a job that applied none of them go to a new job */
static void
new_job(BulkopsResult *result, char *why)
{
	result->next = BULKOPS_NEXT_RESUBMIT;
	result->counts_attempt = true;
	result->error = why;
}

static void
handle_create(const BulkopsBatch *batch, const BulkopsResponse *resp,
			  BulkopsResult *result)
{
	JsonbContainer *root;
	char	   *id;

	if (!bulkops_read_answer(resp, result, &root))
		return;
	id = bulkops_jtext(bulkops_jget(root, "id"));

	if (resp->status == 200 || resp->status == 201)
	{
		if (!all_chars(id, LETTERS DIGITS, LETTERS DIGITS))
		{
			result->next = BULKOPS_NEXT_RETRY;
			result->error = pstrdup("the answer to creating a job has no usable job id");
			return;
		}
		next_step(batch, result, SF_STEP_UPLOAD, id);
		result->delay_ms = 1;	/* nothing to wait for: upload at once */
		return;
	}
	if (resp->status >= 400 && resp->status < 500)
	{
		char	   *code;
		char	   *message;

		answer_error(resp, &code, &message);
		result->next = BULKOPS_NEXT_FAIL;
		result->error = error_text(resp, "could not create the job");
		result->error_code = code;
		return;
	}
	result->next = BULKOPS_NEXT_RETRY;
	result->error = error_text(resp, "could not create the job");
}

static void
handle_upload(const BulkopsBatch *batch, const BulkopsResponse *resp,
			  BulkopsResult *result)
{
	if (resp->status >= 200 && resp->status < 300)
	{
		next_step(batch, result, SF_STEP_CLOSE, batch->remote_id);
		result->delay_ms = 1;
	}
	else if (resp->status >= 400 && resp->status < 500 && resp->status != 401)
		new_job(result, error_text(resp, psprintf("job %s refused its data", batch->remote_id)));
	else
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = error_text(resp, "upload failed");
	}
}

static void
handle_close(const BulkopsBatch *batch, const BulkopsResponse *resp,
			 BulkopsResult *result)
{
	if (resp->status == 401 || resp->status >= 500)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = error_text(resp, "could not close the upload");
		return;
	}

	/*
	 * A refusal may mean the job was closed already (an answer lost before
	 * a restart) or aborted, or will never close: the job's state says
	 * which.
	 */
	next_step(batch, result, SF_STEP_POLL, batch->remote_id);
	if (resp->status >= 300)
		result->error = error_text(resp, "could not close the upload");
}

static char *
progress_json(JsonbContainer *root)
{
	char	   *processed = bulkops_jtext(bulkops_jget(root, "numberRecordsProcessed"));
	char	   *failed = bulkops_jtext(bulkops_jget(root, "numberRecordsFailed"));

	if (processed == NULL || !all_chars(processed, DIGITS, DIGITS))
		processed = "0";
	if (failed == NULL || !all_chars(failed, DIGITS, DIGITS))
		failed = "0";
	return psprintf("{\"numberRecordsProcessed\": %s, \"numberRecordsFailed\": %s}",
					processed, failed);
}

static void
handle_poll(const BulkopsBatch *batch, const BulkopsResponse *resp,
			BulkopsResult *result)
{
	JsonbContainer *root;
	char	   *state;

	if (resp->status == 404)
	{
		/* deleted remotely: whether it ran is anybody's guess */
		new_job(result, error_text(resp, psprintf("job %s is gone", batch->remote_id)));
		result->maybe_applied = true;
		return;
	}
	if (!bulkops_read_answer(resp, result, &root))
		return;
	state = bulkops_jtext(bulkops_jget(root, "state"));
	if (resp->status != 200 || state == NULL)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = error_text(resp, "could not poll the job");
		return;
	}
	result->progress = progress_json(root);

	if (strcmp(state, "UploadComplete") == 0 || strcmp(state, "InProgress") == 0)
		next_step(batch, result, SF_STEP_POLL, batch->remote_id);
	else if (strcmp(state, "JobComplete") == 0 || strcmp(state, "Failed") == 0 ||
			 strcmp(state, "Aborted") == 0)
	{
		MemoryContext old = MemoryContextSwitchTo(batch->memo_cxt);
		SfMemo	   *memo = palloc0(sizeof(SfMemo));

		memo->state = pstrdup(state);
		memo->error = bulkops_jtext(bulkops_jget(root, "errorMessage"));
		memo->mark = palloc0(Max(batch->nrows, 1));
		MemoryContextSwitchTo(old);
		next_step(batch, result, SF_STEP_SUCCESSES, batch->remote_id);
		result->memo = memo;
		result->delay_ms = 1;
	}
	else if (strcmp(state, "Open") == 0 && batch->stopping)
	{
		/* never closed, so never processed: nothing was applied */
		bulkops_result_settle_rest(batch, result, BULKOPS_ROW_CANCELLED,
								   psprintf("the job stopped before job %s was closed",
											batch->remote_id));
		result->next = BULKOPS_NEXT_DONE;
	}
	else if (strcmp(state, "Open") == 0)
		new_job(result, psprintf("job %s is still Open after its upload was closed: Salesforce did not take the upload",
								 batch->remote_id));
	else
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("job %s is in unknown state \"%s\"", batch->remote_id, state);
	}
}

/* ---- reading result files ---- */

/*
 * The match key of a record: its match fields, each with its length in
 * front.  "#N/A" counts as empty, since a null may come back either way.
 */
static void
build_key(StringInfo buf, char **fields, int *lens, const int *idx, int n)
{
	int			i;

	resetStringInfo(buf);
	for (i = 0; i < n; i++)
	{
		const char *f = fields[idx[i]];
		int32		len = lens[idx[i]];

		if (len == 4 && memcmp(f, SF_SET_NULL, 4) == 0)
			len = 0;
		appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
		appendBinaryStringInfo(buf, f, len);
	}
}

/* one of our own rows, parsed back to index it by its match key */
static void
own_record(void *arg, int nfields, char **fields, int *lens)
{
	SfStream   *st = arg;
	SfKey		key;
	SfRowEntry *e;
	bool		found;
	int			i;

	for (i = 0; i < st->nmatch; i++)
		if (st->own_idx[i] >= nfields)
			elog(ERROR, "row %d of the batch has %d fields", st->own_row, nfields);
	build_key(&st->keybuf, fields, lens, st->own_idx, st->nmatch);
	key.p = st->keybuf.data;
	key.len = st->keybuf.len;
	e = sfrows_insert(st->rows, key, &found);
	if (!found)
	{
		char	   *copy = palloc(key.len);

		/* a key holds binary lengths: no string copy */
		memcpy(copy, key.p, key.len);
		e->key.p = copy;
		e->head = e->tail = st->own_row;
	}
	else if (e->head < 0)
		e->head = e->tail = st->own_row;
	else
	{
		st->next[e->tail] = st->own_row;
		e->tail = st->own_row;
	}
	st->next[st->own_row] = -1;
}

/* the header row of our own CSV: its names */
static void
own_header(void *arg, int nfields, char **fields, int *lens)
{
	List	  **names = arg;
	int			i;

	for (i = 0; i < nfields; i++)
		*names = lappend(*names, pnstrdup(fields[i], lens[i]));
}

static void stream_record(void *arg, int nfields, char **fields, int *lens);

static SfStream *
make_stream(const BulkopsBatch *batch, int step)
{
	SfStream   *st = palloc0(sizeof(SfStream));
	BulkopsCsvReader own;
	List	   *names = NIL;
	int			i;

	st->batch = batch;
	st->cxt = CurrentMemoryContext;
	st->step = step;
	st->memo = batch->memo;
	initStringInfo(&st->keybuf);
	bulkops_csv_reader_init(&st->reader, stream_record, st, SF_MAX_JOB_BYTES);

	/* what to match by: the key column, or every column for insert */
	bulkops_csv_reader_init(&own, own_header, &names, SF_MAX_JOB_BYTES);
	bulkops_csv_feed(&own, batch->prologue, batch->prologue_len);
	bulkops_csv_finish(&own);
	st->match_names = palloc(sizeof(char *) * Max(list_length(names), 1));
	st->own_idx = palloc(sizeof(int) * Max(list_length(names), 1));
	for (i = 0; i < list_length(names); i++)
	{
		char	   *name = list_nth(names, i);
		bool		match;

		if (batch->op == BULKOPS_OP_INSERT || batch->key == NULL)
			match = true;
		else if (key_is_id(batch->op))
			match = pg_strcasecmp(name, "Id") == 0;
		else
			match = strcmp(name, batch->key) == 0;
		if (match)
		{
			st->match_names[st->nmatch] = name;
			st->own_idx[st->nmatch++] = i;
		}
	}
	if (st->nmatch == 0)
		elog(ERROR, "the job's header row lacks its key column");

	/* index the pending rows */
	st->rows = sfrows_create(st->cxt, Max(batch->npending, 16), NULL);
	st->next = palloc(sizeof(int) * Max(batch->nrows, 1));
	bulkops_csv_reader_init(&own, own_record, st, SF_MAX_JOB_BYTES);
	for (i = 0; i < batch->nrows; i++)
	{
		if (!batch->pending[i])
			continue;
		st->own_row = i;
		bulkops_csv_feed(&own, batch->body + batch->offsets[i],
						 batch->offsets[i + 1] - batch->offsets[i]);
		bulkops_csv_finish(&own);
	}
	return st;
}

static void
stream_data(void *arg, const char *data, size_t len)
{
	SfStream   *st = arg;
	MemoryContext old = MemoryContextSwitchTo(st->cxt);

	bulkops_csv_feed(&st->reader, data, len);
	MemoryContextSwitchTo(old);
}

static int
find_column(int nfields, char **fields, const char *name)
{
	int			i;

	for (i = 0; i < nfields; i++)
		if (pg_strcasecmp(fields[i], name) == 0)
			return i;
	return -1;
}

static void
read_header(SfStream *st, int nfields, char **fields)
{
	int			i;

	st->col_id = find_column(nfields, fields, "sf__Id");
	st->col_created = find_column(nfields, fields, "sf__Created");
	st->col_error = find_column(nfields, fields, "sf__Error");
	if (st->step == SF_STEP_FAILURES && st->col_error < 0)
		ereport(ERROR,
				(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
				 errmsg("failedResults has no sf__Error column")));
	st->res_idx = palloc(sizeof(int) * st->nmatch);
	for (i = 0; i < st->nmatch; i++)
	{
		st->res_idx[i] = find_column(nfields, fields, st->match_names[i]);
		if (st->res_idx[i] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
					 errmsg("result file has no column \"%s\"", st->match_names[i])));
	}
	st->header_done = true;
}

static char *
field_or_null(int col, int nfields, char **fields, int *lens)
{
	if (col < 0 || col >= nfields || lens[col] == 0)
		return NULL;
	return pnstrdup(fields[col], lens[col]);
}

/* "CODE:message" as Salesforce writes sf__Error */
static void
split_error(const char *error, char **code, char **message)
{
	const char *colon = error ? strchr(error, ':') : NULL;

	if (colon == NULL || colon == error ||
		strspn(error, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != colon - error)
	{
		*code = NULL;
		*message = error ? pstrdup(error) : pstrdup("failed without a message");
		return;
	}
	*code = pnstrdup(error, colon - error);
	colon++;
	while (*colon == ' ')
		colon++;
	*message = pstrdup(colon);
}

static void
match_record(SfStream *st, int row, int nfields, char **fields, int *lens)
{
	BulkopsResult r = {0};
	BulkopsOutcome *o;

	switch (st->step)
	{
		case SF_STEP_SUCCESSES:
			{
				char	   *created = field_or_null(st->col_created, nfields, fields, lens);

				o = bulkops_outcome(&r, row, BULKOPS_ROW_SUCCEEDED);
				o->remote_id = field_or_null(st->col_id, nfields, fields, lens);
				if (created)
					o->created = pg_strcasecmp(created, "true") == 0 ? 1
						: pg_strcasecmp(created, "false") == 0 ? 0 : -1;
			}
			break;
		case SF_STEP_FAILURES:
			{
				char	   *code;
				char	   *message;

				split_error(field_or_null(st->col_error, nfields, fields, lens),
							&code, &message);
				if (code && strcmp(code, "UNABLE_TO_LOCK_ROW") == 0 &&
					strcmp(st->memo->state, "Aborted") != 0)
				{
					/* someone else held the record: try again in a new job */
					if (st->memo->lock_message == NULL)
						st->memo->lock_message =
							MemoryContextStrdup(st->batch->memo_cxt, message);
					st->memo->mark[row] = SF_MARK_LOCKED;
					return;
				}
				o = bulkops_outcome(&r, row, BULKOPS_ROW_FAILED);
				o->remote_id = field_or_null(st->col_id, nfields, fields, lens);
				o->error_code = code;
				o->error_message = message;
			}
			break;
		default:
			if (st->memo->mark[row] == 0)
				st->memo->mark[row] = SF_MARK_UNPROCESSED;
			return;
	}
	st->outcomes = list_concat(st->outcomes, r.outcomes);
}

static void
stream_record(void *arg, int nfields, char **fields, int *lens)
{
	SfStream   *st = arg;
	SfKey		key;
	SfRowEntry *e;
	int			i;

	if (!st->header_done)
	{
		read_header(st, nfields, fields);
		return;
	}
	st->records++;
	for (i = 0; i < st->nmatch; i++)
		if (st->res_idx[i] >= nfields)
			ereport(ERROR,
					(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
					 errmsg("record " INT64_FORMAT " of a result file has %d fields",
							st->records, nfields)));
	build_key(&st->keybuf, fields, lens, st->res_idx, st->nmatch);
	key.p = st->keybuf.data;
	key.len = st->keybuf.len;
	e = sfrows_lookup(st->rows, key);
	if (e == NULL || e->head < 0)
	{
		st->unmatched++;
		return;
	}
	i = e->head;
	e->head = st->next[i];
	match_record(st, i, nfields, fields, lens);
}

/*
 * After the last file: rows marked go to a new job, the others that no
 * file mentioned are unknown, unless sending them again cannot apply them
 * twice.
 */
static void
decide(const BulkopsBatch *batch, SfMemo *memo, BulkopsResult *result)
{
	bool		aborted = strcmp(memo->state, "Aborted") == 0;
	bool		resend_unprocessed = bulkops_opt_bool(batch->options,
													  "resubmit_unprocessed", true);
	bool		idempotent = batch->op != BULKOPS_OP_INSERT;
	char	   *job_end = psprintf("job %s ended %s%s%s", batch->remote_id, memo->state,
								   memo->error ? ": " : "", memo->error ? memo->error : "");
	int			nlocked = 0;
	int			nunprocessed = 0;
	int			nlost = 0;
	int			i;

	for (i = 0; i < batch->nrows; i++)
	{
		BulkopsOutcome *o;

		if (!batch->pending[i])
			continue;
		switch (memo->mark[i])
		{
			case SF_MARK_LOCKED:
				nlocked++;
				break;
			case SF_MARK_UNPROCESSED:
				if (aborted)
					bulkops_outcome(result, i, BULKOPS_ROW_CANCELLED)->error_message =
						psprintf("not processed: %s", job_end);
				else if (resend_unprocessed)
					nunprocessed++;
				else
				{
					o = bulkops_outcome(result, i, BULKOPS_ROW_FAILED);
					o->error_code = pstrdup("NOT_PROCESSED");
					o->error_message = psprintf("not processed: %s", job_end);
				}
				break;
			default:
				if (idempotent && !aborted)
					nlost++;
				else
					bulkops_outcome(result, i, BULKOPS_ROW_UNKNOWN)->error_message =
						psprintf("no result file of job %s mentions this row", batch->remote_id);
				break;
		}
	}
	if (nlocked + nunprocessed + nlost == 0)
	{
		result->next = BULKOPS_NEXT_DONE;
		return;
	}
	result->next = BULKOPS_NEXT_RESUBMIT;
	result->counts_attempt = true;
	result->maybe_applied = nlost > 0;
	/* should the attempts run out: rows no file mentioned may be applied */
	if (nlost > 0)
		result->fail_status = BULKOPS_ROW_UNKNOWN;
	if (nunprocessed + nlost == 0)
	{
		result->error_code = pstrdup("UNABLE_TO_LOCK_ROW");
		result->error = pstrdup(memo->lock_message);
	}
	else
		result->error = psprintf("%d rows could not be locked, %d were not processed and %d are in no result file (%s); they go to a new job",
								 nlocked, nunprocessed, nlost, job_end);
}

static void
handle_result_file(const BulkopsBatch *batch, const BulkopsResponse *resp,
				   BulkopsResult *result)
{
	SfStream   *st = resp->stream_state;

	if (resp->status == 404)
	{
		/* deleted remotely: what is not settled yet cannot be learnt */
		result->next = BULKOPS_NEXT_FAIL;
		result->fail_status = BULKOPS_ROW_UNKNOWN;
		result->error = error_text(resp, psprintf("the results of job %s are gone",
												  batch->remote_id));
		return;
	}
	if (resp->status != 200 || st == NULL)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = error_text(resp, "could not fetch a result file");
		return;
	}
	{
		MemoryContext old = MemoryContextSwitchTo(st->cxt);

		bulkops_csv_finish(&st->reader);
		MemoryContextSwitchTo(old);
	}
	result->outcomes = st->outcomes;
	if (st->step < SF_STEP_UNPROCESSED)
	{
		next_step(batch, result, st->step + 1, batch->remote_id);
		result->memo = batch->memo;
		result->delay_ms = 1;
	}
	else
		decide(batch, st->memo, result);
}

/* ---- query jobs (bulk_query) ---- */

/*
 * A query job's one batch carries the SOQL query as its body and goes
 * through these steps (remote_id is the query job's id from step 1 on):
 *
 *	 0 create the query job (POST jobs/query)
 *	 1 poll it until JobComplete; Failed or Aborted end the job
 *	 2 fetch a page of results; the next page's Sforce-Locator is kept as
 *	   the step's note, so a restart resumes at the page that was not yet
 *	   written (the worker stores each page with the note that follows it)
 *
 * Repeating any step is harmless: a query changes nothing remotely.
 */

static char *
query_jobs_url(const BulkopsBatch *batch)
{
	char	   *api = bulkops_opt_string(batch->options, "api_version", SF_DEFAULT_API);

	return psprintf("%s/services/data/v%s/jobs/query", batch->url, api);
}

static void
query_build_request(const BulkopsBatch *batch, BulkopsRequest *req)
{
	switch (batch->step)
	{
		case SF_QSTEP_CREATE:
			{
				StringInfo	body = makeStringInfo();

				appendStringInfo(body, "{\"operation\":\"%s\",\"query\":",
								 bulkops_opt_bool(batch->options, "query_all", false)
								 ? "queryAll" : "query");
				/* the body is the query, NUL-terminated, with no rows in it */
				bulkops_json_string(body, batch->body, strlen(batch->body));
				appendStringInfoChar(body, '}');
				set_json_body(req, "POST", query_jobs_url(batch), body);
				break;
			}
		case SF_QSTEP_POLL:
			req->method = "GET";
			req->url = psprintf("%s/%s", query_jobs_url(batch), batch->remote_id);
			break;
		default:
			{
				BulkopsHeader *accept = palloc(sizeof(BulkopsHeader));
				StringInfoData url;

				initStringInfo(&url);
				appendStringInfo(&url, "%s/%s/results?maxRecords=%d",
								 query_jobs_url(batch), batch->remote_id,
								 bulkops_opt_int(batch->options, "max_records",
												 SF_DEFAULT_MAX_RECORDS));
				if (batch->step_data)
				{
					/* a locator is opaque: escape it rather than trust it */
					appendStringInfo(&url, "&locator=%s",
									 bulkops_url_segment(batch->step_data));
				}
				req->method = "GET";
				req->url = url.data;
				accept->name = "Accept";
				accept->value = "text/csv";
				req->headers = list_make1(accept);
				break;
			}
	}
}

static void
query_handle_poll(const BulkopsBatch *batch, const BulkopsResponse *resp,
				  BulkopsResult *result)
{
	JsonbContainer *root;
	char	   *state;

	if (!bulkops_read_answer(resp, result, &root))
		return;
	state = bulkops_jtext(bulkops_jget(root, "state"));
	if (resp->status != 200 || state == NULL)
	{
		result->next = resp->status == 404 ? BULKOPS_NEXT_FAIL : BULKOPS_NEXT_RETRY;
		result->error = error_text(resp, psprintf("could not poll query job %s",
												  batch->remote_id));
		return;
	}
	result->progress = progress_json(root);
	if (strcmp(state, "UploadComplete") == 0 || strcmp(state, "InProgress") == 0)
		next_step(batch, result, SF_QSTEP_POLL, batch->remote_id);
	else if (strcmp(state, "JobComplete") == 0)
	{
		next_step(batch, result, SF_QSTEP_PAGE, batch->remote_id);
		result->delay_ms = 1;
	}
	else if (strcmp(state, "Failed") == 0 || strcmp(state, "Aborted") == 0)
	{
		char	   *message = bulkops_jtext(bulkops_jget(root, "errorMessage"));

		result->next = BULKOPS_NEXT_FAIL;
		result->error_code = pstrdup(state);
		result->error = psprintf("query job %s ended %s%s%s", batch->remote_id, state,
								 message ? ": " : "", message ? message : "");
	}
	else
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("query job %s is in unknown state \"%s\"",
								 batch->remote_id, state);
	}
}

static void
query_handle_page(const BulkopsBatch *batch, const BulkopsResponse *resp,
				  BulkopsResult *result)
{
	const char *locator = bulkops_response_header(resp, "sforce-locator");

	if (resp->status != 200)
	{
		result->next = resp->status >= 400 && resp->status < 500 &&
			resp->status != 401 && resp->status != 409
			? BULKOPS_NEXT_FAIL : BULKOPS_NEXT_RETRY;
		result->error = error_text(resp, psprintf("could not fetch results of query job %s",
												  batch->remote_id));
		return;
	}
	result->page = resp->body;
	result->page_len = resp->len;
	if (locator == NULL || locator[0] == '\0' || strcmp(locator, "null") == 0)
	{
		result->next = BULKOPS_NEXT_DONE;
		return;
	}
	next_step(batch, result, SF_QSTEP_PAGE, batch->remote_id);
	result->step_data = pstrdup(locator);
	result->delay_ms = 1;
}

static void
query_handle_response(const BulkopsBatch *batch, const BulkopsResponse *resp,
					  BulkopsResult *result)
{
	switch (batch->step)
	{
		case SF_QSTEP_CREATE:
			{
				JsonbContainer *root;
				char	   *id;

				if (!bulkops_read_answer(resp, result, &root))
					return;
				id = bulkops_jtext(bulkops_jget(root, "id"));
				if ((resp->status == 200 || resp->status == 201) &&
					all_chars(id, LETTERS DIGITS, LETTERS DIGITS))
				{
					next_step(batch, result, SF_QSTEP_POLL, id);
					return;
				}
				result->next = resp->status >= 400 && resp->status < 500 &&
					resp->status != 401 ? BULKOPS_NEXT_FAIL : BULKOPS_NEXT_RETRY;
				result->error = error_text(resp, "could not create the query job");
				break;
			}
		case SF_QSTEP_POLL:
			query_handle_poll(batch, resp, result);
			break;
		default:
			query_handle_page(batch, resp, result);
			break;
	}
}

static void
sf_handle_response(const BulkopsBatch *batch, const BulkopsResponse *resp,
				   BulkopsResult *result)
{
	if (limit_exceeded(batch, resp, result))
		return;
	if (batch->op == BULKOPS_OP_QUERY)
	{
		query_handle_response(batch, resp, result);
		return;
	}
	switch (effective_step(batch))
	{
		case SF_STEP_CREATE:
			handle_create(batch, resp, result);
			break;
		case SF_STEP_UPLOAD:
			handle_upload(batch, resp, result);
			break;
		case SF_STEP_CLOSE:
			handle_close(batch, resp, result);
			break;
		case SF_STEP_POLL:
			handle_poll(batch, resp, result);
			break;
		default:
			handle_result_file(batch, resp, result);
			break;
	}
}

const BulkopsDialect bulkops_salesforce_dialect = {
	.name = "salesforce",
	.op_names = {
		[BULKOPS_OP_INSERT] = "insert",
		[BULKOPS_OP_UPDATE] = "update",
		[BULKOPS_OP_UPSERT] = "upsert",
		[BULKOPS_OP_DELETE] = "delete",
		[BULKOPS_OP_QUERY] = "query",
	},
	.idempotent = {
		[BULKOPS_OP_UPDATE] = true,
		[BULKOPS_OP_UPSERT] = true,
		[BULKOPS_OP_DELETE] = true,
		[BULKOPS_OP_QUERY] = true,
	},
	.needs_key = {
		[BULKOPS_OP_UPDATE] = true,
		[BULKOPS_OP_UPSERT] = true,
		[BULKOPS_OP_DELETE] = true,
	},
	.options = sf_options,
	/* the instance (My Domain) serves the token endpoint too */
	.token_path = "/services/oauth2/token",
	.max_batch_bytes = SF_MAX_JOB_BYTES,
	.submit_is_safe = true,
	.validate_target = sf_validate_target,
	.begin_encode = sf_begin_encode,
	.encode_row = sf_encode_row,
	.build_request = sf_build_request,
	.handle_response = sf_handle_response,
	.build_abort = sf_build_abort,
};
