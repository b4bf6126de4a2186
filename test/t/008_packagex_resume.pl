# 008_packagex_resume.pl - a packagex batch stopped while it fetches its errors
# file resumes from what was persisted with its step.
#
# Proves: the link to the errors file (the step's note, batches.step_data) is
# committed before it is fetched; a server restart while that fetch is in flight
# resumes the batch at that step, without submitting the batch again; when the
# stored link has expired by then (403), a poll gets a fresh one; every row ends
# with its real outcome (the row the errors file lists failed, the others
# succeeded), exactly one receipt each; and the done batch keeps no link.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

start_mock();
mock_post('/_control/reset');
mock_post('/_control/config', { packagex => { pending_polls => 1 } });
# the first fetch of an errors file hangs (the restart comes meanwhile); the
# next one finds the link expired
mock_post(
	'/_control/faults',
	{
		rules => [
			{
				action  => 'delay',
				method  => 'GET',
				path    => '^/packagex/files/',
				seconds => 5,
				times   => 1
			},
			{
				action => 'status',
				status => 403,
				method => 'GET',
				path   => '^/packagex/files/',
				times  => 1,
				body   => '{"error": {"code": "forbidden", "message": "link expired"}}'
			}
		]
	});

my $node = bulkops_node('pxresume');
my $url  = mock_url('/packagex/v1');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE TABLE t AS
	    SELECT i AS ref, 'contact ' || i AS name,
	           CASE WHEN i = 3 THEN 'bad email' END AS _fail
	    FROM generate_series(1, 5) AS i;
	SELECT bulkops.create_target('px', 'packagex', '$url', 'contact');
});
my $job = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('px', 't', key => 'ref')");

ok( $node->poll_query_until(
		'postgres', qq{
		SELECT step = 2 AND step_data LIKE '%/errors.json?sig=%'
		FROM bulkops.batches WHERE job_id = $job}),
	'the errors file link is persisted with the step before it is fetched');

my $fetching = 0;
for (1 .. 100)
{
	$fetching = mock_get('/_control/faults')->{rules}[0]{fired};
	last if $fetching;
	select(undef, undef, undef, 0.1);
}
is($fetching, 1, 'the fetch of the errors file is in flight');

$node->restart;
is(wait_for_job($node, $job, 60), 'partial', 'the resumed job ends partial');

is( $node->safe_psql(
		'postgres', qq{
		SELECT string_agg(key || ':' || status || ':' || coalesce(error_code, ''), ' '
		                  ORDER BY row_no), count(DISTINCT row_no)
		FROM bulkops.receipts WHERE job_id = $job}),
	'1:succeeded: 2:succeeded: 3:failed:validation_failed 4:succeeded: 5:succeeded:|5',
	'each row has one receipt with its real outcome');

my $stats = mock_get('/_control/stats');
is($stats->{packagex}{submits}, 1, 'the batch was not submitted again');
is(mock_get('/_control/faults')->{rules}[1]{fired},
	1, 'the stale link was refused, and a fresh one fetched');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM bulkops.batches WHERE job_id = $job AND step_data IS NOT NULL"),
	0, 'the done batch keeps no link');

$node->stop;
done_testing();
