# PublisherListener: a LISTEN session for the publisher's TAP tests, and the
# checks they share.
#
# The listener is a psql process fed through a pipe.  psql prints the
# notifications it has received after each statement, so the listener sends
# a cheap statement whenever the previous one has come back, and parses what
# psql prints.  When the server goes away (a crash, an immediate stop), psql
# exits; the listener connects again once the server is back, LISTENs, then
# catches up with events_since() from the last seq it holds without a gap,
# as an application would.
#
# It records, per seq, the payload text and how it came (notification or
# catch-up), and counts what would break the contract: a seq notified twice,
# a notification that does not follow the previous one of the same
# connection, a payload that differs from an earlier copy.

package PublisherListener;

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time usleep);

my $json = JSON::PP->new->utf8;

# A statement that has not come back after this many seconds means psql is
# stuck: the listener's statements take no locks (but for events_since() at
# a reconnection, which the tests never hold up that long).
use constant STUCK_SECONDS => 30;

sub new
{
	my ($class, $node, $dbname, @channels) = @_;

	# writing to a psql that died with the server must not kill the test
	$SIG{PIPE} = 'IGNORE';
	my $self = bless {
		node => $node,
		dbname => $dbname,
		channels => [@channels],
		payload => {},          # seq => payload text
		contiguous => 0,        # every seq up to this one is in payload
		notified => {},         # seq => times notified
		caught_up => 0,         # seqs first learnt from events_since()
		connections => 0,
		out_of_order => [],     # "seq after seq" within one connection
		mismatches => [],       # seqs whose copies differ
		handle => undef,
	}, $class;
	$self->_connect;
	return $self;
}

# The highest seq below which nothing is missing.
sub contiguous
{
	my ($self) = @_;
	$self->{contiguous}++ while exists $self->{payload}{ $self->{contiguous} + 1 };
	return $self->{contiguous};
}

sub count_notified { return scalar keys %{ $_[0]{notified} }; }

sub twice_notified
{
	my ($self) = @_;
	return grep { $self->{notified}{$_} > 1 } keys %{ $self->{notified} };
}

sub _connect
{
	my ($self) = @_;
	my $node = $self->{node};

	$self->{in} = '';
	$self->{out} = '';
	$self->{err} = '';
	$self->{last_notified} = undef;
	$self->{pending} = 0;
	$self->{handle} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($self->{dbname}) ],
		'<', \$self->{in}, '>', \$self->{out}, '2>', \$self->{err});
	# all channels at once: a batch committed between two LISTENs would
	# otherwise arrive in part
	$self->{in} .= "BEGIN;\n";
	$self->{in} .= "LISTEN \"$_\";\n" foreach @{ $self->{channels} };
	$self->{in} .= "COMMIT;\n";
	$self->{in} .= sprintf(
		"SELECT 'catchup|' || seq || '|' || payload::text FROM upsert_order.events_since(%d, NULL);\n",
		$self->contiguous);
	$self->{in} .= "SELECT 'tick';\n";
	$self->{pending} = 1;
	$self->{pending_since} = time;
	$self->{ticks} = 0;
	$self->{connections}++;
	return;
}

sub _record
{
	my ($self, $payload, $via) = @_;

	# jsonb prints "op", "key", then "seq"; decoding JSON in Perl is slow,
	# so only a key that is not a flat object goes through the decoder
	my ($seq) = $payload =~ /^\{"op": "\w+", "key": \{[^{}]*\}, "seq": (\d+)[,}]/;
	$seq //= $json->decode($payload)->{seq};

	if (exists $self->{payload}{$seq} && $self->{payload}{$seq} ne $payload)
	{
		push @{ $self->{mismatches} }, $seq;
	}
	$self->{caught_up}++ if $via eq 'catchup' && !exists $self->{payload}{$seq};
	$self->{payload}{$seq} //= $payload;

	if ($via eq 'notify')
	{
		$self->{notified}{$seq}++;
		push @{ $self->{out_of_order} }, "$seq after $self->{last_notified}"
		  if defined $self->{last_notified} && $seq != $self->{last_notified} + 1;
		$self->{last_notified} = $seq;
	}
	return;
}

