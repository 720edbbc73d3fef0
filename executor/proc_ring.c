/*
 * proc_ring.c - how tasks reach the process pool's workers and results come
 * back, without a system call per task: a ring of task slots and one cell
 * per worker, in memory shared with every worker.
 *
 * Design
 *  - The parent (a submitter, a canceller or the collector, always under
 *    the pool lock) places queued tasks into the ring in queue order: one
 *    slot per task, published PENDING at the next ring position. An idle
 *    worker takes the oldest PENDING position by one compare-and-swap of its
 *    slot's state (PENDING -> CLAIMED by its cell). No task is handed to a
 *    busy worker, so none waits behind a long one while a worker is free.
 *  - A cancel withdraws a placed task by the opposite compare-and-swap
 *    (PENDING -> FREE): exactly one of the two wins, so a task that was
 *    never taken is always cancellable and one that was taken is RUNNING.
 *  - A worker copies what it needs out of its slot, then reports the claim
 *    in its cell (slot, id and start time), runs the task and posts the
 *    result into one of its cell's EXE__RESULTS entries. The collector
 *    attaches the claimed task (the future becomes RUNNING, the slot is
 *    freed and refilled), reads results, and acknowledges them, which
 *    returns the entries.
 *  - Doorbells are futex words with an adaptive spin before sleeping: a
 *    worker sleeps on the ring's bell and is woken only when it sleeps
 *    (sleepers); a worker whose result entries are all unread sleeps on its
 *    cell's acked word. The collector sleeps in epoll; before it does, it
 *    raises collector_asleep, and the first worker to post or claim after
 *    that sends a WAKE frame on its channel: a start is seen at once
 *    (RUNNING, its deadline), even while the pool is quiet.
 *  - A crash is attributed from the cell: the claim names the task the
 *    worker had taken. A slot still CLAIMED by a dead worker's cell that its
 *    claim word does not name was taken but never reported, so never run:
 *    the task goes back in line.
 *
 * Invariants
 *  - Slot states: FREE -> PENDING (place) and PENDING -> FREE (withdraw),
 *    CLAIMED -> FREE (attach, reclaim) are the parent's, under the pool lock;
 *    PENDING -> CLAIMED is the worker's. slot_task[] mirrors the parent's
 *    view: NULL exactly when the parent may place into the slot.
 *  - Positions are published in order; a slot is reused for position
 *    p + EXE__RING_SLOTS only when free, so a worker that finds a slot at
 *    its hint holding a later position (or not PENDING) knows that position
 *    was taken or withdrawn and moves on.
 *  - Results of one worker are posted in the order it ran the tasks, and it
 *    claims a new task only after posting the previous result, so at most
 *    one claimed task of a worker lacks a posted result: the one its claim
 *    word names.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include <ck_pr.h>

#include "future_internal.h"
#include "ipc_internal.h" /* the shared futex calls */
#include "proc_internal.h"

/* ---- parent side ---- */

static bool place_locked(struct exe__proc_pool *pp, struct exe__ptask *t)
{
	struct exe__ring *r = pp->ring;
	unsigned i = (unsigned)(pp->put % EXE__RING_SLOTS);
	struct exe__slot *s = &r->slots[i];
	int hint;

	if (pp->slot_task[i])
		return false; /* the slot for the next position is still in use */
	/* Recent large results were this big: offer a block for this one. */
	hint = atomic_load_explicit(&pp->out_hint, memory_order_relaxed);
	if (t->kind == EXE__F_TASK_BYTES && t->out_cls < 0 && hint >= 0)
		t->out_cls = exe__arena_alloc(pp->arena, exe__arena_class_size(hint), &t->out_off);
	s->kind = t->kind;
	s->flags = 0;
	s->id = t->id;
	s->fn = t->fn;
	s->arg = t->arg;
	s->len = t->in_len;
	s->out = s->out_cap = 0;
	if (t->memfd >= 0) {
		s->flags = EXE__FF_MEMFD;
	} else if (t->in_cls >= 0) {
		s->flags = EXE__FF_ARENA;
		s->arg = t->in_off;
	} else if (t->in_len) {
		memcpy(s->payload, t->in, t->in_len); /* <= EXE__SLOT_INLINE, checked at submit */
	}
	if (t->out_cls >= 0) {
		s->out = t->out_off;
		s->out_cap = exe__arena_class_size(t->out_cls);
	}
	atomic_store_explicit(&s->pos, pp->put, memory_order_relaxed);
	/* release: pairs with the taker's compare-and-swap; the fields above
	 * are its to read once it wins. */
	atomic_store_explicit(&s->state, EXE__SLOT_PENDING, memory_order_release);
	pp->slot_task[i] = t;
	t->slot = (int)i;
	pp->put++;
	/* release: pairs with the worker's load of put before it looks at
	 * the slot. */
	atomic_store_explicit(&r->put, pp->put, memory_order_release);
	return true;
}

static struct exe__ptask *next_unplaced(struct exe__proc_pool *pp, struct exe__ptask *t)
{
	while (t != &pp->qhead && t->slot != -1)
		t = t->next;
	return t;
}

