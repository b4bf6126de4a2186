/*-------------------------------------------------------------------------
 *
 * encode_csv.c
 *	  A source row as one CSV record (RFC 4180, UTF-8), for dialects whose
 *	  API takes CSV, from the same cached column types as the JSON encoder.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "miscadmin.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/arrayaccess.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "csv.h"
#include "encode_int.h"

/*
 * CSV
 */

/* Text in the database encoding as one UTF-8 CSV field; false on a NUL. */
static bool
csv_text(BulkopsEncoder *enc, const char *s, int len, StringInfo out)
{
	if (unlikely(enc->to_utf8))
	{
		char	   *c = pg_server_to_any(s, len, PG_UTF8);

		if (c != s)
		{
			s = c;
			len = strlen(c);
		}
	}
	return bulkops_csv_field_delim(out, s, len, enc->csv_delim);
}

static void
csv_float8(BulkopsTypeInfo *ti, float8 v, bool is_float4, StringInfo out)
{
	if (isnan(v))
		bulkops_append_bytes(out, "NaN", 3);
	else if (isinf(v))
		appendStringInfoString(out, v > 0 ? "Infinity" : "-Infinity");
	else if (extra_float_digits <= 0)
		appendStringInfoString(out, OutputFunctionCall(&ti->outfunc,
													   is_float4 ? Float4GetDatum((float4) v)
													   : Float8GetDatum(v)));
	else if (is_float4)
	{
		bulkops_reserve(out, FLOAT_SHORTEST_DECIMAL_LEN);
		out->len += float_to_shortest_decimal_buf((float4) v, out->data + out->len);
	}
	else
	{
		bulkops_reserve(out, DOUBLE_SHORTEST_DECIMAL_LEN);
		out->len += double_to_shortest_decimal_buf(v, out->data + out->len);
	}
}

static void
csv_datetime(Datum value, Oid typid, StringInfo out)
{
	bulkops_reserve(out, MAXDATELEN + 1);
	JsonEncodeDateTime(out->data + out->len, value, typid, NULL);
	out->len += strlen(out->data + out->len);
}

static int	csv_value(BulkopsEncoder *enc, BulkopsTypeInfo *ti, Datum value,
					  bool quote, StringInfo out);

/* every element, whatever the dimensions, joined by ';'; NULLs left out */
static int
csv_array(BulkopsEncoder *enc, BulkopsTypeInfo *ti, Datum value,
		  StringInfo out)
{
	AnyArrayType *arr = DatumGetAnyArrayP(value);
	int			n = ArrayGetNItems(AARR_NDIM(arr), AARR_DIMS(arr));
	Oid			elemtypid = AARR_ELEMTYPE(arr);
	BulkopsTypeInfo *elem = ti->elem;
	array_iter	it;
	bool		first = true;
	int			i;

	if (n <= 0)
		return 0;
	if (elem == NULL || elem->typid != elemtypid)
		elem = bulkops_array_elem_info(ti, elemtypid, enc->mcxt);
	check_stack_depth();
	array_iter_setup(&it, arr);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		v = array_iter_next(&it, &isnull, i, elem->typlen,
										elem->typbyval, elem->typalign);
		int			rc;

		if (isnull)
			continue;
		if (!first)
			bulkops_append_char(out, ';');
		first = false;
		if ((rc = csv_value(enc, elem, v, false, out)) != 0)
			return rc;
	}
	return 0;
}

/*
 * Append value as CSV text: a whole field when quote is true, else its bare
 * text in the database encoding (an array element, quoted with the rest).
 * Returns 0, or a BULKOPS_CSV_* problem (then out holds a partial field).
 */
