/*
 * fiber_io.c - io calls that return their result directly: an operation on
 * the running fiber's io context and a wait on its future, or the plain
 * system call outside a fiber.
 *
 * A cancelled fiber's wait returns -ECANCELED while the kernel may still own
 * the buffer: the operation is cancelled and waited for (ignoring the
 * fiber's cancel for that one wait) before the call returns, so the caller
 * may free the buffer as soon as it has the answer.
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fiber_obj.h"

static int64_t await_op(struct exe__fiber *fb, int rc, struct exe_future **fp)
{
	struct exe_future *f;
	int64_t res;

	if (rc)
		return rc;
	f = *fp;
	res = exe_io_res(f, EXE_FOREVER);
	if (res == -ECANCELED && !exe_future_is_finished(f)) {
		exe_future_cancel(f);
		while (!exe_future_is_finished(f)) {
			/* The cancel was delivered (that is how we got here);
			 * hold it back until the kernel let go of the buffer. */
			fb->cancel_pending = false;
			(void)exe_future_wait(f, EXE_FOREVER);
			fb->cancel_pending = true;
		}
	}
	exe_future_unref(f);
	return res;
}

static int64_t errno_or(int64_t r)
{
	return r < 0 ? -errno : r;
}

int64_t exe_fiber_read(int fd, void *buf, size_t len, int64_t offset)
{
	struct exe__fiber *fb = exe__tls_fiber;
	struct exe_future *f = NULL;

	if (!buf && len)
		return -EINVAL; /* as the io operations say, in and out of a fiber */
	if (!fb) {
		if (offset < -1)
			return -EINVAL;
		return errno_or(offset < 0 ? read(fd, buf, len) : pread(fd, buf, len, offset));
	}
	int rc = exe_io_read(fb->io, fd, buf, len, offset, &f);

	return await_op(fb, rc, &f);
}

int64_t exe_fiber_write(int fd, const void *buf, size_t len, int64_t offset)
{
	struct exe__fiber *fb = exe__tls_fiber;
	struct exe_future *f = NULL;

	if (!buf && len)
		return -EINVAL; /* as the io operations say, in and out of a fiber */
	if (!fb) {
		if (offset < -1)
			return -EINVAL;
		return errno_or(offset < 0 ? write(fd, buf, len) : pwrite(fd, buf, len, offset));
	}
	int rc = exe_io_write(fb->io, fd, buf, len, offset, &f);

	return await_op(fb, rc, &f);
}

int64_t exe_fiber_recv(int fd, void *buf, size_t len, int flags)
{
	struct exe__fiber *fb = exe__tls_fiber;
	struct exe_future *f = NULL;

	if (!buf && len)
		return -EINVAL; /* as the io operations say, in and out of a fiber */
	if (!fb)
		return errno_or(recv(fd, buf, len, flags));
	int rc = exe_io_recv(fb->io, fd, buf, len, flags, &f);

	return await_op(fb, rc, &f);
}

int64_t exe_fiber_send(int fd, const void *buf, size_t len, int flags)
{
	struct exe__fiber *fb = exe__tls_fiber;
	struct exe_future *f = NULL;

	if (!buf && len)
		return -EINVAL; /* as the io operations say, in and out of a fiber */
	if (!fb)
		return errno_or(send(fd, buf, len, flags | MSG_NOSIGNAL));
	int rc = exe_io_send(fb->io, fd, buf, len, flags, &f);

	return await_op(fb, rc, &f);
}

int exe_fiber_accept(int fd, struct sockaddr *addr, unsigned *addrlen, int flags)
{
	struct exe__fiber *fb = exe__tls_fiber;
	struct exe_future *f = NULL;

	if (!addr != !addrlen)
		return -EINVAL;
	if (!fb)
		return (int)errno_or(accept4(fd, addr, (socklen_t *)addrlen, flags));
	int rc = exe_io_accept(fb->io, fd, addr, addrlen, flags, &f);

	return (int)await_op(fb, rc, &f);
}

int exe_fiber_connect(int fd, const struct sockaddr *addr, unsigned addrlen)
{
	struct exe__fiber *fb = exe__tls_fiber;
	struct exe_future *f = NULL;

	if (!addr || addrlen == 0)
		return -EINVAL;
	if (!fb)
		return (int)errno_or(connect(fd, addr, addrlen));
	int rc = exe_io_connect(fb->io, fd, addr, addrlen, &f);

	return (int)await_op(fb, rc, &f);
}
