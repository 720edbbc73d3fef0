/*
 * uring.c - the io_uring backend. The only file that includes liburing.h.
 *
 * Design
 *  - One ring per context, driven by one thread. A threaded context makes
 *    its ring on the io thread with IORING_SETUP_SINGLE_ISSUER |
 *    IORING_SETUP_DEFER_TASKRUN (kernel 6.1+; plain flags otherwise): the
 *    kernel then runs completion work only when this thread asks for
 *    events, which it does on every pass (submit_and_get_events, or a
 *    GETEVENTS wait), so nothing starves and no IPI interrupts the thread.
 *    A manual context uses plain flags: its driver may change threads.
 *  - user_data is the operation pointer; two small tags mark the eventfd
 *    read and cancel requests (pointers are at least 16-aligned). The
 *    eventfd read is re-armed after each completion.
 *  - Timeouts come from the timer heap: one timed wait per pass
 *    (IORING_ENTER_EXT_ARG), never a timeout SQE per timer.
 *  - Cancel is IORING_OP_ASYNC_CANCEL by user_data; its own completion is
 *    ignored (-ENOENT when the operation finished first). The cancelled
 *    operation completes with -ECANCELED (or -EINTR, or its result).
 *
 * Invariants
 *  - Only the io thread (or the manual driver) touches the ring.
 *  - op->in_kernel is true from prep until its CQE: only then is a cancel
 *    SQE meaningful.
 */
#include <errno.h>
#include <liburing.h>
#include <string.h>

#include "alloc.h"
#include "backend.h"

#define TAG_EFD 1u
#define TAG_CANCEL 2u

struct uring {
	struct io_uring ring;
	uint64_t efd_buf;
	bool efd_armed;
};

static const int needed_ops[] = {
    IORING_OP_NOP,   IORING_OP_READ,   IORING_OP_WRITE,    IORING_OP_READV,        IORING_OP_WRITEV,
    IORING_OP_FSYNC, IORING_OP_OPENAT, IORING_OP_CLOSE,    IORING_OP_ACCEPT,       IORING_OP_CONNECT,
    IORING_OP_RECV,  IORING_OP_SEND,   IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL,
};

static struct uring *ur(struct exe_io *io)
{
	return io->be_data;
}

static int check_probe(struct io_uring *ring)
{
	struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
	size_t i;
	int rc = 0;

	if (!probe)
		return -EOPNOTSUPP;
	for (i = 0; i < sizeof(needed_ops) / sizeof(needed_ops[0]); i++)
		if (!io_uring_opcode_supported(probe, needed_ops[i]))
			rc = -EOPNOTSUPP;
	io_uring_free_probe(probe);
	return rc;
}

static int uring_init(struct exe_io *io, unsigned entries)
{
	struct io_uring_params p;
	struct uring *u = exe__calloc(1, sizeof(*u));
	int rc;

	if (!u)
		return -ENOMEM;
	memset(&p, 0, sizeof(p));
	/* A roomy CQ: completions of operations queued beyond the SQ size. */
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
	p.cq_entries = entries * 4;
	if (!io->manual)
		p.flags |=
		    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	rc = io_uring_queue_init_params(entries, &u->ring, &p);
	if (rc == -EINVAL && !io->manual) {
		/* Before 6.1: no DEFER_TASKRUN. */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
		p.cq_entries = entries * 4;
		rc = io_uring_queue_init_params(entries, &u->ring, &p);
	}
	if (rc) {
		exe__free(u);
		return rc;
	}
	rc = check_probe(&u->ring);
	if (rc) {
		io_uring_queue_exit(&u->ring);
		exe__free(u);
		return rc;
	}
	io->be_data = u;
	return 0;
}

static struct io_uring_sqe *get_sqe(struct uring *u)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&u->ring))) {
		/* SQ full: hand the batch to the kernel and continue. With
		 * DEFER_TASKRUN, also run completion work so a full CQ drains. */
		io_uring_submit_and_get_events(&u->ring);
	}
	return sqe;
}

static int reap(struct exe_io *io, struct uring *u);

static void uring_fini(struct exe_io *io)
{
	struct uring *u = ur(io);

	/* The eventfd read targets u->efd_buf: take it back from the kernel
	 * before freeing u (ring teardown is asynchronous). */
	if (u->efd_armed) {
		struct io_uring_sqe *sqe = get_sqe(u);

		io_uring_prep_cancel64(sqe, TAG_EFD, 0);
		io_uring_sqe_set_data64(sqe, TAG_CANCEL);
		while (u->efd_armed) {
			io_uring_submit_and_wait(&u->ring, 1);
			reap(io, u);
		}
	}
	io_uring_queue_exit(&u->ring);
	exe__free(u);
	io->be_data = NULL;
}

