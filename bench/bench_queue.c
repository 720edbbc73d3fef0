/*
 * bench_queue - what a put + get costs on libexecutor's queues, next to what
 * people use instead: a mutex + condvar ring between threads, a pipe between
 * threads or processes.
 *
 * Systems
 *   exe-queue       exe_queue_put() / exe_queue_get(), a FIFO bounded to
 *                   1024 items; an item is the 8 bytes of a pointer.
 *   mutex-condvar   a textbook ring of 1024 items with one mutex and two
 *                   condvars (not empty, not full), signalled on every put
 *                   and every get.
 *   exe-ipc-queue   exe_ipc_queue_put() / exe_ipc_queue_get() on a queue of
 *                   1024 messages and 64 KiB, created before fork().
 *   pipe            write() and read() of one item per call on a pipe(2)
 *                   (its buffer is 64 KiB, like the IPC queue's bytes).
 *
 * Workloads
 *   stream-threads      one producer thread puts N 8-byte items as fast as
 *                       it can, the main thread gets them: exe-queue,
 *                       mutex-condvar, pipe.
 *   pingpong-threads    one 8-byte item at a time: the main thread puts it
 *                       on one queue, an echo thread gets it and puts it on
 *                       a second one, the main thread gets it back.
 *   stream-processes    as stream-threads with 64-byte messages and a forked
 *                       producer: exe-ipc-queue, pipe.
 *   pingpong-processes  as pingpong-threads with 64-byte messages and a
 *                       forked echo process.
 * Every item carries its sequence number, which the getter checks. The timed
 * region starts when the other side is released (it waits on a "go" pipe, so
 * its start-up is not timed) and ends when the main thread got the last item.
 *
 * Reading the table. ns/op is wall time / items on stream rows (one put and
 * one get, overlapped on two CPUs), the mean round trip on pingpong rows,
 * whose p50/p99 are round-trip percentiles. Every figure is the median of
 * --runs runs (5; 3 with --quick). The runs are interleaved: run i of every
 * system of a workload happens before run i + 1 of any, so "exe speedup" (a
 * baseline's ns/op over the libexecutor queue's, for that run; then the
 * median over runs) compares systems under the same load. 20x means the
 * libexecutor queue moved an item 20 times faster.
 *
 * --json prints one object per result per line instead of the table:
 *   {"system", "workload", "ops", "seconds" (the median run's wall time),
 *    "ns_per_op", "ops_per_s", "p50_ns", "p99_ns" (null on stream rows),
 *    "exe_speedup" (null on libexecutor rows)}
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <executor.h>

#include "harness.h"

#define QCAP 1024
#define IPC_BYTES (64 * 1024)
#define THREAD_ITEM 8
#define PROC_ITEM 64
#define PP_WARMUP 100

/* ---- channels: one direction, fixed item size ---- */

struct chan_ops {
	const char *name;
	void *(*make)(size_t item);
	void (*destroy)(void *c);
	/* 0 or a negative code; both block until done. */
	int (*put)(void *c, const void *item);
	int (*get)(void *c, void *item);
};

/* exe-queue: the item's bytes are the pointer's. */
static void *exq_make(size_t item)
{
	const struct exe_queue_opts o = { .kind = EXE_QUEUE_FIFO, .capacity = QCAP };
	struct exe_queue *q;
	int rc = exe_queue_create(&q, &o);

	if (item != sizeof(void *))
		bench_die("exe-queue carries pointer-sized items");
	if (rc)
		bench_die("exe_queue_create: %s", exe_strerror(rc));
	return q;
}

static void exq_destroy(void *c)
{
	exe_queue_destroy(c);
}

static int exq_put(void *c, const void *item)
{
	void *p;

	memcpy(&p, item, sizeof(p));
	return exe_queue_put(c, p, EXE_FOREVER);
}

static int exq_get(void *c, void *item)
{
	void *p;
	int rc = exe_queue_get(c, &p, EXE_FOREVER);

	memcpy(item, &p, sizeof(p));
	return rc;
}

/* mutex-condvar: what a tutorial writes. */
struct ring {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	size_t item, head, count;
	unsigned char buf[];
};

