# 033_rate_limits.pl - a rate limit holds the target, for every worker, and
# fails no row.
#
# Proves, with two workers serving the database (bulkops.workers_per_database
# = 2) and the mock answering 429 as told:
#   * a storm of thirty 429s (Retry-After: 1) on a job whose max_attempts is
#     2 ends with every row succeeded, applied once, in one attempt each (the
#     429s used up none; before, most rows failed "gave up after 2
#     attempts"), and so does every job below but the last; the log says
#     that the target is held (until when, why) and that it is sent to
#     again, not for every 429 but for the storm;
#   * Retry-After in seconds is honoured by both workers: while both hold
#     batches of the job, the mock's request log shows no request to the
#     target from shortly after the 429 until the time it asked for;
#   * so is Retry-After as an HTTP-date;
#   * the target option retry_after_max cuts a Retry-After of an hour to 2 s;
#   * a hold survives a restart of the server: it is saved in
#     bulkops.target_state, and nothing is sent before its time after the
#     restart either (a batch taken again after the restart counts a submit
#     attempt, as any batch a restart interrupts does);
#   * a job waiting on a hold is running;
#   * a job stuck behind a Retry-After of an hour ends timed_out at its
#     deadline, with exactly one receipt per row, each cancelled.
#
# Times come from the mock's request log (its clock is the server's): a
# request the worker had sent before the 429 reached it may arrive a moment
# after the 429 (SLACK); nothing may arrive after that until the hold ends.
# No check asserts how fast anything went.
use strict;
use warnings;

use POSIX qw(strftime);
use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# how long after the 429's arrival a request sent before it may still arrive
my $SLACK = 0.3;
# the server's and the mock's clock are one; times are compared to the ms
my $EPS = 0.02;

start_mock();
mock_post('/_control/reset');

my $node = bulkops_node('limits', 'restart_after_crash = on',
	'bulkops.workers_per_database = 2');
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION bulkops;
	CREATE TABLE things AS
	    SELECT i AS id, 'thing ' || i AS name FROM generate_series(1, 1000) AS i;
});
ok(query_until($node, "SELECT count(*) FROM pg_stat_activity "
	  . "WHERE backend_type = 'bulkops worker'", '2'),
	'two workers serve the database');

sub query { return $node->safe_psql('postgres', $_[0]) }

# A fresh mock (pending_polls 0: one poll per task) that answers requests
# for clinia source $src with 429 and Retry-After $retry_after, as %rule
# says (skip, times; see mock_api.py).
sub answer_429
{
	my ($src, $retry_after, %rule) = @_;
	mock_post('/_control/reset');
	mock_post('/_control/config', { clinia => { pending_polls => 0 } });
	mock_faults(
		{
			action  => 'status',
			status  => 429,
			path    => "^/clinia/sources/$src/",
			headers => { 'Retry-After' => $retry_after },
			%rule
		});
}

# The times of the requests for clinia source $src, in order; and the time
# of the first one the mock answered with a fault.
sub request_times
{
	my ($src) = @_;
	return sort { $a <=> $b } map { $_->{time} }
	  grep { $_->{path} =~ m{^/clinia/sources/\Q$src\E/} }
	  @{ mock_get('/_control/requests') };
}

sub first_fault_time
{
	my ($src) = @_;
	my $rules = mock_get('/_control/faults')->{rules};
	my @times = request_times($src);
	# the rule skipped $skip matching requests, then fired: that one
	my $skip = $rules->[0]{skip} // 0;
	return $times[$skip];
}

sub upsert
{
	my ($target, $where, $options) = @_;
	$options = defined $options ? ", options => '$options'" : '';
	return query("SELECT bulkops.bulk_upsert('$target', "
		  . "'SELECT id, name FROM things WHERE $where', key => 'id'$options)");
}

