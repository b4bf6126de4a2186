/*-------------------------------------------------------------------------
 *
 * results.h
 *	  Storing what an answer meant (results.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_RESULTS_H
#define BULKOPS_RESULTS_H

#include "batch.h"

extern bool bulkops_commit_result(Work *w, BulkopsResult *res);
extern void bulkops_store_deferred(Work *w);

#endif							/* BULKOPS_RESULTS_H */
