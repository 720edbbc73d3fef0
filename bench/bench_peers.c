/*
 * bench_peers - libexecutor's thread pool next to the C thread pools people
 * use today, on the same workloads (bench/workloads.h), in one process.
 *
 * Systems (each with one worker per online CPU; each compiled in only when
 * CMake found it, else the program prints "skipped: install <package>"):
 *   libexecutor-threads  the reference: a future per task (workloads.c).
 *   glib-thread-pool     GThreadPool, exclusive threads, g_thread_pool_push()
 *                        per task. GLib hands out no result handle: each task
 *                        writes its slot and counts down a latch (an atomic
 *                        counter; the last task signals a GCond).
 *   libuv-queue-work     uv_queue_work() per task on a loop of our own, then
 *                        uv_run() until every after-work callback has run on
 *                        the submitting thread: libuv's own way to get results
 *                        back. UV_THREADPOOL_SIZE is set to the CPU count
 *                        (libuv's default is 4 threads).
 *   openmp-tasks         "#pragma omp task" per task inside one parallel +
 *                        single region per batch, then "#pragma omp taskwait"
 *                        (libgomp; the team includes the submitting thread).
 *   cthreadpool          Pithikos' C-Thread-Pool (Debian ships the source):
 *                        thpool_add_work() per task, then thpool_wait().
 *   raw-futex-pingpong   latency rows only: one thread handed each task
 *                        through a futex word and answering through another
 *                        (two wakes, nothing else): the floor a pool whose
 *                        workers sleep can approach.
 * oneTBB has its own C++ driver, bench_tbb.
 *
 * What the peers get for free: the request memory (uv_work_t and the result
 * slots) comes from an array the harness allocates and prefaults untimed,
 * and "waiting for every result" is one wait for a whole batch; libexecutor
 * allocates a future per task and the submitter waits on each one. The
 * latency rows are one task at a time, where that difference vanishes.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "workloads.h"

/* ---- GLib GThreadPool ---- */

#ifdef HAVE_GLIB
#include <glib.h>

struct glib_ctx {
	GThreadPool *pool;
	GMutex lock;
	GCond cond;
	gint pending; /* tasks of the batch not yet finished */
	bool done;
};

struct glib_slot {
	struct bench_result res;
	struct glib_ctx *ctx;
	bench_task_fn *fn;
	void *arg;
};

static void glib_worker(gpointer data, gpointer user)
{
	struct glib_slot *s = data;
	struct glib_ctx *c = user;

	s->res.code = s->fn(s->arg, &s->res.value);
	/* Only the last task of a batch takes the lock. */
	if (g_atomic_int_dec_and_test(&c->pending)) {
		g_mutex_lock(&c->lock);
		c->done = true;
		g_cond_signal(&c->cond);
		g_mutex_unlock(&c->lock);
	}
}

static void *glib_create(unsigned nthreads)
{
	struct glib_ctx *c = bench_calloc(1, sizeof(*c));
	GError *err = NULL;

	g_mutex_init(&c->lock);
	g_cond_init(&c->cond);
	/* exclusive: the threads start now and belong to this pool, as every
	 * other pool's do; shared GLib threads would start lazily. */
	c->pool = g_thread_pool_new(glib_worker, c, (gint)nthreads, TRUE, &err);
	if (!c->pool)
		bench_die("g_thread_pool_new: %s", err ? err->message : "failed");
	return c;
}

static void glib_destroy(void *ctx)
{
	struct glib_ctx *c = ctx;

	g_thread_pool_free(c->pool, FALSE, TRUE);
	g_cond_clear(&c->cond);
	g_mutex_clear(&c->lock);
	free(c);
}

static void glib_wait(struct glib_ctx *c)
{
	g_mutex_lock(&c->lock);
	while (!c->done)
		g_cond_wait(&c->cond, &c->lock);
	c->done = false;
	g_mutex_unlock(&c->lock);
}

