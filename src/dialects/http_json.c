/*-------------------------------------------------------------------------
 *
 * http_json.c
 *	  The "http_json" dialect: any bulk API that takes a JSON array of rows
 *	  and answers with per-row results, now or after a remote task,
 *	  described entirely by the target's options
 *	  (docs/protocols/http_json.md).
 *
 * This file owns the options (read into an HjConfig and checked at
 * create_target, alter_target and every enqueue), the encoding of rows and
 * the requests; http_json_templates.c compiles the body and row
 * templates, and http_json_answers.c reads the answers.
 *
 * A row is encoded once, at enqueue, with the row template applied, so the
 * batch holds each row's final JSON.  In front of it the batch keeps the
 * row's key as a JSON string (or null without a key): answers matched by
 * key find their rows by it, without the keys or a parse of the row.  The
 * body template, the envelope around the array of rows, is applied at
 * send time.
 *
 * A request carries the batch's pending rows in order, as many as the
 * target's max_rows and max_bytes allow, and with option "match" by key
 * only the first pending row of each key (an answer could not tell two
 * apart).  The rest stay pending and go in the next request once these have
 * their outcomes: pending rows do not change while a request or remote
 * task is under way (dialect.h), so the request and the reading of its
 * answer select the same rows.
 *
 * Steps: 0 submits; with option "task_id" its answer gives a remote task,
 * step 1 polls it until option "done" holds and reads the results from the
 * answer that says so.
 *
 * Like every dialect this file knows nothing of tables or the worker loop;
 * it allocates in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "bulkops.h"
#include "dialect.h"
#include "http_json.h"

#define HJ_DEFAULT_MAX_ROWS		1000
#define HJ_DEFAULT_MAX_BYTES	(8 * 1024 * 1024)
#define HJ_HEX					"0123456789ABCDEFabcdef"

/*
 * What a job may do with each option (see BulkopsJobRule), and why.  The
 * API's description (where requests go, what they look like, how answers
 * read) is the target owner's: a job repeats it or leaves it out.
 */
