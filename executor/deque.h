/*
 * deque.h - a work-stealing deque (Chase and Lev, SPAA 2005) with the C11
 * memory orders of Le, Pop, Cohen and Zappa Nardelli, "Correct and
 * Efficient Work-Stealing for Weak Memory Models" (PPoPP 2013), Figure 1.
 *
 * Design
 *  - One owner thread pushes and takes at the bottom (LIFO: the newest task
 *    first, warm in its cache); any thread steals at the top (FIFO: the
 *    oldest task, usually the biggest piece of a recursive split).
 *  - Fixed capacity, no resize: push fails when full and the caller puts the
 *    item elsewhere (the pool's shared queue). A growing array needs safe
 *    reclamation of the old one, which a full deque does not justify.
 *  - top and bottom are signed 64-bit: take() on an empty deque computes
 *    bottom - 1 below top, which an unsigned index would wrap.
 *
 * Invariants
 *  - top only grows, by a successful CAS (steal, or take of the last item);
 *    bottom is written by the owner only.
 *  - Items live at indexes [top, bottom); an item is returned by exactly one
 *    of take() and steal(): the CAS on top decides between a thief and the
 *    owner for the last item, and between thieves for any item.
 *  - The buffer slot of an index is written only by push() at bottom, before
 *    the release fence that publishes the new bottom; a thief reads it after
 *    its acquire load of bottom and before its CAS on top, so a slot that
 *    push() overwrites (bottom - top == capacity is refused) is never one a
 *    thief can still win.
 *  - Memory orders (paper's numbering kept in comments): the seq_cst fence in
 *    take() between the store of bottom and the load of top pairs with the
 *    seq_cst fence in steal() between the load of top and the load of
 *    bottom, so owner and thief cannot both miss each other's update of the
 *    last item; the CASes on top are seq_cst for the same reason.
 *  - Payload hand-off: the release fence in push() pairs with the acquire
 *    load of bottom in steal().
 *  - ThreadSanitizer does not model fences: its builds (EXE_TSAN) move each
 *    fence's order onto the accesses next to it (the store of bottom in
 *    push() release; the store of bottom and load of top in take() and both
 *    loads in steal() seq_cst), which is at least as strong, so TSan checks
 *    the same hand-offs.
 */
#ifndef EXE_DEQUE_H
#define EXE_DEQUE_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define EXE__DEQUE_CAP 4096 /* a power of two */

#ifdef EXE_TSAN
#define EXE__DQ_FENCE(mo) ((void)0)
#define EXE__DQ_PUB memory_order_release   /* push: bottom */
#define EXE__DQ_SC memory_order_seq_cst    /* take: bottom, top; steal: top, bottom */
#define EXE__DQ_SC_ACQ memory_order_seq_cst
#else
#define EXE__DQ_FENCE(mo) atomic_thread_fence(mo)
#define EXE__DQ_PUB memory_order_relaxed
#define EXE__DQ_SC memory_order_relaxed
#define EXE__DQ_SC_ACQ memory_order_acquire
#endif

struct exe__deque {
	alignas(64) _Atomic int64_t top;     /* thieves' end */
	alignas(64) _Atomic int64_t bottom;  /* owner's end */
	_Atomic(void *) buf[EXE__DEQUE_CAP]; /* index & (CAP - 1) */
};

/* What steal() reports besides an item. */
#define EXE__DEQUE_EMPTY NULL
#define EXE__DEQUE_ABORT ((void *)1) /* lost a race: retry or move on */

static inline void exe__deque_init(struct exe__deque *q)
{
	atomic_init(&q->top, 0);
	atomic_init(&q->bottom, 0);
}

/* Owner only. False when full (nothing pushed). */
static inline bool exe__deque_push(struct exe__deque *q, void *x)
{
	int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
	/* acquire: pairs with the thieves' CAS on top, so their reads of the
	 * slots they took happen before we reuse them. */
	int64_t t = atomic_load_explicit(&q->top, memory_order_acquire);

	if (b - t >= EXE__DEQUE_CAP)
		return false;
	atomic_store_explicit(&q->buf[b & (EXE__DEQUE_CAP - 1)], x, memory_order_relaxed);
	/* release: the slot (and the item's contents) before the new bottom;
	 * pairs with the acquire load of bottom in steal(). */
	EXE__DQ_FENCE(memory_order_release);
	atomic_store_explicit(&q->bottom, b + 1, EXE__DQ_PUB);
	return true;
}

/* Owner only: the newest item, or NULL when empty. */
static inline void *exe__deque_take(struct exe__deque *q)
{
	int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed) - 1;
	int64_t t;
	void *x;

	atomic_store_explicit(&q->bottom, b, EXE__DQ_SC);
	/* seq_cst: pairs with the fence in steal() (see Invariants). */
	EXE__DQ_FENCE(memory_order_seq_cst);
	t = atomic_load_explicit(&q->top, EXE__DQ_SC);
	if (t > b) {
		/* Empty: restore bottom. */
		atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
		return NULL;
	}
	x = atomic_load_explicit(&q->buf[b & (EXE__DEQUE_CAP - 1)], memory_order_relaxed);
	if (t == b) {
		/* The last item: race the thieves for it on top. */
		if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1, memory_order_seq_cst,
		                                             memory_order_relaxed))
			x = NULL;
		atomic_store_explicit(&q->bottom, b + 1, memory_order_relaxed);
	}
	return x;
}

/* Any thread: the oldest item, EXE__DEQUE_EMPTY or EXE__DEQUE_ABORT. */
static inline void *exe__deque_steal(struct exe__deque *q)
{
	/* acquire: pairs with the CASes of other thieves and the owner. */
	int64_t t = atomic_load_explicit(&q->top, EXE__DQ_SC_ACQ);
	int64_t b;
	void *x;

	/* seq_cst: pairs with the fence in take(). */
	EXE__DQ_FENCE(memory_order_seq_cst);
	/* acquire: pairs with the release fence in push(). */
	b = atomic_load_explicit(&q->bottom, EXE__DQ_SC_ACQ);
	if (t >= b)
		return EXE__DEQUE_EMPTY;
	x = atomic_load_explicit(&q->buf[t & (EXE__DEQUE_CAP - 1)], memory_order_relaxed);
	if (!atomic_compare_exchange_strong_explicit(&q->top, &t, t + 1, memory_order_seq_cst,
	                                             memory_order_relaxed))
		return EXE__DEQUE_ABORT;
	return x;
}

/* Owner only: whether @x is among the @depth newest items, i.e. whether
 * take() would return it within @depth calls unless thieves get there
 * first. Only the owner writes slots, so the ones at [top, bottom) are
 * stable for it; top is a hint here (relaxed: a stale, lower top makes us
 * look at slots already stolen, which at worst sends the caller to take()
 * until the deque is empty - take() decides every item, not this scan). */
static inline bool exe__deque_near_bottom(struct exe__deque *q, void *x, int depth)
{
	int64_t b = atomic_load_explicit(&q->bottom, memory_order_relaxed);
	int64_t t = atomic_load_explicit(&q->top, memory_order_relaxed);

	for (int64_t i = b - 1; i >= t && i >= b - depth; i--)
		if (atomic_load_explicit(&q->buf[i & (EXE__DEQUE_CAP - 1)], memory_order_relaxed) == x)
			return true;
	return false;
}

/* Any thread, a hint: whether the deque looked non-empty. */
static inline bool exe__deque_nonempty(struct exe__deque *q)
{
	return atomic_load_explicit(&q->bottom, memory_order_relaxed) >
	       atomic_load_explicit(&q->top, memory_order_relaxed);
}

#endif
