/*-------------------------------------------------------------------------
 *
 * sink.c
 *	  Writing a query job's rows into its local table: the destination, the
 *	  export's mode, its rejects.
 *
 * A page arrives as CSV whose first line names the columns; columns are
 * matched by name whatever their order, and each value is converted and
 * goes through its column's input function (sink_load.c).  A table that
 * does not exist yet is created from the first page's header with text
 * columns (mode append only).  Option "mode":
 *
 *	 append		each page is inserted in the transaction that stores where
 *				the remote query stands, so a page is written exactly once.
 *	 merge		the same, as INSERT ... ON CONFLICT (merge_key) DO UPDATE.
 *	 replace	readers must never see part of an export, and the table must
 *				stay as it was when the export does not complete.  So a page
 *				is only staged: kept as received in bulkops.export_pages, in
 *				the same transaction as the locator after it.  The
 *				transaction that ends the job (bulkops_sink_finish, from
 *				results.c) empties the table (DELETE, or TRUNCATE for a
 *				creator who may only do that) and loads every staged page,
 *				then forgets them; a job that fails, is cancelled or times
 *				out only forgets them.  A crash before that transaction
 *				commits leaves the table untouched and the staged pages
 *				with their locator, from which the export resumes; a crash
 *				after it leaves nothing to do.  Deleting a job (retention)
 *				deletes its staged pages (foreign key).
 *
 * A record the table refuses (a data exception or an integrity constraint
 * violation) goes to bulkops.export_rejects, written as bulkops in the
 * same transaction, and counts as failed; unless option "strict", which
 * fails the page, and with it the job, as before.
 *
 * The table's code (triggers, defaults, domains) runs as the job's
 * creator, in a user section (owner.c): restricted, with a fixed
 * search_path, in a GUC nest level of its own that discards whatever the
 * table's triggers set.  While that code runs the worker serves nobody
 * else, so it gets bulkops.user_code_timeout (a statement timeout armed
 * inside the section) per page, and the table's lock is waited for no
 * longer than any other lock the worker waits for: either way the page
 * is tried again later (results.c).  bulkops' own tables (rejects, staged
 * pages, the job's row) are written outside user sections.  The creator's
 * rights were checked at bulk_query time (bulkops_sink_check_destination)
 * and are checked again here: they may have changed since.  The
 * destination is an OID, or a schema and a table name that are quoted
 * when the table is created: never SQL text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "bulkops.h"
#include "catalog.h"
#include "sink_load.h"

/* the most rejects written by one statement */
#define REJECTS_PER_INSERT 1000
/* the most bytes of a rejected record kept in export_rejects.line */
#define REJECT_LINE_MAX 8192

/* ---- options ---- */

static SinkMode
sink_mode(Jsonb *options)
{
	char	   *mode = bulkops_opt_string(options, "mode", "append");

	if (strcmp(mode, "replace") == 0)
		return SINK_REPLACE;
	if (strcmp(mode, "merge") == 0)
		return SINK_MERGE;
	return SINK_APPEND;
}

/*
 * Check an export's options (BULKOPS_EXPORT_OPTIONS): a dialect's
 * validate_target calls this with a target's options, or a job's merged
 * over its target's.
 */
void
bulkops_check_export_options(Jsonb *options)
{
	char	   *mode = bulkops_opt_string(options, "mode", "append");
	char	   *key = bulkops_opt_string(options, "merge_key", NULL);

	if (strcmp(mode, "append") != 0 && strcmp(mode, "replace") != 0 &&
		strcmp(mode, "merge") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"mode\" must be \"append\", \"replace\" or \"merge\"")));
	if (key != NULL && (key[0] == '\0' || strlen(key) >= NAMEDATALEN))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"merge_key\" must be a column name")));
	if (strcmp(mode, "merge") == 0 && key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"mode\" \"merge\" needs option \"merge_key\""),
				 errhint("Name the column whose value identifies a row, such as \"merge_key\": \"Id\".")));
}

/*
 * Can merge_key of relid arbitrate INSERT ... ON CONFLICT (merge_key)?  A
 * unique index on that column alone, valid, not partial and not deferred.
 */
static bool
has_arbiter_index(Relation rel, AttrNumber att)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		found = false;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index idx;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		found = idx->indisunique && idx->indimmediate && idx->indisvalid &&
			idx->indnkeyatts == 1 && idx->indkey.values[0] == att &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL);
		ReleaseSysCache(tup);
		if (found)
			break;
	}
	list_free(indexes);
	return found;
}

