/*
 * io.c - the io context: its thread, the request queue, operation futures.
 *
 * Design
 *  - An operation is one allocation: struct exe__io_op starts with its
 *    future (exe__future_new_sized). The caller gets one reference, the io
 *    side holds the other until the operation is retired.
 *  - Any thread submits by pushing a node on a lock-free stack (a Treiber
 *    push; the io thread takes the whole stack with one exchange and
 *    reverses it, so requests start in submission order). C11 atomics rather
 *    than ck_stack: the same two instructions, and ThreadSanitizer sees them.
 *  - The io thread writes the eventfd only when it sleeps: it sets
 *    `sleeping`, re-checks the stack, then waits in the kernel. A submitter
 *    pushes, then reads `sleeping`; whoever exchanges it from 1 to 0 writes
 *    the eventfd. Both sides use seq_cst so one of them sees the other
 *    (the Dekker pattern of liburing's sq_ring_needs_enter). A busy io thread
 *    costs submitters no system call.
 *  - Before sleeping, the io thread watches the stack (and the ring) for
 *    up to SPIN_NS, yielding the CPU each round: back-to-back traffic then
 *    costs neither side a wake-up.
 *  - The io thread claims each operation (PENDING -> RUNNING) before the
 *    kernel sees it; one cancelled while queued is dropped unstarted. Cancel
 *    of RUNNING work pushes the operation's cancel node; the io thread then
 *    asks the backend to stop it (IORING_OP_ASYNC_CANCEL, or epoll removal).
 *
 * Invariants
 *  - io->active counts threads between "io is alive" and their last touch
 *    of io: submitters (which also check `shutdown` inside that window) and
 *    cancellers pushing a cancel node. Teardown waits for it to reach 0.
 *  - A canceller may be anywhere between its state CAS and its push when
 *    the operation completes. The completed state then carries CANCEL_REQ,
 *    so the io thread keeps the operation (and io->live) until its cancel
 *    node has been popped: an operation is retired only when no cancel node
 *    is still to come. Hence a canceller always finds io alive.
 *  - io->live counts operations started and not retired, plus periodic
 *    timers awaiting a cancel node, plus fibers the hub has taken and not
 *    reaped (fiber/fiber.c); teardown ends when it is 0, the stack is
 *    empty, the heap is empty and io->active is 0.
 *  - Fibers run on this thread between passes (exe__fiber_run); teardown
 *    cancels them all once and keeps looping until each has returned.
 *  - Only the io thread (or the thread in exe_io_run_once()) touches the
 *    backend and the in-flight list.
 */
#include <ck_pr.h> /* ck_pr_stall(): the spin hint on every CPU (pause on x86) */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "alloc.h"
#include "errors.h"
#include "futex.h"
#include "backend.h"

#define DEFAULT_ENTRIES 256u
#define MAX_ENTRIES 32768u
#define DRAIN_POLL_NS (20 * 1000) /* teardown: re-check io->active this often */
#define SPIN_NS (20 * 1000)       /* idle spin before sleeping: ~ one wake-up */

static void op_cancel_running(struct exe_future *f);

const struct exe__future_ops exe__io_op_ops = {
    /* A queued operation cancelled before the io thread claimed it: the
     * io thread drops it when popped, nothing to do here. */
    .cancelled = NULL,
    .cancel_running = op_cancel_running,
};

/* ---- the request stack ---- */

void exe__io_push(struct exe_io *io, struct exe__io_node *node)
{
	struct exe__io_node *head = atomic_load_explicit(&io->stack, memory_order_relaxed);

	do {
		node->next = head;
		/* seq_cst: publishes the node (release, pairs with the
		 * exchange in pop_all()) and orders the push before the read of
		 * `sleeping` in exe__io_wake() (Dekker with prepare_sleep). */
	} while (!atomic_compare_exchange_weak_explicit(&io->stack, &head, node, memory_order_seq_cst,
	                                                memory_order_relaxed));
}

void exe__io_wake(struct exe_io *io)
{
	uint64_t one = 1;

	if (!atomic_load_explicit(&io->sleeping, memory_order_seq_cst))
		return;
	if (!atomic_exchange_explicit(&io->sleeping, 0, memory_order_seq_cst))
		return;
	/* Only fails on a broken eventfd: the io thread then wakes at its next
	 * deadline, nothing to recover here. */
	if (write(io->efd, &one, sizeof(one)) < 0)
		return;
}

