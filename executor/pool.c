/*
 * pool.c - the pool front end: argument checks, dispatch to the pool kind,
 * and exe_pool_map(), which only needs submit and futures (a pool kind may
 * bring its own map, for chunks).
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "errors.h"
#include "future_internal.h"
#include "pool_internal.h"

int exe_pool_submit(struct exe_pool *p, exe_task_fn *fn, void *arg, struct exe_future **out)
{
	if (!p || !fn)
		return -EINVAL;
	return p->ops->submit(p, fn, arg, NULL, out);
}

int exe_pool_submit_opts(struct exe_pool *p, exe_task_fn *fn, void *arg, const struct exe_submit_opts *o,
                         struct exe_future **out)
{
	if (!p || !fn || (o && (o->flags & ~(unsigned)(EXE_SUBMIT_BLOCK | EXE_SUBMIT_KILL_ON_CANCEL))))
		return -EINVAL;
	return p->ops->submit(p, fn, arg, o, out);
}

int exe_pool_submit_cb(struct exe_pool *p, exe_task_fn *fn, void *arg, exe_done_fn *done, void *done_arg)
{
	struct exe_future *f;
	struct exe__cb *node;
	int rc;

	if (!p || !fn || !done)
		return -EINVAL;
	if (p->ops->submit_cb)
		return p->ops->submit_cb(p, fn, arg, done, done_arg);
	/* The node first: once the task is queued nothing may fail. */
	node = exe__small_alloc();
	if (!node)
		return -ENOMEM;
	node->fn = done;
	node->arg = done_arg;
	node->pool = NULL;
	node->heap = true;
	rc = p->ops->submit(p, fn, arg, NULL, &f);
	if (rc) {
		exe__small_free(node);
		return rc;
	}
	exe__future_add_node(f, node);
	exe_future_unref(f);
	return 0;
}

int exe_pool_submit_many(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n,
                         struct exe_future **out)
{
	struct exe_future **fs;
	size_t i;
	int rc = 0;

	if (!p || !fn || (n && !args))
		return -EINVAL;
	if (n == 0)
		return 0;
	if (n > SIZE_MAX / sizeof(*fs))
		return -EINVAL;
	if (p->ops->submit_many)
		return p->ops->submit_many(p, fn, args, n, out);
	/* One by one, keeping a reference to each so a failure midway can take
	 * the batch back. */
	fs = out ? out : exe__malloc(n * sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		rc = p->ops->submit(p, fn, args[i], NULL, &fs[i]);
		if (rc)
			break;
	}
	if (rc) {
		while (i-- > 0) {
			exe_future_cancel(fs[i]);
			exe_future_unref(fs[i]);
			fs[i] = NULL;
		}
	} else if (!out) {
		for (i = 0; i < n; i++)
			exe_future_unref(fs[i]);
	}
	if (!out)
		exe__free(fs);
	return rc;
}

int exe_pool_shutdown(struct exe_pool *p, unsigned flags)
{
	if (!p || (flags & ~(unsigned)(EXE_SHUTDOWN_WAIT | EXE_SHUTDOWN_CANCEL_PENDING)))
		return -EINVAL;
	if ((flags & EXE_SHUTDOWN_WAIT) && exe__tls_worker_owner == p)
		return -EDEADLK;
	return p->ops->shutdown(p, flags);
}

void exe_pool_destroy(struct exe_pool *p)
{
	if (p)
		p->ops->destroy(p);
}

