/*
 * thread_pool.c - the thread-pool executor.
 *
 * Design
 *  - A submitted task is its future: fn/arg live in the future (96 bytes
 *    from the per-thread small-block cache, alloc.c: no malloc per task).
 *    A queue or deque holds one reference per entry.
 *  - A task submitted by a task running on a worker goes onto that worker's
 *    Chase-Lev deque (deque.h), without a lock: the worker takes its own
 *    newest task first (LIFO, the role tokio's LIFO slot plays: the task
 *    just created is warm in this cache), idle workers and waiting threads
 *    steal the oldest. A full deque spills to the shared queue.
 *  - Submitters outside the pool use the shared (injection) queue, a
 *    lock-free MPMC ring of future pointers with a sequence per cell
 *    (mpmc_ring.h): one CAS to reserve, one store to publish, no lock, and
 *    no producer ever waits for another (ck_ring's MPMC enqueue does: a
 *    preempted producer stalled the others for whole time slices, measured
 *    ~100 submits/s with 5 submitters on 2 cores under ASan; the mutex that
 *    replaced it cost ~65 instructions and two contended lines per task).
 *  - When the ring is full, entries go to an overflow list under
 *    submit_lock (the pool is unbounded by default). While the list is
 *    non-empty every producer appends to it, and a worker that finds the
 *    ring empty moves a batch from the list's head into the ring:
 *    submission order is kept. Batches (exe_pool_submit_many) go in under
 *    the lock, whole or not at all.
 *  - Shutdown races a lock-free submit through seq_cst order alone: the
 *    submitter reserves, then reads the flag; workers read the flag, then
 *    the ring's positions. A submit refused after its reservation fills its
 *    cell with a cancelled future, counted in refused (exe__tp_enqueue()).
 *  - A task starts by the CAS PENDING -> RUNNING (exe__future_claim). The
 *    winner runs it: a worker that dequeued it, or a thread waiting on it
 *    forever (help). A worker waiting on a child still near the bottom of its
 *    own deque takes it off the deque (LIFO) rather than claiming it by
 *    pointer, so fork-join leaves no entries behind. Cancel is the CAS
 *    PENDING -> CANCELLED. A queue entry whose future was claimed or
 *    cancelled elsewhere is dropped when dequeued.
 *  - Idle workers spin briefly, then park on an event count (park_seq +
 *    sleepers, futex). A submit issues a system call only when a worker
 *    sleeps: no system call per task while workers are busy. A batch
 *    (exe_pool_submit_many) takes the lock once and wakes the sleepers it
 *    can use with one call.
 *  - Nested waits run tasks on the waiter's stack, bounded in depth and stack
 *    use; past the bound a worker that sleeps on its own pool may start a
 *    compensating thread (tp_worker.c, "Nested waits").
 *
 * Files: thread_pool.c (submit, shutdown, stats, create), tp_queue.c (the
 * shared queue, stealing, parking), tp_worker.c (workers, accounting, help
 * and compensation), thread_pool_internal.h (the structures).
 *
 * Invariants
 *  - Counters: tasks accepted through the shared queue are ring
 *    reservations + overflow appends - overflow entries moved into the
 *    ring - refused submits (exe__tp_injected_count()), and a worker's own
 *    submitted (deque pushes) is written by that worker; each worker owns its
 *    started/completed/failed (also for tasks it runs while waiting);
 *    threads outside the pool and compensating threads that finish a task
 *    (help, cancel) use the shared ext_* counters. accepted - finished is the
 *    number of tasks that may still touch the pool.
 *  - A thread that claimed or cancelled a task may touch the pool until it
 *    counts that task finished; counting is its last touch. destroy() frees
 *    the pool only when every accepted task is counted finished, so holding a
 *    claim keeps the pool alive without a reference count per task.
 *  - A future's owner pointer is only dereferenced by the thread that claimed
 *    or cancelled it (both imply the pool is alive, by the point above).
 *  - A deque push happens on a live worker (it runs the submitting task),
 *    which empties its own deque before it can go idle or exit: a task
 *    accepted onto a deque always runs, even when shutdown raced the push.
 *  - Wake-ups: a submitter reads spinners and sleepers after its seq_cst
 *    reservation; a worker reads the ring after its seq_cst change of
 *    spinners or sleepers (Dekker pairs, exe__tp_wake_needed()): one of the
 *    two sees the other, so a sleeping pool always gets its wake-up.
 *  - Lock order: space_lock and submit_lock are leaves; no lock is held
 *    while user code runs. pools_alive (reader) is taken only by threads
 *    outside the pool that look at its queues while waiting.
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

/* ---- submit ---- */


