/*
 * echo_server - the teaching text's coroutine (gevent) echo server, done
 * with an io context driven by ONE thread: this program's main thread.
 *
 * gevent gives each connection a green thread that blocks in recv(); here
 * each connection is a small record and a chain of io futures: accept ->
 * recv -> send -> recv ... Every completion runs a done callback on the one
 * thread that drives the context (a manual context: main calls
 * exe_io_run()). Nothing blocks and nothing is locked, so one thread serves
 * thousands of connections; a connection costs ~1.1 KiB, not a thread stack.
 * Like the original it answers each message upper-cased.
 *
 * Run: echo_server [--port 8080] [--host 127.0.0.1] [--max-conns N]
 *      [--expect-peak N]
 *   --port 0 picks a free port; the first line printed says which.
 *   --max-conns N exits after N connections have come and gone.
 *   --expect-peak N exits non-zero unless N connections were open at once.
 * Stop it with Ctrl-C or SIGTERM: it prints what it served.
 * Try it with echo_client, or `nc 127.0.0.1 8080`.
 */
#include <executor.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 1024

struct server {
	struct exe_io *io;
	int lfd;
	bool stopping;
	long max_conns;
	/* Only the io thread (main) touches these: no atomics needed. */
	long accepted, active, peak, closed, messages, accept_errors;
	uint64_t bytes;
	struct signalfd_siginfo sig;
};

struct conn {
	struct server *srv;
	int fd;
	size_t len, off; /* bytes in buf, bytes of them sent */
	char buf[BUF_SIZE];
};

static void arm_accept(struct server *s);
static void arm_recv(struct conn *c);

static void maybe_stop(struct server *s)
{
	if (s->max_conns && s->closed >= s->max_conns && s->active == 0) {
		s->stopping = true;
		exe_io_stop(s->io);
	}
}

static void conn_close(struct conn *c)
{
	struct server *s = c->srv;

	close(c->fd);
	free(c);
	s->active--;
	s->closed++;
	maybe_stop(s);
}

static int send_done(struct exe_future *f, void *arg)
{
	struct conn *c = arg;
	int64_t res = exe_io_res(f, 0);

	/* Our reference, taken at submit: the io context keeps its own until
	 * this callback has returned. */
	exe_future_unref(f);
	if (res <= 0) {
		conn_close(c);
		return 0;
	}
	c->off += (size_t)res;
	if (c->off < c->len) {
		/* A short send: the socket buffer was full. Send the rest. */
		struct exe_future *nf;

		if (exe_io_send(c->srv->io, c->fd, c->buf + c->off, c->len - c->off, 0, &nf) == 0)
			exe_future_on_done(nf, send_done, c);
		else
			conn_close(c);
		return 0;
	}
	arm_recv(c);
	return 0;
}

static int recv_done(struct exe_future *f, void *arg)
{
	struct conn *c = arg;
	struct server *s = c->srv;
	int64_t res = exe_io_res(f, 0);
	struct exe_future *nf;

	exe_future_unref(f);
	if (res <= 0 || s->stopping) { /* 0: the client closed; < 0: an error or a cancel */
		conn_close(c);
		return 0;
	}
	for (int64_t i = 0; i < res; i++)
		c->buf[i] = (char)toupper((unsigned char)c->buf[i]);
	c->len = (size_t)res;
	c->off = 0;
	s->messages++;
	s->bytes += (uint64_t)res;
	if (exe_io_send(s->io, c->fd, c->buf, c->len, 0, &nf) == 0)
		exe_future_on_done(nf, send_done, c);
	else
		conn_close(c);
	return 0;
}

static void arm_recv(struct conn *c)
{
	struct exe_future *f;

	if (exe_io_recv(c->srv->io, c->fd, c->buf, sizeof(c->buf), 0, &f) == 0)
		exe_future_on_done(f, recv_done, c);
	else
		conn_close(c);
}

static int rearm_accept(void *arg)
{
	arm_accept(arg);
	return 0;
}

