-- receipts: a batch keeps its rows' receipts in one slot per row (the
-- format: src/receipts.c), and bulkops.receipts unnests them with the
-- columns a row had.  A row cannot get a second receipt: its slot is
-- written once, and a batch has exactly as many slots as rows.  Batches
-- live in partitions the worker creates, one per generation.
SET client_min_messages = warning;

-- 1. The format, decoded.  Five rows from row 10: a created, its remote id
-- its key; b updated, with a remote id of its own; c failed with its own
-- error; d unknown, with the message its whole answer shared; e has no
-- receipt yet and is not shown.  Three answers: 200 at attempt 1, 207 at
-- attempt 2, none at attempt 3.
SELECT * FROM bulkops._receipts(
    first_row => 10, keys => '{a,b,c,d,e}',
    outcomes => '\x2911020400', answer_of => '\x00000000010002000000',
    remote_ids => '{NULL,B-1,NULL,NULL,NULL}',
    error_codes => '{NULL,NULL,E1,NULL,NULL}',
    error_messages => '{NULL,NULL,"bad row",NULL,NULL}',
    answer_http => '{200,207,NULL}', answer_attempts => '{1,2,3}',
    answer_at => '{2026-01-01 00:00:00+00,2026-01-01 00:01:00+00,2026-01-01 00:02:00+00}',
    answer_codes => NULL, answer_messages => '{NULL,NULL,timeout}');
-- after those columns, what some answers say besides: b's version after its
-- write, c's error fields (stored "a,b", shown as a text[])
SELECT row_no, key, remote_version, error_fields FROM bulkops._receipts(
    first_row => 10, keys => '{a,b,c,d,e}',
    outcomes => '\x2911020400', answer_of => '\x00000000010002000000',
    remote_ids => NULL, error_codes => NULL, error_messages => NULL,
    answer_http => '{200,207,NULL}', answer_attempts => '{1,2,3}',
    answer_at => '{2026-01-01 00:00:00+00,2026-01-01 00:01:00+00,2026-01-01 00:02:00+00}',
    answer_codes => NULL, answer_messages => NULL,
    remote_versions => '{NULL,1550571215726,NULL,NULL,NULL}',
    error_fields => '{NULL,NULL,"Name,Email__c",NULL,NULL}');
