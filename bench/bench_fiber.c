/*
 * bench_fiber - what fibers cost, next to what they are built from and
 * what they replace:
 *
 *   switch      a fiber's yield (fiber -> hub -> fiber) and a promise
 *               handed between two fibers (park, wake, switch), next to
 *               Boost.Context's raw jump_fcontext round trip; awaiting a
 *               future that is already finished (no switch at all).
 *   spawn       spawn + finish of an empty fiber (pooled stacks), from a
 *               fiber (the hub's own list) and from another thread.
 *   memory      resident memory per idle fiber, 10 000 of them parked.
 *   echo-cN     N loopback TCP connections, 64-byte ping-pong from one
 *               epoll client thread for a fixed time; the server is a
 *               fiber per connection (a recv/send loop), the io-context
 *               callback server (done callbacks), or a one-thread epoll
 *               server. ops = echoed messages per second.
 *
 * Every figure is the median of --runs runs (5 by default); the ratios
 * come from the same run. Targets (from the design): switch <= 3x raw
 * jump_fcontext, spawn + finish <= 1 us, <= 16 KiB resident per idle fiber,
 * fiber echo >= 0.9x the callback server at 1000 connections.
 *
 * Run: bench_fiber [--quick] [--runs N] [--json]
 */
#include <executor.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define MSG 64

/* Boost.Context, as the library declares it (fiber/fiber_internal.h). */
typedef void *fctx_t;
struct transfer {
	fctx_t fctx;
	void *data;
};
struct transfer jump_fcontext(fctx_t const to, void *vp);
fctx_t make_fcontext(void *sp, size_t size, void (*fn)(struct transfer));

static void usage(FILE *out)
{
	fprintf(out, "usage: bench_fiber [--quick] [--runs N] [--json]\n");
}

static struct exe_io *make_io(void)
{
	struct exe_io *io;
	int rc = exe_io_create(&io, NULL);

	if (rc)
		bench_die("exe_io_create: %s", exe_strerror(rc));
	return io;
}

static void join_ok(struct exe_future *f)
{
	int rc = exe_future_result(f, NULL, 60 * EXE_NS_PER_S);

	if (rc)
		bench_die("fiber: %s", exe_strerror(rc));
	exe_future_unref(f);
}

static void report(const char *system, const char *workload, double value, const char *unit)
{
	if (bench_opt.json)
		printf("{\"system\":\"%s\",\"workload\":\"%s\",\"value\":%.3f,\"unit\":\"%s\"}\n", system,
		       workload, value, unit);
	else
		printf("  %-22s %-14s %12.2f %s\n", system, workload, value, unit);
}

/* ---- switch ---- */

static void raw_entry(struct transfer t)
{
	for (;;)
		t = jump_fcontext(t.fctx, NULL);
}

/* ns per round trip there and back. */
static double raw_jump(long n)
{
	static char stack[64 * 1024] __attribute__((aligned(64)));
	fctx_t c = make_fcontext(stack + sizeof(stack), sizeof(stack), raw_entry);
	int64_t t0;

	for (long i = 0; i < 1000; i++)
		c = jump_fcontext(c, NULL).fctx;
	t0 = bench_now_ns();
	for (long i = 0; i < n; i++)
		c = jump_fcontext(c, NULL).fctx;
	return (double)(bench_now_ns() - t0) / (double)n;
}

struct loop_arg {
	long n;
	double ns;
	struct exe_future *a, *b; /* ping-pong promises */
	struct exe_future *done_promise;
};

static int yielder(void *arg, void **result)
{
	struct loop_arg *l = arg;
	int64_t t0;

	(void)result;
	for (long i = 0; i < 1000; i++)
		exe_fiber_yield();
	t0 = bench_now_ns();
	for (long i = 0; i < l->n; i++)
		exe_fiber_yield();
	l->ns = (double)(bench_now_ns() - t0) / (double)l->n;
	return 0;
}

