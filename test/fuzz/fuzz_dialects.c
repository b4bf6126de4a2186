/*-------------------------------------------------------------------------
 *
 * fuzz_dialects.c
 *	  Test only: libFuzzer drives one dialect's answer handling inside a
 *	  backend, as the worker would, and checks the results against the
 *	  contract in src/dialect.h.
 *
 * Built only by test/fuzz/run.sh (make FUZZ=1, clang with
 * -fsanitize=fuzzer-no-link,address, libFuzzer's runtime without main);
 * never part of a normal build or of the install script.  The script
 * creates the two SQL functions below in a throwaway single-user backend.
 * libFuzzer ends the process when it is done, so bulkops_fuzz() never
 * returns.
 *
 * One input is a conversation about one synthetic batch:
 *
 *	 byte 0   operation: the enum BulkopsOp value (mod BULKOPS_NUM_OPS), or
 *			  the next one the dialect has
 *	 byte 1   rows in the batch: 1 + byte % FUZZ_MAX_ROWS (none for a
 *			  query, whose body is FUZZ_QUERY)
 *	 byte 2   bit i set: row i already has an outcome (a resumed batch);
 *			  with every row set, none is
 *	 byte 3   2 bits per boolean option of the dialect, in its table's
 *			  order: 1 false, 2 true, else absent
 *	 then answers, each: status (2 bytes, big-endian: mod 1000 the
 *			  status; divided by 1000, bits 0-3 the size of the pieces a
 *			  streaming request gets the body in (0: one piece), bit 4 a
 *			  worker restart before the request, which loses the batch's
 *			  memo, bit 5 the job cancelled from then on), headers length (2
 *			  bytes, big-endian), headers ("name: value" lines, read the
 *			  way http.c reads them), body length (2 bytes, big-endian),
 *			  body; lengths are cut to what is left
 *
 * Each answer goes to the dialect's handle_response for the batch's
 * current step, after build_request (and build_abort) for that step, and
 * its result is applied the way worker.c applies it (outcomes settle rows;
 * NEXT_STEP moves to the new step, remote id, step data and memo;
 * NEXT_RESUBMIT goes back to step 0 with its note; an ERROR, also from a streaming
 * request's on_data, counts as NEXT_RETRY) until the batch is finished.  An ERROR is a clean
 * refusal.  A crash, a sanitizer report or a broken contract (which aborts
 * here, so libFuzzer keeps the input) is a finding.
 *
 * Rows are encoded once per operation by the dialect itself, from a
 * (id text, name text, n integer) source keyed by id.  Everything one
 * input allocates lives in a memory context reset after it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "access/tupdesc.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "bulkops.h"
#include "dialect.h"

PG_FUNCTION_INFO_V1(bulkops_fuzz);
PG_FUNCTION_INFO_V1(bulkops_fuzz_dialects);

/* libFuzzer's entry point for programs with a main of their own */
extern int	LLVMFuzzerRunDriver(int *argc, char ***argv,
								int (*cb) (const uint8_t *data, size_t size));

#define FUZZ_MAX_ROWS 8
#define FUZZ_MAX_ANSWERS 32
#define FUZZ_URL "http://127.0.0.1:9/fuzz/v1"
#define FUZZ_QUERY "SELECT Id, Name FROM Contact"

/* The batch rows of one operation, encoded once. */
typedef struct FuzzOp
{
	bool		has;
	char	   *prologue;
	int			prologue_len;
	char	   *body;
	int32		offsets[FUZZ_MAX_ROWS + 1];
} FuzzOp;

static const BulkopsDialect *fuzz_dialect;
static const char *fuzz_resource;
static Jsonb *fuzz_target_options;	/* the target's, before byte 3's */
static FuzzOp fuzz_ops[BULKOPS_NUM_OPS];
static MemoryContext fuzz_input_cxt;

/* Where the conversation stands, for violation reports. */
static int	fuzz_answer_no;

static void fuzz_violation(const BulkopsBatch *batch, const char *fmt,...)
			pg_attribute_printf(2, 3);

