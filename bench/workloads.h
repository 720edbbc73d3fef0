/*
 * workloads.h - the workloads, timing and reporting shared by bench_peers and
 * bench_tbb, so every thread pool is measured by the same code (the clock,
 * the spin loop and the statistics under it are harness.h's, which
 * bench_pool, bench_queue and bench_io use too).
 *
 * A system is a set of hooks (struct bench_system). The harness calibrates
 * the spin loop once per process, then for each workload runs every system
 * --runs times, interleaved: round r runs each system once, starting at a
 * different system every round, so a burst of background load on the shared
 * machine lands on all systems alike instead of on one. Each figure is the
 * median of its runs; ratios are taken against libexecutor-threads measured
 * in the same process, in the same rounds.
 *
 * Throughput workloads (the timed region: submit N tasks, then wait until
 * every task's result is in hand and read each one):
 *   empty      the task returns at once: the pure cost of a task.
 *   spin1us    the task spins ~1 us: overhead next to small work.
 *   spin100us  the task spins ~100 us: how close the system gets to running
 *              ncpu tasks at a time (efficiency_pct, as in bench_pool).
 * Each run creates the pool, runs an untimed warm-up batch of N/10 tasks
 * (threads started, allocator primed), the timed batch, then destroys it.
 *
 *   empty-batch  empty tasks as a batch: libexecutor submits the whole batch
 *              with exe_pool_submit_many() and waits once with exe_wait(),
 *              the way the peers (which hand out no futures) always run.
 *   callback     empty tasks, each with a done callback and no waiting:
 *              libexecutor submits with exe_pool_submit_cb() (the callback
 *              rides with the task, no future handed out); the batch ends
 *              when the last callback ran. Peers run
 *              their batch, which is this shape for libuv (uv_queue_work()
 *              and its after-work callback) and GLib.
 *   fork-join    fib(27) (fib(22) with --quick) where every call is a task
 *              that submits its two children and waits on both; ns/task is
 *              per task (call). Only systems with a fork_join hook run it
 *              (libexecutor, OpenMP tasks, oneTBB task_group).
 *
 * Latency workloads (one task at a time; p50/p99 of submit-to-result):
 *   latency      ~200 us of sleep between tasks: the workers have parked.
 *   latency-hot  back to back: the workers may still be awake.
 *   latency-worker  as latency, but libexecutor's pool has no_caller_runs:
 *              the task must run on a worker, as it must for callbacks,
 *              then(), init pools and waits with a finite timeout; the
 *              peers run as on "latency".
 *
 * JSON lines carry bench_pool's fields, {"system","workload","tasks",
 * "seconds","ns_per_task","tasks_per_s","p50_ns","p99_ns"}, plus
 * "vs_libexecutor" on the other systems' rows (libexecutor's figure over the
 * row's: above 1 the row beats libexecutor; ns/task on throughput rows, p50
 * on latency rows), "efficiency_pct" on spin100us and "start_p50_ns",
 * "start_p99_ns", "caller_pct" (tasks run by the submitting thread) and
 * "cpu_pct" on latency rows: the process's CPU time over the wall time, in
 * percent of one CPU, so a pool that buys its latency by keeping idle
 * threads spinning shows it (the workload alone needs a few percent).
 */
#ifndef BENCH_WORKLOADS_H
#define BENCH_WORKLOADS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The shape of a task, the same as exe_task_fn: 0 with *result, or < 0. */
typedef int bench_task_fn(void *arg, void **result);

/* What a system gives each task to fill in: the harness reads every one
 * after the batch, which is what "wait for every result" means for the pools
 * that hand out no futures. */
struct bench_result {
	void *value;
	int code;
};

struct bench_system {
	const char *name;
	/* Non-NULL when the system was not compiled in: the Debian package to
	 * install. The program then says "skipped: install <package>". */
	const char *missing;
	/* Bytes of per-task memory a batch gets in @slots (untimed, prefaulted):
	 * the pools that let the caller own the request memory get it free. */
	size_t slot_size;
	/* A pool with @nthreads workers (the number of online CPUs). */
	void *(*create)(unsigned nthreads);
	void (*destroy)(void *ctx);
	/* Run fn(arg) @n times and return when every task has finished; task i
	 * stores its outcome in bench_slot_result(@slots, slot_size, i). The
	 * harness sets every code to 1 before the batch and checks for 0 after
	 * it, untimed: a task that did not run or failed stops the program. */
	int (*batch)(void *ctx, bench_task_fn *fn, void *arg, size_t n, void *slots);
	/* Run one fn(arg), wait for it and stamp *@t_done once its result is in
	 * hand. Return the task's code. */
	int (*one)(void *ctx, bench_task_fn *fn, void *arg, int64_t *t_done);
	/* Optional: run body(state) inside whatever context one() needs (an
	 * OpenMP parallel region); NULL: body is called directly. */
	void (*enclose)(void *ctx, void (*body)(void *state), void *state);
	/* Optional: empty-batch and callback rows (see above); NULL: batch. */
	int (*batch_many)(void *ctx, bench_task_fn *fn, void *arg, size_t n, void *slots);
	int (*callback)(void *ctx, bench_task_fn *fn, void *arg, size_t n, void *slots);
	/* Optional: fib(@n) with one task per call, each waiting on its two
	 * children; returns the value. NULL: the system skips fork-join. */
	long (*fork_join)(void *ctx, int n);
};

/* The libexecutor thread pool: exe_pool_submit(), then exe_future_result()
 * and exe_future_unref() on each future in submission order. */
extern const struct bench_system bench_libexecutor_threads;

/* false: --json leaves out the libexecutor-threads rows (they still run and
 * give the ratios), for a program whose reference rows another one prints. */
extern bool bench_json_reference;

/* Options: --quick, --json, --runs N, --only SYSTEM, --workload W (through
 * bench_parse_opts(), with this harness's usage). Also sets bench_ncpu;
 * call first. */
void bench_parse_args(const char *prog, int argc, char **argv);

/* Calibrate the spins, run every workload on @systems (libexecutor first,
 * the reference), print rows as each workload completes, then the summary
 * (table mode). Systems with ->missing are reported as skipped. */
void bench_run(const char *prog, const struct bench_system *systems, int nsys);

/* The outcome record at the start of slot @i: each system's slot type puts
 * a struct bench_result first. */
static inline struct bench_result *bench_slot_result(void *slots, size_t slot_size, size_t i)
{
	return (struct bench_result *)((char *)slots + i * slot_size);
}

#ifdef __cplusplus
}
#endif

#endif /* BENCH_WORKLOADS_H */
