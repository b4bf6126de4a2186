/*-------------------------------------------------------------------------
 *
 * http.h
 *	  The worker's HTTP client (libcurl multi under the latch).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_HTTP_H
#define BULKOPS_HTTP_H

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#include "dialect.h"
#include "netpolicy.h"

#define BULKOPS_CURL_ERROR_SIZE 256 /* CURL_ERROR_SIZE */

typedef struct BulkopsHttpOptions
{
	int			timeout_ms;
	int			max_response_size;
	const char *ca_file;		/* NULL: the system's trust store */
} BulkopsHttpOptions;

typedef struct BulkopsHttpCall
{
	MemoryContext cxt;			/* owns the call and its answer */
	void	   *arg;			/* the caller's */
	void	   *easy;			/* CURL * */
	void	   *headers;		/* struct curl_slist * */
	char	   *req_body;
	int			max_size;
	size_t		received;		/* body bytes so far */
	void		(*on_data) (void *state, const char *data, size_t len);
	void	   *stream_state;
	char	   *stream_error;	/* what on_data raised */
	int			status_seen;	/* from the status line, as it arrives */
	BulkopsPeerPolicy peer;		/* what each connection is checked against */
	char		refusal[512];	/* why a connection was refused, or "" */
	char		curl_errbuf[BULKOPS_CURL_ERROR_SIZE];
	const char *crash_point;	/* test-only: reached with each body chunk */

	/* the outcome */
	int			curl_code;		/* CURLcode; 0 = an HTTP answer arrived */
	char	   *error;			/* transport failure, NULL if none */
	bool		nothing_sent;	/* failed before the request left */
	bool		too_large;
	bool		refused;		/* by the host or address policy, a redirect
								 * or a TLS certificate: never retry */
	long		status;
	StringInfoData body;
	char	   *content_type;
	List	   *resp_headers;	/* of BulkopsHeader *, names lower-cased */
	char	   *location;		/* a redirect's target, query removed */
	long		retry_after_ms; /* Retry-After, up to a day; 0 if absent */
	bool		has_retry_after;
} BulkopsHttpCall;

extern void bulkops_http_init(void);
extern void bulkops_http_options(Jsonb *options, BulkopsHttpOptions *opts);
extern BulkopsHttpCall *bulkops_http_start(const BulkopsRequest *req,
										   List *auth_headers,
										   const BulkopsHttpOptions *opts,
										   void *arg);
extern bool bulkops_http_wait(long timeout_ms);
extern BulkopsHttpCall *bulkops_http_next_done(void);
extern void bulkops_http_free(BulkopsHttpCall *call);
extern void bulkops_http_abandon(BulkopsHttpCall *call);
extern int	bulkops_http_inflight(void);

#endif							/* BULKOPS_HTTP_H */
