# 027_blueconic_feedback.pl - blueconic's option feedback NOTIFYs each answer
# (the SDK's per-request callback) on channel bulkops_feedback.
#
# Proves: a session that LISTENs gets one notification per answer the worker
# stored, with the job, batch, HTTP status, entries and counts by state; an
# answer that was not stored (a 503, which holds the target and is sent
# again) notifies nothing; each batch of
# a job notifies its own answer; a job without feedback notifies nothing.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;

start_mock();
mock_post('/_control/reset');
mock_post('/_control/config', { blueconic => { bearer => 'bc-token' } });

my $node = bulkops_node('bcfeedback');
my $url  = mock_url('/blueconic');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	SELECT bulkops.create_target('bc', 'blueconic', '$url', 'groups',
	    '{"type": "bearer", "token": "bc-token"}',
	    '{"group_type_id": "company", "create_missing": true, "feedback": true,
	      "max_attempts": 3}');
});

# The notifications a session LISTENing to bulkops_feedback gets while the job
# that $source pushes (with $options) runs to its end, decoded; and the job.
sub notified
{
	my ($source, $options) = @_;
	my $out = $node->safe_psql(
		'postgres', qq{
		LISTEN bulkops_feedback;
		SELECT bulkops.bulk_upsert('bc', \$\$$source\$\$, key => 'id',
		                           options => '$options') AS job \\gset
		SELECT bulkops.wait(:job, '60 s');
		SELECT pg_sleep(0.2);
		SELECT 1;
	});
	my @payloads = map { decode_json($_) }
	  ($out =~ /^Asynchronous notification "bulkops_feedback" with payload "(.*)" received/mg);
	my $job = $node->safe_psql('postgres', 'SELECT max(id) FROM bulkops.jobs');
	return ($job, @payloads);
}

# 1. a 503 first: retried, and only the stored answer is told of
mock_faults({ method => 'PUT', path => '/rest/v2/groups$', times => 1,
	action => 'status', status => 503 });
my ($job, @n) = notified(
	q{SELECT 'F-' || i AS id, 'n' || i AS name,
	         CASE WHEN i = 2 THEN 'NOTFOUND' END AS _state
	  FROM generate_series(1, 5) AS i}, '{}');
is(scalar @n, 1, 'one notification for one stored answer; none for the 503');
is_deeply(
	$n[0],
	{ job_id => $job, batch_no => 1, status => 200, entries => 5,
	  counts => { CREATED => 4, NOTFOUND => 1 } },
	'it names the job, the status, the entries and their counts by state');
is( $node->safe_psql('postgres',
		"SELECT max(attempts) FROM bulkops.receipts WHERE job_id = $job"),
	'1', 'a 503 holds the target and uses no attempt: the rows were stored from the first');
is( scalar(grep { $_->{method} eq 'PUT' && $_->{path} =~ m{/rest/v2/groups$} }
		  @{ mock_get('/_control/requests') }),
	2, 'the request was sent twice: the 503 and the stored answer');
mock_faults();

# 2. a job of three batches: each batch's answer is told of
($job, @n) = notified(q{SELECT 'M-' || i AS id FROM generate_series(1, 5) AS i},
	'{"batch_size": 2}');
is_deeply([ sort map { "$_->{batch_no}:$_->{status}:$_->{entries}" } @n ],
	[ map { "$_:200:" . ($_ == 3 ? 1 : 2) } 1 .. 3 ],
	'three batches, three notifications, each with its batch and entries');
is(scalar(grep { $_->{job_id} == $job } @n), 3, 'all of the job');
is( $node->safe_psql('postgres',
		"SELECT remote_progress FROM bulkops.job_progress WHERE id = $job"),
	'{"CREATED": 5}', 'the progress sums the same answers');

# 3. without feedback, nothing
($job, @n) = notified(q{SELECT 'Q-' || i AS id FROM generate_series(1, 3) AS i},
	'{"feedback": false}');
is(scalar @n, 0, 'no notification without feedback');
is($node->safe_psql('postgres', "SELECT state FROM bulkops.jobs WHERE id = $job"),
	'succeeded', 'the job itself ran');

$node->stop;
done_testing();
