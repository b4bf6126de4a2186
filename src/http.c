/*-------------------------------------------------------------------------
 *
 * http.c
 *	  libcurl's multi interface driven from the worker's wait loop.
 *
 * curl tells us, through its socket and timer callbacks, which sockets it
 * waits on and when it next needs a call; bulkops_http_wait() turns that
 * into one WaitEventSet with the latch and postmaster death, so the worker
 * sleeps on everything at once and never polls.  Easy handles are reused
 * for connection reuse (CURLMOPT_MAX_HOST_CONNECTIONS caps them per host).
 *
 * Every request passes the host policy (netpolicy.c) before it starts, and
 * every connection curl opens or reuses for it passes the address policy;
 * a refusal, a redirect (never followed) and a TLS certificate curl cannot
 * verify end the call as "refused": repeating it cannot help.  Proxies from
 * the environment are not used, so the address checked is the peer's.
 *
 * Memory: calls and their answers live in a context per call, created
 * under TopMemoryContext and freed by bulkops_http_free(); nothing here
 * needs a transaction, and nothing here may run inside one across a wait.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <sys/socket.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "bulkops.h"
#include "http.h"

#define MAX_SOCKETS 256

StaticAssertDecl(BULKOPS_CURL_ERROR_SIZE >= CURL_ERROR_SIZE,
				 "the call's error buffer is smaller than curl needs");

typedef struct SockWatch
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_* */
	int			pos;			/* its event in wait_set, or -1 */
} SockWatch;

static CURLM *multi = NULL;
static SockWatch socks[MAX_SOCKETS];
static int	nsocks = 0;
static TimestampTz timer_at = 0;	/* when curl wants a timeout call; 0:
									 * never */
static List *done_calls = NIL;
static int	inflight = 0;

/*
 * The wait set outlives one wait: building an epoll set costs several
 * syscalls, and the worker waits thousands of times a second under load.
 * It is rebuilt only when curl adds or drops a socket (PostgreSQL 15 cannot
 * remove one event from a set); a socket switching between reading and
 * writing is modified in place.
 */
static WaitEventSet *wait_set = NULL;
static bool wait_set_stale = true;

/* ---- curl callbacks ---- */

static uint32
wait_events_for(int what)
{
	uint32		ev = 0;

	if (what & CURL_POLL_IN)
		ev |= WL_SOCKET_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= WL_SOCKET_WRITEABLE;
	return ev;
}

static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < nsocks; i++)
		if (socks[i].fd == fd)
			break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < nsocks)
		{
			socks[i] = socks[--nsocks];
			wait_set_stale = true;
		}
		return 0;
	}
	if (i == nsocks)
	{
		if (nsocks >= MAX_SOCKETS)
			return -1;
		nsocks++;
		socks[i].fd = fd;
		socks[i].pos = -1;
		wait_set_stale = true;
	}
	else if (!wait_set_stale && socks[i].what != what)
	{
		if (socks[i].pos >= 0 && wait_events_for(what) != 0)
			ModifyWaitEvent(wait_set, socks[i].pos, wait_events_for(what), NULL);
		else
			wait_set_stale = true;
	}
	socks[i].what = what;
	return 0;
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	timer_at = timeout_ms < 0 ? 0
		: TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	BulkopsHttpCall *call = userp;
	size_t		n = size * nmemb;
	volatile size_t taken = n;
	MemoryContext old;

	if (call->crash_point)
		bulkops_crash_point(call->crash_point);
	call->received += n;
	old = MemoryContextSwitchTo(call->cxt);
	if (call->on_data == NULL || call->status_seen >= 300)
	{
		if (call->body.len + n > (size_t) call->max_size)
		{
			call->too_large = true;
			MemoryContextSwitchTo(old);
			return 0;			/* makes curl fail the transfer */
		}
		appendBinaryStringInfo(&call->body, data, n);
	}
	else
	{
		/*
		 * Streamed: the dialect keeps what it needs, so the answer's size is
		 * not bounded here.  An ERROR must not unwind through libcurl's
		 * frames: stop here.
		 */
		PG_TRY();
		{
			call->on_data(call->stream_state, data, n);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(call->cxt);
			edata = CopyErrorData();
			FlushErrorState();
			call->stream_error = psprintf("could not read the answer: %s",
										  edata->message);
			FreeErrorData(edata);
			taken = 0;
		}
		PG_END_TRY();
	}
	MemoryContextSwitchTo(old);
	return taken;
}

/*
 * A Retry-After header (RFC 9110 10.2.3): delay-seconds, or an HTTP-date,
 * which curl_getdate() reads in each of the three forms HTTP has known.
 * What the remote side asks for is kept up to BULKOPS_RETRY_AFTER_LIMIT_S;
 * the option retry_after_max caps it further where it is used.  A date in
 * the past means "now"; a value that is neither form is ignored, so the
 * usual backoff applies rather than a guess.
 */
