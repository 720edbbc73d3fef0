/*
 * pool_threads.c - bench_pool's thread systems: raw-threads, naive-pool and
 * libexecutor-threads, and the rows only libexecutor-threads has: callback
 * and memory. See bench_pool.c for what is measured.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_pool.h"

#define CB_COUNT 200000
#define CB_CHUNK 1024
#define MEM_TASKS 100000

/* ---- raw-threads ---- */

struct raw_task {
	pthread_t thread;
	exe_task_fn *fn;
	void *arg;
	void *value;
	int code;
};

static void *raw_main(void *p)
{
	struct raw_task *t = p;

	t->code = t->fn(t->arg, &t->value);
	return NULL;
}

static void raw_start(struct raw_task *t, exe_task_fn *fn, void *arg)
{
	int rc;

	t->fn = fn;
	t->arg = arg;
	t->value = NULL;
	t->code = -EINPROGRESS;
	rc = pthread_create(&t->thread, NULL, raw_main, t);
	if (rc)
		bench_die("pthread_create: %s", strerror(rc));
}

static int raw_finish(struct raw_task *t, int64_t *value)
{
	pthread_join(t->thread, NULL);
	if (value)
		*value = (int64_t)(intptr_t)t->value;
	return t->code;
}

static void *raw_create(void)
{
	return NULL;
}

static void raw_destroy(void *ctx)
{
	(void)ctx;
}

static int raw_batch(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots, int64_t *values)
{
	struct raw_task ring[RAW_MAX_INFLIGHT];
	size_t i;
	int bad = 0;

	(void)ctx;
	(void)slots;
	for (i = 0; i < n; i++) {
		struct raw_task *t = &ring[i % RAW_MAX_INFLIGHT];

		/* The slot still holds task i - 64: the oldest in flight. */
		if (i >= RAW_MAX_INFLIGHT &&
		    raw_finish(t, values ? &values[i - RAW_MAX_INFLIGHT] : NULL))
			bad = 1;
		raw_start(t, fn, arg);
	}
	for (i = n > RAW_MAX_INFLIGHT ? n - RAW_MAX_INFLIGHT : 0; i < n; i++)
		if (raw_finish(&ring[i % RAW_MAX_INFLIGHT], values ? &values[i] : NULL))
			bad = 1;
	return bad ? -EIO : 0;
}

static int raw_one(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done, int64_t *value)
{
	struct raw_task t;
	int code;

	(void)ctx;
	raw_start(&t, fn, arg);
	code = raw_finish(&t, value);
	*t_done = bench_now_ns();
	return code;
}

/* ---- naive-pool ---- */

struct naive_task {
	struct naive_task *next;
	exe_task_fn *fn;
	void *arg;
	void *value;
	int code;
	bool done;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

struct naive_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct naive_task *head, *tail;
	bool stop;
	unsigned nthreads;
	pthread_t threads[];
};

static void *naive_worker(void *p)
{
	struct naive_pool *np = p;
	struct naive_task *t;

	for (;;) {
		pthread_mutex_lock(&np->lock);
		while (!np->head && !np->stop)
			pthread_cond_wait(&np->cond, &np->lock);
		t = np->head;
		if (!t) {
			pthread_mutex_unlock(&np->lock);
			return NULL;
		}
		np->head = t->next;
		if (!np->head)
			np->tail = NULL;
		pthread_mutex_unlock(&np->lock);

		t->code = t->fn(t->arg, &t->value);

		pthread_mutex_lock(&t->lock);
		t->done = true;
		pthread_cond_signal(&t->cond);
		pthread_mutex_unlock(&t->lock);
	}
}

static void *naive_create(void)
{
	struct naive_pool *np = bench_calloc(1, sizeof(*np) + bench_ncpu * sizeof(pthread_t));
	int rc;

	pthread_mutex_init(&np->lock, NULL);
	pthread_cond_init(&np->cond, NULL);
	for (np->nthreads = 0; np->nthreads < bench_ncpu; np->nthreads++) {
		rc = pthread_create(&np->threads[np->nthreads], NULL, naive_worker, np);
		if (rc)
			bench_die("pthread_create: %s", strerror(rc));
	}
	return np;
}

static void naive_destroy(void *ctx)
{
	struct naive_pool *np = ctx;

	pthread_mutex_lock(&np->lock);
	np->stop = true;
	pthread_cond_broadcast(&np->cond);
	pthread_mutex_unlock(&np->lock);
	for (unsigned i = 0; i < np->nthreads; i++)
		pthread_join(np->threads[i], NULL);
	pthread_cond_destroy(&np->cond);
	pthread_mutex_destroy(&np->lock);
	free(np);
}

static struct naive_task *naive_submit(struct naive_pool *np, exe_task_fn *fn, void *arg)
{
	struct naive_task *t = malloc(sizeof(*t));