static int wait_for_space(struct thread_pool *tp, int64_t deadline)
{
	int rc = 0;

	pthread_mutex_lock(&tp->space_lock);
	atomic_fetch_add_explicit(&tp->space_waiters, 1, memory_order_seq_cst);
	while (atomic_load_explicit(&tp->queued, memory_order_seq_cst) >= (int64_t)tp->capacity) {
		if (atomic_load(&tp->shutdown)) {
			rc = -ESHUTDOWN;
			break;
		}
		if (deadline < 0) {
			pthread_cond_wait(&tp->space_cond, &tp->space_lock);
		} else {
			struct timespec ts = {deadline / 1000000000, deadline % 1000000000};

			if (pthread_cond_timedwait(&tp->space_cond, &tp->space_lock, &ts) == ETIMEDOUT &&
			    atomic_load(&tp->queued) >= (int64_t)tp->capacity) {
				rc = -ETIMEDOUT;
				break;
			}
		}
	}
	atomic_fetch_sub_explicit(&tp->space_waiters, 1, memory_order_relaxed);
	pthread_mutex_unlock(&tp->space_lock);
	return rc;
}

/* Reserve a place in a bounded queue. */
static int reserve(struct thread_pool *tp, const struct exe_submit_opts *o)
{
	int64_t deadline = -2;
	int rc;

	for (;;) {
		if (atomic_fetch_add_explicit(&tp->queued, 1, memory_order_seq_cst) < (int64_t)tp->capacity)
			return 0;
		exe__tp_space_released(tp);
		if (!o || !(o->flags & EXE_SUBMIT_BLOCK))
			return -EAGAIN;
		if (deadline == -2)
			deadline = o->block_timeout_ns > 0 ? exe__deadline(o->block_timeout_ns) : -1;
		rc = wait_for_space(tp, deadline);
		if (rc)
			return rc;
	}
}

/*
 * A task of this pool submits: onto its worker's own deque, no lock. The
 * shutdown check needs no lock either: the worker is alive (it runs the
 * submitting task) and empties its deque before it can exit, so a task
 * accepted here always runs. Other workers get a wake only when the deque
 * already held work (a spare task for a thief; the newest one is the
 * owner's next) and nobody spins. That wake is never lost: the fence after
 * the push pairs with the one an idle worker passes after counting itself
 * a spinner or sleeper and before it looks at the deques (idle_state()),
 * so one of the two sees the other. Only pushes with a spare task pay it.
 * Return: 0, -ESHUTDOWN, -ENOSPC (deque full: use the shared queue).
 */
static int push_local(struct thread_pool *tp, struct worker *w, struct exe_future *f)
{
	bool spare;

	/* acquire: pairs with the release store in tp_shutdown(). */
	if (atomic_load_explicit(&tp->shutdown, memory_order_acquire))
		return -ESHUTDOWN;
	spare = exe__deque_nonempty(&w->dq);
	/* The deque is C11 code TSan sees, but its fences it does not. */
	exe__tsan_release(f);
	if (!exe__deque_push(&w->dq, f))
		return -ENOSPC;
	exe__tp_bump(&w->submitted);
	if (!spare)
		return 0;
	/* seq_cst fence: the push (bottom) before the loads below; pairs with
	 * the fence in idle_state() (tp_queue.c). */
	EXE__TP_FENCE();
	if (atomic_load_explicit(&tp->spinners, memory_order_seq_cst) == 0 &&
	    atomic_load_explicit(&tp->sleepers, memory_order_seq_cst) > 0)
		exe__tp_wake_one(tp);
	return 0;
}

/* One task: @out gets a reference (may be NULL); @done (may be NULL) is set
 * as its first done callback before anyone can see the future. */
