# 009_hostile_answers.pl - every answer a remote side (or what stands in
# front of it) may spoil, for every dialect and every kind of answer it reads.
#
# Proves, for each dialect's answer kinds (clinia: submit, task poll; sap_fsm:
# the 207 body; packagex: submit, batch poll, errors file; blueconic: the
# entries' answer; salesforce: job create, upload, close and poll, and its
# CSV result files; an OAuth token answer), with the mock spoiling that answer once (transient) and every time
# (persistent): not JSON, empty, nested thirty thousand deep, cut, shorter
# than its Content-Length, larger than bulkops.max_response_size, trickling in
# slower than http_timeout (and, harmless, within it), a redirect to another
# host; plus per kind: more and fewer elements or receipts than rows, unknown
# statuses, invalid UTF-8 and NUL bytes in ids, statuses, links, error codes
# and messages, an OAuth instance_url that paths cannot be appended to; for CSV read as it streams, a record of a gigabyte and one of
# ten million empty fields, refused once they pass what a result of the batch
# can hold; and a query export's page larger than the worker keeps.  A transient fault is retried and the job ends as it would
# have without it (same statuses, same remote error); a persistent one ends
# the batch with a last_error that names the problem; rows end failed when the
# submit gave up (or nothing was sent), unknown when a remote task or a
# request that may have acted is left in doubt.  Every row ends with exactly
# one receipt; everything stored is valid in the database encoding; a redirect
# is never followed; the worker never crashes or restarts (no "terminated by
# signal", no PANIC, the same pid throughout).
#
# All cases run at once, each with its own target whose URL is tagged
# (/_t/<case>/... on the mock), so each case's faults hit only that case.
#
# Adding a dialect is one entry in @DIALECTS: where its mock lives (url), the
# target (resource, options, auth), mock configuration, and its answer kinds.
# A kind names its request (method, path regex), the status of its normal
# answer, what a persistent failure leaves (%AT_SUBMIT, %AT_LATER, %AT_TOKEN;
# "persist_rows" when rows settled by an earlier answer keep their status),
# optionally "skip", a regex of @GENERIC labels that do not spoil it (an empty
# answer to a request answered empty), and its own cases: mutate edits (see
# test/mock/mock_api.py: JSON edits, or for CSV "lines" and "find"/"replace"),
# or a fault "rule" of another action, with either "persistent" (the reason a persistent fault must give, the
# transient one then being retried to the normal outcome) or "final" (what
# the one answer leads to: row statuses, messages, last_error, error codes).
use strict;
use warnings;

use Encode qw(decode);
use JSON::PP;
use lib 'test/perl';
use BulkopsTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $port = start_mock();
mock_post('/_control/reset');

# a redirect names another host the worker could reach: following it would
# show up in the mock's request log
my $canary = "http://localhost:$port/hostile-canary";
my $max_response = 65536;

# Every source has three rows; the second asks the mock to fail it (a
# dialect's "fail_sql": the columns that do; "fail_msg": the message that row
# then gets).
my @BASE = qw(succeeded failed succeeded);
my $FAIL_SQL = "CASE WHEN i = 2 THEN 'bad row' END AS _fail";
my $FAIL_MSG = qr/^bad row$/;

# What a persistent fault leaves, by the step it hits:
# the submit: retried up to max_attempts (2 here), then the rows fail;
my %AT_SUBMIT = (persist => 'failed', prefix => qr/gave up after 2 attempts: /);
# a later step (poll, result file): retried, then the rows' fate is unknown;
my %AT_LATER = (
	persist => 'unknown',
	prefix  => qr/could not learn the outcome of remote task \S+: /);
# the token endpoint: retried up to max_attempts, then nothing was sent.
my %AT_TOKEN = (
	persist => 'failed',
	prefix  => qr/could not obtain an OAuth token from \S+: /);

sub hex_of { return unpack('H*', $_[0]) }

# a string holding invalid UTF-8 (a lone continuation byte and a 0xFE)
my $BAD = hex_of("bad \x80\xfe row");
my $BAD_CLEAN = 'bad ?? row';

