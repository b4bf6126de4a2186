# 018_tenants.pl - tenants cannot stall each other.
#
# Two roles share the database and its worker.  Tenant A holds up its own
# jobs in every way a role can; tenant B's pushes must still finish while A
# is doing so, and A's jobs must end properly once A lets go:
#
#   1. A leaves "BEGIN; SELECT bulkops.cancel(job)" open while the worker
#      holds answers for that job (through a target B shares): B's job
#      finishes while A's transaction is open; then A commits, and A's job
#      ends cancelled, one receipt per row, its counters consistent.
#   2. A holds "LOCK TABLE dest IN ACCESS EXCLUSIVE MODE" on its export's
#      destination while a page waits to be written: B's job finishes while
#      the lock is held; then A rolls back, and the export writes every
#      record exactly once.
#   3. A's destination has a trigger slower than bulkops.user_code_timeout:
#      the export fails with a last_error naming the setting, writes
#      nothing, and B's job finishes.
#   4. A's job passes its deadline while A holds it (a cancel left open):
#      the deadline sweep skips it, B's job finishes meanwhile; once A rolls
#      back, the sweep comes back and the job ends timed_out.
#   5. The worker is killed while it holds a deferred result: after the
#      restart the job ends with exactly one receipt per row.
# Throughout 1-4: no deadlock in the server log, and the worker never
# restarted.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $ROWS = 200;

start_mock();
mock_post('/_control/reset');
mock_post('/_control/config', { clinia => { pending_polls => 0 } });

my $node = bulkops_node('tenants', "bulkops.user_code_timeout = '1s'",
	'restart_after_crash = on');
my $sfurl = mock_url('/salesforce');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	CREATE ROLE tenant_a LOGIN;
	CREATE ROLE tenant_b LOGIN;
	CREATE SCHEMA a AUTHORIZATION tenant_a;
	CREATE TABLE a.src AS SELECT i AS id, 'a ' || i AS name FROM generate_series(1, $ROWS) i;
	CREATE TABLE public.src_b AS SELECT i AS id, 'b ' || i AS name FROM generate_series(1, $ROWS) i;
	ALTER TABLE a.src OWNER TO tenant_a;
	GRANT SELECT ON public.src_b TO tenant_b;
	SELECT bulkops.create_target('sf', 'salesforce', '$sfurl', 'Account', NULL,
	                             '{"poll_interval": 0.05}');
	SELECT bulkops.grant_target('sf', 'tenant_a', 'export');
});
for my $t ('shared', 'a_only', 'b_only')
{
	clinia_target($node, $t, '{"batch_size": 20, "concurrency": 4}');
	$node->safe_psql('postgres',
		"SELECT bulkops.grant_target('$t', 'tenant_a', 'push'); "
		  . "SELECT bulkops.grant_target('$t', 'tenant_b', 'push')");
}

my $worker = worker_pid($node);
like($worker, qr/^\d+$/, 'the worker runs');

# A psql session of $role kept open, to hold a transaction across steps.
sub session
{
	my ($role) = @_;
	my $s = { in => '', out => '', err => '' };
	$s->{timer} = IPC::Run::timeout(120);
	$s->{h} = IPC::Run::start(
		[
			'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-f', '-',
			'-d', $node->connstr('postgres') . " user=$role"
		],
		'<', \$s->{in}, '>', \$s->{out}, '2>', \$s->{err},
		$s->{timer});
	return $s;
}

# Run $sql in session $s and return its output, once it has all come.
sub in_session
{
	my ($s, $sql) = @_;
	$s->{out} = '';
	$s->{in} .= "$sql;\n\\echo __done__\n";
	$s->{timer}->start(120);
	$s->{h}->pump until $s->{out} =~ /__done__/;
	(my $out = $s->{out}) =~ s/\n?__done__\n?//;
	return $out;
}

sub end_session
{
	my ($s) = @_;
	$s->{in} .= "\\q\n";
	$s->{h}->finish;
	return;
}

# As $role, in a session of its own.
sub as
{
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', "SET ROLE $role; $sql");
}

# Whether session $s (its backend) still has a transaction open.
sub still_open
{
	my ($s) = @_;
	my $pid = in_session($s, 'SELECT pg_backend_pid()');
	return $node->safe_psql('postgres',
		"SELECT state FROM pg_stat_activity WHERE pid = $pid") eq 'idle in transaction';
}

# The next $times submits to clinia source $src are answered $secs late.
sub slow_submits
{
	my ($src, $secs, $times) = @_;
	mock_faults(
		{
			action  => 'delay',
			seconds => $secs,
			method  => 'POST',
			path    => "^/clinia/sources/$src/",
			times   => $times
		});
	return;
}

