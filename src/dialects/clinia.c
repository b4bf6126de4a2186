/*-------------------------------------------------------------------------
 *
 * clinia.c
 *	  The "clinia" dialect: bulk operation requests answered by an
 *	  asynchronous task (PROTOCOLS.md section 2).
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

static const BulkopsOptionDef clinia_options[] = {
	{"kind", BULKOPS_OPT_STRING, 0, 0},
	{"resubmit_cancelled", BULKOPS_OPT_BOOL, 0, 0},
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

/* The message of a {"error": {"code", "message"}} answer, or the status. */
static char *
error_text(const BulkopsResponse *resp, JsonbContainer *root)
{
	JsonbContainer *err = bulkops_jcontainer(bulkops_jget(root, "error"));
	char	   *msg = bulkops_jtext(bulkops_jget(err, "message"));

	if (msg)
		return psprintf("HTTP %ld: %s", resp->status, msg);
	return psprintf("HTTP %ld", resp->status);
}

/* How an answer's receipts fail to match the batch's operations. */
static char *
receipts_mismatch(const BulkopsBatch *batch, JsonbContainer *receipts)
{
	int			n = bulkops_jarray_size(receipts);

	if (n < 0)
		return pstrdup("without a receipts array");
	return psprintf("with %d receipts for %d operations", n, batch->npending);
}

/*
 * Read one receipt per pending row.  Returns false if CANCELLED receipts
 * were left pending for a resubmission.
 */
static bool
read_receipts(const BulkopsBatch *batch, JsonbContainer *receipts,
			  BulkopsResult *result, bool resubmit_cancelled)
{
	int			n = 0;
	int			i;
	bool		left = false;

	for (i = 0; i < batch->nrows; i++)
	{
		JsonbContainer *r;
		char	   *status;
		BulkopsOutcome *o;

		if (!batch->pending[i])
			continue;
		r = bulkops_jcontainer(bulkops_jarray_get(receipts, n++));
		status = bulkops_jtext(bulkops_jget(r, "status"));
		if (status && strcmp(status, "SUCCESS") == 0)
		{
			o = bulkops_outcome(result, i, BULKOPS_ROW_SUCCEEDED);
			o->remote_id = bulkops_jtext(bulkops_jget(r, "id"));
			if (batch->op == BULKOPS_OP_INSERT)
				o->created = 1;
		}
		else if (status && strcmp(status, "FAILURE") == 0)
		{
			JsonbContainer *err = bulkops_jcontainer(bulkops_jget(r, "error"));

			o = bulkops_outcome(result, i, BULKOPS_ROW_FAILED);
			o->error_code = bulkops_jtext(bulkops_jget(err, "type"));
			if (o->error_code == NULL)
				o->error_code = bulkops_jtext(bulkops_jget(err, "code"));
			o->error_message = bulkops_jtext(bulkops_jget(err, "message"));
			o->remote_id = bulkops_jtext(bulkops_jget(r, "id"));
		}
		else if (status && strcmp(status, "CANCELLED") == 0)
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
						 status ? status : "(none)");
	}
	return !left;
}

static void
handle_submit(const BulkopsBatch *batch, const BulkopsResponse *resp,
			  JsonbContainer *root, BulkopsResult *result)
{
	char	   *status = bulkops_jtext(bulkops_jget(root, "status"));
	JsonbContainer *receipts;

	if ((resp->status == 200 || resp->status == 202) && status &&
		strcmp(status, "ACCEPTED") == 0)
	{
		char	   *task = bulkops_jtext(bulkops_jget(root, "taskId"));

		if (task == NULL)
			task = bulkops_jtext(bulkops_jget(root, "bulkId"));
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

	receipts = bulkops_jcontainer(bulkops_jget(root, "receipts"));
	if (resp->status == 400 && status && strcmp(status, "REJECTED") == 0 &&
		bulkops_jarray_size(receipts) == batch->npending)
	{
		bool		resubmit = bulkops_opt_bool(batch->options,
												"resubmit_cancelled", true);
		int			before = list_length(result->outcomes);

		if (read_receipts(batch, receipts, result, resubmit))
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
									 receipts_mismatch(batch, receipts));
		else
			result->error = error_text(resp, root);
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
			JsonbContainer *root, BulkopsResult *result)
{
	char	   *status = bulkops_jtext(bulkops_jget(root, "status"));
	JsonbContainer *receipts = bulkops_jcontainer(bulkops_jget(root, "receipts"));

	if (resp->status == 404)
	{
		/* the task is gone, perhaps after running: its rows are in doubt */
		result->next = BULKOPS_NEXT_RESUBMIT;
		result->counts_attempt = true;
		result->maybe_applied = true;
		result->error = psprintf("task %s is not known to the remote side",
								 batch->remote_id);
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
	if (bulkops_jarray_size(receipts) != batch->npending)
	{
		/*
		 * A final task whose receipts cannot be matched to rows: the work
		 * may or may not be done, and guessing would be worse than saying
		 * so.
		 */
		result->error = psprintf("task %s ended %s %s", batch->remote_id, status,
								 receipts_mismatch(batch, receipts));
		bulkops_result_settle_rest(batch, result, BULKOPS_ROW_UNKNOWN, result->error);
		result->next = BULKOPS_NEXT_DONE;
		return;
	}
	if (read_receipts(batch, receipts, result,
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
	JsonbContainer *root;

	if (!bulkops_read_answer(resp, result, &root))
		return;
	if (batch->step == CLINIA_STEP_POLL)
		handle_poll(batch, resp, root, result);
	else
		handle_submit(batch, resp, root, result);
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
