/*-------------------------------------------------------------------------
 *
 * netpolicy.c
 *	  The host and address policy every request passes: URL schemes,
 *	  bulkops.allow_http, bulkops.allowed_hosts and
 *	  bulkops.blocked_addresses.
 *
 * A request is checked twice.  Before it starts, its URL: the scheme, plain
 * http (loopback only unless allowed), and its host against allowed_hosts.
 * Then, through curl's socket callbacks, every address curl is about to
 * connect to (and every reused connection's address) against
 * blocked_addresses, and against the address entries of allowed_hosts when
 * no entry matched the URL's host.  Checking what curl actually connects to
 * is what makes the policy hold after DNS resolution: a permitted name that
 * resolves to a blocked address (or starts to, between two requests) is
 * refused all the same.
 *
 * Entries of both settings are parsed where they are used: the lists are
 * short, and an entry that does not parse in allowed_hosts simply never
 * matches (so a typo refuses rather than allows).  The connection checks run
 * inside curl callbacks and must not palloc or ereport: they use stack
 * buffers only.  Nothing here needs a transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>

#include "bulkops.h"
#include "netpolicy.h"

typedef enum RuleKind
{
	RULE_ANY,					/* * */
	RULE_NAME,					/* api.example.com */
	RULE_SUFFIX,				/* *.example.com */
	RULE_ADDR					/* 10.1.2.3, 10.0.0.0/8, ::1, [fd00::/8] */
} RuleKind;

typedef struct Rule
{
	RuleKind	kind;
	long		port;			/* -1: any port */
	char		name[BULKOPS_MAX_HOST_LEN]; /* NAME; SUFFIX with its dot */
	int			family;			/* ADDR: AF_INET or AF_INET6 */
	unsigned char addr[16];
	int			bits;
} Rule;

/* An address as the checks compare it. */
typedef struct Addr
{
	int			family;
	unsigned char bytes[16];
	long		port;
} Addr;

/* ---- parsing entries ---- */

/*
 * Step *s to the next comma-separated entry; false when there is none.
 * The entry is [*b, *b + *len), trimmed.
 */
static bool
next_entry(const char **s, const char **b, size_t *len)
{
	const char *e;

	while (**s == ' ' || **s == '\t' || **s == ',')
		(*s)++;
	if (**s == '\0')
		return false;
	*b = *s;
	e = strchr(*s, ',');
	if (e == NULL)
		e = *s + strlen(*s);
	*s = e;
	while (e > *b && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*len = e - *b;
	return true;
}

static bool
parse_port(const char *s, long *port)
{
	size_t		n = strlen(s);

	if (n == 0 || n > 5 || strspn(s, "0123456789") != n)
		return false;
	*port = atol(s);
	return *port >= 1 && *port <= 65535;
}

static bool
valid_name(const char *s)
{
	size_t		n = strlen(s);

	return n > 0 && n < BULKOPS_MAX_HOST_LEN &&
		strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == n;
}

/*
 * Parse one entry: host, *, *.suffix, an IP address or a CIDR block, with
 * an optional :port (IPv6 in brackets when a port follows).
 */
static bool
parse_rule(const char *s, size_t len, Rule *r)
{
	char		buf[BULKOPS_MAX_HOST_LEN + 16];
	char	   *host = buf;
	char	   *slash;
	int			maxbits;

	memset(r, 0, sizeof(Rule));
	r->port = -1;
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';

	if (buf[0] == '[')
	{
		char	   *close = strchr(buf, ']');

		if (close == NULL)
			return false;
		*close = '\0';
		host = buf + 1;
		if (close[1] == ':')
		{
			if (!parse_port(close + 2, &r->port))
				return false;
		}
		else if (close[1] != '\0')
			return false;
	}
	else
	{
		char	   *colon = strchr(buf, ':');

		/* one colon: host:port; more: a bare IPv6 address without port */
		if (colon && strchr(colon + 1, ':') == NULL)
		{
			*colon = '\0';
			if (!parse_port(colon + 1, &r->port))
				return false;
		}
	}

	slash = strchr(host, '/');
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, host, r->addr) == 1)
	{
		r->family = AF_INET;
		maxbits = 32;
	}
	else if (inet_pton(AF_INET6, host, r->addr) == 1)
	{
		r->family = AF_INET6;
		maxbits = 128;
	}
	else
	{
		if (slash)
			return false;
		if (strcmp(host, "*") == 0)
			r->kind = RULE_ANY;
		else if (strncmp(host, "*.", 2) == 0 && valid_name(host + 2))
		{
			r->kind = RULE_SUFFIX;
			strlcpy(r->name, host + 1, sizeof(r->name));
		}
		else if (valid_name(host))
		{
			r->kind = RULE_NAME;
			strlcpy(r->name, host, sizeof(r->name));
		}
		else
			return false;
		return true;
	}

	r->kind = RULE_ADDR;
	r->bits = maxbits;
	if (slash)
	{
		size_t		n = strlen(slash + 1);

		if (n == 0 || n > 3 || strspn(slash + 1, "0123456789") != n ||
			atoi(slash + 1) > maxbits)
			return false;
		r->bits = atoi(slash + 1);
	}
	return true;
}

