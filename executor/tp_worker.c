/*
 * tp_worker.c - the thread pool's workers: the run loop (own deque, shared
 * queue, steal), accounting, the future operations a task's waiters call
 * (help, help_other, blocking) with the nested-wait bound and compensating
 * threads. Design and invariants: thread_pool.c.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ck_pr.h> /* ck_pr_stall(): the spin hint on every CPU (pause on x86) */

#include "alloc.h"
#include "errors.h"
#include "futex.h"
#include "thread_pool_internal.h"
#include "sanitizer.h"

EXE__TLS struct worker *exe__tp_tls_self;

/* ---- accounting ---- */

void exe__tp_space_released(struct thread_pool *tp)
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

uint64_t exe__tp_finished_count(struct thread_pool *tp)
{
	uint64_t n =
	    atomic_load(&tp->ext_completed) + atomic_load(&tp->ext_failed) + atomic_load(&tp->cancelled);
	unsigned i;

	for (i = 0; i < tp->nworkers; i++)
		n += atomic_load(&tp->workers[i].completed) + atomic_load(&tp->workers[i].failed);
	return n;
}

/* Accepted tasks: through the shared queue and onto workers' deques. */
uint64_t exe__tp_submitted_count(struct thread_pool *tp)
{
	uint64_t n = exe__tp_injected_count(tp);

	for (unsigned i = 0; i < tp->nworkers; i++)
		n += atomic_load(&tp->workers[i].submitted);
	return n;
}

/* Every accepted task has been counted finished: workers have exited, and
 * threads that ran a task while waiting for it have counted it. Called
 * after shutdown and the workers' exit, so submitted is final (see
 * exe__tp_enqueue(); a deque push happens on a live worker, before it exits). */
bool exe__tp_all_finished(struct thread_pool *tp)
{
	uint64_t submitted = exe__tp_submitted_count(tp);

	return exe__tp_finished_count(tp) >= submitted;
}

/* Run a task this thread claimed. Return its code. */
static int run_claimed(struct thread_pool *tp, struct exe_future *f)
{
	exe__tp_space_released(tp);
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

	exe__tp_space_released(tp);
	atomic_fetch_add(&tp->cancelled, 1); /* last touch of the pool */
}

/*
 * Nested waits. A task that waits on a pending task of its pool runs it on
 * its own stack (help), and a wait on a running one runs other queued tasks
 * meanwhile (help_other). Each is a stack frame, so both stop at
 * HELP_DEPTH_MAX nested runs, or earlier when less than HELP_STACK_RESERVE
 * of the thread's stack is left (tasks with big frames, sanitizers). Past
 * that the waiter sleeps, and the no-deadlock promise is kept as Java's
 * ForkJoinPool keeps it: a worker that sleeps on a task of its own pool
 * counts itself inactive, and when no worker is left active the pool starts
 * a compensating thread that takes queued tasks (task_blocking()). Chosen
 * over the alternatives: refusing the wait (-EDEADLK) breaks correct
 * programs whose recursion is merely deep; continuing on a bigger stack
 * (a fiber or makecontext) needs per-wait stacks and moves the overflow
 * instead of removing it. A compensating thread costs one thread creation
 * per HELP_DEPTH_MAX levels, only on this rare path, and retires when
 * the pool has enough active workers again.
 */
#define HELP_DEPTH_MAX 256
#define HELP_STACK_RESERVE (256 * 1024)
#define MAX_COMPENSATORS 1024

static EXE__TLS unsigned help_depth;
static EXE__TLS uintptr_t stack_low; /* lowest usable stack address; 1: unknown */

/* Whether this thread may run one more task on top of its stack. */
static bool may_nest(void)
{
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);

	if (help_depth >= HELP_DEPTH_MAX)
		return false;
	if (!stack_low) {
		pthread_attr_t a;
		void *addr;
		size_t size;

		stack_low = 1;
		if (pthread_getattr_np(pthread_self(), &a) == 0) {
			if (pthread_attr_getstack(&a, &addr, &size) == 0)
				stack_low = (uintptr_t)addr;
			pthread_attr_destroy(&a);
		}
	}
	return stack_low == 1 || (here > stack_low && here - stack_low > HELP_STACK_RESERVE);
}