static const BulkopsOptionDef http_json_options[] = {
	{"method", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY,
	.dflt_text = "POST"},
	{"delete_method", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY,
	.dflt_text = "DELETE"},
	{"path", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY,
	.dflt_text = ""},
	/* its default is option "path" */
	{"delete_path", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	{"body", BULKOPS_OPT_JSON, 0, 0, BULKOPS_JOB_TARGET_ONLY,
	.dflt_text = "$rows"},
	{"row", BULKOPS_OPT_JSON, 0, 0, BULKOPS_JOB_TARGET_ONLY,
	.dflt_text = "$row"},
	{"results", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY,
	.dflt_text = ""},
	{"match", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY,
	.dflt_text = "position"},
	{"ok", BULKOPS_OPT_JSON, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	{"remote_id", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	{"created", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	{"error_code", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	{"error_message", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	{"task_id", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	{"poll_path", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	{"done", BULKOPS_OPT_OBJECT, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	/* the API's limits per request: a job may only send less at once */
	{"max_rows", BULKOPS_OPT_INT, 1, 1000000, BULKOPS_JOB_AT_MOST,
	.dflt = HJ_DEFAULT_MAX_ROWS},
	{"max_bytes", BULKOPS_OPT_INT, 1024, 512 * 1024 * 1024, BULKOPS_JOB_AT_MOST,
	.dflt = HJ_DEFAULT_MAX_BYTES},
	/* repeating an insert that may have been applied: the owner vouches */
	{"idempotent_insert", BULKOPS_OPT_BOOL, 0, 0, BULKOPS_JOB_TARGET_OR_SAFE,
	.dflt = 0},
	{NULL}
};

/* the placeholders of the paths, and the bit each is in a path's mask */
#define HJ_PATH_RESOURCE	1
#define HJ_PATH_OPERATION	2
#define HJ_PATH_TASK_ID		4

static const struct
{
	const char *name;
	int			bit;
}			path_placeholders[] = {
	{"{resource}", HJ_PATH_RESOURCE},
	{"{operation}", HJ_PATH_OPERATION},
	{"{task_id}", HJ_PATH_TASK_ID},
};

/* What begin_encode keeps for encode_row. */
typedef struct HjEncodeState
{
	HjTemplate	row;
	char	   *operation;		/* the operation's name as a JSON string */
	int			envelope;		/* bytes of a request's body around the rows */
	int			max_bytes;
	int64		nrows;			/* rows encoded so far */
} HjEncodeState;

/* ---- options, checked at create_target, alter_target and enqueue ---- */

static void
refuse_pointer(const char *option)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("http_json option \"%s\" is not a JSON pointer", option),
			 errdetail("A JSON pointer (RFC 6901) is \"\" for the whole, or \"/\" before each member name or array index, as in \"/data/results\"; \"~\" in a name is written \"~0\" and \"/\" \"~1\".")));
}

/* option name, a JSON pointer, or dflt when not given */
static const char *
pointer_option(Jsonb *options, const char *name, const char *dflt)
{
	char	   *p = bulkops_opt_string(options, name, dflt);

	if (p != NULL && !hj_pointer_is_valid(p))
		refuse_pointer(name);
	return p;
}

static const char *
method_option(Jsonb *options, const char *name, const char *dflt)
{
	static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
	char	   *m = bulkops_opt_string(options, name, dflt);
	int			i;

	for (i = 0; i < lengthof(methods); i++)
		if (pg_strcasecmp(m, methods[i]) == 0)
			return methods[i];
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("http_json option \"%s\" must be GET, POST, PUT, PATCH or DELETE",
					name)));
	return NULL;				/* keep compiler quiet */
}

/*
 * Check path, the value of option; returns the mask of the placeholders it
 * uses.  A path goes after the target's url as it is, but for its
 * placeholders, whose values are percent-encoded as one path segment
 * (bulkops_url_segment): so the owner may write a query into it, and
 * nothing a resource or an answer gives can add to that query, start
 * another, or move the request to another path.
 */
static int
check_path(const char *option, const char *path, int allowed)
{
	const char *p;
	const char *seg;
	bool		in_query = false;
	int			used = 0;

	if (path[0] != '\0' && path[0] != '/' && path[0] != '?')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"%s\" must be empty or start with \"/\" or \"?\"",
						option),
				 errdetail("It is appended to the target's url.")));
	for (p = path; *p; p++)
	{
		unsigned char c = (unsigned char) *p;
		int			i;

		if (c == '{')
		{
			for (i = 0; i < lengthof(path_placeholders); i++)
			{
				size_t		n = strlen(path_placeholders[i].name);

				if (strncmp(p, path_placeholders[i].name, n) == 0 &&
					(allowed & path_placeholders[i].bit) != 0)
				{
					used |= path_placeholders[i].bit;
					p += n - 1;
					break;
				}
			}
			if (i == lengthof(path_placeholders))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("http_json option \"%s\" has a \"{\" that starts no placeholder it may use",
								option),
						 (allowed & HJ_PATH_TASK_ID)
						 ? errdetail("It may use {resource}, {operation} and {task_id}.")
						 : errdetail("It may use {resource} and {operation}.")));
			continue;
		}
		if (c == '?')
		{
			if (in_query)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("http_json option \"%s\" has more than one \"?\"", option)));
			in_query = true;
			continue;
		}
		if (c == '%' && p[1] && strchr(HJ_HEX, p[1]) && p[2] && strchr(HJ_HEX, p[2]))
			continue;
		/* ASCII by byte, whatever the locale's idea of a letter */
		if (c == '%' || c >= 0x80 ||
			strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
				   "-._~!$&'()*+,;=:@/", c) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("http_json option \"%s\" has a character a URL cannot carry as it is",
							option),
					 errdetail("A path may hold letters, digits, \"-._~!$&'()*+,;=:@/\", one \"?\" before a query, placeholders, and anything else percent-encoded (\"%%20\" for a space).")));
	}

	/* curl would remove dot segments: the request would go elsewhere */
	for (seg = path; *seg == '/'; seg += 1 + strcspn(seg + 1, "/?"))
	{
		size_t		n = strcspn(seg + 1, "/?");

		if ((n == 1 && seg[1] == '.') || (n == 2 && seg[1] == '.' && seg[2] == '.'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("http_json option \"%s\" must not have a \".\" or \"..\" segment",
							option)));
	}
	return used;
}

