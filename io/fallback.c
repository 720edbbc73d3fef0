/*
 * fallback.c - the backend for kernels or sandboxes without io_uring
 * (Docker's default seccomp profile, kernel.io_uring_disabled): epoll for
 * sockets, a small thread pool for files.
 *
 * Design
 *  - Socket operations run on the io thread: the system call is tried at
 *    once without blocking (MSG_DONTWAIT; accept and connect need the fd in
 *    O_NONBLOCK mode, which is set on first use); on EAGAIN the operation
 *    waits on its fd with EPOLLONESHOT and is retried when the fd is ready.
 *    Several operations may wait on one fd: the fd's registration is the
 *    union of what they wait for, re-armed after each event.
 *  - File operations (and reads or writes on any fd, as regular files are
 *    never "ready" for epoll) run on an internal exe thread pool; the worker
 *    hands the result back with a REQ_DONE push, so completions and their
 *    callbacks still run on the io thread. A file operation that started
 *    cannot be cancelled; it completes normally.
 *  - A stream read or write (no offset) on an fd that epoll can watch - a
 *    pipe, a tty, a signalfd, an eventfd, a socket - first waits on the io
 *    thread until the fd is ready, like a socket operation, and only then
 *    goes to a file thread, where it no longer blocks. So it can be
 *    cancelled while it waits (a signalfd read pending forever no longer
 *    keeps exe_io_destroy() waiting on a file thread), and it holds no
 *    file thread while it waits. (O_NONBLOCK on the caller's fd would let
 *    the io thread do the call itself, but the flag belongs to the open
 *    file, which the caller may share.)
 *  - The wait is epoll_pwait2() with a nanosecond timeout (timers), or
 *    epoll_wait() rounded up to milliseconds where it is missing.
 *
 * Invariants
 *  - The fd table and the epoll set are touched by the io thread only.
 *  - An operation waits in at most one fd list; op->in_pool operations are
 *    on no list.
 *  - Limitation: closing an fd while operations wait on it leaves them
 *    waiting until cancelled, as with io_uring; an fd number reused before
 *    they are cancelled would wake them on the new file.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "alloc.h"
#include "backend.h"

#define EFD_TAG UINT64_MAX
/* attempt()'s result for a stream read or write whose fd is ready: it is
 * handed to a file thread (fd_ready()). */
#define HAND_TO_POOL INT64_MIN
#define MAX_EVENTS 128

struct fdw {
	struct exe__io_op *head, *tail; /* waiting operations, in order */
	bool added;                     /* registered in the epoll set */
};

struct fallback {
	int epfd;
	struct exe_pool *pool;
	struct fdw *fds;
	size_t nfds;
	bool no_pwait2;
};

static struct fallback *fb(struct exe_io *io)
{
	return io->be_data;
}

static int fb_init(struct exe_io *io, unsigned entries)
{
	struct exe_pool_opts po = {0};
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EFD_TAG};
	struct fallback *b = exe__calloc(1, sizeof(*b));
	int rc;

	(void)entries;
	if (!b)
		return -ENOMEM;
	b->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (b->epfd < 0) {
		rc = -errno;
		goto fail;
	}
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, io->efd, &ev) < 0) {
		rc = -errno;
		goto fail_ep;
	}
	po.workers = io->file_workers;
	po.name = "exe-io-file";
	po.no_caller_runs = true;
	rc = exe_thread_pool_create(&b->pool, &po);
	if (rc)
		goto fail_ep;
	io->be_data = b;
	return 0;

fail_ep:
	close(b->epfd);
fail:
	exe__free(b);
	return rc;
}

static void fb_fini(struct exe_io *io)
{
	struct fallback *b = fb(io);

	/* Every file operation was retired, so the workers are idle. */
	exe_pool_destroy(b->pool);
	close(b->epfd);
	exe__free(b->fds);
	exe__free(b);
	io->be_data = NULL;
}

/* ---- files, on the pool ---- */

static int64_t sysres(ssize_t r)
{
	return r < 0 ? -errno : r;
}

