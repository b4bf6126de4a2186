/*-------------------------------------------------------------------------
 *
 * sink_load.c
 *	  Loading one page of an export into its table: CSV records parsed,
 *	  their values converted from the remote side's notation and through
 *	  each column's input function, then inserted a chunk at a time.  A
 *	  record the table refuses becomes a reject instead of failing the page.
 *
 * The conversion step.  Salesforce writes every field quoted, an empty or
 * null value as "", and numbers in decimal notation ("23.0") even for
 * integer fields; its dates (2024-05-01), datetimes
 * (2024-05-01T12:34:56.000+0000) and booleans (true, false) are taken by
 * PostgreSQL's own input functions as they are.  So, per column, decided
 * once per page from the column's type (a domain's base type):
 *	 - an unquoted empty field is NULL, as in COPY's CSV;
 *	 - a quoted empty one ("") is NULL too, except in a column of the string
 *	   category (text, varchar, char, name, citext...), which keeps the
 *	   empty string unless option empty_as_null says otherwise;
 *	 - in a smallint, integer or bigint column, an integral value in
 *	   decimal notation loses its fraction of zeros: "23.0" is 23, while
 *	   "23.5" reaches int4in as it is, and is refused;
 *	 - everything else goes to the input function untouched.
 * Values arrive as UTF-8: a page that is valid UTF-8 in a UTF-8 database
 * needs no conversion; otherwise each value is converted, so that a bad
 * byte costs its record, not the page.
 *
 * The insert.  The converted values of a record become one composite
 * Datum of the table's row type, and a chunk of them (up to CHUNK_ROWS
 * records) one array, the single parameter of
 *	 INSERT INTO t (cols) OVERRIDING SYSTEM VALUE
 *	   SELECT r.cols FROM pg_catalog.unnest($1) AS r
 *	   [ON CONFLICT (merge_key) DO UPDATE SET col = EXCLUDED.col, ...]
 * prepared once per page.  The table's own machinery applies: defaults,
 * constraints, triggers (statement triggers fire once per chunk), indexes,
 * partition routing, and for merge ON CONFLICT.
 *
 * Rejects.  Unless the job is strict, a record whose conversion or insert
 * fails with a data exception (SQLSTATE class 22) or an integrity
 * constraint violation (class 23) is set aside with the reason, and the
 * others go on.  Both steps run in subtransactions, the only safe way to
 * survive an error raised by user code (a domain's check, a trigger):
 * conversion in one per chunk, which is ended at a failing record and
 * started again after it; the insert in one per chunk, and when that
 * fails, in halves, down to single records.  Any other error (permissions,
 * a lock, bulkops.user_code_timeout, out of memory) fails the page as it
 * did before, and the caller decides what that means.
 *
 * Memory: the page stays where the caller holds it; it is parsed a chunk
 * at a time (the chunk's unescaped fields, then its converted rows), and a
 * chunk's memory is released before the next.  Rejects point into the
 * page instead of copying their records.
 *
 * Runs as the export's creator inside the caller's user section (sink.c),
 * with its own SPI connection.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "parser/parse_relation.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "bulkops.h"
#include "sink_load.h"

/* records (and bytes of their fields) converted and inserted at once */
#define CHUNK_ROWS 1000
#define CHUNK_BYTES (8 * 1024 * 1024)
/* a refused range of rows this small is tried row by row, not halved */
#define SPLIT_ROWS 16

/* A column of the page, in header order, and how its values load. */
typedef struct SinkColumn
{
	const char *name;
	int			att;			/* index in the table's tuple descriptor */
	FmgrInfo	infunc;
	Oid			ioparam;
	int32		typmod;
	bool		integral;		/* smallint, integer, bigint (or a domain) */
	bool		keep_empty;		/* "" stays the empty string */
} SinkColumn;

/* The records of one chunk: parsed, then converted. */
typedef struct Chunk
{
	int			nrec;
	int			maxrec;
	int		   *first_field;	/* per record, and one past the last */
	int		   *raw_off;		/* the record's bytes in the page */
	int		   *raw_len;
	int			nfields;
	int			maxfields;
	int		   *field_off;		/* in buf; -1: an unquoted empty field */
	int		   *field_len;
	StringInfoData buf;			/* unescaped fields, each NUL-terminated */
	Datum	   *rows;			/* converted records: composite Datums */
	int		   *row_rec;		/* the record each converted row is */
	int			nrows;
} Chunk;

