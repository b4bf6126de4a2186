/*-------------------------------------------------------------------------
 *
 * clinia.c
 *	  The "clinia" dialect: bulk operation requests answered by an
 *	  asynchronous task (docs/protocols/clinia.md).
 *
 * Steps: 0 submits {"operations": [...]} for the pending rows; the answer is
 * ACCEPTED with a task id (-> step 1) or REJECTED with one receipt per
 * operation.  Step 1 polls the task until it is final and reads one receipt
 * per operation, in operation order, which is why the n-th operation maps
 * to the n-th pending row (see dialect.h).
 *
 * Like every dialect this file knows nothing of tables or the worker loop;
 * it allocates in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

#include "bulkops.h"
#include "dialect.h"

#define CLINIA_STEP_SUBMIT	0
#define CLINIA_STEP_POLL	1

typedef struct CliniaEncodeState
{
	bool	   *omit;			/* columns not sent inside "data" */
	int			contained_att;	/* the column named "contained", or -1 */
	char	   *type_json;		/* "type":"<resource>" pre-escaped */
} CliniaEncodeState;

/* What a job may do with each option (see BulkopsJobRule), and why. */
static const BulkopsOptionDef clinia_options[] = {
	/* a segment of every request's path: which collection is written */
	{"kind", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY,
	.dflt_text = "resources"},
	/* the fate of the job's own cancelled rows, within its max_attempts */
	{"resubmit_cancelled", BULKOPS_OPT_BOOL, 0, 0, BULKOPS_JOB_ANY,.dflt = 1},
	{NULL}
};

static const char *
clinia_kind(Jsonb *options)
{
	char	   *kind = bulkops_opt_string(options, "kind", "resources");

	return kind;
}

static void
clinia_validate_target(const char *url, const char *resource, Jsonb *options)
{
	const char *kind = clinia_kind(options);

	if (resource == NULL || resource[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("clinia targets need a resource"),
				 errdetail("The resource is the \"type\" of every operation sent."),
				 errhint("Pass resource => 'Practitioner', for example.")));
	bulkops_check_identifier("clinia", NULL, resource);
	if (strcmp(kind, "resources") != 0 && strcmp(kind, "relationships") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("clinia option \"kind\" must be \"resources\" or \"relationships\"")));
}

static void
clinia_begin_encode(BulkopsEncodeTarget *target, BulkopsEncoder *enc)
{
	CliniaEncodeState *st = palloc0(sizeof(CliniaEncodeState));
	int			natts = bulkops_encoder_natts(enc);
	StringInfoData buf;

	st->omit = palloc0(sizeof(bool) * Max(natts, 1));
	if (target->key_att >= 0)
		st->omit[target->key_att] = true;
	st->contained_att = bulkops_encoder_find(enc, "contained");
	if (st->contained_att >= 0)
		st->omit[st->contained_att] = true;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "\"type\":");
	bulkops_json_string(&buf, target->resource, strlen(target->resource));
	st->type_json = buf.data;
	target->private = st;
}

static void
append_id(BulkopsEncodeTarget *target, StringInfo out)
{
	appendStringInfoString(out, "\"id\":");
	bulkops_json_string(out, target->key_text, strlen(target->key_text));
	appendStringInfoChar(out, ',');
}

static void
clinia_encode_row(BulkopsEncodeTarget *target, BulkopsEncoder *enc,
				  Datum *values, bool *nulls, StringInfo out)
{
	CliniaEncodeState *st = target->private;
	const char *action;
	const char *member;

	switch (target->op)
	{
		case BULKOPS_OP_INSERT:
			action = "CREATE";
			member = "create";
			break;
		case BULKOPS_OP_DELETE:
			action = "DELETE";
			member = "delete";
			break;
		default:
			action = "UPSERT";
			member = "upsert";
			break;
	}
	appendStringInfo(out, "{\"action\":\"%s\",\"%s\":{", action, member);
	if (target->op != BULKOPS_OP_INSERT)
		append_id(target, out);
	appendStringInfoString(out, st->type_json);
	if (target->op != BULKOPS_OP_DELETE)
	{
		appendStringInfoString(out, ",\"data\":");
		bulkops_encode_object(enc, values, nulls, st->omit, out);
		if (st->contained_att >= 0 && !nulls[st->contained_att])
		{
			appendStringInfoString(out, ",\"contained\":");
			bulkops_encode_value(enc, st->contained_att,
								 values[st->contained_att], false, out);
		}
	}
	appendStringInfoString(out, "}}");
}

