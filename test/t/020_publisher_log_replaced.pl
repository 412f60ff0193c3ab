# event_log replaced by hand in the middle of a publishing batch: the worker
# looks the table's OID up as a batch begins and reads the events later, by
# then from another table of that name.  The batch must fail with its own
# error and publish nothing; once the table is back, the waiting event must
# be published once, with the next seq.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use UpsertOrderNode;

my $node = UpsertOrderNode::start(
	'publisher_log_replaced', q{
upsert_order.publish_naptime = 100ms
});

$node->safe_psql('postgres',
	'CREATE TABLE kv (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL)');
UpsertOrderNode::write_events($node, 1, 3);
ok(UpsertOrderNode::all_published($node), 'the first events are published');
my $worker = $node->safe_psql('postgres', 'SELECT worker_pid FROM upsert_order.publisher_status');

# A session that holds the outbox, which a batch reads after it looked the
# tables up, and a pid waiting for that lock.  publisher_status reads the
# outbox too: only pg_locks and the server log are read meanwhile.
sub hold_outbox
{
	my $session = $node->background_psql('postgres');
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	$session->query_safe('BEGIN');
	$session->query_safe('LOCK upsert_order.outbox IN ACCESS EXCLUSIVE MODE');
	return ($session, $pid);
}

sub waits_for_outbox
{
	my ($pid) = @_;
	return $node->poll_query_until('postgres', qq{
SELECT EXISTS (SELECT 1 FROM pg_locks
                WHERE pid = $pid AND NOT granted
                  AND relation = 'upsert_order.outbox'::regclass)});
}

# The swapper writes an event, and holds the outbox until the worker's next
# batch waits for it; then it puts another event_log in the table's place.
my ($swapper) = hold_outbox();
$swapper->query_safe(q{SELECT upsert_order.versioned_upsert('kv', '{"id": 10, "ver": 1}')});
ok(waits_for_outbox($worker), 'a batch waits for the outbox');
$swapper->query_safe(q{
ALTER TABLE upsert_order.event_log RENAME TO event_log_kept;
CREATE TABLE upsert_order.event_log (LIKE upsert_order.event_log_kept INCLUDING ALL);
ALTER EXTENSION upsert_order ADD TABLE upsert_order.event_log});

# A second session queues for the outbox behind the batch: it gets the lock
# as the batch ends, and holds the worker's retries until the table is back.
my $holder = $node->background_psql('postgres');
my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
$holder->query_safe('BEGIN');
$holder->query_until(qr/queued/, "\\echo queued\nLOCK upsert_order.outbox IN ACCESS EXCLUSIVE MODE;\n");
ok(waits_for_outbox($holder_pid), 'a second session queues for the outbox');

my $log_offset = -s $node->logfile;
$swapper->query_safe('COMMIT');
$swapper->quit;
$node->wait_for_log(
	qr/ERROR:  relation "upsert_order\.event_log" was replaced during a publishing batch/,
	$log_offset);
pass('the batch fails, and says why');
ok(waits_for_outbox($worker), 'the worker tries again, and waits for the second session');
is($node->safe_psql('postgres', 'SELECT count(*), max(seq) FROM upsert_order.publication'),
	'3|3', 'nothing was published');

# The table back, as CREATE EXTENSION made it.
$holder->query_safe(q{
ALTER EXTENSION upsert_order DROP TABLE upsert_order.event_log;
DROP TABLE upsert_order.event_log;
ALTER TABLE upsert_order.event_log_kept RENAME TO event_log;
COMMIT});
$holder->quit;

ok(UpsertOrderNode::all_published($node), 'the waiting event is published');
is( $node->safe_psql('postgres', q{
SELECT p.seq, p.payload::jsonb -> 'key'
  FROM upsert_order.publication p JOIN upsert_order.event_log e USING (event_id)
 WHERE e.key = '{"id": 10}'}),
	'4|{"id": 10}', 'once, with the next seq');
is($node->safe_psql('postgres', 'SELECT count(*), max(seq) FROM upsert_order.publication'),
	'4|4', 'and nothing else');

$node->stop;
done_testing();
