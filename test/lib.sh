# Shared by test/run-tests.sh and test/demo.sh: privileges, the build, the mock.
# Sourced, not run.

BULKOPS_PGBIN=${BULKOPS_PGBIN:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
BULKOPS_TEST_USER=${BULKOPS_TEST_USER:-bulkops_test}

# As root: install packages, build and install the extension, and re-run the
# calling script as an unprivileged user (initdb refuses root).
bulkops_root_prelude() {
	local top=$1 script=$2
	shift 2
	[ "$(id -u)" -eq 0 ] || return 0
	"$top/test/install-deps.sh"
	make -C "$top" -s -j2 BULKOPS_CFLAGS=-Werror >/dev/null
	make -C "$top" -s install >/dev/null
	# the caller may run under set -e: keep the status
	local rc=0
	bulkops_run_as_test_user "$top" "$script" "$@" || rc=$?
	exit $rc
}

# As root: run "$top/$script" as the unprivileged test user on a private copy
# of the tree that user may write to, and return its status.  NAME=value words
# in the array BULKOPS_TEST_ENV go into its environment.
bulkops_run_as_test_user() {
	local top=$1 script=$2 copy rc=0
	shift 2
	id -u "$BULKOPS_TEST_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$BULKOPS_TEST_USER"
	copy=$(mktemp -d /tmp/bulkops.XXXXXX)
	cp -a "$top/." "$copy/"
	chown -R "$BULKOPS_TEST_USER" "$copy"
	(cd / && runuser -u "$BULKOPS_TEST_USER" -- env BULKOPS_INSTALLED=1 \
		${BULKOPS_TEST_ENV[@]+"${BULKOPS_TEST_ENV[@]}"} "$copy/$script" "$@") || rc=$?
	rm -rf "$copy"
	return $rc
}

# Start the mock API server on a free port; sets MOCK_PORT and MOCK_PID.
bulkops_start_mock() {
	local top=$1 fifo line
	shift
	fifo=$(mktemp -u /tmp/bulkops-mock.XXXXXX)
	mkfifo "$fifo"
	python3 "$top/test/mock/mock_api.py" --port 0 --quiet "$@" >"$fifo" &
	MOCK_PID=$!
	read -r -t 10 line <"$fifo" || true
	rm -f "$fifo"
	MOCK_PORT=${line##*:}
	case "$MOCK_PORT" in
		''|*[!0-9]*) echo "mock API server did not start: '$line'" >&2; return 1 ;;
	esac
	export MOCK_PORT MOCK_PID BULKOPS_MOCK_PORT=$MOCK_PORT
}
