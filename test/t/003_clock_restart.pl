# rowseq_now() never goes back: not across backends, and not across a clean
# restart or a crash, even though its state lives in shared memory.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

# The state file: magic "UHL1", the CRC-32C of the bound, the bound, in the
# server's byte order.
my $state_magic = 0x55484c31;

sub crc32c
{
	my ($data) = @_;
	my $crc = 0xFFFFFFFF;
	foreach my $byte (unpack('C*', $data))
	{
		$crc ^= $byte;
		$crc = ($crc >> 1) ^ (($crc & 1) ? 0x82F63B78 : 0) for 1 .. 8;
	}
	return $crc ^ 0xFFFFFFFF;
}

sub state_bytes
{
	my ($bound) = @_;
	my $packed = pack('Q', $bound);
	return pack('LL', $state_magic, crc32c($packed)) . $packed;
}

sub write_state
{
	my ($file, $bytes) = @_;
	open my $fh, '>:raw', $file or die "could not write $file: $!";
	print $fh $bytes;
	close $fh;
	return;
}

sub read_state
{
	my ($file) = @_;
	open my $fh, '<:raw', $file or die "could not open $file: $!";
	my $bytes = do { local $/; <$fh> };
	close $fh;
	return $bytes;
}

# A stamp an hour ahead of the wall clock.
sub hour_ahead
{
	return (int(time() * 1000) + 3_600_000) << 16;
}

# Where node keeps the clock's state file.
sub state_file_of
{
	my ($node) = @_;
	return $node->data_dir . '/pg_stat/upsert_order_hlc.stat';
}

sub rowseq_greater
{
	my ($node, $a, $b) = @_;
	return $node->safe_psql('postgres',
		"SELECT '$a'::upsert_order.rowseq OPERATOR(upsert_order.>) '$b'::upsert_order.rowseq") eq 't';
}

