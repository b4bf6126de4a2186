# 006_network_policy.pl - the worker reaches only what the policy allows, never
# follows a redirect, and trusts only verified TLS certificates.
#
# Proves, against a mock API with a plain and a TLS listener (a private CA made
# at test time by test/mock/make_test_certs.sh):
#   TLS        with the target option ca_file naming the private CA a job succeeds;
#              without it the certificate is refused, as is a certificate for
#              another host name (127.0.0.1 vs "localhost") and a missing CA
#              file; each refusal fails the batch at its first attempt with a
#              last_error that says so; ca_file cannot be set per job.
#   redirects  a 307 on a submit and a 302 on a poll are not followed (the
#              Location, another host name and port, is never contacted); the
#              batch ends at once with last_error naming the Location, without
#              its query or user info; the rows are "unknown".
#   addresses  bulkops.blocked_addresses is checked against what a name resolves
#              to: "localhost" is refused when loopback is blocked, before any
#              request is sent, and a blocked literal address is refused at
#              create_target; address entries of bulkops.allowed_hosts admit a
#              host name by its addresses (port included) and refuse the rest; a
#              reloaded policy applies to connections already open.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ca = start_tls_mock();
my $port = mock_port();
my $tls_port = mock_tls_port();
mock_post('/_control/reset');
mock_post('/_control/config', { clinia => { pending_polls => 0 } });

my $node = bulkops_node('netpolicy');
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION bulkops;
	CREATE TABLE t AS SELECT i AS id, 'row ' || i AS name FROM generate_series(1, 5) AS i;
});

sub sql { return $node->safe_psql('postgres', $_[0]) }

sub create_target
{
	my ($name, $url, $options) = @_;
	$options //= '{}';
	sql("SELECT bulkops.create_target('$name', 'clinia', '$url', 'Row', "
		  . "options => '$options')");
}

# Push t to target; returns the job's final state, its batch's attempts and
# last_error, and its receipts' statuses.
sub push_rows
{
	my ($target) = @_;
	my $job = sql("SELECT bulkops.bulk_upsert('$target', 't', key => 'id')");
	my $state = wait_for_job($node, $job, 60) // 'not final';
	my ($attempts, $error) = split /\|/,
	  sql("SELECT attempts, last_error FROM bulkops.batches WHERE job_id = $job");
	my $statuses = sql(
		"SELECT string_agg(DISTINCT status, ',') FROM bulkops.receipts WHERE job_id = $job");
	note "$target: job $job $state after $attempts attempt(s): $error";
	return ($state, $attempts, $error // '', $statuses);
}

sub submits { return mock_get('/_control/stats')->{clinia}{submits} }

# ---- TLS -----------------------------------------------------------------

is(sql('SHOW bulkops.blocked_addresses'),
	'0.0.0.0/8, ::, 169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200',
	'blocked_addresses blocks "this host", link-local and cloud metadata addresses by default');

create_target('tls_ok', "https://localhost:$tls_port/clinia/sources/tls/v1",
	qq({"ca_file": "$ca"}));
my ($state, $attempts, $error, $statuses) = push_rows('tls_ok');
is("$state|$statuses", 'succeeded|succeeded', 'TLS with the private CA as ca_file: job succeeds');
is(submits(), 1, 'TLS: the rows went through the TLS listener');

create_target('tls_untrusted', "https://localhost:$tls_port/clinia/sources/tls/v1");
($state, $attempts, $error, $statuses) = push_rows('tls_untrusted');
is("$state|$statuses|$attempts", 'failed|failed|1',
	'untrusted certificate: batch fails at its first attempt, not retried');
like(
	$error,
	qr/^TLS certificate of "localhost" refused: SSL certificate problem: unable to get local issuer certificate/,
	'untrusted certificate: last_error says why');
is(submits(), 1, 'untrusted certificate: no request was sent');

create_target('tls_wrong_name', "https://127.0.0.1:$tls_port/clinia/sources/tls/v1",
	qq({"ca_file": "$ca"}));
($state, $attempts, $error, $statuses) = push_rows('tls_wrong_name');
is("$state|$attempts", 'failed|1', 'certificate for another host name: refused at once');
like($error, qr/^TLS certificate of "127\.0\.0\.1" refused: .*127\.0\.0\.1/,
	'certificate for another host name: last_error names the host');

create_target('tls_no_ca_file', "https://localhost:$tls_port/clinia/sources/tls/v1",
	'{"ca_file": "/nonexistent/ca.pem"}');
($state, $attempts, $error, $statuses) = push_rows('tls_no_ca_file');
is("$state|$attempts", 'failed|1', 'missing ca_file: refused at once');
like($error, qr/^TLS .*"localhost".*\/nonexistent\/ca\.pem/,
	'missing ca_file: last_error names the file');
is(submits(), 1, 'no request was sent without a verified certificate');

my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT bulkops.bulk_upsert('tls_untrusted', 't', key => 'id', options => '{\"ca_file\": \"$ca\"}')"
);
like($err, qr/option "ca_file" can only be set on a target/,
	'a job cannot choose whom the target trusts');

# ---- redirects -------------------------------------------------------------

