/*
 * proc_map.c - exe_pool_map_opts() and exe_pool_map_open() on a process
 * pool: maps in chunks.
 *
 * Design
 *  - One task record (and one internal future) per chunk, whose input is
 *    the chunk's arguments, queued like any task: bounded queues, shutdown,
 *    a broken pool, deaths and time limits work as for single tasks.
 *  - The collector copies a finished chunk's values into a buffer shared by
 *    the map and its chunks (struct exe__pmap, reference counted: a map that
 *    stopped early leaves chunks running), then completes the chunk's
 *    future; the map copies them out after the future finished (the
 *    completion's release orders the values before it).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "errors.h"
#include "future_internal.h"
#include "proc_internal.h"

void exe__pmap_unref(struct exe__pmap *m)
{
	if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		exe__free(m);
}

void exe__proc_chunk_finish(struct exe__proc_pool *pp, struct exe__ptask *t, size_t done, const void *vals,
                            int code, char *msg)
{
	if (done)
		memcpy(t->map->vals + t->first, vals, done * sizeof(uint64_t));
	/* Published by the completion (release), read by the map after it. */
	t->map->done[t->chunk] = (uint32_t)done;
	exe__proc_task_finish(pp, t, code, NULL, NULL, msg);
}

/* ---- map in chunks ---- */

/* About four chunks per worker: few messages per element, yet enough chunks
 * to even out uneven elements across workers at the end of the map. */
static size_t auto_chunk(const struct exe__proc_pool *pp, size_t n)
{
	size_t per = 4 * (size_t)pp->nworkers;
	size_t c = n / per + (n % per != 0);

	if (c < 1)
		return 1;
	return c > EXE__CHUNK_AUTO_MAX ? EXE__CHUNK_AUTO_MAX : c;
}

/* The per-task limit scaled to a chunk; bounded so that a start time plus
 * the limit cannot overflow. */
static int64_t chunk_timeout(int64_t per_task, size_t len)
{
	const int64_t cap = INT64_MAX / 4;

	if (!per_task)
		return 0;
	return per_task > cap / (int64_t)len ? cap : per_task * (int64_t)len;
}

static struct exe__ptask *chunk_new(struct exe__pmap *m, exe_task_fn *fn, void *const *args, size_t first,
                                    size_t len, size_t c)
{
	struct exe__ptask *t = exe__proc_task_new(len * sizeof(uint64_t));
	size_t i;

	if (!t)
		return NULL;
	t->kind = EXE__F_TASK_CHUNK;
	t->fn = (uint64_t)(uintptr_t)fn;
	t->in_len = len * sizeof(uint64_t);
	for (i = 0; i < len; i++) {
		uint64_t a = (uint64_t)(uintptr_t)args[first + i];

		memcpy(t->in + i * sizeof(a), &a, sizeof(a));
	}
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	t->map = m;
	t->first = first;
	t->chunk = c;
	return t;
}

/* exe_pool_map_opts(): one task record per chunk, queued like any task (so
 * bounded queues, shutdown, a broken pool, deaths and time limits work as
 * for single tasks), and one future per chunk. */
