/*
 * future.c - the future state machine, waiting, done callbacks, promises.
 *
 * Design
 *  - One atomic word holds the state and flags (future_internal.h). Every
 *    transition is a CAS out of a non-final state, so exactly one transition
 *    to a final state happens. Completers that may race (promises) first set
 *    COMPLETING, then write the result fields, then publish the final state
 *    with release; readers load the word with acquire before reading fields.
 *  - Waiters spin briefly, then set WAITERS and sleep on the word (futex).
 *    The finishing CAS reads WAITERS and wakes them: no system call when
 *    nobody sleeps.
 *  - Callbacks live in a list guarded by a byte spinlock that is never held
 *    while user code runs. One thread at a time drains the list (cb_running);
 *    a callback added during the drain is appended and run by the drainer,
 *    so callbacks run in the order they were added.
 *
 * Invariants
 *  - A final state never changes; fields written before it are immutable
 *    after it (except value_free/msg of a running task, written by the one
 *    thread running it, before publication).
 *  - refs > 0 while anyone may touch the future; the producer holds one until
 *    its callbacks returned (rule 2 in future.h).
 *  - COMPLETING is never held while user code runs (no callback, no task):
 *    cancel() waits it out and reports the state that gets published.
 */
#include <ck_pr.h> /* ck_pr_stall(): the spin hint on every CPU (pause on x86) */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "errors.h"
#include "future_internal.h"
#include "futex.h"

/* Memory per pending pool task: the future is the task. */
_Static_assert(sizeof(struct exe_future) <= EXE__SMALL_SIZE, "a future must fit a small block");
_Static_assert(sizeof(struct exe__cb) <= EXE__SMALL_SIZE, "a callback node must fit a small block");

EXE__TLS void *exe__tls_worker_owner;
static EXE__TLS struct exe_future *tls_current_task;

/* The tasks this thread is running, innermost first: a task that waits runs
 * other tasks on its own stack (help), and each such run links a frame. */
struct run_frame {
	const struct exe_future *f;
	const struct run_frame *outer;
};
static EXE__TLS const struct run_frame *tls_frames;
_Static_assert(sizeof(((struct exe__task_ctx *)0)->frames) == sizeof(tls_frames), "frames pointer");

/* ---- small helpers ---- */

static void cb_lock(struct exe_future *f)
{
	/* acquire: pairs with the release in cb_unlock() */
	while (atomic_exchange_explicit(&f->cb_lock, 1, memory_order_acquire))
		while (atomic_load_explicit(&f->cb_lock, memory_order_relaxed))
			ck_pr_stall();
}

static void cb_unlock(struct exe_future *f)
{
	atomic_store_explicit(&f->cb_lock, 0, memory_order_release);
}

static enum exe_future_state state_of(uint32_t s)
{
	return (enum exe_future_state)(s & EXE__STATE_MASK);
}

static int normalize_code(int code)
{
	if (code > 0)
		return -code;
	return code == 0 ? -EINVAL : code;
}

static struct exe_future *init_future(struct exe_future *f, bool small, const struct exe__future_ops *ops,
                                      void *owner, uint32_t refs)
{
	if (!f)
		return NULL;
	f->small = small;
	atomic_init(&f->state, EXE_FUTURE_PENDING);
	atomic_init(&f->refs, refs);
	f->code = 0;
	atomic_init(&f->cb_lock, 0);
	f->cb_running = false;
	f->ops = ops;
	f->owner = owner;
	f->fn = NULL;
	f->arg = NULL;
	f->value = NULL;
	f->value_free = NULL;
	f->msg = NULL;
	f->cbs = NULL;
	f->cbs_tail = &f->cbs;
	f->next = NULL;
	f->done = NULL;
	f->done_arg = NULL;
	return f;
}

/* Plain futures (pool tasks, promises, derived futures) come from the
 * small-block cache; producers' larger objects from malloc, which their
 * own error paths free with exe__free(). */
struct exe_future *exe__future_new(const struct exe__future_ops *ops, void *owner, uint32_t refs)
{
	return init_future(exe__small_alloc(), true, ops, owner, refs);
}

