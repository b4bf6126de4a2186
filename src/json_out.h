/*-------------------------------------------------------------------------
 *
 * json_out.h
 *	  Writing JSON into a StringInfo: quoted strings (json_out.c), and the
 *	  inline room checks and byte appends of the encoding hot path, shared
 *	  by encode.c, encode_csv.c, csv.c and json_out.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_JSON_OUT_H
#define BULKOPS_JSON_OUT_H

#include "lib/stringinfo.h"

/* json_out.c: append str[0..len) as a quoted, escaped JSON string */
extern void bulkops_json_string(StringInfo out, const char *str, int len);

/*
 * enlargeStringInfo() is out of line and rarely needed once a batch buffer
 * has grown, so check the room here first.  The unsigned compare also
 * sends a negative (overflowed) need to enlargeStringInfo() to complain.
 */
static inline void
bulkops_reserve(StringInfo out, int needed)
{
	if (unlikely((Size) needed >= (Size) (out->maxlen - out->len)))
		enlargeStringInfo(out, needed);
}

static inline void
bulkops_append_bytes(StringInfo out, const char *s, int n)
{
	bulkops_reserve(out, n);
	memcpy(out->data + out->len, s, n);
	out->len += n;
	out->data[out->len] = '\0';
}

static inline void
bulkops_append_char(StringInfo out, char c)
{
	bulkops_reserve(out, 1);
	out->data[out->len++] = c;
	out->data[out->len] = '\0';
}

#endif							/* BULKOPS_JSON_OUT_H */
