/*
 * future_compose.c - then / all / any: futures built from futures.
 *
 * Each derived future is completed by done callbacks on its inputs through
 * exe__future_complete(), which lets exactly one completer win; later ones
 * get -EALREADY and drop their result. The user cannot complete a derived
 * future (its ops are not a promise's): only its inputs decide it.
 */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "future_internal.h"

static const struct exe__future_ops derived_ops = {0};

static char *copy_msg(const struct exe_future *f)
{
	const char *m = f->msg;
	size_t len;
	char *s;

	if (!m)
		return NULL;
	len = strlen(m) + 1;
	s = exe__malloc(len);
	if (s)
		memcpy(s, m, len);
	return s;
}

/* Forward a failed or cancelled input to @out. */
static void forward_failure(struct exe_future *out, struct exe_future *in)
{
	if (exe_future_state(in) == EXE_FUTURE_CANCELLED)
		exe_future_cancel(out);
	else
		exe__future_complete(out, exe_future_code(in), NULL, NULL, copy_msg(in));
}

/* ---- then ---- */

struct then_ctx {
	exe_then_fn *fn;
	void *arg;
	struct exe_future *prev; /* reference */
	struct exe_future *out;  /* reference */
};

static void then_free(struct then_ctx *c)
{
	exe_future_unref(c->prev);
	exe_future_unref(c->out);
	exe__free(c);
}

static int then_task(void *arg, void **unused)
{
	struct then_ctx *c = arg;
	struct exe_future *out = c->out, *saved;
	void *value = NULL;
	int code;

	(void)unused;
	/* Cancelled while queued: do not start the continuation. */
	if (exe__future_claim(out)) {
		saved = exe__task_swap(out);
		code = c->fn(c->prev, c->arg, &value);
		exe__task_swap(saved);
		if (code > 0)
			code = -code;
		exe__future_complete(out, code, value, out->value_free, NULL);
	}
	then_free(c);
	return 0;
}

static int then_cb(struct exe_future *prev, void *arg)
{
	struct then_ctx *c = arg;
	struct exe_pool *pool = c->out->owner;
	int rc;

	if (exe_future_state(prev) != EXE_FUTURE_DONE) {
		forward_failure(c->out, prev);
		then_free(c);
		return 0;
	}
	if (!pool)
		return then_task(c, NULL);
	rc = exe_pool_submit(pool, then_task, c, NULL);
	if (rc) {
		exe__future_complete(c->out, rc, NULL, NULL, NULL);
		then_free(c);
	}
	return 0;
}

int exe_future_then(struct exe_future *f, struct exe_pool *pool, exe_then_fn *fn, void *arg,
                    struct exe_future **out)
{
	struct then_ctx *c;
	struct exe_future *o;
	int rc;

	if (!f || !fn || !out)
		return -EINVAL;
	c = exe__malloc(sizeof(*c));
	/* The pool is kept only as a routing hint: derived futures have no
	 * owner callbacks, so it is never dereferenced through ops. */
	o = exe__future_new(&derived_ops, pool, 2);
	if (!c || !o) {
		exe__free(c);
		exe__future_discard(o);
		return -ENOMEM;
	}
	c->fn = fn;
	c->arg = arg;
	c->prev = exe_future_ref(f);
	c->out = o;
	rc = exe_future_on_done(f, then_cb, c);
	if (rc) {
		exe_future_unref(c->prev);
		exe__free(c);
		exe__future_discard(o);
		return rc;
	}
	*out = o;
	return 0;
}

/* ---- all / any ---- */

struct group;

struct member {
	struct group *g;
	size_t index;
};

struct group {
	struct exe_future *out; /* reference */
	struct exe_future **fs; /* references */
	struct member *members;
	size_t n;
	bool any;
	_Atomic size_t remaining;
	_Atomic size_t refs; /* one per registered callback + the creator */
};

static void group_unref(struct group *g)
{
	size_t i;

	if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (i = 0; i < g->n; i++)
		exe_future_unref(g->fs[i]);
	exe_future_unref(g->out);
	exe__free(g->fs);
	exe__free(g->members);
	exe__free(g);
}

/* Every input finished and none decided @out early. */
static void group_settle(struct group *g)
{
	size_t i;

	if (!g->any) {
		exe__future_complete(g->out, 0, NULL, NULL, NULL);
		return;
	}
	/* any: all failed or were cancelled; report the first failure. */
	for (i = 0; i < g->n; i++) {
		if (exe_future_state(g->fs[i]) == EXE_FUTURE_FAILED) {
			forward_failure(g->out, g->fs[i]);
			return;
		}
	}
	exe_future_cancel(g->out);
}

static int group_cb(struct exe_future *f, void *arg)
{
	struct member *m = arg;
	struct group *g = m->g;
	bool ok = exe_future_state(f) == EXE_FUTURE_DONE;

	if (g->any && ok)
		exe__future_complete(g->out, 0, (void *)(uintptr_t)m->index, NULL, NULL);
	else if (!g->any && !ok)
		forward_failure(g->out, f);
	/* acq_rel: the last one sees every input's final state. */
	if (atomic_fetch_sub_explicit(&g->remaining, 1, memory_order_acq_rel) == 1)
		group_settle(g);
	group_unref(g);
	return 0;
}

static int group_create(struct exe_future *const *fs, size_t n, bool any, struct exe_future **out)
{
	struct group *g;
	size_t i;

	if (!out || (n && !fs))
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (!fs[i])
			return -EINVAL;
	g = exe__calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->fs = exe__calloc(n ? n : 1, sizeof(*g->fs));
	g->members = exe__calloc(n ? n : 1, sizeof(*g->members));
	g->out = exe__future_new(&derived_ops, NULL, 2);
	if (!g->fs || !g->members || !g->out) {
		exe__free(g->fs);
		exe__free(g->members);
		exe__future_discard(g->out);
		exe__free(g);
		return -ENOMEM;
	}
	g->n = n;
	g->any = any;
	atomic_init(&g->remaining, n + 1);
	atomic_init(&g->refs, 1);
	for (i = 0; i < n; i++) {
		g->fs[i] = exe_future_ref(fs[i]);
		g->members[i].g = g;
		g->members[i].index = i;
	}
	*out = g->out;
	for (i = 0; i < n; i++) {
		atomic_fetch_add(&g->refs, 1);
		if (exe_future_on_done(fs[i], group_cb, &g->members[i]) != 0) {
			atomic_fetch_sub(&g->refs, 1);
			exe__future_complete(g->out, -ENOMEM, NULL, NULL, NULL);
			atomic_fetch_sub(&g->remaining, 1);
		}
	}
	/* The creator's share of remaining: settles an empty group at once. */
	if (atomic_fetch_sub_explicit(&g->remaining, 1, memory_order_acq_rel) == 1)
		group_settle(g);
	group_unref(g);
	return 0;
}

int exe_future_all(struct exe_future *const *fs, size_t n, struct exe_future **out)
{
	return group_create(fs, n, false, out);
}

int exe_future_any(struct exe_future *const *fs, size_t n, struct exe_future **out)
{
	return group_create(fs, n, true, out);
}
