/*-------------------------------------------------------------------------
 *
 * salesforce_results.c
 *	  The "salesforce" dialect's steps 4 to 6: successfulResults,
 *	  failedResults and unprocessedrecords, CSV files read as they stream
 *	  in, each record matched to a pending row by the key column (by the
 *	  whole uploaded record for insert), never by position, since
 *	  Salesforce keeps no order; and, after the last, what becomes of the
 *	  rows no file settled.
 *
 * What on_data builds lives in the stream's context (the step's); what the
 * steps learn for the last one lives in the memo (batch->memo_cxt).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "common/hashfn.h"

#include "bulkops.h"
#include "csv.h"
#include "dialect.h"
#include "salesforce.h"

/* ---- matching result records to rows ---- */

typedef struct SfKey
{
	const char *p;
	int			len;
} SfKey;

typedef struct SfRowEntry
{
	SfKey		key;
	uint32		hash;
	char		status;			/* simplehash's */
	int			head;			/* first unmatched row with this key, or -1 */
	int			tail;
} SfRowEntry;

#define SH_PREFIX sfrows
#define SH_ELEMENT_TYPE SfRowEntry
#define SH_KEY_TYPE SfKey
#define SH_KEY key
#define SH_HASH_KEY(tb, k) hash_bytes((const unsigned char *) (k).p, (k).len)
#define SH_EQUAL(tb, a, b) ((a).len == (b).len && memcmp((a).p, (b).p, (a).len) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* One result file being read. */
struct SfStream
{
	const BulkopsBatch *batch;
	MemoryContext cxt;
	int			step;
	SfMemo	   *memo;
	BulkopsCsvReader reader;

	/* the uploaded columns a record is matched by, as the header names them */
	char	  **match_names;
	int			nmatch;
	int		   *own_idx;		/* their positions in our own CSV */

	/* the pending rows by match key; rows sharing a key are chained */
	sfrows_hash *rows;
	int		   *next;
	StringInfoData keybuf;
	int			own_row;		/* the row being indexed */

	/* the result file's layout, from its header */
	bool		header_done;
	int			col_id;
	int			col_created;
	int			col_error;
	int		   *res_idx;		/* each match column's position in it */

	List	   *outcomes;
	int64		records;
	int64		unmatched;
};

/* ---- reading result files ---- */

/*
 * The match key of a record: its match fields, each with its length in
 * front.  "#N/A" counts as empty, since a null may come back either way.
 */
static void
build_key(StringInfo buf, char **fields, int *lens, const int *idx, int n)
{
	int			i;

	resetStringInfo(buf);
	for (i = 0; i < n; i++)
	{
		const char *f = fields[idx[i]];
		int32		len = lens[idx[i]];

		if (len == 4 && memcmp(f, SF_SET_NULL, 4) == 0)
			len = 0;
		appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
		appendBinaryStringInfo(buf, f, len);
	}
}

/* one of our own rows, parsed back to index it by its match key */
static void
own_record(void *arg, int nfields, char **fields, int *lens)
{
	SfStream   *st = arg;
	SfKey		key;
	SfRowEntry *e;
	bool		found;
	int			i;

	for (i = 0; i < st->nmatch; i++)
		if (st->own_idx[i] >= nfields)
			elog(ERROR, "row %d of the batch has %d fields", st->own_row, nfields);
	build_key(&st->keybuf, fields, lens, st->own_idx, st->nmatch);
	key.p = st->keybuf.data;
	key.len = st->keybuf.len;
	e = sfrows_insert(st->rows, key, &found);
	if (!found)
	{
		char	   *copy = palloc(key.len);

		/* a key holds binary lengths: no string copy */
		memcpy(copy, key.p, key.len);
		e->key.p = copy;
		e->head = e->tail = st->own_row;
	}
	else if (e->head < 0)
		e->head = e->tail = st->own_row;
	else
	{
		st->next[e->tail] = st->own_row;
		e->tail = st->own_row;
	}
	st->next[st->own_row] = -1;
}

/* the header row of our own CSV: its names */
static void
own_header(void *arg, int nfields, char **fields, int *lens)
{
	List	  **names = arg;
	int			i;

	for (i = 0; i < nfields; i++)
		*names = lappend(*names, pnstrdup(fields[i], lens[i]));
}

