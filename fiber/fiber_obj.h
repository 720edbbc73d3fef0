/*
 * fiber_obj.h - the fiber object and its park states (fiber.c, park.c,
 * fiber_io.c, watchdog.c).
 */
#ifndef EXE_FIBER_OBJ_H
#define EXE_FIBER_OBJ_H

#include "fiber_internal.h"
#include "backend.h"

/* Park states (exe__fiber.park). A fiber sets PREPARING itself, registers
 * its wakers, then moves PREPARING -> PARKED and switches away; a waker
 * moves PREPARING or PARKED to a WOKE_* reason, and the one that took it
 * from PARKED makes the fiber ready. */
enum {
	EXE__PARK_RUNNING = 0,
	EXE__PARK_PREPARING,
	EXE__PARK_PARKED,
	EXE__WOKE,         /* what it waited for happened (or a spurious wake) */
	EXE__WOKE_TIMEOUT, /* its deadline passed */
	EXE__WOKE_CANCEL,  /* its future was cancelled */
};

struct exe__fiber {
	struct exe_future fut;        /* first: the fiber is its future */
	struct exe__io_node run_node; /* REQ_FIBER: spawn, then remote wakes */
	struct exe__io_node cxl_node; /* REQ_FIBER_CANCEL */
	struct exe_io *io;
	_Atomic uint32_t park; /* EXE__PARK_* / EXE__WOKE*: see above */
	/* Hub thread only. */
	struct exe__fiber *ready_next;
	struct exe__fiber *live_prev, *live_next;
	exe__fctx ctx;            /* saved context while switched out */
	struct exe__task_ctx task_ctx; /* its task context while switched out */
	struct exe__stack *stack; /* NULL until it first runs */
	size_t stack_size;
	bool adopted;        /* the hub took it (counted in io->live) */
	bool started;        /* claimed RUNNING and given a stack */
	bool dead;           /* returned: reap on the hub's stack */
	bool cancel_pending; /* cancel delivered: every wait returns -ECANCELED */
	bool cancel_seen;    /* the REQ_FIBER_CANCEL entry was popped */
	bool await_cancel;   /* reaped, waiting for that entry */
	/* Sanitizer bookkeeping (unused in plain builds). */
	void *tsan_fiber;
	void *asan_fake;
	char name[32];
};

#endif