static int submit_one(struct thread_pool *tp, exe_task_fn *fn, void *arg, const struct exe_submit_opts *o,
                      struct exe_future **out, exe_done_fn *done, void *done_arg)
{
	struct exe_future *f;
	bool wake;
	int rc;

	/* A thread cannot be killed: timeouts and kill-on-cancel are for
	 * process pools. */
	if (o && (o->task_timeout_ns || (o->flags & EXE_SUBMIT_KILL_ON_CANCEL)))
		return -EINVAL;
	if (exe__pool_is_broken(&tp->base))
		return -ENOTRECOVERABLE;
	/* Early refusal; the check that counts is in exe__tp_enqueue(). */
	if (atomic_load_explicit(&tp->shutdown, memory_order_relaxed))
		return -ESHUTDOWN;
	if (tp->capacity && (rc = reserve(tp, o)) != 0)
		return rc;
	f = exe__future_new(&exe__tp_task_ops, tp, out ? 2 : 1);
	if (!f) {
		exe__tp_space_released(tp);
		return -ENOMEM;
	}
	f->fn = fn;
	f->arg = arg;
	if (o)
		f->value_free = o->result_free;
	if (tp->helpable)
		atomic_store_explicit(&f->state, EXE_FUTURE_PENDING | EXE__HELPABLE, memory_order_relaxed);
	f->done = done;
	f->done_arg = done_arg;
	if (exe__tp_tls_self && exe__tp_tls_self->pool == tp) {
		rc = push_local(tp, exe__tp_tls_self, f);
		if (rc == 0) {
			if (out)
				*out = f;
			return 0;
		}
		if (rc != -ENOSPC) {
			exe__future_discard(f); /* never published */
			exe__tp_space_released(tp);
			return rc;
		}
	}
	rc = exe__tp_enqueue(tp, f, &wake);
	if (rc) {
		/* -ECANCELED: the queue took @f as a dead entry. */
		if (rc != -ECANCELED)
			exe__future_discard(f); /* never published */
		exe__tp_space_released(tp);
		return -ESHUTDOWN;
	}
	if (out)
		*out = f;
	if (wake)
		exe__tp_wake_one(tp);
	return 0;
}

static int tp_submit(struct exe_pool *p, exe_task_fn *fn, void *arg, const struct exe_submit_opts *o,
                     struct exe_future **out)
{
	return submit_one(exe__tp_pool_of(p), fn, arg, o, out, NULL, NULL);
}

static int tp_submit_cb(struct exe_pool *p, exe_task_fn *fn, void *arg, exe_done_fn *done, void *done_arg)
{
	return submit_one(exe__tp_pool_of(p), fn, arg, NULL, NULL, done, done_arg);
}

static void free_chain(struct exe_future *head)
{
	struct exe_future *f;

	while ((f = head)) {
		head = f->next;
		exe__future_discard(f); /* never published */
	}
}

static int tp_submit_many(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n,
                          struct exe_future **out)
{
	struct thread_pool *tp = exe__tp_pool_of(p);
	struct exe_future *head = NULL, **link = &head, *f;
	unsigned nwake;
	size_t i;
	int rc;

	if (exe__pool_is_broken(&tp->base))
		return -ENOTRECOVERABLE;
	if (atomic_load_explicit(&tp->shutdown, memory_order_relaxed))
		return -ESHUTDOWN;
	if (tp->capacity) {
		/* All or nothing, never blocking: take n places or none. */
		if (n > tp->capacity ||
		    atomic_fetch_add_explicit(&tp->queued, (int64_t)n, memory_order_seq_cst) + (int64_t)n >
		        (int64_t)tp->capacity) {
			if (n <= tp->capacity)
				for (i = 0; i < n; i++)
					exe__tp_space_released(tp);
			return -EAGAIN;
		}
	}
	for (i = 0; i < n; i++) {
		f = exe__future_new(&exe__tp_task_ops, tp, out ? 2 : 1);
		if (!f) {
			free_chain(head);
			for (i = 0; tp->capacity && i < n; i++)
				exe__tp_space_released(tp);
			return -ENOMEM;
		}
		f->fn = fn;
		f->arg = args[i];
		if (tp->helpable)
			atomic_store_explicit(&f->state, EXE_FUTURE_PENDING | EXE__HELPABLE,
			                      memory_order_relaxed);
		if (out)
			out[i] = f;
		*link = f;
		link = &f->next;
	}
	rc = exe__tp_enqueue_many(tp, head, n, &nwake);
	if (rc) {
		free_chain(head);
		for (i = 0; tp->capacity && i < n; i++)
			exe__tp_space_released(tp);
		if (out)
			memset(out, 0, n * sizeof(*out));
		return rc;
	}
	if (nwake) {
		atomic_fetch_add_explicit(&tp->park_seq, 1, memory_order_release);
		exe__futex_wake(&tp->park_seq, (int)nwake);
	}
	return 0;
}