typedef struct Loader
{
	const SinkLoadSpec *spec;
	SinkLoadResult *out;
	TupleDesc	desc;
	SinkColumn *cols;
	int			ncols;
	int			key_col;		/* merge_key's index in cols, or -1 */
	bool		convert;		/* values need converting from UTF-8 */
	const char *data;
	size_t		len;
	size_t		pos;			/* where parsing stands */
	int64		rec_base;		/* records of the page before this chunk */
	Chunk		chunk;
	Datum	   *values;			/* one record, the table's natts */
	bool	   *nulls;
	SPIPlanPtr	plan;
	Oid			row_type;
	int16		row_typlen;
	bool		row_typbyval;
	char		row_typalign;
	int			cur_rec;		/* the record being converted, or -1 */
	int			cur_col;		/* the column being converted, or -1 */
	MemoryContext cxt;			/* the load's */
	MemoryContext chunk_cxt;	/* one chunk's values, reset per chunk */
	MemoryContext result_cxt;	/* where out's rejects go */
} Loader;

/* A step run in a subtransaction: rows [a, b) of the chunk. */
typedef void (*LoadStep) (Loader *l, int a, int b);

/* ---- parsing ---- */

/* bytes that end an unquoted field, or may not be in one */
static bool unquoted_stop[256];

static void
malformed(Loader *l, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
			 errmsg("malformed CSV in record " INT64_FORMAT " of a page: %s",
					l->rec_base + l->chunk.nrec + 1, what)));
}

static void
add_field(Loader *l, int off, int len)
{
	Chunk	   *c = &l->chunk;

	if (c->nfields == c->maxfields)
	{
		c->maxfields *= 2;
		c->field_off = repalloc(c->field_off, sizeof(int) * c->maxfields);
		c->field_len = repalloc(c->field_len, sizeof(int) * c->maxfields);
	}
	c->field_off[c->nfields] = off;
	c->field_len[c->nfields] = len;
	c->nfields++;
}

/*
 * Parse the record at l->pos into the chunk (RFC 4180: fields separated by
 * commas, quoted or not, "" a quote inside a quoted field; a record ends
 * at LF, CRLF or CR).  Lines with nothing on them are no records.  Returns
 * false at the end of the data.
 */
static bool
parse_record(Loader *l)
{
	Chunk	   *c = &l->chunk;
	const char *d = l->data;
	size_t		end = l->len;
	size_t		p = l->pos;
	size_t		start;

	while (p < end && (d[p] == '\n' || d[p] == '\r'))
		p++;
	if (p >= end)
	{
		l->pos = p;
		return false;
	}
	if (c->nrec + 1 == c->maxrec)
	{
		c->maxrec *= 2;
		c->first_field = repalloc(c->first_field, sizeof(int) * c->maxrec);
		c->raw_off = repalloc(c->raw_off, sizeof(int) * c->maxrec);
		c->raw_len = repalloc(c->raw_len, sizeof(int) * c->maxrec);
	}
	c->first_field[c->nrec] = c->nfields;
	start = p;
	for (;;)
	{
		if (p < end && d[p] == '"')
		{
			int			off = c->buf.len;

			p++;
			for (;;)
			{
				const char *q = memchr(d + p, '"', end - p);

				if (q == NULL)
					malformed(l, "a quoted field is not closed");
				appendBinaryStringInfo(&c->buf, d + p, q - (d + p));
				p = q - d + 1;
				if (p < end && d[p] == '"')
				{
					appendStringInfoChar(&c->buf, '"');
					p++;
					continue;
				}
				break;
			}
			add_field(l, off, c->buf.len - off);
			appendStringInfoChar(&c->buf, '\0');
			if (p < end && d[p] != ',' && d[p] != '\n' && d[p] != '\r')
				malformed(l, "text after the closing quote of a field");
		}
		else
		{
			size_t		q = p;

			while (q < end && !unquoted_stop[(unsigned char) d[q]])
				q++;
			if (q < end && d[q] == '"')
				malformed(l, "a double quote inside an unquoted field");
			if (q == p)
				add_field(l, -1, 0);
			else
			{
				add_field(l, c->buf.len, q - p);
				appendBinaryStringInfo(&c->buf, d + p, q - p);
				appendStringInfoChar(&c->buf, '\0');
			}
			p = q;
		}
		if (p < end && d[p] == ',')
		{
			p++;
			continue;
		}
		break;
	}
	c->raw_off[c->nrec] = start;
	c->raw_len[c->nrec] = p - start;
	c->nrec++;
	c->first_field[c->nrec] = c->nfields;
	if (p < end && d[p] == '\r')
		p++;
	if (p < end && d[p] == '\n')
		p++;
	l->pos = p;
	return true;
}

