/*-------------------------------------------------------------------------
 *
 * encode.c
 *	  Tuple to JSON and to CSV encoding with per-column cached type
 *	  information.
 *
 * This file owns the BulkopsEncoder: everything needed to turn a deformed
 * row (Datum/isnull arrays) into a JSON object, looked up once when the
 * encoder is built, so that the per-row path is a switch on a category and
 * direct writes into the caller's StringInfo.  It is the hot path of
 * enqueueing, which is why integers, floats, dates and strings are written
 * straight into the output buffer instead of going through their output
 * functions and escape_json().
 *
 * The JSON written is the same as to_json() / row_to_json() would write,
 * without whitespace, except that bytea is base64 (not the \x hex text) and
 * oid is a JSON number (not a string).
 *
 * The CSV written (RFC 4180, UTF-8) takes the same cached categories:
 * booleans are true/false, dates YYYY-MM-DD, timestamps ISO 8601 with the
 * session's zone offset (a timestamp without time zone is read in the
 * session's TimeZone, as a cast to timestamptz would), arrays their
 * elements joined by ';' (the usual form of multi-valued fields), json and
 * composites their JSON text, bytea its bytes (which must be UTF-8), and
 * everything else its output text.
 *
 * Memory: the encoder and all it caches live in the context given to
 * bulkops_encoder_create().  The only later allocations there happen on the
 * first sight of a record type or of an anyarray element type that could
 * not be known in advance.  Everything else an encode call allocates
 * (detoasted values, output function results) goes to CurrentMemoryContext,
 * which the caller resets per batch.
 *
 * Building an encoder reads the catalogs, and encoding may detoast, so both
 * must run inside a transaction.  No locks are taken beyond those of the
 * catalog lookups.
 *
 * IDENTIFICATION
 *	  src/encode.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "mb/pg_wchar.h"
#include "utils/arrayaccess.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "encode_int.h"
#include "json_out.h"

/* How a value of one type is written; chosen once per type. */
static BulkopsEncoder *build_encoder(TupleDesc tupdesc, MemoryContext mcxt);
static BulkopsTypeInfo *make_typeinfo(Oid typid, MemoryContext mcxt);
static void init_typeinfo(BulkopsTypeInfo *ti, Oid typid,
						  MemoryContext mcxt);
static void init_other(BulkopsTypeInfo *ti, Oid basetypid,
					   MemoryContext mcxt);
static BulkopsEncoder *make_row_encoder(Oid typid, int32 typmod,
										MemoryContext mcxt);
static void encode_row(BulkopsEncoder *enc, Datum *values, bool *nulls,
					   const bool *omit, StringInfo out);

/*
 * Building encoders
 */

BulkopsEncoder *
bulkops_encoder_create(TupleDesc tupdesc, MemoryContext mcxt)
{
	return build_encoder(tupdesc, mcxt);
}

/*
 * The catalog lookups run in the caller's context; only what the encoder
 * keeps is allocated in mcxt.
 */
static BulkopsEncoder *
build_encoder(TupleDesc tupdesc, MemoryContext mcxt)
{
	BulkopsEncoder *enc;
	int			i;

	enc = MemoryContextAllocZero(mcxt, sizeof(BulkopsEncoder));
	enc->mcxt = mcxt;
	enc->natts = tupdesc->natts;
	enc->cols = MemoryContextAllocZero(mcxt,
									   sizeof(BulkopsColumn) *
									   Max(tupdesc->natts, 1));
	enc->typid = InvalidOid;
	enc->typmod = -1;
	enc->to_utf8 = GetDatabaseEncoding() != PG_UTF8 &&
		GetDatabaseEncoding() != PG_SQL_ASCII;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		BulkopsColumn *col = &enc->cols[i];
		StringInfoData key;

		if (att->attisdropped)
			continue;

		col->name = MemoryContextStrdup(mcxt, NameStr(att->attname));

		initStringInfo(&key);
		appendStringInfoChar(&key, ',');
		bulkops_json_string(&key, col->name, strlen(col->name));
		appendStringInfoChar(&key, ':');
		col->key = MemoryContextStrdup(mcxt, key.data);
		col->keylen = key.len;
		pfree(key.data);

		init_typeinfo(&col->type, att->atttypid, mcxt);
	}

	return enc;
}

static BulkopsTypeInfo *
make_typeinfo(Oid typid, MemoryContext mcxt)
{
	BulkopsTypeInfo *ti;

	ti = MemoryContextAllocZero(mcxt, sizeof(BulkopsTypeInfo));
	init_typeinfo(ti, typid, mcxt);
	return ti;
}