static void
fuzz_violation(const BulkopsBatch *batch, const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "bulkops fuzz: dialect \"%s\" broke the contract "
			"(operation %s, step %d, answer %d): ",
			fuzz_dialect->name, bulkops_op_name(batch->op), batch->step,
			fuzz_answer_no);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	abort();
}

/* Encode FUZZ_MAX_ROWS rows for every operation the dialect has. */
static void
fuzz_encode_rows(void)
{
	TupleDesc	desc = CreateTemplateTupleDesc(3);
	BulkopsEncoder *enc;
	int			op;

	TupleDescInitEntry(desc, 1, "id", TEXTOID, -1, 0);
	TupleDescInitEntry(desc, 2, "name", TEXTOID, -1, 0);
	TupleDescInitEntry(desc, 3, "n", INT4OID, -1, 0);
	enc = bulkops_encoder_create(desc, CurrentMemoryContext);

	for (op = 0; op < BULKOPS_NUM_OPS; op++)
	{
		BulkopsEncodeTarget target = {0};
		FuzzOp	   *fop = &fuzz_ops[op];
		StringInfoData buf;
		int			i;

		fop->has = fuzz_dialect->op_names[op] != NULL;
		if (!fop->has)
			continue;
		if (op == BULKOPS_OP_QUERY)
		{
			/* one batch with no rows, the remote query as its body */
			fop->body = pstrdup(FUZZ_QUERY);
			fop->prologue = "";
			continue;
		}
		target.resource = fuzz_resource;
		target.op = (BulkopsOp) op;
		target.key = "id";
		target.key_att = 0;
		target.options = fuzz_target_options;
		target.prologue = makeStringInfo();
		if (fuzz_dialect->begin_encode)
			fuzz_dialect->begin_encode(&target, enc);
		initStringInfo(&buf);
		for (i = 0; i < FUZZ_MAX_ROWS; i++)
		{
			Datum		values[3];
			bool		nulls[3] = {false, false, false};

			target.key_text = psprintf("r%d", i + 1);
			values[0] = CStringGetTextDatum(target.key_text);
			values[1] = CStringGetTextDatum(psprintf("name %d", i + 1));
			values[2] = Int32GetDatum(i + 1);
			fop->offsets[i] = buf.len;
			fuzz_dialect->encode_row(&target, enc, values, nulls, &buf);
		}
		fop->offsets[FUZZ_MAX_ROWS] = buf.len;
		fop->body = buf.data;
		fop->prologue = target.prologue->data;
		fop->prologue_len = target.prologue->len;
		if (fuzz_dialect->end_encode)
			fuzz_dialect->end_encode(&target, FUZZ_MAX_ROWS, 1);
	}
}

/* The job options: the target's, with the booleans byte 3 asks for. */
static Jsonb *
fuzz_options(uint8 bits)
{
	StringInfoData buf;
	const BulkopsOptionDef *def;
	bool		first = true;

	if (bits == 0)
		return fuzz_target_options;
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (def = fuzz_dialect->options; def && def->name && bits; def++)
	{
		int			v;

		if (def->type != BULKOPS_OPT_BOOL)
			continue;
		v = bits & 3;
		bits >>= 2;
		if (v != 1 && v != 2)
			continue;
		if (!first)
			appendStringInfoChar(&buf, ',');
		first = false;
		bulkops_json_string(&buf, def->name, strlen(def->name));
		appendStringInfoString(&buf, v == 2 ? ":true" : ":false");
	}
	appendStringInfoChar(&buf, '}');
	return bulkops_merge_options(fuzz_target_options,
								 DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
																	CStringGetDatum(buf.data))));
}

/*
 * A request must be one curl can send as it is.  One that carries the
 * target's credentials must also go where the target is, as the dialect
 * meant: same scheme, host and port, no dot segments an answer slipped into
 * the path.  A URL without them (no_auth: a link an answer gave) may go
 * elsewhere; the host policy in http.c rules on that.
 */
