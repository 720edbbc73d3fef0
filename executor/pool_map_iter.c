/*
 * pool_map_iter.c - the lazy map (exe_pool_map_open()): results in input
 * order while later elements run, with a bounded window in flight.
 *
 * Design
 *  The generic iterator needs only a pool's submit and futures. It keeps a
 *  ring of @window futures: element i lives in ring[i % window] from its
 *  submit until exe_map_next() hands it out. Elements are submitted by the
 *  iterator's own thread inside exe_map_next(): first without blocking, as
 *  many as the window and the pool's queue allow, then - only when the
 *  element to hand out is not submitted yet - with EXE_SUBMIT_BLOCK bounded
 *  by the caller's timeout. So a full bounded queue never holds back a
 *  result that is ready, and a 0 timeout never blocks.
 *
 * Invariants (single-threaded: one caller at a time)
 *  yielded <= submitted <= n; submitted - yielded <= window;
 *  ring[i % window] holds a reference for yielded <= i < submitted only;
 *  once submit_rc is set, submitted stops and the element at index
 *  `submitted` fails with submit_rc when it is reached, ending the map.
 */
#include <errno.h>
#include <stdint.h>

#include "alloc.h"
#include "errors.h"
#include "future_internal.h"
#include "pool_internal.h"

struct each_iter {
	struct exe_map_iter base; /* first: the public handle */
	struct exe_pool *p;
	exe_task_fn *fn;
	void *const *args;
	size_t n, window;
	size_t submitted, yielded;
	int submit_rc; /* a refusal other than "queue full", at index submitted */
	bool ended;    /* the refusal was handed out: nothing more comes */
	struct exe_future **ring;
};

/* Submit element `submitted`. @block: wait for room up to @deadline (-1:
 * forever). Return: 0, -EAGAIN (queue full, not blocking), -ETIMEDOUT (no
 * room in time), or a refusal, recorded in submit_rc. */
static int submit_one(struct each_iter *g, bool block, int64_t deadline)
{
	struct exe_submit_opts o = {0};
	int rc;

	if (block) {
		o.flags = EXE_SUBMIT_BLOCK;
		/* An option field: 0 would mean forever, so a passed deadline
		 * is decided here. */
		o.block_timeout_ns = deadline < 0 ? EXE_FOREVER : exe__pool_remaining(deadline);
		if (o.block_timeout_ns == 0)
			return -ETIMEDOUT;
	}
	rc = g->p->ops->submit(g->p, g->fn, g->args[g->submitted], &o, &g->ring[g->submitted % g->window]);
	if (rc == 0) {
		g->submitted++;
		return 0;
	}
	if ((rc == -EAGAIN && !block) || (rc == -ETIMEDOUT && block))
		return rc;
	g->submit_rc = rc;
	return rc;
}

/* Fill the window without blocking. */
static void top_up(struct each_iter *g)
{
	while (!g->submit_rc && g->submitted < g->n && g->submitted - g->yielded < g->window)
		if (submit_one(g, false, -1))
			break;
}

static int each_next(struct exe_map_iter *it, void **value, int64_t timeout_ns)
{
	struct each_iter *g = (struct each_iter *)it;
	int64_t deadline = exe__deadline(timeout_ns);
	struct exe_future *f;
	int rc;

	if (g->ended || g->yielded == g->n)
		return -EPIPE;
	top_up(g);
	if (g->yielded == g->submitted) {
		/* The element to hand out is not submitted: its own refusal,
		 * or a full queue to wait on. */
		if (!g->submit_rc) {
			rc = timeout_ns == 0 ? -ETIMEDOUT : submit_one(g, true, deadline);
			if (rc == -EAGAIN || rc == -ETIMEDOUT)
				return -ETIMEDOUT;
		}
		if (g->submit_rc) {
			g->base.index = g->yielded;
			g->ended = true;
			*value = NULL;
			return g->submit_rc;
		}
	}
	f = g->ring[g->yielded % g->window];
	/* Wait first, then read: a task that itself fails with -ETIMEDOUT
	 * must not read as "not finished". */
	if (exe_future_wait(f, deadline < 0 ? timeout_ns : exe__pool_remaining(deadline)))
		return -ETIMEDOUT;
	rc = exe_future_result(f, value, 0);
	if (rc)
		*value = NULL;
	exe_future_unref(f);
	g->ring[g->yielded % g->window] = NULL;
	g->base.index = g->yielded++;
	/* Keep the pool busy while the caller works on this result. */
	top_up(g);
	return rc;
}

static void each_close(struct exe_map_iter *it)
{
	struct each_iter *g = (struct each_iter *)it;
	size_t i;

	for (i = g->yielded; i < g->submitted; i++) {
		struct exe_future *f = g->ring[i % g->window];

		exe__future_cancel_pending(f); /* queued: never starts */
		exe_future_unref(f);
	}
	exe__free(g->ring);
	exe__free(g);
}

static const struct exe__map_iter_ops each_ops = {
    .next = each_next,
    .close = each_close,
};

int exe__pool_map_open_each(struct exe_map_iter **out, struct exe_pool *p, exe_task_fn *fn, void *const *args,
                            size_t n, size_t window)
{
	struct each_iter *g = exe__calloc(1, sizeof(*g));

	if (!g)
		return -ENOMEM;
	if (window > n)
		window = n ? n : 1;
	g->ring = exe__calloc(window, sizeof(*g->ring));
	if (!g->ring) {
		exe__free(g);
		return -ENOMEM;
	}
	g->base.ops = &each_ops;
	g->base.index = SIZE_MAX;
	g->p = p;
	g->fn = fn;
	g->args = args;
	g->n = n;
	g->window = window;
	*out = &g->base;
	return 0;
}

/* ---- the public front end ---- */

int exe_pool_map_open(struct exe_map_iter **out, struct exe_pool *p, exe_task_fn *fn, void *const *args,
                      size_t n, const struct exe_map_opts *o)
{
	size_t window = o ? o->window : 0, chunk = o ? o->chunk : 0;

	if (!out || !p || !fn || (n && !args) || (o && o->timeout_ns))
		return -EINVAL;
	if (window == 0) {
		struct exe_pool_stats st = {0};

		p->ops->stats(p, &st);
		window = 2 * (size_t)(st.workers ? st.workers : 1);
	}
	if (p->ops->map_open)
		return p->ops->map_open(out, p, fn, args, n, window, chunk);
	return exe__pool_map_open_each(out, p, fn, args, n, window);
}

int exe_map_next(struct exe_map_iter *it, void **value, int64_t timeout_ns)
{
	if (!it || !value)
		return -EINVAL;
	return it->ops->next(it, value, timeout_ns);
}

size_t exe_map_index(const struct exe_map_iter *it)
{
	return it ? it->index : SIZE_MAX;
}

void exe_map_close(struct exe_map_iter *it)
{
	if (it)
		it->ops->close(it);
}