	if (!t)
		bench_die("out of memory");
	t->next = NULL;
	t->fn = fn;
	t->arg = arg;
	t->value = NULL;
	t->code = 0;
	t->done = false;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);

	pthread_mutex_lock(&np->lock);
	if (np->tail)
		np->tail->next = t;
	else
		np->head = t;
	np->tail = t;
	pthread_cond_signal(&np->cond);
	pthread_mutex_unlock(&np->lock);
	return t;
}

static int naive_wait(struct naive_task *t)
{
	pthread_mutex_lock(&t->lock);
	while (!t->done)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
	return t->code;
}

static void naive_free(struct naive_task *t)
{
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static int naive_batch(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots, int64_t *values)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < n; i++)
		slots[i] = naive_submit(ctx, fn, arg);
	for (i = 0; i < n; i++) {
		struct naive_task *t = slots[i];

		if (naive_wait(t))
			bad = 1;
		if (values)
			values[i] = (int64_t)(intptr_t)t->value;
		naive_free(t);
	}
	return bad ? -EIO : 0;
}

static int naive_one(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done, int64_t *value)
{
	struct naive_task *t = naive_submit(ctx, fn, arg);
	int code = naive_wait(t);

	*t_done = bench_now_ns();
	*value = (int64_t)(intptr_t)t->value;
	naive_free(t);
	return code;
}

/* ---- libexecutor-threads ---- */

bool lib_no_caller_runs;

static void *lib_create(void)
{
	const struct exe_pool_opts o = { .no_caller_runs = lib_no_caller_runs };
	struct exe_pool *p;
	int rc = exe_thread_pool_create(&p, &o);

	if (rc)
		bench_die("exe_thread_pool_create: %s", exe_strerror(rc));
	return p;
}

void lib_destroy(void *ctx)
{
	exe_pool_destroy(ctx);
}

struct exe_future *lib_submit(struct exe_pool *p, exe_task_fn *fn, void *arg)
{
	struct exe_future *f;
	int rc = exe_pool_submit(p, fn, arg, &f);

	if (rc)
		bench_die("exe_pool_submit: %s", exe_strerror(rc));
	return f;
}

/* The same calls serve both kinds of libexecutor pool. */
int lib_batch(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots, int64_t *values)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < n; i++)
		slots[i] = lib_submit(ctx, fn, arg);
	for (i = 0; i < n; i++) {
		void *v = NULL;

		if (exe_future_result(slots[i], &v, EXE_FOREVER))
			bad = 1;
		if (values)
			values[i] = (int64_t)(intptr_t)v;
		exe_future_unref(slots[i]);
	}
	return bad ? -EIO : 0;
}

int lib_one(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done, int64_t *value)
{
	struct exe_future *f = lib_submit(ctx, fn, arg);
	void *v = NULL;
	int code = exe_future_result(f, &v, EXE_FOREVER);

	*t_done = bench_now_ns();
	*value = (int64_t)(intptr_t)v;
	exe_future_unref(f);
	return code;
}

const struct sys_ops raw_threads_ops = { raw_create, raw_destroy, raw_batch, raw_one, false };
const struct sys_ops naive_pool_ops = { naive_create, naive_destroy, naive_batch, naive_one, false };
const struct sys_ops lib_threads_ops = { lib_create, lib_destroy, lib_batch, lib_one, false };

/* ---- callback ---- */

static int cb_count(struct exe_future *f, void *arg)
{
	(void)f;
	(*(uint64_t *)arg)++;
	return 0;
}

/* volatile: the baseline stays a real indirect call, like the one
 * exe_future_on_done() makes; the compiler can neither inline nor hoist it. */
static exe_done_fn *volatile plain_cb = cb_count;

