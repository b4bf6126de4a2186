/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The list of dialects: those built in, those other preloaded libraries
 *	  register, looking one up, and bulkops.dialects().
 *
 * Adding a dialect to bulkops is its file in src/dialects/ and one line in
 * BUILTIN_DIALECTS below; its mock module and regress suite are found by
 * name (docs/adding-a-dialect.md).  Tests and tools learn the list from
 * bulkops.dialects().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "bulkops.h"
#include "dialect.h"

/*
 * The dialects built in, one line each, in the order they are listed:
 * DIALECT(x) is the BulkopsDialect bulkops_x_dialect defined in
 * src/dialects/x.c.  Nothing else names them.  (Every line ends with a
 * backslash, so that adding one changes no other.)
 */
#define BUILTIN_DIALECTS \
	DIALECT(clinia) \
	DIALECT(sap_fsm) \
	DIALECT(packagex) \
	DIALECT(blueconic) \
	DIALECT(salesforce) \
	DIALECT(http_json) \
	/* end of BUILTIN_DIALECTS */

#define DIALECT(x) extern const BulkopsDialect bulkops_##x##_dialect;
BUILTIN_DIALECTS
#undef DIALECT

#define DIALECT(x) &bulkops_##x##_dialect,
static const BulkopsDialect *const dialects[] = {
	BUILTIN_DIALECTS
	NULL
};
#undef DIALECT

/* dialects that other preloaded libraries add (bulkops_register_dialect) */
#define MAX_EXTRA_DIALECTS 8
static const BulkopsDialect *extra_dialects[MAX_EXTRA_DIALECTS + 1];
static int	n_extra_dialects = 0;

/*
 * Add a dialect from another library's _PG_init.  Only while
 * shared_preload_libraries load (after bulkops), so that the postmaster
 * and every process it starts know the same dialects.
 */
void
bulkops_register_dialect(const BulkopsDialect *dialect)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bulkops dialect \"%s\" must be loaded via shared_preload_libraries",
						dialect->name)));
	if (n_extra_dialects >= MAX_EXTRA_DIALECTS ||
		bulkops_find_dialect(dialect->name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("cannot register bulkops dialect \"%s\"", dialect->name),
				 errdetail("A dialect of that name exists, or there are %d already.",
						   MAX_EXTRA_DIALECTS)));
	extra_dialects[n_extra_dialects++] = dialect;
}

const BulkopsDialect *
bulkops_find_dialect(const char *name, bool missing_ok)
{
	int			i;
	StringInfoData known;

	for (i = 0; dialects[i]; i++)
		if (strcmp(dialects[i]->name, name) == 0)
			return dialects[i];
	for (i = 0; i < n_extra_dialects; i++)
		if (strcmp(extra_dialects[i]->name, name) == 0)
			return extra_dialects[i];
	if (missing_ok)
		return NULL;

	initStringInfo(&known);
	for (i = 0; dialects[i]; i++)
		appendStringInfo(&known, "%s%s", i ? ", " : "", dialects[i]->name);
	for (i = 0; i < n_extra_dialects; i++)
		appendStringInfo(&known, ", %s", extra_dialects[i]->name);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized dialect \"%s\"", name),
			 errhint("Known dialects are: %s.", known.data)));
	return NULL;				/* keep compiler quiet */
}

/*
 * The i-th dialect, or NULL past the last: for code that must cover every
 * dialect, such as bulkops.dialects() and the fuzzing harness (test/fuzz/).
 */
const BulkopsDialect *
bulkops_dialect_at(int i)
{
	int			nbuiltin = lengthof(dialects) - 1;

	if (i < 0 || i >= nbuiltin + n_extra_dialects)
		return NULL;
	return i < nbuiltin ? dialects[i] : extra_dialects[i - nbuiltin];
}

/* The names of the operations d has, of those where flags is true if given. */
static Datum
op_names_array(const BulkopsDialect *d, const bool *flags)
{
	Datum		names[BULKOPS_NUM_OPS];
	int			n = 0;
	int			op;

	for (op = 0; op < BULKOPS_NUM_OPS; op++)
		if (d->op_names[op] != NULL && (flags == NULL || flags[op]))
			names[n++] = CStringGetTextDatum(bulkops_op_name((BulkopsOp) op));
	return PointerGetDatum(construct_array(names, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/* The names of d's own options (every dialect also takes the generic ones). */
static Datum
option_names_array(const BulkopsDialect *d)
{
	const BulkopsOptionDef *def;
	Datum	   *names;
	int			n = 0;

	for (def = d->options; def && def->name; def++)
		n++;
	names = palloc(sizeof(Datum) * Max(n, 1));
	n = 0;
	for (def = d->options; def && def->name; def++)
		names[n++] = CStringGetTextDatum(def->name);
	return PointerGetDatum(construct_array(names, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/*
 * bulkops.dialects(): every dialect of this server, built in or registered
 * by another preloaded library, with what a test or a tool needs to drive
 * it without keeping a list of its own: its operations, those that are
 * safe to repeat and those that need a key, its own options, its limits
 * per request (NULL: none of its own) and whether it can abort a remote
 * task.
 */
PG_FUNCTION_INFO_V1(bulkops_dialects_sql);
Datum
bulkops_dialects_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const BulkopsDialect *d;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; (d = bulkops_dialect_at(i)) != NULL; i++)
	{
		Datum		values[8];
		bool		nulls[8] = {false};

		values[0] = CStringGetTextDatum(d->name);
		values[1] = op_names_array(d, NULL);
		values[2] = op_names_array(d, d->idempotent);
		values[3] = op_names_array(d, d->needs_key);
		values[4] = option_names_array(d);
		values[5] = Int32GetDatum(d->max_batch_rows);
		nulls[5] = d->max_batch_rows <= 0;
		values[6] = Int32GetDatum(d->max_batch_bytes);
		nulls[6] = d->max_batch_bytes <= 0;
		values[7] = BoolGetDatum(d->build_abort != NULL);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
