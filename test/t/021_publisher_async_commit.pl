# synchronous_commit = off: the writers' commits are not flushed to WAL when
# they return, but the worker's are, before the listeners are told, so that
# a batch a listener was told of survives a crash, with the writers' events
# it holds (their commit records come before the batch's).
#
# The flushed WAL position shows it: once the listener has the notification,
# WAL is flushed past the end of the writer's commit, although nothing else
# flushes it here (the WAL writer flushes every 10 s, the background writer
# and autovacuum write nothing, and a checkpoint is an hour away).  Then the
# server is stopped with -m immediate, and the batch and its event are still
# there, and the next event is numbered after it.  (A crash of the server's
# processes keeps the WAL already written to the operating system, flushed
# or not; the flush is what keeps it through a crash of the machine, which
# this test cannot cause.  With fsync off, as in every TAP test here, the
# flush position moves all the same.)

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PublisherListener;
use UpsertOrderNode;

my $node = UpsertOrderNode::start(
	'publisher_async_commit', q{
synchronous_commit = off
wal_writer_delay = 10s
wal_writer_flush_after = 1GB
bgwriter_lru_maxpages = 0
autovacuum = off
checkpoint_timeout = 1h
upsert_order.publish_naptime = 100ms
});

$node->safe_psql('postgres',
	'CREATE TABLE kv (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, note text)');
# What went before (the extension, the table) is flushed: only the event
# and its batch are left to the test.
$node->safe_psql('postgres', 'CHECKPOINT');

my $listener = PublisherListener->new($node, 'postgres', 'upsert_order');
# LISTEN before the event, so that it comes as a notification
ok($listener->wait_listening, 'the listener listens');

$node->safe_psql('postgres',
	q{SELECT upsert_order.versioned_upsert('kv', '{"id": 1, "ver": 7, "note": "before the crash"}')});
my $after_writer = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok($listener->wait_for_seq(1), 'the listener is told of the event');
like($listener->{payload}{1}, qr/"before the crash"/, 'with its row');
is($listener->{notified}{1}, 1, 'by a notification');
is($node->safe_psql('postgres', "SELECT pg_current_wal_flush_lsn() >= '$after_writer'"),
	't', 'by then, WAL is flushed past the writer\'s commit');

$node->stop('immediate');
$node->start;

is( $node->safe_psql(
		'postgres', q{
SELECT e.version || '|' || (e.data->>'note') FROM upsert_order.publication p
  JOIN upsert_order.event_log e ON e.event_id = p.event_id WHERE p.seq = 1}),
	'7|before the crash',
	'after the crash, seq 1 is still that event, which is still logged');
is($node->safe_psql('postgres', 'SELECT ver FROM kv WHERE id = 1'),
	'7', 'and the row it applied is still stored');

$node->safe_psql('postgres',
	q{SELECT upsert_order.versioned_upsert('kv', '{"id": 1, "ver": 8, "note": "after the crash"}')});
ok($listener->wait_for_seq(2), 'the next event is published after it');
like($listener->{payload}{2}, qr/"after the crash"/, 'as seq 2');
PublisherListener::check_published($node, $listener, 'after the crash');

$listener->stop;
$node->stop;
done_testing();
