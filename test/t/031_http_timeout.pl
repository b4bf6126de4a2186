# 031_http_timeout.pl - an answer slower than the request time limit
# (bulkops.http_timeout, or the target/job option http_timeout) ends the request;
# what follows depends on whether repeating it is safe.
#
#   1. upsert (idempotent), submit answered 3 s late with a 0.5 s limit: the
#      submit is sent again and the job succeeds, its receipts counting 2 attempts
#   2. insert (not idempotent), same: the rows are unknown, saying the request
#      timed out and may have been applied; nothing is sent twice
#   3. a poll answered 3 s late: polls are always safe to repeat; job succeeds
#   4. the setting bulkops.http_timeout (500ms, reloaded) rather than the option
#      gives the same as 1; with the default of 30 s the same delay is waited out
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ROWS = 10;

start_mock();
mock_post('/_control/reset');

my $node = bulkops_node('timeout');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE TABLE t AS SELECT i AS id, 'row ' || i AS name FROM generate_series(1, $ROWS) AS i;
});

# The next request of $method to source $src is answered 3 s late.
sub slow_once
{
	my ($src, $method) = @_;
	mock_faults(
		{
			action  => 'delay',
			seconds => 3,
			method  => $method,
			path    => "^/clinia/sources/$src/",
			times   => 1
		});
}

sub receipts
{
	my ($job) = @_;
	return $node->safe_psql('postgres',
		"SELECT status, attempts, count(*) FROM bulkops.receipts WHERE job_id = $job "
		  . "GROUP BY 1, 2 ORDER BY 1, 2");
}

# 1. upsert: the slow submit is given up and sent again
{
	clinia_target($node, 'up', '{"http_timeout": 0.5}');
	slow_once('up', 'POST');
	my $job = $node->safe_psql('postgres', "SELECT bulkops.bulk_upsert('up', 't', key => 'id')");
	is(wait_for_job($node, $job, 60), 'succeeded', 'upsert: job succeeded');
	is(mock_get('/_control/faults')->{rules}[0]{fired}, 1, 'upsert: one submit was slow');
	is(receipts($job), "succeeded|2|$ROWS", 'upsert: every row succeeded at the second attempt');
	is(mock_requests('up', 'POST'), 2, 'upsert: the submit was sent twice');
}

# 2. insert: the slow submit may have been applied; it is not repeated
{
	clinia_target($node, 'ins', '{"http_timeout": 0.5}');
	slow_once('ins', 'POST');
	my $job = $node->safe_psql('postgres', "SELECT bulkops.bulk_insert('ins', 't')");
	is(wait_for_job($node, $job, 60), 'failed', 'insert: job failed (no row known to be created)');
	is(receipts($job), "unknown|1|$ROWS", 'insert: every row unknown after one attempt');
	like(
		$node->safe_psql('postgres',
			"SELECT DISTINCT error_message FROM bulkops.receipts WHERE job_id = $job"),
		qr/^submit failed: Timeout was reached.*; the request may have been applied, and insert is not safe to repeat$/,
		'insert: the receipts say the request timed out and may have been applied');
	is(mock_requests('ins', 'POST'), 1, 'insert: the submit was not sent again');
}

# 3. a slow poll is repeated
{
	clinia_target($node, 'poll', '{"http_timeout": 0.5}');
	slow_once('poll', 'GET');
	my $job = $node->safe_psql('postgres', "SELECT bulkops.bulk_insert('poll', 't')");
	is(wait_for_job($node, $job, 60), 'succeeded', 'poll: job succeeded');
	is(mock_get('/_control/faults')->{rules}[0]{fired}, 1, 'poll: one poll was slow');
	cmp_ok(mock_requests('poll', 'GET'), '>=', 2, 'poll: the task was polled again');
	is(mock_requests('poll', 'POST'), 1, 'poll: the insert was submitted once');
	is(receipts($job), "succeeded|1|$ROWS", 'poll: every row succeeded');
}

# 4. the setting, not the option
{
	clinia_target($node, 'guc', '{}');
	slow_once('guc', 'POST');
	my $job = $node->safe_psql('postgres', "SELECT bulkops.bulk_upsert('guc', 't', key => 'id')");
	is(wait_for_job($node, $job, 60), 'succeeded', 'default 30 s: job succeeded');
	is(receipts($job), "succeeded|1|$ROWS", 'default 30 s: the slow answer was waited for');

	$node->safe_psql('postgres',
		"ALTER SYSTEM SET bulkops.http_timeout = '500ms'; SELECT pg_reload_conf()");
	$node->poll_query_until('postgres', "SELECT current_setting('bulkops.http_timeout') = '500ms'");
	slow_once('guc', 'POST');
	$job = $node->safe_psql('postgres', "SELECT bulkops.bulk_upsert('guc', 't', key => 'id')");
	is(wait_for_job($node, $job, 60), 'succeeded', 'setting 500ms: job succeeded');
	is(receipts($job), "succeeded|2|$ROWS", 'setting 500ms: the slow submit was sent again');
}

ok(!grep(/terminated by signal/, slurp_file($node->logfile)), 'no process crashed');
$node->stop;
done_testing();