static struct exe__io_node *pop_all(struct exe_io *io)
{
	/* acquire: pairs with the seq_cst push; the nodes' fields are visible. */
	struct exe__io_node *n = atomic_exchange_explicit(&io->stack, NULL, memory_order_acquire);
	struct exe__io_node *rev = NULL;

	while (n) {
		struct exe__io_node *next = n->next;

		n->next = rev;
		rev = n;
		n = next;
	}
	return rev;
}

static bool stack_empty(struct exe_io *io)
{
	return atomic_load_explicit(&io->stack, memory_order_seq_cst) == NULL;
}

/* ---- lifetime of an operation (io thread) ---- */

static void inflight_add(struct exe_io *io, struct exe__io_op *op)
{
	op->prev = NULL;
	op->next = io->inflight;
	if (io->inflight)
		io->inflight->prev = op;
	io->inflight = op;
	io->live++;
}

static void retire(struct exe_io *io, struct exe__io_op *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else
		io->inflight = op->next;
	if (op->next)
		op->next->prev = op->prev;
	io->live--;
	exe_future_unref(&op->fut);
}

void exe__io_op_done(struct exe_io *io, struct exe__io_op *op, int64_t res)
{
	uint32_t s;

	op->in_kernel = false;
	op->in_pool = false;
	if (res >= 0)
		exe__future_complete_owned(&op->fut, 0, (void *)(intptr_t)res, NULL);
	else
		exe__future_complete_owned(&op->fut, (int)res, NULL, NULL);
	/* The final state was published by the CAS above: CANCEL_REQ in it
	 * means a canceller won its CAS first and will push (or has pushed)
	 * the cancel node, which still points at op. */
	s = atomic_load_explicit(&op->fut.state, memory_order_acquire);
	if ((s & EXE__CANCEL_REQ) && !op->cancel_seen) {
		op->await_cancel = true;
		return;
	}
	retire(io, op);
}

/*
 * A positioned read whose data is all in the page cache cannot block: do it
 * on the io thread with RWF_NOWAIT instead of a hop to a file thread and
 * back (the fallback backend: a 4 KiB cached read costs ~1 us, the hop
 * ~10-20 us on 2 vCPUs). The io_uring backend does not use it: one
 * preadv2 per read on the io thread loses the ring's batching at depth
 * (measured ~8 % slower at queue depth 128, though ~15 % faster at depth 1). Only a full
 * read or end of file is kept; a partial one (part of the range cached) or
 * EAGAIN goes the usual way, which reads the whole range again, so callers
 * see the same results as without this path.
 */
bool exe__io_read_cached(struct exe_io *io, struct exe__io_op *op)
{
	struct iovec one = {op->buf, op->len};
	const struct iovec *iov = op->opcode == EXE__OP_READ ? &one : op->buf;
	int cnt = op->opcode == EXE__OP_READ ? 1 : (int)op->len;
	size_t want = 0;
	ssize_t r;

	if (op->off < 0)
		return false;
	for (int i = 0; i < cnt; i++)
		want += iov[i].iov_len;
	r = preadv2(op->fd, iov, cnt, op->off, RWF_NOWAIT);
	if (r < 0 || (r > 0 && (size_t)r < want))
		return false;
	exe__io_op_done(io, op, r);
	return true;
}

static void op_cancel_running(struct exe_future *f)
{
	struct exe__io_op *op = (struct exe__io_op *)f;
	struct exe_io *io = f->owner;

	/* io is alive: op is not retired before this node is popped. */
	atomic_fetch_add_explicit(&io->active, 1, memory_order_seq_cst);
	op->cxl.f = f;
	op->cxl.kind = EXE__REQ_CANCEL;
	exe__io_push(io, &op->cxl);
	exe__io_wake(io);
	/* release: our last touch of io happens before teardown sees 0. */
	atomic_fetch_sub_explicit(&io->active, 1, memory_order_release);
}

static void op_cancel_entry(struct exe_io *io, struct exe__io_op *op)
{
	op->cancel_seen = true;
	if (op->await_cancel) {
		retire(io, op);
		return;
	}
	io->be->cancel(io, op);
}

