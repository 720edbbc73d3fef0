/*
 * mpmc_ring.h - a bounded multi-producer multi-consumer ring of pointers
 * with a sequence number per cell (D. Vyukov's bounded MPMC queue), the
 * thread pool's injection queue.
 *
 * Design
 *  - Why not ck_ring's MPMC enqueue: it reserves a slot by CAS on p_head,
 *    then waits until every earlier reservation is committed (p_tail) before
 *    it commits its own, so a producer preempted between the two stalls
 *    every other producer for its whole time slice. And every enqueue and
 *    dequeue touches the shared head and tail lines, which the other side
 *    writes: a cache-line transfer each way per item. Here each cell carries
 *    its own sequence number: a producer reserves a position (CAS on
 *    enq_pos, a line only producers write), writes the cell and publishes it
 *    by its sequence; a consumer reserves a position (CAS on deq_pos, a line
 *    only consumers write) whose cell is published. Producers never wait for
 *    each other, consumers never for each other; the two sides share only
 *    the cells, which the item has to travel through anyway.
 *  - A reserved but not yet published cell reads as "not yet" to consumers
 *    (the producer finishes it within a few stores unless preempted);
 *    exe__ring_pending() counts it, so an idle worker does not sleep while
 *    it is outstanding.
 *  - Cells start zeroed, so a large ring costs memory only as it is used
 *    (calloc'd pages stay unmapped until touched): a cell's sequence is
 *    stored relative to its index, seq - index, which is 0 for a free cell
 *    of lap 0.
 *
 * Invariants
 *  - Cell i (i = pos & mask) holds, relative to i: lap * size when free for
 *    the producer of pos = lap * size + i, lap * size + 1 when it holds that
 *    producer's item, and (lap + 1) * size once its consumer took it.
 *  - enq_pos and deq_pos only grow, each by a successful CAS; every reserved
 *    position is published exactly once and taken exactly once.
 *  - The reservation CASes are seq_cst: a producer's later loads (the
 *    pool's shutdown flag, its sleepers and spinners) and a consumer's
 *    seq_cst load of enq_pos after its own seq_cst store or RMW form the
 *    Dekker pairs the pool relies on (thread_pool.c).
 *  - Payload hand-off: the release store of a cell's sequence after writing
 *    its item pairs with the acquire load of the sequence by its consumer;
 *    the consumer's release store of the next lap's sequence pairs with the
 *    next producer's acquire load, so a cell is reused only after its item
 *    was read.
 */
#ifndef EXE_MPMC_RING_H
#define EXE_MPMC_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <ck_pr.h> /* ck_pr_stall() */

struct exe__ring_cell {
	_Atomic uint64_t seq; /* relative to the cell's index, see above */
	void *_Atomic item;
};

struct exe__ring {
	struct exe__ring_cell *cells; /* zeroed, size = mask + 1 (a power of two) */
	uint64_t mask;
	/* Producers only (reservation). */
	alignas(64) _Atomic uint64_t enq_pos;
	/* Consumers only (reservation). */
	alignas(64) _Atomic uint64_t deq_pos;
};

/* Reserve the next position: true with *@pos, false when the ring is full. */
static inline bool exe__ring_reserve(struct exe__ring *r, uint64_t *pos)
{
	uint64_t p = atomic_load_explicit(&r->enq_pos, memory_order_relaxed);

	for (;;) {
		struct exe__ring_cell *c = &r->cells[p & r->mask];
		/* acquire: pairs with the release store of the consumer that
		 * freed the cell (its item was read before we overwrite it). */
		uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
		int64_t dif = (int64_t)(seq - (p & ~r->mask));

		if (dif == 0) {
			/* seq_cst: see the invariants (Dekker pairs). */
			if (atomic_compare_exchange_weak_explicit(&r->enq_pos, &p, p + 1, memory_order_seq_cst,
			                                          memory_order_relaxed)) {
				*pos = p;
				return true;
			}
		} else if (dif < 0) {
			return false; /* the cell still holds an item a lap behind: full */
		} else {
			p = atomic_load_explicit(&r->enq_pos, memory_order_relaxed);
		}
	}
}

/* Publish @item at the position reserve() gave. */
static inline void exe__ring_publish(struct exe__ring *r, uint64_t pos, void *item)
{
	struct exe__ring_cell *c = &r->cells[pos & r->mask];

	atomic_store_explicit(&c->item, item, memory_order_relaxed);
	/* release: pairs with the consumer's acquire load of seq. */
	atomic_store_explicit(&c->seq, (pos & ~r->mask) + 1, memory_order_release);
}

/* The oldest published item, or NULL when none is (empty, or the oldest
 * reserved cell not yet published). */
static inline void *exe__ring_take(struct exe__ring *r)
{
	uint64_t p = atomic_load_explicit(&r->deq_pos, memory_order_relaxed);

	for (;;) {
		struct exe__ring_cell *c = &r->cells[p & r->mask];
		/* acquire: pairs with the producer's release in publish(). */
		uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
		int64_t dif = (int64_t)(seq - ((p & ~r->mask) + 1));

		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(&r->deq_pos, &p, p + 1, memory_order_seq_cst,
			                                          memory_order_relaxed)) {
				void *item = atomic_load_explicit(&c->item, memory_order_relaxed);

				/* release: pairs with the next lap's producer's
				 * acquire in reserve(): the item is read first. */
				atomic_store_explicit(&c->seq, (p & ~r->mask) + r->mask + 1, memory_order_release);
				return item;
			}
		} else if (dif < 0) {
			return NULL; /* not yet published (or empty) */
		} else {
			p = atomic_load_explicit(&r->deq_pos, memory_order_relaxed);
		}
	}
}

/* Take the oldest item only if it is @item: true when taken. */
static inline bool exe__ring_take_if(struct exe__ring *r, const void *item)
{
	uint64_t p = atomic_load_explicit(&r->deq_pos, memory_order_relaxed);
	struct exe__ring_cell *c = &r->cells[p & r->mask];
	uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);

	/* The item read after the acquire of a published seq is that lap's;
	 * the CAS fails if another consumer took the cell meanwhile. */
	if (seq != (p & ~r->mask) + 1 || atomic_load_explicit(&c->item, memory_order_relaxed) != item)
		return false;
	if (!atomic_compare_exchange_strong_explicit(&r->deq_pos, &p, p + 1, memory_order_seq_cst,
	                                             memory_order_relaxed))
		return false;
	atomic_store_explicit(&c->seq, (p & ~r->mask) + r->mask + 1, memory_order_release);
	return true;
}

/* Positions reserved and not yet taken (published or not). seq_cst: the
 * second half of the Dekker pairs above. */
static inline uint64_t exe__ring_pending(struct exe__ring *r)
{
	uint64_t d = atomic_load_explicit(&r->deq_pos, memory_order_seq_cst);
	uint64_t e = atomic_load_explicit(&r->enq_pos, memory_order_seq_cst);

	return e > d ? e - d : 0;
}

/* Reservations ever made. */
static inline uint64_t exe__ring_reserved(struct exe__ring *r)
{
	return atomic_load_explicit(&r->enq_pos, memory_order_seq_cst);
}

#endif
