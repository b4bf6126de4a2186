/*-------------------------------------------------------------------------
 *
 * blueconic.c
 *	  The "blueconic" dialect: group and profile bulk writes of the
 *	  BlueConic REST API v2 (docs/protocols/blueconic.md).
 *
 * One step only: PUT {url}/rest/v2/groups (or /profiles) with a JSON array
 * of at most 1,000 entries, one per pending row,
 *
 *	 {"identifier": "<job row number>", "groupId": "<key>",
 *	  "groupTypeId": "<group_type_id>", "strategy": "UPSERT",
 *	  "properties": [{"id": "<column>", "values": ["..."], "strategy": "SET"}]}
 *
 * answered 200 with one element per entry carrying the identifier back, in
 * no promised order: answers are matched to rows by identifier alone, so
 * two rows with the same key in one request are told apart.
 *
 * A row is encoded at enqueue without its identifier (the row number is the
 * worker's to know, as first_row + index); build_request puts the
 * identifier in front of each stored entry.
 *
 * Property values are strings.  Each column's JSON encoding is turned into
 * a list of them: a string as it is, a number or boolean as written, an
 * array as one value per element (nested arrays flattened, null elements
 * dropped), an object as its JSON text.  A NULL column sends an empty list,
 * which with strategy SET clears the property: the remote side then mirrors
 * the source.  A property to leave alone is a column left out of the source.
 *
 * Like every dialect this file knows nothing of tables or the worker loop;
 * it allocates in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>

#include "miscadmin.h"
#include "utils/jsonb.h"

#include "bulkops.h"
#include "dialect.h"

/* the API's limit on entries per request, and so on rows per batch */
#define BLUECONIC_MAX_ENTRIES	1000

#define BLUECONIC_API_PATH		"/rest/v2/"
#define BLUECONIC_TOKEN_PATH	"/rest/v2/oauth/token"

/*
 * How an answer's state maps to a row's outcome.  The last three are only
 * documented for profiles; an unlisted state fails its row, saying so.
 */
typedef struct BlueconicState
{
	const char *name;
	BulkopsRowStatus status;
	int			created;
	const char *message;		/* failures: %s is "group" or "profile" */
} BlueconicState;

static const BlueconicState blueconic_states[] = {
	{"CREATED", BULKOPS_ROW_SUCCEEDED, 1, NULL},
	{"MODIFIED", BULKOPS_ROW_SUCCEEDED, 0, NULL},
	{"UNCHANGED", BULKOPS_ROW_SUCCEEDED, 0, NULL},
	{"DELETED", BULKOPS_ROW_SUCCEEDED, -1, NULL},
	{"SKIPPED", BULKOPS_ROW_FAILED, -1,
	"no such %s, and strategy UPDATE does not create one (option \"create_missing\" does)"},
	{"NOTFOUND", BULKOPS_ROW_FAILED, -1, "no such %s"},
	{"UNKNOWN_GROUP_TYPE", BULKOPS_ROW_FAILED, -1,
	"the %s's group type is not known to BlueConic"},
	{"RESTRICTION_MISMATCH", BULKOPS_ROW_FAILED, -1,
	"the %s does not match the restrictions of this request"},
	{"CONSENT_MISMATCH", BULKOPS_ROW_FAILED, -1,
	"the %s's consent does not allow this change"},
	{"UNAUTHORIZED", BULKOPS_ROW_FAILED, -1,
	"the client may not change this %s"},
};

#define BLUECONIC_NSTATES		lengthof(blueconic_states)

typedef struct BlueconicEncodeState
{
	char	   *head;			/* "groupId": or "profileId": */
	char	   *tail;			/* ,"groupTypeId":..,"strategy":".." */
	char	  **prop_head;		/* per column: {"id":"<name>","values": */
	char	  **prop_tail;		/* per column: ],"strategy":"<strategy>"} */
	StringInfo	scratch;		/* one column's JSON encoding */
} BlueconicEncodeState;