static void
fuzz_check_request(const BulkopsBatch *batch, const BulkopsRequest *req)
{
	const char *p;
	ListCell   *lc;

	if (req->method == NULL || req->url == NULL)
		fuzz_violation(batch, "request without a method or url");
	if (pg_strncasecmp(req->url, "https://", 8) != 0 &&
		pg_strncasecmp(req->url, "http://", 7) != 0)
		fuzz_violation(batch, "request url \"%s\" is not http(s)", req->url);
	for (p = req->url; *p; p++)
		if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f)
			fuzz_violation(batch, "request url \"%s\" has byte 0x%02x",
						   req->url, (unsigned char) *p);
	if (!req->no_auth)
	{
		const char *host = strstr(batch->url, "://") + 3;
		size_t		origin = host - batch->url + strcspn(host, "/?#");

		if (pg_strncasecmp(req->url, batch->url, origin) != 0 ||
			strchr("/?#", req->url[origin]) == NULL)
			fuzz_violation(batch, "request url \"%s\" with credentials leaves the target",
						   req->url);
		/* curl removes dot segments: the request would go elsewhere */
		for (p = req->url + origin; *p == '/'; p += 1 + strcspn(p + 1, "/?#"))
		{
			size_t		seg = strcspn(p + 1, "/?#");

			if ((seg == 1 && p[1] == '.') || (seg == 2 && p[1] == '.' && p[2] == '.'))
				fuzz_violation(batch, "request url \"%s\" has a dot segment", req->url);
		}
	}
	if (req->body != NULL && req->content_type == NULL)
		fuzz_violation(batch, "request body without a content type");
	foreach(lc, req->headers)
	{
		BulkopsHeader *h = lfirst(lc);

		if (h->name == NULL || h->value == NULL ||
			strpbrk(h->name, "\r\n:") != NULL || strpbrk(h->value, "\r\n") != NULL)
			fuzz_violation(batch, "request header that is missing or splits lines");
	}
}

/* What src/dialect.h promises of a result, and what worker.c relies on. */
static void
fuzz_check_result(const BulkopsBatch *batch, const BulkopsResult *res)
{
	bool		given[FUZZ_MAX_ROWS] = {false};
	int			ngiven = 0;
	ListCell   *lc;

	if ((int) res->next < BULKOPS_NEXT_DONE || (int) res->next > BULKOPS_NEXT_FAIL)
		fuzz_violation(batch, "next is %d", (int) res->next);
	if (res->limited && res->next != BULKOPS_NEXT_RETRY)
		fuzz_violation(batch, "limited without NEXT_RETRY");

	foreach(lc, res->outcomes)
	{
		BulkopsOutcome *o = lfirst(lc);

		if (o->row < 0 || o->row >= batch->nrows)
			fuzz_violation(batch, "outcome for row %d of %d", o->row, batch->nrows);
		if (!batch->pending[o->row])
			fuzz_violation(batch, "outcome for row %d, which already has one", o->row);
		if (given[o->row])
			fuzz_violation(batch, "two outcomes for row %d", o->row);
		given[o->row] = true;
		ngiven++;
		if ((int) o->status < BULKOPS_ROW_SUCCEEDED || (int) o->status > BULKOPS_ROW_UNKNOWN)
			fuzz_violation(batch, "outcome status %d", (int) o->status);
		if (o->created < -1 || o->created > 1)
			fuzz_violation(batch, "outcome created %d", o->created);
	}

	switch (res->next)
	{
		case BULKOPS_NEXT_DONE:
			if (ngiven != batch->npending)
				fuzz_violation(batch, "DONE with %d outcomes for %d pending rows",
							   ngiven, batch->npending);
			break;
		case BULKOPS_NEXT_STEP:
			if (res->step <= 0)
				fuzz_violation(batch, "NEXT_STEP to step %d", res->step);
			if (res->remote_id == NULL)
				fuzz_violation(batch, "NEXT_STEP without a remote_id");
			if (res->delay_ms < 0)
				fuzz_violation(batch, "delay_ms %d", res->delay_ms);
			break;
		case BULKOPS_NEXT_RESUBMIT:

			/*
			 * a free resend that settles nothing can loop forever, unless it
			 * changes what the next submit sends (a new note: fewer rows)
			 */
			if (!res->counts_attempt && !res->maybe_applied && ngiven == 0 &&
				(res->step_data == NULL ||
				 (batch->step == 0 && batch->step_data != NULL &&
				  strcmp(res->step_data, batch->step_data) == 0)))
				fuzz_violation(batch, "RESUBMIT that neither settles a row, counts an attempt nor leaves a new note");
			break;
		case BULKOPS_NEXT_RETRY:
			if (res->error == NULL)
				fuzz_violation(batch, "RETRY without an error");
			if (res->delay_ms < 0)
				fuzz_violation(batch, "delay_ms %d", res->delay_ms);
			break;
		case BULKOPS_NEXT_FAIL:
			if (res->error == NULL)
				fuzz_violation(batch, "FAIL without an error");
			if ((int) res->fail_status < BULKOPS_ROW_SUCCEEDED ||
				(int) res->fail_status > BULKOPS_ROW_UNKNOWN)
				fuzz_violation(batch, "fail_status %d", (int) res->fail_status);
			break;
	}
}