# Every row of job $job succeeded, once, in one attempt ($attempts: in at
# most that many).
sub all_succeeded
{
	my ($case, $job, $n, $attempts) = @_;
	$attempts //= 1;
	is(wait_for_job($node, $job, 120), 'succeeded', "$case: the job succeeds");
	is( query(
			"SELECT count(*), count(DISTINCT row_no), count(*) FILTER (WHERE status = 'succeeded'), "
			  . "max(attempts) <= $attempts FROM bulkops.receipts WHERE job_id = $job"),
		"$n|$n|$n|t",
		"$case: one receipt per row, each succeeded, in at most $attempts attempt(s)");
	is(mock_get('/_control/stats')->{clinia}{max_applications_per_id},
		1, "$case: the remote side applied each row once");
}

# No request for $src between $from + SLACK and $until - EPS; one after.
sub quiet_between
{
	my ($case, $src, $from, $until) = @_;
	my @times = request_times($src);
	my @inside = grep { $_ > $from + $SLACK && $_ < $until - $EPS } @times;
	is(scalar @inside, 0,
		sprintf('%s: no request in the %.1f s the target asked for (saw %s)',
			$case, $until - $from,
			join(', ', map { sprintf '+%.2f s', $_ - $from } @inside) || 'none'));
	my ($next) = grep { $_ >= $until - $EPS } @times;
	ok(defined $next,
		sprintf('%s: requests went on after it (first at +%.2f s)',
			$case, defined $next ? $next - $from : -1));
}

# ---- a storm of 429s, max_attempts 2 ----
{
	my $case = 'storm';
	clinia_target($node, 'storm',
		'{"batch_size": 50, "concurrency": 4, "max_attempts": 2}');
	answer_429('storm', '1', times => 30);
	my $offset = -s $node->logfile;
	my $job = upsert('storm', 'true');
	all_succeeded($case, $job, 1000);
	is(mock_get('/_control/faults')->{rules}[0]{fired}, 30, "$case: thirty 429s were answered");
	is(query("SELECT count(DISTINCT lane) FROM bulkops.batches WHERE job_id = $job"),
		'2', "$case: both workers took batches");
	my $log = slurp_file($node->logfile, $offset);
	like($log, qr/LOG:  bulkops holds every request to target "storm" until .*\n.*DETAIL:  It answered HTTP 429, a rate or usage limit; Retry-After asked for 1 s\./,
		"$case: the log says the target is held, until when and why");
	like($log, qr/LOG:  bulkops sends to target "storm" again\n.*DETAIL:  It answered HTTP \d+, without a limit; its requests were held from .*, \d+ times in a row\./,
		"$case: and that it is sent to again");
	my $holds = () = $log =~ /LOG:  bulkops holds every request to target "storm"/g;
	my $ends  = () = $log =~ /LOG:  bulkops sends to target "storm" again/g;
	# not once per 429: the requests sent when a hold ends go out together,
	# and in the round where the storm runs out some may still get a 429
	# after another succeeded, which begins a second backoff
	ok($holds >= 1 && $holds <= 2 && $ends == $holds,
		"$case: each once, or twice, for the thirty 429s (held $holds, sent again $ends)");
	is(query("SELECT http_status FROM bulkops.target_state WHERE target = 'storm'"),
		'429', "$case: the hold was saved");
}

# ---- Retry-After in seconds, held by both workers ----
{
	my $case = 'delta-seconds';
	clinia_target($node, 'hold', '{"batch_size": 10, "concurrency": 4}');
	answer_429('hold', '3', skip => 6, times => 1);
	my $job = upsert('hold', 'id <= 400');
	ok( poll_until(sub { mock_get('/_control/faults')->{rules}[0]{fired} == 1 }),
		"$case: the 429 was answered");
	is(query("SELECT state FROM bulkops.jobs WHERE id = $job"),
		'running', "$case: the job is running while its target is held");
	is( query(
			"SELECT count(DISTINCT lane) FROM bulkops.batches WHERE job_id = $job AND state = 'active'"),
		'2',
		"$case: during the hold both workers hold batches of the job");
	all_succeeded($case, $job, 400);
	my $t429 = first_fault_time('hold');
	quiet_between($case, 'hold', $t429, $t429 + 3);
}

