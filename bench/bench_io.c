/*
 * bench_io - what the io context costs next to raw liburing, pread on
 * threads and a hand-written epoll server.
 *
 * Systems
 *   libexecutor-uring     exe_io_* on a threaded context, io_uring backend.
 *   libexecutor-fallback  the same on the epoll + thread-pool backend.
 *   libexecutor-*-man     nop only: a manual context, driven by the thread
 *                         that submits (exe_io_run_once()), as a raw ring is:
 *                         the machinery's own cost without a thread hand-off.
 *   liburing              a raw ring driven by the benchmark thread itself
 *                         (the bench is a baseline, so it includes liburing.h).
 *   pread-Nthr            pread() on N threads (N = min(qd, 4)).
 *   epoll                 a one-thread epoll echo server (recv/send).
 *
 * Workloads
 *   nop-bN      N nops submitted, then all N waited for; ns per nop. The
 *               libexecutor rows pay a cross-thread hand-off (submitter ->
 *               io thread -> waiter) that the raw ring does not.
 *   read4k-qdN  4 KiB reads at random aligned offsets of a 64 MiB page-cached
 *               file, N in flight. libexecutor keeps N in flight from done
 *               callbacks on the io thread (each completion submits the next).
 *   timers-1M   1 000 000 call_later timers armed (ns/op = arm), then
 *               cancelled (note: cancel ns and heap bytes per pending timer).
 *   lateness    10 000 timers at random deadlines over 1 s; p50/p99 of
 *               (time fn ran - deadline).
 *   echo-cN     N loopback TCP connections, one epoll client thread sending
 *               64-byte messages ping-pong on every connection for 1 s; the
 *               server is the system. ns/op = per echoed message.
 *
 * Every figure is the median of --runs runs (5; 1 with --quick). --json
 * prints one object per line: {"system","workload","ops","seconds",
 * "ns_per_op","ops_per_s","p50_ns","p99_ns"}. Targets are checked in the
 * summary; a MISS is reported, never fatal. On a shared 2-core machine
 * background load shows in every figure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <executor.h>

#include "harness.h"

#define FILE_SIZE (64u << 20)
#define BLOCK 4096u
#define MSG 64
#define MAX_RUNS 9

static struct {
	int runs;
	bool json;
	bool quick;
} opt = { 5, false, false };

struct result {
	char system[32];
	char workload[24];
	double ops, seconds, ns, p50, p99;
	bool lat;
	char note[96];
};

static struct result results[64];
static int nresults;

static void add(const char *sys, const char *wl, double ops, double seconds, const char *note)
{
	struct result *r = &results[nresults++];

	snprintf(r->system, sizeof(r->system), "%s", sys);
	snprintf(r->workload, sizeof(r->workload), "%s", wl);
	r->ops = ops;
	r->seconds = seconds;
	r->ns = seconds * 1e9 / ops;
	snprintf(r->note, sizeof(r->note), "%s", note ? note : "");
	if (opt.json) {
		printf("{\"system\":\"%s\",\"workload\":\"%s\",\"ops\":%.0f,\"seconds\":%.6f,"
		       "\"ns_per_op\":%.1f,\"ops_per_s\":%.0f,\"p50_ns\":null,\"p99_ns\":null}\n",
		       r->system, r->workload, r->ops, r->seconds, r->ns, 1e9 / r->ns);
	} else {
		printf("%-22s %-12s %10.0f %10.1f %12.0f  %s\n", r->system, r->workload, r->ops, r->ns,
		       1e9 / r->ns, r->note);
	}
	fflush(stdout);
}

static void add_lat(const char *sys, const char *wl, double ops, double p50, double p99)
{
	struct result *r = &results[nresults++];

	snprintf(r->system, sizeof(r->system), "%s", sys);
	snprintf(r->workload, sizeof(r->workload), "%s", wl);
	r->ops = ops;
	r->lat = true;
	r->p50 = p50;
	r->p99 = p99;
	if (opt.json)
		printf("{\"system\":\"%s\",\"workload\":\"%s\",\"ops\":%.0f,\"seconds\":null,"
		       "\"ns_per_op\":null,\"ops_per_s\":null,\"p50_ns\":%.0f,\"p99_ns\":%.0f}\n",
		       sys, wl, ops, p50, p99);
	else
		printf("%-22s %-12s %10.0f %10s %12s  p50 %.0f ns, p99 %.0f ns\n", sys, wl, ops, "-", "-", p50,
		       p99);
	fflush(stdout);
}

static struct result *find(const char *sys, const char *wl)
{
	int i;

	for (i = 0; i < nresults; i++)
		if (!strcmp(results[i].system, sys) && !strcmp(results[i].workload, wl))
			return &results[i];
	return NULL;
}

static struct exe_io *make_io(int backend)
{
	struct exe_io_opts o = { .backend = backend };
	struct exe_io *io;
	int rc = exe_io_create(&io, &o);

	if (rc)
		return NULL;
	return io;
}

static const char *sys_name(int backend)
{
	return backend == EXE_IO_URING ? "libexecutor-uring" : "libexecutor-fallback";
}

/* ---- nop ---- */

