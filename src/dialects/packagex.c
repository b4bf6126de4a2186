/*-------------------------------------------------------------------------
 *
 * packagex.c
 *	  The "packagex" dialect: batches with phases (PackageX Batches API,
 *	  PROTOCOLS.md section 3).
 *
 * Steps: 0 submits {"resource", "action", "mode", "duplicate_handling",
 * "data": [...]} for the pending rows and gets the batch back; 1 polls
 * GET {url}/batches/{id}?include_errors_json=true until the batch is final;
 * 2 fetches the errors file the final answer names.  Its URL, with the
 * final status and reason, is the step's step_data, so a restarted worker
 * can fetch it too.  Every answer that carries the batch gives the job its
 * stats and phase counters as progress.
 *
 * The errors file names rows by their index in the request's data, which
 * is the n-th pending row (see dialect.h); each entry's id is checked
 * against the id that row was sent with, and a file that does not match
 * the request leaves its rows unknown rather than guessed.
 *
 * An overwrite deletes every remote item of the resource that its request
 * does not carry, so a job's overwrite must be exactly one request:
 * end_encode refuses a source cut into several batches (the enqueue rolls
 * back, nothing is sent), and part of an overwrite is never resent.
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

/*
 * Assumptions where neither PROTOCOLS.md nor the vendor's documentation
 * says, kept here in one place:
 * - one request carries at most PX_MAX_ITEMS items (this also bounds what
 *   one overwrite can mirror);
 * - the errors file is [{"index": <position in data>, "id": "...",
 *   "errors": [{"code": "...", "message": "..."}]}];
 * - _errors_json_url is a presigned link: it is fetched without the API
 *   key, and when it has expired (403, 404, 410) a new poll gives a fresh
 *   one, at most PX_MAX_REFETCH times;
 * - an answer is the batch object itself, or the batch wrapped as
 *   {"data": {...}};
 * - every item's "id" is the row's key, sent as a JSON string;
 * - the phases' "error" counters add up to the rows the errors file lists:
 *   a final batch whose file lists fewer (or that has none) is incomplete,
 *   and its rows are left unknown rather than taken for successes.
 */
#define PX_MAX_ITEMS		10000
#define PX_MAX_REFETCH		3
#define PX_SYNC_MAX_ITEMS	100 /* default of option sync_max_items */

#define PX_STEP_SUBMIT	0
#define PX_STEP_POLL	1
#define PX_STEP_ERRORS	2

/* actions, as bits */
#define PX_MERGE		0x01
#define PX_OVERWRITE	0x02
#define PX_DELETE		0x04
#define PX_ALL			(PX_MERGE | PX_OVERWRITE | PX_DELETE)

static const char *const px_action_names[] = {"merge", "overwrite", "delete", NULL};

/* What each resource allows unless option "resources" says otherwise. */
static const struct
{
	const char *name;
	int			actions;
}			px_default_resources[] = {
	{"contact", PX_ALL},
	{"group", PX_ALL},
	{"shipment", PX_MERGE},
	{"tracker", PX_MERGE},
	{"asset", PX_MERGE},
	{NULL, 0}
};

static const BulkopsOptionDef px_options[] = {
	{"mode", BULKOPS_OPT_STRING, 0, 0},
	{"sync_max_items", BULKOPS_OPT_INT, 1, PX_MAX_ITEMS},
	{"duplicate_handling", BULKOPS_OPT_STRING, 0, 0},
	{"resources", BULKOPS_OPT_OBJECT, 0, 0},
	{NULL}
};

typedef struct PxEncodeState
{
	bool	   *omit;			/* the key column: it is sent as "id" */
} PxEncodeState;

/* ---- options and resources ---- */

static int
px_action_bit(const char *name)
{
	int			i;

	for (i = 0; px_action_names[i]; i++)
		if (strcmp(px_action_names[i], name) == 0)
			return 1 << i;
	return 0;
}

static const char *
px_action(BulkopsOp op)
{
	switch (op)
	{
		case BULKOPS_OP_OVERWRITE:
			return "overwrite";
		case BULKOPS_OP_DELETE:
			return "delete";
		default:
			return "merge";
	}
}

static char *
px_actions_text(int actions)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; px_action_names[i]; i++)
		if (actions & (1 << i))
			appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", px_action_names[i]);
	return buf.len ? buf.data : pstrdup("nothing");
}

