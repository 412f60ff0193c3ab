# The publisher through faults, under load: the worker killed with SIGKILL
# (which makes the postmaster restart every process), the server stopped with
# pg_ctl stop -m immediate and started again, the worker terminated with
# SIGTERM, query cancels sent to the idle worker (which must not stop it),
# and a notification that fails inside the worker.  After each:
# seq is gapless from 1, every committed applied event is published exactly
# once, per key in version order, and a listener that reconnects and catches
# up with events_since() holds exactly what was published.

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
use Time::HiRes qw(time usleep);

my $node = UpsertOrderNode::start(
	'publisher_faults', q{
restart_after_crash = on
upsert_order.publish_naptime = 100ms
upsert_order.publish_batch_size = 50
});

$node->safe_psql(
	'postgres', q{
CREATE TABLE kv (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, val int);
CREATE TABLE other (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, val int);
SELECT upsert_order.configure('other', 'other_events');
});

# Writers: transactions of one to three messages on 40 hot keys, with
# versions from the server clock minus up to 3 ms, so that many are stale;
# one transaction in ten rolls back, and one in twenty holds its events for
# 200 ms before it ends, while later events are published: a late committer
# with small event_ids, which the worker must not pass over.
my $script = $node->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, q{
\set id random(1, 40)
\set back random(0, 200000)
\set n random(1, 3)
\set rollback random(1, 10)
\set slow random(1, 20)
BEGIN;
SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', :id, 'ver', upsert_order.rowseq_now()::bigint - :back, 'val', :back));
\if :n > 1
SELECT upsert_order.versioned_upsert('other', jsonb_build_object('id', :id, 'ver', upsert_order.rowseq_now()::bigint - :back, 'val', :back));
\endif
\if :n > 2
SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', :id % 7 + 1, 'ver', upsert_order.rowseq_now()::bigint, 'val', 0));
\endif
\if :slow = 1
\sleep 200 ms
\endif
\if :rollback = 1
ROLLBACK;
\else
COMMIT;
\endif
});

# Start pgbench in the background for $seconds; returns its handle.
sub start_writers
{
	my ($seconds) = @_;
	my ($handle) = UpsertOrderNode::start_writers($node, $script, $seconds, '--max-tries', '20');
	return $handle;
}

# Keep the listener polling while pgbench runs, doing $action at the given
# times (seconds from now).
sub run_load
{
	my ($listener, $writers, %actions) = @_;
	my $start = time;
	my @pending = sort { $a <=> $b } keys %actions;
	while ($writers->pumpable || @pending)
	{
		if (@pending && time - $start >= $pending[0])
		{
			$actions{ shift @pending }->();
		}
		$listener->poll;
		eval { $writers->pump_nb; };
		usleep(10_000);
	}
	eval { $writers->finish; };
	return;
}

# The worker's pid, once the server and the worker are up.
sub worker_pid
{
	PublisherListener::query_until($node, 'postgres',
		"SELECT worker_pid IS NOT NULL FROM upsert_order.publisher_status")
	  or die "the publisher did not start";
	return $node->safe_psql('postgres', "SELECT worker_pid FROM upsert_order.publisher_status");
}

# Whether a worker other than $pid runs, waiting for it until the timeout.
sub worker_replaced
{
	my ($pid) = @_;
	return PublisherListener::query_until($node, 'postgres',
		"SELECT worker_pid IS NOT NULL AND worker_pid <> $pid FROM upsert_order.publisher_status");
}

my $listener = PublisherListener->new($node, 'postgres', 'upsert_order', 'other_events');

# Hold the worker inside a batch that holds the event of a message (key $id
# of $table): a session locks publication, which the batch reads after
# taking its snapshot.  Returns that session; its COMMIT lets the batch go.
sub hold_in_batch
{
	my ($table, $id) = @_;
	my $pid = worker_pid();    # publisher_status reads publication: before the lock
	my $holder = $node->background_psql('postgres');
	$holder->query_safe('BEGIN');
	$holder->query_safe('LOCK upsert_order.publication IN ACCESS EXCLUSIVE MODE');
	$node->safe_psql('postgres',
		"SELECT upsert_order.versioned_upsert('$table', '{\"id\": $id, \"ver\": 1}')");
	ok( $node->poll_query_until('postgres',
			"SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $pid AND NOT granted)"),
		'the worker waits inside its batch');
	return $holder;
}

