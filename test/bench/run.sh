#!/usr/bin/env bash
# test/bench/run.sh - throughput benchmark of bulkops: enqueue, end to end,
# worker memory, against COPY (SELECT row_to_json(t) FROM t) TO '/dev/null'.
#
# Not a test and never run in CI: it takes minutes and its numbers depend on
# the machine.  Run as root on a fresh machine, it first installs the
# packages and builds and installs bulkops (same prelude as test/demo.sh),
# then re-runs itself as an unprivileged user.  Leaves nothing running.
#
#   test/bench/run.sh [--rows N] [--dialect NAME (default clinia)] [--runs 3]
#                     [--batch-size 10000] [--concurrency C] [--workers N]
#                     [--no-contended] [--no-join] [--no-sync] [--scale-rows M]
#                     [--statements] [--hold] [--no-queue] [--queue-jobs N]
#                     [--history B1,B2]
#
# What it does:
#   * a throwaway cluster tuned for bulk loading (settings printed with the
#     results), bulkops preloaded, and the mock API server in --bench mode;
#   * a table t of N rows, 8 mixed-type columns, vacuumed, analysed and
#     read into shared buffers before anything is timed;
#   * --runs rounds, alternating: baseline COPY row_to_json to /dev/null (and,
#     for a dialect that sends CSV, COPY t TO /dev/null (FORMAT csv)), then
#     bulk_upsert in its own transaction (timed until COMMIT returns, the
#     worker idle), then the wait for that job to be final (polled every
#     50 ms): end to end.  Medians over the rounds are reported;
#   * one more pair of jobs back to back, the second enqueued while the worker
#     sends the first: enqueue under contention (--no-contended skips it);
#   * every job verified: one receipt per row, all succeeded, keys matching t;
#   * the worker's peak RSS (VmHWM) and its private/shared split;
#   * what each job leaves on disk: pg_database_size before and after it,
#     both after VACUUM, so that from the second round on it is the steady
#     state (a job's growth, its space freed by the one before reused), and
#     the WAL written from its COMMIT until it is final (the worker's);
#   * joining a job's receipts to t by key, against the same join on a plain
#     table of (job_id, key) with the same rows (--no-join skips it);
#   * with --scale-rows M, one more job of M rows (a table t_scale made the
#     same way), whose per-row cost is compared with the rounds';
#   * a sync of t (--no-sync skips it): run_sync timed until COMMIT returns
#     when every key is new (100% changed), on the first run after that (0%
#     changed, folding the first job's receipts into the state and storing
#     it), on the next (0% changed, steady), and after 1% of t's rows
#     changed (checking that exactly those are enqueued); and the stored
#     state's bytes per key, the keys' own text left out.
#
# The queue (--no-queue skips it), after the rounds, once the worker's
# memory and the mock's counts are taken:
#   * fairness: a 100-row job enqueued while a job of t (N rows) runs on the
#     same target: its time to finish, against the same job on an idle
#     worker;
#   * claim latency: 1-row probe jobs on an idle target, each enqueued and
#     committed alone (20, median of their commit -> finished_at), while
#     another target holds 10 and then --queue-jobs (default 10,000) queued
#     jobs behind a request that never ends (its one slot full), and the
#     tables hold a history of done batches of 1,000 rows synthesised by
#     INSERT (--history, default 10000,100000 batches: 10M and 100M
#     receipts' worth), in the generation the queue's jobs are in.  The
#     probe's latency is a claim or two, a request and its store: a claim
#     that grew with the queue or the history would show there.
#
# NAME is any dialect of bulkops.dialects() that has a mock module: where
# its target points, its credentials and options come from the module
# (TESTS["bench"] over TESTS["target"] in test/mock/NAME.py).
#
# --workers sets bulkops.workers_per_database (default 1): the workers' CPU
# is summed, and the RSS reported is the largest worker's.
#
# --statements also loads pg_stat_statements (track = all) and prints the
# statements that took the most time, nested ones included.  --hold keeps the
# cluster and the mock running after the report, for profiling, until the
# script is interrupted.
#
# Exit status: 0 when the measurements are valid (whatever PASS/MISS says),
# 1 when something failed or a job's receipts do not add up.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)

usage() { sed -n '10,14p' "$0" | sed 's/^# \{0,1\}//'; }

