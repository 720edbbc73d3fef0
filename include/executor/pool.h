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
 * sleep (fork-join "help while you wait"). Such runs nest on the waiting
 * thread's stack at most 256 deep, and never within 256 KiB of its end; past
 * that the waiter sleeps, and when every worker of the pool sleeps in such a
 * wait the pool starts a temporary thread (it runs the init function too)
 * that takes queued tasks and leaves once a worker is back, as Java's
 * ForkJoinPool compensates blocked workers. So nested waits cannot deadlock,
 * even with one worker and a chain of waits deeper than any stack. A task
 * waiting on its own future (or on a task it runs on top of) gets -EDEADLK. An infinite wait from outside the
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
	 * broken for good: queued and later tasks fail with -ENOTRECOVERABLE
	 * and a message that names the worker and the code, and submit returns
	 * -ENOTRECOVERABLE. Recreate the pool. */
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
	unsigned flags; /* enum exe_submit_flags */
	/* With EXE_SUBMIT_BLOCK, how long to wait for room; 0: forever (the
	 * default), EXE_FOREVER also forever, > 0 at most that long
	 * (-ETIMEDOUT). */
	int64_t block_timeout_ns;
	exe_free_fn *result_free; /* the task's value is freed with its future */
	/* Process pools: this task's time limit (-ETIME past it); 0: the pool's
	 * exe_process_pool_opts.task_timeout_ns. */
	int64_t task_timeout_ns;
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
	bool broken;              /* broken for good (-ENOTRECOVERABLE): a worker's init failed */
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
 * Return: 0, -EINVAL (@p or @fn NULL), -ESHUTDOWN, -ENOTRECOVERABLE (broken),
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
 * exe_pool_submit_cb - queue fn(arg) with a done callback and hand out no
 * future (fire and forget): @done(f, @done_arg) runs once when the task
 * finished (DONE, FAILED or CANCELLED by shutdown), on the thread that
 * finished it, exactly as a callback added by exe_future_on_done(); @f is
 * borrowed for the call (exe_future_ref() keeps it). The same as
 * exe_pool_submit() + exe_future_on_done() + exe_future_unref(), but the
 * callback is attached before the task is queued: no lock, no second
 * reference, no race with the finish. When the call fails @done never runs.
 * Any thread, tasks included.
 * Return: 0, -EINVAL (@p, @fn or @done NULL), -ESHUTDOWN, -ENOTRECOVERABLE
 * (broken), -EAGAIN (bounded queue full), -ENOMEM.
 */
EXE_API int exe_pool_submit_cb(struct exe_pool *p, exe_task_fn *fn, void *arg, exe_done_fn *done,
                               void *done_arg);

/*
 * exe_pool_submit_many - queue fn(args[i]) for every i < @n as one batch.
 * The batch is accepted whole or not at all. A thread pool allocates every
 * future first, then queues the batch under one lock hold and wakes as many
 * sleeping workers as the batch can use with one system call: far cheaper
 * than @n submits for many small tasks. @out (may be NULL: fire and forget)
 * has room for @n pointers and receives a reference to each task's future,
 * in order. A bounded queue takes the batch only if all of it fits (never
 * blocks). Other pool kinds submit one by one; a failure midway cancels the
 * tasks of the batch already queued (one that already started may run).
 * @n == 0 does nothing and returns 0. Any thread, tasks included.
 * Return: 0, -EINVAL (@p, @fn or @args NULL with @n > 0), -ESHUTDOWN,
 * -ENOTRECOVERABLE (broken), -EAGAIN (a bounded queue has not room for @n),
 * -ENOMEM.
 */
EXE_API int exe_pool_submit_many(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n,
                                 struct exe_future **out);

/*
 * exe_pool_map - run fn(args[i]) for i < n, results in order in @results
 * (the values tasks returned; the caller owns them). One overall deadline,
 * fixed at the call. On the first failure (in index order) or at the
 * deadline, the tasks not yet started are cancelled and the call returns.
 * Blocks for room in a bounded queue. One task per element: for many tiny
 * tasks on a process pool, exe_pool_map_opts() sends them in chunks.
 * @timeout_ns is a timeout argument like any other: < 0 (EXE_FOREVER) no
 * deadline, > 0 the deadline, and 0 polls - nothing may be waited for, so
 * for @n > 0 the map returns -ETIMEDOUT with *@failed_index 0 before
 * submitting anything (use exe_pool_map_open() to take results as they come).
 * Return: 0 all succeeded; else the first failure's code (-ETIMEDOUT at the
 * deadline) with *@failed_index (may be NULL) set; -EINVAL (NULL @p or @fn,
 * NULL @args or @results with @n), -ESHUTDOWN, -ENOMEM before anything ran.
 */