static void glib_push(struct glib_ctx *c, struct glib_slot *s)
{
	GError *err = NULL;

	if (!g_thread_pool_push(c->pool, s, &err))
		bench_die("g_thread_pool_push: %s", err ? err->message : "failed");
}

static int glib_batch(void *ctx, bench_task_fn *fn, void *arg, size_t n, void *slots)
{
	struct glib_ctx *c = ctx;
	struct glib_slot *s = slots;

	/* Set before the first push: the latch must not reach 0 while the
	 * batch is still being submitted. */
	g_atomic_int_set(&c->pending, (gint)n);
	for (size_t i = 0; i < n; i++) {
		s[i].ctx = c;
		s[i].fn = fn;
		s[i].arg = arg;
		glib_push(c, &s[i]);
	}
	glib_wait(c);
	return 0;
}

static int glib_one(void *ctx, bench_task_fn *fn, void *arg, int64_t *t_done)
{
	struct glib_ctx *c = ctx;
	struct glib_slot s = { .res.code = 1, .ctx = c, .fn = fn, .arg = arg };

	g_atomic_int_set(&c->pending, 1);
	glib_push(c, &s);
	glib_wait(c);
	*t_done = bench_now_ns();
	return s.res.code;
}

static const struct bench_system glib_system = {
	.name = "glib-thread-pool",
	.slot_size = sizeof(struct glib_slot),
	.create = glib_create,
	.destroy = glib_destroy,
	.batch = glib_batch,
	.one = glib_one,
};
#else
static const struct bench_system glib_system = { .name = "glib-thread-pool", .missing = "libglib2.0-dev" };
#endif

/* ---- libuv uv_queue_work ---- */

#ifdef HAVE_LIBUV
#include <uv.h>

struct luv_ctx {
	uv_loop_t loop;
	int64_t *t_done; /* one(): stamped by the after-work callback */
	bool bad;
};

struct luv_slot {
	struct bench_result res;
	uv_work_t req;
	bench_task_fn *fn;
	void *arg;
};

static void luv_work(uv_work_t *req)
{
	struct luv_slot *s = req->data;

	s->res.code = s->fn(s->arg, &s->res.value);
}

/* Runs on the loop thread (the submitter): here the result is in hand. */
static void luv_after(uv_work_t *req, int status)
{
	struct luv_ctx *c = req->loop->data;

	if (status)
		c->bad = true;
	if (c->t_done)
		*c->t_done = bench_now_ns();
}

static void *luv_create(unsigned nthreads)
{
	struct luv_ctx *c = bench_calloc(1, sizeof(*c));
	int rc;

	/* libuv's pool is process-wide and sized from the environment at its
	 * first use (main() sets UV_THREADPOOL_SIZE). */
	(void)nthreads;
	rc = uv_loop_init(&c->loop);
	if (rc)
		bench_die("uv_loop_init: %s", uv_strerror(rc));
	c->loop.data = c;
	return c;
}

static void luv_destroy(void *ctx)
{
	struct luv_ctx *c = ctx;

	uv_loop_close(&c->loop);
	free(c);
}

static void luv_submit(struct luv_ctx *c, struct luv_slot *s)
{
	int rc;

	s->req.data = s;
	rc = uv_queue_work(&c->loop, &s->req, luv_work, luv_after);
	if (rc)
		bench_die("uv_queue_work: %s", uv_strerror(rc));
}

static int luv_batch(void *ctx, bench_task_fn *fn, void *arg, size_t n, void *slots)
{
	struct luv_ctx *c = ctx;
	struct luv_slot *s = slots;

	c->t_done = NULL;
	for (size_t i = 0; i < n; i++) {
		s[i].fn = fn;
		s[i].arg = arg;
		luv_submit(c, &s[i]);
	}
	/* Returns once no request is active: every after-work callback ran. */
	uv_run(&c->loop, UV_RUN_DEFAULT);
	return c->bad ? -EIO : 0;
}

static int luv_one(void *ctx, bench_task_fn *fn, void *arg, int64_t *t_done)
{
	struct luv_ctx *c = ctx;
	struct luv_slot s = { .res.code = 1, .fn = fn, .arg = arg };

	c->t_done = t_done;
	luv_submit(c, &s);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	return c->bad ? -EIO : s.res.code;
}

