/*-------------------------------------------------------------------------
 *
 * http.c
 *	  libcurl's multi interface driven from the worker's wait loop, and the
 *	  host policy every request passes.
 *
 * curl tells us, through its socket and timer callbacks, which sockets it
 * waits on and when it next needs a call; bulkops_http_wait() turns that
 * into one WaitEventSet with the latch and postmaster death, so the worker
 * sleeps on everything at once and never polls.  Easy handles are reused
 * for connection reuse (CURLMOPT_MAX_HOST_CONNECTIONS caps them per host).
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

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "bulkops.h"
#include "http.h"

#define MAX_SOCKETS 256

typedef struct SockWatch
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_* */
	int			pos;			/* its event in wait_set, or -1 */
} SockWatch;

static CURLM *multi = NULL;
static SockWatch socks[MAX_SOCKETS];
static int	nsocks = 0;
static TimestampTz timer_at = 0;	/* when curl wants a timeout call; 0: never */
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

/* ---- host policy ---- */

static bool
host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (pg_strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

/* Does host:port match one comma-separated pattern of allowed_hosts? */
static bool
pattern_matches(const char *pat, int patlen, const char *host, long port)
{
	char	   *p = pnstrdup(pat, patlen);
	char	   *colon = strrchr(p, ':');
	bool		ok;

	/* an optional :port, unless the pattern is a bare IPv6 address */
	if (colon && strchr(p, ']') == NULL && strchr(colon + 1, ':') == NULL &&
		colon != p && strspn(colon + 1, "0123456789") == strlen(colon + 1) &&
		colon[1] != '\0')
	{
		if (atol(colon + 1) != port)
			return false;
		*colon = '\0';
	}
	if (p[0] == '[')
	{
		size_t		l = strlen(p);

		if (l >= 2 && p[l - 1] == ']')
		{
			p[l - 1] = '\0';
			p++;
		}
	}
	if (strcmp(p, "*") == 0)
		ok = true;
	else if (strncmp(p, "*.", 2) == 0)
	{
		size_t		hl = strlen(host);
		size_t		sl = strlen(p + 1);	/* ".example.com" */

		ok = hl > sl && pg_strcasecmp(host + hl - sl, p + 1) == 0;
	}
	else
		ok = pg_strcasecmp(p, host) == 0;
	return ok;
}

static bool
host_allowed(const char *host, long port)
{
	const char *s = bulkops_allowed_hosts ? bulkops_allowed_hosts : "*";

	while (*s)
	{
		const char *e;
		const char *b;

		while (*s == ' ' || *s == ',')
			s++;
		b = s;
		e = strchr(s, ',');
		if (e == NULL)
			e = s + strlen(s);
		s = e;
		while (e > b && e[-1] == ' ')
			e--;
		if (e > b && pattern_matches(b, e - b, host, port))
			return true;
	}
	return false;
}

/*
 * Check url against the scheme and host policy.  At ERROR level a
 * violation raises; otherwise its message is returned in *errmsg_out (NULL
 * when the URL passes).
 */
void
bulkops_check_url(const char *url, int elevel, char **errmsg_out)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *msg = NULL;
	char	   *hint = NULL;
	long		portnum;

	if (errmsg_out)
		*errmsg_out = NULL;
	if (u == NULL)
		elog(ERROR, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
	{
		msg = psprintf("invalid URL \"%s\"", url);
		hint = pstrdup("A target URL looks like https://host[:port]/path.");
	}
	else
	{
		curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
		portnum = port ? atol(port) : 0;
		if (pg_strcasecmp(scheme, "https") != 0 && pg_strcasecmp(scheme, "http") != 0)
			msg = psprintf("URL scheme \"%s\" is not allowed", scheme);
		else if (pg_strcasecmp(scheme, "http") == 0 && !bulkops_allow_http &&
				 !host_is_loopback(host))
		{
			msg = psprintf("plain http to \"%s\" is not allowed", host);
			hint = pstrdup("Use https, or set bulkops.allow_http.");
		}
		else if (!host_allowed(host, portnum))
		{
			msg = psprintf("host \"%s\" is not in bulkops.allowed_hosts", host);
			hint = pstrdup("A superuser may add it to bulkops.allowed_hosts.");
		}
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);

	if (msg && elevel >= ERROR)
		ereport(elevel,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg_internal("%s", msg),
				 hint ? errhint("%s", hint) : 0));
	if (errmsg_out)
		*errmsg_out = msg;
}

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

	call->received += n;
	if (call->received > (size_t) call->max_size)
	{
		call->too_large = true;
		return 0;				/* makes curl fail the transfer */
	}
	old = MemoryContextSwitchTo(call->cxt);
	if (call->on_data == NULL || call->status_seen >= 300)
		appendBinaryStringInfo(&call->body, data, n);
	else
	{
		/* an ERROR must not unwind through libcurl's frames: stop here */
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
		{
			char	   *end;
			long		secs = strtol(h->value, &end, 10);

			/* delta-seconds, capped; the rare HTTP-date form means "a while" */
			if (end == h->value || secs < 0)
				call->retry_after_ms = 30000;
			else
				call->retry_after_ms = Min(secs, 3600) * 1000;
			call->has_retry_after = true;
		}
		else if (strcmp(h->name, "content-type") == 0)
			call->content_type = (char *) h->value;
	}
	MemoryContextSwitchTo(old);
	return n;
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

	call->cxt = cxt;
	call->arg = arg;
	call->max_size = opts->max_response_size;
	call->on_data = req->on_data;
	call->stream_state = req->stream_state;
	initStringInfo(&call->body);

	/* the host policy is checked on every request, not only at create */
	bulkops_check_url(req->url, DEBUG1, &policy_error);
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
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, BULKOPS_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) opts->timeout_ms);
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
	foreach(lc, auth_headers)
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
			curl_off_t	sent = 0;
			MemoryContext old = MemoryContextSwitchTo(call->cxt);

			curl_easy_getinfo(msg->easy_handle, CURLINFO_SIZE_UPLOAD_T, &sent);
			call->nothing_sent =
				(msg->data.result == CURLE_COULDNT_CONNECT ||
				 msg->data.result == CURLE_COULDNT_RESOLVE_HOST ||
				 msg->data.result == CURLE_COULDNT_RESOLVE_PROXY ||
				 msg->data.result == CURLE_SSL_CONNECT_ERROR ||
				 msg->data.result == CURLE_PEER_FAILED_VERIFICATION);
			if (call->too_large)
				call->error = psprintf("answer larger than bulkops.max_response_size (%d bytes)",
									   call->max_size);
			else if (call->stream_error)
				call->error = call->stream_error;
			else
				call->error = psprintf("%s", curl_easy_strerror(msg->data.result));
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
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
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

void
bulkops_http_free(BulkopsHttpCall *call)
{
	if (call->easy)
		curl_easy_cleanup(call->easy);
	if (call->headers)
		curl_slist_free_all(call->headers);
	MemoryContextDelete(call->cxt);
}
