/*
 * tp_queue.c - the thread pool's queues and parking: the shared queue
 * (a lock-free ring, mpmc_ring.h, plus an overflow list under a lock, for
 * submitters outside the pool), the
 * workers' deques seen from outside (stealing), and the event count idle
 * workers sleep on. Design and invariants: thread_pool.c.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ck_pr.h> /* ck_pr_stall() */

#include "alloc.h"
#include "errors.h"
#include "futex.h"
#include "thread_pool_internal.h"
#include "sanitizer.h"

/* ---- the queue ---- */

static bool deques_nonempty(struct thread_pool *tp)
{
	for (unsigned i = 0; i < tp->nworkers; i++)
		if (exe__deque_nonempty(&tp->workers[i].dq))
			return true;
	return false;
}

/* Work anywhere: the shared queue or a worker's deque. A worker's own deque
 * is empty whenever it asks (it takes from it first). A reserved ring
 * position counts before its entry is published: its producer is about to
 * publish it, and it must not be slept through. */
bool exe__tp_queue_nonempty(struct thread_pool *tp)
{
	return exe__ring_pending(&tp->ring) > 0 || atomic_load_explicit(&tp->of_len, memory_order_relaxed) > 0 ||
	       deques_nonempty(tp);
}

/*
 * Whether a submit must wake a worker, decided after its ring reservation
 * (a seq_cst CAS) or under submit_lock (overflow): not while a worker spins
 * (it looks at the queue again after leaving the spinners, exe__tp_stop_spinning()),
 * and only when one sleeps (it looks at the queue after counting itself a
 * sleeper, exe__tp_park()). Each side's RMW comes before its look at the
 * other (seq_cst, a Dekker pair): one of the two sees the other, so no wake
 * is lost and the submit path needs no fence of its own.
 */
bool exe__tp_wake_needed(struct thread_pool *tp)
{
	return atomic_load_explicit(&tp->spinners, memory_order_seq_cst) == 0 &&
	       atomic_load_explicit(&tp->sleepers, memory_order_seq_cst) > 0;
}

void exe__tp_wake_one(struct thread_pool *tp)
{
	atomic_fetch_add_explicit(&tp->park_seq, 1, memory_order_release);
	exe__futex_wake(&tp->park_seq, 1);
}

/* Tasks accepted through the shared queue: ring reservations, plus entries
 * that went to the overflow list, minus the overflow entries later moved
 * into the ring (reserved again) and the refused submits. Read in the
 * reverse order of the writes, so a concurrent change can only make the
 * figure too high, never too low (it decides when the pool may be freed). */
uint64_t exe__tp_injected_count(struct thread_pool *tp)
{
	uint64_t refused = atomic_load(&tp->refused);
	uint64_t moved = atomic_load(&tp->of_moved);
	uint64_t reserved = exe__ring_reserved(&tp->ring);
	uint64_t added = atomic_load(&tp->of_added);

	return reserved + added - moved - refused;
}