static bool is_shutdown(struct exe_io *io)
{
	return atomic_load_explicit(&io->shutdown, memory_order_acquire) != 0;
}

/* Start or drop everything queued. Return: requests handled. */
static int process_requests(struct exe_io *io)
{
	struct exe__io_node *n = pop_all(io);
	int count = 0;

	while (n) {
		/* Read next first: handling a node may free its object. */
		struct exe__io_node *next = n->next;
		struct exe_future *f = n->f;

		switch (n->kind) {
		case EXE__REQ_START:
			if (!is_shutdown(io) && exe__future_claim(f)) {
				inflight_add(io, (struct exe__io_op *)f);
				io->be->start(io, (struct exe__io_op *)f);
			} else {
				/* Cancelled while queued, or teardown: it never
				 * reaches the kernel. */
				exe_future_cancel(f);
				exe_future_unref(f);
			}
			break;
		case EXE__REQ_CANCEL:
			if (exe__is_every(f))
				exe__timers_cancel_entry(io, f);
			else
				op_cancel_entry(io, (struct exe__io_op *)f);
			break;
		case EXE__REQ_DONE: {
			struct exe__io_op *op = (struct exe__io_op *)f;

			exe__io_op_done(io, op, op->res);
			break;
		}
		case EXE__REQ_FIBER:
		case EXE__REQ_FIBER_CANCEL: exe__fiber_request(io, n->kind, f); break;
		}
		count++;
		n = next;
	}
	return count;
}

static void cancel_inflight(struct exe_io *io)
{
	struct exe__io_op *op, *next;

	for (op = io->inflight; op; op = next) {
		next = op->next;
		if (!op->cancel_sent && !op->await_cancel)
			io->be->cancel(io, op);
	}
}

/* ---- the loop ---- */

static bool drained(struct exe_io *io)
{
	/* acquire: pairs with the release decrement of the last submitter or
	 * canceller; anything it pushed is then on the stack. */
	if (atomic_load_explicit(&io->active, memory_order_acquire))
		return false;
	return stack_empty(io) && io->live == 0 && exe__timers_empty(io);
}

/*
 * Before sleeping, watch for work a little: a submitter that finds the
 * thread awake pays no eventfd write, and the thread no wake-up (each is
 * several microseconds, tens on a loaded machine). Return true when work
 * arrived. Bounded by the next deadline; a manual context never spins (its
 * caller chose how long to wait).
 */
static bool idle_spin(struct exe_io *io, int64_t until)
{
	int64_t now = exe_now_ns(), end = now + SPIN_NS, calm = now + SPIN_NS / 2;
	int i;

	if (end > until)
		end = until;
	do {
		for (i = 0; i < 16; i++)
			ck_pr_stall();
		if (!stack_empty(io) || (io->be->pending && io->be->pending(io)))
			return true;
		/* Second half: on a busy machine the submitter may be queued
		 * behind us on this very CPU, so let it run. Not from the
		 * start: a yield to another process can cost a whole slice,
		 * far more than the gap between two submissions. */
		now = exe_now_ns();
		if (now > calm)
			sched_yield();
	} while (now < end);
	return false;
}

/* One pass: requests, timers, one wait. @deadline absolute, < 0 none. */
static int run_pass(struct exe_io *io, int64_t deadline)
{
	int64_t next_timer, until;
	int n, rounds;

	/* Fibers woken by the last pass's completions run first, so the
	 * operations they submit start in this pass, not the next. */
	n = exe__fiber_run(io);
	n += process_requests(io);
	/* Requests still arriving: take them into this batch, one system call
	 * for all (bounded, so completions are reaped too). */
	for (rounds = 0; n && rounds < 4 && !stack_empty(io); rounds++)
		n += process_requests(io);
	if (is_shutdown(io)) {
		exe__fiber_cancel_all(io);
		cancel_inflight(io);
		n += exe__timers_drain(io);
	}
	n += exe__timers_run(io, &next_timer);

	until = deadline < 0 ? INT64_MAX : deadline;
	if (n > 0 || atomic_load_explicit(&io->stop, memory_order_relaxed) ||
	    (is_shutdown(io) && drained(io))) {
		until = 0;
	} else if (!io->manual && !is_shutdown(io) &&
	           idle_spin(io, next_timer < until ? next_timer : until)) {
		until = 0;
	} else {
		/* seq_cst: pairs with the push + read in exe__io_wake(). */
		atomic_store_explicit(&io->sleeping, 1, memory_order_seq_cst);
		if (!stack_empty(io) || atomic_load_explicit(&io->stop, memory_order_seq_cst)) {
			until = 0;
		} else {
			next_timer = exe__timers_prepare_sleep(io, until);
			if (next_timer < until)
				until = next_timer;
			if (is_shutdown(io) && io->live == 0 &&
			    atomic_load_explicit(&io->active, memory_order_acquire)) {
				/* Only a canceller's last touch is left. */
				int64_t soon = exe_now_ns() + DRAIN_POLL_NS;

				if (soon < until)
					until = soon;
			}
			if (until == INT64_MAX)
				until = -1;
			else if (until <= 0)
				until = 0;
		}
	}
	n += io->be->wait(io, until);
	atomic_store_explicit(&io->sleeping, 0, memory_order_relaxed);
	atomic_store_explicit(&io->wait_deadline, INT64_MIN, memory_order_relaxed);
	return n;
}

