#!/usr/bin/env bash
# test/load.sh - many sessions enqueueing and cancelling while the worker runs.
#
# Starts a throwaway cluster with bulkops preloaded and the mock API server, makes
# 5 clinia targets (the fifth slow, with a job deadline of 3 s), then runs pgbench with LOAD_SESSIONS (50) concurrent sessions
# for LOAD_SECONDS (20): each session enqueues upserts and inserts of 1 to
# LOAD_MAX_ROWS (400) rows into a random target, now and then cancels a random
# unfinished job or the job it has just enqueued, and pauses in between.  Then it
# waits for every job to end and checks:
#   - no deadlock, no crashed process (the server log),
#   - no lost job (every job final, every batch done),
#   - no lost row (exactly one receipt per row, row numbers 1..rows_total, the
#     job's counters equal its receipts by status, each target's row counters
#     of bulkops.metrics the sums of its jobs' counters),
# and prints figures: jobs, rows, rows/s, time, enqueue latency (max and mean),
# and the time from a cancel to its job's end.  LOAD_WORKERS (2) workers serve
# the database (bulkops.workers_per_database), so their sharing of targets,
# cancels and deadlines is under load too.
#
# It takes about 30 s (20 s of load, the rest setup and draining), so it is the
# last stage of test/run-tests.sh (BULKOPS_LOAD=0 skips it there).  Run alone: as
# root (it builds and installs first) or as a user with pg_config on PATH.  Each
# check prints "ok: ..." or "FAILED: ..."; exit status 0 when every check passed.
# KEEP_LOG=1 prints the server log at the end.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/test/lib.sh"
bulkops_root_prelude "$top" test/load.sh "$@"

export PATH="$BULKOPS_PGBIN:$PATH"
sessions=${LOAD_SESSIONS:-50}
seconds=${LOAD_SECONDS:-20}
max_rows=${LOAD_MAX_ROWS:-400}
workers=${LOAD_WORKERS:-2}
drain_timeout=${LOAD_DRAIN_TIMEOUT:-300}
targets=5

work=$(mktemp -d /tmp/bulkops-load.XXXXXX)
cleanup() {
	[ -n "${KEEP_LOG:-}" ] && cat "$work/server.log"
	pg_ctl -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
	[ -n "${MOCK_PID:-}" ] && kill "$MOCK_PID" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

bulkops_start_mock "$top"
initdb -D "$work/pg" -A trust -U postgres >/dev/null
cat >>"$work/pg/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$work'
max_connections = $((sessions + 20))
shared_preload_libraries = 'bulkops'
bulkops.database_name = 'postgres'
bulkops.workers_per_database = $workers
bulkops.poll_interval = '200ms'
log_lock_waits = on
deadlock_timeout = '1s'
CONF
pg_ctl -D "$work/pg" -l "$work/server.log" -w start >/dev/null
export PGHOST=$work PGUSER=postgres PGDATABASE=postgres
q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

# Every 97th row asks the remote side to refuse it, so jobs end partial too.
# The last target is slow (every answer 0.5 s late) and its jobs have a
# deadline of 3 s: they time out with requests in flight and tasks running.
q -v mock="http://127.0.0.1:$MOCK_PORT" -v targets=$targets >/dev/null <<'SQL'
CREATE EXTENSION bulkops;
SELECT bulkops.create_target('load' || i, 'clinia',
                             :'mock' || '/clinia/sources/load' || i || '/v1',
                             resource => 'Row',
                             options => CASE WHEN i < :targets
                                        THEN '{"batch_size": 100, "concurrency": 4}'
                                        ELSE '{"batch_size": 100, "concurrency": 4, "deadline": 3}'
                                        END::jsonb)
FROM generate_series(1, :targets) AS i;
CREATE TABLE load_cancels (job bigint PRIMARY KEY, at timestamptz NOT NULL);
CREATE FUNCTION load_source(n int) RETURNS text LANGUAGE sql IMMUTABLE
RETURN format('SELECT i AS id, md5(i::text) AS name, '
              'CASE WHEN i %% 97 = 0 THEN ''refused'' END AS _fail '
              'FROM generate_series(1, %s) AS i', n);
SQL

curl -sf -o /dev/null -H 'Content-Type: application/json' \
	-d '{"rules": [{"action": "delay", "seconds": 0.5, "times": -1,
	                "path": "^/clinia/sources/load'$targets'/"}]}' \
	"http://127.0.0.1:$MOCK_PORT/_control/faults"

cat >"$work/upsert.sql" <<SQL
\set tgt random(1, $targets)
\set rows random(1, $max_rows)
SELECT bulkops.bulk_upsert('load' || :tgt, load_source(:rows), key => 'id');
SQL
cat >"$work/insert.sql" <<SQL
\set tgt random(1, $targets)
\set rows random(1, $max_rows)
SELECT bulkops.bulk_insert('load' || :tgt, load_source(:rows));
SQL
# a cancel that stopped a job is noted, to measure how long the job took to end
cat >"$work/cancel.sql" <<'SQL'
INSERT INTO load_cancels
SELECT id, clock_timestamp() FROM (SELECT id FROM bulkops.jobs
                                   WHERE state IN ('queued', 'running')
                                   ORDER BY random() LIMIT 1) j
