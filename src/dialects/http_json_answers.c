/*-------------------------------------------------------------------------
 *
 * http_json_answers.c
 *	  The "http_json" dialect's reading of answers: JSON pointers, the
 *	  submit's answer (results, a remote task, or a refusal), the polls of
 *	  a task, and each result's outcome (docs/protocols/http_json.md).
 *
 * The answers are the remote side's, described only by the target's
 * options, so nothing in them is trusted: a result may be anything, a key
 * may name no row or one already answered, an array may be longer or
 * shorter than the rows sent.  Every such case ends in an outcome the
 * receipts can say plainly (a row the answer does not speak of is
 * unknown), or in a retry where the whole answer is unreadable, never in
 * a guess.
 *
 * Like every dialect this file knows nothing of tables or the worker loop;
 * it allocates in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

#include "bulkops.h"
#include "dialect.h"
#include "http_json.h"

/* longest task id used in a poll's URL */
#define HJ_MAX_TASK_ID		1024
/* bytes of an answer's text or a value quoted in a message */
#define HJ_QUOTE_BYTES		1000
#define HJ_SHOW_BYTES		100

/* the Jsonb whose root a container is (bulkops_read_answer gives roots) */
#define HJ_JSONB_OF(c)	((Jsonb *) ((char *) (c) - offsetof(Jsonb, root)))

/* ---- JSON pointers (RFC 6901) ---- */

/*
 * Is pointer an RFC 6901 JSON pointer: empty (the whole), or "/" before
 * every reference token, with "~" only as "~0" or "~1"?
 */
bool
hj_pointer_is_valid(const char *pointer)
{
	const char *p;

	if (pointer[0] == '\0')
		return true;
	if (pointer[0] != '/')
		return false;
	for (p = pointer; *p; p++)
		if (*p == '~' && p[1] != '0' && p[1] != '1')
			return false;
	return true;
}

/*
 * The value at pointer inside v, or NULL where there is none.  An array
 * index is "0" or digits without a leading zero, within the array; "-"
 * (past the end) names nothing, and so does any token inside a scalar.
 */
static JsonbValue *
pointer_get(JsonbValue *v, const char *pointer)
{
	const char *p = pointer;

	/* called for every result: tokens are read in place where they can be */
	while (*p == '/' && v != NULL)
	{
		const char *token = p + 1;
		int			len = strcspn(token, "/");
		JsonbContainer *c;

		p = token + len;
		if (memchr(token, '~', len) != NULL)
		{
			char	   *plain = palloc(len + 1);
			int			n = 0;
			int			i;

			for (i = 0; i < len; i++)
			{
				if (token[i] == '~' && i + 1 < len && (token[i + 1] == '0' || token[i + 1] == '1'))
					plain[n++] = token[++i] == '1' ? '/' : '~';
				else
					plain[n++] = token[i];
			}
			plain[n] = '\0';
			token = plain;
			len = n;
		}
		if (v->type != jbvBinary)
			return NULL;
		c = v->val.binary.data;
		if (JsonContainerIsObject(c))
		{
			JsonbValue	k;

			k.type = jbvString;
			k.val.string.val = (char *) token;
			k.val.string.len = len;
			v = findJsonbValueFromContainer(c, JB_FOBJECT, &k);
		}
		else
		{
			/* an array: only a document's root is ever a raw scalar */
			char		digits[10];

			if (len == 0 || len >= sizeof(digits) ||
				strspn(token, "0123456789") < len || (len > 1 && token[0] == '0'))
				return NULL;
			memcpy(digits, token, len);
			digits[len] = '\0';
			if (atoi(digits) >= (int) JsonContainerSize(c))
				return NULL;
			v = getIthJsonbValueFromContainer(c, atoi(digits));
		}
	}
	return v;
}

/* "the result's /status", or "the result" for pointer "" */
static char *
named(const char *what, const char *pointer)
{
	return pointer[0] ? psprintf("%s's %s", what, pointer) : pstrdup(what);
}

