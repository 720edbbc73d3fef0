/*
 * fiber_internal.h - fibers as the io context and the core see them: the
 * fiber object, the per-context scheduler (the hub), the park/wake
 * protocol, stacks, and Boost.Context's two switch functions.
 */
#ifndef EXE_FIBER_INTERNAL_H
#define EXE_FIBER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "future_internal.h"
#include "park.h"

struct exe_io;

/* Boost.Context (libboost_context): plain C symbols, declared here so the
 * library needs no C++ header. make_fcontext prepares a context whose
 * first jump calls @fn on the stack below @sp; jump_fcontext saves the
 * current context, switches to @to and hands @vp over; it returns when
 * someone jumps back, with the context they left. */
typedef void *exe__fctx;
struct exe__transfer {
	exe__fctx fctx;
	void *data;
};
struct exe__transfer jump_fcontext(exe__fctx const to, void *vp);
exe__fctx make_fcontext(void *sp, size_t size, void (*fn)(struct exe__transfer));

struct exe__fiber;
struct exe__stack; /* a mapped stack; its header sits at the top (stack.c) */

/* The per-context scheduler, embedded in struct exe_io. */
struct exe__fiber_sched {
	/* Hub thread only. */
	struct exe__fiber *ready_head, *ready_tail;
	struct exe__fiber *live; /* adopted, not reaped: cancelled at shutdown */
	exe__fctx hub_ctx;       /* the hub's context while a fiber runs */
	struct exe__stack *pool;
	size_t pooled_bytes;
	bool cancelled_all;
	void *tsan_hub;
	const void *asan_hub_bottom;
	size_t asan_hub_size;

	/* Watchdog (watchdog.c): written by the hub at each switch while
	 * bound > 0, sampled by the watchdog thread (a seqlock on seq:
	 * odd while a fiber runs). */
	_Alignas(64) _Atomic int64_t wd_bound;
	_Atomic uint32_t wd_seq;
	_Atomic int64_t wd_since;
	_Atomic uint64_t wd_name[4];
	_Atomic uint32_t wd_stop;
	pthread_mutex_t wd_lock; /* starting/stopping the thread */
	pthread_t wd_thread;
	bool wd_started;
};

/* The io context whose hub this thread is (set by io.c around its loop). */
extern _Thread_local struct exe_io *exe__tls_hub;

/* ---- io.c calls these (hub thread unless said otherwise) ---- */
void exe__fiber_sched_init(struct exe_io *io);
/* After the hub stopped for good (any thread): stop the watchdog, unmap
 * pooled stacks. */
void exe__fiber_sched_fini(struct exe_io *io);
/* A REQ_FIBER or REQ_FIBER_CANCEL entry was popped. */
void exe__fiber_request(struct exe_io *io, int kind, struct exe_future *f);
/* Run the fibers that are ready. Return: how many ran, plus one when more
 * became ready meanwhile (so the loop does not sleep). */
int exe__fiber_run(struct exe_io *io);
/* Shutdown: cancel every fiber (once). */
void exe__fiber_cancel_all(struct exe_io *io);

/* ---- the park/wake protocol (fiber.c) ---- */
/* Switch a PREPARING fiber away until a waker, @deadline_ns (absolute, < 0:
 * none) or a cancel. Return: 0 (woken), -ETIMEDOUT, -ECANCELED. */
int exe__fiber_park_until(struct exe__fiber *fb, int64_t deadline_ns);
/* Any thread: wake @fb if it is preparing or parked. True when this call
 * woke it. */
bool exe__fiber_wake(struct exe__fiber *fb, uint32_t reason);

/* ---- stacks (stack.c, hub thread) ---- */
/* The usable size for a requested one (0: default): -EINVAL if out of range. */
int exe__stack_size(size_t requested, size_t *out);
int exe__stack_get(struct exe__fiber_sched *s, size_t size, struct exe__stack **out);
void exe__stack_put(struct exe__fiber_sched *s, struct exe__stack *st);
void exe__stack_drain(struct exe__fiber_sched *s);
/* The top (initial stack pointer) and usable size below it. */
void *exe__stack_top(struct exe__stack *st, size_t *usable);
void *exe__stack_bottom(struct exe__stack *st);
/* TSan builds: the stack's TSan fiber context (NULL until first used). */
void **exe__stack_tsan_fiber(struct exe__stack *st);

/* ---- watchdog.c ---- */
void exe__watchdog_enter(struct exe__fiber_sched *s, const struct exe__fiber *fb);
void exe__watchdog_leave(struct exe__fiber_sched *s);
void exe__watchdog_stop(struct exe__fiber_sched *s);

#endif
