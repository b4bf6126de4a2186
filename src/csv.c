/*-------------------------------------------------------------------------
 *
 * csv.c
 *	  RFC 4180 CSV, both ways: quoting one field on the encoding hot path,
 *	  and reading a file that arrives in pieces (an HTTP answer streamed
 *	  through a callback) one record at a time.
 *
 * The reader holds one record, never the file: memory is bounded by the
 * largest record (max_record bytes, max_fields fields), whatever the size
 * of the file.  Records end
 * with LF, CRLF or a bare CR; quoted fields may hold any of them.  A line
 * with nothing on it is skipped.  Fields are separated by a comma, or by
 * another one-byte delimiter, given or learnt from the first record.
 *
 * Pure functions on the caller's memory (buffers are allocated in the
 * context current at bulkops_csv_reader_init); no catalog access, usable
 * in or out of a transaction.  Malformed input raises ERROR.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "csv.h"
#include "json_out.h"

/* ---- writing ---- */

#define ONES64		UINT64CONST(0x0101010101010101)
#define HIGHS64		UINT64CONST(0x8080808080808080)
#define HAS_ZERO_BYTE(w)	(((w) - ONES64) & ~(w) & HIGHS64)
#define HAS_BYTE(w, c)		HAS_ZERO_BYTE((w) ^ (ONES64 * (unsigned char) (c)))
/* a byte that needs quoting (, " CR LF) or refusing (NUL) */
#define CSV_SPECIAL(w) \
	(HAS_ZERO_BYTE(w) | HAS_BYTE(w, ',') | HAS_BYTE(w, '"') | \
	 HAS_BYTE(w, '\n') | HAS_BYTE(w, '\r'))

static const bool csv_special[256] = {
	[0] = true,[','] = true,['"'] = true,['\n'] = true,['\r'] = true
};

bool
bulkops_csv_field(StringInfo out, const char *s, int len)
{
	return bulkops_csv_field_delim(out, s, len, ',');
}

bool
bulkops_csv_field_delim(StringInfo out, const char *s, int len, char delim)
{
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;
	const char *q;

	/* most fields need no quoting: find out eight bytes at a time */
	while (end - p >= 8)
	{
		uint64		w;

		memcpy(&w, p, sizeof(w));
		if (CSV_SPECIAL(w))
			break;
		p += 8;
	}
	while (p < end && !csv_special[*p])
		p++;
	/* another delimiter than a comma needs quoting too */
	if (p == end && (delim == ',' || memchr(s, delim, len) == NULL))
	{
		bulkops_append_bytes(out, s, len);
		return true;
	}
	if (memchr(p, '\0', end - p) != NULL)
		return false;

	/* quoted: every inner quote doubled */
	bulkops_reserve(out, len + 2);
	out->data[out->len++] = '"';
	p = (const unsigned char *) s;
	while ((q = memchr(p, '"', end - p)) != NULL)
	{
		bulkops_append_bytes(out, (const char *) p, q - (const char *) p + 1);
		bulkops_append_char(out, '"');
		p = (const unsigned char *) q + 1;
	}
	bulkops_append_bytes(out, (const char *) p, end - p);
	bulkops_append_char(out, '"');
	return true;
}

/* ---- reading ---- */

typedef enum CsvState
{
	CSV_RECORD_START,			/* nothing of a record read yet */
	CSV_FIELD_START,			/* after a delimiter, or at a record's start */
	CSV_UNQUOTED,
	CSV_QUOTED,
	CSV_QUOTE,					/* a quote inside a quoted field: its end, or
								 * the first of a doubled quote */
	CSV_AFTER_CR				/* a record ended at CR; an LF may follow */
} CsvState;

/* What ends a run of plain bytes in an unquoted field of r. */
static void
set_stops(BulkopsCsvReader *r)
{
	const char *c;

	memset(r->stop, 0, sizeof(r->stop));
	r->stop['"'] = r->stop['\n'] = r->stop['\r'] = true;
	r->stop[(unsigned char) r->delim] = true;
	if (r->sniff)
		for (c = BULKOPS_CSV_DELIMITERS; *c; c++)
			r->stop[(unsigned char) *c] = true;
}

void
bulkops_csv_reader_init(BulkopsCsvReader *r, BulkopsCsvRecordFn on_record,
						void *arg, int max_record, int max_fields)
{
	memset(r, 0, sizeof(*r));
	r->on_record = on_record;
	r->arg = arg;
	r->max_record = max_record;
	r->max_fields = max_fields;
	r->delim = ',';
	set_stops(r);
	r->state = CSV_RECORD_START;
	initStringInfo(&r->buf);
	r->maxfields = 16;
	r->starts = palloc(sizeof(int) * (r->maxfields + 1));
	r->fields = palloc(sizeof(char *) * r->maxfields);
	r->lens = palloc(sizeof(int) * r->maxfields);
}

void
bulkops_csv_reader_delimiter(BulkopsCsvReader *r, char delim, bool sniff)
{
	Assert(delim != '\0' && strchr(BULKOPS_CSV_DELIMITERS, delim) != NULL);
	r->delim = delim;
	r->sniff = sniff;
	set_stops(r);
}