struct exe_future *exe__future_new_sized(size_t size, const struct exe__future_ops *ops, void *owner,
                                         uint32_t refs)
{
	return init_future(exe__malloc(size), false, ops, owner, refs);
}

/* ---- callbacks ---- */

static void invoke(struct exe_future *f, exe_done_fn *fn, void *arg)
{
	int rc = fn(f, arg);

	if (rc != 0)
		exe__report_error("done callback", rc < 0 ? rc : -rc, NULL);
}

struct moved_cb {
	struct exe_future *f;
	exe_done_fn *fn;
	void *arg;
};

static int moved_cb_task(void *arg, void **result)
{
	struct moved_cb *m = arg;

	(void)result;
	invoke(m->f, m->fn, m->arg);
	exe_future_unref(m->f);
	exe__free(m);
	return 0;
}

/* Run a callback whose node was unlinked and copied (the node itself may
 * already be gone: internal waiters free theirs once unlinked or run). */
static void run_node(struct exe_future *f, const struct exe__cb *node)
{
	if (node->pool) {
		struct moved_cb *m = exe__malloc(sizeof(*m));
		int rc = -ENOMEM;

		if (m) {
			m->f = exe_future_ref(f);
			m->fn = node->fn;
			m->arg = node->arg;
			rc = exe_pool_submit(node->pool, moved_cb_task, m, NULL);
			if (rc == 0)
				return;
			exe_future_unref(f);
			exe__free(m);
		}
		exe__report_error("moving a done callback to its pool", rc,
		                  "the callback ran on the finishing thread instead");
	}
	invoke(f, node->fn, node->arg);
}

/* Drain the callback list if nobody else is draining it. Called with the
 * lock held; returns with it released. */
static void drain_locked(struct exe_future *f)
{
	struct exe__cb *node;

	if (f->cb_running) {
		cb_unlock(f);
		return;
	}
	f->cb_running = true;
	while ((node = f->cbs)) {
		struct exe__cb copy = *node;

		f->cbs = node->next;
		if (!f->cbs)
			f->cbs_tail = &f->cbs;
		/* Copy under the lock: once unlocked, a remover that no longer
		 * finds the node may free it. */
		cb_unlock(f);
		if (copy.heap)
			exe__small_free(node);
		run_node(f, &copy);
		cb_lock(f);
	}
	f->cb_running = false;
	cb_unlock(f);
}

/* Run the callbacks after the final state replaced @old. Without HAS_CBS in
 * @old no callback was queued before it (exe__future_add_node), and any
 * later adder sees the final state and drains itself: no lock taken on the
 * common path of a future nobody attached a callback to. */
static void run_callbacks(struct exe_future *f, uint32_t old)
{
	/* The callback set before publication comes first: it was attached
	 * before anything could add to the list. Immutable once published. */
	if (f->done)
		invoke(f, f->done, f->done_arg);
	if (!(old & EXE__HAS_CBS))
		return;
	cb_lock(f);
	drain_locked(f);
}

void exe__future_add_node(struct exe_future *f, struct exe__cb *node)
{
	uint32_t s;

	node->next = NULL;
	cb_lock(f);
	*f->cbs_tail = node;
	f->cbs_tail = &node->next;
	/* Announce the node in the state word, unless the state is final. The
	 * completer's CAS to the final state and ours are ordered on the same
	 * word: either it sees HAS_CBS and drains (taking this lock after us),
	 * or we see the final state and drain ourselves. */
	s = atomic_load_explicit(&f->state, memory_order_acquire);
	while (!exe__state_finished(s) && !(s & EXE__HAS_CBS) &&
	       !atomic_compare_exchange_weak_explicit(&f->state, &s, s | EXE__HAS_CBS, memory_order_acq_rel,
	                                              memory_order_acquire))
		;
	if (exe__state_finished(s))
		drain_locked(f);
	else
		cb_unlock(f);
}

