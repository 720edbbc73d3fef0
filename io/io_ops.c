/*
 * io_ops.c - the public operations: each one allocates its operation (the
 * future first), fills it in inside the submit window and pushes it to the
 * io thread (io.c). Arguments are checked here; everything the kernel checks
 * (a bad fd, a missing path) fails the future instead.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/uio.h>

#include "backend.h"

static struct exe__io_op *op_new(struct exe_io *io, int opcode, size_t extra)
{
	struct exe__io_op *op;

	op = (struct exe__io_op *)exe__future_new_sized(sizeof(*op) + extra, &exe__io_op_ops, io, 2);
	if (!op)
		return NULL;
	op->opcode = (uint8_t)opcode;
	op->in_kernel = false;
	op->cancel_seen = false;
	op->await_cancel = false;
	op->cancel_sent = false;
	op->in_pool = false;
	op->fd = -1;
	op->flags = 0;
	op->len = 0;
	op->buf = NULL;
	op->addrlen = NULL;
	op->off = 0;
	op->res = 0;
	op->wnext = NULL;
	return op;
}

/* Queue @op and hand the caller its reference. Called inside the window. */
static int op_submit(struct exe_io *io, struct exe__io_op *op, struct exe_future **out)
{
	*out = &op->fut;
	op->sub.f = &op->fut;
	op->sub.kind = EXE__REQ_START;
	exe__io_push(io, &op->sub);
	exe__io_wake(io);
	exe__io_leave(io);
	return 0;
}

/* Allocate inside the submit window. */
static int prepare(struct exe_io *io, int opcode, size_t extra, struct exe_future **out,
                   struct exe__io_op **opp)
{
	int rc;

	if (!io || !out)
		return -EINVAL;
	rc = exe__io_enter(io);
	if (rc)
		return rc;
	*opp = op_new(io, opcode, extra);
	if (!*opp) {
		exe__io_leave(io);
		return -ENOMEM;
	}
	return 0;
}

/* The shape every buffer operation shares: check, take an op, fill it in.
 * @buf is a byte buffer or an iovec array (@len then counts iovecs, at most
 * @max_len); @offset is -1 for "the file position" and unused on sockets. */
static int buf_op(struct exe_io *io, int opcode, int fd, void *buf, size_t len, size_t max_len,
                  int64_t offset, int flags, struct exe_future **out)
{
	struct exe__io_op *op;
	int rc;

	if ((!buf && len) || len > max_len || offset < -1)
		return -EINVAL;
	rc = prepare(io, opcode, 0, out, &op);
	if (rc)
		return rc;
	op->fd = fd;
	op->buf = buf;
	op->len = (unsigned)len;
	op->off = offset;
	op->flags = flags;
	return op_submit(io, op, out);
}

int exe_io_read(struct exe_io *io, int fd, void *buf, size_t len, int64_t offset, struct exe_future **out)
{
	return buf_op(io, EXE__OP_READ, fd, buf, len, UINT32_MAX, offset, 0, out);
}

int exe_io_write(struct exe_io *io, int fd, const void *buf, size_t len, int64_t offset,
                 struct exe_future **out)
{
	return buf_op(io, EXE__OP_WRITE, fd, (void *)buf, len, UINT32_MAX, offset, 0, out);
}

int exe_io_readv(struct exe_io *io, int fd, const struct iovec *iov, unsigned iovcnt, int64_t offset,
                 struct exe_future **out)
{
	return buf_op(io, EXE__OP_READV, fd, (void *)iov, iovcnt, IOV_MAX, offset, 0, out);
}

int exe_io_writev(struct exe_io *io, int fd, const struct iovec *iov, unsigned iovcnt, int64_t offset,
                  struct exe_future **out)
{
	return buf_op(io, EXE__OP_WRITEV, fd, (void *)iov, iovcnt, IOV_MAX, offset, 0, out);
}

