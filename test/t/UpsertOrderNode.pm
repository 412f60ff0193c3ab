# UpsertOrderNode: a PostgreSQL::Test::Cluster set up the way most of the TAP
# tests need it: the library preloaded, room for pgbench clients, fsync off
# (these tests are about concurrency and crashes of processes, not of the
# machine), any further settings the test adds, started, and the extension
# created in the postgres database; and the pgbench writers they run.

package UpsertOrderNode;

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;

# UpsertOrderNode::start($name, $extra_settings): the running node.
sub start
{
	my ($name, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init;
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'upsert_order'
max_connections = 40
fsync = off
} . ($extra // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION upsert_order');
	return $node;
}

# UpsertOrderNode::start_writers($node, $script, $seconds, @options): eight
# pgbench clients running $script against the postgres database of $node,
# in the background, for $seconds.  Returns the IPC::Run handle and
# references to pgbench's standard output and standard error.
sub start_writers
{
	my ($node, $script, $seconds, @options) = @_;
	my ($out, $err) = ('', '');
	my $handle = IPC::Run::start(
		[
			'pgbench', '-n', '-c', '8', '-j', '4', '-T', $seconds, @options,
			'-f', $script, '-h', $node->host, '-p', $node->port, 'postgres'
		],
		'>', \$out, '2>', \$err);
	return ($handle, \$out, \$err);
}

# UpsertOrderNode::write_events($node, $first, $n): one committed event on
# each of the keys $first .. $first + $n - 1 of table kv (id, ver), stamped
# by the server clock, in one transaction.
sub write_events
{
	my ($node, $first, $n) = @_;
	$node->safe_psql('postgres', qq{
SELECT upsert_order.versioned_upsert('kv', jsonb_build_object('id', i, 'ver', upsert_order.rowseq_now()))
  FROM generate_series($first, $first + $n - 1) i});
}

# UpsertOrderNode::publish_one_by_one($node, $first, $n): one committed
# event on each of the keys $first .. $first + $n - 1 of table kv (id, ver),
# the next written once the worker has published the one before: a batch
# each.  An event left in the outbox fails the test instead of hanging it.
sub publish_one_by_one
{
	my ($node, $first, $n) = @_;
	my $timeout = $PostgreSQL::Test::Utils::timeout_default;
	$node->safe_psql('postgres', qq{
DO \$\$
DECLARE
	deadline timestamptz;
BEGIN
	FOR i IN $first .. $first + $n - 1 LOOP
		PERFORM upsert_order.versioned_upsert('kv', jsonb_build_object('id', i, 'ver', 1));
		COMMIT;
		deadline := clock_timestamp() + interval '$timeout s';
		WHILE EXISTS (SELECT 1 FROM upsert_order.outbox) LOOP
			IF clock_timestamp() > deadline THEN
				RAISE 'events left unpublished: %',
					(SELECT array_agg(event_id) FROM upsert_order.outbox);
			END IF;
			PERFORM pg_sleep(0.001);
		END LOOP;
	END LOOP;
END \$\$});
}

# UpsertOrderNode::last_published($node): the event_id published last.
sub last_published
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT event_id FROM upsert_order.publication ORDER BY seq DESC LIMIT 1');
}

# UpsertOrderNode::all_published($node): waits until no committed event
# waits in the outbox; false if that does not happen within the timeout.
sub all_published
{
	my ($node) = @_;
	return $node->poll_query_until('postgres',
		'SELECT events_waiting = 0 FROM upsert_order.publisher_status');
}

1;