bool exe__future_remove_node(struct exe_future *f, struct exe__cb *node)
{
	struct exe__cb **pp;
	bool found = false;

	cb_lock(f);
	for (pp = &f->cbs; *pp; pp = &(*pp)->next) {
		if (*pp == node) {
			*pp = node->next;
			if (!*pp)
				f->cbs_tail = pp;
			found = true;
			break;
		}
	}
	cb_unlock(f);
	return found;
}

static int add_callback(struct exe_future *f, struct exe_pool *pool, exe_done_fn *cb, void *arg)
{
	struct exe__cb *node;

	if (!f || !cb)
		return -EINVAL;
	/* Already finished and nobody draining: run it here without a node.
	 * Order holds: nothing is queued ahead, and callbacks added while it
	 * runs queue behind it (cb_running) and are drained below. */
	if (!pool && exe_future_is_finished(f)) {
		cb_lock(f);
		if (!f->cbs && !f->cb_running) {
			f->cb_running = true;
			cb_unlock(f);
			invoke(f, cb, arg);
			cb_lock(f);
			f->cb_running = false;
			drain_locked(f);
			return 0;
		}
		cb_unlock(f);
	}
	/* A small block, like futures: freed on the finishing thread, which
	 * malloc makes a cross-thread free per callback. */
	node = exe__small_alloc();
	if (!node)
		return -ENOMEM;
	node->fn = cb;
	node->arg = arg;
	node->pool = pool;
	node->heap = true;
	exe__future_add_node(f, node);
	return 0;
}

int exe_future_on_done(struct exe_future *f, exe_done_fn *cb, void *arg)
{
	return add_callback(f, NULL, cb, arg);
}

int exe_future_on_done_in(struct exe_future *f, struct exe_pool *pool, exe_done_fn *cb, void *arg)
{
	if (!pool)
		return -EINVAL;
	return add_callback(f, pool, cb, arg);
}

/* ---- transitions ---- */

/* Publish a final state. @expect_owned: the caller holds the future
 * exclusively (no COMPLETING race to win). Wakes sleepers, runs callbacks. */
static void publish(struct exe_future *f, enum exe_future_state final)
{
	uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
	uint32_t n;

	do {
		n = (s & (EXE__CANCEL_REQ | EXE__HELPABLE)) | final;
		/* release: pairs with the acquire loads of readers, so value,
		 * code and msg written before are visible with the state. */
	} while (!atomic_compare_exchange_weak_explicit(&f->state, &s, n, memory_order_acq_rel,
	                                                memory_order_relaxed));
	if (s & EXE__WAITERS)
		exe__futex_wake(&f->state, EXE_FUTEX_WAKE_ALL);
	run_callbacks(f, s);
}

void exe__future_complete_owned(struct exe_future *f, int code, void *value, char *msg)
{
	if (code == 0) {
		f->value = value;
		if (msg)
			exe__free(msg);
		if (f->msg) {
			exe__free(f->msg);
			f->msg = NULL;
		}
		publish(f, EXE_FUTURE_DONE);
		return;
	}
	f->code = normalize_code(code);
	if (msg) {
		exe__free(f->msg);
		f->msg = msg;
	}
	publish(f, EXE_FUTURE_FAILED);
}

/* Win the right to complete @f (promises: several threads may try). */
static bool begin_completion(struct exe_future *f)
{
	uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);

	while (!exe__state_finished(s) && !(s & EXE__COMPLETING)) {
		if (atomic_compare_exchange_weak_explicit(&f->state, &s, s | EXE__COMPLETING,
		                                          memory_order_acquire, memory_order_relaxed))
			return true;
	}
	return false;
}

int exe__future_run(struct exe_future *f)
{
	struct exe_future *saved = tls_current_task;
	struct run_frame frame = {f, tls_frames};
	void *value = NULL;
	int code;

	tls_current_task = f;
	tls_frames = &frame;
	code = f->fn(f->arg, &value);
	tls_frames = frame.outer;
	tls_current_task = saved;
	if (code > 0)
		code = -code;
	exe__future_complete_owned(f, code, value, NULL);
	return code;
}

bool exe__future_runs_here(const struct exe_future *f)
{
	const struct run_frame *fr;

	if (f == tls_current_task)
		return true;
	for (fr = tls_frames; fr; fr = fr->outer)
		if (fr->f == f)
			return true;
	return false;
}

