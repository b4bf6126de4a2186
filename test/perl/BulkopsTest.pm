# BulkopsTest.pm - shared plumbing of the bulkops TAP tests (test/t/*.pl).
#
#   use lib 'test/perl';
#   use BulkopsTest;
#
#   my $port = start_mock();                    # the mock API server, killed at END
#   my $ca = start_tls_mock();                  # or with a TLS listener too (mock_tls_port)
#   mock_post('/_control/config', {clinia => {pending_polls => 3}});
#   my $node = bulkops_node('main', "bulkops.max_attempts = 3");   # started
#   my $state = wait_for_job($node, $job, 60);  # the final state, or undef
#
# Everything talks to 127.0.0.1 only: proxies from the environment are
# dropped, both for our HTTP client and for the server's libcurl.
package BulkopsTest;

use strict;
use warnings;

use Carp;
use Cwd qw(abs_path);
use Exporter 'import';
use File::Basename qw(dirname);
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(start_mock start_tls_mock mock_port mock_tls_port mock_url
  mock_get mock_post mock_delete bulkops_node wait_for_job worker_pid
  clinia_target mock_faults mock_requests wait_requests make_rsa_key
  query_until log_says counters_agree receipt_rows dialects fill_name missing export_node
  export_pages_fetched rows_with_failures);

# No request of ours, nor of the server we start, may go through a proxy.
delete @ENV{qw(http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY)};
$ENV{no_proxy} = $ENV{NO_PROXY} = '127.0.0.1,localhost';

my $json = JSON::PP->new->utf8->canonical;
my $http = HTTP::Tiny->new(
	timeout    => 60,
	proxy      => undef,
	http_proxy => undef,
	keep_alive => 1);
my ($mock_pid, $mock_port, $mock_tls_port, $mock_out);

=pod

=item start_mock(@args)

Start test/mock/mock_api.py on a free port of 127.0.0.1 (once per test file)
and return the port.  The server is stopped when the test file ends.

=cut

