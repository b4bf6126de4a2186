/*-------------------------------------------------------------------------
 *
 * common.c
 *	  What dialects share: operation names, building results, reading JSON
 *	  answers, and the checks of values that go into URLs.
 *
 * Lower than every dialect: nothing here knows which dialects exist (that
 * is registry.c).  Everything allocates in the current memory context and
 * reports bad input with ereport(ERROR), as dialects do (dialect.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "bulkops.h"
#include "dialect.h"

static const char *const op_names[BULKOPS_NUM_OPS] = {
	"insert", "update", "upsert", "delete", "overwrite", "query"
};

const char *
bulkops_op_name(BulkopsOp op)
{
	return op_names[op];
}

BulkopsOp
bulkops_op_from_name(const char *name)
{
	int			i;

	for (i = 0; i < BULKOPS_NUM_OPS; i++)
		if (strcmp(op_names[i], name) == 0)
			return (BulkopsOp) i;
	elog(ERROR, "unrecognized bulkops operation \"%s\"", name);
	return BULKOPS_OP_INSERT;	/* keep compiler quiet */
}

BulkopsOutcome *
bulkops_outcome(BulkopsResult *result, int row, BulkopsRowStatus status)
{
	BulkopsOutcome *o = palloc0(sizeof(BulkopsOutcome));

	o->row = row;
	o->status = status;
	o->created = -1;
	result->outcomes = lappend(result->outcomes, o);
	return o;
}

/*
 * Append the encodings of the batch's pending rows, in row order and
 * separated by commas: the inside of a request's JSON array.
 */
void
bulkops_append_pending(const BulkopsBatch *batch, StringInfo out)
{
	bool		first = true;
	int			i;

	for (i = 0; i < batch->nrows; i++)
	{
		if (!batch->pending[i])
			continue;
		if (!first)
			appendStringInfoChar(out, ',');
		first = false;
		appendBinaryStringInfo(out, batch->body + batch->offsets[i],
							   batch->offsets[i + 1] - batch->offsets[i]);
	}
}

/*
 * Give every pending row that the result does not already settle an
 * outcome of the given status carrying error.
 */
void
bulkops_result_settle_rest(const BulkopsBatch *batch, BulkopsResult *result,
						   BulkopsRowStatus status, const char *error)
{
	bool	   *settled = palloc0(sizeof(bool) * Max(batch->nrows, 1));
	ListCell   *lc;
	int			i;

	foreach(lc, result->outcomes)
	{
		BulkopsOutcome *o = lfirst(lc);

		if (o->row >= 0 && o->row < batch->nrows)
			settled[o->row] = true;
	}
	for (i = 0; i < batch->nrows; i++)
		if (batch->pending[i] && !settled[i])
			bulkops_outcome(result, i, status)->error_message =
				error ? pstrdup(error) : NULL;
	pfree(settled);
}

/*
 * The remote side no longer knows the batch's remote task (a poll answered
 * 404): it may have run before it was forgotten, so its rows may have been
 * applied.  They are sent again, using up an attempt, where repeating is
 * safe; the worker makes them unknown where it is not.
 */
void
bulkops_result_task_gone(BulkopsResult *result, char *error)
{
	result->next = BULKOPS_NEXT_RESUBMIT;
	result->counts_attempt = true;
	result->maybe_applied = true;
	result->error = error;
}

/*
 * s as one segment of a URL path: every byte but RFC 3986's unreserved
 * characters percent-encoded.  For remote ids a dialect puts into URLs, so
 * that an answer cannot change where the next request goes, nor make one
 * curl refuses.
 */
char *
bulkops_url_segment(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	StringInfoData buf;
	const unsigned char *p;

	initStringInfo(&buf);
	for (p = (const unsigned char *) s; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL)
			appendStringInfoChar(&buf, (char) *p);
		else
		{
			appendStringInfoChar(&buf, '%');
			appendStringInfoChar(&buf, hex[*p >> 4]);
			appendStringInfoChar(&buf, hex[*p & 15]);
		}
	}
	return buf.data;
}

/*
 * Is s fit to be sent as it is where a request expects one identifier or
 * version: a URL path segment, a query parameter, a header value?  Only
 * letters, digits and "-._~:@" (what RFC 3986 lets a path segment carry
 * unescaped, less the sub-delimiters a query string or a header reads as
 * structure), and no "." or ".." that a path would take as a dot segment.
 * So "/", "?", "#", "%", "&", whitespace, control characters and bytes
 * beyond ASCII are refused: none of them has any business in a tenant id,
 * a version or a resource name, and each could move a request elsewhere.
 */