rows=1000000
dialect=clinia
runs=3
batch_size=10000
concurrency=
workers=1
contended=1
join=1
sync=1
scale_rows=0
statements=0
hold=0
queue=1
queue_jobs=10000
history=10000,100000
while [ $# -gt 0 ]; do
	case "$1" in
		--rows) rows=${2:?}; shift 2 ;;
		--rows=*) rows=${1#*=}; shift ;;
		--dialect) dialect=${2:?}; shift 2 ;;
		--dialect=*) dialect=${1#*=}; shift ;;
		--runs) runs=${2:?}; shift 2 ;;
		--runs=*) runs=${1#*=}; shift ;;
		--batch-size) batch_size=${2:?}; shift 2 ;;
		--batch-size=*) batch_size=${1#*=}; shift ;;
		--concurrency) concurrency=${2:?}; shift 2 ;;
		--concurrency=*) concurrency=${1#*=}; shift ;;
		--workers) workers=${2:?}; shift 2 ;;
		--workers=*) workers=${1#*=}; shift ;;
		--no-contended) contended=0; shift ;;
		--no-join) join=0; shift ;;
		--no-sync) sync=0; shift ;;
		--scale-rows) scale_rows=${2:?}; shift 2 ;;
		--scale-rows=*) scale_rows=${1#*=}; shift ;;
		--statements) statements=1; shift ;;
		--hold) hold=1; shift ;;
		--no-queue) queue=0; shift ;;
		--queue-jobs) queue_jobs=${2:?}; shift 2 ;;
		--queue-jobs=*) queue_jobs=${1#*=}; shift ;;
		--history) history=${2:?}; shift 2 ;;
		--history=*) history=${1#*=}; shift ;;
		-h|--help) usage; exit 0 ;;
		*) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
	esac
done
rows=${rows//[,_]/}
scale_rows=${scale_rows//[,_]/}
queue_jobs=${queue_jobs//[,_]/}
case "$history" in ''|*[!0-9,]*|,*|*,|*,,*) echo "--history must be numbers separated by commas" >&2; exit 2 ;; esac
case "$scale_rows" in ''|*[!0-9]*) echo "--scale-rows must be a number" >&2; exit 2 ;; esac
for v in rows runs batch_size workers queue_jobs ${concurrency:+concurrency}; do
	case "${!v}" in
		''|*[!0-9]*|0) echo "--${v/_/-} must be a positive integer" >&2; exit 2 ;;
	esac
done

