/*
 * tp_queue.c - the thread pool's queues and parking: the shared queue
 * (a ck_ring plus an overflow list, for submitters outside the pool), the
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
 * is empty whenever it asks (it takes from it first). */
bool exe__tp_queue_nonempty(struct thread_pool *tp)
{
	return ck_ring_size(&tp->ring) > 0 || atomic_load_explicit(&tp->of_len, memory_order_relaxed) > 0 ||
	       deques_nonempty(tp);
}

/*
 * Whether a submit must wake a worker, decided under submit_lock right after
 * the entry went in: not while a worker spins (it re-checks the queue under
 * this lock when it stops spinning), and only when one sleeps (it checks the
 * queue under this lock before sleeping). The lock orders those checks
 * against our insert, so the submit path needs no memory fence (an mfence
 * was a quarter of a submit's time).
 */
bool exe__tp_wake_needed(struct thread_pool *tp)
{
	return atomic_load_explicit(&tp->spinners, memory_order_relaxed) == 0 &&
	       atomic_load_explicit(&tp->sleepers, memory_order_relaxed) > 0;
}

void exe__tp_wake_one(struct thread_pool *tp)
{
	atomic_fetch_add_explicit(&tp->park_seq, 1, memory_order_release);
	exe__futex_wake(&tp->park_seq, 1);
}

/*
 * Queue @f, unless the pool is shut down (-ESHUTDOWN). The shutdown check and
 * the count of accepted tasks happen under submit_lock, which shutdown takes
 * to set its flag: a worker that sees the flag also sees every task accepted
 * before it, so it cannot exit with one still to come. *@wake: a sleeping
 * worker must be woken for the entry.
 */
int exe__tp_enqueue(struct thread_pool *tp, struct exe_future *f, bool *wake)
{
	/* The ring hand-off is ck code TSan cannot see: publish the future
	 * explicitly (paired in exe__tp_dequeue()). */
	exe__tsan_release(f);
	pthread_mutex_lock(&tp->submit_lock);
	if (atomic_load_explicit(&tp->shutdown, memory_order_relaxed)) {
		pthread_mutex_unlock(&tp->submit_lock);
		return -ESHUTDOWN;
	}
	/* Written under the lock only: a plain increment, no locked op. */
	atomic_store_explicit(&tp->submitted, atomic_load_explicit(&tp->submitted, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
	if (tp->of_head || !ck_ring_enqueue_spmc(&tp->ring, tp->slots, f)) {
		f->next = NULL;
		if (tp->of_tail)
			tp->of_tail->next = f;
		else
			tp->of_head = f;
		tp->of_tail = f;
		atomic_fetch_add_explicit(&tp->of_len, 1, memory_order_relaxed);
	}
	*wake = exe__tp_wake_needed(tp);
	pthread_mutex_unlock(&tp->submit_lock);
	return 0;
}

/*
 * Queue the chain @head (@n futures linked by next) under one lock hold, as
 * exe__tp_enqueue() does for one. Return 0 with *@nwake: how many sleeping workers
 * the batch can use (those spinning take work without a wake), or
 * -ESHUTDOWN with nothing queued.
 */
int exe__tp_enqueue_many(struct thread_pool *tp, struct exe_future *head, size_t n, unsigned *nwake)
{
	struct exe_future *f, *next;
	uint32_t sleepers, spinners;

	pthread_mutex_lock(&tp->submit_lock);
	if (atomic_load_explicit(&tp->shutdown, memory_order_relaxed)) {
		pthread_mutex_unlock(&tp->submit_lock);
		return -ESHUTDOWN;
	}
	atomic_store_explicit(&tp->submitted, atomic_load_explicit(&tp->submitted, memory_order_relaxed) + n,
	                      memory_order_relaxed);
	for (f = head; f; f = next) {
		/* Read next first: once in the ring, f may run and be freed. */
		next = f->next;
		exe__tsan_release(f);
		if (tp->of_head || !ck_ring_enqueue_spmc(&tp->ring, tp->slots, f)) {
			f->next = NULL;
			if (tp->of_tail)
				tp->of_tail->next = f;
			else
				tp->of_head = f;
			tp->of_tail = f;
			atomic_fetch_add_explicit(&tp->of_len, 1, memory_order_relaxed);
		}
	}
	sleepers = atomic_load_explicit(&tp->sleepers, memory_order_relaxed);
	spinners = atomic_load_explicit(&tp->spinners, memory_order_relaxed);
	*nwake = n > spinners ? (unsigned)(n - spinners < sleepers ? n - spinners : sleepers) : 0;
	pthread_mutex_unlock(&tp->submit_lock);
	return 0;
}

/* Take the overflow list's head and move the next batch into the ring. */
static struct exe_future *refill(struct thread_pool *tp)
{
	struct exe_future *first, *f;
	unsigned moved = 0;

	pthread_mutex_lock(&tp->submit_lock);
	first = tp->of_head;
	if (first) {
		tp->of_head = first->next;
		moved = 1;
		/* Read next before publishing f: once in the ring, another
		 * worker may run and free it. */
		while ((f = tp->of_head) && moved < tp->ring_size / 2) {
			struct exe_future *next = f->next;

			exe__tsan_release(f);
			if (!ck_ring_enqueue_spmc(&tp->ring, tp->slots, f))
				break;
			tp->of_head = next;
			moved++;
		}
		if (!tp->of_head)
			tp->of_tail = NULL;
		atomic_fetch_sub_explicit(&tp->of_len, moved, memory_order_relaxed);
	}
	pthread_mutex_unlock(&tp->submit_lock);
	return first;
}

struct exe_future *exe__tp_dequeue(struct thread_pool *tp)
{
	struct exe_future *f = NULL;

	if (!ck_ring_dequeue_spmc(&tp->ring, tp->slots, &f)) {
		if (atomic_load_explicit(&tp->of_len, memory_order_relaxed) == 0)
			return NULL;
		f = refill(tp);
		if (!f)
			return NULL;
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
 * Idle transitions take submit_lock, like exe__tp_enqueue() and shutdown: what a
 * worker sees there (queue empty, flag set) cannot change behind its back,
 * since no entry can be added once the flag is set under the same lock.
 */
static enum idle idle_state(struct thread_pool *tp)
{
	if (exe__tp_queue_nonempty(tp))
		return IDLE_WORK;
	return atomic_load_explicit(&tp->shutdown, memory_order_relaxed) ? IDLE_EXIT : IDLE_PARK;
}

/* Sleep until woken for work or shutdown. */
void exe__tp_park(struct thread_pool *tp)
{
	enum idle state;
	uint32_t seq;

	pthread_mutex_lock(&tp->submit_lock);
	seq = atomic_load_explicit(&tp->park_seq, memory_order_acquire);
	atomic_fetch_add_explicit(&tp->sleepers, 1, memory_order_relaxed);
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
	atomic_fetch_sub_explicit(&tp->spinners, 1, memory_order_relaxed);
	state = idle_state(tp);
	pthread_mutex_unlock(&tp->submit_lock);
	return state;
}