/* The actions one entry of option "resources" lists; raises if malformed. */
static int
px_entry_actions(const char *resource, JsonbValue *v)
{
	JsonbContainer *arr = bulkops_jcontainer(v);
	int			n = bulkops_jarray_size(arr);
	int			actions = 0;
	int			i;

	if (n < 0 || JsonContainerIsScalar(arr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("packagex option \"resources\" is invalid"),
				 errdetail("The entry for \"%s\" must be an array of action names.",
						   resource),
				 errhint("For example: {\"resources\": {\"shipment\": [\"merge\"]}}.")));
	for (i = 0; i < n; i++)
	{
		JsonbValue *a = bulkops_jarray_get(arr, i);
		char	   *name = (a && a->type == jbvString) ? bulkops_jtext(a) : NULL;
		int			bit = name ? px_action_bit(name) : 0;

		if (bit == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("packagex option \"resources\" is invalid"),
					 errdetail("Element %d of the entry for \"%s\" is not one of \"merge\", \"overwrite\" or \"delete\".",
							   i + 1, resource)));
		actions |= bit;
	}
	return actions;
}

/*
 * The actions resource allows: its entry in option "resources" if it has
 * one, else the API's default; -1 for a resource known to neither.  Every
 * entry of the option is checked, so a typo anywhere is reported.
 */
static int
px_resource_actions(Jsonb *options, const char *resource)
{
	JsonbValue *opt = bulkops_jsonb_get(options, "resources");
	JsonbContainer *map = opt ? bulkops_jcontainer(opt) : NULL;
	int			found = -1;
	int			i;

	if (map)
	{
		JsonbIterator *it = JsonbIteratorInit(map);
		JsonbValue	k;
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			char	   *name;
			int			actions;

			if (tok != WJB_KEY)
				continue;
			name = pnstrdup(k.val.string.val, k.val.string.len);
			(void) JsonbIteratorNext(&it, &v, true);
			actions = px_entry_actions(name, &v);
			if (strcmp(name, resource) == 0)
				found = actions;
		}
	}
	if (found >= 0)
		return found;
	for (i = 0; px_default_resources[i].name; i++)
		if (strcmp(px_default_resources[i].name, resource) == 0)
			return px_default_resources[i].actions;
	return -1;
}

static char *
px_known_resources(Jsonb *options)
{
	StringInfoData buf;
	JsonbValue *opt = bulkops_jsonb_get(options, "resources");
	JsonbContainer *map = opt ? bulkops_jcontainer(opt) : NULL;
	int			i;

	initStringInfo(&buf);
	for (i = 0; px_default_resources[i].name; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", px_default_resources[i].name);
	if (map)
	{
		JsonbIterator *it = JsonbIteratorInit(map);
		JsonbValue	k;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			char	   *name;

			if (tok != WJB_KEY)
				continue;
			name = pnstrdup(k.val.string.val, k.val.string.len);
			if (px_resource_actions(NULL, name) < 0)
				appendStringInfo(&buf, ", %s", name);
		}
	}
	return buf.data;
}

/* Everything about a target's resource and options; raises what is wrong. */
static int
px_check_target(const char *resource, Jsonb *options)
{
	char	   *mode = bulkops_opt_string(options, "mode", "mixed");
	char	   *dup = bulkops_opt_string(options, "duplicate_handling", "ignore_all");
	int			actions;

	if (resource == NULL || resource[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("packagex targets need a resource"),
				 errdetail("The resource is the \"resource\" of every batch sent."),
				 errhint("Pass resource => 'contact', for example.")));
	if (strcmp(mode, "sync") != 0 && strcmp(mode, "mixed") != 0 &&
		strcmp(mode, "async") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("packagex option \"mode\" must be \"sync\", \"mixed\" or \"async\"")));
	if (strcmp(dup, "ignore_all") != 0 && strcmp(dup, "use_first") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("packagex option \"duplicate_handling\" must be \"ignore_all\" or \"use_first\"")));
	actions = px_resource_actions(options, resource);
	if (actions < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("packagex resource \"%s\" is not known", resource),
				 errdetail("Known resources are: %s.", px_known_resources(options)),
				 errhint("Name the resource as the API does (singular, e.g. \"contact\"), or list it with the actions it allows in option \"resources\".")));
	return actions;
}

static void
px_validate_target(const char *url, const char *resource, Jsonb *options)
{
	(void) px_check_target(resource, options);
}

/* ---- encoding ---- */

static void
px_begin_encode(BulkopsEncodeTarget *target, BulkopsEncoder *enc)
{
	PxEncodeState *st = palloc0(sizeof(PxEncodeState));
	int			actions = px_check_target(target->resource, target->options);
	const char *action = px_action(target->op);
	int			id_att;

	/* refused here, before a single row is read, let alone sent */
	if ((actions & px_action_bit(action)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("packagex resource \"%s\" does not allow action \"%s\"",
						target->resource, action),
				 errdetail("Resource \"%s\" allows: %s.", target->resource,
						   px_actions_text(actions)),
				 errhint("If the API allows more, list the resource's actions in option \"resources\".")));

	id_att = bulkops_encoder_find(enc, "id");
	if (id_att >= 0 && id_att != target->key_att)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_COLUMN),
				 errmsg("source column \"id\" is not the key column"),
				 errdetail("packagex sends the key column \"%s\" as each item's \"id\".",
						   target->key),
				 errhint("Use key => 'id', or rename the other column with AS.")));

	st->omit = palloc0(sizeof(bool) * Max(bulkops_encoder_natts(enc), 1));
	if (target->key_att >= 0)
		st->omit[target->key_att] = true;
	target->private = st;
}

