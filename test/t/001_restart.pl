# 001_restart.pl - a job survives the server and its worker going away mid-job.
#
# Proves, for an upsert of 100,000 rows (clinia dialect on the mock API, batches of
# 1,000, 4 in flight, every remote task PENDING for 3 polls) interrupted in the
# middle by
#   (a) a restart of the server (fast shutdown),
#   (b) kill -9 of the bulkops worker (the postmaster then restarts everything),
#   (c) an immediate shutdown followed by a start,
# that the job resumes and ends 'succeeded' with exactly one receipt per source row
# (row_no 1..100000, no row missing, none twice), every receipt 'succeeded', the
# job's counters agreeing with its receipts, and every id applied by the remote side
# at least once.  The guarantee checked for upsert is "at least once, with exactly
# one receipt per row": upsert is idempotent, so resending a batch whose outcome was
# lost in the crash is allowed and an id may be applied more than once.
#
# Then, for an insert (clinia CREATE, NOT idempotent) of 20,000 rows, interrupted
# twice by kill -9 of the worker, once while batches wait for their remote tasks
# (they must be resumed by polling the same tasks, not by submitting again) and
# once while a submit is in flight (its rows must become 'unknown'): every row has
# exactly one receipt, every receipt says succeeded or unknown, and the remote
# side's number of creates never exceeds the receipts that say succeeded plus
# those that say unknown: no row is created twice without bulkops saying so, and
# every row said to be created was created (with a remote id of its own).
#
# "In the middle" is made deterministic by the mock: after the first few dozen
# requests every request is answered only after a delay, so the job crawls; the
# test waits until receipts exist and the job is still running, checks that, and
# only then interrupts.  The delay is removed once the server is gone, so the
# resumed job runs at full speed.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $UPSERT_ROWS = 100_000;
my $INSERT_ROWS = 20_000;

start_mock();
mock_post('/_control/reset');
mock_post('/_control/config', { clinia => { pending_polls => 3 } });

# restart_after_crash: PostgreSQL::Test::Cluster turns it off, case (b) needs it
my $node = bulkops_node('restart', 'restart_after_crash = on');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE TABLE things AS
	    SELECT i AS id, 'thing ' || i AS name, i % 7 AS bucket
	    FROM generate_series(1, $UPSERT_ROWS) AS i;
	CREATE TABLE new_things AS
	    SELECT i AS n, 'new thing ' || i AS name
	    FROM generate_series(1, $INSERT_ROWS) AS i;
});

# One target per case, each on a source of its own in the mock, so the mock's
# per-id application counts of one case are not mixed with another's.
sub make_target
{
	my ($name) = @_;
	my $url = mock_url("/clinia/sources/$name/v1");
	$node->safe_psql('postgres',
		    "SELECT bulkops.create_target('$name', 'clinia', '$url', "
		  . "resource => 'Thing', "
		  . "options => '{\"batch_size\": 1000, \"concurrency\": 4}')");
}

# From the $skip-th API request on (of $method, when given), the mock answers
# each one $secs late.
sub slow_mock_after
{
	my ($skip, $secs, $method) = @_;
	mock_delete('/_control/faults');
	mock_post(
		'/_control/faults',
		{
			rules => [
				{
					action  => 'delay',
					path    => '^/clinia/',
					seconds => $secs,
					skip    => $skip,
					times   => -1,
					$method ? (method => $method) : ()
				}
			]
		});
}

sub receipts_of
{
	my ($job) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM bulkops.receipts WHERE job_id = $job");
}

# Wait until job $job is visibly under way (and $also, an SQL condition, holds),
# check it is, then run $interrupt, then $then (by default: remove the mock's
# delays), and make sure the new worker found batches of the old one to resume.
sub interrupt_mid_job
{
	my ($case, $job, $total, $interrupt, $also, $then) = @_;
	$also //= 'true';
	$then //= sub { mock_delete('/_control/faults') };

	ok( $node->poll_query_until(
			'postgres', qq{
			SELECT (SELECT count(*) FROM bulkops.receipts WHERE job_id = $job) >= 1000
			   AND (SELECT state FROM bulkops.jobs WHERE id = $job) = 'running'
			   AND ($also)}),
		"$case: job $job has receipts and is running");
	my $done = receipts_of($job);
	cmp_ok($done, '<', $total,
		"$case: interrupted in the middle ($done of $total rows done)");
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) > 0 FROM bulkops.batches WHERE job_id = $job AND state = 'active'"
		),
		't',
		"$case: batches are in the worker's hands when it is interrupted");

	my $offset = -s $node->logfile;
	$interrupt->();
	$then->();

	my $resumed = eval {
		local $PostgreSQL::Test::Utils::timeout_default = 60;
		$node->wait_for_log(qr/bulkops worker resumed [1-9][0-9]* batches/,
			$offset);
	};
	ok($resumed, "$case: the new worker resumed the batches left active");
	return $offset;
}