static void run_entry(struct worker *w, struct exe_future *f);

/* How many of its newest deque entries a waiting worker looks through for
 * the task it waits on: fork-join waits on the children it just pushed,
 * the first-submitted one under its later siblings. */
#define OWN_DEQUE_SCAN 8

/*
 * A worker waits on PENDING @f of its own pool, usually a child it pushed
 * on its own deque moments ago. Take entries off the bottom (LIFO) and run
 * them until @f itself comes off: the entries above @f are later siblings,
 * run next anyway (the waiter waits on them too, in fork-join). Taking the
 * entry instead of claiming @f by pointer leaves no stale entry for a later
 * take() to find claimed and drop, and the worker's own counters (no shared
 * atomics) count the runs. Runs at most OWN_DEQUE_SCAN tasks: if thieves
 * take @f meanwhile, take() runs dry at the entries above it.
 * Return whether @f finished (false: the caller claims or waits as before).
 */
static bool help_own_deque(struct worker *w, struct exe_future *f)
{
	struct exe_future *g;

	if (!exe__deque_near_bottom(&w->dq, f, OWN_DEQUE_SCAN))
		return false;
	help_depth++;
	do {
		if (!(g = exe__deque_take(&w->dq)))
			break;
		exe__tsan_acquire(g);
		run_entry(w, g); /* drops the queue's reference: compare g, never read it */
	} while (g != f);
	help_depth--;
	/* @f may have been claimed by pointer by another helper and still run
	 * there: only its state says it finished. acquire: pairs with the
	 * completer's release of the result. */
	return exe__state_finished(atomic_load_explicit(&f->state, memory_order_acquire));
}

