# pg_dump keeps the event log: its rows and its sequence come back with a
# restore, and versioned_upsert() goes on from where it was.  The targets'
# publishing settings come back too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'upsert_order'");
$node->start;

$node->safe_psql('postgres', q{
	CREATE DATABASE source;
	CREATE DATABASE restored;
});
$node->safe_psql('source', q{
	CREATE EXTENSION upsert_order;
	CREATE TABLE item (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, name text);
	SELECT upsert_order.versioned_upsert('item', '{"id": 1, "ver": 1, "name": "a"}');
	SELECT upsert_order.versioned_upsert('item', '{"id": 1, "ver": 3, "name": "c"}');
	SELECT upsert_order.versioned_upsert('item', '{"id": 1, "ver": 2, "name": "b"}');
	SELECT upsert_order.versioned_upsert('item', '{"id": 2, "ver": 1, "name": "x"}');
	CREATE TABLE quiet (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL);
	SELECT upsert_order.configure('item', 'items');
	SELECT upsert_order.publish_data('item', false);
	SELECT upsert_order.publish_data('quiet', false);
});
my $before = $node->safe_psql('source',
	'SELECT event_id, target, key, version, outcome, payload, data FROM upsert_order.event_log ORDER BY event_id');

my $dump = $node->basedir . '/source.dump';
$node->command_ok(
	[ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('source') ],
	'pg_dump of a database using the extension');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore into an empty database');

is( $node->safe_psql('restored',
		'SELECT event_id, target, key, version, outcome, payload, data FROM upsert_order.event_log ORDER BY event_id'),
	$before, 'every event comes back, unchanged');
is( $node->safe_psql('restored',
		'SELECT target, channel, publish_data FROM upsert_order.target_settings ORDER BY target::text'),
	"item|items|f\nquiet||f", 'the targets\' settings come back');
is($node->safe_psql('restored', 'SELECT id, ver, name FROM item ORDER BY id'),
	"1|3|c\n2|1|x", 'the table comes back');

# The restored database goes on: new events get new ids, outcomes see the
# restored versions.
is( $node->safe_psql('restored',
		q{SELECT outcome || ' ' || (event_id > 4)::text FROM upsert_order.versioned_upsert('item', '{"id": 1, "ver": 2}')}),
	'stale true', 'a stale message after the restore is stale, with a fresh event id');
is( $node->safe_psql('restored',
		q{SELECT outcome FROM upsert_order.versioned_upsert('item', '{"id": 1, "ver": 4, "name": "d"}')}),
	'updated', 'a newer message after the restore applies');
is($node->safe_psql('restored', 'SELECT count(*), count(DISTINCT event_id) FROM upsert_order.event_log'),
	'6|6', 'no event id is reused');

$node->stop;
done_testing();