static double nop_lib(struct exe_io *io, int batch, long total)
{
	struct exe_future *f[64];
	int64_t t0 = exe_now_ns();
	long done = 0;
	int i;

	while (done < total) {
		for (i = 0; i < batch; i++)
			if (exe_io_nop(io, &f[i]))
				bench_die("nop submit");
		for (i = 0; i < batch; i++) {
			exe_future_wait(f[i], EXE_FOREVER);
			exe_future_unref(f[i]);
		}
		done += batch;
	}
	return (double)(exe_now_ns() - t0) / 1e9;
}

/* A manual context: the submitting thread drives the ring itself. */
static double nop_manual(struct exe_io *io, int batch, long total)
{
	struct exe_future *f[64];
	int64_t t0 = exe_now_ns();
	long done = 0;
	int i;

	while (done < total) {
		for (i = 0; i < batch; i++)
			if (exe_io_nop(io, &f[i]))
				bench_die("nop submit");
		while (!exe_future_is_finished(f[batch - 1]))
			exe_io_run_once(io, -1);
		for (i = 0; i < batch; i++) {
			if (!exe_future_is_finished(f[i]))
				bench_die("nop order");
			exe_future_unref(f[i]);
		}
		done += batch;
	}
	return (double)(exe_now_ns() - t0) / 1e9;
}

static double nop_raw(struct io_uring *ring, int batch, long total)
{
	int64_t t0 = exe_now_ns();
	long done = 0;
	int i;

	while (done < total) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		for (i = 0; i < batch; i++)
			io_uring_prep_nop(io_uring_get_sqe(ring));
		io_uring_submit_and_wait(ring, (unsigned)batch);
		while (n < (unsigned)batch) {
			unsigned seen = 0;

			io_uring_for_each_cqe(ring, head, cqe)
				seen++;
			io_uring_cq_advance(ring, seen);
			n += seen;
			if (n < (unsigned)batch)
				io_uring_wait_cqe(ring, &cqe);
		}
		done += batch;
	}
	return (double)(exe_now_ns() - t0) / 1e9;
}

static void bench_nop(void)
{
	static const int batches[] = { 1, 8, 32 };
	long total = opt.quick ? 50000 : 200000;
	size_t b;
	int backend, r;

	for (b = 0; b < 3; b++) {
		char wl[24];
		double s[MAX_RUNS];
		struct io_uring ring;

		snprintf(wl, sizeof(wl), "nop-b%d", batches[b]);
		if (io_uring_queue_init(64, &ring, 0) == 0) {
			nop_raw(&ring, batches[b], total / 10);
			for (r = 0; r < opt.runs; r++)
				s[r] = nop_raw(&ring, batches[b], total);
			add("liburing", wl, (double)total, bench_median(s, opt.runs), NULL);
			io_uring_queue_exit(&ring);
		}
		for (backend = EXE_IO_URING; backend <= EXE_IO_FALLBACK; backend++) {
			struct exe_io *io = make_io(backend);

			if (!io)
				continue;
			nop_lib(io, batches[b], total / 10);
			for (r = 0; r < opt.runs; r++)
				s[r] = nop_lib(io, batches[b], total);
			add(sys_name(backend), wl, (double)total, bench_median(s, opt.runs), NULL);
			exe_io_destroy(io);
		}
		for (backend = EXE_IO_URING; backend <= EXE_IO_FALLBACK; backend++) {
			struct exe_io_opts o = { .backend = backend, .manual = true };
			struct exe_io *io;

			if (exe_io_create(&io, &o))
				continue;
			nop_manual(io, batches[b], total / 10);
			for (r = 0; r < opt.runs; r++)
				s[r] = nop_manual(io, batches[b], total);
			add(backend == EXE_IO_URING ? "libexecutor-uring-man" : "libexecutor-fallbk-man", wl,
			    (double)total, bench_median(s, opt.runs), "manual context");
			exe_io_destroy(io);
		}
	}
}

