# 034_oauth_lanes.pl - one OAuth token per target, shared by the workers of
# the database.
#
# Proves, with two workers serving the database (bulkops.workers_per_database
# = 2), the mock's token endpoint and clinia requiring a live token:
#   * a job whose batches both workers take makes exactly one token request,
#     and every request of both workers carries that token;
#   * after the mock expires its tokens, both workers get 401s, yet exactly
#     one new token is fetched, and the replays use up no attempt;
#   * a token the answer says expires (expires_in) is fetched once per
#     expiry, not once per worker;
#   * a 503 from the token endpoint is retried once, for both workers: one
#     refused fetch, one that worked;
#   * a token longer than bulkops shares fails the rows with a message that
#     says so (and no piece of it), after one token request, and so does a
#     job right after it, with no other request (a batch one worker takes
#     a moment after the other's fetch failed must not fetch again);
#   * no secret or token appears in the server log or in bulkops' tables.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $dir = PostgreSQL::Test::Utils::tempdir();
my $secret = 'cs-' . join('', map { sprintf '%02x', int rand 256 } 1 .. 16);
my $secretfile = "$dir/client-secret";
open my $fh, '>', $secretfile or die "could not write $secretfile: $!";
print $fh "$secret\n";
close $fh;
chmod 0600, $secretfile;

start_mock();
mock_post('/_control/reset');
mock_post(
	'/_control/config',
	{
		oauth  => { client_id => 'bulkops-app', client_secret => $secret },
		clinia => { oauth => JSON::PP::true, pending_polls => 0 }
	});

my $node = bulkops_node('oauth_lanes', 'bulkops.workers_per_database = 2');
my $url       = mock_url('/clinia/sources/cc/v1');
my $token_url = mock_url('/oauth2/token');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE TABLE t AS SELECT i AS id, 'row ' || i AS name FROM generate_series(1, 400) AS i;
	SELECT bulkops.create_target('cc', 'clinia', '$url', resource => 'Row',
	    auth => '{"type": "oauth2_client_credentials", "client_id": "bulkops-app",
	              "client_secret": {"file": "$secretfile"}, "token_url": "$token_url"}',
	    options => '{"batch_size": 5, "concurrency": 4, "max_attempts": 2}');
});
ok(query_until($node, "SELECT count(*) FROM pg_stat_activity "
	  . "WHERE backend_type = 'bulkops worker'", '2'),
	'two workers serve the database');

sub query { return $node->safe_psql('postgres', $_[0]) }

sub token_posts
{
	return mock_get('/_control/stats')->{requests}{'POST /oauth2/token'} // 0;
}

sub bearer_of
{
	my ($h) = @_;
	my ($name) = grep { lc $_ eq 'authorization' } keys %$h;
	return defined $name ? $h->{$name} : '';
}

# Run an upsert of the first $n rows of t; its id and final state.
sub run_job
{
	my ($n) = @_;
	my $job = query("SELECT bulkops.bulk_upsert('cc', 'SELECT * FROM t WHERE id <= $n', key => 'id')");
	return ($job, wait_for_job($node, $job, 90));
}

# 1. one token for a job both workers take
my ($job, $state) = run_job(400);
is($state, 'succeeded', 'the job succeeds');
is(query("SELECT count(DISTINCT lane) FROM bulkops.batches WHERE job_id = $job"),
	'2', 'both workers took its batches');
is(token_posts(), 1, 'one token request for both workers');
my ($token) = map { $_->{token} } @{ mock_get('/_control/oauth/tokens') };
my @sent = grep { $_->{path} =~ m{^/clinia/sources/cc/} } @{ mock_get('/_control/requests') };
cmp_ok(scalar @sent, '>=', 160, 'the mock saw the submits and polls');
is(scalar(grep { bearer_of($_->{headers}) eq "Bearer $token" } @sent),
	scalar @sent, 'every request carried that token');