static int await_finished(void *arg, void **result)
{
	struct loop_arg *l = arg;
	struct exe_future *f;
	int64_t t0;
	long sink = 0;

	(void)result;
	exe_future_create(&f);
	exe_future_set_result(f, (void *)1, NULL);
	t0 = bench_now_ns();
	for (long i = 0; i < l->n; i++) {
		void *v;

		exe_future_result(f, &v, EXE_FOREVER);
		sink += (long)(intptr_t)v;
	}
	l->ns = (double)(bench_now_ns() - t0) / (double)l->n;
	exe_future_unref(f);
	return sink == l->n ? 0 : -EPROTO;
}

/* Ping-pong: two fibers hand a fresh promise back and forth, each waiting
 * on it (park, done-callback wake, switch). */
struct pingpong {
	long n;
	struct exe_queue *to_b, *to_a;
	double ns;
};

static int ping(void *arg, void **result)
{
	struct pingpong *p = arg;
	int64_t t0 = bench_now_ns();
	void *item;

	(void)result;
	for (long i = 0; i < p->n; i++) {
		struct exe_future *f;

		exe_future_create(&f);
		exe_queue_put(p->to_b, f, EXE_FOREVER);
		exe_future_wait(f, EXE_FOREVER); /* b sets it */
		exe_future_unref(f);
	}
	exe_queue_put(p->to_b, NULL, EXE_FOREVER);
	exe_queue_get(p->to_a, &item, EXE_FOREVER);
	p->ns = (double)(bench_now_ns() - t0) / (double)p->n;
	return 0;
}

static int pong(void *arg, void **result)
{
	struct pingpong *p = arg;
	void *item;

	(void)result;
	while (exe_queue_get(p->to_b, &item, EXE_FOREVER) == 0 && item)
		exe_future_set_result(item, NULL, NULL);
	exe_queue_put(p->to_a, NULL, EXE_FOREVER);
	return 0;
}

static void bench_switch(void)
{
	long n = (long)bench_scaled(2000000);
	double raw[BENCH_MAX_RUNS], yl[BENCH_MAX_RUNS], aw[BENCH_MAX_RUNS], pp[BENCH_MAX_RUNS];
	double ryl[BENCH_MAX_RUNS], raw_aw[BENCH_MAX_RUNS];
	double mraw, myl, maw, mpp, ratio;
	struct exe_io *io = make_io();

	for (int r = 0; r < bench_opt.runs; r++) {
		struct loop_arg l = {.n = n};
		struct pingpong p = {.n = n / 10};
		struct exe_future *f, *g;

		raw[r] = raw_jump(n);
		exe_fiber_spawn(io, yielder, &l, NULL, &f);
		join_ok(f);
		yl[r] = l.ns;
		exe_fiber_spawn(io, await_finished, &l, NULL, &f);
		join_ok(f);
		aw[r] = l.ns;
		exe_queue_create(&p.to_b, NULL);
		exe_queue_create(&p.to_a, NULL);
		exe_fiber_spawn(io, ping, &p, NULL, &f);
		exe_fiber_spawn(io, pong, &p, NULL, &g);
		join_ok(f);
		join_ok(g);
		exe_queue_destroy(p.to_b);
		exe_queue_destroy(p.to_a);
		pp[r] = p.ns;
	}
	exe_io_destroy(io);
	/* Ratios run by run (raw and fiber measured back to back), then
	 * their median: load that drifts between runs cancels out. */
	for (int r = 0; r < bench_opt.runs; r++) {
		ryl[r] = yl[r] / raw[r];
		raw_aw[r] = aw[r] / raw[r];
	}
	mraw = bench_median(raw, bench_opt.runs);
	myl = bench_median(yl, bench_opt.runs);
	maw = bench_median(aw, bench_opt.runs);
	mpp = bench_median(pp, bench_opt.runs);
	report("jump_fcontext", "round-trip", mraw, "ns");
	report("fiber", "yield", myl, "ns");
	report("fiber", "await-finished", maw, "ns");
	report("fiber", "promise-pingpong", mpp, "ns per hand-off (2 switches, queue + future)");
	ratio = bench_median(ryl, bench_opt.runs);
	report("fiber", "yield/raw", ratio, "x");
	if (!bench_opt.json) {
		printf("  yield / raw round trip: %.2fx (median of per-run ratios; target <= 3x)  %s\n",
		       ratio, ratio <= 3 ? "ok" : "MISS");
		ratio = bench_median(raw_aw, bench_opt.runs);
		printf("  await of a finished future / raw round trip: %.2fx (target <= 3x)  %s\n", ratio,
		       ratio <= 3 ? "ok" : "MISS");
	}
}

