/*-------------------------------------------------------------------------
 *
 * joblog.c
 *	  What a job came to, in one line: one LOG line per job that ends, for
 *	  a DBA to grep, and the same words for whoever waits for it
 *	  (bulkops.wait(), bulkops.job_summary()):
 *
 *	  job 42 on target "crm" upsert ended partial: 9800 succeeded, 200
 *	  failed (VALIDATION 200), 10000 rows in 3.2 s
 *
 * The error codes are the three most of the job's failed rows had, counted
 * where receipts are stored (bulkops_joblog_failed_codes gives one
 * answer's, which catalog.c adds to the job's error_counts in the
 * receipts' transaction), never by reading the receipts back.
 *
 * The LOG line is written when the transaction that ended the job commits
 * (a transaction callback), so a rollback, of the transaction or of the
 * subtransaction that ended the job, writes none; it waits in
 * TopTransactionContext meanwhile.  It names the job, its target, its
 * operation, counts and the remote side's error codes: no secret, no data
 * of a row.  Control characters a remote side put in a code are replaced,
 * so a line is one line.  Nothing here runs a statement.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "joblog.h"

/* the most distinct codes counted per answer (and per job, catalog.c) */
#define MAX_CODES 32
/* a code is cut to this many bytes */
#define MAX_CODE_LEN 64
/* where codes beyond MAX_CODES are counted */
#define OTHER_CODES "(other)"

/* A line to log when the transaction commits. */
typedef struct PendingLine
{
	char	   *text;
	int			level;			/* the (sub)transaction that wrote it */
} PendingLine;

static List *pending = NIL;		/* of PendingLine *, in TopTransactionContext */
static bool callbacks_registered = false;

/* ---- summaries ---- */

static char *
column_text(HeapTuple row, TupleDesc desc, int col)
{
	char	   *s = SPI_getvalue(row, desc, col);

	return s ? pstrdup(s) : NULL;
}