/*
 * At bulk_query, in the caller's backend: what the job's mode needs of the
 * existing table relid, besides INSERT (enqueue.c), with the caller's
 * rights.  Replace empties the table: DELETE or TRUNCATE.  Merge updates
 * rows: UPDATE, and a unique index that ON CONFLICT can use on merge_key.
 */
void
bulkops_sink_check_destination(Oid relid, Jsonb *options)
{
	Oid			userid = GetUserId();
	char	   *key;
	AttrNumber	att;
	Relation	rel;

	switch (sink_mode(options))
	{
		case SINK_APPEND:
			break;
		case SINK_REPLACE:
			if (pg_class_aclcheck(relid, userid, ACL_DELETE) != ACLCHECK_OK &&
				pg_class_aclcheck(relid, userid, ACL_TRUNCATE) != ACLCHECK_OK)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("permission denied for table %s", get_rel_name(relid)),
						 errdetail("Option \"mode\" \"replace\" needs the DELETE or the TRUNCATE privilege on it.")));
			break;
		case SINK_MERGE:
			if (pg_class_aclcheck(relid, userid, ACL_UPDATE) != ACLCHECK_OK)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("permission denied for table %s", get_rel_name(relid)),
						 errdetail("Option \"mode\" \"merge\" needs the UPDATE privilege on it.")));
			key = bulkops_opt_string(options, "merge_key", NULL);
			att = get_attnum(relid, key);
			if (att <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("column \"%s\" of option \"merge_key\" does not exist in table %s",
								key, get_rel_name(relid))));
			/* ON CONFLICT reads the key: SELECT on that column */
			if (pg_class_aclcheck(relid, userid, ACL_SELECT) != ACLCHECK_OK &&
				pg_attribute_aclcheck(relid, att, userid, ACL_SELECT) != ACLCHECK_OK)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("permission denied for table %s", get_rel_name(relid)),
						 errdetail("Option \"mode\" \"merge\" needs the SELECT privilege on column \"%s\".",
								   key)));
			rel = table_open(relid, AccessShareLock);
			if (!has_arbiter_index(rel, att))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
						 errmsg("there is no unique index on column \"%s\" of table %s for option \"merge_key\"",
								key, RelationGetRelationName(rel)),
						 errdetail("Merging uses INSERT ... ON CONFLICT (%s), which needs a unique index or constraint on that column alone, neither partial nor deferrable.",
								   quote_identifier(key)),
						 errhint("Add one, such as with ALTER TABLE %s ADD UNIQUE (%s).",
								 quote_identifier(RelationGetRelationName(rel)),
								 quote_identifier(key))));
			table_close(rel, AccessShareLock);
			break;
	}
}

/* ---- the destination ---- */

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
overrun_error(const char *relname)
{
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("the triggers, defaults or domains of table \"%s\" ran longer than bulkops.user_code_timeout (%d ms)",
					relname, bulkops_user_code_timeout_ms)));
}

/*
 * Run fn(arg), which runs the user code of table relname, within
 * bulkops.user_code_timeout.  When the time is up, the statement timeout
 * cancels whatever runs (pg_sleep, a lock wait, a loop that checks for
 * interrupts), and the error says so.
 */
