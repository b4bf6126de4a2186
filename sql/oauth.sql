-- oauth: the OAuth auth kinds are checked when a target is written (missing
-- and misspelt members, token_url required where the dialect has no default,
-- the host policy on token_url, keys) without echoing a secret; a job through
-- the mock's token endpoint with client credentials succeeds on one token for
-- all its batches; altering the auth drops the cached token, and a wrong
-- secret fails the rows with the endpoint's error.  The refresh token and
-- password grants are checked the same way and get their tokens with the
-- form fields their grant needs (a refresh token's client secret only when
-- given).
SET client_min_messages = warning;
SELECT current_setting('test.mock_url') AS mock \gset
SELECT :'mock' || '/clinia/sources/oa/v1' AS url \gset

-- 1. validation
CREATE FUNCTION pg_temp.try_auth(auth text) RETURNS text LANGUAGE sql
RETURN test.try(format('SELECT bulkops.create_target(%L, %L, %L, %L, %L)',
                       'o_check', 'clinia', 'http://127.0.0.1:1/x', 'R', auth));
SELECT pg_temp.try_auth(a) FROM (VALUES
  ('{"type": "oauth2_client_credentials", "client_secret": "s-1", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_client_credentials", "client_id": "c", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_client_credentials", "client_id": "c", "client_secret": "s-2"}'),
  ('{"type": "oauth2_client_credentials", "client_id": "c", "client_secret": "s-3", "token_url": "http://login.example.com/t"}'),
  ('{"type": "oauth2_client_credentials", "client_id": "c", "client_secret": "s-4", "token_url": "ftp://127.0.0.1/t"}'),
  ('{"type": "oauth2_client_credentials", "client_id": "c", "client_secret": "s-5", "tokenurl": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_client_credentials", "client_id": "c", "client_secret": "s-6", "token_url": {"env": "X"}}'),
  ('{"type": "oauth2_client_credentials", "client_id": "c", "client_secret": {"file": "relative/path"}, "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_client_credentials", "client_id": "c", "client_secret": 42, "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_jwt", "client_id": "c", "key_file": "/k.pem", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_jwt", "client_id": "c", "username": "u", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_jwt", "client_id": "c", "username": "u", "key_file": "/k.pem", "key": "x", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_jwt", "client_id": "c", "username": "u", "key_file": "k.pem", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_jwt", "client_id": "c", "username": "u", "key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_jwt", "client_id": "c", "username": "u", "key_file": "/k.pem", "client_secret": "s-7", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_jwt", "client_id": "c", "username": "u", "key_file": "/k.pem", "token_url": "http://127.0.0.1/t", "audience": 1}'),
  ('{"type": "oauth2_jwt", "client_id": "c", "username": "u", "key": {"env": "SF_KEY"}, "token_url": "http://127.0.0.1/t", "audience": "https://login.salesforce.com"}'),
  ('{"type": "oauth2_device"}'),
  ('{"type": "oauth2_refresh_token", "client_id": "c", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_refresh_token", "client_id": "c", "refresh_token": "rt-8", "client_secret": 1, "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_refresh_token", "client_id": "c", "refresh_token": "rt-9", "username": "u", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_password", "client_id": "c", "client_secret": "s-10", "username": "u", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_password", "client_id": "c", "username": "u", "password": "pw-11", "token_url": "http://127.0.0.1/t"}'),
  ('{"type": "oauth2_password", "client_id": "c", "client_secret": "s-12", "username": "u", "password": {"file": "pw"}, "token_url": "http://127.0.0.1/t"}')
) AS t(a);
SELECT count(*) AS o_check_created FROM bulkops.targets WHERE name = 'o_check';
SELECT bulkops.drop_target('o_check');

-- only roles that may read server files may name a key file
CREATE ROLE oauth_admin;
GRANT bulkops_admin TO oauth_admin;
SET ROLE oauth_admin;
SELECT test.try($$SELECT bulkops.create_target('o_file', 'clinia', 'http://127.0.0.1:1/x', 'R',
  '{"type": "oauth2_jwt", "client_id": "c", "username": "u", "key_file": "/k.pem", "token_url": "http://127.0.0.1/t"}')$$);
RESET ROLE;
DROP ROLE oauth_admin;

-- 2. client credentials end to end: one token for ten batches
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config',
  '{"oauth": {"client_id": "bulkops", "client_secret": "cc-secret-1"}, "clinia": {"oauth": true}}');
CREATE FUNCTION pg_temp.oa_auth(secret text) RETURNS jsonb LANGUAGE sql
RETURN jsonb_build_object('type', 'oauth2_client_credentials', 'client_id', 'bulkops',
                          'client_secret', secret,
                          'token_url', current_setting('test.mock_url') || '/oauth2/token');
SELECT bulkops.create_target('oa', 'clinia', :'url', 'Person', pg_temp.oa_auth('cc-secret-1'),
                             '{"batch_size": 10, "concurrency": 3}');
