# 030_cancel_deadline.pl - bulkops.cancel() and the job option "deadline" stop a
# running job at once, however slow the remote side, and every row still gets
# exactly one honest receipt.
#
# Each case runs a 200-row upsert in batches of 10, 4 in flight (clinia dialect
# on the mock), stops it while batches are in the worker's hands, and checks:
#   - the job becomes final (the time it took is printed; the only bound asserted
#     is a generous one, 15 s, against a remote side that answers in 30 s),
#   - one receipt per row, and the job's counters agree with them,
#   - batches never sent are 'cancelled'; rows whose request was in flight or
#     whose remote task was running are 'unknown' with the reason, or have their
#     real outcome when it came promptly,
#   - no row the remote side applied has a 'cancelled' receipt, and every row
#     with a 'succeeded' receipt was applied.
#
#   1. cancel while every submit in flight is answered only after 30 s
#   2. cancel while the remote tasks stay PENDING (polls answer at once)
#   3. cancel while the submits are answered 0.3 s late: outcomes learned promptly
#      are kept (asserted only as the invariants above: timing decides which)
#   4. deadline of 1 s with submits answered after 30 s: state timed_out
#   5. a deadline the job meets changes nothing; a queued job past its deadline
#      times out without ever being sent
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $ROWS = 200;

start_mock();
mock_post('/_control/reset');

my $node = bulkops_node('cancel');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE TABLE t AS SELECT i AS id, 'row ' || i AS name FROM generate_series(1, $ROWS) AS i;
});

