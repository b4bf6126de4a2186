#!/usr/bin/env bash
# Runs every bulkops test: the mock server's own tests, the pg_regress suites
# (sql/, expected/), the TAP suites (test/t/), the crash matrices again with
# two workers per database for two dialects with remote tasks (about 1 min;
# BULKOPS_CRASH_DIALECTS widens it) and the load test (test/load.sh,
# about 30 s; BULKOPS_LOAD=0 skips it).  Run as root on a fresh
# machine, it first installs the packages, builds and installs bulkops, then
# runs the tests as an unprivileged user.  Ends with "N passed, N failed",
# counting individual tests across the three runners.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/test/lib.sh"
bulkops_root_prelude "$top" test/run-tests.sh "$@"

cd "$top"
export PATH="$BULKOPS_PGBIN:$PATH"
logs=$(mktemp -d /tmp/bulkops-tests.XXXXXX)
passed=0 failed=0

echo "=== mock server tests"
python3 -m unittest discover -s test/mock -p "test_*.py" >"$logs/mock" 2>&1
rc=$?
tail -3 "$logs/mock"
n=$(sed -n 's/^Ran \([0-9]*\) test.*/\1/p' "$logs/mock")
f=$(sed -n 's/.*FAILED (\(.*\)).*/\1/p' "$logs/mock" | grep -o '[0-9]\+' | awk '{s += $1} END {print s + 0}')
[ $rc -ne 0 ] && { cat "$logs/mock"; f=${f:-1}; }
passed=$((passed + ${n:-0} - ${f:-0})); failed=$((failed + ${f:-0}))

bulkops_start_mock "$top" || exit 1
trap 'kill $MOCK_PID 2>/dev/null; rm -rf "$logs"' EXIT

echo "=== pg_regress suites"
make -s installcheck-regress-only >"$logs/regress" 2>&1
rc=$?
grep -E '^(ok|not ok|test) |tests? (passed|failed)|^ +[0-9]+ of' "$logs/regress"
if [ $rc -ne 0 ]; then
	cat regression.diffs 2>/dev/null | head -300
	grep -q 'tests\? passed\|tests\? failed' "$logs/regress" || tail -20 "$logs/regress"
fi
total=$(grep -cE '^(ok|not ok|test) ' "$logs/regress")
bad=$(grep -cE '^not ok|\.\.\. FAILED' "$logs/regress")
[ $rc -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
passed=$((passed + total - bad)); failed=$((failed + bad))

# prove's summary counted into passed/failed; $1: its log
count_prove() {
	local rc=$? tests bad
	cat "$1"
	tests=$(sed -n 's/.*Tests=\([0-9]*\).*/\1/p' "$1" | tail -1)
	bad=$(grep -oE 'Failed [0-9]+/[0-9]+ subtests' "$1" | awk '{split($2, a, "/"); s += a[1]} END {print s + 0}')
	[ $rc -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
	passed=$((passed + ${tests:-0} - bad)); failed=$((failed + bad))
}

echo "=== TAP suites"
make -s prove-only PROVE_FLAGS=--timer >"$logs/tap" 2>&1
count_prove "$logs/tap"

echo "=== crash matrices with two workers per database"
# what a second worker changes (lanes, adoption, in-flight requests) is the
# same for every dialect: the ones whose batches go through remote tasks
BULKOPS_CRASH_WORKERS=2 BULKOPS_CRASH_DIALECTS="${BULKOPS_CRASH_DIALECTS:-clinia salesforce}" \
	make -s prove-only PROVE_FLAGS=--timer \
	PROVE_TESTS="test/t/010_crash_points.pl test/t/012_crash_server.pl" >"$logs/tap2" 2>&1
count_prove "$logs/tap2"

if [ "${BULKOPS_LOAD:-1}" != 0 ]; then
	echo "=== load (test/load.sh; BULKOPS_LOAD=0 skips it)"
	test/load.sh >"$logs/load" 2>&1
	rc=$?
	cat "$logs/load"
	ok=$(grep -c '^ok: ' "$logs/load")
	bad=$(grep -c '^FAILED: ' "$logs/load")
	[ $rc -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
	passed=$((passed + ok)); failed=$((failed + bad))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
