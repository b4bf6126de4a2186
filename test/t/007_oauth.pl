# 007_oauth.pl - OAuth targets end to end against clinia through the mock.
#
# Proves, with the mock's token endpoint and clinia requiring a live token:
# the client credentials grant (secret from a file) gets one token that every
# request of a twelve-batch job carries; after the mock expires its tokens a job
# gets 401s, fetches exactly one new token, replays and succeeds without using
# up attempts; a token the answer said expires is renewed before it is used; a
# second 401 to the same request reaches the dialect; a 503 from
# the token endpoint is retried; a wrong secret fails the rows with the
# endpoint's error; the JWT bearer grant, signed with a key the openssl CLI made
# here (from key_file, then from {"env": ...}), is verified by the mock and its
# instance_url becomes the API base; a refused assertion fails clearly; a token
# URL the host policy refuses is never called; and no
# secret, key or token appears in the server log or in bulkops' tables.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $dir = PostgreSQL::Test::Utils::tempdir();

sub random_hex { return join('', map { sprintf '%02x', int rand 256 } 1 .. 16) }
my $secret = 'cs-' . random_hex();
my $wrong  = 'wrong-' . random_hex();

sub write_file
{
	my ($path, $value) = @_;
	open my $fh, '>', $path or die "could not write $path: $!";
	print $fh $value;
	close $fh;
	chmod 0600, $path;
}

# the key pair, made here by the openssl CLI
my ($keyfile, $pubkey) = make_rsa_key($dir);
like($pubkey, qr/BEGIN PUBLIC KEY/, 'openssl made a key pair');
my $pem = slurp_file($keyfile);
my @key_lines = grep { /^[A-Za-z0-9+\/=]{40,}$/ } split /\n/, $pem;
my $secretfile = "$dir/client-secret";
write_file($secretfile, "$secret\n");

start_mock();
mock_post('/_control/reset');
mock_post(
	'/_control/config',
	{
		oauth => {
			client_id     => 'bulkops-app',
			client_secret => $secret,
			username      => 'etl@example.com',
			public_key    => $pubkey
		},
		clinia => { oauth => JSON::PP::true, pending_polls => 1 }
	});

# the server inherits this environment: the {"env": ...} key
$ENV{BULKOPS_TEST_SF_KEY} = $pem;
my $node = bulkops_node('oauth');
delete $ENV{BULKOPS_TEST_SF_KEY};

my $cc_url    = mock_url('/clinia/sources/cc/v1');
my $token_url = mock_url('/oauth2/token');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE TABLE t AS SELECT i AS id, 'row ' || i AS name FROM generate_series(1, 60) AS i;
	CREATE TABLE five AS SELECT * FROM t WHERE id <= 5;
	SELECT bulkops.create_target('cc', 'clinia', '$cc_url', resource => 'Row',
	    auth => '{"type": "oauth2_client_credentials", "client_id": "bulkops-app",
	              "client_secret": {"file": "$secretfile"}, "token_url": "$token_url"}',
	    options => '{"batch_size": 5, "concurrency": 4, "max_attempts": 3}');
});

sub oauth_stats { return mock_get('/_control/stats')->{oauth} }

sub run_job
{
	my ($target, $source) = @_;
	my $job = $node->safe_psql('postgres',
		"SELECT bulkops.bulk_upsert('$target', '$source', key => 'id')");
	return ($job, wait_for_job($node, $job, 90));
}

sub query { return $node->safe_psql('postgres', $_[0]) }

sub bearer_of
{
	my ($h) = @_;
	my ($name) = grep { lc $_ eq 'authorization' } keys %$h;
	return defined $name ? $h->{$name} : '';
}

