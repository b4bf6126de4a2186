#!/usr/bin/env bash
# Runs every bulkops test: the mock server's own tests, the pg_regress suites
# (sql/, expected/) and the TAP suites (test/t/).  Run as root on a fresh
# machine, it first installs the packages, builds and installs bulkops, then
# runs the tests as an unprivileged user.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/test/lib.sh"
bulkops_root_prelude "$top" test/run-tests.sh "$@"

cd "$top"
export PATH="$BULKOPS_PGBIN:$PATH"
passed=0 failed=0
step() {
	local name=$1
	shift
	echo "=== $name"
	if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "=== $name FAILED"; fi
}

step "mock server tests" python3 -m unittest -q test/mock/test_mock_api.py

bulkops_start_mock "$top" || exit 1
trap 'kill $MOCK_PID 2>/dev/null' EXIT

regress() {
	make -s installcheck-regress-only || { cat regression.diffs 2>/dev/null | head -300; return 1; }
}
step "pg_regress suites" regress
step "TAP suites" make -s prove-only

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
