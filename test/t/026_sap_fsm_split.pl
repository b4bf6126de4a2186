# 026_sap_fsm_split.pl - a sap_fsm batch split after a 413 survives a crash of
# its worker in the middle of the split.
#
# Proves: after a 413 the limit on rows per request (the batch's step-0 note,
# batches.step_data) is committed before the smaller requests go; a worker
# killed just before a later request of the split resumes with that limit (its
# first request after the crash carries the persisted number of rows, not every
# pending row); every row ends succeeded with exactly one receipt, none applied
# twice; and the done batch keeps no note.
use strict;
use warnings;

use lib 'test/perl';
use BulkopsCrash;
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;

start_mock();
mock_post('/_control/reset');
# more than 3 items is a 413: 10 rows go 10 (413), 5 (413), 2, then 4 ...
mock_post('/_control/config',
	{ sap_fsm => { max_items => 3, shuffle => JSON::PP::false } });

my $node = bulkops_node('fsmsplit', 'restart_after_crash = on');
my $url  = mock_url('/sap_fsm');
$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION bulkops;
	SELECT bulkops.create_target('fsm', 'sap_fsm', '$url', 'Activity', NULL,
	    '{"dto_version": 43, "account_id": "1", "company_id": "1"}');
});
# the fourth submit of the worker dies before it leaves
arm_crash($node, 'submit:4');
my $job = $node->safe_psql('postgres',
	"SELECT bulkops.bulk_upsert('fsm', \$\$SELECT 'S-' || i AS ext, i AS n
	    FROM generate_series(1, 10) AS i\$\$, key => 'ext')");

is(wait_for_job($node, $job, 60), 'succeeded', 'the split job ends succeeded after the crash');
ok(-e crash_marker($node), 'the worker crashed at the fourth submit');

my @items = map { scalar @{ JSON::PP::decode_json($_->{body}) } }
  grep { $_->{path} =~ m{/externalId/bulk$} } @{ mock_get('/_control/requests') };
is_deeply([ @items[ 0 .. 3 ] ], [ 10, 5, 2, 4 ],
	'before the crash 10, 5 and 2 rows; after it the persisted limit of 4, not the 8 rows left');
ok(!grep({ $_ > 4 } @items[ 3 .. $#items ]), 'no request after the crash exceeds the limit');

is( $node->safe_psql(
		'postgres', qq{
		SELECT count(*) || ' ' || count(DISTINCT row_no) || ' '
		       || count(*) FILTER (WHERE status = 'succeeded')
		FROM bulkops.receipts WHERE job_id = $job}),
	'10 10 10',
	'one receipt per row, every row succeeded');
my $applied = mock_get('/_control/sap_fsm/applied?resource=Activity');
is(scalar(grep { $_ != 1 } values %$applied), 0, 'no row applied twice');
is(scalar keys %$applied, 10, 'every row applied');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM bulkops.batches WHERE job_id = $job AND step_data IS NOT NULL"),
	'0', 'the done batch keeps no note');

$node->stop;
done_testing();