WHERE bulkops.cancel(id)
ON CONFLICT (job) DO NOTHING;
SQL
cat >"$work/cancel_own.sql" <<SQL
\set tgt random(1, $targets)
\set rows random(1, $max_rows)
SELECT bulkops.bulk_upsert('load' || :tgt, load_source(:rows), key => 'id') AS job \gset
INSERT INTO load_cancels SELECT :job, clock_timestamp() WHERE bulkops.cancel(:job)
ON CONFLICT (job) DO NOTHING;
SQL
cat >"$work/pause.sql" <<'SQL'
\set ms random(200, 1500)
\sleep :ms ms
SQL

echo "load: $sessions sessions for ${seconds}s, jobs of 1..$max_rows rows to $targets targets"
start=$(date +%s.%N)
# script numbers in the log: 0 upsert, 1 insert, 2 cancel, 3 enqueue+cancel, 4 pause
pgbench -n -M simple -c "$sessions" -j 2 -T "$seconds" \
	-f "$work/upsert.sql@6" -f "$work/insert.sql@2" -f "$work/cancel.sql@1" \
	-f "$work/cancel_own.sql@1" -f "$work/pause.sql@10" \
	-l --log-prefix="$work/pgbench" >"$work/pgbench.out" 2>&1 || {
	cat "$work/pgbench.out"
	echo "load: pgbench failed" >&2
	exit 1
}
enqueued=$(date +%s.%N)

# wait for the worker to finish every job
deadline=$(($(date +%s) + drain_timeout))
while [ "$(q -c "SELECT count(*) FROM bulkops.jobs WHERE state IN ('queued', 'running')")" != 0 ]; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "load: jobs still unfinished after ${drain_timeout}s:" >&2
		q -c "SELECT id, state, rows_total, batches_done, batches_total FROM bulkops.jobs
		      WHERE state IN ('queued', 'running') ORDER BY id LIMIT 20" >&2
		break
	fi
	sleep 1
done
finished=$(date +%s.%N)

fail=0
check() { # check NAME VALUE: VALUE must be 0
	if [ "$2" = 0 ]; then
		echo "ok: $1"
	else
		echo "FAILED: $1 ($2)"
		fail=1
	fi
}

check "no deadlock in the server log" "$(grep -c 'deadlock detected' "$work/server.log" || true)"
check "no process crashed" \
	"$(grep -cE 'terminated by signal|was terminated by|PANIC' "$work/server.log" || true)"
check "pgbench saw no failed statement" \
	"$(grep -cE 'ERROR|aborted' "$work/pgbench.out" || true)"
check "every job is final" \
	"$(q -c "SELECT count(*) FROM bulkops.jobs WHERE state IN ('queued', 'running')")"
check "every batch is done" \
	"$(q -c "SELECT count(*) FROM bulkops.batches WHERE state <> 'done'")"
check "every job has done all its batches" \
	"$(q -c "SELECT count(*) FROM bulkops.jobs WHERE batches_done <> batches_total")"
check "every row has exactly one receipt, numbered 1..rows_total" "$(q <<'SQL'
WITH r AS (SELECT job_id, count(*) AS n, min(row_no) AS lo, max(row_no) AS hi
           FROM bulkops.receipts GROUP BY job_id)
SELECT count(*) FROM bulkops.jobs j LEFT JOIN r ON r.job_id = j.id
WHERE coalesce(r.n, 0) <> j.rows_total
   OR (j.rows_total > 0 AND (r.lo <> 1 OR r.hi <> j.rows_total))
SQL
)"
check "the jobs' counters match their receipts" "$(q <<'SQL'
WITH r AS (SELECT job_id,
                  count(*) FILTER (WHERE status = 'succeeded') AS s,
                  count(*) FILTER (WHERE status = 'failed') AS f,
                  count(*) FILTER (WHERE status = 'cancelled') AS c,
                  count(*) FILTER (WHERE status = 'unknown') AS u
           FROM bulkops.receipts GROUP BY job_id)
SELECT count(*) FROM bulkops.jobs j LEFT JOIN r ON r.job_id = j.id
WHERE (j.rows_succeeded, j.rows_failed, j.rows_cancelled, j.rows_unknown)
      <> (coalesce(r.s, 0), coalesce(r.f, 0), coalesce(r.c, 0), coalesce(r.u, 0))
