# UpsertOrderNode: a PostgreSQL::Test::Cluster set up the way most of the TAP
# tests need it: the library preloaded, room for pgbench clients, fsync off
# (these tests are about concurrency and crashes of processes, not of the
# machine), any further settings the test adds, started, and the extension
# created in the postgres database.

package UpsertOrderNode;

use strict;
use warnings;

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

1;
