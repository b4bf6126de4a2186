# 012_crash_server.pl - the whole server going away mid-job loses no row and
# sends nothing twice that is not safe to repeat.
#
# For every dialect (BulkopsCrash::crash_dialects), one job of 100,000 rows per
# operation (side by side), interrupted in the middle by
#   (a) kill -9 of the postmaster (its children notice and exit; then a start),
#   (b) an immediate shutdown, then a start;
# and, for the operations not safe to repeat,
#   (c) a crash of the worker while a batch waits to retry a submit the remote
#       side refused with 429 (Retry-After: 10 s, which holds the whole
#       target, and is honoured again after the restart): that batch was
#       never applied, so after the restart it must be sent (once) and
#       succeed, not be written off as 'unknown'.
# Then, for an upsert (clinia), what a crash leaves open must survive it:
#   (d) a submit in flight at a crash may have been applied; the batch is
#       sent again after the restart, and if the job is cancelled before that
#       resend got through (here: it is answered 429), its rows are 'unknown',
#       not 'cancelled';
#   (e) the same for a batch still queued when the job is cancelled.
# Afterwards each job must pass BulkopsCrash::check_jobs: one receipt per
# row, counters adding up, no row of an insert sent twice, every row of an
# upsert sent and succeeded.
#
# "In the middle" is made certain by the mock: after the first few dozen
# requests it answers each one late, so the jobs crawl; the test waits until
# receipts exist and the jobs still run, interrupts, and removes the delay.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use BulkopsCrash;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

start_mock();
mock_post('/_control/reset');

my $node = crash_node('server');
my $t0   = time;
my $case_no = 0;

sub slow_mock_after
{
	my ($skip) = @_;
	mock_delete('/_control/faults');
	mock_post('/_control/faults',
		{ rules => [ { action => 'delay', seconds => 0.5, skip => $skip, times => -1 } ] });
}

# Wait until the jobs of $tag have receipts and all still run.
sub wait_mid_job
{
	my ($case, $tag, $njobs) = @_;
	ok( $node->poll_query_until(
			'postgres', qq{
			SELECT count(*) = $njobs AND bool_and(j.state = 'running')
			       AND sum(j.rows_succeeded + j.rows_unknown) >= 5000
			FROM bulkops.jobs j WHERE j.target LIKE '${tag}_%'}),
		"$case: the jobs are under way");
}

sub children_of_postmaster
{
	return split /\n/,
	  $node->safe_psql('postgres',
		'SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()');
}

my %interrupt = (
	'kill -9 of the postmaster' => sub {
		my @pids = children_of_postmaster();
		$node->kill9;
		# a new postmaster refuses to start while the old one's children live
		my $deadline = time + 60;
		usleep(50_000) while time < $deadline && grep { kill 0, $_ } @pids;
		is(scalar(grep { kill 0, $_ } @pids), 0,
			'the old postmaster\'s children are gone');
		mock_delete('/_control/faults');
		$node->start;
	},
	'immediate shutdown' => sub {
		$node->stop('immediate');
		mock_delete('/_control/faults');
		$node->start;
	});

for my $d (crash_dialects($node))
{
	for my $how (sort keys %interrupt)
	{
		my $case = "$d->{dialect}, $how";
		my $tag  = 's' . ++$case_no;
		slow_mock_after(8);
		my $jobs = start_jobs($node, $d, $tag);
		wait_mid_job($case, $tag, scalar @$jobs);
		$interrupt{$how}->();
		is(job_ids($node, $jobs), scalar @$jobs, "$case: the jobs exist");
		check_jobs($node, $jobs, $case);
		note "$case: done at " . (time - $t0) . "s";
	}

	# (c) a submit refused with 429 is not in doubt
	{
		my $case = "$d->{dialect}, crash while a submit waits after a 429";
		my $tag  = 's' . ++$case_no;
		my %once = (%$d, ops => join(' ', grep { /!$/ } split ' ', $d->{ops}));
		next unless $once{ops};
		my $prefix = "$d->{mount}/";
		mock_delete('/_control/faults');
		mock_post(
			'/_control/faults',
			{
				rules => [
					{
						action  => 'status',
						status  => 429,
						path    => "^\Q$prefix\E",
						headers => { 'Retry-After' => '10' },
						times   => 1
					}
				]
			});
		my $jobs = start_jobs($node, \%once, $tag);
		job_ids($node, $jobs);
		my $ids = join ',', map { $_->{id} } @$jobs;
		# the hold keeps every other batch of the target from being sent:
		# once the answers in flight are in, no submit is in doubt
		ok( $node->poll_query_until(
				'postgres', qq{
				SELECT count(*) FILTER (WHERE last_error LIKE '%429%' AND step = 0) = 1
				       AND count(*) FILTER (WHERE state = 'active' AND step = 0
				                            AND maybe_applied) = 0
				FROM bulkops.batches WHERE job_id IN ($ids) AND state <> 'done'}),
			"$case: the refused batch waits to retry, no submit is in flight");
		usleep(300_000);
		my $pid = worker_pid($node);
		is(kill('KILL', $pid), 1, "$case: SIGKILL sent to the worker ($pid)");
		check_jobs($node, $jobs, $case, max_unknown => 0);
		note "$case: done at " . (time - $t0) . "s";
	}
}