/* What a job may do with each option (see BulkopsJobRule), and why. */
static const BulkopsOptionDef blueconic_options[] = {
	/* which groups the target's rows are */
	{"group_type_id", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	/* creates what does not exist yet, where UPDATE only changes */
	{"create_missing", BULKOPS_OPT_BOOL, 0, 0, BULKOPS_JOB_TARGET_OR_SAFE,
	.dflt = 0},
	/* a LOG line and a NOTIFY per answer, about the job's own rows */
	{"feedback", BULKOPS_OPT_BOOL, 0, 0, BULKOPS_JOB_ANY,.dflt = 0},
	/* how each column changes its property: no more than sending values */
	{"property_strategies", BULKOPS_OPT_OBJECT, 0, 0, BULKOPS_JOB_ANY},
	{NULL}
};

/*
 * The property strategies a column may be given (SET the default).  Each
 * leaves the same state however often an entry is applied, which retries
 * and resending after a crash rely on; INCREMENT would not (it would count
 * a row twice), so it is refused.
 */
static const char *const blueconic_prop_strategies[] = {
	"SET", "ADD", "SET_IF_EMPTY", "REMOVE"
};

/* ---- options, checked at create_target, alter_target and enqueue ---- */

static bool
is_groups(const char *resource)
{
	return strcmp(resource, "groups") == 0;
}

/* Option property_strategies: {"column": "ADD", ...}. */
static void
check_strategies(Jsonb *options)
{
	JsonbValue *opt = bulkops_jsonb_get(options, "property_strategies");
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (opt == NULL)
		return;
	it = JsonbIteratorInit(opt->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *column;
		char	   *strategy;
		int			i;

		if (tok != WJB_KEY)
			continue;
		column = pnstrdup(v.val.string.val, v.val.string.len);
		(void) JsonbIteratorNext(&it, &v, true);
		strategy = v.type == jbvString
			? pnstrdup(v.val.string.val, v.val.string.len) : "";
		for (i = 0; i < lengthof(blueconic_prop_strategies); i++)
			if (strcmp(strategy, blueconic_prop_strategies[i]) == 0)
				break;
		if (strcmp(strategy, "INCREMENT") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("blueconic property strategy INCREMENT is not supported (column \"%s\")",
							column),
					 errdetail("A request whose answer is lost, or that a crash interrupts, is sent again, and INCREMENT would then count its rows twice."),
					 errhint("Compute the total in the source query and send it with SET.")));
		if (i == lengthof(blueconic_prop_strategies))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("blueconic option \"property_strategies\" gives column \"%s\" an unknown strategy",
							column),
					 errhint("Use SET, ADD, SET_IF_EMPTY or REMOVE.")));
	}
}

static void
check_target(const char *resource, Jsonb *options)
{
	char	   *type = bulkops_opt_string(options, "group_type_id", NULL);

	if (resource == NULL ||
		(strcmp(resource, "groups") != 0 && strcmp(resource, "profiles") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("blueconic resource must be \"groups\" or \"profiles\""),
				 errdetail("Rows are written with PUT /rest/v2/groups or PUT /rest/v2/profiles.")));
	if (is_groups(resource) && (type == NULL || type[0] == '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("blueconic targets of resource \"groups\" need option \"group_type_id\""),
				 errdetail("Every group entry names the group type it belongs to."),
				 errhint("Add it to the target's options, e.g. options => '{\"group_type_id\": \"company\"}'.")));
	if (!is_groups(resource) && type != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("blueconic option \"group_type_id\" applies to resource \"groups\" only")));
	if (type != NULL)
		bulkops_check_identifier("blueconic", "group_type_id", type);
	check_strategies(options);
}

static void
blueconic_validate_target(const char *url, const char *resource, Jsonb *options)
{
	check_target(resource, options);
}

/* ---- encoding, at enqueue ---- */

static const char *
strategy_name(BulkopsOp op, Jsonb *options)
{
	if (op == BULKOPS_OP_DELETE)
		return "DELETE";
	return bulkops_opt_bool(options, "create_missing", false) ? "UPSERT" : "UPDATE";
}

