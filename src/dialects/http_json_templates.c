/*-------------------------------------------------------------------------
 *
 * http_json_templates.c
 *	  The "http_json" dialect's templates (options "body" and "row"),
 *	  compiled into pieces: literal JSON text, and the placeholders "$rows",
 *	  "$row", "$key" and "$operation" where whole values go
 *	  (docs/protocols/http_json.md).
 *
 * A template is given as a JSON value, or as the same written as JSON text
 * in a string; a string that is exactly a placeholder is that placeholder.
 * Compiling writes every literal part once as JSON text, so that applying
 * a template (http_json.c, per row at enqueue and per request at send
 * time) only appends pieces.  Errors name the option.
 *
 * Like every dialect file it knows nothing of tables or the worker loop;
 * it allocates in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

#include "bulkops.h"
#include "http_json.h"

/* the placeholders of the templates, by HjPieceKind */
static const char *const placeholders[HJ_NUM_PIECE_KINDS] = {
	NULL, "$rows", "$row", "$key", "$operation"
};

static HjPieceKind
placeholder_kind(const char *s, int len)
{
	int			k;

	for (k = HJ_ROWS; k < HJ_NUM_PIECE_KINDS; k++)
		if (strlen(placeholders[k]) == len && memcmp(placeholders[k], s, len) == 0)
			return (HjPieceKind) k;
	return HJ_TEXT;
}

/* End the text piece being written (if any), then add a placeholder. */
static void
add_piece(HjTemplate *t, StringInfo buf, HjPieceKind kind, int *cap)
{
	if (t->npieces + 2 > *cap)
	{
		*cap = Max(*cap * 2, 8);
		t->pieces = t->pieces ? repalloc(t->pieces, sizeof(HjPiece) * *cap)
			: palloc(sizeof(HjPiece) * *cap);
	}
	if (buf->len > 0)
	{
		HjPiece    *p = &t->pieces[t->npieces++];

		p->kind = HJ_TEXT;
		p->text = pnstrdup(buf->data, buf->len);
		p->len = buf->len;
		resetStringInfo(buf);
	}
	if (kind != HJ_TEXT)
	{
		HjPiece    *p = &t->pieces[t->npieces++];

		p->kind = kind;
		p->text = NULL;
		p->len = 0;
		t->uses[kind]++;
	}
}

/* Write a template's scalar as JSON text, or as the placeholder it is. */
static void
emit_scalar(HjTemplate *t, StringInfo buf, JsonbValue *v, int *cap)
{
	HjPieceKind kind;

	switch (v->type)
	{
		case jbvString:
			kind = placeholder_kind(v->val.string.val, v->val.string.len);
			if (kind != HJ_TEXT)
				add_piece(t, buf, kind, cap);
			else
				bulkops_json_string(buf, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			appendStringInfoString(buf,
								   DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric))));
			break;
		case jbvBool:
			appendStringInfoString(buf, v->val.boolean ? "true" : "false");
			break;
		case jbvNull:
			appendStringInfoString(buf, "null");
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d in a template", (int) v->type);
	}
}

/*
 * Write a template's object or array as JSON text without whitespace,
 * members in the order jsonb keeps them, placeholders cut out where they
 * are whole string values (never as member names).
 */
static void
emit_container(HjTemplate *t, StringInfo buf, JsonbContainer *c, int *cap)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken tok;
	JsonbValue	v;
	int			depth = 0;
	int			room = 8;
	bool	   *started = palloc(sizeof(bool) * room);	/* per open container:
														 * an item was written */
	bool		after_key = false;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		bool		item = (tok == WJB_BEGIN_OBJECT || tok == WJB_BEGIN_ARRAY ||
							tok == WJB_KEY || tok == WJB_ELEM || tok == WJB_VALUE);

		/* a comma before every member or element but the first */
		if (item && !after_key && depth > 0)
		{
			if (started[depth - 1])
				appendStringInfoChar(buf, ',');
			started[depth - 1] = true;
		}
		after_key = false;
		switch (tok)
		{
			case WJB_BEGIN_OBJECT:
			case WJB_BEGIN_ARRAY:
				appendStringInfoChar(buf, tok == WJB_BEGIN_OBJECT ? '{' : '[');
				if (depth == room)
				{
					room *= 2;
					started = repalloc(started, sizeof(bool) * room);
				}
				started[depth++] = false;
				break;
			case WJB_END_OBJECT:
			case WJB_END_ARRAY:
				appendStringInfoChar(buf, tok == WJB_END_OBJECT ? '}' : ']');
				depth--;
				break;
			case WJB_KEY:
				bulkops_json_string(buf, v.val.string.val, v.val.string.len);
				appendStringInfoChar(buf, ':');
				after_key = true;
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				emit_scalar(t, buf, &v, cap);
				break;
			default:
				break;
		}
	}
	pfree(started);
}

/*
 * A template given as JSON text in a string, parsed; an error naming the
 * option when it is not JSON.
 */
static Jsonb *
parse_template_text(const char *option, JsonbValue *v)
{
	char	   *s = pnstrdup(v->val.string.val, v->val.string.len);
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile jb = NULL;
	char	   *volatile why = NULL;

	PG_TRY();
	{
		jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		why = edata->detail ? edata->detail : edata->message;
	}
	PG_END_TRY();
	if (jb == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("http_json option \"%s\" is a string that is neither a placeholder nor JSON text",
						option),
				 errdetail("%s", why),
				 errhint("Give the template as JSON, e.g. {\"records\": \"$rows\"}, or as JSON text in a string.")));
	return jb;
}

/*
 * Compile option's template v: a JSON value, or the same written as JSON
 * text in a string (a string that is exactly a placeholder is that
 * placeholder).
 */
void
hj_compile_template(const char *option, JsonbValue *v, HjTemplate *t)
{
	StringInfoData buf;
	int			cap = 0;

	memset(t, 0, sizeof(HjTemplate));
	initStringInfo(&buf);
	if (v->type == jbvString &&
		placeholder_kind(v->val.string.val, v->val.string.len) == HJ_TEXT)
	{
		Jsonb	   *jb = parse_template_text(option, v);

		if (JB_ROOT_IS_SCALAR(jb))
		{
			JsonbValue	s;

			JsonbExtractScalar(&jb->root, &s);
			emit_scalar(t, &buf, &s, &cap);
		}
		else
			emit_container(t, &buf, &jb->root, &cap);
	}
	else if (v->type == jbvBinary)
		emit_container(t, &buf, v->val.binary.data, &cap);
	else
		emit_scalar(t, &buf, v, &cap);
	add_piece(t, &buf, HJ_TEXT, &cap);
}
