# The publisher with rows far larger than a notification: a batch of them is
# published (without "data", as the payload limit requires), and the worker
# holds one event's row at a time, not the whole batch's.  Then payloads
# just under the limit, more of them than a batch may hold in all: batches
# are cut by size.  Then a row whose text is larger than an allocation may
# be.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UpsertOrderNode;

if ($^O ne 'linux')
{
	plan skip_all => 'reads the worker\'s peak memory from /proc';
}

my $events = 200;
my $row_bytes = 1_000_000;

my $node = UpsertOrderNode::start(
	'publisher_large_rows', qq{
upsert_order.publish_naptime = 100ms
upsert_order.publish_batch_size = $events
});

$node->safe_psql(
	'postgres', q{
CREATE TABLE doc (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, body text);
});

# The worker's peak resident memory in kB (shared memory it touched
# included), from /proc.
sub worker_peak_kb
{
	my ($pid) = @_;
	open(my $status, '<', "/proc/$pid/status") or die "cannot read /proc/$pid/status: $!";
	my ($kb) = map { /^VmHWM:\s+(\d+) kB/ ? ($1) : () } <$status>;
	close($status);
	return $kb;
}

my $worker = $node->poll_query_until('postgres',
	'SELECT worker_pid IS NOT NULL FROM upsert_order.publisher_status')
  ? $node->safe_psql('postgres', 'SELECT worker_pid FROM upsert_order.publisher_status')
  : die 'the publisher did not start';

# One transaction, so that the worker finds every event in one batch.  The
# rows compress to little on disk but are a megabyte each once detoasted.
$node->safe_psql(
	'postgres', qq{
BEGIN;
SELECT count(*) FROM generate_series(1, $events) i,
	LATERAL upsert_order.versioned_upsert('doc',
		jsonb_build_object('id', i, 'ver', 1, 'body', repeat(chr(97 + i % 26), $row_bytes)));
COMMIT;
});

ok(UpsertOrderNode::all_published($node), 'the batch of large rows is published');

is( $node->safe_psql(
		'postgres', q{
SELECT count(*), count(DISTINCT seq), min(seq), max(seq),
       bool_and(NOT (payload::jsonb ? 'data') AND (payload->>'data_omitted')::boolean),
       bool_and(octet_length(payload::text) < 8000)
  FROM upsert_order.publication}),
	"$events|$events|1|$events|t|t",
	'each event is published once, without its row, under the payload limit');

is( $node->safe_psql(
		'postgres', q{SELECT count(DISTINCT xmin::text) FROM upsert_order.publication}),
	'1', 'in one batch');

# Peak resident memory of the worker (shared memory it touched included):
# holding the batch's rows at once would take more than their total size.
my $peak_kb = worker_peak_kb($worker);
ok(defined $peak_kb, 'the worker\'s peak memory is known');
cmp_ok($peak_kb * 1024, '<', $events * $row_bytes / 2,
	'the worker never held the batch\'s rows at once');

# Payloads just under the limit (an array of 2,500 small numbers: 7,500
# bytes of text), with a batch size that would gather them all: the worker
# cuts the batch by bytes (16 MB of payloads, each counted twice: recorded
# and queued), and publishes the rest in the next ones.  Without the cut a
# batch of the largest size allowed would hold gigabytes.
my $big = 4000;
$node->safe_psql(
	'postgres', qq{
ALTER SYSTEM SET upsert_order.publish_batch_size = 100000;
SELECT pg_reload_conf();
CREATE TABLE arr (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, a int[]);
});
$node->safe_psql(
	'postgres', qq{
BEGIN;
SELECT count(*) FROM generate_series(1, $big) i,
	LATERAL upsert_order.versioned_upsert('arr',
		jsonb_build_object('id', i, 'ver', 1, 'a', array_fill(1, ARRAY[2500])));
COMMIT;
});
ok(UpsertOrderNode::all_published($node), 'the events with payloads near the limit are published');
my ($count, $distinct, $first, $last, $with_data, $batches) = split /\|/,
  $node->safe_psql(
	'postgres', q{
SELECT count(*), count(DISTINCT p.seq), min(p.seq), max(p.seq),
       count(*) FILTER (WHERE p.payload::jsonb ? 'data'), count(DISTINCT p.xmin::text)
  FROM upsert_order.publication p JOIN upsert_order.event_log e USING (event_id)
 WHERE e.target = 'arr'::regclass});
is("$count|$distinct|$with_data", "$big|$big|$big", 'each published once, with its row');
is($last - $first + 1, $big, 'in consecutive seqs');
cmp_ok($batches, '>=', 3, 'in batches cut by size');

# A row whose text would not fit in one allocation: 190 million control
# characters, 190 MB (compressed to little on disk), print as 1.14 GB, each
# one as \u0001.  Its event is published without the row, as any other too
# large for a notification, and the events after it are published too.
# (The row is written by INSERT, and the event by a message that names
# only the key and the version: a message carrying the text would cost the
# writer three times the memory.)
$node->safe_psql(
	'postgres', q{
CREATE TABLE huge (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, body text);
INSERT INTO huge VALUES (1, '1', repeat(chr(1), 190000000));
});
$node->safe_psql(
	'postgres', q{
SELECT outcome FROM upsert_order.versioned_upsert('huge', '{"id": 1, "ver": 2}');
SELECT outcome FROM upsert_order.versioned_upsert('huge', '{"id": 2, "ver": 1, "body": "small"}');
});
ok(UpsertOrderNode::all_published($node), 'the events after a row too large to print are published');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(format('%s %s %s', p.payload::jsonb -> 'key' ->> 'id', p.payload::jsonb ? 'data',
						 p.payload::jsonb ? 'data_omitted'), ', ' ORDER BY p.seq)
  FROM upsert_order.publication p JOIN upsert_order.event_log e USING (event_id)
 WHERE e.target = 'huge'::regclass}),
	'1 f t, 2 t f',
	'the large row is left out of its payload, the small one is not');
is($node->safe_psql('postgres', 'SELECT last_error IS NULL FROM upsert_order.publisher_status'),
	't', 'the worker reports no error');

# A row whose jsonb is small and whose text is not: 2,000 copies of the
# number 1e131071, 16 bytes each, that print as 131,072 digits each (262 MB
# in all).  Left out unprinted, each number printed alone to tell: the
# worker's peak memory stays far below the text's size.
$node->safe_psql(
	'postgres', q{
CREATE TABLE nums (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, j jsonb);
INSERT INTO nums SELECT 1, '1', jsonb_agg(n)
  FROM (SELECT '1e131071'::numeric AS n) one, generate_series(1, 2000);
SELECT outcome FROM upsert_order.versioned_upsert('nums', '{"id": 1, "ver": 2}');
});
ok(UpsertOrderNode::all_published($node), 'the row of long numbers is published');
is( $node->safe_psql(
		'postgres', q{
SELECT p.payload::jsonb ? 'data_omitted'
  FROM upsert_order.publication p JOIN upsert_order.event_log e USING (event_id)
 WHERE e.target = 'nums'::regclass}),
	't', 'without its row');
$peak_kb = worker_peak_kb($worker);
cmp_ok($peak_kb * 1024, '<', 200_000_000, 'the worker never printed the row');

$node->stop;
done_testing();