# Read what psql printed, send the next tick, reconnect if psql is gone.
sub poll
{
	my ($self) = @_;
	my $h = $self->{handle};

	# a statement waits for an answer only while the test polls: the
	# listener is fed by the polls themselves
	$self->{pending_since} = time if time - ($self->{last_poll} // 0) > 1;
	$self->{last_poll} = time;

	# each pump reads one chunk: read until nothing more comes
	while ($h && $h->pumpable)
	{
		my $before = length $self->{out};
		eval { $h->pump_nb; };
		last if length $self->{out} == $before;
	}
	my $end = rindex($self->{out}, "\n");
	my @lines = $end < 0 ? () : split /\n/, substr($self->{out}, 0, $end + 1, '');
	foreach my $line (@lines)
	{
		if ($line =~
			/^Asynchronous notification "[^"]*" with payload "(.*)" received from server process with PID \d+\.$/)
		{
			$self->_record($1, 'notify');
		}
		elsif ($line =~ /^catchup\|\d+\|(.*)$/)
		{
			$self->_record($1, 'catchup');
		}
		elsif ($line eq 'tick')
		{
			$self->{pending} = 0;
			$self->{ticks}++;
		}
	}
	if ($h && !$h->pumpable)
	{
		# psql is gone: the server went away, or it was not back yet
		eval { $h->finish; };
		$self->{handle} = undef;
		$self->{retry_at} = time + 0.2;
	}
	elsif ($h && $self->{pending} && time - $self->{pending_since} > STUCK_SECONDS)
	{
		# No answer for that long: psql died with the server in a way that
		# leaves the harness pumpable (seen once: a zombie psql, its pump
		# failing on the statement it could not write).  Start afresh.
		eval { $h->kill_kill; };
		eval { $h->finish; };
		$self->{handle} = undef;
		$self->{retry_at} = time + 0.2;
		$self->{stuck}++;
	}
	if (!$self->{handle})
	{
		$self->_connect if time >= ($self->{retry_at} // 0);
		return;
	}
	if (!$self->{pending})
	{
		$self->{in} .= "SELECT 'tick';\n";
		$self->{pending} = 1;
		$self->{pending_since} = time;
	}
	return;
}

# Poll for a while.
sub poll_for
{
	my ($self, $seconds) = @_;
	my $until = time + $seconds;
	while (time < $until)
	{
		$self->poll;
		usleep(10_000);
	}
	return;
}

# Poll until $done->() is true, or the timeout; returns whether it is.
sub _poll_until
{
	my ($self, $done, $timeout) = @_;
	my $until = time + ($timeout // $PostgreSQL::Test::Utils::timeout_default);
	while (!$done->() && time < $until)
	{
		$self->poll;
		usleep(10_000);
	}
	return $done->();
}

# Poll until the connection LISTENs (its first tick came back, after the
# LISTEN and the catch-up), or the timeout.
sub wait_listening
{
	my ($self, $timeout) = @_;
	return $self->_poll_until(sub { $self->{handle} && $self->{ticks} }, $timeout);
}

# Poll until every seq up to $seq is held, or the timeout.
sub wait_for_seq
{
	my ($self, $seq, $timeout) = @_;
	return $self->_poll_until(sub { $self->contiguous >= $seq }, $timeout);
}

# Follow the application to another server (a promoted standby), keeping
# what was received.
sub move_to
{
	my ($self, $node) = @_;
	$self->stop;
	$self->{node} = $node;
	$self->_connect;
	return;
}

sub stop
{
	my ($self) = @_;
	if ($self->{handle})
	{
		$self->{in} .= "\\q\n";
		eval { $self->{handle}->finish; };
		$self->{handle} = undef;
	}
	return;
}

# Poll $query until it returns 't', also through a server restart (a psql
# that cannot connect is retried).  Returns whether it did in time.
sub query_until
{
	my ($node, $dbname, $query, $timeout) = @_;
	my $until = time + ($timeout // $PostgreSQL::Test::Utils::timeout_default);
	while (time < $until)
	{
		my $result = eval {
			my ($stdout, $stderr);
			$node->psql($dbname, $query, stdout => \$stdout, stderr => \$stderr);
			$stdout;
		};
		return 1 if defined $result && $result eq 't';
		usleep(100_000);
	}
	return 0;
}

# Wait until the outbox is empty and the worker idle, then check what was
# published against event_log, and what the listener holds against that.
sub check_published
{
	my ($node, $listener, $label) = @_;
	my $db = $listener->{dbname};

	ok( query_until(
			$node, $db,
			"SELECT events_waiting = 0 AND last_error IS NULL FROM upsert_order.publisher_status"),
		"$label: everything published");

	my ($count, $first, $last) = split /\|/,
	  $node->safe_psql($db,
		"SELECT count(*), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM upsert_order.publication");
	ok($count > 0, "$label: something was published ($count)");
	is($first, 1, "$label: seq starts at 1");
	is($last, $count, "$label: seq has no gap");

	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM upsert_order.event_log e
		 WHERE e.outcome IN ('inserted', 'updated')
		   AND NOT EXISTS (SELECT 1 FROM upsert_order.publication p WHERE p.event_id = e.event_id)}),
		'0',
		"$label: every committed applied event was published");
	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM upsert_order.publication p
		  LEFT JOIN upsert_order.event_log e ON e.event_id = p.event_id
		 WHERE e.event_id IS NULL OR e.outcome NOT IN ('inserted', 'updated')}),
		'0',
		"$label: nothing else was published");
	is( $node->safe_psql(
			$db, q{
		SELECT count(*)
		  FROM (SELECT seq, event_id, payload::jsonb AS payload FROM upsert_order.publication) p
		  JOIN upsert_order.event_log e ON e.event_id = p.event_id
		 WHERE (p.payload->>'seq')::bigint <> p.seq
		    OR (p.payload->>'event_id')::bigint <> e.event_id
		    OR p.payload->'key' <> e.key
		    OR p.payload->>'version' <> e.version::text
		    OR p.payload->>'op' <> CASE e.outcome WHEN 'inserted' THEN 'insert' ELSE 'update' END
		    OR p.payload->'data' IS DISTINCT FROM e.data}),
		'0',
		"$label: payloads describe their events");
	is( $node->safe_psql(
			$db, q{
		SELECT count(*) FROM (
			SELECT e.version::text::numeric AS v,
			       lag(e.version::text::numeric) OVER (PARTITION BY e.target, e.key ORDER BY p.seq) AS prev
			  FROM upsert_order.publication p
			  JOIN upsert_order.event_log e ON e.event_id = p.event_id) s
		 WHERE s.prev >= s.v}),
		'0',
		"$label: per key, versions increase in seq order");

	ok($listener->wait_for_seq($last), "$label: the listener holds every seq up to $last");
	my %published = map { split /\|/, $_, 2 } split /\n/,
	  $node->safe_psql($db, "SELECT seq || '|' || payload::text FROM upsert_order.publication ORDER BY seq");
	my @differ = grep { ($listener->{payload}{$_} // '') ne $published{$_} } keys %published;
	is(scalar @differ, 0, "$label: the listener received the published payloads, byte for byte");
	is(scalar $listener->twice_notified, 0, "$label: no seq was notified twice");
	is_deeply($listener->{out_of_order}, [], "$label: within a connection, notifications follow each other");
	is_deeply($listener->{mismatches}, [], "$label: catch-up and notification agree");
	return $last;
}

1;
