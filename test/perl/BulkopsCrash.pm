# BulkopsCrash.pm - what the crash tests (test/t/010_crash_points.pl,
# 012_crash_server.pl) share: the dialects they run, their jobs, the crash
# injection setting, and the checks every crashed job must pass.
#
#   use lib 'test/perl';
#   use BulkopsTest;
#   use BulkopsCrash;
#
#   my $node = crash_node('points');           # started, 100,000 source rows
#   for my $d (crash_dialects($node)) {
#       my $jobs = start_jobs($node, $d, 'case1');   # one job per operation
#       ...crash...
#       check_jobs($node, $jobs, 'case1');
#   }
#
# Every row of a job carries a mark "crm-<op>-<n>-x" in a column that each
# dialect sends, so the mock can count how often each row was sent whatever
# the wire format (/_control/marks): a row of an operation that is not safe
# to repeat must never be sent twice.
package BulkopsCrash;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use BulkopsTest;

our @EXPORT = qw($ROWS crash_dialects crash_node start_jobs job_ids arm_crash
  disarm_crash crash_marker wait_for_crash check_jobs);

our $ROWS = 100_000;

my %DEFAULT_OPTIONS = (batch_size => 5000, concurrency => 4);
my $DEFAULT_SOURCE =
  q{SELECT id, 'crm-{op}-' || id || '-x' AS tag, 'thing ' || id AS name FROM crash_rows};
my $MARK_PATTERN = '(crm-[a-z]+-[0-9]+)-x';

=pod

=item crash_dialects($node)