int exe__proc_map(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
                  int64_t deadline, size_t chunk, size_t *failed_index)
{
	struct exe__proc_pool *pp = (struct exe__proc_pool *)p;
	struct exe_submit_opts o = {.flags = EXE_SUBMIT_BLOCK};
	struct exe_future **fs;
	struct exe__pmap *m;
	size_t nchunks, c, i, submitted = 0, fail_at = 0;
	int rc = 0, crc = 0;

	if (!chunk)
		chunk = auto_chunk(pp, n);
	if (chunk > EXE__CHUNK_MAX)
		chunk = EXE__CHUNK_MAX;
	if (chunk == 1)
		return exe__pool_map_each(p, fn, args, n, results, deadline, failed_index);
	nchunks = n / chunk + (n % chunk != 0);
	if (n > (SIZE_MAX - sizeof(*m)) / (sizeof(uint64_t) + sizeof(uint32_t)))
		return -ENOMEM;
	m = exe__malloc(sizeof(*m) + n * sizeof(uint64_t) + nchunks * sizeof(uint32_t));
	fs = exe__calloc(nchunks, sizeof(*fs));
	if (!m || !fs) {
		exe__free(m);
		exe__free(fs);
		return -ENOMEM;
	}
	atomic_init(&m->refs, 1);
	m->vals = (uint64_t *)(m + 1);
	m->done = (uint32_t *)(m->vals + n);
	for (c = 0; c < nchunks; c++) {
		size_t first = c * chunk, len = n - first < chunk ? n - first : chunk;
		struct exe__ptask *t;

		o.block_timeout_ns = exe__pool_remaining(deadline);
		if (deadline >= 0 && o.block_timeout_ns == 0) {
			rc = -ETIMEDOUT;
			break;
		}
		o.task_timeout_ns = chunk_timeout(pp->task_timeout_ns, len);
		m->done[c] = 0;
		t = chunk_new(m, fn, args, first, len, c);
		if (!t) {
			rc = -ENOMEM;
			break;
		}
		rc = exe__proc_enqueue(pp, t, &exe__proc_ptr_ops, &o, &fs[c]);
		if (rc)
			break;
		submitted++;
	}
	/* Collect in order, even after a failed submit: an earlier element's
	 * failure comes first. */
	for (c = 0; c < submitted && !crc; c++) {
		size_t first = c * chunk, len = n - first < chunk ? n - first : chunk, k = len;
		int code = exe_future_wait(fs[c], exe__pool_remaining(deadline));

		if (code) /* the deadline: nothing of this chunk is in hand */
			k = 0;
		else if ((code = exe_future_code(fs[c]))) /* acquire: done[] and vals[] */
			k = m->done[c] < len ? m->done[c] : len;
		for (i = 0; i < k; i++)
			results[first + i] = (void *)(uintptr_t)m->vals[first + i];
		if (code) {
			crc = code;
			fail_at = first + k;
		}
	}
	if (crc) {
		rc = crc;
	} else if (rc) {
		fail_at = submitted * chunk;
	}
	if (rc && failed_index)
		*failed_index = fail_at;
	for (c = 0; c < submitted; c++) {
		if (rc)
			exe__future_cancel_pending(fs[c]);
		exe_future_unref(fs[c]);
	}
	exe__free(fs);
	exe__pmap_unref(m);
	return rc;
}

/* ---- the lazy map in chunks (exe_pool_map_open()) ---- */

/*
 * A ring of `nring` chunk places: chunk k (elements k*chunk ..) lives in
 * place k % nring from its submit until its last element was handed out;
 * its values land in vals[place * chunk ..] of the shared struct exe__pmap,
 * its count of finished elements in done[place]. Chunks are submitted by
 * the iterator's thread inside exe_map_next(), like the generic iterator:
 * without blocking first, then - only when the chunk of the element to hand
 * out is not submitted - blocking within the caller's timeout.
 *
 * Invariants (one caller at a time): ysub (chunks submitted) - ychunk (the
 * chunk of the next element to hand out) <= nring; nring * chunk <= window.
 */
struct chunk_iter {
	struct exe_map_iter base; /* first: the public handle */
	struct exe__proc_pool *pp;
	exe_task_fn *fn;
	void *const *args;
	size_t n, chunk, nchunks, nring;
	size_t submitted; /* chunks submitted */
	size_t yielded;   /* elements handed out */
	int submit_rc;    /* a refusal, for chunk `submitted` */
	bool ended;
	int code;     /* the current chunk's outcome, once read */
	bool have;    /* code and done[] of the current chunk were read */
	size_t cdone; /* ... its finished elements */
	struct exe__pmap *m;
	struct exe_future **ring;
};

static size_t chunk_len(const struct chunk_iter *g, size_t k)
{
	size_t first = k * g->chunk;

	return g->n - first < g->chunk ? g->n - first : g->chunk;
}

static int chunk_submit(struct chunk_iter *g, bool block, int64_t deadline)
{
	struct exe_submit_opts o = {0};
	size_t k = g->submitted, place = k % g->nring, len = chunk_len(g, k);
	struct exe__ptask *t;
	int rc;

	if (block) {
		o.flags = EXE_SUBMIT_BLOCK;
		o.block_timeout_ns = deadline < 0 ? EXE_FOREVER : exe__pool_remaining(deadline);
		if (o.block_timeout_ns == 0)
			return -ETIMEDOUT;
	}
	o.task_timeout_ns = chunk_timeout(g->pp->task_timeout_ns, len);
	t = chunk_new(g->m, g->fn, g->args, k * g->chunk, len, place);
	if (!t) {
		g->submit_rc = -ENOMEM;
		return -ENOMEM;
	}
	t->first = place * g->chunk; /* where its values go in the ring */
	g->m->done[place] = 0;
	rc = exe__proc_enqueue(g->pp, t, &exe__proc_ptr_ops, &o, &g->ring[place]);
	if (rc == 0) {
		g->submitted++;
		return 0;
	}
	if ((rc == -EAGAIN && !block) || (rc == -ETIMEDOUT && block))
		return rc;
	g->submit_rc = rc;
	return rc;
}

