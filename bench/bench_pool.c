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
 *                        per online CPU; exe_pool_submit(),
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
 * "latency-worker" is "latency" with a libexecutor pool that has
 * no_caller_runs: the task must run on a worker, as it must for callbacks,
 * then(), init pools and waits with a finite timeout (the other systems run
 * as on "latency").
 *
 * Process pools only
 *   map          exe_pool_map_opts() with chunk 64 over empty tasks on a
 *                libexecutor process pool: 64 arguments
 *                go to a worker in one message, 64 values come back in one;
 *                python-process-pool uses Executor.map(chunksize=64).
 *                ns/task = wall time / elements.
 *   map-chunk64  libexecutor-processes only: what chunking would give, done
 *                by hand: one bytes task per 64 elements, whose input is the
 *                64 arguments and whose output the 64 values.
 *   bytes1MiB    one round trip at a time: 1 MiB in, the task copies it
 *                into a 1 MiB result built with exe_proc_result_alloc()
 *                (exe_pool_submit_bytes(), exe_future_bytes());
 *                python-process-pool passes and returns a 1 MiB bytes
 *                object. ns/task and p50/p99 per round trip.
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
 *   fairness     2 workers, one 200 ms task, then 20 tasks of 2 ms: ns/task
 *                is the time from the long task's submit to the last short
 *                task's end, which work-conserving dispatch keeps near
 *                20 x 2 ms, far below the long task's 200 ms; the note and
 *                the target give it over the time the short tasks ran
 *                (target: one short task of slack, 21/20).
 *   floor-doorbell, floor-memcpy1MiB (on the raw-processes row)
 *                what the hardware allows between two processes, no pool:
 *                an empty request and answer over futex words (FUTEX_WAKE
 *                and FUTEX_WAIT each way), and 1 MiB copied into shared
 *                memory, copied by the other process into a 1 MiB result in
 *                shared memory, with a spin hand-off each way. The process
 *                pool's empty and bytes1MiB rows are held to ratios of these.
 *
 * libexecutor-threads only
 *   callback   exe_future_on_done() on an already finished promise, so the
 *              callback is registered and runs inline: ns per callback minus
 *              ns per plain indirect call of the same function.
 *   memory     heap bytes per queued task: the only worker is held on a
 *              promise while 100000 tasks are submitted, and the growth of
 *              mallinfo2()'s uordblks + hblkhd is divided by the count,
 *              in a fresh process per run (no block cached by earlier
 *              rows). ns/task on this row is the submit-only cost (nobody
 *              takes the tasks).
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
 * efficiency_pct, fairness work_ratio, the memory row bytes_per_task, crash-recovery
 * detect_p50_ns. bench/python_pools.py prints the same lines; bench_pool
 * reads them back and prints them as its own.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_pool.h"

const char *const sys_name[NSYS] = {
	"raw-threads", "naive-pool", "libexecutor-threads", "raw-processes", "libexecutor-processes",
	"python-thread-pool", "python-process-pool",
};

/* The python systems have no entry: python_pools.py runs them. */
static const struct sys_ops *const sys_ops[NSYS] = {
	[SYS_RAW] = &raw_threads_ops,
	[SYS_NAIVE] = &naive_pool_ops,
	[SYS_LIB] = &lib_threads_ops,
	[SYS_RAWPROC] = &raw_procs_ops,
	[SYS_LIBPROC] = &lib_procs_ops,
};

struct pool_opts pool_opt;

/* ---- the work ---- */

/* spin100us: each task returns how long its spin took as its value, so
 * efficiency is judged against the loop's speed during the run itself, and
 * the figure comes back from a worker process like any result. */
static int task_spin_timed(void *arg, void **result)
{
	int64_t t0 = bench_now_ns();

	bench_spin(*(const uint64_t *)arg);
	*result = (void *)(intptr_t)(bench_now_ns() - t0);
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

	*result = (void *)(intptr_t)bench_now_ns();
	st->on_submitter = pthread_equal(pthread_self(), st->submitter);
	return 0;
}

/* For processes: a worker forked from the submitting thread would see the
 * same pthread_self(), so "on caller" cannot be asked there. */
static int task_stamp_proc(void *arg, void **result)
{
	(void)arg;
	*result = (void *)(intptr_t)bench_now_ns();
	return 0;
}

/* ---- throughput ---- */