/* ---- shutdown, destroy, stats ---- */

static void join_workers(struct thread_pool *tp)
{
	unsigned i;

	pthread_mutex_lock(&tp->life_lock);
	if (!tp->joined) {
		for (i = 0; i < tp->nworkers; i++)
			if (tp->workers[i].started_ok)
				pthread_join(tp->workers[i].thread, NULL);
		tp->joined = true;
	}
	pthread_mutex_unlock(&tp->life_lock);
	/* Threads that run a task while waiting for it may still hold a claim,
	 * and compensating threads (detached) may still run: wait until they
	 * counted their tasks and left. Rare and short-lived: sleep-poll. */
	for (long ns = 1000; !exe__tp_all_finished(tp) || atomic_load(&tp->compensators);
	     ns = ns < 1000000 ? ns * 2 : ns) {
		struct timespec ts = {0, ns};

		nanosleep(&ts, NULL);
	}
}

static int tp_shutdown(struct exe_pool *p, unsigned flags)
{
	struct thread_pool *tp = exe__tp_pool_of(p);
	struct exe_future *f;

	/* Under submit_lock (the overflow path and idle workers check it
	 * there) and seq_cst (the lock-free submit path, exe__tp_enqueue()). */
	pthread_mutex_lock(&tp->submit_lock);
	atomic_store_explicit(&tp->shutdown, 1, memory_order_seq_cst);
	pthread_mutex_unlock(&tp->submit_lock);
	exe__tp_wake_all(tp);
	if (tp->capacity) {
		pthread_mutex_lock(&tp->space_lock);
		pthread_cond_broadcast(&tp->space_cond);
		pthread_mutex_unlock(&tp->space_lock);
	}
	if (flags & EXE_SHUTDOWN_CANCEL_PENDING) {
		while ((f = exe__tp_dequeue(tp)) || (f = exe__tp_steal_any(tp, -1))) {
			exe__future_cancel_pending(f);
			exe_future_unref(f);
		}
	}
	if (flags & EXE_SHUTDOWN_WAIT)
		join_workers(tp);
	return 0;
}

static void tp_free(struct thread_pool *tp)
{
	pthread_mutex_destroy(&tp->submit_lock);
	pthread_mutex_destroy(&tp->space_lock);
	pthread_cond_destroy(&tp->space_cond);
	pthread_mutex_destroy(&tp->life_lock);
	exe__free(tp->workers);
	exe__free(tp->ring.cells);
	exe__free(tp);
}

static void tp_destroy(struct exe_pool *p)
{
	struct thread_pool *tp = exe__tp_pool_of(p);
	struct exe_future *f;

	tp_shutdown(p, EXE_SHUTDOWN_WAIT);
	/* No waiter still looks at our queue (task_help_other). */
	pthread_rwlock_wrlock(&exe__tp_pools_alive);
	pthread_rwlock_unlock(&exe__tp_pools_alive);
	/* Workers exit once every task is counted finished; an entry whose
	 * future was cancelled just before they looked may still sit in the
	 * queue. Only its reference is left to drop. */
	while ((f = exe__tp_dequeue(tp)) || (f = exe__tp_steal_any(tp, -1)))
		exe_future_unref(f);
	tp_free(tp);
}