static char *
bulk_url(const BulkopsBatch *batch)
{
	return psprintf("%s/%s/bulk", batch->url, clinia_kind(batch->options));
}

static void
clinia_build_request(const BulkopsBatch *batch, BulkopsRequest *req)
{
	if (batch->step == CLINIA_STEP_POLL)
	{
		req->method = "GET";
		req->url = psprintf("%s/%s?withReceipts=true", bulk_url(batch),
							bulkops_url_segment(batch->remote_id));
		return;
	}

	req->method = "POST";
	req->url = bulk_url(batch);
	req->content_type = "application/json";
	req->body = makeStringInfo();
	appendStringInfoString(req->body, "{\"operations\":[");
	bulkops_append_pending(batch, req->body);
	appendStringInfoString(req->body, "]}");
}

/*
 * A clinia answer, read in one pass: only what the dialect uses of it.  A
 * poll answer carries one receipt per operation (10,000 for a batch of
 * 10,000 rows); building a jsonb of it to look three fields up per receipt
 * cost a tenth of the worker's time.  Values follow bulkops_jtext: strings
 * as they are, numbers and booleans printed, anything else NULL; of
 * repeated keys the last one counts, as in jsonb.
 */
typedef struct CliniaReceipt
{
	char	   *status;
	char	   *id;
	char	   *error_type;
	char	   *error_code;
	char	   *error_message;
} CliniaReceipt;

typedef struct CliniaAnswer
{
	char	   *status;
	char	   *task_id;
	char	   *bulk_id;
	char	   *error_message;	/* error.message */
	int			nreceipts;		/* -1: "receipts" is not an array */
	int			cap;
	CliniaReceipt *receipts;
} CliniaAnswer;

/* nesting deeper than this is read, but nothing there is looked at */
#define CLINIA_DEPTH 5

typedef struct CliniaReader
{
	CliniaAnswer *a;
	int			depth;			/* containers open; 1 inside the top object */
	bool		is_object[CLINIA_DEPTH];
	char	   *field[CLINIA_DEPTH];	/* field being read, per depth */
} CliniaReader;

static bool
at(CliniaReader *r, int depth, const char *field)
{
	return r->depth == depth && r->is_object[depth] && r->field[depth] &&
		strcmp(r->field[depth], field) == 0;
}

static bool
in_receipts_array(CliniaReader *r)
{
	return r->depth >= 2 && r->is_object[1] && !r->is_object[2] &&
		r->field[1] && strcmp(r->field[1], "receipts") == 0;
}

/* the receipt whose object is open at depth 3, or NULL */
static CliniaReceipt *
open_receipt(CliniaReader *r)
{
	if (r->depth < 3 || !r->is_object[3] || !in_receipts_array(r) ||
		r->a->nreceipts <= 0)
		return NULL;
	return &r->a->receipts[r->a->nreceipts - 1];
}

/* where a value of the current field goes, or NULL if nowhere */
static char **
slot_for(CliniaReader *r)
{
	CliniaReceipt *rc;

	if (at(r, 1, "status"))
		return &r->a->status;
	if (at(r, 1, "taskId"))
		return &r->a->task_id;
	if (at(r, 1, "bulkId"))
		return &r->a->bulk_id;
	if (at(r, 2, "message") && r->field[1] && strcmp(r->field[1], "error") == 0)
		return &r->a->error_message;
	if ((rc = open_receipt(r)) == NULL)
		return NULL;
	if (at(r, 3, "status"))
		return &rc->status;
	if (at(r, 3, "id"))
		return &rc->id;
	if (r->field[3] && strcmp(r->field[3], "error") == 0)
	{
		if (at(r, 4, "type"))
			return &rc->error_type;
		if (at(r, 4, "code"))
			return &rc->error_code;
		if (at(r, 4, "message"))
			return &rc->error_message;
	}
	return NULL;
}

