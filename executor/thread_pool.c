/*
 * thread_pool.c - the thread-pool executor.
 *
 * Design
 *  - A submitted task is its future: fn/arg live in the future, so a submit
 *    is one allocation. The queue holds one reference per entry.
 *  - The queue is a ck_ring of future pointers: many lock-free consumers,
 *    producers serialized by a mutex (single-producer enqueue). ck's
 *    multi-producer enqueue makes each producer spin until every earlier
 *    reservation is committed; with more threads than cores a preempted
 *    producer then stalls every other one for whole time slices (measured:
 *    ~100 submits/s with 5 submitters on 2 cores under ASan). A mutex sleeps
 *    instead, and costs one more atomic when uncontended.
 *  - When the ring is full, entries go to an overflow list under the same
 *    mutex (the pool is unbounded by default). While the list is non-empty
 *    every producer appends to it, and a worker that finds the ring empty
 *    moves a batch from the list's head into the ring: submission order is
 *    kept.
 *  - A task starts by the CAS PENDING -> RUNNING (exe__future_claim). The
 *    winner runs it: a worker that dequeued it, or a thread waiting on it
 *    forever (help). Cancel is the CAS PENDING -> CANCELLED. A queue entry
 *    whose future was claimed or cancelled elsewhere is dropped when dequeued.
 *  - Idle workers spin briefly, then park on an event count (park_seq +
 *    sleepers, futex). A submit issues a system call only when a worker
 *    sleeps: no system call per task while workers are busy.
 *
 * Invariants
 *  - Counters: submitted is written under submit_lock; each worker owns its
 *    started/completed/failed; threads outside the pool that finish a task
 *    (help, cancel) use the shared ext_* counters. accepted - finished is the
 *    number of tasks that may still touch the pool.
 *  - A thread that claimed or cancelled a task may touch the pool until it
 *    counts that task finished; counting is its last touch. destroy() frees
 *    the pool only when every accepted task is counted finished, so holding a
 *    claim keeps the pool alive without a reference count per task.
 *  - A future's owner pointer is only dereferenced by the thread that claimed
 *    or cancelled it (both imply the pool is alive, by the point above).
 *  - Lock order: space_lock and submit_lock are leaves; no lock is held
 *    while user code runs.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ck_ring.h>

#include "executor/alloc.h"
#include "executor/errors.h"
#include "executor/futex.h"
#include "executor/future_internal.h"
#include "executor/pool_internal.h"
#include "executor/tsan.h"

#define RING_SLOTS_UNBOUNDED 16384u /* 128 KiB: bursts this size never touch the overflow lock */
#define SPIN_NS (30 * 1000)         /* idle spin before parking: ~ one cross-core wake */

struct worker {
	alignas(64) pthread_t thread;
	struct thread_pool *pool;
	unsigned index;
	bool started_ok;
	/* Written by this worker only; read by stats and the exit check. */
	_Atomic uint64_t started, completed, failed;
};

struct thread_pool {
	struct exe_pool base;

	/* Read-mostly after create. */
	unsigned nworkers;
	size_t capacity;
	bool helpable;
	char name[16];
	exe_init_fn *init;
	void *init_arg;
	struct worker *workers;
	ck_ring_buffer_t *slots;
	unsigned ring_size;

	alignas(64) ck_ring_t ring;

	/* Producers. */
	alignas(64) _Atomic uint64_t submitted;
	_Atomic int64_t queued; /* bounded pools only: not yet started */

	/* Producers' side of the ring, and the overflow list (ring full). */
	alignas(64) pthread_mutex_t submit_lock;
	struct exe_future *of_head, *of_tail;
	_Atomic size_t of_len;

	/* Parking. */
	alignas(64) _Atomic uint32_t park_seq;
	_Atomic uint32_t sleepers;
	_Atomic uint32_t spinners; /* idle workers still polling the queue */

	/* Finishes by threads outside the pool. */
	alignas(64) _Atomic uint64_t ext_started, ext_completed, ext_failed, cancelled;

	/* Blocking submit on a full bounded queue (slow path). */
	alignas(64) pthread_mutex_t space_lock;
	pthread_cond_t space_cond;
	_Atomic uint32_t space_waiters;

	/* Lifecycle. */
	_Atomic uint32_t shutdown;
	_Atomic unsigned live_workers;
	pthread_mutex_t life_lock; /* serializes join/teardown */
	bool joined;
};

static const struct exe__future_ops task_ops;

static struct thread_pool *pool_of(struct exe_pool *p)
{
	return (struct thread_pool *)p;
}

/* ---- the queue ---- */

static bool queue_nonempty(struct thread_pool *tp)
{
	return ck_ring_size(&tp->ring) > 0 || atomic_load_explicit(&tp->of_len, memory_order_relaxed) > 0;
}

