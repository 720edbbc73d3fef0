/*
 * echo_client - the teaching text's echo client, which starts 500 threads
 * that each say hello in a loop, done with an io context on ONE thread.
 *
 * It opens --conns connections at once, waits until every one is connected
 * (so the server really holds them all at the same time), then each
 * connection sends "client N says hello K" and reads the upper-cased answer,
 * --rounds times, one message in flight per connection. Every answer is
 * checked byte for byte. It reports the round trips per second.
 *
 * Run: echo_client [--port 8080] [--host 127.0.0.1] [--conns 1000]
 *      [--rounds 20] [--timeout-s 60]
 * Exits non-zero unless every connection connected and every message came
 * back correctly. Each connection is one descriptor: mind `ulimit -n`.
 */
#include <executor.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MSG_MAX 64

struct client;

struct conn {
	struct client *cl;
	int id, fd;
	long round;
	size_t len, sent, got;
	char msg[MSG_MAX], want[MSG_MAX], reply[MSG_MAX];
};

struct client {
	struct exe_io *io;
	struct sockaddr_in addr;
	struct conn *conns;
	long nconns, rounds;
	/* Only the io thread (main, running exe_io_run()) touches these. */
	long connected, connect_failed, finished, failed, round_trips, mismatches;
	int64_t t_start, t_connected, t_done;
	bool timed_out;
};

static void send_msg(struct conn *c);

static void finish(struct conn *c, bool ok)
{
	struct client *cl = c->cl;

	if (!ok)
		cl->failed++;
	if (++cl->finished == cl->nconns) {
		cl->t_done = exe_now_ns();
		exe_io_stop(cl->io);
	}
}

static void next_round(struct conn *c)
{
	if (c->round >= c->cl->rounds) {
		finish(c, true); /* keep the connection open until all are done */
		return;
	}
	c->len = (size_t)snprintf(c->msg, sizeof(c->msg), "client %d says hello %ld", c->id, c->round);
	for (size_t i = 0; i < c->len; i++)
		c->want[i] = (char)toupper((unsigned char)c->msg[i]);
	c->sent = c->got = 0;
	send_msg(c);
}

static int recv_done(struct exe_future *f, void *arg)
{
	struct conn *c = arg;
	int64_t res = exe_io_res(f, 0);
	struct exe_future *nf;

	exe_future_unref(f);
	if (res <= 0) {
		finish(c, false);
		return 0;
	}
	c->got += (size_t)res;
	if (c->got < c->len) {
		/* TCP is a byte stream: the answer may come in pieces. */
		if (exe_io_recv(c->cl->io, c->fd, c->reply + c->got, c->len - c->got, 0, &nf) == 0)
			exe_future_on_done(nf, recv_done, c);
		else
			finish(c, false);
		return 0;
	}
	if (memcmp(c->reply, c->want, c->len) != 0)
		c->cl->mismatches++;
	c->cl->round_trips++;
	c->round++;
	next_round(c);
	return 0;
}

static int send_done(struct exe_future *f, void *arg)
{
	struct conn *c = arg;
	int64_t res = exe_io_res(f, 0);
	struct exe_future *nf;

	exe_future_unref(f);
	if (res <= 0) {
		finish(c, false);
		return 0;
	}
	c->sent += (size_t)res;
	if (c->sent < c->len) {
		send_msg(c);
		return 0;
	}
	/* Only as many bytes as were sent: a reply never runs into the next. */
	if (exe_io_recv(c->cl->io, c->fd, c->reply, c->len, 0, &nf) == 0)
		exe_future_on_done(nf, recv_done, c);
	else
		finish(c, false);
	return 0;
}

static void send_msg(struct conn *c)
{
	struct exe_future *f;

	if (exe_io_send(c->cl->io, c->fd, c->msg + c->sent, c->len - c->sent, 0, &f) == 0)
		exe_future_on_done(f, send_done, c);
	else
		finish(c, false);
}

static void start_all(struct client *cl)
{
	cl->t_connected = exe_now_ns();
	for (long i = 0; i < cl->nconns; i++) {
		if (cl->conns[i].fd < 0)
			finish(&cl->conns[i], false);
		else
			next_round(&cl->conns[i]);
	}
}

static int connect_done(struct exe_future *f, void *arg)
{
	struct conn *c = arg;
	struct client *cl = c->cl;
	int64_t res = exe_io_res(f, 0);

	exe_future_unref(f);
	if (res < 0) {
		if (cl->connect_failed++ == 0)
			fprintf(stderr, "echo_client: connect: %s\n", exe_strerror((int)res));
		close(c->fd);
		c->fd = -1;
	} else {
		cl->connected++;
	}
	/* A barrier: no one talks until every connection is open. */
	if (cl->connected + cl->connect_failed == cl->nconns)
		start_all(cl);
	return 0;
}

