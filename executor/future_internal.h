/*
 * future_internal.h - the future object as the library's producers see it.
 *
 * The state word holds the state in its low bits and flags above them, so
 * every transition is one compare-and-swap and waiters can sleep on the word
 * itself (futex) without a separate lock.
 */
#ifndef EXE_FUTURE_INTERNAL_H
#define EXE_FUTURE_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <executor.h>
#include "sibling.h"
#include "alloc.h" /* EXE__TLS */

#define EXE__STATE_MASK 0x7u
#define EXE__CANCEL_REQ (1u << 3) /* exe_future_cancel() on RUNNING work */
#define EXE__WAITERS (1u << 4)    /* a thread sleeps on the word: wake on finish */
#define EXE__COMPLETING (1u << 5) /* a completer won the race, fields being written */
#define EXE__HELPABLE (1u << 6)   /* any infinite waiter may run the task itself */
#define EXE__HAS_CBS (1u << 7)    /* a callback was queued before the final state */

struct exe_future;

/* What the producer of a future is told about. All optional. */
struct exe__future_ops {
	/* cancel() found @f PENDING and is about to cancel it: withdraw the task
	 * from where another process may take it. Return 0 (it will never
	 * start: the cancel goes ahead; called again if the cancel retries), or
	 * -EBUSY (it started: the hook moved @f to RUNNING). */
	int (*revoke)(struct exe_future *f);
	/* A PENDING future was cancelled (state already CANCELLED). Runs on the
	 * cancelling thread before waiters and callbacks; the owner's last touch
	 * of its own state for @f. */
	void (*cancelled)(struct exe_future *f);
	/* cancel() hit RUNNING work (CANCEL_REQ is set): stop it if possible. */
	void (*cancel_running)(struct exe_future *f);
	/* A waiter offers to run the PENDING task @f on its own thread.
	 * Return true when @f was run (it is finished). */
	bool (*help)(struct exe_future *f);
	/* A waiter on RUNNING @f offers to run some other queued task of the
	 * same owner meanwhile (work while waiting, not sleep). Return true
	 * when it made progress (ran or dropped a queue entry). */
	bool (*help_other)(struct exe_future *f);
	/* The result bytes of a DONE future whose value holds bytes (process
	 * pool and MPI bytes tasks): exe_future_bytes() accepts exactly the
	 * futures whose ops have this hook. */
	void (*bytes)(const struct exe_future *f, const void **data, size_t *len);
	/* A worker of the owner is about to sleep until @f finishes (@blocked
	 * true), or woke up (false): the owner may start a thread to keep its
	 * queue moving. Called only on the owner's own worker threads. */
	void (*blocking)(struct exe_future *f, bool blocked);
};

/* A done callback. Internal waiters embed these in their own memory. */
struct exe__cb {
	struct exe__cb *next;
	exe_done_fn *fn;
	void *arg;
	struct exe_pool *pool; /* exe_future_on_done_in() */
	bool heap;             /* allocated by exe_future_on_done(): freed after the call */
};

struct exe_future {
	_Atomic uint32_t state;
	_Atomic uint32_t refs;
	int code;                /* FAILED: the negative code */
	_Atomic uint8_t cb_lock; /* guards cbs, cbs_tail, cb_running */
	bool cb_running;         /* a thread is draining cbs */
	bool small;              /* from exe__small_alloc() (not a larger producer object) */
	const struct exe__future_ops *ops;
	void *owner;     /* the pool or io context; NULL for promises */
	exe_task_fn *fn; /* the work, for the owner */
	void *arg;
	void *value;
	exe_free_fn *value_free;
	char *msg; /* failure message, or NULL */
	struct exe__cb *cbs;
	struct exe__cb **cbs_tail;
	struct exe_future *next; /* the owner's intrusive link (queues) */
	/* A first done callback set before publication (exe_pool_submit_cb()):
	 * run before the list, without a node or the list's lock. */
	exe_done_fn *done;
	void *done_arg;
};

