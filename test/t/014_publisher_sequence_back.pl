# The event_id sequence moved back with setval while a transaction holds the
# publisher's consumed horizon behind newer events.  The worker samples the
# sequence at each batch; it must notice that the sequence went back, or the
# horizon would later jump over the event_ids handed out again, and an event
# written with one of them by a transaction that commits last would wait in
# the outbox forever.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UpsertOrderNode;

my $node = UpsertOrderNode::start(
	'publisher_sequence_back', q{
upsert_order.publish_naptime = 100ms
});

$node->safe_psql('postgres',
	'CREATE TABLE kv (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, val int)');

# $n committed events on keys from $first.
sub write_events { UpsertOrderNode::write_events($node, @_) }

sub wait_published
{
	my ($what) = @_;
	ok(UpsertOrderNode::all_published($node), $what);
}

write_events(1, 10);
wait_published('the first events are published');

# A transaction with an ID stays open: the worker's samples taken from now
# on cannot complete, and the horizon stays at event_id 10.
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN');
$holder->query_safe('SELECT pg_current_xact_id()');

write_events(11, 21);
wait_published('events 11 to 31 are published while the holder is open');

# Free the event_ids (purge deletes every event; the publication row of the
# last one, 31, stays with a null event_id) and move the sequence back.
$node->safe_psql('postgres', q{
SELECT upsert_order.purge_events('0 seconds');
SELECT setval('upsert_order.event_log_event_id_seq', 15);
});

# The late writer takes event_id 16 and stays open.
my $late = $node->background_psql('postgres');
$late->query_safe('BEGIN');
is( $late->query_safe(
		"SELECT event_id FROM upsert_order.versioned_upsert('kv', jsonb_build_object('id', 100, 'ver', upsert_order.rowseq_now()))"
	),
	'16',
	'the late writer gets an event_id handed out before');

# A batch samples the sequence below its newest sample (31).
write_events(101, 1);
wait_published('event 17, written after the setval, is published');

# Past 31: stale messages take 18 to 30, the sequence steps over 31, stale
# messages take 32 to 40, then 41 is applied.
$node->safe_psql('postgres', q{
SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', 1, 'ver', 1))
  FROM generate_series(18, 30);
SELECT setval('upsert_order.event_log_event_id_seq', 31);
SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', 1, 'ver', 1))
  FROM generate_series(32, 40);
SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', 102, 'ver', upsert_order.rowseq_now()));
});
wait_published('event 41 is published');

# The holder ends: the samples taken while it was open complete, those up
# to event_id 31 included, while the late writer is still open.  The next
# batch takes that in.
$holder->query_safe('COMMIT');
$holder->quit;
write_events(103, 1);
wait_published('event 42, written after the holder ended, is published');

$late->query_safe('COMMIT');
$late->quit;
wait_published('the late event is published once it commits');
is($node->safe_psql('postgres', 'SELECT count(*) FROM upsert_order.publication WHERE event_id = 16'),
	'1', 'event 16 was published once');
is(UpsertOrderNode::last_published($node), '16', 'after every event that committed before it');

$node->stop;
done_testing();
