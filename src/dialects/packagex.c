/*-------------------------------------------------------------------------
 *
 * packagex.c
 *	  The "packagex" dialect: batches with phases (PackageX Batches API,
 *	  docs/protocols/packagex.md).
 *
 * Steps: 0 submits {"resource", "action", "mode", "duplicate_handling",
 * "data": [...]} for the pending rows (with option upload = csv, "data" is
 * a header row and the rows' CSV records as a base64 data URL; rows are
 * encoded at enqueue in the job's form) and gets the batch back; 1 polls
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
 * Reading the answers is in packagex_answers.c; packagex.h holds what the
 * two share, with the assumptions made about the API.
 *
 * Like every dialect this one knows nothing of tables or the worker loop;
 * it allocates in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "utils/jsonb.h"

#include "bulkops.h"
#include "csv.h"
#include "dialect.h"
#include "packagex.h"

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

/* What a job may do with each option (see BulkopsJobRule), and why. */
static const BulkopsOptionDef px_options[] = {
	/* how the remote side answers, not what it does */
	{"mode", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_ANY,.dflt_text = "mixed"},
	/* how many items the remote side must process while the request waits */
	{"sync_max_items", BULKOPS_OPT_INT, 1, PX_MAX_ITEMS, BULKOPS_JOB_AT_MOST,
	.dflt = PX_SYNC_MAX_ITEMS},
	/* which of the job's own rows with one id wins */
	{"duplicate_handling", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_ANY,
	.dflt_text = "ignore_all"},
	/* the actions the target's owner allows on each resource */
	{"resources", BULKOPS_OPT_OBJECT, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	/* the same items, as a JSON array or as a CSV file */
	{"upload", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_ANY,.dflt_text = "json"},
	{NULL}
};

typedef struct PxEncodeState
{
	bool	   *omit;			/* the key column: it is sent as "id" */
	bool		csv;			/* option upload is csv */
	int		   *cols;			/* csv: the columns after "id", in order */
	int			ncols;
	int64		row;			/* csv: rows encoded so far */
} PxEncodeState;

/* Whether the batch's items go as a CSV file (option upload). */
bool
px_upload_csv(Jsonb *options)
{
	return strcmp(bulkops_opt_string(options, "upload", "json"), "csv") == 0;
}

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
	bulkops_check_identifier("packagex", NULL, resource);
	if (strcmp(mode, "sync") != 0 && strcmp(mode, "mixed") != 0 &&
		strcmp(mode, "async") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("packagex option \"mode\" must be \"sync\", \"mixed\" or \"async\"")));
	if (strcmp(dup, "ignore_all") != 0 && strcmp(dup, "use_first") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("packagex option \"duplicate_handling\" must be \"ignore_all\" or \"use_first\"")));
	if (!px_upload_csv(options) &&
		strcmp(bulkops_opt_string(options, "upload", "json"), "json") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("packagex option \"upload\" must be \"json\" or \"csv\"")));
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

static void px_begin_csv(BulkopsEncodeTarget *target, BulkopsEncoder *enc,
						 PxEncodeState *st);

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
	st->csv = px_upload_csv(target->options);
	target->private = st;
	if (st->csv)
		px_begin_csv(target, enc, st);
}

/*
 * Option upload = csv: the header row ("id", then the other columns) is the
 * job's prologue.  PackageX documents no CSV form for nested values, so a
 * column that is not one plain value per row is refused.
 */
static void
px_begin_csv(BulkopsEncodeTarget *target, BulkopsEncoder *enc, PxEncodeState *st)
{
	int			natts = bulkops_encoder_natts(enc);
	int			i;

	st->cols = palloc(sizeof(int) * Max(natts, 1));
	appendStringInfoString(target->prologue, "id");
	for (i = 0; i < natts && target->op != BULKOPS_OP_DELETE; i++)
	{
		const char *name = bulkops_encoder_attname(enc, i);

		if (name == NULL || i == target->key_att)
			continue;
		if (!bulkops_encoder_is_flat(enc, i))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("packagex option \"upload\" = \"csv\" cannot send column \"%s\"", name),
					 errdetail("Its values are arrays, json, composites or bytea, and PackageX documents no CSV form for them."),
					 errhint("Send this job with upload \"json\", or turn the column into text in the source query.")));
		st->cols[st->ncols++] = i;
		appendStringInfoChar(target->prologue, ',');
		(void) bulkops_csv_field(target->prologue, name, strlen(name));
	}
	appendStringInfoChar(target->prologue, '\n');
}

