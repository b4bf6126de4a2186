# 035_monitoring_log.pl - what a DBA reads in the server log and in psql.
#
# Proves that each job that ends writes exactly one LOG line in the agreed
# format (partial with its top error codes, succeeded, cancelled); that a
# target answered 429 logs once that it entered backoff and once that it
# left it; that bulkops.wait() prints the recent rate and an ETA while it
# waits and a one-line summary when the job ends; that the per-target row
# counters are folded into one row per target and creator without losing
# a row, and survive a restart while the shared-memory counters start
# again; and that no secret (a bearer token, an OAuth client secret)
# reaches the log.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

start_mock();
mock_post('/_control/reset');
mock_faults();

# the test's own statements name the secrets: they are not logged
my $node = bulkops_node('monlog', "log_statement = 'none'");
my $offset = -s $node->logfile;
$node->safe_psql('postgres', 'CREATE EXTENSION bulkops');
rows_with_failures($node, 't', 500, 25);
$node->safe_psql('postgres', 'CREATE TABLE ok AS SELECT id, name FROM t');
my $url = mock_url('/clinia/sources/crm/v1');
$node->safe_psql('postgres',
	"SELECT bulkops.create_target('crm', 'clinia', '$url', 'Row', "
	  . "'{\"type\": \"bearer\", \"token\": \"log-secret-bearer-7\"}', "
	  . "'{\"batch_size\": 100, \"concurrency\": 1}')");
my $oa_url = mock_url('/clinia/sources/oa/v1');
my $token_url = mock_url('/oauth2/token');
$node->safe_psql('postgres',
	"SELECT bulkops.create_target('oa', 'clinia', '$oa_url', 'Row', "
	  . "jsonb_build_object('type', 'oauth2_client_credentials', 'client_id', 'c', "
	  . "'client_secret', 'log-secret-oauth-8', 'token_url', '$token_url'))");
mock_post('/_control/config', { oauth => { client_id => 'c', client_secret => 'other' } });

sub lines_about
{
	my ($re) = @_;
	my @l = grep { /$re/ } split /\n/, slurp_file($node->logfile, $offset);
	return scalar @l;
}

# 1. a partial job: one line with its counts and error codes
my $job = $node->safe_psql('postgres', "SELECT bulkops.bulk_upsert('crm', 't', key => 'id')");
is(wait_for_job($node, $job), 'partial', 'the job ends partial');
ok( log_says(
		$node,
		qr/LOG:  bulkops: job $job on target "crm" upsert ended partial: 480 succeeded, 20 failed \(VALIDATION 20\), 500 rows in \d+\.\d s\n/,
		$offset),
	'its line in the log');

# 2. a job through a target told to wait: it enters backoff, then leaves it
mock_faults(
	{
		path => '^/clinia/sources/crm/',
		method => 'POST',
		action => 'status',
		status => 429,
		headers => { 'Retry-After' => '2' },
		body => ''
	});
my $job2 = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('crm', 'ok', key => 'id', options => '{\"max_attempts\": 3}')");
is(wait_for_job($node, $job2), 'succeeded', 'the job told to wait succeeds');
ok( log_says(
		$node,
		qr/LOG:  bulkops holds every request to target "crm" until \d{4}-\S+ \S+\n.*DETAIL:  It answered HTTP 429, a rate or usage limit; Retry-After asked for 2 s\./,
		$offset),
	'entering backoff is logged');
ok( log_says(
		$node,
		qr/LOG:  bulkops sends to target "crm" again\n.*DETAIL:  It answered HTTP 2\d\d, without a limit; its requests were held from /,
		$offset),
	'leaving it too');
ok(log_says($node, qr/job $job2 on target "crm" upsert ended succeeded: 500 succeeded, 0 failed, 500 rows in/,
		$offset),
	'a job that succeeded has its line');
is(lines_about(qr/holds every request to target "crm"/), 1, 'one line on entering');
is(lines_about(qr/sends to target "crm" again/), 1, 'one line on leaving');
mock_faults();

