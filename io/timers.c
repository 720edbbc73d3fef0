/*
 * timers.c - user-space timers behind one kernel deadline per io context.
 *
 * Design
 *  - One 4-ary min-heap of (deadline, future) slots under one mutex, the
 *    same for both backends. The deadline sits in the slot, so sifting
 *    compares without touching the timers themselves. 4-ary: half the depth
 *    of a binary heap and the four children share a cache line.
 *  - A one-shot timer is a bare future: fn/arg of the future hold the timer
 *    function, the deadline lives in its slot. 104 bytes of future plus a
 *    16-byte slot keep a million pending timers near 120 MB.
 *  - Cancel is lazy: cancelling a pending timer is the future's own CAS
 *    (PENDING -> CANCELLED), no lock and no heap surgery. The slot keeps its
 *    reference until the io thread pops it, or until a compaction (run by an
 *    arm that finds the heap at twice its last live size) drops every
 *    cancelled slot and rebuilds the heap in O(n). A process-wide count of
 *    cancels skips compactions that could not find enough garbage, so arming
 *    stays O(log n) amortized and memory stays within twice the live timers.
 *  - The io thread pops due slots under the lock and fires them outside it.
 *    Firing starts with exe__future_claim() (PENDING -> RUNNING): exactly one
 *    of fire and cancel wins, so a successful cancel means fn never runs.
 *  - Arming wakes the io thread only when the new timer becomes the earliest
 *    and is earlier than what the sleeping thread waits for
 *    (io->wait_deadline, written under the lock before it sleeps).
 *  - Periodic timers (exe_call_every) are RUNNING from their first firing
 *    and re-armed at start + k * interval. Cancel then pushes the timer's
 *    cancel node to the io thread (like an io operation) so it finishes at
 *    once, not at its next tick.
 *
 * Invariants
 *  - Each slot holds one reference to its future. A periodic timer's
 *    reference moves slot -> io thread (firing) -> slot (re-arm).
 *  - Only the io thread completes a RUNNING timer; compaction only drops
 *    CANCELLED slots, so it never races with the io thread's ownership.
 *  - A periodic timer that finished with CANCEL_REQ set is kept (counted in
 *    io->live) until its cancel node was popped (see io.c).
 *  - Nothing is armed after io->shutdown is set (both under the lock).
 */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "errors.h"
#include "backend.h"

#define ARITY 4
#define FIRE_BATCH 64
#define MIN_COMPACT 4096

static void every_cancel_running(struct exe_future *f);
static void timer_cancelled(struct exe_future *f);

static const struct exe__future_ops oneshot_ops = {
    .cancelled = timer_cancelled,
};
static const struct exe__future_ops every_ops = {
    .cancelled = timer_cancelled,
    .cancel_running = every_cancel_running,
};

/* Cancels of pending timers, all contexts. The cancelled hook must not
 * touch the io context (it may be torn down right after the state CAS), so
 * the count is global; it only gates compactions. */
static _Atomic uint64_t cancels_total;

static void timer_cancelled(struct exe_future *f)
{
	(void)f;
	atomic_fetch_add_explicit(&cancels_total, 1, memory_order_relaxed);
}

bool exe__is_every(const struct exe_future *f)
{
	return f->ops == &every_ops;
}

static exe_timer_fn *timer_fn(const struct exe_future *f)
{
	return (exe_timer_fn *)(void (*)(void))f->fn;
}

/* ---- the heap (caller holds the lock) ---- */

static void sift_up(struct exe__timer_slot *h, size_t i)
{
	struct exe__timer_slot s = h[i];

	while (i > 0) {
		size_t parent = (i - 1) / ARITY;

		if (h[parent].deadline <= s.deadline)
			break;
		h[i] = h[parent];
		i = parent;
	}
	h[i] = s;
}

static void sift_down(struct exe__timer_slot *h, size_t n, size_t i)
{
	struct exe__timer_slot s = h[i];

	for (;;) {
		size_t first = i * ARITY + 1, best, c, end;

		if (first >= n)
			break;
		best = first;
		end = first + ARITY < n ? first + ARITY : n;
		for (c = first + 1; c < end; c++)
			if (h[c].deadline < h[best].deadline)
				best = c;
		if (h[best].deadline >= s.deadline)
			break;
		h[i] = h[best];
		i = best;
	}
	h[i] = s;
}

static struct exe__timer_slot heap_pop(struct exe__timers *t)
{
	struct exe__timer_slot top = t->heap[0];

