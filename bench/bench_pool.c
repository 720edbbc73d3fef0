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
 *   raw-processes        fork() + _exit() + waitpid() per task, at most 64
 *                        children in flight; a task's value comes back
 *                        through a shared page.
 *   libexecutor-processes
 *                        exe_process_pool_create() with one worker process
 *                        per online CPU (default prefetch); exe_pool_submit(),
 *                        exe_future_result() and exe_future_unref() per task.
 *   python-thread-pool, python-process-pool
 *                        concurrent.futures' ThreadPoolExecutor and
 *                        ProcessPoolExecutor (one worker per CPU) on the same
 *                        workloads, run by bench/python_pools.py through
 *                        python3 (skipped with a note when it is missing);
 *                        its spins are calibrated the same way, in Python.
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
 * fewer tasks than the pools because thread creation is slow, and the
 * process systems fewer still: compare ns/task, never task counts or seconds.
 * Each task reports its own spin time as its value, so the figure crosses
 * process boundaries like any result.
 *
 * Latency. One task at a time. "latency" sleeps ~200 us between tasks, so
 * every worker has parked when the task arrives (a mostly idle server);
 * "latency-hot" submits back to back, so a libexecutor worker is still in its
 * idle spin. p50/p99 are submit-to-result: from before the submit call to
 * after the wait returned. The note gives submit-to-start (a timestamp taken
 * inside the task) and how many tasks ran on the submitting thread.
 *
 * Process pools only
 *   map          exe_pool_map_opts() with chunk 64 over empty tasks on a
 *                libexecutor process pool (default prefetch): 64 arguments
 *                go to a worker in one message, 64 values come back in one;
 *                python-process-pool uses Executor.map(chunksize=64).
 *                ns/task = wall time / elements.
 *   map-chunk64  libexecutor-processes only: what chunking would give, done
 *                by hand: one bytes task per 64 elements, whose input is the
 *                64 arguments and whose output the 64 values.
 *   bytes1MiB    one round trip at a time: 1 MiB in, the task copies it
 *                into a 1 MiB result (exe_pool_submit_bytes(),
 *                exe_future_bytes()); python-process-pool passes and returns
 *                a 1 MiB bytes object. ns/task and p50/p99 per round trip.
 *   crash-recovery
 *                a task segfaults (a store through a null pointer) after
 *                stamping the time into a shared page; the figure is from
 *                that stamp to the result of the next task submitted once
 *                the crashed task's future has failed. The pool has ONE
 *                worker, so the next task needs the replacement process: the
 *                time to get back to full strength, not just to an idle
 *                sibling. The note gives crash-to-failure (detection).
 *                raw-processes forks a crashing child, reaps it and forks
 *                the next; python-process-pool has to build a new executor,
 *                since a dead worker breaks the whole pool.
 *
 * libexecutor-threads only
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
 * tasks/s is 1e9 / ns/task. "vs raw" is the raw baseline's ns/task divided
 * by the row's, same workload: raw-threads for thread systems, raw-processes
 * for process systems. 300x means a task costs 300 times less than a thread.
 * The summary holds libexecutor to its targets; a MISS is reported, never
 * fatal (the exit code stays 0). Figures compare only on one machine under
 * one load: on a machine with few cores, background work shows.
 *
 * --json prints one object per result per line instead of the table:
 *   {"system", "workload", "tasks", "seconds" (the median run's wall time),
 *    "ns_per_task", "tasks_per_s", "p50_ns", "p99_ns" (null if not latency)}
 * Latency rows add start_p50_ns, start_p99_ns and caller_pct, spin100us rows
 * efficiency_pct, the memory row bytes_per_task, crash-recovery
 * detect_p50_ns. bench/python_pools.py prints the same lines; bench_pool
 * reads them back and prints them as its own.
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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <executor.h>

#define MAX_RUNS 99
#define MAX_RESULTS 64
#define RAW_MAX_INFLIGHT 64
#define LAT_SAMPLES 2000
#define LAT_WARMUP 50
#define LAT_IDLE_NS (200 * 1000)
#define CB_COUNT 200000
#define CB_CHUNK 1024
#define MEM_TASKS 100000
#define MAP_TASKS 20000
#define CHUNK 64
#define BYTES_LEN (1u << 20)
#define BYTES_SAMPLES 400
#define CRASH_SAMPLES 20

enum sys_id { SYS_RAW, SYS_NAIVE, SYS_LIB, SYS_RAWPROC, SYS_LIBPROC, SYS_PYTHREAD, SYS_PYPROC, NSYS };

static const char *const sys_name[NSYS] = {
	"raw-threads", "naive-pool", "libexecutor-threads", "raw-processes", "libexecutor-processes",
	"python-thread-pool", "python-process-pool",
};

#define SYS_PYTHREAD_BIT (1u << SYS_PYTHREAD)
#define SYS_PYPROC_BIT (1u << SYS_PYPROC)

/* The row the "vs raw" column divides by. */
static const enum sys_id sys_base[NSYS] = {
	SYS_RAW, SYS_RAW, SYS_RAW, SYS_RAWPROC, SYS_RAWPROC, SYS_RAW, SYS_RAWPROC,
};

/* Every workload name a row may carry: results point into this table, also
 * for the rows read back from python_pools.py. */
static const char *const workload_names[] = {
	"empty", "spin1us", "spin100us", "latency", "latency-hot", "callback", "memory",
	"map", "map-chunk64", "bytes1MiB", "crash-recovery",
};

static struct {
	bool quick, json;
	int runs;
	const char *python;   /* path of python_pools.py */
	unsigned only;        /* a mask of 1 << sys_id; 0 for all */
	const char *workload; /* run only this workload, or NULL for all */
} opt = { .runs = 0 };

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

/* @arg points to the iteration count, in memory that exists before any
 * pool is created, so process workers read it too. */
static int task_spin(void *arg, void **result)
{
	spin(*(const uint64_t *)arg);
	*result = NULL;
	return 0;
}

/* spin100us: each task returns how long its spin took as its value, so
 * efficiency is judged against the loop's speed during the run itself, and
 * the figure comes back from a worker process like any result. */
static int task_spin_timed(void *arg, void **result)
{
	int64_t t0 = now_ns();

	spin(*(const uint64_t *)arg);
	*result = (void *)(intptr_t)(now_ns() - t0);
	return 0;
}

struct stamp {
	pthread_t submitter;
	bool on_submitter;
};

/* Returns its start time (CLOCK_MONOTONIC is one clock for every process). */
static int task_stamp(void *arg, void **result)
{
	struct stamp *st = arg;

	*result = (void *)(intptr_t)now_ns();
	st->on_submitter = pthread_equal(pthread_self(), st->submitter);
	return 0;
}

/* For processes: a worker forked from the submitting thread would see the
 * same pthread_self(), so "on caller" cannot be asked there. */
static int task_stamp_proc(void *arg, void **result)
{
	(void)arg;
	*result = (void *)(intptr_t)now_ns();
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

	*t_done = now_ns();
	*value = (int64_t)(intptr_t)t->value;
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

/* The same calls serve both kinds of libexecutor pool. */
static int lib_batch(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots, int64_t *values)
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

static int lib_one(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done, int64_t *value)
{
	struct exe_future *f = lib_submit(ctx, fn, arg);
	void *v = NULL;
	int code = exe_future_result(f, &v, EXE_FOREVER);

	*t_done = now_ns();
	*value = (int64_t)(intptr_t)v;
	exe_future_unref(f);
	return code;
}

/* ---- raw-processes ---- */

/* One value slot per child in flight, shared with the children: mapped
 * before they are forked, so a child's store is seen here after waitpid(). */
struct rawp {
	int64_t *vals;
};

static void *rawp_create(void)
{
	struct rawp *rp = xcalloc(1, sizeof(*rp));

	rp->vals = mmap(NULL, RAW_MAX_INFLIGHT * sizeof(*rp->vals), PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (rp->vals == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	return rp;
}

static void rawp_destroy(void *ctx)
{
	struct rawp *rp = ctx;

	munmap(rp->vals, RAW_MAX_INFLIGHT * sizeof(*rp->vals));
	free(rp);
}

/* The child only runs the task, stores its value and leaves with _exit():
 * no atexit handlers, no stdio flush of buffers it shares with us. */
static pid_t rawp_start(exe_task_fn *fn, void *arg, int64_t *slot)
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		void *v = NULL;
		int code = fn(arg, &v);

		*slot = (int64_t)(intptr_t)v;
		_exit(code ? 1 : 0);
	}
	return pid;
}

/* 0 when the child exited with 0, else -EIO. */
static int rawp_finish(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static int rawp_batch(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots, int64_t *values)
{
	struct rawp *rp = ctx;
	pid_t ring[RAW_MAX_INFLIGHT];
	size_t i;
	int bad = 0;

	(void)slots;
	for (i = 0; i < n; i++) {
		size_t k = i % RAW_MAX_INFLIGHT;

		/* The slot still holds task i - 64: the oldest in flight. */
		if (i >= RAW_MAX_INFLIGHT) {
			if (rawp_finish(ring[k]))
				bad = 1;
			if (values)
				values[i - RAW_MAX_INFLIGHT] = rp->vals[k];
		}
		ring[k] = rawp_start(fn, arg, &rp->vals[k]);
	}
	for (i = n > RAW_MAX_INFLIGHT ? n - RAW_MAX_INFLIGHT : 0; i < n; i++) {
		size_t k = i % RAW_MAX_INFLIGHT;

		if (rawp_finish(ring[k]))
			bad = 1;
		if (values)
			values[i] = rp->vals[k];
	}
	return bad ? -EIO : 0;
}

static int rawp_one(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done, int64_t *value)
{
	struct rawp *rp = ctx;
	int code = rawp_finish(rawp_start(fn, arg, &rp->vals[0]));

	*t_done = now_ns();
	*value = rp->vals[0];
	return code;
}

/* ---- libexecutor-processes ---- */

static struct exe_pool *libp_make(unsigned workers, unsigned prefetch)
{
	const struct exe_pool_opts po = { .workers = workers, .name = "bench-pp" };
	const struct exe_process_pool_opts ppo = { .prefetch = prefetch };
	struct exe_pool *p;
	int rc = exe_process_pool_create_opts(&p, &po, &ppo);

	if (rc)
		die("exe_process_pool_create: %s", exe_strerror(rc));
	return p;
}

static void *libp_create(void)
{
	return libp_make(ncpu, 0);
}

struct sys_ops {
	void *(*create)(void);
	void (*destroy)(void *ctx);
	/* Submit @n tasks, wait for each in order and free it; @slots has room
	 * for @n handles, @values (may be NULL) receives each task's value.
	 * Return 0, or -EIO when a task failed. */
	int (*batch)(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots, int64_t *values);
	/* Submit one task and wait for it; *@t_done is stamped as soon as the
	 * result is in hand, before any freeing; *@value is the task's value. */
	int (*one)(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done, int64_t *value);
	bool proc;	/* tasks run in other processes */
};

/* The python systems have no entry: python_pools.py runs them. */
static const struct sys_ops sys_ops[NSYS] = {
	[SYS_RAW] = { raw_create, raw_destroy, raw_batch, raw_one, false },
	[SYS_NAIVE] = { naive_create, naive_destroy, naive_batch, naive_one, false },
	[SYS_LIB] = { lib_create, lib_destroy, lib_batch, lib_one, false },
	[SYS_RAWPROC] = { rawp_create, rawp_destroy, rawp_batch, rawp_one, true },
	[SYS_LIBPROC] = { libp_create, lib_destroy, lib_batch, lib_one, true },
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
	double detect;                             /* crash-recovery: crash to failure */
	char note[80];
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
	if (r->detect > 0)
		printf(",\"detect_p50_ns\":%.0f", r->detect);
	printf("}\n");
}

static void print_table_header(void)
{
	printf("%-21s %-14s %7s %10s %12s %9s %8s %8s  %s\n", "system", "workload", "tasks", "ns/task",
	       "tasks/s", "vs raw", "p50_ns", "p99_ns", "note");
}

static void print_row(const struct result *r)
{
	const struct result *raw = find_result(sys_base[r->sys], r->workload);
	char ratio[24] = "-", p50[24] = "-", p99[24] = "-";

	if (raw && r->ns > 0 && !r->memory && strcmp(r->workload, "callback"))
		snprintf(ratio, sizeof(ratio), "%.1fx", raw->ns / r->ns);
	if (r->latency) {
		snprintf(p50, sizeof(p50), "%.0f", r->p50);
		snprintf(p99, sizeof(p99), "%.0f", r->p99);
	}
	printf("%-21s %-14s %7zu %10.1f %12.0f %9s %8s %8s  %s\n", sys_name[r->sys], r->workload, r->tasks,
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
static double efficiency(int64_t *took, size_t n, double wall_ns)
{
	qsort(took, n, sizeof(*took), cmp_i64);
	if (took[0] <= 0)
		die("spin100us: a task reported no spin time");
	return 100.0 * (double)percentile(took, n, 50) * (double)n / ncpu / wall_ns;
}

static void bench_throughput(enum sys_id s, const struct workload *w)
{
	const struct sys_ops *ops = &sys_ops[s];
	size_t n = scaled(w->tasks[s]);
	void **slots = xcalloc(n, sizeof(*slots));
	double ns[MAX_RUNS], eff[MAX_RUNS], spin_ns[MAX_RUNS];
	struct result r = { .sys = s, .workload = w->name, .tasks = n };
	bool timed = w->fn == task_spin_timed;
	int64_t *took = timed ? xcalloc(n, sizeof(*took)) : NULL;
	void *ctx = ops->create();

	/* Untimed: threads and processes started, allocator and caches primed. */
	if (ops->batch(ctx, w->fn, w->iters, n / 10 ? n / 10 : 1, slots, NULL))
		die("%s/%s: a task failed", sys_name[s], w->name);
	for (int i = 0; i < opt.runs; i++) {
		int64_t t0 = now_ns();

		if (ops->batch(ctx, w->fn, w->iters, n, slots, took))
			die("%s/%s: a task failed", sys_name[s], w->name);
		ns[i] = (double)(now_ns() - t0);
		if (took) {
			eff[i] = efficiency(took, n, ns[i]);
			spin_ns[i] = (double)percentile(took, n, 50);
		}
	}
	ops->destroy(ctx);
	free(slots);

	r.seconds = median(ns, opt.runs) / 1e9;
	r.ns = r.seconds * 1e9 / (double)n;
	if (took) {
		r.efficiency = median(eff, opt.runs);
		snprintf(r.note, sizeof(r.note), "%.1f%% of ideal (median spin %.1f us, %u cpus)", r.efficiency,
			 median(spin_ns, opt.runs) / 1000, ncpu);
		free(took);
	}
	add_result(&r);
}

/* ---- latency ---- */

static void bench_latency(enum sys_id s, bool hot)
{
	const struct sys_ops *ops = &sys_ops[s];
	/* A fork per sample: fewer samples keep raw-processes to seconds. */
	size_t n = (opt.quick ? LAT_SAMPLES / 4 : LAT_SAMPLES) / (s == SYS_RAWPROC ? 4 : 1);
	int64_t *to_result = xcalloc(n, sizeof(*to_result));
	int64_t *to_start = xcalloc(n, sizeof(*to_start));
	double mean[MAX_RUNS], p50[MAX_RUNS], p99[MAX_RUNS], sp50[MAX_RUNS], sp99[MAX_RUNS];
	double caller[MAX_RUNS], wall[MAX_RUNS];
	struct result r = { .sys = s, .workload = hot ? "latency-hot" : "latency", .tasks = n, .latency = true };
	struct stamp st = { .submitter = pthread_self() };
	exe_task_fn *fn = ops->proc ? task_stamp_proc : task_stamp;
	void *ctx = ops->create();

	for (int run = 0; run < opt.runs; run++) {
		int64_t sum = 0, t_run = now_ns();
		size_t on_caller = 0;

		for (size_t i = 0; i < n + LAT_WARMUP; i++) {
			int64_t t0, t1, start;

			if (!hot)
				sleep_ns(LAT_IDLE_NS);
			st.on_submitter = false;
			t0 = now_ns();
			if (ops->one(ctx, fn, &st, &t1, &start))
				die("%s/%s: a task failed", sys_name[s], r.workload);
			if (i < LAT_WARMUP)
				continue;
			to_result[i - LAT_WARMUP] = t1 - t0;
			to_start[i - LAT_WARMUP] = start - t0;
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

/* ---- process pools only ---- */

/* map: exe_pool_map_opts() over empty tasks, CHUNK elements per message
 * (the chunk size python-process-pool's row uses). */
static void bench_map(void)
{
	size_t n = scaled(MAP_TASKS);
	void **args = xcalloc(n, sizeof(*args)), **res = xcalloc(n, sizeof(*res));
	double ns[MAX_RUNS];
	struct result r = { .sys = SYS_LIBPROC, .workload = "map", .tasks = n };
	const struct exe_map_opts mo = { .chunk = CHUNK };
	struct exe_pool *p = libp_make(ncpu, 0);
	int rc = exe_pool_map_opts(p, task_empty, args, n / 10, res, &mo, NULL);

	if (rc)
		die("exe_pool_map_opts: %s", exe_strerror(rc));
	for (int i = 0; i < opt.runs; i++) {
		int64_t t0 = now_ns();

		rc = exe_pool_map_opts(p, task_empty, args, n, res, &mo, NULL);
		if (rc)
			die("exe_pool_map_opts: %s", exe_strerror(rc));
		ns[i] = (double)(now_ns() - t0);
	}
	exe_pool_destroy(p);
	free(args);
	free(res);
	r.seconds = median(ns, opt.runs) / 1e9;
	r.ns = r.seconds * 1e9 / (double)n;
	snprintf(r.note, sizeof(r.note), "exe_pool_map_opts, chunk %d", CHUNK);
	add_result(&r);
}

/* One bytes task runs task_empty() over CHUNK arguments and returns the
 * CHUNK values: what a chunked map would send over the channel. */
static int task_chunk(const void *in, size_t in_len, void **out, size_t *out_len)
{
	const uint64_t *args = in;
	size_t m = in_len / sizeof(*args);
	uint64_t *vals = malloc(m * sizeof(*vals) + 1);

	if (!vals)
		return -ENOMEM;
	for (size_t i = 0; i < m; i++) {
		void *v = NULL;
		int rc = task_empty((void *)(uintptr_t)args[i], &v);

		if (rc) {
			free(vals);
			return rc;
		}
		vals[i] = (uint64_t)(uintptr_t)v;
	}
	*out = vals;
	*out_len = m * sizeof(*vals);
	return 0;
}

static int chunk_batch(struct exe_pool *p, const uint64_t *args, uint64_t *vals, size_t n,
		       struct exe_future **fs)
{
	size_t nchunks = (n + CHUNK - 1) / CHUNK;
	int bad = 0;

	for (size_t c = 0; c < nchunks; c++) {
		size_t m = n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK;
		int rc = exe_pool_submit_bytes(p, task_chunk, args + c * CHUNK, m * sizeof(*args), NULL,
					       &fs[c]);

		if (rc)
			die("exe_pool_submit_bytes: %s", exe_strerror(rc));
	}
	for (size_t c = 0; c < nchunks; c++) {
		size_t m = n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK;
		const void *data;
		size_t len;

		if (exe_future_wait(fs[c], EXE_FOREVER) || exe_future_bytes(fs[c], &data, &len) ||
		    len != m * sizeof(*vals))
			bad = 1;
		else
			memcpy(vals + c * CHUNK, data, len);
		exe_future_unref(fs[c]);
	}
	return bad ? -EIO : 0;
}

static void bench_map_chunk(void)
{
	size_t n = scaled(MAP_TASKS * 5);
	uint64_t *args = xcalloc(n, sizeof(*args)), *vals = xcalloc(n, sizeof(*vals));
	struct exe_future **fs = xcalloc(n / CHUNK + 1, sizeof(*fs));
	double ns[MAX_RUNS];
	struct result r = { .sys = SYS_LIBPROC, .workload = "map-chunk64", .tasks = n };
	struct exe_pool *p = libp_make(ncpu, 0);

	if (chunk_batch(p, args, vals, n / 10, fs))
		die("map-chunk64: a chunk failed");
	for (int i = 0; i < opt.runs; i++) {
		int64_t t0 = now_ns();

		if (chunk_batch(p, args, vals, n, fs))
			die("map-chunk64: a chunk failed");
		ns[i] = (double)(now_ns() - t0);
	}
	exe_pool_destroy(p);
	free(args);
	free(vals);
	free(fs);
	r.seconds = median(ns, opt.runs) / 1e9;
	r.ns = r.seconds * 1e9 / (double)n;
	snprintf(r.note, sizeof(r.note), "by hand: a bytes task per %d elements", CHUNK);
	add_result(&r);
}

/* bytes1MiB: the result is a fresh copy of the input, as a task that
 * transforms a buffer would return. */
static int task_copy(const void *in, size_t in_len, void **out, size_t *out_len)
{
	void *buf = malloc(in_len);

	if (!buf)
		return -ENOMEM;
	memcpy(buf, in, in_len);
	*out = buf;
	*out_len = in_len;
	return 0;
}

static void bench_bytes(void)
{
	size_t n = opt.quick ? BYTES_SAMPLES / 4 : BYTES_SAMPLES;
	int64_t *rt = xcalloc(n, sizeof(*rt));
	unsigned char *in = xcalloc(1, BYTES_LEN);
	double mean[MAX_RUNS], p50[MAX_RUNS], p99[MAX_RUNS], wall[MAX_RUNS];
	struct result r = { .sys = SYS_LIBPROC, .workload = "bytes1MiB", .tasks = n, .latency = true };
	struct exe_pool *p = libp_make(ncpu, 0);

	/* Touched once here, so the first run does not pay for page faults on
	 * our side of the copy. */
	for (size_t i = 0; i < BYTES_LEN; i++)
		in[i] = (unsigned char)(i * 31);
	for (int run = 0; run < opt.runs; run++) {
		int64_t sum = 0, t_run = now_ns();

		for (size_t i = 0; i < n + LAT_WARMUP / 5; i++) {
			struct exe_future *f;
			const void *data;
			size_t len;
			int64_t t0 = now_ns(), t1;
			int rc = exe_pool_submit_bytes(p, task_copy, in, BYTES_LEN, NULL, &f);

			if (rc)
				die("exe_pool_submit_bytes: %s", exe_strerror(rc));
			rc = exe_future_wait(f, EXE_FOREVER);
			if (!rc)
				rc = exe_future_bytes(f, &data, &len);
			t1 = now_ns();
			if (rc || len != BYTES_LEN || memcmp((const char *)data + BYTES_LEN - 64,
							     in + BYTES_LEN - 64, 64))
				die("bytes1MiB: bad result (%s)", exe_strerror(rc));
			exe_future_unref(f);
			if (i < LAT_WARMUP / 5)
				continue;
			rt[i - LAT_WARMUP / 5] = t1 - t0;
			sum += t1 - t0;
		}
		wall[run] = (double)(now_ns() - t_run);
		qsort(rt, n, sizeof(*rt), cmp_i64);
		mean[run] = (double)sum / (double)n;
		p50[run] = (double)percentile(rt, n, 50);
		p99[run] = (double)percentile(rt, n, 99);
	}
	exe_pool_destroy(p);
	free(rt);
	free(in);
	r.ns = median(mean, opt.runs);
	r.seconds = median(wall, opt.runs) / 1e9;
	r.p50 = median(p50, opt.runs);
	r.p99 = median(p99, opt.runs);
	snprintf(r.note, sizeof(r.note), "1 MiB in + 1 MiB out per round trip, one at a time");
	add_result(&r);
}

/* crash-recovery: mapped shared before the pool exists, so the worker's
 * stamp reaches us. */
static int64_t *crash_stamp;
static int *volatile null_ptr;

static int task_crash(void *arg, void **result)
{
	(void)arg;
	/* No core file, whatever the machine's core_pattern says. */
	prctl(PR_SET_DUMPABLE, 0);
	*result = NULL;
	*crash_stamp = now_ns();
	*null_ptr = 1;
	return 0;
}

static void bench_crash(enum sys_id s)
{
	size_t n = opt.quick ? CRASH_SAMPLES / 2 : CRASH_SAMPLES;
	int64_t *rec = xcalloc(n, sizeof(*rec)), *det = xcalloc(n, sizeof(*det));
	double mean[MAX_RUNS], p50[MAX_RUNS], p99[MAX_RUNS], d50[MAX_RUNS], wall[MAX_RUNS];
	struct result r = { .sys = s, .workload = "crash-recovery", .tasks = n, .latency = true };
	struct exe_pool *p = NULL;
	struct rawp *rp = NULL;

	if (s == SYS_LIBPROC)
		p = libp_make(1, 0);
	else
		rp = rawp_create();
	for (int run = 0; run < opt.runs; run++) {
		int64_t sum = 0, t_run = now_ns();

		for (size_t i = 0; i < n; i++) {
			int64_t t_fail, t_next;
			int rc;

			*crash_stamp = 0;
			if (p) {
				struct exe_future *f = lib_submit(p, task_crash, NULL);

				rc = exe_future_result(f, NULL, EXE_FOREVER);
				t_fail = now_ns();
				exe_future_unref(f);
				if (rc != -ECHILD)
					die("crash-recovery: the crash gave %d (%s), not -ECHILD", rc,
					    exe_strerror(rc));
				f = lib_submit(p, task_empty, NULL);
				rc = exe_future_result(f, NULL, EXE_FOREVER);
				t_next = now_ns();
				exe_future_unref(f);
			} else {
				rc = rawp_finish(rawp_start(task_crash, NULL, &rp->vals[0]));
				t_fail = now_ns();
				if (rc != -EIO)
					die("crash-recovery: the raw child did not crash");
				rc = rawp_finish(rawp_start(task_empty, NULL, &rp->vals[0]));
				t_next = now_ns();
			}
			if (rc)
				die("crash-recovery: the next task failed: %s", exe_strerror(rc));
			if (!*crash_stamp)
				die("crash-recovery: the crash left no stamp");
			rec[i] = t_next - *crash_stamp;
			det[i] = t_fail - *crash_stamp;
			sum += rec[i];
		}
		wall[run] = (double)(now_ns() - t_run);
		qsort(rec, n, sizeof(*rec), cmp_i64);
		qsort(det, n, sizeof(*det), cmp_i64);
		mean[run] = (double)sum / (double)n;
		p50[run] = (double)percentile(rec, n, 50);
		p99[run] = (double)percentile(rec, n, 99);
		d50[run] = (double)percentile(det, n, 50);
	}
	if (p)
		exe_pool_destroy(p);
	else
		rawp_destroy(rp);
	free(rec);
	free(det);
	r.ns = median(mean, opt.runs);
	r.seconds = median(wall, opt.runs) / 1e9;
	r.p50 = median(p50, opt.runs);
	r.p99 = median(p99, opt.runs);
	r.detect = median(d50, opt.runs);
	snprintf(r.note, sizeof(r.note), "crash to failure p50 %.0f us%s", r.detect / 1000,
		 p ? ", 1 worker" : "");
	add_result(&r);
}

/* ---- python ---- */

/* A line of python_pools.py: the same keys bench_pool prints. Returns the
 * number after "key":, or false for null or a missing key. */
static bool json_num(const char *line, const char *key, double *v)
{
	char pat[40];
	const char *at;
	char *end;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	at = strstr(line, pat);
	if (!at)
		return false;
	at += strlen(pat);
	*v = strtod(at, &end);
	return end != at;
}

static bool json_str(const char *line, const char *key, char *buf, size_t cap)
{
	char pat[40];
	const char *at, *end;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	at = strstr(line, pat);
	if (!at)
		return false;
	at += strlen(pat);
	end = strchr(at, '"');
	if (!end || (size_t)(end - at) >= cap)
		return false;
	memcpy(buf, at, (size_t)(end - at));
	buf[end - at] = '\0';
	return true;
}

static void python_line(const char *line)
{
	char sys[32], wl[32];
	struct result r = { .workload = NULL };
	double v;

	if (!json_str(line, "system", sys, sizeof(sys)) || !json_str(line, "workload", wl, sizeof(wl)))
		die("python_pools.py: cannot read '%s'", line);
	if (!strcmp(sys, "python-thread-pool"))
		r.sys = SYS_PYTHREAD;
	else if (!strcmp(sys, "python-process-pool"))
		r.sys = SYS_PYPROC;
	else
		die("python_pools.py: unknown system '%s'", sys);
	for (size_t i = 0; i < sizeof(workload_names) / sizeof(workload_names[0]); i++)
		if (!strcmp(wl, workload_names[i]))
			r.workload = workload_names[i];
	if (!r.workload)
		die("python_pools.py: unknown workload '%s'", wl);
	if (json_num(line, "tasks", &v))
		r.tasks = (size_t)v;
	json_num(line, "seconds", &r.seconds);
	json_num(line, "ns_per_task", &r.ns);
	r.latency = json_num(line, "p50_ns", &r.p50) && json_num(line, "p99_ns", &r.p99);
	json_num(line, "start_p50_ns", &r.start_p50);
	json_num(line, "start_p99_ns", &r.start_p99);
	json_num(line, "caller_pct", &r.caller_pct);
	json_num(line, "efficiency_pct", &r.efficiency);
	json_num(line, "detect_p50_ns", &r.detect);
	if (json_num(line, "spin_p50_ns", &v))
		snprintf(r.note, sizeof(r.note), "%.1f%% of ideal (median spin %.1f us, %u cpus)",
			 r.efficiency, v / 1000, ncpu);
	else if (!strcmp(wl, "crash-recovery"))
		snprintf(r.note, sizeof(r.note), "crash to failure p50 %.0f us, new executor, 1 worker",
			 r.detect / 1000);
	else if (!strcmp(wl, "map"))
		snprintf(r.note, sizeof(r.note), "Executor.map(chunksize=%d)", CHUNK);
	else if (r.latency && strncmp(wl, "latency", 7) == 0)
		snprintf(r.note, sizeof(r.note), "start p50/p99 %.0f/%.0f ns", r.start_p50, r.start_p99);
	add_result(&r);
}

/* python3 runs python_pools.py with our task counts; its lines become rows.
 * A missing python3 or script is a note, not a failure: the C rows stand on
 * their own. */
static void bench_python(const struct workload *wl, size_t nwl)
{
	char cmd[1024], line[1024];
	size_t len;
	FILE *f;
	int st;

	if (access(opt.python, R_OK)) {
		printf("note: %s not found: python rows skipped\n", opt.python);
		return;
	}
	st = system("python3 -c '' >/dev/null 2>&1");
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		printf("note: python3 is not available: python rows skipped\n");
		return;
	}
	len = (size_t)snprintf(cmd, sizeof(cmd),
			       "python3 '%s' --runs %d --workers %u --latency-samples %d --map-tasks %zu "
			       "--bytes-samples %d --crash-samples %d",
			       opt.python, opt.runs, ncpu, opt.quick ? LAT_SAMPLES / 4 : LAT_SAMPLES,
			       scaled(MAP_TASKS), opt.quick ? BYTES_SAMPLES / 8 : BYTES_SAMPLES / 2,
			       opt.quick ? 3 : 5);
	for (size_t w = 0; w < nwl; w++)
		len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " --tasks %s=%zu,%zu", wl[w].name,
					scaled(wl[w].tasks[SYS_PYTHREAD]), scaled(wl[w].tasks[SYS_PYPROC]));
	for (int s = SYS_PYTHREAD; s <= SYS_PYPROC; s++)
		if (opt.only && (opt.only & (SYS_PYTHREAD_BIT | SYS_PYPROC_BIT)) == 1u << s)
			len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " --only %s", sys_name[s]);
	if (opt.workload)
		len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " --workload '%s'", opt.workload);
	if (len >= sizeof(cmd))
		die("python command too long");
	fflush(stdout);
	f = popen(cmd, "r");
	if (!f)
		die("popen: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '{')
			python_line(line);
	}
	st = pclose(f);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st))
		printf("note: python_pools.py failed (status %d): python rows may be missing\n", st);
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
	return (!opt.only || (opt.only & 1u << s)) && (!opt.workload || !strcmp(opt.workload, workload));
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

static bool any_result(enum sys_id sys)
{
	for (int i = 0; i < nresults; i++)
		if (results[i].sys == sys)
			return true;
	return false;
}

static void summary_threads(void)
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

static void summary_processes(void)
{
	const struct result *lib = find_result(SYS_LIBPROC, "empty");
	const struct result *r = find_result(SYS_PYPROC, "empty");

	printf("\ntargets (libexecutor-processes):\n");
	verdict("empty submit+result", lib, lib ? lib->ns / 1000 : 0, "us", true, 5);
	verdict("empty vs python processes", lib && r, lib && r ? r->ns / lib->ns : 0, "x", false, 12);
	r = find_result(SYS_LIBPROC, "map");
	verdict("map, per task", r, r ? r->ns / 1000 : 0, "us", true, 1);
	r = find_result(SYS_LIBPROC, "spin100us");
	verdict("spin100us efficiency", r, r ? r->efficiency : 0, "%", false, 90);
	r = find_result(SYS_LIBPROC, "bytes1MiB");
	verdict("1 MiB in + out, p50", r, r ? r->p50 / 1000 : 0, "us", true, 150);
	r = find_result(SYS_LIBPROC, "crash-recovery");
	verdict("crash recovery, p50", r, r ? r->p50 / 1e6 : 0, "ms", true, 5);
}

/* ---- main ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench_pool [--quick] [--json] [--runs N] [--only SYSTEM] [--workload W]\n"
		"                  [--python PATH]\n"
		"  --quick        about 5x fewer tasks, 3 runs\n"
		"  --json         one JSON object per result per line, no table\n"
		"  --runs N       runs per figure, median reported (default 5, 3 with --quick)\n"
		"  --only SYSTEM  raw-threads, naive-pool, libexecutor-threads, raw-processes,\n"
		"                 libexecutor-processes, python-thread-pool or python-process-pool\n"
		"                 (a prefix selects every system it starts)\n"
		"  --workload W   empty, spin1us, spin100us, latency, latency-hot, callback, memory,\n"
		"                 map, map-chunk64, bytes1MiB or crash-recovery\n"
		"  --python PATH  python_pools.py (default: the one next to bench_pool.c)\n"
		"Tables are explained at the top of bench/bench_pool.c.\n");
}

/* The mask of the systems @s names: an exact name, or every system it is a
 * prefix of ("raw" is both raw systems, "python" both Python executors). */
static unsigned parse_system(const char *s)
{
	size_t len = strlen(s);
	unsigned mask = 0;

	for (int i = 0; i < NSYS; i++) {
		if (!strcmp(s, sys_name[i]))
			return 1u << i;
		if (len && !strncmp(s, sys_name[i], len))
			mask |= 1u << i;
	}
	return mask;
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
			if (!opt.only)
				die("unknown system '%s'", argv[i]);
		} else if (!strcmp(a, "--workload") && i + 1 < argc) {
			opt.workload = argv[++i];
		} else if (!strcmp(a, "--python") && i + 1 < argc) {
			opt.python = argv[++i];
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
	if (!opt.python)
		opt.python = BENCH_DIR "/python_pools.py";
}

static bool want_python(void)
{
	return !opt.only || (opt.only & (SYS_PYTHREAD_BIT | SYS_PYPROC_BIT));
}

int main(int argc, char **argv)
{
	/* Task counts per system, in sys_id order: forks and Python cost
	 * tens to hundreds of microseconds a task, so they get fewer. */
	struct workload workloads[] = {
		{ "empty", task_empty, NULL, { 20000, 200000, 200000, 2000, 20000, 20000, 4000 } },
		{ "spin1us", task_spin, &iters_1us, { 20000, 100000, 100000, 2000, 20000, 20000, 4000 } },
		{ "spin100us", task_spin_timed, &iters_100us, { 2000, 4000, 4000, 1000, 2000, 2000, 2000 } },
	};
	long cpus;

	parse_args(argc, argv);
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	ncpu = cpus > 0 ? (unsigned)cpus : 1;
	calibrate();
	/* Before any pool or child exists, so every worker inherits it. */
	crash_stamp = mmap(NULL, sizeof(*crash_stamp), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
			   0);
	if (crash_stamp == MAP_FAILED)
		die("mmap: %s", strerror(errno));

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
			if (sys_ops[s].create && want(s, workloads[w].name))
				bench_throughput(s, &workloads[w]);
	for (int hot = 0; hot < 2; hot++)
		for (int s = 0; s < NSYS; s++)
			if (sys_ops[s].create && want(s, hot ? "latency-hot" : "latency"))
				bench_latency(s, hot);
	if (want(SYS_LIB, "callback"))
		bench_callback();
	if (want(SYS_LIB, "memory"))
		bench_memory();
	if (want(SYS_LIBPROC, "map"))
		bench_map();
	if (want(SYS_LIBPROC, "map-chunk64"))
		bench_map_chunk();
	if (want(SYS_LIBPROC, "bytes1MiB"))
		bench_bytes();
	for (int s = SYS_RAWPROC; s <= SYS_LIBPROC; s++)
		if (want(s, "crash-recovery"))
			bench_crash(s);
	if (want_python())
		bench_python(workloads, sizeof(workloads) / sizeof(workloads[0]));
	if (!opt.json && any_result(SYS_LIB))
		summary_threads();
	if (!opt.json && any_result(SYS_LIBPROC))
		summary_processes();
	return 0;
}
