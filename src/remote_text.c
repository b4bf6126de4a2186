/*-------------------------------------------------------------------------
 *
 * remote_text.c
 *	  Text the remote side sent, made fit to store.
 *
 * Answers are not trusted to be valid in the database's encoding, free of
 * NUL bytes, bounded, or (where JSON is expected) JSON.  Everything that
 * reaches a table or a message passes here first.  Allocations go to the
 * current memory context; nothing here needs a transaction but the
 * encoding checks, which read only the database's encoding.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "bulkops.h"

/*
 * Remote text made safe to store: valid in the database encoding, no NUL,
 * bounded.  Remote answers are not trusted to be any of these.  Text that
 * already is (nearly all of it) is returned as it is, uncopied: this runs
 * for every field of every receipt.
 */
const char *
bulkops_clean_text(const char *s, int maxlen)
{
	int			len;
	StringInfoData buf;
	const char *p;

	if (s == NULL)
		return NULL;
	len = strlen(s);
	if (len <= maxlen && pg_verifymbstr(s, len, true))
		return s;
	if (len > maxlen)
		len = maxlen;
	initStringInfo(&buf);
	p = s;
	while (p < s + len)
	{
		int			l = pg_encoding_verifymbchar(GetDatabaseEncoding(), p,
												 s + len - p);

		if (l <= 0)
		{
			appendStringInfoChar(&buf, '?');
			p++;
		}
		else
		{
			appendBinaryStringInfo(&buf, p, l);
			p += l;
		}
	}
	return buf.data;
}

/*
 * What a result would have the worker store as it is (the remote id, the
 * step's note, the progress) comes from the remote side: it must be valid
 * in the database encoding, as text columns may hold nothing else, and the
 * progress must be JSON.  Checked here, where an ERROR means "could not read
 * the answer", rather than in the receipts' transaction, which it would
 * abort.  Receipts' texts need no check: catalog.c cleans them.  The
 * fuzzing harness (test/fuzz/) applies it too.
 */
void
bulkops_check_stored_text(BulkopsResult *res)
{
	if (res->remote_id)
		(void) pg_verifymbstr(res->remote_id, strlen(res->remote_id), false);
	if (res->step_data)
		(void) pg_verifymbstr(res->step_data, strlen(res->step_data), false);
	if (res->progress)
	{
		(void) pg_verifymbstr(res->progress, strlen(res->progress), false);
		(void) bulkops_json_parse(res->progress, strlen(res->progress));
	}
}