# One receipt per row of job $job, and counters that agree with them.
sub check_receipts
{
	my ($case, $job, $n) = @_;
	is( $node->safe_psql(
			'postgres', qq{
			SELECT count(*), count(DISTINCT row_no), min(row_no), max(row_no)
			FROM bulkops.receipts WHERE job_id = $job}),
		"$n|$n|1|$n", "$case: one receipt per row");
	is(counters_agree($node, $job), 't', "$case: the job's counters agree with its receipts");
	is($node->safe_psql('postgres', "SELECT batches_done = batches_total FROM bulkops.jobs WHERE id = $job"),
		't', "$case: the job counted every batch done");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM bulkops.batches WHERE job_id = $job AND state <> 'done'"),
		'0', "$case: every batch is done");
}

# Tenant B pushes its table through $target; its job must succeed while
# session $s (tenant A's) keeps its transaction open.
sub b_finishes_meanwhile
{
	my ($case, $target, $s) = @_;
	my $job = as('tenant_b',
		"SELECT bulkops.bulk_upsert('$target', 'public.src_b', key => 'id')");
	is(wait_for_job($node, $job, 60), 'succeeded', "$case: B's job succeeded");
	ok(still_open($s), "$case: ... while A's transaction is still open");
	check_receipts("$case: B's job", $job, $ROWS);
	return $job;
}

# ---- 1. A cancel left open, on a target B shares ----
{
	my $offset = -s $node->logfile;
	# A's first four submits are answered late: they are in flight when A
	# cancels, and their outcomes arrive while A's transaction is open
	slow_submits('shared', 3, 4);
	my $job = as('tenant_a',
		"SELECT bulkops.bulk_upsert('shared', 'a.src', key => 'id')");
	ok(wait_requests('shared', 'POST', 4), 'cancel held: four of A\'s batches in flight');
	my $s = session('tenant_a');
	is(in_session($s, "BEGIN; SELECT bulkops.cancel($job)"), 't',
		'cancel held: A cancels its job in a transaction it keeps open');
	ok(log_says($node, qr/keeps the result for batch \d+ of job $job until it can be stored/, $offset),
		'cancel held: the worker keeps the answers it cannot store yet');
	b_finishes_meanwhile('cancel held', 'shared', $s);
	is($node->safe_psql('postgres', "SELECT state, cancel_requested FROM bulkops.jobs WHERE id = $job"),
		'running|f', 'cancel held: A\'s job is still running, its cancel not committed');
	in_session($s, 'COMMIT');
	end_session($s);
	is(wait_for_job($node, $job, 60), 'cancelled', 'cancel held: A\'s job ends cancelled once A commits');
	check_receipts('cancel held: A\'s job', $job, $ROWS);
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'cancelled') "
			  . "FROM bulkops.receipts WHERE job_id = $job"),
		'80|120',
		'cancel held: the four batches in flight kept their outcomes, the rest were cancelled');
	ok(log_says($node, qr/stored the result for batch \d+ of job $job after \d+ tries/, $offset),
		'cancel held: the deferred results were stored');
	mock_faults();
}

# ---- 2. the export's destination locked ----
{
	my $offset = -s $node->logfile;
	mock_post('/_control/config', { salesforce => { query_rows => 100 } });
	as('tenant_a', 'CREATE TABLE a.landing ("Id" text, "Name" text)');
	# the first page comes 3 s late: A locks the table meanwhile
	mock_faults(
		{
			action  => 'delay',
			seconds => 3,
			method  => 'GET',
			path    => '/jobs/query/[^/]+/results',
			times   => 1
		});
	my $job = as('tenant_a',
		q{SELECT bulkops.bulk_query('sf', 'SELECT Id, Name FROM Account', 'a.landing', '{"max_records": 40}')});
	my $s = session('tenant_a');
	in_session($s, 'BEGIN; LOCK TABLE a.landing IN ACCESS EXCLUSIVE MODE');
	ok(log_says($node, qr/keeps the result for batch \d+ of job $job until it can be stored/, $offset),
		'table locked: the worker keeps the page it cannot write yet');
	b_finishes_meanwhile('table locked', 'b_only', $s);
	is($node->safe_psql('postgres', "SELECT state FROM bulkops.jobs WHERE id = $job"),
		'running', 'table locked: the export waits');
	in_session($s, 'ROLLBACK');
	end_session($s);
	is(wait_for_job($node, $job, 60), 'succeeded', 'table locked: the export succeeds once A lets go');
	is( $node->safe_psql(
			'postgres',
			"SELECT count(*), count(DISTINCT \"Id\") FROM a.landing"),
		'100|100', 'table locked: every record written exactly once');
	is($node->safe_psql('postgres', "SELECT rows_total, rows_succeeded FROM bulkops.jobs WHERE id = $job"),
		'100|100', 'table locked: the export counted them');
	mock_faults();
}