static int file_task(void *arg, void **result)
{
	struct exe__io_op *op = arg;
	struct exe_io *io = op->fut.owner;
	int64_t res = 0;

	(void)result;
	switch (op->opcode) {
	case EXE__OP_READ:
		res = sysres(op->off < 0 ? read(op->fd, op->buf, op->len)
		                         : pread(op->fd, op->buf, op->len, op->off));
		break;
	case EXE__OP_WRITE:
		res = sysres(op->off < 0 ? write(op->fd, op->buf, op->len)
		                         : pwrite(op->fd, op->buf, op->len, op->off));
		break;
	case EXE__OP_READV:
		res = sysres(op->off < 0 ? readv(op->fd, op->buf, (int)op->len)
		                         : preadv(op->fd, op->buf, (int)op->len, op->off));
		break;
	case EXE__OP_WRITEV:
		res = sysres(op->off < 0 ? writev(op->fd, op->buf, (int)op->len)
		                         : pwritev(op->fd, op->buf, (int)op->len, op->off));
		break;
	case EXE__OP_FSYNC:
		res = sysres((op->flags & EXE_IO_FSYNC_DATASYNC) ? fdatasync(op->fd) : fsync(op->fd));
		break;
	case EXE__OP_OPENAT: res = sysres(openat(op->fd, op->buf, op->flags, (mode_t)op->len)); break;
	}
	op->res = res;
	op->sub.f = &op->fut;
	op->sub.kind = EXE__REQ_DONE;
	/* io outlives this task: fb_fini() joins the pool before io is freed. */
	exe__io_push(io, &op->sub);
	exe__io_wake(io);
	return 0;
}

static void to_pool(struct exe_io *io, struct exe__io_op *op)
{
	int rc;

	op->in_pool = true;
	rc = exe_pool_submit(fb(io)->pool, file_task, op, NULL);
	if (rc)
		exe__io_op_done(io, op, rc);
}

/* Whether a stream operation on @fd should wait for readiness first: true
 * for whatever is not a regular file or block device (epoll refuses those,
 * and they are always "ready"). */
static bool pollable(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode) && !S_ISDIR(st.st_mode);
}

/* ---- sockets, on the io thread ---- */

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static bool again(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK;
}

/* Try @op without blocking. Return true when it finished (*res set). */
static bool attempt(struct exe__io_op *op, uint32_t revents, int64_t *res)
{
	ssize_t r;
	int err;

	switch (op->opcode) {
	case EXE__OP_RECV: r = recv(op->fd, op->buf, op->len, op->flags | MSG_DONTWAIT); break;
	case EXE__OP_SEND: r = send(op->fd, op->buf, op->len, op->flags | MSG_DONTWAIT | MSG_NOSIGNAL); break;
	case EXE__OP_ACCEPT: r = accept4(op->fd, op->buf, (socklen_t *)op->addrlen, op->flags); break;
	case EXE__OP_CONNECT:
		if (op->res == 0) {
			/* First try. */
			op->res = 1;
			r = connect(op->fd, op->buf, op->len);
			if (r < 0 && errno == EINPROGRESS)
				return false;
			break;
		}
		{
			socklen_t len = sizeof(err);

			if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
				err = errno;
			*res = -err;
			return true;
		}
	case EXE__OP_POLL:
		if (!revents)
			return false;
		*res = revents & (op->len | POLLERR | POLLHUP | POLLNVAL);
		return true;
	case EXE__OP_READ:
	case EXE__OP_READV:
	case EXE__OP_WRITE:
	case EXE__OP_WRITEV:
		if (!revents)
			return false;
		*res = HAND_TO_POOL;
		return true;
	default: *res = -EINVAL; return true;
	}
	if (r < 0 && again(errno))
		return false;
	*res = sysres(r);
	return true;
}

static uint32_t wanted(const struct exe__io_op *op)
{
	switch (op->opcode) {
	case EXE__OP_SEND:
	case EXE__OP_WRITE:
	case EXE__OP_WRITEV:
	case EXE__OP_CONNECT: return EPOLLOUT;
	case EXE__OP_POLL: return op->len;
	default: return EPOLLIN;
	}
}