	if (--t->n > 0) {
		t->heap[0] = t->heap[t->n];
		sift_down(t->heap, t->n, 0);
	}
	return top;
}

/* Drop cancelled slots and rebuild. O(n); see Design. */
static void compact(struct exe__timers *t)
{
	uint64_t cancels = atomic_load_explicit(&cancels_total, memory_order_relaxed);
	size_t i, j = 0;

	if (cancels - t->cancels_at_compact >= t->n / 4) {
		for (i = 0; i < t->n; i++) {
			struct exe_future *f = t->heap[i].f;

			if (exe_future_state(f) == EXE_FUTURE_CANCELLED)
				exe_future_unref(f); /* no user code: a timer has no value_free */
			else
				t->heap[j++] = t->heap[i];
		}
		t->n = j;
		for (i = t->n / ARITY + 1; i-- > 0;)
			sift_down(t->heap, t->n, i);
		/* Garbage left behind is at most the cancels counted since. */
		t->cancels_at_compact = cancels;
	}
	t->compact_at = t->n * 2 > MIN_COMPACT ? t->n * 2 : MIN_COMPACT;
}

static int heap_grow(struct exe__timers *t)
{
	size_t cap = t->cap ? t->cap * 2 : 1024;
	struct exe__timer_slot *h = exe__malloc(cap * sizeof(*h));

	if (!h)
		return -ENOMEM;
	if (t->n)
		memcpy(h, t->heap, t->n * sizeof(*h));
	exe__free(t->heap);
	t->heap = h;
	t->cap = cap;
	return 0;
}

int exe__timers_init(struct exe__timers *t)
{
	int rc = pthread_mutex_init(&t->lock, NULL);

	if (rc)
		return -rc;
	t->heap = NULL;
	t->n = t->cap = 0;
	t->compact_at = MIN_COMPACT;
	t->cancels_at_compact = 0;
	return 0;
}

void exe__timers_fini(struct exe__timers *t)
{
	exe__free(t->heap);
	pthread_mutex_destroy(&t->lock);
}

/* Insert under the lock; wake the io thread if this is its new deadline. */
static void insert_locked(struct exe_io *io, struct exe_future *f, int64_t deadline)
{
	struct exe__timers *t = &io->timers;

	t->heap[t->n].deadline = deadline;
	t->heap[t->n].f = f;
	sift_up(t->heap, t->n);
	t->n++;
	if (t->heap[0].f == f && deadline < atomic_load_explicit(&io->wait_deadline, memory_order_relaxed)) {
		atomic_store_explicit(&io->wait_deadline, deadline, memory_order_relaxed);
		/* Under the lock: teardown takes it after setting shutdown, so io
		 * is alive here. */
		exe__io_wake(io);
	}
}

