/*-------------------------------------------------------------------------
 *
 * options.c
 *	  Target and job options: validation against the known names, merging
 *	  (job over target), and typed reads with the settings as defaults.
 *
 * Options are a flat jsonb object.  Validation happens where the user gives
 * them (create_target, alter_target, bulk_*), so the worker can read them
 * without re-checking.  Everything here allocates in CurrentMemoryContext
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

/* The options every dialect understands. */
static const BulkopsOptionDef generic_options[] = {
	{"batch_size", BULKOPS_OPT_INT, 1, 1000000},
	{"batch_bytes", BULKOPS_OPT_INT, 1024, 512 * 1024 * 1024},
	{"concurrency", BULKOPS_OPT_INT, 1, 64},
	{"max_attempts", BULKOPS_OPT_INT, 1, 100},
	{"poll_interval", BULKOPS_OPT_REAL, 0.01, 3600},
	{"http_timeout", BULKOPS_OPT_REAL, 0.1, 3600},
	{"ca_file", BULKOPS_OPT_STRING, 0, 0},
	{"rate_limit", BULKOPS_OPT_REAL, 0, 100000},
	/* seconds from the job's creation; up to a year */
	{"deadline", BULKOPS_OPT_REAL, 0.01, 366 * 86400},
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

static char *
known_names(const BulkopsDialect *dialect)
{
	StringInfoData buf;
	const BulkopsOptionDef *d;

	initStringInfo(&buf);
	for (d = generic_options; d->name; d++)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", d->name);
	for (d = dialect ? dialect->options : NULL; d && d->name; d++)
		appendStringInfo(&buf, ", %s", d->name);
	return buf.data;
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

/*
 * Check every key of options against the generic and the dialect's option
 * tables.  what names the source of the options in messages ("target",
 * "job").
 */
void
bulkops_validate_options(Jsonb *options, const BulkopsDialect *dialect,
						 const char *what)
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
		def = find_def(generic_options, name);
		if (def == NULL && dialect)
			def = find_def(dialect->options, name);
		if (def == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized %s option \"%s\"", what, name),
					 errhint("Valid options%s%s are: %s.",
							 dialect ? " for dialect " : "",
							 dialect ? dialect->name : "",
							 known_names(dialect))));
		check_value(def, &val, what);

		/*
		 * Whom to trust with the target's credentials is the target
		 * manager's decision, not that of whoever pushes rows to it.
		 */
		if (strcmp(def->name, "ca_file") == 0 && strcmp(what, "target") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("option \"ca_file\" can only be set on a target")));
	}
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
