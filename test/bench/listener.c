/*
 * listener.c
 *	  The listener of test/bench/publisher.sh: LISTENs on a channel and
 *	  writes, for every notification, the time it arrived (microseconds since
 *	  the Unix epoch), the event_id and the seq of its payload, tab-separated.
 *	  Stops on SIGTERM or SIGINT.
 *
 * Usage: bench_listener CONNINFO CHANNEL OUTFILE
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include <libpq-fe.h>

static volatile sig_atomic_t stop = 0;

static void
on_signal(int signo)
{
	(void) signo;
	stop = 1;
}

static long long
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The number after the last occurrence of "name": in a payload, or -1. */
static long long
last_number(const char *payload, const char *name)
{
	const char *found = NULL;
	const char *p = payload;

	while ((p = strstr(p, name)) != NULL)
	{
		found = p;
		p++;
	}
	return found ? atoll(found + strlen(name)) : -1;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	PGresult   *res;
	FILE	   *out;
	char		sql[256];
	long long	received = 0;

	if (argc != 4)
	{
		fprintf(stderr, "usage: %s CONNINFO CHANNEL OUTFILE\n", argv[0]);
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "%s", PQerrorMessage(conn));
		return 1;
	}
	snprintf(sql, sizeof(sql), "LISTEN \"%s\"", argv[2]);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "%s", PQerrorMessage(conn));
		return 1;
	}
	PQclear(res);

	out = fopen(argv[3], "w");
	if (out == NULL)
	{
		perror(argv[3]);
		return 1;
	}

	while (!stop)
	{
		int			sock = PQsocket(conn);
		fd_set		input;
		struct timeval timeout = {0, 200000};
		PGnotify   *notify;

		FD_ZERO(&input);
		FD_SET(sock, &input);
		if (select(sock + 1, &input, NULL, NULL, &timeout) < 0)
		{
			if (errno == EINTR)
				continue;
			perror("select");
			break;
		}
		if (!PQconsumeInput(conn))
		{
			fprintf(stderr, "%s", PQerrorMessage(conn));
			break;
		}
		while ((notify = PQnotifies(conn)) != NULL)
		{
			fprintf(out, "%lld\t%lld\t%lld\n", now_us(),
					last_number(notify->extra, "\"event_id\": "),
					last_number(notify->extra, "\"seq\": "));
			received++;
			PQfreemem(notify);
		}
	}

	fclose(out);
	PQfinish(conn);
	fprintf(stderr, "bench_listener: %lld notifications\n", received);
	return 0;
}