/*
 * Every column property_strategies names must be a property the job sends:
 * a misspelt name would otherwise quietly leave its column on SET.
 */
static void
check_strategy_columns(BulkopsEncodeTarget *target, BulkopsEncoder *enc,
					   Jsonb *strategies)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (strategies == NULL)
		return;
	it = JsonbIteratorInit(&strategies->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *column;
		int			i;

		if (tok != WJB_KEY)
			continue;
		column = pnstrdup(v.val.string.val, v.val.string.len);
		for (i = 0; i < bulkops_encoder_natts(enc); i++)
		{
			const char *name = bulkops_encoder_attname(enc, i);

			if (name != NULL && i != target->key_att && strcmp(name, column) == 0)
				break;
		}
		if (i == bulkops_encoder_natts(enc) && target->op != BULKOPS_OP_DELETE)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("blueconic option \"property_strategies\" names \"%s\", which is not a property the source sends",
							column),
					 errhint("Name a source column other than the key.")));
	}
}

static void
blueconic_begin_encode(BulkopsEncodeTarget *target, BulkopsEncoder *enc)
{
	BlueconicEncodeState *st = palloc0(sizeof(BlueconicEncodeState));
	int			natts = bulkops_encoder_natts(enc);
	JsonbValue *opt = bulkops_jsonb_get(target->options, "property_strategies");
	Jsonb	   *strategies = opt ? JsonbValueToJsonb(opt) : NULL;
	StringInfoData buf;
	int			i;

	st->head = is_groups(target->resource) ? "\"groupId\":" : "\"profileId\":";

	initStringInfo(&buf);
	if (is_groups(target->resource))
	{
		char	   *type = bulkops_opt_string(target->options, "group_type_id", NULL);

		appendStringInfoString(&buf, ",\"groupTypeId\":");
		bulkops_json_string(&buf, type, strlen(type));
	}
	appendStringInfo(&buf, ",\"strategy\":\"%s\"",
					 strategy_name(target->op, target->options));
	st->tail = buf.data;

	st->prop_head = palloc0(sizeof(char *) * Max(natts, 1));
	st->prop_tail = palloc0(sizeof(char *) * Max(natts, 1));
	for (i = 0; i < natts; i++)
	{
		const char *name = bulkops_encoder_attname(enc, i);

		if (name == NULL || i == target->key_att)
			continue;
		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"id\":");
		bulkops_json_string(&buf, name, strlen(name));
		appendStringInfoString(&buf, ",\"values\":");
		st->prop_head[i] = buf.data;
		st->prop_tail[i] = psprintf("],\"strategy\":\"%s\"}",
									bulkops_opt_string(strategies, name, "SET"));
	}
	check_strategy_columns(target, enc, strategies);
	st->scratch = makeStringInfo();
	target->private = st;
}

/* The end of the JSON string token starting at p (its opening quote). */
static const char *
string_end(const char *p, const char *end)
{
	for (p++; p < end && *p != '"'; p++)
		if (*p == '\\')
			p++;
	return Min(p + 1, end);
}

/* The end of the JSON object or array starting at p. */
static const char *
container_end(const char *p, const char *end)
{
	int			depth = 0;

	while (p < end)
	{
		if (*p == '"')
		{
			p = string_end(p, end);
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && --depth == 0)
			return p + 1;
		p++;
	}
	return end;
}

