/*-------------------------------------------------------------------------
 *
 * sap_fsm.c
 *	  The "sap_fsm" dialect: synchronous bulk endpoints by external id,
 *	  answered 207 with one element per item (docs/protocols/sap_fsm.md).
 *
 * One step only: PATCH (or PUT, option "method") or DELETE
 * {url}/api/data/v4/{resource}/externalId/bulk with a JSON array of the
 * pending rows, each an object carrying "externalId" (the key).  The answer
 * keeps no order, so its elements are matched to rows by externalId.
 *
 * Every row is encoded as {"externalId":"<key>"...}: the escaped key sits
 * at a fixed place in the row's encoding, where the worker side finds it
 * again without the keys or a JSON parse.  Since a 207 cannot tell two
 * items with the same externalId apart, a request carries the first pending
 * row of each key only; the others stay pending and go in a follow-up
 * request once the first has its outcome.
 *
 * A 413 (the request too large) applied nothing: the request's rows are
 * sent again half at a time, down to one row, which then fails alone.  How
 * many rows a request may carry is the note a NEXT_RESUBMIT leaves for
 * step 0 ({"limit": n}, BulkopsBatch.step_data), persisted with the batch,
 * so a restarted worker goes on from there; after each 207 the limit
 * doubles again, so one large row costs its neighbours a few requests
 * only.  No split uses up an attempt: each request settles a row or
 * halves the next one, so splitting ends.
 *
 * The lastChanged an upsert's 207 element gives back is kept in the row's
 * receipt (remote_version); with option "last_changed" = "from_receipts"
 * the next push sends it for each key whose source column is absent or
 * null (enqueue.c finds it), so optimistic locking holds across jobs.
 *
 * Like every dialect this file knows nothing of tables or the worker loop;
 * it allocates in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>

#include "utils/jsonb.h"

#include "bulkops.h"
#include "dialect.h"

/* how every row's encoding starts; the escaped key follows at once */
#define SAP_FSM_ROW_PREFIX		"{\"externalId\":"
#define SAP_FSM_ROW_PREFIX_LEN	(sizeof(SAP_FSM_ROW_PREFIX) - 1)

/* the optimistic-locking column, sent when present and not null */
#define SAP_FSM_LAST_CHANGED	"lastChanged"

/*
 * Assumed (docs/protocols/sap_fsm.md): without these options a request is
 * still identified, as this client; the account and company have no
 * default and are sent only when given.
 */
#define SAP_FSM_DEFAULT_CLIENT_ID		"bulkops"
#define SAP_FSM_DEFAULT_CLIENT_VERSION	BULKOPS_VERSION

/* the most DTOs besides the resource one request may name in "dtos" */
#define SAP_FSM_MAX_DTOS		32

typedef struct SapFsmEncodeState
{
	bool	   *omit;			/* columns not sent as plain members */
	int			last_changed_att;	/* the lastChanged column, or -1 */
} SapFsmEncodeState;

/* A row a request carries: its escaped, quoted key in the batch body. */
typedef struct SapFsmItem
{
	const char *key;
	int			len;
	int			row;
	bool		answered;
} SapFsmItem;

