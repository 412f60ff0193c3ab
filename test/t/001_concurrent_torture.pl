# Concurrent torture test for upsert_order.versioned_upsert().
#
# Many pgbench clients hammer five hot keys with versions that arrive out of
# order, repeat (duplicates) and race to create the rows.  Afterwards the event
# log and the table must agree:
#   (a) one event_log row per committed call;
#   (b) each row holds the highest version ever sent for its key, and the
#       payload of the event that applied that version;
#   (c) applied events have strictly increasing versions, per key, in
#       event_id order;
#   (d) exactly one 'inserted' event per key, and it is the first applied one;
#   (e) 'duplicate' events carry a version applied earlier, 'stale' events a
#       version below the highest one applied before them.
# The first phase runs at READ COMMITTED; the second at REPEATABLE READ, where
# serialization failures are retried by pgbench (--max-tries).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use UpsertOrderNode;

my $nkeys = 5;

my $node = UpsertOrderNode::start('torture');

$node->safe_psql(
	'postgres', q{
CREATE TABLE hot (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, val bigint);
-- drives the "jitter" script: versions that roughly follow a shared clock
CREATE SEQUENCE torture_clock;
-- the event log of "hot", with versions as numeric for comparisons
CREATE VIEW torture_events AS
  SELECT event_id,
         (key->>'id')::int AS id,
         version::text::numeric AS v,
         outcome,
         (payload->>'val')::bigint AS val
    FROM upsert_order.event_log
   WHERE target = 'hot'::regclass;
});

# ---------------------------------------------------------------------------
# pgbench scripts.  Each script makes exactly one versioned_upsert() call.
# Versions follow a shared clock (torture_clock, 16 units per tick) so that the
# keys keep being updated throughout the run:
#   jitter: ticks the clock and sends clock +/- 200, so concurrent calls
#           arrive out of order (a mix of applied and stale);
#   rand:   uniformly random versions in 1 .. clock + 2000: mostly stale old
#           versions, now and then a jump ahead of the clock;
#   dup:    re-sends the version currently stored for the key (duplicates,
#           or stale when a concurrent call got there first).
# "val" is random and independent of the version, so (b) can tell which event
# wrote the row.
# ---------------------------------------------------------------------------
my $upsert =
  q{SELECT upsert_order.versioned_upsert('hot', jsonb_build_object('id', :id, 'ver', :v, 'val', :val));};

my %bodies = (
	jitter => qq{\\set id random(1, $nkeys)
\\set val random(1, 1000000000)
\\set jit random(-200, 200)
SELECT nextval('torture_clock') * 16 AS clk \\gset
\\set v greatest(1, :clk + :jit)
$upsert
},
	rand => qq{\\set id random(1, $nkeys)
\\set val random(1, 1000000000)
SELECT last_value * 16 AS clk FROM torture_clock \\gset
\\set v random(1, :clk + 2000)
$upsert
},
	dup => qq{\\set id random(1, $nkeys)
\\set val random(1, 1000000000)
\\set fallback random(1, 1000)
SELECT coalesce((SELECT ver::text FROM hot WHERE id = :id), :fallback::text) AS v \\gset
$upsert
},);
my %weights = (jitter => 6, rand => 2, dup => 2);

my $scriptdir = PostgreSQL::Test::Utils::tempdir();

# Write the scripts of one phase and return pgbench's -f arguments; when
# $begin is given, every script runs as one explicit transaction.
sub write_scripts
{
	my ($phase, $begin) = @_;
	my @args;
	foreach my $name (sort keys %bodies)
	{
		my $file = "$scriptdir/$phase-$name.sql";
		my $text = $bodies{$name};
		$text = "$begin\n$text" . "COMMIT;\n" if defined $begin;
		PostgreSQL::Test::Utils::append_to_file($file, $text);
		push @args, '-f', "$file\@$weights{$name}";
	}
	return @args;
}