static struct fdw *fd_slot(struct fallback *b, int fd)
{
	if ((size_t)fd >= b->nfds) {
		size_t n = b->nfds ? b->nfds : 64;
		struct fdw *t;

		while (n <= (size_t)fd)
			n *= 2;
		t = exe__calloc(n, sizeof(*t));
		if (!t)
			return NULL;
		if (b->nfds)
			memcpy(t, b->fds, b->nfds * sizeof(*t));
		exe__free(b->fds);
		b->fds = t;
		b->nfds = n;
	}
	return &b->fds[fd];
}

/* (Re-)arm @fd for what its waiters want. Return: 0 or -errno. */
static int arm(struct fallback *b, int fd, struct fdw *w)
{
	struct epoll_event ev = {.events = EPOLLONESHOT, .data.u64 = (uint64_t)fd};
	struct exe__io_op *op;

	for (op = w->head; op; op = op->wnext)
		ev.events |= wanted(op);
	if (w->added && epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
		return 0;
	/* Not added yet, or the fd was closed (epoll forgot it) and reused. */
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ||
	    (errno == EEXIST && epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)) {
		w->added = true;
		return 0;
	}
	return -errno;
}

static void unlink_waiter(struct fdw *w, struct exe__io_op *op)
{
	struct exe__io_op **pp, *prev = NULL;

	for (pp = &w->head; *pp; prev = *pp, pp = &(*pp)->wnext) {
		if (*pp == op) {
			*pp = op->wnext;
			if (w->tail == op)
				w->tail = prev;
			op->wnext = NULL;
			return;
		}
	}
}

static void wait_on_fd(struct exe_io *io, struct exe__io_op *op)
{
	struct fallback *b = fb(io);
	struct fdw *w;
	int rc;

	if (op->fd < 0) {
		exe__io_op_done(io, op, -EBADF);
		return;
	}
	w = fd_slot(b, op->fd);
	if (!w) {
		exe__io_op_done(io, op, -ENOMEM);
		return;
	}
	op->wnext = NULL;
	if (w->tail)
		w->tail->wnext = op;
	else
		w->head = op;
	w->tail = op;
	rc = arm(b, op->fd, w);
	if (rc) {
		unlink_waiter(w, op);
		/* epoll cannot watch it (/dev/null, some devices): a file
		 * thread does the read or write as it comes. */
		if (rc == -EPERM && op->opcode != EXE__OP_RECV && op->opcode != EXE__OP_SEND &&
		    op->opcode != EXE__OP_ACCEPT && op->opcode != EXE__OP_CONNECT &&
		    op->opcode != EXE__OP_POLL)
			to_pool(io, op);
		else
			exe__io_op_done(io, op, rc);
	}
}

static void sock_start(struct exe_io *io, struct exe__io_op *op)
{
	int64_t res;
	int rc;

	if (op->opcode == EXE__OP_ACCEPT || op->opcode == EXE__OP_CONNECT) {
		rc = set_nonblock(op->fd);
		if (rc) {
			exe__io_op_done(io, op, rc);
			return;
		}
	}
	op->res = 0;
	if (op->opcode != EXE__OP_POLL && attempt(op, 0, &res)) {
		exe__io_op_done(io, op, res);
		return;
	}
	wait_on_fd(io, op);
}

/* @fd is ready: retry its waiters in order, re-arm for the rest. */
static int fd_ready(struct exe_io *io, int fd, uint32_t revents)
{
	struct fallback *b = fb(io);
	struct fdw *w;
	struct exe__io_op *op, *next, *keep = NULL, *keep_tail = NULL, *done = NULL;
	int n = 0;

	if ((size_t)fd >= b->nfds)
		return 0;
	w = &b->fds[fd];
	/* Finish outside the list walk: completing runs callbacks. */
	for (op = w->head; op; op = next) {
		int64_t res;

		next = op->wnext;
		op->wnext = NULL;
		if ((revents & (wanted(op) | EPOLLERR | EPOLLHUP)) && attempt(op, revents, &res)) {
			op->res = res;
			op->wnext = done;
			done = op;
			continue;
		}
		if (keep_tail)
			keep_tail->wnext = op;
		else
			keep = op;
		keep_tail = op;
	}
	w->head = keep;
	w->tail = keep_tail;
	if (w->head) {
		int rc = arm(b, fd, w);

		if (rc) {
			/* Cannot wait any more: fail the rest. */
			for (op = w->head; op; op = next) {
				next = op->wnext;
				op->res = rc;
				op->wnext = done;
				done = op;
			}
			w->head = w->tail = NULL;
		}
	}
	for (op = done; op; op = next) {
		next = op->wnext;
		op->wnext = NULL;
		if (op->res == HAND_TO_POOL) {
			to_pool(io, op);
			continue;
		}
		exe__io_op_done(io, op, op->res);
		n++;
	}
	return n;
}