/* What a job may do with each option (see BulkopsJobRule), and why. */
static const BulkopsOptionDef sap_fsm_options[] = {
	/* the data model the target was set up to speak */
	{"dto_version", BULKOPS_OPT_INT, 1, 100000, BULKOPS_JOB_TARGET_ONLY},
	/* PUT replaces whole objects, erasing what PATCH would keep */
	{"method", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_OR_SAFE,
	.dflt_text = "PATCH",.safe_text = "PATCH"},
	/* the versions of other DTOs the objects embed or refer to */
	{"dto_versions", BULKOPS_OPT_OBJECT, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	/* overrides the remote side's conflict checks */
	{"force", BULKOPS_OPT_BOOL, 0, 0, BULKOPS_JOB_TARGET_OR_SAFE,.dflt = 0},
	/* where lastChanged comes from; from_receipts only adds checks */
	{"last_changed", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_ANY,
	.dflt_text = "column"},
	/* headers naming the client and the tenant the requests act for */
	{"client_id", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY,
	.dflt_text = SAP_FSM_DEFAULT_CLIENT_ID},
	{"client_version", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY,
	.dflt_text = SAP_FSM_DEFAULT_CLIENT_VERSION},
	{"account_id", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	{"company_id", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	{NULL}
};

/* option name -> header it is sent as */
static const struct
{
	const char *option;
	const char *header;
	const char *dflt;
}			sap_fsm_headers[] = {
	{"client_id", "X-Client-ID", SAP_FSM_DEFAULT_CLIENT_ID},
	{"client_version", "X-Client-Version", SAP_FSM_DEFAULT_CLIENT_VERSION},
	{"account_id", "X-Account-ID", NULL},
	{"company_id", "X-Company-ID", NULL},
};

/* ---- options, checked at create_target, alter_target and enqueue ---- */

static const char *
sap_fsm_method(Jsonb *options)
{
	char	   *m = bulkops_opt_string(options, "method", "PATCH");

	if (pg_strcasecmp(m, "PUT") == 0)
		return "PUT";
	return "PATCH";
}

/* A DTO name: a letter followed by letters and digits. */
static bool
is_dto_name(const char *name)
{
	const char *p;

	if (name[0] == '\0')
		return false;
	for (p = name; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			  (p > name && *p >= '0' && *p <= '9')))
			return false;
	return true;
}

static void
check_resource(const char *resource)
{
	if (resource == NULL || resource[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sap_fsm targets need a resource"),
				 errdetail("The resource names the DTO the rows are, in the path and in \"dtos\"."),
				 errhint("Pass resource => 'Activity', for example.")));
	if (!is_dto_name(resource))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid sap_fsm resource \"%s\"", resource),
				 errdetail("A resource is a DTO name: a letter followed by letters and digits.")));
}

/*
 * The "dtos" query parameter: the resource's version, then those of option
 * "dto_versions" ({"Address": 22, ...}), separated by semicolons.  Checked
 * whole (raises) at create_target, alter_target and enqueue.
 */
static char *
dtos_param(const char *resource, Jsonb *options)
{
	JsonbValue *opt = bulkops_jsonb_get(options, "dto_versions");
	JsonbContainer *map = opt ? bulkops_jcontainer(opt) : NULL;
	StringInfoData buf;
	int			n = 0;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s.%d", resource,
					 bulkops_opt_int(options, "dto_version", 0));
	if (map)
	{
		JsonbIterator *it = JsonbIteratorInit(map);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *name = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			char	   *version;
			char	   *end;
			long		num;

			if (tok == WJB_KEY)
			{
				name = pnstrdup(v.val.string.val, v.val.string.len);
				if (!is_dto_name(name) || strcmp(name, resource) == 0)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("sap_fsm option \"dto_versions\" names an invalid DTO \"%s\"",
									name),
							 errdetail("Its names are DTOs other than the resource (whose version is option \"dto_version\"): a letter followed by letters and digits.")));
				continue;
			}
			if (tok != WJB_VALUE)
				continue;
			version = (v.type == jbvNumeric) ? bulkops_jtext(&v) : NULL;
			num = version ? strtol(version, &end, 10) : 0;
			if (version == NULL || *end != '\0' || num < 1 || num > 100000)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("sap_fsm option \"dto_versions\" gives \"%s\" an invalid version",
								name),
						 errdetail("A version is an integer from 1 to 100000."),
						 errhint("For example: {\"dto_versions\": {\"Address\": 22}}.")));
			if (++n > SAP_FSM_MAX_DTOS)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("sap_fsm option \"dto_versions\" names more than %d DTOs",
								SAP_FSM_MAX_DTOS)));
			appendStringInfo(&buf, ";%s.%ld", name, num);
		}
	}
	return buf.data;
}

static bool
last_changed_from_receipts(Jsonb *options)
{
	return strcmp(bulkops_opt_string(options, "last_changed", "column"),
				  "from_receipts") == 0;
}