static int
csv_value(BulkopsEncoder *enc, BulkopsTypeInfo *ti, Datum value, bool quote,
		  StringInfo out)
{
	StringInfoData scratch;
	StringInfo	dst = out;

	switch (ti->category)
	{
		case BJC_BOOL:
		case BJC_INT2:
		case BJC_INT4:
		case BJC_INT8:
		case BJC_OID:
			/* the same text as in JSON */
			bulkops_encode_datum(ti, value, out, enc->mcxt);
			return 0;
		case BJC_FLOAT4:
			csv_float8(ti, DatumGetFloat4(value), true, out);
			return 0;
		case BJC_FLOAT8:
			csv_float8(ti, DatumGetFloat8(value), false, out);
			return 0;
		case BJC_NUMERIC:
			appendStringInfoString(out, OutputFunctionCall(&ti->outfunc, value));
			return 0;
		case BJC_DATE:
			csv_datetime(value, DATEOID, out);
			return 0;
		case BJC_TIMESTAMP:
			{
				int			overflow = 0;
				TimestampTz tz;

				tz = timestamp2timestamptz_opt_overflow(DatumGetTimestamp(value),
														&overflow);
				csv_datetime(TimestampTzGetDatum(tz), TIMESTAMPTZOID, out);
			}
			return 0;
		case BJC_TIMESTAMPTZ:
			csv_datetime(value, TIMESTAMPTZOID, out);
			return 0;
		case BJC_TEXT:
			{
				text	   *t = DatumGetTextPP(value);

				if (!quote)
				{
					bulkops_append_bytes(out, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
					return 0;
				}
				return csv_text(enc, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), out)
					? 0 : BULKOPS_CSV_NUL;
			}
		case BJC_NAME:
			{
				const char *s = NameStr(*DatumGetName(value));
				int			len = strnlen(s, NAMEDATALEN);

				if (!quote)
				{
					bulkops_append_bytes(out, s, len);
					return 0;
				}
				return csv_text(enc, s, len, out) ? 0 : BULKOPS_CSV_NUL;
			}
		case BJC_BYTEA:
			{
				bytea	   *b = DatumGetByteaPP(value);
				const char *s = VARDATA_ANY(b);
				int			len = VARSIZE_ANY_EXHDR(b);

				/* the bytes are the text: they must be UTF-8, without NUL */
				if (memchr(s, '\0', len) != NULL)
					return BULKOPS_CSV_NUL;
				if (!pg_verify_mbstr(PG_UTF8, s, len, true))
					return BULKOPS_CSV_NOT_UTF8;
				if (!quote)
					bulkops_append_bytes(out, s, len);
				else
					(void) bulkops_csv_field_delim(out, s, len, enc->csv_delim);
				return 0;
			}
		default:
			break;
	}

	/* the rest is built whole, then quoted as one field */
	if (quote)
	{
		initStringInfo(&scratch);
		dst = &scratch;
	}
	switch (ti->category)
	{
		case BJC_ARRAY:
			{
				int			rc = csv_array(enc, ti, value, dst);

				if (rc != 0)
					return rc;
			}
			break;
		case BJC_JSON:
			append_varlena(dst, value);
			break;
		case BJC_JSONB:
		case BJC_COMPOSITE:
			bulkops_encode_datum(ti, value, dst, enc->mcxt);
			break;
		default:
			appendStringInfoString(dst, OutputFunctionCall(&ti->outfunc, value));
			break;
	}
	if (quote)
	{
		bool		ok = csv_text(enc, scratch.data, scratch.len, out);

		pfree(scratch.data);
		return ok ? 0 : BULKOPS_CSV_NUL;
	}
	return 0;
}

void
bulkops_csv_refuse_row(BulkopsEncoder *enc, int64 row, int att, int problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("row " INT64_FORMAT " of the source cannot be sent as CSV", row),
			 errdetail("Column \"%s\" holds %s.", bulkops_encoder_attname(enc, att),
					   problem == BULKOPS_CSV_NUL ? "a NUL byte"
					   : "bytes that are not valid UTF-8"),
			 errhint("Remove or replace those bytes in the source query.")));
	pg_unreachable();
}

int
bulkops_encode_csv_record(BulkopsEncoder *enc, Datum *values, bool *nulls,
						  const int *cols, int ncols, const char *null_text,
						  char delim, const char *eol, StringInfo out,
						  int *problem)
{
	int			null_len = strlen(null_text);
	int			i;

	enc->csv_delim = delim;
	for (i = 0; i < ncols; i++)
	{
		int			att = cols[i];
		int			rc;

		Assert(att >= 0 && att < enc->natts && enc->cols[att].name != NULL);
		if (i > 0)
			bulkops_append_char(out, delim);
		if (nulls[att])
		{
			bulkops_append_bytes(out, null_text, null_len);
			continue;
		}
		rc = csv_value(enc, &enc->cols[att].type, values[att], true, out);
		if (unlikely(rc != 0))
		{
			*problem = rc;
			return att;
		}
	}
	appendStringInfoString(out, eol);
	return -1;
}
