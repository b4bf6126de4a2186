/*-------------------------------------------------------------------------
 *
 * ratelimit.h
 *	  How fast requests may go (ratelimit.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_RATELIMIT_H
#define BULKOPS_RATELIMIT_H

#include "datatype/timestamp.h"

extern long bulkops_rate_take(const char *target, double rate);
extern long bulkops_backoff_ms(int attempt, long retry_after_ms);
extern TimestampTz bulkops_target_held_until(const char *target);
extern TimestampTz bulkops_target_limited(const char *target, int status,
										  long delay_ms, long retry_after_ms,
										  long cap_ms, bool *save);
extern void bulkops_target_restore_hold(const char *target, TimestampTz until,
										int status);
extern void bulkops_target_answered(const char *target, int status);

#endif							/* BULKOPS_RATELIMIT_H */
