# Events written by prepared transactions.  A prepared transaction keeps its
# transaction ID, so the publisher's consumed horizon must stay behind its
# events while newer ones are published; once COMMIT PREPARED runs (in
# another session, possibly after a restart) its events are published
# exactly once, after those that committed first; ROLLBACK PREPARED
# publishes nothing.  That holds too for a transaction prepared after the
# worker found it writing.  COMMIT PREPARED wakes the worker, as the commit
# of a transaction that logged an event does.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UpsertOrderNode;

my $node = UpsertOrderNode::start(
	'publisher_two_phase', q{
max_prepared_transactions = 4
upsert_order.publish_naptime = 100ms
});

$node->safe_psql('postgres',
	'CREATE TABLE kv (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, val int)');

# Upsert id at version ver in a transaction prepared as gid; returns the
# event_id.
sub prepare_upsert
{
	my ($gid, $id, $ver) = @_;
	return $node->safe_psql('postgres', qq{
BEGIN;
SELECT event_id FROM upsert_order.versioned_upsert('kv', '{"id": $id, "ver": $ver, "val": $ver}');
PREPARE TRANSACTION '$gid';
});
}

sub write_events { UpsertOrderNode::write_events($node, @_) }

sub wait_published
{
	my ($what) = @_;
	ok(UpsertOrderNode::all_published($node), $what);
}

sub times_published
{
	my ($event_id) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM upsert_order.publication WHERE event_id = $event_id");
}

sub last_published { UpsertOrderNode::last_published($node) }

# COMMIT PREPARED $gid, whose event is $event_id; check that the event is
# then published ($what), after the events that committed before it ($after).
sub commit_prepared_published_last
{
	my ($gid, $event_id, $what, $after) = @_;
	$node->safe_psql('postgres', "COMMIT PREPARED '$gid'");
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM upsert_order.publication WHERE event_id = $event_id"),
		$what);
	is(last_published(), $event_id, $after);
}

# p1 commits in another session while the worker runs; p2 is rolled back;
# p3 stays prepared across a restart.
my $p1 = prepare_upsert('p1', 1, 10);
my $p2 = prepare_upsert('p2', 2, 10);
my $p3 = prepare_upsert('p3', 3, 10);
ok($p1 < $p2 && $p2 < $p3, 'the prepared transactions hold increasing event_ids');

write_events(100, 20);
wait_published('events logged after the prepared ones are published');
is(times_published($p1) + times_published($p2) + times_published($p3),
	0, 'no event of a prepared transaction is published');

commit_prepared_published_last('p1', $p1,
	'the event of a transaction committed as prepared is published',
	'after the events that committed before it');

$node->safe_psql('postgres', "ROLLBACK PREPARED 'p2'");
write_events(200, 5);
wait_published('events after a rolled back prepared transaction are published');
is(times_published($p2), 0, 'a rolled back prepared transaction publishes nothing');
is( $node->safe_psql('postgres', "SELECT count(*) FROM upsert_order.event_log WHERE event_id = $p2"),
	'0', 'and logs nothing');

# The prepared transaction survives the restart; the worker starts with a
# new horizon and must still wait for it.
$node->restart;
write_events(300, 5);
wait_published('events written after the restart are published');
is(times_published($p3), 0, 'the event still prepared is not published after the restart');

commit_prepared_published_last('p3', $p3,
	'a transaction prepared before the restart and committed after is published',
	'after every event that committed before it');

write_events(400, 5);
wait_published('later events are published');
is( $node->safe_psql('postgres', q{
SELECT count(*) = count(DISTINCT event_id) AND max(seq) = count(*)
  FROM upsert_order.publication}),
	't', 'every applied event was published once, with gapless seqs');
is( $node->safe_psql('postgres', q{
SELECT count(*) FROM upsert_order.event_log e
 WHERE e.outcome IN ('inserted', 'updated')
   AND NOT EXISTS (SELECT FROM upsert_order.publication p WHERE p.event_id = e.event_id)}),
	'0', 'no applied event was left out');

# Purging by age.  An event that waited (here, prepared) keeps its
# publication row as long after its notification as any other: a cutoff
# between its logging and its publication keeps it.
my $p4 = prepare_upsert('p4', 4, 10);
my $prepared_at = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
$node->poll_query_until('postgres',
	"SELECT clock_timestamp() > '$prepared_at'::timestamptz + interval '1 s'")
  or die 'the clock does not move';
$node->safe_psql('postgres', "COMMIT PREPARED 'p4'");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM upsert_order.publication WHERE event_id = $p4"),
	'an event that waited a second is published');
$node->safe_psql('postgres', qq{
SELECT upsert_order.purge_events(now() - (SELECT e.logged_at + (p.published_at - e.logged_at) / 2
                                            FROM upsert_order.event_log e
                                            JOIN upsert_order.publication p USING (event_id)
                                           WHERE e.event_id = $p4))});
is($node->safe_psql('postgres', "SELECT count(*) FROM upsert_order.event_log WHERE event_id = $p4"),
	'1', 'purging what was logged before its publication keeps the event');
is(times_published($p4), 1, 'and its publication row');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM upsert_order.event_log WHERE event_id < $p4"),
	'0', 'while the events published before are gone');

# Purging everything deletes every event, the last one published too, and
# every publication row but that one's, which numbers the next: what
# earlier purges kept goes too.
write_events(500, 2);
wait_published('events after the purge are published');
my $last = $node->safe_psql('postgres', 'SELECT max(seq) FROM upsert_order.publication');
$node->safe_psql('postgres', "SELECT upsert_order.purge_events('0 s')");
is($node->safe_psql('postgres', 'SELECT count(*) FROM upsert_order.event_log'),
	'0', 'purging everything deletes every event');
is( $node->safe_psql('postgres',
		q{SELECT string_agg(seq || ':' || coalesce(event_id::text, 'purged'), ',') FROM upsert_order.publication}),
	"$last:purged", 'and keeps the last publication row alone, without its event');

# A transaction that wrote an event while batches went on is prepared and
# more batches go on: its event is not published, and it is once COMMIT
# PREPARED runs, though the worker had found that transaction running
# before it was prepared, by the ID it had then.
my $open = $node->background_psql('postgres');
$open->query_safe('BEGIN');
my $p5 = $open->query_safe(
	q{SELECT event_id FROM upsert_order.versioned_upsert('kv', '{"id": 600, "ver": 10, "val": 10}')});
UpsertOrderNode::publish_one_by_one($node, 601, 50);
$open->query_safe("PREPARE TRANSACTION 'p5'");
$open->quit;
UpsertOrderNode::publish_one_by_one($node, 651, 50);
is(times_published($p5), 0, 'the event of a transaction prepared late is not published');
commit_prepared_published_last('p5', $p5, 'it is published once committed',
	'after the events that committed before it');

# COMMIT PREPARED wakes the worker: with an hour between its rounds, the
# event of a transaction prepared before a restart, and committed after it,
# while the worker sleeps, by a session that logged nothing, is published
# at once (well within poll_query_until's timeout).
$node->append_conf('postgresql.conf', 'upsert_order.publish_naptime = 1h');
my $p6 = prepare_upsert('p6', 6, 10);
$node->restart;
ok( $node->poll_query_until('postgres', q{
SELECT wait_event = 'Extension' FROM pg_stat_activity
 WHERE application_name = 'upsert_order publisher'}),
	'the worker sleeps between rounds');
is(times_published($p6), 0, 'the event still prepared is not published');
commit_prepared_published_last('p6', $p6, 'COMMIT PREPARED wakes the worker',
	'and its event is published after every event that committed before it');

$node->stop;
done_testing();
