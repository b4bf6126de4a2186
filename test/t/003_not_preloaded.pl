# 003_not_preloaded.pl - CREATE EXTENSION refuses to install bulkops when the
# library was not preloaded, and leaves nothing behind.
#
# Proves that on a cluster WITHOUT bulkops in shared_preload_libraries,
# CREATE EXTENSION bulkops fails with "bulkops must be loaded via
# shared_preload_libraries" and a HINT naming shared_preload_libraries, and that
# the failed install leaves no extension, no bulkops schema, no bulkops_admin
# role and no bulkops function; and that it keeps failing the same way on a
# second try (nothing half-installed gets in the way).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('plain');
$node->init;
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'bulkops is not preloaded');

for my $try (1, 2)
{
	my ($ret, $stdout, $stderr) =
	  $node->psql('postgres', 'CREATE EXTENSION bulkops');
	isnt($ret, 0, "try $try: CREATE EXTENSION bulkops fails");
	like(
		$stderr,
		qr/ERROR:  bulkops must be loaded via shared_preload_libraries/,
		"try $try: with the error that says why");
	like(
		$stderr,
		qr/HINT:  .*shared_preload_libraries/,
		"try $try: and a hint naming shared_preload_libraries");
}

is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM pg_extension WHERE extname = 'bulkops'"),
	'0',
	'no extension is recorded');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM pg_namespace WHERE nspname = 'bulkops'"),
	'0',
	'no bulkops schema is left');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM pg_roles WHERE rolname = 'bulkops_admin'"),
	'0',
	'no bulkops_admin role is left');
is( $node->safe_psql(
		'postgres', q{
		SELECT count(*) FROM pg_proc
		WHERE proname LIKE '%bulkops%' OR prosrc LIKE 'bulkops%'}),
	'0',
	'no bulkops function is left');

$node->stop;
done_testing();