static const char *
skip_space(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/*
 * Append the values the JSON value at p stands for, each as a JSON string
 * preceded by a comma unless it is the list's first; returns the end of the
 * value.  The input is valid JSON: bulkops' own encoding, or the text of a
 * json column, which json_in checked.
 */
static const char *
append_values(StringInfo out, const char *p, const char *end, bool *first)
{
	const char *q;

	p = skip_space(p, end);
	if (p >= end)
		return p;
	if (*p == '[')
	{
		check_stack_depth();
		p = skip_space(p + 1, end);
		while (p < end && *p != ']')
		{
			p = append_values(out, p, end, first);
			p = skip_space(p, end);
			if (p < end && *p == ',')
				p = skip_space(p + 1, end);
		}
		return Min(p + 1, end);
	}
	if (*p == 'n')
		return Min(p + 4, end); /* null: no value */

	if (!*first)
		appendStringInfoChar(out, ',');
	*first = false;
	if (*p == '"')
	{
		q = string_end(p, end);
		appendBinaryStringInfo(out, p, q - p);
	}
	else if (*p == '{')
	{
		q = container_end(p, end);
		bulkops_json_string(out, p, q - p);
	}
	else
	{
		/* a number, true or false: no character needs escaping */
		for (q = p; q < end && !strchr(",]} \t\n\r", *q); q++)
			;
		appendStringInfoChar(out, '"');
		appendBinaryStringInfo(out, p, q - p);
		appendStringInfoChar(out, '"');
	}
	return q;
}

static void
blueconic_encode_row(BulkopsEncodeTarget *target, BulkopsEncoder *enc,
					 Datum *values, bool *nulls, StringInfo out)
{
	BlueconicEncodeState *st = target->private;
	int			natts = bulkops_encoder_natts(enc);
	bool		first_prop = true;
	int			i;

	/* build_request relies on the entry starting with '{' */
	appendStringInfoChar(out, '{');
	appendStringInfoString(out, st->head);
	bulkops_json_string(out, target->key_text, strlen(target->key_text));
	appendStringInfoString(out, st->tail);
	if (target->op != BULKOPS_OP_DELETE)
	{
		appendStringInfoString(out, ",\"properties\":[");
		for (i = 0; i < natts; i++)
		{
			bool		first = true;

			if (st->prop_head[i] == NULL)
				continue;
			if (!first_prop)
				appendStringInfoChar(out, ',');
			first_prop = false;
			appendStringInfoString(out, st->prop_head[i]);
			appendStringInfoChar(out, '[');
			if (!nulls[i])
			{
				resetStringInfo(st->scratch);
				bulkops_encode_value(enc, i, values[i], false, st->scratch);
				append_values(out, st->scratch->data,
							  st->scratch->data + st->scratch->len, &first);
			}
			appendStringInfoString(out, st->prop_tail[i]);
		}
		appendStringInfoChar(out, ']');
	}
	appendStringInfoChar(out, '}');
}

/* ---- the request ---- */

static void
blueconic_build_request(const BulkopsBatch *batch, BulkopsRequest *req)
{
	bool		first = true;
	int			i;

	req->method = "PUT";
	req->url = psprintf("%s" BLUECONIC_API_PATH "%s", batch->url, batch->resource);
	req->content_type = "application/json";
	req->body = makeStringInfo();
	appendStringInfoChar(req->body, '[');
	for (i = 0; i < batch->nrows; i++)
	{
		const char *row = batch->body + batch->offsets[i];
		int			len = batch->offsets[i + 1] - batch->offsets[i];

		if (!batch->pending[i])
			continue;
		if (len < 2 || row[0] != '{')
			elog(ERROR, "blueconic: row %d of batch %d is not encoded by this dialect",
				 i, batch->batch_no);
		if (!first)
			appendStringInfoChar(req->body, ',');
		first = false;
		appendStringInfo(req->body, "{\"identifier\":\"" INT64_FORMAT "\",",
						 batch->first_row + i);
		appendBinaryStringInfo(req->body, row + 1, len - 1);
	}
	appendStringInfoChar(req->body, ']');
}

/* ---- the answer ---- */

/* What one answer says, as it is read. */
typedef struct BlueconicAnswer
{
	const BulkopsBatch *batch;
	bool	   *answered;		/* per row */
	int			counts[BLUECONIC_NSTATES + 1];	/* the last: other states */
	int			nanswered;
} BlueconicAnswer;

/* The batch row an element's identifier names, or -1. */
static int
element_row(BlueconicAnswer *a, JsonbContainer *el)
{
	char	   *ident = bulkops_jtext(bulkops_jget(el, "identifier"));
	char	   *endp;
	int64		n;
	int64		row;

	if (ident == NULL || ident[0] < '0' || ident[0] > '9')
		return -1;
	errno = 0;
	n = strtoi64(ident, &endp, 10);
	if (errno != 0 || *endp != '\0')
		return -1;
	row = n - a->batch->first_row;
	if (row < 0 || row >= a->batch->nrows || !a->batch->pending[row] ||
		a->answered[row])
		return -1;
	return (int) row;
}

/* "; field: message, message" for each field of validationErrors */
static void
append_validation_errors(StringInfo buf, JsonbContainer *errs)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			depth = 0;
	int			nmsgs = 0;

	if (errs == NULL || !JsonContainerIsObject(errs))
		return;
	it = JsonbIteratorInit(errs);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY)
			depth++;
		else if (tok == WJB_END_OBJECT || tok == WJB_END_ARRAY)
			depth--;
		else if (tok == WJB_KEY && depth == 1)
		{
			appendStringInfo(buf, "; %.*s:", v.val.string.len, v.val.string.val);
			nmsgs = 0;
		}
		else if (v.type == jbvString)
			appendStringInfo(buf, "%s %.*s", nmsgs++ ? "," : "",
							 v.val.string.len, v.val.string.val);
	}
}

