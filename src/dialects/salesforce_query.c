/*-------------------------------------------------------------------------
 *
 * salesforce_query.c
 *	  The "salesforce" dialect's query jobs (bulkops.bulk_query):
 *	  Bulk API 2.0 jobs/query, polled, then read page by page.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/jsonb.h"

#include "bulkops.h"
#include "dialect.h"
#include "salesforce.h"

/* ---- query jobs (bulk_query) ---- */

/*
 * A query job's one batch carries the SOQL query as its body and goes
 * through these steps (remote_id is the query job's id from step 1 on):
 *
 *	 0 create the query job (POST jobs/query: queryAll with include_deleted)
 *	 1 poll it until JobComplete; Failed or Aborted end the job
 *	 2 fetch a page of results; the next page's Sforce-Locator is kept as
 *	   the step's note, so a restart resumes at the page that was not yet
 *	   written (the worker stores each page with the note that follows it)
 *
 * Repeating any step is harmless: a query changes nothing remotely.
 *
 * A page is held in memory until the worker has written it, so it is read
 * as it streams in and refused once it grows past SF_MAX_PAGE_BYTES (or
 * bulkops.max_response_size, if lower): max_records bounds its records,
 * not their width.
 */

/* A page of results as it streams in. */
typedef struct SfPage
{
	MemoryContext cxt;			/* the request's: the page lives as long */
	StringInfoData buf;
	int			max;			/* bytes it may take */
} SfPage;

static void
page_data(void *arg, const char *data, size_t len)
{
	SfPage	   *page = arg;
	MemoryContext old;

	/* the message is all that reaches last_error: it says what to do */
	if (len > (size_t) (page->max - page->buf.len))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a page of query results is larger than %d bytes; lower the job's max_records",
						page->max)));
	old = MemoryContextSwitchTo(page->cxt);
	appendBinaryStringInfo(&page->buf, data, len);
	MemoryContextSwitchTo(old);
}

/*
 * Does the export ask for queryAll?  include_deleted, or its older name
 * query_all: on when either is on and neither is off, so that a job that
 * turns it off under either name (over a target that has it on under the
 * other) gets query.
 */
bool
sf_include_deleted(Jsonb *options)
{
	JsonbValue *a = bulkops_jsonb_get(options, "include_deleted");
	JsonbValue *b = bulkops_jsonb_get(options, "query_all");
	bool		on = false;

	if (a && a->type == jbvBool)
	{
		if (!a->val.boolean)
			return false;
		on = true;
	}
	if (b && b->type == jbvBool)
	{
		if (!b->val.boolean)
			return false;
		on = true;
	}
	return on;
}

char *
sf_query_jobs_url(const BulkopsBatch *batch)
{
	char	   *api = bulkops_opt_string(batch->options, "api_version", SF_DEFAULT_API);

	return psprintf("%s/services/data/v%s/jobs/query", batch->url, api);
}

void
sf_query_build_request(const BulkopsBatch *batch, BulkopsRequest *req)
{
	switch (batch->step)
	{
		case SF_QSTEP_CREATE:
			{
				StringInfo	body = makeStringInfo();

				appendStringInfo(body, "{\"operation\":\"%s\",\"query\":",
								 sf_include_deleted(batch->options)
								 ? "queryAll" : "query");
				/* the body is the query, NUL-terminated, with no rows in it */
				bulkops_json_string(body, batch->body, strlen(batch->body));
				appendStringInfoChar(body, '}');
				sf_set_json_body(req, "POST", sf_query_jobs_url(batch), body);
				break;
			}
		case SF_QSTEP_POLL:
			req->method = "GET";
			req->url = psprintf("%s/%s", sf_query_jobs_url(batch), batch->remote_id);
			break;
		default:
			{
				BulkopsHeader *accept = palloc(sizeof(BulkopsHeader));
				SfPage	   *page = palloc0(sizeof(SfPage));
				StringInfoData url;

				initStringInfo(&url);
				appendStringInfo(&url, "%s/%s/results?maxRecords=%d",
								 sf_query_jobs_url(batch), batch->remote_id,
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
				page->cxt = CurrentMemoryContext;
				initStringInfo(&page->buf);
				page->max = Min(SF_MAX_PAGE_BYTES, bulkops_max_response_size);
				req->on_data = page_data;
				req->stream_state = page;
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
		result->error = sf_error_text(resp, psprintf("could not poll query job %s",
													 batch->remote_id));
		return;
	}
	result->progress = sf_progress_json(root);
	if (strcmp(state, "UploadComplete") == 0 || strcmp(state, "InProgress") == 0)
		sf_next_step(batch, result, SF_QSTEP_POLL, batch->remote_id);
	else if (strcmp(state, "JobComplete") == 0)
	{
		sf_next_step(batch, result, SF_QSTEP_PAGE, batch->remote_id);
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
	SfPage	   *page = resp->stream_state;

	if (resp->status != 200 || page == NULL)
	{
		result->next = resp->status >= 400 && resp->status < 500 &&
			resp->status != 401 && resp->status != 409
			? BULKOPS_NEXT_FAIL : BULKOPS_NEXT_RETRY;
		result->error = sf_error_text(resp, psprintf("could not fetch results of query job %s",
													 batch->remote_id));
		return;
	}
	result->page = page->buf.data;
	result->page_len = page->buf.len;
	if (locator == NULL || locator[0] == '\0' || strcmp(locator, "null") == 0)
	{
		result->next = BULKOPS_NEXT_DONE;
		return;
	}
	sf_next_step(batch, result, SF_QSTEP_PAGE, batch->remote_id);
	result->step_data = pstrdup(locator);
	result->delay_ms = 1;
}

void
sf_query_handle_response(const BulkopsBatch *batch, const BulkopsResponse *resp,
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
					sf_all_chars(id, LETTERS DIGITS, LETTERS DIGITS))
				{
					sf_next_step(batch, result, SF_QSTEP_POLL, id);
					return;
				}
				result->next = resp->status >= 400 && resp->status < 500 &&
					resp->status != 401 ? BULKOPS_NEXT_FAIL : BULKOPS_NEXT_RETRY;
				result->error = sf_error_text(resp, "could not create the query job");
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
