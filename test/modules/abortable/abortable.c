/*-------------------------------------------------------------------------
 *
 * abortable.c
 *	  A dialect for tests only: one remote job per batch that runs until it
 *	  is done or aborted, so that the worker's generic handling of
 *	  build_abort can be tested against the mock (test/mock/abortable.py).
 *
 *	  POST {url}/jobs {"rows": [...]}	-> 202 {"id": "j_N"}		(step 0)
 *	  GET  {url}/jobs/{id}				-> {"state": "running"}		(step 1)
 *										   {"state": "done"|"aborted",
 *											"results": ["ok"|"failed"|"skipped", ...]}
 *	  POST {url}/jobs/{id}/abort		-> 200 {"state": "aborting"}
 *
 * Results come in row order; "skipped" rows were never applied.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "dialect.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static void
ab_validate_target(const char *url, const char *resource, Jsonb *options)
{
}

static void
ab_begin_encode(BulkopsEncodeTarget *target, BulkopsEncoder *enc)
{
}

static void
ab_encode_row(BulkopsEncodeTarget *target, BulkopsEncoder *enc,
			  Datum *values, bool *nulls, StringInfo out)
{
	bulkops_encode_object(enc, values, nulls, NULL, out);
}

static void
ab_build_request(const BulkopsBatch *batch, BulkopsRequest *req)
{
	if (batch->step == 1)
	{
		req->method = "GET";
		req->url = psprintf("%s/jobs/%s", batch->url, batch->remote_id);
		return;
	}
	req->method = "POST";
	req->url = psprintf("%s/jobs", batch->url);
	req->content_type = "application/json";
	req->body = makeStringInfo();
	appendStringInfoString(req->body, "{\"rows\":[");
	bulkops_append_pending(batch, req->body);
	appendStringInfoString(req->body, "]}");
}

static bool
ab_build_abort(const BulkopsBatch *batch, BulkopsRequest *req)
{
	if (batch->step != 1)
		return false;
	req->method = "POST";
	req->url = psprintf("%s/jobs/%s/abort", batch->url, batch->remote_id);
	return true;
}

static void
ab_handle_response(const BulkopsBatch *batch, const BulkopsResponse *resp,
				   BulkopsResult *result)
{
	Jsonb	   *jb = bulkops_json_parse(resp->body, resp->len);
	char	   *state;
	JsonbContainer *results;
	int			n = 0;
	int			i;

	if (batch->step == 0)
	{
		if (resp->status != 202)
		{
			result->next = BULKOPS_NEXT_FAIL;
			result->error = psprintf("HTTP %ld", resp->status);
			return;
		}
		result->next = BULKOPS_NEXT_STEP;
		result->step = 1;
		result->remote_id = bulkops_jtext(bulkops_jget(&jb->root, "id"));
		return;
	}
	state = bulkops_jtext(bulkops_jget(&jb->root, "state"));
	if (resp->status != 200 || state == NULL)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("HTTP %ld", resp->status);
		return;
	}
	if (strcmp(state, "running") == 0)
	{
		result->next = BULKOPS_NEXT_STEP;
		result->step = 1;
		result->remote_id = pstrdup(batch->remote_id);
		return;
	}
	results = bulkops_jcontainer(bulkops_jget(&jb->root, "results"));
	if (bulkops_jarray_size(results) != batch->npending)
		elog(ERROR, "%d results for %d rows", bulkops_jarray_size(results),
			 batch->npending);
	for (i = 0; i < batch->nrows; i++)
	{
		char	   *r;

		if (!batch->pending[i])
			continue;
		r = bulkops_jtext(bulkops_jarray_get(results, n++));
		if (r && strcmp(r, "ok") == 0)
			bulkops_outcome(result, i, BULKOPS_ROW_SUCCEEDED);
		else if (r && strcmp(r, "skipped") == 0)
			bulkops_outcome(result, i, BULKOPS_ROW_CANCELLED)->error_message =
				pstrdup("the remote job was aborted before this row");
		else
			bulkops_outcome(result, i, BULKOPS_ROW_FAILED);
	}
	result->next = BULKOPS_NEXT_DONE;
}

static const BulkopsDialect abortable_dialect = {
	.name = "abortable",
	.op_names = {[BULKOPS_OP_UPSERT] = "upsert"},
	.idempotent = {[BULKOPS_OP_UPSERT] = true},
	.needs_key = {[BULKOPS_OP_UPSERT] = true},
	.validate_target = ab_validate_target,
	.begin_encode = ab_begin_encode,
	.encode_row = ab_encode_row,
	.build_request = ab_build_request,
	.handle_response = ab_handle_response,
	.build_abort = ab_build_abort,
};

void
_PG_init(void)
{
	bulkops_register_dialect(&abortable_dialect);
}
