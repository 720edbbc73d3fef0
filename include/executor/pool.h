/*
 * executor/pool.h - executors that run tasks and return futures.
 *
 * A thread pool runs `int fn(void *arg, void **result)` on its worker threads:
 * 0 with *result is success, a negative code is failure. Every submit returns
 * a struct exe_future (future.h).
 *
 * Threads. Done callbacks of a pool task run on the thread that finished the
 * task: a worker named "<name>-N", or a thread that ran the task itself while
 * waiting for it. Workers block every asynchronous signal: signals go to the
 * application's threads.
 *
 * Waiting inside a task. A task that waits (forever) on another pending task
 * of the same pool runs that task itself, and while the task it waits for
 * runs on another thread it runs other queued tasks of the pool rather than
 * sleep (fork-join "help while you wait", at most 16 deep); so nested waits
 * cannot deadlock, even with one worker. An infinite wait from outside the
 * pool does the same ("caller runs"), which saves a cross-core wake-up and
 * keeps the waiting thread busy; the wait may then return up to one task's
 * run time after its own task finished. Set exe_pool_opts.no_caller_runs (or
 * use an init function, which implies it) to keep every task on the pool's
 * own threads. Waits with a finite timeout never run tasks.
 *
 * Lifetime. One owner per pool. exe_pool_shutdown() is idempotent;
 * exe_pool_destroy() implies shutdown with EXE_SHUTDOWN_WAIT, joins every
 * thread and frees the pool. Futures may outlive the pool: they are then
 * finished (done, failed or cancelled), never stuck.
 *
 * Exit. Returning from main() or calling exit() with a live pool ends its
 * threads abruptly; queued tasks are lost. Destroy pools before exiting.
 */
#ifndef EXECUTOR_POOL_H
#define EXECUTOR_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

struct exe_pool;

/* A task: 0 with *result on success, a negative code on failure. */
typedef int exe_task_fn(void *arg, void **result);

/* A per-worker initializer, run once on each worker before its first task.
 * Non-zero (a negative code) breaks the pool: see exe_pool_opts.init. */
typedef int exe_init_fn(void *arg);

struct exe_pool_opts {
	/* Worker count; 0: the number of online CPUs. */
	unsigned workers;
	/* 0: unbounded. Else at most this many tasks wait to start; submit then
	 * returns -EAGAIN, or blocks with EXE_SUBMIT_BLOCK. */
	size_t queue_capacity;
	/* Thread names are "<name>-<N>" (truncated to 15 bytes); default "exe". */
	const char *name;
	/* Run on each worker before its first task. When it fails, the pool is
	 * broken: queued and later tasks fail with -EPIPE and a message that
	 * names the worker and the code, and submit returns -EPIPE. */
	exe_init_fn *init;
	void *init_arg;
	/* Never run a task on a thread that waits for it (see above). */
	bool no_caller_runs;
	/* Process-pool-only settings (recycling, task time limits) are in
	 * struct exe_process_pool_opts (process_pool.h). */
};

enum exe_submit_flags {
	EXE_SUBMIT_BLOCK = 1u << 0,          /* wait for room in a bounded queue */
	EXE_SUBMIT_KILL_ON_CANCEL = 1u << 1, /* process pools: cancel kills a running task */
};

struct exe_submit_opts {
	unsigned flags;           /* enum exe_submit_flags */
	int64_t block_timeout_ns; /* with EXE_SUBMIT_BLOCK: <0 forever (default 0 = forever too) */
	exe_free_fn *result_free; /* the task's value is freed with its future */
	int64_t task_timeout_ns;  /* process pools: overrides exe_process_pool_opts.task_timeout_ns; 0: the
	                             pool's */
};

enum exe_shutdown_flags {
	EXE_SHUTDOWN_WAIT = 1u << 0,           /* return when every task finished */
	EXE_SHUTDOWN_CANCEL_PENDING = 1u << 1, /* cancel queued tasks (-ECANCELED) */
};

struct exe_pool_stats {
	uint64_t submitted;       /* accepted by submit */
	uint64_t completed;       /* finished DONE */
	uint64_t failed;          /* finished FAILED */
	uint64_t cancelled;       /* cancelled before they started */
	uint64_t queued;          /* accepted, not started, not cancelled */
	uint64_t running;         /* started, not finished */
	unsigned workers;         /* live worker threads */
	uint64_t worker_restarts; /* workers replaced (process pools) */
	bool broken;              /* a worker's init failed */
	bool shut_down;
};

/*
 * exe_thread_pool_create - start a pool of worker threads.
 * @opts may be NULL (all defaults). Returns at once; inits run on the workers.
 * A thread cannot be killed safely, so a running thread task is stopped
 * cooperatively (exe_future_cancel()); per-task time limits and recycling
 * are process-pool settings (exe_process_pool_opts).
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -EAGAIN (no threads).
 */
EXE_API int exe_thread_pool_create(struct exe_pool **out, const struct exe_pool_opts *opts);

