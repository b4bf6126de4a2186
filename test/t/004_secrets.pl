# 004_secrets.pl - a target's secret read from a file is sent, and never shown.
#
# Proves that a target created with
#   auth => '{"type": "bearer", "token": {"file": "/path/to/tokenfile"}}'
# sends "Authorization: Bearer <token>" with the token read from that file (the
# mock requires it: clinia.bearer), so the job succeeds; that the file is read
# again for later requests (a rotated, here wrong, token makes the rows fail with
# the remote side's HTTP 401 message); that a token with a line break in it is
# refused rather than sent (no header injection); that no token value appears in
# the server log, bulkops.targets, bulkops.jobs, bulkops.batches or
# bulkops.receipts; and that an ordinary role is denied the auth column of
# bulkops.targets while it may read the target's name.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ROWS = 50;

sub random_token
{
	my ($prefix) = @_;
	return $prefix . join('', map { sprintf '%02x', int rand 256 } 1 .. 16);
}
my $token    = random_token('good-');
my $wrong    = random_token('wrong-');
my $injected = random_token('inject-');

start_mock();
mock_post('/_control/reset');
mock_post('/_control/config', { clinia => { bearer => $token } });

my $node = bulkops_node('secrets');

# readable by the server (the same OS user as this test), by nobody else
my $tokenfile = PostgreSQL::Test::Utils::tempdir() . '/bearer-token';
sub write_token
{
	my ($value) = @_;
	open my $fh, '>', $tokenfile or die "could not write $tokenfile: $!";
	print $fh "$value\n";
	close $fh;
	chmod 0600, $tokenfile;
}
write_token($token);

my $url = mock_url('/clinia/sources/sec/v1');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE TABLE t AS SELECT i AS id, 'row ' || i AS name FROM generate_series(1, $ROWS) AS i;
	SELECT bulkops.create_target('sec', 'clinia', '$url', resource => 'Row',
	    auth => '{"type": "bearer", "token": {"file": "$tokenfile"}}',
	    options => '{"batch_size": 10, "max_attempts": 2}');
});

sub push_rows
{
	return $node->safe_psql('postgres',
		"SELECT bulkops.bulk_upsert('sec', 't', key => 'id')");
}

# 1. the right token, from the file
my $job = push_rows();
is(wait_for_job($node, $job, 60), 'succeeded', 'job with the token from the file succeeds');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM bulkops.receipts WHERE job_id = $job AND status = 'succeeded'"
	),
	$ROWS,
	'every row succeeded');

my @sent =
  grep { $_->{path} =~ m{^/clinia/sources/sec/} } @{ mock_get('/_control/requests') };
my @bearer = grep {
	my $h = $_->{headers};
	my ($name) = grep { lc $_ eq 'authorization' } keys %$h;
	defined $name && $h->{$name} eq "Bearer $token";
} @sent;
cmp_ok(scalar @sent, '>=', 2 * $ROWS / 10, 'the mock saw the submits and polls');
is(scalar @bearer, scalar @sent,
	'every request carried "Authorization: Bearer <token>" with the file\'s token');

# 2. the file now holds a wrong token: read again, refused by the remote side
write_token($wrong);
my $job2 = push_rows();
is(wait_for_job($node, $job2, 60), 'failed', 'job with a wrong token fails');
is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*) FILTER (WHERE status = 'failed' AND http_status = 401
		                          AND error_message LIKE 'HTTP 401%'),
		       count(*)
		FROM bulkops.receipts WHERE job_id = $job2}),
	"$ROWS|$ROWS",
	'every row failed with the HTTP 401 message');
like(
	$node->safe_psql('postgres', "SELECT last_error FROM bulkops.jobs WHERE id = $job2"),
	qr/HTTP 401/,
	'the job\'s last error is the 401');
like(
	$node->safe_psql('postgres',
		"SELECT string_agg(DISTINCT last_error, '; ') FROM bulkops.batches WHERE job_id = $job2"),
	qr/HTTP 401/,
	'so is the batches\' last error');

# 3. a token with a line break is refused, not sent as two headers
write_token("$injected\r\nX-Injected: yes");
my $seen_before = scalar @{ mock_get('/_control/requests') };
my $job3 = push_rows();
is(wait_for_job($node, $job3, 60), 'failed', 'job with a two-line token fails');
like(
	$node->safe_psql('postgres',
		"SELECT string_agg(DISTINCT error_message, '; ') FROM bulkops.receipts WHERE job_id = $job3"),
	qr/contains a line break/,
	'its rows say the secret contains a line break');
my @injected = grep {
	grep { lc $_ eq 'x-injected' } keys %{ $_->{headers} }
} @{ mock_get('/_control/requests') };
is(scalar @injected, 0, 'no request carried an injected header');
is(scalar @{ mock_get('/_control/requests') }, $seen_before,
	'no request was sent at all');

# 4. no secret is stored or shown anywhere (searched here, not in SQL, which
# log_statement = all would write to the log)
my %dump = (
	'bulkops.targets' => $node->safe_psql('postgres', 'SELECT t::text FROM bulkops.targets t'),
	'bulkops.jobs'    => $node->safe_psql('postgres', 'SELECT j::text FROM bulkops.jobs j'),
	'bulkops.batches' => $node->safe_psql(
		'postgres',
		'SELECT concat_ws(\'|\', job_id, batch_no, state, step, remote_id, attempts, '
		  . 'http_status, last_error, keys) FROM bulkops.batches'),
	'bulkops.receipts' =>
	  $node->safe_psql('postgres', 'SELECT r::text FROM bulkops.receipts r'),
	'the server log' => slurp_file($node->logfile));
for my $where (sort keys %dump)
{
	for my $secret ([ token => $token ], [ 'wrong token' => $wrong ],
		[ 'two-line token' => $injected ])
	{
		unlike($dump{$where}, qr/\Q$secret->[1]\E/,
			"the $secret->[0] appears nowhere in $where");
	}
}

# 5. an ordinary role sees targets, but not their auth
$node->safe_psql('postgres', 'CREATE ROLE alice LOGIN');
my ($ret, $out, $err) = $node->psql(
	'postgres', 'SELECT auth FROM bulkops.targets',
	extra_params => [ '-U', 'alice' ]);
isnt($ret, 0, 'alice cannot SELECT auth FROM bulkops.targets');
like($err, qr/permission denied for table targets/, '... permission denied');
($ret, $out, $err) = $node->psql(
	'postgres', 'SELECT * FROM bulkops.targets',
	extra_params => [ '-U', 'alice' ]);
like($err, qr/permission denied for table targets/, 'nor SELECT *');
is( $node->safe_psql(
		'postgres', 'SELECT name FROM bulkops.targets',
		extra_params => [ '-U', 'alice' ]),
	'sec',
	'alice can SELECT name FROM bulkops.targets');
($ret, $out, $err) = $node->psql(
	'postgres',
	"SELECT bulkops.alter_target('sec', auth => '{\"type\": \"bearer\", \"token\": {\"file\": \"/etc/passwd\"}}')",
	extra_params => [ '-U', 'alice' ]);
like($err, qr/permission denied/, 'nor change the target\'s auth');

$node->stop;
done_testing();
