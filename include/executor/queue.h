/*
 * executor/queue.h - a thread-safe queue of pointers between threads of one
 * process: FIFO, LIFO or priority, bounded or unbounded, with timeouts,
 * close and Python-style task_done/join.
 *
 * Items are `void *` the queue never dereferences: it stores, orders and
 * hands them back. Ownership of what an item points to moves with it: the
 * putter gives it up when put returns 0, the getter receives it.
 *
 * Timeouts are nanoseconds on CLOCK_MONOTONIC: a negative timeout waits
 * forever (EXE_FOREVER), 0 polls (never waits), a positive one waits at
 * most that long; a full or empty queue past the bound, 0 included, is
 * -ETIMEDOUT.
 *
 * Close. exe_queue_close() is graceful: puts fail at once with -EPIPE,
 * getters take what is left and then get -EPIPE, and every blocked thread
 * wakes. exe_queue_close_now() also discards what is left and releases
 * exe_queue_join(). Both are idempotent.
 *
 * Threads. Every call may be made from any thread at the same time, except
 * exe_queue_destroy(), which must be the last call on the queue.
 */
#ifndef EXECUTOR_QUEUE_H
#define EXECUTOR_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct exe_queue;

enum exe_queue_kind {
	EXE_QUEUE_FIFO = 0,     /* first in, first out */
	EXE_QUEUE_LIFO = 1,     /* last in, first out */
	EXE_QUEUE_PRIORITY = 2, /* lowest priority value first; equal ones in put order */
};

struct exe_queue_opts {
	enum exe_queue_kind kind;
	/* At most this many items; 0: unbounded. */
	size_t capacity;
};

/*
 * exe_queue_create - make an empty queue.
 * @opts may be NULL: all-zero (an unbounded FIFO). Storage grows on demand,
 * so a large capacity costs nothing until it is used.
 * Ownership: *@out belongs to the caller, who frees it with exe_queue_destroy().
 * Return: 0 with *@out set; -EINVAL (NULL @out, unknown kind), -ENOMEM.
 */
EXE_API int exe_queue_create(struct exe_queue **out, const struct exe_queue_opts *opts);

/*
 * exe_queue_destroy - free @q. Items still queued are not touched: what they
 * point to stays the caller's (drain first, or use exe_queue_close_now() with
 * a discard function). No thread may be using @q, blocked in it or about to
 * call it. NULL is a no-op.
 */
EXE_API void exe_queue_destroy(struct exe_queue *q);

/*
 * exe_queue_put - append @item (any pointer, NULL included).
 * Blocks while a bounded @q is full, up to @timeout_ns (see the top of this
 * file). A priority queue takes the item at priority 0.
 * Ownership: on 0 the item belongs to the queue until a getter takes it; on
 * failure it stays the caller's and @q is unchanged.
 * Threading: any thread.
 * Return: 0; -ETIMEDOUT still full when @timeout_ns passed (at once for
 * 0); -EPIPE closed (also when closed while waiting); -ENOMEM storage could
 * not grow; -EINVAL NULL @q.
 */
EXE_API int exe_queue_put(struct exe_queue *q, void *item, int64_t timeout_ns);

/*
 * exe_queue_put_prio - exe_queue_put() with a priority: lower values leave
 * first, equal values in the order they were put. On a FIFO or LIFO queue
 * @prio is ignored.
 * Return: as exe_queue_put().
 */
EXE_API int exe_queue_put_prio(struct exe_queue *q, void *item, int64_t prio, int64_t timeout_ns);

/*
 * exe_queue_get - take the next item into *@item.
 * Blocks while @q is empty, up to @timeout_ns. After a graceful close the
 * remaining items are still handed out; only an empty closed queue fails.
 * Ownership: the item becomes the caller's. Count it with
 * exe_queue_task_done() once processed if anyone uses exe_queue_join().
 * Threading: any thread.
 * Return: 0 with *@item set; -ETIMEDOUT still empty when @timeout_ns
 * passed (at once for 0); -EPIPE closed and empty; -EINVAL NULL @q or
 * @item. On failure *@item is unchanged.
 */
EXE_API int exe_queue_get(struct exe_queue *q, void **item, int64_t timeout_ns);

/*
 * exe_queue_get_prio - exe_queue_get() that also returns the item's
 * priority in *@prio (may be NULL; 0 for FIFO/LIFO queues and for items put
 * with exe_queue_put()).
 * Return: as exe_queue_get().
 */
EXE_API int exe_queue_get_prio(struct exe_queue *q, void **item, int64_t *prio, int64_t timeout_ns);

/*
 * exe_queue_close - close @q gracefully: later puts, and puts blocked now,
 * fail with -EPIPE; getters drain the remaining items, then fail with -EPIPE;
 * every blocked thread wakes. exe_queue_join() still waits for the items left
 * to be taken and counted done. Idempotent.
 * Return: 0; -EINVAL NULL @q.
 */
EXE_API int exe_queue_close(struct exe_queue *q);

/*
 * exe_queue_close_now - close @q and discard every queued item, as Python's
 * shutdown(immediate=True): gets fail with -EPIPE at once, discarded items
 * count as done so exe_queue_join() returns once the items already taken are
 * counted done. @discard (may be NULL) is called on each discarded item, in
 * the caller's thread, after the queue's lock is released.
 * *@discarded (may be NULL) receives the number of items discarded.
 * Return: 0; -EINVAL NULL @q.
 */
EXE_API int exe_queue_close_now(struct exe_queue *q, exe_free_fn *discard, size_t *discarded);

/*
 * exe_queue_count - the number of queued items right now. Only a hint while
 * other threads use @q.
 * Return: the count; 0 for NULL @q.
 */
EXE_API size_t exe_queue_count(struct exe_queue *q);

/*
 * exe_queue_empty - whether @q holds no item right now (a hint, as above).
 * Return: true when empty (and for NULL @q).
 */
EXE_API bool exe_queue_empty(struct exe_queue *q);

/*
 * exe_queue_full - whether a bounded @q is at capacity right now (a hint,
 * as above).
 * Return: true when full; always false for an unbounded queue and NULL @q.
 */
EXE_API bool exe_queue_full(struct exe_queue *q);

/*
 * exe_queue_closed - whether exe_queue_close() or _close_now() was called.
 * Return: true once closed; false otherwise and for NULL @q.
 */
EXE_API bool exe_queue_closed(struct exe_queue *q);

/*
 * exe_queue_task_done - count one item taken by a get as processed.
 * Each successful put adds one unfinished task; each call removes one.
 * Works after close too, so consumers can finish the drained items.
 * Threading: any thread.
 * Return: 0; -EINVAL more calls than items put (or NULL @q).
 */
EXE_API int exe_queue_task_done(struct exe_queue *q);

/*
 * exe_queue_join - wait until every item put has been counted done with
 * exe_queue_task_done() (at once if nothing is unfinished).
 * Threading: any thread, any number of joiners.
 * Return: 0; -ETIMEDOUT tasks still unfinished when @timeout_ns passed (at
 * once for 0, as exe_future_wait()); -EINVAL NULL @q.
 */
EXE_API int exe_queue_join(struct exe_queue *q, int64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_QUEUE_H */
