# purge_events() in a transaction that stays open, beside the worker's
# retention pass (upsert_order.event_retention): both delete the same
# expired events.  The worker must not wait for the row locks of the open
# transaction's deletions, which would stop all publishing until it ends;
# it leaves its pass for later, and takes it up once the purge is over.
# Nor may it wait long for a row that event_log's owner locked by hand, nor
# hold back publishing after it gave up on one.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use UpsertOrderNode;

my $node = UpsertOrderNode::start(
	'publisher_purge_open', q{
upsert_order.publish_naptime = 100ms
});

$node->safe_psql('postgres',
	'CREATE TABLE kv (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL)');

# Wait until the server's clock is $seconds past what it read now.
sub wait_seconds
{
	my ($seconds) = @_;
	my $now = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
	$node->poll_query_until('postgres',
		"SELECT clock_timestamp() > '$now'::timestamptz + interval '$seconds s'")
	  or die 'the clock does not move';
}

# Wait until every expired event is deleted, the last one published too,
# whose publication row alone stays, with a null event_id; $published
# events were published in all, gapless.
sub only_last_publication_left
{
	my ($published, $label) = @_;
	ok( $node->poll_query_until(
			'postgres', q{
SELECT (SELECT count(*) FROM upsert_order.event_log) = 0
   AND (SELECT count(*) = 1 AND bool_and(event_id IS NULL) FROM upsert_order.publication)}),
		"$label: the expired events are deleted, and the publication rows but the last");
	is($node->safe_psql('postgres', 'SELECT count(*), max(seq) FROM upsert_order.publication'),
		"1|$published", "$label: $published events were published, gapless");
}

# Ten events, published, then older than a second.
UpsertOrderNode::write_events($node, 1, 10);
ok(UpsertOrderNode::all_published($node), 'the first events are published');
wait_seconds(1.5);
my $first_last = $node->safe_psql('postgres', 'SELECT max(event_id) FROM upsert_order.event_log');

# A purge that stays open: it keeps the last event published.
my $purger = $node->background_psql('postgres');
$purger->query_safe('BEGIN');
is($purger->query_safe(q{SELECT upsert_order.purge_events('1 s')}),
	'10', 'purge_events() deletes the expired events, the last one published too');

# Now the worker's retention pass finds the same events expired.
$node->safe_psql('postgres', q{
ALTER SYSTEM SET upsert_order.event_retention = '1s';
SELECT pg_reload_conf();
});
usleep(2_000_000);
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE application_name = 'upsert_order publisher' AND wait_event_type = 'Lock'}),
	'0', 'the worker does not wait for the open purge');

UpsertOrderNode::write_events($node, 100, 10);
ok(UpsertOrderNode::all_published($node), 'events are published while the purge is open');

# Old enough for the retention, the new events stay while the purge is open.
wait_seconds(2.5);
is($node->safe_psql('postgres', "SELECT count(*) FROM upsert_order.event_log WHERE event_id > $first_last"),
	'10', 'the worker leaves its retention pass for later while the purge is open');

$purger->query_safe('COMMIT');
$purger->quit;
only_last_publication_left(20, 'once the purge has committed');

# The owner of event_log locks one of the next events itself, in a
# transaction that stays open while the event expires: the worker's
# retention waits for that lock a moment only, logs why it gave up, and goes
# on publishing.  The retention is longer here, so that the row is locked
# well before it expires.  With a naptime of an hour, the worker's rounds
# come with commits only: a retention pass that gave up must not hold back
# publishing for the naptime, as the pause after a failed publishing batch
# does.
$node->safe_psql('postgres', q{
ALTER SYSTEM SET upsert_order.event_retention = '5s';
ALTER SYSTEM SET upsert_order.publish_naptime = '1h';
SELECT pg_reload_conf();
});
UpsertOrderNode::write_events($node, 200, 5);
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
my $locked = $locker->query_safe(q{
SELECT event_id FROM upsert_order.event_log
 ORDER BY event_id DESC OFFSET 2 LIMIT 1 FOR UPDATE});
my $log_offset = -s $node->logfile;
ok(UpsertOrderNode::all_published($node), 'five more events are published');
my $written = 25;
my $key = 300;
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
until ($node->log_contains(qr/canceling statement due to lock timeout/, $log_offset))
{
	die 'the retention pass never gave up on the locked row' if time > $deadline;
	UpsertOrderNode::write_events($node, $key++, 1);
	$written++;
	usleep(200_000);
}
pass('the worker gives up waiting for the row locked by hand, and logs it');
UpsertOrderNode::write_events($node, 450, 5);
$written += 5;
ok(UpsertOrderNode::all_published($node), 'events are published at once while the row stays locked');
is($node->safe_psql('postgres', "SELECT count(*) FROM upsert_order.event_log WHERE event_id = $locked"),
	'1', 'the locked event is still there');
$locker->query_safe('COMMIT');
$locker->quit;
$node->safe_psql('postgres', q{
ALTER SYSTEM RESET upsert_order.publish_naptime;
SELECT pg_reload_conf();
});
only_last_publication_left($written, 'once the lock is gone');

# The moment the retention pass waits is its own: with retention off again,
# a publishing batch that waits for a lock (publication locked by hand, as
# DDL would) waits as long as it takes, however many retention passes gave
# up before.
#
# The same reload names another channel: once an event goes out on it, the
# worker has taken the retention's reset too (one reload applies both).
$node->safe_psql('postgres', q{
ALTER SYSTEM RESET upsert_order.event_retention;
ALTER SYSTEM SET upsert_order.channel = 'after_reset';
SELECT pg_reload_conf();
});
my $reloaded = 0;
for my $key (500 .. 599)
{
	UpsertOrderNode::write_events($node, $key, 1);
	UpsertOrderNode::all_published($node) or last;
	$reloaded = $node->safe_psql('postgres',
		'SELECT channel = $$after_reset$$ FROM upsert_order.publication ORDER BY seq DESC LIMIT 1')
	  eq 't';
	last if $reloaded;
	usleep(100_000);
}
ok($reloaded, 'the worker took the reload that turned retention off');
my $blocker = $node->background_psql('postgres');
$blocker->query_safe('BEGIN');
$blocker->query_safe('LOCK TABLE upsert_order.publication IN EXCLUSIVE MODE');
# A session whose transaction began before these events were logged.
my $observer = $node->background_psql('postgres');
$observer->query_safe('BEGIN');
$observer->query_safe('SELECT 1');
UpsertOrderNode::write_events($node, 400, 3);
usleep(3_000_000);
is( $observer->query_safe(
		q{SELECT events_waiting, oldest_waiting_age >= interval '2.5 s' FROM upsert_order.publisher_status}),
	'3|t', 'the age of the oldest waiting event counts from when it was logged to now, whenever the reader began');
$observer->query_safe('COMMIT');
$observer->quit;
# (the server log would not tell: the worker logs an error that repeats
# only once a minute, and the retention pass above logged this one)
is( $node->safe_psql(
		'postgres', q{
SELECT s.last_error, a.wait_event_type
  FROM upsert_order.publisher_status s
  JOIN pg_stat_activity a ON a.pid = s.worker_pid}),
	'|Lock', 'the worker waits for the table locked by hand, and has not given up on it');
$blocker->query_safe('COMMIT');
$blocker->quit;
ok(UpsertOrderNode::all_published($node), 'and publishes once the lock is gone');

$node->stop;
done_testing();