static void
reader_open(void *state, bool is_object)
{
	CliniaReader *r = state;
	char	  **slot = slot_for(r);

	/* a container where a scalar was wanted reads as NULL */
	if (slot)
		*slot = NULL;
	if (!is_object && at(r, 1, "receipts"))
		r->a->nreceipts = 0;
	r->depth++;
	if (r->depth < CLINIA_DEPTH)
	{
		r->is_object[r->depth] = is_object;
		r->field[r->depth] = NULL;
	}
}

static void
reader_object_start(void *state)
{
	reader_open(state, true);
}

static void
reader_array_start(void *state)
{
	reader_open(state, false);
}

static void
reader_close(void *state)
{
	((CliniaReader *) state)->depth--;
}

static void
reader_field_start(void *state, char *fname, bool isnull)
{
	CliniaReader *r = state;

	if (r->depth >= CLINIA_DEPTH)
	{
		pfree(fname);
		return;
	}
	if (r->field[r->depth])
		pfree(r->field[r->depth]);
	r->field[r->depth] = fname;
	/* the last of repeated keys counts: forget what an earlier one said */
	if (r->depth == 1 && strcmp(fname, "receipts") == 0)
		r->a->nreceipts = -1;
	else if (r->depth == 1 && strcmp(fname, "error") == 0)
		r->a->error_message = NULL;
	else if (r->depth == 3 && strcmp(fname, "error") == 0 && open_receipt(r))
	{
		CliniaReceipt *rc = open_receipt(r);

		rc->error_type = rc->error_code = rc->error_message = NULL;
	}
}

static void
reader_element_start(void *state, bool isnull)
{
	CliniaReader *r = state;
	CliniaAnswer *a = r->a;

	if (r->depth != 2 || !in_receipts_array(r))
		return;
	if (a->nreceipts == a->cap)
	{
		a->cap = Max(a->cap * 2, 64);
		a->receipts = a->receipts
			? repalloc(a->receipts, sizeof(CliniaReceipt) * a->cap)
			: palloc(sizeof(CliniaReceipt) * a->cap);
	}
	memset(&a->receipts[a->nreceipts++], 0, sizeof(CliniaReceipt));
}

static void
reader_scalar(void *state, char *token, JsonTokenType type)
{
	char	  **slot = slot_for((CliniaReader *) state);

	if (slot == NULL)
	{
		pfree(token);
		return;
	}
	switch (type)
	{
		case JSON_TOKEN_STRING:
			*slot = token;
			break;
		case JSON_TOKEN_NUMBER:
			*slot = DatumGetCString(DirectFunctionCall1(numeric_out,
														DirectFunctionCall3(numeric_in,
																			CStringGetDatum(token),
																			ObjectIdGetDatum(InvalidOid),
																			Int32GetDatum(-1))));
			break;
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
			*slot = token;
			break;
		default:
			*slot = NULL;
			break;
	}
}

/*
 * Read resp's body into *a.  A body that is not JSON leaves *a empty; for a
 * successful answer that is a transient fault: returns false with result
 * set to retry, as bulkops_read_answer does.
 */
static bool
read_answer(const BulkopsResponse *resp, BulkopsResult *result, CliniaAnswer *a)
{
	MemoryContext cxt = CurrentMemoryContext;
	CliniaReader r = {0};
	JsonSemAction sem = {0};
	char	   *volatile why = NULL;

	memset(a, 0, sizeof(CliniaAnswer));
	a->nreceipts = -1;
	r.a = a;
	sem.semstate = &r;
	sem.object_start = reader_object_start;
	sem.object_end = reader_close;
	sem.array_start = reader_array_start;
	sem.array_end = reader_close;
	sem.object_field_start = reader_field_start;
	sem.array_element_start = reader_element_start;
	sem.scalar = reader_scalar;

	PG_TRY();
	{
		JsonLexContext *lex;
		JsonParseErrorType err;

		lex = makeJsonLexContextCstringLen(resp->body ? (char *) resp->body : "",
										   resp->body ? resp->len : 0,
										   GetDatabaseEncoding(), true);
		err = pg_parse_json(lex, &sem);
		if (err != JSON_SUCCESS)
			why = psprintf("invalid input syntax for type json: %s",
						   json_errdetail(err, lex));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* too deep, or a number numeric_in refuses */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		why = edata->message;
	}
	PG_END_TRY();

	if (why == NULL)
		return true;
	memset(a, 0, sizeof(CliniaAnswer));
	a->nreceipts = -1;
	if (resp->status < 300)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("malformed JSON in an HTTP %ld answer: %s",
								 resp->status, why);
		return false;
	}
	return true;
}