static void chunk_top_up(struct chunk_iter *g)
{
	while (!g->submit_rc && g->submitted < g->nchunks && g->submitted - g->yielded / g->chunk < g->nring)
		if (chunk_submit(g, false, -1))
			break;
}

static int chunk_next(struct exe_map_iter *it, void **value, int64_t timeout_ns)
{
	struct chunk_iter *g = (struct chunk_iter *)it;
	int64_t deadline = exe__deadline(timeout_ns);
	size_t k = g->yielded / g->chunk, place = k % g->nring, at = g->yielded - k * g->chunk;
	int rc;

	if (g->ended || g->yielded == g->n)
		return -EPIPE;
	chunk_top_up(g);
	if (k == g->submitted) {
		if (!g->submit_rc) {
			rc = timeout_ns == 0 ? -ETIMEDOUT : chunk_submit(g, true, deadline);
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
	if (!g->have) {
		struct exe_future *f = g->ring[place];

		if (exe_future_wait(f, deadline < 0 ? timeout_ns : exe__pool_remaining(deadline)))
			return -ETIMEDOUT;
		g->code = exe_future_code(f); /* acquire: done[] and vals[] */
		g->cdone = g->code ? g->m->done[place] : chunk_len(g, k);
		g->have = true;
	}
	*value = NULL;
	if (at < g->cdone) {
		*value = (void *)(uintptr_t)g->m->vals[place * g->chunk + at];
		rc = 0;
	} else {
		/* The failing element, then those of its chunk that never ran. */
		rc = at == g->cdone ? g->code : -ECANCELED;
	}
	g->base.index = g->yielded++;
	if (g->yielded == g->n || g->yielded % g->chunk == 0) {
		/* The chunk is handed out: its place is free. */
		exe_future_unref(g->ring[place]);
		g->ring[place] = NULL;
		g->have = false;
		chunk_top_up(g);
	}
	return rc;
}

static void chunk_close(struct exe_map_iter *it)
{
	struct chunk_iter *g = (struct chunk_iter *)it;
	size_t k;

	/* Held: the chunk being handed out (unless all was) and those after. */
	for (k = g->yielded == g->n ? g->submitted : g->yielded / g->chunk; k < g->submitted; k++) {
		struct exe_future *f = g->ring[k % g->nring];

		exe__future_cancel_pending(f); /* queued: never starts */
		exe_future_unref(f);
	}
	exe__pmap_unref(g->m); /* chunks still running keep it */
	exe__free(g->ring);
	exe__free(g);
}

static const struct exe__map_iter_ops chunk_iter_ops = {
    .next = chunk_next,
    .close = chunk_close,
};

int exe__proc_map_open(struct exe_map_iter **out, struct exe_pool *p, exe_task_fn *fn, void *const *args,
                       size_t n, size_t window, size_t chunk)
{
	struct exe__proc_pool *pp = (struct exe__proc_pool *)p;
	struct chunk_iter *g;
	struct exe__pmap *m;
	size_t nring;

	/* Automatic: as for exe_pool_map_opts(), but small enough that two
	 * chunks per worker fit the window, so every worker stays busy. */
	if (!chunk) {
		size_t fit = window / (2 * (size_t)pp->nworkers);

		chunk = auto_chunk(pp, n);
		if (chunk > fit)
			chunk = fit;
	}
	if (chunk > EXE__CHUNK_MAX)
		chunk = EXE__CHUNK_MAX;
	/* The window bounds elements in flight: a chunk never exceeds it. */
	if (chunk > window)
		chunk = window;
	if (chunk <= 1 || n == 0)
		return exe__pool_map_open_each(out, p, fn, args, n, window);
	nring = window / chunk;
	g = exe__calloc(1, sizeof(*g));
	m = exe__malloc(sizeof(*m) + nring * chunk * sizeof(uint64_t) + nring * sizeof(uint32_t));
	if (g)
		g->ring = exe__calloc(nring, sizeof(*g->ring));
	if (!g || !m || !g->ring) {
		if (g)
			exe__free(g->ring);
		exe__free(g);
		exe__free(m);
		return -ENOMEM;
	}
	atomic_init(&m->refs, 1);
	m->vals = (uint64_t *)(m + 1);
	m->done = (uint32_t *)(m->vals + nring * chunk);
	g->base.ops = &chunk_iter_ops;
	g->base.index = SIZE_MAX;
	g->pp = pp;
	g->fn = fn;
	g->args = args;
	g->n = n;
	g->chunk = chunk;
	g->nchunks = n / chunk + (n % chunk != 0);
	g->nring = nring;
	g->m = m;
	*out = &g->base;
	return 0;
}