void exe__ring_fill_locked(struct exe__proc_pool *pp)
{
	struct exe__ring *r = pp->ring;
	unsigned placed = 0;

	if (exe__pool_is_broken(&pp->base))
		return; /* the collector fails what is queued */
	pp->unplaced = next_unplaced(pp, pp->unplaced);
	while (pp->unplaced != &pp->qhead && place_locked(pp, pp->unplaced)) {
		pp->unplaced = next_unplaced(pp, pp->unplaced->next);
		placed++;
	}
	if (!placed)
		return;
	/* seq_cst, both: a worker raises sleepers, then reads put; we move
	 * bell, then read sleepers (futex_wait rechecks bell). */
	atomic_fetch_add_explicit(&r->bell, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&r->sleepers, memory_order_seq_cst))
		exe__futex_wake_shared(&r->bell, (int)placed);
}

int exe__ring_revoke_locked(struct exe__proc_pool *pp, struct exe__ptask *t)
{
	uint32_t pending = EXE__SLOT_PENDING;
	struct exe__slot *s;

	if (t->slot < 0) {
		/* Not in the ring: make sure it is never placed. */
		t->slot = -2;
		return 0;
	}
	s = &pp->ring->slots[t->slot];
	if (atomic_compare_exchange_strong_explicit(&s->state, &pending, EXE__SLOT_FREE,
	                                            memory_order_acq_rel, memory_order_acquire)) {
		pp->slot_task[t->slot] = NULL;
		t->slot = -2;
		exe__ring_fill_locked(pp);
		return 0;
	}
	/* A worker took it: it has started. The collector attaches it later
	 * and finds it RUNNING already. */
	if (exe__future_claim(t->f))
		atomic_fetch_add(&pp->started, 1);
	return -EBUSY;
}

static void detach_locked(struct exe__proc_pool *pp, struct exe__ptask *t, unsigned slot);

struct exe__ptask *exe__ring_attach_locked(struct exe__proc_pool *pp, unsigned cell, uint64_t slot, uint64_t id)
{
	struct exe__ptask *t;

	if (slot >= EXE__RING_SLOTS || !(t = pp->slot_task[slot]) || EXE__CLAIM_ID(t->id) != EXE__CLAIM_ID(id) ||
	    atomic_load_explicit(&pp->ring->slots[slot].state, memory_order_acquire) != EXE__SLOT_CLAIMED(cell))
		return NULL;
	/* The revoke hook may have claimed it already (a cancel that lost
	 * to the worker); otherwise it is PENDING and this claim wins, since
	 * no cancel can withdraw a CLAIMED slot. */
	detach_locked(pp, t, (unsigned)slot);
	exe__ring_fill_locked(pp);
	return t;
}

/* Take @t off the queue and free its slot; its future becomes RUNNING. */
static void detach_locked(struct exe__proc_pool *pp, struct exe__ptask *t, unsigned slot)
{
	if (exe__future_claim(t->f))
		atomic_fetch_add(&pp->started, 1);
	pp->slot_task[slot] = NULL;
	t->slot = -1;
	if (pp->unplaced == t)
		pp->unplaced = t->next;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->queued = false;
	pp->queued--;
	if (pp->space_waiters)
		pthread_cond_broadcast(&pp->cond);
	/* release: the worker copied the slot before reporting the claim we
	 * read (acquire); the next place() writes it. */
	atomic_store_explicit(&pp->ring->slots[slot].state, EXE__SLOT_FREE, memory_order_release);
}

unsigned exe__ring_reclaim_locked(struct exe__proc_pool *pp, unsigned cell, struct exe__ptask **taken)
{
	unsigned i, n = 0;

	for (i = 0; i < EXE__RING_SLOTS; i++) {
		struct exe__ptask *t = pp->slot_task[i];

		if (!t || atomic_load_explicit(&pp->ring->slots[i].state, memory_order_acquire) !=
		              EXE__SLOT_CLAIMED(cell))
			continue;
		n++;
		if (taken) {
			detach_locked(pp, t, i);
			t->next = *taken;
			*taken = t;
			continue;
		}
		/* Back in line, first of the tasks not yet placed. */
		pp->slot_task[i] = NULL;
		atomic_store_explicit(&pp->ring->slots[i].state, EXE__SLOT_FREE, memory_order_release);
		t->slot = -1;
		if (pp->unplaced != t) {
			t->prev->next = t->next;
			t->next->prev = t->prev;
			t->next = pp->unplaced;
			t->prev = pp->unplaced->prev;
			t->prev->next = t;
			t->next->prev = t;
			pp->unplaced = t;
		}
	}
	if (n)
		exe__ring_fill_locked(pp);
	return n;
}

void exe__ring_stop(struct exe__proc_pool *pp, unsigned cell)
{
	atomic_store_explicit(&pp->cells[cell].stop, 1, memory_order_seq_cst);
	atomic_fetch_add_explicit(&pp->ring->bell, 1, memory_order_seq_cst);
	exe__futex_wake_shared(&pp->ring->bell, EXE_FUTEX_WAKE_ALL_SHARED);
}

