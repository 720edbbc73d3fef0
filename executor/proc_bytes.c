/*
 * proc_bytes.c - bytes tasks of the process pool: the submit that copies the
 * input (inline, into the shared arena, or into a sealed memfd) and the
 * result bytes a future owns (an inline copy, a memfd mapping, or an arena
 * block taken over from the worker's reply), with exe_future_bytes().
 *
 * Design
 *  - A result is a small record (struct bytes) the future's value points
 *    to; its free function releases whatever holds the data. An arena block
 *    holds a reference on the arena, so a result outlives its pool.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "future_internal.h"
#include "proc_internal.h"

/* ---- result bytes ---- */

struct bytes {
	void *data;
	size_t len;
	void *map;
	struct exe__arena *arena;
	int cls;
	uint64_t off;
	unsigned char inl[];
};

void *exe__proc_bytes_arena(struct exe__arena *arena, int cls, uint64_t off, size_t len)
{
	struct bytes *b = exe__malloc(sizeof(*b));

	if (!b)
		return NULL;
	exe__arena_ref(arena); /* the result may outlive the pool */
	b->arena = arena;
	b->cls = cls;
	b->off = off;
	b->map = NULL;
	b->len = len;
	b->data = (unsigned char *)exe__arena_base(arena) + off;
	return b;
}

void *exe__proc_bytes_new(const void *copy, size_t len, void *map)
{
	struct bytes *b = exe__malloc(sizeof(*b) + (map ? 0 : len));

	if (!b)
		return NULL;
	b->len = len;
	b->map = map;
	b->arena = NULL;
	if (map) {
		b->data = map;
	} else {
		b->data = b->inl;
		if (len)
			memcpy(b->inl, copy, len);
	}
	return b;
}

void exe__proc_bytes_free(void *p)
{
	struct bytes *b = p;

	if (b->map)
		munmap(b->map, b->len);
	if (b->arena) {
		exe__arena_free(b->arena, b->cls, b->off);
		exe__arena_unref(b->arena);
	}
	exe__free(b);
}

void exe__proc_bytes_of(const struct exe_future *f, const void **data, size_t *len)
{
	const struct bytes *b = f->value;

	*data = b->len ? b->data : NULL;
	*len = b->len;
}

/* Any future kind that carries bytes (this pool's, the MPI pool's) says how
 * to read them through its ops. */
int exe_future_bytes(struct exe_future *f, const void **data, size_t *len, int64_t timeout_ns)
{
	int rc;

	if (!f || !data || !len || !f->ops || !f->ops->bytes)
		return -EINVAL;
	rc = exe_future_wait(f, timeout_ns);
	if (rc)
		return rc;
	rc = exe_future_code(f); /* acquire: the value is published with the state */
	if (rc)
		return rc;
	f->ops->bytes(f, data, len);
	return 0;
}

int exe_pool_submit_bytes(struct exe_pool *p, exe_proc_task_fn *fn, const void *in, size_t in_len,
                          const struct exe_submit_opts *o, struct exe_future **out)
{
	struct exe__proc_pool *pp = (struct exe__proc_pool *)p;
	struct exe__ptask *t;
	bool big = in_len > EXE__SLOT_INLINE; /* what a ring slot holds */

	if (!p || !fn || (!in && in_len))
		return -EINVAL;
	if (p->ops != &exe__proc_pool_ops)
		return -EOPNOTSUPP; /* bytes tasks need a process pool */
	if (o && ((o->flags & ~(unsigned)(EXE_SUBMIT_BLOCK | EXE_SUBMIT_KILL_ON_CANCEL)) || o->result_free ||
	          o->task_timeout_ns < 0))
		return -EINVAL;
	t = exe__proc_task_new(big ? 0 : in_len);
	if (!t)
		return -ENOMEM;
	t->kind = EXE__F_TASK_BYTES;
	t->fn = (uint64_t)(uintptr_t)fn;
	t->in_len = in_len;
	if (big && (t->in_cls = exe__arena_alloc(pp->arena, in_len, &t->in_off)) >= 0) {
		memcpy((unsigned char *)exe__arena_base(pp->arena) + t->in_off, in, in_len);
	} else if (big) {
		t->memfd = exe__memfd_from(in, in_len, "exe-input");
		if (t->memfd < 0) {
			int rc = t->memfd;

			t->memfd = -1;
			exe__proc_task_free(t);
			return rc;
		}
	} else if (in_len) {
		memcpy(t->in, in, in_len);
	}
	return exe__proc_enqueue(pp, t, &exe__proc_bytes_ops, o, out);
}
