/*-------------------------------------------------------------------------
 *
 * oauth.h
 *	  OAuth 2.0 auth kinds (client credentials, RS256 JWT bearer): their
 *	  validation, and the worker's per-target token cache.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BULKOPS_OAUTH_H
#define BULKOPS_OAUTH_H

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#include "dialect.h"
#include "http.h"

/* What a batch in the worker remembers about its OAuth token. */
typedef struct BulkopsOAuthUse
{
	char	   *target_url;		/* the target's own url; batch.url may have
								 * become the token's instance_url */
	char	   *token;			/* the token the last request carried */
	bool		replayed;		/* that request replays one answered 401 */
	bool		waiting;		/* for a token fetch to end */
	uint32		wait_gen;		/* the fetch generation it waits on */
} BulkopsOAuthUse;

typedef enum BulkopsOAuthState
{
	BULKOPS_OAUTH_READY,		/* headers and batch.url are set: send */
	BULKOPS_OAUTH_WAIT,			/* a token is on its way; due is set */
	BULKOPS_OAUTH_FAIL			/* no token can be had: *error says why */
} BulkopsOAuthState;

struct Work;

/* backend: create_target and alter_target */
extern bool bulkops_auth_is_oauth(Jsonb *auth);
extern void bulkops_oauth_validate(Jsonb *auth, const char *type,
								   const BulkopsDialect *d, const char *url);

/* worker */
extern BulkopsOAuthState bulkops_oauth_prepare(struct Work *w,
											   List **headers, char **error);
extern bool bulkops_oauth_replay(struct Work *w, long status);
extern bool bulkops_oauth_call_done(BulkopsHttpCall *call);

#endif							/* BULKOPS_OAUTH_H */
