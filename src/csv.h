/*-------------------------------------------------------------------------
 *
 * csv.h
 *	  RFC 4180 CSV: quoting one field for writing, and a streaming reader
 *	  that takes a file in pieces of any size and hands out whole records.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_CSV_H
#define BULKOPS_CSV_H

#include "lib/stringinfo.h"

/*
 * Append s[0..len) as one CSV field, quoted (inner quotes doubled) when it
 * holds a comma, a double quote, CR or LF.  Returns false, appending
 * nothing, when it holds a NUL byte, which no CSV consumer takes.
 */
extern bool bulkops_csv_field(StringInfo out, const char *s, int len);

/* The same for records whose fields are separated by delim. */
extern bool bulkops_csv_field_delim(StringInfo out, const char *s, int len,
									char delim);

/* The column delimiters a reader may be told to look for (Salesforce's). */
#define BULKOPS_CSV_DELIMITERS	",\t;|^`"

/*
 * Called once per record read; fields[i] is NUL-terminated and lens[i] its
 * length.  Both arrays belong to the reader and change after the call.
 */
typedef void (*BulkopsCsvRecordFn) (void *arg, int nfields, char **fields,
									int *lens);

typedef struct BulkopsCsvReader
{
	BulkopsCsvRecordFn on_record;
	void	   *arg;
	int			max_record;		/* bytes one record's fields may hold */
	int			max_fields;		/* fields one record may have */
	char		delim;			/* the column delimiter, ',' unless set */
	bool		sniff;			/* the first record's first delimiter sets
								 * delim */
	bool		stop[256];		/* what ends a run of plain bytes in an
								 * unquoted field */
	int			state;
	bool		quoted;			/* the current record has seen a quote */
	StringInfoData buf;			/* the current record's fields, each followed
								 * by a NUL */
	int		   *starts;			/* offset of each field in buf */
	char	  **fields;
	int		   *lens;
	int			nfields;
	int			maxfields;		/* entries allocated in the three arrays */
	int64		line;			/* 1-based line of the current record */
	int64		lines;			/* line breaks seen so far */
	int64		records;		/* records handed out */
} BulkopsCsvReader;

/*
 * Allocations (the buffers) go to CurrentMemoryContext.  A record longer
 * than max_record bytes or with more than max_fields fields raises ERROR,
 * so that what a file makes the reader hold is bounded whatever it holds:
 * a field costs memory (its offset, length and NUL) even when empty.
 */
extern void bulkops_csv_reader_init(BulkopsCsvReader *r,
									BulkopsCsvRecordFn on_record, void *arg,
									int max_record, int max_fields);

/*
 * Fields separated by delim instead of a comma.  With sniff, the first of
 * the BULKOPS_CSV_DELIMITERS that ends a field of the first record (a
 * header row, whose names hold none of them) becomes the delimiter; a
 * first record of one field leaves it delim.
 */
extern void bulkops_csv_reader_delimiter(BulkopsCsvReader *r, char delim,
										 bool sniff);

/* Read data[0..len); raises ERROR on malformed CSV. */
extern void bulkops_csv_feed(BulkopsCsvReader *r, const char *data,
							 size_t len);

/* The end of the file: hands out a last record that had no line break. */
extern void bulkops_csv_finish(BulkopsCsvReader *r);

#endif							/* BULKOPS_CSV_H */