# The checks every interrupted upsert must pass.
sub check_upsert
{
	my ($case, $job, $src) = @_;
	my $n = $UPSERT_ROWS;

	is(wait_for_job($node, $job, 150), 'succeeded', "$case: job ends succeeded");

	my ($count, $distinct, $succeeded, $lo, $hi, $keys) = split /\|/,
	  $node->safe_psql(
		'postgres', qq{
		SELECT count(*), count(DISTINCT row_no),
		       count(*) FILTER (WHERE status = 'succeeded'),
		       min(row_no), max(row_no), count(DISTINCT key)
		FROM bulkops.receipts WHERE job_id = $job});
	is($count,     $n, "$case: $n receipts");
	is($distinct,  $n, "$case: $n distinct row numbers");
	is($succeeded, $n, "$case: every receipt says succeeded");
	is("$lo..$hi", "1..$n", "$case: row numbers run from 1 to $n");
	is($keys, $n, "$case: $n distinct keys");
	is( $node->safe_psql(
			'postgres', qq{
			SELECT count(*) FROM generate_series(1, $n) AS g(r)
			WHERE NOT EXISTS (SELECT 1 FROM bulkops.receipts
			                  WHERE job_id = $job AND row_no = g.r)}),
		'0',
		"$case: no row number from 1 to $n lacks its receipt");
	is( $node->safe_psql(
			'postgres', qq{
			SELECT count(*) FROM bulkops.receipts r JOIN things t ON t.id::text = r.key
			WHERE r.job_id = $job AND r.row_no = t.id}),
		$n,
		"$case: each receipt carries its row's key");
	is( $node->safe_psql(
			'postgres', qq{
			SELECT rows_total, rows_succeeded, rows_failed + rows_cancelled + rows_unknown,
			       batches_done = batches_total
			FROM bulkops.jobs WHERE id = $job}),
		"$n|$n|0|t",
		"$case: the job's counters agree with its receipts");
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FROM bulkops.batches WHERE job_id = $job AND state <> 'done'"
		),
		'0',
		"$case: every batch is done");

	# upsert is idempotent: at least once, re-application allowed
	my $applied = mock_get("/_control/clinia/applied?src=$src&type=Thing");
	my @missing = grep { !$applied->{$_} } 1 .. $n;
	is(scalar @missing, 0,
		"$case: the remote side applied every id at least once")
	  or diag "first missing ids: @missing[0 .. ($#missing < 9 ? $#missing : 9)]";
	is(scalar keys %$applied, $n, "$case: and no other id");
	my $max = 0;
	$_ > $max and $max = $_ for values %$applied;
	note "$case: at most $max applications of one id";
}

sub start_upsert
{
	my ($target) = @_;
	return $node->safe_psql('postgres',
		"SELECT bulkops.bulk_upsert('$target', 'things', key => 'id')");
}

my $t0 = time;

# (a) a restart: fast shutdown, then start
{
	my $case = 'fast restart';
	make_target('restart');
	slow_mock_after(40, 1);
	my $job = start_upsert('restart');
	interrupt_mid_job($case, $job, $UPSERT_ROWS, sub { $node->restart });
	check_upsert($case, $job, 'restart');
	note "$case: " . (time - $t0) . "s so far";
}

# (b) kill -9 of the worker: a crash, the postmaster reinitializes
{
	my $case = 'kill -9 of the worker';
	make_target('kill9');
	slow_mock_after(40, 1);
	my $job = start_upsert('kill9');
	my $old;
	my $offset = interrupt_mid_job(
		$case, $job,
		$UPSERT_ROWS,
		sub {
			$old = worker_pid($node);
			like($old, qr/^\d+$/, "$case: the worker is running");
			is(kill('KILL', $old), 1, "$case: SIGKILL sent to worker $old");
			ok( query_until(
					$node,
					"SELECT count(*) FROM pg_stat_activity "
					  . "WHERE backend_type = 'bulkops worker' AND pid <> $old",
					'1'),
				"$case: a new worker runs after the crash");
		});
	ok( $node->log_contains(
			qr/bulkops worker.*\(PID $old\) was terminated by signal 9/, $offset),
		"$case: the postmaster saw the worker die");
	ok($node->log_contains(qr/all server processes terminated; reinitializing/,
			$offset),
		"$case: and reinitialized");
	check_upsert($case, $job, 'kill9');
	note "$case: " . (time - $t0) . "s so far";
}