static int deadline(void *arg)
{
	struct client *cl = arg;

	cl->timed_out = true;
	exe_io_stop(cl->io);
	return 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--port N] [--host ADDR] [--conns N] [--rounds N] [--timeout-s N]\n",
	        argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"host", required_argument, NULL, 'H'},
	    {"conns", required_argument, NULL, 'c'},
	    {"rounds", required_argument, NULL, 'r'},
	    {"timeout-s", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct client cl = {.nconns = 1000, .rounds = 20};
	const char *host = "127.0.0.1";
	long port = 8080, timeout_s = 60;
	struct rlimit rl;
	struct exe_future *tf = NULL;
	double conn_s, talk_s;
	int c, rc, bad;

	while ((c = getopt_long(argc, argv, "p:H:c:r:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': port = atol(optarg); break;
		case 'H': host = optarg; break;
		case 'c': cl.nconns = atol(optarg); break;
		case 'r': cl.rounds = atol(optarg); break;
		case 't': timeout_s = atol(optarg); break;
		default: usage(argv[0]);
		}
	}
	cl.addr.sin_family = AF_INET;
	if (port < 1 || port > 65535 || cl.nconns < 1 || cl.rounds < 0 || timeout_s < 1 ||
	    inet_pton(AF_INET, host, &cl.addr.sin_addr) != 1)
		usage(argv[0]);
	cl.addr.sin_port = htons((uint16_t)port);
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* Each connection is a descriptor; leave room for the ring and stdio. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)cl.nconns + 32 > rl.rlim_cur) {
		fprintf(stderr,
		        "echo_client: %ld connections need more than the %lu descriptors "
		        "`ulimit -n` allows\n",
		        cl.nconns, (unsigned long)rl.rlim_cur);
		return 2;
	}
	cl.conns = calloc((size_t)cl.nconns, sizeof(*cl.conns));
	rc = cl.conns ? exe_io_create(&cl.io, &(struct exe_io_opts){.manual = true, .entries = 1024})
	              : -ENOMEM;
	if (rc) {
		fprintf(stderr, "echo_client: %s\n", exe_strerror(rc));
		return 1;
	}
	printf("echo_client: %ld connections to %s:%ld, %ld round trips each, one thread (io backend %s)\n",
	       cl.nconns, host, port, cl.rounds, exe_io_backend(cl.io));

	cl.t_start = exe_now_ns();
	exe_call_later(cl.io, timeout_s * EXE_NS_PER_S, deadline, &cl, &tf);
	for (long i = 0; i < cl.nconns; i++) {
		struct conn *cn = &cl.conns[i];
		struct exe_future *f;
		int one = 1;

		*cn = (struct conn){.cl = &cl, .id = (int)i};
		cn->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (cn->fd < 0) {
			perror("echo_client: socket");
			return 1;
		}
		/* Small request-reply messages: do not let Nagle hold them. */
		setsockopt(cn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (exe_io_connect(cl.io, cn->fd, (struct sockaddr *)&cl.addr, sizeof(cl.addr), &f) == 0)
			exe_future_on_done(f, connect_done, cn);
	}
	exe_io_run(cl.io);
	if (!cl.t_done)
		cl.t_done = exe_now_ns();
	if (!cl.t_connected)
		cl.t_connected = cl.t_done;
	exe_future_cancel(tf);
	exe_future_unref(tf);
	/* Destroy cancels whatever is still in flight (after a timeout); the
	 * callbacks then count those connections as failed. */
	exe_io_destroy(cl.io);
	for (long i = 0; i < cl.nconns; i++)
		if (cl.conns[i].fd >= 0)
			close(cl.conns[i].fd);
	free(cl.conns);

	conn_s = (double)(cl.t_connected - cl.t_start) / 1e9;
	talk_s = (double)(cl.t_done - cl.t_connected) / 1e9;
	printf("echo_client: %ld/%ld connected in %.3f s (all open at once), %ld round trips in %.3f s"
	       " = %.0f round trips/s\n",
	       cl.connected, cl.nconns, conn_s, cl.round_trips, talk_s,
	       talk_s > 0 ? (double)cl.round_trips / talk_s : 0.0);
	bad = cl.timed_out || cl.connected != cl.nconns || cl.failed || cl.mismatches ||
	      cl.round_trips != cl.nconns * cl.rounds;
	if (bad)
		printf("echo_client: FAILED: %ld connect failures, %ld broken connections, %ld wrong "
		       "answers%s\n",
		       cl.connect_failed, cl.failed, cl.mismatches, cl.timed_out ? ", timed out" : "");
	else
		printf("echo_client: OK: every message came back upper-cased\n");
	return bad;
}