/* option name's template, or its default, a placeholder */
static void
template_option(Jsonb *options, const char *name, const char *dflt,
				HjTemplate *t)
{
	JsonbValue *v = bulkops_jsonb_get(options, name);
	JsonbValue	d;

	if (v == NULL)
	{
		d.type = jbvString;
		d.val.string.val = (char *) dflt;
		d.val.string.len = strlen(dflt);
		v = &d;
	}
	hj_compile_template(name, v, t);
}

static void
check_templates(const HjConfig *cfg)
{
	if (cfg->body.uses[HJ_ROWS] != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"body\" must hold \"$rows\" exactly once"),
				 errdetail("It holds it %d times; the array of rows goes where it is.",
						   cfg->body.uses[HJ_ROWS])));
	if (cfg->body.uses[HJ_ROW] > 0 || cfg->body.uses[HJ_KEY] > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"body\" cannot use \"$row\" or \"$key\""),
				 errdetail("They stand for one row: option \"row\" is the template of each row.")));
	if (cfg->row.uses[HJ_ROWS] > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"row\" cannot use \"$rows\""),
				 errdetail("It is the template of one row; the array of rows goes into option \"body\".")));
	if (cfg->row.uses[HJ_ROW] == 0 && cfg->row.uses[HJ_KEY] == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"row\" must use \"$row\" or \"$key\""),
				 errdetail("Without them every row would be sent the same.")));
}

/*
 * Option name, a test of a value in an answer: a JSON pointer to a boolean,
 * or {"pointer": P, "values": [scalars]}.  Returns false when not given.
 */
static bool
test_option(Jsonb *options, const char *name, HjTest *test)
{
	JsonbValue *v = bulkops_jsonb_get(options, name);
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;
	JsonbValue	val;

	memset(test, 0, sizeof(HjTest));
	if (v == NULL)
		return false;
	if (v->type == jbvString)
	{
		test->pointer = pointer_option(options, name, NULL);
		return true;
	}
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"%s\" must be a JSON pointer or an object with \"pointer\" and \"values\"",
						name),
				 errhint("For example {\"pointer\": \"/status\", \"values\": [\"ok\", 200]}, or \"/success\" for a boolean.")));

	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *member;

		if (tok != WJB_KEY)
			continue;
		member = pnstrdup(k.val.string.val, k.val.string.len);
		(void) JsonbIteratorNext(&it, &val, true);
		if (strcmp(member, "pointer") == 0 && val.type == jbvString)
		{
			test->pointer = pnstrdup(val.val.string.val, val.val.string.len);
			if (!hj_pointer_is_valid(test->pointer))
				refuse_pointer(psprintf("%s.pointer", name));
		}
		else if (strcmp(member, "values") == 0 && val.type == jbvBinary &&
				 JsonContainerIsArray(val.val.binary.data) &&
				 JsonContainerSize(val.val.binary.data) > 0)
		{
			JsonbContainer *values = val.val.binary.data;
			int			i;

			for (i = 0; i < JsonContainerSize(values); i++)
				if (getIthJsonbValueFromContainer(values, i)->type == jbvBinary)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("http_json option \"%s\" lists a value that is not a scalar",
									name),
							 errdetail("Values are strings, numbers, booleans or null.")));
			test->values = values;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("http_json option \"%s\" has %s member \"%s\"", name,
							strcmp(member, "pointer") == 0 || strcmp(member, "values") == 0
							? "an invalid" : "an unknown", member),
					 errdetail("\"pointer\" is a JSON pointer; \"values\", a non-empty array of the scalars it may have; without \"values\" the pointer's value is a boolean.")));
	}
	if (test->pointer == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"%s\" has no \"pointer\"", name)));
	return true;
}

