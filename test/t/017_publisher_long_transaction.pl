# The publisher while a long transaction stays open.  One that has a
# transaction ID but writes no event must not hold back where the worker's
# scan of the outbox starts: otherwise every batch steps over the index
# entries of all the events published since it began, and publishing slows
# down as it lasts.  One that does write an event holds that start back
# until it ends, yet the scans must not step over everything published
# since either: they resume after what was published before.  Its event is
# published when it commits, after the events published meanwhile, exactly
# once, and so is that of a second writer that commits while it stays open,
# and all those of eight writers meanwhile.  A prepared transaction with an
# event is resumed above in the same way, also one the server recovered at
# its start.

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
	'publisher_long_transaction', q{
upsert_order.publish_naptime = 100ms
autovacuum = off
max_prepared_transactions = 2
});

$node->safe_psql('postgres',
	'CREATE TABLE kv (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL)');

sub publish_one_by_one { UpsertOrderNode::publish_one_by_one($node, @_) }

# Index entries the worker's scans of the outbox have read so far.  The
# worker reports its statistics at most once a second, after a round.
sub outbox_index_reads
{
	usleep(1_500_000);
	return $node->safe_psql('postgres', q{
SELECT idx_tup_read FROM pg_stat_all_indexes
 WHERE indexrelid = 'upsert_order.outbox_pkey'::regclass});
}

# Publish $warmup events one batch each, from key $first on, then 100 more,
# and check the scans of those 100 batches read fewer than 1,000 index
# entries: a few each, not the thousand and more from a held horizon on.
sub check_few_reads
{
	my ($first, $warmup, $beside) = @_;
	publish_one_by_one($first, $warmup);
	my $before = outbox_index_reads();
	publish_one_by_one($first + $warmup, 100);
	my $reads = outbox_index_reads() - $before;
	cmp_ok($reads, '<', 1000, "100 batches read $reads index entries $beside");
}

# The events published once each, gapless from seq 1, and nothing else.
sub check_exactly_once
{
	my ($label) = @_;
	ok(UpsertOrderNode::all_published($node), "$label: everything published");
	is( $node->safe_psql(
			'postgres', q{
SELECT (SELECT count(*) FROM upsert_order.event_log WHERE outcome IN ('inserted', 'updated'))
	 = (SELECT count(DISTINCT event_id) FROM upsert_order.publication),
	   (SELECT count(*) = max(seq) FROM upsert_order.publication)}),
		't|t', "$label: every applied event once, seq without a gap");
}

sub last_published { UpsertOrderNode::last_published($node) }

# 1. A transaction with an ID and no event stays open while 1,100 events
# are published one batch each.  Over the last 100 batches, the scans read
# a few entries each: they start after what was published before, not where
# the open transaction began (which would be 1,000 and more each).
my $idle = $node->background_psql('postgres');
$idle->query_safe('BEGIN');
$idle->query_safe('SELECT txid_current()');
check_few_reads(1, 1000, 'while a transaction without events is open');
$idle->query_safe('COMMIT');
$idle->quit;
check_exactly_once('beside a transaction without events');

# 2. A transaction that wrote an event stays open while 1,100 others are
# published, one batch each.  Its event is not published, and over the last
# 100 batches the scans read a few entries each, as in 1.
my $late = $node->background_psql('postgres');
$late->query_safe('BEGIN');
my $late_event = $late->query_safe(
	q{SELECT event_id FROM upsert_order.versioned_upsert('kv', '{"id": 5000, "ver": 1}')});
check_few_reads(2001, 1000, 'while a transaction with an event is open');
is($node->safe_psql('postgres', "SELECT count(*) FROM upsert_order.publication WHERE event_id = $late_event"),
	'0', 'the open transaction\'s event is not published');

# 3. A second writer begins, writes an event and stays open while more are
# published, then commits while the first is still open: its event, below
# where the scans had come to resume, is published all the same.  Then the
# scans resume after it again.
my $second = $node->background_psql('postgres');
$second->query_safe('BEGIN');
my $second_event = $second->query_safe(
	q{SELECT event_id FROM upsert_order.versioned_upsert('kv', '{"id": 5001, "ver": 1}')});
publish_one_by_one(4001, 100);
$second->query_safe('COMMIT');
$second->quit;
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 1 FROM upsert_order.publication WHERE event_id = $second_event"),
	'the second writer\'s event is published while the first is still open');
check_few_reads(4101, 100, 'after that');

# 4. Eight writers for 10 seconds, while the first stays open: under load,
# where the scans resume moves on and back as the writers come and go, and
# every committed event is published, exactly once.
my $script = $node->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, q{
\set id random(10001, 11000)
SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', :id, 'ver', upsert_order.rowseq_now()));
});
my ($writers) = UpsertOrderNode::start_writers($node, $script, 10);
ok($writers->finish, 'eight writers ran for 10 seconds');
check_exactly_once('under load beside an open transaction');

# Then the first commits: its event goes out, after all the others.
$late->query_safe('COMMIT');
$late->quit;
check_exactly_once('after a late commit');
is(last_published(), $late_event, 'the late event is published last');

# A transaction that writes the event of key $id is prepared as $gid (and
# the server restarted, if $restart says so), and waits while 1,100 others
# are published: the scans resume as beside an open one.  Its event goes
# out once COMMIT PREPARED runs, last.
sub check_prepared
{
	my ($gid, $id, $first, $restart, $label) = @_;
	my $session = $node->background_psql('postgres');
	$session->query_safe('BEGIN');
	my $event = $session->query_safe(
		qq{SELECT event_id FROM upsert_order.versioned_upsert('kv', '{"id": $id, "ver": 1}')});
	$session->query_safe("PREPARE TRANSACTION '$gid'");
	$session->quit;
	$node->restart if $restart;
	check_few_reads($first, 1000, "while $label waits");
	$node->safe_psql('postgres', "COMMIT PREPARED '$gid'");
	check_exactly_once("after COMMIT PREPARED of $label");
	is(last_published(), $event, "the event of $label is published last");
}

# 5. A prepared transaction with an event.
check_prepared('waiting', 5002, 12001, 0, 'a prepared transaction with an event');

# 6. The same, prepared before the server restarted: the server recovered
# it at its start.
check_prepared('recovered', 5003, 14001, 1, 'a prepared transaction recovered at start');

$node->stop;
done_testing();