static void *ring_make(size_t item)
{
	struct ring *r = bench_calloc(1, sizeof(*r) + QCAP * item);

	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->not_empty, NULL);
	pthread_cond_init(&r->not_full, NULL);
	r->item = item;
	return r;
}

static void ring_destroy(void *c)
{
	struct ring *r = c;

	pthread_cond_destroy(&r->not_full);
	pthread_cond_destroy(&r->not_empty);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static int ring_put(void *c, const void *item)
{
	struct ring *r = c;

	pthread_mutex_lock(&r->lock);
	while (r->count == QCAP)
		pthread_cond_wait(&r->not_full, &r->lock);
	memcpy(r->buf + (r->head + r->count) % QCAP * r->item, item, r->item);
	r->count++;
	pthread_cond_signal(&r->not_empty);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int ring_get(void *c, void *item)
{
	struct ring *r = c;

	pthread_mutex_lock(&r->lock);
	while (r->count == 0)
		pthread_cond_wait(&r->not_empty, &r->lock);
	memcpy(item, r->buf + r->head * r->item, r->item);
	r->head = (r->head + 1) % QCAP;
	r->count--;
	pthread_cond_signal(&r->not_full);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* exe-ipc-queue: 1024 messages and 64 KiB, the pipe's buffer. */
struct ipcq {
	struct exe_ipc_queue *q;
	size_t item;
};

static void *ipcq_make(size_t item)
{
	const struct exe_ipc_queue_opts o = { .max_msgs = QCAP, .max_bytes = IPC_BYTES };
	struct ipcq *c = bench_calloc(1, sizeof(*c));
	int rc = exe_ipc_queue_create(&c->q, &o);

	if (rc)
		bench_die("exe_ipc_queue_create: %s", exe_strerror(rc));
	c->item = item;
	return c;
}

static void ipcq_destroy(void *p)
{
	struct ipcq *c = p;

	exe_ipc_queue_destroy(c->q);
	free(c);
}

static int ipcq_put(void *p, const void *item)
{
	struct ipcq *c = p;

	return exe_ipc_queue_put(c->q, item, c->item, EXE_FOREVER);
}

static int ipcq_get(void *p, void *item)
{
	struct ipcq *c = p;
	size_t len;
	int rc = exe_ipc_queue_get(c->q, item, c->item, &len, EXE_FOREVER);

	return rc ? rc : len == c->item ? 0 : -EBADMSG;
}

/* pipe: one write and one read per item. Items are at most PIPE_BUF bytes,
 * so a write is never split; the loops only guard against signals. */
struct pipec {
	int fd[2];
	size_t item;
};

static void *pipe_make(size_t item)
{
	struct pipec *c = bench_calloc(1, sizeof(*c));

	if (pipe(c->fd))
		bench_die("pipe: %s", strerror(errno));
	c->item = item;
	return c;
}

static void pipe_destroy(void *p)
{
	struct pipec *c = p;

	close(c->fd[0]);
	close(c->fd[1]);
	free(c);
}

static int pipe_put(void *p, const void *item)
{
	struct pipec *c = p;
	size_t done = 0;

	while (done < c->item) {
		ssize_t k = write(c->fd[1], (const char *)item + done, c->item - done);

		if (k < 0 && errno != EINTR)
			return -errno;
		if (k > 0)
			done += (size_t)k;
	}
	return 0;
}

static int pipe_get(void *p, void *item)
{
	struct pipec *c = p;
	size_t done = 0;

	while (done < c->item) {
		ssize_t k = read(c->fd[0], (char *)item + done, c->item - done);

		if (k == 0)
			return -EPIPE;
		if (k < 0 && errno != EINTR)
			return -errno;
		if (k > 0)
			done += (size_t)k;
	}
	return 0;
}

static const struct chan_ops exq_ops = { "exe-queue", exq_make, exq_destroy, exq_put, exq_get };
static const struct chan_ops ring_ops = { "mutex-condvar", ring_make, ring_destroy, ring_put, ring_get };
static const struct chan_ops ipcq_ops = { "exe-ipc-queue", ipcq_make, ipcq_destroy, ipcq_put, ipcq_get };
static const struct chan_ops pipe_ops = { "pipe", pipe_make, pipe_destroy, pipe_put, pipe_get };

/* ---- the other side: a thread or a forked process ---- */

struct peer {
	const struct chan_ops *ops;
	void *in, *out;  /* stream: out only; pingpong: get from in, put to out */
	size_t n, item;
	int go;          /* read end of the go pipe */
	int rc;
};

static void set_seq(void *item, uint64_t seq)
{
	memcpy(item, &seq, sizeof(seq));
}

static uint64_t get_seq(const void *item)
{
	uint64_t seq;

	memcpy(&seq, item, sizeof(seq));
	return seq;
}

/* Waits for the go byte, then produces (stream) or echoes (pingpong). */
static int peer_run(struct peer *pr)
{
	unsigned char buf[PROC_ITEM] = { 0 };
	char go;
	int rc = 0;

	while (read(pr->go, &go, 1) < 0)
		if (errno != EINTR)
			return -errno;
	for (size_t i = 0; i < pr->n && !rc; i++) {
		if (pr->in) {
			rc = pr->ops->get(pr->in, buf);
		} else {
			set_seq(buf, i);
		}
		if (!rc)
			rc = pr->ops->put(pr->out, buf);
	}
	return rc;
}

static void *peer_thread(void *p)
{
	struct peer *pr = p;

	pr->rc = peer_run(pr);
	return NULL;
}

struct side {
	bool proc;
	pthread_t thread;
	pid_t pid;
	int go[2];
};

static void side_start(struct side *sd, struct peer *pr)
{
	int rc;

	if (pipe(sd->go))
		bench_die("pipe: %s", strerror(errno));
	pr->go = sd->go[0];
	if (!sd->proc) {
		rc = pthread_create(&sd->thread, NULL, peer_thread, pr);
		if (rc)
			bench_die("pthread_create: %s", strerror(rc));
		return;
	}
	fflush(stdout);
	sd->pid = fork();
	if (sd->pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (sd->pid == 0)
		_exit(peer_run(pr) ? 1 : 0);
}

static void side_go(struct side *sd)
{
	while (write(sd->go[1], "g", 1) < 0)
		if (errno != EINTR)
			bench_die("write: %s", strerror(errno));
}

static void side_finish(struct side *sd, struct peer *pr, const char *what)
{
	int st;

	if (!sd->proc) {
		pthread_join(sd->thread, NULL);
		if (pr->rc)
			bench_die("%s: the peer failed: %s", what, exe_strerror(pr->rc));
	} else {
		while (waitpid(sd->pid, &st, 0) < 0)
			if (errno != EINTR)
				bench_die("waitpid: %s", strerror(errno));
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			bench_die("%s: the peer process failed (status %d)", what, st);
	}
	close(sd->go[0]);
	close(sd->go[1]);
}

/* ---- workloads ---- */

struct sample {
	double ns;        /* ns/op: wall / n, or the mean round trip */
	double wall;
	double p50, p99;  /* pingpong only */
};

static void stream_once(const struct chan_ops *ops, bool proc, size_t n, size_t item, struct sample *s)
{
	unsigned char buf[PROC_ITEM];
	struct peer pr = { .ops = ops, .n = n, .item = item };
	struct side sd = { .proc = proc };
	int64_t t0, t1;

	pr.out = ops->make(item);
	side_start(&sd, &pr);
	t0 = bench_now_ns();
	side_go(&sd);
	for (size_t i = 0; i < n; i++) {
		int rc = ops->get(pr.out, buf);

		if (rc)
			bench_die("%s: get: %s", ops->name, exe_strerror(rc));
		if (get_seq(buf) != i)
			bench_die("%s: item %zu came as %llu", ops->name, i,
				  (unsigned long long)get_seq(buf));
	}
	t1 = bench_now_ns();
	side_finish(&sd, &pr, ops->name);
	ops->destroy(pr.out);
	s->wall = (double)(t1 - t0);
	s->ns = s->wall / (double)n;
}

static void pingpong_once(const struct chan_ops *ops, bool proc, size_t n, size_t item, struct sample *s)
{
	unsigned char buf[PROC_ITEM] = { 0 };
	struct peer pr = { .ops = ops, .n = n + PP_WARMUP, .item = item };
	struct side sd = { .proc = proc };
	int64_t *rt = bench_calloc(n, sizeof(*rt)), sum = 0, t_run;

	pr.in = ops->make(item);
	pr.out = ops->make(item);
	side_start(&sd, &pr);
	t_run = bench_now_ns();
	side_go(&sd);
	for (size_t i = 0; i < n + PP_WARMUP; i++) {
		int64_t t0 = bench_now_ns();
		int rc;

		set_seq(buf, i);
		rc = ops->put(pr.in, buf);
		if (!rc)
			rc = ops->get(pr.out, buf);
		if (rc)
			bench_die("%s: round trip: %s", ops->name, exe_strerror(rc));
		if (get_seq(buf) != i)
			bench_die("%s: round trip %zu came back as %llu", ops->name, i,
			    (unsigned long long)get_seq(buf));
		if (i < PP_WARMUP)
			continue;
		rt[i - PP_WARMUP] = bench_now_ns() - t0;
		sum += rt[i - PP_WARMUP];
	}
	s->wall = (double)(bench_now_ns() - t_run);
	side_finish(&sd, &pr, ops->name);
	ops->destroy(pr.in);
	ops->destroy(pr.out);
	bench_sort_i64(rt, n);
	s->ns = (double)sum / (double)n;
	s->p50 = (double)bench_percentile(rt, n, 50);
	s->p99 = (double)bench_percentile(rt, n, 99);
	free(rt);
}

struct entry {
	const struct chan_ops *ops;
	size_t n;         /* items (stream) or round trips (pingpong) */
};

#define MAX_SYS 3

struct workload {
	const char *name;
	bool proc, pingpong;
	size_t item;
	struct entry sys[MAX_SYS];  /* sys[0] is the libexecutor queue */
};

/* ---- output ---- */

static void print_header(void)
{
	printf("%-14s %-19s %8s %9s %12s %11s %8s %8s\n", "system", "workload", "ops", "ns/op", "ops/s",
	       "exe speedup", "p50_ns", "p99_ns");
}

static void report(const char *sys, const struct workload *w, size_t n, double seconds, double ns,
		   double p50, double p99, bool have_speedup, double speedup)
{
	char sp[24] = "-", s50[24] = "-", s99[24] = "-";

	if (bench_opt.json) {
		printf("{\"system\":\"%s\",\"workload\":\"%s\",\"ops\":%zu,\"seconds\":%.6f,"
		       "\"ns_per_op\":%.1f,\"ops_per_s\":%.0f",
		       sys, w->name, n, seconds, ns, ns > 0 ? 1e9 / ns : 0.0);
		bench_json_num("p50_ns", w->pingpong, p50, 0);
		bench_json_num("p99_ns", w->pingpong, p99, 0);
		bench_json_num("exe_speedup", have_speedup, speedup, 2);
		printf("}\n");
	} else {
		if (have_speedup)
			snprintf(sp, sizeof(sp), "%.1fx", speedup);
		if (w->pingpong) {
			snprintf(s50, sizeof(s50), "%.0f", p50);
			snprintf(s99, sizeof(s99), "%.0f", p99);
		}
		printf("%-14s %-19s %8zu %9.1f %12.0f %11s %8s %8s\n", sys, w->name, n, ns,
		       ns > 0 ? 1e9 / ns : 0.0, sp, s50, s99);
	}
	fflush(stdout);
}

/* Runs are interleaved across the systems of @w, so each run's ratios
 * compare systems under the same background load. */
static void bench_workload(const struct workload *w)
{
	struct sample s[MAX_SYS][BENCH_MAX_RUNS];
	const size_t size = sizeof(struct sample);
	double v[BENCH_MAX_RUNS];
	bool on[MAX_SYS] = { false };

	for (int k = 0; k < MAX_SYS; k++)
		on[k] = w->sys[k].ops && bench_only_matches(w->sys[k].ops->name);
	for (int k = 0; k < MAX_SYS; k++) {
		/* Untimed warm-up: first touch of the allocator, page cache of
		 * the pipe, the dynamic loader. */
		if (on[k]) {
			struct sample dummy;

			if (w->pingpong)
				pingpong_once(w->sys[k].ops, w->proc, PP_WARMUP, w->item, &dummy);
			else
				stream_once(w->sys[k].ops, w->proc, bench_scaled(w->sys[k].n) / 10 + 1,
					    w->item, &dummy);
		}
	}
	for (int run = 0; run < bench_opt.runs; run++)
		for (int k = 0; k < MAX_SYS; k++) {
			size_t n = bench_scaled(w->sys[k].n);

			if (!on[k])
				continue;
			if (w->pingpong)
				pingpong_once(w->sys[k].ops, w->proc, n, w->item, &s[k][run]);
			else
				stream_once(w->sys[k].ops, w->proc, n, w->item, &s[k][run]);
		}
	for (int k = 0; k < MAX_SYS; k++) {
		double ns, wall, p50 = 0, p99 = 0, speedup = 0;
		bool have = on[0] && k > 0;

		if (!on[k])
			continue;
		ns = bench_median_of(s[k], size, offsetof(struct sample, ns), bench_opt.runs);
		wall = bench_median_of(s[k], size, offsetof(struct sample, wall), bench_opt.runs);
		if (w->pingpong) {
			p50 = bench_median_of(s[k], size, offsetof(struct sample, p50), bench_opt.runs);
			p99 = bench_median_of(s[k], size, offsetof(struct sample, p99), bench_opt.runs);
		}
		if (have) {
			for (int run = 0; run < bench_opt.runs; run++)
				v[run] = s[k][run].ns / s[0][run].ns;
			speedup = bench_median(v, bench_opt.runs);
		}
		report(w->sys[k].ops->name, w, bench_scaled(w->sys[k].n), wall / 1e9, ns, p50, p99, have,
		       speedup);
	}
}

/* ---- main ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_queue [--quick] [--json] [--runs N] [--only SYSTEM] [--workload W]\n"
		"  --quick        5x fewer items, 3 runs\n"
		"  --json         one JSON object per result per line, no table\n"
		"  --runs N       runs per figure, median reported (default 5, 3 with --quick)\n"
		"  --only SYSTEM  exe-queue, mutex-condvar, exe-ipc-queue or pipe (a prefix will do;\n"
		"                 without the libexecutor row there is no speedup)\n"
		"  --workload W   stream-threads, pingpong-threads, stream-processes or\n"
		"                 pingpong-processes\n"
		"Tables are explained at the top of bench/bench_queue.c.\n");
}

int main(int argc, char **argv)
{
	/* Counts so that each run takes a fraction of a second: syscalls cost
	 * microseconds, a shared-memory put a fraction of one. */
	const struct workload workloads[] = {
		{ "stream-threads", false, false, THREAD_ITEM,
		  { { &exq_ops, 1000000 }, { &ring_ops, 1000000 }, { &pipe_ops, 200000 } } },
		{ "pingpong-threads", false, true, THREAD_ITEM,
		  { { &exq_ops, 20000 }, { &ring_ops, 20000 }, { &pipe_ops, 20000 } } },
		{ "stream-processes", true, false, PROC_ITEM,
		  { { &ipcq_ops, 500000 }, { &pipe_ops, 200000 } } },
		{ "pingpong-processes", true, true, PROC_ITEM,
		  { { &ipcq_ops, 20000 }, { &pipe_ops, 20000 } } },
	};

	bench_parse_opts("bench_queue", argc, argv, usage, NULL);
	if (!bench_opt.json) {
		printf("bench_queue: libexecutor %d.%d.%d, %u online CPUs, %s mode, median of %d runs\n\n",
		       EXE_VERSION_MAJOR, EXE_VERSION_MINOR, EXE_VERSION_PATCH, bench_ncpu,
		       bench_opt.quick ? "quick" : "full", bench_opt.runs);
		print_header();
	}
	for (size_t w = 0; w < sizeof(workloads) / sizeof(workloads[0]); w++)
		if (bench_workload_matches(workloads[w].name))
			bench_workload(&workloads[w]);
	return 0;
}