CREATE TABLE oa_people AS SELECT i AS id, 'person ' || i AS name FROM generate_series(1, 100) AS i;
SELECT bulkops.bulk_upsert('oa', 'oa_people', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded, batches_total FROM bulkops.jobs WHERE id = :job;
SELECT max(attempts) AS max_attempts FROM bulkops.receipts WHERE job_id = :job;
SELECT (s->'oauth'->>'token_requests')::int AS token_requests,
       (s->'oauth'->>'bearer_refused')::int AS refused,
       (s->'oauth'->>'bearer_ok')::int >= 20 AS every_request_had_the_token
FROM test.mock('GET', '/_control/stats') AS s;

-- 3. a wrong secret: the cached token is not used, the rows fail clearly
SELECT bulkops.alter_target('oa', auth => pg_temp.oa_auth('cc-wrong-2'));
SELECT bulkops.bulk_upsert('oa', 'oa_people', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_failed FROM bulkops.jobs WHERE id = :job;
SELECT DISTINCT replace(error_message, :'mock', 'MOCK') AS error_message, http_status
FROM bulkops.receipts WHERE job_id = :job;
SELECT DISTINCT replace(last_error, :'mock', 'MOCK') AS last_error FROM bulkops.batches WHERE job_id = :job;
SELECT (s->'oauth'->>'token_requests')::int > 1 AS fetched_again,
       (s->'clinia'->>'submits')::int = 10 AS nothing_more_submitted
FROM test.mock('GET', '/_control/stats') AS s;
SELECT count(*) AS secret_shown FROM bulkops.receipts r JOIN bulkops.batches b USING (job_id)
WHERE r.error_message ~ 'cc-' OR b.last_error ~ 'cc-';

-- 4. the right secret again: works at once
SELECT bulkops.alter_target('oa', auth => pg_temp.oa_auth('cc-secret-1'));
SELECT bulkops.bulk_upsert('oa', 'oa_people', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT test.mock('POST', '/_control/reset');

-- 5. a refresh token (obtained once, by a person): grant_type=refresh_token,
-- without a client secret where the client needs none
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config',
  '{"oauth": {"client_id": "bulkops", "client_secret": "rt-client-secret",
              "refresh_token": "rt-good-1", "require_secret": false},
    "clinia": {"oauth": true}}');
-- a refused grant's rows: their status and error, and whether any receipt or
-- batch error shows a secret starting with prefix
CREATE FUNCTION pg_temp.refused(job bigint, prefix text)
RETURNS TABLE (status text, error_message text, secret_shown boolean) LANGUAGE sql
BEGIN ATOMIC
  SELECT DISTINCT r.status::text, replace(r.error_message, current_setting('test.mock_url'), 'MOCK'),
         EXISTS (SELECT FROM bulkops.receipts x JOIN bulkops.batches b USING (job_id)
                 WHERE x.job_id = job AND (x.error_message ~ prefix OR b.last_error ~ prefix))
  FROM bulkops.receipts r WHERE r.job_id = job;
END;
CREATE FUNCTION pg_temp.rt_auth(token text) RETURNS jsonb LANGUAGE sql
RETURN jsonb_build_object('type', 'oauth2_refresh_token', 'client_id', 'bulkops',
                          'refresh_token', token,
                          'token_url', current_setting('test.mock_url') || '/oauth2/token');
SELECT bulkops.create_target('oa_rt', 'clinia', :'url', 'Person', pg_temp.rt_auth('rt-good-1'),
                             '{"batch_size": 50}');
SELECT bulkops.bulk_upsert('oa_rt', 'oa_people', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT r->>'body' ~ '^grant_type=refresh_token&client_id=bulkops&refresh_token=rt-good-1$' AS form
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r
WHERE r->>'path' = '/oauth2/token';
SELECT (s->'oauth'->>'refresh_token')::int AS refresh_grants
FROM test.mock('GET', '/_control/stats') AS s;
-- a revoked one fails the rows with the endpoint's words, never the token's
SELECT bulkops.alter_target('oa_rt', auth => pg_temp.rt_auth('rt-revoked-2'));
SELECT bulkops.bulk_upsert('oa_rt', 'oa_people', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT * FROM pg_temp.refused(:job, 'rt-');

-- 6. a user's password (Salesforce's username-password flow): grant_type=password
-- with the client's id and secret
SELECT test.mock('POST', '/_control/reset');
SELECT test.mock('POST', '/_control/config',
  '{"oauth": {"client_id": "bulkops", "client_secret": "pw-client-secret",
              "username": "etl@example.com", "password": "pw-user-1"},
    "clinia": {"oauth": true}}');
CREATE FUNCTION pg_temp.pw_auth(password text) RETURNS jsonb LANGUAGE sql
RETURN jsonb_build_object('type', 'oauth2_password', 'client_id', 'bulkops',
                          'client_secret', 'pw-client-secret', 'username', 'etl@example.com',
                          'password', password,
                          'token_url', current_setting('test.mock_url') || '/oauth2/token');
SELECT bulkops.create_target('oa_pw', 'clinia', :'url', 'Person', pg_temp.pw_auth('pw-user-1'),
                             '{"batch_size": 50}');
SELECT bulkops.bulk_upsert('oa_pw', 'oa_people', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
SELECT r->>'body' ~ '^grant_type=password&client_id=bulkops&client_secret=pw-client-secret&username=etl%40example.com&password=pw-user-1$' AS form
FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) AS r
WHERE r->>'path' = '/oauth2/token';
SELECT bulkops.alter_target('oa_pw', auth => pg_temp.pw_auth('pw-wrong-2'));
SELECT bulkops.bulk_upsert('oa_pw', 'oa_people', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT * FROM pg_temp.refused(:job, 'pw-');
SELECT test.mock('POST', '/_control/reset');