/* bytes of a request's body besides its rows and the commas between them */
static int
envelope_bytes(const HjConfig *cfg, BulkopsOp op)
{
	int			n = 2;			/* [ and ] */
	int			i;

	for (i = 0; i < cfg->body.npieces; i++)
	{
		if (cfg->body.pieces[i].kind == HJ_TEXT)
			n += cfg->body.pieces[i].len;
		else if (cfg->body.pieces[i].kind == HJ_OPERATION)
			n += strlen(bulkops_op_name(op)) + 2;
	}
	return n;
}

/*
 * Read the dialect's options into cfg, checking every one of them and how
 * they go together (with resource, the target's): an error names the
 * option.  options may be NULL (none given).
 */
void
hj_read_config(Jsonb *options, const char *resource, HjConfig *cfg)
{
	int			uses;
	char	   *match;

	memset(cfg, 0, sizeof(HjConfig));
	cfg->method = method_option(options, "method", "POST");
	cfg->delete_method = method_option(options, "delete_method", "DELETE");
	cfg->path = bulkops_opt_string(options, "path", "");
	cfg->delete_path = bulkops_opt_string(options, "delete_path", cfg->path);
	cfg->poll_path = bulkops_opt_string(options, "poll_path", NULL);
	uses = check_path("path", cfg->path, HJ_PATH_RESOURCE | HJ_PATH_OPERATION);
	uses |= check_path("delete_path", cfg->delete_path,
					   HJ_PATH_RESOURCE | HJ_PATH_OPERATION);
	if (cfg->poll_path != NULL)
	{
		int			poll_uses = check_path("poll_path", cfg->poll_path,
										   HJ_PATH_RESOURCE | HJ_PATH_OPERATION |
										   HJ_PATH_TASK_ID);

		if ((poll_uses & HJ_PATH_TASK_ID) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("http_json option \"poll_path\" must use {task_id}"),
					 errdetail("It names the remote task each poll asks about.")));
		uses |= poll_uses;
	}
	if ((uses & HJ_PATH_RESOURCE) && (resource == NULL || resource[0] == '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json paths use {resource}, but the target has no resource"),
				 errhint("Pass resource => 'contacts', for example, or leave {resource} out of the paths.")));

	template_option(options, "body", "$rows", &cfg->body);
	template_option(options, "row", "$row", &cfg->row);
	check_templates(cfg);

	cfg->results = pointer_option(options, "results", "");
	match = bulkops_opt_string(options, "match", "position");
	if (strcmp(match, "position") != 0)
	{
		if (!hj_pointer_is_valid(match))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("http_json option \"match\" must be \"position\" or a JSON pointer"),
					 errdetail("\"position\" pairs the n-th result with the n-th row sent; a pointer names where each result gives its row's key.")));
		cfg->match = match;
	}
	cfg->has_ok = test_option(options, "ok", &cfg->ok);
	cfg->remote_id = pointer_option(options, "remote_id", NULL);
	cfg->created = pointer_option(options, "created", NULL);
	cfg->error_code = pointer_option(options, "error_code", NULL);
	cfg->error_message = pointer_option(options, "error_message", NULL);

	cfg->task_id = pointer_option(options, "task_id", NULL);
	if (test_option(options, "done", &cfg->done) && cfg->task_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"done\" needs option \"task_id\""),
				 errdetail("It says when a remote task is over; without a task id the results are in the answer to each request.")));
	if (cfg->poll_path != NULL && cfg->task_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"poll_path\" needs option \"task_id\""),
				 errdetail("A task is polled only when the answer to a request names one.")));
	if (cfg->task_id != NULL && (cfg->poll_path == NULL || cfg->done.pointer == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"task_id\" needs options \"poll_path\" and \"done\""),
				 errdetail("The results of a remote task come from polling poll_path until done holds.")));

	cfg->max_rows = bulkops_opt_int(options, "max_rows", HJ_DEFAULT_MAX_ROWS);
	cfg->max_bytes = bulkops_opt_int(options, "max_bytes", HJ_DEFAULT_MAX_BYTES);
	if (envelope_bytes(cfg, BULKOPS_OP_UPSERT) >= cfg->max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"max_bytes\" leaves no room for rows"),
				 errdetail("The body template alone takes %d bytes.",
						   envelope_bytes(cfg, BULKOPS_OP_UPSERT))));
	cfg->idempotent_insert = bulkops_opt_bool(options, "idempotent_insert", false);
}

