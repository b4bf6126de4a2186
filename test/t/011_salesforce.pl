# 011_salesforce.pl - salesforce jobs through OAuth and across restarts.
#
# Proves, against the mock's Bulk API 2.0 and its token endpoint:
#   1. the JWT bearer flow: a key made here by the openssl CLI signs the
#      assertion, the token endpoint defaults to the target's
#      /services/oauth2/token, and the token's instance_url becomes the API base;
#   2. a 401 INVALID_SESSION_ID in the middle of a job (its CSV upload) and an
#      expired token before a job: one new token, the request replayed, no
#      attempt used, nothing applied twice;
#   3. a restart while the remote job is still InProgress: the batch goes on
#      polling the same job (no second job, each inserted row applied once);
#   4. a restart between two result files: the rows settled from the first
#      file keep their receipts, the rest are read again after a fresh poll,
#      and the UNABLE_TO_LOCK_ROW rows still go to a new job;
#   5. a restart while an insert's job was being created: creating a job
#      applies nothing, so the rows are sent in a new job, not left unknown.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $dir = PostgreSQL::Test::Utils::tempdir();
my ($keyfile, $pubkey) = make_rsa_key($dir);
like($pubkey, qr/BEGIN PUBLIC KEY/, 'openssl made a key pair');

start_mock();
mock_post('/_control/reset');
mock_post(
	'/_control/config',
	{
		oauth => {
			client_id    => 'bulkops-app',
			username     => 'etl@example.com',
			public_key   => $pubkey,
			instance_url => mock_url('/salesforce')
		},
		salesforce => { oauth => JSON::PP::true, in_progress_polls => 1 }
	});

my $node = bulkops_node('salesforce');
my $login = mock_url('/sflogin');
my $instance = mock_url('/salesforce');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE TABLE acc AS SELECT i AS ext, 'account ' || i AS name,
	    CASE WHEN i % 10 = 3 THEN 'INVALID_EMAIL_ADDRESS:Email: invalid email address' END AS _fail,
	    CASE WHEN i % 10 = 7 THEN 1 END AS _lock
	  FROM generate_series(1, 50) AS i;
	SELECT bulkops.create_target('sf', 'salesforce', '$login', resource => 'Account',
	    auth => '{"type": "oauth2_jwt", "client_id": "bulkops-app",
	              "username": "etl\@example.com", "key_file": "$keyfile"}',
	    options => '{"batch_size": 100, "poll_interval": 0.05}');
	SELECT bulkops.create_target('plain', 'salesforce', '$instance', resource => 'Account',
	    options => '{"batch_size": 100, "poll_interval": 0.05}');
});

sub query { return $node->safe_psql('postgres', $_[0]) }

sub enqueue
{
	my ($sql) = @_;
	return query($sql);
}

sub sf_stats    { return mock_get('/_control/stats')->{salesforce} }
sub oauth_stats { return mock_get('/_control/stats')->{oauth} }
sub sf_jobs     { return mock_get('/_control/salesforce/jobs') }