# token requests the mock received (also those a fault answered)
sub token_posts
{
	my $r = mock_get('/_control/stats')->{requests};
	return ($r->{'POST /oauth2/token'} // 0) + ($r->{'POST /services/oauth2/token'} // 0);
}

# the mock's request log from entry $from on
sub requests_since { my @r = @{ mock_get('/_control/requests') }; return @r[ $_[0] .. $#r ] }

# 1. client credentials: one token for the whole job
my ($job, $state) = run_job('cc', 't');
is($state, 'succeeded', 'client credentials: the job succeeds');
is(query("SELECT count(*) FROM bulkops.receipts WHERE job_id = $job AND status = 'succeeded'"),
	60, 'every row succeeded');
is(token_posts(), 1, 'one token request for twelve batches');
my ($token) = map { $_->{token} } @{ mock_get('/_control/oauth/tokens') };
my @sent = grep { $_->{path} =~ m{^/clinia/sources/cc/} } requests_since(0);
cmp_ok(scalar @sent, '>=', 24, 'the mock saw the submits and polls');
is(scalar(grep { bearer_of($_->{headers}) eq "Bearer $token" } @sent),
	scalar @sent, 'every request carried that token');
my ($tokreq) = grep { $_->{path} eq '/oauth2/token' } requests_since(0);
like($tokreq->{body}, qr/^grant_type=client_credentials&client_id=bulkops-app&client_secret=\Q$secret\E$/,
	'the token request is the form grant_type, client_id, client_secret');

# 2. expired token: 401s, exactly one refresh, replays that use no attempt
mock_post('/_control/oauth/expire');
my $t0 = token_posts();
($job, $state) = run_job('cc', 't');
is($state, 'succeeded', 'after the tokens expired the job still succeeds');
is(token_posts() - $t0, 1, 'exactly one new token was fetched');
cmp_ok(oauth_stats()->{expired_refused}, '>=', 1, 'the expired token was refused first');
is(query("SELECT max(attempts) FROM bulkops.receipts WHERE job_id = $job"),
	1, 'the replays used up no attempt');

# 3. a token the answer says expires (expires_in) is renewed before it is used
mock_post('/_control/config', { oauth => { expires_in => 1 } });
mock_post('/_control/oauth/expire');
($job, $state) = run_job('cc', 'five');
is($state, 'succeeded', 'a job gets a token that expires in a second');
my ($short) = map { $_->{token} } grep { $_->{valid} } @{ mock_get('/_control/oauth/tokens') };
sleep 2;
my $seen = scalar @{ mock_get('/_control/requests') };
($job, $state) = run_job('cc', 'five');
is($state, 'succeeded', 'the next job, after it expired, succeeds');
my ($first) = grep { $_->{path} =~ m{^/clinia/} } requests_since($seen);
like(bearer_of($first->{headers}), qr/^Bearer tok_/, 'its first request carried a token');
isnt(bearer_of($first->{headers}), "Bearer $short", '... a new one, not the expired one');
mock_post('/_control/config', { oauth => { expires_in => 0 } });

# 4. a 401 twice to one request: the second reaches the dialect
mock_post('/_control/faults',
	{ rules => [ { action => 'status', status => 401, method => 'POST',
				path => '/clinia/sources/cc/', times => 2 } ] });
$t0 = token_posts();
($job, $state) = run_job('cc', 'five');
is($state, 'failed', 'a request answered 401 twice fails');
is( query(
		"SELECT string_agg(DISTINCT http_status || ' ' || error_message, '; ') "
		  . "FROM bulkops.receipts WHERE job_id = $job"),
	'401 HTTP 401: injected fault',
	'... with the second 401, as the dialect read it');
is(token_posts() - $t0, 1, '... after one new token for the replay');
mock_delete('/_control/faults');

mock_post('/_control/faults',
	{ rules => [ { action => 'status', status => 401, method => 'POST',
				path => '/clinia/sources/cc/', times => 1 } ] });
$t0 = token_posts();
($job, $state) = run_job('cc', 'five');
is($state, 'succeeded', 'a single 401 is replayed and the job succeeds');
is(token_posts() - $t0, 1, '... with one new token');
mock_delete('/_control/faults');

# 5. the token endpoint fails once with 503: retried
mock_post('/_control/oauth/expire');
mock_post('/_control/faults',
	{ rules => [ { action => 'status', status => 503, path => '^/oauth2/token$' } ] });
$t0 = token_posts();
($job, $state) = run_job('cc', 'five');
is($state, 'succeeded', 'a 503 from the token endpoint is retried');
is(token_posts() - $t0, 2, '... one refused fetch, one that worked');
mock_delete('/_control/faults');

# 6. a wrong secret: a permanent, clear failure
write_file($secretfile, "$wrong\n");
mock_post('/_control/oauth/expire');
$t0 = token_posts();
($job, $state) = run_job('cc', 'five');
is($state, 'failed', 'with a wrong client secret the job fails');
my $expected_error =
  "could not obtain an OAuth token from $token_url: invalid_client: invalid client credentials (HTTP 400)";
is(query("SELECT string_agg(DISTINCT error_message, '; ') FROM bulkops.receipts WHERE job_id = $job"),
	$expected_error, '... every row says why');
is(query("SELECT string_agg(DISTINCT last_error, '; ') FROM bulkops.batches WHERE job_id = $job"),
	$expected_error, '... so does the batch');
is(token_posts() - $t0, 1, '... after a single token request');
write_file($secretfile, "$secret\n");

# 7. JWT bearer with key_file; instance_url becomes the API base
mock_post('/_control/config',
	{ oauth => { instance_url => mock_url('/clinia/sources/inst/v1') } });
my $orig_url = mock_url('/clinia/sources/orig/v1');
my $sf_token = mock_url('/services/oauth2/token');
$node->safe_psql(
	'postgres', qq{
	SELECT bulkops.create_target('sf', 'clinia', '$orig_url', resource => 'Row',
	    auth => '{"type": "oauth2_jwt", "client_id": "bulkops-app", "username": "etl\@example.com",
	              "key_file": "$keyfile", "token_url": "$sf_token"}',
	    options => '{"batch_size": 20}');
});
$seen = scalar @{ mock_get('/_control/requests') };
($job, $state) = run_job('sf', 't');
is($state, 'succeeded', 'JWT bearer with a key file: the job succeeds');
is(oauth_stats()->{jwt}, 1, 'the mock verified one signed assertion');
my @new = requests_since($seen);
is(scalar(grep { $_->{path} =~ m{/clinia/sources/orig/} } @new),
	0, 'nothing went to the target url');
cmp_ok(scalar(grep { $_->{path} =~ m{/clinia/sources/inst/} } @new),
	'>=', 6, 'the requests went to the instance_url');
is(scalar keys %{ mock_get('/_control/clinia/store?src=inst&type=Row') },
	60, 'the rows landed there');
($tokreq) = grep { $_->{path} eq '/services/oauth2/token' } @new;
like($tokreq->{body},
	qr/^grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=[\w-]+\.[\w-]+\.[\w-]+$/,
	'the token request is the JWT bearer grant');

# 8. the same key from the server's environment
$node->safe_psql(
	'postgres', qq{
	SELECT bulkops.alter_target('sf',
	    auth => '{"type": "oauth2_jwt", "client_id": "bulkops-app", "username": "etl\@example.com",
	              "key": {"env": "BULKOPS_TEST_SF_KEY"}, "token_url": "$sf_token"}');
});
($job, $state) = run_job('sf', 'five');
is($state, 'succeeded', 'JWT bearer with the key from {"env": ...}: the job succeeds');
is(oauth_stats()->{jwt}, 2, 'the altered auth fetched its own token');

# 9. an assertion the endpoint refuses
$node->safe_psql(
	'postgres', qq{
	SELECT bulkops.alter_target('sf',
	    auth => '{"type": "oauth2_jwt", "client_id": "bulkops-app", "username": "nobody\@example.com",
	              "key_file": "$keyfile", "token_url": "$sf_token"}');
});
($job, $state) = run_job('sf', 'five');
is($state, 'failed', 'a refused assertion fails the job');
is( query("SELECT string_agg(DISTINCT last_error, '; ') FROM bulkops.batches WHERE job_id = $job"),
	"could not obtain an OAuth token from $sf_token: invalid_grant: user hasn't approved this consumer (HTTP 400)",
	'... saying what the endpoint said');

# 10. the token URL passes the host policy at request time, not only at create
$node->safe_psql(
	'postgres', qq{
	SELECT bulkops.create_target('hp', 'clinia', '$cc_url', resource => 'Row',
	    auth => '{"type": "oauth2_client_credentials", "client_id": "bulkops-app",
	              "client_secret": {"file": "$secretfile"}, "token_url": "$token_url"}');
});
$node->append_conf('postgresql.conf', "bulkops.allowed_hosts = 'localhost'");
$node->reload;
$t0 = token_posts();
($job, $state) = run_job('hp', 'five');
is($state, 'failed', 'a token URL the host policy refuses fails the job');
like(query("SELECT string_agg(DISTINCT last_error, '; ') FROM bulkops.batches WHERE job_id = $job"),
	qr/^could not obtain an OAuth token from \Q$token_url\E: .*127\.0\.0\.1.*bulkops\.allowed_hosts/,
	'... saying so');
is(token_posts(), $t0, '... and nothing was sent');

# 11. no secret, key or token anywhere (searched here, not in SQL, which
# log_statement = all would write to the log)
my %dump = (
	'bulkops.targets' => query('SELECT t::text FROM bulkops.targets t'),
	'bulkops.jobs'    => query('SELECT j::text FROM bulkops.jobs j'),
	'bulkops.batches' => query(
		"SELECT concat_ws('|', job_id, batch_no, state, step, remote_id, attempts, "
		  . 'http_status, last_error, keys) FROM bulkops.batches'),
	'bulkops.receipts' => query('SELECT r::text FROM bulkops.receipts r'),
	'the server log'   => slurp_file($node->logfile));
my @tokens = map { $_->{token} } @{ mock_get('/_control/oauth/tokens') };
cmp_ok(scalar @tokens, '>=', 6, 'the mock issued the tokens searched for');
cmp_ok(scalar @key_lines, '>=', 10, 'the key has lines to search for');
for my $where (sort keys %dump)
{
	my @found;
	push @found, 'client secret' if $dump{$where} =~ /\Q$secret\E/;
	push @found, 'wrong secret'  if $dump{$where} =~ /\Q$wrong\E/;
	push @found, 'key'   if grep { index($dump{$where}, $_) >= 0 } @key_lines;
	push @found, 'token' if grep { index($dump{$where}, $_) >= 0 } @tokens;
	is("@found", '', "no secret, key or token appears in $where");
}

$node->stop;
done_testing();
