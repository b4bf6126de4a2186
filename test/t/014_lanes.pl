# 014_lanes.pl - several workers serving one database (bulkops.workers_per_database).
#
# Proves, with two workers for the postgres database:
#   * both run, and bulkops.worker_pid() names one of them;
#   * they share the batches of one job (both hold some) yet never have more
#     requests in flight to a target than its concurrency: with every request
#     answered 0.6 s late, no 0.5 s window sees more request starts than the
#     target's concurrency (3, split 2 + 1);
#   * a kill -9 of the second worker in the middle of a job (the postmaster
#     then restarts everything) leaves exactly one receipt per row, each
#     worker resuming the batches it held;
#   * after a restart with a single worker, batches the second worker held
#     are adopted by the first, and that job too ends with exactly one
#     receipt per row.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

start_mock();
mock_post('/_control/reset');

my $node = bulkops_node('lanes', 'restart_after_crash = on',
	'bulkops.workers_per_database = 2');
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION bulkops;
	CREATE TABLE things AS
	    SELECT i AS id, 'thing ' || i AS name FROM generate_series(1, 20000) AS i;
});

ok(query_until($node, "SELECT count(*) FROM pg_stat_activity "
	  . "WHERE backend_type = 'bulkops worker'", '2'),
	'two workers serve the database');
is( $node->safe_psql(
		'postgres', q{
		SELECT bulkops.worker_pid() IN (SELECT pid FROM pg_stat_activity
		                                WHERE backend_type = 'bulkops worker')}),
	't',
	'bulkops.worker_pid() is one of them');

# Every clinia request after the first $skip answered $secs late.
sub delay_all
{
	my ($secs, $skip) = @_;
	mock_faults(
		{
			action  => 'delay',
			path    => '^/clinia/',
			seconds => $secs,
			skip    => $skip // 0,
			times   => -1
		});
}

# The exactly-one-receipt checks of a finished upsert of $n rows of things.
sub check_receipts
{
	my ($case, $job, $n) = @_;
	is(wait_for_job($node, $job, 120), 'succeeded', "$case: job ends succeeded");
	is(receipt_rows($node, $job), "$n|$n|1|$n|$n",
		"$case: exactly one receipt per row, each succeeded");
	is( $node->safe_psql(
			'postgres', qq{
			SELECT count(*) FROM bulkops.receipts r JOIN things t ON t.id::text = r.key
			WHERE r.job_id = $job AND r.row_no = t.id}),
		$n, "$case: each receipt carries its row's key");
	is( $node->safe_psql(
			'postgres', qq{
			SELECT rows_succeeded, rows_failed + rows_cancelled + rows_unknown,
			       batches_done = batches_total
			FROM bulkops.jobs WHERE id = $job}),
		"$n|0|t", "$case: the job's counters agree");
}

# ---- sharing a job, within the target's concurrency ----
clinia_target($node, 'shared', '{"batch_size": 100, "concurrency": 3}');
mock_post('/_control/config', { clinia => { pending_polls => 0 } });
delay_all(0.6);
my $t0   = time;
my $job1 = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('shared', 'SELECT id, name FROM things WHERE id <= 1500', key => 'id')"
);
check_receipts('shared job', $job1, 1500);
is( $node->safe_psql(
		'postgres',
		"SELECT count(DISTINCT lane) FROM bulkops.batches WHERE job_id = $job1"),
	'2',
	'shared job: both workers held some of its batches');

my @starts = sort { $a <=> $b } map { $_->{time} }
  grep { $_->{path} =~ m{^/clinia/sources/shared/} }
  @{ mock_get('/_control/requests') };
my $most = 0;
for my $i (0 .. $#starts)
{
	my $n = grep { $_ >= $starts[$i] && $_ < $starts[$i] + 0.5 } @starts;
	$most = $n if $n > $most;
}
cmp_ok(scalar @starts, '>=', 30, 'shared job: its requests were logged');
cmp_ok($most, '<=', 3,
	"shared job: at most 3 request starts in any 0.5 s (saw $most)");
cmp_ok($most, '>=', 2,
	"shared job: the workers did send in parallel (saw $most at once)");
note sprintf 'shared job: %d requests in %.1f s', scalar @starts, time - $t0;

# ---- kill -9 of the second worker mid-job ----
clinia_target($node, 'crash', '{"batch_size": 500, "concurrency": 4}');
delay_all(0.5, 8);
my $job2 = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('crash', 'things', key => 'id')");
ok( $node->poll_query_until(
		'postgres', qq{
		SELECT (SELECT count(*) FROM bulkops.receipts WHERE job_id = $job2) >= 500
		   AND (SELECT count(DISTINCT lane) FROM bulkops.batches
		        WHERE job_id = $job2 AND state = 'active') = 2}),
	'crash: the job is under way, both workers holding batches');
my $second = $node->safe_psql(
	'postgres', q{
	SELECT pid FROM pg_stat_activity
	WHERE backend_type = 'bulkops worker' AND pid <> bulkops.worker_pid()});
like($second, qr/^\d+$/, 'crash: the second worker is found');
my $offset = -s $node->logfile;
kill 'KILL', $second;
mock_faults();
ok(log_says($node, qr/bulkops worker 1 started/, $offset),
	'crash: the second worker is started again');
ok(log_says($node, qr/bulkops worker resumed [1-9][0-9]* batches/, $offset),
	'crash: batches left active were resumed');
check_receipts('crash', $job2, 20000);

# ---- adoption: back to one worker while the second holds batches ----
clinia_target($node, 'adopt', '{"batch_size": 500, "concurrency": 4}');
delay_all(0.5, 8);
my $job3 = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('adopt', 'things', key => 'id')");
ok( $node->poll_query_until(
		'postgres', qq{
		SELECT count(*) > 0 FROM bulkops.batches
		WHERE job_id = $job3 AND state = 'active' AND lane = 1}),
	'adopt: the second worker holds batches of the job');
$node->stop('immediate');
mock_faults();
$node->append_conf('postgresql.conf', 'bulkops.workers_per_database = 1');
$offset = -s $node->logfile;
$node->start;
ok(query_until($node, "SELECT count(*) FROM pg_stat_activity "
	  . "WHERE backend_type = 'bulkops worker'", '1'),
	'adopt: one worker after the restart');
ok(log_says($node, qr/bulkops worker resumed [1-9][0-9]* batches/, $offset),
	'adopt: the worker resumed the batches left active');
check_receipts('adopt', $job3, 20000);
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM bulkops.batches WHERE job_id = $job3 AND state <> 'done'"),
	'0',
	'adopt: no batch is left behind');

$node->stop;
done_testing();