static void teardown_loop(struct exe_io *io)
{
	while (!drained(io))
		run_pass(io, -1);
}

static void set_init(struct exe_io *io, int rc)
{
	io->init_rc = rc;
	atomic_store_explicit(&io->init_done, 1, memory_order_release);
	exe__futex_wake(&io->init_done, EXE_FUTEX_WAKE_ALL);
}

static void *io_thread_main(void *arg)
{
	struct exe_io *io = arg;
	sigset_t all;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_setname_np(pthread_self(), "exe-io");
	exe__tls_hub = io;
	/* The default 50 us timer slack would be most of a timer's lateness:
	 * every deadline of this thread is a user's timer. */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);

	/* The ring is made here: with SINGLE_ISSUER it belongs to this thread. */
	rc = io->be->init(io, io->entries);
	set_init(io, rc);
	if (rc)
		return NULL;
	while (!is_shutdown(io))
		run_pass(io, -1);
	teardown_loop(io);
	io->be->fini(io);
	return NULL;
}

/* ---- create / destroy ---- */

/* One spelling per backend, the one exe_io_backend() returns; anything
 * else is a mistake worth reporting rather than a silent "auto". */
static int backend_from_env(enum exe_io_backend_kind requested, enum exe_io_backend_kind *kind)
{
	const char *env;

	*kind = requested;
	if (requested != EXE_IO_AUTO)
		return 0;
	env = getenv("EXE_IO_BACKEND");
	if (!env || !strcmp(env, "auto"))
		return 0;
	if (!strcmp(env, "io_uring"))
		*kind = EXE_IO_URING;
	else if (!strcmp(env, "fallback"))
		*kind = EXE_IO_FALLBACK;
	else
		return -EINVAL;
	return 0;
}

/* The kernel refuses io_uring (seccomp, io_uring_disabled, an old kernel
 * without an opcode we need), or cannot give us a ring: before 5.12 rings
 * are charged to RLIMIT_MEMLOCK, which containers often keep tiny. */
static bool refused(int rc)
{
	return rc == -ENOSYS || rc == -EPERM || rc == -EACCES || rc == -EOPNOTSUPP || rc == -ENOMEM;
}

static int start_backend(struct exe_io *io, const struct exe__io_backend *be)
{
	int rc;

	io->be = be;
	if (io->manual)
		return be->init(io, io->entries);
	atomic_store(&io->init_done, 0);
	rc = pthread_create(&io->thread, NULL, io_thread_main, io);
	if (rc)
		return -rc;
	while (!atomic_load_explicit(&io->init_done, memory_order_acquire))
		exe__futex_wait(&io->init_done, 0, -1);
	if (io->init_rc) {
		pthread_join(io->thread, NULL);
		return io->init_rc;
	}
	io->has_thread = true;
	return 0;
}

