/*-------------------------------------------------------------------------
 *
 * receipts.c
 *	  A batch's receipts, kept with the batch in bulkops.batches as compact
 *	  arrays, and bulkops._receipts(), which the view bulkops.receipts
 *	  unnests them with.
 *
 * A receipt used to be a row of its own, with two index entries: most of
 * the worker's time and of the disk, WAL and retention a job cost went
 * there.  Now a batch row holds its rows' receipts, written in the
 * transaction that stores each answer:
 *
 *	 outcomes		 bytea, one byte per row: 0 while the row has no receipt,
 *					 else its status (1 succeeded, 2 failed, 3 cancelled,
 *					 4 unknown) | 8 created | 16 updated (created false) | 32
 *					 its remote id is its key
 *	 answer_of		 bytea, two bytes per row (little-endian): the number of
 *					 the answer that settled it
 *	 remote_ids		 text[]: NULL, or one per row, NULL where there is none or
 *					 where it is the key
 *	 error_codes,	 text[]: NULL, or one per row, used where the row's answer
 *	 error_messages	 gives none for all its rows
 *	 answer_http, answer_attempts, answer_at, answer_codes, answer_messages
 *					 one entry per answer: its HTTP status (NULL: none), the
 *					 batch's attempts then, when, and the error code and
 *					 message all its rows share (NULL: none shared)
 *	 remote_versions text[]: NULL, or one per row: the version the remote
 *					 object has after the row's write, where the answer
 *					 gave one (SAP FSM's lastChanged)
 *	 error_fields	 text[]: NULL, or one per row: the fields its error is
 *					 about, separated by commas (shown as a text[])
 *
 * A row has exactly one receipt by construction: one slot per row, and a
 * slot is written only while it is 0.  Keys stay in the batch's own keys
 * column, written once at enqueue.
 *
 * Everything here allocates in the current memory context and runs in or
 * out of a transaction, but for bulkops_receipts_sql, a set-returning SQL
 * function.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "bulkops.h"
#include "receipts.h"

#define FLAG_STATUS_MASK	0x07
#define FLAG_CREATED		0x08
#define FLAG_UPDATED		0x10
#define FLAG_REMOTE_IS_KEY	0x20

#define MAX_ANSWERS			UINT16_MAX

/* by BulkopsRowStatus: a receipt's status as bulkops.receipts shows it */
const char *const bulkops_receipt_status_names[BULKOPS_RECEIPT_NSTATUSES] = {
	"succeeded", "failed", "cancelled", "unknown"
};

const char *const bulkops_receipt_columns[BULKOPS_RECEIPT_NCOLUMNS] = {
	"outcomes", "answer_of", "remote_ids", "error_codes", "error_messages",
	"answer_http", "answer_attempts", "answer_at", "answer_codes",
	"answer_messages", "remote_versions", "error_fields"
};
const Oid	bulkops_receipt_types[BULKOPS_RECEIPT_NCOLUMNS] = {
	BYTEAOID, BYTEAOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	INT4ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID
};

static void grow_answers(BulkopsReceiptSet *set, int max);

BulkopsReceiptSet *
bulkops_receipts_new(int nrows)
{
	BulkopsReceiptSet *set = palloc0(sizeof(BulkopsReceiptSet));

	set->nrows = nrows;
	set->flags = palloc0(Max(nrows, 1));
	set->answer_of = palloc0(sizeof(uint16) * Max(nrows, 1));
	return set;
}

bool
bulkops_receipts_pending(const BulkopsReceiptSet *set, int row)
{
	return set->flags[row] == 0;
}

/* Has every row a receipt that says it succeeded? */
bool
bulkops_receipts_all_succeeded(const BulkopsReceiptSet *set)
{
	int			i;

	for (i = 0; i < set->nrows; i++)
		if ((set->flags[i] & FLAG_STATUS_MASK) != BULKOPS_ROW_SUCCEEDED + 1)
			return false;
	return true;
}

