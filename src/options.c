/*-------------------------------------------------------------------------
 *
 * options.c
 *	  Target and job options: validation against the known names, the rules
 *	  by which a job may only narrow its target's options, merging (job
 *	  over target), and typed reads with the settings as defaults.
 *
 * Options are a flat jsonb object.  Validation happens where the user gives
 * them (create_target, alter_target, bulk_*, bulk_query), so the worker can
 * read them without re-checking.  A job's options are checked against its
 * target's, then merged and checked whole, by the dialect too, before
 * anything is enqueued.  Everything here allocates in CurrentMemoryContext
 * and runs in or out of a transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <limits.h>
#include <math.h>

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "bulkops.h"

/*
 * The options every dialect understands.  Each says what a job may do with
 * it (see BulkopsJobRule) and why, and what a target that does not set it
 * has.
 */
static const BulkopsOptionDef generic_options[] = {
	/* rows per request: what the remote side takes at once, and memory */
	{"batch_size", BULKOPS_OPT_INT, 1, 1000000, BULKOPS_JOB_AT_MOST,
	.dflt = 1,.dflt_setting = &bulkops_batch_size},
	/* bytes per batch: the worker holds concurrency times this */
	{"batch_bytes", BULKOPS_OPT_INT, 1024, 512 * 1024 * 1024, BULKOPS_JOB_AT_MOST,
	.dflt = BULKOPS_DEFAULT_BATCH_BYTES},
	/* requests in flight: the remote side's load, the worker's memory */
	{"concurrency", BULKOPS_OPT_INT, 1, 64, BULKOPS_JOB_AT_MOST,
	.dflt = 1,.dflt_setting = &bulkops_concurrency},
	/* every attempt is one more request to the remote side */
	{"max_attempts", BULKOPS_OPT_INT, 1, 100, BULKOPS_JOB_AT_MOST,
	.dflt = 1,.dflt_setting = &bulkops_max_attempts},
	/* every poll is an API call: a job may only poll less often */
	{"poll_interval", BULKOPS_OPT_REAL, 0.01, 3600, BULKOPS_JOB_AT_LEAST,
	.dflt = 0.001,.dflt_setting = &bulkops_poll_interval_ms},
	/* how long one request may hold a connection and a slot of concurrency */
	{"http_timeout", BULKOPS_OPT_REAL, 0.1, 3600, BULKOPS_JOB_AT_MOST,
	.dflt = 0.001,.dflt_setting = &bulkops_http_timeout_ms},
	/* whom to trust with the target's credentials is its owner's decision */
	{"ca_file", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_TARGET_ONLY},
	/* requests per second; 0, the default, means no limit */
	{"rate_limit", BULKOPS_OPT_REAL, 0, 100000, BULKOPS_JOB_RATE,.dflt = 0},
	/* seconds from the job's creation, up to a year: a job may end sooner */
	{"deadline", BULKOPS_OPT_REAL, 0.01, 366 * 86400, BULKOPS_JOB_AT_MOST,
	.dflt = INFINITY},

	/*
	 * The longest Retry-After honoured, in seconds.  A job may only wait
	 * longer: a shorter cap sends sooner than the remote side asked, and the
	 * wait holds the whole target, every job's requests, so the cap of one
	 * job would cut it for all.  Its deadline bounds how long a job waits.
	 */
	{"retry_after_max", BULKOPS_OPT_INT, 1, BULKOPS_RETRY_AFTER_LIMIT_S,
	BULKOPS_JOB_AT_LEAST,.dflt = BULKOPS_RETRY_AFTER_MAX_DEFAULT},
	{NULL}
};

static const char *
type_name(BulkopsOptionType type)
{
	switch (type)
	{
		case BULKOPS_OPT_INT:
			return "an integer";
		case BULKOPS_OPT_REAL:
			return "a number";
		case BULKOPS_OPT_BOOL:
			return "a boolean";
		case BULKOPS_OPT_STRING:
			return "a string";
		case BULKOPS_OPT_OBJECT:
			return "a JSON object";
		case BULKOPS_OPT_JSON:
			return "a JSON value";
	}
	return "?";
}

static char *
format_number(double d)
{
	if (d == floor(d) && fabs(d) < 1e15)
		return psprintf("%.0f", d);
	return psprintf("%g", d);
}

static const BulkopsOptionDef *
find_def(const BulkopsOptionDef *defs, const char *name)
{
	for (; defs && defs->name; defs++)
		if (strcmp(defs->name, name) == 0)
			return defs;
	return NULL;
}

/*
 * The definition of option name for dialect (which may be NULL): the
 * dialect's own, which may redefine a generic option (its own default),
 * else the generic one; NULL for an unknown name.
 */
