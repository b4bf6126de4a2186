-- encode: each source row is encoded once, from the tuple, into the clinia
-- operation that carries it: numbers unquoted at full precision, json and
-- jsonb embedded, arrays as JSON arrays, composites as objects, bytea as
-- base64, timestamps in ISO 8601, NULL as null.  Rolled back: nothing is sent.
SET timezone = 'UTC';
SET datestyle = 'SQL, DMY';  -- the encoding must not depend on it
SELECT current_setting('test.mock_url') || '/clinia/sources/enc/v1' AS url \gset
SELECT bulkops.create_target('enc', 'clinia', :'url', 'Sample');

CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE samples (
    id          text,
    i2          smallint,
    i8          bigint,
    num         numeric,
    f8          float8,
    f4          real,
    flag        boolean,
    txt         text,
    vc          varchar(10),
    ch          char(4),
    js          json,
    jb          jsonb,
    arr         int[],
    arr2        text[][],
    pairs       pair[],
    p           pair,
    raw         bytea,
    d           date,
    ts          timestamp,
    tstz        timestamptz,
    t           time,
    iv          interval,
    u           uuid,
    dom         posint,
    m           mood,
    contained   jsonb
);
INSERT INTO samples VALUES
  ('r1', 7, 9007199254740993, 12345678901234567890.123456789012345678901,
   0.1, 1.5, true, E'quote " backslash \\ newline \n tab \t bell \x07 é 中',
   'short', 'ab', '{"a": [1, 2.50]}', '{"b": {"c": null}}',
   '{1,NULL,3}', '{{"x","y"},{"z",NULL}}', ARRAY[ROW(1,'one')::pair, NULL],
   ROW(2, 'two'), '\x00ff10', '2024-02-29', '2024-02-29 13:14:15.123456',
   '2024-02-29 13:14:15+02', '23:59:59', '1 day 2 hours', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   5, 'sad', '{"parent": "p1"}'),
  ('r2', NULL, NULL, 'NaN', 'Infinity', '-Infinity', false, '', '', NULL,
   'null', '[]', '{}', '{}', '{}', NULL, '', 'infinity', '-infinity',
   'infinity', NULL, NULL, NULL, NULL, NULL, NULL);

BEGIN;
SELECT bulkops.bulk_upsert('enc', 'samples', key => 'id') AS job \gset
SELECT keys[i] AS key,
       convert_from(substring(body FROM offsets[i] + 1 FOR offsets[i + 1] - offsets[i]), 'UTF8') AS encoded
FROM bulkops.batches, generate_subscripts(keys, 1) AS i
WHERE job_id = :job ORDER BY i;
-- every encoding is valid JSON, and its data round-trips for the types JSON has
SELECT (convert_from(substring(body FROM offsets[i] + 1 FOR offsets[i + 1] - offsets[i]), 'UTF8')::jsonb
        -> 'upsert' -> 'data' ->> 'num')::numeric = s.num AS numeric_exact,
       (convert_from(substring(body FROM offsets[i] + 1 FOR offsets[i + 1] - offsets[i]), 'UTF8')::jsonb
        -> 'upsert' -> 'data' ->> 'txt') = s.txt AS text_exact,
       decode(convert_from(substring(body FROM offsets[i] + 1 FOR offsets[i + 1] - offsets[i]), 'UTF8')::jsonb
        -> 'upsert' -> 'data' ->> 'raw', 'base64') = s.raw AS bytea_exact
FROM bulkops.batches, generate_subscripts(keys, 1) AS i, samples s
WHERE job_id = :job AND s.id = keys[i] ORDER BY i;
ROLLBACK;

-- a delete carries only the key; an insert sends the key as no field
BEGIN;
SELECT bulkops.bulk_delete('enc', 'SELECT id FROM samples', key => 'id') AS job \gset
SELECT convert_from(body, 'UTF8') FROM bulkops.batches WHERE job_id = :job;
SELECT bulkops.bulk_insert('enc', 'SELECT id, i2 FROM samples', key => 'id') AS job \gset
SELECT convert_from(body, 'UTF8') FROM bulkops.batches WHERE job_id = :job;
ROLLBACK;
SELECT bulkops.drop_target('enc');