# 1. SIGKILL the worker, twice, while the writers run.  Every backend is
# killed with it; pgbench's clients abort, so a second run carries on.
my $kills = 0;
for my $round (1 .. 2)
{
	worker_pid();    # the server is up again
	my $writers = start_writers(6);
	run_load(
		$listener, $writers,
		2 => sub {
			kill 'KILL', worker_pid() and $kills++;
		});
}
is($kills, 2, 'worker killed twice under load');
worker_pid();
my $last = PublisherListener::check_published($node, $listener, 'after SIGKILL');
ok($listener->{connections} > 1, 'the listener reconnected after the crash');

# 2. pg_ctl stop -m immediate in the middle of the load, start again, and
# load again while the worker publishes the backlog.
{
	worker_pid();
	my $writers = start_writers(6);
	run_load(
		$listener, $writers,
		2 => sub {
			$node->stop('immediate');
			$node->start;
		});
	$writers = start_writers(3);
	run_load($listener, $writers);
}
my $before = $last;
$last = PublisherListener::check_published($node, $listener, 'after immediate stop');
ok($last > $before, 'more was published after the restart');

# 3. SIGTERM stops the worker promptly; it is restarted and goes on.
{
	my $pid = worker_pid();
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	$node->safe_psql('postgres',
		"SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', 1000, 'ver', upsert_order.rowseq_now()))");
	ok(worker_replaced($pid), 'the worker is restarted after SIGTERM');
	$before = $last;
	$last = PublisherListener::check_published($node, $listener, 'after SIGTERM');
	is($last, $before + 1, 'the event written while the worker was away is published');
}

# 3a. A query cancel between batches is nothing to cancel: the worker stays.
{
	my $pid = worker_pid();
	for (1 .. 3)
	{
		is($node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)"), 't', 'cancel sent to the idle worker');
		usleep(200_000);
	}
	$node->safe_psql('postgres',
		"SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', 2000, 'ver', upsert_order.rowseq_now()))");
	$before = $last;
	$last = PublisherListener::check_published($node, $listener, 'after query cancels');
	is($last, $before + 1, 'the event written after the cancels is published');
	is($node->safe_psql('postgres', "SELECT worker_pid FROM upsert_order.publisher_status"),
		$pid, 'the same worker published it');
}

# 3b. A late committer: a transaction takes an event_id, then stays open
# while later events are published batch after batch; the worker must
# still find its event when it commits, after them.
{
	my $late = $node->background_psql('postgres');
	$late->query_safe('BEGIN');
	my $late_event = $late->query_safe(
		"SELECT event_id FROM upsert_order.versioned_upsert('kv', jsonb_build_object('id', 3000, 'ver', upsert_order.rowseq_now()))"
	);
	for my $i (1 .. 5)
	{
		$node->safe_psql('postgres',
			"SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', 3000 + $i, 'ver', upsert_order.rowseq_now()))");
		$last++;
		ok($listener->wait_for_seq($last), "a later event is published while the first is open ($i)");
	}
	$late->query_safe('COMMIT');
	$late->quit;
	$before = $last;
	$last = PublisherListener::check_published($node, $listener, 'after a late commit');
	is($last, $before + 1, 'the late event is published');
	is($node->safe_psql('postgres', "SELECT event_id FROM upsert_order.publication WHERE seq = $last"),
		$late_event, 'after the events that committed before it');
}