/* Parse the next chunk's records; false when there are none. */
static bool
parse_chunk(Loader *l)
{
	Chunk	   *c = &l->chunk;

	c->nrec = 0;
	c->nfields = 0;
	c->nrows = 0;
	resetStringInfo(&c->buf);
	while (c->nrec < CHUNK_ROWS && c->buf.len < CHUNK_BYTES && parse_record(l))
		CHECK_FOR_INTERRUPTS();
	return c->nrec > 0;
}

/* ---- conversion ---- */

/*
 * "23.0", "-7.", "+12.000": an integral value in decimal notation, as
 * Salesforce writes numbers, is cut at the point (in place).  Anything
 * else is left for the input function to take or refuse.
 */
static void
cut_zero_fraction(char *s)
{
	char	   *p = s;
	char	   *dot;

	if (*p == '+' || *p == '-')
		p++;
	if (*p < '0' || *p > '9')
		return;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p != '.')
		return;
	dot = p++;
	while (*p == '0')
		p++;
	if (*p == '\0')
		*dot = '\0';
}

/* Record r of the chunk as one row of the table's type, or ERROR. */
static void
convert_record(Loader *l, int r)
{
	Chunk	   *c = &l->chunk;
	int			nf = c->first_field[r + 1] - c->first_field[r];
	int			i;

	if (nf != l->ncols)
		ereport(ERROR,
				(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
				 errmsg("the record has %d fields, the header %d", nf, l->ncols)));
	memset(l->nulls, true, sizeof(bool) * l->desc->natts);
	for (i = 0; i < l->ncols; i++)
	{
		SinkColumn *col = &l->cols[i];
		int			f = c->first_field[r] + i;
		char	   *s = NULL;

		l->cur_col = i;
		if (c->field_off[f] >= 0)
		{
			s = c->buf.data + c->field_off[f];
			if (l->convert)
				s = pg_any_to_server(s, c->field_len[f], PG_UTF8);
			if (s[0] == '\0')
			{
				if (!col->keep_empty)
					s = NULL;
			}
			else if (col->integral)
				cut_zero_fraction(s);
		}
		/* a domain's input function sees NULL too: it may refuse it */
		l->values[col->att] = InputFunctionCall(&col->infunc, s, col->ioparam,
												col->typmod);
		l->nulls[col->att] = (s == NULL);
	}
	if (l->key_col >= 0 && l->nulls[l->cols[l->key_col].att])
	{
		/* NULLs never conflict: the row would be added, not merged */
		l->cur_col = l->key_col;
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("the merge key \"%s\" is empty", l->spec->merge_key)));
	}
	l->cur_col = -1;
	/* heap_form_tuple labels it with the row type: a composite Datum */
	c->rows[c->nrows] = HeapTupleGetDatum(heap_form_tuple(l->desc, l->values,
														  l->nulls));
	c->row_rec[c->nrows] = r;
	c->nrows++;
}

/* Convert records [a, b) of the chunk, in order. */
static void
convert_records(Loader *l, int a, int b)
{
	int			r;

	for (r = a; r < b; r++)
	{
		l->cur_rec = r;
		convert_record(l, r);
		if ((r & 255) == 255)
			CHECK_FOR_INTERRUPTS();
	}
	l->cur_rec = -1;
}

/* ---- inserting ---- */

