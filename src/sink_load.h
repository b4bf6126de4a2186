/*-------------------------------------------------------------------------
 *
 * sink_load.h
 *	  What sink.c (an export's destination, its modes, its rejects) and
 *	  sink_load.c (loading one page of CSV into a table) share.  Private to
 *	  the two.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_SINK_LOAD_H
#define BULKOPS_SINK_LOAD_H

#include "nodes/pg_list.h"
#include "utils/relcache.h"

/* Option "mode": what an export does with its table. */
typedef enum SinkMode
{
	SINK_APPEND,				/* add the records (the default) */
	SINK_REPLACE,				/* the table holds the export's records, and
								 * nothing else, once the export has ended */
	SINK_MERGE					/* insert, or update the row with the same
								 * merge_key */
} SinkMode;

/* One record the table did not take, to go to bulkops.export_rejects. */
typedef struct SinkReject
{
	int64		row_no;			/* 1-based position in the export */
	int			raw_off;		/* the record as received: its bytes in the
								 * data given to sink_load_page */
	int			raw_len;
	char	   *column;			/* the column whose value failed, or NULL */
	int			sqlerrcode;
	char	   *reason;
} SinkReject;

/* How to load a page. */
typedef struct SinkLoadSpec
{
	Relation	rel;			/* open and locked */
	List	   *names;			/* the header's column names (String) */
	SinkMode	mode;			/* append or merge; replace loads as append */
	const char *merge_key;		/* SINK_MERGE */
	bool		empty_as_null;	/* an empty value is NULL in text columns too */
	bool		strict;			/* a value the table refuses fails the page */
	bool		count_only;		/* only count the records */
	int64		first_row;		/* row_no of the page's first record */
} SinkLoadSpec;

/* What loading a page did. */
typedef struct SinkLoadResult
{
	int64		records;		/* records in the page */
	int64		stored;			/* handed to the table without error */
	List	   *rejects;		/* SinkReject, in row order */
} SinkLoadResult;

/* sink_load.c */
extern List *sink_header_names(const char *page, size_t len, size_t *header_len);
extern void sink_load_page(const SinkLoadSpec *spec, const char *data,
						   size_t len, SinkLoadResult *out);

#endif							/* BULKOPS_SINK_LOAD_H */