# ---- Retry-After as an HTTP-date ----
{
	my $case = 'HTTP-date';
	clinia_target($node, 'dated', '{"batch_size": 10, "concurrency": 4}');
	my $date = int(time) + 5;
	answer_429('dated', strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime($date)),
		skip => 2, times => 1);
	my $job = upsert('dated', 'id <= 100');
	all_succeeded($case, $job, 100);
	quiet_between($case, 'dated', first_fault_time('dated'), $date);
}

# ---- retry_after_max cuts an hour to 2 s ----
{
	my $case = 'retry_after_max';
	clinia_target($node, 'capped',
		'{"batch_size": 10, "concurrency": 2, "retry_after_max": 2}');
	answer_429('capped', '3600', times => 1);
	my $offset = -s $node->logfile;
	my $job = upsert('capped', 'id <= 50');
	all_succeeded($case, $job, 50);
	quiet_between($case, 'capped', first_fault_time('capped'),
		first_fault_time('capped') + 2);
	ok( log_says(
			$node,
			qr/DETAIL:  It answered HTTP 429, a rate or usage limit; Retry-After asked for 3600 s, cut to retry_after_max, 2 s\./,
			$offset),
		"$case: the log says the wait was cut");
}

# ---- a restart during a hold ----
{
	my $case = 'restart';
	clinia_target($node, 'again', '{"batch_size": 10, "concurrency": 4}');
	answer_429('again', '8', skip => 2, times => 1);
	my $job = upsert('again', 'id <= 200');
	ok( query_until(
			$node,
			"SELECT next_request_at > now() + interval '3 s' FROM bulkops.target_state "
			  . "WHERE target = 'again'"),
		"$case: the hold is saved");
	my $t429 = first_fault_time('again');
	my $offset = -s $node->logfile;
	$node->stop('immediate');
	$node->start;
	ok( log_says(
			$node,
			qr/bulkops holds every request to target "again" until .*\n.*DETAIL:  A hold saved before the worker started: it answered HTTP 429/,
			$offset),
		"$case: the restarted worker holds the target again");
	# taking a batch again after a restart counts a submit, as it always has
	all_succeeded($case, $job, 200, 2);
	quiet_between($case, 'again', $t429, $t429 + 8);
}

# ---- a deadline while held for an hour ----
{
	my $case = 'deadline';
	clinia_target($node, 'late', '{"batch_size": 10, "concurrency": 2}');
	answer_429('late', '3600', times => -1);
	my $job = upsert('late', 'id <= 50', '{"deadline": 3}');
	ok( poll_until(sub { mock_get('/_control/faults')->{rules}[0]{fired} >= 1 }),
		"$case: the 429 was answered");
	is( query(
			"SELECT state || ' ' || (now() < created_at + interval '3 s') FROM bulkops.jobs WHERE id = $job"),
		'running true', "$case: before its deadline the held job is running");
	is(wait_for_job($node, $job, 60), 'timed_out', "$case: the job ends timed_out");
	is( query(
			"SELECT string_agg(DISTINCT status || ': ' || error_message, '; ') || ' | ' "
			  . "|| count(*) || ' | ' || count(DISTINCT row_no) "
			  . "FROM bulkops.receipts WHERE job_id = $job"),
		"cancelled: the job's deadline passed before this row was sent | 50 | 50",
		"$case: exactly one receipt per row, each cancelled, none failed");
	is( query(
			"SELECT rows_total || ' ' || rows_cancelled || ' ' || rows_failed "
			  . "|| ' ' || batches_done || '/' || batches_total FROM bulkops.jobs WHERE id = $job"),
		'50 50 0 5/5', "$case: the job's counters agree");
	my @times = request_times('late');
	cmp_ok(scalar @times, '<=', 2,
		"$case: nothing but the first requests reached the target");
}

ok(!$node->log_contains(qr/terminated by signal|PANIC/),
	'no process crashed');
$node->stop;
done_testing();

# Poll $cond (a code reference) every 50 ms, at most 30 s.
sub poll_until
{
	my ($cond) = @_;
	for (1 .. 600)
	{
		return 1 if $cond->();
		usleep(50_000);
	}
	return 0;
}