/* Insert converted rows [a, b) of the chunk with one statement. */
static void
insert_rows(Loader *l, int a, int b)
{
	Chunk	   *c = &l->chunk;
	int			n = b - a;
	int			lb = 1;
	Datum		param;
	int			rc;

	l->cur_rec = n == 1 ? c->row_rec[a] : -1;
	param = PointerGetDatum(construct_md_array(c->rows + a, NULL, 1, &n, &lb,
											   l->row_type, l->row_typlen,
											   l->row_typbyval,
											   l->row_typalign));
	rc = SPI_execute_plan(l->plan, &param, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not insert a page's rows: %s", SPI_result_code_string(rc));
	l->cur_rec = -1;
}

/* ---- rejects ---- */

/* Could the record itself be what the table refused? */
static bool
rejectable(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category == ERRCODE_DATA_EXCEPTION ||
		category == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION;
}

/*
 * Run step over rows [a, b) in a subtransaction.  NULL when it went
 * through; else the error, with the subtransaction rolled back, when it is
 * one a part of the rows may have caused (rejectable, or two rows of one
 * statement meeting the same row in ON CONFLICT); any other error is
 * raised again.
 */
static ErrorData *
attempt(Loader *l, LoadStep step, int a, int b)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		step(l, a, b);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(l->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (edata && !rejectable(edata->sqlerrcode) &&
		edata->sqlerrcode != ERRCODE_CARDINALITY_VIOLATION)
		ReThrowError(edata);
	return edata;
}

/* Set record r of the chunk aside, refused for edata, which goes. */
static void
reject(Loader *l, int r, const char *column, ErrorData *edata)
{
	MemoryContext old;
	SinkReject *rj;

	if (!rejectable(edata->sqlerrcode))
		ReThrowError(edata);
	old = MemoryContextSwitchTo(l->result_cxt);
	rj = palloc(sizeof(SinkReject));
	rj->row_no = l->spec->first_row + l->rec_base + r;
	rj->raw_off = l->chunk.raw_off[r];
	rj->raw_len = l->chunk.raw_len[r];
	rj->column = column ? pstrdup(column) : NULL;
	rj->sqlerrcode = edata->sqlerrcode;
	rj->reason = edata->detail
		? psprintf("%s (%s)", edata->message, edata->detail)
		: pstrdup(edata->message);
	l->out->rejects = lappend(l->out->rejects, rj);
	MemoryContextSwitchTo(old);
	FreeErrorData(edata);
}

/*
 * Convert the chunk's records.  Strict: the first refusal fails the page,
 * its message naming the row and the column.  Else a refused record is
 * set aside and the conversion goes on after it.
 */
static void
convert_chunk(Loader *l)
{
	Chunk	   *c = &l->chunk;
	int			r = 0;

	if (l->spec->strict)
	{
		MemoryContext cxt = CurrentMemoryContext;

		PG_TRY();
		{
			convert_records(l, 0, c->nrec);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(l->cxt);
			edata = CopyErrorData();
			if (!rejectable(edata->sqlerrcode) || l->cur_rec < 0)
			{
				MemoryContextSwitchTo(cxt);
				PG_RE_THROW();
			}
			FlushErrorState();
			edata->message = l->cur_col >= 0
				? psprintf("%s (row " INT64_FORMAT ", column \"%s\")", edata->message,
						   l->spec->first_row + l->rec_base + l->cur_rec,
						   l->cols[l->cur_col].name)
				: psprintf("%s (row " INT64_FORMAT ")", edata->message,
						   l->spec->first_row + l->rec_base + l->cur_rec);
			ReThrowError(edata);
		}
		PG_END_TRY();
		return;
	}
	while (r < c->nrec)
	{
		ErrorData  *edata = attempt(l, convert_records, r, c->nrec);

		if (edata == NULL)
			break;
		if (l->cur_rec < 0)
			ReThrowError(edata);
		r = l->cur_rec;
		reject(l, r, l->cur_col >= 0 ? l->cols[l->cur_col].name : NULL, edata);
		l->cur_rec = -1;
		l->cur_col = -1;
		r++;
	}
}

/*
 * Insert converted rows [a, b).  Strict: as one statement.  Else, when the
 * statement fails for what some row may be, the range is tried again in
 * halves, small ranges row by row, and a single row that still fails is
 * set aside.
 */
static void
insert_range(Loader *l, int a, int b)
{
	ErrorData  *edata;
	int			i;

	if (l->spec->strict)
	{
		insert_rows(l, a, b);
		l->out->stored += b - a;
		return;
	}
	edata = attempt(l, insert_rows, a, b);
	if (edata == NULL)
	{
		l->out->stored += b - a;
		return;
	}
	l->cur_rec = -1;
	if (b - a == 1)
	{
		reject(l, l->chunk.row_rec[a], edata->column_name, edata);
		return;
	}
	FreeErrorData(edata);
	if (b - a <= SPLIT_ROWS)
		for (i = a; i < b; i++)
			insert_range(l, i, i + 1);
	else
	{
		insert_range(l, a, a + (b - a) / 2);
		insert_range(l, a + (b - a) / 2, b);
	}
}

/* ---- the page ---- */

/* Which row, for the log's CONTEXT line of an error. */
static void
load_context(void *arg)
{
	Loader	   *l = arg;

	if (l->cur_rec < 0)
		return;
	if (l->cur_col >= 0)
		errcontext("row " INT64_FORMAT " of the export, column \"%s\"",
				   l->spec->first_row + l->rec_base + l->cur_rec,
				   l->cols[l->cur_col].name);
	else
		errcontext("row " INT64_FORMAT " of the export",
				   l->spec->first_row + l->rec_base + l->cur_rec);
}

/* The page's columns: where each goes and how its values are read. */
static void
setup_columns(Loader *l)
{
	const SinkLoadSpec *spec = l->spec;
	ListCell   *lc;

	l->ncols = list_length(spec->names);
	l->cols = palloc0(sizeof(SinkColumn) * Max(l->ncols, 1));
	l->key_col = -1;
	foreach(lc, spec->names)
	{
		SinkColumn *col = &l->cols[foreach_current_index(lc)];
		AttrNumber	att = attnameAttNum(spec->rel, strVal(lfirst(lc)), false);
		Form_pg_attribute a;
		Oid			func;
		Oid			base;

		/* sink.c checked them */
		if (att <= 0)
			elog(ERROR, "no column \"%s\"", strVal(lfirst(lc)));
		a = TupleDescAttr(l->desc, att - 1);
		col->name = strVal(lfirst(lc));
		col->att = att - 1;
		col->typmod = a->atttypmod;
		getTypeInputInfo(a->atttypid, &func, &col->ioparam);
		fmgr_info_cxt(func, &col->infunc, l->cxt);
		base = getBaseType(a->atttypid);
		col->integral = (base == INT2OID || base == INT4OID || base == INT8OID);
		col->keep_empty = !spec->empty_as_null &&
			TypeCategory(base) == TYPCATEGORY_STRING;
		if (spec->mode == SINK_MERGE && strcmp(col->name, spec->merge_key) == 0)
			l->key_col = foreach_current_index(lc);
	}
	if (spec->mode == SINK_MERGE && l->key_col < 0)
		elog(ERROR, "no merge key column \"%s\"", spec->merge_key);
}

/* The one statement that inserts a chunk: INSERT ... unnest($1) ... */
static void
prepare_insert(Loader *l)
{
	Relation	rel = l->spec->rel;
	StringInfoData sql;
	Oid			array_type;
	int			i;
	bool		first = true;

	l->row_type = RelationGetDescr(rel)->tdtypeid;
	array_type = get_array_type(l->row_type);
	if (!OidIsValid(array_type))
		elog(ERROR, "the row type of table \"%s\" has no array type",
			 RelationGetRelationName(rel));
	get_typlenbyvalalign(l->row_type, &l->row_typlen, &l->row_typbyval,
						 &l->row_typalign);

	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s (",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)));
	for (i = 0; i < l->ncols; i++)
		appendStringInfo(&sql, "%s%s", i ? ", " : "", quote_identifier(l->cols[i].name));
	/* as COPY does, values for identity columns are taken as they are */
	appendStringInfoString(&sql, ") OVERRIDING SYSTEM VALUE SELECT ");
	for (i = 0; i < l->ncols; i++)
		appendStringInfo(&sql, "%sr.%s", i ? ", " : "", quote_identifier(l->cols[i].name));
	appendStringInfoString(&sql, " FROM pg_catalog.unnest($1) AS r");
	if (l->spec->mode == SINK_MERGE)
	{
		appendStringInfo(&sql, " ON CONFLICT (%s) DO ",
						 quote_identifier(l->spec->merge_key));
		for (i = 0; i < l->ncols; i++)
		{
			const char *n = quote_identifier(l->cols[i].name);

			if (i == l->key_col)
				continue;
			appendStringInfo(&sql, "%s%s = EXCLUDED.%s",
							 first ? "UPDATE SET " : ", ", n, n);
			first = false;
		}
		if (first)
			appendStringInfoString(&sql, "NOTHING");
	}
	l->plan = SPI_prepare(sql.data, 1, &array_type);
	if (l->plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));
}

/*
 * The header names of a page (its first line, RFC 4180 quoting), and the
 * length of that line with its line break in *header_len.
 */
List *
sink_header_names(const char *page, size_t len, size_t *header_len)
{
	List	   *names = NIL;
	StringInfoData f;
	size_t		i = 0;
	bool		quoted = false;

	initStringInfo(&f);
	while (i < len)
	{
		char		c = page[i++];

		if (quoted)
		{
			if (c == '"' && i < len && page[i] == '"')
			{
				appendStringInfoChar(&f, '"');
				i++;
			}
			else if (c == '"')
				quoted = false;
			else
				appendStringInfoChar(&f, c);
		}
		else if (c == '"')
			quoted = true;
		else if (c == ',' || c == '\n' || c == '\r')
		{
			names = lappend(names, makeString(pstrdup(f.data)));
			resetStringInfo(&f);
			if (c != ',')
			{
				if (c == '\r' && i < len && page[i] == '\n')
					i++;
				break;
			}
		}
		else
			appendStringInfoChar(&f, c);
	}
	if (i >= len && f.len > 0)
		names = lappend(names, makeString(pstrdup(f.data)));
	*header_len = i;
	if (names == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
				 errmsg("the remote answer has no header line")));
	return names;
}

