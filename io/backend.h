/*
 * backend.h - the io context as its parts see it: the context object, the
 * operation object, the backend interface (io_uring or epoll fallback) and
 * the timer heap.
 *
 * Only io/uring.c includes liburing.h: the ring lives behind io->be.
 */
#ifndef EXE_IO_BACKEND_H
#define EXE_IO_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "future_internal.h"
#include <executor/io.h>
#include "fiber_internal.h"

enum exe__io_opcode {
	EXE__OP_NOP,
	EXE__OP_READ,
	EXE__OP_WRITE,
	EXE__OP_READV,
	EXE__OP_WRITEV,
	EXE__OP_FSYNC,
	EXE__OP_OPENAT,
	EXE__OP_CLOSE,
	EXE__OP_ACCEPT,
	EXE__OP_CONNECT,
	EXE__OP_RECV,
	EXE__OP_SEND,
	EXE__OP_POLL,
};

/* What a request-stack entry asks of the io thread. */
enum exe__io_req {
	EXE__REQ_START,  /* a new operation: claim it and start it */
	EXE__REQ_CANCEL, /* cancel() hit it while RUNNING */
	EXE__REQ_DONE,   /* fallback: a pool thread finished it (res is set) */
	EXE__REQ_FIBER,        /* a fiber spawned or woken from another thread */
	EXE__REQ_FIBER_CANCEL, /* cancel() hit a running fiber */
};

/* A request-stack entry. Each object that can be queued embeds one per
 * purpose, so a cancel request never reuses a link that may still be queued. */
struct exe__io_node {
	struct exe__io_node *next;
	struct exe_future *f;
	uint8_t kind; /* enum exe__io_req: set before each push */
};

/*
 * An io operation: one allocation, the future first (freed as the future).
 * Fields are written by the submitter before the push and then belong to
 * the io thread (and, in the fallback, to the pool thread running a file
 * operation, which hands them back through a REQ_DONE push).
 */
struct exe__io_op {
	struct exe_future fut;
	struct exe__io_node sub; /* REQ_START, then REQ_DONE (fallback) */
	struct exe__io_node cxl; /* REQ_CANCEL */
	uint8_t opcode;          /* enum exe__io_opcode */
	bool in_kernel;          /* io thread: started, no completion yet */
	bool cancel_seen;        /* io thread: the REQ_CANCEL entry was popped */
	bool await_cancel;       /* io thread: finished, waiting for that entry */
	bool cancel_sent;        /* io thread: a kernel cancel was issued */
	bool in_pool;            /* fallback: running on the file thread pool */
	int fd;
	int flags;
	unsigned len;      /* bytes, iovec count, poll events, addrlen */
	void *buf;         /* buffer, iovec array, sockaddr, path */
	unsigned *addrlen; /* accept */
	int64_t off;
	int64_t res;                     /* fallback: the result */
	struct exe__io_op *prev, *next;  /* io thread: in-flight list */
	struct exe__io_op *wnext;        /* fallback: the fd's waiter list */
	_Alignas(16) char inline_data[]; /* copied path or sockaddr */
};

/* A periodic timer (exe_call_every). One-shot timers are bare futures whose
 * fn/arg hold the timer function: nothing more, so a million fit in memory. */
struct exe__every {
	struct exe_future fut;   /* fn/arg hold the timer function */
	struct exe__io_node cxl; /* REQ_CANCEL */
	bool in_heap;            /* io thread (and arm, before the first firing) */
	bool cancel_seen;
	bool await_cancel;
	int64_t start;
	int64_t interval;
	uint64_t k; /* the next firing is start + k * interval */
};

/* The timer heap: a 4-ary min-heap of (deadline, future) under one mutex. */
struct exe__timer_slot {
	int64_t deadline;
	struct exe_future *f;
};

struct exe__timers {
	pthread_mutex_t lock;
	struct exe__timer_slot *heap;
	size_t n, cap;
	size_t compact_at;           /* rebuild without cancelled entries at this size */
	uint64_t cancels_at_compact; /* the global cancel count at the last rebuild */
};

struct exe_io;