SQL
)"
check "the per-target row counters (bulkops.metrics) match the jobs' counters" "$(q <<'SQL'
SELECT count(*) FROM
  (SELECT target, sum(rows_succeeded) AS s, sum(rows_failed) AS f,
          sum(rows_cancelled) AS c, sum(rows_unknown) AS u
   FROM bulkops.jobs GROUP BY target) j
  FULL JOIN
  (SELECT target, sum(value) FILTER (WHERE labels->>'status' = 'succeeded') AS s,
          sum(value) FILTER (WHERE labels->>'status' = 'failed') AS f,
          sum(value) FILTER (WHERE labels->>'status' = 'cancelled') AS c,
          sum(value) FILTER (WHERE labels->>'status' = 'unknown') AS u
   FROM bulkops.metrics WHERE metric = 'rows_total' GROUP BY target) m USING (target)
WHERE (j.s, j.f, j.c, j.u) IS DISTINCT FROM (m.s, m.f, m.c, m.u)
SQL
)"
check "every job's state agrees with its counters" "$(q <<'SQL'
SELECT count(*) FROM bulkops.jobs
WHERE CASE WHEN cancel_requested THEN state NOT IN ('cancelled', 'timed_out')
           WHEN rows_succeeded = rows_total THEN state <> 'succeeded'
           WHEN rows_succeeded = 0 THEN state <> 'failed'
           ELSE state <> 'partial' END
SQL
)"
check "no row is unknown without a reason" \
	"$(q -c "SELECT count(*) FROM bulkops.receipts WHERE status = 'unknown' AND error_message IS NULL")"
check "all $workers workers took batches" \
	"$(q -c "SELECT $workers - count(DISTINCT lane) FROM bulkops.batches")"

# figures
python3 - "$work" "$start" "$enqueued" "$finished" <<'PY'
import glob, sys
work, start, enqueued, finished = sys.argv[1], *map(float, sys.argv[2:])
lat = {}
for path in glob.glob(work + "/pgbench*"):
    if path.endswith(".out"):
        continue
    for line in open(path):
        f = line.split()
        # client_id transaction_no time_us script_no epoch epoch_us
        lat.setdefault(int(f[3]), []).append(int(f[2]) / 1000.0)
enq = lat.get(0, []) + lat.get(1, [])
def show(name, xs):
    if xs:
        print("  %-28s %6d   mean %8.1f ms   max %8.1f ms" % (name, len(xs), sum(xs) / len(xs), max(xs)))
print("figures:")
show("enqueue (upsert, insert)", enq)
show("cancel of a random job", lat.get(2, []))
show("enqueue then cancel it", lat.get(3, []))
print("  %-28s %8.1f s" % ("enqueueing", enqueued - start))
print("  %-28s %8.1f s" % ("draining after it", finished - enqueued))
open(work + "/elapsed", "w").write("%f" % (finished - start))
PY
elapsed=$(cat "$work/elapsed")
q -v elapsed="$elapsed" <<'SQL'
\pset tuples_only off
\pset format aligned
SELECT count(*) AS jobs,
       sum(rows_total) AS rows,
       round(sum(rows_total) / :elapsed) AS "rows/s (whole run)",
       round(sum(rows_succeeded + rows_failed)
             / extract(epoch FROM max(finished_at) - min(started_at))) AS "rows sent/s",
       round(:elapsed::numeric, 1) AS "seconds"
FROM bulkops.jobs;
SELECT count(*) AS "cancels that stopped a job",
       round(avg(extract(epoch FROM j.finished_at - c.at))::numeric, 2) AS "s to final (mean)",
       round(max(extract(epoch FROM j.finished_at - c.at))::numeric, 2) AS "s to final (max)"
FROM load_cancels c JOIN bulkops.jobs j ON j.id = c.job;
SELECT state, count(*) AS jobs, sum(rows_total) AS rows FROM bulkops.jobs GROUP BY 1 ORDER BY 1;
SELECT status, count(*) AS receipts FROM bulkops.receipts GROUP BY 1 ORDER BY 1;
SELECT status, regexp_replace(error_message, 'task bk_[0-9]+', 'task bk_N') AS reason,
       count(*)
FROM bulkops.receipts WHERE status IN ('unknown', 'cancelled') GROUP BY 1, 2 ORDER BY 3 DESC;
SQL

if [ $fail -ne 0 ]; then
	echo "load: FAILED"
	q <<'SQL'
\pset tuples_only off
\pset format aligned
SELECT id, state, cancel_requested, timed_out, rows_total, rows_succeeded, rows_failed,
       rows_cancelled, rows_unknown, batches_done, batches_total
FROM bulkops.jobs
WHERE state IN ('queued', 'running') OR batches_done <> batches_total
   OR rows_total <> rows_succeeded + rows_failed + rows_cancelled + rows_unknown
   OR CASE WHEN cancel_requested THEN state NOT IN ('cancelled', 'timed_out')
           WHEN rows_succeeded = rows_total THEN state <> 'succeeded'
           WHEN rows_succeeded = 0 THEN state <> 'failed'
           ELSE state <> 'partial' END
ORDER BY id LIMIT 20;
SQL
	grep -E 'ERROR|WARNING|deadlock|terminated' "$work/server.log" | head -40
	exit 1
fi
echo "load: all checks passed"
