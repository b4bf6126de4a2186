/*-------------------------------------------------------------------------
 *
 * salesforce.c
 *	  The "salesforce" dialect: Salesforce Bulk API 2.0 ingest jobs
 *	  (docs/protocols/salesforce.md).
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
 * Steps 4 to 6 are in salesforce_results.c, query jobs (bulk_query) in
 * salesforce_query.c; salesforce.h is what the three share.
 *
 * Like every dialect this one knows nothing of tables or the worker loop.
 * It allocates in the caller's memory context, except the memo (in
 * batch->memo_cxt) and what on_data builds (in the stream's context, which
 * is the step's).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/jsonb.h"

#include "bulkops.h"
#include "csv.h"
#include "dialect.h"
#include "salesforce.h"

typedef struct SfEncodeState
{
	int		   *cols;			/* the source columns sent, in order */
	int			ncols;
	const char *null_text;
	char		delim;			/* column_delimiter */
	const char *eol;			/* line_ending */
	int64		row;			/* rows encoded so far */
} SfEncodeState;

/* ---- options ---- */

/* What a job may do with each option (see BulkopsJobRule), and why. */
static const BulkopsOptionDef sf_options[] = {
	/*
	 * rows per job, and so per item of the org's daily batch allocation,
	 * which Salesforce counts per 10,000 records of a job (see
	 * SF_DEFAULT_BATCH_SIZE): the generic option with another default
	 */
	{"batch_size", BULKOPS_OPT_INT, 1, 1000000, BULKOPS_JOB_AT_MOST,
	.dflt = SF_DEFAULT_BATCH_SIZE},
	/* a segment of every request's path: which API the target speaks */
	{"api_version", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY,
	.dflt_text = SF_DEFAULT_API},
	/* clears the fields of null columns: no more than sending other values */
	{"nulls", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_ANY,.dflt_text = "set_null"},
	/* deletes for good, past the recycle bin */
	{"hard_delete", BULKOPS_OPT_BOOL, 0, 0, BULKOPS_JOB_TARGET_OR_SAFE,.dflt = 0},
	/* minutes before a request refused for the org's limits is made again */
	{"limit_backoff", BULKOPS_OPT_REAL, 0, 1440, BULKOPS_JOB_AT_LEAST,
	.dflt = SF_DEFAULT_LIMIT_BACKOFF_MIN},
	/* how the CSV is written: the same records whatever the choice */
	{"column_delimiter", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_ANY,
	.dflt_text = "COMMA"},
	{"line_ending", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_ANY,.dflt_text = "LF"},
	/* the fate of the job's own unprocessed rows, within its max_attempts */
	{"resubmit_unprocessed", BULKOPS_OPT_BOOL, 0, 0, BULKOPS_JOB_ANY,.dflt = 1},
	/* records per page of a query export, each page held in memory */
	{"max_records", BULKOPS_OPT_INT, 1, 1000000, BULKOPS_JOB_AT_MOST,
	.dflt = SF_DEFAULT_MAX_RECORDS},

	/*
	 * exports deleted and archived records too (queryAll): more than the
	 * target's owner may have meant to let out.  query_all is its older name;
	 * either one false turns it off (see sf_include_deleted).
	 */
	{"include_deleted", BULKOPS_OPT_BOOL, 0, 0, BULKOPS_JOB_TARGET_OR_SAFE,
	.dflt = 0,.alias = "query_all"},
	{"query_all", BULKOPS_OPT_BOOL, 0, 0, BULKOPS_JOB_TARGET_OR_SAFE,
	.dflt = 0,.alias = "include_deleted"},
	/* what bulk_query does with its table */
	BULKOPS_EXPORT_OPTIONS,
	{NULL}
};

/* Salesforce's names of the column delimiters it takes (columnDelimiter) */
static const struct
{
	const char *name;
	char		c;
}			sf_delimiters[] = {
	{"COMMA", ','}, {"TAB", '\t'}, {"SEMICOLON", ';'}, {"PIPE", '|'},
	{"CARET", '^'}, {"BACKQUOTE", '`'}
};

/* The column delimiter options ask for; 0 for a name Salesforce has not. */
char
sf_delimiter(Jsonb *options)
{
	char	   *name = bulkops_opt_string(options, "column_delimiter", "COMMA");
	int			i;

	for (i = 0; i < lengthof(sf_delimiters); i++)
		if (strcmp(sf_delimiters[i].name, name) == 0)
			return sf_delimiters[i].c;
	return '\0';
}

