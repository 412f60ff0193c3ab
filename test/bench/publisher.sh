#!/bin/bash
# test/bench/publisher.sh: measure the publisher on a throwaway cluster.
#
#   1. latency: commit-to-notification at a steady rate (BENCH_RATE events/s,
#      default 1000): the time a listener receives each notification minus
#      the commit timestamp of the writing transaction
#      (track_commit_timestamp), median, p99 and max;
#   2. writers' throughput with BENCH_WRITERS (default 8) pgbench clients
#      calling versioned_upsert(), each for BENCH_SECONDS (default 30):
#        - "publisher": the worker publishes this database, a listener
#          receives everything; also the backlog when the writers stop and
#          how long the worker takes to clear it;
#        - "off": upsert_order.database names another database, so nothing
#          is queued or published here;
#        - "trigger": as "off", plus a row trigger on the table calling
#          pg_notify() with the row, which is how this is usually done by
#          hand; a listener receives everything;
#   3. the worker's own publishing rate: BENCH_BACKLOG (default 200000)
#      events queued while publishing is held up, then released.
#
# BENCH_PUB_DELAY, when set, is the worker's upsert_order.publish_delay
# throughout.
#
# Durability settings are PostgreSQL's defaults (fsync and
# synchronous_commit on).  It prints a summary and leaves it, with the
# server log, in the work directory it names.  Not a test: it asserts
# nothing.
#
# Usage: test/bench/publisher.sh   (make install first; honours PG_CONFIG)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}
bindir=$("$PG_CONFIG" --bindir)
duration=${BENCH_SECONDS:-30}
rate=${BENCH_RATE:-1000}
writers=${BENCH_WRITERS:-8}
backlog=${BENCH_BACKLOG:-200000}
port=${BENCH_PORT:-5799}

work=$(mktemp -d "${TMPDIR:-/tmp}/upsert_order_bench.XXXXXX")
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
	chown postgres: "$work"
	as_pg=(runuser -u postgres --)
fi
data=$work/data
log=$work/server.log
summary=$work/summary.txt
echo "bench_publisher: working in $work"

# The listener: a small libpq client that stamps each notification.
cc -O2 -o "$work/bench_listener" "$repo/test/bench/listener.c" \
	-I"$("$PG_CONFIG" --includedir)" -L"$("$PG_CONFIG" --libdir)" -lpq

pg() { "${as_pg[@]}" "$@"; }
sql() { pg "$bindir/psql" -XAtq -h "$work" -p "$port" -d bench -v ON_ERROR_STOP=1 "$@"; }

pg "$bindir/initdb" -D "$data" -A trust >/dev/null
cat >>"$data/postgresql.conf" <<EOF
shared_preload_libraries = 'upsert_order'
port = $port
unix_socket_directories = '$work'
listen_addresses = ''
max_connections = 50
shared_buffers = 256MB
max_wal_size = 4GB
include_if_exists = 'bench.conf'
EOF

# Restart with the given settings (written to bench.conf).
restart() {
	{
		printf '%s\n' "$@"
		[[ -z ${BENCH_PUB_DELAY:-} ]] || echo "upsert_order.publish_delay = '$BENCH_PUB_DELAY'"
	} | pg tee "$data/bench.conf" >/dev/null
	pg "$bindir/pg_ctl" -D "$data" -l "$log" -w restart >/dev/null 2>&1 ||
		pg "$bindir/pg_ctl" -D "$data" -l "$log" -w start >/dev/null
}

restart "upsert_order.database = 'bench'"
pg "$bindir/createdb" -h "$work" -p "$port" bench
pg "$bindir/createdb" -h "$work" -p "$port" elsewhere
sql <<'EOF'
CREATE EXTENSION upsert_order;
CREATE TABLE account (id int PRIMARY KEY, ver upsert_order.rowseq NOT NULL, balance bigint, note text);
CREATE TABLE got (recv_us bigint, event_id bigint, seq bigint);
-- what people write by hand: a row trigger that notifies the new row
CREATE FUNCTION notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('account_rows', row_to_json(NEW)::text);
	RETURN NEW;
END $$;
EOF

cat >"$work/writer.sql" <<'EOF'
\set id random(1, 100000)
SELECT upsert_order.versioned_upsert('account', jsonb_build_object('id', :id, 'ver', upsert_order.rowseq_now(), 'balance', :id, 'note', 'a note of some length'));
EOF
chmod 644 "$work/writer.sql"

# The listener runs as the invoking user (root connects as postgres), so
# that it can be stopped directly and flush its output.
listener_pid=
listener_user=
[[ $(id -u) -eq 0 ]] && listener_user="user=postgres"
start_listener() { # channel
	rm -f "$work/got.tsv"
	"$work/bench_listener" "host=$work port=$port dbname=bench $listener_user" "$1" "$work/got.tsv" &
	listener_pid=$!
	sleep 0.5
}
stop_listener() {
	kill -TERM "$listener_pid"
	wait "$listener_pid" || true
}

wait_worker() {
	for _ in $(seq 1 100); do
		[[ $(sql -c "SELECT worker_pid IS NOT NULL FROM upsert_order.publisher_status") == t ]] && return
		sleep 0.1
	done
	echo "the publisher did not start" >&2
	exit 1
}

reset_tables() {
	sql -c "TRUNCATE account, got; SELECT upsert_order.purge_events('0 s');" >/dev/null
	sql -c "VACUUM ANALYZE" >/dev/null
}