static bool
is_identifier(const char *s)
{
	size_t		n = strlen(s);

	return n > 0 &&
		strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			   "0123456789-._~:@") == n &&
		strstr(s, "..") == NULL && strcmp(s, ".") != 0;
}

/*
 * Refuse value, given for dialect's option (or, with option NULL, as the
 * target's resource), unless it is a plain identifier (see is_identifier).
 * Neither the value (it may hold line breaks) nor anything of the URL is
 * repeated in the message.
 */
void
bulkops_check_identifier(const char *dialect, const char *option,
						 const char *value)
{
	if (value != NULL && is_identifier(value))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 option
			 ? errmsg("%s option \"%s\" must be a plain identifier", dialect, option)
			 : errmsg("%s resource must be a plain identifier", dialect),
			 errdetail("It is sent as it is in requests, where it may hold only letters, digits, \"-\", \".\", \"_\", \"~\", \":\" and \"@\", and not \"..\".")));
}

/*
 * Can request paths be appended to url as they are?  Not when it has a
 * query or a fragment, which the path would land in, nor whitespace or
 * control characters.
 */
bool
bulkops_is_base_url(const char *url)
{
	const unsigned char *p;

	for (p = (const unsigned char *) url; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '?' || *p == '#')
			return false;
	return true;
}

/* Refuse a target url that bulkops_is_base_url refuses. */
void
bulkops_check_base_url(const char *url)
{
	if (!bulkops_is_base_url(url))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("target URL must not have a query, a fragment, whitespace or control characters"),
				 errdetail("Every request's path is appended to the target's URL.")));
}

Jsonb *
bulkops_json_parse(const char *body, size_t len)
{
	char	   *copy = pnstrdup(body, len);

	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(copy)));
}

/* bulkops_json_parse's result, or NULL with its error message in *why */
static Jsonb *
json_try_parse(const char *body, size_t len, char **why)
{
	Jsonb	   *volatile jb = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		jb = bulkops_json_parse(body, len);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		*why = edata->message;
		jb = NULL;
	}
	PG_END_TRY();
	return jb;
}

/*
 * Like bulkops_json_parse, but NULL for malformed JSON: an error page that
 * is not JSON is still an answer to report.
 */
Jsonb *
bulkops_json_try_parse(const char *body, size_t len)
{
	char	   *why;

	return json_try_parse(body, len, &why);
}

/*
 * An answer's JSON in *root, or NULL for a body that is not JSON.  An error
 * page that is not JSON is still an answer (its status tells); a
 * successful answer that is not JSON is a transient fault: returns false
 * with result set to retry, saying why.
 */
bool
bulkops_read_answer(const BulkopsResponse *resp, BulkopsResult *result,
					JsonbContainer **root)
{
	char	   *why = NULL;
	Jsonb	   *jb = json_try_parse(resp->body, resp->len, &why);

	*root = jb ? &jb->root : NULL;
	if (jb == NULL && resp->status < 300)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = psprintf("malformed JSON in an HTTP %ld answer: %s",
								 resp->status, why);
		return false;
	}
	return true;
}

JsonbValue *
bulkops_jget(JsonbContainer *obj, const char *key)
{
	JsonbValue	k;

	if (obj == NULL || !JsonContainerIsObject(obj))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(obj, JB_FOBJECT, &k);
}

JsonbContainer *
bulkops_jcontainer(JsonbValue *v)
{
	if (v == NULL || v->type != jbvBinary)
		return NULL;
	return v->val.binary.data;
}

int
bulkops_jarray_size(JsonbContainer *arr)
{
	if (arr == NULL || !JsonContainerIsArray(arr))
		return -1;
	return JsonContainerSize(arr);
}

JsonbValue *
bulkops_jarray_get(JsonbContainer *arr, int i)
{
	return getIthJsonbValueFromContainer(arr, i);
}

/* A scalar as text: strings as they are, numbers and booleans printed. */
char *
bulkops_jtext(JsonbValue *v)
{
	if (v == NULL)
		return NULL;
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/* An answer's header by (lower-case) name, or NULL. */
const char *
bulkops_response_header(const BulkopsResponse *resp, const char *name)
{
	ListCell   *lc;

	foreach(lc, resp->headers)
	{
		BulkopsHeader *h = lfirst(lc);

		if (strcmp(h->name, name) == 0)
			return h->value;
	}
	return NULL;
}