sub make_target
{
	my ($name, $extra) = @_;
	clinia_target($node, $name, '{"batch_size": 10, "concurrency": 4' . ($extra // '') . '}');
}

# Every request of $method to source $src is answered $secs late.
sub slow
{
	my ($src, $method, $secs) = @_;
	mock_faults(
		{
			action  => 'delay',
			seconds => $secs,
			method  => $method,
			path    => "^/clinia/sources/$src/",
			times   => -1
		});
}

# Seconds from now until job $job is final (undef after $bound seconds).
sub seconds_to_final
{
	my ($job, $bound) = @_;
	my $t0 = time;
	while (time - $t0 < $bound)
	{
		return time - $t0
		  if $node->safe_psql('postgres',
			"SELECT state NOT IN ('queued', 'running') FROM bulkops.jobs WHERE id = $job") eq
		  't';
		sleep 0.02;
	}
	return undef;
}

# status => count of job $job's receipts, and checks shared by every case
sub check_receipts
{
	my ($name, $job, $src) = @_;
	my ($count, $distinct, $lo, $hi) = split /\|/,
	  $node->safe_psql('postgres',
		"SELECT count(*), count(DISTINCT row_no), min(row_no), max(row_no) "
		  . "FROM bulkops.receipts WHERE job_id = $job");
	is("$count|$distinct|$lo|$hi", "$ROWS|$ROWS|1|$ROWS", "$name: one receipt per row");
	is(counters_agree($node, $job), 't', "$name: counters agree with the receipts");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM bulkops.batches WHERE job_id = $job AND state <> 'done'"),
		'0', "$name: every batch is done");

	# the remote side's view: what was applied must not say cancelled
	my $applied = mock_get("/_control/clinia/applied?src=$src&type=Row");
	my %status = map { split /\|/ } split /\n/,
	  $node->safe_psql('postgres',
		"SELECT key, status FROM bulkops.receipts WHERE job_id = $job");
	my @bad = grep {
		($applied->{$_} && $status{$_} eq 'cancelled')
		  || (!$applied->{$_} && $status{$_} eq 'succeeded')
	} keys %status;
	is(scalar(@bad), 0, "$name: cancelled rows were not applied, succeeded rows were")
	  or diag "disagreeing keys: @bad[0 .. ($#bad < 9 ? $#bad : 9)]";

	my %by = map { split /\|/ } split /\n/,
	  $node->safe_psql('postgres',
		"SELECT status, count(*) FROM bulkops.receipts WHERE job_id = $job GROUP BY 1");
	note "$name: " . join(', ', map { "$_ $by{$_}" } sort keys %by);
	return \%by;
}

sub messages
{
	my ($job, $status) = @_;
	return $node->safe_psql('postgres',
		"SELECT DISTINCT error_message FROM bulkops.receipts "
		  . "WHERE job_id = $job AND status = '$status' ORDER BY 1");
}

sub start_job
{
	my ($src, $options) = @_;
	$options //= '{}';
	return $node->safe_psql('postgres',
		"SELECT bulkops.bulk_upsert('$src', 't', key => 'id', options => '$options')");
}

# 1. submits in flight that would be answered in 30 s
{
	make_target('slowsubmit');
	slow('slowsubmit', 'POST', 30);
	my $job = start_job('slowsubmit');
	ok(wait_requests('slowsubmit', 'POST', 4), 'slow submit: 4 submits in flight');
	is($node->safe_psql('postgres', "SELECT bulkops.cancel($job)"), 't', 'slow submit: cancel says it stopped the job');
	my $secs = seconds_to_final($job, 15);
	ok(defined $secs, 'slow submit: the job is final within 15 s of the cancel');
	note sprintf('slow submit: final %.2f s after the cancel', $secs // -1);
	is($node->safe_psql('postgres', "SELECT state FROM bulkops.jobs WHERE id = $job"),
		'cancelled', 'slow submit: job cancelled');
	my $by = check_receipts('slow submit', $job, 'slowsubmit');
	is($by->{unknown},   40,  'slow submit: the 4 batches in flight are unknown');
	is($by->{cancelled}, 160, 'slow submit: the 16 batches never sent are cancelled');
	like(messages($job, 'unknown'),
		qr/^the job was cancelled while this row's request was in flight; the remote side may or may not have applied it$/,
		'slow submit: unknown rows say why');
	is(messages($job, 'cancelled'), 'cancelled by bulkops.cancel()',
		'slow submit: cancelled rows say why');
	is($node->safe_psql('postgres', "SELECT bulkops.cancel($job)"),
		'f', 'slow submit: a second cancel finds the job final');
	mock_faults();
}

# 2. remote tasks that stay PENDING: polled for a short while, then unknown
{
	make_target('pending');
	mock_post('/_control/config', { clinia => { pending_polls => 1_000_000 } });
	my $job = start_job('pending');
	$node->poll_query_until('postgres',
		"SELECT count(*) = 4 FROM bulkops.batches WHERE job_id = $job AND remote_id IS NOT NULL")
	  or diag 'tasks did not start';
	$node->safe_psql('postgres', "SELECT bulkops.cancel($job)");
	my $secs = seconds_to_final($job, 15);
	ok(defined $secs, 'pending tasks: the job is final within 15 s of the cancel');
	note sprintf('pending tasks: final %.2f s after the cancel', $secs // -1);
	my $by = check_receipts('pending tasks', $job, 'pending');
	is($by->{unknown}, 40, 'pending tasks: the rows of the 4 running tasks are unknown');
	like(messages($job, 'unknown'),
		qr/^the job was cancelled while remote task bk_\d+ was running; its outcome was not learned in time$/m,
		'pending tasks: unknown rows name the task');
	mock_post('/_control/config', { clinia => { pending_polls => 1 } });
}

# 3. submits answered 0.3 s late: what the remote side says promptly is kept
{
	make_target('prompt');
	mock_post('/_control/config', { clinia => { pending_polls => 0 } });
	slow('prompt', 'POST', 0.3);
	my $job = start_job('prompt');
	ok(wait_requests('prompt', 'POST', 4), 'prompt answers: submits in flight');
	$node->safe_psql('postgres', "SELECT bulkops.cancel($job)");
	ok(defined seconds_to_final($job, 15), 'prompt answers: the job is final within 15 s');
	my $by = check_receipts('prompt answers', $job, 'prompt');
	is(($by->{succeeded} // 0) + ($by->{unknown} // 0) + ($by->{cancelled} // 0),
		$ROWS, 'prompt answers: rows are succeeded, unknown or cancelled');
	mock_faults();
	mock_post('/_control/config', { clinia => { pending_polls => 1 } });
}

# 4. a deadline passes while submits are in flight
{
	make_target('late');
	slow('late', 'POST', 30);
	my $t0  = time;
	my $job = start_job('late', '{"deadline": 1}');
	my $secs = seconds_to_final($job, 20);
	ok(defined $secs, 'deadline: the job is final within 20 s of its creation');
	note sprintf('deadline: final %.2f s after its creation (deadline 1 s)', time - $t0);
	is($node->safe_psql('postgres', "SELECT state FROM bulkops.jobs WHERE id = $job"),
		'timed_out', 'deadline: job timed_out');
	my $by = check_receipts('deadline', $job, 'late');
	is($by->{unknown},   40,  'deadline: the 4 batches in flight are unknown');
	is($by->{cancelled}, 160, 'deadline: the batches never sent are cancelled');
	is(messages($job, 'cancelled'), "the job's deadline passed before this row was sent",
		'deadline: cancelled rows say why');
	like(messages($job, 'unknown'), qr/^the job's deadline passed while this row's request was in flight/,
		'deadline: unknown rows say why');
	like($node->safe_psql('postgres', "SELECT last_error FROM bulkops.jobs WHERE id = $job"),
		qr/^the job's deadline passed/, 'deadline: the job says why');
	mock_faults();
}

# 5. a deadline met, a deadline from the target, a queued job that times out
{
	make_target('quick', ', "deadline": 60');
	my $job = start_job('quick');
	is(wait_for_job($node, $job, 60), 'succeeded', 'deadline met: job succeeded');

	# the target's only slot is taken by a job whose submit hangs
	make_target('narrow', ', "concurrency": 1, "batch_size": 200');
	slow('narrow', 'POST', 30);
	my $blocker = start_job('narrow');
	ok(wait_requests('narrow', 'POST', 1), 'queued: the first job holds the slot');
	my $job2 = start_job('narrow', '{"deadline": 0.5}');
	is(wait_for_job($node, $job2, 20), 'timed_out', 'queued: the waiting job timed out');
	is( $node->safe_psql('postgres',
			"SELECT rows_cancelled, started_at IS NULL FROM bulkops.jobs WHERE id = $job2"),
		"$ROWS|t", 'queued: every row cancelled, the job never started');
	$node->safe_psql('postgres', "SELECT bulkops.cancel($blocker)");
	is(wait_for_job($node, $blocker, 20), 'cancelled', 'queued: the first job cancelled');
	mock_faults();

	my $err = '';
	$node->psql('postgres',
		"SELECT bulkops.bulk_upsert('quick', 't', key => 'id', options => '{\"deadline\": \"soon\"}')",
		stderr => \$err);
	like($err, qr/job option "deadline" must be a number/, 'deadline: must be a number');
}

ok(!grep(/terminated by signal/, slurp_file($node->logfile)), 'no process crashed');
$node->stop;
done_testing();
