/*-------------------------------------------------------------------------
 *
 * packagex_answers.c
 *	  The "packagex" dialect's answers: the batch object (submit and poll),
 *	  its progress, and the errors file that says which rows failed; each
 *	  entry checked against the id its row was sent with, and a file that
 *	  does not match the request leaving its rows unknown.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/jsonb.h"

#include "bulkops.h"
#include "csv.h"
#include "dialect.h"
#include "packagex.h"

/* ---- answers ---- */

/* The batch object of an answer: the root, or the root's "data". */
static JsonbContainer *
px_batch_object(JsonbContainer *root)
{
	JsonbContainer *data;

	if (root == NULL || !JsonContainerIsObject(root))
		return NULL;
	if (bulkops_jget(root, "id") == NULL &&
		(data = bulkops_jcontainer(bulkops_jget(root, "data"))) != NULL &&
		JsonContainerIsObject(data))
		return data;
	return root;
}

/*
 * A URL from an answer that curl can send as it is: no spaces, controls or
 * bytes beyond ASCII, which a well-formed link has percent-encoded.
 */
static bool
px_sendable_url(const char *url)
{
	const unsigned char *p;

	for (p = (const unsigned char *) url; *p; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return false;
	return true;
}

/*
 * A batch id fit to go into a URL path: "." and ".." would be dot
 * segments, which move the poll (with the API key) elsewhere.
 */
static bool
px_usable_id(const char *id)
{
	return id != NULL && id[0] != '\0' && strlen(id) <= 200 &&
		strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
		== strlen(id) && strcmp(id, ".") != 0 && strcmp(id, "..") != 0;
}

/* stats and phase counters as one flat JSON object of numbers, or NULL */
static char *
px_progress(JsonbContainer *b)
{
	static const char *const stats[] = {"created", "updated", "deleted", "overwritten", NULL};
	static const char *const phases[] = {"parsing", "validation", "processing", "cleanup", NULL};
	static const char *const counters[] = {"total", "processed", "success", "error", NULL};
	JsonbContainer *st = bulkops_jcontainer(bulkops_jget(b, "stats"));
	JsonbContainer *ph = bulkops_jcontainer(bulkops_jget(b, "phases"));
	StringInfoData out;
	int			n = bulkops_jarray_size(ph);
	int			i;
	int			j;

	initStringInfo(&out);
	for (i = 0; stats[i]; i++)
	{
		JsonbValue *v = bulkops_jget(st, stats[i]);

		if (v && v->type == jbvNumeric)
			appendStringInfo(&out, ",\"%s\":%s", stats[i], bulkops_jtext(v));
	}
	for (i = 0; i < n; i++)
	{
		JsonbContainer *p = bulkops_jcontainer(bulkops_jarray_get(ph, i));
		char	   *name = bulkops_jtext(bulkops_jget(p, "name"));
		int			known;

		/* only the documented phases: their names are safe JSON keys */
		for (known = 0; phases[known] && name; known++)
			if (strcmp(phases[known], name) == 0)
				break;
		if (name == NULL || phases[known] == NULL)
			continue;
		for (j = 0; counters[j]; j++)
		{
			JsonbValue *v = bulkops_jget(p, counters[j]);

			if (v && v->type == jbvNumeric)
				appendStringInfo(&out, ",\"%s_%s\":%s", name, counters[j],
								 bulkops_jtext(v));
		}
	}
	if (out.len == 0)
		return NULL;
	out.data[0] = '{';
	appendStringInfoChar(&out, '}');
	return out.data;
}

/*
 * The rows the batch counted as failed: its phases' error counters added
 * up, or -1 when the answer gives none.
 */
static int
px_failed_count(JsonbContainer *b)
{
	JsonbContainer *ph = bulkops_jcontainer(bulkops_jget(b, "phases"));
	int			n = bulkops_jarray_size(ph);
	int64		total = -1;
	int			i;

	for (i = 0; i < n; i++)
	{
		JsonbContainer *p = bulkops_jcontainer(bulkops_jarray_get(ph, i));
		JsonbValue *v = bulkops_jget(p, "error");
		long		e;

		if (v == NULL || v->type != jbvNumeric)
			continue;
		e = strtol(bulkops_jtext(v), NULL, 10);
		total = Max(total, 0) + Max(Min(e, PG_INT32_MAX), 0);
	}
	return (int) Min(total, PG_INT32_MAX);
}

/* A count of the batch's stats ("created", "updated"), or -1 if it gives none. */
static int
px_stat(JsonbContainer *b, const char *name)
{
	JsonbValue *v = bulkops_jget(bulkops_jcontainer(bulkops_jget(b, "stats")), name);
	long		n;

	if (v == NULL || v->type != jbvNumeric)
		return -1;
	n = strtol(bulkops_jtext(v), NULL, 10);
	return n < 0 ? -1 : (int) Min(n, PG_INT32_MAX);
}

/*
 * The rows the batch's stats say it changed that existed: "updated", plus
 * for an overwrite "overwritten" (an item it carried that replaced one); -1
 * if it does not say.
 */
static int
px_updated(const BulkopsBatch *batch, JsonbContainer *b)
{
	int			updated = px_stat(b, "updated");
	int			overwritten = px_stat(b, "overwritten");

	if (batch->op != BULKOPS_OP_OVERWRITE || updated < 0)
		return updated;
	return overwritten < 0 ? -1 : (int) Min((int64) updated + overwritten, PG_INT32_MAX);
}

/*
 * Whether the succeeded rows were created (1), updated (0), or either (-1):
 * the stats count per batch, not per row, so only a batch whose succeeded
 * rows were all created, or all updated, says it of each row.
 */
static int
px_created(const BulkopsBatch *batch, int created, int updated, int succeeded)
{
	if (batch->op == BULKOPS_OP_DELETE || succeeded <= 0 || created < 0 || updated < 0)
		return -1;
	if (created == succeeded && updated == 0)
		return 1;
	if (updated == succeeded && created == 0)
		return 0;
	return -1;
}

static bool
px_in_progress(const char *status)
{
	return strcmp(status, "requested") == 0 || strcmp(status, "queued") == 0 ||
		strcmp(status, "processing") == 0;
}

static bool
px_final(const char *status)
{
	return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
		strcmp(status, "timed_out") == 0 || strcmp(status, "expired") == 0;
}

/*
 * Was row sent with this id?  Compared as encoded, so exactly: the item's
 * first member, or with upload csv its record's first field.
 */
static bool
px_row_has_id(const BulkopsBatch *batch, int row, const char *id)
{
	StringInfoData want;
	const char *enc = batch->body + batch->offsets[row];
	int			len = batch->offsets[row + 1] - batch->offsets[row];
	bool		csv = px_upload_csv(batch->options);

	initStringInfo(&want);
	if (csv)
	{
		if (!bulkops_csv_field(&want, id, strlen(id)))
			return false;
	}
	else
	{
		appendStringInfoString(&want, "{\"id\":");
		bulkops_json_string(&want, id, strlen(id));
	}
	return len > want.len && memcmp(enc, want.data, want.len) == 0 &&
		(csv ? (enc[want.len] == ',' || enc[want.len] == '\n')
		 : (enc[want.len] == ',' || enc[want.len] == '}'));
}

static void
px_settle_rest(const BulkopsBatch *batch, BulkopsResult *result,
			   BulkopsRowStatus status, const char *code, const char *msg)
{
	int			before = list_length(result->outcomes);
	int			i;

	bulkops_result_settle_rest(batch, result, status, msg);
	for (i = before; i < list_length(result->outcomes); i++)
		((BulkopsOutcome *) list_nth(result->outcomes, i))->error_code =
			code ? pstrdup(code) : NULL;
}

/*
 * Check every entry of the errors file against the request: the row its
 * index names (the n-th pending row) must have been sent with its id.
 * Returns NULL when all agree, else why not; rowof[] maps indexes to rows.
 */
static char *
px_check_entries(const BulkopsBatch *batch, JsonbContainer *entries,
				 const int *rowof, int *rows_out)
{
	int			n = bulkops_jarray_size(entries);
	int			k;

	for (k = 0; k < n; k++)
	{
		JsonbContainer *e = bulkops_jcontainer(bulkops_jarray_get(entries, k));
		JsonbValue *iv = bulkops_jget(e, "index");
		char	   *itext = (iv && iv->type == jbvNumeric) ? bulkops_jtext(iv) : NULL;
		char	   *id = bulkops_jtext(bulkops_jget(e, "id"));
		char	   *end;
		long		index;

		index = itext ? strtol(itext, &end, 10) : -1;
		if (itext == NULL || *end != '\0' || index < 0 || index >= batch->npending)
			return psprintf("entry %d has no index between 0 and %d", k + 1,
							batch->npending - 1);
		rows_out[k] = rowof[index];
		if (id && !px_row_has_id(batch, rows_out[k], id))
			return psprintf("entry %d names id \"%s\" at index %ld, where another id was sent",
							k + 1, id, index);
	}
	return NULL;
}

/* One failed outcome from an errors file entry. */
static void
px_entry_outcome(BulkopsResult *result, int row, JsonbContainer *e)
{
	JsonbContainer *errs = bulkops_jcontainer(bulkops_jget(e, "errors"));
	int			n = bulkops_jarray_size(errs);
	BulkopsOutcome *o = bulkops_outcome(result, row, BULKOPS_ROW_FAILED);
	StringInfoData msg;
	int			i;

	initStringInfo(&msg);
	for (i = 0; i < n; i++)
	{
		JsonbContainer *err = bulkops_jcontainer(bulkops_jarray_get(errs, i));
		char	   *text = bulkops_jtext(bulkops_jget(err, "message"));

		if (o->error_code == NULL)
			o->error_code = bulkops_jtext(bulkops_jget(err, "code"));
		if (text)
			appendStringInfo(&msg, "%s%s", msg.len ? "; " : "", text);
	}
	o->error_message = msg.len ? msg.data : pstrdup("listed in the batch's errors file");
}

/*
 * The batch is final: rows listed in entries (may be NULL) failed; the rest
 * succeeded if it completed, else are resent where that is safe.  counted
 * is how many rows the batch said failed, created and updated its stats
 * (-1: it did not say).
 */
static void
px_settle(const BulkopsBatch *batch, const char *id, const char *status,
		  const char *reason, JsonbContainer *entries, int counted,
		  int created, int updated, BulkopsResult *result)
{
	int		   *rowof = palloc(sizeof(int) * Max(batch->npending, 1));
	int			nentries = entries ? bulkops_jarray_size(entries) : 0;
	int		   *rows = palloc(sizeof(int) * Max(nentries, 1));
	bool	   *listed = palloc0(sizeof(bool) * Max(batch->nrows, 1));
	int			nlisted = 0;
	char	   *why;
	char	   *msg;
	int			n = 0;
	int			i;

	for (i = 0; i < batch->nrows; i++)
		if (batch->pending[i])
			rowof[n++] = i;
	why = px_check_entries(batch, entries, rowof, rows);
	if (why)
		why = psprintf("batch %s ended %s, but its errors file does not match the request (%s)",
					   id, status, why);
	for (i = 0; i < nentries && why == NULL; i++)
	{
		if (listed[rows[i]])
			continue;
		listed[rows[i]] = true;
		nlisted++;
	}
	if (why == NULL && counted > nlisted)
		why = psprintf("batch %s ended %s having counted %d failed rows, but its errors file lists %d",
					   id, status, counted, nlisted);
	if (why)
	{
		/* rows listed or not, nothing here can be trusted: no guessing */
		px_settle_rest(batch, result, BULKOPS_ROW_UNKNOWN, NULL, why);
		result->next = BULKOPS_NEXT_DONE;
		result->error = why;
		return;
	}
	/* again, for the outcomes: the first entry of a row listed twice tells */
	memset(listed, 0, sizeof(bool) * Max(batch->nrows, 1));
	for (i = 0; i < nentries; i++)
	{
		if (listed[rows[i]])
			continue;
		listed[rows[i]] = true;
		px_entry_outcome(result,
						 rows[i], bulkops_jcontainer(bulkops_jarray_get(entries, i)));
	}

	if (strcmp(status, "completed") == 0)
	{
		int			before = list_length(result->outcomes);
		int			made = px_created(batch, created, updated,
									  batch->npending - nlisted);

		px_settle_rest(batch, result, BULKOPS_ROW_SUCCEEDED, NULL, NULL);
		for (i = before; i < list_length(result->outcomes); i++)
			((BulkopsOutcome *) list_nth(result->outcomes, i))->created = made;
		result->next = BULKOPS_NEXT_DONE;
		return;
	}

	msg = psprintf("batch %s ended %s: %s", id, status,
				   reason ? reason : "no reason given");
	if (batch->op == BULKOPS_OP_OVERWRITE && nlisted > 0)
	{
		/* resending the rest alone would delete the listed rows remotely */
		px_settle_rest(batch, result, BULKOPS_ROW_FAILED, status,
					   psprintf("%s (not resent: an overwrite must carry every row)", msg));
		result->next = BULKOPS_NEXT_DONE;
		return;
	}

	/*
	 * whatever the batch did is repeated harmlessly: every action is
	 * idempotent
	 */
	result->next = BULKOPS_NEXT_RESUBMIT;
	result->counts_attempt = true;
	result->maybe_applied = true;
	result->error = msg;
	result->error_code = pstrdup(status);
}

/* A batch answer (submit or poll) read: progress, then what comes next. */
static void
px_read_batch(const BulkopsBatch *batch, JsonbContainer *b, const char *id,
			  bool polled, BulkopsResult *result)
{
	char	   *status = bulkops_jtext(bulkops_jget(b, "status"));
	char	   *reason = bulkops_jtext(bulkops_jget(b, "reason"));
	JsonbValue *has = bulkops_jget(b, "has_errors_file");
	bool		no_errors = has && has->type == jbvBool && !has->val.boolean;
	char	   *url = polled ? bulkops_jtext(bulkops_jget(b, "_errors_json_url")) : NULL;
	StringInfoData note;

	result->progress = px_progress(b);
	if (status == NULL || !px_final(status))
	{
		if (polled && (status == NULL || !px_in_progress(status)))
		{
			result->next = BULKOPS_NEXT_RETRY;
			result->error = psprintf("batch %s in unknown status \"%s\"", id,
									 status ? status : "(none)");
			return;
		}
		/* a created batch whose answer says little is polled all the same */
		result->next = BULKOPS_NEXT_STEP;
		result->step = PX_STEP_POLL;
		result->remote_id = pstrdup(id);
		result->step_data = batch->step == PX_STEP_POLL && batch->step_data
			? pstrdup(batch->step_data) : NULL;
		return;
	}
	if (no_errors || (polled && url == NULL && !(has && has->type == jbvBool)))
	{
		px_settle(batch, id, status, reason, NULL, px_failed_count(b),
				  px_stat(b, "created"), px_updated(batch, b), result);
		return;
	}
	if (!polled)
	{
		/* only a poll names the errors file */
		result->next = BULKOPS_NEXT_STEP;
		result->step = PX_STEP_POLL;
		result->remote_id = pstrdup(id);
		return;
	}
	if (url == NULL)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("batch %s has an errors file, but the answer names no _errors_json_url",
								 id);
		return;
	}
	if (pg_strncasecmp(url, "https://", 8) != 0 && pg_strncasecmp(url, "http://", 7) != 0)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("the errors file of batch %s is not at an http(s) URL", id);
		return;
	}
	if (!px_sendable_url(url))
	{
		/* never the link itself: it is a credential for the file */
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("the link to the errors file of batch %s has a space, a control character or a byte beyond ASCII",
								 id);
		return;
	}

	initStringInfo(&note);
	appendStringInfoString(&note, "{\"status\":");
	bulkops_json_string(&note, status, strlen(status));
	if (reason)
	{
		appendStringInfoString(&note, ",\"reason\":");
		bulkops_json_string(&note, reason, strlen(reason));
	}
	appendStringInfoString(&note, ",\"url\":");
	bulkops_json_string(&note, url, strlen(url));
	appendStringInfo(&note, ",\"failed\":%d,\"created\":%d,\"updated\":%d,\"refetch\":%d}",
					 px_failed_count(b), px_stat(b, "created"), px_updated(batch, b),
					 px_note_refetch(batch));
	result->next = BULKOPS_NEXT_STEP;
	result->step = PX_STEP_ERRORS;
	result->remote_id = pstrdup(id);
	result->step_data = note.data;
}