# ---- the dialect: how to point a target at the mock ----
# As the dialect's mock module describes it (mock_api.py --describe): sets
# target_url, target_resource, target_auth (JSON, or empty for none),
# target_options (JSON object members) and csv_baseline (1 for a dialect
# whose wire format is CSV: TESTS["bench"]["csv"]), for a target named $2
# (default bench).
dialect_target() {
	local spec
	spec=$(python3 "$top/test/mock/mock_api.py" --describe | python3 -c '
import json, shlex, sys
name, mock, target = sys.argv[1:]
d = json.load(sys.stdin).get(name)
if d is None:
    sys.exit("no benchmark setup for dialect \"%s\": it has no mock module test/mock/%s.py"
             % (name, name))
b = d["bench"]
values = {"target_url": mock + b["url"].replace("{name}", target),
          "target_resource": b["resource"].replace("{name}", target),
          "target_auth": json.dumps(b["auth"]) if b.get("auth") else "",
          "target_options": json.dumps(b["options"])[1:-1],
          "csv_baseline": "1" if b.get("csv") else "0"}
for k, v in values.items():
    print("%s=%s" % (k, shlex.quote(v)))
' "$dialect" "$1" "${2:-bench}") || return 1
	eval "$spec"
}
dialect_target http://127.0.0.1:1 || exit 2	# refuse an unknown dialect before building anything

. "$top/test/lib.sh"
bulkops_root_prelude "$top" test/bench/run.sh --rows "$rows" --dialect "$dialect" \
	--runs "$runs" --batch-size "$batch_size" ${concurrency:+--concurrency "$concurrency"} \
	--workers "$workers" --scale-rows "$scale_rows" $([ "$join" = 1 ] || echo --no-join) \
	$([ "$contended" = 1 ] || echo --no-contended) $([ "$statements" = 0 ] || echo --statements) \
	$([ "$hold" = 0 ] || echo --hold) $([ "$sync" = 1 ] || echo --no-sync) \
	$([ "$queue" = 1 ] || echo --no-queue) \
	--queue-jobs "$queue_jobs" --history "$history"

export PATH="$BULKOPS_PGBIN:$PATH"
data=$(mktemp -d /tmp/bulkops-bench.XXXXXX)
results="$data/results.tsv"
sampler_pid=
hold_pid=
cleanup() {
	[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
	[ -n "$hold_pid" ] && kill "$hold_pid" 2>/dev/null
	pg_ctl -D "$data/pg" -m immediate stop >/dev/null 2>&1 || true
	[ -n "${MOCK_PID:-}" ] && kill "$MOCK_PID" 2>/dev/null
	rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ -n "${KEEP_LOG:-}" ] && trap 'cat "$data/server.log" >&2; cleanup' EXIT

log() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }
put() { printf '%s\t%s\n' "$1" "$2" >>"$results"; }
cpu_ticks() { cat $(printf '/proc/%s/stat ' "$@") | awk '{s += $14 + $15} END {print s}'; }
clk_tck=$(getconf CLK_TCK)
secs() { awk -v t="$1" -v h="$clk_tck" 'BEGIN {printf "%.2f", t / h}'; }
# The machine is shared: CPU ticks of everything, and of what this benchmark
# runs (the cluster's processes, the mock, this script and its psql), so the
# report can say how much of the machine something else took meanwhile.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
own_ticks() {
	local pm c t
	pm=$(head -1 "$data/pg/postmaster.pid")
	# exited children (backends, psql) are counted in their parent's cutime/cstime
	t=$(awk '{t += $14 + $15 + $16 + $17} END {print t}' \
		"/proc/$pm/stat" "/proc/$$/stat" "/proc/$MOCK_PID/stat")
	for c in $(pgrep -P "$pm"); do
		t=$((t + $(cpu_ticks "$c" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
others_ticks() { echo $(( $(machine_ticks) - $(own_ticks) )); }

# ---- the mock and the cluster ----
bulkops_start_mock "$top" --bench
mock="http://127.0.0.1:$MOCK_PORT"
dialect_target "$mock"
log "mock API server (--bench) on 127.0.0.1:$MOCK_PORT, pid $MOCK_PID"

initdb -D "$data/pg" -A trust -U postgres >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
preload=bulkops
[ "$statements" = 1 ] && preload="bulkops, pg_stat_statements"
# Tuned for a bulk load on a small machine; printed with the results.
settings=(
	"shared_buffers = 1GB"
	"max_wal_size = 4GB"
	"min_wal_size = 1GB"
	"checkpoint_timeout = 30min"
	"synchronous_commit = on"
	"wal_compression = off"
	"maintenance_work_mem = 256MB"
	"jit = off"
	"max_parallel_workers_per_gather = 0"
	"bulkops.workers_per_database = $workers"
)
{
	echo "port = $port"
	echo "listen_addresses = ''"
	echo "unix_socket_directories = '$data'"
	echo "shared_preload_libraries = '$preload'"
	echo "bulkops.database_name = 'postgres'"
	echo "log_checkpoints = on"
	echo "pg_stat_statements.track = all"
	printf '%s\n' "${settings[@]}"
} >>"$data/pg/postgresql.conf"
[ "$statements" = 1 ] || sed -i '/^pg_stat_statements/d' "$data/pg/postgresql.conf"
pg_ctl -D "$data/pg" -l "$data/server.log" -w start >/dev/null
log "PostgreSQL on port $port (socket in $data)"

sql() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$data" -p "$port" -U postgres -d postgres "$@"; }

# ---- schema, target, data ----
log "creating t with $rows rows"
# A job may only narrow its target's options: the batch size is the target's.
target_opts="${target_options:+$target_options, }\"batch_size\": $batch_size"
[ -n "$concurrency" ] && target_opts="$target_opts, \"concurrency\": $concurrency"
target_opts="{$target_opts}"
sql -v url="$target_url" -v resource="$target_resource" -v auth="$target_auth" \
	-v dialect="$dialect" -v topts="$target_opts" -v rows="$rows" <<'SQL'
CREATE EXTENSION bulkops;
CREATE EXTENSION pg_prewarm;
SELECT bulkops.create_target('bench', :'dialect', :'url', resource => :'resource',
                             auth => nullif(:'auth', '')::jsonb, options => :'topts') \gset

-- The benchmark's rows: 8 columns of mixed types.
CREATE FUNCTION bench_rows(n bigint) RETURNS TABLE (
    id       bigint,
    name     text,
    email    text,
    balance  numeric(12,2),
    active   boolean,
    score    double precision,
    attrs    jsonb,
    created  date)
LANGUAGE sql AS $$
SELECT i,
       'Customer ' || i,
       'customer.' || i || '@example.com',
       ((i * 7919) % 10000000) / 100.0,
       i % 3 = 0,
       i / 7.0,
       jsonb_build_object('tier', i % 4, 'region', (ARRAY['eu', 'us', 'ap'])[i % 3 + 1],
                          'vip', i % 10 = 0),
       date '2020-01-01' + (i % 1500)::int
FROM generate_series(1::bigint, n) AS i
$$;
CREATE TABLE t AS SELECT * FROM bench_rows(:rows);
ALTER TABLE t ADD PRIMARY KEY (id);
VACUUM (ANALYZE) t;
SELECT pg_prewarm('t') \gset
SELECT count(*) FROM t \gset

-- Poll a job every 50 ms until it is final; the time it was seen final.
CREATE FUNCTION bench_wait(job bigint, deadline interval) RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    s text;
    give_up timestamptz := clock_timestamp() + deadline;
BEGIN
    LOOP
        SELECT state INTO s FROM bulkops.jobs WHERE id = job;
        IF s IS NULL THEN
            RAISE EXCEPTION 'job % does not exist', job;
        END IF;
        IF s NOT IN ('queued', 'running') THEN
            RETURN clock_timestamp();
        END IF;
        IF clock_timestamp() > give_up THEN
            RAISE EXCEPTION 'job % still % after %', job, s, deadline;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SQL
IFS='|' read -r table_mb json_mb <<<"$(sql -c "SELECT round(pg_table_size('t') / 1048576.0),
	round(sum(octet_length(row_to_json(t)::text)) / 1048576.0, 1) FROM t")"
json_bytes=$(sql -c "SELECT sum(octet_length(row_to_json(t)::text)) FROM t")
put rows "$rows"
put baseline_bytes "$json_bytes"
log "t: $table_mb MB on disk, $json_mb MB as row_to_json"

# the workers: wait until they have connected
worker_pids() {
	sql -c "SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity
	        WHERE backend_type = 'bulkops worker' AND datname = current_database()"
}
wpids=
for _ in $(seq 100); do
	wpids=$(worker_pids)
	[ "$(wc -w <<<"$wpids")" -eq "$workers" ] && break
	sleep 0.1
done
[ "$(wc -w <<<"$wpids")" -eq "$workers" ] ||
	{ echo "the bulkops workers did not start (pids: $wpids)" >&2; exit 1; }
wpid=${wpids%% *}
log "bulkops worker pids $wpids"

# Peak RssAnon / RssShmem of any one worker, sampled every 0.1 s (VmHWM has
# no split).
sampler() {
	local anon=0 shmem=0 k v p
	while [ -r "/proc/$wpid/status" ]; do
		for p in $wpids; do
			while read -r k v _; do
				case $k in
					RssAnon:) [ "$v" -gt "$anon" ] && anon=$v ;;
					RssShmem:) [ "$v" -gt "$shmem" ] && shmem=$v ;;
				esac
			done <"/proc/$p/status"
		done
		printf '%s %s\n' "$anon" "$shmem" >"$data/rss.tmp" && mv "$data/rss.tmp" "$data/rss"
		sleep 0.1
	done
}
sampler &
sampler_pid=$!

jobopts="{\"batch_size\": $batch_size}"
deadline="$(( rows / 1000 + 600 )) seconds"

# Untimed housekeeping between measurements, so that neither autovacuum nor a
# checkpoint lands inside one.
settle() {
	sql <<'SQL'
SELECT 'VACUUM (ANALYZE) ' || string_agg(c.oid::regclass::text, ', ')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'bulkops' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \gexec
CHECKPOINT;
SQL
}
db_size() { sql -c "SELECT pg_database_size(current_database())"; }

baseline() {
	sql <<'SQL'
SELECT pg_backend_pid() AS bpid \gset
\set c0 `awk '{print $14 + $15}' /proc/:bpid/stat`
SELECT clock_timestamp() AS t0 \gset
COPY (SELECT row_to_json(t) FROM t) TO '/dev/null';
SELECT clock_timestamp() AS t1 \gset
\set c1 `awk '{print $14 + $15}' /proc/:bpid/stat`
SELECT extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz), :c1 - :c0;
SQL
}

# The same for CSV, the wire format of the CSV dialects.
baseline_csv() {
	sql <<'SQL'
SELECT pg_backend_pid() AS bpid \gset
\set c0 `awk '{print $14 + $15}' /proc/:bpid/stat`
SELECT clock_timestamp() AS t0 \gset
COPY (SELECT * FROM t) TO '/dev/null' (FORMAT csv, HEADER);
SELECT clock_timestamp() AS t1 \gset
\set c1 `awk '{print $14 + $15}' /proc/:bpid/stat`
SELECT extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz), :c1 - :c0;
SQL
}

# One bulk_upsert in its own transaction.  Prints
# job|start|seconds until COMMIT returned|seconds in bulk_upsert()|backend CPU ticks|backend pid|
# WAL position before|after
enqueue() {
	sql -v jobopts="$jobopts" -v src="${1:-t}" <<'SQL'
SELECT pg_backend_pid() AS bpid \gset
\set c0 `awk '{print $14 + $15}' /proc/:bpid/stat`
SELECT pg_current_wal_insert_lsn() AS l0 \gset
SELECT clock_timestamp() AS t0 \gset
BEGIN;
SELECT bulkops.bulk_upsert('bench', :'src', key => 'id', options => :'jobopts') AS job \gset
SELECT clock_timestamp() AS tf \gset
COMMIT;
SELECT clock_timestamp() AS t1 \gset
\set c1 `awk '{print $14 + $15}' /proc/:bpid/stat`
SELECT :job, :'t0', extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz),
       extract(epoch FROM :'tf'::timestamptz - :'t0'::timestamptz), :c1 - :c0, :bpid,
       :'l0', pg_current_wal_insert_lsn();
SQL
}