The dialects to crash: every one of bulkops.dialects() (see
BulkopsTest::dialects; BULKOPS_CRASH_DIALECTS="a b" also keeps only those),
each as a hash of
  dialect, mount: its name and where its mock module is mounted;
  url, resource: where a job's rows go on the mock, "{name}" replaced by a
    name unique to the job (letters and digits) so that jobs never share
    remote records;
  ops: the operations to run, "!" after those bulkops.dialects() does not
    call idempotent (not safe to repeat);
  options: the target's, over batch_size 5000 and concurrency 4;
  one_step: every answer is final (no remote task, no later step to crash in);
  key: the key column (default "id"); source: the query ("{op}" replaced by
    the operation's name), which must send a column whose value is the mark.
All of it comes from TESTS["crash"] (over TESTS["target"]) of the dialect's
mock module; without it, the dialect's insert and upsert go to its mount with
resource "Contact", and a note says so.

=cut

sub crash_dialects
{
	my ($node) = @_;
	my %want = map { $_ => 1 } split ' ', $ENV{BULKOPS_CRASH_DIALECTS} // '';
	my @out;

	for my $d (dialects($node))
	{
		next if %want && !$want{ $d->{name} };
		my $c = $d->{mock}{crash};
		my %has = map { $_ => 1 } @{ $d->{operations} };
		my %idempotent = map { $_ => 1 } @{ $d->{idempotent} };
		my @ops = $c->{ops} ? @{ $c->{ops} } : grep { $has{$_} } qw(insert upsert);
		missing("dialect \"$d->{name}\" has neither insert nor upsert: "
			  . "test/mock/$d->{name}.py must name the operations to crash (TESTS crash ops)")
		  unless @ops;
		for my $op (@ops)
		{
			missing("test/mock/$d->{name}.py crashes operation \"$op\", "
				  . "which dialect $d->{name} does not have")
			  unless $has{$op};
		}
		diag "dialect $d->{name}: test/mock/$d->{name}.py has no TESTS: crashing "
		  . "@ops on $c->{url} with resource \"$c->{resource}\""
		  unless $d->{mock}{described};
		push @out,
		  {
			dialect  => $d->{name},
			mount    => $d->{mock}{mount},
			url      => $c->{url},
			resource => $c->{resource},
			ops      => join(' ', map { $idempotent{$_} ? $_ : "$_!" } @ops),
			options  => $c->{options},
			one_step => $c->{one_step},
			key      => $c->{key},
			source   => $c->{source},
		  };
	}
	missing('no dialect to crash among BULKOPS_CRASH_DIALECTS') unless @out;
	return @out;
}

=pod

=item crash_node($name, @conf)

A started node that restarts after a crash, with bulkops installed and the
table crash_rows of $ROWS rows.  BULKOPS_CRASH_WORKERS in the environment
sets bulkops.workers_per_database (default 1), to run the matrices with
several workers per database.

=cut

sub crash_node
{
	my ($name, @conf) = @_;
	my $workers = $ENV{BULKOPS_CRASH_WORKERS} // 1;
	my $node = bulkops_node($name, 'restart_after_crash = on',
		"bulkops.workers_per_database = $workers", @conf);
	$node->safe_psql(
		'postgres', qq{
		CREATE EXTENSION bulkops;
		CREATE TABLE crash_rows AS SELECT i AS id FROM generate_series(1, $ROWS) AS i;
	});
	return $node;
}

=pod

=item start_jobs($node, $dialect, $case, %opts)

Create one target per operation of $dialect (named "<case>_<op>", each on
a mock source of its own), restart the mock's mark counts, and enqueue one
job per operation in a single transaction.  Returns the list of jobs as
hashes (op, target, once, rows, batch_size); their ids are looked up with
job_ids() since an enqueue may itself be crashed (opts: before => SQL run
first in the same session, e.g. a SET; may_fail => 1).

=cut

sub start_jobs
{
	my ($node, $d, $case, %opts) = @_;
	my %options = (%DEFAULT_OPTIONS, %{ $d->{options} // {} });
	my $optjson = JSON::PP->new->canonical->encode(\%options);
	my (@jobs, @calls);

	for my $word (split ' ', $d->{ops})
	{
		my ($op, $once) = $word =~ /^([a-z]+)(!?)$/
		  or croak "bad operation \"$word\"";
		my $target = "${case}_$op";
		(my $name = $target) =~ s/[^A-Za-z0-9]//g;
		my $url = mock_url(fill_name($d->{url}, $name));
		my $res =
		  defined $d->{resource} ? "'" . fill_name($d->{resource}, $name) . "'" : 'NULL';
		$node->safe_psql('postgres',
			    "SELECT bulkops.create_target('$target', '$d->{dialect}', '$url', "
			  . "resource => $res, options => '$optjson')");
		(my $source = $d->{source} // $DEFAULT_SOURCE) =~ s/\{op\}/$op/g;
		$source =~ s/'/''/g;
		my $key = $d->{key} // 'id';
		push @calls, "SELECT bulkops.bulk_$op('$target', '$source', key => '$key');";
		push @jobs,
		  {
			op         => $op,
			target     => $target,
			once       => $once ? 1 : 0,
			rows        => $ROWS,
			batch_size  => $options{batch_size},
			concurrency => $options{concurrency},
			dialect     => $d->{dialect},
		  };
	}
	mock_post('/_control/marks', { pattern => $MARK_PATTERN });

	my $sql = join("\n", $opts{before} // '', 'BEGIN;', @calls, 'COMMIT;');
	if ($opts{may_fail})
	{
		my ($ret, $out, $err) = $node->psql('postgres', $sql);
		note "enqueue ended with status $ret: $err" if $ret;
	}
	else
	{
		$node->safe_psql('postgres', $sql);
	}
	return \@jobs;
}

=pod

=item job_ids($node, $jobs)

Fill in each job's id (undef when its enqueue never committed); returns the
number of jobs that exist.

=cut

sub job_ids
{
	my ($node, $jobs) = @_;
	my $n = 0;
	for my $j (@$jobs)
	{
		my $id = $node->safe_psql('postgres',
			"SELECT id FROM bulkops.jobs WHERE target = '$j->{target}'");
		$j->{id} = $id eq '' ? undef : $id;
		$n++ if defined $j->{id};
	}
	return $n;
}

sub crash_marker { return $_[0]->data_dir . '/bulkops_crash_fired' }

=pod

=item arm_crash($node, $spec)

Make bulkops.crash_at = $spec the setting of every process (ALTER SYSTEM and
a reload), re-arm it (no marker of an earlier crash), and wait until the
worker says it has taken it.  Passes are counted per process: with several
workers per database, each sees about its share of them, so "point:N" is
armed as "point:ceil(N / workers)".

=cut

sub arm_crash
{
	my ($node, $spec) = @_;
	my $workers = $ENV{BULKOPS_CRASH_WORKERS} // 1;
	$spec =~ s{:(\d+)$}{':' . int(($1 + $workers - 1) / $workers)}e
	  if $workers > 1;
	unlink crash_marker($node);
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET bulkops.crash_at = '$spec'; SELECT pg_reload_conf();");
	my $armed = eval {
		local $PostgreSQL::Test::Utils::timeout_default = 30;
		$node->wait_for_log(qr/bulkops worker: crash point "\Q$spec\E" armed/, $offset);
	};
	ok($armed, "$spec: the worker took the crash point");
	return $offset;
}

=pod

=item disarm_crash($node)

Clear bulkops.crash_at (after a crash: once the server accepts connections
again).  The marker of the crash stays, so nothing fires meanwhile.

=cut

sub disarm_crash
{
	my ($node) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM RESET bulkops.crash_at; SELECT pg_reload_conf();");
	query_until($node, 'SHOW bulkops.crash_at', '');
}

=pod

=item wait_for_crash($node, $case, $offset, $jobs)

Wait until the crash point fired (its marker exists) and the server went
through crash recovery; fails if the jobs ended first.

=cut

sub wait_for_crash
{
	my ($node, $case, $offset, $jobs) = @_;
	my $marker   = crash_marker($node);
	my $deadline = time + 90;
	my $fired;
	while (time < $deadline)
	{
		last if $fired = -e $marker;
		usleep(50_000);
		# every job final without the point: it was never reached
		my $open = eval {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM bulkops.jobs WHERE state IN ('queued', 'running')");
		};
		last if defined $open && $open eq '0' && !($fired = -e $marker);
	}
	ok($fired, "$case: the crash point fired");
	return unless $fired;

	# the recovery that follows this crash, not one before it (see "recover")
	my ($said, $recovered);
	$deadline = time + 60;
	while (time < $deadline && !$recovered)
	{
		my $log = slurp_file($node->logfile, $offset);
		$said = $log =~ /bulkops: crash point "[a-z_]+" reached .* kills itself/g;
		$recovered = $said
		  && $log =~ /\G.*?all server processes terminated; reinitializing/s;
		usleep(100_000) unless $recovered;
	}
	ok($said,      "$case: the process said where it died");
	ok($recovered, "$case: the server went through crash recovery");
	query_until($node, 'SELECT 1', '1')
	  or BAIL_OUT('the server did not come back after a crash');
}

=pod

=item check_jobs($node, $jobs, $case, %expect)

Wait for each job of $jobs to end, then check what must hold after any
crash: exactly one receipt per row, the job's counters agreeing with its
receipts and adding up to rows_total, every batch done; for operations not
safe to repeat, no row sent twice, every succeeded row sent, and nothing but
succeeded or unknown; for the others, every row sent and succeeded.
%expect: max_unknown => N (at most N unknown rows per job).  With several
workers per database, a crash also catches the other workers with their
requests in flight, so up to concurrency x batch_size more rows of a job
may rightly be unknown.

=cut

sub check_jobs
{
	my ($node, $jobs, $case, %expect) = @_;

	for my $j (@$jobs)
	{
		my $c  = "$case, $j->{dialect} $j->{op}";
		my $id = $j->{id};
		my $n  = $j->{rows};
		unless (defined $id)
		{
			fail("$c: the job exists");
			next;
		}
		my $state = wait_for_job($node, $id, 180);
		like($state // 'running', qr/^(succeeded|partial|failed)$/, "$c: job $id is final");

		my ($count, $distinct, $lo, $hi, $ok, $failed, $cancelled, $unknown) = split /\|/,
		  $node->safe_psql(
			'postgres', qq{
			SELECT count(*), count(DISTINCT row_no), min(row_no), max(row_no),
			       count(*) FILTER (WHERE status = 'succeeded'),
			       count(*) FILTER (WHERE status = 'failed'),
			       count(*) FILTER (WHERE status = 'cancelled'),
			       count(*) FILTER (WHERE status = 'unknown')
			FROM bulkops.receipts WHERE job_id = $id});
		is("$count|$distinct|$lo..$hi", "$n|$n|1..$n", "$c: exactly one receipt per row");
		is( $node->safe_psql(
				'postgres', qq{
				SELECT rows_total, rows_succeeded, rows_failed, rows_cancelled, rows_unknown,
				       rows_succeeded + rows_failed + rows_cancelled + rows_unknown,
				       batches_done = batches_total
				FROM bulkops.jobs WHERE id = $id}),
			"$n|$ok|$failed|$cancelled|$unknown|$n|t",
			"$c: counters agree with the receipts and add up to rows_total");
		is( $node->safe_psql(
				'postgres',
				"SELECT count(*) FROM bulkops.batches WHERE job_id = $id AND state <> 'done'"),
			'0',
			"$c: every batch is done");

		my $marks = mock_get("/_control/marks?prefix=crm-$j->{op}-&upto=$n&limit=$n");
		if ($j->{once})
		{
			is($marks->{repeated_count}, 0, "$c: no row was sent twice")
			  or diag explain [ (sort keys %{ $marks->{repeated} })[ 0 .. 9 ] ];
			is("$failed|$cancelled", '0|0', "$c: no row failed or was cancelled");
			my $unsent = @{ $marks->{missing} }
			  ? $node->safe_psql(
				'postgres', qq{
				SELECT count(*) FROM bulkops.receipts WHERE job_id = $id
				AND status = 'succeeded'
				AND row_no = ANY ('{@{[ join ',', @{ $marks->{missing} } ]}}'::bigint[])})
			  : 0;
			is($unsent, 0, "$c: every row said to succeed was sent");
			is($state, $unknown ? 'partial' : 'succeeded', "$c: the state says what happened");
		}
		else
		{
			is($marks->{missing_count}, 0, "$c: every row was sent at least once");
			is("$ok|$state", "$n|succeeded", "$c: every row succeeded (resending is safe)");
		}
		if (defined $expect{max_unknown})
		{
			my $max = $expect{max_unknown};
			$max += ($j->{concurrency} // 1) * $j->{batch_size}
			  if ($ENV{BULKOPS_CRASH_WORKERS} // 1) > 1;
			cmp_ok($unknown, '<=', $max, "$c: at most $max rows unknown");
		}
		note "$c: $ok succeeded, $unknown unknown; $marks->{sent} rows sent "
		  . "$marks->{sent_total} times";
	}
}

1;
