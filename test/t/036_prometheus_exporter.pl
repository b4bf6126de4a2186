# 036_prometheus_exporter.pl - Prometheus out of the box.
#
# Proves that Debian's postgres_exporter (package prometheus-postgres-exporter,
# which test/install-deps.sh installs), started with
# contrib/postgres_exporter/queries.yaml against this test's cluster and
# listening on loopback, serves every bulkops_* series the file defines, with
# the values this test's job produced: 500 rows pushed, 20 refused by the
# mock, one submit answered 429 and retried, no queue left, one worker,
# health 0.  Skipped, saying so, only where the exporter is not installed.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use File::Spec;
use HTTP::Tiny;
use Time::HiRes qw(usleep);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($exporter) = grep { -x $_ }
  map { File::Spec->catfile($_, 'prometheus-postgres-exporter') }
  (File::Spec->path, '/usr/bin');
plan skip_all => 'prometheus-postgres-exporter is not installed '
  . '(Debian package prometheus-postgres-exporter; test/install-deps.sh installs it)'
  unless $exporter;

my $queries = File::Spec->rel2abs('contrib/postgres_exporter/queries.yaml');
ok(-r $queries, 'the queries file is there');

start_mock();
mock_post('/_control/reset');
mock_faults(
	{
		path => '^/clinia/sources/prom/',
		method => 'POST',
		action => 'status',
		status => 429,
		headers => { 'Retry-After' => '0' },
		body => ''
	});

my $node = bulkops_node('prom');
$node->safe_psql('postgres', 'CREATE EXTENSION bulkops');
rows_with_failures($node, 't', 500, 25);
clinia_target($node, 'prom', '{"batch_size": 100, "max_attempts": 3}');
my $job = $node->safe_psql('postgres', "SELECT bulkops.bulk_upsert('prom', 't', key => 'id')");
is(wait_for_job($node, $job), 'partial', 'the job ends partial');
mock_faults();

# the exporter, on a free loopback port, as this user over the unix socket
my $port = PostgreSQL::Test::Cluster::get_free_port();
my ($out, $err) = ('', '');
$ENV{DATA_SOURCE_NAME} = sprintf('host=%s port=%d dbname=postgres user=%s sslmode=disable',
	$node->host, $node->port, scalar getpwuid($<));
my $h;
# stopped whatever happens, a failed check or a die
END { $h->kill_kill if $h && $h->pumpable; }
$h = IPC::Run::start(
	[
		$exporter, "--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$queries", '--disable-default-metrics',
		'--disable-settings-metrics', '--log.level=warn'
	],
	'<', \undef, '>', \$out, '2>', \$err);

my $http = HTTP::Tiny->new(timeout => 10);
my $body = '';
for (1 .. 300)
{
	my $res = $http->get("http://127.0.0.1:$port/metrics");
	$body = $res->{content} if $res->{success};
	last if $body =~ /^bulkops_health_severity/m;
	usleep(100_000);
}
like($body, qr/^bulkops_/m, 'the exporter serves bulkops series');

# name{labels} value, for the series of $name whose labels include %want
sub value
{
	my ($name, %want) = @_;
	my @found;
	foreach my $line (split /\n/, $body)
	{
		next unless $line =~ /^\Q$name\E(?:\{(.*)\})? (\S+)$/;
		my ($labels, $v) = ($1 // '', $2);
		my %l = $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
		push @found, $v
		  unless grep { !defined $l{$_} || $l{$_} ne $want{$_} } keys %want;
	}
	return scalar @found == 1 ? $found[0] + 0 : undef;
}

# every series the file defines is there
my @series;
{
	my $key;
	open my $fh, '<', $queries or die "$queries: $!";
	my $col;
	while (<$fh>)
	{
		$key = $1 if /^(bulkops_\w+):\s*$/;
		$col = $1 if /^\s+- (\w+):\s*$/;
		push @series, "${key}_$col" if /usage: "(GAUGE|COUNTER)"/;
	}
}
cmp_ok(scalar @series, '>=', 15, 'the file defines the series');
foreach my $s (@series)
{
	like($body, qr/^\Q$s\E[{ ]/m, "series $s is served");
}

# the dashboard and the alert rules name no other series
foreach my $file ('contrib/grafana/bulkops-dashboard.json', 'contrib/prometheus/bulkops-alerts.yml')
{
	my %named = map { $_ => 1 } slurp_file($file) =~ /\b(bulkops_[a-z_]+)\b/g;
	my %served = map { $_ => 1 } @series;
	my @unknown = grep { !$served{$_} } sort keys %named;
	ok(%named && !@unknown, "$file names served series only")
	  or diag "not served: @unknown";
}

# with the values the job produced
my %t = (target => 'prom', datname => 'postgres');
is(value('bulkops_rows_total', %t, status => 'succeeded'), 480, 'rows succeeded');
is(value('bulkops_rows_total', %t, status => 'failed'), 20, 'rows failed (the mock refused them)');
is(value('bulkops_rows_total', %t, status => 'unknown'), 0, 'no row unknown');
is(value('bulkops_jobs_count', %t, state => 'partial'), 1, 'one job, partial');
is(value('bulkops_answers_total', %t, class => '429'), 1, 'the 429 answer');
is(value('bulkops_retries_total', %t), 1, 'one retry');
is(value('bulkops_requests_total', %t),
	value('bulkops_answers_total', %t, class => '2xx') + 1,
	'every request answered: 2xx and the 429');
is(value('bulkops_timeouts_total', %t), 0, 'no timeout');
is(value('bulkops_queue_batches', %t), 0, 'nothing queued');
is(value('bulkops_queue_oldest_age_seconds', %t), 0, 'no queued batch waits');
is(value('bulkops_backoff_seconds', %t), 0, 'not in backoff');
is(value('bulkops_receipts_stored', %t), 500, 'receipts kept');
cmp_ok(value('bulkops_receipts_size_bytes', datname => 'postgres'), '>', 0, 'and their size');
is(value('bulkops_workers_count', datname => 'postgres'), 1, 'one worker');
my $lag = value('bulkops_worker_loop_lag_seconds', datname => 'postgres', lane => '0');
ok(defined $lag && $lag >= 0 && $lag < 30, 'the worker loop goes round: lag ' . ($lag // 'none'));
is(value('bulkops_health_severity', datname => 'postgres'), 0, 'health OK');

$h->kill_kill;
$h->finish;
unlike($err, qr/level=error/, 'the exporter logged no error') or diag $err;
$node->stop;
done_testing();