static void
run_limited(const char *relname, void (*fn) (void *arg), void *arg)
{
	TimestampTz start = GetCurrentTimestamp();

	enable_timeout_after(STATEMENT_TIMEOUT, bulkops_user_code_timeout_ms);
	PG_TRY();
	{
		fn(arg);
	}
	PG_CATCH();
	{
		/* nothing else disarms it: aborting a transaction does not */
		disable_timeout(STATEMENT_TIMEOUT, false);
		if (geterrcode() == ERRCODE_QUERY_CANCELED && overran(start))
		{
			FlushErrorState();
			overrun_error(relname);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	disable_timeout(STATEMENT_TIMEOUT, false);

	/*
	 * The time ran out just as the code ended: the cancel is pending, and it
	 * would hit whatever the worker runs next.
	 */
	if (QueryCancelPending && overran(start))
	{
		QueryCancelPending = false;
		overrun_error(relname);
	}
}

/*
 * May the current user (the job's creator) write the page's columns into
 * rel as the mode does?  Also refuses columns the table lacks or the page
 * names twice, and a merge whose page lacks the key.
 */
static void
check_table(Relation rel, Oid owner, List *names, SinkMode mode,
			const char *merge_key)
{
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	Bitmapset  *seen = NULL;
	bool		has_key = false;
	ListCell   *lc;

	if (check_enable_rls(RelationGetRelid(rel), owner, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s has row-level security enabled",
						RelationGetRelationName(rel))));
	/* as DoCopy does: the columns written, in the range table */
	pstate = make_parsestate(NULL);
	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock,
										   NULL, false, false);
	nsitem->p_rte->requiredPerms = ACL_INSERT |
		(mode == SINK_MERGE ? ACL_UPDATE | ACL_SELECT : 0);
	foreach(lc, names)
	{
		const char *name = strVal(lfirst(lc));
		AttrNumber	att = attnameAttNum(rel, name, false);
		int			bit = att - FirstLowInvalidHeapAttributeNumber;

		if (att == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("table %s has no column \"%s\", which the remote answer has",
							RelationGetRelationName(rel), name),
					 errhint("Add the column, or leave the field out of the remote query.")));
		if (bms_is_member(bit, seen))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("the remote answer has column \"%s\" twice", name)));
		seen = bms_add_member(seen, bit);
		nsitem->p_rte->insertedCols = bms_add_member(nsitem->p_rte->insertedCols, bit);
		if (mode != SINK_MERGE)
			continue;

		/*
		 * ON CONFLICT reads the key, and SET col = EXCLUDED.col reads the
		 * others, which needs SELECT on them as well as UPDATE.
		 */
		nsitem->p_rte->selectedCols = bms_add_member(nsitem->p_rte->selectedCols, bit);
		if (strcmp(name, merge_key) == 0)
			has_key = true;
		else
			nsitem->p_rte->updatedCols = bms_add_member(nsitem->p_rte->updatedCols, bit);
	}
	if (mode == SINK_MERGE && !has_key)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("the remote answer has no column \"%s\", which option \"merge_key\" names",
						merge_key),
				 errhint("Select the key field in the remote query.")));
	ExecCheckRTPerms(pstate->p_rtable, true);
	free_parsestate(pstate);
}

/* What load_limited loads, and what it learns. */
typedef struct LoadCall
{
	const SinkLoadSpec *spec;
	const char *data;
	size_t		len;
	SinkLoadResult *res;
} LoadCall;

static void
load_limited(void *arg)
{
	LoadCall   *call = arg;

	sink_load_page(call->spec, call->data, call->len, call->res);
}

/*
 * Load page (with its header line) into the destination as role owner,
 * as spec says (its rel is filled in here).  Returns the table's OID; res
 * says what happened, its rejects pointing into page after its header line
 * (*hlen bytes).
 */
static Oid
load_as_user(const BulkopsSinkDest *dest, Oid owner, SinkLoadSpec *spec,
			 const char *page, size_t len, size_t *hlen, SinkLoadResult *res)
{
	BulkopsSection s;
	Oid			relid;
	Relation	rel;
	LoadCall	call;

	spec->names = sink_header_names(page, len, hlen);

	/*
	 * The table's triggers, defaults and domains are the owner's code: it
	 * runs as the owner, restricted, in a nest level of its own.  An error
	 * needs no clean-up here: the worker aborts the transaction, which pops
	 * the nest level and restores the user.  The table's lock is waited for
	 * under the worker's lock_timeout: its owner may hold it.
	 */
	bulkops_enter_user(&s, owner);
	relid = open_destination(dest, spec->names);
	rel = table_open(relid, RowExclusiveLock);
	check_table(rel, owner, spec->names, spec->mode, spec->merge_key);
	spec->rel = rel;
	call.spec = spec;
	call.data = page + *hlen;
	call.len = len - *hlen;
	call.res = res;
	if (spec->count_only)
		load_limited(&call);
	else
		run_limited(RelationGetRelationName(rel), load_limited, &call);
	table_close(rel, NoLock);
	bulkops_leave_user(&s);
	return relid;
}

/* ---- bulkops' own tables (catalog_exports.c, outside user sections) ---- */

/*
 * A rejected record as received, as text of the database: the first
 * REJECT_LINE_MAX bytes, converted from UTF-8 where it can be, else with
 * what cannot be shown as '?'.
 */