/* v as JSON text, cut for a message */
static char *
show(JsonbValue *v)
{
	Jsonb	   *jb = JsonbValueToJsonb(v);
	char	   *s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	int			len = strlen(s);

	if (len <= HJ_SHOW_BYTES)
		return s;
	s[pg_mbcliplen(s, len, HJ_SHOW_BYTES)] = '\0';
	return psprintf("%s...", s);
}

/*
 * v as text for a receipt: a string as it is, a number or boolean printed;
 * with containers, an object or array as JSON text; otherwise NULL (null,
 * nothing there).
 */
static char *
value_text(JsonbValue *v, bool containers)
{
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type == jbvBinary)
		return containers
			? JsonbToCString(NULL, v->val.binary.data, v->val.binary.len)
			: NULL;
	return bulkops_jtext(v);
}

/* Is scalar v one of values (a JSON array of scalars)? */
static bool
value_listed(JsonbValue *v, JsonbContainer *values)
{
	int			n = JsonContainerSize(values);
	int			i;

	for (i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(values, i);

		if (e->type != v->type)
			continue;
		switch (v->type)
		{
			case jbvString:
				if (e->val.string.len == v->val.string.len &&
					memcmp(e->val.string.val, v->val.string.val, v->val.string.len) == 0)
					return true;
				break;
			case jbvNumeric:
				if (DatumGetBool(DirectFunctionCall2(numeric_eq,
													 NumericGetDatum(e->val.numeric),
													 NumericGetDatum(v->val.numeric))))
					return true;
				break;
			case jbvBool:
				if (e->val.boolean == v->val.boolean)
					return true;
				break;
			case jbvNull:
				return true;
			default:
				break;
		}
	}
	return false;
}

/* What a test (ok, done) says of a value. */
typedef enum HjVerdict
{
	HJ_YES,
	HJ_NO,
	HJ_UNREADABLE				/* missing, or not what the test reads */
} HjVerdict;

/*
 * Apply test to the value inside v; *why says what was found when it is
 * not a yes, as "<what>'s <pointer> is ...".
 */
static HjVerdict
apply_test(const HjTest *test, JsonbValue *v, const char *what, char **why)
{
	JsonbValue *x = pointer_get(v, test->pointer);
	char	   *name = named(what, test->pointer);

	if (x == NULL)
	{
		*why = psprintf("%s has no %s", what, test->pointer);
		return HJ_UNREADABLE;
	}
	if (test->values == NULL)
	{
		if (x->type != jbvBool)
		{
			*why = psprintf("%s is %s, not a boolean", name, show(x));
			return HJ_UNREADABLE;
		}
		*why = psprintf("%s is false", name);
		return x->val.boolean ? HJ_YES : HJ_NO;
	}
	if (x->type == jbvBinary)
	{
		*why = psprintf("%s is %s, not a scalar", name, show(x));
		return HJ_UNREADABLE;
	}
	*why = psprintf("%s is %s", name, show(x));
	return value_listed(x, test->values) ? HJ_YES : HJ_NO;
}

/* ---- results ---- */

/* Give the rows sent that have no outcome yet one of status. */
static void
settle_sent(HjRow *sent, int nsent, BulkopsResult *result,
			BulkopsRowStatus status, const char *message, const char *code)
{
	int			i;

	for (i = 0; i < nsent; i++)
	{
		BulkopsOutcome *o;

		if (sent[i].answered)
			continue;
		o = bulkops_outcome(result, sent[i].row, status);
		o->error_message = message ? pstrdup(message) : NULL;
		o->error_code = code ? pstrdup(code) : NULL;
		sent[i].answered = true;
	}
}