/* {"id": "<key>", <the other columns>}, or {"id": "<key>"} to delete. */
static void
px_encode_row(BulkopsEncodeTarget *target, BulkopsEncoder *enc,
			  Datum *values, bool *nulls, StringInfo out)
{
	PxEncodeState *st = target->private;
	int			start;

	appendStringInfoString(out, "{\"id\":");
	bulkops_json_string(out, target->key_text, strlen(target->key_text));
	if (target->op == BULKOPS_OP_DELETE)
	{
		appendStringInfoChar(out, '}');
		return;
	}
	start = out->len;
	bulkops_encode_object(enc, values, nulls, st->omit, out);
	if (out->len - start == 2)
	{
		/* no other column: "{}" becomes the closing brace */
		out->len = start;
		out->data[out->len] = '\0';
		appendStringInfoChar(out, '}');
	}
	else
		out->data[start] = ',';
}

static void
px_end_encode(BulkopsEncodeTarget *target, int64 nrows, int32 nbatches)
{
	if (target->op != BULKOPS_OP_OVERWRITE)
		return;
	if (nrows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("packagex overwrite of an empty source refused"),
				 errdetail("An overwrite deletes every remote %s the source does not hold: with no rows it would delete them all.",
						   target->resource),
				 errhint("To delete remote items, use bulkops.bulk_delete() with their keys.")));
	if (nbatches > 1)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("packagex overwrite needs the whole source in one request, but its "
						INT64_FORMAT " rows were cut into %d batches", nrows, nbatches),
				 errdetail("Each overwrite request deletes the remote items it does not carry, so several requests would delete each other's rows.  Nothing was sent."),
				 nrows <= PX_MAX_ITEMS
				 ? errhint("Raise the job's batch_size (to at most %d) and batch_bytes so that one batch holds the source, or use bulkops.bulk_upsert() followed by bulkops.bulk_delete() of the keys that are gone.",
						   PX_MAX_ITEMS)
				 : errhint("One request takes at most %d items: use bulkops.bulk_upsert() followed by bulkops.bulk_delete() of the keys that are gone.",
						   PX_MAX_ITEMS)));
}

/* ---- requests ---- */

/* One member of a batch's step_data (a JSON object), or NULL. */
static JsonbValue *
px_note(const BulkopsBatch *batch, const char *name)
{
	Jsonb	   *jb;

	if (batch->step_data == NULL)
		return NULL;
	jb = bulkops_json_try_parse(batch->step_data, strlen(batch->step_data));
	return jb ? bulkops_jget(&jb->root, name) : NULL;
}

static int
px_note_refetch(const BulkopsBatch *batch)
{
	char	   *n = bulkops_jtext(px_note(batch, "refetch"));

	return n ? atoi(n) : 0;
}

static void
px_build_submit(const BulkopsBatch *batch, BulkopsRequest *req)
{
	char	   *mode = bulkops_opt_string(batch->options, "mode", "mixed");
	char	   *dup = bulkops_opt_string(batch->options, "duplicate_handling",
										 "ignore_all");

	if (batch->op == BULKOPS_OP_OVERWRITE && batch->npending != batch->nrows)
		ereport(ERROR,
				(errmsg("an overwrite cannot be resent for part of its rows"),
				 errdetail("%d of its %d rows already have an outcome, and an overwrite without them would delete them remotely.",
						   batch->nrows - batch->npending, batch->nrows)));
	/* the API answers sync batches only up to a size */
	if (strcmp(mode, "sync") == 0 &&
		batch->npending > bulkops_opt_int(batch->options, "sync_max_items",
										  PX_SYNC_MAX_ITEMS))
		mode = "mixed";

	req->method = "POST";
	req->url = psprintf("%s/batches", batch->url);
	req->content_type = "application/json";
	req->body = makeStringInfo();
	appendStringInfoString(req->body, "{\"resource\":");
	bulkops_json_string(req->body, batch->resource, strlen(batch->resource));
	appendStringInfo(req->body, ",\"action\":\"%s\",\"mode\":\"%s\",\"duplicate_handling\":",
					 px_action(batch->op), mode);
	bulkops_json_string(req->body, dup, strlen(dup));
	appendStringInfoString(req->body, ",\"data\":[");
	bulkops_append_pending(batch, req->body);
	appendStringInfoString(req->body, "]}");
}