# Run pgbench against $node, return a hash of the figures it reported.
sub run_pgbench
{
	my ($name, @args) = @_;
	my @cmd = (
		'pgbench', '-n', '-h', $node->host, '-p', $node->port,
		'--failures-detailed', @args, 'postgres');
	my ($stdout, $stderr) = ('', '');
	note "running: @cmd";
	my $ok = IPC::Run::run(\@cmd, '<', \undef, '>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout(5 * $PostgreSQL::Test::Utils::timeout_default));
	my $status = $? >> 8;
	note "pgbench ($name) stdout:\n$stdout";
	note "pgbench ($name) stderr:\n$stderr" if $stderr ne '';
	is($status, 0, "$name: pgbench exits with status 0");

	my %r = (stdout => $stdout, stderr => $stderr);
	($r{processed}, $r{planned}) =
	  $stdout =~ m{number of transactions actually processed: (\d+)(?:/(\d+))?};
	($r{failed})  = $stdout =~ m{number of failed transactions: (\d+)};
	($r{serfail}) = $stdout =~ m{number of serialization failures: (\d+)};
	($r{dlfail})  = $stdout =~ m{number of deadlock failures: (\d+)};
	($r{retried}) = $stdout =~ m{number of transactions retried: (\d+)};
	($r{retries}) = $stdout =~ m{total number of retries: (\d+)};
	$r{failed} //= 0;
	$r{$_} //= 0 for qw(serfail dlfail retried retries);
	ok(defined $r{processed}, "$name: pgbench reports the committed calls");
	$r{processed} //= -1;
	unlike($stdout . $stderr, qr/Run was aborted/,
		"$name: no pgbench client aborted");
	return \%r;
}

sub query { return $node->safe_psql('postgres', $_[0]); }

# Check invariants (b)-(e) on everything logged so far.
sub check_invariants
{
	my ($phase) = @_;

	# (b) stored version = highest version ever sent for the key
	is( query(
			q{SELECT count(*) FROM hot h
			   WHERE h.ver::text::numeric IS DISTINCT FROM
			         (SELECT max(e.v) FROM torture_events e WHERE e.id = h.id)}),
		'0',
		"$phase: (b) every key stores the highest version logged for it");
	is(query(q{SELECT count(*) FROM hot}),
		$nkeys, "$phase: (b) all $nkeys hot keys exist");
	is( query(
			q{SELECT count(*) FROM hot h
			   WHERE (SELECT array_agg(e.val) FROM torture_events e
			           WHERE e.id = h.id AND e.v = h.ver::text::numeric
			             AND e.outcome IN ('inserted', 'updated'))
			         IS DISTINCT FROM ARRAY[h.val]}),
		'0',
		"$phase: (b) every key's val is the val of the event that applied its version"
	);

	# (c) applied versions strictly increase in event_id order, per key
	my $bad_order = query(
		q{SELECT string_agg(format('id=%s event %s v=%s after v=%s', id, event_id, v, prev), '; ')
		    FROM (SELECT id, event_id, v,
		                 lag(v) OVER (PARTITION BY id ORDER BY event_id) AS prev
		            FROM torture_events
		           WHERE outcome IN ('inserted', 'updated')) s
		   WHERE prev IS NOT NULL AND v <= prev});
	is($bad_order, '',
		"$phase: (c) applied versions strictly increase in event_id order per key");

	# (d) exactly one 'inserted' per key, and nothing applied before it
	is( query(
			q{SELECT string_agg(format('id=%s: %s', id, n), ', ' ORDER BY id)
			    FROM (SELECT id, count(*) FILTER (WHERE outcome = 'inserted') AS n
			            FROM torture_events GROUP BY id) s
			   WHERE n <> 1}),
		'',
		"$phase: (d) exactly one 'inserted' event per key");
	is( query(
			q{SELECT count(*)
			    FROM (SELECT outcome,
			                 row_number() OVER (PARTITION BY id ORDER BY event_id) AS n
			            FROM torture_events
			           WHERE outcome IN ('inserted', 'updated')) s
			   WHERE (n = 1) <> (outcome = 'inserted')}),
		'0',
		"$phase: (d) the 'inserted' event is the first applied event of its key");

	# (e) duplicates repeat an earlier applied version; stale events are
	# below the highest version applied before them
	is( query(
			q{SELECT count(*)
			    FROM (SELECT outcome, event_id,
			                 min(event_id) FILTER (WHERE outcome IN ('inserted', 'updated'))
			                   OVER (PARTITION BY id, v) AS first_applied
			            FROM torture_events) s
			   WHERE outcome = 'duplicate' AND NOT coalesce(first_applied < event_id, false)}),
		'0',
		"$phase: (e) every duplicate repeats a version applied earlier");
	is( query(
			q{SELECT count(*)
			    FROM (SELECT outcome, v,
			                 max(v) FILTER (WHERE outcome IN ('inserted', 'updated'))
			                   OVER (PARTITION BY id ORDER BY event_id
			                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
			                   AS applied_before
			            FROM torture_events) s
			   WHERE outcome = 'stale' AND NOT coalesce(v < applied_before, false)}),
		'0',
		"$phase: (e) every stale event is below the highest version applied before it"
	);

	is( query(
			q{SELECT count(*) FROM torture_events
			   WHERE outcome IS NULL
			      OR outcome NOT IN ('inserted', 'updated', 'duplicate', 'stale')}),
		'0',
		"$phase: every event has a known outcome");
	is(query(q{SELECT count(*) FROM upsert_order.event_log
	            WHERE target IS DISTINCT FROM 'hot'::regclass}),
		'0', "$phase: every event is logged against hot");
}

sub outcome_counts
{
	my %n = map { split /\|/ } split /\n/,
	  query(q{SELECT outcome, count(*) FROM torture_events GROUP BY outcome});
	$n{$_} //= 0 for qw(inserted updated duplicate stale);
	note "outcomes: " . join(', ', map { "$_=$n{$_}" } sort keys %n);
	return \%n;
}

# ---------------------------------------------------------------------------
# Phase 1: READ COMMITTED, 8 clients x 2500 calls.
# ---------------------------------------------------------------------------
my $clients   = 8;
my $per_client = 2500;
my $r1 = run_pgbench(
	'read committed',
	'-c', $clients, '-j', 2, '-t', $per_client,
	write_scripts('rc'));

is($r1->{processed}, $clients * $per_client,
	'read committed: every call committed');
is($r1->{failed}, 0, 'read committed: pgbench reports no failed transactions');
is(query(q{SELECT count(*) FROM upsert_order.event_log}),
	$r1->{processed},
	'read committed: (a) one event_log row per committed call');
check_invariants('read committed');

my $n1 = outcome_counts();
ok($n1->{updated} > 0,   'read committed: some calls updated a row');
ok($n1->{stale} > 0,     'read committed: some calls were stale');
ok($n1->{duplicate} > 0, 'read committed: some calls were duplicates');

# ---------------------------------------------------------------------------
# Phase 2: REPEATABLE READ.  A concurrent update of the same row makes a call
# fail with a serialization failure; pgbench rolls back and retries it.  Only
# committed calls may leave events behind.
# ---------------------------------------------------------------------------
my $per_client_rr = 1000;
my $r2 = run_pgbench(
	'repeatable read',
	'-c', $clients, '-j', 2, '-t', $per_client_rr,
	'--max-tries', 1000,
	write_scripts('rr', 'BEGIN ISOLATION LEVEL REPEATABLE READ;'));

is($r2->{processed} + $r2->{failed}, $clients * $per_client_rr,
	'repeatable read: every call either committed or failed');
is($r2->{failed}, $r2->{serfail} + $r2->{dlfail},
	'repeatable read: calls failed only through serialization failures or deadlocks');
note "repeatable read: $r2->{retried} calls retried, $r2->{retries} retries, "
  . "$r2->{failed} failed";
is(query(q{SELECT count(*) FROM upsert_order.event_log}),
	$r1->{processed} + $r2->{processed},
	'repeatable read: (a) one event_log row per committed call, none from rolled back tries'
);
check_invariants('repeatable read');
outcome_counts();

$node->stop;
done_testing();