static int arm(struct exe_io *io, struct exe_future *f, int64_t deadline)
{
	struct exe__timers *t = &io->timers;
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	if (atomic_load_explicit(&io->shutdown, memory_order_relaxed)) {
		rc = -ESHUTDOWN;
		goto out;
	}
	if (t->n >= t->compact_at)
		compact(t);
	if (t->n == t->cap && (rc = heap_grow(t)))
		goto out;
	insert_locked(io, f, deadline);
out:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* ---- the public timers ---- */

/* @base + @delta, saturated: a timer far enough away never fires rather
 * than wrapping into the past. */
static int64_t deadline_after(int64_t base, int64_t delta)
{
	int64_t d;

	if (__builtin_add_overflow(base, delta, &d))
		return INT64_MAX;
	return d;
}

static int64_t every_deadline(const struct exe__every *e)
{
	int64_t step;

	if (__builtin_mul_overflow((int64_t)e->k, e->interval, &step))
		return INT64_MAX;
	return deadline_after(e->start, step);
}

/* A timer function's return as the contract reads it (io.h): 0,
 * EXE_TIMER_STOP, or a failure code; an undocumented positive value is a
 * mistake, reported as -EINVAL rather than guessed at. */
static int timer_code(int rc)
{
	return rc > 0 && rc != EXE_TIMER_STOP ? -EINVAL : rc;
}

static int add_timer(struct exe_io *io, int64_t delay_ns, exe_timer_fn *fn, void *arg,
                     struct exe_future **out)
{
	struct exe_future *f;
	int64_t deadline;
	int rc;

	if (!io || delay_ns < 0)
		return -EINVAL;
	/* The slot's reference, plus the caller's. */
	f = exe__future_new(&oneshot_ops, io, out ? 2 : 1);
	if (!f)
		return -ENOMEM;
	f->fn = (exe_task_fn *)(void (*)(void))fn;
	f->arg = arg;
	if (out)
		*out = f;
	deadline = deadline_after(exe_now_ns(), delay_ns);
	rc = arm(io, f, deadline);
	if (rc) {
		if (out)
			*out = NULL;
		exe__future_discard(f); /* never published */
	}
	return rc;
}

int exe_io_sleep(struct exe_io *io, int64_t ns, struct exe_future **out)
{
	if (!out)
		return -EINVAL;
	return add_timer(io, ns, NULL, NULL, out);
}

int exe_call_later(struct exe_io *io, int64_t delay_ns, exe_timer_fn *fn, void *arg, struct exe_future **out)
{
	if (!fn)
		return -EINVAL;
	return add_timer(io, delay_ns, fn, arg, out);
}

int exe_call_every(struct exe_io *io, int64_t interval_ns, exe_timer_fn *fn, void *arg,
                   struct exe_future **out)
{
	struct exe__every *e;
	int rc;

	if (!io || !fn || interval_ns <= 0)
		return -EINVAL;
	e = (struct exe__every *)exe__future_new_sized(sizeof(*e), &every_ops, io, out ? 2 : 1);
	if (!e)
		return -ENOMEM;
	e->fut.fn = (exe_task_fn *)(void (*)(void))fn;
	e->fut.arg = arg;
	e->in_heap = true;
	e->cancel_seen = false;
	e->await_cancel = false;
	e->interval = interval_ns;
	e->k = 1;
	e->start = exe_now_ns();
	if (out)
		*out = &e->fut;
	rc = arm(io, &e->fut, every_deadline(e));
	if (rc) {
		if (out)
			*out = NULL;
		exe__free(e);
	}
	return rc;
}

/* ---- periodic timers on the io thread ---- */

static void every_cancel_running(struct exe_future *f)
{
	struct exe__every *e = (struct exe__every *)f;
	struct exe_io *io = f->owner;

	/* io is alive: the timer is kept until this node is popped (io.c). */
	atomic_fetch_add_explicit(&io->active, 1, memory_order_seq_cst);
	e->cxl.f = f;
	e->cxl.kind = EXE__REQ_CANCEL;
	exe__io_push(io, &e->cxl);
	exe__io_wake(io);
	atomic_fetch_sub_explicit(&io->active, 1, memory_order_release);
}

/* The io thread is done with a finished periodic timer that is not in the
 * heap: drop its reference unless a cancel node is still to come. */
static void every_release(struct exe_io *io, struct exe__every *e)
{
	uint32_t s = atomic_load_explicit(&e->fut.state, memory_order_acquire);

	if ((s & EXE__CANCEL_REQ) && !e->cancel_seen) {
		if (!e->await_cancel) {
			e->await_cancel = true;
			io->live++;
		}
		return;
	}
	if (e->await_cancel)
		io->live--;
	exe_future_unref(&e->fut);
}

static void every_finish(struct exe_io *io, struct exe__every *e, int code, void *value)
{
	exe__future_complete_owned(&e->fut, code, value, NULL);
	every_release(io, e);
}

void exe__timers_cancel_entry(struct exe_io *io, struct exe_future *f)
{
	struct exe__every *e = (struct exe__every *)f;

	e->cancel_seen = true;
	if (e->await_cancel) {
		io->live--;
		exe_future_unref(f);
		return;
	}
	/* RUNNING and between firings: finish now. The slot still holds the
	 * reference; the pop releases it (finished, cancel seen). */
	if (!exe_future_is_finished(f))
		exe__future_complete_owned(f, -ECANCELED, NULL, NULL);
	if (!e->in_heap)
		every_release(io, e);
}

static void every_fire(struct exe_io *io, struct exe__every *e)
{
	struct exe_future *f = &e->fut;
	uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
	int rc;

	e->in_heap = false;
	if ((s & EXE__STATE_MASK) == EXE_FUTURE_CANCELLED) {
		exe_future_unref(f); /* cancelled before its first firing */
		return;
	}
	if (exe__state_finished(s)) {
		every_release(io, e);
		return;
	}
	if ((s & EXE__STATE_MASK) == EXE_FUTURE_PENDING && !exe__future_claim(f)) {
		exe_future_unref(f);
		return;
	}
	if (exe_future_cancel_requested(f)) {
		every_finish(io, e, -ECANCELED, NULL);
		return;
	}
	rc = timer_code(timer_fn(f)(f->arg));
	if (rc != 0) {
		every_finish(io, e, rc == EXE_TIMER_STOP ? 0 : rc, NULL);
		return;
	}
	/* Fixed rate: the k-th firing is due at start + k * interval however
	 * late this one ran. */
	e->k++;
	if (exe_future_cancel_requested(f)) {
		every_finish(io, e, -ECANCELED, NULL);
		return;
	}
	pthread_mutex_lock(&io->timers.lock);
	if (!atomic_load_explicit(&io->shutdown, memory_order_relaxed) &&
	    (io->timers.n < io->timers.cap || heap_grow(&io->timers) == 0)) {
		e->in_heap = true;
		insert_locked(io, f, every_deadline(e));
		pthread_mutex_unlock(&io->timers.lock);
		return;
	}
	pthread_mutex_unlock(&io->timers.lock);
	every_finish(io, e, atomic_load(&io->shutdown) ? -ECANCELED : -ENOMEM, NULL);
}

static void oneshot_fire(struct exe_future *f)
{
	exe_timer_fn *fn = timer_fn(f);
	int rc = 0;

	if (!exe__future_claim(f)) {
		exe_future_unref(f); /* cancelled: fn never runs */
		return;
	}
	if (fn)
		rc = timer_code(fn(f->arg));
	exe__future_complete_owned(f, rc < 0 ? rc : 0, NULL, NULL);
	exe_future_unref(f);
}

int exe__timers_run(struct exe_io *io, int64_t *next_deadline)
{
	struct exe__timers *t = &io->timers;
	struct exe_future *batch[FIRE_BATCH];
	int fired = 0;

	for (;;) {
		int64_t now = exe_now_ns();
		int i, nb = 0;

		pthread_mutex_lock(&t->lock);
		while (t->n && t->heap[0].deadline <= now && nb < FIRE_BATCH)
			batch[nb++] = heap_pop(t).f;
		*next_deadline = t->n ? t->heap[0].deadline : INT64_MAX;
		pthread_mutex_unlock(&t->lock);
		if (!nb)
			return fired;
		for (i = 0; i < nb; i++) {
			if (exe__is_every(batch[i]))
				every_fire(io, (struct exe__every *)batch[i]);
			else
				oneshot_fire(batch[i]);
		}
		fired += nb;
	}
}

int exe__timers_drain(struct exe_io *io)
{
	struct exe__timers *t = &io->timers;
	struct exe__timer_slot *h;
	size_t i, n;

	pthread_mutex_lock(&t->lock);
	h = t->heap;
	n = t->n;
	t->heap = NULL;
	t->n = t->cap = 0;
	pthread_mutex_unlock(&t->lock);
	/* Outside the lock: cancelling runs the timers' done callbacks. */
	for (i = 0; i < n; i++) {
		struct exe_future *f = h[i].f;

		if (exe__is_every(f)) {
			struct exe__every *e = (struct exe__every *)f;
			enum exe_future_state st = exe_future_state(f);

			e->in_heap = false;
			if (st == EXE_FUTURE_PENDING && exe_future_cancel(f) == 0) {
				exe_future_unref(f);
			} else if (st == EXE_FUTURE_CANCELLED) {
				exe_future_unref(f);
			} else if (st == EXE_FUTURE_RUNNING) {
				every_finish(io, e, -ECANCELED, NULL);
			} else {
				every_release(io, e);
			}
			continue;
		}
		exe_future_cancel(f);
		exe_future_unref(f);
	}
	exe__free(h);
	return (int)n;
}

int64_t exe__timers_prepare_sleep(struct exe_io *io, int64_t deadline)
{
	struct exe__timers *t = &io->timers;
	int64_t top;

	pthread_mutex_lock(&t->lock);
	top = t->n ? t->heap[0].deadline : INT64_MAX;
	atomic_store_explicit(&io->wait_deadline, top < deadline ? top : deadline, memory_order_relaxed);
	pthread_mutex_unlock(&t->lock);
	return top;
}

bool exe__timers_empty(struct exe_io *io)
{
	bool empty;

	pthread_mutex_lock(&io->timers.lock);
	empty = io->timers.n == 0;
	pthread_mutex_unlock(&io->timers.lock);
	return empty;
}