/* ---- spawn + finish ---- */

static _Atomic long finished;

static int empty(void *arg, void **result)
{
	(void)arg, (void)result;
	atomic_fetch_add_explicit(&finished, 1, memory_order_relaxed);
	return 0;
}

static int local_spawner(void *arg, void **result)
{
	struct loop_arg *l = arg;
	int64_t t0;

	(void)result;
	atomic_store(&finished, 0);
	t0 = bench_now_ns();
	for (long i = 0; i < l->n; i++) {
		if (exe_fiber_spawn(exe_fiber_io(), empty, NULL, NULL, NULL))
			return -ENOMEM;
		if (i % 64 == 63)
			exe_fiber_yield(); /* let them run and be reaped */
	}
	while (atomic_load_explicit(&finished, memory_order_relaxed) < l->n)
		exe_fiber_yield();
	l->ns = (double)(bench_now_ns() - t0) / (double)l->n;
	return 0;
}

static double remote_spawns(struct exe_io *io, long n)
{
	struct exe_future *last;
	int64_t t0;

	atomic_store(&finished, 0);
	t0 = bench_now_ns();
	for (long i = 0; i < n - 1; i++)
		if (exe_fiber_spawn(io, empty, NULL, NULL, NULL))
			bench_die("spawn");
	exe_fiber_spawn(io, empty, NULL, NULL, &last);
	while (atomic_load_explicit(&finished, memory_order_relaxed) < n)
		exe_future_wait(last, EXE_FOREVER);
	exe_future_unref(last);
	return (double)(bench_now_ns() - t0) / (double)n;
}

static void bench_spawn(void)
{
	long n = (long)bench_scaled(500000);
	double loc[BENCH_MAX_RUNS], rem[BENCH_MAX_RUNS], m;
	struct exe_io *io = make_io();

	for (int r = 0; r < bench_opt.runs; r++) {
		struct loop_arg l = {.n = n};
		struct exe_future *f;

		exe_fiber_spawn(io, local_spawner, &l, NULL, &f);
		join_ok(f);
		loc[r] = l.ns;
		rem[r] = remote_spawns(io, n);
	}
	exe_io_destroy(io);
	m = bench_median(loc, bench_opt.runs);
	report("fiber", "spawn+finish", m, "ns (from a fiber)");
	report("fiber", "spawn+finish-remote", bench_median(rem, bench_opt.runs), "ns (from another thread)");
	if (!bench_opt.json)
		printf("  spawn + finish: %.0f ns (target <= 1000 ns)  %s\n", m, m <= 1000 ? "ok" : "MISS");
}

/* ---- memory ---- */

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, rss = 0;

	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = -1;
	fclose(f);
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static _Atomic long parked;

static int idle(void *arg, void **result)
{
	(void)result;
	atomic_fetch_add_explicit(&parked, 1, memory_order_relaxed);
	return exe_future_wait(arg, EXE_FOREVER);
}

static void bench_memory(void)
{
	const long n = 10000;
	double per[BENCH_MAX_RUNS], m;

	for (int r = 0; r < bench_opt.runs; r++) {
		struct exe_io *io = make_io();
		struct exe_future *gate, **fs = bench_calloc((size_t)n, sizeof(*fs));
		long before, after;

		exe_future_create(&gate);
		atomic_store(&parked, 0);
		before = rss_kib();
		for (long i = 0; i < n; i++)
			if (exe_fiber_spawn(io, idle, gate, NULL, &fs[i]))
				bench_die("spawn");
		while (atomic_load(&parked) < n)
			bench_sleep_ns(EXE_NS_PER_MS);
		bench_sleep_ns(10 * EXE_NS_PER_MS); /* the last ones park */
		after = rss_kib();
		exe_future_set_result(gate, NULL, NULL);
		for (long i = 0; i < n; i++)
			join_ok(fs[i]);
		free(fs);
		exe_future_unref(gate);
		exe_io_destroy(io);
		per[r] = (double)(after - before) / (double)n;
	}
	m = bench_median(per, bench_opt.runs);
	report("fiber", "rss-idle-10k", m, "KiB per idle fiber");
	if (!bench_opt.json)
		printf("  resident per idle fiber: %.2f KiB (target <= 16 KiB)  %s\n", m,
		       m <= 16 ? "ok" : "MISS");
}