static void
check_options(const char *resource, Jsonb *options)
{
	char	   *method = bulkops_opt_string(options, "method", "PATCH");
	int			i;

	check_resource(resource);
	if (bulkops_jsonb_get(options, "dto_version") == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sap_fsm targets need option \"dto_version\""),
				 errdetail("Every upsert names the version of the resource's data model it follows, as \"dtos=%s.<dto_version>\".",
						   resource),
				 errhint("Add it to the target's options, e.g. options => '{\"dto_version\": 43}'.")));
	if (pg_strcasecmp(method, "PATCH") != 0 && pg_strcasecmp(method, "PUT") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sap_fsm option \"method\" must be \"PATCH\" or \"PUT\""),
				 errdetail("PATCH changes the columns sent; PUT replaces whole objects.")));
	if (bulkops_jsonb_get(options, "dto_versions") != NULL)
		(void) dtos_param(resource, options);
	if (!last_changed_from_receipts(options) &&
		strcmp(bulkops_opt_string(options, "last_changed", "column"), "column") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sap_fsm option \"last_changed\" must be \"column\" or \"from_receipts\""),
				 errdetail("\"column\" sends the source's lastChanged column; \"from_receipts\" also sends, for rows where that is absent or null, the lastChanged the key's last successful upsert through this target answered.")));
	/* ids and versions: a line break would add headers of its own */
	for (i = 0; i < lengthof(sap_fsm_headers); i++)
	{
		char	   *v = bulkops_opt_string(options, sap_fsm_headers[i].option, NULL);

		if (v != NULL)
			bulkops_check_identifier("sap_fsm", sap_fsm_headers[i].option, v);
	}
}

static void
sap_fsm_validate_target(const char *url, const char *resource, Jsonb *options)
{
	check_options(resource, options);
}

/* ---- encoding, at enqueue ---- */

static void
sap_fsm_begin_encode(BulkopsEncodeTarget *target, BulkopsEncoder *enc)
{
	SapFsmEncodeState *st = palloc0(sizeof(SapFsmEncodeState));
	int			natts = bulkops_encoder_natts(enc);
	int			ext;

	ext = bulkops_encoder_find(enc, "externalId");
	if (ext >= 0 && ext != target->key_att)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_COLUMN),
				 errmsg("source column \"externalId\" is not the key"),
				 errdetail("sap_fsm sends the key column's value as \"externalId\"."),
				 errhint("Pass key => 'externalId', or rename the column.")));

	st->omit = palloc0(sizeof(bool) * Max(natts, 1));
	if (target->key_att >= 0)
		st->omit[target->key_att] = true;
	st->last_changed_att = bulkops_encoder_find(enc, SAP_FSM_LAST_CHANGED);
	if (st->last_changed_att == target->key_att)
		st->last_changed_att = -1;
	if (st->last_changed_att >= 0)
		st->omit[st->last_changed_att] = true;
	target->want_versions = last_changed_from_receipts(target->options);
	target->private = st;
}

/*
 * A version an earlier answer gave (a receipt's remote_version): as the
 * number it was, else, should an answer have given something else, as a
 * string for the remote side to judge.
 */
static void
append_version(StringInfo out, const char *version)
{
	const char *p = version;

	if (*p == '-')
		p++;
	if (*p == '\0' || strspn(p, "0123456789") != strlen(p) || strlen(p) > 19)
		bulkops_json_string(out, version, strlen(version));
	else
		appendStringInfoString(out, version);
}