static void
read_retry_after(BulkopsHttpCall *call, const char *value)
{
	const char *p = value;
	int64		secs;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p >= '0' && *p <= '9')
	{
		const char *q = p;

		secs = 0;
		while (*q >= '0' && *q <= '9')
		{
			if (secs < BULKOPS_RETRY_AFTER_LIMIT_S)
				secs = secs * 10 + (*q - '0');
			q++;
		}
		q += strspn(q, " \t");
		if (*q != '\0')
			return;				/* "120 seconds": not a form HTTP has */
		call->retry_after_ms = Min(secs, BULKOPS_RETRY_AFTER_LIMIT_S) * 1000;
	}
	else
	{
		time_t		date = curl_getdate(p, NULL);
		int64		now_ms;
		int64		ms;

		if (date == -1)
			return;
		/* to the millisecond: a date is an instant, not a delay */
		now_ms = GetCurrentTimestamp() / 1000 +
			(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
		ms = (int64) date * 1000 - now_ms;
		call->retry_after_ms = (long) Max(Min(ms, (int64) BULKOPS_RETRY_AFTER_LIMIT_S * 1000), 0);
	}
	call->has_retry_after = true;
}

static size_t
header_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	BulkopsHttpCall *call = userp;
	size_t		n = size * nmemb;
	MemoryContext old = MemoryContextSwitchTo(call->cxt);
	char	   *line = pnstrdup(data, n);
	char	   *colon;

	line[strcspn(line, "\r\n")] = '\0';
	if (strncmp(line, "HTTP/", 5) == 0)
	{
		/* a new response (after a 100 Continue, say): forget the last one */
		char	   *sp = strchr(line, ' ');

		call->status_seen = sp ? atoi(sp + 1) : 0;
		call->resp_headers = NIL;
		call->content_type = NULL;
	}
	else if ((colon = strchr(line, ':')) != NULL)
	{
		BulkopsHeader *h = palloc(sizeof(BulkopsHeader));
		char	   *v = colon + 1;

		*colon = '\0';
		for (char *c = line; *c; c++)
			*c = pg_tolower((unsigned char) *c);
		h->name = line;
		h->value = v + strspn(v, " \t");
		call->resp_headers = lappend(call->resp_headers, h);

		if (strcmp(h->name, "retry-after") == 0)
			read_retry_after(call, h->value);
		else if (strcmp(h->name, "content-type") == 0)
			call->content_type = (char *) h->value;
		else if (strcmp(h->name, "location") == 0)
			call->location = bulkops_redact_url(h->value, strlen(h->value));
	}
	MemoryContextSwitchTo(old);
	return n;
}

/*
 * Connections: only addresses the policy allows get a socket (curl then
 * tries the next address), and a reused connection is checked again
 * before each request, since the policy may have changed since it opened.
 */
static curl_socket_t
opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	BulkopsHttpCall *call = clientp;

	if (!bulkops_peer_allowed(&call->peer, &addr->addr, call->refusal,
							  sizeof(call->refusal)))
		return CURL_SOCKET_BAD;
	return socket(addr->family, addr->socktype, addr->protocol);
}

#if LIBCURL_VERSION_NUM >= 0x075000
static int
prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port,
		  int local_port)
{
	BulkopsHttpCall *call = clientp;
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *) &ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, primary_ip, &in->sin_addr) == 1)
	{
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16) primary_port);
	}
	else if (inet_pton(AF_INET6, primary_ip, &in6->sin6_addr) == 1)
	{
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16) primary_port);
	}
	return bulkops_peer_allowed(&call->peer, (struct sockaddr *) &ss,
								call->refusal, sizeof(call->refusal))
		? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}
#endif

/* Failures no repetition can mend: the certificate or our TLS setup. */
static bool
tls_failure_is_final(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CRL_BADFILE:
		case CURLE_SSL_ISSUER_ERROR:
		case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
			return true;
		default:
			return false;
	}
}

