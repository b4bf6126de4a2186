/*-------------------------------------------------------------------------
 *
 * monitor.h
 *	  What bulkops.wait() says about the job it waits for (monitor.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_MONITOR_H
#define BULKOPS_MONITOR_H

extern void bulkops_monitor_progress_notice(int64 job);
extern void bulkops_monitor_summary_notice(int64 job);

#endif							/* BULKOPS_MONITOR_H */