# Kill the postmaster, which saves nothing, and start again once all its
# children have gone (until then the old shared memory is still in use).
sub kill_postmaster_and_start
{
	my ($node) = @_;
	my @pids = split /\n/, $node->safe_psql('postgres', 'SELECT pid FROM pg_stat_activity');
	push @pids, $node->{_pid};
	$node->kill9;
	foreach my $pid (@pids)
	{
		my $waited = 0;
		while (kill(0, $pid) && $waited++ < 600)
		{
			usleep(100_000);
		}
		die "process $pid outlived its postmaster" if kill(0, $pid);
	}
	$node->start;
	return;
}

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
my $state_file = state_file_of($node);
ok(-f $state_file, 'a clean shutdown saves the clock');
my $bytes = read_state($state_file);
is(length($bytes), 16, 'the saved clock is a magic number, a checksum and a 64-bit value');
is(unpack('x8 Q', $bytes), $before, 'the saved value is the last stamp handed out');
is($bytes, state_bytes($before), 'with the magic number and the CRC-32C of the value');
$node->start;
my $after = $node->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');
ok(rowseq_greater($node, $after, $before),
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
my $ahead = hour_ahead();
write_state($state_file, state_bytes($ahead));
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
ok(rowseq_greater($node, $after_crash, $before_crash),
	"after a backend crash the clock continues above the last stamp ($before_crash < $after_crash)");

# Running ahead, the clock saved a bound above its stamps before handing
# them out: killing the postmaster, which saves nothing, does not make it
# hand them out again.
my $bound = unpack('x8 Q', read_state($state_file));
ok($bound > $after_crash && $bound < $after_crash + (2000 << 16),
	"a stamp ahead of the wall clock saved a bound about a second above it ($after_crash < $bound)");
$node->safe_psql('postgres',
	'SELECT upsert_order.max(upsert_order.rowseq_now()) FROM generate_series(1, 1000)');
my $before_kill = $node->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');
kill_postmaster_and_start($node);
my $after_kill = $node->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');
ok(rowseq_greater($node, $after_kill, $before_kill),
	"after the postmaster was killed the clock continues above the last stamp ($before_kill < $after_kill)");

# The same when the save at shutdown fails: the bound saved ahead stays.
my $stat_dir = $node->data_dir . '/pg_stat';
$node->safe_psql('postgres',
	'SELECT upsert_order.max(upsert_order.rowseq_now()) FROM generate_series(1, 1000)');
my $before_failed_save = $node->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');
my $log_offset = -s $node->logfile;
chmod 0500, $stat_dir or die "could not chmod $stat_dir: $!";
$node->stop;
chmod 0700, $stat_dir or die "could not chmod $stat_dir: $!";
like(slurp_file($node->logfile, $log_offset), qr/could not create file "pg_stat\/upsert_order_hlc\.stat\.tmp"/,
	'the save at shutdown failed');
$node->start;
my $after_failed_save = $node->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');
ok(rowseq_greater($node, $after_failed_save, $before_failed_save),
	"after a failed save the clock continues above the last stamp ($before_failed_save < $after_failed_save)");

# A stamp ahead of the wall clock that no saved bound covers is refused when
# the bound cannot be saved, rather than handed out unsaved.
$node->stop;
$ahead = hour_ahead();
write_state($state_file, state_bytes($ahead));
$node->start;
chmod 0500, $stat_dir or die "could not chmod $stat_dir: $!";
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT upsert_order.rowseq_now()');
chmod 0700, $stat_dir or die "could not chmod $stat_dir: $!";
isnt($ret, 0, 'a stamp ahead of the wall clock fails when its bound cannot be saved');
like($stderr, qr/could not create file "pg_stat\/upsert_order_hlc\.stat\.tmp": Permission denied/,
	'with the reason');
my $after_refusal = $node->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');
ok($after_refusal > $ahead && unpack('x8 Q', read_state($state_file)) >= $after_refusal,
	"once the bound can be saved, the stamp comes, under it ($ahead < $after_refusal)");

# A saved clock that is not whole and valid is ignored, with a message,
# rather than taken at face value or making every later stamp fail.
my %bad_states = (
	'the largest rowseq' => state_bytes(9223372036854775807),
	'a wrong checksum' => pack('LLQ', $state_magic, 0, 1 << 62),
	'no magic number' => pack('Q', 1 << 62) . pack('Q', 0),
	'a torn file' => substr(state_bytes(1 << 62), 0, 12));
foreach my $case (sort keys %bad_states)
{
	$node->stop;
	write_state($state_file, $bad_states{$case});
	$log_offset = -s $node->logfile;
	$node->start;
	is( $node->safe_psql('postgres',
			q{SELECT upsert_order.rowseq_now() OPERATOR(upsert_order.<) upsert_order.rowseq(now() + interval '1 minute')}),
		't', "a saved clock with $case is ignored");
	like(slurp_file($node->logfile, $log_offset), qr/ignoring the saved clock in file/, 'and reported');
}

# A clock saved at the last valid bound has no stamp left to hand out: the
# next one would be the largest rowseq, which no bound can cover.  It is
# refused, every time, rather than handed out unsaved.
$node->stop;
write_state($state_file, state_bytes(9223372036854775806));
$node->start;
foreach my $attempt (1, 2)
{
	($ret, $stdout, $stderr) = $node->psql('postgres',
		'\set VERBOSITY verbose' . "\nSELECT upsert_order.rowseq_now()");
	like($stderr, qr/ERROR:  2200H: rowseq clock exhausted/,
		"an exhausted clock refuses a stamp (attempt $attempt)");
}
$node->stop;
unlink $state_file or die "could not remove $state_file: $!";
$node->start;

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

# A standby made from a base backup has the primary's state file as it was
# then, so after a promotion its stamps stay above the old primary's, even
# those ahead of the wall clock, while those stay under the bound copied.
my $primary = PostgreSQL::Test::Cluster->new('clock_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_preload_libraries = 'upsert_order'");
$ahead = hour_ahead();
write_state(state_file_of($primary), state_bytes($ahead));
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION upsert_order');
my $first = $primary->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');
ok(rowseq_greater($primary, $first, $ahead), 'the primary runs an hour ahead of the wall clock');
$primary->backup('clock_backup');
my $standby = PostgreSQL::Test::Cluster->new('clock_standby');
$standby->init_from_backup($primary, 'clock_backup', has_streaming => 1);
$standby->start;
my $last = $primary->safe_psql('postgres',
	'SELECT upsert_order.max(upsert_order.rowseq_now()) FROM generate_series(1, 10000)');
ok(rowseq_greater($primary, $last, $first), 'the primary hands out more stamps after the backup');
$primary->wait_for_catchup($standby);
$primary->stop;
$standby->promote;
my $promoted = $standby->safe_psql('postgres', 'SELECT upsert_order.rowseq_now()');
ok(rowseq_greater($standby, $promoted, $last),
	"the promoted standby stamps above the old primary's last stamp ($last < $promoted)");
$standby->stop;
done_testing();
