/*-------------------------------------------------------------------------
 *
 * plan.h
 *	  What a batch does next after an answer (plan.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_PLAN_H
#define BULKOPS_PLAN_H

#include "batch.h"

extern void bulkops_plan_next(Work *w, BulkopsResult *res, bool not_applied,
							  long retry_after_ms);
extern void bulkops_hold_target(Work *w, long status, BulkopsResult *res,
								long retry_after_ms);
extern long bulkops_retry_after_max_ms(Work *w);
extern void bulkops_restore_holds(void);

#endif							/* BULKOPS_PLAN_H */