static void stream_record(void *arg, int nfields, char **fields, int *lens);

SfStream *
sf_make_stream(const BulkopsBatch *batch, int step)
{
	SfStream   *st = palloc0(sizeof(SfStream));
	BulkopsCsvReader own;
	List	   *names = NIL;
	int			longest = batch->prologue_len;
	char		delim = sf_delimiter(batch->options);
	int			i;

	st->batch = batch;
	st->cxt = CurrentMemoryContext;
	st->step = step;
	st->memo = batch->memo;
	initStringInfo(&st->keybuf);

	/* what to match by: the key column, or every column for insert */
	bulkops_csv_reader_init(&own, own_header, &names, SF_MAX_JOB_BYTES,
							MaxTupleAttributeNumber);
	bulkops_csv_reader_delimiter(&own, delim, false);
	bulkops_csv_feed(&own, batch->prologue, batch->prologue_len);
	bulkops_csv_finish(&own);
	st->match_names = palloc(sizeof(char *) * Max(list_length(names), 1));
	st->own_idx = palloc(sizeof(int) * Max(list_length(names), 1));
	for (i = 0; i < list_length(names); i++)
	{
		char	   *name = list_nth(names, i);
		bool		match;

		if (batch->op == BULKOPS_OP_INSERT || batch->key == NULL)
			match = true;
		else if (sf_key_is_id(batch->op))
			match = pg_strcasecmp(name, "Id") == 0;
		else
			match = strcmp(name, batch->key) == 0;
		if (match)
		{
			st->match_names[st->nmatch] = name;
			st->own_idx[st->nmatch++] = i;
		}
	}
	if (st->nmatch == 0)
		elog(ERROR, "the job's header row lacks its key column");

	/* index the pending rows */
	st->rows = sfrows_create(st->cxt, Max(batch->npending, 16), NULL);
	st->next = palloc(sizeof(int) * Max(batch->nrows, 1));
	bulkops_csv_reader_init(&own, own_record, st, SF_MAX_JOB_BYTES,
							MaxTupleAttributeNumber);
	bulkops_csv_reader_delimiter(&own, delim, false);
	for (i = 0; i < batch->nrows; i++)
	{
		if (!batch->pending[i])
			continue;
		st->own_row = i;
		longest = Max(longest, batch->offsets[i + 1] - batch->offsets[i]);
		bulkops_csv_feed(&own, batch->body + batch->offsets[i],
						 batch->offsets[i + 1] - batch->offsets[i]);
		bulkops_csv_finish(&own);
	}

	/* a result record echoes one of those rows: no more, give or take */
	bulkops_csv_reader_init(&st->reader, stream_record, st,
							Min((int64) longest * 2 + SF_RESULT_EXTRA_BYTES,
								SF_MAX_JOB_BYTES),
							list_length(names) + SF_RESULT_EXTRA_FIELDS);
	/* the files are written with the job's delimiter: their header says */
	bulkops_csv_reader_delimiter(&st->reader, delim, true);
	return st;
}

void
sf_stream_data(void *arg, const char *data, size_t len)
{
	SfStream   *st = arg;
	MemoryContext old = MemoryContextSwitchTo(st->cxt);

	bulkops_csv_feed(&st->reader, data, len);
	MemoryContextSwitchTo(old);
}

static int
find_column(int nfields, char **fields, const char *name)
{
	int			i;

	for (i = 0; i < nfields; i++)
		if (pg_strcasecmp(fields[i], name) == 0)
			return i;
	return -1;
}

static void
read_header(SfStream *st, int nfields, char **fields)
{
	int			i;

	st->col_id = find_column(nfields, fields, "sf__Id");
	st->col_created = find_column(nfields, fields, "sf__Created");
	st->col_error = find_column(nfields, fields, "sf__Error");
	if (st->step == SF_STEP_FAILURES && st->col_error < 0)
		ereport(ERROR,
				(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
				 errmsg("failedResults has no sf__Error column")));
	st->res_idx = palloc(sizeof(int) * st->nmatch);
	for (i = 0; i < st->nmatch; i++)
	{
		st->res_idx[i] = find_column(nfields, fields, st->match_names[i]);
		if (st->res_idx[i] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
					 errmsg("result file has no column \"%s\"", st->match_names[i])));
	}
	st->header_done = true;
}

