/*
 * fiber_echo_server - the teaching text's gevent echo server, written as
 * the sequential code it is in Python: one fiber per connection running a
 * plain talk() loop,
 *
 *	def talk(conn):                          static int talk(...)
 *	    while True:                          {
 *	        data = conn.recv(1024)               while ((n = exe_fiber_recv(fd, buf, 1024, 0)) > 0)
 *	        if len(data) == 0: break                 exe_fiber_send(fd, upper(buf), n, 0);
 *	        conn.send(data.upper())              close(fd);
 *	    conn.close()                         }
 *
 * and a server() fiber that accepts and spawns a talk() fiber per client.
 * Every recv/send/accept switches to the other fibers while it waits, so
 * one thread serves thousands of connections (compare echo_server.c: the
 * same server as a chain of done callbacks).
 *
 * With --threads N it runs N io contexts, each with its own thread, its own
 * listening socket (SO_REUSEPORT: the kernel spreads new connections over
 * them) and its own fibers: every core serves.
 *
 * Run: fiber_echo_server [--port 8080] [--host 127.0.0.1] [--threads 1]
 *      [--expect-peak N]
 *   --port 0 picks a free port; the first line printed says which.
 *   --expect-peak N exits non-zero unless N connections were open at once.
 * Stop it with Ctrl-C or SIGTERM: it prints what it served.
 * Try it with echo_client (it checks every answer), or `nc 127.0.0.1 8080`.
 */
#include <executor.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_THREADS 64

/* Shared by the contexts' threads: atomics. */
static _Atomic long accepted, active, peak, messages, accept_errors;
static _Atomic uint64_t bytes;

struct context {
	struct exe_io *io;
	int lfd;
	struct exe_future *server;
	long accepted; /* by this context's server fiber only */
};

static int talk(void *arg, void **result)
{
	int fd = (int)(intptr_t)arg;
	char buf[1024];
	int64_t n;

	(void)result;
	while ((n = exe_fiber_recv(fd, buf, sizeof(buf), 0)) > 0) {
		for (int64_t i = 0; i < n; i++)
			buf[i] = (char)toupper((unsigned char)buf[i]);
		for (int64_t off = 0, sent; off < n; off += sent) {
			sent = exe_fiber_send(fd, buf + off, (size_t)(n - off), 0);
			if (sent <= 0)
				goto out;
		}
		atomic_fetch_add_explicit(&messages, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&bytes, (uint64_t)n, memory_order_relaxed);
	}
out:
	close(fd);
	atomic_fetch_sub_explicit(&active, 1, memory_order_relaxed);
	return 0;
}

static void count_open(void)
{
	long now = atomic_fetch_add_explicit(&active, 1, memory_order_relaxed) + 1;
	long p = atomic_load_explicit(&peak, memory_order_relaxed);

	while (now > p && !atomic_compare_exchange_weak_explicit(&peak, &p, now, memory_order_relaxed,
	                                                         memory_order_relaxed))
		;
}

static int server(void *arg, void **result)
{
	struct context *c = arg;

	(void)result;
	for (;;) {
		int fd = exe_fiber_accept(c->lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd == -ECANCELED)
			return 0;
		if (fd < 0) {
			/* Out of descriptors or memory: back off a little
			 * rather than spin on a failing accept. */
			if (atomic_fetch_add(&accept_errors, 1) == 0)
				fprintf(stderr, "fiber_echo_server: accept: %s\n", exe_strerror(fd));
			if (exe_fiber_sleep(10 * EXE_NS_PER_MS) == -ECANCELED)
				return 0;
			continue;
		}
		atomic_fetch_add_explicit(&accepted, 1, memory_order_relaxed);
		c->accepted++;
		count_open();
		/* No future: nobody joins a connection's fiber. */
		if (exe_fiber_spawn(exe_fiber_io(), talk, (void *)(intptr_t)fd, NULL, NULL)) {
			close(fd);
			atomic_fetch_sub_explicit(&active, 1, memory_order_relaxed);
		}
	}
}

