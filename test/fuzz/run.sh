#!/usr/bin/env bash
# Fuzzes every registered dialect's answer handling with libFuzzer, for a
# bounded time each, inside a throwaway single-user PostgreSQL backend (the
# harness is test/fuzz/fuzz_dialects.c; its header describes the input
# format and what counts as a finding).  Not part of test/run-tests.sh or CI.
#
#   test/fuzz/run.sh [--seconds N] [--replay] [dialect ...]
#
#   --seconds N   fuzzing time per dialect (default 60)
#   --replay      only run every input of test/fuzz/corpus/ once
#   dialect ...   only these (default: every dialect the library registers)
#   BULKOPS_FUZZ_FLAGS   more libFuzzer flags, e.g. -print_coverage=1 or -seed=1
#
# Seeds are test/fuzz/corpus/<dialect>/ (test/fuzz/make_seeds.py writes them
# from the mock's answers), words for mutations test/fuzz/<dialect>.dict if
# there is one, and what a valid target needs (resource, options) comes from
# the dialect's mock module: TESTS["fuzz"] over TESTS["target"] in
# test/mock/<dialect>.py (mock_api.py --describe); without one, resource
# "Contact" and no options, and a line says so.  A dialect whose answers
# depend on its options (http_json) may name more targets there
# (TESTS["fuzz"]["variants"]): each variant V is fuzzed after it as
# <dialect>.V, from the seeds in test/fuzz/corpus/<dialect>.V/.
# Run as root, it installs clang-14 and libFuzzer's runtime (Debian packages)
# and runs as an unprivileged user; otherwise it needs them installed.
# Nothing is installed into PostgreSQL: the fuzzing build is loaded by path.
# Prints one line per dialect (runs, coverage, time) and fails if an input
# crashed, tripped AddressSanitizer or broke the dialect contract.  The logs,
# the inputs that found something and the corpus grown during the run stay
# in the directory printed at the start (BULKOPS_FUZZ_OUT to choose it).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/test/lib.sh"
if [ "$(id -u)" -eq 0 ]; then
	"$top/test/install-deps.sh" clang-14 libclang-rt-14-dev || exit 1
fi
bulkops_root_prelude "$top" test/fuzz/run.sh "$@"

seconds=60 replay=0 only=()
while [ $# -gt 0 ]; do
	case "$1" in
		--seconds) seconds=$2; shift 2 ;;
		--replay) replay=1; shift ;;
		-*) echo "usage: $0 [--seconds N] [--replay] [dialect ...]" >&2; exit 2 ;;
		*) only+=("$1"); shift ;;
	esac
done

export PATH="$BULKOPS_PGBIN:$PATH"
clang=${CLANG:-clang-14}
out=${BULKOPS_FUZZ_OUT:-$(mktemp -d /tmp/bulkops-fuzz.XXXXXX)}
mkdir -p "$out"
echo "fuzzing output in $out"

