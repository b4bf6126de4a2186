/*-------------------------------------------------------------------------
 *
 * encode_int.h
 *	  What the JSON encoder (encode.c) and the CSV encoder (encode_csv.c)
 *	  share: the per-column type information cached once per job.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_ENCODE_INT_H
#define BULKOPS_ENCODE_INT_H

#include "fmgr.h"
#include "access/tupdesc.h"

#include "encode.h"
#include "json_out.h"

typedef enum BulkopsJsonCategory
{
	BJC_BOOL,
	BJC_INT2,
	BJC_INT4,
	BJC_INT8,
	BJC_OID,
	BJC_FLOAT4,
	BJC_FLOAT8,
	BJC_NUMERIC,
	BJC_JSON,
	BJC_JSONB,
	BJC_ARRAY,
	BJC_COMPOSITE,
	BJC_BYTEA,
	BJC_DATE,
	BJC_TIMESTAMP,
	BJC_TIMESTAMPTZ,
	BJC_TEXT,					/* text, varchar, bpchar */
	BJC_NAME,
	BJC_CAST,					/* non-built-in type with a cast to json */
	BJC_OTHER					/* output function text as a JSON string */
} BulkopsJsonCategory;

typedef struct BulkopsTypeInfo BulkopsTypeInfo;

struct BulkopsTypeInfo
{
	Oid			typid;			/* as declared, possibly a domain */
	BulkopsJsonCategory category;
	int16		typlen;			/* storage of typid, to walk arrays of it */
	bool		typbyval;
	char		typalign;
	FmgrInfo	outfunc;		/* output function of typid */
	FmgrInfo   *castfunc;		/* BJC_CAST: the cast to json */

	/*
	 * BJC_ARRAY: the element type most recently met.  It is known in advance
	 * for real array types; anyarray values bring their own, so those are
	 * found (or added) on the chain at run time.
	 */
	BulkopsTypeInfo *elem;
	BulkopsTypeInfo *next;		/* the chain of elements of one array */

	/*
	 * BJC_COMPOSITE: encoders for the row types met, most recent first.  A
	 * named composite has one, built in advance; a record column gets one per
	 * distinct (blessed) row type of its values.
	 */
	BulkopsEncoder *rows;
};

typedef struct BulkopsColumn
{
	char	   *name;			/* NULL for a dropped column */
	char	   *key;			/* ,"name": pre-escaped; the comma is skipped
								 * for the first column written */
	int			keylen;
	BulkopsTypeInfo type;
} BulkopsColumn;

struct BulkopsEncoder
{
	int			natts;
	BulkopsColumn *cols;
	MemoryContext mcxt;
	bool		to_utf8;		/* CSV text must be converted to UTF-8 */
	char		csv_delim;		/* the CSV record's column delimiter */

	/*
	 * Only for the encoder of a nested composite: its row type, the tuple
	 * descriptor to deform its values with, and deform space.  Every column
	 * owns its type info and so its row encoders, which makes them a tree
	 * that no value can walk back up; busy only makes sure of that.
	 */
	Oid			typid;
	int32		typmod;
	TupleDesc	tupdesc;
	Datum	   *values;
	bool	   *nulls;
	bool		busy;
	BulkopsEncoder *next;		/* chain of BulkopsTypeInfo.rows */
};

/* a text-like varlena whose contents are JSON already */
static inline void
append_varlena(StringInfo out, Datum value)
{
	text	   *t = DatumGetTextPP(value);

	bulkops_append_bytes(out, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* encode.c */
extern BulkopsTypeInfo *bulkops_array_elem_info(BulkopsTypeInfo *ti, Oid elemtypid,
												MemoryContext mcxt);
extern void bulkops_encode_datum(BulkopsTypeInfo *ti, Datum value, StringInfo out,
								 MemoryContext mcxt);

#endif							/* BULKOPS_ENCODE_INT_H */
