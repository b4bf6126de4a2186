/*-------------------------------------------------------------------------
 *
 * claim.h
 *	  Taking batches into the worker (claim.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_CLAIM_H
#define BULKOPS_CLAIM_H

#include "batch.h"

extern bool bulkops_claim(void);
extern bool bulkops_recover(void);
extern int	bulkops_lane_share(int concurrency);
extern void bulkops_refresh_cancels(void);

#endif							/* BULKOPS_CLAIM_H */