static void
http_json_validate_target(const char *url, const char *resource, Jsonb *options)
{
	HjConfig	cfg;

	hj_read_config(options, resource, &cfg);
}

/*
 * May a request of batch that may have been applied be sent again?  For
 * its operation, or for an insert the target's owner says is safe to
 * repeat (option idempotent_insert).
 */
bool
hj_repeat_is_safe(const BulkopsBatch *batch, const HjConfig *cfg)
{
	return batch->op != BULKOPS_OP_INSERT || cfg->idempotent_insert;
}

/* ---- encoding, at enqueue ---- */

static void
http_json_begin_encode(BulkopsEncodeTarget *target, BulkopsEncoder *enc)
{
	HjEncodeState *st = palloc0(sizeof(HjEncodeState));
	HjConfig	cfg;
	StringInfoData op;

	hj_read_config(target->options, target->resource, &cfg);
	if (target->key_att < 0 && (cfg.row.uses[HJ_KEY] > 0 || cfg.match != NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s through this http_json target needs a key column",
						bulkops_op_name(target->op)),
				 cfg.match != NULL
				 ? errdetail("Its answers are matched to rows by key (option \"match\").")
				 : errdetail("Its row template sends the key (\"$key\" in option \"row\")."),
				 errhint("Pass key => 'column', naming the source column that identifies each row remotely.")));
	st->row = cfg.row;
	initStringInfo(&op);
	bulkops_json_string(&op, bulkops_op_name(target->op),
						strlen(bulkops_op_name(target->op)));
	st->operation = op.data;
	st->envelope = envelope_bytes(&cfg, target->op);
	st->max_bytes = cfg.max_bytes;
	target->private = st;
}

static void
http_json_encode_row(BulkopsEncodeTarget *target, BulkopsEncoder *enc,
					 Datum *values, bool *nulls, StringInfo out)
{
	HjEncodeState *st = target->private;
	int			start;
	int			i;

	/* the key first, where the answer's reader finds it (see the top) */
	if (target->key_text)
		bulkops_json_string(out, target->key_text, strlen(target->key_text));
	else
		appendBinaryStringInfo(out, "null", 4);
	start = out->len;
	for (i = 0; i < st->row.npieces; i++)
	{
		const HjPiece *p = &st->row.pieces[i];

		switch (p->kind)
		{
			case HJ_TEXT:
				appendBinaryStringInfo(out, p->text, p->len);
				break;
			case HJ_ROW:
				bulkops_encode_object(enc, values, nulls, NULL, out);
				break;
			case HJ_KEY:
				/* its JSON type: a number stays a number */
				bulkops_encode_value(enc, target->key_att, values[target->key_att],
									 nulls[target->key_att], out);
				break;
			case HJ_OPERATION:
				appendStringInfoString(out, st->operation);
				break;
			default:
				elog(ERROR, "unexpected piece %d in an http_json row template",
					 (int) p->kind);
		}
	}
	st->nrows++;
	if ((int64) st->envelope + (out->len - start) > st->max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("row " INT64_FORMAT " of the source is too large for one request of this http_json target",
						st->nrows),
				 errdetail("With the body template it takes " INT64_FORMAT " bytes; option \"max_bytes\" allows %d.",
						   (int64) st->envelope + (out->len - start), st->max_bytes),
				 errhint("Leave the large values out of the source, or have the target's owner raise max_bytes if the API takes more.")));
}

/* ---- the rows a request carries ---- */

/*
 * Row i of the batch as stored: its key (a JSON string, or null), then its
 * JSON (see http_json_encode_row).
 */