# 4. A notification that fails inside the worker: the superuser writes a
# channel name NOTIFY refuses straight into target_settings.  Publishing
# stops with the error shown in publisher_status, nothing is published or
# lost meanwhile, and once the name is fixed everything goes out in order.
{
	my $log_offset = -s $node->logfile;
	my $failing_since = time;
	$node->safe_psql('postgres',
		"UPDATE upsert_order.target_settings SET channel = repeat('x', 80) WHERE target = 'other'::regclass");
	my $writers = start_writers(4);
	run_load($listener, $writers);
	ok( $node->poll_query_until(
			'postgres', "SELECT last_error = 'channel name too long' FROM upsert_order.publisher_status"),
		'the failure is reported');
	my $stuck = $node->safe_psql('postgres', "SELECT max(seq) FROM upsert_order.publication");
	my $waiting = $node->safe_psql('postgres', "SELECT events_waiting FROM upsert_order.publisher_status");
	ok($waiting > 0, "events wait behind the failure ($waiting)");
	$listener->poll_for(1);
	is($node->safe_psql('postgres', "SELECT max(seq) FROM upsert_order.publication"),
		$stuck, 'nothing is published while the notification fails');
	my $log = substr(PostgreSQL::Test::Utils::slurp_file($node->logfile), $log_offset);
	like($log, qr/ERROR:  channel name too long/, 'the failure is logged');
	# The worker retried all along (every commit wakes it), but logs the
	# same error again only once a minute.
	my $logged = () = $log =~ /ERROR:  channel name too long/g;
	my $failing_for = time - $failing_since;
	ok($logged >= 1 && $logged <= 1 + int($failing_for / 60),
		sprintf('the repeating failure is logged once a minute at most (%d times in %.0f s)',
			$logged, $failing_for));

	$node->safe_psql('postgres', "SELECT upsert_order.configure('other', 'other_events')");
	$before = $last;
	$last = PublisherListener::check_published($node, $listener, 'after a failing notification');
	ok($last >= $before + $waiting, 'the waiting events were published once fixed');
}

# 5. A reload changes the default channel.
{
	$node->safe_psql('postgres', "ALTER SYSTEM SET upsert_order.channel = 'renamed'");
	$node->reload;
	$listener->stop;
	$listener = PublisherListener->new($node, 'postgres', 'upsert_order', 'other_events', 'renamed');
	ok($listener->wait_for_seq($last), 'a new listener catches up from seq 1');
	# the worker rereads its settings before its next batch; wait for that
	$node->poll_query_until('postgres', q{
		SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', 2000, 'ver', upsert_order.rowseq_now())) IS NOT NULL
		   AND pg_sleep(0.2) IS NOT NULL
		   AND (SELECT channel FROM upsert_order.publication ORDER BY seq DESC LIMIT 1) = 'renamed'});
	$last = PublisherListener::check_published($node, $listener, 'after a reload');
	is($node->safe_psql('postgres', "SELECT channel FROM upsert_order.publication WHERE seq = $last"),
		'renamed', 'a reload changes the channel');
	ok($listener->count_notified > 0, 'the new listener was notified');
}