static const BulkopsOptionDef *
lookup_def(const BulkopsDialect *dialect, const char *name)
{
	const BulkopsOptionDef *def = NULL;

	if (dialect)
		def = find_def(dialect->options, name);
	return def ? def : find_def(generic_options, name);
}

static char *
known_names(const BulkopsDialect *dialect)
{
	StringInfoData buf;
	const BulkopsOptionDef *d;

	initStringInfo(&buf);
	for (d = generic_options; d->name; d++)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", d->name);
	for (d = dialect ? dialect->options : NULL; d && d->name; d++)
		if (find_def(generic_options, d->name) == NULL)
			appendStringInfo(&buf, ", %s", d->name);
	return buf.data;
}

/*
 * The default of a numeric option for dialect, where neither target nor
 * job sets it (batch_size: the dialect's own, else bulkops.batch_size).
 */
double
bulkops_opt_default(const BulkopsDialect *dialect, const char *name)
{
	const BulkopsOptionDef *def = lookup_def(dialect, name);

	Assert(def != NULL && (def->type == BULKOPS_OPT_INT || def->type == BULKOPS_OPT_REAL));
	return def->dflt_setting ? *def->dflt_setting * def->dflt : def->dflt;
}

static void
check_value(const BulkopsOptionDef *def, JsonbValue *v, const char *what)
{
	bool		ok;
	double		num = 0;

	switch (def->type)
	{
		case BULKOPS_OPT_BOOL:
			ok = (v->type == jbvBool);
			break;
		case BULKOPS_OPT_STRING:
			ok = (v->type == jbvString);
			break;
		case BULKOPS_OPT_OBJECT:
			ok = (v->type == jbvBinary &&
				  JsonContainerIsObject(v->val.binary.data));
			break;
		case BULKOPS_OPT_JSON:
			ok = true;
			break;
		case BULKOPS_OPT_INT:
		case BULKOPS_OPT_REAL:
			ok = (v->type == jbvNumeric);
			if (ok)
			{
				num = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
														 NumericGetDatum(v->val.numeric)));
				if (def->type == BULKOPS_OPT_INT && num != floor(num))
					ok = false;
			}
			break;
		default:
			ok = false;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s option \"%s\" must be %s", what, def->name,
						type_name(def->type))));
	if ((def->type == BULKOPS_OPT_INT || def->type == BULKOPS_OPT_REAL) &&
		(num < def->min || num > def->max))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s option \"%s\" is out of range", what, def->name),
				 errdetail("The value must be between %s and %s.",
						   format_number(def->min), format_number(def->max))));
}

/* A number, or a boolean as 0 or 1, of a value check_value accepted. */
static double
number_of(JsonbValue *v)
{
	if (v->type == jbvBool)
		return v->val.boolean ? 1 : 0;
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											  NumericGetDatum(v->val.numeric)));
}

/*
 * The value def has on a target whose options are target_options: its
 * own (under its alias, if the target uses that name), else the default.  False when it has none (a string or object the
 * target does not set, and that has no default).
 */
static bool
target_value(const BulkopsOptionDef *def, Jsonb *target_options,
			 JsonbValue *out, bool *is_default)
{
	JsonbValue *own = bulkops_jsonb_get(target_options, def->name);

	if (own == NULL && def->alias)
		own = bulkops_jsonb_get(target_options, def->alias);
	*is_default = (own == NULL);
	if (own != NULL)
	{
		*out = *own;
		return true;
	}
	switch (def->type)
	{
		case BULKOPS_OPT_BOOL:
			out->type = jbvBool;
			out->val.boolean = def->dflt != 0;
			return true;
		case BULKOPS_OPT_INT:
		case BULKOPS_OPT_REAL:
			out->type = jbvNumeric;
			out->val.numeric =
				DatumGetNumeric(DirectFunctionCall1(float8_numeric,
													Float8GetDatum(def->dflt_setting
																   ? *def->dflt_setting * def->dflt
																   : def->dflt)));
			return true;
		case BULKOPS_OPT_STRING:
		case BULKOPS_OPT_JSON:
			if (def->dflt_text == NULL)
				return false;
			out->type = jbvString;
			out->val.string.val = (char *) def->dflt_text;
			out->val.string.len = strlen(def->dflt_text);
			return true;
		case BULKOPS_OPT_OBJECT:
			break;
	}
	return false;
}

/* Two values of one option, both of its type, alike? */
static bool
same_value(JsonbValue *a, JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
		case jbvBool:
			return number_of(a) == number_of(b);
		case jbvBinary:
			return compareJsonbContainers(a->val.binary.data, b->val.binary.data) == 0;
		default:
			return false;
	}
}

