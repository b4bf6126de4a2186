/*-------------------------------------------------------------------------
 *
 * ratelimit.h
 *	  How fast requests may go (ratelimit.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_RATELIMIT_H
#define BULKOPS_RATELIMIT_H

extern long bulkops_rate_take(const char *target, double rate);
extern long bulkops_backoff_ms(int attempt, long retry_after_ms);

#endif							/* BULKOPS_RATELIMIT_H */