/* ---- cached random reads ---- */

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static int64_t rand_off(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (int64_t)(*s % (FILE_SIZE / BLOCK)) * BLOCK;
}

static int make_file(char *path, size_t n)
{
	char *buf = malloc(1 << 20);
	int fd;
	unsigned i;

	snprintf(path, n, "/tmp/bench_io_XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		bench_die("mkstemp: %s", strerror(errno));
	unlink(path); /* gone with the fd, even if the run is interrupted */
	memset(buf, 'r', 1 << 20);
	for (i = 0; i < FILE_SIZE / (1 << 20); i++)
		if (pwrite(fd, buf, 1 << 20, (off_t)i << 20) != 1 << 20)
			bench_die("pwrite");
	/* Read it once: page-cached from here on. */
	for (i = 0; i < FILE_SIZE / (1 << 20); i++)
		if (pread(fd, buf, 1 << 20, (off_t)i << 20) != 1 << 20)
			bench_die("pread");
	free(buf);
	return fd;
}

struct reader {
	struct exe_io *io;
	int fd;
	_Atomic long submitted, completed;
	long total;
	_Atomic int errors;
};

struct read_slot {
	struct reader *rd;
	char *buf;
	uint64_t seed;  /* the slot's own: its submits alternate threads */
};

static int read_done(struct exe_future *f, void *arg);

static void read_submit(struct read_slot *s)
{
	struct exe_future *f;

	if (exe_io_read(s->rd->io, s->rd->fd, s->buf, BLOCK, rand_off(&s->seed), &f) ||
	    exe_future_on_done(f, read_done, s))
		bench_die("read submit");
	/* The io side keeps the future alive until its callbacks returned;
	 * dropping ours inside the callback could free it under an inline
	 * exe_future_on_done(). */
	exe_future_unref(f);
}

static int read_done(struct exe_future *f, void *arg)
{
	struct read_slot *s = arg;
	struct reader *rd = s->rd;
	int64_t res = exe_io_res(f, 0);

	if (res != BLOCK) {
		fprintf(stderr, "read: %lld\n", (long long)res);
		atomic_fetch_add(&rd->errors, 1);
	}
	/* Runs on the io thread, the only one submitting from here on. */
	if (atomic_fetch_add_explicit(&rd->submitted, 1, memory_order_relaxed) < rd->total)
		read_submit(s);
	atomic_fetch_add_explicit(&rd->completed, 1, memory_order_release);
	return 0;
}

static double read_lib(struct exe_io *io, int fd, int qd, long total)
{
	struct reader rd = { .io = io, .fd = fd, .total = total };
	struct read_slot *slots = calloc((size_t)qd, sizeof(*slots));
	char *bufs = aligned_alloc(4096, (size_t)qd * BLOCK);
	int64_t t0 = exe_now_ns();
	int i;

	atomic_store(&rd.submitted, qd); /* total reads, qd of them from here */
	for (i = 0; i < qd; i++) {
		slots[i].rd = &rd;
		slots[i].buf = bufs + (size_t)i * BLOCK;
		slots[i].seed = rnd() | 1;
	}
	for (i = 0; i < qd; i++)
		read_submit(&slots[i]);
	while (atomic_load_explicit(&rd.completed, memory_order_acquire) < total) {
		struct timespec ts = { 0, 50000 };

		nanosleep(&ts, NULL);
	}
	t0 = exe_now_ns() - t0;
	if (atomic_load(&rd.errors))
		bench_die("read errors: %d", atomic_load(&rd.errors));
	free(slots);
	free(bufs);
	return (double)t0 / 1e9;
}

static double read_raw(int fd, int qd, long total)
{
	struct io_uring ring;
	char *bufs = aligned_alloc(4096, (size_t)qd * BLOCK);
	uint64_t seed = rnd() | 1;
	long submitted = 0, completed = 0;
	int64_t t0;
	int i;

	if (io_uring_queue_init((unsigned)qd, &ring, 0))
		return -1;
	t0 = exe_now_ns();
	for (i = 0; i < qd; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

		io_uring_prep_read(sqe, fd, bufs + (size_t)i * BLOCK, BLOCK, (uint64_t)rand_off(&seed));
		io_uring_sqe_set_data64(sqe, (uint64_t)i);
		submitted++;
	}
	while (completed < total) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		io_uring_submit_and_wait(&ring, 1);
		io_uring_for_each_cqe(&ring, head, cqe) {
			uint64_t slot = cqe->user_data;

			if (cqe->res != BLOCK)
				bench_die("raw read: %d", cqe->res);
			seen++;
			completed++;
			if (submitted < total) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

				io_uring_prep_read(sqe, fd, bufs + slot * BLOCK, BLOCK, (uint64_t)rand_off(&seed));
				io_uring_sqe_set_data64(sqe, slot);
				submitted++;
			}
		}
		io_uring_cq_advance(&ring, seen);
	}
	t0 = exe_now_ns() - t0;
	io_uring_queue_exit(&ring);
	free(bufs);
	return (double)t0 / 1e9;
}

