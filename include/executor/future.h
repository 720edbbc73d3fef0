/*
 * executor/future.h - one future type for everything libexecutor runs:
 * thread-pool tasks, io operations, timers, and promises that user code
 * completes itself.
 *
 * States move one way:
 *
 *     PENDING -> RUNNING -> DONE | FAILED
 *     PENDING -> CANCELLED
 *     PENDING -> DONE | FAILED          (a promise completed without start)
 *
 * Ownership rules
 *  1. A function that hands out a future hands out one reference; drop it
 *     with exe_future_unref(). Every other function borrows.
 *  2. The producer (pool worker, io backend) holds its own reference until the
 *     result is published and every done callback has returned, so a callback
 *     may always use its future.
 *  3. Done callbacks run exactly once each, in the order they were added:
 *     inline in exe_future_on_done() when the future has already finished,
 *     otherwise on the thread that finishes it (a pool worker, a thread that
 *     ran the task while waiting for it, the io thread, the thread that called
 *     exe_future_cancel() or exe_future_set_*()). A callback added while the
 *     callbacks are being run is queued behind them, never run ahead.
 *  4. Waiters are woken when the state becomes final; the callbacks run right
 *     after on the finishing thread. Returning from exe_future_wait() does not
 *     mean the callbacks have returned.
 *  5. A value with a free function is owned by the future and freed with it:
 *     values returned by exe_future_result() are borrowed.
 *  6. A future may outlive its pool: it is then finished, never stuck. A
 *     promise whose last reference is dropped before it was completed is
 *     cancelled (its callbacks run with -ECANCELED, "promise dropped").
 *
 * NULL. Queries read a NULL future as one that FAILED with -EINVAL
 * (exe_future_state() EXE_FUTURE_FAILED, exe_future_is_finished() true,
 * exe_future_code() -EINVAL, exe_future_error() "invalid argument",
 * exe_future_cancel_requested() false); every int-returning call returns
 * -EINVAL; exe_future_ref(NULL) is NULL and exe_future_unref(NULL) a no-op.
 */
#ifndef EXECUTOR_FUTURE_H
#define EXECUTOR_FUTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct exe_future;
struct exe_pool;

enum exe_future_state {
	EXE_FUTURE_PENDING = 0,
	EXE_FUTURE_RUNNING = 1,
	EXE_FUTURE_DONE = 2,
	EXE_FUTURE_FAILED = 3,
	EXE_FUTURE_CANCELLED = 4,
};

/*
 * A done callback. It receives the finished future (borrowed, valid for the
 * call) and its argument. A non-zero return goes to the error hook
 * (exe_set_error_hook()); it never affects the future or the thread.
 */
typedef int exe_done_fn(struct exe_future *f, void *arg);

/*
 * exe_future_state - the current state of @f; a snapshot, lock-free.
 * Return: the state; EXE_FUTURE_FAILED for NULL @f.
 */
EXE_API enum exe_future_state exe_future_state(const struct exe_future *f);

/*
 * exe_future_is_finished - whether @f is DONE, FAILED or CANCELLED.
 * Return: true once finished (and for NULL @f), false while pending or running.
 */
EXE_API bool exe_future_is_finished(const struct exe_future *f);

/*
 * exe_future_wait - block until @f is finished or @timeout_ns passes.
 * A negative timeout waits forever, 0 polls. A timeout never changes @f.
 * An infinite wait on a pending thread-pool task may run the task on the
 * calling thread (see exe_pool_opts.no_caller_runs): a wait can never
 * deadlock on a pool whose workers are all waiting.
 * A pool task (or continuation) waiting on its own future, or on a task
 * whose run is below it on the same thread's stack, would wait forever.
 * Return: 0 when finished, -ETIMEDOUT (not finished in time, 0 included),
 * -EINVAL (NULL @f), -EDEADLK (@f is running on the calling thread; a poll
 * with timeout 0 still says -ETIMEDOUT).
 */
EXE_API int exe_future_wait(struct exe_future *f, int64_t timeout_ns);

/*
 * exe_future_result - wait like exe_future_wait(), then report the outcome.
 * @value (may be NULL) receives the value on success; it stays owned by @f
 * when @f has a free function for it.
 * Return: 0 (DONE), the task's negative code (FAILED), -ECANCELED,
 * -ETIMEDOUT (still pending or running; @f unchanged), -EINVAL (NULL @f).
 */
EXE_API int exe_future_result(struct exe_future *f, void **value, int64_t timeout_ns);

/*
 * exe_future_code - the outcome of @f without waiting (a 0-timeout
 * exe_future_result() that does not read the value).
 * Return: 0 (DONE), the failure code (FAILED), -ECANCELED, -ETIMEDOUT (not
 * finished yet), -EINVAL (NULL @f).
 */
EXE_API int exe_future_code(const struct exe_future *f);