static char *
field_or_null(int col, int nfields, char **fields, int *lens)
{
	if (col < 0 || col >= nfields || lens[col] == 0)
		return NULL;
	return pnstrdup(fields[col], lens[col]);
}

/*
 * The fields an error is about, from the end of message: Salesforce ends
 * sf__Error with ":Field1,Field2 --" (nothing between ':' and " --" when
 * it names none).  Cuts that end off message; returns the names joined by
 * commas, or NULL.  A message without that end is left whole.
 */
static char *
split_fields(char *message)
{
	int			len = strlen(message);
	char	   *colon;
	char	   *p;
	StringInfoData names;

	if (len < 2 || strcmp(message + len - 2, "--") != 0)
		return NULL;
	len -= 2;
	while (len > 0 && message[len - 1] == ' ')
		len--;
	for (colon = message + len - 1; colon >= message && *colon != ':'; colon--)
		;
	if (colon < message ||
		strspn(colon + 1, LETTERS DIGITS "_., ") < message + len - colon - 1)
		return NULL;
	initStringInfo(&names);
	for (p = colon + 1; p < message + len; p++)
		if (*p != ' ')
			appendStringInfoChar(&names, *p);
	while (colon > message && colon[-1] == ' ')
		colon--;
	*colon = '\0';
	return names.len > 0 ? names.data : NULL;
}

/*
 * sf__Error as Salesforce writes it, "CODE:message[:fields --]", in its
 * three parts (see split_fields).
 */