/* Describe a transfer curl ended with rc, in call's context. */
static void
classify_failure(BulkopsHttpCall *call, CURLcode rc)
{
	const char *detail = call->curl_errbuf[0] ? call->curl_errbuf
	: curl_easy_strerror(rc);

	call->nothing_sent =
		(rc == CURLE_COULDNT_CONNECT ||
		 rc == CURLE_COULDNT_RESOLVE_HOST ||
		 rc == CURLE_COULDNT_RESOLVE_PROXY ||
		 rc == CURLE_SSL_CONNECT_ERROR ||
		 tls_failure_is_final(rc));
	if (call->refusal[0] != '\0' &&
		(rc == CURLE_COULDNT_CONNECT || rc == CURLE_ABORTED_BY_CALLBACK))
	{
		call->refused = true;
		call->nothing_sent = true;
		call->error = pstrdup(call->refusal);
	}
	else if (rc == CURLE_PEER_FAILED_VERIFICATION)
	{
		call->refused = true;
		call->error = psprintf("TLS certificate of \"%s\" refused: %s",
							   call->peer.host, detail);
	}
	else if (tls_failure_is_final(rc))
	{
		call->refused = true;
		call->error = psprintf("TLS with \"%s\" failed: %s", call->peer.host, detail);
	}
	else if (call->too_large)
		call->error = psprintf("answer larger than bulkops.max_response_size (%d bytes)",
							   call->max_size);
	else if (call->stream_error)
		call->error = call->stream_error;
	else if (call->curl_errbuf[0] && strcmp(detail, curl_easy_strerror(rc)) != 0)
	{
		/* curl's own words say how far it got ("with 10 out of 900 bytes") */
		call->error = psprintf("%s: %s", curl_easy_strerror(rc), detail);
	}
	else
		call->error = psprintf("%s", curl_easy_strerror(rc));
}

static void
add_done(BulkopsHttpCall *call)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	done_calls = lappend(done_calls, call);
	MemoryContextSwitchTo(old);
}

/* ---- the public face ---- */

void
bulkops_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		elog(ERROR, "could not initialize libcurl");
	multi = curl_multi_init();
	if (multi == NULL)
		elog(ERROR, "could not create a libcurl multi handle");
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 64L);
}

int
bulkops_http_inflight(void)
{
	return inflight;
}

/*
 * Start one request.  The call's memory context owns everything about it;
 * the request's strings are copied, so the caller's may go away.
 */
BulkopsHttpCall *
bulkops_http_start(const BulkopsRequest *req, List *auth_headers,
				   const BulkopsHttpOptions *opts, void *arg)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "bulkops http call",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	BulkopsHttpCall *call = palloc0(sizeof(BulkopsHttpCall));
	CURL	   *easy;
	struct curl_slist *hdrs = NULL;
	ListCell   *lc;
	char	   *policy_error;
	bool		has_accept = false;
	char	   *policy_hint;

	call->cxt = cxt;
	call->arg = arg;
	call->max_size = opts->max_response_size;
	call->on_data = req->on_data;
	call->stream_state = req->stream_state;
	initStringInfo(&call->body);

	/* the host policy is checked on every request, not only at create */
	policy_error = bulkops_url_policy(req->url, &call->peer, &policy_hint);
	if (policy_error)
	{
		call->error = policy_error;
		call->nothing_sent = true;
		call->refused = true;
		add_done(call);
		MemoryContextSwitchTo(old);
		return call;
	}

	easy = curl_easy_init();
	if (easy == NULL)
		elog(ERROR, "could not create a libcurl handle");
	call->easy = easy;
	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, call);
#if LIBCURL_VERSION_NUM >= 0x075000
	curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, prereq_cb);
	curl_easy_setopt(easy, CURLOPT_PREREQDATA, call);
#endif
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, call->curl_errbuf);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, BULKOPS_USER_AGENT);
	if (req->on_data == NULL)
		curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) opts->timeout_ms);
	else
	{
		/*
		 * A streamed answer (a result file of hundreds of MB) may take far
		 * longer than the timeout to arrive whole: it fails only when it
		 * stalls that long.
		 */
		curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME,
						 (long) Max((opts->timeout_ms + 999) / 1000, 1));
	}
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
					 (long) Min(opts->timeout_ms, 10000));
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (opts->ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, opts->ca_file);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, call);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, call);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, call);
	curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
	if (req->body)
	{
		call->req_body = pnstrdup(req->body->data, req->body->len);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, call->req_body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t) req->body->len);
	}
	else if (strcmp(req->method, "GET") == 0)
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);

	/* curl would otherwise wait a second for a 100-continue */
	hdrs = curl_slist_append(hdrs, "Expect:");
	if (req->content_type)
		hdrs = curl_slist_append(hdrs, psprintf("Content-Type: %s", req->content_type));
	foreach(lc, req->headers)
	{
		BulkopsHeader *h = lfirst(lc);

		if (pg_strcasecmp(h->name, "Accept") == 0)
			has_accept = true;
		hdrs = curl_slist_append(hdrs, psprintf("%s: %s", h->name, h->value));
	}
	if (!has_accept)
		hdrs = curl_slist_append(hdrs, "Accept: application/json");
	/* credentials go only where the dialect says the target is */
	foreach(lc, req->no_auth ? NIL : auth_headers)
	{
		BulkopsHeader *h = lfirst(lc);

		hdrs = curl_slist_append(hdrs, psprintf("%s: %s", h->name, h->value));
	}
	call->headers = hdrs;
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);

	if (curl_multi_add_handle(multi, easy) != CURLM_OK)
		elog(ERROR, "could not start a libcurl transfer");
	inflight++;
	MemoryContextSwitchTo(old);
	return call;
}