# Seconds from start until job was seen final.
wait_job() {
	sql -v job="$1" -v t0="$2" -v deadline="$deadline" <<<"
		SELECT extract(epoch FROM bench_wait(:job, :'deadline') - :'t0'::timestamptz)"
}

# job|state|rows_total|rows_succeeded|receipts|receipts succeeded|receipts keyed to t|body bytes|batches
verify_job() {
	sql -v job="$1" -v src="${2:-t}" <<'SQL'
SELECT j.id, j.state, j.rows_total, j.rows_succeeded,
       r.n, r.ok, r.keyed, j.bytes_total, b.n
FROM bulkops.jobs j,
     LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE status = 'succeeded') AS ok,
                     count(s.id) AS keyed
              FROM bulkops.receipts rc LEFT JOIN :"src" s ON rc.key = s.id::text
              WHERE rc.job_id = j.id) r,
     LATERAL (SELECT count(*) AS n FROM bulkops.batches WHERE job_id = j.id) b
WHERE j.id = :job;
SQL
}

record_job() {		# key job [source table]
	local id state total ok n nok keyed bytes nb
	IFS='|' read -r id state total ok n nok keyed bytes nb <<<"$(verify_job "$2" "${3:-t}")"
	put "$1.state" "$state"
	put "$1.rows_total" "$total"
	put "$1.receipts" "$n"
	put "$1.receipts_succeeded" "$nok"
	put "$1.receipts_keyed" "$keyed"
	put "$1.bytes" "$bytes"
	put "$1.batches" "$nb"
	log "  job $id: $state, $n receipts ($nok succeeded, $keyed keyed to t), $nb batches, $bytes bytes"
}