static int accept_done(struct exe_future *f, void *arg)
{
	struct server *s = arg;
	int64_t res = exe_io_res(f, 0);
	struct conn *c;

	exe_future_unref(f);
	if (s->stopping) {
		if (res >= 0)
			close((int)res);
		return 0;
	}
	if (res < 0) {
		/* Out of descriptors (EMFILE) or memory: back off a little
		 * rather than spin on a failing accept. */
		if (s->accept_errors++ == 0)
			fprintf(stderr, "echo_server: accept: %s\n", exe_strerror((int)res));
		exe_call_later(s->io, 10 * EXE_NS_PER_MS, rearm_accept, s, NULL);
		return 0;
	}
	c = malloc(sizeof(*c));
	if (!c) {
		close((int)res);
	} else {
		*c = (struct conn){.srv = s, .fd = (int)res};
		s->accepted++;
		if (++s->active > s->peak)
			s->peak = s->active;
		arm_recv(c);
	}
	arm_accept(s);
	return 0;
}

static void arm_accept(struct server *s)
{
	struct exe_future *f;

	if (exe_io_accept(s->io, s->lfd, NULL, NULL, SOCK_CLOEXEC, &f) == 0)
		exe_future_on_done(f, accept_done, s);
}

static int signal_done(struct exe_future *f, void *arg)
{
	struct server *s = arg;

	if (exe_io_res(f, 0) == (int64_t)sizeof(s->sig))
		printf("echo_server: signal %u, stopping\n", s->sig.ssi_signo);
	exe_future_unref(f);
	s->stopping = true;
	exe_io_stop(s->io);
	return 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--port N] [--host ADDR] [--max-conns N] [--expect-peak N]\n", argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"host", required_argument, NULL, 'H'},
	    {"max-conns", required_argument, NULL, 'm'},
	    {"expect-peak", required_argument, NULL, 'e'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct server s = {.lfd = -1};
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t alen = sizeof(addr);
	const char *host = "127.0.0.1";
	long port = 8080, expect_peak = 0;
	struct exe_future *sf;
	sigset_t mask;
	int c, rc, sfd, one = 1;
	int64_t t0;
	char name[16] = "?";

	while ((c = getopt_long(argc, argv, "p:H:m:e:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': port = atol(optarg); break;
		case 'H': host = optarg; break;
		case 'm': s.max_conns = atol(optarg); break;
		case 'e': expect_peak = atol(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (port < 0 || port > 65535 || s.max_conns < 0 || inet_pton(AF_INET, host, &addr.sin_addr) != 1)
		usage(argv[0]);
	addr.sin_port = htons((uint16_t)port);
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* Signals arrive as a readable signalfd: the stop is one more io
	 * future, handled on the same thread as everything else. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);

	s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s.lfd < 0 || sfd < 0)
		return perror("socket"), 1;
	setsockopt(s.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* A deep backlog: the client opens its connections all at once. */
	if (bind(s.lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(s.lfd, 4096) ||
	    getsockname(s.lfd, (struct sockaddr *)&addr, &alen))
		return perror("bind/listen"), 1;

	rc = exe_io_create(&s.io, &(struct exe_io_opts){.manual = true, .entries = 1024});
	if (rc) {
		fprintf(stderr, "io: %s\n", exe_strerror(rc));
		return 1;
	}
	printf("echo_server: listening on %s:%u (io backend %s, one thread)\n", host, ntohs(addr.sin_port),
	       exe_io_backend(s.io));
	exe_io_read(s.io, sfd, &s.sig, sizeof(s.sig), -1, &sf);
	exe_future_on_done(sf, signal_done, &s);
	arm_accept(&s);

	t0 = exe_now_ns();
	exe_io_run(s.io); /* every callback above runs here, on this thread */
	pthread_getname_np(pthread_self(), name, sizeof(name));
	/* Destroy cancels the pending accept, recvs and the signal read; their
	 * callbacks see s.stopping and close what they hold. */
	s.stopping = true;
	exe_io_destroy(s.io);
	close(s.lfd);
	close(sfd);

	printf("echo_server: %.2f s on thread \"%s\" (pid %d): %ld connections, peak %ld at once, "
	       "%ld messages, %lu bytes echoed\n",
	       (double)(exe_now_ns() - t0) / 1e9, name, (int)getpid(), s.accepted, s.peak, s.messages,
	       (unsigned long)s.bytes);
	if (expect_peak && s.peak < expect_peak) {
		printf("echo_server: FAILED: peak %ld < expected %ld\n", s.peak, expect_peak);
		return 1;
	}
	return 0;
}