static void tp_stats(struct exe_pool *p, struct exe_pool_stats *st)
{
	struct thread_pool *tp = exe__tp_pool_of(p);
	uint64_t started = atomic_load(&tp->ext_started), done = atomic_load(&tp->ext_completed);
	uint64_t failed = atomic_load(&tp->ext_failed);
	uint64_t cancelled = atomic_load(&tp->cancelled);
	uint64_t submitted;
	unsigned i;

	for (i = 0; i < tp->nworkers; i++) {
		started += atomic_load(&tp->workers[i].started);
		done += atomic_load(&tp->workers[i].completed);
		failed += atomic_load(&tp->workers[i].failed);
	}
	submitted = exe__tp_submitted_count(tp);
	st->submitted = submitted;
	st->completed = done;
	st->failed = failed;
	st->cancelled = cancelled;
	st->running = started > done + failed ? started - done - failed : 0;
	st->queued = submitted > started + cancelled ? submitted - started - cancelled : 0;
	st->workers = atomic_load(&tp->live_workers);
	st->shut_down = atomic_load(&tp->shutdown) != 0;
}

static const struct exe__pool_ops thread_pool_ops = {
    .submit = tp_submit,
    .submit_many = tp_submit_many,
    .submit_cb = tp_submit_cb,
    .shutdown = tp_shutdown,
    .destroy = tp_destroy,
    .stats = tp_stats,
};

/* ---- create ---- */

static unsigned pow2_at_least(size_t n)
{
	unsigned v = 64;

	while (v < n && v < (1u << 30))
		v <<= 1;
	return v;
}

int exe_thread_pool_create(struct exe_pool **out, const struct exe_pool_opts *opts)
{
	struct exe_pool_opts defaults = {0};
	struct thread_pool *tp;
	unsigned i;
	int rc = 0;

	if (!out)
		return -EINVAL;
	if (!opts)
		opts = &defaults;
	if (opts->queue_capacity > (1u << 30))
		return -EINVAL;
	tp = exe__aligned_calloc(64, 1, sizeof(*tp));
	if (!tp)
		return -ENOMEM;
	tp->base.ops = &thread_pool_ops;
	tp->nworkers = opts->workers;
	if (!tp->nworkers) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		tp->nworkers = n > 0 ? (unsigned)n : 1;
	}
	tp->capacity = opts->queue_capacity;
	tp->init = opts->init;
	tp->init_arg = opts->init_arg;
	tp->helpable = !opts->no_caller_runs && !opts->init;
	snprintf(tp->name, sizeof(tp->name), "%s", opts->name && *opts->name ? opts->name : "exe");
	{
		unsigned cells = tp->capacity ? pow2_at_least(tp->capacity + 1) : RING_SLOTS_UNBOUNDED;

		/* Zeroed cells are free cells (mpmc_ring.h). */
		tp->ring.cells = exe__calloc(cells, sizeof(*tp->ring.cells));
		tp->ring.mask = cells - 1;
	}
	tp->workers = exe__aligned_calloc(64, tp->nworkers, sizeof(*tp->workers));
	if (!tp->ring.cells || !tp->workers) {
		tp_free(tp);
		return -ENOMEM;
	}
	{
		pthread_mutexattr_t ma;

		/* Adaptive: spin briefly before sleeping, the lock is held
		 * for a few instructions. */
		pthread_mutexattr_init(&ma);
		pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
		pthread_mutex_init(&tp->submit_lock, &ma);
		pthread_mutexattr_destroy(&ma);
	}
	pthread_mutex_init(&tp->space_lock, NULL);
	pthread_mutex_init(&tp->life_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&tp->space_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	for (i = 0; i < tp->nworkers; i++) {
		struct worker *w = &tp->workers[i];

		w->pool = tp;
		w->index = i;
		exe__deque_init(&w->dq);
		atomic_fetch_add(&tp->live_workers, 1);
		rc = pthread_create(&w->thread, NULL, exe__tp_worker_main, w);
		if (rc) {
			atomic_fetch_sub(&tp->live_workers, 1);
			rc = -rc;
			break;
		}
		w->started_ok = true;
		atomic_fetch_add(&tp->active, 1);
	}
	if (rc) {
		tp_shutdown(&tp->base, EXE_SHUTDOWN_WAIT);
		tp_free(tp);
		return rc;
	}
	*out = &tp->base;
	return 0;
}