static void
malformed(BulkopsCsvReader *r, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
			 errmsg("malformed CSV in line " INT64_FORMAT ": %s", r->line, what)));
}

static inline void
append_checked(BulkopsCsvReader *r, const char *p, int n)
{
	if (unlikely(r->buf.len + n > r->max_record))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("CSV record in line " INT64_FORMAT " is longer than %d bytes",
						r->line, r->max_record)));
	bulkops_append_bytes(&r->buf, p, n);
}

static void
begin_field(BulkopsCsvReader *r)
{
	if (unlikely(r->nfields >= r->max_fields))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("CSV record in line " INT64_FORMAT " has more than %d fields",
						r->line, r->max_fields)));
	if (r->nfields == r->maxfields)
	{
		r->maxfields *= 2;
		r->starts = repalloc(r->starts, sizeof(int) * (r->maxfields + 1));
		r->fields = repalloc(r->fields, sizeof(char *) * r->maxfields);
		r->lens = repalloc(r->lens, sizeof(int) * r->maxfields);
	}
	r->starts[r->nfields] = r->buf.len;
}

static void
end_field(BulkopsCsvReader *r)
{
	r->lens[r->nfields] = r->buf.len - r->starts[r->nfields];
	bulkops_append_char(&r->buf, '\0');
	r->nfields++;
}

static void
end_record(BulkopsCsvReader *r)
{
	int			i;

	r->state = CSV_RECORD_START;
	if (r->sniff)
	{
		/* one field only: no delimiter to learn */
		r->sniff = false;
		set_stops(r);
	}
	/* a line with nothing on it is no record */
	if (r->nfields == 1 && r->lens[0] == 0 && !r->quoted)
		return;
	for (i = 0; i < r->nfields; i++)
		r->fields[i] = r->buf.data + r->starts[i];
	r->records++;
	r->on_record(r->arg, r->nfields, r->fields, r->lens);
}

/*
 * A field ends at c if it is the delimiter (while sniffing, any of them),
 * LF or CR; false for any other byte.
 */
static bool
end_at(BulkopsCsvReader *r, char c)
{
	if (c == r->delim ||
		(r->sniff && c != '\0' && strchr(BULKOPS_CSV_DELIMITERS, c) != NULL))
	{
		if (r->sniff)
		{
			r->delim = c;
			r->sniff = false;
			set_stops(r);
		}
		end_field(r);
		r->state = CSV_FIELD_START;
		return true;
	}
	switch (c)
	{
		case '\n':
		case '\r':
			r->lines++;
			end_field(r);
			end_record(r);
			if (c == '\r')
				r->state = CSV_AFTER_CR;
			return true;
		default:
			return false;
	}
}

void
bulkops_csv_feed(BulkopsCsvReader *r, const char *data, size_t len)
{
	const char *p = data;
	const char *end = data + len;

	while (p < end)
	{
		switch ((CsvState) r->state)
		{
			case CSV_AFTER_CR:
				r->state = CSV_RECORD_START;
				if (*p == '\n')
				{
					p++;
					break;
				}
				/* FALLTHROUGH */
			case CSV_RECORD_START:
				resetStringInfo(&r->buf);
				r->nfields = 0;
				r->quoted = false;
				r->line = r->lines + 1;
				r->state = CSV_FIELD_START;
				/* FALLTHROUGH */
			case CSV_FIELD_START:
				begin_field(r);
				if (*p == '"')
				{
					r->quoted = true;
					r->state = CSV_QUOTED;
					p++;
				}
				else
					r->state = CSV_UNQUOTED;
				break;
			case CSV_UNQUOTED:
				{
					const char *q = p;

					while (q < end && !r->stop[(unsigned char) *q])
						q++;
					append_checked(r, p, q - p);
					p = q;
					if (p == end)
						break;
					if (!end_at(r, *p++))
						malformed(r, "a double quote inside an unquoted field");
				}
				break;
			case CSV_QUOTED:
				{
					const char *q = memchr(p, '"', end - p);
					const char *nl;

					if (q == NULL)
						q = end;
					for (nl = p; (nl = memchr(nl, '\n', q - nl)) != NULL; nl++)
						r->lines++;
					append_checked(r, p, q - p);
					p = q;
					if (p < end)
					{
						p++;
						r->state = CSV_QUOTE;
					}
				}
				break;
			case CSV_QUOTE:
				if (*p == '"')
				{
					p++;
					append_checked(r, "\"", 1);
					r->state = CSV_QUOTED;
				}
				else if (!end_at(r, *p++))
					malformed(r, "text after the closing quote of a field");
				break;
		}
	}
}

void
bulkops_csv_finish(BulkopsCsvReader *r)
{
	switch ((CsvState) r->state)
	{
		case CSV_RECORD_START:
		case CSV_AFTER_CR:
			break;
		case CSV_QUOTED:
			malformed(r, "a quoted field is not closed at the end of the file");
			break;
		case CSV_FIELD_START:
			/* a delimiter was the last byte: one more, empty, field */
			begin_field(r);
			/* FALLTHROUGH */
		case CSV_UNQUOTED:
		case CSV_QUOTE:
			end_field(r);
			end_record(r);
			break;
	}
}
