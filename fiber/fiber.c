/*
 * fiber.c - stackful fibers on an io context's thread: spawn, the hub's run
 * queue, the context switch, park and wake, cancel, reaping.
 *
 * Design
 *  - The io thread is the hub (gevent's word): between passes of its loop
 *    it resumes every ready fiber once (exe__fiber_run). A fiber runs until
 *    it waits, yields or returns, then jumps back to the hub. Switches are
 *    Boost.Context's jump_fcontext: a fiber's registers are saved on its
 *    own stack, so a switch is a few stores and loads (no system call, no
 *    signal mask), and fibers never switch to each other directly: the hub
 *    in between keeps the ready order and reaping simple.
 *  - A fiber object is its future (the first member), one allocation like
 *    an io operation. The hub holds the producer reference from adoption
 *    until it reaps the fiber; the stack is returned to the context's pool
 *    at reaping, on the hub's own stack.
 *  - Parking (fiber_obj.h): the fiber moves its park word to PREPARING,
 *    registers its wakers (a done callback, a parking-lot entry, a timer),
 *    then CASes PREPARING -> PARKED and switches out. Any waker CASes the
 *    word from PREPARING or PARKED to a reason: at most one wins. The
 *    winner over PARKED makes the fiber ready: directly when it runs on the
 *    hub thread, else by pushing the fiber's run_node on the context's
 *    request stack (io.c pops it and calls exe__fiber_request). A winner
 *    over PREPARING needs to do nothing: the fiber's own CAS fails and it
 *    does not switch.
 *  - Cancel of a running fiber is delivered on the hub: the canceller
 *    pushes cxl_node (or, on the hub thread, delivers at once), which sets
 *    cancel_pending and wakes the fiber if parked. Only the hub writes
 *    cancel_pending and only the fiber (on the hub thread) reads it, so it
 *    needs no atomics.
 *
 * Invariants
 *  - run_node is pushed at most once per park (only the waker that took
 *    the word from PARKED pushes it) plus once at spawn, and the hub pops
 *    it before resuming the fiber: it is never queued twice.
 *  - A fiber that finished with CANCEL_REQ in its final state has, or will
 *    have, a canceller pushing cxl_node: the hub keeps it (and io->live)
 *    until that entry is popped, as io.c does for operations. So a
 *    canceller always finds the fiber and its io context alive.
 *  - A remote waker or canceller counts itself in io->active around its
 *    push: the parked fiber keeps io alive until then (it is in io->live
 *    and cannot finish before it is resumed).
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "errors.h"
#include "fiber_obj.h"

#include "sanitizer.h"

/* Batches of ready fibers one pass of the io loop may run back to back
 * while nothing else is pending (exe__fiber_run), and how long: the pass
 * in between (timers, a system call to the kernel ring) costs microseconds,
 * a batch of one yielding fiber tens of nanoseconds. */
#define MAX_ROUNDS 4096
#define ROUNDS_CLOCK_EVERY 64
#define ROUNDS_MAX_NS (100 * 1000)

_Thread_local struct exe__fiber *exe__tls_fiber;
_Thread_local struct exe_io *exe__tls_hub;

static void fiber_cancel_running(struct exe_future *f);

static const struct exe__future_ops fiber_ops = {
    /* Cancelled before it started: the hub drops it when it comes up. */
    .cancelled = NULL,
    .cancel_running = fiber_cancel_running,
};

void exe__fiber_sched_init(struct exe_io *io)
{
	struct exe__fiber_sched *s = &io->fibers;

	pthread_mutex_init(&s->wd_lock, NULL);
	atomic_init(&s->wd_bound, 0);
	atomic_init(&s->wd_seq, 0);
	atomic_init(&s->wd_since, 0);
	atomic_init(&s->wd_stop, 0);
	for (int i = 0; i < 4; i++)
		atomic_init(&s->wd_name[i], 0);
}

void exe__fiber_sched_fini(struct exe_io *io)
{
	exe__watchdog_stop(&io->fibers);
	exe__stack_drain(&io->fibers);
	pthread_mutex_destroy(&io->fibers.wd_lock);
}

/* ---- the run queue and live list (hub thread) ---- */

static void ready_push(struct exe__fiber_sched *s, struct exe__fiber *fb)
{
	fb->ready_next = NULL;
	if (s->ready_tail)
		s->ready_tail->ready_next = fb;
	else
		s->ready_head = fb;
	s->ready_tail = fb;
}