sub receipts
{
	my ($job) = @_;
	return query(
		"SELECT string_agg(status || ':' || coalesce(error_code, '-') || ':' || attempts || ':' || n, ' ' ORDER BY status, error_code, attempts)
		 FROM (SELECT status, error_code, attempts, count(*) AS n FROM bulkops.receipts
		       WHERE job_id = $job GROUP BY 1, 2, 3) s");
}

# 1. JWT bearer: token from the instance's default endpoint, API at instance_url
my $job = enqueue(
	q{SELECT bulkops.bulk_upsert('sf', 'SELECT ext AS "Ext__c", name AS "Name" FROM acc', key => 'Ext__c')});
is(wait_for_job($node, $job), 'succeeded', 'JWT bearer: the upsert succeeds');
is(oauth_stats()->{jwt}, 1, 'the mock verified one signed assertion');
my @reqs = @{ mock_get('/_control/requests') };
is( scalar(grep { $_->{path} eq '/sflogin/services/oauth2/token' } @reqs),
	1, 'the token came from the target url\'s /services/oauth2/token');
is(scalar(grep { $_->{path} =~ m{^/sflogin/services/data/} } @reqs),
	0, 'no API request went to the target url');
cmp_ok(scalar(grep { $_->{path} =~ m{^/salesforce/services/data/v62\.0/jobs/ingest} } @reqs),
	'>=', 6, 'the job\'s requests went to the instance_url')
  or diag explain [ map { "$_->{method} $_->{path}" } @reqs ];
is(scalar keys %{ mock_get('/_control/salesforce/store?object=Account') },
	50, 'the rows landed there');

# 2a. a 401 INVALID_SESSION_ID to the upload, in the middle of the job
my $tokens = oauth_stats()->{token_requests};
my $jobs_before = scalar keys %{ sf_jobs() };
my $stored_before = sf_stats()->{store_size};
mock_post(
	'/_control/faults',
	{
		rules => [
			{
				method => 'PUT',
				path   => '/batches$',
				action => 'status',
				status => 401,
				times  => 1,
				body   =>
				  '[{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]'
			}
		]
	});
$job = enqueue(
	q{SELECT bulkops.bulk_insert('sf', 'SELECT ext AS "Ext__c", name AS "Name" FROM acc WHERE _fail IS NULL AND _lock IS NULL')});
is(wait_for_job($node, $job), 'succeeded', 'a 401 to the upload: the insert succeeds');
is(receipts($job), 'succeeded:-:1:40', 'every row succeeded on its first attempt');
is(oauth_stats()->{token_requests}, $tokens + 1, 'one new token was fetched');
is(mock_get('/_control/stats')->{faults_fired}, 1, 'the upload was refused once');
my $jobs = sf_jobs();
is(scalar keys %$jobs, $jobs_before + 1, 'the same remote job went on');
is((sort { $b cmp $a } map { $_->{uploads} } values %$jobs)[0], 1, 'with one upload');
is(sf_stats()->{store_size}, $stored_before + 40, 'each row was inserted once');

# 2b. every token expired between two jobs
mock_post('/_control/oauth/expire');
$job = enqueue(
	q{SELECT bulkops.bulk_upsert('sf', 'SELECT ext AS "Ext__c", name AS "Name" FROM acc WHERE ext <= 5', key => 'Ext__c')});
is(wait_for_job($node, $job), 'succeeded', 'an expired token: the next job succeeds');
is(receipts($job), 'succeeded:-:1:5', 'without using an attempt');
is(oauth_stats()->{token_requests}, $tokens + 2, 'after one more token');
cmp_ok(oauth_stats()->{expired_refused}, '>=', 1, 'the expired token was refused');
mock_delete('/_control/faults');

# 3. a restart while the remote job is InProgress
mock_post('/_control/reset');
mock_post('/_control/config', { salesforce => { in_progress_polls => 60 } });
$job = enqueue(q{SELECT bulkops.bulk_insert('plain', 'SELECT ext AS "Ext__c", name AS "Name" FROM acc WHERE _fail IS NULL AND _lock IS NULL')});
ok( $node->poll_query_until(
		'postgres', "SELECT step = 3 OR state = 'done' FROM bulkops.batches WHERE job_id = $job"),
	'the batch is polling its remote job');
$node->stop('immediate');
$node->start;
is(wait_for_job($node, $job), 'succeeded', 'after the restart the insert succeeds');
is(receipts($job), 'succeeded:-:1:40', 'on its first attempt');
is(scalar keys %{ sf_jobs() }, 1, 'no second remote job was made');
is(sf_stats()->{store_size}, 40, 'each row was inserted once');

# 4. a restart between the result files
mock_post('/_control/reset');
mock_post('/_control/config', { salesforce => { in_progress_polls => 1 } });
mock_post(
	'/_control/faults',
	{
		rules => [
			{
				method  => 'GET',
				path    => '/failedResults/$',
				action  => 'delay',
				seconds => 3,
				times   => 1
			}
		]
	});
$job = enqueue(
	q{SELECT bulkops.bulk_upsert('plain', 'SELECT ext AS "Ext__c", name AS "Name", _fail, _lock FROM acc', key => 'Ext__c')});
ok( $node->poll_query_until(
		'postgres', "SELECT step = 5 OR state = 'done' FROM bulkops.batches WHERE job_id = $job"),
	'the batch is fetching its failed results');
is( query("SELECT count(*) FROM bulkops.receipts WHERE job_id = $job"),
	40, 'the successes are already written');
$node->stop('immediate');
$node->start;
is(wait_for_job($node, $job), 'partial', 'after the restart the upsert ends');
is( receipts($job),
	'failed:INVALID_EMAIL_ADDRESS:1:5 succeeded:-:1:40 succeeded:-:2:5',
	'failures as the file said; the locked rows succeeded in a second job');
is(scalar keys %{ sf_jobs() }, 2, 'two remote jobs: the first, and one for the locked rows');
is(sf_stats()->{max_applications_per_id}, 1, 'no row was applied twice');
mock_delete('/_control/faults');

# 5. a restart while an insert's job is being created
mock_post('/_control/reset');
mock_post(
	'/_control/faults',
	{
		rules => [
			{
				method  => 'POST',
				path    => '/jobs/ingest$',
				action  => 'delay',
				seconds => 3,
				times   => 1
			}
		]
	});
$job = enqueue(q{SELECT bulkops.bulk_insert('plain', 'SELECT ext AS "Ext__c" FROM acc WHERE ext <= 10')});
ok( $node->poll_query_until(
		'postgres',
		"SELECT (SELECT count(*) FROM bulkops.batches WHERE job_id = $job AND state = 'active') = 1",
	),
	'the batch is creating its job');
# the request is in the mock's hands once it is logged
my $created = 0;
for (1 .. 100)
{
	$created = grep { $_->{method} eq 'POST' } @{ mock_get('/_control/requests') };
	last if $created;
	select(undef, undef, undef, 0.05);
}
ok($created, 'the create request reached the mock');
$node->stop('immediate');
$node->start;
is(wait_for_job($node, $job), 'succeeded', 'after the restart the insert succeeds');
is(receipts($job), 'succeeded:-:2:10', 'no row was left unknown: a second job was made');
sleep 3;    # the delayed create answers into the void and makes an Open job
my @states = sort map { $_->{state} } values %{ sf_jobs() };
is_deeply(\@states, [ 'JobComplete', 'Open' ], 'the first job was left Open, never processed');
is(sf_stats()->{store_size}, 10, 'each row was inserted once');

done_testing();