static int64
column_int64(HeapTuple row, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(row, desc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * Fill s from row, whose columns first .. first + BULKOPS_JOB_SUMMARY_
 * NCOLUMNS - 1 are BULKOPS_JOB_SUMMARY_COLUMNS; in the current context.
 */
void
bulkops_job_summary_read(HeapTuple row, TupleDesc desc, int first,
						 BulkopsJobSummary *s)
{
	bool		isnull;
	Datum		d;

	s->id = column_int64(row, desc, first);
	s->target = column_text(row, desc, first + 1);
	s->operation = column_text(row, desc, first + 2);
	s->state = column_text(row, desc, first + 3);
	s->total = column_int64(row, desc, first + 4);
	s->succeeded = column_int64(row, desc, first + 5);
	s->failed = column_int64(row, desc, first + 6);
	s->cancelled = column_int64(row, desc, first + 7);
	s->unknown = column_int64(row, desc, first + 8);
	s->top_codes = column_text(row, desc, first + 9);
	d = SPI_getbinval(row, desc, first + 10, &isnull);
	s->seconds = isnull ? 0 : DatumGetFloat8(d);
}

/* s with every control character replaced: a log line stays one line. */
static char *
one_line(char *s)
{
	char	   *p;

	for (p = s; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			*p = '?';
	return s;
}

/*
 * "job 42 on target "crm" upsert ended partial: 9800 succeeded, 200 failed
 * (VALIDATION 200), 10000 rows in 3.2 s"; for a job not yet final, "is
 * running: ..., 3.2 s so far".  Cancelled and unknown rows are named when
 * there are some.
 */
char *
bulkops_job_summary_text(const BulkopsJobSummary *s)
{
	StringInfoData buf;
	bool		final = strcmp(s->state, "queued") != 0 &&
	strcmp(s->state, "running") != 0;

	initStringInfo(&buf);
	appendStringInfo(&buf, "job " INT64_FORMAT " on target \"%s\" %s %s %s: "
					 INT64_FORMAT " succeeded, " INT64_FORMAT " failed",
					 s->id, s->target, s->operation, final ? "ended" : "is",
					 s->state, s->succeeded, s->failed);
	if (s->top_codes && s->failed > 0)
		appendStringInfo(&buf, " (%s)", s->top_codes);
	if (s->cancelled > 0)
		appendStringInfo(&buf, ", " INT64_FORMAT " cancelled", s->cancelled);
	if (s->unknown > 0)
		appendStringInfo(&buf, ", " INT64_FORMAT " unknown", s->unknown);
	appendStringInfo(&buf, ", " INT64_FORMAT " rows %s %.1f s%s", s->total,
					 final ? "in" : "after", s->seconds, final ? "" : " so far");
	return one_line(buf.data);
}

/* ---- the LOG line, at commit ---- */

static void
joblog_xact(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
			foreach(lc, pending)
				ereport(LOG,
						(errmsg("bulkops: %s", ((PendingLine *) lfirst(lc))->text)));
			pending = NIL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction ends elsewhere; its job says how */
			pending = NIL;
			break;
		default:
			break;
	}
}

static void
joblog_subxact(SubXactEvent event, SubTransactionId mySubid,
			   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	List	   *keep = NIL;
	ListCell   *lc;
	MemoryContext old;

	if (pending == NIL ||
		(event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB))
		return;
	old = MemoryContextSwitchTo(TopTransactionContext);
	foreach(lc, pending)
	{
		PendingLine *p = lfirst(lc);

		if (p->level < level)
			keep = lappend(keep, p);
		else if (event == SUBXACT_EVENT_COMMIT_SUB)
		{
			/* its parent commits it now */
			p->level = level - 1;
			keep = lappend(keep, p);
		}
	}
	MemoryContextSwitchTo(old);
	pending = keep;
}

/* Job s ended in this transaction: log it if that commits. */
void
bulkops_joblog_ended(const BulkopsJobSummary *s)
{
	MemoryContext old;
	PendingLine *p;

	if (!callbacks_registered)
	{
		RegisterXactCallback(joblog_xact, NULL);
		RegisterSubXactCallback(joblog_subxact, NULL);
		callbacks_registered = true;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	p = palloc(sizeof(PendingLine));
	p->text = bulkops_job_summary_text(s);
	p->level = GetCurrentTransactionNestLevel();
	pending = lappend(pending, p);
	MemoryContextSwitchTo(old);
}

/* ---- error codes, counted as receipts are stored ---- */

/*
 * The error codes of the rows set's last answer settled as failed, as a
 * JSON object of counts ({"VALIDATION": 2}), or NULL when none has a code.
 * At most MAX_CODES codes, each cut to MAX_CODE_LEN bytes; the rows of
 * further codes are counted under OTHER_CODES.
 */
char *
bulkops_joblog_failed_codes(const BulkopsReceiptSet *set)
{
	const char *codes[MAX_CODES + 1];
	int64		counts[MAX_CODES + 1];
	int			ncodes = 0;
	int			answer = set->nanswers - 1;
	StringInfoData buf;
	int			row;
	int			i;

	for (row = 0; row < set->nrows; row++)
	{
		BulkopsRowStatus status;
		const char *code;
		char	   *cut;

		if (!bulkops_receipts_status(set, row, &status) ||
			status != BULKOPS_ROW_FAILED || set->answer_of[row] != answer)
			continue;
		code = bulkops_receipts_error_code(set, row);
		if (code == NULL)
			continue;
		cut = pnstrdup(code, pg_mbcliplen(code, strlen(code), MAX_CODE_LEN));
		for (i = 0; i < ncodes; i++)
			if (strcmp(codes[i], cut) == 0)
				break;
		if (i == ncodes && ncodes >= MAX_CODES)
		{
			cut = OTHER_CODES;
			for (i = 0; i < ncodes; i++)
				if (strcmp(codes[i], cut) == 0)
					break;
		}
		if (i == ncodes)
		{
			codes[ncodes] = cut;
			counts[ncodes++] = 0;
		}
		counts[i]++;
	}
	if (ncodes == 0)
		return NULL;
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < ncodes; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, codes[i]);
		appendStringInfo(&buf, ": " INT64_FORMAT, counts[i]);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}
