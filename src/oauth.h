/*-------------------------------------------------------------------------
 *
 * oauth.h
 *	  OAuth 2.0 auth kinds (client credentials, RS256 JWT bearer): their
 *	  validation and token requests (oauth.c), and the worker's per-target
 *	  tokens, shared by the database's workers (oauth_cache.c).
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
	uint8		key[32];		/* its token's shared slot, once has_key */
	bool		has_key;
	uint64		serial;			/* the token the last request carried, or 0 */
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

/* A token endpoint's answer. */
typedef struct BulkopsOAuthToken
{
	char	   *access_token;
	char	   *instance_url;	/* NULL if none; no trailing slash */
	long		expires_in;		/* seconds; 0 if not said */
} BulkopsOAuthToken;

struct Work;

/* oauth.c */
extern bool bulkops_auth_is_oauth(Jsonb *auth);
extern void bulkops_oauth_validate(Jsonb *auth, const char *type,
								   const BulkopsDialect *d, const char *url);
extern char *bulkops_oauth_token_url(Jsonb *auth, const BulkopsDialect *d,
									 const char *url);
extern void bulkops_oauth_request(Jsonb *auth, const char *token_url,
								  const char *target, BulkopsRequest *req);
extern void bulkops_oauth_read_answer(const char *body, size_t len,
									  BulkopsOAuthToken *tok);
extern char *bulkops_oauth_error_message(const char *body, size_t len,
										 long status);

/* oauth_cache.c: in the worker, tokens shared with the database's others */
extern BulkopsOAuthState bulkops_oauth_prepare(struct Work *w,
											   List **headers, char **error);
extern bool bulkops_oauth_replay(struct Work *w, long status);
extern bool bulkops_oauth_call_done(BulkopsHttpCall *call);
extern void bulkops_oauth_forget_fetches(void);

#endif							/* BULKOPS_OAUTH_H */