/*
 * Efficiency of one spin100us run: the work (the median spin a task measured,
 * times the tasks) over what ncpu CPUs could do in the wall time. The median
 * leaves out tasks that were preempted mid-spin; it tracks the loop's speed,
 * which drifts by tens of percent on shared or virtual machines, where a
 * spin length measured before the run would not.
 */
static double efficiency(int64_t *took, size_t n, double wall_ns)
{
	bench_sort_i64(took, n);
	if (took[0] <= 0)
		bench_die("spin100us: a task reported no spin time");
	return 100.0 * (double)bench_percentile(took, n, 50) * (double)n / bench_ncpu / wall_ns;
}

static void bench_throughput(enum sys_id s, const struct workload *w)
{
	const struct sys_ops *ops = sys_ops[s];
	size_t n = bench_scaled(w->tasks[s]);
	void **slots = bench_calloc(n, sizeof(*slots));
	double ns[BENCH_MAX_RUNS], eff[BENCH_MAX_RUNS], spin_ns[BENCH_MAX_RUNS];
	struct result r = { .sys = s, .workload = w->name, .tasks = n };
	bool timed = w->fn == task_spin_timed;
	int64_t *took = timed ? bench_calloc(n, sizeof(*took)) : NULL;
	void *ctx = ops->create();

	/* Untimed: threads and processes started, allocator and caches primed. */
	if (ops->batch(ctx, w->fn, w->iters, n / 10 ? n / 10 : 1, slots, NULL))
		bench_die("%s/%s: a task failed", sys_name[s], w->name);
	for (int i = 0; i < bench_opt.runs; i++) {
		int64_t t0 = bench_now_ns();

		if (ops->batch(ctx, w->fn, w->iters, n, slots, took))
			bench_die("%s/%s: a task failed", sys_name[s], w->name);
		ns[i] = (double)(bench_now_ns() - t0);
		if (took) {
			eff[i] = efficiency(took, n, ns[i]);
			spin_ns[i] = (double)bench_percentile(took, n, 50);
		}
	}
	ops->destroy(ctx);
	free(slots);

	r.seconds = bench_median(ns, bench_opt.runs) / 1e9;
	r.ns = r.seconds * 1e9 / (double)n;
	if (took) {
		r.efficiency = bench_median(eff, bench_opt.runs);
		snprintf(r.note, sizeof(r.note), "%.1f%% of ideal (median spin %.1f us, %u cpus)",
			 r.efficiency, bench_median(spin_ns, bench_opt.runs) / 1000, bench_ncpu);
		free(took);
	}
	add_result(&r);
}

/* ---- latency ---- */

