# 016_dump_restore.pl - pg_dump keeps what bulkops holds; a restored database
# sends, a database named in bulkops.database_name gets its worker soon after
# it is created, and the partitions of batches the worker created come along
# and are dropped by retention like any other.
#
# Proves that a database dumped with pg_dump and restored with pg_restore
# into a new database keeps its targets (with their credentials), grants,
# jobs (their creators by role, an export's destination by table), batches
# still to send, receipts, the partitions the worker created for batches
# (with the batches in them) and the job id sequence; that the restored
# database's worker, started within a few seconds of CREATE DATABASE although
# the database was missing for much longer (no backoff), sends the queued job
# through the restored target with the restored credentials; that a role
# granted push on the source's target pushes through the restored one; and
# that retention empties and drops a restored partition once its jobs have
# expired and its generation has passed; and that a sync and its state come
# along, so that the restored sync sends only what changed since.  Counts are read through bulkops'
# relations (whatever they are: tables or views), so the test holds when
# their storage changes.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $token = 'restored-' . join('', map { sprintf '%02x', int rand 256 } 1 .. 8);
start_mock();
mock_post('/_control/reset');
mock_post('/_control/config', { clinia => { bearer => $token } });

# "restored" does not exist yet; the launcher's default naptime (1 s) as in
# production; partitions of a minute, so that one's generation passes soon
my $node = bulkops_node('dump', "bulkops.database_name = 'postgres, source, restored'",
	"bulkops.launcher_naptime = '1s'", "bulkops.partition_interval = '1min'");
my $t0 = time;

# The source: served at first, so that its worker creates the partitions of
# batches and a job is sent into one; then no worker serves it, so that its
# next job stays queued with its batches unsent, as a database dumped while
# busy would have them.
$node->safe_psql('postgres', 'CREATE EXTENSION bulkops');
$node->safe_psql('postgres', 'CREATE DATABASE source');
my $url = mock_url('/clinia/sources/dumped/v1');
$node->safe_psql('source', qq{
	CREATE EXTENSION bulkops;
	CREATE ROLE dump_pusher LOGIN;
	SELECT bulkops.create_target('dumped', 'clinia', '$url', resource => 'Row',
	       auth => '{"type": "bearer", "token": "$token"}',
	       options => '{"batch_size": 100}');
	SELECT bulkops.grant_target('dumped', 'dump_pusher', 'push');
	CREATE TABLE src AS SELECT i AS id, 'row ' || i AS name FROM generate_series(1, 1000) i;
	GRANT SELECT ON src TO dump_pusher;
	CREATE TABLE exported ("Id" text, "Name" text);
});
ok( query_until_db($node, 'source',
		"SELECT count(*) >= 3 FROM pg_inherits WHERE inhparent = 'bulkops.batches'::regclass"),
	'the worker created the partitions of this generation and the next');
my $sent = $node->safe_psql('source', q{
	SET ROLE dump_pusher;
	SELECT bulkops.bulk_upsert('dumped', 'SELECT * FROM src WHERE id <= 300', key => 'id');
});
ok( query_until_db($node, 'source',
		"SELECT state = 'succeeded' FROM bulkops.jobs WHERE id = $sent"),
	'a job sent while the source was served');
# a sync that pushed 50 rows, and stored its state in the run after
my $syncjob = $node->safe_psql('source', q{
	SELECT bulkops.create_sync('dsync', 'dumped', 'SELECT * FROM src WHERE id <= 50', 'id');
	SELECT bulkops.run_sync('dsync');
});
ok( query_until_db($node, 'source',
		"SELECT state = 'succeeded' FROM bulkops.jobs WHERE id = $syncjob"),
	"the sync's first job was sent");
is($node->safe_psql('source',
		"SELECT bulkops.run_sync('dsync') IS NULL; SELECT state_keys FROM bulkops.syncs"),
	"t\n50", 'its next run sent nothing and stored the state of its 50 keys');
my $partition = $node->safe_psql('source',
	"SELECT DISTINCT tableoid::regclass FROM bulkops.batches WHERE job_id = $sent");
like($partition, qr/^bulkops\.batches_\d{8}_\d{4}$/,
	"its batches are in the worker's partition $partition");