static void
sap_fsm_encode_row(BulkopsEncodeTarget *target, BulkopsEncoder *enc,
				   Datum *values, bool *nulls, StringInfo out)
{
	SapFsmEncodeState *st = target->private;
	int			lc = st->last_changed_att;

	appendBinaryStringInfo(out, SAP_FSM_ROW_PREFIX, SAP_FSM_ROW_PREFIX_LEN);
	bulkops_json_string(out, target->key_text, strlen(target->key_text));

	if (target->op != BULKOPS_OP_DELETE)
	{
		int			start = out->len;

		/* {"a":1,"b":2} becomes ,"a":1,"b":2 after the key; {} nothing */
		bulkops_encode_object(enc, values, nulls, st->omit, out);
		if (out->len - start == 2)
			out->len = start;
		else
		{
			out->data[start] = ',';
			out->len--;
		}
		out->data[out->len] = '\0';
	}

	/*
	 * a null lastChanged asks for no check rather than a null one; with
	 * "from_receipts", for the check the key's last upsert answered
	 */
	if (lc >= 0 && !nulls[lc])
	{
		appendStringInfoString(out, ",\"" SAP_FSM_LAST_CHANGED "\":");
		bulkops_encode_value(enc, lc, values[lc], false, out);
	}
	else if (target->remote_version != NULL)
	{
		appendStringInfoString(out, ",\"" SAP_FSM_LAST_CHANGED "\":");
		append_version(out, target->remote_version);
	}
	appendStringInfoChar(out, '}');
}

/* ---- the rows a request carries ---- */