[ "$statements" = 1 ] &&
	sql -c "CREATE EXTENSION pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
for r in $(seq "$runs"); do
	settle
	log "round $r: baseline"
	o0=$(others_ticks); r0=$(( $(date +%s%N) / 1000000 ))
	IFS='|' read -r secs ticks <<<"$(baseline)"
	put "baseline_s.$r" "$secs"
	put "baseline_cpu_s.$r" "$(secs "$ticks")"
	if [ "$csv_baseline" = 1 ]; then
		IFS='|' read -r secs ticks <<<"$(baseline_csv)"
		put "csv_baseline_s.$r" "$secs"
		put "csv_baseline_cpu_s.$r" "$(secs "$ticks")"
	fi

	settle
	put "db_bytes_before.$r" "$(db_size)"
	log "round $r: enqueue"
	w0=$(cpu_ticks $wpids); m0=$(cpu_ticks "$MOCK_PID")
	IFS='|' read -r job t0 secs fsecs ticks bpid l0 l1 <<<"$(enqueue)"
	put "enqueue_s.$r" "$secs"
	put "enqueue_fn_s.$r" "$fsecs"
	put "enqueue_cpu_s.$r" "$(secs "$ticks")"
	log "round $r: job $job enqueued in ${secs}s by backend pid $bpid, waiting"
	e2e=$(wait_job "$job" "$t0")
	IFS='|' read -r wal_enq wal_worker <<<"$(sql -v l0="$l0" -v l1="$l1" <<<"
		SELECT pg_wal_lsn_diff(:'l1', :'l0'), pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'l1')")"
	put "wal_enqueue_bytes.$r" "$wal_enq"
	put "wal_worker_bytes.$r" "$wal_worker"
	w1=$(cpu_ticks $wpids); m1=$(cpu_ticks "$MOCK_PID")
	put "e2e_s.$r" "$e2e"
	put "worker_cpu_s.$r" "$(secs $((w1 - w0)))"
	put "mock_cpu_s.$r" "$(secs $((m1 - m0)))"
	put "others_cpu_s.$r" "$(secs $(( $(others_ticks) - o0 )))"
	put "round_s.$r" "$(( $(date +%s%N) / 1000000 - r0 ))e-3"
	log "round $r: end to end ${e2e}s"
	record_job "job.$r" "$job"
	settle
	put "db_bytes_after.$r" "$(db_size)"
	last_job=$job
done

# ---- joining a job's receipts to the source by key ----
# The receipts of the last round's job against a plain table holding the
# same (job_id, key) pairs, indexed as a user would, each join run three
# times (medians), with every round's receipts in the history.
if [ "$join" = 1 ]; then
	log "join: receipts of job $last_job to t by key, and the same on a plain table"
	sql -v job="$last_job" <<'SQL'
CREATE TABLE plain_receipts AS
    SELECT job_id, key FROM bulkops.receipts WHERE job_id = :job;
CREATE INDEX ON plain_receipts (job_id, key);
VACUUM (ANALYZE) plain_receipts;
SQL
	for i in 1 2 3; do
		for rel in bulkops.receipts plain_receipts; do
			ms=$(sql -v job="$last_job" -v rel="$rel" <<'SQL'
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) AS n FROM t JOIN :rel r ON r.key = t.id::text AND r.job_id = :job \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000, 1), :n;
SQL
)
			IFS='|' read -r ms n <<<"$ms"
			[ "$n" = "$rows" ] || { echo "the join on $rel counted $n rows, not $rows" >&2; exit 1; }
			put "join_ms.${rel#bulkops.}.$i" "$ms"
		done
	done
	put join_plan "$(sql -v job="$last_job" -c "EXPLAIN (COSTS OFF) SELECT count(*) FROM t
		JOIN bulkops.receipts r ON r.key = t.id::text AND r.job_id = $last_job" | tr '\n' ';')"
fi

# ---- a larger job: does the cost per row hold? ----
if [ "$scale_rows" -gt 0 ]; then
	log "scale: creating t_scale with $scale_rows rows"
	sql -v n="$scale_rows" <<'SQL'
CREATE TABLE t_scale AS SELECT * FROM bench_rows(:n);
ALTER TABLE t_scale ADD PRIMARY KEY (id);
VACUUM (ANALYZE) t_scale;
SELECT pg_prewarm('t_scale') \gset
SQL
	settle
	log "scale: one job of $scale_rows rows"
	IFS='|' read -r job t0 secs _ _ _ l0 l1 <<<"$(enqueue t_scale)"
	put scale_rows "$scale_rows"
	put scale_enqueue_s "$secs"
	put scale_e2e_s "$(wait_job "$job" "$t0")"
	put scale_wal_worker_bytes "$(sql -v l1="$l1" -c "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$l1')")"
	record_job "job.scale" "$job" t_scale
