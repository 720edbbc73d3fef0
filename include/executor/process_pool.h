/*
 * executor/process_pool.h - a pool of worker processes behind the same
 * struct exe_pool and futures as the thread pool.
 *
 * Where workers come from. When the pool is created, a single-threaded
 * "fork server" is forked from this program; every worker (the first ones
 * and each replacement) is forked from that server. So a worker runs this
 * program's code with the memory the program had when
 * exe_process_pool_create() was called:
 *  - function pointers are valid in the workers as they are, and so are
 *    pointers into memory that existed at creation (with the contents it had
 *    then: later changes in the parent are not seen);
 *  - code loaded with dlopen() after creation is not in the workers;
 *  - libc's allocator and stdio locks are made consistent by fork, other
 *    locks are copied as they were: create the pool before starting threads
 *    that hold locks for long, or at least while none is held.
 * The workers never see the parent's later threads, so a lock taken by some
 * thread at the moment a replacement starts cannot leak into it.
 *
 * Two kinds of task.
 *  - Bytes tasks, exe_pool_submit_bytes(): the input is copied at submit,
 *    the task returns a byte buffer, and the future owns the result bytes
 *    (exe_future_bytes()). Inputs up to 8 KiB travel in the task's ring
 *    slot, results up to 4 KiB in the worker's result entry.
 *    Larger ones up to 16 MiB go through a shared-memory arena mapped in
 *    every worker (the input is copied once at submit and read in place;
 *    the result is copied once by the worker, or not at all when the task
 *    built it in exe_proc_result_alloc(), and kept by the future without
 *    another copy); beyond that, or when the arena is full, through a sealed
 *    memfd (a 64 MiB result is copied once in the worker and mapped here).
 *    A task that writes through wild pointers may spoil other tasks'
 *    payloads in the arena, never the parent's own memory.
 *  - Pointer tasks, exe_pool_submit(), exe_pool_submit_opts(),
 *    exe_pool_map(): exe_task_fn runs in a worker; @arg and the returned
 *    value cross as their bit patterns. That is fine for integers, and for
 *    pointers into memory that existed before the pool was created (read in
 *    the worker, as it was then). A value pointing into the worker's memory
 *    means nothing in the parent, so exe_submit_opts.result_free is refused
 *    (-EINVAL). exe_pool_map_opts() with a chunk size sends a chunk of
 *    arguments in one slot and gets the chunk's values back at once (see
 *    pool.h for what a failure or a crash in a chunk does): for many tiny
 *    tasks it costs a fraction of a task per element.
 * How tasks travel. Tasks wait in a ring of slots in memory shared with
 * every worker, in submission order; an idle worker takes the oldest by one
 * atomic compare-and-swap, and writes its result into its own cell of
 * shared memory. No worker is idle while a task waits, and no task waits
 * behind a busy worker while another is free (Python's ProcessPoolExecutor
 * shares one call queue the same way). A busy pool passes tasks and results
 * without a system call; sleeping workers and a sleeping collector are
 * woken through futex words and the channel. A task is RUNNING only once a
 * worker has taken it; until then it is PENDING, and exe_future_cancel() and
 * exe_pool_shutdown(EXE_SHUTDOWN_CANCEL_PENDING) always cancel it (the
 * cancel and the taking worker race on the slot: exactly one wins, and a
 * cancel that loses returns -EBUSY with the future RUNNING).
 * exe_pool_map_open() (the lazy map) on a process pool sends chunks too:
 * exe_map_opts.chunk elements per task, at most the window (0:
 * automatic, as large as lets two chunks per worker fit the window - so
 * raise the window, e.g. to 64 x workers, to get chunks from the default).
 * A failing element fails alone; the elements after it in its chunk never
 * ran and come out as -ECANCELED; a crash fails the element that was
 * running (-ECHILD) and the pool goes on. exe_map_close() cancels the
 * chunks not started.
 * A task's exe_task_set_error() message travels back to the future.
 * exe_task_cancelled() is always false inside a process task: a process
 * task is stopped by killing its worker (EXE_SUBMIT_KILL_ON_CANCEL).
 *
 * Threads. Done callbacks of process tasks run in this process, on the
 * pool's collector thread, named "<name>-c", which reads every worker's
 * results (a callback for a cancelled queued task runs on the thread that
 * cancelled it, as for any future). A slow callback delays every result of
 * the pool: move slow work elsewhere (exe_future_on_done_in()).
 *
 * Failures (the future always carries a message, exe_future_error()):
 *   -ECHILD     the worker running the task died: "worker 4121 killed by
 *               signal 11 (Segmentation fault)", "worker 4121 exited with
 *               status 3". Only that task fails; a replacement starts and
 *               queued tasks go on.
 *   -ETIME      the task ran past its own time limit
 *               (exe_process_pool_opts.task_timeout_ns or
 *               exe_submit_opts.task_timeout_ns): its worker got SIGTERM,
 *               then SIGKILL after the grace period, and was replaced.
 *               (-ETIMEDOUT is only ever a wait of the caller's running out.)
 *   -EBADMSG    the worker broke the protocol (a task wrote into the
 *               channel, a truncated frame, a result for a task it does
 *               not hold): the worker is killed and replaced; its current
 *               task fails, and so does any task it took and did not
 *               report, since it may have run.
 *   -ECANCELED  a running task killed by exe_future_cancel() (with
 *               EXE_SUBMIT_KILL_ON_CANCEL or kill_on_cancel), or by
 *               exe_pool_destroy() after its grace period.
 *   -ENOTRECOVERABLE  the pool is broken for good and must be recreated:
 *               a worker's init failed, a worker could not be started, or
 *               the fork server died (killed from outside: a replacement
 *               cannot be forked safely from this multi-threaded process,
 *               see above). Queued and later tasks fail, submit returns it,
 *               exe_pool_error() says why; running tasks fail with -ECHILD
 *               as their workers die with the server.
 * Any other code is the task's own.
 *
 * Signals and lifetime. Workers ignore SIGINT and live in their own process
 * group, so a terminal's Ctrl-C reaches the parent only. In workers, the
 * crash signals (SEGV, BUS, FPE, ILL, ABRT, TRAP, SYS) and SIGTERM get their
 * default action back, so a crash is reported as the signal it was; install
 * handlers in the init function if you want others. Workers die with the
 * parent (PR_SET_PDEATHSIG on the fork server and on each worker, and a
 * closed channel).
 *
 * Processes a task starts. A task's whole process tree ends with its worker:
 * each worker leads its own process group and is a child subreaper
 * (PR_SET_CHILD_SUBREAPER), so a task's children and grandchildren, even
 * daemonized ones that called setsid(), stay below the worker; orphans it
 * adopted are reaped between tasks. When a worker dies (crash, time limit,
 * kill on cancel, recycling, destroy) or the parent dies, the fork server,
 * itself a subreaper, kills the worker's process group and every process
 * that was reparented to it, until none is left. No privilege is needed for
 * any of this. What can still outlive a worker: processes of its task when
 * the fork server itself is killed with SIGKILL (the pool then kills the
 * workers' process groups, but not what left them with setsid()), and
 * processes the user cannot signal (set-user-ID programs).
 *
 * Descriptors. Every descriptor the pool opens is close-on-exec; workers
 * keep only stdin, stdout, stderr and their channel. Exited workers are
 * reaped at once: no zombie remains. Do not reap children you did not start
 * with waitpid(-1): the fork server is one of them.
 *
 * Exit. Destroy process pools before exiting; if the program exits first, the
 * workers die with it and their tasks are lost.
 */