static void live_unlink(struct exe_io *io, struct exe__fiber *fb)
{
	struct exe__fiber_sched *s = &io->fibers;

	if (fb->live_prev)
		fb->live_prev->live_next = fb->live_next;
	else
		s->live = fb->live_next;
	if (fb->live_next)
		fb->live_next->live_prev = fb->live_prev;
	io->live--;
}

/* The hub takes a new fiber: counted, listed, ready to start. */
static void adopt(struct exe_io *io, struct exe__fiber *fb)
{
	struct exe__fiber_sched *s = &io->fibers;

	fb->adopted = true;
	fb->live_prev = NULL;
	fb->live_next = s->live;
	if (s->live)
		s->live->live_prev = fb;
	s->live = fb;
	io->live++;
	/* Teardown already cancelled the others: this one never starts. */
	if (s->cancelled_all || atomic_load_explicit(&io->shutdown, memory_order_acquire))
		exe_future_cancel(&fb->fut);
	ready_push(s, fb);
}

/* Make a woken fiber ready; any thread. */
static void enqueue(struct exe__fiber *fb)
{
	struct exe_io *io = fb->io;

	if (exe__tls_hub == io) {
		ready_push(&io->fibers, fb);
		return;
	}
	/* io is alive: fb is parked and counted in io->live (see Invariants). */
	atomic_fetch_add_explicit(&io->active, 1, memory_order_seq_cst);
	fb->run_node.f = &fb->fut;
	fb->run_node.kind = EXE__REQ_FIBER;
	exe__io_push(io, &fb->run_node);
	exe__io_wake(io);
	/* release: pairs with the acquire load in drained(); our last touch of
	 * io happens before teardown sees 0. */
	atomic_fetch_sub_explicit(&io->active, 1, memory_order_release);
}

bool exe__fiber_wake(struct exe__fiber *fb, uint32_t reason)
{
	uint32_t s = atomic_load_explicit(&fb->park, memory_order_relaxed);

	do {
		if (s != EXE__PARK_PREPARING && s != EXE__PARK_PARKED)
			return false;
		/* acq_rel: pairs with the fiber's CAS to PARKED (release of its
		 * registrations) and with its acquire load after resuming (our
		 * writes before the wake, e.g. a queue item, are visible). */
	} while (!atomic_compare_exchange_weak_explicit(&fb->park, &s, reason, memory_order_acq_rel,
	                                                memory_order_relaxed));
	if (s == EXE__PARK_PARKED)
		enqueue(fb);
	return true;
}

/* ---- cancel ---- */

/* Hub thread: the fiber's future was cancelled while RUNNING. */
static void deliver_cancel(struct exe__fiber *fb)
{
	fb->cancel_seen = true;
	fb->cancel_pending = true;
	exe__fiber_wake(fb, EXE__WOKE_CANCEL);
}

static void fiber_cancel_running(struct exe_future *f)
{
	struct exe__fiber *fb = (struct exe__fiber *)f;
	struct exe_io *io = fb->io;

	if (exe__tls_hub == io) {
		deliver_cancel(fb);
		return;
	}
	/* io and fb are alive until this entry is popped (Invariants). */
	atomic_fetch_add_explicit(&io->active, 1, memory_order_seq_cst);
	fb->cxl_node.f = f;
	fb->cxl_node.kind = EXE__REQ_FIBER_CANCEL;
	exe__io_push(io, &fb->cxl_node);
	exe__io_wake(io);
	/* release: pairs with the acquire load in drained(). */
	atomic_fetch_sub_explicit(&io->active, 1, memory_order_release);
}

void exe__fiber_cancel_all(struct exe_io *io)
{
	struct exe__fiber_sched *s = &io->fibers;
	struct exe__fiber *fb, *next;

	if (s->cancelled_all)
		return;
	s->cancelled_all = true;
	for (fb = s->live; fb; fb = next) {
		next = fb->live_next;
		/* Not started: CANCELLED, dropped when it comes up. Running:
		 * delivered at once (this is the hub thread). */
		exe_future_cancel(&fb->fut);
	}
}

/* ---- reaping ---- */

static void release(struct exe_io *io, struct exe__fiber *fb)
{
	live_unlink(io, fb);
	exe_future_unref(&fb->fut);
}

/* A fiber that finished (or never started) leaves the hub. */
static void reap(struct exe_io *io, struct exe__fiber *fb)
{
	uint32_t st;

	if (fb->stack) {
		exe__stack_put(&io->fibers, fb->stack);
		fb->stack = NULL;
	}
	fb->tsan_fiber = NULL; /* it stays with the stack (stack.c) */
	/* A canceller that won its CAS while fb was RUNNING will push
	 * cxl_node (unless it was delivered here already): keep fb until it
	 * comes. One that cancelled it PENDING pushes nothing. */
	st = atomic_load_explicit(&fb->fut.state, memory_order_acquire);
	if (fb->started && (st & EXE__CANCEL_REQ) && !fb->cancel_seen) {
		fb->await_cancel = true;
		return;
	}
	release(io, fb);
}

