/*
 * io_models - the teaching text's chapter on IO models, measured: one echo
 * load served five ways, each server in its own child process so its CPU
 * time can be counted:
 *
 *   blocking     one thread per connection, blocking recv()/send()
 *                (here a thread pool with one worker per connection);
 *   busy-poll    one thread, non-blocking sockets, try every socket in a
 *                loop: the text's "non-blocking IO" - it never sleeps;
 *   select       one thread, select() says which sockets are ready;
 *   epoll        one thread, epoll: like select without rescanning them all;
 *   io context   one thread, libexecutor's io context: completions instead
 *                of readiness (the text's "asynchronous IO").
 *
 * The load is the same each time: --conns connections, each sending
 * --rounds small messages one at a time and checking every upper-cased
 * answer, driven from this (parent) process with epoll.
 *
 * Run: io_models [--conns 50] [--rounds 400]
 * Exits non-zero when any model lost or garbled an echo.
 */
#include <executor.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define MSG_LEN 32
#define MAX_CONNS 500 /* select() handles descriptors below FD_SETSIZE (1024) */

static long nconns = 50, rounds = 400;

/* ---- the servers (run in a child) ---- */

/* Echo what arrived, upper-cased. Return bytes echoed, 0 closed, -1 would
 * block (non-blocking sockets) or an error. */
static ssize_t echo_once(int fd)
{
	char buf[1024];
	ssize_t n = recv(fd, buf, sizeof(buf), 0);

	if (n <= 0)
		return n == 0 ? 0 : -1;
	for (ssize_t i = 0; i < n; i++)
		buf[i] = (char)toupper((unsigned char)buf[i]);
	for (ssize_t off = 0; off < n;) {
		ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return 0;
		if (w > 0)
			off += w;
	}
	return n;
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int conn_thread(void *arg, void **result)
{
	int fd = (int)(intptr_t)arg;

	while (echo_once(fd) > 0)
		;
	close(fd);
	*result = NULL;
	return 0;
}

static int serve_blocking(int lfd)
{
	struct exe_pool *pool;
	int rc = exe_thread_pool_create(
	    &pool,
	    &(struct exe_pool_opts){.workers = (unsigned)nconns, .name = "conn", .no_caller_runs = true});

	if (rc)
		return rc;
	for (long i = 0; i < nconns; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd >= 0)
			exe_pool_submit(pool, conn_thread, (void *)(intptr_t)fd, NULL);
	}
	exe_pool_destroy(pool); /* waits until every connection ended */
	return 0;
}

static int serve_busy_poll(int lfd)
{
	int fds[MAX_CONNS], n = 0, closed = 0;

	set_nonblock(lfd);
	while (closed < nconns) {
		int fd;

		if (n < nconns && (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0)
			fds[n++] = fd;
		for (int i = 0; i < n; i++) {
			if (fds[i] >= 0 && echo_once(fds[i]) == 0) {
				close(fds[i]);
				fds[i] = -1;
				closed++;
			}
		}
	}
	return 0;
}

static int serve_select(int lfd)
{
	int fds[MAX_CONNS], n = 0, closed = 0;

	while (closed < nconns) {
		fd_set rd;
		int maxfd = lfd;

		FD_ZERO(&rd);
		if (n < nconns)
			FD_SET(lfd, &rd);
		for (int i = 0; i < n; i++) {
			if (fds[i] >= 0) {
				FD_SET(fds[i], &rd);
				maxfd = fds[i] > maxfd ? fds[i] : maxfd;
			}
		}
		if (select(maxfd + 1, &rd, NULL, NULL, NULL) < 0)
			return -errno;
		if (FD_ISSET(lfd, &rd)) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0)
				fds[n++] = fd;
		}
		for (int i = 0; i < n; i++) {
			if (fds[i] >= 0 && FD_ISSET(fds[i], &rd) && echo_once(fds[i]) <= 0) {
				close(fds[i]);
				fds[i] = -1;
				closed++;
			}
		}
	}
	return 0;
}

static int serve_epoll(int lfd)
{
	struct epoll_event evs[64], ev = {.events = EPOLLIN, .data.fd = lfd};
	int ep = epoll_create1(EPOLL_CLOEXEC), closed = 0;

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev))
		return -errno;
	while (closed < nconns) {
		int n = epoll_wait(ep, evs, 64, -1);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == lfd) {
				fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
				ev = (struct epoll_event){.events = EPOLLIN, .data.fd = fd};
				if (fd >= 0)
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
			} else if (echo_once(fd) <= 0) {
				close(fd); /* also leaves the epoll set */
				closed++;
			}
		}
	}
	close(ep);
	return 0;
}

/* The io context server: the same chain as echo_server.c, in brief. */
struct io_srv {
	struct exe_io *io;
	int lfd;
	long accepted, closed;
};

