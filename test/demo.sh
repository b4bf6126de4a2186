#!/usr/bin/env bash
# The embedded default: a throwaway PostgreSQL cluster with bulkops preloaded and
# the bundled mock API server, a sample table pushed through the clinia dialect,
# and its receipts shown.  Run as root on a fresh machine, it first installs the
# packages and builds and installs bulkops.  Leaves nothing running.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/test/lib.sh"
bulkops_root_prelude "$top" test/demo.sh "$@"

export PATH="$BULKOPS_PGBIN:$PATH"
rows=${DEMO_ROWS:-10000}
data=$(mktemp -d /tmp/bulkops-demo.XXXXXX)
cleanup() {
	pg_ctl -D "$data/pg" -m immediate stop >/dev/null 2>&1 || true
	[ -n "${MOCK_PID:-}" ] && kill "$MOCK_PID" 2>/dev/null
	rm -rf "$data"
}
trap cleanup EXIT; [ -n "${KEEP_LOG:-}" ] && trap "cat $data/server.log; cleanup" EXIT

bulkops_start_mock "$top"
echo "mock API server on 127.0.0.1:$MOCK_PORT"

initdb -D "$data/pg" -A trust -U postgres >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >>"$data/pg/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$data'
shared_preload_libraries = 'bulkops'
bulkops.database_name = 'postgres'
CONF
pg_ctl -D "$data/pg" -l "$data/server.log" -w start >/dev/null
echo "PostgreSQL on port $port (socket in $data)"

psql -X -q -h "$data" -p "$port" -U postgres -v ON_ERROR_STOP=1 \
	-v mock="http://127.0.0.1:$MOCK_PORT" -v rows="$rows" <<'SQL'
CREATE EXTENSION bulkops;

-- a sample of "customer" rows; every 50th has data the remote side refuses
CREATE TABLE customers AS
SELECT i AS id, 'Customer ' || i AS name, 'c' || i || '@example.com' AS email,
       (i * 7.25)::numeric(12,2) AS balance, i % 3 = 0 AS active,
       now() - i * interval '1 hour' AS updated_at,
       jsonb_build_object('tier', i % 4) AS attributes,
       CASE WHEN i % 50 = 0 THEN 'email is not deliverable' END AS _fail
FROM generate_series(1, :rows) AS i;

SELECT bulkops.create_target('demo', 'clinia', :'mock' || '/clinia/sources/demo/v1',
                             resource => 'Customer',
                             auth => '{"type": "header", "name": "X-Clinia-API-Key", "value": "demo-key"}',
                             options => '{"batch_size": 1000, "concurrency": 4}');

\echo
\echo '== push the table, wait for the outcome'
SELECT bulkops.bulk_upsert('demo', 'customers', key => 'id') AS job \gset
SELECT bulkops.wait(:job);

\echo
\echo '== the job'
SELECT id, target, operation, state, rows_total, rows_succeeded, rows_failed,
       finished_at - started_at AS took
FROM bulkops.jobs WHERE id = :job;

\echo '== receipts by status'
SELECT status, count(*) FROM bulkops.receipts WHERE job_id = :job GROUP BY 1 ORDER BY 1;

\echo '== receipts joined back to the source (first failures)'
SELECT c.id, c.name, r.status, r.error_code, r.error_message
FROM customers c JOIN bulkops.receipts r ON r.job_id = :job AND r.key = c.id::text
WHERE r.status <> 'succeeded' ORDER BY c.id LIMIT 5;
SQL
echo
echo "demo finished: the cluster and the mock server are stopped and removed"
