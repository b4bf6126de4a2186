-- targets: create_target, alter_target and drop_target validate what they are
-- given and refuse bad dialects, URLs, hosts, options and credentials with
-- clear errors.
\set VERBOSITY default
SELECT current_setting('test.mock_url') || '/clinia/sources/s1/v1' AS url \gset

SELECT bulkops.create_target('t1', 'clinia', :'url', 'Practitioner',
                             '{"type": "header", "name": "X-Clinia-API-Key", "value": "k1"}',
                             '{"batch_size": 500, "concurrency": 2}');
SELECT name, dialect, url = :'url' AS url_ok, resource, options, owner::text = current_user AS owned
FROM bulkops.targets;
-- a trailing slash is dropped so paths join cleanly
SELECT bulkops.create_target('t2', 'clinia', :'url' || '/', 'Organization');
SELECT url = :'url' AS slash_dropped FROM bulkops.targets WHERE name = 't2';

-- mistakes
SELECT bulkops.create_target('t1', 'clinia', :'url', 'Practitioner');
-- an unknown dialect; the hint names every dialect, as bulkops.dialects()
-- lists them (not repeated here: a new dialect changes no expected output)
\set VERBOSITY terse
SELECT bulkops.create_target('t3', 'nosuch', :'url', 'Practitioner');
\set VERBOSITY default
CREATE FUNCTION pg_temp.hint_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    hint text;
BEGIN
    EXECUTE stmt;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS hint = PG_EXCEPTION_HINT;
    RETURN hint;
END
$$;
SELECT pg_temp.hint_of($$SELECT bulkops.create_target('t3', 'nosuch', 'http://127.0.0.1:1/x', 'P')$$)
       = 'Known dialects are: ' || string_agg(d.name, ', ' ORDER BY d.ordinality) || '.'
       AS hint_lists_every_dialect
FROM bulkops.dialects() WITH ORDINALITY AS d;
SELECT bulkops.create_target('t3', 'clinia', 'not a url', 'Practitioner');
SELECT bulkops.create_target('t3', 'clinia', 'ftp://127.0.0.1/x', 'Practitioner');
SELECT bulkops.create_target('t3', 'clinia', 'http://example.com/x', 'Practitioner');
SELECT bulkops.create_target('t3', 'clinia', :'url');
SELECT bulkops.create_target('t3', 'clinia', :'url', 'P', NULL, '{"batchsize": 5}');
SELECT bulkops.create_target('t3', 'clinia', :'url', 'P', NULL, '{"batch_size": "5"}');
SELECT bulkops.create_target('t3', 'clinia', :'url', 'P', NULL, '{"batch_size": 0}');
SELECT bulkops.create_target('t3', 'clinia', :'url', 'P', NULL, '{"concurrency": 2.5}');
SELECT bulkops.create_target('t3', 'clinia', :'url', 'P', NULL, '{"kind": "things"}');
SELECT bulkops.create_target('t3', 'clinia', :'url', 'P', NULL, '[1, 2]');
SELECT bulkops.create_target('t3', 'clinia', :'url', 'P', '{"type": "magic"}');
SELECT bulkops.create_target('t3', 'clinia', :'url', 'P', '{"token": "x"}');
SELECT bulkops.create_target('t3', 'clinia', :'url', 'P', '{"type": "basic", "username": "u"}');
SELECT bulkops.create_target('t3', 'clinia', :'url', 'P', '{"type": "bearer", "token": {"file": "relative/path"}}');
SELECT bulkops.create_target('t3', 'clinia', :'url', 'P', '{"type": "bearer", "token": 42}');
SELECT bulkops.create_target('bad name!', 'clinia', :'url', 'P');
SELECT bulkops.create_target(NULL, 'clinia', :'url', 'P');

-- plain http is for loopback only, unless allowed
SET bulkops.allow_http = on;
SELECT bulkops.create_target('t3', 'clinia', 'http://example.com/x', 'P');
RESET bulkops.allow_http;

-- allowed_hosts is checked at creation (and before every request)
SET bulkops.allowed_hosts = 'api.example.com, *.clinia.cloud';
SELECT bulkops.create_target('t4', 'clinia', :'url', 'P');
SELECT bulkops.create_target('t4', 'clinia', 'https://acme.clinia.cloud/sources/x/v1', 'P');
SELECT bulkops.create_target('t5', 'clinia', 'https://clinia.cloud.evil.com/x', 'P');
SET bulkops.allowed_hosts = '127.0.0.1:1';
SELECT bulkops.create_target('t5', 'clinia', :'url', 'P');
RESET bulkops.allowed_hosts;

-- alter: NULL keeps a value, options are replaced whole and validated
SELECT bulkops.alter_target('t1', options => '{"batch_size": 100}');
SELECT bulkops.alter_target('t1', resource => 'Location');
SELECT name, resource, options FROM bulkops.targets WHERE name = 't1';
SELECT bulkops.alter_target('t1', options => '{"batch_size": -1}');
-- retry_after_max: whole seconds, 1 to 86400 (a day); the default is 3600
SELECT bulkops.alter_target('t1', options => '{"retry_after_max": 0}');
SELECT bulkops.alter_target('t1', options => '{"retry_after_max": 86401}');
SELECT bulkops.alter_target('t1', options => '{"retry_after_max": 1.5}');
SELECT bulkops.alter_target('t1', options => '{"retry_after_max": "1h"}');
SELECT bulkops.alter_target('t1', options => '{"batch_size": 100, "retry_after_max": 86400}');
SELECT options FROM bulkops.targets WHERE name = 't1';
SELECT bulkops.alter_target('t1', options => '{"batch_size": 100}');
SELECT bulkops.alter_target('t1', url => 'gopher://x');
SELECT bulkops.alter_target('nosuch', resource => 'x');
SELECT name, resource, options FROM bulkops.targets WHERE name = 't1';

-- drop
SELECT bulkops.drop_target('t4');
SELECT bulkops.drop_target('nosuch');
SELECT name FROM bulkops.targets ORDER BY name;

-- bulkops.dialects(): what each dialect has, for tests and tools: its
-- operations, those safe to repeat and those that need a key, its own
-- options, its limits per request (NULL: none) and whether it aborts
SELECT * FROM bulkops.dialects() WHERE name IN ('clinia', 'salesforce') ORDER BY name;
SELECT count(*) = count(DISTINCT name) AS names_unique,
       bool_and(idempotent <@ operations AND needs_key <@ operations) AS subsets_of_operations,
       bool_and(cardinality(operations) > 0) AS every_dialect_has_operations
FROM bulkops.dialects();