/* The status of row's receipt; false while it has none. */
bool
bulkops_receipts_status(const BulkopsReceiptSet *set, int row,
						BulkopsRowStatus *status)
{
	if (set->flags[row] == 0)
		return false;
	*status = (BulkopsRowStatus) ((set->flags[row] & FLAG_STATUS_MASK) - 1);
	return true;
}

/*
 * The error code of row's receipt, as bulkops.receipts shows it: the row's
 * own, else the one all rows of its answer share; NULL if none.
 */
const char *
bulkops_receipts_error_code(const BulkopsReceiptSet *set, int row)
{
	if (set->flags[row] == 0)
		return NULL;
	if (set->error_codes && set->error_codes[row])
		return set->error_codes[row];
	return set->answer_of[row] < set->nanswers
		? set->answer_codes[set->answer_of[row]] : NULL;
}

/* ---- reading the arrays ---- */

/* A text[] as C strings (NULL elements as NULL), or NULL for SQL NULL. */
static char **
text_array(Datum d, bool isnull, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **out;
	int			i;

	*n = 0;
	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	out = palloc(sizeof(char *) * Max(*n, 1));
	for (i = 0; i < *n; i++)
		out[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	return out;
}

/* An int4[] or timestamptz[] (8-byte) as values, NULL elements as 0. */
static void
fixed_array(Datum d, bool isnull, Oid type, void *out, int max)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	if (isnull)
		return;
	deconstruct_array(DatumGetArrayTypeP(d), type, type == INT4OID ? 4 : 8,
					  type == INT4OID ? true : FLOAT8PASSBYVAL,
					  type == INT4OID ? TYPALIGN_INT : TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	for (i = 0; i < n && i < max; i++)
	{
		if (type == INT4OID)
			((int32 *) out)[i] = nulls[i] ? 0 : DatumGetInt32(elems[i]);
		else
			((TimestampTz *) out)[i] = nulls[i] ? 0 : DatumGetTimestampTz(elems[i]);
	}
}

/* A per-row text[] of the stored length, or NULL. */
static char **
row_texts(Datum d, bool isnull, int nrows)
{
	int			n;
	char	  **a = text_array(d, isnull, &n);

	if (a != NULL && n != nrows)
		elog(ERROR, "bulkops: a receipt array has %d entries for %d rows", n, nrows);
	return a;
}

static int
getcol(TupleDesc desc, const char *name)
{
	int			n = SPI_fnumber(desc, name);

	if (n <= 0)
		elog(ERROR, "bulkops: a batch row without column \"%s\"", name);
	return n;
}

/*
 * The receipts of a batch of nrows rows, from its row in bulkops.batches
 * (the BULKOPS_RECEIPT_COLUMNS, found by name).
 */
BulkopsReceiptSet *
bulkops_receipts_from_row(int nrows, HeapTuple row, TupleDesc desc)
{
	BulkopsReceiptSet *set = bulkops_receipts_new(nrows);
	bool		isnull;
	Datum		d;
	int			n;
	int			i;

	d = SPI_getbinval(row, desc, getcol(desc, "outcomes"), &isnull);
	if (!isnull)
	{
		bytea	   *b = DatumGetByteaPP(d);

		if (VARSIZE_ANY_EXHDR(b) != nrows)
			elog(ERROR, "bulkops: a batch of %d rows has %d outcomes", nrows,
				 (int) VARSIZE_ANY_EXHDR(b));
		memcpy(set->flags, VARDATA_ANY(b), nrows);
	}
	d = SPI_getbinval(row, desc, getcol(desc, "answer_of"), &isnull);
	if (!isnull)
	{
		bytea	   *b = DatumGetByteaPP(d);
		const uint8 *p = (const uint8 *) VARDATA_ANY(b);

		for (i = 0; i < nrows && 2 * i + 1 < VARSIZE_ANY_EXHDR(b); i++)
			set->answer_of[i] = p[2 * i] | (p[2 * i + 1] << 8);
	}
	d = SPI_getbinval(row, desc, getcol(desc, "remote_ids"), &isnull);
	set->remote_ids = row_texts(d, isnull, nrows);
	d = SPI_getbinval(row, desc, getcol(desc, "error_codes"), &isnull);
	set->error_codes = row_texts(d, isnull, nrows);
	d = SPI_getbinval(row, desc, getcol(desc, "error_messages"), &isnull);
	set->error_messages = row_texts(d, isnull, nrows);
	d = SPI_getbinval(row, desc, getcol(desc, "remote_versions"), &isnull);
	set->remote_versions = row_texts(d, isnull, nrows);
	d = SPI_getbinval(row, desc, getcol(desc, "error_fields"), &isnull);
	set->error_fields = row_texts(d, isnull, nrows);

	/* every answer has its attempts; its other arrays may be NULL */
	d = SPI_getbinval(row, desc, getcol(desc, "answer_attempts"), &isnull);
	n = isnull ? 0 : ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(d)),
									ARR_DIMS(DatumGetArrayTypeP(d)));
	if (n > MAX_ANSWERS)
		elog(ERROR, "bulkops: a batch has %d answers", n);
	if (n > 0)
	{
		char	  **codes;
		char	  **messages;
		int			nc,
					nm;

		grow_answers(set, n);
		set->nanswers = n;
		fixed_array(d, isnull, INT4OID, set->answer_attempts, n);
		d = SPI_getbinval(row, desc, getcol(desc, "answer_http"), &isnull);
		fixed_array(d, isnull, INT4OID, set->answer_http, n);
		d = SPI_getbinval(row, desc, getcol(desc, "answer_at"), &isnull);
		fixed_array(d, isnull, TIMESTAMPTZOID, set->answer_at, n);
		d = SPI_getbinval(row, desc, getcol(desc, "answer_codes"), &isnull);
		codes = text_array(d, isnull, &nc);
		d = SPI_getbinval(row, desc, getcol(desc, "answer_messages"), &isnull);
		messages = text_array(d, isnull, &nm);
		for (i = 0; i < n; i++)
		{
			set->answer_codes[i] = i < nc ? codes[i] : NULL;
			set->answer_messages[i] = i < nm ? messages[i] : NULL;
		}
	}
	return set;
}

