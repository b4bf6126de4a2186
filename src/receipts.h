/*-------------------------------------------------------------------------
 *
 * receipts.h
 *	  Writing a held batch's receipts and counters (receipts.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_RECEIPTS_H
#define BULKOPS_RECEIPTS_H

#include "batch.h"

extern void bulkops_write_outcomes(Work *w, List *outcomes, int http_status);
extern void bulkops_close_batch(Work *w, const char *last_error, int http_status);
extern bool bulkops_lock_job(int64 job_id, bool skip_locked);

#endif							/* BULKOPS_RECEIPTS_H */