/* id, then the other columns, as one CSV record; NULL is an empty field. */
static void
px_encode_csv(BulkopsEncodeTarget *target, BulkopsEncoder *enc,
			  Datum *values, bool *nulls, StringInfo out)
{
	PxEncodeState *st = target->private;
	int			problem = 0;
	int			bad;

	st->row++;
	if (!bulkops_csv_field(out, target->key_text, strlen(target->key_text)))
	{
		bad = target->key_att;
		problem = BULKOPS_CSV_NUL;
	}
	else
	{
		if (st->ncols > 0)
			appendStringInfoChar(out, ',');
		bad = bulkops_encode_csv_record(enc, values, nulls, st->cols, st->ncols,
										"", ',', "\n", out, &problem);
	}
	if (unlikely(bad >= 0))
		bulkops_csv_refuse_row(enc, st->row, bad, problem);
}

/* {"id": "<key>", <the other columns>}, or {"id": "<key>"} to delete. */
static void
px_encode_row(BulkopsEncodeTarget *target, BulkopsEncoder *enc,
			  Datum *values, bool *nulls, StringInfo out)
{
	PxEncodeState *st = target->private;
	int			start;

	if (st->csv)
	{
		px_encode_csv(target, enc, values, nulls, out);
		return;
	}
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
				 ? errhint("Raise batch_size (to at most %d) and batch_bytes, on the target or within its limits for the job, so that one batch holds the source, or use bulkops.bulk_upsert() followed by bulkops.bulk_delete() of the keys that are gone.",
						   PX_MAX_ITEMS)
				 : errhint("One request takes at most %d items: use bulkops.bulk_upsert() followed by bulkops.bulk_delete() of the keys that are gone.",
						   PX_MAX_ITEMS)));
}

/* ---- requests ---- */

/* One member of a batch's step_data (a JSON object), or NULL. */
JsonbValue *
px_note(const BulkopsBatch *batch, const char *name)
{
	Jsonb	   *jb;

	if (batch->step_data == NULL)
		return NULL;
	jb = bulkops_json_try_parse(batch->step_data, strlen(batch->step_data));
	return jb ? bulkops_jget(&jb->root, name) : NULL;
}

int
px_note_refetch(const BulkopsBatch *batch)
{
	char	   *n = bulkops_jtext(px_note(batch, "refetch"));

	return n ? atoi(n) : 0;
}

/*
 * ,"data":"data:text/csv;base64,..."} : the header row and the pending rows
 * as a CSV file in a data URL, the API's documented file upload.
 */
static void
px_append_csv(const BulkopsBatch *batch, StringInfo body)
{
	StringInfoData csv;
	int			i;
	int			len;

	initStringInfo(&csv);
	appendBinaryStringInfo(&csv, batch->prologue, batch->prologue_len);
	for (i = 0; i < batch->nrows; i++)
		if (batch->pending[i])
			appendBinaryStringInfo(&csv, batch->body + batch->offsets[i],
								   batch->offsets[i + 1] - batch->offsets[i]);
	appendStringInfoString(body, ",\"data\":\"data:text/csv;base64,");
	len = pg_b64_enc_len(csv.len);
	enlargeStringInfo(body, len + 3);
	len = pg_b64_encode(csv.data, csv.len, body->data + body->len, len);
	if (len < 0)
		elog(ERROR, "could not encode a batch as base64");
	body->len += len;
	body->data[body->len] = '\0';
	appendStringInfoString(body, "\"}");
	pfree(csv.data);
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
	if (px_upload_csv(batch->options))
	{
		px_append_csv(batch, req->body);
		return;
	}
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