static void bench_latency(enum sys_id s, bool hot, const char *name)
{
	const struct sys_ops *ops = sys_ops[s];
	/* A fork per sample: fewer samples keep raw-processes to seconds. */
	size_t n = (bench_opt.quick ? BENCH_LAT_SAMPLES / 4 : BENCH_LAT_SAMPLES) / (s == SYS_RAWPROC ? 4 : 1);
	int64_t *to_result = bench_calloc(n, sizeof(*to_result));
	int64_t *to_start = bench_calloc(n, sizeof(*to_start));
	struct bench_lat runs[BENCH_MAX_RUNS];
	struct result r = { .sys = s, .workload = name, .tasks = n, .latency = true };
	struct stamp st = { .submitter = pthread_self() };
	exe_task_fn *fn = ops->proc ? task_stamp_proc : task_stamp;
	void *ctx = ops->create();

	for (int run = 0; run < bench_opt.runs; run++) {
		int64_t sum = 0, t_run = bench_now_ns();
		size_t on_caller = 0;

		for (size_t i = 0; i < n + BENCH_LAT_WARMUP; i++) {
			int64_t t0, t1, start;

			if (!hot)
				bench_sleep_ns(BENCH_LAT_IDLE_NS);
			st.on_submitter = false;
			t0 = bench_now_ns();
			if (ops->one(ctx, fn, &st, &t1, &start))
				bench_die("%s/%s: a task failed", sys_name[s], r.workload);
			if (i < BENCH_LAT_WARMUP)
				continue;
			to_result[i - BENCH_LAT_WARMUP] = t1 - t0;
			to_start[i - BENCH_LAT_WARMUP] = start - t0;
			sum += t1 - t0;
			on_caller += st.on_submitter;
		}
		runs[run] = (struct bench_lat){ .wall = (double)(bench_now_ns() - t_run) };
		bench_lat_figures(&runs[run], to_result, to_start, n, sum, on_caller);
	}
	ops->destroy(ctx);
	free(to_result);
	free(to_start);

	set_latency(&r, runs);
	snprintf(r.note, sizeof(r.note), "start p50/p99 %.0f/%.0f ns, %.0f%% on caller", r.start_p50,
		 r.start_p99, r.caller_pct);
	add_result(&r);
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
		"  --workload W   empty, spin1us, spin100us, latency, latency-hot, latency-worker,\n"
		"                 callback, memory, map, map-chunk64, bytes1MiB, crash-recovery,\n"
		"                 fairness, floor-doorbell or floor-memcpy1MiB\n"
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

/* The options of bench_pool's own: --only is a mask of systems here. */
static int parse_pool_opt(int argc, char **argv, int i)
{
	if (!strcmp(argv[i], "--only") && i + 1 < argc) {
		pool_opt.only = parse_system(argv[i + 1]);
		if (!pool_opt.only)
			bench_die("unknown system '%s'", argv[i + 1]);
		return 2;
	}
	if (!strcmp(argv[i], "--python") && i + 1 < argc) {
		pool_opt.python = argv[i + 1];
		return 2;
	}
	return 0;
}

static bool want(enum sys_id s, const char *workload)
{
	return (!pool_opt.only || (pool_opt.only & 1u << s)) && bench_workload_matches(workload);
}

static bool want_python(void)
{
	return !pool_opt.only || (pool_opt.only & (SYS_PYTHREAD_BIT | SYS_PYPROC_BIT));
}

int main(int argc, char **argv)
{
	/* Task counts per system, in sys_id order: forks and Python cost
	 * tens to hundreds of microseconds a task, so they get fewer. */
	struct workload workloads[] = {
		{ "empty", bench_task_empty, NULL, { 20000, 200000, 200000, 2000, 20000, 20000, 4000 } },
		{ "spin1us", bench_task_spin, &bench_iters_1us,
		  { 20000, 100000, 100000, 2000, 20000, 20000, 4000 } },
		{ "spin100us", task_spin_timed, &bench_iters_100us,
		  { 2000, 4000, 4000, 1000, 2000, 2000, 2000 } },
	};

	if (argc == 2 && strcmp(argv[1], "--memory-child") == 0) {
		bench_memory_child(); /* see bench_memory() */
		return 0;
	}
	bench_parse_opts("bench_pool", argc, argv, usage, parse_pool_opt);
	if (!pool_opt.python)
		pool_opt.python = BENCH_DIR "/python_pools.py";
	bench_calibrate();
	crash_stamp_init();

	if (!bench_opt.json) {
		printf("bench_pool: libexecutor %d.%d.%d, %u online CPUs, %s mode, median of %d runs\n",
		       EXE_VERSION_MAJOR, EXE_VERSION_MINOR, EXE_VERSION_PATCH, bench_ncpu,
		       bench_opt.quick ? "quick" : "full", bench_opt.runs);
		bench_print_spins();
		print_table_header();
	}
	for (size_t w = 0; w < sizeof(workloads) / sizeof(workloads[0]); w++)
		for (int s = 0; s < NSYS; s++)
			if (sys_ops[s] && want(s, workloads[w].name))
				bench_throughput(s, &workloads[w]);
	for (int hot = 0; hot < 2; hot++)
		for (int s = 0; s < NSYS; s++)
			if (sys_ops[s] && want(s, hot ? "latency-hot" : "latency"))
				bench_latency(s, hot, hot ? "latency-hot" : "latency");
	lib_no_caller_runs = true;
	for (int s = SYS_RAW; s <= SYS_LIB; s++)
		if (sys_ops[s] && want(s, "latency-worker"))
			bench_latency(s, false, "latency-worker");
	lib_no_caller_runs = false;
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
	if (want(SYS_RAWPROC, "floor-doorbell"))
		bench_floor(false);
	if (want(SYS_RAWPROC, "floor-memcpy1MiB"))
		bench_floor(true);
	if (want(SYS_LIBPROC, "fairness"))
		bench_fairness();
	if (want_python())
		bench_python(workloads, sizeof(workloads) / sizeof(workloads[0]));
	if (!bench_opt.json && any_result(SYS_LIB))
		summary_threads();
	if (!bench_opt.json && any_result(SYS_LIBPROC))
		summary_processes();
	return 0;
}
