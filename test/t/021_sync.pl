# 021_sync.pl - syncs through crashes, at a size of many batches, and the
# notifications of the jobs they and plain pushes end.
#
# Proves that:
#  - NOTIFY bulkops_jobs reaches a listening session for every job that ends,
#    a plain push of an empty source (a job with no rows) included, with the
#    job's id as its only payload;
#  - a mirror sync of 20,000 rows in batches of 1,000 whose worker is killed
#    after an answer arrived and before its receipts were stored, and again
#    with its receipts written but not committed, ends every job with exactly
#    one receipt per row, all succeeded (upserts and deletes are safe to
#    send again); the remote side then holds exactly the source's keys and
#    the key a plain push put there; and the next run has nothing to send:
#    the state, folded from the receipts, lost nothing and skipped nothing.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use BulkopsCrash;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $N = 20_000;

start_mock();
mock_post('/_control/reset');
mock_post('/_control/config', { clinia => { pending_polls => 1 } });

my $node = bulkops_node('sync', 'restart_after_crash = on');
$node->safe_psql('postgres', 'CREATE EXTENSION bulkops');
clinia_target($node, 'sy', '{"batch_size": 1000, "concurrency": 2}');
$node->safe_psql(
	'postgres', qq{
	CREATE TABLE src AS SELECT i AS id, 'thing ' || i AS name FROM generate_series(1, $N) AS i;
	SELECT bulkops.create_sync('mirror', 'sy', 'src', 'id', 'mirror');
});

# the keys the mock holds for the target, sorted as numbers
sub remote_keys
{
	my $store = mock_get('/_control/clinia/store?src=sy&type=Row');
	return join(',', sort { $a <=> $b } keys %$store);
}

sub source_keys
{
	my ($extra) = @_;
	my $keys = $node->safe_psql('postgres',
		"SELECT string_agg(id::text, ',' ORDER BY id) FROM "
		  . "(SELECT id FROM src UNION ALL SELECT unnest('{$extra}'::int[])) k");
	return $keys;
}

# every job of the sync ended with one succeeded receipt per row
sub check_job
{
	my ($job, $what, $rows) = @_;
	is(wait_for_job($node, $job, 120), 'succeeded', "$what: job $job succeeded");
	is( $node->safe_psql(
			'postgres', qq{
			SELECT count(*) || '|' || count(DISTINCT row_no) || '|'
			       || count(*) FILTER (WHERE status = 'succeeded')
			FROM bulkops.receipts WHERE job_id = $job}),
		"$rows|$rows|$rows",
		"$what: exactly one succeeded receipt for each of its $rows rows");
	return;
}

# 1. notifications: a listener gets the id of every job that ends
my ($lin, $lout, $lerr) = ('', '', '');
my $listener = IPC::Run::start(
	[
		'psql', '-X', '-d', $node->connstr('postgres'),
		'-c', 'LISTEN bulkops_jobs', '-c', 'SELECT pg_sleep(6)', '-c', 'SELECT 1'
	],
	\$lin, \$lout, \$lerr);
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(6)'"),
	'a session listens on bulkops_jobs');
my $empty = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('sy', 'SELECT 1 AS id WHERE false', key => 'id')");
is($node->safe_psql('postgres', "SELECT state || '|' || rows_total FROM bulkops.jobs WHERE id = $empty"),
	'succeeded|0', "an empty source's job $empty ended at once");
my $plain = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('sy', 'SELECT 99999 AS id, ''foreign'' AS name', key => 'id')");
is(wait_for_job($node, $plain), 'succeeded', "a plain push's job $plain ended");
$listener->finish;
like($lout, qr/Asynchronous notification "bulkops_jobs" with payload "$empty" received/,
	'the job with no rows was notified, its id the payload');
like($lout, qr/Asynchronous notification "bulkops_jobs" with payload "$plain" received/,
	"the plain push's job was notified");

# 2. the first run, its worker killed after an answer and before its receipts
my $offset = arm_crash($node, 'poll_answered:5');
my $job = $node->safe_psql('postgres', "SELECT bulkops.run_sync('mirror')");
wait_for_crash($node, 'first run', $offset, [$job]);
disarm_crash($node);
check_job($job, 'first run', $N);
is(remote_keys(), source_keys('99999'), 'the remote side holds the source and the foreign key');
is($node->safe_psql('postgres', "SELECT bulkops.run_sync('mirror') IS NULL"),
	't', 'the next run has nothing to send');

# 3. changes over many batches, the worker killed with receipts written but
# not committed: 7,000 deletes, 300 updates, 5 new keys
$node->safe_psql(
	'postgres', qq{
	DELETE FROM src WHERE id % 3 = 0 AND id > 2000;
	UPDATE src SET name = name || ' v2' WHERE id <= 300;
	INSERT INTO src SELECT i, 'new ' || i FROM generate_series($N + 1, $N + 5) AS i;
});
my $expect = $node->safe_psql('postgres',
	"SELECT count(*) FROM bulkops.preview_sync('mirror')");
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(change || ' ' || n, ', ' ORDER BY change) FROM "
		  . "(SELECT change, count(*) AS n FROM bulkops.preview_sync('mirror') GROUP BY 1) c"),
	'changed 300, delete 6000, new 5',
	'the preview counts the changes');
$offset = arm_crash($node, 'receipts:3');
$job = $node->safe_psql('postgres', "SELECT bulkops.run_sync('mirror')");
wait_for_crash($node, 'second run', $offset, [$job]);
disarm_crash($node);
check_job($job, 'second run', $expect);
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(operation || ' ' || n, ', ' ORDER BY operation) FROM "
		  . "(SELECT operation, count(*) AS n FROM bulkops.batches WHERE job_id = $job GROUP BY 1) b"),
	'delete 6, upsert 1',
	'the deletes went in batches of their own');
is(remote_keys(), source_keys('99999'),
	'the remote side holds the source and the foreign key, nothing more');
is($node->safe_psql('postgres', "SELECT bulkops.run_sync('mirror') IS NULL"),
	't', 'the next run has nothing to send');
$node->stop;
done_testing();