# 2. expired: 401s in both workers, one new token
mock_post('/_control/oauth/expire');
my $t0 = token_posts();
my $refused0 = mock_get('/_control/stats')->{oauth}{expired_refused} // 0;
($job, $state) = run_job(400);
is($state, 'succeeded', 'after the tokens expired the job still succeeds');
is(token_posts() - $t0, 1, 'exactly one new token was fetched');
cmp_ok(mock_get('/_control/stats')->{oauth}{expired_refused} - $refused0,
	'>=', 2, 'the expired token was refused more than once');
is(query("SELECT count(DISTINCT lane) FROM bulkops.batches WHERE job_id = $job"),
	'2', '... to batches of both workers');
is(query("SELECT max(attempts) FROM bulkops.receipts WHERE job_id = $job"),
	1, 'the replays used up no attempt');

# 3. a token that expires: one fetch per expiry, whichever worker needs it
mock_post('/_control/config', { oauth => { expires_in => 8 } });
mock_post('/_control/oauth/expire');
$t0 = token_posts();
($job, $state) = run_job(200);
is($state, 'succeeded', 'a job gets a token that expires in 8 s');
is(token_posts() - $t0, 1, '... fetched once');
sleep 9;
$t0 = token_posts();
($job, $state) = run_job(200);
is($state, 'succeeded', 'the next job, after it expired, succeeds');
is(token_posts() - $t0, 1, '... with one new token for both workers');
mock_post('/_control/config', { oauth => { expires_in => 0 } });

# 4. the token endpoint answers 503 once: one retry for both workers
mock_post('/_control/oauth/expire');
mock_faults({ action => 'status', status => 503, path => '^/oauth2/token$' });
$t0 = token_posts();
($job, $state) = run_job(400);
is($state, 'succeeded', 'a 503 from the token endpoint is retried');
is(token_posts() - $t0, 2, '... one refused fetch, one that worked');
mock_faults();

# 5. a token longer than bulkops shares
my $long = 'L' x 9000;
mock_post('/_control/oauth/expire');
mock_faults(
	{
		action => 'status',
		status => 200,
		path   => '^/oauth2/token$',
		body   => qq({"access_token": "$long", "token_type": "Bearer"}),
		times  => -1
	});
$t0 = token_posts();
($job, $state) = run_job(20);
is($state, 'failed', 'a token too long to share fails the job');
is( query("SELECT string_agg(DISTINCT error_message, '; ') FROM bulkops.receipts WHERE job_id = $job"),
	"could not obtain an OAuth token from $token_url: the access token is 9000 bytes long; "
	  . 'bulkops shares tokens of at most 8191 bytes between its workers',
	'... saying why');
is(token_posts() - $t0, 1, '... after one token request: retrying would not help');
# the failure stands for a while (10 s) for every batch, in either worker
($job, $state) = run_job(20);
is($state, 'failed', 'a job right after it fails alike');
is(token_posts() - $t0, 1, '... without another token request');
mock_faults();

# 6. no secret or token anywhere
my %dump = (
	'bulkops.batches' => query(
		"SELECT string_agg(concat_ws('|', job_id, batch_no, last_error), E'\\n') FROM bulkops.batches"),
	'bulkops.receipts' => query('SELECT string_agg(r::text, E\'\\n\') FROM bulkops.receipts r'),
	'the server log'   => slurp_file($node->logfile));
my @tokens = map { $_->{token} } @{ mock_get('/_control/oauth/tokens') };
cmp_ok(scalar @tokens, '>=', 4, 'the mock issued the tokens searched for');
for my $where (sort keys %dump)
{
	my @found;
	push @found, 'client secret' if $dump{$where} =~ /\Q$secret\E/;
	push @found, 'token' if grep { index($dump{$where}, $_) >= 0 } @tokens;
	push @found, 'long token' if index($dump{$where}, 'L' x 100) >= 0;
	is("@found", '', "no secret or token appears in $where");
}

$node->stop;
done_testing();