static void
read_element(BlueconicAnswer *a, JsonbContainer *el, BulkopsResult *result)
{
	const BulkopsBatch *batch = a->batch;
	const char *noun = is_groups(batch->resource) ? "group" : "profile";
	int			row = element_row(a, el);
	char	   *state;
	BulkopsOutcome *o;
	int			s;

	if (row < 0)
		return;					/* a stranger or a repeat */
	a->answered[row] = true;
	a->nanswered++;
	state = bulkops_jtext(bulkops_jget(el, "state"));
	for (s = 0; s < BLUECONIC_NSTATES; s++)
		if (state != NULL && strcmp(state, blueconic_states[s].name) == 0)
			break;
	a->counts[s]++;
	if (s == BLUECONIC_NSTATES)
	{
		o = bulkops_outcome(result, row, BULKOPS_ROW_FAILED);
		o->error_code = state;
		o->error_message = state
			? psprintf("the answer gave this entry the unrecognized state \"%s\"", state)
			: pstrdup("the answer gave this entry no state");
		return;
	}
	o = bulkops_outcome(result, row, blueconic_states[s].status);
	o->created = blueconic_states[s].created;
	o->remote_id = bulkops_jtext(bulkops_jget(el, is_groups(batch->resource)
											  ? "groupId" : "profileId"));
	if (blueconic_states[s].status == BULKOPS_ROW_FAILED)
	{
		char	   *type = bulkops_jtext(bulkops_jget(el, "groupTypeId"));
		StringInfoData msg;

		initStringInfo(&msg);
		if (strcmp(state, "UNKNOWN_GROUP_TYPE") == 0 && type != NULL)
			appendStringInfo(&msg, "group type \"%s\" is not known to BlueConic", type);
		else
			appendStringInfo(&msg, blueconic_states[s].message, noun);
		append_validation_errors(&msg,
								 bulkops_jcontainer(bulkops_jget(el, "validationErrors")));
		o->error_code = state;
		o->error_message = msg.data;
	}
}

/*
 * The batch's counts by state, this answer's added to those recorded for
 * the batch before (a batch resent after a 413 has several answers).
 */