/* ---- worker side ---- */

/* Claim the oldest PENDING position: its slot, or -1 when there is none. */
static int try_take(struct exe__ring *r, unsigned cell)
{
	for (;;) {
		/* acquire: the slot's pos and state were written before put. */
		uint64_t h = atomic_load_explicit(&r->take, memory_order_acquire);
		struct exe__slot *s;
		uint32_t st;

		if (h >= atomic_load_explicit(&r->put, memory_order_acquire))
			return -1;
		s = &r->slots[h % EXE__RING_SLOTS];
		st = atomic_load_explicit(&s->state, memory_order_acquire);
		if (st == EXE__SLOT_PENDING && atomic_load_explicit(&s->pos, memory_order_relaxed) == h) {
			/* acquire: pairs with place()'s release of PENDING. */
			if (atomic_compare_exchange_strong_explicit(&s->state, &st, EXE__SLOT_CLAIMED(cell),
			                                            memory_order_acquire, memory_order_relaxed)) {
				int slot = (int)(h % EXE__RING_SLOTS);

				/* Whoever moves the hint first: a failed exchange
				 * overwrites h, which is why slot is taken above. */
				atomic_compare_exchange_strong_explicit(&r->take, &h, h + 1, memory_order_release,
				                                        memory_order_relaxed);
				return slot;
			}
			continue;
		}
		if (atomic_load_explicit(&s->pos, memory_order_relaxed) < h)
			continue; /* position h is still being written */
		/* Position h was taken or withdrawn: look at the next. */
		atomic_compare_exchange_strong_explicit(&r->take, &h, h + 1, memory_order_release,
		                                        memory_order_relaxed);
	}
}

static bool ring_ready(struct exe__ring *r)
{
	return atomic_load_explicit(&r->take, memory_order_seq_cst) <
	       atomic_load_explicit(&r->put, memory_order_seq_cst);
}

int exe__ring_take(struct exe__ring *r, struct exe__cell *c, unsigned cell, int64_t *spin_ns)
{
	int64_t t0 = exe_now_ns(), until = t0 + *spin_ns;
	unsigned k = 0;
	int i;

	for (;;) {
		uint32_t seen;

		if (atomic_load_explicit(&c->stop, memory_order_acquire))
			return -1;
		i = try_take(r, cell);
		if (i >= 0)
			break;
		if (exe_now_ns() < until) {
			/* Give a process sharing this CPU its turn now and then:
			 * with more processes than CPUs, the one we wait for may
			 * be queued behind us. */
			if (++k % 16 == 0)
				sched_yield();
			else
				ck_pr_stall();
			continue;
		}
		seen = atomic_load_explicit(&r->bell, memory_order_seq_cst);
		atomic_fetch_add_explicit(&r->sleepers, 1, memory_order_seq_cst);
		if (!ring_ready(r) && !atomic_load_explicit(&c->stop, memory_order_seq_cst))
			exe__futex_wait_shared(&r->bell, seen, -1);
		atomic_fetch_sub_explicit(&r->sleepers, 1, memory_order_relaxed);
	}
	*spin_ns = exe__spin_adapt(*spin_ns, exe_now_ns() - t0);
	return i;
}

void exe__cell_wait_acked(struct exe__cell *c, uint32_t keep)
{
	/* posted is ours: relaxed. */
	uint32_t posted = atomic_load_explicit(&c->posted, memory_order_relaxed);
	int64_t until = exe_now_ns() + EXE__SPIN_MAX_NS;
	unsigned k = 0;

	for (;;) {
		uint32_t acked = atomic_load_explicit(&c->acked, memory_order_acquire);

		if (posted - acked <= keep)
			return;
		if (exe_now_ns() < until) {
			if (++k % 16 == 0)
				sched_yield();
			else
				ck_pr_stall();
			continue;
		}
		/* seq_cst, both: the collector stores acked, then reads
		 * ack_waiting. */
		atomic_store_explicit(&c->ack_waiting, 1, memory_order_seq_cst);
		if (atomic_load_explicit(&c->acked, memory_order_seq_cst) == acked)
			exe__futex_wait_shared(&c->acked, acked, -1);
		atomic_store_explicit(&c->ack_waiting, 0, memory_order_relaxed);
	}
}

void exe__cell_post(struct exe__cell *c)
{
	uint32_t posted = atomic_load_explicit(&c->posted, memory_order_relaxed);

	/* release: the entry's fields (and a chunk's vals) before the count
	 * the collector reads with acquire. */
	atomic_store_explicit(&c->posted, posted + 1, memory_order_release);
}

bool exe__ring_collector_wanted(struct exe__ring *r)
{
	/* seq_cst: our post or claim before the read of collector_asleep;
	 * the collector raises it, then reads the cells. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&r->collector_asleep, memory_order_relaxed))
		return false;
	return atomic_exchange_explicit(&r->collector_asleep, 0, memory_order_seq_cst) == 1;
}
