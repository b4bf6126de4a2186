# 017_security_attacks.pl - attacks on the worker's session, and what
# listeners learn.  (The entry points' attacks are in sql/security_attacks.sql.)
#
# Proves that:
# - database-level settings a database's owner may make (a search_path with
#   a schema of planted functions and operators first, statement_timeout,
#   lock_timeout, idle_in_transaction_session_timeout and
#   default_transaction_read_only of 1 ms / on, exit_on_error), and the
#   same made for the role the worker connects as in that database, neither
#   make the worker run the plants nor make it fail: a push and an export
#   both succeed under them;
# - user code the worker runs for an export (a trigger on the destination,
#   owned by the job's creator) that sets search_path and statement_timeout
#   with set_config(..., false) and takes a session advisory lock leaves
#   nothing behind: the next ordinary job succeeds, no plant runs as a
#   superuser, and the worker holds no advisory lock;
# - a listener on bulkops_jobs learns a job's id and nothing else, for every
#   job that ends, a job with no rows included.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

start_mock();
mock_post('/_control/reset');
my $node = bulkops_node('attacks', "bulkops.database_name = 'postgres, tampered'");
$node->safe_psql('postgres', 'CREATE EXTENSION bulkops');
$node->safe_psql('postgres', 'CREATE DATABASE tampered');

# Our own sessions in "tampered" undo what its settings do to them.
sub tq
{
	my ($sql) = @_;
	return $node->safe_psql('tampered',
		"SET default_transaction_read_only = off; SET statement_timeout = 0; "
		  . "SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0; "
		  . "SET exit_on_error = off; SET search_path = public; $sql");
}

my $curl = mock_url('/clinia/sources/tamper/v1');
my $sfurl = mock_url('/salesforce');
tq(qq{
	CREATE EXTENSION bulkops;
	CREATE ROLE mallory LOGIN;
	GRANT CREATE ON DATABASE tampered TO mallory;
	CREATE TABLE src AS SELECT i AS id, 'row ' || i AS name FROM generate_series(1, 200) i;
	GRANT SELECT ON src TO mallory;
	SELECT bulkops.create_target('tamper', 'clinia', '$curl', 'Doc', NULL, '{"batch_size": 50}');
	SELECT bulkops.create_target('sf', 'salesforce', '$sfurl', 'Account');
	SELECT bulkops.grant_target('tamper', 'mallory', 'push');
	SELECT bulkops.grant_target('sf', 'mallory', 'push, export');
});

# mallory's plants: every call logs who made it, and a superuser's call
# would make mallory a superuser
tq(q{
	SET ROLE mallory;
	CREATE SCHEMA evil;
});
tq("SET ROLE mallory; " . slurp_file('test/attack_plants.sql'));
# the plants work for whoever resolves names through their path
tq(q{SET ROLE mallory; SET search_path = evil, pg_catalog; SELECT now(), 1::bigint = 1::bigint});
is(tq(q{SELECT count(*) FROM evil.log WHERE who = 'mallory'}), '2',
	'control: the plants run for a session whose path puts them first');
tq(q{TRUNCATE evil.log});

# 1. the database's own settings, as its owner may set them: first the
# path alone (so that nothing else stops the worker before it would run a
# plant), then everything at once
sub restart_worker
{
	my $old = tq(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'bulkops worker'
		AND datname = 'tampered'});
	tq(qq{SELECT pg_terminate_backend($old)}) if $old;
	# the launcher starts a new worker, which reads the database's settings
	return poll_tampered(
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'bulkops worker' "
		  . "AND datname = 'tampered' AND pid <> " . ($old || 0));
}

sub push_succeeds
{
	my ($what) = @_;
	my $job = tq(q{SET ROLE mallory; SELECT bulkops.bulk_upsert('tamper', 'public.src', key => 'id')});
	ok(poll_tampered("SELECT state = 'succeeded' FROM bulkops.jobs WHERE id = $job"),
		"a push succeeds under $what");
	is(tq(qq{SELECT count(*) FROM bulkops.receipts WHERE job_id = $job AND status = 'succeeded'}),
		'200', 'with a receipt per row');
	is(tq(q{SELECT count(*) FROM evil.log WHERE superuser OR who <> 'mallory'}), '0',
		'and no plant ran as anyone but mallory');
}

tq('ALTER DATABASE tampered SET search_path = evil, pg_catalog');
ok(restart_worker(), 'a new worker serves the database with the planted path');
push_succeeds('the planted search_path');

tq(join '; ',
	map { "ALTER DATABASE tampered SET $_" } (
		"statement_timeout = '1ms'",
		"lock_timeout = '1ms'",
		"idle_in_transaction_session_timeout = '1ms'",
		'default_transaction_read_only = on',
		'exit_on_error = on'));
ok(restart_worker(), 'a new worker serves the database with every hostile setting');
push_succeeds('every hostile setting');