struct exe__io_backend {
	const char *name;
	/* Set up (on the thread that will drive the context). */
	int (*init)(struct exe_io *io, unsigned entries);
	void (*fini)(struct exe_io *io);
	/* A claimed operation: hand it to the kernel (or finish it at once
	 * through exe__io_op_done()). */
	void (*start)(struct exe_io *io, struct exe__io_op *op);
	/* An operation in flight: ask the kernel to stop it. */
	void (*cancel)(struct exe_io *io, struct exe__io_op *op);
	/* Submit what was started, wait until @deadline_ns (absolute; < 0:
	 * forever; 0: do not wait) for at least one event, and report
	 * completions through exe__io_op_done(). Return: completions seen. */
	int (*wait)(struct exe_io *io, int64_t deadline_ns);
	/* Optional, cheap, no system call: completions are waiting to be
	 * reaped (the idle spin watches it). */
	bool (*pending)(struct exe_io *io);
};

extern const struct exe__io_backend exe__io_uring_backend;
extern const struct exe__io_backend exe__io_fallback_backend;

struct exe_io {
	/* Read-mostly after create. */
	const struct exe__io_backend *be;
	void *be_data;
	int efd; /* eventfd: wakes a sleeping io thread */
	bool manual;
	unsigned entries;
	unsigned file_workers;
	pthread_t thread;
	bool has_thread;

	/* Submitters. */
	_Alignas(64) _Atomic(struct exe__io_node *) stack; /* request stack head */
	_Atomic uint32_t active;                           /* submitters and cancellers touching io */
	_Atomic uint32_t shutdown;

	/* Wake-up protocol (see io.c). */
	_Alignas(64) _Atomic uint32_t sleeping;
	_Atomic int64_t wait_deadline; /* what the sleeping io thread waits for */
	_Atomic uint32_t stop;         /* exe_io_stop() */

	/* Timers. */
	_Alignas(64) struct exe__timers timers;

	/* io thread only. */
	_Alignas(64) struct exe__io_op *inflight; /* started, not retired */
	uint64_t live; /* in the list, plus periodic timers awaiting cancel entries */
	int init_rc;
	_Atomic uint32_t init_done;

	/* Fibers (fiber/): the hub's run queue and stacks, the watchdog. */
	_Alignas(64) struct exe__fiber_sched fibers;
};

/* ---- io.c, for the backends ---- */

/* An operation finished with @res: complete its future and retire it. */
void exe__io_op_done(struct exe_io *io, struct exe__io_op *op, int64_t res);

/* A positioned read whose whole range is in the page cache: done here, on
 * the io thread, without blocking (the fallback backend's fast path).
 * Return false to submit it as usual. */
bool exe__io_read_cached(struct exe_io *io, struct exe__io_op *op);

/* Push a request (any thread; the caller is counted in io->active or
 * otherwise keeps io alive until it returns from exe__io_wake()). */
void exe__io_push(struct exe_io *io, struct exe__io_node *node);

/* Wake the io thread if it sleeps (any thread). */
void exe__io_wake(struct exe_io *io);

/* The submit window: between enter (0, or -ESHUTDOWN) and leave, io stays
 * alive and teardown waits before its last look at the stack. */
int exe__io_enter(struct exe_io *io);
void exe__io_leave(struct exe_io *io);

/* The ops of every io operation's future (cancel of running work). */
extern const struct exe__future_ops exe__io_op_ops;

/* ---- timers.c ---- */

int exe__timers_init(struct exe__timers *t);
void exe__timers_fini(struct exe__timers *t);
/* io thread: fire every due timer; return how many fired and set
 * *@next_deadline to the earliest remaining one (INT64_MAX: none). */
int exe__timers_run(struct exe_io *io, int64_t *next_deadline);
/* io thread: a REQ_CANCEL for a periodic timer was popped. */
void exe__timers_cancel_entry(struct exe_io *io, struct exe_future *f);
/* io thread, shutdown: cancel or finish every timer in the heap. */
int exe__timers_drain(struct exe_io *io);
/* Earliest deadline, under the lock; the caller records it as the one it
 * sleeps until (INT64_MAX: none). */
int64_t exe__timers_prepare_sleep(struct exe_io *io, int64_t deadline);
bool exe__timers_empty(struct exe_io *io);
bool exe__is_every(const struct exe_future *f);

#endif