static int
item_key_cmp(const void *a, const void *b)
{
	const SapFsmItem *x = a;
	const SapFsmItem *y = b;
	int			c = memcmp(x->key, y->key, Min(x->len, y->len));

	if (c != 0)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

/* by key, then source order: the first row of a key sorts first */
static int
item_cmp(const void *a, const void *b)
{
	const SapFsmItem *x = a;
	const SapFsmItem *y = b;
	int			c = item_key_cmp(a, b);

	if (c != 0)
		return c;
	return (x->row > y->row) - (x->row < y->row);
}

/* The quoted key at the start of row i's encoding (see encode_row). */
static void
row_key(const BulkopsBatch *batch, int i, SapFsmItem *item)
{
	const char *start = batch->body + batch->offsets[i] + SAP_FSM_ROW_PREFIX_LEN;
	const char *end = batch->body + batch->offsets[i + 1];
	const char *p = start + 1;

	if (start >= end || *start != '"')
		elog(ERROR, "sap_fsm: row %d of batch %d is not encoded by this dialect",
			 i, batch->batch_no);
	while (p < end && *p != '"')
		p += (*p == '\\') ? 2 : 1;
	if (p >= end)
		elog(ERROR, "sap_fsm: row %d of batch %d has a broken key", i,
			 batch->batch_no);
	item->key = start;
	item->len = p - start + 1;
	item->row = i;
	item->answered = false;
}

static int
item_row_cmp(const void *a, const void *b)
{
	const SapFsmItem *x = a;
	const SapFsmItem *y = b;

	return (x->row > y->row) - (x->row < y->row);
}

/*
 * How many rows a request may carry, as the last 413 left it in the
 * batch's note for step 0 ({"limit": n, "too_large": m}): 0 for no limit
 * of our own; *too_large, the fewest rows a request that got a 413
 * carried since (0: none such).
 */
static int
request_limit(const BulkopsBatch *batch, int *too_large)
{
	Jsonb	   *note;
	char	   *limit;
	char	   *large;

	*too_large = 0;
	if (batch->step != 0 || batch->step_data == NULL)
		return 0;
	note = bulkops_json_try_parse(batch->step_data, strlen(batch->step_data));
	if (note == NULL)
		return 0;
	limit = bulkops_jtext(bulkops_jget(&note->root, "limit"));
	large = bulkops_jtext(bulkops_jget(&note->root, "too_large"));
	*too_large = large ? Max(atoi(large), 0) : 0;
	return limit ? Max(atoi(limit), 0) : 0;
}

static char *
limit_note(int limit, int too_large)
{
	if (too_large > 0)
		return psprintf("{\"limit\":%d,\"too_large\":%d}", limit, too_large);
	return psprintf("{\"limit\":%d}", limit);
}

/*
 * The rows a request carries: the first pending row of each key, the
 * first limit of them in source order when the batch has a limit, sorted
 * by key.  Pending rows and the note do not change while a request is
 * out, so building the request and reading its answer select the same
 * rows.
 */
static SapFsmItem *
select_items(const BulkopsBatch *batch, int *nitems)
{
	SapFsmItem *items = palloc(sizeof(SapFsmItem) * Max(batch->nrows, 1));
	int			too_large;
	int			limit = request_limit(batch, &too_large);
	int			n = 0;
	int			kept = 0;
	int			i;

	for (i = 0; i < batch->nrows; i++)
		if (batch->pending[i])
			row_key(batch, i, &items[n++]);
	if (n > 1)
		qsort(items, n, sizeof(SapFsmItem), item_cmp);
	for (i = 0; i < n; i++)
		if (kept == 0 || item_key_cmp(&items[kept - 1], &items[i]) != 0)
			items[kept++] = items[i];
	if (limit > 0 && kept > limit)
	{
		qsort(items, kept, sizeof(SapFsmItem), item_row_cmp);
		kept = limit;
		qsort(items, kept, sizeof(SapFsmItem), item_cmp);
	}
	*nitems = kept;
	return items;
}

/* ---- the request ---- */

static void
add_header(BulkopsRequest *req, const char *name, const char *value)
{
	BulkopsHeader *h = palloc(sizeof(BulkopsHeader));

	h->name = name;
	h->value = value;
	req->headers = lappend(req->headers, h);
}

static void
sap_fsm_build_request(const BulkopsBatch *batch, BulkopsRequest *req)
{
	bool		del = (batch->op == BULKOPS_OP_DELETE);
	bool		force = bulkops_opt_bool(batch->options, "force", false);
	int			nitems;
	SapFsmItem *items = select_items(batch, &nitems);
	bool	   *send = palloc0(sizeof(bool) * Max(batch->nrows, 1));
	bool		first = true;
	int			i;

	for (i = 0; i < nitems; i++)
		send[items[i].row] = true;

	req->method = del ? "DELETE" : sap_fsm_method(batch->options);
	if (del)
		req->url = psprintf("%s/api/data/v4/%s/externalId/bulk%s", batch->url,
							batch->resource, force ? "?forceDelete=true" : "");
	else
		req->url = psprintf("%s/api/data/v4/%s/externalId/bulk?dtos=%s%s",
							batch->url, batch->resource,
							dtos_param(batch->resource, batch->options),
							force ? "&forceUpdate=true" : "");
	for (i = 0; i < lengthof(sap_fsm_headers); i++)
	{
		char	   *v = bulkops_opt_string(batch->options, sap_fsm_headers[i].option,
										   sap_fsm_headers[i].dflt);

		if (v != NULL)
			add_header(req, sap_fsm_headers[i].header, v);
	}

	/* source order, though the API does not need it: easier to read in logs */
	req->content_type = "application/json";
	req->body = makeStringInfo();
	appendStringInfoChar(req->body, '[');
	for (i = 0; i < batch->nrows; i++)
	{
		if (!send[i])
			continue;
		if (!first)
			appendStringInfoChar(req->body, ',');
		first = false;
		appendBinaryStringInfo(req->body, batch->body + batch->offsets[i],
							   batch->offsets[i + 1] - batch->offsets[i]);
	}
	appendStringInfoChar(req->body, ']');
}

/* ---- the answer ---- */

/*
 * The code and message of an error answer.  Assumed shapes: the 207
 * element's {"ex": {"error", "message"}} at the top, {"error": "CA-..",
 * "message"}, or {"error": {"code"|"type", "message"}}.
 */
static void
error_fields(JsonbContainer *root, char **code, char **message)
{
	JsonbContainer *ex = bulkops_jcontainer(bulkops_jget(root, "ex"));
	JsonbValue *err;

	*code = NULL;
	*message = NULL;
	if (ex != NULL)
		root = ex;
	err = bulkops_jget(root, "error");
	if (err != NULL && err->type == jbvString)
		*code = bulkops_jtext(err);
	else if (err != NULL)
	{
		JsonbContainer *e = bulkops_jcontainer(err);

		*code = bulkops_jtext(bulkops_jget(e, "type"));
		if (*code == NULL)
			*code = bulkops_jtext(bulkops_jget(e, "code"));
		*message = bulkops_jtext(bulkops_jget(e, "message"));
	}
	if (*message == NULL)
		*message = bulkops_jtext(bulkops_jget(root, "message"));
}

static char *
lower_resource(const char *resource)
{
	char	   *s = pstrdup(resource);
	char	   *p;

	for (p = s; *p; p++)
		*p = pg_tolower((unsigned char) *p);
	return s;
}

/* The sent row an element answers, or NULL for a stranger or a repeat. */
static SapFsmItem *
find_item(JsonbContainer *el, JsonbContainer *obj, SapFsmItem *items,
		  int nitems, StringInfo scratch)
{
	char	   *ext = bulkops_jtext(bulkops_jget(el, "externalId"));
	SapFsmItem	probe;
	SapFsmItem *hit;

	if (ext == NULL)
		ext = bulkops_jtext(bulkops_jget(obj, "externalId"));
	if (ext == NULL)
		return NULL;
	/* compare escaped forms: the body holds the key escaped */
	resetStringInfo(scratch);
	bulkops_json_string(scratch, ext, strlen(ext));
	probe.key = scratch->data;
	probe.len = scratch->len;
	hit = bsearch(&probe, items, nitems, sizeof(SapFsmItem), item_key_cmp);
	if (hit == NULL || hit->answered)
		return NULL;
	hit->answered = true;
	return hit;
}

static void
read_element(const BulkopsBatch *batch, JsonbContainer *el, const char *member,
			 SapFsmItem *items, int nitems, StringInfo scratch,
			 BulkopsResult *result)
{
	JsonbContainer *obj = bulkops_jcontainer(bulkops_jget(el, member));
	SapFsmItem *item = find_item(el, obj, items, nitems, scratch);
	char	   *status_text;
	long		status;
	BulkopsOutcome *o;

	if (item == NULL)
		return;
	status_text = bulkops_jtext(bulkops_jget(el, "status"));
	status = status_text ? strtol(status_text, NULL, 10) : 0;
	if (status >= 200 && status < 300)
	{
		o = bulkops_outcome(result, item->row, BULKOPS_ROW_SUCCEEDED);
		o->remote_id = bulkops_jtext(bulkops_jget(obj, "id"));
		if (batch->op != BULKOPS_OP_DELETE)
		{
			o->created = (status == 201) ? 1 : 0;
			/* what the next write must name to pass the check */
			o->remote_version = bulkops_jtext(bulkops_jget(obj, SAP_FSM_LAST_CHANGED));
		}
	}
	else if (status >= 400)
	{
		/* 409 is a lastChanged conflict: this row's failure, not the batch's */
		o = bulkops_outcome(result, item->row, BULKOPS_ROW_FAILED);
		error_fields(el, &o->error_code, &o->error_message);
		if (o->error_code == NULL)
			o->error_code = psprintf("%ld", status);
		if (o->error_message == NULL)
			o->error_message = psprintf("HTTP %ld", status);
	}
	else
		bulkops_outcome(result, item->row, BULKOPS_ROW_UNKNOWN)->error_message =
			psprintf("the answer gave this row status \"%s\"",
					 status_text ? status_text : "(none)");
}

static void
handle_multi_status(const BulkopsBatch *batch, JsonbContainer *root,
					BulkopsResult *result)
{
	int			nitems;
	SapFsmItem *items = select_items(batch, &nitems);
	char	   *member = lower_resource(batch->resource);
	int			n = JsonContainerIsScalar(root) ? -1 : bulkops_jarray_size(root);
	StringInfoData scratch;
	int			i;

	if (n < 0)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = pstrdup("the 207 answer is not a JSON array");
		return;
	}
	initStringInfo(&scratch);
	for (i = 0; i < n; i++)
	{
		JsonbContainer *el = bulkops_jcontainer(bulkops_jarray_get(root, i));

		if (el != NULL && JsonContainerIsObject(el))
			read_element(batch, el, member, items, nitems, &scratch, result);
	}
	for (i = 0; i < nitems; i++)
		if (!items[i].answered)
			bulkops_outcome(result, items[i].row, BULKOPS_ROW_UNKNOWN)->error_message =
				pstrdup("the 207 answer had no element for this externalId");

	if (nitems < batch->npending)
	{
		/*
		 * rows whose key was already in this request, or beyond the limit
		 * after a 413, go next; the limit doubles again after each 207, up to
		 * one row less than the smallest request refused since
		 */
		int			too_large;
		int			limit = request_limit(batch, &too_large);

		result->next = BULKOPS_NEXT_RESUBMIT;
		result->counts_attempt = false;
		if (limit > 0)
			result->step_data = limit_note(too_large > 0 ? Min(2 * limit, too_large - 1)
										   : 2 * limit, too_large);
	}
	else
		result->next = BULKOPS_NEXT_DONE;
}