#ifndef EXECUTOR_PROCESS_POOL_H
#define EXECUTOR_PROCESS_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "future.h"
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A bytes task, run in a worker process. @in (@in_len bytes, NULL when 0) is
 * the copy made at submit, read-only and valid for the call. Set *@out to a
 * malloc()ed buffer, or one from exe_proc_result_alloc() (no copy), or NULL,
 * and *@out_len to its length; the worker frees it after sending it. Return 0, or a negative code (then *@out is ignored,
 * and freed if set).
 */
typedef int exe_proc_task_fn(const void *in, size_t in_len, void **out, size_t *out_len);

/* EXE_SUBMIT_KILL_ON_CANCEL (pool.h): exe_future_cancel() on the running
 * task kills its worker (SIGTERM, then SIGKILL) and fails the task with
 * -ECANCELED. Without it, cancel of a running process task only records the
 * request (-EBUSY) and the task runs to its end. */

/* Process-pool settings beyond exe_pool_opts. All-zero means defaults. */
struct exe_process_pool_opts {
	/* Replace a worker after this many tasks (a chunk counts as one);
	 * 0: never. Its replacement starts as the last task is handed over,
	 * so a backlog does not stall. */
	unsigned max_tasks_per_worker;
	/* A task running longer gets SIGTERM, then SIGKILL after
	 * term_grace_ns; its future fails with -ETIME. 0: no limit; negative:
	 * -EINVAL. exe_submit_opts.task_timeout_ns overrides it per task. */
	int64_t task_timeout_ns;
	/* SIGTERM to SIGKILL when a task is stopped; 0: 200 ms. */
	int64_t term_grace_ns;
	/* exe_pool_destroy(): once nothing is queued, running tasks get this
	 * long before their workers are killed (-ECANCELED); 0: 5 s; negative:
	 * wait for them forever (as exe_pool_shutdown(WAIT) does). */
	int64_t destroy_grace_ns;
	/* EXE_SUBMIT_KILL_ON_CANCEL for every task of the pool. */
	bool kill_on_cancel;
};