static const struct bench_system luv_system = {
	.name = "libuv-queue-work",
	.slot_size = sizeof(struct luv_slot),
	.create = luv_create,
	.destroy = luv_destroy,
	.batch = luv_batch,
	.one = luv_one,
};
#else
static const struct bench_system luv_system = { .name = "libuv-queue-work", .missing = "libuv1-dev" };
#endif

/* ---- OpenMP tasks ---- */

#ifdef HAVE_OPENMP
#include <omp.h>

struct omp_ctx {
	int nthreads;
};

static void *omp_create(unsigned nthreads)
{
	struct omp_ctx *c = bench_calloc(1, sizeof(*c));

	c->nthreads = (int)nthreads;
	return c;
}

static void omp_destroy(void *ctx)
{
	free(ctx);
}

static int omp_batch(void *ctx, bench_task_fn *fn, void *arg, size_t n, void *slots)
{
	struct omp_ctx *c = ctx;
	struct bench_result *res = slots;

	/* One thread creates the tasks, the whole team (this thread too, at
	 * the taskwait and the barrier) runs them. */
#pragma omp parallel num_threads(c->nthreads)
#pragma omp single
	{
		for (size_t i = 0; i < n; i++) {
#pragma omp task firstprivate(i)
			res[i].code = fn(arg, &res[i].value);
		}
#pragma omp taskwait
	}
	return 0;
}

/* Called from inside omp_enclose()'s single region: the task binds to the
 * team that is already running, so no region is started per task. */
static int omp_one(void *ctx, bench_task_fn *fn, void *arg, int64_t *t_done)
{
	struct bench_result res = { .code = 1 };

	(void)ctx;
#pragma omp task shared(res)
	res.code = fn(arg, &res.value);
#pragma omp taskwait
	*t_done = bench_now_ns();
	return res.code;
}

static void omp_enclose(void *ctx, void (*body)(void *state), void *state)
{
	struct omp_ctx *c = ctx;

#pragma omp parallel num_threads(c->nthreads)
#pragma omp single
	body(state);
}

static long omp_fib(int n)
{
	long a, b;

	if (n < 2)
		return n;
#pragma omp task shared(a)
	a = omp_fib(n - 1);
#pragma omp task shared(b)
	b = omp_fib(n - 2);
#pragma omp taskwait
	return a + b;
}

/* Called inside omp_enclose()'s single region, like omp_one(). */
static long omp_fork_join(void *ctx, int n)
{
	(void)ctx;
	return omp_fib(n);
}

static const struct bench_system omp_system = {
	.name = "openmp-tasks",
	.slot_size = sizeof(struct bench_result),
	.create = omp_create,
	.destroy = omp_destroy,
	.batch = omp_batch,
	.one = omp_one,
	.enclose = omp_enclose,
	.fork_join = omp_fork_join,
};
#else
/* libgomp comes with gcc; its development link is in libgcc-12-dev. */
static const struct bench_system omp_system = {
	.name = "openmp-tasks",
	.missing = "libgcc-12-dev (libgomp, gcc -fopenmp)",
};
#endif

/* ---- cthreadpool ---- */

#ifdef HAVE_CTHREADPOOL
#include <cthreadpool/thpool.h>

struct thp_slot {
	struct bench_result res;
	bench_task_fn *fn;
	void *arg;
};

static void thp_work(void *p)
{
	struct thp_slot *s = p;

	s->res.code = s->fn(s->arg, &s->res.value);
}

static void *thp_create(unsigned nthreads)
{
	threadpool tp = thpool_init((int)nthreads);

	if (!tp)
		bench_die("thpool_init failed");
	return tp;
}

static void thp_destroy(void *ctx)
{
	thpool_destroy(ctx);
}

static void thp_submit(threadpool tp, struct thp_slot *s)
{
	if (thpool_add_work(tp, thp_work, s))
		bench_die("thpool_add_work failed");
}