/* ---- the backend ---- */

static void fb_start(struct exe_io *io, struct exe__io_op *op)
{
	switch (op->opcode) {
	case EXE__OP_NOP: exe__io_op_done(io, op, 0); return;
	case EXE__OP_CLOSE: exe__io_op_done(io, op, sysres(close(op->fd))); return;
	case EXE__OP_RECV:
	case EXE__OP_SEND:
	case EXE__OP_ACCEPT:
	case EXE__OP_CONNECT:
	case EXE__OP_POLL: sock_start(io, op); return;
	case EXE__OP_READ:
	case EXE__OP_READV:
		if (op->off < 0 && pollable(op->fd)) {
			wait_on_fd(io, op);
			return;
		}
		if (exe__io_read_cached(io, op))
			return;
		/* Not (all) in the page cache: a file thread reads it. */
		to_pool(io, op);
		return;
	case EXE__OP_WRITE:
	case EXE__OP_WRITEV:
		if (op->off < 0 && pollable(op->fd)) {
			wait_on_fd(io, op);
			return;
		}
		to_pool(io, op);
		return;
	default: to_pool(io, op); return;
	}
}

static void fb_cancel(struct exe_io *io, struct exe__io_op *op)
{
	struct fallback *b = fb(io);

	if (op->in_pool || op->cancel_sent || exe_future_is_finished(&op->fut))
		return;
	op->cancel_sent = true;
	if (op->fd >= 0 && (size_t)op->fd < b->nfds)
		unlink_waiter(&b->fds[op->fd], op);
	/* The fd stays armed for the others; a spurious event is harmless. */
	exe__io_op_done(io, op, -ECANCELED);
}

static int fb_wait(struct exe_io *io, int64_t deadline)
{
	struct fallback *b = fb(io);
	struct epoll_event ev[MAX_EVENTS];
	struct timespec ts, *tsp = NULL;
	int i, nev, n = 0;

	if (deadline >= 0) {
		int64_t rel = deadline == 0 ? 0 : deadline - exe_now_ns();

		if (rel < 0)
			rel = 0;
		ts.tv_sec = rel / 1000000000;
		ts.tv_nsec = rel % 1000000000;
		tsp = &ts;
	}
	nev = -1;
	if (!b->no_pwait2) {
		nev = epoll_pwait2(b->epfd, ev, MAX_EVENTS, tsp, NULL);
		if (nev < 0 && errno == ENOSYS)
			b->no_pwait2 = true;
	}
	if (b->no_pwait2) {
		int ms = -1;

		if (tsp) /* round up: waking early would spin */
			ms = (int)(ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000);
		nev = epoll_wait(b->epfd, ev, MAX_EVENTS, ms);
	}
	for (i = 0; i < nev; i++) {
		if (ev[i].data.u64 == EFD_TAG) {
			uint64_t v;

			/* A wake-up: readable, so this read cannot block; the
			 * loop re-reads the stack and the heap. */
			if (read(io->efd, &v, sizeof(v)) < 0)
				v = 0;
			continue;
		}
		n += fd_ready(io, (int)ev[i].data.u64, ev[i].events);
	}
	return n;
}

const struct exe__io_backend exe__io_fallback_backend = {
    .name = "fallback",
    .init = fb_init,
    .fini = fb_fini,
    .start = fb_start,
    .cancel = fb_cancel,
    .wait = fb_wait,
};