/* The outcome of row from its result res. */
static void
read_result(const BulkopsBatch *batch, const HjConfig *cfg, HjRow *row,
			JsonbValue *res, BulkopsResult *result)
{
	BulkopsRowStatus status;
	BulkopsOutcome *o;
	char	   *why = NULL;

	if (res->type == jbvNull)
	{
		status = BULKOPS_ROW_UNKNOWN;
		why = pstrdup("the result for this row is null");
	}
	else if (cfg->has_ok)
	{
		switch (apply_test(&cfg->ok, res, "the result", &why))
		{
			case HJ_YES:
				status = BULKOPS_ROW_SUCCEEDED;
				break;
			case HJ_NO:
				status = BULKOPS_ROW_FAILED;
				break;
			default:
				status = BULKOPS_ROW_UNKNOWN;
				break;
		}
	}
	else
	{
		JsonbValue *code = cfg->error_code ? pointer_get(res, cfg->error_code) : NULL;
		JsonbValue *msg = cfg->error_message ? pointer_get(res, cfg->error_message) : NULL;

		/* no test: a result of a 2xx answer succeeded unless it has an error */
		if ((code && code->type != jbvNull) || (msg && msg->type != jbvNull))
		{
			status = BULKOPS_ROW_FAILED;
			why = pstrdup("the result has an error");
		}
		else
			status = BULKOPS_ROW_SUCCEEDED;
	}

	o = bulkops_outcome(result, row->row, status);
	row->answered = true;
	if (cfg->remote_id)
		o->remote_id = value_text(pointer_get(res, cfg->remote_id), false);
	if (status == BULKOPS_ROW_SUCCEEDED)
	{
		/*
		 * only the API says: an "insert" endpoint may well upsert; a delete
		 * neither creates nor updates, whatever its result holds
		 */
		if (cfg->created && batch->op != BULKOPS_OP_DELETE)
		{
			JsonbValue *c = pointer_get(res, cfg->created);

			if (c != NULL && c->type == jbvBool)
				o->created = c->val.boolean ? 1 : 0;
		}
		return;
	}
	if (status == BULKOPS_ROW_FAILED)
	{
		if (cfg->error_code)
			o->error_code = value_text(pointer_get(res, cfg->error_code), false);
		if (cfg->error_message)
			o->error_message = value_text(pointer_get(res, cfg->error_message), true);
	}
	if (o->error_message == NULL)
		o->error_message = why;
}

static int
row_ptr_key_cmp(const void *a, const void *b)
{
	return hj_key_cmp(*(HjRow *const *) a, *(HjRow *const *) b);
}

/*
 * The outcomes of the rows sent from the results in root (a synchronous
 * answer, or the poll answer of a task that is done).  Returns false, with
 * no outcome, when there is no array of results at option "results".
 */