-- nothing stored yet: no rows
SELECT count(*) AS before_any_answer FROM bulkops._receipts(1, '{a}', NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- 2. A job with failures among successes: one receipt per row, through the
-- view, and what its batches keep.
SELECT current_setting('test.mock_url') || '/clinia/sources/rc/v1' AS url \gset
SELECT bulkops.create_target('rc', 'clinia', :'url', 'Thing', NULL, '{"batch_size": 400}');
SELECT test.mock('POST', '/_control/reset');
CREATE TABLE rc_src AS
SELECT i AS id, 'thing ' || i AS name,
       CASE WHEN i % 250 = 0 THEN 'thing ' || i || ' is broken' END AS _fail
FROM generate_series(1, 1000) AS i;
SELECT bulkops.bulk_upsert('rc', 'rc_src', key => 'id') AS job \gset
SELECT bulkops.wait(:job, '60 s');
SELECT state, rows_total, rows_succeeded, rows_failed FROM bulkops.jobs WHERE id = :job;
SELECT count(*) AS receipts, count(DISTINCT row_no) AS distinct_rows,
       min(row_no), max(row_no), count(*) FILTER (WHERE key = row_no::text) AS keyed
FROM bulkops.receipts WHERE job_id = :job;
SELECT status, error_code, error_message, http_status, attempts, count(*)
FROM bulkops.receipts WHERE job_id = :job GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 3;
-- the receipts join back to the source by key
SELECT count(*) AS joined, count(*) FILTER (WHERE s._fail IS NOT NULL AND r.status = 'failed')
       AS failed_where_asked
FROM rc_src s JOIN bulkops.receipts r ON r.key = s.id::text AND r.job_id = :job;
-- joined by key, a job's receipts are hashed: the planner knows key unique
-- within a batch (src/receipts_stats.c); the same rows read through a
-- function scan it does not recognise (WITH ORDINALITY) are sorted and
-- merged, as any function's output would be
ANALYZE rc_src;
CREATE FUNCTION pg_temp.join_method(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    plan text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        plan := plan || line || E'\n';
    END LOOP;
    RETURN CASE WHEN plan ~ 'Merge Join' THEN 'sorted and merged'
                WHEN plan ~ 'Hash Join' THEN 'hashed' ELSE plan END;
END
$$;
SELECT pg_temp.join_method(format($$SELECT count(*) FROM rc_src s
    JOIN bulkops.receipts r ON r.key = s.id::text AND r.job_id = %s$$, :job)) AS through_the_view;
SELECT pg_temp.join_method(format($$SELECT count(*) FROM rc_src s
    JOIN (SELECT b.job_id, r.* FROM bulkops.batches b,
          LATERAL bulkops._receipts(b.first_row, b.keys, b.outcomes, b.answer_of, b.remote_ids,
                                    b.error_codes, b.error_messages, b.answer_http,
                                    b.answer_attempts, b.answer_at, b.answer_codes,
                                    b.answer_messages) WITH ORDINALITY r) r
    ON r.key = s.id::text AND r.job_id = %s$$, :job)) AS unrecognised;
-- a done batch keeps its keys and receipts, and its rows' wire form only
-- while one of them did not succeed (for bulkops.retry()); one slot per
-- row; remote ids are not stored where they are the key, errors only where
-- a row has its own
SELECT batch_no, row_count, state, body IS NULL AS body_dropped,
       offsets IS NULL AS offsets_dropped, octet_length(outcomes) AS slots,
       remote_ids IS NULL AS no_remote_ids,
       (SELECT count(*) FROM unnest(error_messages) m WHERE m IS NOT NULL) AS own_errors,
       cardinality(answer_attempts) AS answers
FROM bulkops.batches WHERE job_id = :job ORDER BY batch_no;

-- 3. A second receipt for a row has nowhere to go: a batch has exactly one
-- slot per row (even for a superuser writing the table by hand).
CREATE FUNCTION pg_temp.refused_by(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c text;
BEGIN
    EXECUTE stmt;
    RETURN 'nothing';
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS c = CONSTRAINT_NAME;
    RETURN c;
END
$$;
SELECT pg_temp.refused_by(format($$UPDATE bulkops.batches SET outcomes = outcomes || '\x01'::bytea
                                  WHERE job_id = %s AND batch_no = 1$$, :job)) AS extra_slot;
SELECT pg_temp.refused_by(format($$UPDATE bulkops.batches SET answer_of = answer_of || '\x0000'::bytea
                                  WHERE job_id = %s AND batch_no = 1$$, :job)) AS extra_answer;

-- 4. The job's batches are in its generation's partition, which the worker
-- created ahead of time: named for the generation's start (UTC), owned as
-- its parent, with no grants of its own (everyone reads through the parent,
-- under its row-level security).
SELECT j.generation % extract(epoch FROM current_setting('bulkops.partition_interval')::interval)::bigint
       AS misaligned
FROM bulkops.jobs j WHERE j.id = :job;
SELECT b.tableoid::regclass::text = 'bulkops.batches_'
         || to_char(to_timestamp(j.generation) AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI')
       AS in_its_generations_partition,
       c.relowner = p.relowner AS owned_as_parent, c.relacl IS NULL AS no_grants
FROM bulkops.batches b JOIN bulkops.jobs j ON j.id = b.job_id
JOIN pg_class c ON c.oid = b.tableoid, pg_class p
WHERE b.job_id = :job AND p.oid = 'bulkops.batches'::regclass
GROUP BY 1, 2, 3;
-- the next generation's partition is there before its time
SELECT count(*) AS next_partition FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'bulkops.batches'::regclass
  AND c.relname = 'batches_' || to_char(to_timestamp(
        (SELECT generation FROM bulkops.jobs WHERE id = :job)
        + extract(epoch FROM current_setting('bulkops.partition_interval')::interval))
        AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI');