echo "=== building the fuzzing harness with $clang"
build=$out/build
rm -rf "$build" && mkdir -p "$build/test"
cp -a "$top/Makefile" "$top/bulkops.control" "$top"/*.sql "$top/src" "$build/"
cp -a "$top/test/fuzz" "$build/test/"
make -C "$build" -s clean >/dev/null
if ! make -C "$build" -s -j2 FUZZ=1 CC="$clang" with_llvm=no \
	CFLAGS="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address -Wno-ignored-attributes" \
	FUZZ_LIBS="$($clang -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a) -lstdc++ -Wl,-Bsymbolic" \
	>"$out/build.log" 2>&1; then
	cat "$out/build.log"
	exit 1
fi
"$clang" -shared -fPIC -o "$out/asan_preload.so" "$top/test/asan_preload.c" || exit 1
so=$build/bulkops.so

rm -rf "$out/data"
initdb -D "$out/data" -A trust -E UTF8 --no-locale >"$out/initdb.log" 2>&1 || { cat "$out/initdb.log"; exit 1; }

# A single-user backend reading commands from stdin, for at most $1 seconds:
# one per dialect, since libFuzzer ends the process when it is done.
backend() {
	timeout "$1" env \
		LD_PRELOAD="$($clang -print-file-name=libclang_rt.asan-x86_64.so) $out/asan_preload.so" \
		ASAN_OPTIONS=detect_leaks=0:quarantine_size_mb=64 \
		postgres --single -D "$out/data" -c log_min_messages=error \
		-c client_min_messages=error postgres
}
create_functions="CREATE OR REPLACE FUNCTION bulkops_fuzz_dialects() RETURNS SETOF text AS '$so', 'bulkops_fuzz_dialects' LANGUAGE C
CREATE OR REPLACE FUNCTION bulkops_fuzz(text, jsonb, text[]) RETURNS integer AS '$so', 'bulkops_fuzz' LANGUAGE C"

if [ ${#only[@]} -eq 0 ]; then
	mapfile -t only < <(printf '%s\nSELECT * FROM bulkops_fuzz_dialects()\n' "$create_functions" |
		backend 120 2>"$out/dialects.log" | sed -n 's/^[[:space:]]*1: .* = "\(.*\)"[[:space:]].*/\1/p')
	[ ${#only[@]} -gt 0 ] || { echo "no dialects found"; cat "$out/dialects.log"; exit 1; }
fi

# what a valid target of each dialect needs, as its mock module describes it:
# a line "<name> <target>" for the dialect and one for each of its variants
describe=$(python3 "$top/test/mock/mock_api.py" --describe) || exit 1
fuzz_targets() {
	python3 -c '
import json, sys
d = json.load(sys.stdin).get(sys.argv[1])
if d is None:
    print("%s: no mock module test/mock/%s.py: resource Contact, no options"
          % (sys.argv[1], sys.argv[1]), file=sys.stderr)
    print(sys.argv[1], "{}")
else:
    f = d["fuzz"]
    for name, t in [(sys.argv[1], f)] + [(sys.argv[1] + "." + v, t)
                                         for v, t in sorted(f["variants"].items())]:
        print(name, json.dumps({"resource": t["resource"].replace("{name}", "fuzz"),
                                "options": t["options"]}))
' "$1" <<<"$describe"
}

runs_list=()
for d in "${only[@]}"; do
	mapfile -t -O ${#runs_list[@]} runs_list < <(fuzz_targets "$d")
done

findings=0
for run in "${runs_list[@]}"; do
	d=${run%% *}			# the dialect, or <dialect>.<variant>
	dialect=${d%%.*}
	target=${run#* }
	seeds=$top/test/fuzz/corpus/$d
	work=$out/corpus/$d
	mkdir -p "$work"
	rm -f "$out/$d-"*		# what an earlier run into the same directory found
	args=("'$work'")
	[ -d "$seeds" ] && args+=("'$seeds'")
	[ -f "$top/test/fuzz/$dialect.dict" ] && args+=("'-dict=$top/test/fuzz/$dialect.dict'")
	args+=("'-artifact_prefix=$out/$d-'" "'-print_final_stats=1'" "'-detect_leaks=0'"
		"'-timeout=10'" "'-rss_limit_mb=2048'" "'-max_len=4096'")
	for f in ${BULKOPS_FUZZ_FLAGS:-}; do
		args+=("'$f'")
	done
	if [ $replay -eq 1 ]; then
		args+=("'-runs=0'")
	else
		args+=("'-max_total_time=$seconds'")
	fi
	echo "=== $d"
	# on one line for the backend
	target=${target//\'/\'\'}
	printf "%s\nSELECT bulkops_fuzz('%s', '%s', ARRAY[%s])\n" "$create_functions" "$dialect" \
		"$target" "$(IFS=,; echo "${args[*]}")" |
		backend $((seconds + 300)) >"$out/$d.out" 2>"$out/$d.log"
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$d.log")
	secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$out/$d.log")
	cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$out/$d.log" | tail -1)
	artifacts=$(ls "$out/$d-"* 2>/dev/null)
	if ! grep -q '^INFO: Seed:' "$out/$d.log"; then
		findings=$((findings + 1))
		grep -A3 'ERROR:  ' "$out/$d.log" | head -20
		echo "$d: could not start fuzzing (is TESTS[\"fuzz\"] in test/mock/$dialect.py, or its variant, a valid target?); log $out/$d.log"
	elif [ $rc -ne 0 ] || [ -z "$runs" ] || [ -n "$artifacts" ] ||
		grep -q 'ERROR: AddressSanitizer\|ERROR: libFuzzer\|broke the contract' "$out/$d.log"; then
		findings=$((findings + 1))
		grep -B2 -A30 'ERROR: AddressSanitizer\|ERROR: libFuzzer\|broke the contract\|ERROR:  ' "$out/$d.log" | head -60
		echo "$d: FINDING (exit $rc); log $out/$d.log; inputs: ${artifacts:-none}"
	else
		echo "$d: ${runs} runs in ${secs:-?} s, $cov inputs: ok"
	fi
done
echo "${#only[@]} dialects fuzzed (${#runs_list[@]} targets), $findings with findings or setup errors"
[ $findings -eq 0 ]