/*
 * exe_proc_result_alloc - a buffer for a bytes task's result, placed where
 * the result can reach the parent without a copy. Call it inside an
 * exe_proc_task_fn, fill the buffer and return it as *out with *out_len <=
 * @len: when the pool offered a shared-memory block big enough (it does once
 * it has seen results of that size), the task writes straight into it and
 * the future takes the block over. Otherwise, and anywhere outside a bytes
 * task, it is malloc(@len) (at least one byte) and travels as any result.
 * Ownership: return it as *out, or just drop it on failure; never free() it
 * yourself inside a task (it may not come from malloc()).
 * Return: the buffer, or NULL when out of memory.
 */
EXE_API void *exe_proc_result_alloc(size_t len);

/*
 * exe_process_pool_create - start a fork server and exe_pool_opts.workers
 * worker processes (0: one per online CPU), named "<name>-<N>" (truncated to
 * 15 bytes; default name "exe"). Each worker runs opts->init(opts->init_arg)
 * once before its first task; a failure breaks the pool (-ENOTRECOVERABLE,
 * see above). no_caller_runs is implied: a process task never runs on the
 * waiting thread. Recycling and time limits: exe_process_pool_create_opts().
 * Call it from any thread; the pool, the collector thread and the processes
 * belong to the caller until exe_pool_destroy().
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -EAGAIN or another code from
 * pthread_create()/fork() when the collector or the fork server cannot start.
 */
EXE_API int exe_process_pool_create(struct exe_pool **out, const struct exe_pool_opts *opts);

/*
 * exe_process_pool_create_opts - exe_process_pool_create() with
 * process-pool settings (@popts may be NULL: all defaults).
 * Return: as exe_process_pool_create(); -EINVAL for a negative
 * task_timeout_ns or term_grace_ns.
 */
EXE_API int exe_process_pool_create_opts(struct exe_pool **out, const struct exe_pool_opts *opts,
                                         const struct exe_process_pool_opts *popts);

/*
 * exe_pool_submit_bytes - queue fn(in, in_len) on a process pool. The input
 * is copied before the call returns (the caller keeps @in). @o (may be NULL)
 * may set EXE_SUBMIT_BLOCK (with block_timeout_ns), EXE_SUBMIT_KILL_ON_CANCEL
 * and task_timeout_ns; result_free must be NULL (the future owns the bytes).
 * @out (may be NULL: fire and forget) receives a reference to the future.
 * Thread-safe.
 * Return: 0, -EINVAL (@p or @fn NULL, @in NULL with a length, a bad
 * option), -EOPNOTSUPP (@p is not a process pool), -ESHUTDOWN, -ENOTRECOVERABLE (broken), -EAGAIN (bounded
 * queue full), -ETIMEDOUT (blocking submit timed out), -ENOMEM, or a code from memfd_create()/write() for a
 * large input.
 */
EXE_API int exe_pool_submit_bytes(struct exe_pool *p, exe_proc_task_fn *fn, const void *in, size_t in_len,
                                  const struct exe_submit_opts *o, struct exe_future **out);

/*
 * exe_future_bytes - wait for a bytes task and give its result bytes.
 * Waits like exe_future_result(): @timeout_ns < 0 forever, 0 polls, > 0 at
 * most that long. *@data (NULL when the task returned none) stays owned by
 * @f: it is valid, and read-only, until the last reference to @f is dropped.
 * For a bytes task the value exe_future_result() gives is an opaque handle,
 * not the data. Any thread.
 * Return: 0 with *@data and *@len; -ETIMEDOUT (not finished in time, @f
 * unchanged); the failure code (FAILED); -ECANCELED; -EINVAL (NULL
 * argument, or @f is not a bytes task); any other code of exe_future_wait().
 */
EXE_API int exe_future_bytes(struct exe_future *f, const void **data, size_t *len, int64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_PROCESS_POOL_H */