/*
 * exe_future_error - the message of a failed or cancelled future ("worker
 * init failed: ...", "promise dropped without a result"), or a generic text
 * for its code when none was given. Owned by @f.
 * Return: the message; NULL while pending or running and when DONE;
 * "invalid argument" for NULL @f.
 */
EXE_API const char *exe_future_error(const struct exe_future *f);

/*
 * exe_future_cancel - cancel @f.
 * PENDING: it becomes CANCELLED at once, every waiter wakes and the callbacks
 * run on the calling thread; a queued task will never start.
 * RUNNING: a cancellation request is recorded that the task can poll with
 * exe_task_cancelled() (io operations are cancelled in the kernel).
 * Return: 0 cancelled (now or before), -EBUSY running (request delivered),
 * -EALREADY finished as DONE or FAILED, -EINVAL (NULL @f).
 */
EXE_API int exe_future_cancel(struct exe_future *f);

/*
 * exe_future_cancel_requested - whether cancel was asked for @f.
 * Return: true after exe_future_cancel() (or when CANCELLED); false otherwise
 * and for NULL @f.
 */
EXE_API bool exe_future_cancel_requested(const struct exe_future *f);

/*
 * exe_future_on_done - add a done callback (rules 3 and 4 above).
 * Return: 0, -EINVAL (@f or @cb NULL), -ENOMEM (the callback was not added).
 */
EXE_API int exe_future_on_done(struct exe_future *f, exe_done_fn *cb, void *arg);

/*
 * exe_future_on_done_in - like exe_future_on_done(), but the callback runs as
 * a task of @pool, so a slow callback cannot hold up the finishing thread.
 * If @pool refuses the task (shut down), the callback runs on the finishing
 * thread and the error hook hears of it: the callback still runs exactly once.
 * Borrows @pool until @f has finished: do not destroy @pool before that
 * (shutting it down is fine).
 * Return: 0, -EINVAL (@f, @pool or @cb NULL), -ENOMEM.
 */
EXE_API int exe_future_on_done_in(struct exe_future *f, struct exe_pool *pool, exe_done_fn *cb, void *arg);

/*
 * exe_future_ref - take another reference to @f.
 * Return: @f (NULL for NULL @f).
 */
EXE_API struct exe_future *exe_future_ref(struct exe_future *f);

/*
 * exe_future_unref - drop a reference to @f; the last one frees it.
 * A promise freed before it was completed is cancelled first. NULL is a no-op.
 */
EXE_API void exe_future_unref(struct exe_future *f);

/* ---- Promises: futures that user code completes ---- */

/*
 * exe_future_create - a new PENDING future for the caller to complete.
 * The caller gets one reference (and is the producer).
 * Return: 0, -EINVAL, -ENOMEM.
 */
EXE_API int exe_future_create(struct exe_future **out);

/*
 * exe_future_start - mark a promise RUNNING (Python's
 * set_running_or_notify_cancel).
 * Return: 0, -ECANCELED (it was cancelled: do not start the work), -EALREADY,
 * -EINVAL (@f NULL or not a promise).
 */
EXE_API int exe_future_start(struct exe_future *f);

/*
 * exe_future_set_result - complete @f with @value. @free_fn (may be NULL) is
 * called on @value when the future is freed. Callbacks run on this thread.
 * Return: 0, -EALREADY (already finished: @value is not taken), -EINVAL
 * (@f NULL or not a promise).
 */
EXE_API int exe_future_set_result(struct exe_future *f, void *value, exe_free_fn *free_fn);

/*
 * exe_future_set_error - fail @f with @code (negative; positive values are
 * negated, 0 becomes -EINVAL) and an optional printf-style message.
 * Return: 0, -EALREADY, -EINVAL (@f NULL or not a promise).
 */