/*
 * Choose the category of typid the way to_json() does (domains by their
 * base type, a cast to json honoured for non-built-in types only) and
 * cache what writing it needs.
 */
static void
init_typeinfo(BulkopsTypeInfo *ti, Oid typid, MemoryContext mcxt)
{
	Oid			basetypid = getBaseType(typid);
	Oid			outfuncoid;
	bool		isvarlena;

	ti->typid = typid;
	get_typlenbyvalalign(typid, &ti->typlen, &ti->typbyval, &ti->typalign);
	getTypeOutputInfo(typid, &outfuncoid, &isvarlena);
	fmgr_info_cxt(outfuncoid, &ti->outfunc, mcxt);

	switch (basetypid)
	{
		case BOOLOID:
			ti->category = BJC_BOOL;
			break;
		case INT2OID:
			ti->category = BJC_INT2;
			break;
		case INT4OID:
			ti->category = BJC_INT4;
			break;
		case INT8OID:
			ti->category = BJC_INT8;
			break;
		case OIDOID:
			ti->category = BJC_OID;
			break;
		case FLOAT4OID:
			ti->category = BJC_FLOAT4;
			break;
		case FLOAT8OID:
			ti->category = BJC_FLOAT8;
			break;
		case NUMERICOID:
			ti->category = BJC_NUMERIC;
			break;
		case JSONOID:
			ti->category = BJC_JSON;
			break;
		case JSONBOID:
			ti->category = BJC_JSONB;
			break;
		case BYTEAOID:
			ti->category = BJC_BYTEA;
			break;
		case DATEOID:
			ti->category = BJC_DATE;
			break;
		case TIMESTAMPOID:
			ti->category = BJC_TIMESTAMP;
			break;
		case TIMESTAMPTZOID:
			ti->category = BJC_TIMESTAMPTZ;
			break;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			ti->category = BJC_TEXT;
			break;
		case NAMEOID:
			ti->category = BJC_NAME;
			break;
		default:
			{
				Oid			elemtypid = get_element_type(basetypid);

				if (OidIsValid(elemtypid) ||
					basetypid == ANYARRAYOID ||
					basetypid == ANYCOMPATIBLEARRAYOID ||
					basetypid == RECORDARRAYOID)
				{
					ti->category = BJC_ARRAY;
					if (OidIsValid(elemtypid))
						ti->elem = make_typeinfo(elemtypid, mcxt);
				}
				else if (type_is_rowtype(basetypid))
				{
					ti->category = BJC_COMPOSITE;
					/* a record's row type comes with each value */
					if (basetypid != RECORDOID)
						ti->rows = make_row_encoder(basetypid, -1, mcxt);
				}
				else
					init_other(ti, basetypid, mcxt);
			}
			break;
	}
}

/*
 * Built-in types are written as their output text; an extension's type may
 * bring a cast to json (hstore does), which to_json() honours and so do we.
 */
static void
init_other(BulkopsTypeInfo *ti, Oid basetypid, MemoryContext mcxt)
{
	Oid			castfuncoid = InvalidOid;
	CoercionPathType path;

	ti->category = BJC_OTHER;
	if (basetypid < FirstNormalObjectId)
		return;

	path = find_coercion_pathway(JSONOID, basetypid, COERCION_EXPLICIT,
								 &castfuncoid);
	if (path == COERCION_PATH_FUNC && OidIsValid(castfuncoid))
	{
		ti->category = BJC_CAST;
		ti->castfunc = MemoryContextAllocZero(mcxt, sizeof(FmgrInfo));
		fmgr_info_cxt(castfuncoid, ti->castfunc, mcxt);
	}
}

/*
 * An encoder for values of a composite type, with its own copy of the
 * tuple descriptor (a blessed record's may otherwise go away) and deform
 * space.  Composite types cannot contain themselves, so building these
 * eagerly for named types terminates.
 */
static BulkopsEncoder *
make_row_encoder(Oid typid, int32 typmod, MemoryContext mcxt)
{
	MemoryContext oldcxt;
	TupleDesc	tupdesc;
	BulkopsEncoder *enc;

	oldcxt = MemoryContextSwitchTo(mcxt);
	tupdesc = lookup_rowtype_tupdesc_copy(typid, typmod);
	MemoryContextSwitchTo(oldcxt);

	enc = build_encoder(tupdesc, mcxt);
	enc->typid = typid;
	enc->typmod = typmod;
	enc->tupdesc = tupdesc;
	enc->values = MemoryContextAlloc(mcxt,
									 sizeof(Datum) * Max(tupdesc->natts, 1));
	enc->nulls = MemoryContextAlloc(mcxt,
									sizeof(bool) * Max(tupdesc->natts, 1));
	return enc;
}