int exe_io_create(struct exe_io **out, const struct exe_io_opts *opts)
{
	struct exe_io_opts o = {0};
	enum exe_io_backend_kind kind;
	struct exe_io *io;
	int rc;

	if (!out)
		return -EINVAL;
	if (opts)
		o = *opts;
	if ((unsigned)o.backend > EXE_IO_FALLBACK || o.entries > MAX_ENTRIES)
		return -EINVAL;
	if (backend_from_env(o.backend, &kind))
		return -EINVAL;
	io = exe__calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->manual = o.manual;
	io->entries = o.entries ? o.entries : DEFAULT_ENTRIES;
	io->file_workers = o.file_workers ? o.file_workers : 4;
	exe__fiber_sched_init(io);
	atomic_init(&io->stack, NULL);
	atomic_init(&io->wait_deadline, INT64_MIN);
	/* Blocking on purpose: io_uring reads it as an ordinary pending read,
	 * the fallback reads it only when epoll says it is readable. */
	io->efd = eventfd(0, EFD_CLOEXEC);
	if (io->efd < 0) {
		rc = -errno;
		exe__free(io);
		return rc;
	}
	rc = exe__timers_init(&io->timers);
	if (rc)
		goto fail_efd;
	rc = -ENOSYS;
	if (kind != EXE_IO_FALLBACK) {
		rc = start_backend(io, &exe__io_uring_backend);
		if (rc && (kind == EXE_IO_URING || !refused(rc)))
			goto fail_timers;
	}
	if (rc)
		rc = start_backend(io, &exe__io_fallback_backend);
	if (rc)
		goto fail_timers;
	*out = io;
	return 0;

fail_timers:
	exe__timers_fini(&io->timers);
	exe__fiber_sched_fini(io);
fail_efd:
	close(io->efd);
	exe__free(io);
	return rc;
}

void exe_io_destroy(struct exe_io *io)
{
	if (!io)
		return;
	/* Under the timer lock so no arm slips in after the heap is drained. */
	pthread_mutex_lock(&io->timers.lock);
	atomic_store_explicit(&io->shutdown, 1, memory_order_seq_cst);
	pthread_mutex_unlock(&io->timers.lock);
	if (io->has_thread) {
		atomic_store_explicit(&io->sleeping, 1, memory_order_seq_cst);
		exe__io_wake(io);
		pthread_join(io->thread, NULL);
	} else {
		struct exe_io *saved = exe__tls_hub;

		exe__tls_hub = io;
		teardown_loop(io);
		exe__tls_hub = saved;
		io->be->fini(io);
	}
	exe__fiber_sched_fini(io);
	exe__timers_fini(&io->timers);
	close(io->efd);
	exe__free(io);
}

const char *exe_io_backend(const struct exe_io *io)
{
	if (!io)
		return NULL;
	return io->be->name;
}

/* ---- manual driving ---- */

int exe_io_run_once(struct exe_io *io, int64_t timeout_ns)
{
	struct exe_io *saved;
	int n;

	if (!io || !io->manual)
		return -EINVAL;
	if (is_shutdown(io))
		return -ESHUTDOWN;
	/* This thread is the hub while it drives the context. */
	saved = exe__tls_hub;
	exe__tls_hub = io;
	n = run_pass(io, timeout_ns < 0 ? -1 : exe_now_ns() + timeout_ns);
	exe__tls_hub = saved;
	return n;
}

int exe_io_run(struct exe_io *io)
{
	struct exe_io *saved;

	if (!io || !io->manual)
		return -EINVAL;
	saved = exe__tls_hub;
	exe__tls_hub = io;
	while (!atomic_exchange_explicit(&io->stop, 0, memory_order_acquire) && !is_shutdown(io))
		run_pass(io, -1);
	exe__tls_hub = saved;
	return 0;
}

int exe_io_stop(struct exe_io *io)
{
	if (!io || !io->manual)
		return -EINVAL;
	atomic_store_explicit(&io->stop, 1, memory_order_release);
	atomic_thread_fence(memory_order_seq_cst);
	exe__io_wake(io);
	return 0;
}

/* ---- the submit window (io_ops.c) ---- */

int exe__io_enter(struct exe_io *io)
{
	/* seq_cst: pairs with the seq_cst store of shutdown in destroy; a
	 * submitter that missed it is counted in active, which teardown waits
	 * for before its last look at the stack. */
	atomic_fetch_add_explicit(&io->active, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&io->shutdown, memory_order_seq_cst)) {
		atomic_fetch_sub_explicit(&io->active, 1, memory_order_release);
		return -ESHUTDOWN;
	}
	return 0;
}

void exe__io_leave(struct exe_io *io)
{
	atomic_fetch_sub_explicit(&io->active, 1, memory_order_release);
}
