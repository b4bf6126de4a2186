# 019_query_replace_restart.pl - a bulk_query export in mode "replace" that
# the worker's death interrupts between pages, twice, leaves the table's old
# rows untouched until the export ends, and then exactly the new rows.
#
# Pages of a replace are staged (bulkops.export_pages) in the transaction
# that stores the locator after them, and the table's rows are replaced only
# in the transaction that ends the job: every reading taken meanwhile, one
# statement each, across both crashes, sees either all the old rows or all
# the new ones, never a mix, and the staged pages follow the locator.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $RECORDS = 20000;
my $PAGE    = 500;
my $OLD     = 1000;

start_mock();
my $node = export_node('query_replace', $RECORDS, $PAGE);
$node->safe_psql('postgres', qq{
	CREATE TABLE exported ("Id" text PRIMARY KEY, "Name" text);
	INSERT INTO exported SELECT 'OLD' || i, 'old ' || i FROM generate_series(1, $OLD) i;
});
my $job = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_query('sf', 'SELECT Id, Name FROM Account', 'exported', "
	  . "'{\"mode\": \"replace\"}')");

# What a reader sees, in one statement: how many rows, how many of them old,
# and whether the job has ended.  undef while the server restarts.
my %seen;
sub look
{
	my ($rc, $out) = $node->psql('postgres',
		"SELECT count(*), count(*) FILTER (WHERE \"Id\" LIKE 'OLD%'), "
		  . "(SELECT state NOT IN ('queued', 'running') FROM bulkops.jobs WHERE id = $job) "
		  . "FROM exported");
	return undef if $rc != 0;
	my ($rows, $old, $ended) = split /\|/, $out;
	$seen{"$rows/$old/$ended"}++;
	return ($rows, $old, $ended);
}

# kill the worker once a few pages are in, twice
for my $round (1 .. 2)
{
	my $want = $round * 5 * $PAGE;
	ok( query_until($node,
			"SELECT rows_total >= $want FROM bulkops.jobs WHERE id = $job"),
		"round $round: pages are being staged");
	my ($rows, $old, $ended) = look();
	is("$rows/$old/$ended", "$OLD/$OLD/f",
		"round $round: mid-export the table holds its old rows, and only them");
	my ($total, $staged) = split /\|/, $node->safe_psql('postgres',
		"SELECT rows_total, (SELECT count(*) FROM bulkops.export_pages WHERE job_id = $job) "
		  . "FROM bulkops.jobs WHERE id = $job");
	is($staged * $PAGE, $total, "round $round: every page counted is staged");
	my $pid = worker_pid($node);
	ok($pid, "round $round: the worker runs");
	kill 'KILL', $pid;
	cmp_ok($total, '<', $RECORDS - 10 * $PAGE, "round $round: killed with pages left to fetch");
	ok( query_until($node,
			"SELECT count(*) = 1 AND min(pid) <> $pid FROM pg_stat_activity "
			  . "WHERE backend_type = 'bulkops worker'"),
		"round $round: a new worker took over");
	($rows, $old, $ended) = look();
	is("$rows/$old", "$OLD/$OLD", "round $round: after the crash the old rows are still there");
}

# readings until the job ends: each is the old table or the new one
for (my $i = 0; $i < 1200; $i++)
{
	my ($rows, $old, $ended) = look();
	last if defined $ended && $ended eq 't';
	usleep(50_000);
}
is(wait_for_job($node, $job, 120), 'succeeded', 'the export finished');
look();
my @mixed = grep { !/^($OLD\/$OLD\/f|$RECORDS\/0\/t)$/ } keys %seen;
is_deeply(\@mixed, [], 'no reading saw a table other than the old one or the new one')
  or diag explain \%seen;
ok($seen{"$RECORDS/0/t"}, 'the last reading saw the new table');

my ($rows, $distinct, $old, $total, $succeeded, $staged) = split /\|/,
  $node->safe_psql('postgres', qq{
	SELECT count(*), count(DISTINCT "Id"), count(*) FILTER (WHERE "Id" LIKE 'OLD%'),
	       j.rows_total, j.rows_succeeded,
	       (SELECT count(*) FROM bulkops.export_pages WHERE job_id = $job)
	FROM exported, bulkops.jobs j WHERE j.id = $job
	GROUP BY j.rows_total, j.rows_succeeded});
is($rows,      $RECORDS, 'every remote record is in the table');
is($distinct,  $RECORDS, 'none of them twice');
is($old,       0,        'no old row is left');
is($total,     $RECORDS, 'the job counted each record once');
is($succeeded, $RECORDS, 'and stored each once');
is($staged,    0,        'no staged page is left');
export_pages_fetched($RECORDS, $PAGE);
unlike(slurp_file($node->logfile), qr/PANIC/, 'no PANIC in the server log');

$node->stop;
done_testing();
