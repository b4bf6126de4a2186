# 013_query_restart.pl - a bulk_query export survives the worker dying between
# pages: every remote record lands in the table exactly once.
#
# The worker writes each page in the transaction that also stores the
# locator of the next one, so after a kill -9 it resumes at the first page
# it had not written: no page is lost and none is written twice.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $RECORDS = 30000;
my $PAGE    = 500;

start_mock();
my $node = export_node('query_restart', $RECORDS, $PAGE);
my $job = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_query('sf', 'SELECT Id, Name FROM Account', 'exported')");

# kill the worker once a few pages are in, twice
for my $round (1 .. 2)
{
	my $want = $round * 5 * $PAGE;
	ok( query_until($node,
			"SELECT rows_succeeded >= $want FROM bulkops.jobs WHERE id = $job"),
		"round $round: pages are being written");
	my $pid = worker_pid($node);
	ok($pid, "round $round: the worker runs");
	my $done = $node->safe_psql('postgres',
		"SELECT rows_succeeded FROM bulkops.jobs WHERE id = $job");
	kill 'KILL', $pid;
	cmp_ok($done, '<', $RECORDS - 10 * $PAGE, "round $round: killed with pages left to fetch");
	ok( query_until($node,
			"SELECT count(*) = 1 AND min(pid) <> $pid FROM pg_stat_activity "
			  . "WHERE backend_type = 'bulkops worker'"),
		"round $round: a new worker took over");
}

is(wait_for_job($node, $job, 120), 'succeeded', 'the export finished');
my ($rows, $distinct, $total) = split /\|/, $node->safe_psql('postgres', qq{
	SELECT count(*), count(DISTINCT "Id"),
	       (SELECT rows_total FROM bulkops.jobs WHERE id = $job)
	FROM exported});
is($rows,     $RECORDS, 'every remote record is in the table');
is($distinct, $RECORDS, 'none of them twice');
is($total,    $RECORDS, 'the job counted each row once');
export_pages_fetched($RECORDS, $PAGE);
unlike(slurp_file($node->logfile), qr/PANIC/, 'no PANIC in the server log');

$node->stop;
done_testing();