static int listen_on(const struct sockaddr_in *addr, struct sockaddr_in *bound)
{
	socklen_t alen = sizeof(*bound);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	/* A deep backlog: the client opens its connections all at once. */
	if (bind(fd, (const struct sockaddr *)addr, sizeof(*addr)) || listen(fd, 4096) ||
	    getsockname(fd, (struct sockaddr *)bound, &alen)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--port N] [--host ADDR] [--threads N] [--expect-peak N]\n", argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"port", required_argument, NULL, 'p'},    {"host", required_argument, NULL, 'H'},
	    {"threads", required_argument, NULL, 't'}, {"expect-peak", required_argument, NULL, 'e'},
	    {"help", no_argument, NULL, 'h'},          {0},
	};
	struct context ctx[MAX_THREADS] = {0};
	struct sockaddr_in addr = {.sin_family = AF_INET}, bound;
	struct signalfd_siginfo si;
	const char *host = "127.0.0.1";
	long port = 8080, threads = 1, expect_peak = 0;
	int c, rc, sfd;
	sigset_t mask;
	int64_t t0;

	while ((c = getopt_long(argc, argv, "p:H:t:e:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': port = atol(optarg); break;
		case 'H': host = optarg; break;
		case 't': threads = atol(optarg); break;
		case 'e': expect_peak = atol(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (port < 0 || port > 65535 || threads < 1 || threads > MAX_THREADS ||
	    inet_pton(AF_INET, host, &addr.sin_addr) != 1)
		usage(argv[0]);
	addr.sin_port = htons((uint16_t)port);
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* SIGINT/SIGTERM arrive on a signalfd the main thread reads. Blocked
	 * before any io thread starts, so they inherit the mask. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0)
		return perror("signalfd"), 1;

	for (long i = 0; i < threads; i++) {
		/* The first bind picks the port (with --port 0); the others
		 * share it through SO_REUSEPORT. */
		ctx[i].lfd = listen_on(&addr, &bound);
		if (ctx[i].lfd < 0)
			return perror("bind/listen"), 1;
		addr.sin_port = bound.sin_port;
		rc = exe_io_create(&ctx[i].io, &(struct exe_io_opts){.entries = 1024});
		if (rc == 0)
			rc = exe_fiber_spawn(ctx[i].io, server, &ctx[i],
			                     &(struct exe_fiber_opts){.name = "server"}, &ctx[i].server);
		if (rc) {
			fprintf(stderr, "io: %s\n", exe_strerror(rc));
			return 1;
		}
	}
	printf("fiber_echo_server: listening on %s:%u (io backend %s, %ld thread%s, one fiber per "
	       "connection)\n",
	       host, ntohs(addr.sin_port), exe_io_backend(ctx[0].io), threads, threads > 1 ? "s" : "");

	t0 = exe_now_ns();
	while (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
		if (errno != EINTR)
			break;
	printf("fiber_echo_server: signal %u, stopping\n", si.ssi_signo);
	/* Destroy cancels every fiber: accept and recv return -ECANCELED, the
	 * loops end, talk() closes its connection. */
	for (long i = 0; i < threads; i++) {
		exe_io_destroy(ctx[i].io);
		exe_future_unref(ctx[i].server);
		close(ctx[i].lfd);
	}
	close(sfd);

	if (threads > 1) {
		printf("fiber_echo_server: connections per thread:");
		for (long i = 0; i < threads; i++)
			printf(" %ld", ctx[i].accepted);
		printf("\n");
	}
	printf("fiber_echo_server: %.2f s, %ld thread%s (pid %d): %ld connections, peak %ld at once, "
	       "%ld messages, %lu bytes echoed\n",
	       (double)(exe_now_ns() - t0) / 1e9, threads, threads > 1 ? "s" : "", (int)getpid(),
	       atomic_load(&accepted), atomic_load(&peak), atomic_load(&messages),
	       (unsigned long)atomic_load(&bytes));
	if (expect_peak && atomic_load(&peak) < expect_peak) {
		printf("fiber_echo_server: FAILED: peak %ld < expected %ld\n", atomic_load(&peak),
		       expect_peak);
		return 1;
	}
	return 0;
}
