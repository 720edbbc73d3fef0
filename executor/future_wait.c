/*
 * future_wait.c - waiting on many futures: exe_wait() and exe_as_completed.
 *
 * Design
 *  Both register an internal done callback on each unfinished future. The
 *  callback bumps a futex word in a shared, reference-counted waiter and
 *  wakes it: cancellation runs callbacks too, so a cancel is seen at once.
 *  On return, callbacks that have not run are unlinked again (Python leaves
 *  its waiters behind; we do not), and the waiter is freed by whoever drops
 *  the last reference: the waiting thread or a callback that was already
 *  running when we unlinked.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "errors.h"
#include "futex.h"
#include "future_internal.h"

/* ---- the shared waiter ---- */

struct waiter {
	_Atomic uint32_t seq;
	_Atomic uint32_t refs;
};

static void waiter_unref(struct waiter *w)
{
	if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) == 1)
		exe__free(w);
}

static void waiter_wake(struct waiter *w)
{
	/* release: pairs with the acquire load of seq by the waiting thread,
	 * which then reads the futures' states. */
	atomic_fetch_add_explicit(&w->seq, 1, memory_order_release);
	exe__futex_wake(&w->seq, 1);
}

static int wait_cb(struct exe_future *f, void *arg)
{
	(void)f;
	waiter_wake(arg);
	waiter_unref(arg);
	return 0;
}

/* ---- exe_wait ---- */

static bool condition_met(struct exe_future *const *fs, size_t n, enum exe_wait_mode mode, int *finished)
{
	size_t i;
	int done = 0;
	bool error = false;

	for (i = 0; i < n; i++) {
		enum exe_future_state s = exe_future_state(fs[i]);

		if (s >= EXE_FUTURE_DONE) {
			done++;
			/* Python's FIRST_EXCEPTION: a cancelled future is not an
			 * exception, only a FAILED one ends the wait early. */
			if (s == EXE_FUTURE_FAILED)
				error = true;
		}
	}
	*finished = done;
	switch (mode) {
	case EXE_WAIT_ANY: return done > 0;
	case EXE_WAIT_FIRST_ERROR: return error || (size_t)done == n;
	default: return (size_t)done == n;
	}
}

static int cmp_ptr(const void *a, const void *b);

/* The number of distinct finished futures in @fs: duplicates count once (as
 * in Python's wait(), which returns sets). Called once, on return.
 * @all_finished: every future is known finished (a wait for all of them
 * succeeded; final states never change), so only duplicates are counted -
 * no second look at each future, which for a big batch is a cache miss
 * apiece. */
static int count_distinct(struct exe_future *const *fs, size_t n, bool all_finished)
{
	size_t cap = 128, i, j;
	struct exe_future **set;
	int count = 0;

	/* A hash set of the pointers (open addressing, at most half full):
	 * linear in n, where sorting a copy cost a third of a batch's time. */
	while (n > 64 && cap < 2 * n && cap < (SIZE_MAX >> 2) / sizeof(*set))
		cap <<= 1;
	set = n > 64 ? exe__calloc(cap, sizeof(*set)) : NULL;
	if (set) {
		for (i = 0; i < n; i++) {
			/* Fibonacci hashing of the address above its alignment. */
			size_t h = (size_t)(((uintptr_t)fs[i] >> 4) * 0x9E3779B97F4A7C15ull) & (cap - 1);

			while (set[h] && set[h] != fs[i])
				h = (h + 1) & (cap - 1);
			if (set[h])
				continue;
			set[h] = fs[i];
			if (all_finished || exe_future_is_finished(fs[i]))
				count++;
		}
		exe__free(set);
		return count;
	}
	/* Small arrays (or no memory for a set): quadratic, no allocation. */
	for (i = 0; i < n; i++) {
		if (!all_finished && !exe_future_is_finished(fs[i]))
			continue;
		for (j = 0; j < i && fs[j] != fs[i]; j++)
			;
		if (j == i)
			count++;
	}
	return count;
}

static int count_distinct_finished(struct exe_future *const *fs, size_t n)
{
	return count_distinct(fs, n, false);
}

/* Run one pending task of @fs on this thread, if any may be. */
static bool help_one(struct exe_future *const *fs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (exe__future_help(fs[i]))
			return true;
	return false;
}

/* Whether the wait can never end because of futures running on this very
 * thread: ALL needs each of them, ANY and FIRST_ERROR need one of the others. */