/* Headers as http.c keeps them: names lower-cased, values left-trimmed. */
static List *
fuzz_headers(const char *data, size_t len, const char **content_type)
{
	char	   *text = pnstrdup(data, len);
	List	   *headers = NIL;
	char	   *line;
	char	   *save;

	*content_type = NULL;
	for (line = strtok_r(text, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save))
	{
		char	   *colon = strchr(line, ':');
		BulkopsHeader *h;

		if (colon == NULL)
			continue;
		*colon = '\0';
		for (char *c = line; *c; c++)
			*c = pg_tolower((unsigned char) *c);
		h = palloc(sizeof(BulkopsHeader));
		h->name = line;
		h->value = colon + 1 + strspn(colon + 1, " \t");
		headers = lappend(headers, h);
		if (strcmp(h->name, "content-type") == 0)
			*content_type = h->value;
	}
	return headers;
}

/*
 * Feed a streaming request the body in pieces of the given size, as
 * http.c does for answers below 300.  Returns false if on_data refused it,
 * which worker.c treats as a transport error.
 */
static bool
fuzz_stream(const BulkopsRequest *req, const char *body, size_t len,
			size_t piece)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		size_t		off;

		for (off = 0; off < len; off += piece)
		{
			/* an exact-size copy of each piece, as for whole bodies */
			size_t		n = Min(piece, len - off);
			char	   *copy = malloc(n);

			if (copy == NULL)
				elog(ERROR, "out of memory");
			memcpy(copy, body + off, n);
			PG_TRY();
			{
				req->on_data(req->stream_state, copy, n);
			}
			PG_FINALLY();
			{
				free(copy);
			}
			PG_END_TRY();
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* One answer: the dialect's reading of it, an ERROR being a retry. */
static void
fuzz_answer(const BulkopsBatch *batch, const BulkopsResponse *resp,
			BulkopsResult *res)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		fuzz_dialect->handle_response(batch, resp, res);
		bulkops_check_stored_text(res);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		memset(res, 0, sizeof(*res));
		res->next = BULKOPS_NEXT_RETRY;
		res->error = pstrdup("could not read the answer");
	}
	PG_END_TRY();
}

/* build_abort, where the dialect has it, must build a sendable request. */
static void
fuzz_abort_request(const BulkopsBatch *batch)
{
	MemoryContext cxt = CurrentMemoryContext;
	BulkopsRequest req = {0};
	volatile bool built = false;

	if (fuzz_dialect->build_abort == NULL)
		return;
	PG_TRY();
	{
		built = fuzz_dialect->build_abort(batch, &req);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
	}
	PG_END_TRY();
	if (built)
		fuzz_check_request(batch, &req);
}

/* What worker.c's set_memo does. */
static void
fuzz_set_memo(BulkopsBatch *batch, void *memo)
{
	batch->memo = memo;
	if (memo == NULL)
		MemoryContextReset(batch->memo_cxt);
}