/*
 * Accessors
 */

int
bulkops_encoder_natts(BulkopsEncoder *enc)
{
	return enc->natts;
}

/* NULL for a dropped column */
const char *
bulkops_encoder_attname(BulkopsEncoder *enc, int att)
{
	Assert(att >= 0 && att < enc->natts);
	return enc->cols[att].name;
}

bool
bulkops_encoder_is_flat(BulkopsEncoder *enc, int att)
{
	switch (enc->cols[att].type.category)
	{
		case BJC_JSON:
		case BJC_JSONB:
		case BJC_ARRAY:
		case BJC_COMPOSITE:
		case BJC_BYTEA:
			return false;
		default:
			return true;
	}
}

int
bulkops_encoder_find(BulkopsEncoder *enc, const char *name)
{
	int			i;

	for (i = 0; i < enc->natts; i++)
	{
		const char *colname = enc->cols[i].name;

		if (colname != NULL && strcmp(colname, name) == 0)
			return i;
	}
	return -1;
}

/*
 * Writing values
 */

static inline void
append_int64(StringInfo out, int64 v)
{
	/* pg_lltoa writes a terminating NUL as well */
	bulkops_reserve(out, MAXINT8LEN + 1);
	out->len += pg_lltoa(v, out->data + out->len);
}

static inline void
append_int32(StringInfo out, int32 v)
{
	bulkops_reserve(out, MAXINT8LEN + 1);
	out->len += pg_ltoa(v, out->data + out->len);
}

static inline void
append_uint32(StringInfo out, uint32 v)
{
	/* unlike pg_ltoa, pg_ultoa_n leaves the NUL to us */
	bulkops_reserve(out, MAXINT8LEN + 1);
	out->len += pg_ultoa_n(v, out->data + out->len);
	out->data[out->len] = '\0';
}

/*
 * NaN and the infinities are not JSON numbers, so to_json() quotes them;
 * we do the same.  Returns false when v is an ordinary number.
 */
static bool
append_nonfinite(StringInfo out, double v)
{
	if (isnan(v))
		bulkops_append_bytes(out, "\"NaN\"", 5);
	else if (isinf(v))
	{
		if (v > 0)
			bulkops_append_bytes(out, "\"Infinity\"", 10);
		else
			bulkops_append_bytes(out, "\"-Infinity\"", 11);
	}
	else
		return false;
	return true;
}

/*
 * float4out/float8out print the shortest exact form unless
 * extra_float_digits was lowered to 0 or below; only in that rare case is
 * the output function worth its palloc.
 */
static void
encode_float8(BulkopsTypeInfo *ti, Datum value, StringInfo out)
{
	float8		v = DatumGetFloat8(value);

	if (append_nonfinite(out, v))
		return;
	if (extra_float_digits > 0)
	{
		bulkops_reserve(out, DOUBLE_SHORTEST_DECIMAL_LEN);
		out->len += double_to_shortest_decimal_buf(v, out->data + out->len);
	}
	else
		appendStringInfoString(out, OutputFunctionCall(&ti->outfunc, value));
}

static void
encode_float4(BulkopsTypeInfo *ti, Datum value, StringInfo out)
{
	float4		v = DatumGetFloat4(value);

	if (append_nonfinite(out, v))
		return;
	if (extra_float_digits > 0)
	{
		bulkops_reserve(out, FLOAT_SHORTEST_DECIMAL_LEN);
		out->len += float_to_shortest_decimal_buf(v, out->data + out->len);
	}
	else
		appendStringInfoString(out, OutputFunctionCall(&ti->outfunc, value));
}

static void
encode_numeric(BulkopsTypeInfo *ti, Datum value, StringInfo out)
{
	char	   *str = OutputFunctionCall(&ti->outfunc, value);

	/* NaN, Infinity and -Infinity are the only non-numbers numeric_out has */
	if (str[0] == 'N' || str[0] == 'I' || (str[0] == '-' && str[1] == 'I'))
		bulkops_json_string(out, str, strlen(str));
	else
		appendStringInfoString(out, str);
}

/* date, timestamp, timestamptz: ISO 8601 as to_json() writes them */
static void
encode_datetime(Datum value, Oid typid, StringInfo out)
{
	char	   *buf;

	bulkops_reserve(out, MAXDATELEN + 3);
	out->data[out->len++] = '"';
	buf = out->data + out->len;
	JsonEncodeDateTime(buf, value, typid, NULL);
	out->len += strlen(buf);
	out->data[out->len++] = '"';
	out->data[out->len] = '\0';
}