/*
 * Whether a submit must wake a worker, decided under submit_lock right after
 * the entry went in: not while a worker spins (it re-checks the queue under
 * this lock when it stops spinning), and only when one sleeps (it checks the
 * queue under this lock before sleeping). The lock orders those checks
 * against our insert, so the submit path needs no memory fence (an mfence
 * was a quarter of a submit's time).
 */
static bool wake_needed(struct thread_pool *tp)
{
	return atomic_load_explicit(&tp->spinners, memory_order_relaxed) == 0 &&
	       atomic_load_explicit(&tp->sleepers, memory_order_relaxed) > 0;
}

static void wake_one(struct thread_pool *tp)
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
static int enqueue(struct thread_pool *tp, struct exe_future *f, bool *wake)
{
	/* The ring hand-off is ck code TSan cannot see: publish the future
	 * explicitly (paired in dequeue()). */
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
	*wake = wake_needed(tp);
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

static struct exe_future *dequeue(struct thread_pool *tp)
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

/* ---- parking ---- */

/* Wake every sleeper, after shutdown set its flag under submit_lock: a
 * worker that counted itself asleep under that lock is seen here; one that
 * comes later sees the flag and does not sleep. */
static void wake_all(struct thread_pool *tp)
{
	if (atomic_load_explicit(&tp->sleepers, memory_order_relaxed) == 0)
		return;
	atomic_fetch_add_explicit(&tp->park_seq, 1, memory_order_release);
	exe__futex_wake(&tp->park_seq, EXE_FUTEX_WAKE_ALL);
}

/*
 * Idle transitions take submit_lock, like enqueue() and shutdown: what a
 * worker sees there (queue empty, flag set) cannot change behind its back,
 * since no entry can be added once the flag is set under the same lock.
 */
enum idle { IDLE_WORK, IDLE_PARK, IDLE_EXIT };

static enum idle idle_state(struct thread_pool *tp)
{
	if (queue_nonempty(tp))
		return IDLE_WORK;
	return atomic_load_explicit(&tp->shutdown, memory_order_relaxed) ? IDLE_EXIT : IDLE_PARK;
}

/* Sleep until woken for work or shutdown. */
static void park(struct thread_pool *tp)
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

/* A worker stops spinning: work arrived, or park, or exit. A submitter that
 * saw it spinning woke nobody, so it must look once more here. */
static enum idle stop_spinning(struct thread_pool *tp)
{
	enum idle state;

	pthread_mutex_lock(&tp->submit_lock);
	atomic_fetch_sub_explicit(&tp->spinners, 1, memory_order_relaxed);
	state = idle_state(tp);
	pthread_mutex_unlock(&tp->submit_lock);
	return state;
}

/* ---- accounting ---- */

static void space_released(struct thread_pool *tp)
{
	if (!tp->capacity)
		return;
	/* seq_cst: pairs with wait_for_space(); a blocked submitter either
	 * sees the lower count or is seen in space_waiters. */
	atomic_fetch_sub_explicit(&tp->queued, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&tp->space_waiters, memory_order_seq_cst)) {
		pthread_mutex_lock(&tp->space_lock);
		pthread_cond_broadcast(&tp->space_cond);
		pthread_mutex_unlock(&tp->space_lock);
	}
}

static uint64_t finished_count(struct thread_pool *tp)
{
	uint64_t n =
	    atomic_load(&tp->ext_completed) + atomic_load(&tp->ext_failed) + atomic_load(&tp->cancelled);
	unsigned i;

	for (i = 0; i < tp->nworkers; i++)
		n += atomic_load(&tp->workers[i].completed) + atomic_load(&tp->workers[i].failed);
	return n;
}

/* Every accepted task has been counted finished: workers have exited, and
 * threads that ran a task while waiting for it have counted it. Called
 * after shutdown, so submitted is final (see enqueue()). */
static bool all_finished(struct thread_pool *tp)
{
	uint64_t submitted = atomic_load(&tp->submitted);

	return finished_count(tp) >= submitted;
}

static void bump(_Atomic uint64_t *counter)
{
	/* Owned by one thread: a load and a store, no locked instruction. */
	atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}

/* Run a task this thread claimed. Return its code. */
static int run_claimed(struct thread_pool *tp, struct exe_future *f)
{
	space_released(tp);
	if (exe__pool_is_broken(&tp->base)) {
		exe__future_complete_owned(f, -ENOTRECOVERABLE, NULL, exe__pool_broken_msg(&tp->base));
		return -ENOTRECOVERABLE;
	}
	return exe__future_run(f);
}

/* ---- task ops: the future's view of its pool ---- */

static void task_cancelled(struct exe_future *f)
{
	struct thread_pool *tp = f->owner;

	space_released(tp);
	atomic_fetch_add(&tp->cancelled, 1); /* last touch of the pool */
}

