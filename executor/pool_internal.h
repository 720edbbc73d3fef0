/*
 * pool_internal.h - the pool front end: every pool kind behind one
 * struct exe_pool and a table of operations.
 */
#ifndef EXE_POOL_INTERNAL_H
#define EXE_POOL_INTERNAL_H

#include "executor.h"

struct exe__pool_ops {
	int (*submit)(struct exe_pool *p, exe_task_fn *fn, void *arg, const struct exe_submit_opts *o,
	              struct exe_future **out);
	int (*shutdown)(struct exe_pool *p, unsigned flags);
	void (*destroy)(struct exe_pool *p);
	void (*stats)(struct exe_pool *p, struct exe_pool_stats *st);
	const char *(*error)(struct exe_pool *p);
	/* Optional: exe_pool_map_opts() for this kind (arguments checked, n > 0,
	 * @deadline absolute or -1, @chunk as the caller gave it). NULL: one
	 * submit per element (exe__pool_map_each()). */
	int (*map)(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
	           int64_t deadline, size_t chunk, size_t *failed_index);
};

struct exe_pool {
	const struct exe__pool_ops *ops;
};

/* The generic map: one task per element through ops->submit, collected in
 * order. Same arguments as exe__pool_ops.map (the chunk is not needed). */
int exe__pool_map_each(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
                       int64_t deadline, size_t *failed_index);

/* Nanoseconds left before @deadline: -1 for none (-1), else >= 0. */
int64_t exe__pool_remaining(int64_t deadline);

#endif