static bool
read_results(const BulkopsBatch *batch, const HjConfig *cfg, HjRow *sent,
			 int nsent, JsonbValue *root, BulkopsResult *result)
{
	JsonbValue *arr = pointer_get(root, cfg->results);
	JsonbContainer *results;
	HjRow	  **by_key;
	StringInfoData probe;
	int			strangers = 0;
	int			repeats = 0;
	int			n;
	int			i;

	if (arr == NULL || arr->type != jbvBinary ||
		!JsonContainerIsArray(arr->val.binary.data) ||
		JsonContainerIsScalar(arr->val.binary.data))
		return false;
	results = arr->val.binary.data;
	n = JsonContainerSize(results);
	result->next = BULKOPS_NEXT_DONE;

	if (cfg->match == NULL)
	{
		/* by position: a count that differs leaves nothing to trust */
		if (n != nsent)
		{
			result->error = psprintf("the answer has %d results for the %d rows of the request; paired by position, none of them can be trusted",
									 n, nsent);
			settle_sent(sent, nsent, result, BULKOPS_ROW_UNKNOWN, result->error, NULL);
			return true;
		}
		for (i = 0; i < n; i++)
			read_result(batch, cfg, &sent[i],
						getIthJsonbValueFromContainer(results, i), result);
		return true;
	}

	/* by key: the rows sent have one key each (hj_select_rows) */
	by_key = palloc(sizeof(HjRow *) * nsent);
	for (i = 0; i < nsent; i++)
		by_key[i] = &sent[i];
	qsort(by_key, nsent, sizeof(HjRow *), row_ptr_key_cmp);
	initStringInfo(&probe);
	for (i = 0; i < n; i++)
	{
		JsonbValue *el = getIthJsonbValueFromContainer(results, i);
		JsonbValue *k = pointer_get(el, cfg->match);
		HjRow		key;
		HjRow	   *keyp = &key;
		HjRow	  **hit;
		char	   *ktext;

		if (k == NULL || (k->type != jbvString && k->type != jbvNumeric))
		{
			strangers++;
			continue;
		}
		/* compared as the batch holds keys: quoted and escaped */
		ktext = bulkops_jtext(k);
		resetStringInfo(&probe);
		bulkops_json_string(&probe, ktext, strlen(ktext));
		key.key = probe.data;
		key.keylen = probe.len;
		hit = bsearch(&keyp, by_key, nsent, sizeof(HjRow *), row_ptr_key_cmp);
		if (hit == NULL)
			strangers++;
		else if ((*hit)->answered)
			repeats++;
		else
			read_result(batch, cfg, *hit, el, result);
	}
	settle_sent(sent, nsent, result, BULKOPS_ROW_UNKNOWN,
				"the answer has no result for this row's key", NULL);
	if (strangers > 0 || repeats > 0)
		result->error = psprintf("the answer has %d results whose key is no row of the request and %d that repeat a key already answered; they were ignored",
								 strangers, repeats);
	return true;
}

/* ---- what an answer means for the rows sent ---- */

/*
 * The request may have been applied, and its answer is unreadable or its
 * task gone.  Repeated where that is safe: a submit as a retry, after a
 * backoff, a vanished task as a resubmission (bulkops_result_task_gone);
 * an insert the target says is idempotent as a resubmission, at once,
 * since the worker takes what is safe to repeat from the dialect's table,
 * which cannot know the target.  Otherwise the rows sent are unknown (and
 * the rest of the batch goes next).
 */
static void
may_have_applied(const BulkopsBatch *batch, const HjConfig *cfg, HjRow *sent,
				 int nsent, BulkopsResult *result, char *error, bool task_gone)
{
	if (batch->op != BULKOPS_OP_INSERT)
	{
		if (task_gone)
			bulkops_result_task_gone(result, error);
		else
		{
			result->next = BULKOPS_NEXT_RETRY;
			result->error = error;
		}
		return;
	}
	if (hj_repeat_is_safe(batch, cfg))
	{
		result->next = BULKOPS_NEXT_RESUBMIT;
		result->counts_attempt = true;
		result->maybe_applied = false;
		result->error = error;
		return;
	}
	result->next = BULKOPS_NEXT_DONE;
	result->error = psprintf("%s; the request may have been applied, and insert is not safe to repeat",
							 error);
	settle_sent(sent, nsent, result, BULKOPS_ROW_UNKNOWN, result->error, NULL);
}

/* A document's root c as a value: a scalar, or the whole container. */
static void
root_value(JsonbContainer *c, JsonbValue *v)
{
	if (JsonContainerIsScalar(c))
		JsonbExtractScalar(c, v);
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = c;
		v->val.binary.len = VARSIZE(HJ_JSONB_OF(c)) - VARHDRSZ;
	}
}

/* An answer's text for a message: printable, on one line, cut. */
static char *
answer_text(const BulkopsResponse *resp)
{
	int			len = resp->body ? strnlen(resp->body, resp->len) : 0;
	char	   *s;
	char	   *p;

	char	   *out;

	len = pg_mbcliplen(resp->body ? resp->body : "", len, HJ_QUOTE_BYTES);
	s = pnstrdup(resp->body ? resp->body : "", len);
	/* each run of spaces and control characters becomes one space */
	out = s;
	for (p = s; *p; p++)
	{
		bool		blank = (unsigned char) *p <= ' ' || *p == 0x7f;

		if (!blank)
			*out++ = *p;
		else if (out > s && out[-1] != ' ')
			*out++ = ' ';
	}
	if (out > s && out[-1] == ' ')
		out--;
	*out = '\0';
	return s;
}