/* The line ending options ask for: "\n", "\r\n", or NULL for another. */
const char *
sf_line_ending(Jsonb *options)
{
	char	   *name = bulkops_opt_string(options, "line_ending", "LF");

	if (strcmp(name, "LF") == 0)
		return "\n";
	if (strcmp(name, "CRLF") == 0)
		return "\r\n";
	return NULL;
}

bool
sf_all_chars(const char *s, const char *allowed_first, const char *allowed)
{
	if (s == NULL || s[0] == '\0' || strchr(allowed_first, s[0]) == NULL)
		return false;
	return strspn(s, allowed) == strlen(s);
}


static void
sf_check_options(Jsonb *options)
{
	char	   *api = bulkops_opt_string(options, "api_version", SF_DEFAULT_API);
	char	   *nulls = bulkops_opt_string(options, "nulls", "set_null");
	char	   *dot = strchr(api, '.');

	if (dot == NULL || dot == api || !sf_all_chars(api, DIGITS, DIGITS ".") ||
		strchr(dot + 1, '.') != NULL || dot[1] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("salesforce option \"api_version\" must look like \"%s\"",
						SF_DEFAULT_API)));
	if (strcmp(nulls, "set_null") != 0 && strcmp(nulls, "keep") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("salesforce option \"nulls\" must be \"set_null\" or \"keep\"")));
	if (sf_delimiter(options) == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("salesforce option \"column_delimiter\" must be one of COMMA, TAB, SEMICOLON, PIPE, CARET, BACKQUOTE")));
	if (sf_line_ending(options) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("salesforce option \"line_ending\" must be \"LF\" or \"CRLF\"")));
	bulkops_check_export_options(options);
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
	if (!sf_all_chars(resource, LETTERS, LETTERS DIGITS "_"))
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
bool
sf_key_is_id(BulkopsOp op)
{
	return op == BULKOPS_OP_UPDATE || op == BULKOPS_OP_DELETE;
}

/* ---- encoding ---- */

static void
sf_begin_encode(BulkopsEncodeTarget *target, BulkopsEncoder *enc)
{
	SfEncodeState *st = palloc0(sizeof(SfEncodeState));
	int			natts = bulkops_encoder_natts(enc);
	bool		id_key = sf_key_is_id(target->op);
	int			i;

	st->null_text = strcmp(bulkops_opt_string(target->options, "nulls", "set_null"),
						   "keep") == 0 ? "" : SF_SET_NULL;
	st->delim = sf_delimiter(target->options);
	st->eol = sf_line_ending(target->options);
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
			appendStringInfoChar(target->prologue, st->delim);
		(void) bulkops_csv_field_delim(target->prologue, name, strlen(name), st->delim);
	}
	appendStringInfoString(target->prologue, st->eol);
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
									st->null_text, st->delim, st->eol, out,
									&problem);
	if (unlikely(bad >= 0))
		bulkops_csv_refuse_row(enc, st->row, bad, problem);
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

