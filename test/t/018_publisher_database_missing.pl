# upsert_order.database names a database that does not exist yet.  The
# worker's first start fails to connect (FATAL, which nothing can catch);
# the next one does not try again but waits for the database, connected to
# no database, with one line in the log instead of a FATAL every restart.
# Once the database is created it connects, and publishes once the
# extension is created there; dropped again, it is waited for again.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('publisher_database_missing');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'upsert_order'
upsert_order.database = 'later'
upsert_order.publish_naptime = 100ms
});
$node->start;

my $waiting = 'upsert_order publisher is waiting for database "later"';
ok( $node->wait_for_log(qr/\Q$waiting\E/) > 0,
	'after its first start fails, the worker waits for the database');

# The wait is one process, connected to no database, that is not restarted:
# the same pid across more than the worker's 5 second restart time.
my $worker_query = q{
SELECT pid, datname IS NULL, query FROM pg_stat_activity
 WHERE backend_type = 'upsert_order publisher'};
my $before = $node->safe_psql('postgres', $worker_query);
like($before, qr/^\d+\|t\|waiting for database "later"$/,
	'pg_stat_activity shows the waiting worker, with no database');
sleep 6;
is($node->safe_psql('postgres', $worker_query),
	$before, 'the same process still waits 6 seconds later');

my $log = slurp_file($node->logfile);
my @fatals = $log =~ /FATAL:  database "later" does not exist/g;
is(scalar @fatals, 1, 'the failed connection is logged once, not at every restart');
my @waits = $log =~ /\Q$waiting\E/g;
is(scalar @waits, 1, 'and so is the wait');
like($log, qr/HINT:  Create the database, or set upsert_order\.database to another one/,
	'the log says what to do');

# Created: the worker restarts into it, waits quietly for the extension,
# then publishes.
$node->safe_psql('postgres', 'CREATE DATABASE later');
ok( $node->poll_query_until(
		'later', q{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE backend_type = 'upsert_order publisher' AND datname = 'later'}),
	'once the database exists, the worker connects to it');
$node->safe_psql('later', q{
CREATE EXTENSION upsert_order;
CREATE TABLE kv (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL);
SELECT upsert_order.versioned_upsert('kv', '{"id": 1, "ver": 1}');
});
ok( $node->poll_query_until(
		'later', 'SELECT last_seq = 1 AND events_waiting = 0 FROM upsert_order.publisher_status'),
	'and publishes there once the extension is created');

$log = slurp_file($node->logfile);
@fatals = $log =~ /FATAL:  database "later" does not exist/g;
is(scalar @fatals, 1, 'without failing to connect again');

# Dropped under the worker (WITH (FORCE) ends its connection): its next
# start fails to connect, and the one after waits again.
my $offset = -s $node->logfile;
$node->safe_psql('postgres', 'DROP DATABASE later WITH (FORCE)');
ok($node->wait_for_log(qr/\Q$waiting\E/, $offset) > 0,
	'a dropped database is waited for again');
like($node->safe_psql('postgres', $worker_query),
	qr/^\d+\|t\|waiting for database "later"$/, 'by a worker connected to no database');

$node->stop;
done_testing();
