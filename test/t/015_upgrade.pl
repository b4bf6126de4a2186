# 015_upgrade.pl - a new library in front of an old schema waits for the update.
#
# After the library is upgraded and the server restarted, but before ALTER
# EXTENSION bulkops UPDATE, the worker's statements would fail on columns
# the old schema lacks.  Proves that with bulkops installed at 1.1 the
# worker says, once, which version it needs, leaves a job queued (nothing
# is sent), and that after the update the job runs to the end with one
# receipt per row.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

start_mock();
mock_post('/_control/reset');

my $node = bulkops_node('upgrade');
my $offset = -s $node->logfile;
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION bulkops VERSION '1.1';
	CREATE TABLE things AS SELECT i AS id, 'thing ' || i AS name FROM generate_series(1, 2000) AS i;
});
ok( eval {
		local $PostgreSQL::Test::Utils::timeout_default = 30;
		$node->wait_for_log(
			qr/the bulkops extension in this database is version 1\.1, this library needs 1\.2/,
			$offset);
	},
	'the worker says which version it needs');
like(slurp_file($node->logfile, $offset), qr/HINT:  Run ALTER EXTENSION bulkops UPDATE/,
	'and what to run');

clinia_target($node, 'old', '{"batch_size": 500}');
my $job = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('old', 'things', key => 'id')");
sleep 2;
is($node->safe_psql('postgres', "SELECT state FROM bulkops.jobs WHERE id = $job"),
	'queued', 'the job waits while the schema is old');
is(mock_requests('old', 'POST'), 0, 'and nothing was sent');
my @said = slurp_file($node->logfile, $offset) =~ /this library needs/g;
is(scalar @said, 1, 'the worker said it once');

$node->safe_psql('postgres', 'ALTER EXTENSION bulkops UPDATE');
is(wait_for_job($node, $job, 60), 'succeeded', 'after the update the job ends succeeded');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*), count(DISTINCT row_no) FROM bulkops.receipts WHERE job_id = $job"),
	'2000|2000',
	'with one receipt per row');

$node->stop;
done_testing();