static bool task_help(struct exe_future *f)
{
	struct thread_pool *tp = f->owner;
	int code;

	if (!exe__future_claim(f))
		return false;
	/* Claimed: the pool stays alive until we count the finish. */
	atomic_fetch_add(&tp->ext_started, 1);
	code = run_claimed(tp, f);
	atomic_fetch_add(code == 0 ? &tp->ext_completed : &tp->ext_failed, 1);
	return true;
}

/*
 * A thread waiting forever on RUNNING @f runs other queued tasks meanwhile,
 * instead of spinning or sleeping while the pool has work (fork-join
 * "help while you wait"). The danger is the pool itself: @f may finish and
 * the pool be destroyed between our look at @f and our use of its queue. The
 * process-wide reader lock closes that window: destroy takes it for writing
 * before freeing, and we only look at the queue under it, after seeing @f
 * unfinished. A task we claim keeps the pool alive by itself (see the
 * invariants above), so it runs outside the lock.
 */
static pthread_rwlock_t pools_alive = PTHREAD_RWLOCK_INITIALIZER;
static _Thread_local unsigned help_depth;

static bool task_help_other(struct exe_future *f)
{
	struct thread_pool *tp;
	struct exe_future *g;
	bool claimed = false;
	int code;

	/* Each nested help is a stack frame: bound the recursion. */
	if (help_depth >= 16)
		return false;
	pthread_rwlock_rdlock(&pools_alive);
	if (exe_future_is_finished(f)) {
		pthread_rwlock_unlock(&pools_alive);
		return false;
	}
	tp = f->owner;
	g = dequeue(tp);
	if (g && (claimed = exe__future_claim(g)))
		atomic_fetch_add(&tp->ext_started, 1);
	pthread_rwlock_unlock(&pools_alive);
	if (!g)
		return false;
	if (claimed) {
		help_depth++;
		code = run_claimed(tp, g);
		help_depth--;
		atomic_fetch_add(code == 0 ? &tp->ext_completed : &tp->ext_failed, 1);
	}
	exe_future_unref(g); /* the queue's reference */
	return true;
}

static const struct exe__future_ops task_ops = {
    .cancelled = task_cancelled,
    .help = task_help,
    .help_other = task_help_other,
};

/* ---- workers ---- */

static void run_entry(struct worker *w, struct exe_future *f)
{
	if (exe__future_claim(f)) {
		bump(&w->started);
		bump(run_claimed(w->pool, f) == 0 ? &w->completed : &w->failed);
	}
	exe_future_unref(f); /* the queue's reference */
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct thread_pool *tp = w->pool;
	char name[32];
	sigset_t all;
	bool was_idle = false;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	snprintf(name, sizeof(name), "%s-%u", tp->name, w->index);
	name[15] = '\0'; /* the kernel keeps 15 bytes */
	pthread_setname_np(pthread_self(), name);
	exe__tls_worker_owner = tp;

	if (tp->init) {
		int rc = tp->init(tp->init_arg);

		if (rc != 0)
			exe__pool_mark_broken(&tp->base, "worker init failed in %s-%u: %s (%d)", tp->name,
			                      w->index, exe_strerror(rc < 0 ? rc : -rc), rc < 0 ? rc : -rc);
	}

	for (;;) {
		struct exe_future *f = dequeue(tp);
		int64_t spin_until;
		enum idle state;

		if (f) {
			/* A worker back from idle passes the wake on while work
			 * remains: submitters skip the wake-up while a worker
			 * spins (wake_needed()), so the spinner that takes the first
			 * task must wake the next sleeper, or tasks queued
			 * behind a long one wait with workers asleep. */
			if (was_idle && queue_nonempty(tp) && wake_needed(tp))
				wake_one(tp);
			was_idle = false;
			run_entry(w, f);
			continue;
		}
		spin_until = exe_now_ns() + SPIN_NS;
		atomic_fetch_add_explicit(&tp->spinners, 1, memory_order_relaxed);
		while (!queue_nonempty(tp) && !atomic_load_explicit(&tp->shutdown, memory_order_relaxed) &&
		       exe_now_ns() < spin_until) {
			for (int i = 0; i < 64; i++)
				ck_pr_stall();
			sched_yield();
		}
		was_idle = true;
		state = stop_spinning(tp);
		if (state == IDLE_EXIT)
			break;
		if (state == IDLE_PARK)
			park(tp);
	}
	atomic_fetch_sub(&tp->live_workers, 1);
	return NULL;
}

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
		space_released(tp);
		if (!o || !(o->flags & EXE_SUBMIT_BLOCK))
			return -EAGAIN;
		if (deadline == -2)
			deadline = o->block_timeout_ns > 0 ? exe__deadline(o->block_timeout_ns) : -1;
		rc = wait_for_space(tp, deadline);
		if (rc)
			return rc;
	}
}

