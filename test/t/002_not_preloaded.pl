# Without shared_preload_libraries the extension still works; only what needs
# shared memory (server-assigned stamps) says so, with a hint.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
$node->init;
$node->append_conf('postgresql.conf', "upsert_order.database = 'elsewhere'\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION upsert_order;
	CREATE TABLE t (id int PRIMARY KEY, v upsert_order.rowseq, x text);
});

is( $node->safe_psql('postgres',
		q{SELECT outcome FROM upsert_order.versioned_upsert('t', '{"id": 1, "v": 5, "x": "a"}')}),
	'inserted', 'explicit versions work without preloading');
is( $node->safe_psql('postgres',
		q{SELECT outcome FROM upsert_order.versioned_upsert('t', '{"id": 1, "v": 4, "x": "b"}')}),
	'stale', 'stale messages are still refused');
is($node->safe_psql('postgres', 'SELECT count(*) FROM upsert_order.event_log'),
	'2', 'both messages logged');

my ($ret, $stdout, $stderr) = $node->psql('postgres',
	q{\set VERBOSITY verbose
SELECT upsert_order.rowseq_now()});
isnt($ret, 0, 'rowseq_now() fails without shared memory');
like($stderr, qr/55000/, 'with SQLSTATE 55000');
like($stderr, qr/must be loaded via shared_preload_libraries/, 'saying why');
like($stderr, qr/HINT:\s+Add upsert_order to shared_preload_libraries/, 'and what to do');

($ret, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT upsert_order.versioned_upsert('t', '{"id": 2, "x": "no version"}')});
isnt($ret, 0, 'a message without a version needs a server stamp, so it fails');
like($stderr, qr/send every message with an explicit version/, 'and the hint says how to avoid it');
is($node->safe_psql('postgres', 'SELECT count(*) FROM upsert_order.event_log'),
	'2', 'the failed call logged nothing');

# No publisher without preloading: its status shows no worker and says why,
# and applied events are not queued for it, not even in the database it
# is set to serve.
is( $node->safe_psql(
		'postgres', q{
SELECT worker_pid IS NULL, last_seq, events_waiting, last_error FROM upsert_order.publisher_status}),
	't|0|0|no publisher: upsert_order is not in shared_preload_libraries',
	'publisher_status shows no worker without preloading, and why');
$node->safe_psql('postgres', 'CREATE DATABASE elsewhere');
$node->safe_psql('elsewhere', q{
	CREATE EXTENSION upsert_order;
	CREATE TABLE t (id int PRIMARY KEY, v upsert_order.rowseq, x text);
	SELECT upsert_order.versioned_upsert('t', '{"id": 1, "v": 5, "x": "before"}');
});
is($node->safe_psql('elsewhere', 'SELECT count(*) FROM upsert_order.outbox'),
	'0', 'nothing was queued for a publisher in the database it would serve');

# A restart-only setting in postgresql.conf is not reported as misspelt
# when the library is loaded late (it cannot be defined then).
($ret, $stdout, $stderr) = $node->psql('postgres',
	q{LOAD 'upsert_order'; SHOW upsert_order.channel});
is($stdout, 'upsert_order', 'the other settings are defined');
unlike($stderr, qr/WARNING/, 'and nothing is reported');

# Once preloaded, the worker publishes what is applied from then on; the
# event applied before stays unpublished, as the README says.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'upsert_order'\n");
$node->restart;
$node->safe_psql('elsewhere',
	q{SELECT upsert_order.versioned_upsert('t', '{"id": 1, "v": 6, "x": "after"}')});
$node->poll_query_until('elsewhere',
	'SELECT last_seq = 1 AND events_waiting = 0 FROM upsert_order.publisher_status')
  or die 'the event applied after the restart was not published';
is( $node->safe_psql(
		'elsewhere',
		q{SELECT seq, payload->'data'->>'x' FROM upsert_order.events_since(0)}),
	'1|after',
	'only the event applied with the library preloaded is published');
is($node->safe_psql('elsewhere', 'SELECT count(*) FROM upsert_order.event_log'),
	'2', 'the earlier event stays in the log');

# In a database the worker does not serve, its status says which one it
# serves, and what is applied there is not queued.
$node->safe_psql('postgres',
	q{SELECT upsert_order.versioned_upsert('t', '{"id": 3, "v": 1, "x": "unserved"}')});
is( $node->safe_psql(
		'postgres', q{
SELECT worker_pid IS NULL, last_seq, events_waiting, last_error FROM upsert_order.publisher_status}),
	't|0|0|this database is not published: upsert_order.database is "elsewhere"',
	'publisher_status in a database the worker does not serve names the one it serves');
is($node->safe_psql('postgres', 'SELECT count(*) FROM upsert_order.outbox'),
	'0', 'an event applied there is not queued');

$node->stop;
done_testing();