void bench_callback(void)
{
	size_t n = bench_scaled(CB_COUNT);
	struct exe_future *fs[CB_CHUNK];
	double over[BENCH_MAX_RUNS], reg[BENCH_MAX_RUNS], plain[BENCH_MAX_RUNS], wall[BENCH_MAX_RUNS];
	struct result r = { .sys = SYS_LIB, .workload = "callback", .tasks = n };

	for (int run = 0; run < bench_opt.runs; run++) {
		int64_t t_plain = 0, t_reg = 0;
		uint64_t count = 0;

		/* In chunks that stay in cache: the figure is the cost of the
		 * calls, not of cache misses on futures created long before. */
		for (size_t done = 0; done < n; done += CB_CHUNK) {
			size_t m = n - done < CB_CHUNK ? n - done : CB_CHUNK;
			int64_t t0, t1, t2;

			for (size_t i = 0; i < m; i++) {
				int rc = exe_future_create(&fs[i]);

				if (rc || (rc = exe_future_set_result(fs[i], NULL, NULL)))
					bench_die("promise: %s", exe_strerror(rc));
			}
			t0 = bench_now_ns();
			for (size_t i = 0; i < m; i++)
				plain_cb(fs[i], &count);
			t1 = bench_now_ns();
			for (size_t i = 0; i < m; i++)
				if (exe_future_on_done(fs[i], cb_count, &count))
					bench_die("exe_future_on_done failed");
			t2 = bench_now_ns();
			for (size_t i = 0; i < m; i++)
				exe_future_unref(fs[i]);
			t_plain += t1 - t0;
			t_reg += t2 - t1;
		}
		if (count != 2 * n)
			bench_die("callback: %llu calls, expected %zu", (unsigned long long)count, 2 * n);
		plain[run] = (double)t_plain / (double)n;
		reg[run] = (double)t_reg / (double)n;
		over[run] = reg[run] - plain[run];
		wall[run] = (double)t_reg;
	}
	r.ns = bench_median(over, bench_opt.runs);
	r.seconds = bench_median(wall, bench_opt.runs) / 1e9;
	snprintf(r.note, sizeof(r.note), "on_done %.1f ns - plain call %.1f ns",
		 bench_median(reg, bench_opt.runs), bench_median(plain, bench_opt.runs));
	add_result(&r);
}

/* ---- memory ---- */

struct gate {
	struct exe_future *promise;
	atomic_bool started;
};

static int task_block(void *arg, void **result)
{
	struct gate *g = arg;

	atomic_store(&g->started, true);
	*result = NULL;
	return exe_future_wait(g->promise, EXE_FOREVER);
}

/* Heap bytes in use: small chunks and mmapped ones (a large slab comes
 * from mmap, which uordblks does not count). */
static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* One measurement, in a process of its own (bench_pool --memory-child):
 * the library's block caches start empty there, so what the tasks take is
 * counted, not what earlier workloads left in the caches. Prints bytes per
 * task and the submit time in ns. */
void bench_memory_child(void)
{
	const struct exe_pool_opts po = { .workers = 1, .name = "bench-mem" };
	size_t n = MEM_TASKS;
	struct exe_future **fs = bench_calloc(n, sizeof(*fs));
	struct exe_future *blocker;
	struct exe_pool *p;
	struct gate g;
	size_t m0, m1;
	int64_t t0, t1;
	int rc;

	rc = exe_thread_pool_create(&p, &po);
	if (rc || (rc = exe_future_create(&g.promise)))
		bench_die("memory setup: %s", exe_strerror(rc));
	atomic_init(&g.started, false);
	blocker = lib_submit(p, task_block, &g);
	/* The worker must hold the blocker before we count: else it would
	 * be taking tasks off the queue while we measure it. */
	while (!atomic_load(&g.started))
		sched_yield();

	m0 = heap_in_use();
	t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++)
		fs[i] = lib_submit(p, bench_task_empty, NULL);
	t1 = bench_now_ns();
	m1 = heap_in_use();

	exe_future_set_result(g.promise, NULL, NULL);
	for (size_t i = 0; i < n; i++) {
		if (exe_future_result(fs[i], NULL, EXE_FOREVER))
			bench_die("memory: a task failed");
		exe_future_unref(fs[i]);
	}
	if (exe_future_result(blocker, NULL, EXE_FOREVER))
		bench_die("memory: the blocker failed");
	exe_future_unref(blocker);
	exe_future_unref(g.promise);
	exe_pool_destroy(p);
	free(fs);
	printf("%.3f %.0f\n", ((double)m1 - (double)m0) / (double)n, (double)(t1 - t0));
}

void bench_memory(void)
{
	size_t n = MEM_TASKS;
	double bytes[BENCH_MAX_RUNS], ns[BENCH_MAX_RUNS];
	struct result r = { .sys = SYS_LIB, .workload = "memory", .tasks = n, .memory = true };

	char self[4096], cmd[4200];
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (len <= 0 || memchr(self, '\'', (size_t)len))
		bench_die("memory: cannot find this program");
	self[len] = '\0';
	snprintf(cmd, sizeof(cmd), "'%s' --memory-child", self);
	for (int run = 0; run < bench_opt.runs; run++) {
		FILE *f;

		fflush(stdout);
		f = popen(cmd, "r");
		if (!f || fscanf(f, "%lf %lf", &bytes[run], &ns[run]) != 2)
			bench_die("memory: the measuring process failed");
		if (pclose(f) != 0)
			bench_die("memory: the measuring process failed");
	}
	r.bytes = bench_median(bytes, bench_opt.runs);
	r.seconds = bench_median(ns, bench_opt.runs) / 1e9;
	r.ns = r.seconds * 1e9 / (double)n;
	snprintf(r.note, sizeof(r.note), "%.1f B/queued task; ns/task = submit only", r.bytes);
	add_result(&r);
}