void exe__fiber_request(struct exe_io *io, int kind, struct exe_future *f)
{
	struct exe__fiber *fb = (struct exe__fiber *)f;

	if (kind == EXE__REQ_FIBER_CANCEL) {
		if (fb->await_cancel) {
			fb->cancel_seen = true;
			release(io, fb);
		} else {
			deliver_cancel(fb);
		}
		return;
	}
	if (!fb->adopted)
		adopt(io, fb);
	else
		ready_push(&io->fibers, fb);
}

/* ---- switching ---- */

static void fiber_main(struct exe__transfer t);

/* Sanitizer hooks around every jump. ASan must know which stack is live
 * (else it reports the other stack's frames as overflows); TSan needs one
 * fiber state per fiber (else it sees the same thread's accesses from
 * several stacks as one history). Empty in plain builds. */
static inline void hub_leaving(struct exe__fiber_sched *s, struct exe__fiber *fb, void **fake)
{
#if defined(EXE_TSAN)
	s->tsan_hub = __tsan_get_current_fiber();
	__tsan_switch_to_fiber(fb->tsan_fiber, 0);
#endif
#if defined(EXE_ASAN)
	size_t usable;
	void *top = exe__stack_top(fb->stack, &usable);

	__sanitizer_start_switch_fiber(fake, (char *)top - usable, usable);
#endif
	(void)s, (void)fb, (void)fake;
}

static inline void hub_back(void *fake)
{
#if defined(EXE_ASAN)
	__sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
	(void)fake;
}

static inline void fiber_leaving(struct exe__fiber_sched *s, struct exe__fiber *fb, bool dying)
{
#if defined(EXE_ASAN)
	__sanitizer_start_switch_fiber(dying ? NULL : &fb->asan_fake, s->asan_hub_bottom, s->asan_hub_size);
#endif
#if defined(EXE_TSAN)
	__tsan_switch_to_fiber(s->tsan_hub, 0);
#endif
	(void)s, (void)fb, (void)dying;
}

static inline void fiber_back(struct exe__fiber_sched *s, struct exe__fiber *fb)
{
#if defined(EXE_ASAN)
	__sanitizer_finish_switch_fiber(fb->asan_fake, &s->asan_hub_bottom, &s->asan_hub_size);
#endif
	(void)s, (void)fb;
}

static char *msg_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *msg_printf(const char *fmt, ...)
{
	va_list ap;
	char *m;

	va_start(ap, fmt);
	m = exe__vasprintf(fmt, ap);
	va_end(ap);
	return m;
}

/* First run: claim, map a stack, make the context. Return 0 or a code
 * (the fiber is then finished or dropped). */
static int start(struct exe_io *io, struct exe__fiber *fb)
{
	size_t usable;
	void *top;
	int rc;

	if (!exe__future_claim(&fb->fut))
		return -ECANCELED; /* cancelled before it started */
	fb->started = true;
	rc = exe__stack_get(&io->fibers, fb->stack_size, &fb->stack);
	if (rc) {
		exe__future_complete_owned(&fb->fut, rc, NULL,
		                           msg_printf("fiber \"%s\": no stack of %zu bytes (%s)", fb->name,
		                                      fb->stack_size, exe_strerror(rc)));
		return rc;
	}
	top = exe__stack_top(fb->stack, &usable);
	fb->ctx = make_fcontext(top, usable, fiber_main);
#if defined(EXE_TSAN)
	{
		void **slot = exe__stack_tsan_fiber(fb->stack);

		if (!*slot)
			*slot = __tsan_create_fiber(0);
		fb->tsan_fiber = *slot;
	}
#endif
	return 0;
}