struct pread_arg {
	int fd;
	long n;
	uint64_t seed;
};

static void *pread_thread(void *arg)
{
	struct pread_arg *a = arg;
	char *buf = aligned_alloc(4096, BLOCK);
	long i;

	for (i = 0; i < a->n; i++)
		if (pread(a->fd, buf, BLOCK, rand_off(&a->seed)) != BLOCK)
			bench_die("pread");
	free(buf);
	return NULL;
}

static double read_pread(int fd, int nthreads, long total)
{
	pthread_t th[8];
	struct pread_arg a[8];
	int64_t t0 = exe_now_ns();
	int i;

	for (i = 0; i < nthreads; i++) {
		a[i].fd = fd;
		a[i].n = total / nthreads;
		a[i].seed = rnd() | 1;
		pthread_create(&th[i], NULL, pread_thread, &a[i]);
	}
	for (i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	return (double)(exe_now_ns() - t0) / 1e9;
}

static void bench_reads(void)
{
	static const int qds[] = { 1, 32, 128 };
	long total = opt.quick ? 50000 : 200000;
	char path[64];
	int fd = make_file(path, sizeof(path));
	size_t q;
	int r, backend;

	for (q = 0; q < 3; q++) {
		int qd = qds[q], nthr = qd < 4 ? qd : 4;
		double s[MAX_RUNS];
		char wl[24], sys[32];

		snprintf(wl, sizeof(wl), "read4k-qd%d", qd);
		for (r = 0; r < opt.runs; r++)
			s[r] = read_raw(fd, qd, total);
		if (s[0] > 0)
			add("liburing", wl, (double)total, bench_median(s, opt.runs), NULL);
		for (backend = EXE_IO_URING; backend <= EXE_IO_FALLBACK; backend++) {
			struct exe_io *io = make_io(backend);

			if (!io)
				continue;
			read_lib(io, fd, qd, total / 10);
			for (r = 0; r < opt.runs; r++)
				s[r] = read_lib(io, fd, qd, total);
			add(sys_name(backend), wl, (double)total, bench_median(s, opt.runs), NULL);
			exe_io_destroy(io);
		}
		snprintf(sys, sizeof(sys), "pread-%dthr", nthr);
		for (r = 0; r < opt.runs; r++)
			s[r] = read_pread(fd, nthr, total);
		add(sys, wl, (double)total, bench_median(s, opt.runs), NULL);
	}
	close(fd);
}

/* ---- timers ---- */

static int never(void *arg)
{
	(void)arg;
	return 0;
}

static long rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * sysconf(_SC_PAGESIZE);
}

/* Arm @n far timers, cancel them all. Return arm seconds; *@cancel_ns per
 * cancel, *@bytes RSS growth per pending timer. */
static double timers_once(int backend, struct exe_future **fs, long n, double *cancel_ns, double *bytes)
{
	struct exe_io *io = make_io(backend);
	long rss0, i;
	int64_t t0, t1, t2;

	if (!io)
		return -1;
	memset(fs, 0, (size_t)n * sizeof(*fs)); /* not the timers' memory */
	rss0 = rss_bytes();
	t0 = exe_now_ns();
	for (i = 0; i < n; i++)
		if (exe_call_later(io, 100 * EXE_NS_PER_S + (int64_t)(rnd() % 1000000), never, NULL, &fs[i]))
			bench_die("arm");
	t1 = exe_now_ns();
	*bytes = (double)(rss_bytes() - rss0) / (double)n;
	for (i = 0; i < n; i++)
		exe_future_cancel(fs[i]);
	t2 = exe_now_ns();
	for (i = 0; i < n; i++)
		exe_future_unref(fs[i]);
	exe_io_destroy(io);
	*cancel_ns = (double)(t2 - t1) / (double)n;
	return (double)(t1 - t0) / 1e9;
}