EXE_API int exe_future_set_error(struct exe_future *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- Inside a running task ---- */

/*
 * exe_task_cancelled - true when the task running on this thread was asked to
 * stop by exe_future_cancel(). A long task polls it and returns -ECANCELED
 * (or whatever it likes).
 * Return: true when asked to stop; false otherwise and outside a task.
 */
EXE_API bool exe_task_cancelled(void);

/*
 * exe_task_future - the future of the task running on this thread.
 * Return: the future (borrowed), or NULL outside a task.
 */
EXE_API struct exe_future *exe_task_future(void);

/*
 * exe_task_set_error - attach a printf-style message to the current task's
 * failure; the task then returns its negative code. Outside a task, or with
 * a NULL @fmt, nothing is attached.
 * Return: @code, unchanged.
 */
EXE_API int exe_task_set_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * exe_task_set_result_free - the value this task returns is to be freed with
 * @free_fn when its future is freed. Outside a task it does nothing.
 */
EXE_API void exe_task_set_result_free(exe_free_fn *free_fn);

/* ---- Many futures ---- */

enum exe_wait_mode {
	EXE_WAIT_ALL = 0,         /* every future finished */
	EXE_WAIT_ANY = 1,         /* at least one finished */
	EXE_WAIT_FIRST_ERROR = 2, /* one FAILED (cancelled does not count), or all finished */
};

/*
 * exe_wait - Python's concurrent.futures.wait(). Futures may come from
 * different pools, io contexts or promises; duplicates are fine (counted
 * once); NULL entries are not. Cancellation counts as finishing and is seen
 * at once. An empty array (@n 0) satisfies every mode at once.
 * EXE_WAIT_FIRST_ERROR is Python's FIRST_EXCEPTION: it returns as soon as one
 * future FAILED, or when all finished; a CANCELLED future is not a failure
 * (as in Python, where a cancelled future is not an exception), so it does
 * not end the wait early.
 * Return: the number of distinct finished futures (>= 0) when the condition
 * holds, -ETIMEDOUT when @timeout_ns passed first, -EINVAL, -ENOMEM,
 * -EDEADLK (a future the condition needs is running on the calling thread).
 */
EXE_API int exe_wait(struct exe_future *const *fs, size_t n, enum exe_wait_mode mode, int64_t timeout_ns);

struct exe_as_completed;

/*
 * exe_as_completed_create - Python's as_completed() as an iterator:
 *
 *	struct exe_as_completed *it;
 *	exe_as_completed_create(&it, fs, n);
 *	while (exe_as_completed_next(it, &f, 5 * EXE_NS_PER_S) == 0)
 *		use(f);              // borrowed until exe_as_completed_destroy()
 *	exe_as_completed_destroy(it);
 *
 * Each distinct future of @fs is yielded once, in the order they finish.
 * The iterator holds a reference on every future until destroyed; @fs is
 * borrowed for the call.
 * Return: 0 with *@out, -EINVAL (NULL @out, NULL @fs with @n, a NULL
 * entry), -ENOMEM.
 */
EXE_API int exe_as_completed_create(struct exe_as_completed **out, struct exe_future *const *fs, size_t n);

/*
 * exe_as_completed_next - the next future to finish, waiting up to
 * @timeout_ns (a timeout argument: < 0 forever, 0 polls). An infinite wait
 * may run a pending task of the set on this thread (see pool.h).
 * Return: 0 with *@f set (borrowed from the iterator), -EPIPE when every
 * future was yielded, -ETIMEDOUT when none finished in time (call again),
 * -EDEADLK (every future not yet finished runs on this thread, under this
 * call: none can finish while it waits), -EINVAL (NULL @it or @f).
 */
EXE_API int exe_as_completed_next(struct exe_as_completed *it, struct exe_future **f, int64_t timeout_ns);

/*
 * exe_as_completed_destroy - drop the iterator and its references on the
 * futures (which stay valid for their other holders). NULL is a no-op.
 */
EXE_API void exe_as_completed_destroy(struct exe_as_completed *it);

/* ---- Composition ---- */

/*
 * A continuation: runs when @prev finished DONE (borrowed for the call);
 * returns 0 with *@result, or a negative code, like a task. Library inputs
 * first, then @arg, then the out-pointer, as every callback.
 */
typedef int exe_then_fn(struct exe_future *prev, void *arg, void **result);

/*
 * exe_future_then - a new future for fn(f, arg, &result) run after @f succeeds, as a
 * task of @pool, or on the thread that finishes @f when @pool is NULL.
 * When @f fails, the new future fails with the same code and message without
 * running @fn; when @f is cancelled, the new future is cancelled. Cancelling
 * the new future prevents @fn from starting but leaves @f alone (it may have
 * other consumers). Borrows @pool until @f has finished: do not destroy it
 * before that; a pool shut down by then fails the new future (-ESHUTDOWN).
 * Return: 0 with *@out (a reference), -EINVAL, -ENOMEM.
 */
EXE_API int exe_future_then(struct exe_future *f, struct exe_pool *pool, exe_then_fn *fn, void *arg,
                            struct exe_future **out);

/*
 * exe_future_all - a future that is DONE when every input is DONE (value
 * NULL), FAILED with the first failure's code and message as soon as one
 * fails, CANCELLED as soon as one is cancelled. Inputs are borrowed for the
 * call; the new future keeps them alive as needed. An empty array gives a
 * DONE future.
 * Return: 0 with *@out (a reference), -EINVAL (NULL @out, NULL @fs with @n,
 * a NULL entry), -ENOMEM.
 */
EXE_API int exe_future_all(struct exe_future *const *fs, size_t n, struct exe_future **out);

/*
 * exe_future_any - a future that is DONE as soon as one input is DONE; its
 * value is that input's index cast to a pointer ((void *)(uintptr_t)i).
 * When every input failed or was cancelled, it fails with the first failed
 * input's (in array order) code and message, or is CANCELLED when all were
 * cancelled; an empty array gives a CANCELLED future.
 * Return: 0 with *@out (a reference), -EINVAL (NULL @out, NULL @fs with @n,
 * a NULL entry), -ENOMEM.
 */
EXE_API int exe_future_any(struct exe_future *const *fs, size_t n, struct exe_future **out);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_FUTURE_H */