/*
 * A 4xx (but 408) refused the request: its rows fail.  The error code and
 * message are read with options error_code and error_message from the
 * whole answer where they find something there (many APIs give a request's
 * error the shape of a row's); else the message is the answer's text.
 */
static void
refused(const BulkopsResponse *resp, const HjConfig *cfg, HjRow *sent,
		int nsent, BulkopsResult *result)
{
	Jsonb	   *jb = bulkops_json_try_parse(resp->body, resp->len);
	JsonbValue	root;
	JsonbValue *v;
	char	   *code = NULL;
	char	   *message = NULL;

	if (jb != NULL)
	{
		root_value(&jb->root, &root);
		if (cfg->error_code && (v = pointer_get(&root, cfg->error_code)) != NULL)
			code = value_text(v, false);
		if (cfg->error_message && (v = pointer_get(&root, cfg->error_message)) != NULL)
			message = value_text(v, true);
	}
	if (message == NULL)
		message = answer_text(resp);
	result->next = BULKOPS_NEXT_DONE;
	result->error = message[0]
		? psprintf("HTTP %ld: %s", resp->status, message)
		: psprintf("HTTP %ld", resp->status);
	if (resp->status == 413)
		result->error = psprintf("%s (lower the option batch_size or batch_bytes, or the target's max_rows or max_bytes)",
								 result->error);
	settle_sent(sent, nsent, result, BULKOPS_ROW_FAILED, result->error, code);
}

/*
 * resp's JSON in *root; false when it is not JSON, with *error saying why
 * (as bulkops_read_answer does for a successful answer).
 */
static bool
answer_json(const BulkopsResponse *resp, JsonbValue *root, char **error)
{
	BulkopsResult why = {0};
	JsonbContainer *c;

	if (!bulkops_read_answer(resp, &why, &c) || c == NULL)
	{
		*error = why.error ? why.error
			: psprintf("malformed JSON in an HTTP %ld answer", resp->status);
		return false;
	}
	root_value(c, root);
	return true;
}

