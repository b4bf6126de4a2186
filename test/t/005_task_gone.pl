# 005_task_gone.pl - a remote task that is "gone" is resent only where resending
# cannot apply a row twice.
#
# Proves the rule of docs/protocols/common.md ("Idempotency: what may be sent again"):
# a request is sent again only where repeating it cannot apply a row twice (an
# idempotent operation: upsert, delete, update by id), otherwise the row's receipt
# says the outcome is unknown; here in the case where polling an
# accepted clinia task answers 404 "task not found" although the task ran (a
# remote side that purges finished tasks, e.g. while bulkops was down after a
# crash; here: the mock runs the task, then answers 404).
#
#   upsert (idempotent): resubmitting is allowed; the job succeeds, each id is
#                        applied at least once.
#   insert (CREATE, not idempotent): the rows of the gone task must not be created
#                        a second time behind a 'succeeded' receipt: remote creates
#                        <= succeeded + unknown receipts, and those rows say unknown.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ROWS = 10;

start_mock();
mock_post('/_control/reset');
# the first poll of a task runs it
mock_post('/_control/config', { clinia => { pending_polls => 0 } });

my $node = bulkops_node('gone');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE TABLE t AS SELECT i AS n, 'row ' || i AS name FROM generate_series(1, $ROWS) AS i;
});

# The next poll runs its task, then is answered 404 "task not found".
sub forget_next_task
{
	mock_delete('/_control/faults');
	mock_post(
		'/_control/faults',
		{
			rules => [
				{
					action => 'status',
					status => 404,
					method => 'GET',
					path   => '^/clinia/.*/bulk/',
					when   => 'after',
					times  => 1,
					body   =>
					  '{"error": {"code": 404, "message": "task not found", "type": "NOT_FOUND"}}'
				}
			]
		});
}

sub run_job
{
	my ($op, $src) = @_;
	my $url = mock_url("/clinia/sources/$src/v1");
	$node->safe_psql('postgres',
		"SELECT bulkops.create_target('$src', 'clinia', '$url', resource => 'Row', "
		  . "options => '{\"batch_size\": $ROWS}')");
	forget_next_task();
	my $job = $node->safe_psql('postgres',
		"SELECT bulkops.bulk_$op('$src', 't', key => 'n')");
	my $state = wait_for_job($node, $job, 60);
	is(mock_get('/_control/faults')->{rules}[0]{fired},
		1, "$op: the task's poll was answered 404 after the task ran");
	my ($count, $distinct, $succeeded, $unknown) = split /\|/,
	  $node->safe_psql(
		'postgres', qq{
		SELECT count(*), count(DISTINCT row_no),
		       count(*) FILTER (WHERE status = 'succeeded'),
		       count(*) FILTER (WHERE status = 'unknown')
		FROM bulkops.receipts WHERE job_id = $job});
	is("$count|$distinct", "$ROWS|$ROWS", "$op: one receipt per row");
	return ($state, $succeeded, $unknown);
}

# upsert: resending is allowed
{
	my ($state, $succeeded) = run_job('upsert', 'up');
	is($state,     'succeeded', 'upsert: job succeeds after resubmitting');
	is($succeeded, $ROWS,       'upsert: every row succeeded');
	my $applied = mock_get('/_control/clinia/applied?src=up&type=Row');
	is(scalar(grep { $applied->{$_} } 1 .. $ROWS),
		$ROWS, 'upsert: every id applied at least once');
}

# insert: resending would create every row of the batch a second time
{
	my ($state, $succeeded, $unknown) = run_job('insert', 'ins');
	my $creates = mock_get('/_control/stats')->{clinia}{creates};
	note "insert: job $state, $succeeded succeeded, $unknown unknown, $creates remote creates";
	cmp_ok($creates, '<=', $succeeded + $unknown,
		'insert: remote creates <= succeeded + unknown receipts (no row created twice unreported)');
	is($unknown, $ROWS,
		'insert: the rows of the task that is gone are unknown, not sent again');
}

$node->stop;
done_testing();