/* Append @f to the overflow list (under submit_lock). */
static void overflow_append(struct thread_pool *tp, struct exe_future *f)
{
	f->next = NULL;
	if (tp->of_tail)
		tp->of_tail->next = f;
	else
		tp->of_head = f;
	tp->of_tail = f;
	/* Written under the lock only: plain increments, no locked op. */
	atomic_store_explicit(&tp->of_added, atomic_load_explicit(&tp->of_added, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
	atomic_store_explicit(&tp->of_len, atomic_load_explicit(&tp->of_len, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}

/* Into the ring, or false when it is full. */
static bool ring_put(struct thread_pool *tp, struct exe_future *f)
{
	uint64_t pos;

	if (!exe__ring_reserve(&tp->ring, &pos))
		return false;
	/* TSan sees the ring's atomics; the explicit release keeps the
	 * hand-off visible to it whatever path took the entry. */
	exe__tsan_release(f);
	exe__ring_publish(&tp->ring, pos, f);
	return true;
}

/* The slow path: the ring is full or the overflow list holds entries (which
 * go first, so one submitter's tasks keep their order). */
static int enqueue_locked(struct thread_pool *tp, struct exe_future *f, bool *wake)
{
	pthread_mutex_lock(&tp->submit_lock);
	if (atomic_load_explicit(&tp->shutdown, memory_order_relaxed)) {
		pthread_mutex_unlock(&tp->submit_lock);
		return -ESHUTDOWN;
	}
	if (tp->of_head || !ring_put(tp, f)) {
		exe__tsan_release(f);
		overflow_append(tp, f);
	}
	*wake = exe__tp_wake_needed(tp);
	pthread_mutex_unlock(&tp->submit_lock);
	return 0;
}

/*
 * Queue @f (0), or refuse it after shutdown (-ESHUTDOWN: @f untouched, the
 * caller frees it, or -ECANCELED: @f became a dead entry of the queue, which
 * frees it; the submit failed with -ESHUTDOWN either way). *@wake: a
 * sleeping worker must be woken for the entry.
 *
 * Without a lock: a ring reservation (seq_cst CAS), then the shutdown flag
 * (seq_cst load). shutdown stores the flag (seq_cst) before its workers look
 * at the queue (flag first, then the ring's positions, seq_cst). So a
 * reservation the flag store came after is seen by every worker that saw
 * the flag, which then waits for its entry and runs it; a reservation after
 * the flag sees the flag here and is refused - but its position is taken,
 * so it is filled with a cancelled future that whoever takes it drops, and
 * counted in refused (after the publish: until then the pool counts the
 * entry as a task to wait for).
 */
int exe__tp_enqueue(struct thread_pool *tp, struct exe_future *f, bool *wake)
{
	uint64_t pos;

	if (atomic_load_explicit(&tp->of_len, memory_order_relaxed) ||
	    !exe__ring_reserve(&tp->ring, &pos))
		return enqueue_locked(tp, f, wake);
	if (atomic_load_explicit(&tp->shutdown, memory_order_seq_cst)) {
		/* Nobody else has seen @f: plain stores. Its callback never
		 * runs (the submit failed) and the caller's reference is
		 * not handed out. */
		f->done = NULL;
		atomic_store_explicit(&f->state, EXE_FUTURE_CANCELLED, memory_order_relaxed);
		atomic_store_explicit(&f->refs, 1, memory_order_relaxed);
		exe__tsan_release(f);
		exe__ring_publish(&tp->ring, pos, f);
		atomic_fetch_add_explicit(&tp->refused, 1, memory_order_seq_cst);
		return -ECANCELED;
	}
	exe__tsan_release(f);
	exe__ring_publish(&tp->ring, pos, f);
	/* After the publish, so a woken worker finds the entry; the
	 * reservation before is what orders these loads (see above). @f may
	 * already be running: not touched again. */
	*wake = exe__tp_wake_needed(tp);
	return 0;
}

/*
 * Queue the chain @head (@n futures linked by next) under one lock hold:
 * shutdown sets its flag under the same lock, so the batch goes in whole or
 * not at all. Return 0 with *@nwake: how many sleeping workers the batch can
 * use (those spinning take work without a wake), or -ESHUTDOWN with nothing
 * queued.
 */
/* How many entries of a batch go in before the sleepers are woken: the
 * workers start on them while the rest is queued. */
#define BATCH_WAKE_AFTER 64

static unsigned sleepers_to_wake(struct thread_pool *tp, size_t n)
{
	/* seq_cst, after the reservations: the Dekker pairs of
	 * exe__tp_wake_needed(). An overflow-only batch is ordered by the lock. */
	uint32_t sleepers = atomic_load_explicit(&tp->sleepers, memory_order_seq_cst);
	uint32_t spinners = atomic_load_explicit(&tp->spinners, memory_order_seq_cst);

	return n > spinners ? (unsigned)(n - spinners < sleepers ? n - spinners : sleepers) : 0;
}

int exe__tp_enqueue_many(struct thread_pool *tp, struct exe_future *head, size_t n, unsigned *nwake)
{
	struct exe_future *f, *next;
	unsigned woken = 0, k;
	size_t i = 0;

	pthread_mutex_lock(&tp->submit_lock);
	if (atomic_load_explicit(&tp->shutdown, memory_order_relaxed)) {
		pthread_mutex_unlock(&tp->submit_lock);
		return -ESHUTDOWN;
	}
	for (f = head; f; f = next) {
		/* Read next first: once in the ring, f may run and be freed. */
		next = f->next;
		if (tp->of_head || !ring_put(tp, f)) {
			exe__tsan_release(f);
			overflow_append(tp, f);
		}
		/* A long batch: wake the sleepers it can use now (they take
		 * from the ring without this lock) rather than after the
		 * last entry. */
		if (++i == BATCH_WAKE_AFTER && next && (k = sleepers_to_wake(tp, n)) > 0) {
			atomic_fetch_add_explicit(&tp->park_seq, 1, memory_order_release);
			exe__futex_wake(&tp->park_seq, (int)k);
			woken = k;
		}
	}
	k = sleepers_to_wake(tp, n);
	*nwake = k > woken ? k - woken : 0;
	pthread_mutex_unlock(&tp->submit_lock);
	return 0;
}

/* Take the overflow list's head and move the next entries into the ring,
 * up to half of it: a refill per few hundred entries made workers queue up
 * on this lock behind each other (measured: a 200 k batch ran 3x slower). */
static struct exe_future *refill(struct thread_pool *tp)
{
	struct exe_future *first, *f;
	uint64_t moved = 0;

	pthread_mutex_lock(&tp->submit_lock);
	first = tp->of_head;
	if (first) {
		tp->of_head = first->next;
		/* Read next before publishing f: once in the ring, another
		 * worker may run and free it. */
		while ((f = tp->of_head) && moved <= tp->ring.mask / 2) {
			struct exe_future *next = f->next;

			if (!ring_put(tp, f))
				break;
			tp->of_head = next;
			moved++;
		}
		if (!tp->of_head)
			tp->of_tail = NULL;
		/* After the reservations: exe__tp_injected_count() reads
		 * of_moved first. */
		atomic_store_explicit(&tp->of_moved, atomic_load_explicit(&tp->of_moved, memory_order_relaxed) + moved,
		                      memory_order_seq_cst);
		atomic_store_explicit(&tp->of_len, atomic_load_explicit(&tp->of_len, memory_order_relaxed) - moved - 1,
		                      memory_order_relaxed);
	}
	pthread_mutex_unlock(&tp->submit_lock);
	return first;
}

/* How long a consumer watches a reserved position for its entry before
 * giving the CPU away (its producer may have been preempted mid-publish). */
#define UNPUBLISHED_SPINS 256

struct exe_future *exe__tp_dequeue(struct thread_pool *tp)
{
	struct exe_future *f;
	unsigned spins = 0;

	while (!(f = exe__ring_take(&tp->ring))) {
		if (exe__ring_pending(&tp->ring) == 0) {
			if (atomic_load_explicit(&tp->of_len, memory_order_relaxed) == 0)
				return NULL;
			f = refill(tp);
			if (!f)
				return NULL;
			break;
		}
		/* A position is reserved but its entry not yet published. */
		if (++spins % UNPUBLISHED_SPINS)
			ck_pr_stall();
		else
			sched_yield();
	}
	exe__tsan_acquire(f);
	return f;
}

/* Steal the oldest task of another worker's deque, starting after @self
 * (-1: from the first) so thieves spread over victims. */
struct exe_future *exe__tp_steal_any(struct thread_pool *tp, int self)
{
	unsigned n = tp->nworkers;

	for (unsigned k = 1; k <= n; k++) {
		unsigned v = (unsigned)(self + (int)k) % n;
		void *x;

		if ((int)v == self)
			continue;
		/* ABORT: another thief or the owner won that item; the
		 * deque may hold more, so try it again. */
		while ((x = exe__deque_steal(&tp->workers[v].dq)) == EXE__DEQUE_ABORT)
			;
		if (x) {
			exe__tsan_acquire(x);
			return x;
		}
	}
	return NULL;
}

/* ---- parking ---- */

/* Wake every sleeper, after shutdown set its flag under submit_lock: a
 * worker that counted itself asleep under that lock is seen here; one that
 * comes later sees the flag and does not sleep. */
void exe__tp_wake_all(struct thread_pool *tp)
{
	if (atomic_load_explicit(&tp->sleepers, memory_order_relaxed) == 0)
		return;
	atomic_fetch_add_explicit(&tp->park_seq, 1, memory_order_release);
	exe__futex_wake(&tp->park_seq, EXE_FUTEX_WAKE_ALL);
}

/*
 * Idle transitions take submit_lock, like the overflow path and shutdown:
 * the overflow list cannot change behind the worker's back. The ring can:
 * the flag is read first (seq_cst), then the ring's positions, so every
 * reservation the flag came after is seen (exe__tp_enqueue()), and one made
 * later is refused by its submitter.
 */
static enum idle idle_state(struct thread_pool *tp)
{
	bool down = atomic_load_explicit(&tp->shutdown, memory_order_seq_cst);

	/* The caller just counted itself a spinner or sleeper (RMW); the
	 * fence orders that before the loads of the deques: pairs with the
	 * fence after a push with a spare task (push_local()). */
	EXE__TP_FENCE();
	if (exe__tp_queue_nonempty(tp))
		return IDLE_WORK;
	return down ? IDLE_EXIT : IDLE_PARK;
}

/* Sleep until woken for work or shutdown. */
void exe__tp_park(struct thread_pool *tp)
{
	enum idle state;
	uint32_t seq;

	pthread_mutex_lock(&tp->submit_lock);
	seq = atomic_load_explicit(&tp->park_seq, memory_order_acquire);
	/* seq_cst: a Dekker pair with a submitter's reservation and its load
	 * of sleepers (exe__tp_wake_needed()). */
	atomic_fetch_add_explicit(&tp->sleepers, 1, memory_order_seq_cst);
	state = idle_state(tp);
	pthread_mutex_unlock(&tp->submit_lock);
	if (state == IDLE_PARK)
		exe__futex_wait(&tp->park_seq, seq, -1);
	atomic_fetch_sub_explicit(&tp->sleepers, 1, memory_order_relaxed);
}

/* A worker stops spinning: work arrived, or exe__tp_park, or exit. A submitter that
 * saw it spinning woke nobody, so it must look once more here. */
enum idle exe__tp_stop_spinning(struct thread_pool *tp)
{
	enum idle state;

	pthread_mutex_lock(&tp->submit_lock);
	/* seq_cst: as for sleepers in exe__tp_park(). */
	atomic_fetch_sub_explicit(&tp->spinners, 1, memory_order_seq_cst);
	state = idle_state(tp);
	pthread_mutex_unlock(&tp->submit_lock);
	return state;
}