# (d) and (e): a small upsert job of one batch on a target of its own
sub small_upsert
{
	my ($name) = @_;
	my $url = mock_url("/clinia/sources/$name/v1");
	$node->safe_psql('postgres',
		    "SELECT bulkops.create_target('$name', 'clinia', '$url', resource => 'Thing', "
		  . "options => '{\"batch_size\": 10, \"concurrency\": 1}')");
	return "SELECT bulkops.bulk_upsert('$name', 'SELECT id FROM crash_rows WHERE id <= 10', key => 'id')";
}

sub receipts_say
{
	my ($job) = @_;
	return $node->safe_psql(
		'postgres', qq{
		SELECT string_agg(DISTINCT status || ': ' || error_message, '; ')
		       || ' | ' || count(*)
		FROM bulkops.receipts WHERE job_id = $job});
}

{
	my $case = 'clinia upsert, cancelled after a crash during its submit';
	mock_delete('/_control/faults');
	mock_post(
		'/_control/faults',
		{
			rules => [
				# the submit is in flight when the worker dies ...
				{ action => 'delay', seconds => 3, method => 'POST', times => 1 },
				# ... and its resend after the restart is put off for an hour
				{
					action  => 'status',
					status  => 429,
					method  => 'POST',
					headers => { 'Retry-After' => '3600' },
					times   => 1
				}
			]
		});
	my $job = $node->safe_psql('postgres', small_upsert('up_cancel'));
	ok( query_until(
			$node,
			"SELECT maybe_applied FROM bulkops.batches WHERE job_id = $job AND state = 'active'"),
		"$case: the submit is marked as possibly applied while in flight");
	my $pid = worker_pid($node);
	is(kill('KILL', $pid), 1, "$case: SIGKILL sent to the worker ($pid)");
	ok( query_until(
			$node,
			"SELECT last_error LIKE '%429%' AND maybe_applied FROM bulkops.batches "
			  . "WHERE job_id = $job AND state = 'active'"),
		"$case: after the restart it waits to be sent again, still possibly applied");
	$node->safe_psql('postgres', "SELECT bulkops.cancel($job)");
	is(wait_for_job($node, $job, 60), 'cancelled', "$case: the job ends cancelled");
	is( receipts_say($job),
		'unknown: the job was cancelled before this row was sent again; '
		  . 'an earlier attempt may have been applied | 10',
		"$case: its rows are unknown, not cancelled");
	mock_delete('/_control/faults');
}

{
	my $case = 'clinia upsert, cancelled while queued after a crash during its submit';
	# as recovery leaves such a batch: queued, possibly applied (in the
	# enqueueing transaction, so that the worker cannot take it first)
	my $job = $node->safe_psql(
		'postgres', "BEGIN;\n" . small_upsert('up_queued') . qq{ \\gset
		UPDATE bulkops.batches SET maybe_applied = true WHERE job_id = :bulk_upsert;
		SELECT bulkops.cancel(:bulk_upsert);
		SELECT :bulk_upsert;
		COMMIT;});
	($job) = $job =~ /(\d+)$/;
	is(wait_for_job($node, $job, 60), 'cancelled', "$case: the job ends cancelled");
	is( receipts_say($job),
		'unknown: the job was cancelled before this row was sent again; '
		  . 'an earlier attempt may have been applied | 10',
		"$case: its rows are unknown, not cancelled");
	is( $node->safe_psql(
			'postgres',
			"SELECT rows_cancelled || ' ' || rows_unknown FROM bulkops.jobs WHERE id = $job"),
		'0 10',
		"$case: and counted so");
}

ok(!$node->log_contains(qr/terminated by signal (?!9:)\d+/),
	'no process died of anything but our SIGKILLs');
note "total " . (time - $t0) . "s";
$node->stop;
done_testing();