# 6. Settings of the database the worker connects to (which apply to it as
# to any session) do not stop it: here, read-only transactions by default,
# a role (and session user) with no right to the extension's tables, which
# the owner of a database may set, and exit_on_error, which would make every
# failed batch the end of the worker.  The test's own sessions set theirs
# when they connect.
{
	my $superuser = $node->safe_psql('postgres', 'SELECT current_user');
	local $ENV{PGOPTIONS} =
	  "-c session_authorization=$superuser -c role=none -c default_transaction_read_only=off"
	  . " -c exit_on_error=off";
	$node->safe_psql('postgres', q{
CREATE ROLE nobody_special NOLOGIN;
ALTER DATABASE postgres SET default_transaction_read_only = on;
ALTER DATABASE postgres SET exit_on_error = on;
ALTER DATABASE postgres SET session_authorization = 'nobody_special';
ALTER DATABASE postgres SET role = 'nobody_special'});
	my $pid = worker_pid();
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	ok(worker_replaced($pid), 'the worker is restarted under the database settings');
	$node->safe_psql('postgres', q{
SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', i, 'ver', upsert_order.rowseq_now()))
  FROM generate_series(3000, 3199) i});
	$before = $last;
	$last = PublisherListener::check_published($node, $listener, 'under the database settings');
	is($last, $before + 200, 'the worker publishes whatever the database sets');

	# a failed batch (a bad channel written by hand) is retried by the same
	# worker
	$pid = worker_pid();
	$node->safe_psql('postgres', q{
INSERT INTO upsert_order.target_settings (target, channel) VALUES ('kv', '');
SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', 3200, 'ver', upsert_order.rowseq_now()))});
	ok( $node->poll_query_until(
			'postgres', 'SELECT last_error IS NOT NULL FROM upsert_order.publisher_status'),
		'a batch fails');
	$node->safe_psql('postgres', q{DELETE FROM upsert_order.target_settings WHERE target = 'kv'::regclass});
	$before = $last;
	$last = PublisherListener::check_published($node, $listener, 'after the failed batch');
	is($last, $before + 1, 'the failed batch is published once fixed');
	is(worker_pid(), $pid, 'by the same worker, although exit_on_error is on');
	$node->safe_psql('postgres', q{
ALTER DATABASE postgres RESET exit_on_error;
ALTER DATABASE postgres RESET default_transaction_read_only;
ALTER DATABASE postgres RESET session_authorization;
ALTER DATABASE postgres RESET role;
DROP ROLE nobody_special});
}

# 6a. The role the worker connects as (the bootstrap superuser) loses
# SUPERUSER, which another superuser may take from it: the worker would run
# as a role that may not write the extension's tables, so it stops at once,
# says why in the server log, and stops again at every restart until the
# attribute is back.  The events written meanwhile are then published once
# each.  From PostgreSQL 16 on, the bootstrap superuser cannot lose
# SUPERUSER, so neither can the worker.
if ($node->pg_version >= 16)
{
	note('case 6a skipped: from PostgreSQL 16 on, the bootstrap superuser keeps SUPERUSER');
}
else
{
	my $superuser = $node->safe_psql('postgres', 'SELECT current_user');
	$node->safe_psql('postgres', 'CREATE ROLE second_superuser SUPERUSER LOGIN');
	my @as_second = (extra_params => [ '-U', 'second_superuser' ]);
	my $log_offset = -s $node->logfile;
	my $pid = worker_pid();
	$node->safe_psql('postgres', qq{
ALTER ROLE "$superuser" NOSUPERUSER;
SELECT pg_terminate_backend($pid)}, @as_second);
	ok($node->wait_for_log(
			qr/FATAL:  upsert_order publisher must run as a superuser\n.*DETAIL:  Role "\Q$superuser\E", which the worker connects as, is not a superuser\./,
			$log_offset),
		'the worker refuses to run as a role that is not a superuser');
	$node->safe_psql('postgres', q{
SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', i, 'ver', upsert_order.rowseq_now()))
  FROM generate_series(3300, 3309) i}, @as_second);
	is($node->safe_psql('postgres', 'SELECT events_waiting FROM upsert_order.publisher_status'),
		'10', 'they wait meanwhile');
	$node->safe_psql('postgres', qq{ALTER ROLE "$superuser" SUPERUSER}, @as_second);
	$node->safe_psql('postgres', 'DROP ROLE second_superuser');
	$before = $last;
	$last = PublisherListener::check_published($node, $listener, 'after SUPERUSER is back');
	is($last, $before + 10, 'the events written meanwhile are published once the role is a superuser again');
}

# 7. Tables dropped while the worker is in the middle of a batch that holds
# the event of one: their events go out on the default channel with
# "table": null and without their rows, as for any event whose table is
# gone, although the batch's snapshot still shows the first table's own
# channel (and that its rows are not to be published).  The second table
# had the default settings.
{
	$node->safe_psql('postgres', q{
CREATE TABLE short_lived (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL);
CREATE TABLE short_lived_plain (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, note text);
SELECT upsert_order.configure('short_lived', 'short_lived_events');
SELECT upsert_order.publish_data('short_lived', false)});
	my $holder = hold_in_batch('short_lived', 1);
	$node->safe_psql('postgres',
		q{SELECT upsert_order.versioned_upsert('short_lived_plain', '{"id": 2, "ver": 1, "note": "x"}')});
	$node->safe_psql('postgres', 'DROP TABLE short_lived, short_lived_plain');
	$holder->query_safe('COMMIT');
	$holder->quit;
	ok(UpsertOrderNode::all_published($node), 'the events of the dropped tables are published');
	is( $node->safe_psql(
			'postgres', q{
SELECT p.channel = current_setting('upsert_order.channel'), p.payload::jsonb->'table' = 'null',
       p.payload::jsonb ? 'data', p.payload::jsonb->'data_omitted' = 'true', p.payload::jsonb->'key'
  FROM upsert_order.publication p
 WHERE p.seq > (SELECT max(seq) - 2 FROM upsert_order.publication)
 ORDER BY p.seq}),
		qq{t|t|f|t|{"id": 1}\nt|t|f|t|{"id": 2}},
		'on the default channel, with "table": null, their keys and no data');
}

# 7a. A channel configured while the worker waits inside a batch, which
# took its first snapshot before: an event that commits after the channel
# was set, and that the batch then publishes, goes out on that channel.  A
# writer's uncommitted event keeps a session's LOCK of the outbox waiting,
# and the batch's read of the outbox waits behind that LOCK.
{
	$node->safe_psql('postgres',
		'CREATE TABLE rerouted (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL)');
	my $pid = worker_pid();
	my $writer = $node->background_psql('postgres');
	$writer->query_safe('BEGIN');
	my $event_id = $writer->query_safe(
		q{SELECT event_id FROM upsert_order.versioned_upsert('rerouted', '{"id": 1, "ver": 1}')});
	my $locker = $node->background_psql('postgres');
	$locker->query_safe('BEGIN');
	$locker->query_until(qr/locking/,
		"\\echo locking\nLOCK upsert_order.outbox IN ACCESS EXCLUSIVE MODE;\n");
	ok( $node->poll_query_until(
			'postgres', qq{
SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $pid AND NOT granted)
   AND (SELECT query FROM pg_stat_activity WHERE pid = $pid) = 'publishing upsert_order events'}),
		'the worker waits inside its batch');
	$node->safe_psql('postgres', "SELECT upsert_order.configure('rerouted', 'rerouted_events')");
	$writer->query_safe('COMMIT');
	$writer->quit;
	$locker->query_safe('COMMIT');    # once its LOCK is granted
	$locker->quit;
	ok(UpsertOrderNode::all_published($node), 'the event is published');
	is($node->safe_psql('postgres', "SELECT channel FROM upsert_order.publication WHERE event_id = $event_id"),
		'rerouted_events', 'on the channel set before it committed');
}

# 7b. A setting changed while a batch that has read the settings goes on:
# the change waits for the batch to commit, so that no notification made
# with the setting before is sent after the change has committed.  The
# batch is held at its deletion of the event from the outbox, whose row a
# session has locked.
{
	$node->safe_psql('postgres',
		'CREATE TABLE withheld (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, pin text)');
	my $pid = worker_pid();
	my $holder = hold_in_batch('withheld', 1);
	my $locker = $node->background_psql('postgres');
	$locker->query_safe('BEGIN');
	$locker->query_safe('SELECT event_id FROM upsert_order.outbox FOR UPDATE');
	$holder->query_safe('COMMIT');
	$holder->quit;
	ok( $node->poll_query_until(
			'postgres', qq{
SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $pid AND NOT granted AND locktype = 'transactionid')}),
		'the worker waits inside its batch, the settings read');
	my $changer = $node->background_psql('postgres');
	my $changer_pid = $changer->query_safe('SELECT pg_backend_pid()');
	$changer->query_until(qr/changing/,
		"\\echo changing\nSELECT upsert_order.publish_data('withheld', false);\n");
	ok( $node->poll_query_until(
			'postgres', qq{
SELECT EXISTS (SELECT 1 FROM pg_locks
                WHERE pid = $changer_pid AND NOT granted AND locktype = 'object'
                  AND classid = 'pg_extension'::regclass AND objsubid = 2)}),
		'publish_data() waits for the batch as it commits');
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM upsert_order.target_settings WHERE target = 'withheld'::regclass"),
		'0', 'and has not committed yet');
	$locker->query_safe('COMMIT');
	$locker->quit;
	$changer->quit;
	ok(UpsertOrderNode::all_published($node), 'the event is published');
	is( $node->safe_psql('postgres', q{
SELECT p.payload::jsonb ? 'data', s.publish_data
  FROM upsert_order.publication p, upsert_order.target_settings s
 WHERE p.payload::jsonb ->> 'table' = 'public.withheld' AND s.target = 'withheld'::regclass}),
		't|f', 'with its row, sent before the change committed');
	$node->safe_psql('postgres',
		q{SELECT upsert_order.versioned_upsert('withheld', '{"id": 1, "ver": 2, "pin": "x"}')});
	ok(UpsertOrderNode::all_published($node), 'the next event is published');
	is( $node->safe_psql('postgres', q{
SELECT p.payload::jsonb ? 'data' FROM upsert_order.publication p
 WHERE p.seq = (SELECT max(seq) FROM upsert_order.publication)}),
		'f', 'without its row');
}