static void
encode_bytea(Datum value, StringInfo out)
{
	bytea	   *b = DatumGetByteaPP(value);
	int			len = VARSIZE_ANY_EXHDR(b);
	int			enclen = pg_b64_enc_len(len);
	int			n;

	bulkops_reserve(out, enclen + 2);
	out->data[out->len++] = '"';
	n = pg_b64_encode(VARDATA_ANY(b), len, out->data + out->len, enclen);
	if (n < 0)
		elog(ERROR, "could not encode bytea value as base64");
	out->len += n;
	out->data[out->len++] = '"';
	out->data[out->len] = '\0';
}

static void
encode_jsonb(Datum value, StringInfo out)
{
	Jsonb	   *jb = DatumGetJsonbP(value);

	/* JsonbToCString appends to a given StringInfo */
	(void) JsonbToCString(out, &jb->root, VARSIZE(jb));
}

/* the element type info of an array value, added on first sight */
BulkopsTypeInfo *
bulkops_array_elem_info(BulkopsTypeInfo *ti, Oid elemtypid, MemoryContext mcxt)
{
	BulkopsTypeInfo *elem;

	for (elem = ti->elem; elem != NULL; elem = elem->next)
	{
		if (elem->typid == elemtypid)
			return elem;
	}
	elem = make_typeinfo(elemtypid, mcxt);
	elem->next = ti->elem;
	ti->elem = elem;
	return elem;
}

static void
encode_array_dim(BulkopsTypeInfo *elem, array_iter *it, int dim, int ndim,
				 const int *dims, int *index, StringInfo out,
				 MemoryContext mcxt)
{
	int			i;

	bulkops_append_char(out, '[');
	for (i = 0; i < dims[dim]; i++)
	{
		if (i > 0)
			bulkops_append_char(out, ',');
		if (dim + 1 < ndim)
			encode_array_dim(elem, it, dim + 1, ndim, dims, index, out, mcxt);
		else
		{
			bool		isnull;
			Datum		v;

			v = array_iter_next(it, &isnull, (*index)++,
								elem->typlen, elem->typbyval, elem->typalign);
			if (isnull)
				bulkops_append_bytes(out, "null", 4);
			else
				bulkops_encode_datum(elem, v, out, mcxt);
		}
	}
	bulkops_append_char(out, ']');
}

/* any dimensions nest as JSON arrays; bounds are not kept, as in to_json() */
static void
encode_array(BulkopsTypeInfo *ti, Datum value, StringInfo out,
			 MemoryContext mcxt)
{
	AnyArrayType *arr = DatumGetAnyArrayP(value);
	int			ndim = AARR_NDIM(arr);
	const int  *dims = AARR_DIMS(arr);
	Oid			elemtypid = AARR_ELEMTYPE(arr);
	BulkopsTypeInfo *elem = ti->elem;
	array_iter	it;
	int			index = 0;

	if (ArrayGetNItems(ndim, dims) <= 0)
	{
		bulkops_append_bytes(out, "[]", 2);
		return;
	}
	if (elem == NULL || elem->typid != elemtypid)
		elem = bulkops_array_elem_info(ti, elemtypid, mcxt);

	check_stack_depth();
	array_iter_setup(&it, arr);
	encode_array_dim(elem, &it, 0, ndim, dims, &index, out, mcxt);
}

static void
encode_composite(BulkopsTypeInfo *ti, Datum value, StringInfo out,
				 MemoryContext mcxt)
{
	HeapTupleHeader td = DatumGetHeapTupleHeader(value);
	Oid			typid = HeapTupleHeaderGetTypeId(td);
	int32		typmod = HeapTupleHeaderGetTypMod(td);
	BulkopsEncoder *renc;
	HeapTupleData tuple;
	Datum	   *values;
	bool	   *nulls;

	for (renc = ti->rows; renc != NULL; renc = renc->next)
	{
		if (renc->typid == typid && renc->typmod == typmod)
			break;
	}
	if (renc == NULL)
	{
		renc = make_row_encoder(typid, typmod, mcxt);
		renc->next = ti->rows;
		ti->rows = renc;
	}

	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = td;

	check_stack_depth();
	if (renc->busy)
	{
		values = palloc(sizeof(Datum) * Max(renc->natts, 1));
		nulls = palloc(sizeof(bool) * Max(renc->natts, 1));
		heap_deform_tuple(&tuple, renc->tupdesc, values, nulls);
		encode_row(renc, values, nulls, NULL, out);
	}
	else
	{
		/*
		 * An error thrown in between leaves busy set, which costs only the
		 * pallocs above from then on.
		 */
		renc->busy = true;
		heap_deform_tuple(&tuple, renc->tupdesc, renc->values, renc->nulls);
		encode_row(renc, renc->values, renc->nulls, NULL, out);
		renc->busy = false;
	}
}

