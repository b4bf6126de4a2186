/*-------------------------------------------------------------------------
 *
 * bulkops.h
 *	  Private declarations shared by the parts of bulkops.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_H
#define BULKOPS_H

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "dialect.h"

/*
 * BULKOPS_VERSION is the extension's default_version in bulkops.control,
 * which the Makefile passes on, so that the library and the schema it
 * installs never disagree.
 */
#ifndef BULKOPS_VERSION
#error "BULKOPS_VERSION must be defined (the Makefile reads it from bulkops.control)"
#endif
#define BULKOPS_USER_AGENT "bulkops/" BULKOPS_VERSION
/* the extension version the worker's statements need: the one it installs */
#define BULKOPS_SCHEMA_VERSION BULKOPS_VERSION
#define BULKOPS_MAX_DATABASES 16
#define BULKOPS_MAX_LANES 8

/* bulkops.c: settings */
extern char *bulkops_database_names;
extern int	bulkops_batch_size;
extern int	bulkops_concurrency;
extern int	bulkops_max_attempts;
extern int	bulkops_http_timeout_ms;
extern int	bulkops_poll_interval_ms;
extern int	bulkops_max_response_size;
extern int	bulkops_launcher_naptime_ms;
extern int	bulkops_receipt_retention_s;
extern int	bulkops_partition_interval_s;

/* receipts_stats.c */
extern void bulkops_install_receipts_stats(void);
extern int	bulkops_workers_per_database;
extern int	bulkops_max_target_memory_kb;
extern int	bulkops_user_code_timeout_ms;

/* bulkops.c: shared state */
extern bool bulkops_preloaded;
extern void bulkops_wake_worker_at_commit(void);
extern int	bulkops_lane;
extern void bulkops_worker_register_self(Oid dboid, int lane);
extern void bulkops_worker_unregister_self(void);
extern int	bulkops_worker_pid(Oid dboid);

/* A worker, as monitoring sees it. */
typedef struct BulkopsWorkerInfo
{
	int			lane;
	int			pid;
	TimestampTz last_loop;		/* when its loop last went round */
} BulkopsWorkerInfo;

extern void bulkops_worker_beat(void);
extern int	bulkops_worker_list(Oid dboid, BulkopsWorkerInfo *out);

/* crash.c: test-only crash injection (bulkops.crash_at) */
extern bool bulkops_crash_armed;
extern void bulkops_define_crash_setting(void);
extern void bulkops_crash_reached(const char *point);

/* Die here, as if by kill -9, when bulkops.crash_at names this point. */
#define bulkops_crash_point(point) \
	do { \
		if (unlikely(bulkops_crash_armed)) \
			bulkops_crash_reached(point); \
	} while (0)

/* owner.c: sections with other rights or fixed settings */
typedef struct BulkopsSection
{
	Oid			saved_uid;
	int			saved_sec;
	int			nestlevel;
} BulkopsSection;

extern bool bulkops_extension_info(Oid *owner, char **version);
extern Oid	bulkops_extension_owner(void);
extern void bulkops_require_current_schema(void);
extern void bulkops_enter_owner(BulkopsSection *s);
extern void bulkops_enter_safe(BulkopsSection *s);
extern void bulkops_enter_user(BulkopsSection *s, Oid role);
extern void bulkops_leave(BulkopsSection *s);
extern void bulkops_leave_user(BulkopsSection *s);
extern void bulkops_fix_session_settings(void);

/* privileges.c: who may do what through a target */
typedef enum BulkopsPrivilege
{
	BULKOPS_PRIV_PUSH = 1 << 0,
	BULKOPS_PRIV_DELETE = 1 << 1,
	BULKOPS_PRIV_EXPORT = 1 << 2
} BulkopsPrivilege;

extern bool bulkops_is_admin(void);
extern void bulkops_require_admin(const char *action);
extern void bulkops_require_target_owner(const char *target, Oid owner,
										 const char *action);
extern void bulkops_require_op_privilege(const char *target, Oid owner,
										 BulkopsOp op);
extern void bulkops_change_grants(const char *target, Oid grantee,
								  const char *privileges, bool grant);
extern bool bulkops_has_target_privilege(Oid role, const char *target,
										 const char *privileges);

/* launcher and worker entry points (worker.c, launcher.c) */
extern PGDLLEXPORT void bulkops_launcher_main(Datum arg);
extern PGDLLEXPORT void bulkops_worker_main(Datum arg);

/* options.c */
typedef enum BulkopsOptionType
{
	BULKOPS_OPT_INT,
	BULKOPS_OPT_REAL,
	BULKOPS_OPT_BOOL,
	BULKOPS_OPT_STRING,
	BULKOPS_OPT_OBJECT,			/* a JSON object; its dialect checks inside */
	BULKOPS_OPT_JSON			/* any JSON value (an object, an array, a
								 * string, ...): one option of more than one
								 * shape; its dialect checks inside */
} BulkopsOptionType;

/*
 * How a job's value of an option may relate to its target's effective value
 * (the target's own, else the option's default).  The owner of a target sets
 * its limits; whoever pushes rows to it may only narrow them.  A definition
 * that names no rule gets the first: the target's to set.
 */
typedef enum BulkopsJobRule
{
	BULKOPS_JOB_TARGET_ONLY,	/* the target's value, repeated, or nothing */
	BULKOPS_JOB_ANY,			/* any valid value */
	BULKOPS_JOB_AT_MOST,		/* a number no larger than the target's */
	BULKOPS_JOB_AT_LEAST,		/* a number no smaller than the target's */
	BULKOPS_JOB_RATE,			/* rate_limit: at most the target's, where 0
								 * means no limit */
	BULKOPS_JOB_TARGET_OR_SAFE	/* the target's value, or the option's safe
								 * one: false for a boolean, safe_text for a
								 * string */
} BulkopsJobRule;