fi

if [ "$contended" = 1 ]; then
	settle
	log "contended: two jobs back to back, the second enqueued while the worker sends the first"
	IFS='|' read -r jobx tx _ _ _ _ _ _ <<<"$(enqueue)"
	IFS='|' read -r joby _ secs _ ticks _ _ _ <<<"$(enqueue)"
	put "contended_enqueue_s" "$secs"
	put "contended_enqueue_cpu_s" "$(secs "$ticks")"
	wait_job "$jobx" "$tx" >/dev/null
	put "contended_e2e_s" "$(wait_job "$joby" "$tx")"
	record_job "job.cx" "$jobx"
	record_job "job.cy" "$joby"
fi

# ---- a sync of t ----
# Prints job (0: none)|seconds until COMMIT returned|backend CPU ticks|start
run_sync_timed() {
	sql 2>/dev/null <<'SQL'
SELECT pg_backend_pid() AS bpid \gset
\set c0 `awk '{print $14 + $15}' /proc/:bpid/stat`
SELECT clock_timestamp() AS t0 \gset
BEGIN;
SELECT coalesce(bulkops.run_sync('bench_sync'), 0) AS job \gset
COMMIT;
SELECT clock_timestamp() AS t1 \gset
\set c1 `awk '{print $14 + $15}' /proc/:bpid/stat`
SELECT :job, extract(epoch FROM :'t1'::timestamptz - :'t0'::timestamptz), :c1 - :c0, :'t0';
SQL
}

sync_step() {		# name: time one run, wait for its job, record its rows
	local job secs ticks t0 total=0
	settle
	IFS='|' read -r job secs ticks t0 <<<"$(run_sync_timed)"
	put "sync_$1_s" "$secs"
	put "sync_$1_cpu_s" "$(secs "$ticks")"
	if [ "$job" != 0 ]; then
		wait_job "$job" "$t0" >/dev/null
		total=$(sql -c "SELECT rows_total FROM bulkops.jobs WHERE id = $job")
		record_job "job.sync_$1" "$job"
		sync_sent=$(( sync_sent + total ))
	fi
	put "sync_$1_rows" "$total"
	log "sync: $1: run_sync ${secs}s, $total rows enqueued"
}

sync_sent=0
if [ "$sync" = 1 ]; then
	log "sync: of t, in mode upsert"
	sql -v jobopts="$jobopts" <<'SQL' >/dev/null
SELECT bulkops.create_sync('bench_sync', 'bench', 't', 'id', 'upsert', :'jobopts');
SQL
	sync_step all
	sync_step fold
	sync_step none
	put sync_state "$(sql <<'SQL'
SELECT pg_total_relation_size('bulkops.sync_state'),
       (SELECT sum(cardinality(keys)) FROM bulkops.sync_state),
       (SELECT sum(octet_length(k)) FROM bulkops.sync_state, unnest(keys) AS k)
SQL
)"
	sql <<'SQL' >/dev/null
UPDATE t SET score = score + 1 WHERE id % 100 = 0;
VACUUM (ANALYZE) t;
SELECT pg_prewarm('t');
SQL
	log "sync: 1% of t changed; baseline again"
	IFS='|' read -r secs _ <<<"$(baseline)"
	put sync_baseline_s "$secs"
	sync_step one
	put sync_one_expected "$(sql -c "SELECT count(*) FROM t WHERE id % 100 = 0")"
fi
put sync_sent_rows "$sync_sent"

# ---- after the runs ----
[ "$(worker_pids)" = "$wpids" ] || put worker_restarted 1
put vmhwm_kb "$(cat $(printf '/proc/%s/status ' $wpids) | awk '/^VmHWM:/ && $2 > m {m = $2} END {print m}')"
put vmrss_kb "$(cat $(printf '/proc/%s/status ' $wpids) | awk '/^VmRSS:/ && $2 > m {m = $2} END {print m}')"
kill "$sampler_pid" 2>/dev/null; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=
read -r anon shmem <"$data/rss"
put rss_anon_peak_kb "$anon"
put rss_shmem_peak_kb "$shmem"
put mock_operations "$(curl -s "$mock/_control/stats" | python3 -c \
	'import json, sys; print(json.load(sys.stdin)["'"$dialect"'"].get("operations", ""))' || true)"