/* The message of a {"error": {"code", "message"}} answer, or the status. */
static char *
error_text(const BulkopsResponse *resp, const CliniaAnswer *a)
{
	if (a->error_message)
		return psprintf("HTTP %ld: %s", resp->status, a->error_message);
	return psprintf("HTTP %ld", resp->status);
}

/* How an answer's receipts fail to match the batch's operations. */
static char *
receipts_mismatch(const BulkopsBatch *batch, const CliniaAnswer *a)
{
	if (a->nreceipts < 0)
		return pstrdup("without a receipts array");
	return psprintf("with %d receipts for %d operations", a->nreceipts, batch->npending);
}

/*
 * Read one receipt per pending row.  Returns false if CANCELLED receipts
 * were left pending for a resubmission.
 */
static bool
read_receipts(const BulkopsBatch *batch, const CliniaAnswer *a,
			  BulkopsResult *result, bool resubmit_cancelled)
{
	int			n = 0;
	int			i;
	bool		left = false;

	for (i = 0; i < batch->nrows; i++)
	{
		const CliniaReceipt *r;
		BulkopsOutcome *o;

		if (!batch->pending[i])
			continue;
		r = &a->receipts[n++];
		if (r->status && strcmp(r->status, "SUCCESS") == 0)
		{
			o = bulkops_outcome(result, i, BULKOPS_ROW_SUCCEEDED);
			o->remote_id = r->id;
			if (batch->op == BULKOPS_OP_INSERT)
				o->created = 1;
		}
		else if (r->status && strcmp(r->status, "FAILURE") == 0)
		{
			o = bulkops_outcome(result, i, BULKOPS_ROW_FAILED);
			o->error_code = r->error_type ? r->error_type : r->error_code;
			o->error_message = r->error_message;
			o->remote_id = r->id;
		}
		else if (r->status && strcmp(r->status, "CANCELLED") == 0)
		{
			if (resubmit_cancelled)
				left = true;
			else
				bulkops_outcome(result, i, BULKOPS_ROW_CANCELLED)->error_message =
					pstrdup("cancelled by the remote side because another operation of its request failed");
		}
		else
			bulkops_outcome(result, i, BULKOPS_ROW_UNKNOWN)->error_message =
				psprintf("the task ended with this operation in state \"%s\"",
						 r->status ? r->status : "(none)");
	}
	return !left;
}

static void
handle_submit(const BulkopsBatch *batch, const BulkopsResponse *resp,
			  const CliniaAnswer *a, BulkopsResult *result)
{
	const char *status = a->status;

	if ((resp->status == 200 || resp->status == 202) && status &&
		strcmp(status, "ACCEPTED") == 0)
	{
		char	   *task = a->task_id ? a->task_id : a->bulk_id;

		/* escaped in the poll's URL, but a dot segment would still move it */
		if (task == NULL || task[0] == '\0' || strcmp(task, ".") == 0 ||
			strcmp(task, "..") == 0)
		{
			result->next = BULKOPS_NEXT_RETRY;
			result->error = pstrdup("ACCEPTED answer without a usable taskId");
			return;
		}
		result->next = BULKOPS_NEXT_STEP;
		result->step = CLINIA_STEP_POLL;
		result->remote_id = task;
		return;
	}

	if (resp->status == 400 && status && strcmp(status, "REJECTED") == 0 &&
		a->nreceipts == batch->npending)
	{
		bool		resubmit = bulkops_opt_bool(batch->options,
												"resubmit_cancelled", true);
		int			before = list_length(result->outcomes);

		if (read_receipts(batch, a, result, resubmit))
			result->next = BULKOPS_NEXT_DONE;
		else if (list_length(result->outcomes) == before)
		{
			/* nothing failed, yet nothing was taken: do not loop */
			bulkops_result_settle_rest(batch, result, BULKOPS_ROW_FAILED,
									   "request rejected without a failing operation");
			result->next = BULKOPS_NEXT_DONE;
		}
		else
		{
			result->next = BULKOPS_NEXT_RESUBMIT;
			result->counts_attempt = false;
		}
		return;
	}

	if (resp->status >= 400 && resp->status < 500)
	{
		/* a rejection applied nothing, even one we cannot match to rows */
		result->next = BULKOPS_NEXT_FAIL;
		if (status && strcmp(status, "REJECTED") == 0)
			result->error = psprintf("HTTP %ld: request REJECTED %s", resp->status,
									 receipts_mismatch(batch, a));
		else
			result->error = error_text(resp, a);
		return;
	}
	result->next = BULKOPS_NEXT_RETRY;
	result->error = status
		? psprintf("unexpected answer to the bulk request (HTTP %ld, status \"%s\")",
				   resp->status, status)
		: psprintf("unexpected answer to the bulk request (HTTP %ld)", resp->status);
}

