-- ratelimit: option rate_limit spaces a target's requests (polls included)
-- at that many per second after a burst of one second's worth
SET client_min_messages = warning;
SELECT current_setting('test.mock_url') || '/clinia/sources/rl/v1' AS url \gset
SELECT bulkops.create_target('rl', 'clinia', :'url', 'Thing', NULL,
       '{"batch_size": 1, "concurrency": 10, "rate_limit": 4}');
SELECT test.try($$SELECT bulkops.alter_target('rl', options => '{"rate_limit": "fast"}')$$) AS bad_rate;
SELECT test.mock('POST', '/_control/reset');
SELECT bulkops.bulk_upsert('rl', 'SELECT i AS id FROM generate_series(1, 10) i', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = :job;
-- n requests at 4/s after a burst of 4 take at least (n - 4) / 4 seconds
WITH r AS (SELECT (e->>'time')::float8 AS t
           FROM jsonb_array_elements(test.mock('GET', '/_control/requests')) e
           WHERE e->>'path' LIKE '/clinia/sources/rl/%')
SELECT count(*) >= 20 AS submits_and_polls,
       max(t) - min(t) >= (count(*) - 4) / 4.0 - 0.05 AS spaced
FROM r;
