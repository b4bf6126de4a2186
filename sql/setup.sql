-- setup: bulkops installs into the preloaded temporary instance, its worker
-- serves this database, and later suites get test.mock(), which steers the
-- mock API server through its control API (curl via COPY FROM PROGRAM).
CREATE EXTENSION bulkops;
SELECT extversion FROM pg_extension WHERE extname = 'bulkops';

\getenv mock_port BULKOPS_MOCK_PORT
SELECT :'mock_port' ~ '^[0-9]+$' AS mock_port_given;
-- each suite runs in its own session: a database default reaches them all
-- (not echoed: the port differs from run to run)
\set ECHO none
SELECT format('ALTER DATABASE %I SET test.mock_url = %L', current_database(),
              'http://127.0.0.1:' || :'mock_port') \gexec
\set ECHO all

CREATE SCHEMA test;
CREATE FUNCTION test.sh_quote(s text) RETURNS text
    LANGUAGE sql IMMUTABLE
    RETURN '''' || replace(s, '''', '''"''"''') || '''';

CREATE FUNCTION test.mock(method text, path text, body jsonb DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS mock_out (line text);
    TRUNCATE mock_out;
    -- CSV with quote and delimiter that never occur reads lines raw
    EXECUTE format('COPY mock_out FROM PROGRAM %L WITH (FORMAT csv, QUOTE %L, DELIMITER %L)',
                   format('curl -sS -X %s -H %s --data-binary %s %s',
                          method, test.sh_quote('Content-Type: application/json'),
                          test.sh_quote(coalesce(body::text, '')),
                          test.sh_quote(current_setting('test.mock_url') || path)),
                   E'\x01', E'\x02');
    SELECT string_agg(line, E'\n') INTO result FROM mock_out;
    RETURN result::jsonb;
END
$$;

-- run a statement; its error message with numbers masked, or 'ok'
CREATE FUNCTION test.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9]+', 'N', 'g');
END
$$;
GRANT USAGE ON SCHEMA test TO PUBLIC;

-- the worker for this database is up and registered (the launcher starts it
-- within bulkops.launcher_naptime of the database existing)
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN bulkops.worker_pid() IS NOT NULL;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT count(*) = 1 AS worker_running
FROM pg_stat_activity WHERE backend_type = 'bulkops worker' AND datname = current_database();
SELECT bulkops.worker_pid() = (SELECT pid FROM pg_stat_activity
                               WHERE backend_type = 'bulkops worker'
                                 AND datname = current_database()) AS worker_pid_published;
\c
SELECT test.mock('POST', '/_control/reset');