/* The answer to a submit (step 0). */
static void
handle_submit(const BulkopsBatch *batch, const HjConfig *cfg, HjRow *sent,
			  int nsent, const BulkopsResponse *resp, BulkopsResult *result)
{
	long		s = resp->status;
	JsonbValue	root;
	char	   *error;

	if (s >= 200 && s < 300)
	{
		if (!answer_json(resp, &root, &error))
			may_have_applied(batch, cfg, sent, nsent, result, error, false);
		else if (cfg->task_id != NULL)
		{
			JsonbValue *v = pointer_get(&root, cfg->task_id);
			char	   *id = (v && v->type != jbvBool) ? value_text(v, false) : NULL;

			/* escaped in a poll's URL, but a dot segment would still move it */
			if (id == NULL || id[0] == '\0' || strlen(id) > HJ_MAX_TASK_ID ||
				strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
				may_have_applied(batch, cfg, sent, nsent, result,
								 psprintf("the HTTP %ld answer has no usable task id at %s",
										  s, cfg->task_id[0] ? cfg->task_id : "\"\""),
								 false);
			else
			{
				result->next = BULKOPS_NEXT_STEP;
				result->step = HJ_STEP_POLL;
				result->remote_id = id;
			}
		}
		else if (!read_results(batch, cfg, sent, nsent, &root, result))
			may_have_applied(batch, cfg, sent, nsent, result,
							 psprintf("the HTTP %ld answer has no array of results at %s",
									  s, cfg->results[0] ? cfg->results : "\"\""),
							 false);
		return;
	}
	if (s == 408)
	{
		/*
		 * The remote side did not receive the whole request in time (assumed,
		 * as HTTP defines it): nothing was applied.  Idempotent operations
		 * wait the usual backoff; for an insert, a retry would make the
		 * worker take the rows as maybe applied, so it is a resubmission (at
		 * once, an attempt used).
		 */
		result->error = pstrdup("HTTP 408 from the remote side: it did not receive the whole request in time");
		if (batch->op != BULKOPS_OP_INSERT)
			result->next = BULKOPS_NEXT_RETRY;
		else
		{
			result->next = BULKOPS_NEXT_RESUBMIT;
			result->counts_attempt = true;
		}
		return;
	}
	if (s >= 400 && s < 500)
	{
		refused(resp, cfg, sent, nsent, result);
		return;
	}
	/* other 5xx (the worker has seen to 500, 502, 503, 504), or stranger */
	error = answer_text(resp);
	may_have_applied(batch, cfg, sent, nsent, result,
					 error[0] ? psprintf("HTTP %ld from the remote side: %s", s, error)
					 : psprintf("HTTP %ld from the remote side", s), false);
}

/* A poll of the batch's remote task (step 1). */
static void
handle_poll(const BulkopsBatch *batch, const HjConfig *cfg, HjRow *sent,
			int nsent, const BulkopsResponse *resp, BulkopsResult *result)
{
	long		s = resp->status;
	JsonbValue	root;
	char	   *why;
	const char *task = batch->remote_id;

	if (s == 404)
	{
		/* it may have run before it was forgotten */
		may_have_applied(batch, cfg, sent, nsent, result,
						 psprintf("task %s is not known to the remote side (HTTP 404)", task),
						 true);
		return;
	}
	if (s < 200 || s >= 300)
	{
		/* polls are safe to repeat; the worker bounds how often */
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("unexpected answer to a poll of task %s (HTTP %ld)",
								 task, s);
		return;
	}
	if (!answer_json(resp, &root, &why))
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = why;
		return;
	}
	switch (apply_test(&cfg->done, &root, "the poll answer", &why))
	{
		case HJ_NO:
			/* still running: the same step, nothing to store */
			result->next = BULKOPS_NEXT_STEP;
			result->step = HJ_STEP_POLL;
			result->remote_id = pstrdup(task);
			return;
		case HJ_UNREADABLE:
			result->next = BULKOPS_NEXT_RETRY;
			result->error = psprintf("cannot tell whether task %s is done: %s", task, why);
			return;
		case HJ_YES:
			break;
	}
	if (!read_results(batch, cfg, sent, nsent, &root, result))
	{
		JsonbValue *state = pointer_get(&root, cfg->done.pointer);

		result->next = BULKOPS_NEXT_DONE;
		result->error = psprintf("task %s ended (%s is %s) without an array of results at %s",
								 task, cfg->done.pointer[0] ? cfg->done.pointer : "\"\"",
								 show(state), cfg->results[0] ? cfg->results : "\"\"");
		settle_sent(sent, nsent, result, BULKOPS_ROW_UNKNOWN, result->error, NULL);
	}
}

void
hj_handle_response(const BulkopsBatch *batch, const BulkopsResponse *resp,
				   BulkopsResult *result)
{
	HjConfig	cfg;
	HjRow	   *sent;
	int			nsent;

	hj_read_config(batch->options, batch->resource, &cfg);
	sent = hj_select_rows(batch, &cfg, &nsent);
	if (batch->step == HJ_STEP_POLL)
		handle_poll(batch, &cfg, sent, nsent, resp, result);
	else
		handle_submit(batch, &cfg, sent, nsent, resp, result);

	/* the pending rows this request did not carry go in the next one */
	if (result->next == BULKOPS_NEXT_DONE && nsent < batch->npending)
	{
		result->next = BULKOPS_NEXT_RESUBMIT;
		result->counts_attempt = false;
	}
}
