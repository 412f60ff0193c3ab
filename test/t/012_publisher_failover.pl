# Publishing progress is WAL-logged and carries over to a promoted standby.
# The worker does not run on a standby; with a synchronous standby, the
# primary is stopped with -m immediate in the middle of a load, the standby
# is promoted, and its worker publishes what was left with the next seqs.
# The listener follows to the new primary: what it was told before the
# failover is exactly what the new primary has recorded, no seq is reused,
# and the invariants hold on the new primary.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PublisherListener;
use UpsertOrderNode;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $settings = q{
shared_preload_libraries = 'upsert_order'
max_connections = 40
upsert_order.publish_naptime = 100ms
};

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $settings);
$primary->start;
$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION upsert_order;
CREATE TABLE kv (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, val int);
});

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->append_conf('postgresql.conf', "synchronous_standby_names = 'standby'");
$primary->reload;
ok( $primary->poll_query_until(
		'postgres', "SELECT sync_state = 'sync' FROM pg_stat_replication"),
	'the standby is synchronous');

ok( PublisherListener::query_until(
		$primary, 'postgres', "SELECT worker_pid IS NOT NULL FROM upsert_order.publisher_status"),
	'the publisher runs on the primary');
is($standby->safe_psql('postgres', "SELECT worker_pid IS NULL FROM upsert_order.publisher_status"),
	't', 'no publisher on the standby');

# The worker's commits wait for the synchronous standby even where
# synchronous_commit is off (the writers' commits then do not): with a
# standby name that nobody answers to, nothing is notified, even when the
# worker's wait is sent query cancels (which would end it for any other
# session); once the real standby is the synchronous one again, its
# confirmation releases the batch.
{
	my $early = PublisherListener->new($primary, 'postgres', 'upsert_order');
	$primary->safe_psql('postgres', "ALTER SYSTEM SET synchronous_commit = off");
	$primary->safe_psql('postgres', "ALTER SYSTEM SET synchronous_standby_names = 'ghost'");
	$primary->reload;
	ok( $primary->poll_query_until(
			'postgres', "SELECT sync_state = 'async' FROM pg_stat_replication"),
		'no standby is synchronous');
	# the worker rereads its settings before its next batch
	usleep(500_000);
	$primary->safe_psql('postgres',
		"SELECT upsert_order.versioned_upsert('kv', '{\"id\": 1000, \"ver\": 1}')");
	ok(!$early->wait_for_seq(1, 2), 'not notified while no synchronous standby has confirmed');
	my $pid = $primary->safe_psql('postgres', 'SELECT worker_pid FROM upsert_order.publisher_status');
	ok( $primary->poll_query_until(
			'postgres', "SELECT wait_event = 'SyncRep' FROM pg_stat_activity WHERE pid = $pid"),
		'the worker waits for the synchronous standby');
	$primary->safe_psql('postgres', "SELECT pg_cancel_backend($pid)") for 1 .. 3;
	ok(!$early->wait_for_seq(1, 2), 'a query cancel does not end that wait');
	is($primary->safe_psql('postgres', "SELECT wait_event FROM pg_stat_activity WHERE pid = $pid"),
		'SyncRep', 'the worker still waits');
	is($primary->safe_psql('postgres', "SELECT count(*) FROM upsert_order.publication"),
		'0', 'and not visible as published');
	$primary->safe_psql('postgres', "ALTER SYSTEM RESET synchronous_standby_names");
	$primary->safe_psql('postgres', "ALTER SYSTEM RESET synchronous_commit");
	$primary->reload;
	ok($early->wait_for_seq(1), 'notified once the synchronous standby confirmed');
	is($primary->safe_psql('postgres', 'SELECT worker_pid FROM upsert_order.publisher_status'),
		$pid, 'by the same worker');
	$early->stop;
	ok( $primary->poll_query_until(
			'postgres', "SELECT sync_state = 'sync' FROM pg_stat_replication"),
		'the standby is synchronous again');
}

my $script = $primary->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, q{
\set id random(1, 100)
\set back random(0, 100000)
SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', :id, 'ver', upsert_order.rowseq_now()::bigint - :back, 'val', :back));
});

my $listener = PublisherListener->new($primary, 'postgres', 'upsert_order');
my ($writers) = UpsertOrderNode::start_writers($primary, $script, 6);
my $start = time;
while (time - $start < 3)
{
	$listener->poll;
	usleep(10_000);
}
$primary->stop('immediate');
eval { $writers->finish; };
$listener->poll_for(0.5);
my $told = $listener->contiguous;
ok($told > 0, "the listener was told of $told events before the failover");

$standby->promote;
ok( PublisherListener::query_until(
		$standby, 'postgres', "SELECT worker_pid IS NOT NULL FROM upsert_order.publisher_status"),
	'the publisher starts on the promoted standby');
$listener->move_to($standby);
$standby->safe_psql('postgres',
	"SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', 1000, 'ver', upsert_order.rowseq_now()))");

my $last = PublisherListener::check_published($standby, $listener, 'after failover');
ok($last > $told, 'the new primary goes on with the next seqs');
is($standby->safe_psql('postgres',
		"SELECT (payload->>'key')::jsonb->>'id' FROM upsert_order.publication WHERE seq = $last"),
	'1000', 'an event written after the failover gets the last seq');

$listener->stop;
$standby->stop;
done_testing();