/* A value as JSON text: quoted and escaped, so a control character shows. */
static char *
show_value(JsonbValue *v)
{
	Jsonb	   *jb = JsonbValueToJsonb(v);

	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

/*
 * Refuse the job's value of def, which does not stay within what target
 * allows: the message says which rule it breaks, the detail what the
 * target has.  Not a bad value (the target could have it), but one only
 * the target's owner may choose: hence insufficient privilege.
 */
static void
refuse_job_value(const char *target, const BulkopsOptionDef *def,
				 JsonbValue *job, Jsonb *target_options)
{
	JsonbValue	tv;
	bool		is_default;
	char	   *detail;

	if (!target_value(def, target_options, &tv, &is_default))
		detail = psprintf("Target \"%s\" does not set it; the job asked for %s.",
						  target, show_value(job));
	else if (is_default)
		detail = psprintf("Target \"%s\" leaves it at the default, %s; the job asked for %s.",
						  target, show_value(&tv), show_value(job));
	else
		detail = psprintf("Target \"%s\" has %s; the job asked for %s.",
						  target, show_value(&tv), show_value(job));

	switch (def->job)
	{
		case BULKOPS_JOB_AT_MOST:
		case BULKOPS_JOB_RATE:
			if (def->job == BULKOPS_JOB_RATE && number_of(job) == 0)
				detail = psprintf("%s  A rate limit of 0 means no limit.", detail);
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("job option \"%s\" cannot exceed the target's limit",
							def->name),
					 errdetail_internal("%s", detail),
					 errhint("The target's owner can raise it with bulkops.alter_target().")));
			break;
		case BULKOPS_JOB_AT_LEAST:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("job option \"%s\" cannot be lower than the target's",
							def->name),
					 errdetail_internal("%s", detail),
					 errhint("A job may only wait longer; the target's owner can lower it with bulkops.alter_target().")));
			break;
		case BULKOPS_JOB_TARGET_OR_SAFE:
			if (def->type == BULKOPS_OPT_BOOL)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("job option \"%s\" cannot be turned on", def->name),
						 errdetail_internal("%s", detail),
						 errhint("A job may turn it off; the target's owner can turn it on with bulkops.alter_target().")));
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("job option \"%s\" can only be the target's value or \"%s\"",
							def->name, def->safe_text),
					 errdetail_internal("%s", detail),
					 errhint("The target's owner can change it with bulkops.alter_target().")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("job option \"%s\" can only be set on a target", def->name),
					 errdetail_internal("%s", detail),
					 errhint("A job may repeat the target's value but not change it; the target's owner can, with bulkops.alter_target().")));
			break;
	}
}

/*
 * Does a job's value of def stay within what its target allows?  The rules
 * are described with BulkopsJobRule, and each option's choice next to its
 * definition.
 */
static void
check_job_value(const char *target, const BulkopsOptionDef *def,
				JsonbValue *job, Jsonb *target_options)
{
	JsonbValue	tv;
	bool		is_default;
	bool		has = target_value(def, target_options, &tv, &is_default);
	bool		ok;

	switch (def->job)
	{
		case BULKOPS_JOB_ANY:
			ok = true;
			break;
		case BULKOPS_JOB_AT_MOST:
			ok = number_of(job) <= number_of(&tv);
			break;
		case BULKOPS_JOB_AT_LEAST:
			ok = number_of(job) >= number_of(&tv);
			break;
		case BULKOPS_JOB_RATE:
			ok = number_of(&tv) == 0 ||
				(number_of(job) > 0 && number_of(job) <= number_of(&tv));
			break;
		case BULKOPS_JOB_TARGET_OR_SAFE:
			ok = (has && same_value(job, &tv)) ||
				(job->type == jbvBool && !job->val.boolean) ||
				(job->type == jbvString && def->safe_text &&
				 strlen(def->safe_text) == job->val.string.len &&
				 memcmp(def->safe_text, job->val.string.val, job->val.string.len) == 0);
			break;
		default:
			ok = has && same_value(job, &tv);
			break;
	}
	if (!ok)
		refuse_job_value(target, def, job, target_options);
}

/*
 * Check every key of options against the generic and the dialect's option
 * tables.  what names the source of the options in messages ("target",
 * "job").  With a target, options are a job's: each must also keep to
 * what that target, whose options are target_options, allows.
 */