static void
stored_row(const BulkopsBatch *batch, int i, HjRow *r)
{
	const char *start = batch->body + batch->offsets[i];
	const char *end = batch->body + batch->offsets[i + 1];
	const char *p;

	if (end - start >= 4 && memcmp(start, "null", 4) == 0)
		p = start + 4;
	else if (start < end && *start == '"')
	{
		p = start + 1;
		while (p < end && *p != '"')
			p += (*p == '\\') ? 2 : 1;
		if (p >= end)
			elog(ERROR, "http_json: row %d of batch %d has a broken key", i,
				 batch->batch_no);
		p++;
	}
	else
		elog(ERROR, "http_json: row %d of batch %d is not encoded by this dialect",
			 i, batch->batch_no);
	r->row = i;
	r->key = start;
	r->keylen = p - start;
	r->json = p;
	r->len = end - p;
	r->answered = false;
}

/* Rows by key, as the batch holds keys (quoted and escaped). */
int
hj_key_cmp(const HjRow *a, const HjRow *b)
{
	int			c = memcmp(a->key, b->key, Min(a->keylen, b->keylen));

	if (c != 0)
		return c;
	return (a->keylen > b->keylen) - (a->keylen < b->keylen);
}

/* by key, then row: the first row of a key sorts first */
static int
row_key_cmp(const void *a, const void *b)
{
	const HjRow *x = a;
	const HjRow *y = b;
	int			c = hj_key_cmp(x, y);

	if (c != 0)
		return c;
	return (x->row > y->row) - (x->row < y->row);
}

/* Leave out of rows[0..*n) every row whose key an earlier row has. */
static void
drop_repeated_keys(HjRow *rows, int *n)
{
	HjRow	   *sorted = palloc(sizeof(HjRow) * *n);
	bool	   *repeat = palloc0(sizeof(bool) * (rows[*n - 1].row + 1));
	int			kept = 0;
	int			i;

	memcpy(sorted, rows, sizeof(HjRow) * *n);
	qsort(sorted, *n, sizeof(HjRow), row_key_cmp);
	for (i = 1; i < *n; i++)
		if (hj_key_cmp(&sorted[i], &sorted[i - 1]) == 0)
			repeat[sorted[i].row] = true;
	for (i = 0; i < *n; i++)
		if (!repeat[rows[i].row])
			rows[kept++] = rows[i];
	*n = kept;
	pfree(sorted);
	pfree(repeat);
}

/*
 * The pending rows the batch's next request carries, in row order: as many
 * as max_rows and max_bytes allow (at least one: enqueue refused a row that
 * could never fit), and with answers matched by key, only the first of
 * each key.  Deterministic, so that a request and its answer (or its
 * task's polls, even after a restart) see the same rows.
 */
HjRow *
hj_select_rows(const BulkopsBatch *batch, const HjConfig *cfg, int *nrows)
{
	HjRow	   *rows = palloc(sizeof(HjRow) * Max(batch->nrows, 1));
	int64		bytes = envelope_bytes(cfg, batch->op);
	int			n = 0;
	int			kept = 0;
	int			i;

	for (i = 0; i < batch->nrows; i++)
		if (batch->pending[i])
			stored_row(batch, i, &rows[n++]);
	if (cfg->match != NULL && n > 1)
		drop_repeated_keys(rows, &n);
	for (i = 0; i < n; i++)
	{
		int64		more = rows[i].len + (kept > 0 ? 1 : 0);

		if (kept > 0 && (kept >= cfg->max_rows || bytes + more > cfg->max_bytes))
			break;
		bytes += more;
		rows[kept++] = rows[i];
	}
	*nrows = kept;
	return rows;
}

/* ---- the request ---- */

/* A value substituted into a path: one percent-encoded segment. */
static void
append_segment(StringInfo out, const char *value)
{
	/* a segment of dots only would be taken as a dot segment */
	if (strcmp(value, ".") == 0 || strcmp(value, "..") == 0)
	{
		for (; *value; value++)
			appendStringInfoString(out, "%2E");
		return;
	}
	appendStringInfoString(out, bulkops_url_segment(value));
}

