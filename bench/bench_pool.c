/*
 * bench_pool - what a task costs on libexecutor's thread pool, next to the
 * two things people write instead of it.
 *
 * Systems
 *   raw-threads          pthread_create() + pthread_join() per task, at most
 *                        64 threads in flight (the oldest is joined first).
 *   naive-pool           one thread per online CPU, one mutex + condvar queue
 *                        (a linked list), and a malloc'ed result per task with
 *                        its own mutex + condvar that the submitter sleeps on.
 *   libexecutor-threads  exe_thread_pool_create() with one worker per online
 *                        CPU; exe_pool_submit(), exe_future_result() and
 *                        exe_future_unref() per task. The default pool lets a
 *                        thread that waits forever run a still-queued task
 *                        itself ("caller runs"), so the submitter takes part.
 *
 * Throughput workloads. The submitter submits N tasks, then waits for each
 * result in submission order and frees it. The timed region is all of that;
 * pools are created before it (with one untimed warm-up batch) and destroyed
 * after it.
 *   empty      the task returns at once: the pure cost of a task.
 *   spin1us    the task spins ~1 us: overhead next to small work.
 *   spin100us  the task spins ~100 us: how close the system gets to running
 *              ncpu tasks at a time. Ideal ns/task = spin time / ncpu; the
 *              note gives the percentage of ideal, with the spin time taken
 *              as the median of what the tasks of that run measured, since
 *              the loop's speed drifts on shared or virtual machines.
 * The spin loop is calibrated once per process against CLOCK_MONOTONIC; the
 * header line shows what the two spins measured right after. raw-threads runs
 * fewer tasks than the pools because thread creation is slow: compare
 * ns/task, never task counts or seconds.
 *
 * Latency. One task at a time. "latency" sleeps ~200 us between tasks, so
 * every worker has parked when the task arrives (a mostly idle server);
 * "latency-hot" submits back to back, so a libexecutor worker is still in its
 * idle spin. p50/p99 are submit-to-result: from before the submit call to
 * after the wait returned. The note gives submit-to-start (a timestamp taken
 * inside the task) and how many tasks ran on the submitting thread.
 *
 * libexecutor only
 *   callback   exe_future_on_done() on an already finished promise, so the
 *              callback is registered and runs inline: ns per callback minus
 *              ns per plain indirect call of the same function.
 *   memory     heap bytes per queued task: the only worker is held on a
 *              promise while 100000 tasks are submitted, and the growth of
 *              mallinfo2()'s uordblks is divided by the count. ns/task on
 *              this row is the submit-only cost (nobody takes the tasks).
 *
 * Reading the table. Every figure is the median of --runs runs (5; 3 with
 * --quick). ns/task is wall time / tasks on throughput rows, the mean
 * submit-to-result on latency rows, the overhead on the callback row.
 * tasks/s is 1e9 / ns/task. "vs raw" is raw-threads' ns/task divided by the
 * row's, same workload: 300x means a task costs 300 times less than a thread.
 * The summary holds libexecutor to its targets; a MISS is reported, never
 * fatal (the exit code stays 0). Figures compare only on one machine under
 * one load: on a machine with few cores, background work shows.
 *
 * --json prints one object per result per line instead of the table:
 *   {"system", "workload", "tasks", "seconds" (the median run's wall time),
 *    "ns_per_task", "tasks_per_s", "p50_ns", "p99_ns" (null if not latency)}
 * Latency rows add start_p50_ns, start_p99_ns and caller_pct, spin100us rows
 * efficiency_pct, the memory row bytes_per_task.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <executor.h>

#define MAX_RUNS 99
#define MAX_RESULTS 32
#define RAW_MAX_INFLIGHT 64
#define LAT_SAMPLES 2000
#define LAT_WARMUP 50
#define LAT_IDLE_NS (200 * 1000)
#define CB_COUNT 200000
#define CB_CHUNK 1024
#define MEM_TASKS 100000

enum sys_id { SYS_RAW, SYS_NAIVE, SYS_LIB, NSYS };

static const char *const sys_name[NSYS] = { "raw-threads", "naive-pool", "libexecutor-threads" };

static struct {
	bool quick, json;
	int runs;
	int only;             /* a sys_id, or -1 for all */
	const char *workload; /* run only this workload, or NULL for all */
} opt = { .runs = 0, .only = -1 };