static void uring_start(struct exe_io *io, struct exe__io_op *op)
{
	struct uring *u = ur(io);
	struct io_uring_sqe *sqe = get_sqe(u);
	uint64_t off = (uint64_t)op->off;

	switch (op->opcode) {
	case EXE__OP_NOP: io_uring_prep_nop(sqe); break;
	case EXE__OP_READ: io_uring_prep_read(sqe, op->fd, op->buf, op->len, off); break;
	case EXE__OP_WRITE: io_uring_prep_write(sqe, op->fd, op->buf, op->len, off); break;
	case EXE__OP_READV: io_uring_prep_readv(sqe, op->fd, op->buf, op->len, off); break;
	case EXE__OP_WRITEV: io_uring_prep_writev(sqe, op->fd, op->buf, op->len, off); break;
	case EXE__OP_FSYNC:
		io_uring_prep_fsync(sqe, op->fd,
		                    (op->flags & EXE_IO_FSYNC_DATASYNC) ? IORING_FSYNC_DATASYNC : 0);
		break;
	case EXE__OP_OPENAT: io_uring_prep_openat(sqe, op->fd, op->buf, op->flags, op->len); break;
	case EXE__OP_CLOSE: io_uring_prep_close(sqe, op->fd); break;
	case EXE__OP_ACCEPT:
		io_uring_prep_accept(sqe, op->fd, op->buf, (socklen_t *)op->addrlen, op->flags);
		break;
	case EXE__OP_CONNECT: io_uring_prep_connect(sqe, op->fd, op->buf, op->len); break;
	case EXE__OP_RECV: io_uring_prep_recv(sqe, op->fd, op->buf, op->len, op->flags); break;
	case EXE__OP_SEND: io_uring_prep_send(sqe, op->fd, op->buf, op->len, op->flags); break;
	case EXE__OP_POLL: io_uring_prep_poll_add(sqe, op->fd, op->len); break;
	}
	io_uring_sqe_set_data(sqe, op);
	op->in_kernel = true;
}

static void uring_cancel(struct exe_io *io, struct exe__io_op *op)
{
	struct uring *u = ur(io);
	struct io_uring_sqe *sqe;

	if (!op->in_kernel || op->cancel_sent)
		return;
	sqe = get_sqe(u);
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
	io_uring_sqe_set_data64(sqe, TAG_CANCEL);
	op->cancel_sent = true;
}

static void arm_efd(struct uring *u, int efd)
{
	struct io_uring_sqe *sqe = get_sqe(u);

	io_uring_prep_read(sqe, efd, &u->efd_buf, sizeof(u->efd_buf), 0);
	io_uring_sqe_set_data64(sqe, TAG_EFD);
	u->efd_armed = true;
}

static int reap(struct exe_io *io, struct uring *u)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int n = 0;

	/* Completing runs done callbacks here; they may submit or cancel,
	 * which only pushes to the request stack: the ring is not re-entered. */
	io_uring_for_each_cqe(&u->ring, head, cqe)
	{
		uint64_t ud = cqe->user_data;

		seen++;
		if (ud == TAG_EFD) {
			/* A wake-up: the loop re-reads the stack and the heap. */
			u->efd_armed = false;
		} else if (ud == TAG_CANCEL || ud == LIBURING_UDATA_TIMEOUT) {
			/* a cancel's own result, or liburing's wait timeout */
		} else {
			exe__io_op_done(io, (struct exe__io_op *)(uintptr_t)ud, cqe->res);
			n++;
		}
	}
	io_uring_cq_advance(&u->ring, seen);
	return n;
}

static int uring_wait(struct exe_io *io, int64_t deadline)
{
	struct uring *u = ur(io);
	struct io_uring_cqe *cqe;
	int n = 0;

	if (!u->efd_armed)
		arm_efd(u, io->efd);
	if (deadline == 0) {
		io_uring_submit_and_get_events(&u->ring);
	} else if (deadline < 0) {
		io_uring_submit_and_wait(&u->ring, 1);
	} else {
		int64_t rel = deadline - exe_now_ns();

		if (rel <= 0) {
			io_uring_submit_and_get_events(&u->ring);
		} else {
			struct __kernel_timespec ts = {
			    .tv_sec = rel / 1000000000,
			    .tv_nsec = rel % 1000000000,
			};

			/* -ETIME on timeout, -EINTR: both just end the wait. */
			io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
		}
	}
	n += reap(io, u);
	return n;
}

/* CQEs posted, completions the kernel holds until this thread enters
 * (DEFER_TASKRUN with TASKRUN_FLAG), or CQEs that overflowed the ring. */
static bool uring_pending(struct exe_io *io)
{
	struct uring *u = ur(io);

	return io_uring_cq_ready(&u->ring) ||
	       (IO_URING_READ_ONCE(*u->ring.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW));
}

const struct exe__io_backend exe__io_uring_backend = {
    .name = "io_uring",
    .init = uring_init,
    .fini = uring_fini,
    .start = uring_start,
    .cancel = uring_cancel,
    .wait = uring_wait,
    .pending = uring_pending,
};
