/*-------------------------------------------------------------------------
 *
 * joblog.h
 *	  What a job came to, in one line: for the server log when it ends, and
 *	  for whoever waits for it (joblog.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_JOBLOG_H
#define BULKOPS_JOBLOG_H

#include "access/htup.h"
#include "access/tupdesc.h"

#include "receipts.h"

/*
 * The columns a summary is read from, over a relation with the columns of
 * bulkops.jobs (the table, or the rows an UPDATE of it returns): the
 * counters, the three error codes most failed rows had, and the seconds
 * the job took (so far).
 */
#define BULKOPS_JOB_SUMMARY_COLUMNS \
	"id, target, operation, state, rows_total, rows_succeeded, rows_failed, " \
	"rows_cancelled, rows_unknown, " \
	"(SELECT pg_catalog.string_agg(c.key || ' ' || c.value, ', ' " \
	"  ORDER BY c.value::bigint DESC, c.key) " \
	" FROM (SELECT e.key, e.value FROM pg_catalog.jsonb_each_text(error_counts) e " \
	"  ORDER BY e.value::bigint DESC, e.key LIMIT 3) c), " \
	"extract(epoch FROM coalesce(finished_at, now()) " \
	" - coalesce(started_at, created_at))::float8"
#define BULKOPS_JOB_SUMMARY_NCOLUMNS 11

/* A job's counters, as a summary tells them. */
typedef struct BulkopsJobSummary
{
	int64		id;
	char	   *target;
	char	   *operation;
	char	   *state;
	int64		total;
	int64		succeeded;
	int64		failed;
	int64		cancelled;
	int64		unknown;
	char	   *top_codes;		/* "CODE n, CODE n", or NULL */
	double		seconds;
} BulkopsJobSummary;

extern void bulkops_job_summary_read(HeapTuple row, TupleDesc desc, int first,
									 BulkopsJobSummary *s);
extern char *bulkops_job_summary_text(const BulkopsJobSummary *s);
extern void bulkops_joblog_ended(const BulkopsJobSummary *s);
extern char *bulkops_joblog_failed_codes(const BulkopsReceiptSet *set);

#endif							/* BULKOPS_JOBLOG_H */