static bool waits_on_itself(struct exe_future *const *fs, size_t n, enum exe_wait_mode mode)
{
	size_t i, mine = 0, open = 0;

	for (i = 0; i < n; i++) {
		if (exe_future_is_finished(fs[i]))
			continue;
		open++;
		if (exe__future_runs_here(fs[i])) {
			if (mode == EXE_WAIT_ALL)
				return true;
			mine++;
		}
	}
	return open > 0 && mine == open;
}

/* A future of the pool this thread works for, if the wait has one: the pool
 * is told while this worker sleeps (exe__future_ops.blocking). */
static struct exe_future *own_pool_future(struct exe_future *const *fs, size_t n)
{
	size_t i;

	if (!exe__tls_worker_owner)
		return NULL;
	for (i = 0; i < n; i++)
		if (fs[i]->owner == exe__tls_worker_owner && fs[i]->ops && fs[i]->ops->blocking &&
		    !exe_future_is_finished(fs[i]))
			return fs[i];
	return NULL;
}

static int wait_all_in_turn(struct exe_future *const *fs, size_t n, int64_t timeout_ns)
{
	int64_t deadline = exe__deadline(timeout_ns);
	size_t i;
	int rc;

	if (waits_on_itself(fs, n, EXE_WAIT_ALL))
		return -EDEADLK;
	for (i = 0; i < n; i++) {
		int64_t left = deadline < 0 ? EXE_FOREVER : deadline - exe_now_ns();

		rc = exe_future_wait(fs[i], deadline >= 0 && left <= 0 ? 0 : left);
		if (rc == -ETIMEDOUT && deadline >= 0)
			return -ETIMEDOUT;
		if (rc)
			return rc;
	}
	return count_distinct(fs, n, true);
}

int exe_wait(struct exe_future *const *fs, size_t n, enum exe_wait_mode mode, int64_t timeout_ns)
{
	struct exe_future *mine;
	int64_t deadline = exe__deadline(timeout_ns);
	struct exe__cb *nodes = NULL;
	struct waiter *w = NULL;
	int finished, rc;
	size_t i;

	if ((n && !fs) || mode > EXE_WAIT_FIRST_ERROR || n > INT32_MAX)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (!fs[i])
			return -EINVAL;
	/* Nothing to wait for: no condition can change (ANY would block for
	 * ever), so return at once, as Python's wait([]) does. */
	if (n == 0)
		return 0;
	/* ALL is each future in turn: no callback nodes, and an infinite wait
	 * helps (runs pending tasks) in one pass instead of rescanning the
	 * whole array after every task it ran. */
	if (mode == EXE_WAIT_ALL && timeout_ns != 0)
		return wait_all_in_turn(fs, n, timeout_ns);
	while (!condition_met(fs, n, mode, &finished)) {
		if (timeout_ns == 0)
			return -ETIMEDOUT;
		if (waits_on_itself(fs, n, mode))
			return -EDEADLK;
		/* A fiber never runs a task inline: it would hold up its thread. */
		if (timeout_ns > 0 || exe__in_fiber() || !help_one(fs, n))
			goto block;
	}
	return count_distinct_finished(fs, n);

block:
	w = exe__malloc(sizeof(*w));
	nodes = exe__calloc(n, sizeof(*nodes));
	if (!w || !nodes) {
		exe__free(w);
		exe__free(nodes);
		return -ENOMEM;
	}
	atomic_init(&w->seq, 0);
	atomic_init(&w->refs, 1 + (uint32_t)n);
	for (i = 0; i < n; i++) {
		nodes[i].fn = wait_cb;
		nodes[i].arg = w;
		exe__future_add_node(fs[i], &nodes[i]);
	}
	mine = own_pool_future(fs, n);
	if (mine)
		mine->ops->blocking(mine, true);
	for (;;) {
		uint32_t seq = atomic_load_explicit(&w->seq, memory_order_acquire);

		if (condition_met(fs, n, mode, &finished)) {
			rc = count_distinct_finished(fs, n);
			break;
		}
		if (deadline >= 0 && exe_now_ns() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		if (exe__futex_wait(&w->seq, seq, deadline) == -ECANCELED) {
			rc = -ECANCELED; /* a cancelled fiber */
			break;
		}
	}
	if (mine)
		mine->ops->blocking(mine, false);
	/* A node that ran (or is running) dropped, or will drop, its own
	 * reference; the ones we unlink never run, so we drop theirs. */
	for (i = 0; i < n; i++)
		if (exe__future_remove_node(fs[i], &nodes[i]))
			waiter_unref(w);
	/* The nodes array must outlive running callbacks: they read the node
	 * before the call only (run_node), and we unlinked or they were taken,
	 * so after remove_node returned no thread reads nodes[i] again. */
	exe__free(nodes);
	waiter_unref(w);
	return rc;
}

/* ---- as_completed ---- */

struct exe_as_completed {
	_Atomic uint32_t seq;
	_Atomic uint32_t refs;
	size_t n;
	struct exe_future **fs; /* distinct futures, one reference each */
	struct exe__cb *nodes;
	size_t yielded;            /* read position in order[] (iterator thread) */
	_Atomic size_t tail;       /* next free position in order[] */
	struct exe_future **order; /* finish order */
	_Atomic uint8_t *ready;    /* order[i] is published */
};

static void it_free(struct exe_as_completed *it)
{
	size_t i;

	for (i = 0; i < it->n; i++)
		exe_future_unref(it->fs[i]);
	exe__free(it->fs);
	exe__free(it->nodes);
	exe__free(it->order);
	exe__free((void *)it->ready);
	exe__free(it);
}

static void it_unref(struct exe_as_completed *it)
{
	if (atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) == 1)
		it_free(it);
}

