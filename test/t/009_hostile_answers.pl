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
# Every dialect of bulkops.dialects() is tested: its answer kinds and its own
# cases come from its mock module (TESTS["hostile"] in test/mock/<dialect>.py,
# see the dialects section below and docs/adding-a-dialect.md); one without
# them gets the generic faults on every request.
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

# ---- the server ----

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

# ---- the dialects and their answers ----

# Every dialect of bulkops.dialects(), as its mock module describes it
# (TESTS["hostile"] over TESTS["target"]; see docs/adding-a-dialect.md): where
# its target points (url, "{name}" being "hostile"; resource; options), mock
# configuration, fail_sql and fail_msg if its mock fails the second row
# otherwise, and its answer kinds.  A kind names its request (method, path
# regex), the status of its normal answer, the step it answers ("submit", or
# "later": a poll, a result file), "persist_rows" when rows settled by an
# earlier answer keep their status, optionally "skip", a regex of @GENERIC
# labels that do not spoil it (an empty answer to a request answered empty),
# and its own cases: mutate edits (see test/mock/mock_api.py: JSON edits, or
# for CSV "lines" and "find"/"replace"), or a fault "rule" of another action,
# with either "persistent" (the reason a persistent fault must give, the
# transient one then being retried to the normal outcome) or "final" (what the
# one answer leads to: row statuses, messages, last_error, error codes).
# Regular expressions come as strings.  A dialect that describes no answer
# gets the generic faults on every request of its job, as answers to the
# submit, and a note says so.
my %AT = (submit => \%AT_SUBMIT, later => \%AT_LATER);

sub final_of
{
	my ($f) = @_;
	my %final = %$f;
	$final{$_} = qr/$f->{$_}/ for grep { defined $f->{$_} } qw(msg last_error);
	$final{row_msg} = { map { $_ => qr/$f->{row_msg}{$_}/ } keys %{ $f->{row_msg} } }
	  if $f->{row_msg};
	return \%final;
}

sub kind_of
{
	my ($name, $k) = @_;
	my $at = $AT{ $k->{step} // '' }
	  or missing("test/mock/$name.py: answer kind \"$k->{kind}\" must say its step, "
		  . "\"submit\" or \"later\"");
	return {
		%$k, %$at,
		$k->{skip} ? (skip => qr/$k->{skip}/) : (),
		cases => [
			map {
				{
					%$_,
					$_->{persistent} ? (persistent => qr/$_->{persistent}/) : (),
					$_->{final} ? (final => final_of($_->{final})) : ()
				}
			} @{ $k->{cases} // [] }
		]
	};
}

my (@DIALECTS, %hostile);
for my $d (dialects($node))
{
	my $h = $hostile{ $d->{name} } = $d->{mock}{hostile};
	my @kinds = @{ $h->{kinds} // [] };
	unless (@kinds)
	{
		diag "dialect $d->{name}: test/mock/$d->{name}.py describes none of its "
		  . "answers (TESTS hostile kinds): only the generic faults, on every request";
		@kinds = (
			{
				kind   => 'any answer',
				method => undef,
				path   => '',
				status => 200,
				step   => 'submit'
			});
	}
	push @DIALECTS,
	  {
		name     => $d->{name},
		url      => fill_name($h->{url}, 'hostile'),
		resource => fill_name($h->{resource}, 'hostile'),
		options  => $h->{options},
		mock     => $h->{mock},
		fail_sql => $h->{fail_sql},
		$h->{fail_msg} ? (fail_msg => qr/$h->{fail_msg}/) : (),
		kinds => [ map { kind_of($d->{name}, $_) } @kinds ]
	  };
}

# the token answer is read by the worker, whatever the dialect: clinia's
# target carries it
if (!$hostile{clinia})
{
	missing('the OAuth token cases need dialect clinia')
	  unless $ENV{BULKOPS_TEST_DIALECTS};
	diag 'BULKOPS_TEST_DIALECTS leaves out clinia, and with it the OAuth token cases';
}
else
{
	push @DIALECTS,
	  {
		name     => 'oauth',
		dialect  => 'clinia',
		url      => fill_name($hostile{clinia}{url}, 'hostile'),
		resource => fill_name($hostile{clinia}{resource}, 'hostile'),
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
	  };
}

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

# ---- the mock, the targets, the jobs ----

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