static unsigned ncpu;
static uint64_t iters_1us, iters_100us;
static double spin_ns_1us, spin_ns_100us; /* what the calibrated spins take */

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("bench_pool: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (!p)
		die("out of memory");
	return p;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { ns / 1000000000, ns % 1000000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts @v. For an even count it takes the upper middle, so the figure is one
 * that a run really produced. */
static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

/* Nearest rank on a sorted array. */
static int64_t percentile(const int64_t *sorted, size_t n, unsigned pct)
{
	size_t rank = (n * pct + 99) / 100;

	return sorted[rank ? rank - 1 : 0];
}

/* ---- the work ---- */

/* volatile: every increment is a load and a store the compiler must keep, so
 * the loop runs as long as calibrated at any optimisation level. */
static void spin(uint64_t iters)
{
	volatile uint64_t i;

	for (i = 0; i < iters; i++)
		;
}

static double time_spin(uint64_t iters, int reps)
{
	int64_t t0 = now_ns();

	for (int i = 0; i < reps; i++)
		spin(iters);
	return (double)(now_ns() - t0) / reps;
}

/* Medians, not minima: on a shared or virtual machine the loop's speed drifts
 * by tens of percent, and the median is the speed the workloads will meet. */
static double spin_median(uint64_t iters, int reps, int trials)
{
	double t[15];

	for (int i = 0; i < trials; i++)
		t[i] = time_spin(iters, reps);
	return median(t, trials);
}

static void calibrate(void)
{
	const uint64_t probe = 1u << 20;
	double per_probe = spin_median(probe, 1, 9);

	iters_1us = (uint64_t)(1000.0 * probe / per_probe + 0.5);
	iters_100us = (uint64_t)(100000.0 * probe / per_probe + 0.5);
	if (!iters_1us)
		iters_1us = 1;
	spin_ns_1us = spin_median(iters_1us, 1000, 9);
	spin_ns_100us = spin_median(iters_100us, 5, 9);
}

static int task_empty(void *arg, void **result)
{
	(void)arg;
	*result = NULL;
	return 0;
}

static int task_spin(void *arg, void **result)
{
	spin(*(const uint64_t *)arg);
	*result = NULL;
	return 0;
}

/* spin100us: each task also records how long its spin took, so efficiency
 * is judged against the loop's speed during the run itself. */
struct timed_spin {
	uint64_t iters;
	_Atomic size_t next;
	size_t cap;
	int64_t *took;
};

static int task_spin_timed(void *arg, void **result)
{
	struct timed_spin *ts = arg;
	int64_t t0 = now_ns();
	size_t i;

	spin(ts->iters);
	i = atomic_fetch_add_explicit(&ts->next, 1, memory_order_relaxed);
	if (i < ts->cap)
		ts->took[i] = now_ns() - t0;
	*result = NULL;
	return 0;
}

struct stamp {
	int64_t start;
	pthread_t submitter;
	bool on_submitter;
};

static int task_stamp(void *arg, void **result)
{
	struct stamp *st = arg;

	st->start = now_ns();
	st->on_submitter = pthread_equal(pthread_self(), st->submitter);
	*result = NULL;
	return 0;
}

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
		die("pthread_create: %s", strerror(rc));
}

static int raw_finish(struct raw_task *t)
{
	pthread_join(t->thread, NULL);
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

static int raw_batch(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots)
{
	struct raw_task ring[RAW_MAX_INFLIGHT];
	size_t i;
	int bad = 0;

	(void)ctx;
	(void)slots;
	for (i = 0; i < n; i++) {
		struct raw_task *t = &ring[i % RAW_MAX_INFLIGHT];

		/* The slot still holds task i - 64: the oldest in flight. */
		if (i >= RAW_MAX_INFLIGHT && raw_finish(t))
			bad = 1;
		raw_start(t, fn, arg);
	}
	for (i = n > RAW_MAX_INFLIGHT ? n - RAW_MAX_INFLIGHT : 0; i < n; i++)
		if (raw_finish(&ring[i % RAW_MAX_INFLIGHT]))
			bad = 1;
	return bad ? -EIO : 0;
}

static int raw_one(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done)
{
	struct raw_task t;
	int code;

	(void)ctx;
	raw_start(&t, fn, arg);
	code = raw_finish(&t);
	*t_done = now_ns();
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
	struct naive_pool *np = xcalloc(1, sizeof(*np) + ncpu * sizeof(pthread_t));
	int rc;

	pthread_mutex_init(&np->lock, NULL);
	pthread_cond_init(&np->cond, NULL);
	for (np->nthreads = 0; np->nthreads < ncpu; np->nthreads++) {
		rc = pthread_create(&np->threads[np->nthreads], NULL, naive_worker, np);
		if (rc)
			die("pthread_create: %s", strerror(rc));
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
		die("out of memory");
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

static int naive_batch(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < n; i++)
		slots[i] = naive_submit(ctx, fn, arg);
	for (i = 0; i < n; i++) {
		if (naive_wait(slots[i]))
			bad = 1;
		naive_free(slots[i]);
	}
	return bad ? -EIO : 0;
}

static int naive_one(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done)
{
	struct naive_task *t = naive_submit(ctx, fn, arg);
	int code = naive_wait(t);

	*t_done = now_ns();
	naive_free(t);
	return code;
}

/* ---- libexecutor-threads ---- */

static void *lib_create(void)
{
	struct exe_pool *p;
	int rc = exe_thread_pool_create(&p, NULL);

	if (rc)
		die("exe_thread_pool_create: %s", exe_strerror(rc));
	return p;
}

static void lib_destroy(void *ctx)
{
	exe_pool_destroy(ctx);
}

static struct exe_future *lib_submit(struct exe_pool *p, exe_task_fn *fn, void *arg)
{
	struct exe_future *f;
	int rc = exe_pool_submit(p, fn, arg, &f);

	if (rc)
		die("exe_pool_submit: %s", exe_strerror(rc));
	return f;
}

static int lib_batch(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < n; i++)
		slots[i] = lib_submit(ctx, fn, arg);
	for (i = 0; i < n; i++) {
		if (exe_future_result(slots[i], NULL, EXE_FOREVER))
			bad = 1;
		exe_future_unref(slots[i]);
	}
	return bad ? -EIO : 0;
}

static int lib_one(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done)
{
	struct exe_future *f = lib_submit(ctx, fn, arg);
	int code = exe_future_result(f, NULL, EXE_FOREVER);

	*t_done = now_ns();
	exe_future_unref(f);
	return code;
}

struct sys_ops {
	void *(*create)(void);
	void (*destroy)(void *ctx);
	/* Submit @n tasks, wait for each in order and free it; @slots has room
	 * for @n handles. Return 0, or -EIO when a task failed. */
	int (*batch)(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots);
	/* Submit one task and wait for it; *@t_done is stamped as soon as the
	 * result is in hand, before any freeing. */
	int (*one)(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done);
};

static const struct sys_ops sys_ops[NSYS] = {
	[SYS_RAW] = { raw_create, raw_destroy, raw_batch, raw_one },
	[SYS_NAIVE] = { naive_create, naive_destroy, naive_batch, naive_one },
	[SYS_LIB] = { lib_create, lib_destroy, lib_batch, lib_one },
};

/* ---- results ---- */

struct result {
	enum sys_id sys;
	const char *workload;
	size_t tasks;
	double seconds;
	double ns;                                 /* ns/task, see the header */
	bool latency;                              /* p50 .. caller_pct are set */
	double p50, p99, start_p50, start_p99, caller_pct;
	bool memory;                               /* bytes is set */
	double bytes;
	double efficiency;                         /* spin100us: percent of ideal */
	char note[72];
};

static struct result results[MAX_RESULTS];
static int nresults;

static const struct result *find_result(enum sys_id sys, const char *workload)
{
	for (int i = 0; i < nresults; i++)
		if (results[i].sys == sys && !strcmp(results[i].workload, workload))
			return &results[i];
	return NULL;
}

static void print_json_num(const char *key, bool have, double v)
{
	if (have)
		printf(",\"%s\":%.0f", key, v);
	else
		printf(",\"%s\":null", key);
}

static void print_json(const struct result *r)
{
	printf("{\"system\":\"%s\",\"workload\":\"%s\",\"tasks\":%zu,\"seconds\":%.6f,"
	       "\"ns_per_task\":%.1f,\"tasks_per_s\":%.0f",
	       sys_name[r->sys], r->workload, r->tasks, r->seconds, r->ns, r->ns > 0 ? 1e9 / r->ns : 0.0);
	print_json_num("p50_ns", r->latency, r->p50);
	print_json_num("p99_ns", r->latency, r->p99);
	if (r->latency) {
		print_json_num("start_p50_ns", true, r->start_p50);
		print_json_num("start_p99_ns", true, r->start_p99);
		printf(",\"caller_pct\":%.1f", r->caller_pct);
	}
	if (r->efficiency > 0)
		printf(",\"efficiency_pct\":%.1f", r->efficiency);
	if (r->memory)
		printf(",\"bytes_per_task\":%.1f", r->bytes);
	printf("}\n");
}

static void print_table_header(void)
{
	printf("%-20s %-12s %7s %10s %12s %9s %8s %8s  %s\n", "system", "workload", "tasks", "ns/task",
	       "tasks/s", "vs raw", "p50_ns", "p99_ns", "note");
}

static void print_row(const struct result *r)
{
	const struct result *raw = find_result(SYS_RAW, r->workload);
	char ratio[24] = "-", p50[24] = "-", p99[24] = "-";

	if (raw && r->ns > 0 && !r->memory && strcmp(r->workload, "callback"))
		snprintf(ratio, sizeof(ratio), "%.1fx", raw->ns / r->ns);
	if (r->latency) {
		snprintf(p50, sizeof(p50), "%.0f", r->p50);
		snprintf(p99, sizeof(p99), "%.0f", r->p99);
	}
	printf("%-20s %-12s %7zu %10.1f %12.0f %9s %8s %8s  %s\n", sys_name[r->sys], r->workload, r->tasks,
	       r->ns, r->ns > 0 ? 1e9 / r->ns : 0.0, ratio, p50, p99, r->note);
}

static void add_result(const struct result *r)
{
	if (nresults == MAX_RESULTS)
		die("too many results");
	results[nresults] = *r;
	r = &results[nresults++];
	if (opt.json)
		print_json(r);
	else
		print_row(r);
	fflush(stdout);
}

/* ---- throughput ---- */

struct workload {
	const char *name;
	exe_task_fn *fn;
	uint64_t *iters;
	size_t tasks[NSYS];
};

static size_t scaled(size_t n)
{
	if (opt.quick)
		n /= 5;
	return n ? n : 1;
}

/*
 * Efficiency of one spin100us run: the work (the median spin a task measured,
 * times the tasks) over what ncpu CPUs could do in the wall time. The median
 * leaves out tasks that were preempted mid-spin; it tracks the loop's speed,
 * which drifts by tens of percent on shared or virtual machines, where a
 * spin length measured before the run would not.
 */
static double efficiency(struct timed_spin *ts, size_t n, double wall_ns)
{
	size_t got = atomic_load(&ts->next);

	if (got != n)
		die("spin100us: %zu spins recorded, expected %zu", got, n);
	qsort(ts->took, n, sizeof(*ts->took), cmp_i64);
	return 100.0 * (double)percentile(ts->took, n, 50) * (double)n / ncpu / wall_ns;
}

static void bench_throughput(enum sys_id s, const struct workload *w)
{
	const struct sys_ops *ops = &sys_ops[s];
	size_t n = scaled(w->tasks[s]);
	void **slots = xcalloc(n, sizeof(*slots));
	double ns[MAX_RUNS], eff[MAX_RUNS], spin_ns[MAX_RUNS];
	struct result r = { .sys = s, .workload = w->name, .tasks = n };
	struct timed_spin ts = { .cap = n };
	exe_task_fn *fn = w->fn;
	void *arg = w->iters;
	void *ctx = ops->create();

	if (fn == task_spin_timed) {
		ts.iters = *w->iters;
		ts.took = xcalloc(n, sizeof(*ts.took));
		arg = &ts;
	}
	/* Untimed: threads started, allocator and caches primed. */
	if (ops->batch(ctx, fn, arg, n / 10 ? n / 10 : 1, slots))
		die("%s/%s: a task failed", sys_name[s], w->name);
	for (int i = 0; i < opt.runs; i++) {
		int64_t t0;

		atomic_store(&ts.next, 0);
		t0 = now_ns();
		if (ops->batch(ctx, fn, arg, n, slots))
			die("%s/%s: a task failed", sys_name[s], w->name);
		ns[i] = (double)(now_ns() - t0);
		if (ts.took) {
			eff[i] = efficiency(&ts, n, ns[i]);
			spin_ns[i] = (double)percentile(ts.took, n, 50);
		}
	}
	ops->destroy(ctx);
	free(slots);

	r.seconds = median(ns, opt.runs) / 1e9;
	r.ns = r.seconds * 1e9 / (double)n;
	if (ts.took) {
		r.efficiency = median(eff, opt.runs);
		snprintf(r.note, sizeof(r.note), "%.1f%% of ideal (median spin %.1f us, %u cpus)", r.efficiency,
			 median(spin_ns, opt.runs) / 1000, ncpu);
		free(ts.took);
	}
	add_result(&r);
}

/* ---- latency ---- */

static void bench_latency(enum sys_id s, bool hot)
{
	const struct sys_ops *ops = &sys_ops[s];
	size_t n = opt.quick ? LAT_SAMPLES / 4 : LAT_SAMPLES;
	int64_t *to_result = xcalloc(n, sizeof(*to_result));
	int64_t *to_start = xcalloc(n, sizeof(*to_start));
	double mean[MAX_RUNS], p50[MAX_RUNS], p99[MAX_RUNS], sp50[MAX_RUNS], sp99[MAX_RUNS];
	double caller[MAX_RUNS], wall[MAX_RUNS];
	struct result r = { .sys = s, .workload = hot ? "latency-hot" : "latency", .tasks = n, .latency = true };
	struct stamp st = { .submitter = pthread_self() };
	void *ctx = ops->create();

	for (int run = 0; run < opt.runs; run++) {
		int64_t sum = 0, t_run = now_ns();
		size_t on_caller = 0;

		for (size_t i = 0; i < n + LAT_WARMUP; i++) {
			int64_t t0, t1;

			if (!hot)
				sleep_ns(LAT_IDLE_NS);
			t0 = now_ns();
			if (ops->one(ctx, task_stamp, &st, &t1))
				die("%s/%s: a task failed", sys_name[s], r.workload);
			if (i < LAT_WARMUP)
				continue;
			to_result[i - LAT_WARMUP] = t1 - t0;
			to_start[i - LAT_WARMUP] = st.start - t0;
			sum += t1 - t0;
			on_caller += st.on_submitter;
		}
		wall[run] = (double)(now_ns() - t_run);
		qsort(to_result, n, sizeof(*to_result), cmp_i64);
		qsort(to_start, n, sizeof(*to_start), cmp_i64);
		mean[run] = (double)sum / (double)n;
		p50[run] = (double)percentile(to_result, n, 50);
		p99[run] = (double)percentile(to_result, n, 99);
		sp50[run] = (double)percentile(to_start, n, 50);
		sp99[run] = (double)percentile(to_start, n, 99);
		caller[run] = 100.0 * (double)on_caller / (double)n;
	}
	ops->destroy(ctx);
	free(to_result);
	free(to_start);

	r.ns = median(mean, opt.runs);
	r.seconds = median(wall, opt.runs) / 1e9;
	r.p50 = median(p50, opt.runs);
	r.p99 = median(p99, opt.runs);
	r.start_p50 = median(sp50, opt.runs);
	r.start_p99 = median(sp99, opt.runs);
	r.caller_pct = median(caller, opt.runs);
	snprintf(r.note, sizeof(r.note), "start p50/p99 %.0f/%.0f ns, %.0f%% on caller", r.start_p50,
		 r.start_p99, r.caller_pct);
	add_result(&r);
}

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

static void bench_callback(void)
{
	size_t n = scaled(CB_COUNT);
	struct exe_future *fs[CB_CHUNK];
	double over[MAX_RUNS], reg[MAX_RUNS], plain[MAX_RUNS], wall[MAX_RUNS];
	struct result r = { .sys = SYS_LIB, .workload = "callback", .tasks = n };

	for (int run = 0; run < opt.runs; run++) {
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
					die("promise: %s", exe_strerror(rc));
			}
			t0 = now_ns();
			for (size_t i = 0; i < m; i++)
				plain_cb(fs[i], &count);
			t1 = now_ns();
			for (size_t i = 0; i < m; i++)
				if (exe_future_on_done(fs[i], cb_count, &count))
					die("exe_future_on_done failed");
			t2 = now_ns();
			for (size_t i = 0; i < m; i++)
				exe_future_unref(fs[i]);
			t_plain += t1 - t0;
			t_reg += t2 - t1;
		}
		if (count != 2 * n)
			die("callback: %llu calls, expected %zu", (unsigned long long)count, 2 * n);
		plain[run] = (double)t_plain / (double)n;
		reg[run] = (double)t_reg / (double)n;
		over[run] = reg[run] - plain[run];
		wall[run] = (double)t_reg;
	}
	r.ns = median(over, opt.runs);
	r.seconds = median(wall, opt.runs) / 1e9;
	snprintf(r.note, sizeof(r.note), "on_done %.1f ns - plain call %.1f ns", median(reg, opt.runs),
		 median(plain, opt.runs));
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

static void bench_memory(void)
{
	const struct exe_pool_opts po = { .workers = 1, .name = "bench-mem" };
	size_t n = MEM_TASKS;
	struct exe_future **fs = xcalloc(n, sizeof(*fs));
	double bytes[MAX_RUNS], ns[MAX_RUNS];
	struct result r = { .sys = SYS_LIB, .workload = "memory", .tasks = n, .memory = true };

	for (int run = 0; run < opt.runs; run++) {
		struct exe_future *blocker;
		struct exe_pool *p;
		struct gate g;
		size_t m0, m1;
		int64_t t0, t1;
		int rc;

		rc = exe_thread_pool_create(&p, &po);
		if (rc || (rc = exe_future_create(&g.promise)))
			die("memory setup: %s", exe_strerror(rc));
		atomic_init(&g.started, false);
		blocker = lib_submit(p, task_block, &g);
		/* The worker must hold the blocker before we count: else it
		 * would be taking tasks off the queue while we measure it. */
		while (!atomic_load(&g.started))
			sched_yield();

		m0 = mallinfo2().uordblks;
		t0 = now_ns();
		for (size_t i = 0; i < n; i++)
			fs[i] = lib_submit(p, task_empty, NULL);
		t1 = now_ns();
		m1 = mallinfo2().uordblks;

		exe_future_set_result(g.promise, NULL, NULL);
		for (size_t i = 0; i < n; i++) {
			if (exe_future_result(fs[i], NULL, EXE_FOREVER))
				die("memory: a task failed");
			exe_future_unref(fs[i]);
		}
		if (exe_future_result(blocker, NULL, EXE_FOREVER))
			die("memory: the blocker failed");
		exe_future_unref(blocker);
		exe_future_unref(g.promise);
		exe_pool_destroy(p);

		bytes[run] = ((double)m1 - (double)m0) / (double)n;
		ns[run] = (double)(t1 - t0);
	}
	free(fs);
	r.bytes = median(bytes, opt.runs);
	r.seconds = median(ns, opt.runs) / 1e9;
	r.ns = r.seconds * 1e9 / (double)n;
	snprintf(r.note, sizeof(r.note), "%.1f B/queued task; ns/task = submit only", r.bytes);
	add_result(&r);
}

/* ---- summary ---- */

static bool want(enum sys_id s, const char *workload)
{
	return (opt.only < 0 || opt.only == (int)s) && (!opt.workload || !strcmp(opt.workload, workload));
}

/* @le: the target is an upper bound; else a lower bound. */
static void verdict(const char *what, bool have, double v, const char *unit, bool le, double target)
{
	char goal[32], got[32] = "-";

	snprintf(goal, sizeof(goal), "%s %g %s", le ? "<=" : ">=", target, unit);
	if (have)
		snprintf(got, sizeof(got), "%.1f %s", v, unit);
	printf("  %-26s %12s   target %-12s %s\n", what, got, goal,
	       !have ? "n/a" : (le ? v <= target : v >= target) ? "PASS" : "MISS");
}

static void summary(void)
{
	const struct result *lib = find_result(SYS_LIB, "empty");
	const struct result *raw = find_result(SYS_RAW, "empty");
	const struct result *naive = find_result(SYS_NAIVE, "empty");
	const struct result *r;

	printf("\ntargets (libexecutor-threads):\n");
	verdict("empty ns/task", lib, lib ? lib->ns : 0, "ns", true, 120);
	verdict("empty vs raw-threads", lib && raw, lib && raw ? raw->ns / lib->ns : 0, "x", false, 250);
	verdict("empty vs naive-pool", lib && naive, lib && naive ? naive->ns / lib->ns : 0, "x", false, 2.5);
	r = find_result(SYS_LIB, "spin1us");
	verdict("spin1us ns/task", r, r ? r->ns : 0, "ns", true, 600);
	r = find_result(SYS_LIB, "spin100us");
	verdict("spin100us efficiency", r, r ? r->efficiency : 0, "%", false, 97);
	r = find_result(SYS_LIB, "latency");
	verdict("latency p50 (parked)", r, r ? r->p50 / 1000 : 0, "us", true, 6);
	verdict("latency p99 (parked)", r, r ? r->p99 / 1000 : 0, "us", true, 20);
	r = find_result(SYS_LIB, "latency-hot");
	verdict("latency p50 (hot)", r, r ? r->p50 / 1000 : 0, "us", true, 1);
	r = find_result(SYS_LIB, "callback");
	verdict("callback overhead", r, r ? r->ns : 0, "ns", true, 30);
	r = find_result(SYS_LIB, "memory");
	verdict("memory per queued task", r, r ? r->bytes : 0, "B", true, 128);
}

/* ---- main ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_pool [--quick] [--json] [--runs N] [--only SYSTEM] [--workload W]\n"
		"  --quick        about 5x fewer tasks, 3 runs\n"
		"  --json         one JSON object per result per line, no table\n"
		"  --runs N       runs per figure, median reported (default 5, 3 with --quick)\n"
		"  --only SYSTEM  raw-threads, naive-pool or libexecutor-threads (a prefix will do)\n"
		"  --workload W   empty, spin1us, spin100us, latency, latency-hot, callback or memory\n"
		"Tables are explained at the top of bench/bench_pool.c.\n");
}

static int parse_system(const char *s)
{
	size_t len = strlen(s);

	for (int i = 0; i < NSYS; i++)
		if (len && !strncmp(s, sys_name[i], len))
			return i;
	return -1;
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--quick")) {
			opt.quick = true;
		} else if (!strcmp(a, "--json")) {
			opt.json = true;
		} else if (!strcmp(a, "--runs") && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);

			if (*end || v < 1 || v > MAX_RUNS)
				die("--runs wants 1..%d", MAX_RUNS);
			opt.runs = (int)v;
		} else if (!strcmp(a, "--only") && i + 1 < argc) {
			opt.only = parse_system(argv[++i]);
			if (opt.only < 0)
				die("unknown system '%s'", argv[i]);
		} else if (!strcmp(a, "--workload") && i + 1 < argc) {
			opt.workload = argv[++i];
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		} else {
			fprintf(stderr, "bench_pool: unknown or incomplete option '%s'\n", a);
			usage(stderr);
			exit(2);
		}
	}
	if (!opt.runs)
		opt.runs = opt.quick ? 3 : 5;
}

int main(int argc, char **argv)
{
	struct workload workloads[] = {
		{ "empty", task_empty, NULL, { 20000, 200000, 200000 } },
		{ "spin1us", task_spin, &iters_1us, { 20000, 100000, 100000 } },
		{ "spin100us", task_spin_timed, &iters_100us, { 2000, 4000, 4000 } },
	};
	long cpus;

	parse_args(argc, argv);
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	ncpu = cpus > 0 ? (unsigned)cpus : 1;
	calibrate();

	if (!opt.json) {
		printf("bench_pool: libexecutor %d.%d.%d, %u online CPUs, %s mode, median of %d runs\n",
		       EXE_VERSION_MAJOR, EXE_VERSION_MINOR, EXE_VERSION_PATCH, ncpu, opt.quick ? "quick" : "full",
		       opt.runs);
		printf("spin1us = %.0f ns (%llu iterations), spin100us = %.1f us (%llu iterations)\n\n",
		       spin_ns_1us, (unsigned long long)iters_1us, spin_ns_100us / 1000,
		       (unsigned long long)iters_100us);
		print_table_header();
	}
	for (size_t w = 0; w < sizeof(workloads) / sizeof(workloads[0]); w++)
		for (int s = 0; s < NSYS; s++)
			if (want(s, workloads[w].name))
				bench_throughput(s, &workloads[w]);
	for (int hot = 0; hot < 2; hot++)
		for (int s = 0; s < NSYS; s++)
			if (want(s, hot ? "latency-hot" : "latency"))
				bench_latency(s, hot);
	if (want(SYS_LIB, "callback"))
		bench_callback();
	if (want(SYS_LIB, "memory"))
		bench_memory();
	if (!opt.json)
		summary();
	return 0;
}