bool exe__future_help(struct exe_future *f)
{
	uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);

	if (state_of(s) != EXE_FUTURE_PENDING || !f->ops || !f->ops->help)
		return false;
	/* A worker waiting on a task of its own pool must help (else one-worker
	 * pools deadlock); other threads only where the pool allows it. The
	 * owner is compared, never dereferenced: it may be gone once @f
	 * finished. */
	if (!(s & EXE__HELPABLE) && exe__tls_worker_owner != f->owner)
		return false;
	return f->ops->help(f);
}

/* Whether this thread, waiting forever on @f, may run other queued work of
 * its owner meanwhile (the same rule as exe__future_help()). */
static bool may_help_others(struct exe_future *f)
{
	uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);

	if (!f->ops || !f->ops->help_other)
		return false;
	return (s & EXE__HELPABLE) || exe__tls_worker_owner == f->owner;
}

/* While RUNNING @f is not finished, run other queued work of its owner.
 * Return true when @f finished meanwhile. */
static bool help_others_until_done(struct exe_future *f)
{
	while (!exe__state_finished(atomic_load_explicit(&f->state, memory_order_acquire)))
		if (!f->ops->help_other(f))
			return false;
	return true;
}

/* ---- queries ---- */

/* The NULL rule for queries (future.h): NULL reads as a future that FAILED
 * with -EINVAL, so every query agrees with every other and none crashes. */

enum exe_future_state exe_future_state(const struct exe_future *f)
{
	if (!f)
		return EXE_FUTURE_FAILED;
	return state_of(atomic_load_explicit(&((struct exe_future *)f)->state, memory_order_acquire));
}

bool exe_future_is_finished(const struct exe_future *f)
{
	if (!f)
		return true;
	return exe__state_finished(
	    atomic_load_explicit(&((struct exe_future *)f)->state, memory_order_acquire));
}

int exe_future_code(const struct exe_future *f)
{
	if (!f)
		return -EINVAL;
	switch (exe_future_state(f)) {
	case EXE_FUTURE_DONE: return 0;
	case EXE_FUTURE_FAILED: return f->code;
	case EXE_FUTURE_CANCELLED: return -ECANCELED;
	default: return -ETIMEDOUT; /* not finished: a 0-timeout wait */
	}
}

const char *exe_future_error(const struct exe_future *f)
{
	if (!f)
		return exe_strerror(-EINVAL);
	switch (exe_future_state(f)) {
	case EXE_FUTURE_FAILED: return f->msg ? f->msg : exe_strerror(f->code);
	case EXE_FUTURE_CANCELLED: return f->msg ? f->msg : exe_strerror(-ECANCELED);
	default: return NULL;
	}
}

bool exe_future_cancel_requested(const struct exe_future *f)
{
	uint32_t s;

	if (!f)
		return false;
	s = atomic_load_explicit(&((struct exe_future *)f)->state, memory_order_relaxed);

	return (s & EXE__CANCEL_REQ) || state_of(s) == EXE_FUTURE_CANCELLED;
}

/* ---- waiting ---- */

/*
 * The spin before a futex sleep, by the state the waiter sees (measured on 2
 * vCPUs; see the thread pool's benchmarks, rows latency-hot and
 * latency-worker):
 *  - PENDING: nobody has claimed the task. If a worker is awake it claims it
 *    within a cache-line transfer (< 1 us); if not, the wake-up the submit
 *    sent takes ~20 us, and the kernel may put the woken worker on this very
 *    CPU, where a spinning waiter would keep it off the CPU for the whole
 *    spin. So watch only PENDING_SPIN_NS for the claim, then sleep.
 *  - RUNNING: the task is on a CPU; a result microseconds away costs less to
 *    watch than a futex round trip. Spin up to RUNNING_SPIN_NS, yielding
 *    every YIELD_NS, so a runnable thread queued on this CPU (the task's own
 *    thread preempted here, or the one it will wake) gets the CPU at once.
 */
#define PENDING_SPIN_NS 2000
#define RUNNING_SPIN_NS (20 * 1000)
#define YIELD_NS 2000