/* Move finished transfers from curl to done_calls. */
static void
collect_done(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		BulkopsHttpCall *call;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &call);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &call->status);
		call->curl_code = msg->data.result;
		if (msg->data.result != CURLE_OK)
		{
			MemoryContext old = MemoryContextSwitchTo(call->cxt);

			classify_failure(call, msg->data.result);
			MemoryContextSwitchTo(old);
		}
		else if (call->status >= 300 && call->status < 400)
		{
			MemoryContext old = MemoryContextSwitchTo(call->cxt);

			/* following could lead anywhere, past every check above */
			call->refused = true;
			call->error = psprintf("HTTP %ld redirect to \"%s\" not followed: "
								   "bulkops never follows redirects",
								   call->status,
								   call->location ? call->location : "(no Location)");
			MemoryContextSwitchTo(old);
		}
		curl_multi_remove_handle(multi, msg->easy_handle);
		inflight--;
		add_done(call);
	}
}

/*
 * Sleep until the latch is set, a socket is ready, curl's timer fires or
 * timeout_ms passes; then let curl do its work.  Returns true if the latch
 * was set.
 */
bool
bulkops_http_wait(long timeout_ms)
{
	WaitEvent	events[MAX_SOCKETS + 2];
	int			nevents;
	int			running;
	int			i;
	bool		latch = false;
	long		wait_ms = timeout_ms;

	if (done_calls != NIL)
		wait_ms = 0;
	else if (timer_at != 0)
	{
		long		secs;
		int			usecs;
		long		left;

		TimestampDifference(GetCurrentTimestamp(), timer_at, &secs, &usecs);
		left = secs * 1000 + (usecs + 999) / 1000;
		if (left < wait_ms)
			wait_ms = left;
	}

	if (wait_set_stale)
	{
		if (wait_set)
			FreeWaitEventSet(wait_set);
		wait_set = CreateWaitEventSet(TopMemoryContext, nsocks + 2);
		AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (i = 0; i < nsocks; i++)
		{
			uint32		ev = wait_events_for(socks[i].what);

			socks[i].pos = ev ? AddWaitEventToSet(wait_set, ev, socks[i].fd, NULL, NULL)
				: -1;
		}
		wait_set_stale = false;
	}
	nevents = WaitEventSetWait(wait_set, wait_ms, events, lengthof(events),
							   PG_WAIT_EXTENSION);

	for (i = 0; i < nevents; i++)
	{
		int			flags = 0;

		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch = true;
			continue;
		}
		if (events[i].events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		if (flags)
			curl_multi_socket_action(multi, events[i].fd, flags, &running);
	}
	/* curl's own timeouts (and its first kick of a new transfer) */
	if (timer_at != 0 && GetCurrentTimestamp() >= timer_at)
	{
		/*
		 * curl's timer is one-shot: it sets the next one through timer_cb if
		 * it wants one.  Left set, a timer in the past would make every wait
		 * return at once, and an idle worker spin.
		 */
		timer_at = 0;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	collect_done();
	return latch;
}

BulkopsHttpCall *
bulkops_http_next_done(void)
{
	BulkopsHttpCall *call;

	if (done_calls == NIL)
		return NULL;
	call = linitial(done_calls);
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		done_calls = list_delete_first(done_calls);
		MemoryContextSwitchTo(old);
	}
	return call;
}

/*
 * Stop waiting for call's answer: curl drops the transfer (closing its
 * connection) and the call is freed.  The caller must forget it.
 */
void
bulkops_http_abandon(BulkopsHttpCall *call)
{
	if (list_member_ptr(done_calls, call))
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		done_calls = list_delete_ptr(done_calls, call);
		MemoryContextSwitchTo(old);
	}
	else if (call->easy)
	{
		curl_multi_remove_handle(multi, call->easy);
		inflight--;
	}
	bulkops_http_free(call);
}

void
bulkops_http_free(BulkopsHttpCall *call)
{
	if (call->easy)
		curl_easy_cleanup(call->easy);
	if (call->headers)
		curl_slist_free_all(call->headers);
	MemoryContextDelete(call->cxt);
}

/* The HTTP settings of a job's requests: its options, else the settings. */
void
bulkops_http_options(Jsonb *options, BulkopsHttpOptions *opts)
{
	opts->timeout_ms = (int) (1000 * bulkops_opt_real(options, "http_timeout",
													  bulkops_http_timeout_ms / 1000.0));
	opts->max_response_size = bulkops_max_response_size;
	opts->ca_file = bulkops_opt_string(options, "ca_file", NULL);
}
