# The publisher keeps up with eight writers: one listener, connected all
# along, receives every applied event through its notifications alone, in
# seq order, gapless from 1, per key in version order.  Then the worker's
# event retention deletes what is old and published, and seq goes on.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PublisherListener;
use Test::More;
use UpsertOrderNode;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = UpsertOrderNode::start('publisher_load');

$node->safe_psql(
	'postgres', q{
CREATE TABLE account (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, balance bigint, note text);
});
ok( PublisherListener::query_until(
		$node, 'postgres', "SELECT worker_pid IS NOT NULL FROM upsert_order.publisher_status"),
	'the publisher runs');

# Single messages on 1000 keys, some of them stale.
my $script = $node->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, q{
\set id random(1, 1000)
\set back random(0, 100000)
SELECT upsert_order.versioned_upsert('account', jsonb_build_object('id', :id, 'ver', upsert_order.rowseq_now()::bigint - :back, 'balance', :back, 'note', 'client ' || :client_id));
});

my $listener = PublisherListener->new($node, 'postgres', 'upsert_order');
my ($writers, $out) = UpsertOrderNode::start_writers($node, $script, 15);
while ($writers->pumpable)
{
	$listener->poll;
	eval { $writers->pump_nb; };
	usleep(10_000);
}
ok($writers->finish, 'eight writers ran for 15 seconds');
note $$out;

my $last = PublisherListener::check_published($node, $listener, 'under load');
is($listener->{connections}, 1, 'the listener stayed connected');
is($listener->{caught_up}, 0, 'the listener needed no catch-up');
is($listener->count_notified, $last, "the listener was notified of all $last events");
note "published $last events";

# Retention: events older than a second that are published go, with their
# publication rows, but the last publication row, whose event goes too; new
# events go on from the next seq.
$node->safe_psql('postgres', "ALTER SYSTEM SET upsert_order.event_retention = '1s'");
$node->reload;
# Wait for the end state: the pass must also reach the events of the last
# seconds of the run, once they are a second old.
ok( $node->poll_query_until(
		'postgres', q{
	SELECT (SELECT count(*) FROM upsert_order.publication) = 1
	   AND (SELECT count(*) FROM upsert_order.event_log) = 0}),
	'the worker deletes expired events');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) || ' ' || max(p.seq) FROM upsert_order.publication p WHERE p.event_id IS NULL}),
	"1 $last",
	'only the publication row of the last event published is kept, without its event');
$node->safe_psql('postgres',
	"SELECT upsert_order.versioned_upsert('account', jsonb_build_object('id', 1, 'ver', upsert_order.rowseq_now()))");
ok($listener->wait_for_seq($last + 1), 'the next event gets the next seq');
is($node->safe_psql('postgres', "SELECT max(seq) FROM upsert_order.publication"),
	$last + 1, 'seq goes on after retention');

# Gathering: while events keep coming, a batch starts publish_delay after
# the one before (unless that one was full), and takes what committed in
# between.  With a long delay, none of those events is lost, and a commit
# after the pauses still wakes the worker at once: the naptime, a minute
# here, would show a lost wake-up.
$node->safe_psql('postgres', q{
ALTER SYSTEM RESET upsert_order.event_retention;
ALTER SYSTEM SET upsert_order.publish_delay = '300ms';
ALTER SYSTEM SET upsert_order.publish_naptime = '60s';
SELECT pg_reload_conf()});
my $started = Time::HiRes::time();
($writers, $out) = UpsertOrderNode::start_writers($node, $script, 3);
while ($writers->pumpable)
{
	$listener->poll;
	eval { $writers->pump_nb; };
	usleep(10_000);
}
ok($writers->finish, 'eight writers ran for 3 seconds with a pause of 300 ms between batches');
ok( PublisherListener::query_until(
		$node, 'postgres', 'SELECT events_waiting = 0 FROM upsert_order.publisher_status', 20),
	'the events that committed during the pauses are published');
my $elapsed = Time::HiRes::time() - $started;
my ($events, $batches, $max) = split /\|/,
  $node->safe_psql('postgres', qq{
	SELECT count(*), count(DISTINCT xmin::text), max(seq)
	  FROM upsert_order.publication WHERE seq > $last + 1});
# A batch follows the one before at once when it was full, or when no commit
# came while it ran: as the writers start, their first commits can fall
# between a run of small batches (15 of them in one run, over 7 ms) before
# one lands inside a batch and the pauses begin.  Without the pause there
# are thousands of batches.
cmp_ok($batches, '<=', int($elapsed / 0.3) + int($events / 1000) + 40,
	sprintf('%d events in %d batches over %.1f s', $events, $batches, $elapsed));
ok($listener->wait_for_seq($max), 'the listener was notified of all of them');
$node->safe_psql('postgres',
	"SELECT upsert_order.versioned_upsert('account', jsonb_build_object('id', 1, 'ver', upsert_order.rowseq_now()))");
ok($listener->wait_for_seq($max + 1, 20), 'an event after the pauses is published without waiting for the naptime');

$listener->stop;
$node->stop;
done_testing();