# 3. wait() while a job runs: the recent rate and an ETA, then the summary.
# The second batch's submit is answered 6 s late, so wait() prints its
# progress (every 5 s) with the first batch done.
mock_faults(
	{
		path => '^/clinia/sources/crm/',
		method => 'POST',
		action => 'delay',
		seconds => 6,
		skip => 1
	});
my ($rc, $out, $err) = $node->psql(
	'postgres', q{
	SET client_min_messages = notice;
	SELECT bulkops.bulk_upsert('crm', 'SELECT * FROM ok WHERE id <= 300', key => 'id') AS job \\gset
	SELECT bulkops.wait(:job, '60 s');
});
is($out, 'succeeded', 'wait() returns the final state');
like($err, qr/NOTICE:  job (\d+): 100 of 300 rows done, \d+ rows\/s, ETA \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\S* \(in \d+ s\)\n/,
	'wait() prints the recent rate and an ETA');
# 100 rows in the first second or so, then none for 5 s: some 20 rows/s
# over the last minute, and 200 rows to go at that rate
my ($rate, $in) = $err =~ /100 of 300 rows done, (\d+) rows\/s, .*\(in (\d+) s\)/;
ok(defined $rate && $rate >= 5 && $rate <= 100, 'the rate is the recent one: ' . ($rate // 'none'));
ok(defined $in && $in >= 2 && $in <= 40, 'the ETA follows from it: in ' . ($in // '?') . ' s');
like($err,
	qr/NOTICE:  job \d+ on target "crm" upsert ended succeeded: 300 succeeded, 0 failed, 300 rows in \d+\.\d s$/m,
	'and one line when the job ends');
mock_faults();

# 4. a cancelled job and a job whose token fetch fails have their lines
my $job4 = $node->safe_psql(
	'postgres', q{
	SELECT bulkops.bulk_upsert('crm', 'ok', key => 'id',
	       options => '{"rate_limit": 1}')});
$node->safe_psql('postgres', "SELECT bulkops.cancel($job4)");
is(wait_for_job($node, $job4), 'cancelled', 'the job is cancelled');
ok(log_says($node, qr/job $job4 on target "crm" upsert ended cancelled: \d+ succeeded, 0 failed, \d+ cancelled/,
		$offset),
	'a cancelled job has its line');
my $job5 = $node->safe_psql('postgres', "SELECT bulkops.bulk_upsert('oa', 'ok', key => 'id')");
is(wait_for_job($node, $job5), 'failed', 'the job without a token fails');
ok(log_says($node, qr/job $job5 on target "oa" upsert ended failed: 0 succeeded, 500 failed/, $offset),
	'and has its line');
is(lines_about(qr/bulkops: job $_ on target/), 1, "one line for job $_")
  foreach ($job, $job2, $job4, $job5);

# 5. the row counters: folded into one row per target and creator, the
# sums those of the jobs
ok( query_until(
		$node, q{
		SELECT count(*) = count(DISTINCT (target, created_by)) FROM bulkops.row_counts},
		't', 30),
	'the row counters are folded');
my $jobs_sums = q{
	SELECT target, sum(rows_succeeded), sum(rows_failed), sum(rows_cancelled), sum(rows_unknown)
	FROM bulkops.jobs GROUP BY 1 ORDER BY 1};
my $counted = q{
	SELECT target, sum(succeeded), sum(failed), sum(cancelled), sum(unknown)
	FROM bulkops.row_counts GROUP BY 1 ORDER BY 1};
my $before = $node->safe_psql('postgres', $counted);
is($before, $node->safe_psql('postgres', $jobs_sums), 'and count what the jobs counted');
my $requests = q{SELECT value FROM bulkops.metrics WHERE metric = 'requests_total' AND target = 'crm'};
ok($node->safe_psql('postgres', $requests) > 0, 'requests were counted');

# 6. a restart: rows by status are kept, the counters of requests start again
$node->restart;
is($node->safe_psql('postgres', $counted), $before, 'row counters survive a restart');
is($node->safe_psql('postgres', $requests), '0', 'request counters start again at 0');

# 7. no secret anywhere in the log
my $log = slurp_file($node->logfile);
unlike($log, qr/log-secret/, 'no secret in the server log');
like($log, qr/target "oa" upsert ended failed/, 'positive control: the log was read');

$node->stop;
done_testing();
