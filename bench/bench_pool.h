/*
 * bench_pool.h - what the parts of bench_pool share: the systems, the rows
 * and the options of its own. What is measured is explained at the top of
 * bench_pool.c.
 *
 *   bench_pool.c    options, the thread and process systems' table, the
 *                   throughput and latency workloads every system runs
 *   pool_threads.c  raw-threads, naive-pool, libexecutor-threads; the
 *                   callback and memory rows
 *   pool_procs.c    raw-processes, libexecutor-processes; the map,
 *                   map-chunk64, bytes1MiB and crash-recovery rows
 *   pool_python.c   the python-*-pool rows, run by python_pools.py
 *   pool_report.c   the table, the JSON lines and the targets
 */
#ifndef BENCH_POOL_H
#define BENCH_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <executor.h>

#include "harness.h"

#define RAW_MAX_INFLIGHT 64
#define MAP_TASKS 20000
#define CHUNK 64
#define BYTES_SAMPLES 400
/* fairness: short tasks behind one long one, and their length */
#define FAIR_SHORT_TASKS 20
#define FAIR_SHORT_MS 2

enum sys_id { SYS_RAW, SYS_NAIVE, SYS_LIB, SYS_RAWPROC, SYS_LIBPROC, SYS_PYTHREAD, SYS_PYPROC, NSYS };

extern const char *const sys_name[NSYS];

#define SYS_PYTHREAD_BIT (1u << SYS_PYTHREAD)
#define SYS_PYPROC_BIT (1u << SYS_PYPROC)

/* bench_pool's own options; the common ones are bench_opt. */
struct pool_opts {
	const char *python; /* path of python_pools.py */
	unsigned only;      /* a mask of 1 << sys_id; 0 for all */
};

extern struct pool_opts pool_opt;

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

extern const struct sys_ops raw_threads_ops, naive_pool_ops, lib_threads_ops;
extern const struct sys_ops raw_procs_ops, lib_procs_ops;

/* A throughput workload and its task count per system, in sys_id order. */
struct workload {
	const char *name;
	exe_task_fn *fn;
	uint64_t *iters;
	size_t tasks[NSYS];
};

/* ---- rows: pool_report.c ---- */

struct result {
	enum sys_id sys;
	const char *workload;
	size_t tasks;
	double seconds;
	double ns;                                 /* ns/task, see bench_pool.c */
	bool latency;                              /* p50 .. caller_pct are set */
	double p50, p99, start_p50, start_p99, caller_pct;
	bool memory;                               /* bytes is set */
	double bytes;
	double efficiency;                         /* spin100us: percent of ideal */
	double detect;                             /* crash-recovery: crash to failure */
	double work_ratio;                         /* fairness: last short end / their run time */
	char note[80];
};

/* Keeps a copy of @r and prints it, as a table row or a JSON line. */
void add_result(const struct result *r);
const struct result *find_result(enum sys_id sys, const char *workload);
bool any_result(enum sys_id sys);
/* ns/task, seconds, p50 .. caller_pct of @r: the medians over the runs. */
void set_latency(struct result *r, const struct bench_lat *runs);
void print_table_header(void);
/* The targets libexecutor is held to; a MISS is reported, never fatal. */
void summary_threads(void);
void summary_processes(void);

/* ---- pool_threads.c ---- */

/* The next libexecutor thread pool created keeps tasks off the waiting
 * thread (exe_pool_opts.no_caller_runs): the latency-worker rows. */
extern bool lib_no_caller_runs;
/* exe_pool_submit(), or the program stops. */
struct exe_future *lib_submit(struct exe_pool *p, exe_task_fn *fn, void *arg);
/* The sys_ops calls that serve both kinds of libexecutor pool. */
void lib_destroy(void *ctx);
int lib_batch(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots, int64_t *values);
int lib_one(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done, int64_t *value);
void bench_callback(void);
void bench_memory(void);
void bench_memory_child(void);

/* ---- pool_procs.c ---- */

/* Maps the page the crashing task stamps: before any pool or child exists,
 * so every worker inherits it. */
void crash_stamp_init(void);
void bench_map(void);
void bench_map_chunk(void);
void bench_bytes(void);
void bench_crash(enum sys_id s);
/* floor-memcpy1MiB (@copy) or floor-doorbell, on the raw-processes row. */
void bench_floor(bool copy);
void bench_fairness(void);

/* ---- pool_python.c ---- */

/* python_pools.py through python3 with the task counts of @wl; its lines
 * become rows. */
void bench_python(const struct workload *wl, size_t nwl);

#endif /* BENCH_POOL_H */