# Invalid UTF-8 in the failed row's error message (at $msg_at) and in the
# first row's remote id (at $id_at): stored cleaned (the message as $msg_re
# says), outcomes unchanged.
sub bad_text_case
{
	my ($msg_at, $id_at, $msg_re) = @_;
	return {
		label => 'invalid UTF-8 in an error message and a remote id',
		edits => [
			{ at => $msg_at, set_bytes => $BAD },
			{ at => $id_at,  set_bytes => hex_of("id\xc3") }
		],
		final => {
			rows      => \@BASE,
			row_msg   => { 2 => $msg_re // qr/^\Q$BAD_CLEAN\E$/ },
			remote_id => { 1 => 'id?' }
		}
	};
}

# A refusal of the whole request (HTTP $status, the answer replaced by $root)
# whose error code (at $code_at, if any) and message (at $msg_at) are not
# UTF-8: every row fails with them, cleaned.
sub bad_refusal_case
{
	my ($status, $root, $code_at, $msg_at) = @_;
	my @edits = ({ at => '', set => $root }, { at => $msg_at, set_bytes => $BAD });
	push @edits, { at => $code_at, set_bytes => hex_of("E-\xff") } if $code_at;
	return {
		label => 'a refusal whose '
		  . ($code_at ? 'code and message are' : 'message is')
		  . ' not UTF-8',
		status => $status,
		edits  => \@edits,
		final  => {
			rows => [qw(failed failed failed)],
			msg  => qr/^HTTP $status: \Q$BAD_CLEAN\E$/,
			$code_at ? (code => 'E-?') : ()
		}
	};
}

# A CSV file read as it streams whose second line is one record of a
# gigabyte, or of ten million empty fields: refused once it passes what a
# result record of the batch can hold, long before either arrives whole.
sub csv_bomb_cases
{
	return (
		{
			label      => 'a record of a gigabyte',
			rule       => { action => 'huge_record', shape => 'long', bytes => 1 << 30 },
			persistent => qr/CSV record in line 2 is longer than \d+ bytes/
		},
		{
			label => 'a record of ten million empty fields',
			rule  => { action => 'huge_record', shape => 'fields', bytes => 10_000_000 },
			persistent => qr/CSV record in line 2 has more than \d+ fields/
		});
}

my @DIALECTS = (
	{
		name     => 'clinia',
		url      => '/clinia/sources/hostile/v1',
		resource => 'Practitioner',
		mock     => { clinia => { pending_polls => 0 } },
		kinds    => [
			{
				kind   => 'submit',
				method => 'POST',
				path   => '/resources/bulk$',
				status => 202,
				%AT_SUBMIT,
				cases => [
					{
						label => 'an unknown submit status',
						edits => [ { at => 'status', set => 'QUEUED' } ],
						persistent =>
						  qr/unexpected answer to the bulk request \(HTTP 202, status "QUEUED"\)/
					},
					{
						label      => 'no task id',
						edits      => [ { at => 'taskId', delete => JSON::PP::true } ],
						persistent => qr/ACCEPTED answer without a usable taskId/
					},
					{
						label => 'a task id that is not UTF-8',
						edits => [ { at => 'taskId', set_bytes => hex_of("bk_\xff") } ],
						persistent => qr/invalid byte sequence for encoding "UTF8": 0xff/
					},
					{
						# were the id stored, it would stay with the batch
						label => 'a task id that is not UTF-8, every poll failing',
						edits => [ { at => 'taskId', set_bytes => hex_of("bk_\xff") } ],
						times => -1,
						also  => [
							{
								method => 'GET',
								path   => '/resources/bulk/',
								action => 'status',
								status => 500,
								times  => -1
							}
						],
						final => {
							rows       => [qw(failed failed failed)],
							last_error =>
							  qr/^gave up after 2 attempts: could not read the answer .*invalid byte sequence/
						}
					},
					{
						label  => 'a rejection with fewer receipts than rows',
						status => 400,
						edits  => [
							{
								at  => '',
								set => {
									status   => 'REJECTED',
									receipts => [ { status => 'FAILURE', error => { message => 'x' } } ]
								}
							}
						],
						final => {
							rows       => [qw(failed failed failed)],
							msg        => qr/^HTTP 400: request REJECTED with 1 receipts for 3 operations$/,
							last_error => qr/REJECTED with 1 receipts for 3 operations/
						}
					},
					bad_refusal_case(422, { error => {} }, undef, 'error.message'),
				]
			},
			{
				kind   => 'poll',
				method => 'GET',
				path   => '/resources/bulk/',
				status => 200,
				%AT_LATER,
				cases => [
					{
						label => 'more receipts than rows',
						edits => [ { at => 'receipts', dup => 1 } ],
						final => {
							rows => [qw(unknown unknown unknown)],
							msg  => qr/task \S+ ended FAILURE with 4 receipts for 3 operations/,
							last_error => qr/ended FAILURE with 4 receipts for 3 operations/
						}
					},
					{
						label => 'fewer receipts than rows',
						edits => [ { at => 'receipts', drop => 1 } ],
						final => {
							rows => [qw(unknown unknown unknown)],
							msg  => qr/ended FAILURE with 2 receipts for 3 operations/,
							last_error => qr/ended FAILURE with 2 receipts for 3 operations/
						}
					},
					{
						label => 'receipts that are not an array',
						edits => [ { at => 'receipts', set => { 0 => 'x' } } ],
						final => {
							rows => [qw(unknown unknown unknown)],
							msg  => qr/ended FAILURE without a receipts array/
						}
					},
					{
						label => 'an unknown receipt status',
						edits => [ { at => 'receipts.0.status', set => 'WEIRD' } ],
						final => {
							rows => [qw(unknown failed succeeded)],
							row_msg =>
							  { 1 => qr/the task ended with this operation in state "WEIRD"/ }
						}
					},
					{
						label      => 'an unknown task status',
						edits      => [ { at => 'status', set => 'RUNNING' } ],
						persistent => qr/task in unknown state "RUNNING"/
					},
					{
						label => 'a NUL byte inside a string',
						edits =>
						  [ { at => 'receipts.1.error.message', set_bytes => hex_of("bad\0row") } ],
						persistent => qr/malformed JSON in an HTTP 200 answer/
					},
					{
						label      => 'a task status that is not UTF-8',
						edits      => [ { at => 'status', set_bytes => hex_of("SUCC\xffESS") } ],
						persistent => qr/task in unknown state "SUCC\?ESS"/
					},
					bad_text_case('receipts.1.error.message', 'receipts.0.id'),
				]
			},
		],
	},
	{
		name     => 'sap_fsm',
		url      => '/sap_fsm',
		resource => 'Activity',
		options  => { dto_version => 43, account_id => '1', company_id => '2' },
		mock     => { sap_fsm => { shuffle => JSON::PP::false } },
		kinds    => [
			{
				kind   => '207',
				method => 'PATCH',
				path   => '/externalId/bulk',
				status => 207,
				%AT_SUBMIT,
				cases => [
					{
						label => 'more elements than rows, one for a key not sent',
						edits => [
							{ at => '', dup => 2 },
							{ at => '-1.externalId', set => 'stranger' }
						],
						final => { rows => \@BASE }
					},
					{
						label => 'fewer elements than rows',
						edits => [ { at => '', drop => 1 } ],
						final => {
							rows    => [qw(succeeded failed unknown)],
							row_msg => { 3 => qr/the 207 answer had no element for this externalId/ }
						}
					},
					{
						label => 'an unknown element status',
						edits => [ { at => '0.status', set => 'WEIRD' } ],
						final => {
							rows    => [qw(unknown failed succeeded)],
							row_msg => { 1 => qr/the answer gave this row status "WEIRD"/ }
						}
					},
					{
						label => 'an externalId that is not UTF-8',
						edits => [ { at => '0.activity.externalId', set_bytes => hex_of("h\xff") } ],
						final => {
							rows    => [qw(unknown failed succeeded)],
							row_msg => { 1 => qr/no element for this externalId/ }
						}
					},
					bad_text_case('1.ex.message', '0.activity.id'),
					{
						label => 'a NUL byte inside a string',
						edits => [ { at => '0.activity.id', set_bytes => hex_of("a\0b") } ],
						persistent => qr/malformed JSON in a 207 answer/
					},
					bad_refusal_case(400, {}, 'error', 'message'),
					{
						label      => 'a 207 body that is not an array',
						edits      => [ { at => '', set => { status => 207 } } ],
						persistent => qr/the 207 answer is not a JSON array/
					},
				]
			},
		],
	},
	{
		name     => 'packagex',
		url      => '/packagex/v1',
		resource => 'contact',
		mock     => { packagex => { pending_polls => 0 } },
		kinds    => [
			{
				kind   => 'submit',
				method => 'POST',
				path   => '/v1/batches$',
				status => 201,
				%AT_SUBMIT,
				cases => [
					{
						label      => 'no batch id',
						edits      => [ { at => 'id', delete => JSON::PP::true } ],
						persistent => qr/answer to a batch submit without a usable batch id/
					},
					{
						label      => 'a batch id that is not UTF-8',
						edits      => [ { at => 'id', set_bytes => hex_of("batch_\xff") } ],
						persistent => qr/answer to a batch submit without a usable batch id/
					},
					{
						label => 'an unknown submit status',
						edits => [ { at => 'status', set => 'weird' } ],
						final => { rows => \@BASE }
					},
					bad_refusal_case(400, { error => {} }, 'error.code', 'error.message'),
				]
			},
			{
				kind   => 'poll',
				method => 'GET',
				path   => '/v1/batches/',
				status => 200,
				%AT_LATER,
				cases => [
					{
						label      => 'an unknown batch status',
						edits      => [ { at => 'status', set => 'weird' } ],
						persistent => qr/batch \S+ in unknown status "weird"/
					},
					{
						label      => 'another batch\'s answer',
						edits      => [ { at => 'id', set => 'batch_999999' } ],
						persistent => qr/unexpected answer to a poll of batch \S+ \(HTTP 200\)/
					},
					{
						label      => 'an errors file without a link',
						edits      => [ { at => '_errors_json_url', delete => JSON::PP::true } ],
						persistent => qr/has an errors file, but the answer names no _errors_json_url/
					},
					{
						label => 'an errors file link that is not UTF-8',
						edits => [
							{
								at        => '_errors_json_url',
								set_bytes => hex_of("http://127.0.0.1:$port/x\xff")
							}
						],
						persistent => qr/link to the errors file of batch \S+ has a space, a control character or a byte beyond ASCII/
					},
					{
						label => 'errors counted, but no errors file',
						edits => [ { at => 'has_errors_file', set => JSON::PP::false } ],
						final => {
							rows => [qw(unknown unknown unknown)],
							msg  => qr/counted 1 failed rows, but its errors file lists 0/,
							last_error => qr/counted 1 failed rows, but its errors file lists 0/
						}
					},
				]
			},
			{
				kind   => 'errors file',
				method => 'GET',
				path   => '/packagex/files/',
				status => 200,
				%AT_LATER,
				cases => [
					{
						label => 'the same row listed twice',
						edits => [ { at => '', dup => 1 } ],
						final => { rows => \@BASE }
					},
					{
						label => 'an entry for a row not sent',
						edits => [ { at => '', dup => 1 }, { at => '-1.index', set => 7 } ],
						final => {
							rows => [qw(unknown unknown unknown)],
							msg =>
							  qr/errors file does not match the request \(entry 2 has no index between 0 and 2\)/,
							last_error => qr/errors file does not match the request/
						}
					},
					{
						label => 'an entry with another row\'s id',
						edits => [ { at => '0.id', set => 'zzz' } ],
						final => {
							rows => [qw(unknown unknown unknown)],
							msg  => qr/entry 1 names id "zzz" at index 1, where another id was sent/
						}
					},
					{
						label => 'fewer entries than failed rows',
						edits => [ { at => '', drop => 1 } ],
						final => {
							rows => [qw(unknown unknown unknown)],
							msg  => qr/counted 1 failed rows, but its errors file lists 0/,
							last_error => qr/counted 1 failed rows, but its errors file lists 0/
						}
					},
					{
						label => 'invalid UTF-8 in an error message',
						edits => [ { at => '0.errors.0.message', set_bytes => $BAD } ],
						final =>
						  { rows => \@BASE, row_msg => { 2 => qr/^\Q$BAD_CLEAN\E$/ } }
					},
					{
						label => 'a \\u0000 escape inside a string',
						edits => [ { at => '0.errors.0.message', set_bytes => hex_of('a\u0000b') } ],
						persistent => qr/malformed JSON in an HTTP 200 answer/
					},
					{
						label      => 'an errors file that is not an array',
						edits      => [ { at => '', set => { index => 1 } } ],
						persistent => qr/the errors file of batch \S+ is not a JSON array/
					},
				]
			},
		],
	},
	{
		name     => 'blueconic',
		url      => '/blueconic',
		resource => 'profiles',
		options  => { create_missing => JSON::PP::true },
		mock     => { blueconic => { shuffle => JSON::PP::false } },
		fail_sql => "CASE WHEN i = 2 THEN 'NOTFOUND' END AS _state, "
		  . "CASE WHEN i = 2 THEN 'bad row' END AS _invalid",
		fail_msg => qr/^no such profile; _invalid: bad row$/,
		kinds    => [
			{
				kind   => 'entries',
				method => 'PUT',
				path   => '/rest/v2/profiles$',
				status => 200,
				%AT_SUBMIT,
				cases => [
					{
						label => 'more elements than rows, one for a row not sent',
						edits => [
							{ at => '', dup => 2 },
							{ at => '-1.identifier', set => '999' }
						],
						final => { rows => \@BASE }
					},
					{
						label => 'fewer elements than rows',
						edits => [ { at => '', drop => 1 } ],
						final => {
							rows => [qw(succeeded failed unknown)],
							row_msg =>
							  { 3 => qr/the answer had no entry with this row's identifier/ }
						}
					},
					{
						label => 'an unknown state',
						edits => [ { at => '0.state', set => 'WEIRD' } ],
						final => {
							rows    => [qw(failed failed succeeded)],
							row_msg => { 1 => qr/unrecognized state "WEIRD"/ }
						}
					},
					{
						label => 'an identifier that is not UTF-8',
						edits => [ { at => '0.identifier', set_bytes => hex_of("1\xff") } ],
						final => {
							rows    => [qw(unknown failed succeeded)],
							row_msg => { 1 => qr/no entry with this row's identifier/ }
						}
					},
					bad_text_case('1.validationErrors._invalid.0', '0.profileId',
						qr/^no such profile; _invalid: \Q$BAD_CLEAN\E$/),
					{
						label => 'a NUL byte inside a string',
						edits => [ { at => '0.profileId', set_bytes => hex_of("a\0b") } ],
						persistent => qr/malformed JSON in an HTTP 200 answer/
					},
					{
						label  => 'a 413 listing nothing',
						status => 413,
						edits  => [ { at => '', set => [] } ],
						final  => {
							rows => [qw(unknown unknown unknown)],
							msg  => qr/HTTP 413 for a request of 3 entries, within the limit/
						}
					},
					bad_refusal_case(400, { code => 400 }, undef, 'message'),
					{
						label      => 'an answer that is not an array',
						edits      => [ { at => '', set => { state => 'CREATED' } } ],
						persistent => qr/the 200 answer is not a JSON array/
					},
				]
			},
		],
	},
	{
		# a batch is a job: create, upload, close, poll, then the CSV result
		# files (unprocessedrecords is not asked for here: the first two
		# settle every row)
		name     => 'salesforce',
		url      => '/salesforce',
		resource => 'Account',
		mock     => { salesforce => { in_progress_polls => 0, result_order => 'upload' } },
		kinds    => [
			{
				kind   => 'create',
				method => 'POST',
				path   => '/jobs/ingest$',
				status => 200,
				%AT_SUBMIT,
				cases => [
					{
						label      => 'no job id',
						edits      => [ { at => 'id', delete => JSON::PP::true } ],
						persistent => qr/the answer to creating a job has no usable job id/
					},
					{
						label      => 'a job id that is not UTF-8',
						edits      => [ { at => 'id', set_bytes => hex_of("750\xff") } ],
						persistent => qr/the answer to creating a job has no usable job id/
					},
					{
						label  => 'a refusal whose code and message are not UTF-8',
						status => 400,
						edits  => [
							{ at => '', set => [ { errorCode => 'x', message => 'y' } ] },
							{ at => '0.errorCode', set_bytes => hex_of("E-\xff") },
							{ at => '0.message',   set_bytes => $BAD }
						],
						final => {
							rows => [qw(failed failed failed)],
							msg  => qr/^could not create the job: HTTP 400 E-\?: \Q$BAD_CLEAN\E$/,
							code => 'E-?'
						}
					},
				]
			},
			{
				# an upload's answer is empty: only the transport can spoil it
				kind   => 'upload',
				method => 'PUT',
				path   => '/batches$',
				status => 201,
				skip   => qr/JSON|empty answer|shorter than/,
				%AT_LATER,
				cases  => []
			},
			{
				# whatever a close answers, the poll that follows tells
				kind   => 'close',
				method => 'PATCH',
				path   => '/jobs/ingest/\w+/$',
				status => 200,
				skip   => qr/JSON|empty answer/,
				%AT_LATER,
				cases  => [
					{
						label  => 'a refusal of a close that took',
						status => 400,
						edits  => [
							{ at => '', set => [ { errorCode => 'INVALIDJOB', message => 'no' } ] }
						],
						final => { rows => \@BASE }
					},
				]
			},
			{
				kind   => 'poll',
				method => 'GET',
				path   => '/jobs/ingest/\w+/$',
				status => 200,
				%AT_LATER,
				cases  => [
					{
						label      => 'an unknown job state',
						edits      => [ { at => 'state', set => 'Weird' } ],
						persistent => qr/job \S+ is in unknown state "Weird"/
					},
					{
						label      => 'a job state that is not UTF-8',
						edits      => [ { at => 'state', set_bytes => hex_of("Job\xffComplete") } ],
						persistent => qr/job \S+ is in unknown state "Job\?Complete"/
					},
					{
						label => 'counters that are not numbers',
						edits => [ { at => 'numberRecordsProcessed', set => 'many' } ],
						final => { rows => \@BASE }
					},
				]
			},
			{
				kind   => 'successfulResults',
				method => 'GET',
				path   => '/successfulResults/$',
				status => 200,
				# CSV read as it streams: not bounded by max_response_size, nor
				# by http_timeout while it keeps coming
				skip => qr/JSON|empty answer|larger than|slower than/,
				%AT_LATER,
				cases => [
					{
						label => 'a record missing (the row is sent again)',
						edits => [ { lines => 'drop', n => 1 } ],
						final => { rows => \@BASE }
					},
					{
						label => 'the same record twice',
						edits => [ { lines => 'dup', n => 1 } ],
						final => { rows => \@BASE }
					},
					{
						label => 'a record for a key not sent',
						edits => [ { find => '-1","name 1"', replace => '-9","name 1"' } ],
						final => { rows => \@BASE }
					},
					{
						label => 'an empty file',
						edits => [ { cut => 0 } ],
						final => { rows => \@BASE }
					},
					{
						label      => 'no key column',
						edits      => [ { find => '"id"', replace => '"xid"' } ],
						persistent => qr/result file has no column "id"/
					},
					{
						label      => 'a quote inside an unquoted field',
						edits      => [ { find => '"true"', replace => 'tr"ue' } ],
						persistent => qr/malformed CSV in line 2: a double quote inside an unquoted field/
					},
					{
						label      => 'a quoted field broken',
						edits      => [ { find => '"name 3"', replace => '"name 3' } ],
						persistent => qr/malformed CSV in line \d+: text after the closing quote/
					},
					csv_bomb_cases(),
					{
						label => 'a NUL byte and invalid UTF-8 in fields not matched on',
						edits => [
							{ find => 'name 1', replace_bytes => hex_of("na\0me") },
							{ find => 'name 3', replace_bytes => hex_of("n\xffme") }
						],
						final => { rows => \@BASE }
					},
				]
			},
			{
				kind   => 'failedResults',
				method => 'GET',
				path   => '/failedResults/$',
				status => 200,
				# the successes were settled by the file before
				persist_rows => [qw(succeeded unknown succeeded)],
				skip   => qr/JSON|empty answer|larger than|slower than/,
				%AT_LATER,
				cases  => [
					{
						label => 'an error that is not UTF-8',
						edits => [ { find => '"bad row","', replace_bytes => hex_of("\"bad \x80\xfe row\",\"") } ],
						final => { rows => \@BASE, row_msg => { 2 => qr/^\Q$BAD_CLEAN\E$/ } }
					},
					{
						label => 'UNABLE_TO_LOCK_ROW (the row goes to a new job)',
						edits => [ { find => '"bad row","', replace => '"UNABLE_TO_LOCK_ROW:busy","' } ],
						final => { rows => \@BASE }
					},
					{
						label      => 'no sf__Error column',
						edits      => [ { find => '"sf__Error"', replace => '"error"' } ],
						persistent => qr/failedResults has no sf__Error column/
					},
					csv_bomb_cases(),
				]
			},
		],
	},
	{
		# the token answer is read by the worker, whatever the dialect
		name     => 'oauth',
		dialect  => 'clinia',
		url      => '/clinia/sources/hostile/v1',
		resource => 'Practitioner',
		auth     => sub {
			return {
				type          => 'oauth2_client_credentials',
				client_id     => 'hostile',
				client_secret => 'not-a-secret',
				token_url     => mock_url("$_[0]/oauth2/token")
			};
		},
		kinds => [
			{
				kind   => 'token',
				method => 'POST',
				path   => '/oauth2/token$',
				status => 200,
				%AT_TOKEN,
				cases => [
					{
						label      => 'no access token',
						edits      => [ { at => 'access_token', delete => JSON::PP::true } ],
						persistent => qr/unusable answer: the answer has no "access_token"/
					},
					{
						# it would become the base of every request's path
						label => 'an instance_url with a query',
						edits => [ { at => 'instance_url', set => "http://127.0.0.1:$port/x?y=1" } ],
						persistent =>
						  qr/unusable answer: instance_url has a query, a fragment, whitespace or control characters/
					},
					{
						label      => 'an unknown token type',
						edits      => [ { at => 'token_type', set => 'mac' } ],
						persistent => qr/unusable answer: token type "mac" is not supported/
					},
					{
						label      => 'a token that is not UTF-8',
						edits      => [ { at => 'access_token', set_bytes => hex_of("tok\xff") } ],
						persistent =>
						  qr/unusable answer: the access token contains a character a header cannot carry/
					},
					{
						label  => 'a refusal whose description is not UTF-8',
						status => 400,
						edits  => [
							{ at => 'error', set => 'invalid_client' },
							{ at => 'error_description', set_bytes => $BAD }
						],
						final => {
							rows => [qw(failed failed failed)],
							msg  => qr/: invalid_client: \Q$BAD_CLEAN\E \(HTTP 400\)$/
						}
					},
				]
			},
		],
	},
);

# Faults every answer kind gets, once and for good, and what a persistent one
# must say.
my $NOT_JSON =
  qr/malformed JSON|not a JSON|stack depth limit exceeded|invalid input syntax for type json/;
my @GENERIC = (
	{
		label => 'an answer that is not JSON',
		rule  => sub {
			return {
				action => 'malformed',
				status => $_[0]{status},
				body   => '<html><body>502 Bad Gateway</body></html>'
			};
		},
		persistent => $NOT_JSON
	},
	{
		label => 'an empty answer',
		rule  => sub { return { action => 'malformed', status => $_[0]{status}, body => '' } },
		persistent => $NOT_JSON
	},
	{
		# deeper than the parser's stack allows, or at least unfinished
		label => 'JSON nested thirty thousand deep',
		rule  => sub {
			return { action => 'malformed', status => $_[0]{status}, body => '[' x 30000 };
		},
		persistent => $NOT_JSON
	},
	{
		label      => 'a cut JSON body',
		rule       => sub { return { action => 'mutate', edits => [ { cut => 0.5 } ] } },
		persistent => $NOT_JSON
	},
	{
		label      => 'a body shorter than its Content-Length',
		rule       => sub { return { action => 'truncate', when => 'after' } },
		persistent => qr/partial file.*transfer closed with \d+ bytes remaining/
	},
	{
		label => 'a body larger than bulkops.max_response_size',
		rule  => sub {
			return { action => 'huge', bytes => 4 * $max_response, status => $_[0]{status} };
		},
		persistent =>
		  qr/answer larger than bulkops\.max_response_size \($max_response bytes\)/
	},
	{
		label   => 'an answer trickling in slower than http_timeout',
		rule    => sub { return { action => 'trickle', interval => 0.3 } },
		options => { http_timeout => 3 },
		persistent => qr/Timeout was reached.*Operation timed out after \d+ milliseconds/
	},
	{
		label   => 'an answer trickling in within http_timeout',
		rule    => sub { return { action => 'trickle', interval => 0.005 } },
		harmless => 1
	},
	{
		label => 'a redirect to another host',
		rule  => sub {
			return { action => 'redirect', status => 307, location => $canary };
		},
		# never followed, never retried: what was sent may have acted
		final => sub {
			my ($kind) = @_;
			my $st = $kind->{kind} eq 'token' ? 'failed' : 'unknown';
			return {
				rows       => $kind->{persist_rows} // [ ($st) x 3 ],
				last_error => qr/HTTP 307 redirect to "\Q$canary\E" not followed/
			};
		}
	},
);

# ---- the cases ----

my @cases;

sub add_case
{
	my (%c) = @_;
	$c{tag} = sprintf('h%03d', scalar @cases + 1);
	push @cases, \%c;
}

# One spoilt answer ($s: label, rule, options, also, and what it leads to:
# "final", or "persistent" for a case once and a case every time, or
# "harmless") of kind $k of dialect $d, as cases.
sub add_cases
{
	my ($d, $k, $s) = @_;
	my $what = "$d->{name} $k->{kind}: $s->{label}";
	my %common = (
		d       => $d,
		k       => $k,
		rule    => $s->{rule},
		options => $s->{options},
		also    => $s->{also});

	if ($s->{final})
	{
		add_case(%common, label => $what, times => $s->{times} // 1,
			expect => $s->{final});
		return;
	}
	add_case(%common, label => "$what, once", times => 1,
		expect => { rows => \@BASE, transient => 1 })
	  unless $s->{harmless};
	add_case(
		%common,
		label  => "$what, every time",
		times  => -1,
		expect => $s->{harmless}
		? { rows => \@BASE, transient => 1 }
		: persistent_expect($k, $s->{persistent}));
}

for my $d (@DIALECTS)
{
	for my $k (@{ $d->{kinds} })
	{
		for my $g (@GENERIC)
		{
			next if $k->{skip} && $g->{label} =~ $k->{skip};
			add_cases($d, $k,
				{ %$g, rule => $g->{rule}->($k), final => $g->{final} && $g->{final}->($k) });
		}
		for my $m (@{ $k->{cases} })
		{
			my %rule =
			  $m->{rule} ? %{ $m->{rule} } : (action => 'mutate', edits => $m->{edits});
			$rule{status} = $m->{status} if $m->{status};
			add_cases($d, $k, { %$m, rule => \%rule });
		}
	}
}

sub persistent_expect
{
	my ($k, $why) = @_;
	my $re = qr/$k->{prefix}.*$why/;
	return {
		rows       => $k->{persist_rows} // [ ($k->{persist}) x 3 ],
		last_error => $re,
		msg        => $re,
		persistent => 1
	};
}

note scalar(@cases) . ' cases';

# ---- the server, the mock, the targets, the jobs ----

my $node = bulkops_node('hostile', "bulkops.max_response_size = '${max_response}B'");
$node->safe_psql('postgres', 'CREATE EXTENSION bulkops');
my $worker;
for (1 .. 100)
{
	$worker = worker_pid($node);
	last if $worker;
	select(undef, undef, undef, 0.1);
}
ok($worker, "the worker runs (pid $worker)");

my %mock_config;
%mock_config = (%mock_config, %{ $_->{mock} }) for grep { $_->{mock} } @DIALECTS;
mock_post('/_control/config', \%mock_config);

my $json = JSON::PP->new->canonical;

sub sql_literal
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

my (@rules, @sql);
for my $c (@cases)
{
	my ($d, $k, $tag) = ($c->{d}, $c->{k}, $c->{tag});
	my $prefix = "/_t/$tag";
	my %rule = (
		%{ $c->{rule} },
		method => $k->{method},
		path   => "^\Q$prefix\E(?=/).*$k->{path}",
		times  => $c->{times});
	push @rules, \%rule;
	# more faults of the case, on other requests
	push @rules, map { { %$_, path => "^\Q$prefix\E(?=/).*$_->{path}" } } @{ $c->{also} // [] };

	# a persistent fault at the submit shows max_attempts at work; at a
	# later step each extra attempt would mean four more polls
	my %options = (
		%{ $d->{options} // {} },
		max_attempts => ($k->{persist} eq 'unknown' && $c->{times} == -1 ? 1 : 2),
		%{ $c->{options} // {} });
	my $auth = $d->{auth} ? $json->encode($d->{auth}->($prefix)) : undef;
	push @sql,
	  sprintf(
		"SELECT bulkops.create_target(%s, %s, %s, %s, %s, %s);",
		sql_literal($tag), sql_literal($d->{dialect} // $d->{name}),
		sql_literal(mock_url($prefix . $d->{url})), sql_literal($d->{resource}),
		$auth ? sql_literal($auth) . '::jsonb' : 'NULL',
		sql_literal($json->encode(\%options)));
	push @sql,
	  sprintf(
		"SELECT %s, bulkops.bulk_upsert(%s, \$\$SELECT '%s-' || i AS id, 'name ' || i AS name,"
		  . " %s FROM generate_series(1, 3) AS i\$\$, key => 'id');",
		sql_literal($tag), sql_literal($tag), $tag, $d->{fail_sql} // $FAIL_SQL);
}
mock_post('/_control/faults', { rules => \@rules });

my %job;
for my $line (split /\n/,
	$node->safe_psql('postgres', join("\n", 'BEGIN;', @sql, 'COMMIT;')))
{
	$job{$1} = $2 if $line =~ /^(h\d+)\|(\d+)$/;
}
is(scalar(keys %job), scalar(@cases), 'one job per case');

{
	local $PostgreSQL::Test::Utils::timeout_default = 170;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT count(*) = 0 FROM bulkops.jobs WHERE state IN ('queued', 'running')"),
		'every job ends');
}

# ---- what the server stored ----

# psql hands over the bytes as stored: each row's text must decode strictly
sub invalid_utf8
{
	return grep { !eval { decode('UTF-8', $_, Encode::FB_CROAK | Encode::LEAVE_SRC); 1 } }
	  @_;
}
is(scalar invalid_utf8("ok", "bad \xff"), 1, 'invalid UTF-8 is told');
my @bad = invalid_utf8(
	split /\n/,
	$node->safe_psql(
		'postgres', q{
		SELECT j::text FROM bulkops.jobs j
		UNION ALL SELECT b::text FROM bulkops.batches b
		UNION ALL SELECT r::text FROM bulkops.receipts r}));
is(scalar @bad, 0, 'every job, batch and receipt is valid in the database encoding')
  or diag explain \@bad;

my $out = $node->safe_psql(
	'postgres', q{
	SELECT json_object_agg(j.id, json_build_object(
	    'state', j.state, 'rows_total', j.rows_total,
	    'counted', j.rows_succeeded + j.rows_failed + j.rows_cancelled + j.rows_unknown,
	    'batch', (SELECT row_to_json(b) FROM (SELECT last_error, attempts, state
	              FROM bulkops.batches WHERE job_id = j.id) b),
	    'receipts', (SELECT json_agg(json_build_object('row', row_no, 'status', status,
	                 'code', error_code, 'msg', error_message, 'remote_id', remote_id)
	                 ORDER BY row_no) FROM bulkops.receipts WHERE job_id = j.id)))
	FROM bulkops.jobs j});
my $jobs = JSON::PP->new->decode(decode('UTF-8', $out));

my %fired;
for my $r (@{ mock_get('/_control/faults')->{rules} })
{
	$fired{$1} //= $r if $r->{path} =~ m{^\^\\/_t\\/(h\d+)};
}

for my $c (@cases)
{
	my $label = "$c->{tag} $c->{label}";
	my $e = $c->{expect};
	my $j = $jobs->{ $job{ $c->{tag} } };
	my $rule = $fired{ $c->{tag} };
	my @rows = @{ $j->{receipts} // [] };
	my $status = join ' ', map { $_->{status} } @rows;

	subtest $label => sub {
		note "last_error: $j->{batch}{last_error}" if defined $j->{batch}{last_error};
		ok($rule && $rule->{fired} >= 1, 'the fault hit');
		is($rule->{missed}, 0, 'each edit changed the answer')
		  if $rule && $rule->{action} eq 'mutate';
		is( join(' ', map { $_->{row} } @rows) . " | $j->{counted} of $j->{rows_total}",
			'1 2 3 | 3 of 3',
			'every row has exactly one receipt, counted once');
		is($status, join(' ', @{ $e->{rows} }), 'the rows end as they must');
		my $ok = grep { $_->{status} eq 'succeeded' } @rows;
		is($j->{state},
			$ok == 3 ? 'succeeded' : $ok ? 'partial' : 'failed', 'the job state');
		if ($e->{transient})
		{
			# retried, and the real outcome is kept, the remote error included
			like($rows[1]{msg} // '', $c->{d}{fail_msg} // $FAIL_MSG,
				'the failed row has its remote error');
		}
		like($j->{batch}{last_error} // '', $e->{last_error}, 'the batch says why')
		  if $e->{last_error};
		if ($e->{msg})
		{
			like($_->{msg} // '', $e->{msg}, "row $_->{row} says why")
			  for grep { $_->{status} ne 'succeeded' } @rows;
		}
		while (my ($n, $re) = each %{ $e->{row_msg} // {} })
		{
			like($rows[ $n - 1 ]{msg} // '', $re, "row $n says why");
		}
		if (defined $e->{code})
		{
			is($_->{code}, $e->{code}, "row $_->{row} has the remote error code, cleaned")
			  for @rows;
		}
		while (my ($n, $id) = each %{ $e->{remote_id} // {} })
		{
			is($rows[ $n - 1 ]{remote_id}, $id, "row $n keeps its remote id, cleaned");
		}
	};
}

# ---- a query export's page larger than the worker keeps ----

# A page is held in memory until it is written, so it is read as it streams
# and refused past its cap (here bulkops.max_response_size), whatever
# max_records says: the job fails saying what to lower, and writes nothing.
{
	mock_post('/_control/faults',
		{
			rules => [
				{
					action => 'huge',
					bytes  => 1 << 30,
					method => 'GET',
					path   => '^/_t/qpage/.*/jobs/query/\w+/results',
					times  => -1
				}
			]
		});
	my $url = mock_url('/_t/qpage/salesforce');
	$node->safe_psql('postgres',
		"SELECT bulkops.create_target('qpage', 'salesforce', '$url', 'Account', NULL, "
		  . "'{\"poll_interval\": 0.05, \"max_attempts\": 1}')");
	my $job = $node->safe_psql('postgres',
		"SELECT bulkops.bulk_query('qpage', 'SELECT Id FROM Account', 'qpage_rows')");
	wait_for_job($node, $job, 120);
	my ($state, $error, $table) = split /\|/, $node->safe_psql('postgres',
		"SELECT state, last_error, to_regclass('qpage_rows') IS NULL "
		  . "FROM bulkops.jobs WHERE id = $job");
	is($state, 'failed', 'a page too large: the export fails');
	like($error,
		qr/a page of query results is larger than $max_response bytes; lower the job's max_records/,
		'a page too large: last_error says what to lower');
	is($table, 't', 'a page too large: nothing was written');
}

# ---- the worker survived all of it ----

my @canary = grep { $_->{path} =~ /hostile-canary/ } @{ mock_get('/_control/requests') };
is(scalar @canary, 0, 'no redirect was followed');
is(worker_pid($node), $worker, 'the same worker served every case');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no process was terminated by a signal');
unlike($log, qr/PANIC/, 'no PANIC');
unlike($log, qr/bulkops worker.*exited with exit code/, 'the worker never exited');

$node->stop;
done_testing();