/* ---- matching ---- */

/* An IPv4-mapped IPv6 address reaches the IPv4 host: compare it as one. */
static bool
addr_from_sockaddr(const struct sockaddr *sa, Addr *a)
{
	static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	memset(a, 0, sizeof(Addr));
	if (sa->sa_family == AF_INET)
	{
		const struct sockaddr_in *in = (const struct sockaddr_in *) sa;

		a->family = AF_INET;
		memcpy(a->bytes, &in->sin_addr, 4);
		a->port = ntohs(in->sin_port);
		return true;
	}
	if (sa->sa_family == AF_INET6)
	{
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;
		const unsigned char *b = (const unsigned char *) &in6->sin6_addr;

		a->port = ntohs(in6->sin6_port);
		if (memcmp(b, v4mapped, 12) == 0)
		{
			a->family = AF_INET;
			memcpy(a->bytes, b + 12, 4);
		}
		else
		{
			a->family = AF_INET6;
			memcpy(a->bytes, b, 16);
		}
		return true;
	}
	return false;
}

static bool
addr_matches(const Rule *r, const Addr *a)
{
	int			full = r->bits / 8;
	int			rest = r->bits % 8;

	if (r->kind != RULE_ADDR || r->family != a->family)
		return false;
	if (r->port != -1 && r->port != a->port)
		return false;
	if (memcmp(r->addr, a->bytes, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((r->addr[full] ^ a->bytes[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* Does an entry of allowed_hosts match the URL's host and port? */
static bool
host_matches(const Rule *r, const char *host, const Addr *literal, long port)
{
	size_t		hl = strlen(host);
	size_t		sl;

	if (r->port != -1 && r->port != port)
		return false;
	switch (r->kind)
	{
		case RULE_ANY:
			return true;
		case RULE_NAME:
			return literal == NULL && pg_strcasecmp(r->name, host) == 0;
		case RULE_SUFFIX:
			sl = strlen(r->name);
			return literal == NULL && hl > sl &&
				pg_strcasecmp(host + hl - sl, r->name) == 0;
		case RULE_ADDR:
			return literal != NULL && addr_matches(r, literal);
	}
	return false;
}

/* Does an address entry of the comma-separated list match a? */
static bool
list_matches_addr(const char *list, const Addr *a)
{
	const char *s = list ? list : "";
	const char *b;
	size_t		len;
	Rule		r;

	while (next_entry(&s, &b, &len))
		if (parse_rule(b, len, &r) && addr_matches(&r, a))
			return true;
	return false;
}

/* A literal IP address as the URL's host (brackets removed), or false. */
static bool
literal_addr(const char *host, long port, Addr *a)
{
	memset(a, 0, sizeof(Addr));
	a->port = port;
	if (inet_pton(AF_INET, host, a->bytes) == 1)
		a->family = AF_INET;
	else if (inet_pton(AF_INET6, host, a->bytes) == 1)
	{
		struct sockaddr_in6 in6;

		/* through the sockaddr path, so that a v4-mapped one is IPv4 */
		memset(&in6, 0, sizeof(in6));
		in6.sin6_family = AF_INET6;
		in6.sin6_port = htons((uint16) port);
		memcpy(&in6.sin6_addr, a->bytes, 16);
		return addr_from_sockaddr((struct sockaddr *) &in6, a);
	}
	else
		return false;
	return true;
}

static bool
host_is_loopback(const char *host)
{
	Addr		a;

	if (pg_strcasecmp(host, "localhost") == 0)
		return true;
	if (!literal_addr(host, 0, &a))
		return false;
	if (a.family == AF_INET)
		return a.bytes[0] == 127;
	return IN6_IS_ADDR_LOOPBACK((struct in6_addr *) a.bytes);
}

static void
format_addr(const Addr *a, char *buf, size_t len)
{
	if (inet_ntop(a->family, a->bytes, buf, len) == NULL)
		strlcpy(buf, "?", len);
}

/* ---- settings ---- */

char	   *bulkops_allowed_hosts = NULL;
char	   *bulkops_blocked_addresses = NULL;
bool		bulkops_allow_http = false;

/*
 * The policy's settings, defined here with the code that reads them (from
 * _PG_init).  Superusers only: they decide where credentials may go.
 */
void
bulkops_define_netpolicy_settings(void)
{
	DefineCustomStringVariable("bulkops.allowed_hosts",
							   "Comma-separated host[:port] patterns targets may reach; * allows all.",
							   "A pattern may start with *. to allow every subdomain. "
							   "An IP address or CIDR entry also allows connections to "
							   "the addresses it covers, whatever the URL's host name.",
							   &bulkops_allowed_hosts, "*",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("bulkops.blocked_addresses",
							   "Comma-separated IP addresses and CIDR blocks the worker never connects to.",
							   "Checked against every address a request connects to, "
							   "after DNS resolution; it wins over bulkops.allowed_hosts.",
							   &bulkops_blocked_addresses,
							   "0.0.0.0/8, ::, 169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200",
							   PGC_SUSET, 0, bulkops_check_blocked_addresses,
							   NULL, NULL);
	DefineCustomBoolVariable("bulkops.allow_http",
							 "Allows plain http to hosts other than the loopback interface.",
							 NULL, &bulkops_allow_http, false,
							 PGC_SUSET, 0, NULL, NULL, NULL);
}

/* ---- the checks ---- */

/*
 * A URL as a message may name it (a redirect's target, a URL that cannot
 * be sent): without its query, fragment and user info (they may hold
 * someone's credentials, a presigned link's signature), on one line, and
 * not too long.
 */
char *
bulkops_redact_url(const char *v, size_t n)
{
	char	   *loc = pnstrdup(v, n);
	char	   *scheme_end;
	char	   *at;

	loc += strspn(loc, " \t");
	loc[strcspn(loc, "?#\r\n")] = '\0';
	scheme_end = strstr(loc, "://");
	if (scheme_end && (at = strchr(scheme_end + 3, '@')) != NULL &&
		memchr(scheme_end + 3, '/', at - (scheme_end + 3)) == NULL)
		memmove(scheme_end + 3, at + 1, strlen(at + 1) + 1);
	if (strlen(loc) > 300)
		strcpy(loc + 297, "...");
	return loc;
}


/*
 * Check url against the scheme and host policy.  Returns NULL when it
 * passes (with peer filled in for the connection checks, if given), else
 * the reason, and a hint in *hint (may be NULL).
 */
char *
bulkops_url_policy(const char *url, BulkopsPeerPolicy *peer, char **hint)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *rawhost = NULL;
	char	   *port = NULL;
	char	   *msg = NULL;
	char		host[BULKOPS_MAX_HOST_LEN];

	*hint = NULL;
	if (u == NULL)
		elog(ERROR, "out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &rawhost, 0) != CURLUE_OK ||
		strlen(rawhost) >= sizeof(host))
	{
		msg = psprintf("invalid URL \"%s\"", bulkops_redact_url(url, strlen(url)));
		*hint = pstrdup("A target URL looks like https://host[:port]/path.");
	}
	else
	{
		long		portnum;
		Addr		lit;
		bool		is_literal;
		bool		matched = false;
		bool		addr_rules = false;
		const char *s = bulkops_allowed_hosts ? bulkops_allowed_hosts : "*";
		const char *b;
		size_t		len;
		Rule		r;

		/* curl gives an IPv6 literal in brackets */
		if (rawhost[0] == '[' && rawhost[strlen(rawhost) - 1] == ']')
			strlcpy(host, rawhost + 1, strlen(rawhost) - 1);
		else
			strlcpy(host, rawhost, sizeof(host));
		curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
		portnum = port ? atol(port) : 0;
		is_literal = literal_addr(host, portnum, &lit);

		while (!matched && next_entry(&s, &b, &len))
		{
			if (!parse_rule(b, len, &r))
				continue;
			addr_rules |= (r.kind == RULE_ADDR);
			matched = host_matches(&r, host, is_literal ? &lit : NULL, portnum);
		}

		if (pg_strcasecmp(scheme, "https") != 0 && pg_strcasecmp(scheme, "http") != 0)
			msg = psprintf("URL scheme \"%s\" is not allowed", scheme);
		else if (pg_strcasecmp(scheme, "http") == 0 && !bulkops_allow_http &&
				 !host_is_loopback(host))
		{
			msg = psprintf("plain http to \"%s\" is not allowed", host);
			*hint = pstrdup("Use https, or set bulkops.allow_http.");
		}
		else if (is_literal && list_matches_addr(bulkops_blocked_addresses, &lit))
		{
			msg = psprintf("address %s is blocked by bulkops.blocked_addresses", host);
			*hint = pstrdup("A superuser may change bulkops.blocked_addresses.");
		}
		else if (!matched && !(addr_rules && !is_literal))
		{
			msg = psprintf("host \"%s\" is not in bulkops.allowed_hosts", host);
			*hint = pstrdup("A superuser may add it to bulkops.allowed_hosts.");
		}
		else if (peer)
		{
			strlcpy(peer->host, host, sizeof(peer->host));
			peer->host_allowed = matched;
		}
	}
	curl_free(scheme);
	curl_free(rawhost);
	curl_free(port);
	curl_url_cleanup(u);
	return msg;
}

/*
 * Check url against the scheme and host policy.  At ERROR level a
 * violation raises; otherwise its message is returned in *errmsg_out (NULL
 * when the URL passes).  The addresses the host resolves to are checked
 * only when a request connects (bulkops_peer_allowed).
 */
void
bulkops_check_url(const char *url, int elevel, char **errmsg_out)
{
	char	   *hint;
	char	   *msg = bulkops_url_policy(url, NULL, &hint);

	if (errmsg_out)
		*errmsg_out = msg;
	if (msg && elevel >= ERROR)
		ereport(elevel,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg_internal("%s", msg),
				 hint ? errhint("%s", hint) : 0));
}

/*
 * May a request for peer connect to (or go on using a connection to) sa?
 * If not, why says so.  Runs inside curl callbacks: no palloc, no ereport.
 */
bool
bulkops_peer_allowed(const BulkopsPeerPolicy *peer, const struct sockaddr *sa,
					 char *why, size_t whylen)
{
	Addr		a;
	char		astr[INET6_ADDRSTRLEN];
	char		of_host[BULKOPS_MAX_HOST_LEN + 16];

	if (!addr_from_sockaddr(sa, &a))
	{
		snprintf(why, whylen, "connection of host \"%s\" to a non-IP address refused",
				 peer->host);
		return false;
	}
	format_addr(&a, astr, sizeof(astr));
	of_host[0] = '\0';
	if (strcmp(astr, peer->host) != 0)
		snprintf(of_host, sizeof(of_host), " of host \"%s\"", peer->host);

	if (list_matches_addr(bulkops_blocked_addresses, &a))
	{
		snprintf(why, whylen, "address %s port %ld%s is blocked by bulkops.blocked_addresses",
				 astr, a.port, of_host);
		return false;
	}
	if (!peer->host_allowed && !list_matches_addr(bulkops_allowed_hosts, &a))
	{
		snprintf(why, whylen, "address %s port %ld%s is not in bulkops.allowed_hosts",
				 astr, a.port, of_host);
		return false;
	}
	return true;
}

/* GUC check hook: every entry of bulkops.blocked_addresses is an address. */
bool
bulkops_check_blocked_addresses(char **newval, void **extra, GucSource source)
{
	const char *s = *newval ? *newval : "";
	const char *b;
	size_t		len;
	Rule		r;

	while (next_entry(&s, &b, &len))
	{
		if (!parse_rule(b, len, &r) || r.kind != RULE_ADDR)
		{
			GUC_check_errdetail("\"%s\" is not an IP address or a CIDR block.",
								pnstrdup(b, len));
			return false;
		}
	}
	return true;
}