void
px_handle_submit(const BulkopsBatch *batch, const BulkopsResponse *resp,
				 JsonbContainer *root, BulkopsResult *result)
{
	if (resp->status == 200 || resp->status == 201 || resp->status == 202)
	{
		JsonbContainer *b = px_batch_object(root);
		char	   *id = bulkops_jtext(bulkops_jget(b, "id"));

		if (!px_usable_id(id))
		{
			result->next = BULKOPS_NEXT_RETRY;
			result->error = psprintf("HTTP %ld answer to a batch submit without a usable batch id",
									 resp->status);
			return;
		}
		px_read_batch(batch, b, id, false, result);
		return;
	}
	if (resp->status >= 400 && resp->status < 500)
	{
		/* {"error": {"code", "message"}}: nothing of the batch was taken */
		JsonbContainer *err = bulkops_jcontainer(bulkops_jget(root, "error"));
		char	   *msg = bulkops_jtext(bulkops_jget(err, "message"));

		if (msg == NULL)
			msg = bulkops_jtext(bulkops_jget(root, "message"));
		result->next = BULKOPS_NEXT_FAIL;
		result->error_code = bulkops_jtext(bulkops_jget(err, "code"));
		result->error = msg ? psprintf("HTTP %ld: %s", resp->status, msg)
			: psprintf("HTTP %ld", resp->status);
		return;
	}
	result->next = BULKOPS_NEXT_RETRY;
	result->error = psprintf("unexpected answer to a batch submit (HTTP %ld)",
							 resp->status);
}