/* Hub: run @fb until it switches out. */
static void resume(struct exe_io *io, struct exe__fiber *fb)
{
	struct exe__fiber_sched *s = &io->fibers;
	struct exe__transfer t;
	bool watched;
	void *fake = NULL;

	if (!fb->started && start(io, fb)) {
		reap(io, fb);
		return;
	}
	/* The fiber's task context in, the hub's out: exe_task_future() and
	 * friends see the fiber's future, and the frames of tasks a fiber runs
	 * stay with its stack while it is switched out. */
	exe__task_ctx_swap(&fb->task_ctx);
	exe__tls_fiber = fb;
	watched = atomic_load_explicit(&s->wd_bound, memory_order_relaxed) > 0;
	if (watched)
		exe__watchdog_enter(s, fb);
	hub_leaving(s, fb, &fake);
	t = jump_fcontext(fb->ctx, fb);
	hub_back(fake);
	fb->ctx = t.fctx;
	if (watched)
		exe__watchdog_leave(s);
	exe__tls_fiber = NULL;
	exe__task_ctx_swap(&fb->task_ctx);
	if (fb->dead)
		reap(io, fb);
}

/* Fiber: back to the hub; returns when resumed. */
static void switch_out(struct exe__fiber *fb)
{
	struct exe__fiber_sched *s = &fb->io->fibers;
	struct exe__transfer t;

	fiber_leaving(s, fb, false);
	t = jump_fcontext(s->hub_ctx, NULL);
	/* The hub may have been another thread's stack (a manual context). */
	s = &fb->io->fibers;
	s->hub_ctx = t.fctx;
	fiber_back(s, fb);
}

static void fiber_main(struct exe__transfer t)
{
	struct exe__fiber *fb = t.data;
	struct exe__fiber_sched *s = &fb->io->fibers;

	s->hub_ctx = t.fctx;
#if defined(EXE_ASAN)
	__sanitizer_finish_switch_fiber(NULL, &s->asan_hub_bottom, &s->asan_hub_size);
#endif
	exe__future_run(&fb->fut);
	fb->dead = true;
	fiber_leaving(s, fb, true);
	jump_fcontext(s->hub_ctx, NULL);
	abort(); /* a dead fiber is never resumed */
}

/* Nothing but fibers is waiting for the hub: no request, no completion
 * (both cheap to check: no lock, no system call; the ring's every few
 * batches only, it is an indirect call). */
static bool hub_otherwise_idle(struct exe_io *io, int round)
{
	if (atomic_load_explicit(&io->stack, memory_order_relaxed) != NULL)
		return false;
	return round % 8 != 0 || !(io->be->pending && io->be->pending(io));
}

int exe__fiber_run(struct exe_io *io)
{
	struct exe__fiber_sched *s = &io->fibers;
	struct exe__fiber *fb, *next;
	int n = 0, rounds;

	/* Batches: fibers readied during one (yields, wakes by other
	 * fibers) run in the next. Between batches the loop goes back to its
	 * pass (requests, timers, completions) whenever one of those has
	 * work, and after ~ROUNDS_MAX_NS at the latest, for timers. */
	int64_t until = 0;

	for (rounds = 0; rounds < MAX_ROUNDS && (fb = s->ready_head); rounds++) {
		if (rounds > 0 && !hub_otherwise_idle(io, rounds))
			break;
		if (rounds % ROUNDS_CLOCK_EVERY == 0 && rounds > 0) {
			int64_t now = exe_now_ns();

			if (!until)
				until = now + ROUNDS_MAX_NS;
			else if (now >= until)
				break; /* timers are due a look */
		}
		s->ready_head = s->ready_tail = NULL;
		for (; fb; fb = next) {
			next = fb->ready_next;
			resume(io, fb);
			n++;
		}
	}
	return n + (s->ready_head != NULL);
}

/* ---- parking ---- */

static int wake_on_timer(void *arg)
{
	exe__fiber_wake(arg, EXE__WOKE_TIMEOUT);
	return 0;
}

int exe__fiber_park_until(struct exe__fiber *fb, int64_t deadline_ns)
{
	struct exe_future *timer = NULL;
	uint32_t s = EXE__PARK_PREPARING;
	int rc = 0;

	if (deadline_ns >= 0) {
		int64_t left = deadline_ns - exe_now_ns();

		if (left > 0)
			rc = exe_call_later(fb->io, left, wake_on_timer, fb, &timer);
		else
			rc = -ETIMEDOUT;
		if (rc) {
			/* Not parking: a waker may have come first. */
			if (!atomic_compare_exchange_strong_explicit(
				&fb->park, &s, EXE__PARK_RUNNING, memory_order_acquire, memory_order_acquire))
				rc = 0;
			atomic_store_explicit(&fb->park, EXE__PARK_RUNNING, memory_order_relaxed);
			/* The context is going away: its fibers are being cancelled. */
			return rc == -ESHUTDOWN ? -ECANCELED : rc;
		}
	}
	/* release: our registrations are visible to the waker that takes the
	 * word from PARKED (pairs with its acq_rel CAS). */
	if (atomic_compare_exchange_strong_explicit(&fb->park, &s, EXE__PARK_PARKED, memory_order_acq_rel,
	                                            memory_order_acquire)) {
		switch_out(fb);
		/* acquire: pairs with the waker's CAS. */
		s = atomic_load_explicit(&fb->park, memory_order_acquire);
	}
	atomic_store_explicit(&fb->park, EXE__PARK_RUNNING, memory_order_relaxed);
	if (timer) {
		/* The timer runs on this thread: it fired already, or this
		 * cancel stops it for good. */
		exe_future_cancel(timer);
		exe_future_unref(timer);
	}
	switch (s) {
	case EXE__WOKE_TIMEOUT: return -ETIMEDOUT;
	case EXE__WOKE_CANCEL: return -ECANCELED;
	default: return 0;
	}
}

