/*
 * pool_internal.h - the pool front end: every pool kind behind one
 * struct exe_pool and a table of operations.
 */
#ifndef EXE_POOL_INTERNAL_H
#define EXE_POOL_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>

#include <executor.h>
#include "sibling.h"

struct exe__pool_ops {
	int (*submit)(struct exe_pool *p, exe_task_fn *fn, void *arg, const struct exe_submit_opts *o,
	              struct exe_future **out);
	int (*shutdown)(struct exe_pool *p, unsigned flags);
	void (*destroy)(struct exe_pool *p);
	void (*stats)(struct exe_pool *p, struct exe_pool_stats *st);
	/* Optional: exe_pool_submit_many() (arguments checked, n > 0); all or
	 * nothing. NULL: one submit per element (pool.c). */
	int (*submit_many)(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n,
	                   struct exe_future **out);
	/* Optional: exe_pool_map_opts() for this kind (arguments checked, n > 0,
	 * @deadline absolute or -1, @chunk as the caller gave it). NULL: one
	 * submit per element (exe__pool_map_each()). */
	int (*map)(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
	           int64_t deadline, size_t chunk, size_t *failed_index);
	/* Optional: exe_pool_map_open() for this kind. NULL: the generic lazy
	 * map (pool_map_iter.c), one ops->submit per element and at most
	 * @window in flight. The hook is for kinds that can do better, e.g. a
	 * process pool sending @chunk elements per message (or a bytes variant
	 * over exe_proc_task_fn): it builds an iterator whose first member is a
	 * struct exe_map_iter with its own ops, and must keep the public
	 * contract of pool.h - results in input order, at most @window
	 * elements submitted and not yet handed out, exe_map_next() codes
	 * (0 / -EPIPE / -ETIMEDOUT / the element's code, base.index set),
	 * close cancelling what has not started and never waiting. Arguments
	 * are checked, @window resolved (> 0), @chunk as the caller gave it. */
	int (*map_open)(struct exe_map_iter **out, struct exe_pool *p, exe_task_fn *fn, void *const *args,
	                size_t n, size_t window, size_t chunk);
	/* Optional: exe_pool_submit_cb() (arguments checked): queue the task
	 * with @done set in its future before publication (exe_future.done),
	 * handing out no reference; on failure @done never runs. NULL: submit,
	 * add a callback node, unref (pool.c). */
	int (*submit_cb)(struct exe_pool *p, exe_task_fn *fn, void *arg, exe_done_fn *done, void *done_arg);
};

/* ---- lazy map iterators (exe_pool_map_open()) ---- */

struct exe__map_iter_ops {
	/* exe_map_next() with arguments checked; sets it->index for every
	 * element it hands out (value or failure). */
	int (*next)(struct exe_map_iter *it, void **value, int64_t timeout_ns);
	/* exe_map_close(): cancel what has not started, free everything. */
	void (*close)(struct exe_map_iter *it);
};

/* The public iterator; each implementation embeds it as its first member. */
struct exe_map_iter {
	const struct exe__map_iter_ops *ops;
	size_t index; /* the element last handed out; SIZE_MAX before the first */
};

/* The generic lazy map over ops->submit (pool_map_iter.c). */
int exe__pool_map_open_each(struct exe_map_iter **out, struct exe_pool *p, exe_task_fn *fn, void *const *args,
                            size_t n, size_t window);

struct exe_pool {
	const struct exe__pool_ops *ops;
	/* A pool breaks once (a worker's init failed, a worker cannot be
	 * started): 0 ok, 1 being marked, 2 broken with broken_msg complete. */
	_Atomic uint32_t broken;
	char broken_msg[192];
};

/* Break @p with a message; only the first call counts. Any thread. */
EXE__SIBLING void exe__pool_mark_broken(struct exe_pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether @p is broken (or being marked so): stop accepting, fail tasks. */
static inline bool exe__pool_is_broken(struct exe_pool *p)
{
	/* acquire: pairs with the release in exe__pool_mark_broken(). */
	return atomic_load_explicit(&p->broken, memory_order_acquire) != 0;
}

/* A copy of the broken message for a failing future (NULL if not yet
 * complete or out of memory: the future then fails with the bare code). */
EXE__SIBLING char *exe__pool_broken_msg(struct exe_pool *p);

/* The generic map: one task per element through ops->submit, collected in
 * order. Same arguments as exe__pool_ops.map (the chunk is not needed). */
int exe__pool_map_each(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
                       int64_t deadline, size_t *failed_index);

/* Nanoseconds left before @deadline: -1 for none (-1), else >= 0. */
int64_t exe__pool_remaining(int64_t deadline);

#endif