EXE_API int exe_pool_map(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
                         int64_t timeout_ns, size_t *failed_index);

/* Options of exe_pool_map_opts(). All-zero means the defaults. */
struct exe_map_opts {
	/* One overall deadline, fixed at the call, in nanoseconds; 0: none
	 * (the default; an option field, unlike exe_pool_map()'s argument),
	 * EXE_FOREVER: none too. */
	int64_t timeout_ns;
	/* Elements per message. 0: automatic; a process pool picks it from n
	 * and its worker count (about four chunks per worker, at most 256), a
	 * thread pool uses 1. Process pools cap it at 1024. 1 is exactly
	 * exe_pool_map(): one task per element. */
	size_t chunk;
	/* exe_pool_map_open() only: at most this many elements submitted and
	 * not yet returned by exe_map_next(); 0: twice the pool's workers. */
	size_t window;
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

/* ---- Lazy map: results in order while later elements still run ---- */

struct exe_map_iter;

/*
 * exe_pool_map_open - Python's Executor.map() as an iterator: fn(args[i])
 * for i < n, whose results exe_map_next() hands out in input order while
 * later elements still run. At most @o->window elements are in flight
 * (submitted and not yet handed out; 0: twice the pool's workers), so a
 * million-element map holds a window of futures, never a million. Elements
 * are submitted as the window frees up, by exe_map_next() on the calling
 * thread; nothing runs before the first exe_map_next(). @o may be NULL (all
 * defaults); @o->timeout_ns must be 0 (each exe_map_next() takes its own
 * timeout); @o->chunk: process pools send that many elements per message
 * (see process_pool.h), thread pools run one task per element.
 *
 *	struct exe_map_iter *it;
 *	void *v;
 *	exe_pool_map_open(&it, pool, fn, args, n, NULL);
 *	while ((rc = exe_map_next(it, &v, EXE_FOREVER)) != -EPIPE)
 *		if (rc == 0) use(v); else report(exe_map_index(it), rc);
 *	exe_map_close(it);
 *
 * Ownership: @args is borrowed until exe_map_close() (an element's pointer is
 * read when it is submitted); the values handed out are the caller's. The
 * iterator is the caller's and is used by one thread at a time.
 * Return: 0 with *@out; -EINVAL (NULL @out, @p or @fn, NULL @args with @n, a
 * non-zero @o->timeout_ns), -ENOMEM.
 */
EXE_API int exe_pool_map_open(struct exe_map_iter **out, struct exe_pool *p, exe_task_fn *fn,
                              void *const *args, size_t n, const struct exe_map_opts *o);

/*
 * exe_map_next - the next result in input order, waiting up to @timeout_ns
 * (a timeout argument: < 0 forever, 0 polls); tops the window up first.
 * A failed element does not end the iteration: its code is returned and the
 * next call goes on with the element after it (close to stop, as Python's
 * map does at the first exception). A submit the pool refused (shut down,
 * broken) fails that element with the refusal's code and ends the iteration.
 * Return: 0 with *@value (the task's value); -EPIPE every element was handed
 * out; -ETIMEDOUT the next element did not finish in time (call again;
 * nothing is lost); the element's failure code (its task's code,
 * -ECANCELED, or the submit's refusal) with *@value set to NULL - in every
 * case but -ETIMEDOUT and -EPIPE, exe_map_index() says which element it was;
 * -EINVAL (NULL @it or @value).
 */
EXE_API int exe_map_next(struct exe_map_iter *it, void **value, int64_t timeout_ns);

/*
 * exe_map_index - the input index of the element the last exe_map_next()
 * returned (a value or a failure).
 * Return: the index; SIZE_MAX before the first element and for NULL @it.
 */
EXE_API size_t exe_map_index(const struct exe_map_iter *it);

/*
 * exe_map_close - end the map: elements in flight that have not started are
 * cancelled, running ones finish on their own (their values are dropped;
 * what they allocate is not freed), elements never submitted never run.
 * Frees the iterator. Does not wait. NULL is a no-op.
 */
EXE_API void exe_map_close(struct exe_map_iter *it);

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

/*
 * exe_pool_stats - a consistent-enough snapshot of @p's counters into *@st
 * (each counter exact, the set not atomic).
 * Return: 0, -EINVAL (NULL @p or @st).
 */
EXE_API int exe_pool_stats(struct exe_pool *p, struct exe_pool_stats *st);

/*
 * exe_pool_error - why the pool is broken ("worker 2 init failed: ...").
 * Return: the message, owned by the pool; NULL while it is not broken and
 * for NULL @p.
 */
EXE_API const char *exe_pool_error(struct exe_pool *p);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_POOL_H */