static char *
counts_json(BlueconicAnswer *a)
{
	Jsonb	   *before = a->batch->progress
	? bulkops_json_try_parse(a->batch->progress, strlen(a->batch->progress))
	: NULL;
	StringInfoData buf;
	int			s;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (s = 0; s <= BLUECONIC_NSTATES; s++)
	{
		const char *name = s < BLUECONIC_NSTATES ? blueconic_states[s].name : "OTHER";
		char	   *prev = before ? bulkops_jtext(bulkops_jget(&before->root, name)) : NULL;
		int			total = a->counts[s] + (prev ? atoi(prev) : 0);

		if (total > 0)
			appendStringInfo(&buf, "%s\"%s\":%d", buf.len > 1 ? "," : "",
							 name, total);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * Option "feedback": this answer's counts as a NOTIFY payload (the SDK's
 * per-request callback), {"job_id", "batch_no", "status", "entries",
 * "counts": {state: n}}, a few hundred bytes at most.
 */
static char *
feedback_payload(BlueconicAnswer *a, long status)
{
	StringInfoData buf;
	int			s;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"job_id\":" INT64_FORMAT ",\"batch_no\":%d,\"status\":%ld,"
					 "\"entries\":%d,\"counts\":{",
					 a->batch->job_id, a->batch->batch_no, status, a->nanswered);
	for (s = 0; s <= BLUECONIC_NSTATES; s++)
		if (a->counts[s] > 0)
		{
			appendStringInfo(&buf, "%s\"%s\":%d", first ? "" : ",",
							 s < BLUECONIC_NSTATES ? blueconic_states[s].name : "OTHER",
							 a->counts[s]);
			first = false;
		}
	appendStringInfoString(&buf, "}}");
	return buf.data;
}

/* Option "feedback": this answer's counts in the server log. */
static void
log_counts(BlueconicAnswer *a, long status)
{
	StringInfoData buf;
	int			s;

	initStringInfo(&buf);
	for (s = 0; s <= BLUECONIC_NSTATES; s++)
		if (a->counts[s] > 0)
			appendStringInfo(&buf, "%s%s %d", buf.len ? ", " : "",
							 s < BLUECONIC_NSTATES ? blueconic_states[s].name : "OTHER",
							 a->counts[s]);
	ereport(LOG,
			(errmsg_plural("bulkops job " INT64_FORMAT " batch %d: blueconic answered %ld for %d entry: %s",
						   "bulkops job " INT64_FORMAT " batch %d: blueconic answered %ld for %d entries: %s",
						   a->nanswered,
						   a->batch->job_id, a->batch->batch_no, status, a->nanswered,
						   buf.len ? buf.data : "no states")));
}

/*
 * 200, or 413 (more than 1,000 entries: the first 1,000 were applied and
 * are the ones answered).  Rows without an element are unknown, except
 * after a 413 those beyond the first 1,000, which were not applied and are
 * sent again; each 413 settles up to 1,000 rows, so resending ends.
 */
static void
handle_entries(const BulkopsBatch *batch, const BulkopsResponse *resp,
			   JsonbContainer *root, BulkopsResult *result)
{
	BlueconicAnswer a = {0};
	int			n = bulkops_jarray_size(root);
	int			pos = -1;		/* a pending row's place in the request */
	bool		resend = false;
	int			i;

	a.batch = batch;
	a.answered = palloc0(sizeof(bool) * Max(batch->nrows, 1));
	for (i = 0; i < n; i++)
	{
		JsonbContainer *el = bulkops_jcontainer(bulkops_jarray_get(root, i));

		if (el != NULL && JsonContainerIsObject(el))
			read_element(&a, el, result);
	}
	for (i = 0; i < batch->nrows; i++)
	{
		if (!batch->pending[i])
			continue;
		pos++;
		if (a.answered[i])
			continue;
		if (resp->status == 413 && pos >= BLUECONIC_MAX_ENTRIES)
			resend = true;
		else if (resp->status == 413 && batch->npending > BLUECONIC_MAX_ENTRIES)
			bulkops_outcome(result, i, BULKOPS_ROW_UNKNOWN)->error_message =
				psprintf("HTTP 413: the request had more than %d entries; the first %d may have been applied, and the answer did not list this one",
						 BLUECONIC_MAX_ENTRIES, BLUECONIC_MAX_ENTRIES);
		else if (resp->status == 413)
			bulkops_outcome(result, i, BULKOPS_ROW_UNKNOWN)->error_message =
				psprintf("HTTP 413 for a request of %d entries, within the limit of %d: it may have been applied (if its body is too large, lower the option batch_bytes)",
						 batch->npending, BLUECONIC_MAX_ENTRIES);
		else
			bulkops_outcome(result, i, BULKOPS_ROW_UNKNOWN)->error_message =
				pstrdup("the answer had no entry with this row's identifier");
	}

	if (bulkops_opt_bool(batch->options, "feedback", false))
	{
		result->progress = counts_json(&a);
		result->notify = feedback_payload(&a, resp->status);
		log_counts(&a, resp->status);
	}
	if (resend)
	{
		result->next = BULKOPS_NEXT_RESUBMIT;
		result->counts_attempt = false;
		result->error = psprintf("HTTP 413: more than %d entries in one request; the entries beyond the first %d were not applied and are sent again",
								 BLUECONIC_MAX_ENTRIES, BLUECONIC_MAX_ENTRIES);
	}
	else
		result->next = BULKOPS_NEXT_DONE;
}

