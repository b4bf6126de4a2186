-- bulkops 1.1 -> 1.2
\echo Use "ALTER EXTENSION bulkops UPDATE TO '1.2'" to load this file. \quit

-- The join index on receipts.key compares bytes (text_pattern_ops) instead
-- of collating.  The worker adds one entry per row it settles, and
-- strcoll() in each comparison of the b-tree descent was the largest part
-- of that cost.  Equality joins (r.key = a.id::text) and lookups use it as
-- before, and prefix searches (key LIKE 'abc%') now can too; only ORDER BY
-- key cannot, which no query of ours needs.  Rebuilding it reads the table
-- once, under a lock that blocks the worker's writes meanwhile.
DROP INDEX bulkops.receipts_key_idx;
CREATE INDEX receipts_key_idx ON bulkops.receipts (key text_pattern_ops);

-- Which of the database's workers (bulkops.workers_per_database) holds an
-- active batch, so that after a restart each resumes only its own.  NULL:
-- taken before 1.2, by the only worker there was.
ALTER TABLE bulkops.batches ADD COLUMN lane smallint;