struct io_conn {
	struct io_srv *s;
	int fd;
	size_t len, off;
	char buf[1024];
};

static void io_recv(struct io_conn *c);

static void io_close(struct io_conn *c)
{
	close(c->fd);
	if (++c->s->closed == nconns)
		exe_io_stop(c->s->io);
	free(c);
}

static int io_sent(struct exe_future *f, void *arg)
{
	struct io_conn *c = arg;
	int64_t res = exe_io_res(f, 0);
	struct exe_future *nf;

	exe_future_unref(f);
	if (res <= 0)
		return io_close(c), 0;
	c->off += (size_t)res;
	if (c->off < c->len) {
		if (exe_io_send(c->s->io, c->fd, c->buf + c->off, c->len - c->off, 0, &nf) == 0)
			exe_future_on_done(nf, io_sent, c);
		return 0;
	}
	io_recv(c);
	return 0;
}

static int io_got(struct exe_future *f, void *arg)
{
	struct io_conn *c = arg;
	int64_t res = exe_io_res(f, 0);
	struct exe_future *nf;

	exe_future_unref(f);
	if (res <= 0)
		return io_close(c), 0;
	for (int64_t i = 0; i < res; i++)
		c->buf[i] = (char)toupper((unsigned char)c->buf[i]);
	c->len = (size_t)res;
	c->off = 0;
	if (exe_io_send(c->s->io, c->fd, c->buf, c->len, 0, &nf) == 0)
		exe_future_on_done(nf, io_sent, c);
	return 0;
}

static void io_recv(struct io_conn *c)
{
	struct exe_future *f;

	if (exe_io_recv(c->s->io, c->fd, c->buf, sizeof(c->buf), 0, &f) == 0)
		exe_future_on_done(f, io_got, c);
}

static int io_accepted(struct exe_future *f, void *arg)
{
	struct io_srv *s = arg;
	int64_t res = exe_io_res(f, 0);
	struct io_conn *c;

	exe_future_unref(f);
	if (res < 0)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c)
		return close((int)res), 0;
	c->s = s;
	c->fd = (int)res;
	io_recv(c);
	if (++s->accepted < nconns && exe_io_accept(s->io, s->lfd, NULL, NULL, SOCK_CLOEXEC, &f) == 0)
		exe_future_on_done(f, io_accepted, s);
	return 0;
}

static int serve_io(int lfd)
{
	struct io_srv s = {.lfd = lfd};
	struct exe_future *f;
	int rc = exe_io_create(&s.io, &(struct exe_io_opts){.manual = true});

	if (rc)
		return rc;
	if (exe_io_accept(s.io, lfd, NULL, NULL, SOCK_CLOEXEC, &f) == 0)
		exe_future_on_done(f, io_accepted, &s);
	exe_io_run(s.io);
	exe_io_destroy(s.io);
	return 0;
}

struct model {
	const char *name;
	int (*serve)(int lfd);
};

static const struct model models[] = {
    {"blocking (thread per conn)", serve_blocking},
    {"non-blocking busy polling", serve_busy_poll},
    {"select", serve_select},
    {"epoll", serve_epoll},
    {"io context (io_uring)", serve_io},
};

struct child_arg {
	int model, lfd, report_fd;
};

struct cpu_report {
	double user, sys;
	int rc;
};

/* The child: serve until every connection has closed, then report the CPU
 * time this process used (all its threads) through the pipe. */