/* The next big-endian 16-bit field, or -1 at the end of the input. */
static int
fuzz_u16(const uint8_t *data, size_t size, size_t *pos)
{
	int			v;

	if (size - *pos < 2)
		return -1;
	v = (data[*pos] << 8) | data[*pos + 1];
	*pos += 2;
	return v;
}

static void
fuzz_conversation(const uint8_t *data, size_t size)
{
	BulkopsBatch batch = {0};
	bool		pending[FUZZ_MAX_ROWS];
	const FuzzOp *fop;
	size_t		pos = 4;
	int			op;
	int			i;

	if (size < 4)
		return;
	op = data[0] % BULKOPS_NUM_OPS;
	while (!fuzz_ops[op].has)
		op = (op + 1) % BULKOPS_NUM_OPS;
	fop = &fuzz_ops[op];

	batch.job_id = 1;
	batch.batch_no = 1;
	batch.op = (BulkopsOp) op;
	batch.url = FUZZ_URL;
	batch.resource = fuzz_resource;
	batch.options = fuzz_options(data[3]);
	batch.first_row = 1;
	batch.key = "id";
	batch.memo_cxt = AllocSetContextCreate(CurrentMemoryContext, "bulkops fuzz memo",
										   ALLOCSET_SMALL_SIZES);
	batch.nrows = op == BULKOPS_OP_QUERY ? 0 : 1 + data[1] % FUZZ_MAX_ROWS;
	batch.prologue = fop->prologue;
	batch.prologue_len = fop->prologue_len;
	batch.body = fop->body;
	batch.offsets = fop->offsets;
	for (i = 0; i < batch.nrows; i++)
	{
		pending[i] = (data[2] & (1 << i)) == 0;
		batch.npending += pending[i];
	}
	if (batch.npending == 0 && batch.nrows > 0)
	{
		for (i = 0; i < batch.nrows; i++)
			pending[i] = true;
		batch.npending = batch.nrows;
	}
	batch.pending = pending;

	for (fuzz_answer_no = 1; fuzz_answer_no <= FUZZ_MAX_ANSWERS; fuzz_answer_no++)
	{
		BulkopsRequest req = {0};
		BulkopsResponse resp = {0};
		BulkopsResult res = {0};
		int			raw_status;
		size_t		len;
		size_t		piece;
		char	   *body;
		ListCell   *lc;
		bool		transport_error = false;

		if ((raw_status = fuzz_u16(data, size, &pos)) < 0 ||
			(len = fuzz_u16(data, size, &pos)) == (size_t) -1)
			break;
		len = Min(len, size - pos);
		resp.headers = fuzz_headers((const char *) data + pos, len,
									&resp.content_type);
		pos += len;
		if ((len = fuzz_u16(data, size, &pos)) == (size_t) -1)
			len = 0;
		len = Min(len, size - pos);
		resp.status = raw_status % 1000;
		piece = (raw_status / 1000) & 15 ? (raw_status / 1000) & 15 : Max(len, 1);
		if ((raw_status / 1000) & 16)
			fuzz_set_memo(&batch, NULL);	/* the worker restarted */
		if ((raw_status / 1000) & 32)
			batch.stopping = true;
		/* worker.c settles a cancelled batch that has no remote task yet */
		if (batch.stopping && batch.step == 0)
			break;

		/* worker.c ends the batch when its request cannot be built */
		fuzz_dialect->build_request(&batch, &req);
		fuzz_check_request(&batch, &req);
		if (batch.stopping && strcmp(req.method, "GET") != 0)
			fuzz_violation(&batch, "a %s request for a cancelled job: it may add work",
						   req.method);
		fuzz_abort_request(&batch);

		/* an exact-size copy, so that reading past the end is caught */
		body = malloc(len + 1);
		if (body == NULL)
			elog(ERROR, "out of memory");
		memcpy(body, data + pos, len);
		body[len] = '\0';
		pos += len;
		resp.body = body;
		resp.len = len;
		if (req.on_data && resp.status < 300)
		{
			transport_error = !fuzz_stream(&req, body, len, piece);
			resp.body = "";
			resp.len = 0;
			resp.stream_state = req.stream_state;
		}
		if (transport_error)
		{
			res.next = BULKOPS_NEXT_RETRY;
			res.error = pstrdup("could not read the answer");
		}
		else
			fuzz_answer(&batch, &resp, &res);
		free(body);

		fuzz_check_result(&batch, &res);
		if (res.progress)
			batch.progress = pstrdup(res.progress);
		foreach(lc, res.outcomes)
		{
			BulkopsOutcome *o = lfirst(lc);

			pending[o->row] = false;
			batch.npending--;
		}
		/* a query job has no rows to settle: only the dialect ends it */
		if (res.next == BULKOPS_NEXT_DONE || res.next == BULKOPS_NEXT_FAIL ||
			(batch.npending == 0 && batch.nrows > 0))
			break;
		if (res.next == BULKOPS_NEXT_STEP)
		{
			batch.step = res.step;
			batch.remote_id = res.remote_id ? pstrdup(res.remote_id) : NULL;
			batch.step_data = res.step_data ? pstrdup(res.step_data) : NULL;
			fuzz_set_memo(&batch, res.memo);
		}
		else if (res.next == BULKOPS_NEXT_RESUBMIT)
		{
			batch.step = 0;
			batch.remote_id = NULL;
			batch.step_data = res.step_data ? pstrdup(res.step_data) : NULL;
			fuzz_set_memo(&batch, NULL);
		}
	}
}