int exe_io_fsync(struct exe_io *io, int fd, unsigned flags, struct exe_future **out)
{
	struct exe__io_op *op;
	int rc;

	if (flags & ~EXE_IO_FSYNC_DATASYNC)
		return -EINVAL;
	rc = prepare(io, EXE__OP_FSYNC, 0, out, &op);
	if (rc)
		return rc;
	op->fd = fd;
	op->flags = (int)flags;
	return op_submit(io, op, out);
}

int exe_io_openat(struct exe_io *io, int dirfd, const char *path, int flags, unsigned mode,
                  struct exe_future **out)
{
	struct exe__io_op *op;
	size_t n;
	int rc;

	if (!path)
		return -EINVAL;
	n = strlen(path) + 1;
	rc = prepare(io, EXE__OP_OPENAT, n, out, &op);
	if (rc)
		return rc;
	memcpy(op->inline_data, path, n);
	op->fd = dirfd;
	op->buf = op->inline_data;
	op->flags = flags;
	op->len = mode;
	return op_submit(io, op, out);
}

int exe_io_close(struct exe_io *io, int fd, struct exe_future **out)
{
	struct exe__io_op *op;
	int rc = prepare(io, EXE__OP_CLOSE, 0, out, &op);

	if (rc)
		return rc;
	op->fd = fd;
	return op_submit(io, op, out);
}

int exe_io_accept(struct exe_io *io, int fd, struct sockaddr *addr, unsigned *addrlen, int flags,
                  struct exe_future **out)
{
	struct exe__io_op *op;
	int rc;

	if (!addr != !addrlen)
		return -EINVAL;
	rc = prepare(io, EXE__OP_ACCEPT, 0, out, &op);
	if (rc)
		return rc;
	op->fd = fd;
	op->buf = addr;
	op->addrlen = addrlen;
	op->flags = flags;
	return op_submit(io, op, out);
}

int exe_io_connect(struct exe_io *io, int fd, const struct sockaddr *addr, unsigned addrlen,
                   struct exe_future **out)
{
	struct exe__io_op *op;
	int rc;

	if (!addr || addrlen == 0 || addrlen > sizeof(struct sockaddr_storage))
		return -EINVAL;
	rc = prepare(io, EXE__OP_CONNECT, addrlen, out, &op);
	if (rc)
		return rc;
	memcpy(op->inline_data, addr, addrlen);
	op->fd = fd;
	op->buf = op->inline_data;
	op->len = addrlen;
	return op_submit(io, op, out);
}

int exe_io_recv(struct exe_io *io, int fd, void *buf, size_t len, int flags, struct exe_future **out)
{
	return buf_op(io, EXE__OP_RECV, fd, buf, len, UINT32_MAX, -1, flags, out);
}

int exe_io_send(struct exe_io *io, int fd, const void *buf, size_t len, int flags, struct exe_future **out)
{
	return buf_op(io, EXE__OP_SEND, fd, (void *)buf, len, UINT32_MAX, -1, flags | MSG_NOSIGNAL, out);
}

int exe_io_poll(struct exe_io *io, int fd, unsigned events, struct exe_future **out)
{
	struct exe__io_op *op;
	int rc;

	if (events == 0)
		return -EINVAL;
	rc = prepare(io, EXE__OP_POLL, 0, out, &op);
	if (rc)
		return rc;
	op->fd = fd;
	op->len = events;
	return op_submit(io, op, out);
}

int exe_io_nop(struct exe_io *io, struct exe_future **out)
{
	struct exe__io_op *op;
	int rc = prepare(io, EXE__OP_NOP, 0, out, &op);

	if (rc)
		return rc;
	return op_submit(io, op, out);
}

int64_t exe_io_res(struct exe_future *f, int64_t timeout_ns)
{
	void *value;
	int rc;

	if (!f)
		return -EINVAL;
	rc = exe_future_result(f, &value, timeout_ns);
	if (rc)
		return rc;
	return (int64_t)(intptr_t)value;
}
