/*-------------------------------------------------------------------------
 *
 * http_json.h
 *	  What the two files of the "http_json" dialect share: its options read
 *	  into a config, the templates, JSON pointers and the rows a request
 *	  carries.
 *
 * http_json.c owns the options (their checks), the templates, encoding and
 * requests; http_json_answers.c owns JSON pointers and the reading of
 * answers.  Everything allocates in the caller's memory context.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_HTTP_JSON_H
#define BULKOPS_HTTP_JSON_H

#include "utils/jsonb.h"

#include "dialect.h"

#define HJ_STEP_SUBMIT	0
#define HJ_STEP_POLL	1

/* What a piece of a compiled template is. */
typedef enum HjPieceKind
{
	HJ_TEXT,					/* JSON text, as it is */
	HJ_ROWS,					/* "$rows": the array of rows (body only) */
	HJ_ROW,						/* "$row": the row's JSON object (row only) */
	HJ_KEY,						/* "$key": the key column's value (row only) */
	HJ_OPERATION,				/* "$operation": the operation's name */
	HJ_NUM_PIECE_KINDS
} HjPieceKind;

typedef struct HjPiece
{
	HjPieceKind kind;
	char	   *text;			/* HJ_TEXT only */
	int			len;
} HjPiece;

/* A template as JSON text with its placeholders cut out. */
typedef struct HjTemplate
{
	int			npieces;
	HjPiece    *pieces;
	int			uses[HJ_NUM_PIECE_KINDS];	/* how often each kind occurs */
} HjTemplate;

/*
 * A test of a value in an answer (options "ok" and "done"): the value at
 * pointer is one of values (a JSON array of scalars), or, without values,
 * a boolean that says it.
 */
typedef struct HjTest
{
	const char *pointer;
	JsonbContainer *values;		/* NULL: a boolean pointer */
} HjTest;

/* The dialect's options of a target or job, read and checked. */
typedef struct HjConfig
{
	const char *method;			/* upper case */
	const char *delete_method;
	const char *path;
	const char *delete_path;
	HjTemplate	body;
	HjTemplate	row;
	const char *results;		/* JSON pointers, "" the whole */
	const char *match;			/* NULL: by position */
	bool		has_ok;
	HjTest		ok;
	const char *remote_id;		/* NULL where not given */
	const char *created;
	const char *error_code;
	const char *error_message;
	const char *task_id;		/* NULL: no remote task */
	const char *poll_path;
	HjTest		done;
	int			max_rows;
	int			max_bytes;
	bool		idempotent_insert;
} HjConfig;

/* One pending row a request carries, as stored in the batch. */
typedef struct HjRow
{
	int			row;			/* index in the batch */
	const char *json;			/* its final JSON, the row template applied */
	int			len;
	const char *key;			/* the key as a quoted JSON string, or "null" */
	int			keylen;
	bool		answered;		/* a result was read for it */
} HjRow;

/* http_json.c */
extern void hj_read_config(Jsonb *options, const char *resource, HjConfig *cfg);
extern HjRow *hj_select_rows(const BulkopsBatch *batch, const HjConfig *cfg,
							 int *nrows);
extern bool hj_repeat_is_safe(const BulkopsBatch *batch, const HjConfig *cfg);
extern int	hj_key_cmp(const HjRow *a, const HjRow *b);

/* http_json_answers.c */
extern bool hj_pointer_is_valid(const char *pointer);
extern void hj_handle_response(const BulkopsBatch *batch,
							   const BulkopsResponse *resp,
							   BulkopsResult *result);

/* http_json_templates.c */
extern void hj_compile_template(const char *option, JsonbValue *v, HjTemplate *t);

#endif							/* BULKOPS_HTTP_JSON_H */