my $elsewhere = "http://user:pw\@localhost:$port/clinia/sources/elsewhere/v1/resources/bulk";
mock_post('/_control/reset');
mock_post(
	'/_control/faults',
	{
		rules => [
			{
				action   => 'redirect',
				status   => 307,
				method   => 'POST',
				path     => '/sources/redir/',
				location => "$elsewhere?signature=s3cret",
				times    => -1
			}
		]
	});
create_target('redir', mock_url('/clinia/sources/redir/v1'));
($state, $attempts, $error, $statuses) = push_rows('redir');
is("$state|$attempts|$statuses", 'failed|1|unknown',
	'307 on submit: not retried; the rows are unknown (the request was sent)');
like(
	$error,
	qr{^HTTP 307 redirect to "http://localhost:$port/clinia/sources/elsewhere/v1/resources/bulk" not followed},
	'307 on submit: last_error names the Location');
unlike($error, qr/s3cret|pw\@/, "the Location's query and user info stay out of last_error");
my @log = @{ mock_get('/_control/requests') };
is(scalar(grep { $_->{path} =~ /elsewhere/ } @log), 0, 'the redirect target was never contacted');
is(scalar(@log), 1, 'exactly one request was sent');

mock_post('/_control/reset');
mock_post('/_control/config', { clinia => { pending_polls => 0 } });
mock_post(
	'/_control/faults',
	{
		rules => [
			{
				action   => 'redirect',
				status   => 302,
				method   => 'GET',
				path     => '/sources/redir/',
				location => "http://localhost:$port/clinia/sources/elsewhere/v1/resources/bulk/x",
				times    => -1
			}
		]
	});
($state, $attempts, $error, $statuses) = push_rows('redir');
is("$state|$statuses", 'failed|unknown', '302 on a poll: the rows are unknown');
like($error, qr/^HTTP 302 redirect to "[^"]+elsewhere[^"]+" not followed.*remote task \S+ is unknown/,
	'302 on a poll: last_error names the Location and the task');
@log = @{ mock_get('/_control/requests') };
is(scalar(grep { $_->{path} =~ /elsewhere/ } @log), 0, 'the poll redirect was not followed');
is(scalar(grep { $_->{method} eq 'GET' } @log), 1, 'the poll was not repeated');
mock_delete('/_control/faults');

# ---- addresses after DNS resolution -----------------------------------------

create_target('by_name', "http://localhost:$port/clinia/sources/name/v1");
$node->append_conf('postgresql.conf',
	"bulkops.blocked_addresses = '127.0.0.0/8, ::1'");
$node->restart;
mock_post('/_control/reset');

($state, $attempts, $error, $statuses) = push_rows('by_name');
is("$state|$attempts|$statuses", 'failed|1|failed',
	'a name that resolves to a blocked address: refused at once, rows failed');
like(
	$error,
	qr/^address (127\.0\.0\.1|::1) port $port of host "localhost" is blocked by bulkops\.blocked_addresses$/,
	'blocked address: last_error names the address, the host and the setting');
is(scalar(@{ mock_get('/_control/requests') }), 0, 'blocked address: nothing was sent');

($rc, $out, $err) = $node->psql('postgres',
	"SELECT bulkops.create_target('literal', 'clinia', '" . mock_url('/x') . "', 'Row')");
like($err, qr/address 127\.0\.0\.1 is blocked by bulkops\.blocked_addresses/,
	'a blocked literal address is refused at create_target');

($rc, $out, $err) = $node->psql('postgres',
	"ALTER SYSTEM SET bulkops.blocked_addresses = '10.0.0.0/8, example.com'");
like($err, qr/"example\.com" is not an IP address or a CIDR block/,
	'blocked_addresses accepts addresses and CIDR blocks only');

# address entries of allowed_hosts: localhost is admitted by its address, and
# only on the allowed port
$node->append_conf('postgresql.conf',
	"bulkops.blocked_addresses = ''\nbulkops.allowed_hosts = 'api.example.com, 127.0.0.0/8:$port'"
);
$node->restart;
mock_post('/_control/reset');
mock_post('/_control/config', { clinia => { pending_polls => 0 } });

($state, $attempts, $error, $statuses) = push_rows('by_name');
is("$state|$statuses", 'succeeded|succeeded',
	'an allowed_hosts address entry admits a host name that resolves into it');

create_target('other_port', "http://localhost:$tls_port/clinia/sources/name/v1");
($state, $attempts, $error, $statuses) = push_rows('other_port');
is("$state|$attempts", 'failed|1', 'an address outside allowed_hosts: refused at once');
like(
	$error,
	qr/^address (127\.0\.0\.1|::1) port $tls_port of host "localhost" is not in bulkops\.allowed_hosts$/,
	'outside allowed_hosts: last_error names the address, port, host and setting');

# a change of the policy reaches the running worker, whose connection to the
# mock is still pooled: the next requests are refused (the reload takes effect
# asynchronously, hence a bounded number of jobs until one is refused)
$node->safe_psql('postgres',
	"ALTER SYSTEM SET bulkops.blocked_addresses = '127.0.0.0/8, ::1'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
my $refusal;
for (1 .. 20)
{
	($state, $attempts, $error, $statuses) = push_rows('by_name');
	next if $state eq 'succeeded';
	$refusal = $error;
	last;
}
like($refusal // 'no job was refused',
	qr/^address \S+ port $port of host "localhost" is blocked by bulkops\.blocked_addresses$/,
	'after a reload, requests on pooled connections are refused too');

$node->stop;
done_testing();