/* ---- public ---- */

int exe_fiber_spawn(struct exe_io *io, exe_task_fn *fn, void *arg, const struct exe_fiber_opts *opts,
                    struct exe_future **out)
{
	struct exe__fiber *fb;
	const char *name = "fiber";
	size_t stack;
	int rc;

	if (!io || !fn)
		return -EINVAL;
	rc = exe__stack_size(opts ? opts->stack_size : 0, &stack);
	if (rc)
		return rc;
	if (opts && opts->name)
		name = opts->name;
	rc = exe__io_enter(io);
	if (rc)
		return rc;
	fb = (struct exe__fiber *)exe__future_new_sized(sizeof(*fb), &fiber_ops, io, out ? 2 : 1);
	if (!fb) {
		exe__io_leave(io);
		return -ENOMEM;
	}
	fb->fut.fn = fn;
	fb->fut.arg = arg;
	fb->io = io;
	atomic_init(&fb->park, EXE__PARK_RUNNING);
	fb->ready_next = fb->live_prev = fb->live_next = NULL;
	fb->ctx = NULL;
	fb->task_ctx.task = &fb->fut;
	fb->task_ctx.frames = NULL;
	fb->stack = NULL;
	fb->stack_size = stack;
	fb->adopted = fb->started = fb->dead = false;
	fb->cancel_pending = fb->cancel_seen = fb->await_cancel = false;
	fb->tsan_fiber = NULL;
	fb->asan_fake = NULL;
	strncpy(fb->name, name, sizeof(fb->name) - 1);
	fb->name[sizeof(fb->name) - 1] = '\0';
	if (out)
		*out = &fb->fut;
	if (exe__tls_hub == io) {
		adopt(io, fb);
	} else {
		fb->run_node.f = &fb->fut;
		fb->run_node.kind = EXE__REQ_FIBER;
		exe__io_push(io, &fb->run_node);
		exe__io_wake(io);
	}
	exe__io_leave(io);
	return 0;
}

struct exe_future *exe_fiber_self(void)
{
	return exe__tls_fiber ? &exe__tls_fiber->fut : NULL;
}

struct exe_io *exe_fiber_io(void)
{
	return exe__tls_fiber ? exe__tls_fiber->io : NULL;
}

const char *exe_fiber_name(void)
{
	return exe__tls_fiber ? exe__tls_fiber->name : NULL;
}

int exe_fiber_yield(void)
{
	struct exe__fiber *fb = exe__tls_fiber;

	if (!fb) {
		sched_yield();
		return 0;
	}
	if (fb->cancel_pending)
		return -ECANCELED;
	/* Still RUNNING as far as wakers are concerned: nobody else queues it. */
	ready_push(&fb->io->fibers, fb);
	switch_out(fb);
	return fb->cancel_pending ? -ECANCELED : 0;
}

int exe_fiber_sleep(int64_t ns)
{
	struct exe__fiber *fb = exe__tls_fiber;
	int64_t deadline;
	int rc;

	if (ns < 0)
		return -EINVAL;
	if (!fb) {
		struct timespec ts = {.tv_sec = ns / EXE_NS_PER_S, .tv_nsec = ns % EXE_NS_PER_S};

		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
		return 0;
	}
	if (ns == 0)
		return exe_fiber_yield();
	deadline = exe_now_ns() + ns;
	for (;;) {
		if (fb->cancel_pending)
			return -ECANCELED;
		atomic_store_explicit(&fb->park, EXE__PARK_PREPARING, memory_order_relaxed);
		rc = exe__fiber_park_until(fb, deadline);
		if (rc == -ETIMEDOUT)
			return 0;
		if (rc)
			return rc;
		/* A stale wake from an earlier wait: sleep on. */
	}
}