sub start_mock
{
	my @args = @_;
	return $mock_port if defined $mock_port;

	my $script = abs_path(dirname(__FILE__) . '/../mock/mock_api.py');
	$mock_pid =
	  open($mock_out, '-|', 'python3', $script, '--port', '0', '--host',
		'127.0.0.1', '--quiet', @args)
	  or BAIL_OUT("could not start the mock API server: $!");

	my $line;
	eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		alarm 30;
		$line = <$mock_out>;
		# with --tls-port, the TLS listener's line comes first
		if (defined $line && $line =~ /mock_api tls on 127\.0\.0\.1:(\d+)/)
		{
			$mock_tls_port = $1;
			$line = <$mock_out>;
		}
		alarm 0;
	};
	alarm 0;
	BAIL_OUT("mock API server did not start: " . ($line // $@ // 'no output'))
	  unless defined $line && $line =~ /mock_api ready on 127\.0\.0\.1:(\d+)/;
	$mock_port = $1;
	note "mock API server (pid $mock_pid) on 127.0.0.1:$mock_port";
	return $mock_port;
}

END
{
	# keep the test's exit status: waitpid would overwrite $?
	local $?;
	if ($mock_pid)
	{
		kill 'TERM', $mock_pid;
		waitpid($mock_pid, 0);
		$mock_pid = undef;
	}
}

=pod

=item start_tls_mock()

Make a private CA and a certificate for "localhost" (test/mock/make_test_certs.sh,
in a temporary directory), then start_mock() with a TLS listener using them.
Returns the CA's PEM file; the listener's port is mock_tls_port().

=cut

sub start_tls_mock
{
	my $dir = PostgreSQL::Test::Utils::tempdir('pki');
	my $script = abs_path(dirname(__FILE__) . '/../mock/make_test_certs.sh');
	system('sh', $script, $dir) == 0
	  or BAIL_OUT("could not make the test certificates (is openssl installed?)");
	start_mock(
		'--tls-port', '0',
		'--tls-cert', "$dir/server.pem",
		'--tls-key',  "$dir/server.key");
	BAIL_OUT("the mock API server did not start its TLS listener")
	  unless defined $mock_tls_port;
	return "$dir/ca.pem";
}

sub mock_port { return $mock_port // croak "start_mock() first" }

sub mock_tls_port { return $mock_tls_port // croak "start_tls_mock() first" }

# http://127.0.0.1:PORT followed by $path
sub mock_url { return 'http://127.0.0.1:' . mock_port() . ($_[0] // '') }

sub _mock_request
{
	my ($method, $path, $body) = @_;
	my %opts;
	if (defined $body)
	{
		$opts{content} = $json->encode($body);
		$opts{headers} = { 'Content-Type' => 'application/json' };
	}
	my $res = $http->request($method, mock_url($path), \%opts);
	croak "mock $method $path: $res->{status} $res->{reason}: "
	  . ($res->{content} // '')
	  unless $res->{success};
	return $json->decode($res->{content});
}

=pod

=item mock_get($path), mock_post($path, $data), mock_delete($path)

Call the mock's API (normally its control API under /_control); the answer
is returned decoded from JSON.  A non-2xx answer dies.

=cut

sub mock_get    { return _mock_request('GET',    $_[0]) }
sub mock_post   { return _mock_request('POST',   $_[0], $_[1] // {}) }
sub mock_delete { return _mock_request('DELETE', $_[0]) }

=pod

=item mock_faults(@rules)

Replace the mock's fault rules with @rules (hashes, see mock_api.py); none
clears them.

=cut

sub mock_faults
{
	my @rules = @_;
	mock_delete('/_control/faults');
	mock_post('/_control/faults', { rules => \@rules }) if @rules;
	return;
}

=pod

=item export_node($name, $records, $page)

For the tests that kill the worker during an export: the mock reset to
answer every query with $records made-up records, each page (of $page
records, the target's max_records) 0.05 s late so that a kill lands in the
middle of the paging, and a started node (restart_after_crash on) with
bulkops and a salesforce target "sf" on the mock.

=cut

sub export_node
{
	my ($name, $records, $page) = @_;
	mock_post('/_control/reset');
	mock_post('/_control/config',
		{ salesforce => { query_rows => $records, in_progress_polls => 1 } });
	mock_faults({ action => 'delay', seconds => 0.05, method => 'GET',
			path => '/jobs/query/[^/]+/results', times => -1 });
	my $node = bulkops_node($name, 'restart_after_crash = on');
	my $url  = mock_url('/salesforce');
	$node->safe_psql('postgres', qq{
		CREATE EXTENSION bulkops;
		SELECT bulkops.create_target('sf', 'salesforce', '$url', 'Account', NULL,
		                             '{"poll_interval": 0.05, "max_records": $page}');
	});
	return $node;
}

=pod

=item export_pages_fetched($records, $page)

Tests that every page of an export_node() export of $records records was
fetched, and at most the one in flight at each of two kills again.

=cut

sub export_pages_fetched
{
	my ($records, $page) = @_;
	my $pages = mock_get('/_control/stats')->{salesforce}{query_pages};
	cmp_ok($pages, '>=', $records / $page, 'every page was fetched');
	cmp_ok($pages, '<=', $records / $page + 2,
		'at most the page in flight at each kill was fetched again');
	return;
}

=pod

=item mock_requests($src, $method)

How many $method requests for the mock's clinia source $src are in its
request log (the last 1000 requests).

=cut

sub mock_requests
{
	my ($src, $method) = @_;
	return scalar grep {
		$_->{method} eq $method && $_->{path} =~ m{^/clinia/sources/\Q$src\E/}
	} @{ mock_get('/_control/requests') };
}

=pod

=item dialects($node)

Every dialect bulkops.dialects() lists on $node, in its order, as hashes:
name, operations, idempotent, needs_key (array references), and mock: what
the dialect's mock module says of itself (GET /_control/dialects: its
mount, whether it has TESTS, and per generic test the target to make and
that test's own members; see docs/adding-a-dialect.md).  A dialect without
a mock module dies, naming the file it needs.  BULKOPS_TEST_DIALECTS="a b"
in the environment keeps only those.

=cut

sub dialects
{
	my ($node) = @_;
	my $described = mock_get('/_control/dialects');
	my %want = map { $_ => 1 } split ' ', $ENV{BULKOPS_TEST_DIALECTS} // '';
	my @out;

	for my $line (split /\n/,
		$node->safe_psql(
			'postgres', q{
			SELECT name, array_to_string(operations, ' '),
			       array_to_string(idempotent, ' '), array_to_string(needs_key, ' ')
			FROM bulkops.dialects()}))
	{
		my ($name, $ops, $idempotent, $needs_key) = split /\|/, $line, -1;
		next if %want && !$want{$name};
		my $mock = $described->{$name}
		  or missing("dialect \"$name\" has no mock module: the generic tests need "
			  . "test/mock/$name.py (docs/adding-a-dialect.md)");
		push @out,
		  {
			name       => $name,
			operations => [ split ' ', $ops ],
			idempotent => [ split ' ', $idempotent ],
			needs_key  => [ split ' ', $needs_key ],
			mock       => $mock
		  };
	}
	missing('no dialect to test' . (%want ? " among BULKOPS_TEST_DIALECTS" : ''))
	  unless @out;
	return @out;
}

=pod

=item missing($what)

Die saying what a test misses to cover every dialect, on the console too
(not only in the test's log, where a die's message goes).

=cut

sub missing
{
	my ($what) = @_;
	diag $what;
	croak $what;
}

=pod

=item fill_name($text, $name)

$text of a mock description (a url, a resource) with "{name}" replaced by
$name, a name the test makes unique to its case.

=cut

sub fill_name
{
	my ($text, $name) = @_;
	return undef unless defined $text;
	$text =~ s/\{name\}/$name/g;
	return $text;
}

=pod

=item wait_requests($src, $method, $n, $before)

Wait (at most 30 seconds) until the mock's request log holds $n more $method
requests for its clinia source $src than $before (default 0); true if it
does.

=cut

sub wait_requests
{
	my ($src, $method, $n, $before) = @_;
	$n += $before // 0;
	for (1 .. 600)
	{
		return 1 if mock_requests($src, $method) >= $n;
		usleep(50_000);
	}
	diag "the mock saw fewer than $n $method requests for $src";
	return 0;
}

=pod

=item clinia_target($node, $name, $options, $dbname)

Create target $name (dialect clinia, resource Row) on the mock's clinia
source of the same name; $options is a JSON object as text (default {}),
$dbname the database (default postgres).

=cut

sub clinia_target
{
	my ($node, $name, $options, $dbname) = @_;
	my $url = mock_url("/clinia/sources/$name/v1");
	$options //= '{}';
	$node->safe_psql($dbname // 'postgres',
		"SELECT bulkops.create_target('$name', 'clinia', '$url', resource => 'Row', "
		  . "options => '$options')");
	return;
}

=pod

=item rows_with_failures($node, $table, $rows, $every)

Create table $table of $rows rows (id, name) in database postgres, every
$every-th of which the clinia mock refuses (its column _fail, error code
VALIDATION).

=cut

sub rows_with_failures
{
	my ($node, $table, $rows, $every) = @_;
	$node->safe_psql('postgres',
		"CREATE TABLE $table AS SELECT i AS id, 'row ' || i AS name, "
		  . "CASE WHEN i % $every = 0 THEN 'no' END AS _fail "
		  . "FROM generate_series(1, $rows) AS i");
	return;
}

=pod

=item bulkops_node($name, @conf_lines)

Create, configure and start a cluster with bulkops preloaded, serving the
postgres database and polling quickly.  Extra postgresql.conf lines come
last, so they override the defaults (shared_preload_libraries included); a
line may be a code reference, called with the node (before it starts) to
make the line, e.g. sub { "cron.host = '" . $_[0]->host . "'" }.

=cut

sub bulkops_node
{
	my ($name, @conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	@conf = map { ref $_ eq 'CODE' ? $_->($node) : $_ } @conf;
	$node->append_conf(
		'postgresql.conf', join("\n",
			"shared_preload_libraries = 'bulkops'",
			"bulkops.database_name = 'postgres'",
			"bulkops.poll_interval = '50ms'",
			"bulkops.launcher_naptime = '100ms'",
			@conf));
	$node->start;
	return $node;
}

=pod

=item wait_for_job($node, $job, $timeout)

Wait (at most $timeout seconds, default 60) until job $job is in a final
state; return that state, or undef (with a diagnostic) on timeout.

=cut

sub wait_for_job
{
	my ($node, $job, $timeout) = @_;
	$timeout //= 60;
	croak "job id must be a number" unless $job =~ /^\d+$/;

	my $final = query_until($node,
		"SELECT state NOT IN ('queued', 'running') FROM bulkops.jobs WHERE id = $job",
		't', $timeout);
	my $state = $node->safe_psql('postgres',
		"SELECT state FROM bulkops.jobs WHERE id = $job");
	unless ($final)
	{
		diag "job $job is still '$state' after ${timeout}s: "
		  . $node->safe_psql('postgres',
			"SELECT row_to_json(p) FROM bulkops.job_progress p WHERE id = $job");
		return undef;
	}
	return $state;
}

=pod

=item query_until($node, $sql, $expected, $timeout)

Like $node->poll_query_until (in database postgres, $expected defaulting to
't', $timeout to 60 seconds), but it survives the server going away and
coming back meanwhile: poll_query_until dies of IPC::Run's "ack Broken
pipe" when psql, refused by a server in crash recovery, exits before it
reads its input.  Returns true once $sql gives $expected.

=cut

sub query_until
{
	my ($node, $sql, $expected, $timeout) = @_;
	$expected //= 't';
	$timeout  //= 60;
	my $deadline = time + $timeout;
	my $out;
	while (time < $deadline)
	{
		$out = eval {
			my ($rc, $stdout) = $node->psql('postgres', $sql);
			$rc == 0 ? $stdout : undef;
		};
		return 1 if defined $out && $out eq $expected;
		usleep(100_000);
	}
	diag "query_until: no \"$expected\" after ${timeout}s from: $sql (last: "
	  . ($out // 'an error') . ')';
	return 0;
}

=pod

=item log_says($node, $re, $offset)

Whether $node's server log says $re, after byte $offset, within a minute.

=cut

sub log_says
{
	my ($node, $re, $offset) = @_;
	return eval {
		local $PostgreSQL::Test::Utils::timeout_default = 60;
		$node->wait_for_log($re, $offset);
	};
}

=pod

=item counters_agree($node, $job)

't' when job $job's row counters (rows_succeeded, rows_failed,
rows_cancelled, rows_unknown) are the counts of its receipts by status.

=cut

sub counters_agree
{
	my ($node, $job) = @_;
	croak "job id must be a number" unless $job =~ /^\d+$/;
	return $node->safe_psql(
		'postgres', qq{
		SELECT (rows_succeeded, rows_failed, rows_cancelled, rows_unknown) =
		       (SELECT count(*) FILTER (WHERE status = 'succeeded'),
		               count(*) FILTER (WHERE status = 'failed'),
		               count(*) FILTER (WHERE status = 'cancelled'),
		               count(*) FILTER (WHERE status = 'unknown')
		        FROM bulkops.receipts WHERE job_id = $job)
		FROM bulkops.jobs WHERE id = $job});
}

=pod

=item receipt_rows($node, $job)

Job $job's receipts as "receipts|distinct rows|lowest row|highest
row|succeeded": "$n|$n|1|$n|$n" for a job of $n rows whose every row has
exactly one receipt, succeeded.

=cut

sub receipt_rows
{
	my ($node, $job) = @_;
	croak "job id must be a number" unless $job =~ /^\d+$/;
	return $node->safe_psql(
		'postgres', qq{
		SELECT count(*), count(DISTINCT row_no), min(row_no), max(row_no),
		       count(*) FILTER (WHERE status = 'succeeded')
		FROM bulkops.receipts WHERE job_id = $job});
}

=pod

=item worker_pid($node)

The pid of the bulkops worker of the postgres database (the longest
running one, with several workers per database), as pg_stat_activity
shows it, or '' when there is none.

=cut

sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'bulkops worker' "
		  . "ORDER BY backend_start, pid LIMIT 1");
}

=pod

=item make_rsa_key($dir)

Make an RSA key pair with the openssl CLI (for the OAuth JWT bearer grant):
the private key in $dir/sf-key.pem (mode 0600), and return that path and the
public key as PEM.  Bails out if openssl fails.

=cut

sub make_rsa_key
{
	my ($dir) = @_;
	my $keyfile = "$dir/sf-key.pem";
	system('openssl', 'genrsa', '-out', $keyfile, '2048') == 0
	  or BAIL_OUT('openssl genrsa failed');
	chmod 0600, $keyfile;
	my $pubkey = `openssl rsa -in '$keyfile' -pubout 2>/dev/null`;
	BAIL_OUT('openssl made no public key') unless $pubkey =~ /BEGIN PUBLIC KEY/;
	return ($keyfile, $pubkey);
}

1;
