# Writers go on while REINDEX INDEX CONCURRENTLY rebuilds the primary key
# over and over.  Every rebuild ends by swapping the new index in for the
# old one; a call planned or set up just before a swap must still find the
# key's index and apply or reject its message as usual.
#
# Two tables take the two write paths: "stmt" gets messages without its
# "note" column, which the direct path does not take, so every call runs
# the INSERT ... ON CONFLICT statement; "direct" gets every column.  The
# keys exist before the load starts, so the calls update rows and never
# race to insert a key into the index being built (which can fail with a
# unique violation there, as any INSERT ... ON CONFLICT can).
#
# Afterwards: no client failed, every call left its event, every row holds
# the highest version logged for its key, and the indexes are valid.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UpsertOrderNode;

my $nkeys   = 200;
my $seconds = 12;

my $node = UpsertOrderNode::start('reindex');

$node->safe_psql(
	'postgres', qq{
CREATE TABLE stmt (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, val bigint, note text);
CREATE TABLE direct (LIKE stmt INCLUDING ALL);
SELECT upsert_order.versioned_upsert(t, jsonb_build_object('id', i, 'ver', 1, 'val', 1, 'note', 'first'))
  FROM unnest(ARRAY['stmt', 'direct']::regclass[]) t, generate_series(1, $nkeys) i;
});

# Versions are random, so that calls both apply and go stale; val repeats
# the version, so that a row shows which message wrote it.
my $script = PostgreSQL::Test::Utils::tempdir() . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, qq{\\set id random(1, $nkeys)
\\set v random(2, 1000000)
SELECT outcome FROM upsert_order.versioned_upsert('stmt', jsonb_build_object('id', :id, 'ver', :v, 'val', :v));
SELECT outcome FROM upsert_order.versioned_upsert('direct', jsonb_build_object('id', :id, 'ver', :v, 'val', :v, 'note', 'n'));
});

my ($writers, $out, $err) = UpsertOrderNode::start_writers($node, $script, $seconds);

# Rebuild both indexes for as long as the writers run.
my $rebuilds = 0;
my $reindex  = $node->background_psql('postgres', on_error_stop => 1);
while ($writers->pumpable)
{
	$reindex->query_safe('REINDEX INDEX CONCURRENTLY stmt_pkey');
	$reindex->query_safe('REINDEX INDEX CONCURRENTLY direct_pkey');
	$rebuilds++;
	$writers->pump_nb;
}
$reindex->quit;
my $finished = $writers->finish;
note "pgbench:\n$$out$$err";

ok($finished, 'pgbench exits with status 0');
is($$err, '', 'no call failed');
my ($calls) = $$out =~ m{number of transactions actually processed: (\d+)};
$calls //= 0;
cmp_ok($calls, '>', 0, 'the writers made calls');
cmp_ok($rebuilds, '>=', 3, "the indexes were rebuilt while they did ($rebuilds times)");

is( $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM upsert_order.event_log WHERE target IN ('stmt'::regclass, 'direct'::regclass)}),
	2 * ($nkeys + $calls),
	'one event per call');

foreach my $table ('stmt', 'direct')
{
	is( $node->safe_psql(
			'postgres', qq{
SELECT count(*)
  FROM $table t
  FULL JOIN (SELECT (key->>'id')::int AS id, max(version::text::numeric) AS ver
               FROM upsert_order.event_log
              WHERE target = '$table'::regclass
              GROUP BY 1) e USING (id)
 WHERE t.ver::text::numeric IS DISTINCT FROM e.ver OR t.val IS DISTINCT FROM t.ver::text::bigint}),
		'0',
		"$table: every row holds the highest version logged for its key, and its value");
	is( $node->safe_psql(
			'postgres', qq{
SELECT string_agg(i.indexrelid::regclass::text, ', ')
  FROM pg_index i
 WHERE i.indrelid = '$table'::regclass AND NOT (i.indisvalid AND i.indisready AND i.indisprimary)}),
		'',
		"$table: only the valid primary key index is left");
}

$node->stop;
done_testing();
