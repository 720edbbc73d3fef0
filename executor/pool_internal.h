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
};

struct exe_pool {
	const struct exe__pool_ops *ops;
};

#endif
