#!/usr/bin/env bash
# Runs the whole test suite (test/run-tests.sh) against a bulkops built with
# AddressSanitizer, and fails if any process reported a memory error.  Not
# part of test/run-tests.sh or CI: it takes a few times longer.
#
#   sudo test/asan.sh
#
# As root, it builds bulkops with gcc -fsanitize=address in a scratch copy,
# installs that build into the PostgreSQL found on PATH, runs the suite as the
# unprivileged test user with libasan preloaded into every process the suite
# starts (the temporary servers inherit it), and reinstalls the normal build
# at the end, whatever happened.  Leak checking is off: PostgreSQL frees
# memory by resetting contexts, not chunk by chunk.  The reports land in the
# directory printed at the start; the last line says how many there were.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/test/lib.sh"
if [ "$(id -u)" -ne 0 ]; then
	echo "run test/asan.sh as root: it installs an instrumented build, then the normal one" >&2
	exit 2
fi
"$top/test/install-deps.sh" || exit 1
export PATH="$BULKOPS_PGBIN:$PATH"

out=$(mktemp -d /tmp/bulkops-asan.XXXXXX)
chmod 755 "$out"
echo "AddressSanitizer output in $out"

echo "=== building with -fsanitize=address"
build=$out/build
mkdir -p "$build"
cp -a "$top/Makefile" "$top/bulkops.control" "$top"/*.sql "$top/src" "$build/"
make -C "$build" -s clean >/dev/null
# the JIT bitcode is not needed and clang would not take every gcc flag
if ! make -C "$build" -s -j2 with_llvm=no \
	BULKOPS_CFLAGS="-Werror -fsanitize=address -fno-omit-frame-pointer" \
	>"$out/build.log" 2>&1; then
	cat "$out/build.log"
	exit 1
fi
gcc -shared -fPIC -o "$out/asan_preload.so" "$top/test/asan_preload.c" || exit 1

reinstall_normal() {
	echo "=== reinstalling the normal build"
	make -C "$top" -s -j2 BULKOPS_CFLAGS=-Werror >/dev/null && make -C "$top" -s install >/dev/null
}
trap reinstall_normal EXIT
make -C "$build" -s with_llvm=no install >/dev/null || exit 1

mkdir -p "$out/reports"
id -u "$BULKOPS_TEST_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$BULKOPS_TEST_USER"
chown "$BULKOPS_TEST_USER" "$out/reports"
BULKOPS_TEST_ENV=(
	"LD_PRELOAD=$(gcc -print-file-name=libasan.so) $out/asan_preload.so"
	"ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:log_path=$out/reports/asan"
)
echo "=== the suite, under AddressSanitizer"
bulkops_run_as_test_user "$top" test/run-tests.sh
rc=$?

reports=$(grep -l 'ERROR: AddressSanitizer' "$out/reports/"* 2>/dev/null)
for f in $reports; do
	echo "--- $f"
	head -40 "$f"
done
n=$(echo -n "$reports" | grep -c .)
echo "$n AddressSanitizer reports; the suite exited with status $rc"
[ "$n" -eq 0 ] && [ $rc -eq 0 ]