/*
 * mcxt is the encoder's context, for what is met for the first time here
 * (record types, anyarray element types).
 */
void
bulkops_encode_datum(BulkopsTypeInfo *ti, Datum value, StringInfo out,
					 MemoryContext mcxt)
{
	switch (ti->category)
	{
		case BJC_BOOL:
			if (DatumGetBool(value))
				bulkops_append_bytes(out, "true", 4);
			else
				bulkops_append_bytes(out, "false", 5);
			break;
		case BJC_INT2:
			append_int32(out, DatumGetInt16(value));
			break;
		case BJC_INT4:
			append_int32(out, DatumGetInt32(value));
			break;
		case BJC_INT8:
			append_int64(out, DatumGetInt64(value));
			break;
		case BJC_OID:
			append_uint32(out, DatumGetObjectId(value));
			break;
		case BJC_FLOAT4:
			encode_float4(ti, value, out);
			break;
		case BJC_FLOAT8:
			encode_float8(ti, value, out);
			break;
		case BJC_NUMERIC:
			encode_numeric(ti, value, out);
			break;
		case BJC_JSON:
			append_varlena(out, value);
			break;
		case BJC_JSONB:
			encode_jsonb(value, out);
			break;
		case BJC_ARRAY:
			encode_array(ti, value, out, mcxt);
			break;
		case BJC_COMPOSITE:
			encode_composite(ti, value, out, mcxt);
			break;
		case BJC_BYTEA:
			encode_bytea(value, out);
			break;
		case BJC_DATE:
			encode_datetime(value, DATEOID, out);
			break;
		case BJC_TIMESTAMP:
			encode_datetime(value, TIMESTAMPOID, out);
			break;
		case BJC_TIMESTAMPTZ:
			encode_datetime(value, TIMESTAMPTZOID, out);
			break;
		case BJC_TEXT:
			{
				text	   *t = DatumGetTextPP(value);

				bulkops_json_string(out, VARDATA_ANY(t),
									VARSIZE_ANY_EXHDR(t));
			}
			break;
		case BJC_NAME:
			{
				const char *s = NameStr(*DatumGetName(value));

				bulkops_json_string(out, s, strnlen(s, NAMEDATALEN));
			}
			break;
		case BJC_CAST:
			append_varlena(out, FunctionCall1(ti->castfunc, value));
			break;
		case BJC_OTHER:
			{
				char	   *s = OutputFunctionCall(&ti->outfunc, value);

				bulkops_json_string(out, s, strlen(s));
			}
			break;
	}
}

static void
encode_row(BulkopsEncoder *enc, Datum *values, bool *nulls,
		   const bool *omit, StringInfo out)
{
	int			skip = 1;		/* no comma before the first key */
	int			i;

	bulkops_append_char(out, '{');
	for (i = 0; i < enc->natts; i++)
	{
		BulkopsColumn *col = &enc->cols[i];

		if (col->name == NULL || (omit != NULL && omit[i]))
			continue;

		bulkops_append_bytes(out, col->key + skip, col->keylen - skip);
		skip = 0;
		if (nulls[i])
			bulkops_append_bytes(out, "null", 4);
		else
			bulkops_encode_datum(&col->type, values[i], out, enc->mcxt);
	}
	bulkops_append_char(out, '}');
}

void
bulkops_encode_object(BulkopsEncoder *enc, Datum *values, bool *nulls,
					  const bool *omit, StringInfo out)
{
	encode_row(enc, values, nulls, omit, out);
}

void
bulkops_encode_value(BulkopsEncoder *enc, int att, Datum value, bool isnull,
					 StringInfo out)
{
	Assert(att >= 0 && att < enc->natts && enc->cols[att].name != NULL);

	if (isnull)
		bulkops_append_bytes(out, "null", 4);
	else
		bulkops_encode_datum(&enc->cols[att].type, value, out, enc->mcxt);
}

char *
bulkops_encode_text(BulkopsEncoder *enc, int att, Datum value)
{
	Assert(att >= 0 && att < enc->natts && enc->cols[att].name != NULL);

	return OutputFunctionCall(&enc->cols[att].type.outfunc, value);
}
