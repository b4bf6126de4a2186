# 032_abort.pl - when a job is cancelled or times out, the worker sends the
# dialect's abort request (dialect.h, build_abort) once for each batch whose remote
# task is running, then polls briefly for the real outcome.
#
# Uses the tests' own "abortable" dialect (test/modules/abortable, built here and
# preloaded after bulkops by absolute path; its mock is test/mock/abortable.py):
# one remote job per batch that processes rows_per_poll rows per poll until it is
# done or aborted; an aborted job reports its unprocessed rows "skipped".
#
#   1. remote jobs that make no progress, cancel: one abort per running job, their
#      rows cancelled as the remote side reports them, nothing unknown
#   2. remote jobs that progress a row per poll, cancel: rows processed before the
#      abort succeeded, the rest cancelled; the remote side agrees row by row
#   3. the remote side refuses the abort (409): the refusal is logged, the jobs are
#      polled until the grace ends, their rows unknown
#   4. a deadline instead of a cancel: the same aborts, state timed_out
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use Cwd qw(abs_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $ROWS = 200;

system('make', '-s', '-C', 'test/modules/abortable') == 0
  or BAIL_OUT('could not build test/modules/abortable');
my $lib = abs_path('test/modules/abortable/bulkops_abortable.so');

start_mock();
mock_post('/_control/reset');

my $node = bulkops_node('abort', "shared_preload_libraries = 'bulkops, $lib'");
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE TABLE t AS SELECT i AS id, 'row ' || i AS name FROM generate_series(1, $ROWS) AS i;
});

# remote jobs of source $src, as the mock sees them
sub remote_jobs
{
	my ($src) = @_;
	my $jobs = mock_get('/_control/abortable/jobs');
	return [ map { $jobs->{$_} } grep { $jobs->{$_}{src} eq $src } sort keys %$jobs ];
}

# Start an upsert on a new target $src; wait until $n remote jobs run.
sub start_job
{
	my ($src, $batch, $n, $options) = @_;
	my $url = mock_url("/abortable/$src");
	$node->safe_psql('postgres',
		"SELECT bulkops.create_target('$src', 'abortable', '$url', "
		  . "options => '{\"batch_size\": $batch, \"concurrency\": 4}')");
	my $job = $node->safe_psql('postgres',
		"SELECT bulkops.bulk_upsert('$src', 't', key => 'id', options => '"
		  . ($options // '{}') . "')");
	for (1 .. 600)
	{
		last if @{ remote_jobs($src) } >= $n;
		sleep 0.05;
	}
	is(scalar @{ remote_jobs($src) }, $n, "$src: $n remote jobs running");
	return $job;
}

sub receipts
{
	my ($job) = @_;
	return {
		map { split /\|/ } split /\n/,
		$node->safe_psql('postgres',
			"SELECT status || ': ' || coalesce(error_message, ''), count(*) "
			  . "FROM bulkops.receipts WHERE job_id = $job GROUP BY 1")
	};
}

# rows the remote side applied never say cancelled; rows said succeeded were applied
sub agrees
{
	my ($src, $job) = @_;
	my $applied = mock_get("/_control/abortable/applied?src=$src");
	my %status = map { split /\|/ } split /\n/,
	  $node->safe_psql('postgres',
		"SELECT key, status FROM bulkops.receipts WHERE job_id = $job");
	my @bad = grep {
		($applied->{$_} && $status{$_} ne 'succeeded')
		  || (!$applied->{$_} && $status{$_} eq 'succeeded')
	} keys %status;
	is(scalar(@bad), 0, "$src: receipts agree with what the remote side applied")
	  or diag "disagreeing keys: @bad";
	is(scalar(keys %status), $ROWS, "$src: one receipt per row");
}

# 1. no progress: every running remote job is aborted once
{
	mock_post('/_control/config', { abortable => { rows_per_poll => 0 } });
	my $job = start_job('still', 10, 4);
	$node->safe_psql('postgres', "SELECT bulkops.cancel($job)");
	is(wait_for_job($node, $job, 15), 'cancelled', 'still: job cancelled');
	is_deeply([ map { "$_->{state}/$_->{aborts}" } @{ remote_jobs('still') } ],
		[ ('aborted/1') x 4 ], 'still: each running remote job was aborted once');
	is_deeply(
		receipts($job),
		{
			'cancelled: the remote job was aborted before this row' => 40,
			'cancelled: cancelled by bulkops.cancel()'              => 160
		},
		'still: rows of the aborted jobs cancelled as the remote side says, the rest before sending'
	);
	agrees('still', $job);
}

# 2. a row per poll: what was processed before the abort succeeded
{
	mock_post('/_control/config', { abortable => { rows_per_poll => 1 } });
	my $job = start_job('slowly', 50, 4);
	$node->safe_psql('postgres', "SELECT bulkops.cancel($job)");
	is(wait_for_job($node, $job, 15), 'cancelled', 'slowly: job cancelled');
	my $remote = remote_jobs('slowly');
	is_deeply([ map { "$_->{state}/$_->{aborts}" } @$remote ],
		[ ('aborted/1') x 4 ], 'slowly: each remote job was aborted once');
	my $processed = 0;
	$processed += $_->{processed} for @$remote;
	my $r = receipts($job);
	is($r->{'succeeded: '} // 0, $processed,
		"slowly: the $processed rows processed before the aborts succeeded");
	is($r->{'cancelled: the remote job was aborted before this row'},
		$ROWS - $processed, 'slowly: the others were skipped by the remote side');
	agrees('slowly', $job);
}

# 3. the abort is refused: polled until the grace ends, then unknown
{
	mock_post('/_control/config', { abortable => { rows_per_poll => 0, abort_status => 409 } });
	my $job = start_job('stubborn', 10, 4);
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT bulkops.cancel($job)");
	is(wait_for_job($node, $job, 15), 'cancelled', 'stubborn: job cancelled');
	is_deeply([ map { "$_->{state}/$_->{aborts}" } @{ remote_jobs('stubborn') } ],
		[ ('running/1') x 4 ], 'stubborn: one abort per remote job, refused');
	my $r = receipts($job);
	is(scalar(grep { /^unknown: the job was cancelled while remote task j_\d+ was running \(abort requested\); its outcome was not learned in time$/ } keys %$r),
		4, 'stubborn: the rows of each running job are unknown, naming it');
	is($r->{'cancelled: cancelled by bulkops.cancel()'}, 160, 'stubborn: the rest cancelled');
	like(slurp_file($node->logfile, $offset),
		qr/bulkops could not abort remote task j_\d+ of job $job: HTTP 409/,
		'stubborn: the refusal is logged');
	agrees('stubborn', $job);
	mock_post('/_control/config', { abortable => { abort_status => 200 } });
}

# 4. a deadline aborts the same way
{
	mock_post('/_control/config', { abortable => { rows_per_poll => 0 } });
	my $job = start_job('late', 10, 4, '{"deadline": 1}');
	is(wait_for_job($node, $job, 20), 'timed_out', 'late: job timed out');
	is_deeply([ map { "$_->{state}/$_->{aborts}" } @{ remote_jobs('late') } ],
		[ ('aborted/1') x 4 ], 'late: each running remote job was aborted once');
	is(receipts($job)->{"cancelled: the job's deadline passed before this row was sent"},
		160, 'late: rows never sent say the deadline passed');
	agrees('late', $job);
}

ok(!grep(/terminated by signal/, slurp_file($node->logfile)), 'no process crashed');
$node->stop;
done_testing();
