# 022_fair_queue.pl - the jobs of a target are served in turn, not oldest
# first.
#
# Proves, with every request answered late so that a large job takes long:
#   * one worker: a 100-row job enqueued behind a 300,000-row job on the same
#     target (the large one under way, with most of its batches still
#     queued) ends within 5 s of its enqueue, while the large one is still
#     running; oldest first, it would wait for every batch of the large job;
#   * two workers: two jobs of 30 batches each, the second enqueued just
#     after the first, on one target, have their batches done in turn:
#     among the first 30 batches done, each job has about half; oldest first,
#     the second would have almost none.  Both workers take part, and
#     each job ends with exactly one receipt per row.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

start_mock();
mock_post('/_control/reset');
mock_post('/_control/config', { clinia => { pending_polls => 0 } });

my $node = bulkops_node('fair');
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION bulkops;
	CREATE TABLE big AS
	    SELECT i AS id, 'big ' || i AS name FROM generate_series(1, 300000) AS i;
	CREATE TABLE small AS
	    SELECT i AS id, 'small ' || i AS name FROM generate_series(1, 100) AS i;
});

# Every clinia request answered $secs late.
sub delay_all
{
	my ($secs) = @_;
	mock_faults(
		{
			action  => 'delay',
			path    => '^/clinia/',
			seconds => $secs,
			times   => -1
		});
}

# Seconds from $t0 until job $job is final (polled every 50 ms), and its
# state; undef after $timeout seconds.
sub seconds_to_final
{
	my ($job, $t0, $timeout) = @_;
	while (time - $t0 < $timeout)
	{
		my $state = $node->safe_psql('postgres',
			"SELECT state FROM bulkops.jobs WHERE id = $job");
		return (time - $t0, $state) if $state !~ /^(queued|running)$/;
		usleep(50_000);
	}
	return (undef, undef);
}

# Exactly one receipt per row of job $job, of $n rows, each succeeded.
sub one_receipt_per_row
{
	my ($case, $job, $n) = @_;
	is(receipt_rows($node, $job), "$n|$n|1|$n|$n",
		"$case: exactly one receipt per row, each succeeded");
}

# ---- one worker: a small job behind a large one ----
# 300 batches, 2 at a time, each 0.2 s late: the large job takes 30 s at
# least.
clinia_target($node, 'shared', '{"batch_size": 1000, "concurrency": 2}');
delay_all(0.2);
my $big = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('shared', 'big', key => 'id')");
ok( $node->poll_query_until(
		'postgres',
		"SELECT batches_done >= 4 FROM bulkops.jobs WHERE id = $big"),
	'large job: under way');

my $t0 = time;
my $small = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('shared', 'small', key => 'id')");
my ($secs, $state) = seconds_to_final($small, $t0, 60);
my $big_now = $node->safe_psql('postgres',
	"SELECT state, batches_total - batches_done FROM bulkops.jobs WHERE id = $big");
ok(defined $secs, 'small job: ends');
cmp_ok($secs // 60, '<=', 5,
	sprintf('small job: ends within 5 s of its enqueue (took %.2f s)', $secs // 60));
is($state, 'succeeded', 'small job: succeeded');
like($big_now, qr/^running\|([1-9]\d+)$/,
	"large job: still running then, with batches to go ($big_now)");
one_receipt_per_row('small job', $small, 100);
$node->safe_psql('postgres', "SELECT bulkops.cancel($big)");
is(wait_for_job($node, $big, 60), 'cancelled', 'large job: cancelled');

# ---- two workers: two jobs interleaved ----
mock_faults();
$node->append_conf('postgresql.conf', 'bulkops.workers_per_database = 2');
$node->restart;
ok(query_until($node, "SELECT count(*) FROM pg_stat_activity "
	  . "WHERE backend_type = 'bulkops worker'", '2'),
	'two workers serve the database');

clinia_target($node, 'pair', '{"batch_size": 100, "concurrency": 2}');
delay_all(0.1);
my ($first, $second) = split /\n/, $node->safe_psql(
	'postgres', q{
	SELECT bulkops.bulk_upsert('pair', 'SELECT * FROM big WHERE id <= 3000', key => 'id');
	SELECT bulkops.bulk_upsert('pair', 'SELECT * FROM big WHERE id <= 3000', key => 'id');
});
is(wait_for_job($node, $first, 120), 'succeeded', 'first job: succeeded');
is(wait_for_job($node, $second, 120), 'succeeded', 'second job: succeeded');
one_receipt_per_row('first job', $first, 3000);
one_receipt_per_row('second job', $second, 3000);

# the batches in the order they were done (a batch's last update)
my $order = $node->safe_psql(
	'postgres', qq{
	SELECT string_agg(CASE job_id WHEN $first THEN 'a' ELSE 'b' END, ''
	                  ORDER BY updated_at, job_id, batch_no)
	FROM bulkops.batches WHERE job_id IN ($first, $second)});
note "batches in the order done: $order";
is(length $order, 60, 'both jobs: 30 batches each');
my $second_early = () = substr($order, 0, 30) =~ /b/g;
cmp_ok($second_early, '>=', 10,
	"second job: $second_early of the first 30 batches done");
cmp_ok($second_early, '<=', 20,
	"first job: " . (30 - $second_early) . " of the first 30 batches done");
# Both workers took part.  Which worker takes which job's next batch is
# not fixed: two workers that alternate can each keep to one job, and the
# jobs are served in turn all the same (checked above).
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(DISTINCT lane) FROM bulkops.batches
		WHERE job_id IN ($first, $second)}),
	'2',
	'both workers held batches of these jobs');

$node->stop;
done_testing();
