/*
 * stress_soak.c - everything at once against one process, for a bounded
 * time: rounds that each build a thread pool, a process pool, an io context
 * (io_uring or the fallback, alternately), a thread queue and a
 * process-shared queue, then throw random work at them - quick, slow and
 * failing tasks, worker crashes, tasks past their time limit, cancels,
 * polls and short waits, timers, pending reads that get cancelled - and tear
 * them down with a random shutdown mode.
 *
 * Checks: every future a round made is finished when its round is over,
 * and its done callback ran exactly once; after all rounds the process holds
 * the same descriptors, threads and shared mappings as before, and no child
 * (memory leaks are LeakSanitizer's, under ASan).
 *
 * EXE_SOAK_SECONDS sets the length (default 4; the rounds stop starting
 * then). Exits 0 when everything held, 1 with a message otherwise.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <executor.h>

#include "resource_counts.h"

#define MS EXE_NS_PER_MS
#define MAX_TRACKED 2048

struct tracked {
	struct exe_future *f;
	/* Incremented by the done callback on whatever thread finishes the
	 * future; read after every pool and the io context were destroyed,
	 * which joined those threads. */
	atomic_int calls;
};

static struct tracked tracked[MAX_TRACKED];
static size_t ntracked;
static int failures;
static atomic_long timer_runs; /* bumped on the io thread, read at the end */

#define CHECK(cond, ...)                                                                                     \
	do {                                                                                                 \
		if (!(cond)) {                                                                               \
			fprintf(stderr, "stress_soak: " __VA_ARGS__);                                        \
			fputc('\n', stderr);                                                                 \
			failures++;                                                                          \
		}                                                                                            \
	} while (0)

static int on_done(struct exe_future *f, void *arg)
{
	struct tracked *t = arg;

	(void)f;
	atomic_fetch_add_explicit(&t->calls, 1, memory_order_relaxed);
	return 0;
}

/* Take ownership of @f's reference and watch it. */
static void track(struct exe_future *f)
{
	struct tracked *t;

	if (!f)
		return;
	if (ntracked == MAX_TRACKED) {
		exe_future_wait(f, EXE_FOREVER);
		exe_future_unref(f);
		return;
	}
	t = &tracked[ntracked++];
	t->f = f;
	atomic_store(&t->calls, 0);
	CHECK(exe_future_on_done(f, on_done, t) == 0, "on_done refused");
}

/* ---- what the tasks do ---- */

static struct exe_queue *tq;

static int t_quick(void *arg, void **result)
{
	*result = (void *)((intptr_t)arg * 2);
	return 0;
}

static int t_slow(void *arg, void **result)
{
	int64_t end = exe_now_ns() + (intptr_t)arg * MS / 4;

	*result = NULL;
	while (exe_now_ns() < end)
		if (exe_task_cancelled())
			return -ECANCELED;
	return 0;
}

static int t_fail(void *arg, void **result)
{
	(void)arg;
	*result = NULL;
	return -EIO;
}

static int t_queue(void *arg, void **result)
{
	void *item;

	*result = NULL;
	/* Full, empty or closed: any outcome is fine, none may hang. */
	if ((intptr_t)arg % 2)
		(void)exe_queue_put(tq, arg, MS);
	else
		(void)exe_queue_get(tq, &item, MS);
	return 0;
}

static struct exe_ipc_queue *iq;

/* Process tasks: the first input byte says what to do. */
static int p_task(const void *in, size_t in_len, void **out, size_t *out_len)
{
	const unsigned char *b = in;
	struct timespec ts = {0, 30 * MS};

	*out = NULL;
	*out_len = 0;
	switch (in_len ? b[0] % 5 : 0) {
	case 0: /* echo */
		*out = malloc(in_len);
		if (!*out)
			return -ENOMEM;
		memcpy(*out, in, in_len);
		*out_len = in_len;
		return 0;
	case 1: abort(); /* a crash: -ECHILD, the worker is replaced */
	case 2: raise(SIGKILL); return 0;
	case 3: nanosleep(&ts, NULL); return 0; /* past a 10 ms limit: -ETIME */
	default: return exe_ipc_queue_put(iq, "m", 1, 0) == 0 ? 0 : -EAGAIN;
	}
}

static int timer_fn(void *arg)
{
	(void)arg;
	atomic_fetch_add_explicit(&timer_runs, 1, memory_order_relaxed);
	return 0;
}

/* ---- resources ---- */

struct resources {
	int fds, threads, shared;
};

static struct resources measure(void)
{
	/* fds: opendir itself holds one, the same every time. */
	return (struct resources){count_dir("/proc/self/fd"), count_dir("/proc/self/task"),
	                          count_shared_maps()};
}

