/*
 * batch_client.c
 *	  The client of the batch scenario of test/bench/run.  It sends the rows
 *	  as an application does: one JSON array, built on the client, as the
 *	  text of one parameter of a prepared statement.  pgbench cannot build a
 *	  string, so a pgbench script would have to build the array on the
 *	  server (jsonb_build_object() for every row, then jsonb_agg()), which
 *	  takes about a third of the server's work per row: that is not the work
 *	  of the path being measured.
 *
 * Usage: bench_batch_client CONNINFO TARGET CLIENTS SECONDS ROWS
 *	  ROWS > 0: upsert_order.versioned_upsert_batch(TARGET, <ROWS messages>)
 *	  ROWS = 0: upsert_order.versioned_upsert(TARGET, <one message>), the
 *				single calls the batches are compared with
 *
 * Every message is {"id": k, "ver": n, "val": n, "note": "note k"}, the
 * message of the other scenarios.  Client c (0-based) owns the ids congruent
 * to c + 1 modulo CLIENTS; its n-th call carries version n and takes the
 * next ids of a fixed permutation of them, so every row is applied (see
 * scripts/keys-applied.pgbench, whose single calls this repeats).
 *
 * Each client is a process with its own connection.  All connect and
 * prepare first, then run SECONDS together.  The output has pgbench's lines
 * for what run reads: "number of transactions actually processed", "number
 * of failed transactions" and "tps".  A failed call, or one that did not
 * apply every message, ends the run with exit status 1.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define KEYS 100000

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *what, const char *detail)
{
	fprintf(stderr, "bench_batch_client: %s%s%s\n", what,
			detail ? ": " : "", detail ? detail : "");
	exit(1);
}

/*
 * Write the nmsg messages of call n of client c into buf, as a JSON array
 * for a batch; returns buf.
 */
static char *
build_call(char *buf, int c, int clients, long n, int nmsg, bool batch)
{
	int			per_client = KEYS / clients;
	char	   *p = buf;

	if (batch)
		*p++ = '[';
	for (int g = 1; g <= nmsg; g++)
	{
		long		step = (n - 1) * nmsg + g;
		long		id = c + (long) clients * ((step * 7919) % per_client) + 1;

		p += sprintf(p, "%s{\"id\": %ld, \"ver\": %ld, \"val\": %ld, \"note\": \"note %ld\"}",
					 g > 1 ? ", " : "", id, n, n, id);
	}
	if (batch)
		*p++ = ']';
	*p = '\0';
	return buf;
}

/*
 * One client: connect, prepare, say ready on ready_fd, wait for the start
 * on go_fd, call for the given seconds, then write "calls elapsed" on
 * result_fd.
 */
static void
run_client(const char *conninfo, const char *target, int c, int clients,
		   double seconds, int rows, int ready_fd, int go_fd, int result_fd)
{
	PGconn	   *conn = PQconnectdb(conninfo);
	PGresult   *res;
	const char *sql = rows > 0
		? "SELECT count(*) FILTER (WHERE applied) FROM upsert_order.versioned_upsert_batch($1::regclass, $2::jsonb)"
		: "SELECT count(*) FILTER (WHERE applied) FROM upsert_order.versioned_upsert($1::regclass, $2::jsonb)";
	int			expect = rows > 0 ? rows : 1;	/* messages per call */
	char	   *buf = malloc((size_t) expect * 96 + 16);
	long		calls = 0;
	char		go;
	double		start,
				end;

	if (buf == NULL)
		die("out of memory", NULL);
	if (PQstatus(conn) != CONNECTION_OK)
		die("connection failed", PQerrorMessage(conn));
	res = PQprepare(conn, "call", sql, 2, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		die("prepare failed", PQresultErrorMessage(res));
	PQclear(res);

	/* Closed once written, so that the parent sees a client that died. */
	if (write(ready_fd, "r", 1) != 1)
		die("lost the parent", strerror(errno));
	close(ready_fd);
	if (read(go_fd, &go, 1) != 1)
		die("lost the parent", strerror(errno));

	start = now_seconds();
	end = start + seconds;
	do
	{
		const char *params[2];

		calls++;
		params[0] = target;
		params[1] = build_call(buf, c, clients, calls, expect, rows > 0);
		res = PQexecPrepared(conn, "call", 2, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			die("call failed", PQresultErrorMessage(res));
		if (atoi(PQgetvalue(res, 0, 0)) != expect)
			die("a call did not apply every row; rows applied", PQgetvalue(res, 0, 0));
		PQclear(res);
	} while (now_seconds() < end);

	dprintf(result_fd, "%ld %.6f\n", calls, now_seconds() - start);
	PQfinish(conn);
	exit(0);
}

int
main(int argc, char **argv)
{
	int			clients,
				rows,
				ready[2],
				go[2],
				result[2],
				failed = 0;
	double		seconds,
				tps = 0;
	long		total = 0;
	char		r;
	FILE	   *results;
	long		calls;
	double		elapsed;

	if (argc != 6)
		die("usage: bench_batch_client CONNINFO TARGET CLIENTS SECONDS ROWS", NULL);
	clients = atoi(argv[3]);
	seconds = atof(argv[4]);
	rows = atoi(argv[5]);
	if (clients < 1 || clients > KEYS || seconds <= 0 || rows < 0 || rows > KEYS / clients)
		die("bad arguments", "CLIENTS in 1..100000, SECONDS > 0, ROWS in 0..100000/CLIENTS");

	/* A write to clients that all died fails, rather than killing us. */
	signal(SIGPIPE, SIG_IGN);
	if (pipe(ready) != 0 || pipe(go) != 0 || pipe(result) != 0)
		die("pipe failed", strerror(errno));
	for (int c = 0; c < clients; c++)
	{
		pid_t		pid = fork();

		if (pid < 0)
			die("fork failed", strerror(errno));
		if (pid == 0)
			run_client(argv[1], argv[2], c, clients, seconds, rows,
					   ready[1], go[0], result[1]);
	}
	close(ready[1]);
	close(go[0]);
	close(result[1]);

	/*
	 * Start them together, once all are connected and prepared (or one
	 * died: its end of ready is closed, and the wait below reports it).
	 */
	for (int c = 0; c < clients; c++)
		if (read(ready[0], &r, 1) != 1)
			break;
	for (int c = 0; c < clients; c++)
		if (write(go[1], "g", 1) != 1)
			die("write failed", strerror(errno));

	/* Each client's rate, summed: pgbench's tps for clients that all ran. */
	results = fdopen(result[0], "r");
	if (results == NULL)
		die("fdopen failed", strerror(errno));
	while (fscanf(results, "%ld %lf", &calls, &elapsed) == 2)
	{
		total += calls;
		tps += calls / elapsed;
	}
	for (int c = 0; c < clients; c++)
	{
		int			status;

		if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	}
	if (failed)
		die("a client failed", NULL);

	printf("number of transactions actually processed: %ld\n", total);
	printf("number of failed transactions: 0 (0.000%%)\n");
	printf("tps = %f (without initial connection time)\n", tps);
	return 0;
}