static void
split_error(const char *error, char **code, char **message, char **fields)
{
	const char *colon = error ? strchr(error, ':') : NULL;

	*fields = NULL;
	if (colon == NULL || colon == error ||
		strspn(error, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != colon - error)
	{
		*code = NULL;
		*message = error ? pstrdup(error) : pstrdup("failed without a message");
		return;
	}
	*code = pnstrdup(error, colon - error);
	colon++;
	while (*colon == ' ')
		colon++;
	*message = pstrdup(colon);
	*fields = split_fields(*message);
}

static void
match_record(SfStream *st, int row, int nfields, char **fields, int *lens)
{
	BulkopsResult r = {0};
	BulkopsOutcome *o;

	switch (st->step)
	{
		case SF_STEP_SUCCESSES:
			{
				char	   *created = field_or_null(st->col_created, nfields, fields, lens);

				o = bulkops_outcome(&r, row, BULKOPS_ROW_SUCCEEDED);
				o->remote_id = field_or_null(st->col_id, nfields, fields, lens);
				if (created)
					o->created = pg_strcasecmp(created, "true") == 0 ? 1
						: pg_strcasecmp(created, "false") == 0 ? 0 : -1;
			}
			break;
		case SF_STEP_FAILURES:
			{
				char	   *code;
				char	   *message;
				char	   *about;

				split_error(field_or_null(st->col_error, nfields, fields, lens),
							&code, &message, &about);
				if (code && strcmp(code, "UNABLE_TO_LOCK_ROW") == 0 &&
					strcmp(st->memo->state, "Aborted") != 0)
				{
					/* someone else held the record: try again in a new job */
					if (st->memo->lock_message == NULL)
						st->memo->lock_message =
							MemoryContextStrdup(st->batch->memo_cxt, message);
					st->memo->mark[row] = SF_MARK_LOCKED;
					return;
				}
				o = bulkops_outcome(&r, row, BULKOPS_ROW_FAILED);
				o->remote_id = field_or_null(st->col_id, nfields, fields, lens);
				o->error_code = code;
				o->error_message = message;
				o->error_fields = about;
			}
			break;
		default:
			if (st->memo->mark[row] == 0)
				st->memo->mark[row] = SF_MARK_UNPROCESSED;
			return;
	}
	st->outcomes = list_concat(st->outcomes, r.outcomes);
}

static void
stream_record(void *arg, int nfields, char **fields, int *lens)
{
	SfStream   *st = arg;
	SfKey		key;
	SfRowEntry *e;
	int			i;

	if (!st->header_done)
	{
		read_header(st, nfields, fields);
		return;
	}
	st->records++;
	for (i = 0; i < st->nmatch; i++)
		if (st->res_idx[i] >= nfields)
			ereport(ERROR,
					(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
					 errmsg("record " INT64_FORMAT " of a result file has %d fields",
							st->records, nfields)));
	build_key(&st->keybuf, fields, lens, st->res_idx, st->nmatch);
	key.p = st->keybuf.data;
	key.len = st->keybuf.len;
	e = sfrows_lookup(st->rows, key);
	if (e == NULL || e->head < 0)
	{
		st->unmatched++;
		return;
	}
	i = e->head;
	e->head = st->next[i];
	match_record(st, i, nfields, fields, lens);
}

/*
 * After the last file: rows marked go to a new job, the others that no
 * file mentioned are unknown, unless sending them again cannot apply them
 * twice.
 */
static void
decide(const BulkopsBatch *batch, SfMemo *memo, BulkopsResult *result)
{
	bool		aborted = strcmp(memo->state, "Aborted") == 0;
	bool		resend_unprocessed = bulkops_opt_bool(batch->options,
													  "resubmit_unprocessed", true);
	bool		idempotent = batch->op != BULKOPS_OP_INSERT;
	char	   *job_end = psprintf("job %s ended %s%s%s", batch->remote_id, memo->state,
								   memo->error ? ": " : "", memo->error ? memo->error : "");
	int			nlocked = 0;
	int			nunprocessed = 0;
	int			nlost = 0;
	int			i;

	for (i = 0; i < batch->nrows; i++)
	{
		BulkopsOutcome *o;

		if (!batch->pending[i])
			continue;
		switch (memo->mark[i])
		{
			case SF_MARK_LOCKED:
				nlocked++;
				break;
			case SF_MARK_UNPROCESSED:
				if (aborted)
					bulkops_outcome(result, i, BULKOPS_ROW_CANCELLED)->error_message =
						psprintf("not processed: %s", job_end);
				else if (resend_unprocessed)
					nunprocessed++;
				else
				{
					o = bulkops_outcome(result, i, BULKOPS_ROW_FAILED);
					o->error_code = pstrdup("NOT_PROCESSED");
					o->error_message = psprintf("not processed: %s", job_end);
				}
				break;
			default:
				if (idempotent && !aborted)
					nlost++;
				else
					bulkops_outcome(result, i, BULKOPS_ROW_UNKNOWN)->error_message =
						psprintf("no result file of job %s mentions this row", batch->remote_id);
				break;
		}
	}
	if (nlocked + nunprocessed + nlost == 0)
	{
		result->next = BULKOPS_NEXT_DONE;
		return;
	}
	result->next = BULKOPS_NEXT_RESUBMIT;
	result->counts_attempt = true;
	result->maybe_applied = nlost > 0;
	/* should the attempts run out: rows no file mentioned may be applied */
	if (nlost > 0)
		result->fail_status = BULKOPS_ROW_UNKNOWN;
	if (nunprocessed + nlost == 0)
	{
		result->error_code = pstrdup("UNABLE_TO_LOCK_ROW");
		result->error = pstrdup(memo->lock_message);
	}
	else
		result->error = psprintf("%d rows could not be locked, %d were not processed and %d are in no result file (%s); they go to a new job",
								 nlocked, nunprocessed, nlost, job_end);
}

void
sf_handle_result_file(const BulkopsBatch *batch, const BulkopsResponse *resp,
					  BulkopsResult *result)
{
	SfStream   *st = resp->stream_state;

	if (resp->status == 404)
	{
		/* deleted remotely: what is not settled yet cannot be learnt */
		result->next = BULKOPS_NEXT_FAIL;
		result->fail_status = BULKOPS_ROW_UNKNOWN;
		result->error = sf_error_text(resp, psprintf("the results of job %s are gone",
													 batch->remote_id));
		return;
	}
	if (resp->status != 200 || st == NULL)
	{
		result->next = BULKOPS_NEXT_RETRY;
		result->error = sf_error_text(resp, "could not fetch a result file");
		return;
	}
	{
		MemoryContext old = MemoryContextSwitchTo(st->cxt);

		bulkops_csv_finish(&st->reader);
		MemoryContextSwitchTo(old);
	}
	result->outcomes = st->outcomes;
	if (st->step < SF_STEP_UNPROCESSED)
	{
		sf_next_step(batch, result, st->step + 1, batch->remote_id);
		result->memo = batch->memo;
		result->delay_ms = 1;
	}
	else
		decide(batch, st->memo, result);
}