static void
check_options(Jsonb *options, const BulkopsDialect *dialect, const char *what,
			  const char *target, Jsonb *target_options)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (options == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s options must be a JSON object", what)));

	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *name;
		const BulkopsOptionDef *def;
		JsonbValue	val;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &val, true);
		def = lookup_def(dialect, name);
		if (def == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized %s option \"%s\"", what, name),
					 errhint("Valid options%s%s are: %s.",
							 dialect ? " for dialect " : "",
							 dialect ? dialect->name : "",
							 known_names(dialect))));
		check_value(def, &val, what);
		if (target != NULL)
			check_job_value(target, def, &val, target_options);
	}
}

static char *
size_text(int64 bytes)
{
	return text_to_cstring(DatumGetTextPP(DirectFunctionCall1(pg_size_pretty,
															  Int64GetDatum(bytes))));
}

/*
 * The worker holds up to concurrency batches of a target at once, each of
 * up to batch_bytes (and at most one row more, no larger than batch_bytes):
 * their product must stay within bulkops.max_target_memory.  options are
 * complete: a target's, or a job's merged over its target's.
 */
static void
check_memory(Jsonb *options, const BulkopsDialect *dialect, const char *what)
{
	int64		bytes = bulkops_opt_int(options, "batch_bytes",
										BULKOPS_DEFAULT_BATCH_BYTES);
	int64		concurrency = bulkops_opt_int(options, "concurrency",
											  bulkops_concurrency);
	int64		limit = (int64) bulkops_max_target_memory_kb * 1024;

	/* a dialect's own cap is what a batch can really take */
	if (dialect && dialect->max_batch_bytes > 0)
		bytes = Min(bytes, dialect->max_batch_bytes);
	if (bytes * concurrency > limit)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s options \"batch_bytes\" and \"concurrency\" exceed bulkops.max_target_memory",
						what),
				 errdetail("The worker would hold " INT64_FORMAT " batches of up to %s each, %s in all; bulkops.max_target_memory is %s.",
						   concurrency, size_text(bytes), size_text(bytes * concurrency),
						   size_text(limit)),
				 errhint("Lower batch_bytes or concurrency, or have a superuser raise bulkops.max_target_memory.")));
}

/*
 * Check a complete set of options, a target's: every key against the
 * generic and the dialect's option tables, and what they make the worker
 * hold.  what names the source of the options in messages ("target").
 */
void
bulkops_validate_options(Jsonb *options, const BulkopsDialect *dialect,
						 const char *what)
{
	check_options(options, dialect, what, NULL, NULL);
	check_memory(options, dialect, what);
}

/*
 * The options of a job on target, whose options are target_options, url
 * and resource: its own job_options merged over the target's.  A job may
 * only narrow its target's options (each option's rule says how), and the
 * merged options must be valid whole, for the dialect too.  Raises ERROR,
 * naming the option, before anything is enqueued.
 */
Jsonb *
bulkops_job_options(const char *target, Jsonb *target_options,
					Jsonb *job_options, const BulkopsDialect *dialect,
					const char *url, const char *resource)
{
	Jsonb	   *merged;

	check_options(job_options, dialect, "job", target, target_options);
	merged = bulkops_merge_options(target_options, job_options);
	check_memory(merged, dialect, "job");
	dialect->validate_target(url, resource, merged);
	return merged;
}

/* over's keys win over base's. */
Jsonb *
bulkops_merge_options(Jsonb *base, Jsonb *over)
{
	if (base == NULL)
		return over;
	if (over == NULL)
		return base;
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
											  JsonbPGetDatum(base),
											  JsonbPGetDatum(over)));
}

JsonbValue *
bulkops_jsonb_get(Jsonb *jb, const char *key)
{
	JsonbValue	k;

	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &k);
}

double
bulkops_opt_real(Jsonb *options, const char *name, double dflt)
{
	JsonbValue *v = bulkops_jsonb_get(options, name);

	if (v == NULL || v->type != jbvNumeric)
		return dflt;
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											  NumericGetDatum(v->val.numeric)));
}

int
bulkops_opt_int(Jsonb *options, const char *name, int dflt)
{
	double		d = bulkops_opt_real(options, name, (double) dflt);

	if (d > INT_MAX)
		return INT_MAX;
	if (d < INT_MIN)
		return INT_MIN;
	return (int) d;
}

bool
bulkops_opt_bool(Jsonb *options, const char *name, bool dflt)
{
	JsonbValue *v = bulkops_jsonb_get(options, name);

	if (v == NULL || v->type != jbvBool)
		return dflt;
	return v->val.boolean;
}

char *
bulkops_opt_string(Jsonb *options, const char *name, const char *dflt)
{
	JsonbValue *v = bulkops_jsonb_get(options, name);

	if (v == NULL || v->type != jbvString)
		return dflt ? pstrdup(dflt) : NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}
