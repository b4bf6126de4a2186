/*-------------------------------------------------------------------------
 *
 * encode.h
 *	  Tuple to JSON and CSV encoding with per-column cached type
 *	  information.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_ENCODE_H
#define BULKOPS_ENCODE_H

#include "access/tupdesc.h"
#include "lib/stringinfo.h"

typedef struct BulkopsEncoder BulkopsEncoder;

/*
 * Build an encoder for rows of tupdesc.  Everything it needs (output
 * functions, JSON keys of the column names, per-type categories) is looked
 * up once here and lives in mcxt.
 */
extern BulkopsEncoder *bulkops_encoder_create(TupleDesc tupdesc,
											  MemoryContext mcxt);

extern int	bulkops_encoder_natts(BulkopsEncoder *enc);
extern const char *bulkops_encoder_attname(BulkopsEncoder *enc, int att);

/*
 * Whether a column's values are one plain value each (not an array, json,
 * a composite or bytea): text, a number, a boolean, a date or a timestamp.
 */
extern bool bulkops_encoder_is_flat(BulkopsEncoder *enc, int att);

/* index of a (non-dropped) column by exact name, or -1 */
extern int	bulkops_encoder_find(BulkopsEncoder *enc, const char *name);

/*
 * Append {"col": value, ...} for every column whose omit[] entry is false
 * (omit may be NULL).  NULL columns are written as null.
 */
extern void bulkops_encode_object(BulkopsEncoder *enc, Datum *values,
								  bool *nulls, const bool *omit,
								  StringInfo out);

/* Append one column's value as JSON (null for NULL). */
extern void bulkops_encode_value(BulkopsEncoder *enc, int att, Datum value,
								 bool isnull, StringInfo out);

/* The column's value as plain text (its output function); never NULL. */
extern char *bulkops_encode_text(BulkopsEncoder *enc, int att, Datum value);

/* What bulkops_encode_csv_record found a value could not be sent as. */
#define BULKOPS_CSV_NUL			1	/* it holds a NUL byte */
#define BULKOPS_CSV_NOT_UTF8	2	/* a bytea that is not UTF-8 text */

/*
 * Append one CSV record (RFC 4180, UTF-8, its fields separated by delim and
 * ended by eol) of the columns cols[0..ncols), in that order; NULLs are
 * written as null_text.  Returns
 * -1, or the column whose value could not be written (*problem says why;
 * out then holds part of the record).  See encode.c for each type's form.
 */
extern int	bulkops_encode_csv_record(BulkopsEncoder *enc, Datum *values,
									  bool *nulls, const int *cols, int ncols,
									  const char *null_text, char delim,
									  const char *eol, StringInfo out,
									  int *problem);

/*
 * Raise the ERROR for source row number row whose column att could not be
 * written as CSV (problem: what bulkops_encode_csv_record found).
 */
extern void bulkops_csv_refuse_row(BulkopsEncoder *enc, int64 row, int att,
								   int problem) pg_attribute_noreturn();

#endif							/* BULKOPS_ENCODE_H */