# pgbench; prints the tps.
run_writers() { # clients seconds [extra pgbench options]
	local clients=$1 secs=$2
	shift 2
	pg "$bindir/pgbench" -n -c "$clients" -j "$clients" -T "$secs" "$@" -f "$work/writer.sql" \
		-h "$work" -p "$port" bench 2>&1 | tee -a "$work/pgbench.log" |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

# Seconds until the outbox is empty.
drain_time() {
	local start=$EPOCHREALTIME
	while [[ $(sql -c "SELECT events_waiting FROM upsert_order.publisher_status") != 0 ]]; do
		sleep 0.05
	done
	awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}

# 1. Latency at a steady rate.
restart "upsert_order.database = 'bench'" "track_commit_timestamp = on"
wait_worker
reset_tables
start_listener upsert_order
run_writers 4 "$duration" -R "$rate" >/dev/null
sleep 1
stop_listener
sql -c "\\copy got FROM '$work/got.tsv'"
latency=$(sql -F ' ' -c "
	SELECT count(*),
	       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
	       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2),
	       round(max(ms)::numeric, 2)
	  FROM (SELECT (g.recv_us - extract(epoch FROM pg_xact_commit_timestamp(e.xmin)) * 1e6) / 1000.0 AS ms
	          FROM got g JOIN upsert_order.event_log e ON e.event_id = g.event_id) s")
read -r lat_n lat_median lat_p99 lat_max <<<"$latency"

# 2. Writers' throughput: publisher, off, trigger, BENCH_ROUNDS (default 3)
# rounds in turn; the median of each is reported.
rounds=${BENCH_ROUNDS:-3}
all_publisher=() all_off=() all_trigger=() publisher_notes=()
for round in $(seq 1 "$rounds"); do
	restart "upsert_order.database = 'bench'"
	wait_worker
	reset_tables
	first_seq=$(sql -c "SELECT coalesce(max(seq), 0) + 1 FROM upsert_order.publication")
	start_listener upsert_order
	all_publisher+=("$(run_writers "$writers" "$duration")")
	backlog_at_end=$(sql -c "SELECT events_waiting FROM upsert_order.publisher_status")
	drain=$(drain_time)
	published=$(sql -c "SELECT count(*) FROM upsert_order.publication WHERE seq >= $first_seq")
	sleep 1
	stop_listener
	publisher_notes+=("round $round: $published published, $(wc -l <"$work/got.tsv") received, $backlog_at_end waiting when the writers stopped, cleared in ${drain}s")

	restart "upsert_order.database = 'elsewhere'"
	reset_tables
	all_off+=("$(run_writers "$writers" "$duration")")

	reset_tables
	sql -c "CREATE TRIGGER notify_row AFTER INSERT OR UPDATE ON account FOR EACH ROW EXECUTE FUNCTION notify_row()"
	start_listener account_rows
	all_trigger+=("$(run_writers "$writers" "$duration")")
	sleep 1
	stop_listener
	sql -c "DROP TRIGGER notify_row ON account"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
tps_publisher=$(median "${all_publisher[@]}")
tps_off=$(median "${all_off[@]}")
tps_trigger=$(median "${all_trigger[@]}")

# 3. The worker's own rate: a backlog queued while a bad channel (written
# straight into target_settings) holds publishing up, then released.
restart "upsert_order.database = 'bench'"
wait_worker
reset_tables
sql -c "INSERT INTO upsert_order.target_settings VALUES ('account', repeat('x', 80))"
sql -c "SELECT count(*) FROM generate_series(1, $backlog) i,
	LATERAL upsert_order.versioned_upsert('account', jsonb_build_object('id', i, 'ver', upsert_order.rowseq_now(), 'balance', i, 'note', 'a note of some length'))" >/dev/null
start_listener account_events
first_seq=$(sql -c "SELECT coalesce(max(seq), 0) + 1 FROM upsert_order.publication")
sql -c "SELECT upsert_order.configure('account', 'account_events')" >/dev/null
drain_time >/dev/null
# from the first batch's start to the last batch's end, by published_at
backlog_rate=$(sql -c "
	SELECT round(count(*) / extract(epoch FROM max(published_at) - min(published_at)))
	  FROM upsert_order.publication WHERE seq >= $first_seq")
sleep 1
stop_listener
received_backlog=$(wc -l <"$work/got.tsv")

pg "$bindir/pg_ctl" -D "$data" -w stop >/dev/null

{
	echo "upsert_order publisher benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $("$bindir/postgres" --version))"
	echo
	echo "1. Commit-to-notification latency at $rate events/s (4 clients, ${duration}s, $lat_n events):"
	echo "   median $lat_median ms, p99 $lat_p99 ms, max $lat_max ms"
	echo
	echo "2. Writers' throughput, $writers clients, ${duration}s each, median of $rounds rounds:"
	printf '   %-34s %8.0f tps   (%s)\n' "publisher on (listener connected)" "$tps_publisher" "${all_publisher[*]}"
	printf '   %-34s %8.0f tps   (%s)\n' "publisher off" "$tps_off" "${all_off[*]}"
	printf '   %-34s %8.0f tps   (%s)\n' "row trigger calling pg_notify()" "$tps_trigger" "${all_trigger[*]}"
	awk -v on="$tps_publisher" -v off="$tps_off" -v trig="$tps_trigger" \
		'BEGIN { printf "   on/off: %.3f, on/trigger: %.2f\n", on / off, on / trig }'
	printf '   publisher %s\n' "${publisher_notes[@]}"
	echo
	echo "3. Publishing a backlog of $backlog events: $backlog_rate events/s, $received_backlog received"
} | tee "$summary"