int exe_pool_stats(struct exe_pool *p, struct exe_pool_stats *st)
{
	if (!p || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	p->ops->stats(p, st);
	st->broken = atomic_load_explicit(&p->broken, memory_order_acquire) == 2;
	return 0;
}

void exe__pool_mark_broken(struct exe_pool *p, const char *fmt, ...)
{
	uint32_t expect = 0;
	va_list ap;

	if (!atomic_compare_exchange_strong(&p->broken, &expect, 1))
		return;
	va_start(ap, fmt);
	vsnprintf(p->broken_msg, sizeof(p->broken_msg), fmt, ap);
	va_end(ap);
	/* release: the message is complete before anyone sees 2. */
	atomic_store_explicit(&p->broken, 2, memory_order_release);
}

char *exe__pool_broken_msg(struct exe_pool *p)
{
	char *msg;

	if (atomic_load_explicit(&p->broken, memory_order_acquire) != 2)
		return NULL;
	msg = exe__malloc(sizeof(p->broken_msg));
	if (msg)
		memcpy(msg, p->broken_msg, sizeof(p->broken_msg));
	return msg;
}

const char *exe_pool_error(struct exe_pool *p)
{
	uint32_t b;

	if (!p)
		return NULL;
	/* 1: broken, the message being written (a few instructions, unless
	 * the writer was preempted): a submit already refused with
	 * -ENOTRECOVERABLE, so the caller must get the message. acquire:
	 * pairs with the release store of 2 in exe__pool_mark_broken(). */
	while ((b = atomic_load_explicit(&p->broken, memory_order_acquire)) == 1)
		sched_yield();
	return b == 2 ? p->broken_msg : NULL;
}

int64_t exe__pool_remaining(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - exe_now_ns();
	return left > 0 ? left : 0;
}

int exe__pool_map_each(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
                       int64_t deadline, size_t *failed_index)
{
	struct exe_submit_opts o = {.flags = EXE_SUBMIT_BLOCK};
	struct exe_future **fs;
	size_t i, submitted = 0;
	int rc = 0;

	fs = exe__calloc(n, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		o.block_timeout_ns = exe__pool_remaining(deadline);
		if (deadline >= 0 && o.block_timeout_ns == 0) {
			rc = -ETIMEDOUT;
			break;
		}
		rc = p->ops->submit(p, fn, args[i], &o, &fs[i]);
		if (rc)
			break;
		submitted++;
	}
	if (rc && submitted == 0) {
		/* A deadline that passed before the first submit (0 polls)
		 * fails element 0, which never ran. */
		if (rc == -ETIMEDOUT && failed_index)
			*failed_index = 0;
		exe__free(fs);
		return rc;
	}
	/* Collect in order; the first failure or the deadline stops the map
	 * and cancels what has not started. A submit that failed at index
	 * `submitted` is reported after the elements before it, so an
	 * earlier element's own failure wins and earlier results are filled. */
	{
		int submit_rc = rc;

		rc = 0;
		for (i = 0; i < submitted && rc == 0; i++) {
			rc = exe_future_result(fs[i], &results[i], exe__pool_remaining(deadline));
			if (rc && failed_index)
				*failed_index = i;
		}
		if (rc == 0 && submit_rc) {
			rc = submit_rc;
			if (failed_index)
				*failed_index = submitted;
		}
	}
	for (i = 0; i < submitted; i++) {
		if (rc)
			exe__future_cancel_pending(fs[i]);
		exe_future_unref(fs[i]);
	}
	exe__free(fs);
	return rc;
}

int exe_pool_map(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
                 int64_t timeout_ns, size_t *failed_index)
{
	int64_t deadline = exe__deadline(timeout_ns);

	if (!p || !fn || (n && (!args || !results)))
		return -EINVAL;
	if (n == 0)
		return 0;
	return exe__pool_map_each(p, fn, args, n, results, deadline, failed_index);
}

int exe_pool_map_opts(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
                      const struct exe_map_opts *o, size_t *failed_index)
{
	int64_t deadline;

	if (!p || !fn || (n && (!args || !results)))
		return -EINVAL;
	if (n == 0)
		return 0;
	/* 0 is "no deadline" here, so that all-zero options are the defaults. */
	deadline = o && o->timeout_ns > 0 ? exe__deadline(o->timeout_ns) : -1;
	if (p->ops->map && (!o || o->chunk != 1))
		return p->ops->map(p, fn, args, n, results, deadline, o ? o->chunk : 0, failed_index);
	return exe__pool_map_each(p, fn, args, n, results, deadline, failed_index);
}