/* ---- one round ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static void round_once(int round, int64_t until)
{
	struct exe_pool *tp = NULL, *pp = NULL;
	struct exe_io *io = NULL;
	struct exe_submit_opts short_limit = {.task_timeout_ns = 10 * MS};
	int pipefd[2] = {-1, -1};
	char pipebuf[8];
	size_t first = ntracked, len;
	char msg[16];
	int rc;

	CHECK(exe_queue_create(&tq, &(struct exe_queue_opts){.capacity = 4}) == 0, "queue");
	CHECK(exe_ipc_queue_create(&iq, &(struct exe_ipc_queue_opts){.max_msgs = 8, .max_bytes = 64}) == 0,
	      "ipc queue");
	CHECK(exe_thread_pool_create(&tp, &(struct exe_pool_opts){.workers = 2, .name = "soak"}) == 0,
	      "thread pool");
	rc = exe_process_pool_create_opts(
	    &pp, &(struct exe_pool_opts){.workers = 2, .name = "soakp"},
	    &(struct exe_process_pool_opts){.term_grace_ns = 20 * MS, .destroy_grace_ns = 200 * MS});
	CHECK(rc == 0, "process pool: %d", rc);
	rc = exe_io_create(&io, &(struct exe_io_opts){.backend = round % 2 ? EXE_IO_FALLBACK : EXE_IO_AUTO});
	CHECK(rc == 0, "io: %d", rc);
	if (!tq || !iq || !tp || !pp || !io)
		exit(1);
	CHECK(pipe(pipefd) == 0, "pipe");

	for (int step = 0; step < 150 && exe_now_ns() < until; step++) {
		struct exe_future *f = NULL;
		unsigned char in[8];

		switch (rnd(10)) {
		case 0:
		case 1: exe_pool_submit(tp, t_quick, (void *)(intptr_t)step, &f); break;
		case 2: exe_pool_submit(tp, t_slow, (void *)(intptr_t)rnd(8), &f); break;
		case 3: exe_pool_submit(tp, rnd(2) ? t_fail : t_queue, (void *)(intptr_t)step, &f); break;
		case 4:
		case 5:
			in[0] = (unsigned char)rnd(5);
			exe_pool_submit_bytes(pp, p_task, in, 1 + rnd(7), in[0] == 3 ? &short_limit : NULL,
			                      &f);
			break;
		case 6:
			if (rnd(2))
				exe_io_sleep(io, (int64_t)rnd(3) * MS, &f);
			else
				exe_call_later(io, (int64_t)rnd(3) * MS, timer_fn, NULL, &f);
			break;
		case 7:
			/* A read nothing will satisfy: only a cancel (or the
			 * context's destroy) ends it. */
			exe_io_read(io, pipefd[0], pipebuf, sizeof(pipebuf), -1, &f);
			break;
		case 8:
			if (ntracked > first)
				exe_future_cancel(tracked[first + rnd((unsigned)(ntracked - first))].f);
			break;
		default:
			if (ntracked > first)
				(void)exe_future_wait(tracked[first + rnd((unsigned)(ntracked - first))].f,
				                      rnd(2) ? 0 : MS);
			while (exe_ipc_queue_get(iq, msg, sizeof(msg), &len, 0) == 0)
				;
			break;
		}
		track(f);
	}

	/* Tear down in a random way: pending work cancelled or drained. */
	if (rnd(2))
		exe_pool_shutdown(tp, EXE_SHUTDOWN_CANCEL_PENDING);
	if (rnd(2))
		exe_pool_shutdown(pp, EXE_SHUTDOWN_CANCEL_PENDING);
	exe_queue_close(tq); /* a t_queue task waiting on it returns */
	exe_pool_destroy(tp);
	exe_pool_destroy(pp);
	exe_io_destroy(io);

	for (size_t i = first; i < ntracked; i++) {
		struct exe_future *f = tracked[i].f;
		int calls = atomic_load(&tracked[i].calls);

		CHECK(exe_future_is_finished(f), "round %d: future %zu not finished after teardown", round,
		      i);
		CHECK(calls == 1, "round %d: future %zu: done callback ran %d times", round, i, calls);
		exe_future_unref(f);
	}
	ntracked = first;
	close(pipefd[0]);
	close(pipefd[1]);
	exe_queue_destroy(tq);
	exe_ipc_queue_destroy(iq);
	tq = NULL;
	iq = NULL;
}

int main(void)
{
	const char *env = getenv("EXE_SOAK_SECONDS");
	double seconds = env ? atof(env) : 4;
	int64_t until = exe_now_ns() + (int64_t)(seconds * EXE_NS_PER_S);
	struct resources before, after;
	int rounds = 0;

	/* A first round outside the measurement: lazily made process-wide
	 * state (the ipc mutex probe, allocator arenas) is not a leak. */
	rng ^= (uint64_t)getpid();
	round_once(rounds++, exe_now_ns() + 100 * MS);
	before = measure();
	while (exe_now_ns() < until && !failures)
		round_once(rounds++, until);
	after = measure();

	CHECK(after.fds == before.fds, "descriptors: %d before, %d after", before.fds, after.fds);
	CHECK(after.threads == before.threads, "threads: %d before, %d after", before.threads, after.threads);
	CHECK(after.shared == before.shared, "shared mappings: %d before, %d after", before.shared,
	      after.shared);
	CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "a child process is left");
	printf("stress_soak: %d rounds in %.1f s, %ld timer runs: %s\n", rounds, seconds,
	       atomic_load(&timer_runs), failures ? "FAILED" : "OK");
	return failures ? 1 : 0;
}