/* Watch @f until it finishes (true) or the policy above says sleep. A
 * @helper (an infinite wait that may help) looks for other work of the
 * owner every ~microsecond meanwhile (fork-join: the other workers' deques
 * fill while we watch); work found restarts the budget. */
static bool spin_until_finished(struct exe_future *f, int64_t deadline, bool helper)
{
	int64_t start = exe_now_ns(), now = start, last_yield = start;
	bool running = false;
	uint32_t s;
	int spins;

	for (spins = 1;; spins++) {
		ck_pr_stall();
		s = atomic_load_explicit(&f->state, memory_order_acquire);
		if (exe__state_finished(s))
			return true;
		if (spins % 32)
			continue;
		if (helper && f->ops->help_other(f)) {
			start = last_yield = exe_now_ns();
			continue;
		}
		now = exe_now_ns();
		if (deadline >= 0 && now >= deadline)
			return false;
		if (state_of(s) == EXE_FUTURE_RUNNING) {
			/* The budget counts from the start: a task claimed late
			 * does not get a fresh one. */
			running = true;
			if (now - start >= RUNNING_SPIN_NS)
				return false;
			if (now - last_yield >= YIELD_NS) {
				sched_yield();
				last_yield = now;
			}
		} else if (!running && now - start >= PENDING_SPIN_NS) {
			return false;
		} else if (running) {
			return false; /* back to PENDING cannot happen; be safe */
		}
	}
}

/* Sleep on the state word until @f finishes or @deadline passes. */
static int sleep_until_finished(struct exe_future *f, int64_t deadline)
{
	int rc = 0;
	bool blocked = false;
	uint32_t s;

	for (;;) {
		s = atomic_load_explicit(&f->state, memory_order_acquire);
		if (exe__state_finished(s))
			break;
		if (!(s & EXE__WAITERS) &&
		    !atomic_compare_exchange_weak_explicit(&f->state, &s, s | EXE__WAITERS,
		                                           memory_order_acquire, memory_order_acquire))
			continue;
		/* A pool worker about to sleep on a task of its own pool tells
		 * the pool, which keeps a thread running for its queue (nested
		 * waits past the help bound, see thread_pool.c). */
		if (!blocked && exe__tls_worker_owner == f->owner && f->ops && f->ops->blocking) {
			f->ops->blocking(f, true);
			blocked = true;
		}
		/* The completer's CAS sees WAITERS and wakes us; if it won
		 * first, the word differs and the wait returns at once. */
		if (exe__futex_wait(&f->state, s | EXE__WAITERS, deadline) == -ETIMEDOUT) {
			if (!exe_future_is_finished(f))
				rc = -ETIMEDOUT;
			break;
		}
		if (deadline >= 0 && exe_now_ns() >= deadline && !exe_future_is_finished(f)) {
			rc = -ETIMEDOUT;
			break;
		}
	}
	if (blocked)
		f->ops->blocking(f, false);
	return rc;
}

int exe_future_wait(struct exe_future *f, int64_t timeout_ns)
{
	int64_t deadline;
	bool helper;
	uint32_t s;

	if (!f)
		return -EINVAL;
	s = atomic_load_explicit(&f->state, memory_order_acquire);
	if (exe__state_finished(s))
		return 0;
	if (timeout_ns == 0)
		return -ETIMEDOUT;
	/* The task (or continuation) running on this thread can only finish
	 * after this wait returns. */
	if (exe__future_runs_here(f))
		return -EDEADLK;
	/* A fiber parks at once: spinning or running a pool task here would
	 * hold up every fiber of its thread. */
	if (exe__in_fiber())
		return exe__fiber_wait_future(f, timeout_ns);
	helper = timeout_ns < 0 && may_help_others(f);
	if (timeout_ns < 0 && (exe__future_help(f) || (helper && help_others_until_done(f))))
		return 0;
	deadline = exe__deadline(timeout_ns);
	if (spin_until_finished(f, deadline, helper))
		return 0;
	return sleep_until_finished(f, deadline);
}