# ---- the queue: fairness, and claim latency under a deep queue ----
# After the worker's memory and the mock's counts are taken: none of this
# counts there.
if [ "$queue" = 1 ]; then
	# One job of $2 (a source) through target $1 in its own transaction.
	# Prints job|the time COMMIT returned.
	enqueue_at() {
		sql -v target="$1" -v src="$2" <<'SQL'
BEGIN;
SELECT bulkops.bulk_upsert(:'target', :'src', key => 'id') AS job \gset
COMMIT;
SELECT :job, clock_timestamp();
SQL
	}
	# Seconds from $2 until job $1 finished (its finished_at), once final.
	finished_after() {
		sql -v job="$1" -v t0="$2" -v deadline="$deadline" <<'SQL'
SELECT bench_wait(:job, :'deadline') IS NULL AS x \gset
SELECT round(extract(epoch FROM finished_at - :'t0'::timestamptz)::numeric, 4)
FROM bulkops.jobs WHERE id = :job;
SQL
	}

	sql <<'SQL'
-- Wait until query q says true, polled every 10 ms.
CREATE FUNCTION bench_until(q text, deadline interval DEFAULT '10 min') RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
    give_up timestamptz := clock_timestamp() + deadline;
BEGIN
    LOOP
        EXECUTE q INTO ok;
        EXIT WHEN ok;
        IF clock_timestamp() > give_up THEN
            RAISE EXCEPTION 'no true after %: %', deadline, q;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
-- Copy the rows of rel that "FROM rel s <from_where>" gives, each column
-- as it is in s, or as overrides' expression for it (one for a column rel
-- does not have is left out): whatever columns bulkops' tables have.
CREATE FUNCTION bench_copy(rel regclass, from_where text, overrides jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cols text;
    exprs text;
    n bigint;
BEGIN
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum),
           string_agg(coalesce(overrides ->> attname, 's.' || quote_ident(attname)), ', '
                      ORDER BY attnum)
    INTO cols, exprs
    FROM pg_attribute
    WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped AND attgenerated = '';
    EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s s %s', rel, cols, exprs, rel,
                   from_where);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
SQL
	settle
	log "fairness: a 100-row job alone, then behind a job of $rows rows on the same target"
	IFS='|' read -r job t0 <<<"$(enqueue_at bench 'SELECT * FROM t WHERE id <= 100')"
	put fair_small_alone_s "$(finished_after "$job" "$t0")"
	IFS='|' read -r big tb <<<"$(enqueue_at bench t)"
	# under way: its first batch done
	sql -v job="$big" <<<"SELECT bench_until(format(
		'SELECT batches_done > 0 FROM bulkops.jobs WHERE id = %s', :job))" >/dev/null
	IFS='|' read -r job t0 <<<"$(enqueue_at bench 'SELECT * FROM t WHERE id <= 100')"
	put fair_small_behind_s "$(finished_after "$job" "$t0")"
	put fair_big_after_small_s "$(sql -v big="$big" -v small="$job" -v deadline="$deadline" <<'SQL'
SELECT bench_wait(:big, :'deadline') IS NULL AS x \gset
SELECT round(extract(epoch FROM b.finished_at - s.finished_at)::numeric, 2)
FROM bulkops.jobs b, bulkops.jobs s WHERE b.id = :big AND s.id = :small;
SQL
)"
	put fair_big_e2e_s "$(finished_after "$big" "$tb")"

	# The deep queue's target: one slot, held by a request the mock never
	# answers (for an hour, longer than the benchmark).
	dialect_target "$mock" deep
	deep_path=$(python3 -c 'import re, sys, urllib.parse as u; print("^" + re.escape(u.urlsplit(sys.argv[1]).path))' "$target_url")
	curl -s -X DELETE "$mock/_control/faults" >/dev/null
	curl -s -X POST -H 'Content-Type: application/json' "$mock/_control/faults" \
		-d "{\"rules\": [{\"action\": \"delay\", \"path\": \"$deep_path\", \"seconds\": 3600, \"times\": -1}]}" >/dev/null
	deep_opts="{${target_options:+$target_options, }\"concurrency\": 1, \"http_timeout\": 3600}"
	sql -v url="$target_url" -v resource="$target_resource" -v auth="$target_auth" \
		-v dialect="$dialect" -v topts="$deep_opts" <<'SQL'
SELECT bulkops.create_target('deep', :'dialect', :'url', resource => :'resource',
                             auth => nullif(:'auth', '')::jsonb, options => :'topts') \gset
SQL
	dialect_target "$mock" probe
	sql -v url="$target_url" -v resource="$target_resource" -v auth="$target_auth" \
		-v dialect="$dialect" -v topts="{${target_options:+$target_options, }\"batch_size\": 1000}" <<'SQL'
SELECT bulkops.create_target('probe', :'dialect', :'url', resource => :'resource',
                             auth => nullif(:'auth', '')::jsonb, options => :'topts') \gset