/* ---- writing ---- */

/* Room for max answers, the ones there are kept. */
static void
grow_answers(BulkopsReceiptSet *set, int max)
{
	if (set->maxanswers == 0)
	{
		set->answer_http = palloc0(sizeof(int32) * max);
		set->answer_attempts = palloc0(sizeof(int32) * max);
		set->answer_at = palloc0(sizeof(TimestampTz) * max);
		set->answer_codes = palloc0(sizeof(char *) * max);
		set->answer_messages = palloc0(sizeof(char *) * max);
	}
	else
	{
		set->answer_http = repalloc(set->answer_http, sizeof(int32) * max);
		set->answer_attempts = repalloc(set->answer_attempts, sizeof(int32) * max);
		set->answer_at = repalloc(set->answer_at, sizeof(TimestampTz) * max);
		set->answer_codes = repalloc(set->answer_codes, sizeof(char *) * max);
		set->answer_messages = repalloc(set->answer_messages, sizeof(char *) * max);
	}
	set->maxanswers = max;
}

static bool
same(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* A new answer; its number. */
static int
add_answer(BulkopsReceiptSet *set, int http_status, int attempts,
		   TimestampTz at, const char *code, const char *message)
{
	int			a = set->nanswers;

	if (a >= MAX_ANSWERS)
		elog(ERROR, "bulkops: a batch cannot take more than %d answers", MAX_ANSWERS);
	if (a >= set->maxanswers)
		grow_answers(set, Max(set->maxanswers * 2, 4));
	set->answer_http[a] = http_status;
	set->answer_attempts[a] = attempts;
	set->answer_at[a] = at;
	set->answer_codes[a] = code ? pstrdup(code) : NULL;
	set->answer_messages[a] = message ? pstrdup(message) : NULL;
	set->nanswers++;
	return a;
}

/* An array of nrows NULLs, to hold what some rows do not share. */
static char **
row_array(BulkopsReceiptSet *set, char **a)
{
	return a ? a : palloc0(sizeof(char *) * Max(set->nrows, 1));
}

/*
 * Give the rows of outcomes that are still pending their receipt (the rest
 * are ignored: a row gets exactly one), as one answer with http_status (0:
 * none), at the batch's attempts.  Their texts are stored cleaned
 * (remote_text.c).  Adds each to counts by status; returns how many rows
 * were settled.
 */
int
bulkops_receipts_add(BulkopsReceiptSet *set, const char *const *keys,
					 BulkopsOutcome **outcomes, int n, int http_status,
					 int attempts, TimestampTz at, int64 *counts)
{
	BulkopsOutcome **take = palloc(sizeof(BulkopsOutcome *) * Max(n, 1));
	bool	   *seen = palloc0(sizeof(bool) * Max(set->nrows, 1));
	int			m = 0;
	bool		shared = true;
	int			answer;
	int			i;

	for (i = 0; i < n; i++)
	{
		BulkopsOutcome *o = outcomes[i];

		/* the same row twice in one answer: its first outcome counts */
		if (o->row < 0 || o->row >= set->nrows || set->flags[o->row] != 0 ||
			seen[o->row])
			continue;
		seen[o->row] = true;
		take[m++] = o;
	}
	pfree(seen);
	if (m == 0)
		return 0;
	for (i = 1; i < m && shared; i++)
		shared = same(take[i]->error_code, take[0]->error_code) &&
			same(take[i]->error_message, take[0]->error_message);
	answer = add_answer(set, http_status, attempts, at,
						shared ? bulkops_clean_text(take[0]->error_code, 8192) : NULL,
						shared ? bulkops_clean_text(take[0]->error_message, 8192) : NULL);

	for (i = 0; i < m; i++)
	{
		BulkopsOutcome *o = take[i];
		int			row = o->row;
		uint8		f = (uint8) (o->status + 1);
		const char *key = keys ? keys[row] : NULL;

		if (o->created == 1)
			f |= FLAG_CREATED;
		else if (o->created == 0)
			f |= FLAG_UPDATED;
		if (o->remote_id != NULL && key != NULL && strcmp(o->remote_id, key) == 0)
			f |= FLAG_REMOTE_IS_KEY;
		else if (o->remote_id != NULL)
		{
			set->remote_ids = row_array(set, set->remote_ids);
			set->remote_ids[row] = pstrdup(bulkops_clean_text(o->remote_id, 8192));
		}
		if (!shared && o->error_code)
		{
			set->error_codes = row_array(set, set->error_codes);
			set->error_codes[row] = pstrdup(bulkops_clean_text(o->error_code, 8192));
		}
		if (!shared && o->error_message)
		{
			set->error_messages = row_array(set, set->error_messages);
			set->error_messages[row] = pstrdup(bulkops_clean_text(o->error_message, 8192));
		}
		if (o->remote_version)
		{
			set->remote_versions = row_array(set, set->remote_versions);
			set->remote_versions[row] = pstrdup(bulkops_clean_text(o->remote_version, 8192));
		}
		if (o->error_fields)
		{
			set->error_fields = row_array(set, set->error_fields);
			set->error_fields[row] = pstrdup(bulkops_clean_text(o->error_fields, 8192));
		}
		set->flags[row] = f;
		set->answer_of[row] = (uint16) answer;
		counts[o->status]++;
	}
	pfree(take);
	return m;
}

/*
 * Settle every row still pending with status and error_message, as one
 * answer without HTTP status (a cancel before the rows were sent).
 */
void
bulkops_receipts_settle_all(BulkopsReceiptSet *set, BulkopsRowStatus status,
							const char *error_message, int attempts,
							TimestampTz at, int64 *counts)
{
	int			answer = -1;
	int			i;

	for (i = 0; i < set->nrows; i++)
	{
		if (set->flags[i] != 0)
			continue;
		if (answer < 0)
			answer = add_answer(set, 0, attempts, at, NULL, error_message);
		set->flags[i] = (uint8) (status + 1);
		set->answer_of[i] = (uint16) answer;
		counts[status]++;
	}
}

static Datum
text_array_datum(char **a, int n, bool *isnull)
{
	Datum	   *elems;
	bool	   *nulls;
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	/* all NULL is stored as NULL */
	for (i = 0; a != NULL && i < n; i++)
		if (a[i] != NULL)
			break;
	*isnull = (a == NULL || i == n);
	if (*isnull)
		return (Datum) 0;
	elems = palloc(sizeof(Datum) * Max(n, 1));
	nulls = palloc(sizeof(bool) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		nulls[i] = (a[i] == NULL);
		elems[i] = a[i] ? CStringGetTextDatum(a[i]) : (Datum) 0;
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * The values of the BULKOPS_RECEIPT_COLUMNS, in their order, for an UPDATE
 * of the batch's row.
 */
void
bulkops_receipts_datums(const BulkopsReceiptSet *set, Datum *values,
						bool *nulls)
{
	bytea	   *outcomes = palloc(VARHDRSZ + set->nrows);
	bytea	   *answer_of = palloc(VARHDRSZ + 2 * set->nrows);
	uint8	   *p = (uint8 *) VARDATA(answer_of);
	Datum	   *http = palloc(sizeof(Datum) * Max(set->nanswers, 1));
	bool	   *http_nulls = palloc(sizeof(bool) * Max(set->nanswers, 1));
	Datum	   *attempts = palloc(sizeof(Datum) * Max(set->nanswers, 1));
	Datum	   *at = palloc(sizeof(Datum) * Max(set->nanswers, 1));
	int			dims[1] = {set->nanswers};
	int			lbs[1] = {1};
	int			i;

	SET_VARSIZE(outcomes, VARHDRSZ + set->nrows);
	memcpy(VARDATA(outcomes), set->flags, set->nrows);
	SET_VARSIZE(answer_of, VARHDRSZ + 2 * set->nrows);
	for (i = 0; i < set->nrows; i++)
	{
		p[2 * i] = set->answer_of[i] & 0xff;
		p[2 * i + 1] = set->answer_of[i] >> 8;
	}
	for (i = 0; i < set->nanswers; i++)
	{
		http[i] = Int32GetDatum(set->answer_http[i]);
		http_nulls[i] = (set->answer_http[i] <= 0);
		attempts[i] = Int32GetDatum(set->answer_attempts[i]);
		at[i] = TimestampTzGetDatum(set->answer_at[i]);
	}
	memset(nulls, false, sizeof(bool) * BULKOPS_RECEIPT_NCOLUMNS);
	values[0] = PointerGetDatum(outcomes);
	values[1] = PointerGetDatum(answer_of);
	values[2] = text_array_datum(set->remote_ids, set->nrows, &nulls[2]);
	values[3] = text_array_datum(set->error_codes, set->nrows, &nulls[3]);
	values[4] = text_array_datum(set->error_messages, set->nrows, &nulls[4]);
	values[5] = PointerGetDatum(construct_md_array(http, http_nulls, 1, dims, lbs,
												   INT4OID, 4, true, TYPALIGN_INT));
	values[6] = PointerGetDatum(construct_array(attempts, set->nanswers, INT4OID,
												4, true, TYPALIGN_INT));
	values[7] = PointerGetDatum(construct_array(at, set->nanswers, TIMESTAMPTZOID,
												8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[8] = text_array_datum(set->answer_codes, set->nanswers, &nulls[8]);
	values[9] = text_array_datum(set->answer_messages, set->nanswers, &nulls[9]);
	values[10] = text_array_datum(set->remote_versions, set->nrows, &nulls[10]);
	values[11] = text_array_datum(set->error_fields, set->nrows, &nulls[11]);
}

/* ---- bulkops._receipts(): the rows of one batch's receipts ---- */

/* A text[] argument's elements, or none. */
static void
arg_texts(FunctionCallInfo fcinfo, int n, Datum **elems, bool **nulls, int *count)
{
	*count = 0;
	*elems = NULL;
	*nulls = NULL;
	if (n >= PG_NARGS() || PG_ARGISNULL(n))
		return;
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(n), TEXTOID, -1, false,
					  TYPALIGN_INT, elems, nulls, count);
}

/* A text array's element i, or NULL when there is none. */
static inline bool
elem(Datum *elems, bool *nulls, int count, int i, Datum *out)
{
	if (i >= count || nulls[i])
		return false;
	*out = elems[i];
	return true;
}

/* A row's error fields, "a,b" as stored, as the text[] {a,b}. */
static Datum
fields_datum(Datum stored)
{
	char	   *s = TextDatumGetCString(stored);
	List	   *names = NIL;
	Datum	   *elems;
	ListCell   *lc;
	char	   *p;
	int			i = 0;

	for (p = strtok(s, ","); p != NULL; p = strtok(NULL, ","))
		names = lappend(names, p);
	elems = palloc(sizeof(Datum) * Max(list_length(names), 1));
	foreach(lc, names)
		elems[i++] = CStringGetTextDatum(lfirst(lc));
	return PointerGetDatum(construct_array(elems, i, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/*
 * bulkops._receipts(first_row, keys, outcomes, answer_of, remote_ids,
 * error_codes, error_messages, answer_http, answer_attempts, answer_at,
 * answer_codes, answer_messages, remote_versions, error_fields): a row for
 * each of the batch's rows that has a receipt (row_no, key, status,
 * remote_id, created, http_status, error_code, error_message, attempts,
 * updated_at, remote_version, error_fields).  The view bulkops.receipts
 * calls it with a batch's columns.
 */
PG_FUNCTION_INFO_V1(bulkops_receipts_sql);
Datum
bulkops_receipts_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		first_row;
	bytea	   *outcomes;
	const uint8 *flags;
	const uint8 *aof = NULL;
	int			nrows;
	int			naof = 0;
	Datum	   *keys,
			   *vers,
			   *flds,
			   *rids,
			   *codes,
			   *msgs,
			   *acodes,
			   *amsgs;
	bool	   *keyn,
			   *vern,
			   *fldn,
			   *ridn,
			   *coden,
			   *msgn,
			   *acoden,
			   *amsgn;
	int			nkeys,
				nvers,
				nflds,
				nrids,
				ncodes,
				nmsgs,
				nacodes,
				namsgs;
	int32	   *http;
	int32	   *attempts;
	TimestampTz *at;
	int			nanswers;
	Datum		statuses[BULKOPS_RECEIPT_NSTATUSES];
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		return (Datum) 0;
	first_row = PG_GETARG_INT64(0);
	outcomes = PG_GETARG_BYTEA_PP(2);
	flags = (const uint8 *) VARDATA_ANY(outcomes);
	nrows = VARSIZE_ANY_EXHDR(outcomes);
	if (!PG_ARGISNULL(3))
	{
		bytea	   *b = PG_GETARG_BYTEA_PP(3);

		aof = (const uint8 *) VARDATA_ANY(b);
		naof = VARSIZE_ANY_EXHDR(b) / 2;
	}
	arg_texts(fcinfo, 1, &keys, &keyn, &nkeys);
	arg_texts(fcinfo, 4, &rids, &ridn, &nrids);
	arg_texts(fcinfo, 5, &codes, &coden, &ncodes);
	arg_texts(fcinfo, 6, &msgs, &msgn, &nmsgs);
	arg_texts(fcinfo, 10, &acodes, &acoden, &nacodes);
	arg_texts(fcinfo, 11, &amsgs, &amsgn, &namsgs);
	arg_texts(fcinfo, 12, &vers, &vern, &nvers);
	arg_texts(fcinfo, 13, &flds, &fldn, &nflds);
	/* every answer has its attempts */
	nanswers = PG_ARGISNULL(8) ? 0 :
		ArrayGetNItems(ARR_NDIM(PG_GETARG_ARRAYTYPE_P(8)),
					   ARR_DIMS(PG_GETARG_ARRAYTYPE_P(8)));
	http = palloc0(sizeof(int32) * Max(nanswers, 1));
	attempts = palloc0(sizeof(int32) * Max(nanswers, 1));
	at = palloc0(sizeof(TimestampTz) * Max(nanswers, 1));
	fixed_array(PG_GETARG_DATUM(7), PG_ARGISNULL(7), INT4OID, http, nanswers);
	fixed_array(PG_GETARG_DATUM(8), PG_ARGISNULL(8), INT4OID, attempts, nanswers);
	fixed_array(PG_GETARG_DATUM(9), PG_ARGISNULL(9), TIMESTAMPTZOID, at, nanswers);
	for (i = 0; i < BULKOPS_RECEIPT_NSTATUSES; i++)
		statuses[i] = CStringGetTextDatum(bulkops_receipt_status_names[i]);

	for (i = 0; i < nrows; i++)
	{
		Datum		values[12];
		bool		nulls[12];
		uint8		f = flags[i];
		int			status = (f & FLAG_STATUS_MASK);
		int			a = (i < naof) ? (aof[2 * i] | (aof[2 * i + 1] << 8)) : 0;
		bool		has_answer = (a < nanswers);

		if (status == 0 || status > 4)
			continue;
		memset(nulls, true, sizeof(nulls));
		values[0] = Int64GetDatum(first_row + i);
		nulls[0] = false;
		nulls[1] = !elem(keys, keyn, nkeys, i, &values[1]);
		values[2] = statuses[status - 1];
		nulls[2] = false;
		if (f & FLAG_REMOTE_IS_KEY)
		{
			values[3] = values[1];
			nulls[3] = nulls[1];
		}
		else
			nulls[3] = !elem(rids, ridn, nrids, i, &values[3]);
		if (f & (FLAG_CREATED | FLAG_UPDATED))
		{
			values[4] = BoolGetDatum((f & FLAG_CREATED) != 0);
			nulls[4] = false;
		}
		if (has_answer && http[a] > 0)
		{
			values[5] = Int32GetDatum(http[a]);
			nulls[5] = false;
		}
		/* a row's own error, else the one all rows of its answer share */
		if (elem(codes, coden, ncodes, i, &values[6]) ||
			(has_answer && elem(acodes, acoden, nacodes, a, &values[6])))
			nulls[6] = false;
		if (elem(msgs, msgn, nmsgs, i, &values[7]) ||
			(has_answer && elem(amsgs, amsgn, namsgs, a, &values[7])))
			nulls[7] = false;
		values[8] = Int32GetDatum(has_answer ? attempts[a] : 0);
		nulls[8] = false;
		if (has_answer)
		{
			values[9] = TimestampTzGetDatum(at[a]);
			nulls[9] = false;
		}
		nulls[10] = !elem(vers, vern, nvers, i, &values[10]);
		if (elem(flds, fldn, nflds, i, &values[11]))
		{
			values[11] = fields_datum(values[11]);
			nulls[11] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