static void
handle_poll(const BulkopsBatch *batch, const BulkopsResponse *resp,
			const CliniaAnswer *a, BulkopsResult *result)
{
	const char *status = a->status;

	if (resp->status == 404)
	{
		bulkops_result_task_gone(result,
								 psprintf("task %s is not known to the remote side",
										  batch->remote_id));
		return;
	}
	if (resp->status != 200 || status == NULL)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("unexpected answer to a task poll (HTTP %ld)",
								 resp->status);
		return;
	}
	if (strcmp(status, "PENDING") == 0)
	{
		result->next = BULKOPS_NEXT_STEP;
		result->step = CLINIA_STEP_POLL;
		result->remote_id = pstrdup(batch->remote_id);
		return;
	}
	if (strcmp(status, "SUCCESS") != 0 && strcmp(status, "FAILURE") != 0 &&
		strcmp(status, "CANCELLED") != 0)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("task in unknown state \"%s\"", status);
		return;
	}
	if (a->nreceipts != batch->npending)
	{
		/*
		 * A final task whose receipts cannot be matched to rows: the work
		 * may or may not be done, and guessing would be worse than saying
		 * so.
		 */
		result->error = psprintf("task %s ended %s %s", batch->remote_id, status,
								 receipts_mismatch(batch, a));
		bulkops_result_settle_rest(batch, result, BULKOPS_ROW_UNKNOWN, result->error);
		result->next = BULKOPS_NEXT_DONE;
		return;
	}
	if (read_receipts(batch, a, result,
					  bulkops_opt_bool(batch->options, "resubmit_cancelled", true)))
		result->next = BULKOPS_NEXT_DONE;
	else
	{
		result->next = BULKOPS_NEXT_RESUBMIT;
		result->counts_attempt = true;
	}
}

static void
clinia_handle_response(const BulkopsBatch *batch, const BulkopsResponse *resp,
					   BulkopsResult *result)
{
	CliniaAnswer a;

	if (!read_answer(resp, result, &a))
		return;
	if (batch->step == CLINIA_STEP_POLL)
		handle_poll(batch, resp, &a, result);
	else
		handle_submit(batch, resp, &a, result);
}

const BulkopsDialect bulkops_clinia_dialect = {
	.name = "clinia",
	.op_names = {
		[BULKOPS_OP_INSERT] = "CREATE",
		[BULKOPS_OP_UPSERT] = "UPSERT",
		[BULKOPS_OP_DELETE] = "DELETE",
	},
	.idempotent = {
		[BULKOPS_OP_UPSERT] = true,
		[BULKOPS_OP_DELETE] = true,
	},
	.needs_key = {
		[BULKOPS_OP_UPSERT] = true,
		[BULKOPS_OP_DELETE] = true,
	},
	.options = clinia_options,
	.validate_target = clinia_validate_target,
	.begin_encode = clinia_begin_encode,
	.encode_row = clinia_encode_row,
	.build_request = clinia_build_request,
	.handle_response = clinia_handle_response,
};
