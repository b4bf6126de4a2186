/*-------------------------------------------------------------------------
 *
 * netpolicy.h
 *	  Which hosts and addresses the worker may reach (netpolicy.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_NETPOLICY_H
#define BULKOPS_NETPOLICY_H

#include <sys/socket.h>

#include "utils/guc.h"

#define BULKOPS_MAX_HOST_LEN 256

/*
 * What the check of a request's URL hands on to the check of each
 * connection curl opens for it.
 */
typedef struct BulkopsPeerPolicy
{
	char		host[BULKOPS_MAX_HOST_LEN]; /* the URL's host, for messages */
	bool		host_allowed;	/* an allowed_hosts entry matched the URL's
								 * host; else an address entry must match
								 * every address connected to */
} BulkopsPeerPolicy;

extern char *bulkops_redact_url(const char *url, size_t len);
extern char *bulkops_url_policy(const char *url, BulkopsPeerPolicy *peer,
								char **hint);
extern bool bulkops_peer_allowed(const BulkopsPeerPolicy *peer,
								 const struct sockaddr *sa,
								 char *why, size_t whylen);

/* the policy's settings */
extern char *bulkops_allowed_hosts;
extern char *bulkops_blocked_addresses;
extern bool bulkops_allow_http;
extern void bulkops_define_netpolicy_settings(void);

extern bool bulkops_check_blocked_addresses(char **newval, void **extra,
											GucSource source);

#endif							/* BULKOPS_NETPOLICY_H */