$node->safe_psql('postgres',
	"ALTER SYSTEM SET bulkops.database_name = 'postgres, restored'; SELECT pg_reload_conf()");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'bulkops worker' "
		  . "AND datname = 'source'"),
	'then no worker serves the source');

$node->safe_psql('source', "SELECT bulkops.create_target('sfq', 'salesforce', '"
	  . mock_url('/salesforce') . "', 'Account')");
my $export = $node->safe_psql('source',
	"SELECT bulkops.bulk_query('sfq', 'SELECT Id, Name FROM Account', 'exported')");
my $queued = $node->safe_psql('source', q{
	SET ROLE dump_pusher;
	SELECT bulkops.bulk_upsert('dumped', 'src', key => 'id');
});
# a receipt as a worker would have written it, before a crash, so that
# the queued job has one to dump
$node->safe_psql('source', qq{
	UPDATE bulkops.batches
	SET outcomes = set_byte(decode(repeat('00', row_count), 'hex'), 0, 1),
	    answer_of = decode(repeat('0000', row_count), 'hex'),
	    answer_http = '{200}', answer_attempts = '{1}', answer_at = ARRAY[now()]
	WHERE job_id = $queued AND batch_no = 1;
	UPDATE bulkops.jobs SET rows_succeeded = 1 WHERE id = $queued;
});
my %before;
foreach my $q (
	['targets', 'SELECT count(*) FROM bulkops.targets'],
	['grants', 'SELECT count(*) FROM bulkops.target_privileges'],
	['jobs', 'SELECT count(*) FROM bulkops.jobs'],
	['batches', "SELECT count(*) FROM bulkops.batches WHERE state <> 'done'"],
	['receipts', 'SELECT count(*) FROM bulkops.receipts'],
	['creator', "SELECT created_by FROM bulkops.jobs WHERE id = $queued"],
	['next id', "SELECT last_value FROM bulkops.jobs_id_seq"],
	['syncs', "SELECT string_agg(name || ' ' || state_keys, ',') FROM bulkops.syncs"],
	['sync state', "SELECT sum(cardinality(keys)) FROM bulkops.sync_state"])
{
	$before{ $q->[0] } = $node->safe_psql('source', $q->[1]);
}
is($before{'sync state'}, 50, 'the sync state holds 50 keys');
is($before{batches}, 11, 'the source holds a job of 10 batches to send, and an export');
is($before{receipts}, 351, 'and the receipts of the jobs it sent (300 rows, the sync 50), and one of the queued job');

my $dump = PostgreSQL::Test::Utils::tempdir() . '/source.dump';
command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('source'), '-f', $dump ],
	'pg_dump of a database using bulkops');
$node->safe_psql('postgres', 'DROP DATABASE source');

# the database was missing for a while: its worker must not be in backoff
usleep(1_000_000) while time - $t0 < 20;
$node->safe_psql('postgres', 'CREATE DATABASE restored');
my $created = time;
# in one transaction, as the README says: the new database's worker must not
# see jobs and batches before their receipts are there
command_ok([ 'pg_restore', '--single-transaction', '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a new database');

foreach my $k (sort keys %before)
{
	my $sql = {
		targets => 'SELECT count(*) FROM bulkops.targets',
		grants => 'SELECT count(*) FROM bulkops.target_privileges',
		jobs => 'SELECT count(*) FROM bulkops.jobs',
		batches => "SELECT count(*) FROM bulkops.batches WHERE state <> 'done'",
		receipts => 'SELECT count(*) FROM bulkops.receipts',
		creator => "SELECT created_by FROM bulkops.jobs WHERE id = $queued",
		'next id' => 'SELECT last_value FROM bulkops.jobs_id_seq',
		syncs => "SELECT string_agg(name || ' ' || state_keys, ',') FROM bulkops.syncs",
		'sync state' => 'SELECT sum(cardinality(keys)) FROM bulkops.sync_state' }->{$k};
	# the queued job may already be under way: its batches and receipts
	# are looked at below
	next if $k eq 'batches' || $k eq 'receipts';
	is($node->safe_psql('restored', $sql), $before{$k}, "restored: $k");
}
is( $node->safe_psql('restored',
		"SELECT status FROM bulkops.receipts WHERE job_id = $queued AND row_no = 1"),
	'succeeded', 'restored: the receipt the source had');
is( $node->safe_psql('restored',
		"SELECT DISTINCT tableoid::regclass FROM bulkops.batches WHERE job_id = $sent"),
	$partition, "restored: the partition $partition, with the sent job's batches");
is( $node->safe_psql('restored',
		"SELECT count(*), count(DISTINCT row_no) FROM bulkops.receipts "
		  . "WHERE job_id = $sent AND status = 'succeeded'"),
	'300|300', 'restored: the sent job\'s receipts');
is($node->safe_psql('restored', q{SELECT auth->>'token' FROM bulkops.targets WHERE name = 'dumped'}),
	$token, 'restored: the target\'s credentials');
is( $node->safe_psql('restored',
		"SELECT destination = 'public.exported'::regclass FROM bulkops.jobs WHERE id = $export"),
	't', 'restored: the export\'s destination is the restored table');

my $up = 0;
while (time - $created < 30)
{
	$up = $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'bulkops worker' "
		  . "AND datname = 'restored'");
	last if $up;
	usleep(100_000);
}
my $took = time - $created;
ok($up && $took < 5, sprintf('the new database got its worker %.1f s after it was created', $took));

