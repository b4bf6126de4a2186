/*-------------------------------------------------------------------------
 *
 * json_out.c
 *	  Quoting and escaping strings as JSON, fast: the one routine every
 *	  text value and every column name of an encoded row goes through.
 *
 * Pure functions on a StringInfo in the caller's memory context; no
 * catalog access, usable in or out of a transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "json_out.h"

/*
 * What each byte becomes inside a JSON string: 0 to copy it as it is, 'u'
 * for \u00XX, or the letter that follows the backslash.
 */
static const char json_escape[256] = {
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
	'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
	0, 0, '"', 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, '\\', 0, 0, 0,
	/* the rest, 0x60 to 0xff, is copied as it is */
};

/* Does any byte of w need escaping (below 0x20, '"' or '\\')? */
#define ONES64		UINT64CONST(0x0101010101010101)
#define HIGHS64		UINT64CONST(0x8080808080808080)
#define HAS_ZERO_BYTE(w)	(((w) - ONES64) & ~(w) & HIGHS64)
#define NEEDS_ESCAPE(w) \
	((((w) - ONES64 * 0x20) & ~(w) & HIGHS64) | \
	 HAS_ZERO_BYTE((w) ^ (ONES64 * '"')) | \
	 HAS_ZERO_BYTE((w) ^ (ONES64 * '\\')))

/*
 * Append str[0..len) as a quoted JSON string, escaped like escape_json()
 * does.  Text rarely needs escaping, so runs of plain bytes are found eight
 * at a time and copied with one memcpy.
 */
void
bulkops_json_string(StringInfo out, const char *str, int len)
{
	const unsigned char *p = (const unsigned char *) str;
	const unsigned char *end = p + len;
	const unsigned char *run = p;

	/* room for the usual case, where nothing needs escaping */
	bulkops_reserve(out, len + 2);
	out->data[out->len++] = '"';

	while (p < end)
	{
		char		esc;

		while (end - p >= 8)
		{
			uint64		w;

			memcpy(&w, p, sizeof(w));
			if (NEEDS_ESCAPE(w))
				break;
			p += 8;
		}
		if (p >= end)
			break;

		esc = json_escape[*p];
		if (likely(esc == 0))
		{
			p++;
			continue;
		}

		bulkops_append_bytes(out, (const char *) run, p - run);
		if (esc == 'u')
		{
			static const char hex[] = "0123456789abcdef";
			char		buf[6];

			buf[0] = '\\';
			buf[1] = 'u';
			buf[2] = '0';
			buf[3] = '0';
			buf[4] = hex[*p >> 4];
			buf[5] = hex[*p & 0x0f];
			bulkops_append_bytes(out, buf, 6);
		}
		else
		{
			char		buf[2];

			buf[0] = '\\';
			buf[1] = esc;
			bulkops_append_bytes(out, buf, 2);
		}
		run = ++p;
	}

	bulkops_append_bytes(out, (const char *) run, end - run);
	bulkops_append_char(out, '"');
}