SQL
	IFS='|' read -r deep_job _ <<<"$(enqueue_at deep 'SELECT * FROM t WHERE id = 1')"
	sql -v job="$deep_job" <<<"SELECT bench_until(format(
		'SELECT EXISTS (SELECT FROM bulkops.batches WHERE job_id = %s AND state = ''active'')',
		:job))" >/dev/null
	# A job of 1,000 rows: its done batch is the history's template.
	IFS='|' read -r hist_job t0 <<<"$(enqueue_at probe 'SELECT * FROM t WHERE id <= 1000')"
	finished_after "$hist_job" "$t0" >/dev/null

	# n more queued jobs on target deep, copies of the first (its batch as
	# it was queued), written directly.
	add_queued() {
		sql -v job="$deep_job" -v n="$1" <<'SQL'
SELECT nextval('bulkops.jobs_id_seq') AS first \gset
SELECT setval('bulkops.jobs_id_seq', :first + :n - 1) \gset
SELECT bench_copy('bulkops.jobs', format('CROSS JOIN generate_series(0, %s) g WHERE s.id = %s',
                                         :n - 1, :job),
                  jsonb_build_object('id', format('%s + g', :first), 'state', '''queued''',
                                     'started_at', 'NULL', 'last_claim_at', 'NULL')) \gset
SELECT bench_copy('bulkops.batches', format('CROSS JOIN generate_series(0, %s) g WHERE s.job_id = %s',
                                            :n - 1, :job),
                  jsonb_build_object('job_id', format('%s + g', :first), 'state', '''queued''',
                                     'lane', 'NULL', 'attempts', '0',
                                     'maybe_applied', 'false')) \gset
SQL
	}
	# A history of n done batches of the template's 1,000 rows, 100 per job.
	add_history() {
		sql -v job="$hist_job" -v n="$1" <<'SQL'
SELECT nextval('bulkops.jobs_id_seq') AS first, ceil(:n / 100.0)::int AS jobs \gset
SELECT setval('bulkops.jobs_id_seq', :first + :jobs - 1) \gset
SELECT bench_copy('bulkops.jobs', format('CROSS JOIN generate_series(0, %s) g WHERE s.id = %s',
                                         :jobs - 1, :job),
                  jsonb_build_object('id', format('%s + g', :first),
                                     'rows_total', '100 * s.rows_total',
                                     'rows_succeeded', '100 * s.rows_succeeded',
                                     'batches_total', '100', 'batches_done', '100')) \gset
SELECT bench_copy('bulkops.batches', format('CROSS JOIN generate_series(0, %s) g WHERE s.job_id = %s',
                                            :n - 1, :job),
                  jsonb_build_object('job_id', format('%s + g / 100', :first),
                                     'batch_no', 'g % 100 + 1',
                                     'first_row', '(g % 100) * s.row_count + 1')) \gset
SQL
	}
	# Median seconds from COMMIT to finished_at of 20 probes of 1 row.
	probe() {
		local i out=()
		for i in $(seq 20); do
			IFS='|' read -r job t0 <<<"$(enqueue_at probe 'SELECT * FROM t WHERE id = 1')"
			out+=("$(finished_after "$job" "$t0")")
		done
		printf '%s\n' "${out[@]}" | sort -g | awk '{v[NR] = $1} END {print (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2}'
	}
	queue_case() {		# label
		settle
		put "queue.$1.jobs" "$(sql -c "SELECT count(*) FROM bulkops.jobs WHERE state IN ('queued', 'running')")"
		put "queue.$1.history_rows" "$(sql -c "SELECT coalesce(sum(row_count), 0) FROM bulkops.batches WHERE state = 'done'")"
		put "queue.$1.probe_s" "$(probe)"
		log "  $1: probe median $(tail -1 "$results" | cut -f2) s"
	}

	log "claim latency: 10 queued jobs, no history"
	add_queued 9
	queue_case 1
	k=1
	added=0
	for h in ${history//,/ }; do
		k=$((k + 1))
		log "claim latency: 10 queued jobs, a history of $h batches"
		[ "$h" -gt "$added" ] && add_history $((h - added))
		added=$h
		queue_case "$k"
	done
	k=$((k + 1))
	log "claim latency: $queue_jobs queued jobs, the same history"
	add_queued $((queue_jobs - 10))
	queue_case "$k"
	put queue.cases "$k"
fi

put checkpoints_timed_or_requested "$(grep -c 'checkpoint starting: \(time\|wal\)' "$data/server.log" || true)"
put settings "$(IFS=';'; echo "${settings[*]}")"
put config "dialect=$dialect batch_size=$batch_size concurrency=${concurrency:-default} workers=$workers runs=$runs"
put ncpu "$(nproc)"
put machine "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo), PostgreSQL $(sql -c 'SHOW server_version')"

status=0
python3 "$top/test/bench/report.py" "$results" || status=$?
if [ "$statements" = 1 ]; then
	echo
	echo "Top statements by total time (pg_stat_statements, track = all, all rounds):"
	sql -P format=aligned -P footer=off -c "
		SELECT calls, round(total_exec_time::numeric / 1000, 2) AS total_s,
		       round(mean_exec_time::numeric, 2) AS mean_ms, rows,
		       left(regexp_replace(query, '\s+', ' ', 'g'), 90) AS query
		FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15"
fi
if [ "$hold" = 1 ]; then
	echo
	echo "holding (--hold): psql -h $data -p $port -U postgres; mock $mock (pid $MOCK_PID);"
	echo "bulkops worker pids $wpids; interrupt this script (pid $$) to stop and clean up"
	sleep infinity &
	hold_pid=$!
	wait "$hold_pid" || true
fi
exit $status