int exe_future_result(struct exe_future *f, void **value, int64_t timeout_ns)
{
	uint32_t s;
	int rc;

	/* Already finished (a callback reading its future, a result collected
	 * after a wait): one load, no call chain. acquire: pairs with the
	 * release in publish(), so value and code are complete. */
	if (f) {
		s = atomic_load_explicit(&f->state, memory_order_acquire);
		if (exe__state_finished(s)) {
			rc = state_of(s) == EXE_FUTURE_DONE     ? 0
			     : state_of(s) == EXE_FUTURE_FAILED ? f->code
			                                        : -ECANCELED;
			if (value)
				*value = rc == 0 ? f->value : NULL;
			return rc;
		}
	}
	rc = exe_future_wait(f, timeout_ns);

	if (rc)
		return rc;
	rc = exe_future_code(f);
	if (value)
		*value = rc == 0 ? f->value : NULL;
	return rc;
}

/* ---- cancel ---- */

static int cancel(struct exe_future *f, bool pending_only)
{
	unsigned completing_spins = 0;
	uint32_t s;

	s = atomic_load_explicit(&f->state, memory_order_acquire);
	for (;;) {
		/* A completer won the race and is writing the result: it
		 * publishes the final state without running user code first,
		 * so wait for it and report what it published (the work did
		 * not "run" because a completion is under way). */
		if (s & EXE__COMPLETING) {
			/* The window is a few stores long, unless the completer
			 * was preempted: then give it the CPU. */
			if (++completing_spins % 64 == 0)
				sched_yield();
			else
				ck_pr_stall();
			s = atomic_load_explicit(&f->state, memory_order_acquire);
			continue;
		}
		switch (state_of(s)) {
		case EXE_FUTURE_CANCELLED: return 0;
		case EXE_FUTURE_DONE:
		case EXE_FUTURE_FAILED: return -EALREADY;
		case EXE_FUTURE_PENDING:
			if (f->ops && f->ops->revoke && f->ops->revoke(f) != 0) {
				s = atomic_load_explicit(&f->state, memory_order_acquire);
				continue; /* it started: RUNNING now */
			}
			if (atomic_compare_exchange_weak_explicit(&f->state, &s,
			                                          (s & ~(EXE__STATE_MASK | EXE__WAITERS)) |
			                                              EXE__CANCEL_REQ | EXE_FUTURE_CANCELLED,
			                                          memory_order_acq_rel,
			                                          memory_order_acquire)) {
				/* One cancel transition wakes everyone: sleepers
				 * here, exe_wait()/as_completed() through their
				 * callbacks below. */
				if (f->ops && f->ops->cancelled)
					f->ops->cancelled(f);
				if (s & EXE__WAITERS)
					exe__futex_wake(&f->state, EXE_FUTEX_WAKE_ALL);
				run_callbacks(f, s);
				return 0;
			}
			continue;
		default: break;
		}
		/* RUNNING: ask it to stop. */
		if (pending_only)
			return -EBUSY;
		if (atomic_compare_exchange_weak_explicit(&f->state, &s, s | EXE__CANCEL_REQ,
		                                          memory_order_acq_rel, memory_order_acquire)) {
			if (!(s & EXE__CANCEL_REQ) && f->ops && f->ops->cancel_running)
				f->ops->cancel_running(f);
			return -EBUSY;
		}
	}
}

int exe_future_cancel(struct exe_future *f)
{
	if (!f)
		return -EINVAL;
	return cancel(f, false);
}

int exe__future_cancel_pending(struct exe_future *f)
{
	return cancel(f, true);
}

/* ---- references ---- */

struct exe_future *exe_future_ref(struct exe_future *f)
{
	if (!f)
		return NULL;
	/* relaxed: taking a reference needs one already held. */
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
	return f;
}

static const char dropped_msg[] = "promise dropped without a result";

