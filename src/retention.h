/*-------------------------------------------------------------------------
 *
 * retention.h
 *	  Forgetting finished jobs (retention.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_RETENTION_H
#define BULKOPS_RETENTION_H


extern void bulkops_purge_expired(void);

#endif							/* BULKOPS_RETENTION_H */
