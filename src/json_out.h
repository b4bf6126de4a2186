/*-------------------------------------------------------------------------
 *
 * json_out.h
 *	  Appending to a StringInfo on the encoding hot path: inline room
 *	  checks and byte appends shared by encode.c and json_out.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_JSON_OUT_H
#define BULKOPS_JSON_OUT_H

#include "lib/stringinfo.h"

/*
 * enlargeStringInfo() is out of line and rarely needed once a batch buffer
 * has grown, so check the room here first.  The unsigned compare also
 * sends a negative (overflowed) need to enlargeStringInfo() to complain.
 */
static inline void
reserve(StringInfo out, int needed)
{
	if (unlikely((Size) needed >= (Size) (out->maxlen - out->len)))
		enlargeStringInfo(out, needed);
}

static inline void
append_bytes(StringInfo out, const char *s, int n)
{
	reserve(out, n);
	memcpy(out->data + out->len, s, n);
	out->len += n;
	out->data[out->len] = '\0';
}

static inline void
append_char(StringInfo out, char c)
{
	reserve(out, 1);
	out->data[out->len++] = c;
	out->data[out->len] = '\0';
}

#endif							/* BULKOPS_JSON_OUT_H */