# 7c. Partitions detached after their events were logged, before they were
# published: a batch reads a table's parents when it publishes, so the
# events go by the partitions' own settings, not by those of the
# partitioned table that kept its rows out when they were logged.  The
# worker is held in a batch whose snapshot predates the events, so that
# the batch that publishes them starts after the detach.
{
	$node->safe_psql('postgres', q{
CREATE TABLE parted (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, note text)
  PARTITION BY RANGE (id);
CREATE TABLE parted_open PARTITION OF parted FOR VALUES FROM (0) TO (10);
CREATE TABLE parted_closed PARTITION OF parted FOR VALUES FROM (10) TO (20);
SELECT upsert_order.publish_data('parted', false);
SELECT upsert_order.publish_data('parted_closed', false);
CREATE TABLE detach_holder (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL)});
	my $holder = hold_in_batch('detach_holder', 1);
	is( $node->safe_psql(
			'postgres', q{
SELECT outcome FROM upsert_order.versioned_upsert('parted_open', '{"id": 1, "ver": 1, "note": "open"}');
SELECT outcome FROM upsert_order.versioned_upsert('parted_closed', '{"id": 11, "ver": 1, "note": "closed"}')}),
		"inserted\ninserted", 'both partitions logged an applied event while attached');
	$node->safe_psql('postgres', q{
ALTER TABLE parted DETACH PARTITION parted_open;
ALTER TABLE parted DETACH PARTITION parted_closed});
	$holder->query_safe('COMMIT');
	$holder->quit;
	ok(UpsertOrderNode::all_published($node), 'the events of the detached partitions are published');
	is( $node->safe_psql(
			'postgres', q{
SELECT p.payload::jsonb ->> 'table', p.payload::jsonb -> 'data' ->> 'note', p.payload::jsonb ? 'data_omitted'
  FROM upsert_order.publication p
 WHERE p.payload::jsonb ->> 'table' IN ('public.parted_open', 'public.parted_closed')
 ORDER BY p.seq}),
		qq{public.parted_open|open|f\npublic.parted_closed||t},
		'the partition without a setting of its own goes out with its row, the one that keeps its rows out without');
}