/* The batch's url with path, its placeholders substituted. */
static char *
request_url(const BulkopsBatch *batch, const char *path)
{
	StringInfoData url;
	const char *p;

	initStringInfo(&url);
	appendStringInfoString(&url, batch->url);
	for (p = path; *p; p++)
	{
		if (strncmp(p, "{resource}", 10) == 0)
		{
			if (batch->resource == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("http_json paths use {resource}, but the target has no resource")));
			append_segment(&url, batch->resource);
			p += 9;
		}
		else if (strncmp(p, "{operation}", 11) == 0)
		{
			append_segment(&url, bulkops_op_name(batch->op));
			p += 10;
		}
		else if (strncmp(p, "{task_id}", 9) == 0 && batch->remote_id != NULL)
		{
			append_segment(&url, batch->remote_id);
			p += 8;
		}
		else
			appendStringInfoChar(&url, *p);
	}
	return url.data;
}

static void
http_json_build_request(const BulkopsBatch *batch, BulkopsRequest *req)
{
	bool		del = (batch->op == BULKOPS_OP_DELETE);
	HjConfig	cfg;
	HjRow	   *rows;
	int			nrows;
	int64		size;
	int			i;
	int			j;

	hj_read_config(batch->options, batch->resource, &cfg);
	if (batch->step == HJ_STEP_POLL)
	{
		if (batch->remote_id == NULL)
			elog(ERROR, "http_json: batch %d polls without a task id", batch->batch_no);
		req->method = "GET";
		req->url = request_url(batch, cfg.poll_path);
		return;
	}

	rows = hj_select_rows(batch, &cfg, &nrows);
	req->method = del ? cfg.delete_method : cfg.method;
	req->url = request_url(batch, del ? cfg.delete_path : cfg.path);
	req->content_type = "application/json";
	req->body = makeStringInfo();
	size = envelope_bytes(&cfg, batch->op) + nrows;
	for (i = 0; i < nrows; i++)
		size += rows[i].len;
	enlargeStringInfo(req->body, (int) Min(size, MaxAllocSize - 1));
	for (i = 0; i < cfg.body.npieces; i++)
	{
		const HjPiece *p = &cfg.body.pieces[i];

		switch (p->kind)
		{
			case HJ_TEXT:
				appendBinaryStringInfo(req->body, p->text, p->len);
				break;
			case HJ_OPERATION:
				bulkops_json_string(req->body, bulkops_op_name(batch->op),
									strlen(bulkops_op_name(batch->op)));
				break;
			case HJ_ROWS:
				appendStringInfoChar(req->body, '[');
				for (j = 0; j < nrows; j++)
				{
					if (j > 0)
						appendStringInfoChar(req->body, ',');
					appendBinaryStringInfo(req->body, rows[j].json, rows[j].len);
				}
				appendStringInfoChar(req->body, ']');
				break;
			default:
				elog(ERROR, "unexpected piece %d in an http_json body template",
					 (int) p->kind);
		}
	}
}

const BulkopsDialect bulkops_http_json_dialect = {
	.name = "http_json",
	.op_names = {
		[BULKOPS_OP_INSERT] = "insert",
		[BULKOPS_OP_UPDATE] = "update",
		[BULKOPS_OP_UPSERT] = "upsert",
		[BULKOPS_OP_DELETE] = "delete",
	},

	/*
	 * Insert is not, unless the target says so (idempotent_insert), which
	 * this table cannot say: see hj_repeat_is_safe and
	 * docs/protocols/http_json.md for where that option reaches.
	 */
	.idempotent = {
		[BULKOPS_OP_UPDATE] = true,
		[BULKOPS_OP_UPSERT] = true,
		[BULKOPS_OP_DELETE] = true,
	},
	.needs_key = {
		[BULKOPS_OP_UPDATE] = true,
		[BULKOPS_OP_UPSERT] = true,
		[BULKOPS_OP_DELETE] = true,
	},
	.options = http_json_options,
	.validate_target = http_json_validate_target,
	.begin_encode = http_json_begin_encode,
	.encode_row = http_json_encode_row,
	.build_request = http_json_build_request,
	.handle_response = hj_handle_response,
};