static void bench_timers(void)
{
	const long n = opt.quick ? 200000 : 1000000;
	struct exe_future **fs = malloc((size_t)n * sizeof(*fs));
	double cold, cold_cancel, cold_bytes;
	int backend, r;

	/* Cold: the first touch of ~120 MB, page faults included; the only
	 * run whose RSS growth is the memory per pending timer. */
	cold = timers_once(EXE_IO_URING, fs, n, &cold_cancel, &cold_bytes);
	if (cold < 0)
		cold = timers_once(EXE_IO_FALLBACK, fs, n, &cold_cancel, &cold_bytes);
	/* Warm: keep freed memory in the process so the runs measure the
	 * timers, not the kernel zeroing pages. */
	mallopt(M_TRIM_THRESHOLD, 1 << 30);
	mallopt(M_MMAP_THRESHOLD, 1 << 30);
	for (backend = EXE_IO_URING; backend <= EXE_IO_FALLBACK; backend++) {
		double arm[MAX_RUNS], cancel[MAX_RUNS], bytes;
		char note[96];

		if (timers_once(backend, fs, n, &cancel[0], &bytes) < 0)
			continue;
		for (r = 0; r < opt.runs; r++)
			arm[r] = timers_once(backend, fs, n, &cancel[r], &bytes);
		snprintf(note, sizeof(note), "arm; cancel %.1f ns; cold arm %.1f ns, %.0f B/timer (RSS)",
			 bench_median(cancel, opt.runs), cold * 1e9 / (double)n, cold_bytes);
		add(sys_name(backend), "timers-1M", (double)n, bench_median(arm, opt.runs), note);
	}
	free(fs);
}

struct late_arg {
	int64_t deadline;
	int64_t *out;
};

static int record_late(void *arg)
{
	struct late_arg *a = arg;

	*a->out = exe_now_ns() - a->deadline;
	return 0;
}

static void bench_lateness(void)
{
	enum { N = 10000 };
	struct late_arg *args = malloc(N * sizeof(*args));
	int64_t *late = malloc(N * sizeof(*late));
	struct exe_future **fs = malloc(N * sizeof(*fs));
	int backend, r, i;

	for (backend = EXE_IO_URING; backend <= EXE_IO_FALLBACK; backend++) {
		double p50[MAX_RUNS], p99[MAX_RUNS];
		int runs = opt.quick ? 1 : 3;

		for (r = 0; r < runs; r++) {
			struct exe_io *io = make_io(backend);

			if (!io)
				break;
			for (i = 0; i < N; i++) {
				int64_t delay = (int64_t)(rnd() % EXE_NS_PER_S);

				args[i].deadline = exe_now_ns() + delay;
				args[i].out = &late[i];
				if (exe_call_later(io, delay, record_late, &args[i], &fs[i]))
					bench_die("arm");
			}
			exe_wait(fs, N, EXE_WAIT_ALL, -1);
			for (i = 0; i < N; i++)
				exe_future_unref(fs[i]);
			exe_io_destroy(io);
			bench_sort_i64(late, N);
			p50[r] = (double)late[N / 2];
			p99[r] = (double)late[N * 99 / 100];
		}
		if (r < runs)
			continue;
		add_lat(sys_name(backend), "lateness", N, bench_median(p50, runs), bench_median(p99, runs));
	}
	free(args);
	free(late);
	free(fs);
}

/* ---- echo ---- */

struct conn {
	int fd;
	char buf[MSG];
	struct exe_io *io;
};

static int echo_recv_done(struct exe_future *f, void *arg);

static void echo_arm(struct conn *c)
{
	struct exe_future *f;

	if (exe_io_recv(c->io, c->fd, c->buf, MSG, MSG_WAITALL, &f) == 0) {
		exe_future_on_done(f, echo_recv_done, c);
		exe_future_unref(f);
	}
}