/* ---- echo ---- */

/* The fiber server: gevent's talk() loop. */
static int talk(void *arg, void **result)
{
	int fd = (int)(intptr_t)arg;
	char buf[MSG];

	(void)result;
	while (exe_fiber_recv(fd, buf, MSG, MSG_WAITALL) == MSG)
		if (exe_fiber_send(fd, buf, MSG, 0) != MSG)
			break;
	return 0;
}

/* The callback server: recv -> send -> recv ... as done callbacks. */
struct conn {
	int fd;
	char buf[MSG];
	struct exe_io *io;
};

static int cb_recv_done(struct exe_future *f, void *arg);

static void cb_arm(struct conn *c)
{
	struct exe_future *f;

	if (exe_io_recv(c->io, c->fd, c->buf, MSG, MSG_WAITALL, &f) == 0) {
		exe_future_on_done(f, cb_recv_done, c);
		exe_future_unref(f);
	}
}

static int cb_send_done(struct exe_future *f, void *arg)
{
	if (exe_io_res(f, 0) == MSG)
		cb_arm(arg);
	return 0;
}

static int cb_recv_done(struct exe_future *f, void *arg)
{
	struct conn *c = arg;
	struct exe_future *g;

	if (exe_io_res(f, 0) != MSG)
		return 0;
	if (exe_io_send(c->io, c->fd, c->buf, MSG, 0, &g) == 0) {
		exe_future_on_done(g, cb_send_done, c);
		exe_future_unref(g);
	}
	return 0;
}

struct epoll_server {
	int n;
	int *fds;
	_Atomic int stop;
};

static void *epoll_server_main(void *arg)
{
	struct epoll_server *s = arg;
	struct epoll_event ev[256];
	int ep = epoll_create1(0);
	char buf[MSG];

	for (int i = 0; i < s->n; i++) {
		struct epoll_event e = {.events = EPOLLIN, .data.fd = s->fds[i]};

		epoll_ctl(ep, EPOLL_CTL_ADD, s->fds[i], &e);
	}
	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		int n = epoll_wait(ep, ev, 256, 10);

		for (int k = 0; k < n; k++)
			if (recv(ev[k].data.fd, buf, MSG, MSG_WAITALL) == MSG)
				send(ev[k].data.fd, buf, MSG, MSG_NOSIGNAL);
	}
	close(ep);
	return NULL;
}

static long echo_client(int *cfd, int n, double secs)
{
	struct epoll_event ev[256];
	int ep = epoll_create1(0);
	char msg[MSG] = "ping", buf[MSG];
	long echoes = 0;
	int64_t end;

	for (int i = 0; i < n; i++) {
		struct epoll_event e = {.events = EPOLLIN, .data.fd = cfd[i]};

		epoll_ctl(ep, EPOLL_CTL_ADD, cfd[i], &e);
		if (send(cfd[i], msg, MSG, MSG_NOSIGNAL) != MSG)
			bench_die("client send");
	}
	end = bench_now_ns() + (int64_t)(secs * 1e9);
	while (bench_now_ns() < end) {
		int m = epoll_wait(ep, ev, 256, 10);

		for (int k = 0; k < m; k++) {
			if (recv(ev[k].data.fd, buf, MSG, MSG_WAITALL) != MSG)
				bench_die("client recv");
			echoes++;
			send(ev[k].data.fd, msg, MSG, MSG_NOSIGNAL);
		}
	}
	close(ep);
	return echoes;
}

