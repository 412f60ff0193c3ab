# rowseq_now() never goes back: not across backends, and not across a clean
# restart or a crash, even though its state lives in shared memory.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('clock');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'upsert_order'\nrestart_after_crash = on");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION upsert_order');

$node->safe_psql('postgres',
	'SELECT upsert_order.max(upsert_order.rowseq_now()) FROM generate_series(1, 100000)');
my $before = $node->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');

# A clean shutdown saves the last stamp handed out; the next start reads it.
$node->stop;
my $state_file = $node->data_dir . '/pg_stat/upsert_order_hlc.stat';
ok(-f $state_file, 'a clean shutdown saves the clock');
open my $sf, '<:raw', $state_file or die "could not open $state_file: $!";
my $bytes = do { local $/; <$sf> };
close $sf;
is(length($bytes), 8, 'the saved clock is one 64-bit value');
is(unpack('Q', $bytes), $before, 'the saved value is the last stamp handed out');
$node->start;
my $after = $node->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');
ok($node->safe_psql('postgres', "SELECT '$after'::upsert_order.rowseq OPERATOR(upsert_order.>) '$before'::upsert_order.rowseq") eq 't',
	"after a clean restart the clock continues above the last stamp ($before < $after)");

# An immediate stop kills the backends at once (the postmaster still saves
# the clock); after it the clock is never behind the wall clock.
$node->stop('immediate');
$node->start;
my $wall = $node->safe_psql('postgres',
	q{SELECT upsert_order.rowseq_now() OPERATOR(upsert_order.>=) upsert_order.rowseq(now())});
is($wall, 't', 'after an immediate stop the clock is not behind the wall clock');

# A backend killed with SIGKILL makes the postmaster reset shared memory,
# saving the clock first: it does not go back even while it runs ahead of
# the wall clock, as it does after the wall clock was set back.  A clock
# saved an hour ahead makes it run ahead here.
$node->stop;
my $ahead = (int(time() * 1000) + 3_600_000) << 16;
open my $af, '>:raw', $state_file or die "could not write $state_file: $!";
print $af pack('Q', $ahead);
close $af;
$node->start;
$node->safe_psql('postgres',
	'SELECT upsert_order.max(upsert_order.rowseq_now()) FROM generate_series(1, 1000)');
my $before_crash = $node->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');
is( $node->safe_psql('postgres',
		"SELECT '$before_crash'::upsert_order.rowseq OPERATOR(upsert_order.>) upsert_order.rowseq(now() + interval '30 minutes')"),
	't', 'the clock runs ahead of the wall clock');
my $sleeper = IPC::Run::start(
	[ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', 'SELECT pg_sleep(60)' ],
	'>', \my $sleeper_out, '2>', \my $sleeper_err);
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'})
  or die 'the sleeping backend did not start';
my $victim = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'});
kill 'KILL', $victim;
$sleeper->finish;
$node->poll_query_until('postgres', 'SELECT true')
  or die 'the server did not come back after the crash';
like(slurp_file($node->logfile), qr/terminated by signal 9/, 'a backend crashed');
my $after_crash = $node->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');
is( $node->safe_psql('postgres',
		"SELECT '$after_crash'::upsert_order.rowseq OPERATOR(upsert_order.>) '$before_crash'::upsert_order.rowseq"),
	't', "after a backend crash the clock continues above the last stamp ($before_crash < $after_crash)");

# A saved clock that is not a rowseq is ignored, with a message, rather
# than making every later stamp fail.
$node->stop;
open my $bad, '>:raw', $state_file or die "could not write $state_file: $!";
print $bad pack('Q', 9223372036854775813);    # above the largest rowseq
close $bad;
$node->start;
is( $node->safe_psql('postgres',
		q{SELECT upsert_order.rowseq_now() OPERATOR(upsert_order.>=) upsert_order.rowseq(now())}),
	't', 'a saved clock out of range is ignored');
like(slurp_file($node->logfile), qr/ignoring the saved clock in file/, 'and reported');

# Many backends at once never get the same stamp.
$node->safe_psql('postgres', 'CREATE TABLE stamps (s upsert_order.rowseq)');
my $script = $node->basedir . '/stamp.sql';
open my $fh, '>', $script or die $!;
print $fh "INSERT INTO stamps SELECT upsert_order.rowseq_now() FROM generate_series(1, 20);\n";
close $fh;
$node->command_ok(
	[ 'pgbench', '-n', '-c', '8', '-j', '2', '-t', '200', '-f', $script, '-p', $node->port, '-h', $node->host, 'postgres' ],
	'8 clients take stamps concurrently');
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT s) FROM stamps'),
	'32000|32000', 'every stamp handed out is unique');

$node->stop;
done_testing();