# (c) an immediate shutdown, then start
{
	my $case = 'immediate stop';
	make_target('immediate');
	slow_mock_after(40, 1);
	my $job = start_upsert('immediate');
	interrupt_mid_job(
		$case, $job,
		$UPSERT_ROWS,
		sub {
			$node->stop('immediate');
			$node->start;
		});
	check_upsert($case, $job, 'immediate');
	note "$case: " . (time - $t0) . "s so far";
}

# (d) a non-idempotent insert and two crashes of the worker: one while batches
# wait for their remote tasks (resumed by polling the same tasks again), one
# while submits are in flight (their rows must become 'unknown', not be sent
# again).
{
	my $case  = 'insert';
	my $n     = $INSERT_ROWS;
	my $stats = mock_get('/_control/stats');
	is($stats->{clinia}{creates}, 0, "$case: no creates before the job");

	my $kill_worker = sub {
		my ($what) = @_;
		return sub {
			my $old = worker_pid($node);
			is(kill('KILL', $old), 1, "$what: SIGKILL sent to worker $old");
			ok( query_until(
					$node,
					"SELECT count(*) FROM pg_stat_activity "
					  . "WHERE backend_type = 'bulkops worker' AND pid <> $old",
					'1'),
				"$what: a new worker runs after the crash");
		};
	};

	make_target('insert');
	# polls slow: batches sit at step 1 with a remote task id
	slow_mock_after(16, 1, 'GET');
	my $job = $node->safe_psql('postgres',
		"SELECT bulkops.bulk_insert('insert', 'new_things', key => 'n')");
	my $polling = "SELECT count(*) >= 1 FROM bulkops.batches WHERE job_id = $job "
	  . "AND state = 'active' AND step = 1 AND remote_id IS NOT NULL";
	interrupt_mid_job(
		"$case, crash while polling",
		$job, $n,
		$kill_worker->("$case, crash while polling"),
		$polling,
		# then polls fast, submits slow: batches sit at step 0, submit in flight
		sub { slow_mock_after(0, 2, 'POST') });

	my $submitting = "SELECT count(*) >= 1 FROM bulkops.batches WHERE job_id = $job "
	  . "AND state = 'active' AND step = 0 AND maybe_applied";
	interrupt_mid_job(
		"$case, crash while submitting",
		$job, $n,
		$kill_worker->("$case, crash while submitting"),
		$submitting);

	like(wait_for_job($node, $job, 120),
		qr/^(succeeded|partial)$/, "$case: job ends (succeeded or partial)");

	my ($count, $distinct, $succeeded, $unknown, $lo, $hi) = split /\|/,
	  $node->safe_psql(
		'postgres', qq{
		SELECT count(*), count(DISTINCT row_no),
		       count(*) FILTER (WHERE status = 'succeeded'),
		       count(*) FILTER (WHERE status = 'unknown'),
		       min(row_no), max(row_no)
		FROM bulkops.receipts WHERE job_id = $job});
	is($count,    $n, "$case: $n receipts");
	is($distinct, $n, "$case: one receipt per row");
	is("$lo..$hi", "1..$n", "$case: row numbers run from 1 to $n");
	is($succeeded + $unknown, $n,
		"$case: every receipt says succeeded or unknown");
	cmp_ok($unknown, '>=', 1000,
		"$case: the rows of a submit in flight at the crash are unknown");
	note "$case: $succeeded succeeded, $unknown unknown";

	# Creates happen when the mock runs a task, i.e. on a poll; every task
	# polled before a crash is polled again by the resumed worker, so the
	# count is final once the job is.
	my $creates = mock_get('/_control/stats')->{clinia}{creates};
	cmp_ok($creates, '<=', $succeeded + $unknown,
		"$case: remote creates ($creates) <= succeeded + unknown receipts");
	cmp_ok($creates, '>=', $succeeded,
		"$case: every row said to be created was created");

	my $applied = mock_get("/_control/clinia/applied?src=insert&type=Thing");
	my @ids = split /\n/,
	  $node->safe_psql('postgres',
		"SELECT remote_id FROM bulkops.receipts WHERE job_id = $job AND status = 'succeeded'"
	  );
	my %seen;
	my @dup  = grep { $seen{$_}++ } @ids;
	my @gone = grep { !$applied->{$_} } @ids;
	is(scalar @ids,  $succeeded, "$case: each succeeded receipt has a remote id");
	is(scalar @dup,  0, "$case: no remote id is reported for two rows");
	is(scalar @gone, 0, "$case: each succeeded receipt names a created record");
	is( $node->safe_psql(
			'postgres',
			"SELECT rows_succeeded || '|' || rows_unknown FROM bulkops.jobs WHERE id = $job"
		),
		"$succeeded|$unknown",
		"$case: the job's counters agree with its receipts");
}

note "total " . (time - $t0) . "s";
$node->stop;
done_testing();