/* A new PENDING future with @refs references. NULL on allocation failure.
 * Unpublished, it is freed with exe__future_discard(), never exe__free(). */
EXE__SIBLING struct exe_future *exe__future_new(const struct exe__future_ops *ops, void *owner, uint32_t refs);

/* Like exe__future_new(), for a producer's larger object whose first member
 * is the future (@size >= sizeof(struct exe_future)): one allocation per
 * operation. The rest of the object is uninitialized; the last unref frees
 * the whole object. */
struct exe_future *exe__future_new_sized(size_t size, const struct exe__future_ops *ops, void *owner,
                                         uint32_t refs);

/* Free a future that was never published (no other thread saw it); NULL is
 * a no-op. Futures come from the small-block cache: never exe__free() one. */
void exe__future_discard(struct exe_future *f);

/* PENDING -> RUNNING. False when cancelled or already claimed. */
static inline bool exe__future_claim(struct exe_future *f)
{
	uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);

	while ((s & (EXE__STATE_MASK | EXE__COMPLETING)) == EXE_FUTURE_PENDING) {
		/* acquire: pairs with the release of the submitter's publication
		 * of fn/arg (the queue hand-off already orders it; this keeps the
		 * claim self-contained for helpers that found @f elsewhere). */
		if (atomic_compare_exchange_weak_explicit(&f->state, &s,
		                                          (s & ~EXE__STATE_MASK) | EXE_FUTURE_RUNNING,
		                                          memory_order_acquire, memory_order_relaxed))
			return true;
	}
	return false;
}

static inline bool exe__state_finished(uint32_t s)
{
	return (s & EXE__STATE_MASK) >= EXE_FUTURE_DONE;
}

/* Run a claimed task on this thread and complete its future (waiters woken,
 * callbacks run here). Return: the task's code (0 or negative). */
int exe__future_run(struct exe_future *f);

/* Complete a future this thread owns exclusively (claimed RUNNING, or a
 * promise nobody else can finish): @code 0 -> DONE with @value, else FAILED.
 * @msg (owned, may be NULL) replaces any message. */
void exe__future_complete_owned(struct exe_future *f, int code, void *value, char *msg);

/* Complete @f from any thread, racing other completers: 0, or -EALREADY
 * (then @msg is freed and @value not taken). @code 0 -> DONE. */
EXE__SIBLING int exe__future_complete(struct exe_future *f, int code, void *value, exe_free_fn *free_fn, char *msg);

/* Cancel @f only if it has not started: 0, -EBUSY, -EALREADY. */
EXE__SIBLING int exe__future_cancel_pending(struct exe_future *f);

/* Make @f the current task of this thread (continuations); returns the
 * previous one to restore. */
struct exe_future *exe__task_swap(struct exe_future *f);

/* A thread's task context: its current task and the frames of the tasks it
 * runs nested (help while waiting), which live on the stack that ran them.
 * A fiber carries its own across switches, so the hub and the other fibers
 * of the thread never see frames on a stack that is switched out (or
 * already reused). */
struct exe__task_ctx {
	struct exe_future *task;
	const void *frames; /* future.c's run frames, innermost first */
};

/* Swap the thread's task context with *@ctx. */
void exe__task_ctx_swap(struct exe__task_ctx *ctx);

/* Whether @f is running on this thread (its task or continuation is on this
 * thread's stack, under any nested waits): waiting on it would never end. */
bool exe__future_runs_here(const struct exe_future *f);

/* Offer to run @f on this thread (infinite waits only). */
bool exe__future_help(struct exe_future *f);

/* Internal callbacks with caller-provided nodes: run at most once.
 * remove returns true when @node was unlinked before it ran (it never will). */
void exe__future_add_node(struct exe_future *f, struct exe__cb *node);
bool exe__future_remove_node(struct exe_future *f, struct exe__cb *node);


/* The pool a worker thread belongs to, for nested-wait help (NULL elsewhere). */
extern EXE__TLS void *exe__tls_worker_owner;

#endif