static int server_child(const void *arg, size_t len)
{
	const struct child_arg *a = arg;
	struct cpu_report r;
	struct rusage ru;

	(void)len;
	r.rc = models[a->model].serve(a->lfd);
	getrusage(RUSAGE_SELF, &ru);
	r.user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
	r.sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	return write(a->report_fd, &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 1;
}

/* ---- the load (this process, one thread, epoll) ---- */

struct lconn {
	int fd;
	long round;
	size_t sent, got;
	char msg[MSG_LEN], want[MSG_LEN], reply[MSG_LEN];
};

static void make_msg(struct lconn *c, long id)
{
	char tmp[MSG_LEN + 1];

	snprintf(tmp, sizeof(tmp), "conn %04ld round %06ld hello....", id, c->round);
	memcpy(c->msg, tmp, MSG_LEN);
	for (int i = 0; i < MSG_LEN; i++)
		c->want[i] = (char)toupper((unsigned char)c->msg[i]);
	c->sent = c->got = 0;
}

/* Drive the load; return the number of correct round trips. */
static long run_load(const struct sockaddr_in *addr)
{
	struct lconn *cs = calloc((size_t)nconns, sizeof(*cs));
	struct epoll_event evs[64];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	long done = 0, ok = 0, total = nconns * rounds;
	int64_t deadline = exe_now_ns() + 120 * EXE_NS_PER_S;

	if (!cs || ep < 0)
		return -1;
	for (long i = 0; i < nconns; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
		int one = 1;

		cs[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(cs[i].fd, (const struct sockaddr *)addr, sizeof(*addr)))
			return -1;
		set_nonblock(cs[i].fd);
		epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
		make_msg(&cs[i], i);
		/* 32 bytes into an empty socket buffer: sent at once. */
		cs[i].sent = (size_t)send(cs[i].fd, cs[i].msg, MSG_LEN, MSG_NOSIGNAL);
	}
	while (done < total && exe_now_ns() < deadline) {
		int n = epoll_wait(ep, evs, 64, 1000);

		for (int k = 0; k < n; k++) {
			long i = (long)evs[k].data.u64;
			struct lconn *c = &cs[i];
			ssize_t got = recv(c->fd, c->reply + c->got, MSG_LEN - c->got, 0);

			if (got <= 0)
				continue;
			c->got += (size_t)got;
			if (c->got < MSG_LEN)
				continue;
			done++;
			ok += memcmp(c->reply, c->want, MSG_LEN) == 0;
			if (++c->round < rounds) {
				make_msg(c, i);
				c->sent = (size_t)send(c->fd, c->msg, MSG_LEN, MSG_NOSIGNAL);
			}
		}
	}
	for (long i = 0; i < nconns; i++)
		close(cs[i].fd);
	close(ep);
	free(cs);
	return ok;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--conns N (1..%d)] [--rounds N]\n", argv0, MAX_CONNS);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"conns", required_argument, NULL, 'c'},
	    {"rounds", required_argument, NULL, 'r'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	int nmodels = (int)(sizeof(models) / sizeof(models[0]));
	double wall[8], cpu[8];
	long okc[8];
	int c, bad = 0;

	while ((c = getopt_long(argc, argv, "c:r:h", longopts, NULL)) != -1) {
		if (c == 'c')
			nconns = atol(optarg);
		else if (c == 'r')
			rounds = atol(optarg);
		else
			usage(argv[0]);
	}
	if (nconns < 1 || nconns > MAX_CONNS || rounds < 1 || rounds > 1000000)
		usage(argv[0]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("echo load: %ld connections x %ld round trips of %d bytes, per model\n", nconns, rounds,
	       MSG_LEN);

	for (int m = 0; m < nmodels; m++) {
		struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t alen = sizeof(addr);
		struct cpu_report r = {.rc = -1};
		struct child_arg a = {.model = m};
		struct exe_process *p;
		int pfd[2], one = 1;
		int64_t t0;

		printf("  %-28s ...", models[m].name), fflush(stdout);
		a.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		setsockopt(a.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (a.lfd < 0 || bind(a.lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(a.lfd, 1024) ||
		    getsockname(a.lfd, (struct sockaddr *)&addr, &alen) || pipe2(pfd, O_CLOEXEC))
			return perror("socket"), 1;
		a.report_fd = pfd[1];
		/* This process has no threads: the fork copies nothing held. */
		if (exe_process_start(&p, server_child, &a, sizeof(a), NULL))
			return 1;
		close(a.lfd);
		close(pfd[1]);
		t0 = exe_now_ns();
		okc[m] = run_load(&addr);
		wall[m] = (double)(exe_now_ns() - t0) / 1e9;
		if (read(pfd[0], &r, sizeof(r)) != (ssize_t)sizeof(r) ||
		    exe_process_join(p, 30 * EXE_NS_PER_S) != 0)
			r.rc = -1;
		exe_process_destroy(p);
		close(pfd[0]);
		cpu[m] = r.user + r.sys;
		printf(" %.2f s\n", wall[m]);
		if (r.rc != 0 || okc[m] != nconns * rounds) {
			printf("  !! %s: %ld of %ld echoes correct (server rc %d)\n", models[m].name, okc[m],
			       nconns * rounds, r.rc);
			bad = 1;
		}
	}

	printf("\nmodel                          round trips/s   server CPU s   CPU per 1000 rt (ms)\n");
	for (int m = 0; m < nmodels; m++)
		printf("  %-28s %13.0f   %12.3f   %20.3f\n", models[m].name,
		       (double)(nconns * rounds) / wall[m], cpu[m], cpu[m] * 1e6 / (double)(nconns * rounds));
	printf("Busy polling burns a core even while it waits; select rescans every socket each time;\n"
	       "epoll and the io context only touch ready (or completed) sockets; threads pay a stack\n"
	       "and a context switch per connection.\n");
	printf("%s\n", bad ? "FAILED" : "OK: every model echoed every message correctly");
	return bad;
}