static void
px_build_request(const BulkopsBatch *batch, BulkopsRequest *req)
{
	switch (batch->step)
	{
		case PX_STEP_POLL:
			req->method = "GET";
			req->url = psprintf("%s/batches/%s?include_errors_json=true",
								batch->url, batch->remote_id);
			break;
		case PX_STEP_ERRORS:
			req->method = "GET";
			req->url = bulkops_jtext(px_note(batch, "url"));
			if (req->url == NULL)
				ereport(ERROR,
						(errmsg("the errors file of batch %s has no stored URL",
								batch->remote_id)));
			/* a presigned link, perhaps on another host: never the API key */
			req->no_auth = true;
			break;
		default:
			px_build_submit(batch, req);
			break;
	}
}

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

/* Was row sent with this id?  Compared as encoded, so exactly. */
static bool
px_row_has_id(const BulkopsBatch *batch, int row, const char *id)
{
	StringInfoData want;
	const char *enc = batch->body + batch->offsets[row];
	int			len = batch->offsets[row + 1] - batch->offsets[row];

	initStringInfo(&want);
	appendStringInfoString(&want, "{\"id\":");
	bulkops_json_string(&want, id, strlen(id));
	return len > want.len && memcmp(enc, want.data, want.len) == 0 &&
		(enc[want.len] == ',' || enc[want.len] == '}');
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
 * is how many rows the batch said failed (-1: it did not say).
 */
static void
px_settle(const BulkopsBatch *batch, const char *id, const char *status,
		  const char *reason, JsonbContainer *entries, int counted,
		  BulkopsResult *result)
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
		px_settle_rest(batch, result, BULKOPS_ROW_SUCCEEDED, NULL, NULL);
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
	/* whatever the batch did is repeated harmlessly: every action is idempotent */
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
		px_settle(batch, id, status, reason, NULL, px_failed_count(b), result);
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
	appendStringInfo(&note, ",\"failed\":%d,\"refetch\":%d}", px_failed_count(b),
					 px_note_refetch(batch));
	result->next = BULKOPS_NEXT_STEP;
	result->step = PX_STEP_ERRORS;
	result->remote_id = pstrdup(id);
	result->step_data = note.data;
}

static void
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

static void
px_handle_poll(const BulkopsBatch *batch, const BulkopsResponse *resp,
			   JsonbContainer *root, BulkopsResult *result)
{
	JsonbContainer *b = px_batch_object(root);
	char	   *id = bulkops_jtext(bulkops_jget(b, "id"));

	if (resp->status == 404)
	{
		/* the batch is gone, perhaps after running: its rows are in doubt */
		result->next = BULKOPS_NEXT_RESUBMIT;
		result->counts_attempt = true;
		result->maybe_applied = true;
		result->error = psprintf("batch %s is not known to the remote side",
								 batch->remote_id);
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

static void
px_handle_errors_file(const BulkopsBatch *batch, const BulkopsResponse *resp,
					  JsonbContainer *root, BulkopsResult *result)
{
	char	   *status = bulkops_jtext(px_note(batch, "status"));
	int			refetch = px_note_refetch(batch);
	char	   *failed;

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
	px_settle(batch, batch->remote_id, status,
			  bulkops_jtext(px_note(batch, "reason")), root,
			  failed ? atoi(failed) : -1, result);
}

static void
px_handle_response(const BulkopsBatch *batch, const BulkopsResponse *resp,
				   BulkopsResult *result)
{
	JsonbContainer *root;

	if (!bulkops_read_answer(resp, result, &root))
		return;
	switch (batch->step)
	{
		case PX_STEP_POLL:
			px_handle_poll(batch, resp, root, result);
			break;
		case PX_STEP_ERRORS:
			px_handle_errors_file(batch, resp, root, result);
			break;
		default:
			px_handle_submit(batch, resp, root, result);
			break;
	}
}

const BulkopsDialect bulkops_packagex_dialect = {
	.name = "packagex",
	.op_names = {
		[BULKOPS_OP_UPSERT] = "merge",
		[BULKOPS_OP_OVERWRITE] = "overwrite",
		[BULKOPS_OP_DELETE] = "delete",
	},
	/* by id, whole: sending one again gives the same remote state */
	.idempotent = {
		[BULKOPS_OP_UPSERT] = true,
		[BULKOPS_OP_OVERWRITE] = true,
		[BULKOPS_OP_DELETE] = true,
	},
	.needs_key = {
		[BULKOPS_OP_UPSERT] = true,
		[BULKOPS_OP_OVERWRITE] = true,
		[BULKOPS_OP_DELETE] = true,
	},
	.options = px_options,
	.max_batch_rows = PX_MAX_ITEMS,
	.validate_target = px_validate_target,
	.begin_encode = px_begin_encode,
	.encode_row = px_encode_row,
	.build_request = px_build_request,
	.handle_response = px_handle_response,
	.end_encode = px_end_encode,
};
