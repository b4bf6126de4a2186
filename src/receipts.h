/*-------------------------------------------------------------------------
 *
 * receipts.h
 *	  A batch's receipts, kept with the batch as compact arrays
 *	  (receipts.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_RECEIPTS_H
#define BULKOPS_RECEIPTS_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "utils/timestamp.h"

#include "dialect.h"

/*
 * The columns of bulkops.batches that hold its receipts, and their types,
 * in the order of bulkops_receipts_datums().
 */
#define BULKOPS_RECEIPT_COLUMNS \
	"outcomes, answer_of, remote_ids, error_codes, error_messages, " \
	"answer_http, answer_attempts, answer_at, answer_codes, answer_messages, " \
	"remote_versions, error_fields"
#define BULKOPS_RECEIPT_NCOLUMNS 12
/*
 * The status one byte of bulkops.batches.outcomes says (a
 * BulkopsRowStatus), or -1 when the row has no receipt yet.
 */
#define BULKOPS_RECEIPT_STATUS(flags) ((int) ((flags) & 0x07) - 1)

#define BULKOPS_RECEIPT_NSTATUSES 4
extern const char *const bulkops_receipt_status_names[BULKOPS_RECEIPT_NSTATUSES];

extern const char *const bulkops_receipt_columns[BULKOPS_RECEIPT_NCOLUMNS];
extern const Oid bulkops_receipt_types[BULKOPS_RECEIPT_NCOLUMNS];

/*
 * The receipts of one batch's rows, in memory.  Row i has a receipt when
 * flags[i] is not 0.  Each store that settles rows is one "answer": its
 * HTTP status, the batch's attempts then, when, and the error code and
 * message its rows share, if they all share one; a row refers to its
 * answer by number (answer_of), and keeps its own remote id and error only
 * where they differ (NULL otherwise).  See receipts.c for the format.
 */
typedef struct BulkopsReceiptSet
{
	int			nrows;
	uint8	   *flags;			/* status | created | remote id is the key */
	uint16	   *answer_of;
	char	  **remote_ids;		/* NULL, or nrows entries */
	char	  **error_codes;	/* NULL, or nrows entries */
	char	  **error_messages; /* NULL, or nrows entries */
	char	  **remote_versions;	/* NULL, or nrows entries */
	char	  **error_fields;	/* NULL, or nrows entries */
	int			nanswers;
	int			maxanswers;
	int32	   *answer_http;	/* 0: none */
	int32	   *answer_attempts;
	TimestampTz *answer_at;
	char	  **answer_codes;
	char	  **answer_messages;
} BulkopsReceiptSet;

extern BulkopsReceiptSet *bulkops_receipts_new(int nrows);
extern BulkopsReceiptSet *bulkops_receipts_from_row(int nrows, HeapTuple row,
													TupleDesc desc);
extern int	bulkops_receipts_add(BulkopsReceiptSet *set, const char *const *keys,
								 BulkopsOutcome **outcomes, int n,
								 int http_status, int attempts,
								 TimestampTz at, int64 *counts);
extern void bulkops_receipts_settle_all(BulkopsReceiptSet *set,
										BulkopsRowStatus status,
										const char *error_message,
										int attempts, TimestampTz at,
										int64 *counts);
extern void bulkops_receipts_datums(const BulkopsReceiptSet *set,
									Datum *values, bool *nulls);
extern bool bulkops_receipts_pending(const BulkopsReceiptSet *set, int row);
extern bool bulkops_receipts_all_succeeded(const BulkopsReceiptSet *set);
extern bool bulkops_receipts_status(const BulkopsReceiptSet *set, int row,
									BulkopsRowStatus *status);
extern const char *bulkops_receipts_error_code(const BulkopsReceiptSet *set,
											   int row);

#endif							/* BULKOPS_RECEIPTS_H */
