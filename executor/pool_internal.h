/*
 * pool_internal.h - the pool front end: every pool kind behind one
 * struct exe_pool and a table of operations.
 */
#ifndef EXE_POOL_INTERNAL_H
#define EXE_POOL_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "executor.h"
#include "executor/sibling.h"

struct exe__pool_ops {
	int (*submit)(struct exe_pool *p, exe_task_fn *fn, void *arg, const struct exe_submit_opts *o,
	              struct exe_future **out);
	int (*shutdown)(struct exe_pool *p, unsigned flags);
	void (*destroy)(struct exe_pool *p);
	void (*stats)(struct exe_pool *p, struct exe_pool_stats *st);
	/* Optional: exe_pool_map_opts() for this kind (arguments checked, n > 0,
	 * @deadline absolute or -1, @chunk as the caller gave it). NULL: one
	 * submit per element (exe__pool_map_each()). */
	int (*map)(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
	           int64_t deadline, size_t chunk, size_t *failed_index);
};

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