static int
fuzz_one(const uint8_t *data, size_t size)
{
	MemoryContext old = MemoryContextSwitchTo(fuzz_input_cxt);

	PG_TRY();
	{
		fuzz_conversation(data, size);
	}
	PG_CATCH();
	{
		/* an ERROR outside handle_response, e.g. from build_request */
		FlushErrorState();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextReset(fuzz_input_cxt);
	return 0;
}

/*
 * bulkops_fuzz(dialect text, target jsonb, args text[]) RETURNS integer
 *
 * target is {"resource": ..., "options": {...}}, what a valid target of
 * the dialect needs (default resource "Contact", no options); args are
 * libFuzzer's command line (corpus directories and -flags).
 */
Datum
bulkops_fuzz(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *target = PG_GETARG_JSONB_P(1);
	ArrayType  *args = PG_GETARG_ARRAYTYPE_P(2);
	JsonbValue *v;
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			argc;
	char	  **argv;
	int			i;

	fuzz_dialect = bulkops_find_dialect(name, false);
	v = bulkops_jsonb_get(target, "resource");
	fuzz_resource = MemoryContextStrdup(TopMemoryContext,
										v ? bulkops_jtext(v) : "Contact");
	v = bulkops_jsonb_get(target, "options");
	fuzz_target_options = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															 CStringGetDatum("{}")));
	if (v && v->type == jbvBinary)
		fuzz_target_options = JsonbValueToJsonb(v);
	bulkops_validate_options(fuzz_target_options, fuzz_dialect, "target");
	if (fuzz_dialect->validate_target)
		fuzz_dialect->validate_target(FUZZ_URL, fuzz_resource, fuzz_target_options);
	fuzz_encode_rows();

	deconstruct_array(args, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &nelems);
	argv = palloc0(sizeof(char *) * (nelems + 2));
	argv[0] = "bulkops_fuzz";
	argc = 1;
	for (i = 0; i < nelems; i++)
		if (!nulls[i])
			argv[argc++] = TextDatumGetCString(elems[i]);

	fuzz_input_cxt = AllocSetContextCreate(TopMemoryContext, "bulkops fuzz input",
										   ALLOCSET_DEFAULT_SIZES);
	PG_RETURN_INT32(LLVMFuzzerRunDriver(&argc, &argv, fuzz_one));
}

/* bulkops_fuzz_dialects() RETURNS SETOF text: every registered dialect */
Datum
bulkops_fuzz_dialects(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const BulkopsDialect *d;
	int			i;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (i = 0; (d = bulkops_dialect_at(i)) != NULL; i++)
	{
		Datum		value = CStringGetTextDatum(d->name);
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}