static bool task_help(struct exe_future *f)
{
	struct thread_pool *tp = f->owner;
	struct worker *self = exe__tp_tls_self;
	int code;

	struct exe_future *g = NULL;

	if (!may_nest())
		return false;
	if (self && self->pool == tp) {
		if (help_own_deque(self, f))
			return true;
		/* Not near our deque's bottom (another thread's submit, or
		 * taken by a thief): claim it by pointer; its entry stays
		 * behind until its queue drops it. A worker of the pool keeps
		 * it alive and counts the run in its own counters. */
		if (!exe__future_claim(f))
			return false;
		exe__tp_bump(&self->started);
		help_depth++;
		code = run_claimed(tp, f);
		help_depth--;
		exe__tp_bump(code == 0 ? &self->completed : &self->failed);
		return true;
	}
	if (!exe__future_claim(f))
		return false;
	/* Claimed: the pool stays alive until we count the finish. */
	atomic_fetch_add(&tp->ext_started, 1);
	help_depth++;
	code = run_claimed(tp, f);
	/* @f's queue entry stays behind, holding a reference, until a worker
	 * drops it - unless it is the oldest entry, which we take off here
	 * (the caller holds its own reference). Otherwise a thread outside the
	 * pool that runs every task it waits for (while busy or descheduled
	 * workers lag) would pile such entries up: take one entry off the
	 * shared queue per task run here, in FIFO order, and run it if nobody
	 * did. So the wait may end one task later, as pool.h says of
	 * caller-runs. */
	if (exe__ring_take_if(&tp->ring, f)) {
		help_depth--;
		exe_future_unref(f); /* the queue's reference */
		atomic_fetch_add(code == 0 ? &tp->ext_completed : &tp->ext_failed, 1);
		return true;
	}
	g = exe__tp_dequeue(tp);
	if (g && exe__future_claim(g)) {
		int gc;

		atomic_fetch_add(&tp->ext_started, 1);
		gc = run_claimed(tp, g);
		atomic_fetch_add(gc == 0 ? &tp->ext_completed : &tp->ext_failed, 1);
	}
	help_depth--;
	exe_future_unref(g); /* the queue's reference (NULL is fine) */
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
pthread_rwlock_t exe__tp_pools_alive = PTHREAD_RWLOCK_INITIALIZER;

static bool task_help_other(struct exe_future *f)
{
	struct thread_pool *tp = f->owner;
	struct exe_future *g;
	bool claimed = false;
	int code;

	if (!may_nest())
		return false;
	if (exe__tp_tls_self && exe__tp_tls_self->pool == tp) {
		/* A worker of @f's pool keeps it alive (destroy joins it
		 * first): no lock, and the run counts in this worker's own
		 * counters, not the shared ext_* ones (a locked add on a
		 * shared line per helped task). */
		struct worker *w = exe__tp_tls_self;

		if ((g = exe__deque_take(&w->dq)))
			exe__tsan_acquire(g);
		else if (!(g = exe__tp_dequeue(tp)))
			g = exe__tp_steal_any(tp, (int)w->index);
		if (!g)
			return false;
		help_depth++;
		run_entry(w, g);
		help_depth--;
		return true;
	}
	/* Anyone else looks at the queue under the reader lock. @f's owner is
	 * read above but not dereferenced until @f is seen unfinished here. */
	pthread_rwlock_rdlock(&exe__tp_pools_alive);
	if (exe_future_is_finished(f)) {
		pthread_rwlock_unlock(&exe__tp_pools_alive);
		return false;
	}
	if (!(g = exe__tp_dequeue(tp)))
		g = exe__tp_steal_any(tp, -1);
	if (g && (claimed = exe__future_claim(g)))
		atomic_fetch_add(&tp->ext_started, 1);
	pthread_rwlock_unlock(&exe__tp_pools_alive);
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

static void start_compensator(struct thread_pool *tp);

/* A worker of this pool sleeps on @f (or woke up): see "Nested waits". The
 * pool is alive: we are one of its workers. */
static void task_blocking(struct exe_future *f, bool blocked)
{
	struct thread_pool *tp = f->owner;

	/* acq_rel: pairs with retire() and the other workers' updates, so the
	 * last worker to block sees itself last. */
	if (!blocked) {
		atomic_fetch_add_explicit(&tp->active, 1, memory_order_acq_rel);
		return;
	}
	if (atomic_fetch_sub_explicit(&tp->active, 1, memory_order_acq_rel) == 1)
		start_compensator(tp);
	else if (exe__tp_tls_self && exe__tp_tls_self->pool == tp &&
	         exe__deque_nonempty(&exe__tp_tls_self->dq) &&
	         atomic_load_explicit(&tp->sleepers, memory_order_relaxed))
		exe__tp_wake_one(tp); /* our deque waits for a thief while we sleep */
}

const struct exe__future_ops exe__tp_task_ops = {
    .cancelled = task_cancelled,
    .help = task_help,
    .help_other = task_help_other,
    .blocking = task_blocking,
};

/* ---- workers ---- */

/* A worker's next task: its own deque (the newest first), then the shared
 * queue, then other workers' deques; every GLOBAL_EVERY tasks the shared
 * queue first, so external submitters are not starved by a recursion that
 * keeps its deque full. */
static struct exe_future *next_task(struct worker *w)
{
	struct thread_pool *tp = w->pool;
	struct exe_future *f;

	if (!w->temporary) {
		if (++w->tick % GLOBAL_EVERY == 0 && (f = exe__tp_dequeue(tp)))
			return f;
		if ((f = exe__deque_take(&w->dq))) {
			exe__tsan_acquire(f);
			return f;
		}
	}
	if ((f = exe__tp_dequeue(tp)))
		return f;
	return exe__tp_steal_any(tp, w->temporary ? -1 : (int)w->index);
}

static void run_entry(struct worker *w, struct exe_future *f)
{
	if (exe__future_claim(f)) {
		if (w->temporary) {
			struct thread_pool *tp = w->pool;

			atomic_fetch_add(&tp->ext_started, 1);
			atomic_fetch_add(run_claimed(tp, f) == 0 ? &tp->ext_completed : &tp->ext_failed, 1);
		} else {
			exe__tp_bump(&w->started);
			exe__tp_bump(run_claimed(w->pool, f) == 0 ? &w->completed : &w->failed);
		}
	}
	exe_future_unref(f); /* the queue's reference */
}

/* A compensating thread leaves once more workers are active than the pool
 * has: the worker it stood in for woke up. */
static bool retire(struct thread_pool *tp)
{
	int a = atomic_load_explicit(&tp->active, memory_order_acquire);

	while (a > (int)tp->nworkers)
		if (atomic_compare_exchange_weak_explicit(&tp->active, &a, a - 1, memory_order_acq_rel,
		                                          memory_order_acquire))
			return true;
	return false;
}

void *exe__tp_worker_main(void *arg)
{
	struct worker *w = arg;
	struct thread_pool *tp = w->pool;
	char name[32];
	sigset_t all;
	bool was_idle = false;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	if (w->temporary)
		snprintf(name, sizeof(name), "%s-c", tp->name);
	else
		snprintf(name, sizeof(name), "%s-%u", tp->name, w->index);
	name[15] = '\0'; /* the kernel keeps 15 bytes */
	pthread_setname_np(pthread_self(), name);
	exe__tls_worker_owner = tp;
	if (!w->temporary)
		exe__tp_tls_self = w;

	if (tp->init) {
		int rc = tp->init(tp->init_arg);

		if (rc != 0)
			exe__pool_mark_broken(&tp->base, "worker init failed in %s-%u: %s (%d)", tp->name,
			                      w->index, exe_strerror(rc < 0 ? rc : -rc), rc < 0 ? rc : -rc);
	}

	for (;;) {
		struct exe_future *f = next_task(w);
		int64_t spin_until;
		enum idle state;

		if (f) {
			/* A worker back from idle passes the wake on while work
			 * remains: submitters skip the wake-up while a worker
			 * spins (exe__tp_wake_needed()), so the spinner that takes the first
			 * task must wake the next sleeper, or tasks queued
			 * behind a long one wait with workers asleep. */
			if (was_idle && exe__tp_queue_nonempty(tp) && exe__tp_wake_needed(tp))
				exe__tp_wake_one(tp);
			was_idle = false;
			run_entry(w, f);
			continue;
		}
		if (w->temporary && retire(tp))
			break;
		spin_until = exe_now_ns() + SPIN_NS;
		atomic_fetch_add_explicit(&tp->spinners, 1, memory_order_relaxed);
		while (!exe__tp_queue_nonempty(tp) &&
		       !atomic_load_explicit(&tp->shutdown, memory_order_relaxed) &&
		       exe_now_ns() < spin_until) {
			for (int i = 0; i < 64; i++)
				ck_pr_stall();
			sched_yield();
		}
		was_idle = true;
		state = exe__tp_stop_spinning(tp);
		if (state == IDLE_EXIT)
			break;
		if (state == IDLE_PARK)
			exe__tp_park(tp);
	}
	if (w->temporary) {
		exe__free(w);
		/* Last touch of the pool: join_workers() waits for it. */
		atomic_fetch_sub(&tp->compensators, 1);
		return NULL;
	}
	atomic_fetch_sub(&tp->live_workers, 1);
	return NULL;
}

/* Start a thread that takes queued tasks while every worker sleeps in a
 * nested wait. Counted active from now, so concurrent blockers start one
 * each at most. Without memory or threads the waiter just sleeps (the pool
 * then relies on its other threads, as before the bound existed). */
static void start_compensator(struct thread_pool *tp)
{
	pthread_attr_t attr;
	struct worker *w;
	pthread_t t;

	if (atomic_load(&tp->shutdown) && !exe__tp_queue_nonempty(tp))
		return;
	if (atomic_fetch_add(&tp->compensators, 1) >= MAX_COMPENSATORS)
		goto undo;
	w = exe__aligned_calloc(64, 1, sizeof(*w));
	if (!w)
		goto undo;
	w->pool = tp;
	w->index = tp->nworkers;
	w->temporary = true;
	atomic_fetch_add(&tp->active, 1);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, exe__tp_worker_main, w) != 0) {
		atomic_fetch_sub(&tp->active, 1);
		exe__free(w);
		pthread_attr_destroy(&attr);
		goto undo;
	}
	pthread_attr_destroy(&attr);
	return;
undo:
	atomic_fetch_sub(&tp->compensators, 1);
}