/*
 * 413: the request was too large and applied nothing.  Its rows go again
 * half as many at a time; a row that is too large alone fails, and the
 * rows after it go on.  That row explains the refusals that led to it, so
 * what they taught of the largest request is forgotten.
 */
static void
handle_too_large(const BulkopsBatch *batch, const BulkopsResponse *resp,
				 JsonbContainer *root, BulkopsResult *result)
{
	int			nitems;
	SapFsmItem *items = select_items(batch, &nitems);
	char	   *code;
	char	   *message;
	BulkopsOutcome *o;

	if (nitems > 1)
	{
		result->next = BULKOPS_NEXT_RESUBMIT;
		result->counts_attempt = false;
		result->step_data = limit_note(nitems / 2, nitems);
		result->error = psprintf("HTTP 413 for a request of %d rows: sending them %d at a time",
								 nitems, nitems / 2);
		return;
	}
	error_fields(root, &code, &message);
	o = bulkops_outcome(result, items[0].row, BULKOPS_ROW_FAILED);
	o->error_code = code ? code : pstrdup("413");
	o->error_message = psprintf("HTTP 413: this row alone is too large for one request%s%s",
								message ? ": " : "", message ? message : "");
	if (batch->npending > 1)
	{
		result->next = BULKOPS_NEXT_RESUBMIT;
		result->counts_attempt = false;
		result->step_data = limit_note(1, 0);
	}
	else
		result->next = BULKOPS_NEXT_DONE;
}