/* The message of an error answer {"code", "message", "errors": [...]}. */
static char *
error_text(const BulkopsResponse *resp, JsonbContainer *root)
{
	char	   *msg = bulkops_jtext(bulkops_jget(root, "message"));
	JsonbContainer *errs = bulkops_jcontainer(bulkops_jget(root, "errors"));
	int			n = bulkops_jarray_size(errs);
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfo(&buf, "HTTP %ld", resp->status);
	if (msg)
		appendStringInfo(&buf, ": %s", msg);
	for (i = 0; i < n; i++)
	{
		JsonbContainer *e = bulkops_jcontainer(bulkops_jarray_get(errs, i));
		char	   *field = bulkops_jtext(bulkops_jget(e, "field"));
		char	   *emsg = bulkops_jtext(bulkops_jget(e, "message"));

		if (emsg)
			appendStringInfo(&buf, "%s%s%s%s", i == 0 && msg == NULL ? ": " : "; ",
							 field ? field : "", field ? ": " : "", emsg);
	}
	return buf.data;
}

static void
blueconic_handle_response(const BulkopsBatch *batch, const BulkopsResponse *resp,
						  BulkopsResult *result)
{
	Jsonb	   *jb = bulkops_json_try_parse(resp->body, resp->len);
	JsonbContainer *root = jb ? &jb->root : NULL;
	long		s = resp->status;

	if (s == 200 || s == 413)
	{
		if (bulkops_jarray_size(root) >= 0)
		{
			handle_entries(batch, resp, root, result);
			return;
		}
		if (s == 200)
		{
			/* it may have been applied; repeating an upsert or delete is safe */
			result->next = BULKOPS_NEXT_RETRY;
			result->error = pstrdup(jb ? "the 200 answer is not a JSON array"
									: "malformed JSON in an HTTP 200 answer");
			return;
		}
		/* a 413 listing nothing: the first 1,000 are in doubt */
		handle_entries(batch, resp, NULL, result);
		return;
	}
	if (s >= 400 && s < 500 && s != 408)
	{
		result->next = BULKOPS_NEXT_FAIL;
		result->error = error_text(resp, root);
		return;
	}
	result->next = BULKOPS_NEXT_RETRY;
	result->error = psprintf("unexpected answer to a bulk request (HTTP %ld)", s);
}

const BulkopsDialect bulkops_blueconic_dialect = {
	.name = "blueconic",
	.op_names = {
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
	.options = blueconic_options,
	.max_batch_rows = BLUECONIC_MAX_ENTRIES,
	.token_path = BLUECONIC_TOKEN_PATH,
	.validate_target = blueconic_validate_target,
	.begin_encode = blueconic_begin_encode,
	.encode_row = blueconic_encode_row,
	.build_request = blueconic_build_request,
	.handle_response = blueconic_handle_response,
};