static void connect_pairs(int n, int *cfd, int *sfd)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 4096) ||
	    getsockname(lfd, (struct sockaddr *)&a, &len))
		bench_die("listen: %s", strerror(errno));
	for (int i = 0; i < n; i++) {
		cfd[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (cfd[i] < 0 || connect(cfd[i], (struct sockaddr *)&a, sizeof(a)))
			bench_die("connect %d: %s", i, strerror(errno));
		sfd[i] = accept(lfd, NULL, NULL);
		if (sfd[i] < 0)
			bench_die("accept: %s", strerror(errno));
		setsockopt(cfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(sfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	close(lfd);
}

enum echo_sys { ECHO_FIBER, ECHO_CALLBACK, ECHO_EPOLL, ECHO_SYSTEMS };
static const char *const echo_names[] = {"fiber", "io-callback", "epoll"};

/* Echoed messages per second. */
static double echo_run(enum echo_sys sys, int n, double secs)
{
	int *cfd = bench_calloc((size_t)n, sizeof(int)), *sfd = bench_calloc((size_t)n, sizeof(int));
	struct conn *conns = NULL;
	struct exe_io *io = NULL;
	struct epoll_server srv = {0};
	pthread_t th;
	long echoes;

	connect_pairs(n, cfd, sfd);
	if (sys == ECHO_EPOLL) {
		srv.n = n;
		srv.fds = sfd;
		pthread_create(&th, NULL, epoll_server_main, &srv);
	} else {
		io = make_io();
		conns = bench_calloc((size_t)n, sizeof(*conns));
		for (int i = 0; i < n; i++) {
			if (sys == ECHO_FIBER) {
				exe_fiber_spawn(io, talk, (void *)(intptr_t)sfd[i], NULL, NULL);
			} else {
				conns[i].fd = sfd[i];
				conns[i].io = io;
				cb_arm(&conns[i]);
			}
		}
	}
	echoes = echo_client(cfd, n, secs);
	if (sys == ECHO_EPOLL) {
		atomic_store(&srv.stop, 1);
		pthread_join(th, NULL);
	} else {
		exe_io_destroy(io); /* cancels the receives, ends the fibers */
		free(conns);
	}
	for (int i = 0; i < n; i++) {
		close(cfd[i]);
		close(sfd[i]);
	}
	free(cfd);
	free(sfd);
	return (double)echoes / secs;
}

static void bench_echo(void)
{
	static const int conns[] = {100, 1000};
	double secs = bench_opt.quick ? 0.3 : 1.0;

	for (size_t c = 0; c < 2; c++) {
		double v[ECHO_SYSTEMS][BENCH_MAX_RUNS], m[ECHO_SYSTEMS];
		char wl[24];

		snprintf(wl, sizeof(wl), "echo-c%d", conns[c]);
		/* Interleaved runs: a noisy moment hits every system alike. */
		for (int r = 0; r < bench_opt.runs; r++)
			for (int s = 0; s < ECHO_SYSTEMS; s++)
				v[s][r] = bench_only_matches(echo_names[s])
				              ? echo_run((enum echo_sys)s, conns[c], secs)
				              : 0;
		for (int s = 0; s < ECHO_SYSTEMS; s++) {
			m[s] = bench_median(v[s], bench_opt.runs);
			if (bench_only_matches(echo_names[s]))
				report(echo_names[s], wl, m[s], "echoes/s");
		}
		if (!bench_opt.json && !bench_opt.only)
			printf("  %s: fiber / io-callback %.2fx%s, fiber / epoll %.2fx\n", wl,
			       m[ECHO_FIBER] / m[ECHO_CALLBACK],
			       conns[c] == 1000
			           ? (m[ECHO_FIBER] / m[ECHO_CALLBACK] >= 0.9 ? " (target >= 0.9x) ok"
			                                                      : " (target >= 0.9x) MISS")
			           : "",
			       m[ECHO_FIBER] / m[ECHO_EPOLL]);
	}
}

int main(int argc, char **argv)
{
	struct rlimit rl;

	bench_parse_opts("bench_fiber", argc, argv, usage, NULL);
	/* 1000 connections are 2000 descriptors here. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (!bench_opt.json)
		printf("bench_fiber: %d runs per figure, medians\n", bench_opt.runs);
	if (bench_workload_matches("switch"))
		bench_switch();
	if (bench_workload_matches("spawn"))
		bench_spawn();
	if (bench_workload_matches("memory"))
		bench_memory();
	if (bench_workload_matches("echo"))
		bench_echo();
	return 0;
}