/*
 * Anything but 207 concerns the whole request.  Both operations are
 * idempotent, so what may be passing is repeated (the worker bounds it by
 * max_attempts) and what the request itself caused fails its rows.
 */
static void
handle_other(const BulkopsResponse *resp, JsonbContainer *root,
			 BulkopsResult *result)
{
	char	   *code;
	char	   *message;
	long		s = resp->status;

	error_fields(root, &code, &message);
	if ((s >= 200 && s < 300) || s >= 500 || s == 408 || s == 423 || s == 425)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = message
			? psprintf("HTTP %ld answer to a bulk request: %s", s, message)
			: psprintf("HTTP %ld answer to a bulk request, not 207", s);
		return;
	}
	result->next = BULKOPS_NEXT_FAIL;
	result->error_code = code;
	result->error = message ? psprintf("HTTP %ld: %s", s, message)
		: psprintf("HTTP %ld", s);
}

static void
sap_fsm_handle_response(const BulkopsBatch *batch, const BulkopsResponse *resp,
						BulkopsResult *result)
{
	Jsonb	   *jb = bulkops_json_try_parse(resp->body, resp->len);

	if (resp->status == 413)
		handle_too_large(batch, resp, jb ? &jb->root : NULL, result);
	else if (resp->status != 207)
		handle_other(resp, jb ? &jb->root : NULL, result);
	else if (jb == NULL)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = pstrdup("malformed JSON in a 207 answer");
	}
	else
		handle_multi_status(batch, &jb->root, result);
}

const BulkopsDialect bulkops_sap_fsm_dialect = {
	.name = "sap_fsm",
	.op_names = {
		[BULKOPS_OP_UPSERT] = "PATCH",
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
	.options = sap_fsm_options,
	.validate_target = sap_fsm_validate_target,
	.begin_encode = sap_fsm_begin_encode,
	.encode_row = sap_fsm_encode_row,
	.build_request = sap_fsm_build_request,
	.handle_response = sap_fsm_handle_response,
};