# the queued job is sent through the restored target, with its token
ok( query_until_db($node, 'restored',
		"SELECT state IN ('succeeded', 'partial', 'failed') FROM bulkops.jobs WHERE id = $queued"),
	'the restored queued job ends');
is( $node->safe_psql('restored',
		"SELECT state, rows_succeeded FROM bulkops.jobs WHERE id = $queued"),
	'succeeded|1000', 'with every row sent (the bearer token was the restored one)');
is( $node->safe_psql('restored',
		"SELECT count(*), count(DISTINCT row_no) FROM bulkops.receipts WHERE job_id = $queued"),
	'1000|1000', 'one receipt per row, the dumped one included');

ok( query_until_db($node, 'restored',
		"SELECT state = 'succeeded' FROM bulkops.jobs WHERE id = $export"),
	'the restored export ends, into the restored table');

# the grant came along: the role pushes through the restored target, and the
# new job's id follows the restored sequence
my $next = $node->safe_psql('restored', q{
	SET ROLE dump_pusher;
	SELECT bulkops.bulk_upsert('dumped', 'src', key => 'id');
});
ok($next > $before{'next id'}, "a new job's id ($next) follows the dumped ones");
ok(query_until_db($node, 'restored',
		"SELECT state = 'succeeded' FROM bulkops.jobs WHERE id = $next"),
	'a push by the granted role through the restored target succeeds');

# the sync came along with its state: nothing to send, then just what changed
is($node->safe_psql('restored', "SELECT bulkops.run_sync('dsync') IS NULL"),
	't', 'the restored sync has nothing to send');
my $changed = $node->safe_psql('restored', q{
	UPDATE src SET name = 'changed' WHERE id = 7;
	SELECT bulkops.run_sync('dsync');
});
ok(query_until_db($node, 'restored',
		"SELECT state = 'succeeded' FROM bulkops.jobs WHERE id = $changed"),
	'its run after a change succeeds');
is($node->safe_psql('restored',
		"SELECT string_agg(key || ' ' || operation, ',') FROM bulkops.receipts WHERE job_id = $changed"),
	'7 upsert', 'and sent the changed row alone');

# (retention keeps a sync's jobs until its state holds them: dropped, the
# sync lets them go)
$node->safe_psql('restored', "SELECT bulkops.drop_sync('dsync')");

# retention: every job expires; the restored partition is emptied and, its
# minute past, dropped, its jobs with it
$node->safe_psql('postgres',
	"ALTER SYSTEM SET bulkops.receipt_retention = '1s'; SELECT pg_reload_conf()");
ok( query_until_db($node, 'restored',
		"SELECT to_regclass('$partition') IS NULL AND NOT EXISTS "
		  . "(SELECT FROM bulkops.jobs WHERE id IN ($sent, $queued))"),
	"retention dropped the restored partition $partition with its jobs");

$node->stop;
done_testing();

# query_until in another database than postgres
sub query_until_db
{
	my ($node, $db, $sql) = @_;
	foreach (1 .. 1200)
	{
		my ($rc, $out) = $node->psql($db, $sql);
		return 1 if $rc == 0 && $out eq 't';
		usleep(100_000);
	}
	return 0;
}