/*
 * Load data[0..len), a page's records after its header line, into
 * spec->rel as spec says; out says what happened (its rejects are
 * allocated in the current memory context, and point into data).
 */
void
sink_load_page(const SinkLoadSpec *spec, const char *data, size_t len,
			   SinkLoadResult *out)
{
	Loader		l;
	Chunk	   *c = &l.chunk;
	ErrorContextCallback errcb;

	memset(&l, 0, sizeof(l));
	out->records = 0;
	out->stored = 0;
	out->rejects = NIL;
	if (len > (size_t) PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a page of %zu bytes is too large to load", len)));
	if (!unquoted_stop[(unsigned char) ','])
	{
		unquoted_stop[','] = unquoted_stop['\n'] = true;
		unquoted_stop['\r'] = unquoted_stop['"'] = true;
	}

	l.spec = spec;
	l.out = out;
	l.data = data;
	l.len = len;
	l.cur_rec = -1;
	l.cur_col = -1;
	l.result_cxt = CurrentMemoryContext;
	l.cxt = AllocSetContextCreate(CurrentMemoryContext, "bulkops page load",
								  ALLOCSET_DEFAULT_SIZES);
	l.chunk_cxt = AllocSetContextCreate(l.cxt, "bulkops page chunk",
										ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(l.cxt);
	c->maxrec = 1024;
	c->first_field = palloc(sizeof(int) * c->maxrec);
	c->raw_off = palloc(sizeof(int) * c->maxrec);
	c->raw_len = palloc(sizeof(int) * c->maxrec);
	c->maxfields = 1024;
	c->field_off = palloc(sizeof(int) * c->maxfields);
	c->field_len = palloc(sizeof(int) * c->maxfields);
	initStringInfo(&c->buf);

	if (spec->count_only)
	{
		while (parse_chunk(&l))
		{
			out->records += c->nrec;
			l.rec_base += c->nrec;
		}
		MemoryContextSwitchTo(l.result_cxt);
		MemoryContextDelete(l.cxt);
		return;
	}

	l.desc = RelationGetDescr(spec->rel);
	l.values = palloc(sizeof(Datum) * Max(l.desc->natts, 1));
	l.nulls = palloc(sizeof(bool) * Max(l.desc->natts, 1));
	c->rows = palloc(sizeof(Datum) * (CHUNK_ROWS + 1));
	c->row_rec = palloc(sizeof(int) * (CHUNK_ROWS + 1));
	setup_columns(&l);
	/* valid UTF-8 in a UTF-8 database is what it is; else value by value */
	l.convert = !(GetDatabaseEncoding() == PG_UTF8 &&
				  pg_verify_mbstr(PG_UTF8, data, (int) len, true));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	MemoryContextSwitchTo(l.cxt);
	prepare_insert(&l);

	errcb.callback = load_context;
	errcb.arg = &l;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	while (parse_chunk(&l))
	{
		MemoryContextSwitchTo(l.chunk_cxt);
		convert_chunk(&l);
		if (c->nrows > 0)
			insert_range(&l, 0, c->nrows);
		MemoryContextSwitchTo(l.cxt);
		MemoryContextReset(l.chunk_cxt);
		out->records += c->nrec;
		l.rec_base += c->nrec;
	}
	error_context_stack = errcb.previous;

	SPI_finish();
	MemoryContextSwitchTo(l.result_cxt);
	MemoryContextDelete(l.cxt);
}