# ---- 3. a trigger slower than bulkops.user_code_timeout ----
{
	as(
		'tenant_a', q{
		CREATE TABLE a.slow ("Id" text, "Name" text);
		CREATE FUNCTION a.crawl() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM pg_catalog.pg_sleep(0.1);
			RETURN NEW;
		END $$;
		CREATE TRIGGER crawl BEFORE INSERT ON a.slow FOR EACH ROW EXECUTE FUNCTION a.crawl();
	});
	my $job = as('tenant_a',
		q{SELECT bulkops.bulk_query('sf', 'SELECT Id, Name FROM Account', 'a.slow')});
	my $bjob = as('tenant_b',
		"SELECT bulkops.bulk_upsert('b_only', 'public.src_b', key => 'id')");
	is(wait_for_job($node, $bjob, 60), 'succeeded', 'slow trigger: B\'s job succeeded');
	check_receipts('slow trigger: B\'s job', $bjob, $ROWS);
	is(wait_for_job($node, $job, 60), 'failed', 'slow trigger: the export failed');
	like(
		$node->safe_psql('postgres', "SELECT last_error FROM bulkops.jobs WHERE id = $job"),
		qr/^could not write the results into a\.slow: the triggers, defaults or domains of table "slow" ran longer than bulkops\.user_code_timeout \(1000 ms\) \(3 times in a row\)$/,
		'slow trigger: last_error names the cause');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM a.slow'),
		'0', 'slow trigger: no part of the page was written');
}

# ---- 4. a deadline passes while A holds its job ----
{
	my $offset = -s $node->logfile;
	slow_submits('a_only', 3, 4);
	my $job = as('tenant_a',
		q{SELECT bulkops.bulk_upsert('a_only', 'a.src', key => 'id', options => '{"deadline": 1}')});
	ok(wait_requests('a_only', 'POST', 4), 'deadline held: A\'s batches in flight');
	my $s = session('tenant_a');
	in_session($s, "BEGIN; SELECT bulkops.cancel($job)");
	# the deadline passes, and the sweep runs every 50 ms meanwhile
	sleep 1.5;
	b_finishes_meanwhile('deadline held', 'b_only', $s);
	is($node->safe_psql('postgres', "SELECT state, timed_out FROM bulkops.jobs WHERE id = $job"),
		'running|f', 'deadline held: the sweep left A\'s job alone');
	in_session($s, 'ROLLBACK');
	end_session($s);
	is(wait_for_job($node, $job, 60), 'timed_out', 'deadline held: the job times out once A lets go');
	check_receipts('deadline held: A\'s job', $job, $ROWS);
	ok(log_says($node, qr/bulkops job $job timed out: its deadline passed/, $offset),
		'deadline held: the sweep came back to it');
	mock_faults();
}

my $log = slurp_file($node->logfile);
ok(!grep(/deadlock detected/, $log), 'no deadlock in the server log');
ok(!grep(/terminated by signal|was terminated by/, $log), 'no process crashed');
is(worker_pid($node), $worker, 'the worker never restarted');
is(scalar(() = $log =~ /bulkops worker started/g), 1, 'the worker started once');

# ---- 5. a crash while a result is deferred ----
{
	my $offset = -s $node->logfile;
	slow_submits('a_only', 3, 4);
	my $before = mock_requests('a_only', 'POST');
	my $job = as('tenant_a',
		"SELECT bulkops.bulk_upsert('a_only', 'a.src', key => 'id')");
	ok(wait_requests('a_only', 'POST', 4, $before), 'crash: A\'s batches in flight');
	my $s = session('tenant_a');
	in_session($s, "BEGIN; SELECT bulkops.cancel($job)");
	ok(log_says($node, qr/keeps the result for batch \d+ of job $job until it can be stored/, $offset),
		'crash: the worker holds a deferred result');
	kill 'KILL', worker_pid($node);
	# the postmaster ends every session, A's too, and restarts
	eval { $s->{h}->finish };
	ok(log_says($node, qr/bulkops worker started/, $offset), 'crash: the worker is started again');
	is(wait_for_job($node, $job, 60), 'succeeded', 'crash: A\'s job ends (its cancel never committed)');
	check_receipts('crash: A\'s job', $job, $ROWS);
	mock_faults();
}

$node->stop;
done_testing();
