/*-------------------------------------------------------------------------
 *
 * retention.h
 *	  The space bulkops' history takes: partitions ahead, expired jobs
 *	  forgotten (retention.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_RETENTION_H
#define BULKOPS_RETENTION_H


extern void bulkops_retention_tick(void);

#endif							/* BULKOPS_RETENTION_H */