static Datum
reject_line(const char *raw, int len)
{
	int			enc = GetDatabaseEncoding();
	char	   *s;
	int			i;

	if (len > REJECT_LINE_MAX)
		len = pg_encoding_mbcliplen(PG_UTF8, raw, len, REJECT_LINE_MAX);
	if (enc == PG_UTF8 || enc == PG_SQL_ASCII)
		return CStringGetTextDatum(bulkops_clean_text(pnstrdup(raw, len), len));
	if (pg_verify_mbstr(PG_UTF8, raw, len, true))
	{
		Oid			proc = FindDefaultConversionProc(PG_UTF8, enc);

		if (OidIsValid(proc))
		{
			int			size = len * MAX_CONVERSION_GROWTH + 1;
			unsigned char *buf = palloc(size);

			if (pg_do_encoding_conversion_buf(proc, PG_UTF8, enc,
											  (unsigned char *) raw, len,
											  buf, size, true) == len)
				return CStringGetTextDatum((char *) buf);
		}
	}
	s = palloc(len + 1);
	for (i = 0; i < len; i++)
		s[i] = IS_HIGHBIT_SET(raw[i]) || raw[i] == '\0' ? '?' : raw[i];
	s[len] = '\0';
	return CStringGetTextDatum(s);
}

/* Store rejects (SinkReject, pointing into data) of job_id. */
static void
write_rejects(int64 job_id, const char *data, List *rejects)
{
	int			n = list_length(rejects);
	int			done;

	for (done = 0; done < n; done += REJECTS_PER_INSERT)
	{
		int			m = Min(REJECTS_PER_INSERT, n - done);
		Datum	   *rows = palloc(sizeof(Datum) * m);
		Datum	   *lines = palloc(sizeof(Datum) * m);
		Datum	   *columns = palloc(sizeof(Datum) * m);
		bool	   *no_column = palloc(sizeof(bool) * m);
		Datum	   *states = palloc(sizeof(Datum) * m);
		Datum	   *reasons = palloc(sizeof(Datum) * m);
		int			dims[1] = {m};
		int			lbs[1] = {1};
		int			i;

		for (i = 0; i < m; i++)
		{
			SinkReject *rj = list_nth(rejects, done + i);

			rows[i] = Int64GetDatum(rj->row_no);
			lines[i] = reject_line(data + rj->raw_off, rj->raw_len);
			no_column[i] = (rj->column == NULL);
			columns[i] = rj->column ? CStringGetTextDatum(rj->column) : (Datum) 0;
			states[i] = CStringGetTextDatum(unpack_sql_state(rj->sqlerrcode));
			reasons[i] = CStringGetTextDatum(bulkops_clean_text(rj->reason, 8192));
		}
		bulkops_catalog_insert_rejects(job_id,
									   PointerGetDatum(construct_array(rows, m, INT8OID, 8,
																	   FLOAT8PASSBYVAL,
																	   TYPALIGN_DOUBLE)),
									   PointerGetDatum(construct_array(lines, m, TEXTOID,
																	   -1, false,
																	   TYPALIGN_INT)),
									   PointerGetDatum(construct_md_array(columns, no_column,
																		  1, dims, lbs,
																		  TEXTOID, -1,
																		  false,
																		  TYPALIGN_INT)),
									   PointerGetDatum(construct_array(states, m, TEXTOID,
																	   -1, false,
																	   TYPALIGN_INT)),
									   PointerGetDatum(construct_array(reasons, m, TEXTOID,
																	   -1, false,
																	   TYPALIGN_INT)));
	}
}

/* Keep page (header line and records) of job_id until the export ends. */
static void
stage_page(int64 job_id, int64 first_row, const char *page, size_t len)
{
	bytea	   *body = palloc(VARHDRSZ + len);

	SET_VARSIZE(body, VARHDRSZ + len);
	memcpy(VARDATA(body), page, len);
	bulkops_catalog_stage_page(job_id, first_row, body);
	pfree(body);
}

/* ---- pages and the end of an export ---- */

/* The spec of loading a page of job_id as its options say. */
static void
init_spec(SinkLoadSpec *spec, Jsonb *options, int64 first_row)
{
	memset(spec, 0, sizeof(*spec));
	spec->mode = sink_mode(options);
	spec->merge_key = bulkops_opt_string(options, "merge_key", NULL);
	spec->empty_as_null = bulkops_opt_bool(options, "empty_as_null", false);
	spec->strict = bulkops_opt_bool(options, "strict", false);
	spec->first_row = first_row;
}

/*
 * Write page (CSV with a header line) of job job_id, created by role owner,
 * as its options say: append or merge it (the rejects go to
 * bulkops.export_rejects), or stage it (replace).  Runs in the worker's
 * transaction that stores the locator after the page; counts says what to
 * add to the job's counters, and *relid_out is the table's OID (which the
 * caller records when the table was created now).
 */