void
px_handle_poll(const BulkopsBatch *batch, const BulkopsResponse *resp,
			   JsonbContainer *root, BulkopsResult *result)
{
	JsonbContainer *b = px_batch_object(root);
	char	   *id = bulkops_jtext(bulkops_jget(b, "id"));

	if (resp->status == 404)
	{
		bulkops_result_task_gone(result,
								 psprintf("batch %s is not known to the remote side",
										  batch->remote_id));
		return;
	}
	if (resp->status != 200 || b == NULL || (id && strcmp(id, batch->remote_id) != 0))
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("unexpected answer to a poll of batch %s (HTTP %ld)",
								 batch->remote_id, resp->status);
		return;
	}
	px_read_batch(batch, b, batch->remote_id, true, result);
}

void
px_handle_errors_file(const BulkopsBatch *batch, const BulkopsResponse *resp,
					  JsonbContainer *root, BulkopsResult *result)
{
	char	   *status = bulkops_jtext(px_note(batch, "status"));
	int			refetch = px_note_refetch(batch);
	char	   *failed;
	char	   *created;
	char	   *updated;

	if ((resp->status == 403 || resp->status == 404 || resp->status == 410) &&
		refetch < PX_MAX_REFETCH)
	{
		/* the link expired (a restart, a long wait): a poll gives a new one */
		result->next = BULKOPS_NEXT_STEP;
		result->step = PX_STEP_POLL;
		result->remote_id = pstrdup(batch->remote_id);
		result->step_data = psprintf("{\"refetch\":%d}", refetch + 1);
		return;
	}
	if (resp->status != 200 || status == NULL)
	{
		/* never the URL in a message: it is a credential for the file */
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("could not fetch the errors file of batch %s (HTTP %ld)",
								 batch->remote_id, resp->status);
		return;
	}
	if (root == NULL || !JsonContainerIsArray(root) || JsonContainerIsScalar(root))
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("the errors file of batch %s is not a JSON array",
								 batch->remote_id);
		return;
	}
	failed = bulkops_jtext(px_note(batch, "failed"));
	created = bulkops_jtext(px_note(batch, "created"));
	updated = bulkops_jtext(px_note(batch, "updated"));
	px_settle(batch, batch->remote_id, status,
			  bulkops_jtext(px_note(batch, "reason")), root,
			  failed ? atoi(failed) : -1, created ? atoi(created) : -1,
			  updated ? atoi(updated) : -1, result);
}