/*
 * exe_pool_submit - queue fn(arg). @out (may be NULL: fire and forget)
 * receives a reference to the task's future.
 * Return: 0, -EINVAL (@fn NULL), -ESHUTDOWN, -EPIPE (broken),
 * -EAGAIN (bounded queue full), -ENOMEM.
 */
EXE_API int exe_pool_submit(struct exe_pool *p, exe_task_fn *fn, void *arg, struct exe_future **out);

/*
 * exe_pool_submit_opts - exe_pool_submit() with options (@o may be NULL).
 * Return: as exe_pool_submit(); -ETIMEDOUT when a blocking submit's
 * block_timeout_ns passed.
 */
EXE_API int exe_pool_submit_opts(struct exe_pool *p, exe_task_fn *fn, void *arg,
                                 const struct exe_submit_opts *o, struct exe_future **out);

/*
 * exe_pool_map - run fn(args[i]) for i < n, results in order in @results
 * (the values tasks returned; the caller owns them). One overall deadline,
 * fixed at the call. On the first failure (in index order) or at the
 * deadline, the tasks not yet started are cancelled and the call returns.
 * Blocks for room in a bounded queue. One task per element: for many tiny
 * tasks on a process pool, exe_pool_map_opts() sends them in chunks.
 * Return: 0 all succeeded; else the first failure's code (-ETIMEDOUT at the
 * deadline) with *@failed_index (may be NULL) set; -EINVAL, -ESHUTDOWN,
 * -ENOMEM before anything ran.
 */
EXE_API int exe_pool_map(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
                         int64_t timeout_ns, size_t *failed_index);

/* Options of exe_pool_map_opts(). All-zero means the defaults. */
struct exe_map_opts {
	/* One overall deadline, fixed at the call, in nanoseconds; 0 or
	 * negative (EXE_FOREVER): none. */
	int64_t timeout_ns;
	/* Elements per message. 0: automatic; a process pool picks it from n
	 * and its worker count (about four chunks per worker, at most 256), a
	 * thread pool uses 1. Process pools cap it at 1024. 1 is exactly
	 * exe_pool_map(): one task per element. */
	size_t chunk;
};

/*
 * exe_pool_map_opts - exe_pool_map() with options (@o may be NULL: forever,
 * automatic chunk). Same contract: results in order, the first failure in
 * index order (or the deadline) stops the map, cancels what has not started
 * and sets *@failed_index; results[i] is valid for every i below it.
 *
 * Chunks (process pools, chunk > 1): one message carries a chunk of
 * arguments (their bit patterns) to a worker, which runs fn on each element
 * in order and sends the chunk's values back in one message. So:
 *  - a failing element stops its chunk: the elements after it in the chunk
 *    never run; chunks already running on other workers run to their end;
 *  - a worker crash fails the first element of the chunk that had not
 *    finished with -ECHILD, as a single task whose worker died (a time
 *    limit: -ETIME, a protocol error: -EBADMSG); the elements before it
 *    keep their values, the ones after it in the chunk never run; a
 *    replacement worker starts and the pool goes on;
 *  - exe_process_pool_opts.task_timeout_ns bounds a chunk as a whole, scaled by its
 *    element count; max_tasks_per_worker counts a chunk as one task;
 *  - a message set with exe_task_set_error() belongs to its element only
 *    (a map returns codes, not messages).
 * Thread pools run one task per element whatever the chunk.
 * The caller owns the values in @results, as with exe_pool_map(). Any
 * thread, except a done callback of @p (on a process pool, that thread
 * delivers the results); blocks until done, failed or the deadline.
 * Return: as exe_pool_map().
 */
EXE_API int exe_pool_map_opts(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n,
                              void **results, const struct exe_map_opts *o, size_t *failed_index);

/*
 * exe_pool_shutdown - stop accepting tasks (submit then returns -ESHUTDOWN).
 * Queued tasks still run unless EXE_SHUTDOWN_CANCEL_PENDING; with
 * EXE_SHUTDOWN_WAIT the call returns when every task has finished and every
 * worker has exited. Idempotent; a later call may add WAIT or CANCEL_PENDING.
 * Must not be called with WAIT from a task of the same pool (-EDEADLK).
 * Return: 0, -EINVAL (unknown flag), -EDEADLK.
 */
EXE_API int exe_pool_shutdown(struct exe_pool *p, unsigned flags);

/*
 * exe_pool_destroy - shutdown(WAIT), join every worker, free the pool.
 * Futures still referenced by the caller stay valid (finished). NULL is ok.
 * Must not be called from one of the pool's tasks.
 */
EXE_API void exe_pool_destroy(struct exe_pool *p);

/* exe_pool_stats - a consistent-enough snapshot (each counter exact, the set
 * not atomic). Return: 0, -EINVAL. */
EXE_API int exe_pool_stats(struct exe_pool *p, struct exe_pool_stats *st);

/* exe_pool_error - why the pool is broken, or NULL. Owned by the pool. */
EXE_API const char *exe_pool_error(struct exe_pool *p);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_POOL_H */
