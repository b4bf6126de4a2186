# 020_retention_space.pl - retention gives the space back.
#
# Proves that once every job has expired (bulkops.receipt_retention), the
# database is, within two minutes, at most 8 MB larger than before those
# jobs ran (pg_database_size): their generation's partition is truncated
# whole rather than deleted row by row, leaving no dead tuples behind.
# Also that jobs still kept hold their partition (nothing is given back
# while one job of the generation remains), and that nothing of a kept job
# is lost meanwhile.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $ROWS = 200_000;
my $JOBS = 3;
my $MB = 1024 * 1024;

start_mock();
mock_post('/_control/reset');
my $node = bulkops_node('retention');
my $url = mock_url('/clinia/sources/ret/v1');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	SELECT bulkops.create_target('ret', 'clinia', '$url', 'Row', NULL,
	                             '{"batch_size": 5000, "concurrency": 4}');
	CREATE TABLE src AS
	SELECT i AS id, 'customer ' || i AS name, 'c' || i || '\@example.com' AS email,
	       i % 1000 AS score
	FROM generate_series(1, $ROWS) i;
	CHECKPOINT;
});
# the partitions are made before anything is measured
ok( $node->poll_query_until('postgres',
		"SELECT count(*) >= 3 FROM pg_inherits WHERE inhparent = 'bulkops.batches'::regclass"),
	'the worker created the partitions of this generation and the next');
my $before = $node->safe_psql('postgres', 'SELECT pg_database_size(current_database())');

my @jobs;
for (1 .. $JOBS)
{
	my $job = $node->safe_psql('postgres',
		"SELECT bulkops.bulk_upsert('ret', 'src', key => 'id')");
	is(wait_for_job($node, $job, 180), 'succeeded', "job $job pushed $ROWS rows");
	push @jobs, $job;
}
my $ids = join ',', @jobs;
is( $node->safe_psql('postgres',
		"SELECT count(*), count(DISTINCT (job_id, row_no)) FROM bulkops.receipts WHERE job_id IN ($ids)"),
	($ROWS * $JOBS) . '|' . ($ROWS * $JOBS),
	'one receipt per row of every job');
my $grown = $node->safe_psql('postgres', 'SELECT pg_database_size(current_database())');
cmp_ok($grown - $before, '>', 8 * $MB,
	sprintf('the jobs made the database %.1f MB larger', ($grown - $before) / $MB));

# A job that is kept holds its generation's partition: with a retention
# that expires the older jobs but not a younger one, the older ones are
# deleted alone (a few batch rows each) and the younger one keeps all its
# receipts.
sleep 12;
my $kept = $node->safe_psql('postgres', qq{
	SELECT bulkops.bulk_upsert('ret', 'SELECT * FROM src WHERE id <= 10', key => 'id')});
is(wait_for_job($node, $kept), 'succeeded', 'one more, small job, later');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET bulkops.receipt_retention = '10s'; SELECT pg_reload_conf()");
ok( $node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT FROM bulkops.jobs WHERE id IN ($ids))"),
	'the older jobs expire and are forgotten');
is( $node->safe_psql('postgres',
		"SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') "
		  . "FROM bulkops.receipts WHERE job_id = $kept"),
	'10|10', 'the younger job keeps its receipts meanwhile');

# every job expires now
$node->safe_psql('postgres',
	"ALTER SYSTEM SET bulkops.receipt_retention = '1s'; SELECT pg_reload_conf()");
my $expired = time;
ok( $node->poll_query_until('postgres',
		"SELECT NOT EXISTS (SELECT FROM bulkops.jobs WHERE id = $kept)"),
	'the last job expires and is forgotten');
my ($size, $took);
while (1)
{
	$size = $node->safe_psql('postgres', 'SELECT pg_database_size(current_database())');
	$took = time - $expired;
	last if $size - $before <= 8 * $MB || $took > 120;
	sleep 1;
}
cmp_ok(($size - $before) / $MB, '<=', 8,
	sprintf('%.1f s after the jobs expired the database is %.1f MB larger than before them',
		$took, ($size - $before) / $MB));
cmp_ok($took, '<=', 120, 'within two minutes');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = 'bulkops' "
		  . "AND relname LIKE 'batches%' AND n_dead_tup > 1000"),
	'0', 'no partition of batches is left with dead rows to vacuum');

# and the queue works on: a job after the purge
my $after = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('ret', 'SELECT * FROM src WHERE id <= 1000', key => 'id')");
is(wait_for_job($node, $after), 'succeeded', 'a job pushed after the purge succeeds');

$node->stop;
done_testing();
