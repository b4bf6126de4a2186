/*-------------------------------------------------------------------------
 *
 * packagex.h
 *	  What the two files of the "packagex" dialect share: packagex.c
 *	  (options, resources, encoding, requests) and packagex_answers.c
 *	  (reading the batch object, the errors file, and what the rows
 *	  became).  Private to them; the worker sees only the dialect in
 *	  registry.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_PACKAGEX_H
#define BULKOPS_PACKAGEX_H

#include "utils/jsonb.h"

#include "dialect.h"

/*
 * Assumptions where the vendor's documentation is silent, kept here in
 * one place (and listed in docs/protocols/packagex.md):
 * - one request carries at most PX_MAX_ITEMS items (this also bounds what
 *   one overwrite can mirror);
 * - the errors file is [{"index": <position in data>, "id": "...",
 *   "errors": [{"code": "...", "message": "..."}]}];
 * - _errors_json_url is a presigned link: it is fetched without the API
 *   key, and when it has expired (403, 404, 410) a new poll gives a fresh
 *   one, at most PX_MAX_REFETCH times;
 * - an answer is the batch object itself, or the batch wrapped as
 *   {"data": {...}};
 * - every item's "id" is the row's key, sent as a JSON string;
 * - the phases' "error" counters add up to the rows the errors file lists:
 *   a final batch whose file lists fewer (or that has none) is incomplete,
 *   and its rows are left unknown rather than taken for successes;
 * - "stats" count the items of this request ("overwritten": the items an
 *   overwrite carried that replaced existing ones), so counts equal to the
 *   succeeded rows say whether each was created or updated.
 */
#define PX_MAX_ITEMS		10000
#define PX_MAX_REFETCH		3
#define PX_SYNC_MAX_ITEMS	100 /* default of option sync_max_items */

#define PX_STEP_SUBMIT	0
#define PX_STEP_POLL	1
#define PX_STEP_ERRORS	2

/* packagex.c: option upload, members of a batch's step_data */
extern bool px_upload_csv(Jsonb *options);
extern JsonbValue *px_note(const BulkopsBatch *batch, const char *name);
extern int	px_note_refetch(const BulkopsBatch *batch);

/* packagex_answers.c */
extern void px_handle_submit(const BulkopsBatch *batch, const BulkopsResponse *resp,
							 JsonbContainer *root, BulkopsResult *result);
extern void px_handle_poll(const BulkopsBatch *batch, const BulkopsResponse *resp,
						   JsonbContainer *root, BulkopsResult *result);
extern void px_handle_errors_file(const BulkopsBatch *batch, const BulkopsResponse *resp,
								  JsonbContainer *root, BulkopsResult *result);

#endif							/* BULKOPS_PACKAGEX_H */