static int echo_send_done(struct exe_future *f, void *arg)
{
	if (exe_io_res(f, 0) == MSG)
		echo_arm(arg);
	return 0;
}

static int echo_recv_done(struct exe_future *f, void *arg)
{
	struct conn *c = arg;
	struct exe_future *g;

	if (exe_io_res(f, 0) != MSG)
		return 0; /* closed or cancelled */
	if (exe_io_send(c->io, c->fd, c->buf, MSG, 0, &g) == 0) {
		exe_future_on_done(g, echo_send_done, c);
		exe_future_unref(g);
	}
	return 0;
}

struct epoll_server {
	int lfd, n;
	int *fds;
	_Atomic int stop;
};

static void *epoll_server_main(void *arg)
{
	struct epoll_server *s = arg;
	struct epoll_event ev[256];
	int ep = epoll_create1(0), i, k;
	char buf[MSG];

	for (i = 0; i < s->n; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.fd = s->fds[i] };

		epoll_ctl(ep, EPOLL_CTL_ADD, s->fds[i], &e);
	}
	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		int n = epoll_wait(ep, ev, 256, 10);

		for (k = 0; k < n; k++) {
			int fd = ev[k].data.fd;

			if (recv(fd, buf, MSG, MSG_WAITALL) == MSG)
				send(fd, buf, MSG, MSG_NOSIGNAL);
		}
	}
	close(ep);
	return NULL;
}

/* The client: one thread, every connection ping-pong for @secs. */
static long echo_client(int *cfd, int n, double secs)
{
	struct epoll_event ev[256];
	int ep = epoll_create1(0), i, k;
	char msg[MSG] = "ping", buf[MSG];
	int64_t end;
	long echoes = 0;

	for (i = 0; i < n; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.fd = cfd[i] };

		epoll_ctl(ep, EPOLL_CTL_ADD, cfd[i], &e);
		if (send(cfd[i], msg, MSG, MSG_NOSIGNAL) != MSG)
			bench_die("client send");
	}
	end = exe_now_ns() + (int64_t)(secs * 1e9);
	while (exe_now_ns() < end) {
		int m = epoll_wait(ep, ev, 256, 10);

		for (k = 0; k < m; k++) {
			int fd = ev[k].data.fd;

			if (recv(fd, buf, MSG, MSG_WAITALL) != MSG)
				bench_die("client recv");
			echoes++;
			send(fd, msg, MSG, MSG_NOSIGNAL);
		}
	}
	close(ep);
	return echoes;
}

