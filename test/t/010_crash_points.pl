# 010_crash_points.pl - a crash at any step of a job loses no row and sends
# nothing twice that is not safe to repeat.
#
# For every dialect (BulkopsCrash::crash_dialects) and every crash point of
# bulkops.crash_at (see src/crash.c), one job of 100,000 rows per operation
# of the dialect runs (all in one transaction, so they run side by side);
# the process reaching the point kills itself with SIGKILL, the postmaster
# goes through crash recovery, the test clears the setting, and each job
# must then end with:
#   - exactly one receipt per source row, the job's counters agreeing with
#     its receipts and adding up to rows_total, every batch done;
#   - for operations not safe to repeat (insert): no row sent twice (the
#     mock counts every row's mark in every request body), every row said
#     to succeed actually sent, the rows in doubt 'unknown';
#   - for the others (upsert): every row sent at least once and succeeded.
# Some points have a sharper expectation: a crash before anything was sent
# leaves no row unknown; a crash before the first submit leaves at most
# that one batch in doubt.
#
# The enqueue points crash the enqueueing backend: before its commit no job
# may exist afterwards, after it the jobs must run to their end as above.
# "recover" crashes the worker that resumes after a kill -9 of the first.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use BulkopsCrash;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The mock's cheapest answers (--bench: no validation, no store, tasks done at
# the first poll): what is tested is bulkops' bookkeeping, and row marks are
# counted all the same.  011_crash_server.pl runs against the full mock.
start_mock('--bench');
mock_post('/_control/reset');

my $node = crash_node('points');
my $t0   = time;

# point:pass, and what else holds after it (max_unknown: rows per job at most).
# The passes put most crashes in the middle of the jobs; claim:1 and submit:1
# come before anything (resp. more than one batch) could have been sent.
# later: the point lies in a step after the submit, which one-step dialects
# do not have.
my @POINTS = (
	{ at => 'claim:1', max_unknown => 0 },
	{ at => 'submit:1', max_unknown => 'batch' },
	{ at => 'submit:14' },
	{ at => 'submit_answered:10' },
	{ at => 'step_saved:12', later => 1 },
	{ at => 'poll:15', later => 1 },
	{ at => 'fetch:20', later => 1 },
	{ at => 'poll_answered:18', later => 1 },
	{ at => 'receipts:12' },
	{ at => 'batch_done:10' },
	{ at => 'finish_job:1' },
	{ at => 'recover:1', trigger => 'kill the worker' },
	{ at => 'enqueue_commit:1', session => 1 },
);

my $case_no = 0;
for my $d (crash_dialects($node))
{
	for my $p (grep { !($_->{later} && $d->{one_step}) } @POINTS)
	{
		my $case = "$d->{dialect} $p->{at}";
		my $tag  = 'c' . ++$case_no;
		my $offset;
		my $jobs;

		if ($p->{session})
		{
			# the enqueueing backend itself dies; it sets the point for itself
			unlink crash_marker($node);
			$offset = -s $node->logfile;
			$jobs   = start_jobs($node, $d, $tag,
				before => "SET bulkops.crash_at = '$p->{at}';", may_fail => 1);
		}
		else
		{
			# a point the worker reaches at once (claim:1) may kill the
			# enqueueing session after its COMMIT, before psql has read
			# the answer: the jobs exist all the same (checked below)
			$offset = arm_crash($node, $p->{at});
			$jobs   = start_jobs($node, $d, $tag, may_fail => 1);
		}

		if (($p->{trigger} // '') eq 'kill the worker')
		{
			ok( query_until(
					$node,
					"SELECT count(*) > 0 FROM bulkops.receipts r JOIN bulkops.jobs j "
					  . "ON j.id = r.job_id WHERE j.target LIKE '${tag}_%'"),
				"$case: the jobs are under way");
			my $pid = worker_pid($node);
			is(kill('KILL', $pid), 1, "$case: SIGKILL sent to the worker ($pid)");
		}

		wait_for_crash($node, $case, $offset, $jobs);
		disarm_crash($node) unless $p->{session};
		is(job_ids($node, $jobs), scalar @$jobs, "$case: the jobs exist");

		my %expect;
		if (defined $p->{max_unknown})
		{
			$expect{max_unknown} =
			  $p->{max_unknown} eq 'batch' ? $jobs->[0]{batch_size} : $p->{max_unknown};
		}
		check_jobs($node, $jobs, $case, %expect);
		note "$case: done at " . (time - $t0) . "s";
	}

	# A crash in the middle of an enqueue: the transaction never committed, so
	# there is no job, no batch, and nothing was sent.
	{
		my $case = "$d->{dialect} enqueue:3";
		my $tag  = 'c' . ++$case_no;
		unlink crash_marker($node);
		my $offset = -s $node->logfile;
		my $jobs   = start_jobs($node, $d, $tag,
			before => "SET bulkops.crash_at = 'enqueue:3';", may_fail => 1);
		wait_for_crash($node, $case, $offset, $jobs);
		is(job_ids($node, $jobs), 0, "$case: no job exists");
		is( $node->safe_psql(
				'postgres',
				"SELECT count(*) FROM bulkops.batches b WHERE NOT EXISTS "
				  . "(SELECT 1 FROM bulkops.jobs j WHERE j.id = b.job_id)"),
			'0',
			"$case: no batch without its job");
		is(mock_get('/_control/marks')->{total}, 0, "$case: nothing was sent");
	}
}

ok(!$node->log_contains(qr/terminated by signal (?!9:)\d+/),
	'no process died of anything but our SIGKILLs');
note "total " . (time - $t0) . "s";
$node->stop;
done_testing();
