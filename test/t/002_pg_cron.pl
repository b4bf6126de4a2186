# 002_pg_cron.pl - bulkops and pg_cron preloaded together; a push scheduled with
# pg_cron runs.
#
# Proves that with shared_preload_libraries = 'bulkops,pg_cron' both start, that a
# bulkops.bulk_upsert() scheduled with cron.schedule() creates a job when pg_cron
# runs it (in pg_cron's own session, committed there), that the bulkops worker is
# woken by that commit and the job reaches 'succeeded' with one 'succeeded'
# receipt per source row, and that cron.unschedule() stops it.  pg_cron 1.5+ runs
# the push every second; older versions (Debian 12 ships 1.4) only know minutes,
# so the test then schedules '* * * * *' and waits for the next minute.
# Also the nightly recipe of the README's Sync section with overlapping
# schedules: two cron jobs run bulkops.run_sync() on one sync at the same
# moment, every time; both runs succeed and exactly one job is enqueued (the
# other run finds it open, or later finds nothing changed, and returns NULL).
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ROWS = 500;

start_mock();
mock_post('/_control/reset');

my $node = bulkops_node(
	'cron',
	"shared_preload_libraries = 'bulkops,pg_cron'",
	"cron.database_name = 'postgres'",
	# the test cluster listens on a Unix socket only: pg_cron connects there
	sub { "cron.host = '" . $_[0]->host . "'" });

my $url = mock_url('/clinia/sources/cron/v1');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE EXTENSION pg_cron;
	CREATE TABLE t AS SELECT i AS id, 'row ' || i AS name FROM generate_series(1, $ROWS) AS i;
	SELECT bulkops.create_target('t', 'clinia', '$url', resource => 'Row',
	                             options => '{"batch_size": 100}');
	SELECT bulkops.create_sync('crm-rows', 't', 't', 'id', 'mirror');
});

my $version = $node->safe_psql('postgres',
	"SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'");
my ($major, $minor) = $version =~ /^(\d+)\.(\d+)/;
my $seconds = $major > 1 || ($major == 1 && $minor >= 5);
my $schedule = $seconds ? '1 second' : '* * * * *';
my $wait     = $seconds ? 60 : 150;
note "pg_cron $version: schedule '$schedule', waiting up to ${wait}s";

my $cronjob = $node->safe_psql(
	'postgres', q{
	SELECT cron.schedule('push', '} . $schedule . q{',
	    $$SELECT bulkops.bulk_upsert('t', 'SELECT id, name FROM t', key => 'id')$$)});
like($cronjob, qr/^\d+$/, "push scheduled as cron job $cronjob");
my @synccron = map {
	$node->safe_psql('postgres',
		qq{SELECT cron.schedule('sync-$_', '$schedule', \$\$SELECT bulkops.run_sync('crm-rows')\$\$)})
} ('a', 'b');
like("@synccron", qr/^\d+ \d+$/, "two overlapping schedules of one sync: @synccron");

{
	local $PostgreSQL::Test::Utils::timeout_default = $wait;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) > 0 FROM bulkops.jobs WHERE target = 't' AND state = 'succeeded'"
		),
		'a bulkops job created by the cron run reached succeeded');
}

my $job = $node->safe_psql('postgres',
	"SELECT min(id) FROM bulkops.jobs WHERE target = 't' AND state = 'succeeded'");
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) > 0 FROM cron.job_run_details WHERE jobid = $cronjob AND status = 'succeeded'"
	),
	'pg_cron recorded a succeeded run of the push');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM cron.job_run_details WHERE jobid = $cronjob AND status = 'failed'"
	),
	'0',
	'and no failed run');
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*), count(DISTINCT row_no), count(*) FILTER (WHERE status = 'succeeded')
		FROM bulkops.receipts WHERE job_id = $job}),
	"$ROWS|$ROWS|$ROWS",
	"job $job: one succeeded receipt per row");
is( $node->safe_psql(
		'postgres',
		"SELECT rows_total || '|' || rows_succeeded FROM bulkops.jobs WHERE id = $job"),
	"$ROWS|$ROWS",
	"job $job: counters");
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*) FROM t
		WHERE NOT EXISTS (SELECT 1 FROM bulkops.receipts r
		                  WHERE r.job_id = $job AND r.key = t.id::text)}),
	'0',
	"job $job: every source row has its receipt");

my $applied = mock_get('/_control/clinia/applied?src=cron&type=Row');
is(scalar(grep { $applied->{$_} } 1 .. $ROWS), $ROWS,
	'the remote side received every row');

# the two schedules of the sync: both ran (at least once), one job
ok( $node->poll_query_until(
		'postgres', qq{
		SELECT count(DISTINCT jobid) = 2 FROM cron.job_run_details
		WHERE jobid IN ($synccron[0], $synccron[1]) AND status = 'succeeded'}
	),
	'both schedules of the sync ran and succeeded');
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*) FROM cron.job_run_details
		WHERE jobid IN ($synccron[0], $synccron[1]) AND status <> 'succeeded'}),
	'0',
	'no run of the sync failed');
for my $name ('sync-a', 'sync-b')
{
	is($node->safe_psql('postgres', "SELECT cron.unschedule('$name')"),
		't', "$name unscheduled");
}
my $syncjobs = $node->safe_psql('postgres',
	"SELECT count(*) || '|' || min(j.id) FROM bulkops.jobs j JOIN bulkops.syncs s ON s.id = j.sync_id");
my ($nsync, $syncjob) = split /\|/, $syncjobs;
is($nsync, '1', 'overlapping runs of the sync enqueued exactly one job');
is(wait_for_job($node, $syncjob), 'succeeded', "the sync's job $syncjob succeeded");
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FILTER (WHERE status = 'succeeded') FROM bulkops.receipts WHERE job_id = $syncjob"),
	$ROWS,
	"the sync's job: a succeeded receipt per row");
my ($out, $err);
$node->psql('postgres', "SELECT bulkops.run_sync('crm-rows') IS NULL",
	stdout => \$out, stderr => \$err);
is($out, 't', 'a run after it: nothing to send');
like($err, qr/NOTICE:  sync "crm-rows": nothing to send \($ROWS keys unchanged\)/,
	'and a NOTICE that says so');
$node->psql('postgres', "BEGIN; SELECT bulkops.run_sync('crm-rows'); "
	  . "UPDATE t SET name = 'x' WHERE id = 1; SELECT bulkops.run_sync('crm-rows'); "
	  . "SELECT bulkops.run_sync('crm-rows'); ROLLBACK",
	stdout => \$out, stderr => \$err);
like($err, qr/NOTICE:  sync "crm-rows" still has job \d+ queued or running: nothing enqueued/,
	'a run while its job is open: a NOTICE that names the job');

is($node->safe_psql('postgres', "SELECT cron.unschedule('push')"),
	't', 'push unscheduled');
is($node->safe_psql('postgres', "SELECT count(*) FROM cron.job"),
	'0', 'no cron job left');

$node->stop;
done_testing();