void exe_future_unref(struct exe_future *f)
{
	if (!f)
		return;
	/* release/acquire: every use by other holders happens before the free. */
	if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (!exe_future_is_finished(f)) {
		/* Only a promise can get here unfinished (producers hold a
		 * reference). Nobody can complete it any more: cancel it so its
		 * callbacks run and nothing waits forever. */
		atomic_store_explicit(&f->refs, 1, memory_order_relaxed);
		if (begin_completion(f)) {
			f->msg = exe__malloc(sizeof(dropped_msg));
			if (f->msg)
				memcpy(f->msg, dropped_msg, sizeof(dropped_msg));
			publish(f, EXE_FUTURE_CANCELLED);
		}
		if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
			return;
	}
	if (f->value_free && exe_future_state(f) == EXE_FUTURE_DONE)
		f->value_free(f->value);
	exe__future_discard(f);
}

void exe__future_discard(struct exe_future *f)
{
	if (!f)
		return;
	exe__free(f->msg);
	if (f->small)
		exe__small_free(f);
	else
		exe__free(f);
}

/* ---- promises ---- */

static const struct exe__future_ops promise_ops = {0};

int exe_future_create(struct exe_future **out)
{
	struct exe_future *f;

	if (!out)
		return -EINVAL;
	f = exe__future_new(&promise_ops, NULL, 1);
	if (!f)
		return -ENOMEM;
	*out = f;
	return 0;
}

int exe_future_start(struct exe_future *f)
{
	/* Only a promise is started by user code: claiming a pool task or a
	 * derived future here would leave it RUNNING with nobody to finish it. */
	if (!f || f->ops != &promise_ops)
		return -EINVAL;
	if (exe__future_claim(f))
		return 0;
	return exe_future_state(f) == EXE_FUTURE_CANCELLED ? -ECANCELED : -EALREADY;
}

int exe__future_complete(struct exe_future *f, int code, void *value, exe_free_fn *free_fn, char *msg)
{
	if (!begin_completion(f)) {
		exe__free(msg);
		return -EALREADY;
	}
	if (code == 0) {
		f->value = value;
		f->value_free = free_fn;
		exe__free(msg);
		exe__free(f->msg);
		f->msg = NULL;
		publish(f, EXE_FUTURE_DONE);
	} else {
		f->code = normalize_code(code);
		if (msg) {
			exe__free(f->msg);
			f->msg = msg;
		}
		publish(f, EXE_FUTURE_FAILED);
	}
	return 0;
}

int exe_future_set_result(struct exe_future *f, void *value, exe_free_fn *free_fn)
{
	if (!f || f->ops != &promise_ops)
		return -EINVAL;
	return exe__future_complete(f, 0, value, free_fn, NULL);
}

int exe_future_set_error(struct exe_future *f, int code, const char *fmt, ...)
{
	char *msg = NULL;
	va_list ap;

	if (!f || f->ops != &promise_ops)
		return -EINVAL;
	if (exe_future_is_finished(f))
		return -EALREADY;
	if (fmt) {
		va_start(ap, fmt);
		msg = exe__vasprintf(fmt, ap);
		va_end(ap);
	}
	return exe__future_complete(f, code == 0 ? -EINVAL : code, NULL, NULL, msg);
}

/* ---- inside a task ---- */

bool exe_task_cancelled(void)
{
	return tls_current_task && exe_future_cancel_requested(tls_current_task);
}

struct exe_future *exe_task_future(void)
{
	return tls_current_task;
}

struct exe_future *exe__task_swap(struct exe_future *f)
{
	struct exe_future *old = tls_current_task;

	tls_current_task = f;
	return old;
}

void exe__task_ctx_swap(struct exe__task_ctx *ctx)
{
	struct exe__task_ctx mine = {tls_current_task, tls_frames};

	tls_current_task = ctx->task;
	tls_frames = ctx->frames;
	*ctx = mine;
}

int exe_task_set_error(int code, const char *fmt, ...)
{
	struct exe_future *f = tls_current_task;
	va_list ap;
	char *msg;

	if (!f || !fmt)
		return code;
	va_start(ap, fmt);
	msg = exe__vasprintf(fmt, ap);
	va_end(ap);
	exe__free(f->msg);
	f->msg = msg;
	return code;
}

void exe_task_set_result_free(exe_free_fn *free_fn)
{
	if (tls_current_task)
		tls_current_task->value_free = free_fn;
}
