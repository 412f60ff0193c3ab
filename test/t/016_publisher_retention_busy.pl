# upsert_order.event_retention while the worker is busy: every publishing
# batch comes back full (batches of one event, a backlog of thousands), and
# the retention pass must still run between them instead of waiting for the
# backlog to be drained.  Nor must it wait while publishing keeps failing.

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
	'publisher_retention_busy', q{
upsert_order.publish_naptime = 100ms
upsert_order.publish_batch_size = 1
});

$node->safe_psql('postgres',
	'CREATE TABLE kv (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, val int)');

UpsertOrderNode::write_events($node, 1, 10);
ok(UpsertOrderNode::all_published($node), 'the first events are published');
my $old_last = $node->safe_psql('postgres', 'SELECT max(event_id) FROM upsert_order.event_log');

# Let them age past the retention to come, queue a backlog that takes the
# worker thousands of full batches, and only then set the retention.
my $written_at = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
$node->poll_query_until('postgres',
	"SELECT clock_timestamp() > '$written_at'::timestamptz + interval '1.5 s'")
  or die 'the clock does not move';
UpsertOrderNode::write_events($node, 1000, 60000);
$node->safe_psql('postgres', q{
ALTER SYSTEM SET upsert_order.event_retention = '1s';
SELECT pg_reload_conf();
});

# The deletion and the backlog still waiting are read by one query: a
# second round trip would give the worker that much more time to finish.
ok( $node->poll_query_until('postgres', qq{
SELECT events_waiting > 0 FROM upsert_order.publisher_status
 WHERE NOT EXISTS (SELECT FROM upsert_order.event_log WHERE event_id <= $old_last)}),
	'the events older than the retention are deleted while the backlog is still being published');

ok(UpsertOrderNode::all_published($node), 'the backlog is published');
is( $node->safe_psql('postgres', q{
SELECT max(seq) - min(seq) + 1 = count(*)
   AND count(*) FILTER (WHERE event_id IS NULL AND seq < (SELECT max(seq) FROM upsert_order.publication)) = 0
   AND count(*) FILTER (WHERE event_id IS NOT NULL
                          AND NOT EXISTS (SELECT FROM upsert_order.event_log e WHERE e.event_id = p.event_id)) = 0
  FROM upsert_order.publication p}),
	't', 'what is left of the publication rows is gapless and went with no event (the last may have lost its own)');

# Publishing that keeps failing (a channel name NOTIFY refuses, written into
# target_settings by hand) holds back the events behind the failure, not
# the retention of those published before it.  A retention batch that
# fails meanwhile, on a row that event_log's owner locked by hand, logs its
# own error without taking the place of the publishing error, in
# publisher_status or in the log (each is logged once a minute).
UpsertOrderNode::write_events($node, 30000, 10);
ok(UpsertOrderNode::all_published($node), 'more events are published');
my $published_last = $node->safe_psql('postgres', 'SELECT max(event_id) FROM upsert_order.event_log');
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
$locker->query_safe("SELECT FROM upsert_order.event_log WHERE event_id = $published_last FOR UPDATE");
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
INSERT INTO upsert_order.target_settings (target, channel) VALUES ('kv', repeat('x', 80));
});
UpsertOrderNode::write_events($node, 30010, 1);
ok( $node->poll_query_until('postgres',
		"SELECT last_error = 'channel name too long' FROM upsert_order.publisher_status"),
	'publishing fails');
# the retention batch gives up on the locked row
$node->wait_for_log(qr/canceling statement due to lock timeout/, $log_offset);
usleep(1_000_000);    # several more publishing batches fail meanwhile
is($node->safe_psql('postgres', 'SELECT last_error FROM upsert_order.publisher_status'),
	'channel name too long', 'publisher_status keeps showing the publishing error');
my @logged = (PostgreSQL::Test::Utils::slurp_file($node->logfile, $log_offset)
	  =~ /ERROR:  channel name too long/g);
is(scalar @logged, 1, 'the publishing error is logged once');
$locker->query_safe('COMMIT');
$locker->quit;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM upsert_order.event_log WHERE event_id <= $published_last"),
	'the published events expire while it fails');
is( $node->safe_psql('postgres', q{
SELECT last_error = 'channel name too long' AND events_waiting = 1 FROM upsert_order.publisher_status}),
	't', 'the event behind the failure waits, and is kept');
$node->safe_psql('postgres',
	q{DELETE FROM upsert_order.target_settings WHERE target = 'kv'::regclass});
ok(UpsertOrderNode::all_published($node), 'it is published once the channel is fixed');

$node->stop;
done_testing();
