# 015_upgrade.pl - a new library in front of an old schema waits for the update.
#
# After the library is upgraded and the server restarted, but before ALTER
# EXTENSION bulkops UPDATE, the worker's statements would fail on columns
# the old schema lacks, and the SQL functions' checks (per-target
# privileges) would have nothing to check against.  Proves that with
# bulkops installed at 1.1 the worker says, once, which version it needs
# and leaves a job that the old library queued alone (nothing is sent),
# that the SQL functions refuse with the same words, and that after the
# update the job runs to the end with one receipt per row.
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
			qr/the bulkops extension in this database is version 1\.1, this library needs 1\.3/,
			$offset);
	},
	'the worker says which version it needs');
like(slurp_file($node->logfile, $offset), qr/HINT:  Run ALTER EXTENSION bulkops UPDATE/,
	'and what to run');

foreach my $call ("SELECT bulkops.create_target('x', 'clinia', 'http://127.0.0.1:1/x', 'Row')",
	"SELECT bulkops.bulk_upsert('x', 'things', key => 'id')")
{
	my ($rc, $out, $err) = $node->psql('postgres', $call);
	like($err, qr/version 1\.1, this library needs 1\.3.*\n.*ALTER EXTENSION bulkops UPDATE/s,
		"refused on the old schema, saying why: $call");
}

# The job an older library queued: encoded by this one in a database at
# the current version that no worker serves, and carried over with dblink.
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', q{
	CREATE EXTENSION bulkops;
	CREATE TABLE things AS SELECT i AS id, 'thing ' || i AS name FROM generate_series(1, 2000) AS i;
});
clinia_target($node, 'old', '{"batch_size": 500}', 'other');
$node->safe_psql('other', "SELECT bulkops.bulk_upsert('old', 'things', key => 'id')");
my $job = $node->safe_psql('postgres', q{
	CREATE EXTENSION dblink;
	INSERT INTO bulkops.targets (name, dialect, url, resource, options)
	SELECT * FROM dblink('dbname=other', 'SELECT name, dialect, url, resource, options FROM bulkops.targets')
	  AS t(name text, dialect text, url text, resource text, options jsonb);
	INSERT INTO bulkops.jobs (id, target, dialect, operation, key_column, options, rows_total,
	                          bytes_total, batches_total, prologue)
	SELECT * FROM dblink('dbname=other', 'SELECT id, target, dialect, operation, key_column, options,
	                     rows_total, bytes_total, batches_total, prologue FROM bulkops.jobs')
	  AS j(id bigint, target text, dialect text, operation text, key_column text, options jsonb,
	       rows_total bigint, bytes_total bigint, batches_total int, prologue bytea);
	INSERT INTO bulkops.batches (job_id, batch_no, first_row, row_count, keys, offsets, body)
	SELECT * FROM dblink('dbname=other', 'SELECT job_id, batch_no, first_row, row_count, keys,
	                     offsets, body FROM bulkops.batches')
	  AS b(job_id bigint, batch_no int, first_row bigint, row_count int, keys text[],
	       offsets int[], body bytea);
	SELECT max(id) FROM bulkops.jobs;
});
sleep 2;
is($node->safe_psql('postgres', "SELECT state FROM bulkops.jobs WHERE id = $job"),
	'queued', 'the job waits while the schema is old');
is(mock_requests('old', 'POST'), 0, 'and nothing was sent');
my @said = slurp_file($node->logfile, $offset) =~ /bulkops worker: .*this library needs/g;
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