struct BulkopsOptionDef
{
	const char *name;
	BulkopsOptionType type;
	double		min;			/* numbers only */
	double		max;
	BulkopsJobRule job;

	/*
	 * The value in effect when the target does not set the option, which a
	 * job's value is compared with: a number or boolean (0 or 1) in dflt, or
	 * a setting's value, *dflt_setting times dflt (a unit), or a string in
	 * dflt_text.  A number without a default is dflt = INFINITY (no limit); a
	 * string without one is NULL (unset).  A JSON option's default, if any,
	 * is the JSON string dflt_text.
	 */
	double		dflt;
	const int  *dflt_setting;
	const char *dflt_text;
	const char *safe_text;		/* BULKOPS_JOB_TARGET_OR_SAFE strings */

	/*
	 * Another name of the same option, kept for the targets that use it: a
	 * job's value is compared with the target's under either name.  The
	 * reader of the option decides what both together mean.
	 */
	const char *alias;
};

/* batch_bytes when neither target nor job sets it */
#define BULKOPS_DEFAULT_BATCH_BYTES (8 * 1024 * 1024)

/*
 * The longest Retry-After the worker keeps (http.c), in seconds: a day; the
 * largest retry_after_max, the option that caps it further, whose default
 * is an hour.
 */
#define BULKOPS_RETRY_AFTER_LIMIT_S 86400
#define BULKOPS_RETRY_AFTER_MAX_DEFAULT 3600

extern void bulkops_validate_options(Jsonb *options,
									 const BulkopsDialect *dialect,
									 const char *what);
extern Jsonb *bulkops_job_options(const char *target, Jsonb *target_options,
								  Jsonb *job_options,
								  const BulkopsDialect *dialect,
								  const char *url, const char *resource);
extern Jsonb *bulkops_merge_options(Jsonb *base, Jsonb *over);
extern int	bulkops_opt_int(Jsonb *options, const char *name, int dflt);
extern double bulkops_opt_default(const BulkopsDialect *dialect,
								  const char *name);
extern double bulkops_opt_real(Jsonb *options, const char *name, double dflt);
extern bool bulkops_opt_bool(Jsonb *options, const char *name, bool dflt);
extern char *bulkops_opt_string(Jsonb *options, const char *name,
								const char *dflt);
extern JsonbValue *bulkops_jsonb_get(Jsonb *jb, const char *key);

/* auth.c: credentials, and the headers that carry them */
extern void bulkops_validate_auth(Jsonb *auth, const BulkopsDialect *d,
								  const char *url);
extern List *bulkops_auth_headers(Jsonb *auth, const char *target);

/* secrets.c: the secrets in credentials */
extern void bulkops_validate_secret(Jsonb *auth, const char *type,
									const char *member);
extern void bulkops_check_secret_file(const char *path);
extern char *bulkops_resolve_secret(Jsonb *auth, const char *member,
									const char *target, bool multiline);
extern char *bulkops_read_secret_file(const char *path, const char *target);
extern char *bulkops_auth_refusal(Jsonb *auth, const char *target, Oid set_by);

/* netpolicy.c: host policy (also used at create_target) */
extern void bulkops_check_url(const char *url, int elevel, char **errmsg_out);

/* enqueue.c */
extern int64 bulkops_enqueue(const char *target, BulkopsOp op,
							 text *source, const char *key, Jsonb *options);
extern int64 bulkops_enqueue_query(const char *target, const char *query,
								   const char *into, Jsonb *job_options);
extern void bulkops_check_source(const char *source, const char *key);

/* remote_text.c: what the remote side sent, made fit to store */
extern const char *bulkops_clean_text(const char *s, int maxlen);
extern void bulkops_check_stored_text(BulkopsResult *res);

/* sink.c: a query job's destination, by OID or to be created */
typedef struct BulkopsSinkDest
{
	Oid			relid;			/* InvalidOid until the table exists */
	char	   *schema;			/* where to create it, else NULL */
	char	   *table;
} BulkopsSinkDest;

/* What writing a page, or ending an export, adds to the job's counters. */
typedef struct BulkopsSinkCounts
{
	int64		total;			/* records received: rows_total */
	int64		stored;			/* handed to the table: rows_succeeded */
	int64		rejected;		/* in bulkops.export_rejects: rows_failed */
} BulkopsSinkCounts;

/*
 * The options of an export's destination, which every dialect with a query
 * operation lists among its own and checks, in validate_target, with
 * bulkops_check_export_options.  They concern only the local table, which
 * the job's creator must have the rights for (checked at bulk_query time):
 * a job may choose any of them.
 */
#define BULKOPS_EXPORT_OPTIONS \
	{"mode", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_ANY,.dflt_text = "append"}, \
	{"merge_key", BULKOPS_OPT_STRING, 0, 0, BULKOPS_JOB_ANY}, \
	{"empty_as_null", BULKOPS_OPT_BOOL, 0, 0, BULKOPS_JOB_ANY,.dflt = 0}, \
	{"strict", BULKOPS_OPT_BOOL, 0, 0, BULKOPS_JOB_ANY,.dflt = 0}

extern void bulkops_check_export_options(Jsonb *options);
extern void bulkops_sink_check_destination(Oid relid, Jsonb *options);
extern void bulkops_sink_page(const BulkopsSinkDest *dest, Oid owner,
							  int64 job_id, Jsonb *options,
							  const char *page, size_t len, Oid *relid_out,
							  BulkopsSinkCounts *counts);
extern void bulkops_sink_finish(const BulkopsSinkDest *dest, Oid owner,
								int64 job_id, Jsonb *options, bool completed,
								BulkopsSinkCounts *counts);

#endif							/* BULKOPS_H */