void
bulkops_sink_page(const BulkopsSinkDest *dest, Oid owner, int64 job_id,
				  Jsonb *options, const char *page, size_t len,
				  Oid *relid_out, BulkopsSinkCounts *counts)
{
	SinkLoadSpec spec;
	SinkLoadResult res;
	size_t		hlen;

	memset(counts, 0, sizeof(*counts));
	*relid_out = dest->relid;
	if (len == 0)
		return;
	init_spec(&spec, options, bulkops_catalog_export_received(job_id) + 1);
	if (spec.mode == SINK_REPLACE)
	{
		/* its table existed at bulk_query and is never created */
		if (!OidIsValid(dest->relid))
			elog(ERROR, "export to replace a table without one");
		spec.mode = SINK_APPEND;
		spec.count_only = true;
	}
	*relid_out = load_as_user(dest, owner, &spec, page, len, &hlen, &res);
	counts->total = res.records;
	if (spec.count_only)
	{
		if (res.records > 0)
			stage_page(job_id, spec.first_row, page, len);
		return;
	}
	counts->stored = res.stored;
	counts->rejected = list_length(res.rejects);
	write_rejects(job_id, page + hlen, res.rejects);
}

/*
 * Empty the table whose OID *arg is as the current user: DELETE if it may,
 * else TRUNCATE.
 */
static void
empty_table(void *arg)
{
	Oid			relid = *(Oid *) arg;
	char	   *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												  get_rel_name(relid));
	bool		may_delete = pg_class_aclcheck(relid, GetUserId(),
											   ACL_DELETE) == ACLCHECK_OK;
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	rc = SPI_execute(psprintf(may_delete ? "DELETE FROM %s" : "TRUNCATE %s", name),
					 false, 0);
	if (rc != SPI_OK_DELETE && rc != SPI_OK_UTILITY)
		elog(ERROR, "could not empty %s: %s", name, SPI_result_code_string(rc));
	SPI_finish();
}

/*
 * Replace the rows of the destination of job_id with its staged pages, as
 * role owner; counts gets what was stored and refused.
 */
static void
replace_rows(const BulkopsSinkDest *dest, Oid owner, int64 job_id,
			 Jsonb *options, BulkopsSinkCounts *counts)
{
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext page_cxt = AllocSetContextCreate(cxt, "bulkops staged page",
												   ALLOCSET_DEFAULT_SIZES);
	BulkopsSection s;
	Relation	rel;
	Oid			relid = dest->relid;
	char	   *relname;
	int64		last = 0;

	if (!OidIsValid(relid) || get_rel_name(relid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the destination table of this export no longer exists")));
	bulkops_enter_user(&s, owner);
	rel = table_open(relid, RowExclusiveLock);
	relname = pstrdup(RelationGetRelationName(rel));
	if (check_enable_rls(relid, owner, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s has row-level security enabled", relname)));
	/* TRUNCATE refuses a table this session has open: keep only the lock */
	table_close(rel, NoLock);
	run_limited(relname, empty_table, &relid);
	bulkops_leave_user(&s);

	/* one page at a time, in order: memory holds one */
	for (;;)
	{
		SinkLoadSpec spec;
		SinkLoadResult res;
		bytea	   *body;
		int64		first_row;
		size_t		hlen;

		MemoryContextSwitchTo(page_cxt);
		body = bulkops_catalog_next_staged_page(job_id, last, &first_row);
		if (body == NULL)
			break;
		last = first_row;
		init_spec(&spec, options, first_row);
		spec.mode = SINK_APPEND;
		(void) load_as_user(dest, owner, &spec, VARDATA(body),
							VARSIZE(body) - VARHDRSZ, &hlen, &res);
		counts->stored += res.stored;
		counts->rejected += list_length(res.rejects);
		write_rejects(job_id, VARDATA(body) + hlen, res.rejects);
		MemoryContextSwitchTo(cxt);
		MemoryContextReset(page_cxt);
	}
	MemoryContextSwitchTo(cxt);
	MemoryContextDelete(page_cxt);
}

/*
 * The export of job_id has ended, completed (its last page written) or
 * not, in the transaction that closes its batch.  Replace: a completed
 * export that was not stopped meanwhile replaces the table's rows with its
 * staged pages; either way they are forgotten.  counts says what to add to
 * the job's counters.  Nothing to do for the other modes.
 */
void
bulkops_sink_finish(const BulkopsSinkDest *dest, Oid owner, int64 job_id,
					Jsonb *options, bool completed, BulkopsSinkCounts *counts)
{
	memset(counts, 0, sizeof(*counts));
	if (sink_mode(options) != SINK_REPLACE)
		return;
	if (completed && !bulkops_catalog_export_stopped(job_id))
		replace_rows(dest, owner, job_id, options, counts);
	bulkops_catalog_drop_staged_pages(job_id);
}
