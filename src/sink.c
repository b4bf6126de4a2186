/*-------------------------------------------------------------------------
 *
 * sink.c
 *	  Writing a query job's rows into its local table.
 *
 * A page arrives as CSV whose first line names the columns.  It is loaded
 * with COPY's own machinery (BeginCopyFrom over an in-memory source), so
 * each value goes through its column's input function: a table that exists
 * gets the remote text cast to its types, and columns are matched by name
 * whatever their order.  A table that does not exist yet is created from
 * the first page's header with text columns.
 *
 * Everything runs as the job's creator, in a user section (owner.c):
 * restricted, with a fixed search_path, in a GUC nest level of its own that
 * discards whatever the table's triggers set.  While that code runs the
 * worker serves nobody else, so it gets bulkops.user_code_timeout (a
 * statement timeout armed inside the section), and the table's lock is
 * waited for no longer than any other lock the worker waits for: either
 * way the page is tried again later (results.c).  It runs inside the worker's
 * transaction that also stores where the remote query stands, so a page
 * is written exactly once.  The creator's rights were checked at
 * bulk_query time and are checked again here: they may have changed since.
 * The destination is an OID, or a schema and a table name that are quoted
 * when the table is created: never SQL text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "executor/executor.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/regproc.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "bulkops.h"

/* COPY's data source callback takes no argument: the page being read */
static const char *src_data;
static size_t src_left;

static int
page_source(void *outbuf, int minread, int maxread)
{
	int			n = (int) Min((size_t) maxread, src_left);

	memcpy(outbuf, src_data, n);
	src_data += n;
	src_left -= n;
	return n;
}

/* The header line's field names (RFC 4180 quoting). */
static List *
header_names(const char *page, size_t len, size_t *header_len)
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

/* Create schema.table with a text column per name, as the current user. */
static Oid
create_destination(const char *schema, const char *table, List *names)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TABLE %s (",
					 quote_qualified_identifier(schema, table));
	foreach(lc, names)
	{
		const char *n = strVal(lfirst(lc));

		if (n[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
					 errmsg("the remote answer has a column with an empty name")));
		appendStringInfo(&sql, "%s%s text", foreach_current_index(lc) ? ", " : "",
						 quote_identifier(n));
	}
	appendStringInfoChar(&sql, ')');
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not create %s", quote_qualified_identifier(schema, table));
	SPI_finish();
	CommandCounterIncrement();
	return get_relname_relid(table, get_namespace_oid(schema, false));
}

/*
 * The destination's table: by OID when it exists, else created now (the
 * first page).  Returns its OID.
 */
static Oid
open_destination(const BulkopsSinkDest *dest, List *names)
{
	Oid			nsp;
	Oid			relid;

	if (OidIsValid(dest->relid))
	{
		if (get_rel_name(dest->relid) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("the destination table of this export no longer exists")));
		return dest->relid;
	}
	if (dest->schema == NULL || dest->table == NULL)
		elog(ERROR, "export job without a destination");
	nsp = get_namespace_oid(dest->schema, true);
	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("schema \"%s\" of this export's destination no longer exists",
						dest->schema)));
	relid = get_relname_relid(dest->table, nsp);
	if (!OidIsValid(relid))
		relid = create_destination(dest->schema, dest->table, names);
	return relid;
}

/* Has the user code that started at start had its time? */
static bool
overran(TimestampTz start)
{
	return TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
									  bulkops_user_code_timeout_ms);
}

static void
overrun_error(Relation rel)
{
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("the triggers, defaults or domains of table \"%s\" ran longer than bulkops.user_code_timeout (%d ms)",
					RelationGetRelationName(rel), bulkops_user_code_timeout_ms)));
}

/*
 * COPY the rest of the page into rel, which runs the table's user code,
 * within bulkops.user_code_timeout.  When the time is up, the statement
 * timeout cancels whatever runs (pg_sleep, a lock wait, a loop that checks
 * for interrupts), and the error says so.
 */
static uint64
copy_page(Relation rel, ParseState *pstate, List *names, List *options)
{
	TimestampTz start = GetCurrentTimestamp();
	volatile uint64 n = 0;

	enable_timeout_after(STATEMENT_TIMEOUT, bulkops_user_code_timeout_ms);
	PG_TRY();
	{
		CopyFromState cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false,
											 page_source, names, options);

		n = CopyFrom(cstate);
		EndCopyFrom(cstate);
	}
	PG_CATCH();
	{
		/* nothing else disarms it: aborting a transaction does not */
		disable_timeout(STATEMENT_TIMEOUT, false);
		if (geterrcode() == ERRCODE_QUERY_CANCELED && overran(start))
		{
			FlushErrorState();
			overrun_error(rel);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	disable_timeout(STATEMENT_TIMEOUT, false);

	/*
	 * The time ran out just as the code ended: the cancel is pending, and
	 * it would hit whatever the worker runs next.
	 */
	if (QueryCancelPending && overran(start))
	{
		QueryCancelPending = false;
		overrun_error(rel);
	}
	return n;
}

/*
 * Append page (CSV with a header line) to the destination as role owner;
 * returns the number of rows written, and the table's OID in *relid_out
 * (which the caller records when the table was created now).
 */
uint64
bulkops_sink_page(const BulkopsSinkDest *dest, Oid owner, const char *page,
				  size_t len, Oid *relid_out)
{
	BulkopsSection s;
	List	   *names;
	size_t		hlen;
	Oid			relid;
	Relation	rel;
	ParseState *pstate;
	List	   *options;
	ParseNamespaceItem *nsitem;
	ListCell   *lc;
	uint64		n;

	*relid_out = dest->relid;
	if (len == 0)
		return 0;
	names = header_names(page, len, &hlen);

	/*
	 * The table's triggers, defaults and domains are the owner's code: it
	 * runs as the owner, restricted, in a nest level of its own.  An error
	 * needs no clean-up here: the worker aborts the transaction, which
	 * pops the nest level and restores the user.  The table's lock is
	 * waited for under the worker's lock_timeout: its owner may hold it.
	 */
	bulkops_enter_user(&s, owner);
	relid = open_destination(dest, names);
	rel = table_open(relid, RowExclusiveLock);
	if (check_enable_rls(relid, owner, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s has row-level security enabled",
						RelationGetRelationName(rel))));

	/* an empty unquoted field is NULL, "" an empty string, as COPY has it */
	options = list_make2(makeDefElem("format", (Node *) makeString("csv"), -1),
						 makeDefElem("encoding", (Node *) makeString("UTF8"), -1));
	/* as DoCopy does: COPY finds its table in the range table */
	pstate = make_parsestate(NULL);
	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock,
										   NULL, false, false);
	nsitem->p_rte->requiredPerms = ACL_INSERT;
	foreach(lc, names)
	{
		AttrNumber	att = attnameAttNum(rel, strVal(lfirst(lc)), false);

		if (att == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("table %s has no column \"%s\", which the remote answer has",
							RelationGetRelationName(rel), strVal(lfirst(lc))),
					 errhint("Add the column, or leave the field out of the remote query.")));
		nsitem->p_rte->insertedCols =
			bms_add_member(nsitem->p_rte->insertedCols,
						   att - FirstLowInvalidHeapAttributeNumber);
	}
	ExecCheckRTPerms(pstate->p_rtable, true);
	src_data = page + hlen;
	src_left = len - hlen;
	n = copy_page(rel, pstate, names, options);
	free_parsestate(pstate);
	table_close(rel, NoLock);
	bulkops_leave_user(&s);
	*relid_out = relid;
	return n;
}
