/*-------------------------------------------------------------------------
 *
 * counters.h
 *	  The per-target row counters, kept small by the worker (counters.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_COUNTERS_H
#define BULKOPS_COUNTERS_H

extern void bulkops_counters_tick(void);

#endif							/* BULKOPS_COUNTERS_H */