static void connect_pairs(int n, int *cfd, int *sfd)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1, i;

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 4096) ||
	    getsockname(lfd, (struct sockaddr *)&a, &len))
		bench_die("listen: %s", strerror(errno));
	for (i = 0; i < n; i++) {
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

static double echo_run(int system, int n, double secs)
{
	int *cfd = malloc((size_t)n * sizeof(int)), *sfd = malloc((size_t)n * sizeof(int)), i;
	struct conn *conns = NULL;
	struct exe_io *io = NULL;
	struct epoll_server srv = { 0 };
	pthread_t th;
	long echoes;

	connect_pairs(n, cfd, sfd);
	if (system < 0) {
		srv.n = n;
		srv.fds = sfd;
		pthread_create(&th, NULL, epoll_server_main, &srv);
	} else {
		io = make_io(system);
		if (!io)
			bench_die("io");
		conns = calloc((size_t)n, sizeof(*conns));
		for (i = 0; i < n; i++) {
			conns[i].fd = sfd[i];
			conns[i].io = io;
			echo_arm(&conns[i]);
		}
	}
	echoes = echo_client(cfd, n, secs);
	if (system < 0) {
		atomic_store(&srv.stop, 1);
		pthread_join(th, NULL);
	} else {
		exe_io_destroy(io); /* cancels the pending receives */
		free(conns);
	}
	for (i = 0; i < n; i++) {
		close(cfd[i]);
		close(sfd[i]);
	}
	free(cfd);
	free(sfd);
	return (double)echoes;
}

static void bench_echo(void)
{
	static const int conns[] = { 100, 1000 };
	double secs = opt.quick ? 0.5 : 1.0;
	size_t c;
	int sys, r;

	for (c = 0; c < 2; c++) {
		char wl[24];

		snprintf(wl, sizeof(wl), "echo-c%d", conns[c]);
		for (sys = -1; sys <= EXE_IO_FALLBACK; sys++) {
			double e[MAX_RUNS];

			if (sys == 0)
				continue;
			for (r = 0; r < opt.runs; r++)
				e[r] = echo_run(sys, conns[c], secs);
			add(sys < 0 ? "epoll" : sys_name(sys), wl, bench_median(e, opt.runs), secs, NULL);
		}
	}
}

/* ---- summary ---- */

static void check(const char *what, double v, double target, bool le, const char *unit)
{
	bool ok = le ? v <= target : v >= target;

	if (opt.json)
		return;
	printf("  %-52s %10.2f %-5s (target %s %g)  %s\n", what, v, unit, le ? "<=" : ">=", target,
	       ok ? "ok" : "MISS");
}

static void summary(void)
{
	struct result *a, *b;
	static const char *wls[] = { "nop-b1", "nop-b8", "nop-b32" };
	size_t i;

	if (opt.json)
		return;
	printf("\nTargets\n");
	for (i = 0; i < 3; i++) {
		char what[64];

		b = find("liburing", wls[i]);
		a = find("libexecutor-uring-man", wls[i]);
		snprintf(what, sizeof(what), "%s: manual context / raw liburing", wls[i]);
		if (a && b)
			check(what, a->ns / b->ns, 1.5, true, "x");
		a = find("libexecutor-uring", wls[i]);
		snprintf(what, sizeof(what), "%s: io thread / raw liburing", wls[i]);
		if (a && b)
			check(what, a->ns / b->ns, 1.5, true, "x");
	}
	if ((a = find("libexecutor-uring", "read4k-qd128")))
		check("read4k-qd128 libexecutor-uring IOPS", 1e9 / a->ns, 550000, false, "op/s");
	if ((a = find("libexecutor-uring", "timers-1M")))
		check("timers-1M arm (libexecutor-uring)", a->ns, 100, true, "ns");
	if ((a = find("libexecutor-uring", "lateness"))) {
		check("timer lateness p50", a->p50 / 1e3, 40, true, "us");
		check("timer lateness p99", a->p99 / 1e3, 350, true, "us");
	}
	for (i = 0; i < 2; i++) {
		const char *wl = i ? "echo-c1000" : "echo-c100";
		char what[64];

		a = find("libexecutor-uring", wl);
		b = find("epoll", wl);
		snprintf(what, sizeof(what), "%s: libexecutor-uring / epoll throughput", wl);
		if (a && b)
			check(what, b->ns / a->ns, 0.95, false, "x");
	}
	for (i = 0; i < (size_t)nresults; i++) {
		struct result *u = &results[i];
		char what[64];

		if (strcmp(u->system, "libexecutor-uring") || u->lat)
			continue;
		b = find("libexecutor-fallback", u->workload);
		if (!b || b->lat)
			continue;
		snprintf(what, sizeof(what), "%s: fallback cost / io_uring cost", u->workload);
		check(what, !strncmp(u->workload, "echo", 4) ? u->ns / b->ns : b->ns / u->ns, 2.0, true, "x");
	}
}

int main(int argc, char **argv)
{
	const char *only = NULL;
	int i;

	bench_init("bench_io");
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			opt.json = true;
		else if (!strcmp(argv[i], "--quick"))
			opt.quick = true;
		else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			opt.runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else
			bench_die("usage: bench_io [--json] [--quick] [--runs N] [--only nop|read|timers|lateness|echo]");
	}
	if (opt.quick && opt.runs == 5)
		opt.runs = 1;
	if (opt.runs < 1 || opt.runs > MAX_RUNS)
		bench_die("--runs: 1..%d", MAX_RUNS);
	/* Keep freed memory in the process: every run then measures the same
	 * warm allocator instead of the kernel's page-fault cost for the first
	 * touch of 100+ MB (reported apart by the "cold" timers row). */
	if (!opt.json)
		printf("%-22s %-12s %10s %10s %12s  %s\n", "system", "workload", "ops", "ns/op", "ops/s", "note");
	if (!only || !strcmp(only, "nop"))
		bench_nop();
	if (!only || !strcmp(only, "read"))
		bench_reads();
	if (!only || !strcmp(only, "timers"))
		bench_timers();
	if (!only || !strcmp(only, "lateness"))
		bench_lateness();
	if (!only || !strcmp(only, "echo"))
		bench_echo();
	summary();
	return 0;
}