void
sf_set_json_body(BulkopsRequest *req, const char *method, char *url,
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
	appendStringInfo(body, ",\"contentType\":\"CSV\",\"columnDelimiter\":\"%s\","
					 "\"lineEnding\":\"%s\"}",
					 bulkops_opt_string(batch->options, "column_delimiter", "COMMA"),
					 bulkops_opt_string(batch->options, "line_ending", "LF"));
	sf_set_json_body(req, "POST", jobs_url(batch), body);
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

static void
sf_build_request(const BulkopsBatch *batch, BulkopsRequest *req)
{
	int			step = effective_step(batch);
	static const char *const files[] = {
		"successfulResults/", "failedResults/", "unprocessedrecords/"
	};

	if (batch->op == BULKOPS_OP_QUERY)
	{
		sf_query_build_request(batch, req);
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
			sf_set_json_body(req, "PATCH", job_url(batch, ""), state_body("UploadComplete"));
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
			req->stream_state = sf_make_stream(batch, step);
			req->on_data = sf_stream_data;
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
		sf_set_json_body(req, "PATCH", psprintf("%s/%s", sf_query_jobs_url(batch), batch->remote_id),
						 state_body("Aborted"));
		return true;
	}
	/* before step 1 there is no job yet; from step 4 on it is final */
	if (batch->remote_id == NULL || effective_step(batch) < SF_STEP_UPLOAD ||
		effective_step(batch) > SF_STEP_POLL)
		return false;
	sf_set_json_body(req, "PATCH", job_url(batch, ""), state_body("Aborted"));
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

char *
sf_error_text(const BulkopsResponse *resp, const char *what)
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

void
sf_next_step(const BulkopsBatch *batch, BulkopsResult *result, int step,
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
		if (!sf_all_chars(id, LETTERS DIGITS, LETTERS DIGITS))
		{
			result->next = BULKOPS_NEXT_RETRY;
			result->error = pstrdup("the answer to creating a job has no usable job id");
			return;
		}
		sf_next_step(batch, result, SF_STEP_UPLOAD, id);
		result->delay_ms = 1;	/* nothing to wait for: upload at once */
		return;
	}
	if (resp->status >= 400 && resp->status < 500)
	{
		char	   *code;
		char	   *message;

		answer_error(resp, &code, &message);
		result->next = BULKOPS_NEXT_FAIL;
		result->error = sf_error_text(resp, "could not create the job");
		result->error_code = code;
		return;
	}
	result->next = BULKOPS_NEXT_RETRY;
	result->error = sf_error_text(resp, "could not create the job");
}

static void
handle_upload(const BulkopsBatch *batch, const BulkopsResponse *resp,
			  BulkopsResult *result)
{
	if (resp->status >= 200 && resp->status < 300)
	{
		sf_next_step(batch, result, SF_STEP_CLOSE, batch->remote_id);
		result->delay_ms = 1;
	}
	else if (resp->status >= 400 && resp->status < 500 && resp->status != 401)
		new_job(result, sf_error_text(resp, psprintf("job %s refused its data", batch->remote_id)));
	else
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = sf_error_text(resp, "upload failed");
	}
}

static void
handle_close(const BulkopsBatch *batch, const BulkopsResponse *resp,
			 BulkopsResult *result)
{
	if (resp->status == 401 || resp->status >= 500)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = sf_error_text(resp, "could not close the upload");
		return;
	}

	/*
	 * A refusal may mean the job was closed already (an answer lost before a
	 * restart) or aborted, or will never close: the job's state says which.
	 */
	sf_next_step(batch, result, SF_STEP_POLL, batch->remote_id);
	if (resp->status >= 300)
		result->error = sf_error_text(resp, "could not close the upload");
}

char *
sf_progress_json(JsonbContainer *root)
{
	char	   *processed = bulkops_jtext(bulkops_jget(root, "numberRecordsProcessed"));
	char	   *failed = bulkops_jtext(bulkops_jget(root, "numberRecordsFailed"));

	if (processed == NULL || !sf_all_chars(processed, DIGITS, DIGITS))
		processed = "0";
	if (failed == NULL || !sf_all_chars(failed, DIGITS, DIGITS))
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
		bulkops_result_task_gone(result,
								 sf_error_text(resp, psprintf("job %s is gone",
															  batch->remote_id)));
		return;
	}
	if (!bulkops_read_answer(resp, result, &root))
		return;
	state = bulkops_jtext(bulkops_jget(root, "state"));
	if (resp->status != 200 || state == NULL)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = sf_error_text(resp, "could not poll the job");
		return;
	}
	result->progress = sf_progress_json(root);

	if (strcmp(state, "UploadComplete") == 0 || strcmp(state, "InProgress") == 0)
		sf_next_step(batch, result, SF_STEP_POLL, batch->remote_id);
	else if (strcmp(state, "JobComplete") == 0 || strcmp(state, "Failed") == 0 ||
			 strcmp(state, "Aborted") == 0)
	{
		MemoryContext old = MemoryContextSwitchTo(batch->memo_cxt);
		SfMemo	   *memo = palloc0(sizeof(SfMemo));

		memo->state = pstrdup(state);
		memo->error = bulkops_jtext(bulkops_jget(root, "errorMessage"));
		memo->mark = palloc0(Max(batch->nrows, 1));
		MemoryContextSwitchTo(old);
		sf_next_step(batch, result, SF_STEP_SUCCESSES, batch->remote_id);
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

static void
sf_handle_response(const BulkopsBatch *batch, const BulkopsResponse *resp,
				   BulkopsResult *result)
{
	if (limit_exceeded(batch, resp, result))
		return;
	if (batch->op == BULKOPS_OP_QUERY)
	{
		sf_query_handle_response(batch, resp, result);
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
			sf_handle_result_file(batch, resp, result);
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