static int thp_batch(void *ctx, bench_task_fn *fn, void *arg, size_t n, void *slots)
{
	struct thp_slot *s = slots;

	for (size_t i = 0; i < n; i++) {
		s[i].fn = fn;
		s[i].arg = arg;
		thp_submit(ctx, &s[i]);
	}
	thpool_wait(ctx);
	return 0;
}

static int thp_one(void *ctx, bench_task_fn *fn, void *arg, int64_t *t_done)
{
	struct thp_slot s = { .res.code = 1, .fn = fn, .arg = arg };

	thp_submit(ctx, &s);
	thpool_wait(ctx);
	*t_done = bench_now_ns();
	return s.res.code;
}

static const struct bench_system thp_system = {
	.name = "cthreadpool",
	.slot_size = sizeof(struct thp_slot),
	.create = thp_create,
	.destroy = thp_destroy,
	.batch = thp_batch,
	.one = thp_one,
};
#else
static const struct bench_system thp_system = { .name = "cthreadpool", .missing = "cthreadpool-dev" };
#endif

/* ---- raw futex ping-pong: the floor of a cross-thread hand-off ---- */

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

/* One thread that sleeps on a futex word until handed a task, runs it and
 * wakes the submitter, which sleeps on a second word: two futex wakes, no
 * queue, no allocation, no spinning. Latency rows only (no batch). */
struct pp_ctx {
	pthread_t thread;
	_Atomic uint32_t go, done; /* sequence numbers, each a futex word */
	bench_task_fn *fn;
	void *arg;
	int code;
	bool stop;
};

static void pp_wait(_Atomic uint32_t *word, uint32_t old)
{
	while (atomic_load_explicit(word, memory_order_acquire) == old)
		syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
}

static void pp_post(_Atomic uint32_t *word)
{
	atomic_fetch_add_explicit(word, 1, memory_order_release);
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *pp_main(void *arg)
{
	struct pp_ctx *c = arg;
	uint32_t seen = 0;

	for (;;) {
		void *v;

		pp_wait(&c->go, seen);
		seen++;
		if (c->stop)
			return NULL;
		c->code = c->fn(c->arg, &v);
		pp_post(&c->done);
	}
}

static void *pp_create(unsigned nthreads)
{
	struct pp_ctx *c = bench_calloc(1, sizeof(*c));

	(void)nthreads;
	if (pthread_create(&c->thread, NULL, pp_main, c))
		bench_die("pthread_create failed");
	return c;
}

static void pp_destroy(void *ctx)
{
	struct pp_ctx *c = ctx;

	c->stop = true;
	pp_post(&c->go);
	pthread_join(c->thread, NULL);
	free(c);
}

static int pp_one(void *ctx, bench_task_fn *fn, void *arg, int64_t *t_done)
{
	struct pp_ctx *c = ctx;
	uint32_t done = atomic_load_explicit(&c->done, memory_order_relaxed);

	c->fn = fn;
	c->arg = arg;
	pp_post(&c->go);
	pp_wait(&c->done, done);
	*t_done = bench_now_ns();
	return c->code;
}

static const struct bench_system pp_system = {
	.name = "raw-futex-pingpong",
	.create = pp_create,
	.destroy = pp_destroy,
	.one = pp_one,
};

int main(int argc, char **argv)
{
	struct bench_system systems[7];
	char env[16];
	int n = 0;

	bench_parse_args("bench_peers", argc, argv);
	/* Before libuv's first uv_queue_work(): its pool reads it once. Every
	 * system gets one worker per CPU, whatever the caller's environment. */
	snprintf(env, sizeof(env), "%u", bench_ncpu);
	setenv("UV_THREADPOOL_SIZE", env, 1);

	systems[n++] = bench_libexecutor_threads;
	systems[n++] = glib_system;
	systems[n++] = luv_system;
	systems[n++] = omp_system;
	systems[n++] = thp_system;
	systems[n++] = pp_system;
	bench_run("bench_peers", systems, n);
	return 0;
}