# ... and the settings of the role the worker connects as (the bootstrap
# superuser) in this database, which come after the database's
my $boot = tq('SELECT rolname FROM pg_roles WHERE oid = 10');
tq(join '; ',
	map { qq{ALTER ROLE "$boot" IN DATABASE tampered SET $_} } (
		'search_path = evil, pg_catalog',
		"statement_timeout = '1ms'",
		'default_transaction_read_only = on'));
is($node->safe_psql('tampered', 'SET statement_timeout = 0; SHOW search_path'),
	'evil, pg_catalog', "control: a new session of $boot there gets the planted path");
ok(restart_worker(), "a new worker serves the database with $boot's own hostile settings");
push_succeeds("the settings of the role the worker connects as");
tq(qq{ALTER ROLE "$boot" IN DATABASE tampered RESET ALL});

# 2. an export whose destination has a tampering trigger
tq(q{
	SET ROLE mallory;
	CREATE TABLE evil.landing ("Id" text, "Name" text);
	CREATE FUNCTION evil.tamper() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_catalog.set_config('search_path', 'evil, pg_catalog', false);
		PERFORM pg_catalog.set_config('statement_timeout', '1ms', false);
		PERFORM pg_catalog.pg_advisory_lock(4242);
		RETURN NEW;
	END $$;
	CREATE TRIGGER tamper BEFORE INSERT ON evil.landing
		FOR EACH ROW EXECUTE FUNCTION evil.tamper();
	CREATE TABLE evil.accounts AS SELECT 'E' || i AS "Ext__c", 'Account ' || i AS "Name"
		FROM generate_series(1, 5) i;
});
my $seed = tq(q{SET ROLE mallory; SELECT bulkops.bulk_upsert('sf', 'evil.accounts', key => 'Ext__c')});
ok(poll_tampered("SELECT state = 'succeeded' FROM bulkops.jobs WHERE id = $seed"),
	'records to export are in the remote store');
my $export = tq(q{SET ROLE mallory;
	SELECT bulkops.bulk_query('sf', 'SELECT Id, Name FROM Account', 'evil.landing')});
ok(poll_tampered("SELECT state = 'succeeded' FROM bulkops.jobs WHERE id = $export"),
	'the export into the tampered table succeeds');
ok(tq(q{SELECT count(*) FROM evil.landing}) >= 5, 'its rows landed, through the trigger');

my $after = tq(q{SET ROLE mallory; SELECT bulkops.bulk_upsert('tamper', 'public.src', key => 'id')});
ok(poll_tampered("SELECT state = 'succeeded' FROM bulkops.jobs WHERE id = $after"),
	'an ordinary job after the tampering trigger succeeds');
is(tq(q{SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	WHERE a.backend_type = 'bulkops worker' AND l.locktype = 'advisory'}),
	'0', 'the worker holds no advisory lock the trigger took');

is(tq(q{SELECT count(*) FROM evil.log WHERE superuser OR who <> 'mallory'}), '0',
	'no plant ran as anyone but mallory');
is(tq(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f',
	'mallory is no superuser');

# 3. listeners learn the id, and only the id, of every job that ends
my $listen_target = mock_url('/clinia/sources/listen/v1');
$node->safe_psql('postgres', qq{
	SELECT bulkops.create_target('listen', 'clinia', '$listen_target', 'Doc');
	CREATE TABLE things AS SELECT i AS id FROM generate_series(1, 20) i;
});
mock_faults({ action => 'delay', path => '^/clinia/sources/listen/', seconds => 1, times => 1 });
my $job = $node->safe_psql('postgres', q{SELECT bulkops.bulk_upsert('listen', 'things', key => 'id')});
my ($rc, $out, $err) = $node->psql('postgres',
	"LISTEN bulkops_jobs; SELECT bulkops.wait($job, '60 s');");
like($out, qr/Asynchronous notification "bulkops_jobs" with payload "$job" received/,
	'a listener is told the job\'s id when it ends');
unlike($out, qr/payload "[^"]*[^0-9"][^"]*"/, 'and nothing but ids');
($rc, $out, $err) = $node->psql('postgres',
	q{LISTEN bulkops_jobs; SELECT bulkops.bulk_upsert('listen', 'SELECT 1 AS id WHERE false', key => 'id');});
my ($empty) = $out =~ /^(\d+)$/m;
like($out, qr/payload "$empty" received/, 'a job with no rows is announced too')
  if defined $empty;
ok(defined $empty, 'the job with no rows was enqueued');
mock_faults();

$node->stop;
done_testing();

sub poll_tampered
{
	my ($sql) = @_;
	foreach (1 .. 600)
	{
		my $out = eval { tq($sql) };
		return 1 if defined $out && $out eq 't';
		select(undef, undef, undef, 0.1);
	}
	diag "poll_tampered: no true from: $sql";
	return 0;
}