# 8. A commit whose wake-up the worker loses: the worker waits for a lock
# inside a batch, and that wait consumes the wake-up of a writer that
# commits meanwhile.  Its event is not in the batch (the batch's snapshot
# is older); the worker must publish it at once, not after publish_naptime
# (here a minute).  A lock wait arms the deadlock timer, and a timer that
# fires after the wait still sets the latch, which would hide the lost
# wake-up: the lock is held past deadlock_timeout, so that it fires inside
# the wait.
{
	$node->safe_psql('postgres', q{
ALTER SYSTEM SET upsert_order.publish_naptime = '60s';
ALTER SYSTEM SET deadlock_timeout = '100ms';
SELECT pg_reload_conf()});
	ok(UpsertOrderNode::all_published($node), 'nothing waits before the test');
	my $holder = hold_in_batch('kv', 4000);
	$node->safe_psql('postgres',
		"SELECT upsert_order.versioned_upsert('kv', '{\"id\": 4001, \"ver\": 1}')");
	usleep(500_000);
	$holder->query_safe('COMMIT');
	$holder->quit;
	ok( PublisherListener::query_until(
			$node, 'postgres',
			'SELECT events_waiting = 0 FROM upsert_order.publisher_status', 20),
		'the event committed during the batch is published without waiting for the naptime');
	$node->safe_psql('postgres', q{
ALTER SYSTEM RESET upsert_order.publish_naptime;
ALTER SYSTEM RESET deadlock_timeout;
SELECT pg_reload_conf()});
}

$listener->stop;
$node->stop;
done_testing();