static int it_cb(struct exe_future *f, void *arg)
{
	struct exe_as_completed *it = arg;
	size_t slot = atomic_fetch_add_explicit(&it->tail, 1, memory_order_relaxed);

	it->order[slot] = f;
	/* release: order[slot] is written before the slot reads as ready. */
	atomic_store_explicit(&it->ready[slot], 1, memory_order_release);
	atomic_fetch_add_explicit(&it->seq, 1, memory_order_release);
	exe__futex_wake(&it->seq, 1);
	it_unref(it);
	return 0;
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;

	return x < y ? -1 : x > y;
}

int exe_as_completed_create(struct exe_as_completed **out, struct exe_future *const *fs, size_t n)
{
	struct exe_as_completed *it;
	size_t i, m = 0;

	if (!out || (n && !fs))
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (!fs[i])
			return -EINVAL;
	it = exe__calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	it->fs = exe__calloc(n ? n : 1, sizeof(*it->fs));
	it->nodes = exe__calloc(n ? n : 1, sizeof(*it->nodes));
	it->order = exe__calloc(n ? n : 1, sizeof(*it->order));
	it->ready = exe__calloc(n ? n : 1, sizeof(*it->ready));
	if (!it->fs || !it->nodes || !it->order || !it->ready) {
		it_free(it);
		return -ENOMEM;
	}
	/* Duplicates are yielded once, as in Python. */
	if (n)
		memcpy(it->fs, fs, n * sizeof(*fs));
	qsort(it->fs, n, sizeof(*it->fs), cmp_ptr);
	for (i = 0; i < n; i++)
		if (i == 0 || it->fs[i] != it->fs[i - 1])
			it->fs[m++] = exe_future_ref(it->fs[i]);
	it->n = m;
	atomic_init(&it->refs, 1 + (uint32_t)m);
	for (i = 0; i < m; i++) {
		it->nodes[i].fn = it_cb;
		it->nodes[i].arg = it;
		exe__future_add_node(it->fs[i], &it->nodes[i]);
	}
	*out = it;
	return 0;
}

int exe_as_completed_next(struct exe_as_completed *it, struct exe_future **f, int64_t timeout_ns)
{
	int64_t deadline;

	if (!it || !f)
		return -EINVAL;
	if (it->yielded == it->n)
		return -EPIPE;
	deadline = exe__deadline(timeout_ns);
	for (;;) {
		uint32_t seq = atomic_load_explicit(&it->seq, memory_order_acquire);

		if (atomic_load_explicit(&it->ready[it->yielded], memory_order_acquire)) {
			*f = it->order[it->yielded++];
			return 0;
		}
		if (timeout_ns == 0 || (deadline >= 0 && exe_now_ns() >= deadline))
			return -ETIMEDOUT;
		/* The next item needs one of the unfinished futures: if every
		 * one of them runs on this thread, none can finish while we
		 * wait (as exe_wait(EXE_WAIT_ANY) decides). Only a thread
		 * running a task can be waiting on itself: others skip the scan. */
		if (exe_task_future() && waits_on_itself(it->fs, it->n, EXE_WAIT_ANY))
			return -EDEADLK;
		if (deadline < 0 && !exe__in_fiber() && help_one(it->fs, it->n))
			continue;
		if (exe__futex_wait(&it->seq, seq, deadline) == -ECANCELED)
			return -ECANCELED; /* a cancelled fiber */
	}
}

void exe_as_completed_destroy(struct exe_as_completed *it)
{
	size_t i;

	if (!it)
		return;
	for (i = 0; i < it->n; i++)
		if (exe__future_remove_node(it->fs[i], &it->nodes[i]))
			it_unref(it);
	it_unref(it);
}