static int tp_submit(struct exe_pool *p, exe_task_fn *fn, void *arg, const struct exe_submit_opts *o,
                     struct exe_future **out)
{
	struct thread_pool *tp = pool_of(p);
	struct exe_future *f;
	bool wake;
	int rc;

	/* A thread cannot be killed: timeouts and kill-on-cancel are for
	 * process pools. */
	if (o && (o->task_timeout_ns || (o->flags & EXE_SUBMIT_KILL_ON_CANCEL)))
		return -EINVAL;
	if (exe__pool_is_broken(&tp->base))
		return -ENOTRECOVERABLE;
	/* Early refusal; the check that counts is under the lock in enqueue(). */
	if (atomic_load_explicit(&tp->shutdown, memory_order_relaxed))
		return -ESHUTDOWN;
	if (tp->capacity && (rc = reserve(tp, o)) != 0)
		return rc;
	f = exe__future_new(&task_ops, tp, out ? 2 : 1);
	if (!f) {
		space_released(tp);
		return -ENOMEM;
	}
	f->fn = fn;
	f->arg = arg;
	if (o)
		f->value_free = o->result_free;
	if (tp->helpable)
		atomic_store_explicit(&f->state, EXE_FUTURE_PENDING | EXE__HELPABLE, memory_order_relaxed);
	rc = enqueue(tp, f, &wake);
	if (rc) {
		exe__free(f); /* never published */
		space_released(tp);
		return rc;
	}
	if (out)
		*out = f;
	if (wake)
		wake_one(tp);
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
	/* Threads that run a task while waiting for it may still hold a claim:
	 * wait until they counted it. Rare and short-lived: sleep-poll. */
	for (long ns = 1000; !all_finished(tp); ns = ns < 1000000 ? ns * 2 : ns) {
		struct timespec ts = {0, ns};

		nanosleep(&ts, NULL);
	}
}

static int tp_shutdown(struct exe_pool *p, unsigned flags)
{
	struct thread_pool *tp = pool_of(p);
	struct exe_future *f;

	/* Under submit_lock: see enqueue(). release: pairs with the workers'
	 * acquire load before their exit check. */
	pthread_mutex_lock(&tp->submit_lock);
	atomic_store_explicit(&tp->shutdown, 1, memory_order_release);
	pthread_mutex_unlock(&tp->submit_lock);
	wake_all(tp);
	if (tp->capacity) {
		pthread_mutex_lock(&tp->space_lock);
		pthread_cond_broadcast(&tp->space_cond);
		pthread_mutex_unlock(&tp->space_lock);
	}
	if (flags & EXE_SHUTDOWN_CANCEL_PENDING) {
		while ((f = dequeue(tp))) {
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
	exe__free(tp->slots);
	exe__free(tp);
}

static void tp_destroy(struct exe_pool *p)
{
	struct thread_pool *tp = pool_of(p);
	struct exe_future *f;

	tp_shutdown(p, EXE_SHUTDOWN_WAIT);
	/* No waiter still looks at our queue (task_help_other). */
	pthread_rwlock_wrlock(&pools_alive);
	pthread_rwlock_unlock(&pools_alive);
	/* Workers exit once every task is counted finished; an entry whose
	 * future was cancelled just before they looked may still sit in the
	 * queue. Only its reference is left to drop. */
	while ((f = dequeue(tp)))
		exe_future_unref(f);
	tp_free(tp);
}

static void tp_stats(struct exe_pool *p, struct exe_pool_stats *st)
{
	struct thread_pool *tp = pool_of(p);
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
	submitted = atomic_load(&tp->submitted);
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
	/* Threads cannot be killed or recycled safely: those options belong
	 * to process pools. */
	if (opts->queue_capacity > (1u << 30) || opts->max_tasks_per_worker || opts->task_timeout_ns)
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
	tp->ring_size = tp->capacity ? pow2_at_least(tp->capacity + 1) : RING_SLOTS_UNBOUNDED;
	tp->slots = exe__calloc(tp->ring_size, sizeof(*tp->slots));
	tp->workers = exe__aligned_calloc(64, tp->nworkers, sizeof(*tp->workers));
	if (!tp->slots || !tp->workers) {
		tp_free(tp);
		return -ENOMEM;
	}
	ck_ring_init(&tp->ring, tp->ring_size);
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
		atomic_fetch_add(&tp->live_workers, 1);
		rc = pthread_create(&w->thread, NULL, worker_main, w);
		if (rc) {
			atomic_fetch_sub(&tp->live_workers, 1);
			rc = -rc;
			break;
		}
		w->started_ok = true;
	}
	if (rc) {
		tp_shutdown(&tp->base, EXE_SHUTDOWN_WAIT);
		tp_free(tp);
		return rc;
	}
	*out = &tp->base;
	return 0;
}
