/*
 * executor/io.h - an io context: file and socket operations and timers that
 * return futures.
 *
 * An io context owns a kernel ring (io_uring) or, where the kernel refuses
 * io_uring, an epoll set plus a small thread pool for file operations (the
 * "fallback" backend). By default it also owns one thread, "exe-io", that
 * drives it; with exe_io_opts.manual the caller drives it instead with
 * exe_io_run_once() / exe_io_run().
 *
 * Results. Every operation returns a future whose value is the kernel's
 * result cast to a pointer: (void *)(intptr_t)res, e.g. the byte count of a
 * read or the new fd of an accept. A negative result fails the future with
 * that code (-EBADF, -ECONNRESET, ...). exe_io_res() unwraps either.
 *
 * Threads. Submitting, cancelling and arming timers are safe from any thread
 * and take no lock on the submission path (timers take one short mutex).
 * Completions, done callbacks and timer functions run on the io thread (or
 * in exe_io_run_once() for a manual context). A done callback must not block
 * for long: it holds up every other operation of its context.
 *
 * Buffers. A buffer (or iovec array, or sockaddr out-parameter) given to an
 * operation belongs to the kernel until that operation's future is finished,
 * even after exe_future_cancel(): keep it alive and untouched until then.
 * Paths (openat) and addresses (connect) are copied at submit.
 *
 * Cancel. exe_future_cancel() on an operation that has not reached the
 * kernel yet makes it CANCELLED at once (returns 0). Once the kernel has it,
 * cancel asks the kernel to stop it and returns -EBUSY; the future then
 * finishes FAILED with -ECANCELED (or -EINTR), or with its normal result
 * when the operation completed first. File reads and writes that already
 * started usually complete. Cancel of a finished operation is -EALREADY.
 *
 * Lifetime. One owner. exe_io_destroy() refuses new work (-ESHUTDOWN),
 * cancels what is queued and in flight, waits until the kernel has let go of
 * every buffer, finishes every future and pending timer, then frees the
 * context. Futures may outlive the context.
 *
 * Fallback backend. Socket operations wait in epoll on the io thread; file
 * operations (read, write, their vectored forms, fsync, openat) run on a few
 * internal threads (exe_io_opts.file_workers). Use recv/send, not read/write,
 * on sockets and pipes there: a read that waits for a peer holds one of
 * those threads, cannot be cancelled, and keeps exe_io_destroy() waiting.
 *
 * Fork. A ring is not shared with a child: a forked child must not use an
 * io context of its parent (it may only leave it alone).
 *
 * Exit. The io thread never keeps a program from exiting: returning from
 * main() ends it with the process, pending timers included.
 */
#ifndef EXECUTOR_IO_H
#define EXECUTOR_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

struct exe_io;
struct iovec;
struct sockaddr;

/* Which backend a context uses (exe_io_opts.backend). */
enum exe_io_backend_kind {
	EXE_IO_AUTO = 0,     /* io_uring when the kernel allows it; EXE_IO_BACKEND may force one */
	EXE_IO_URING = 1,    /* io_uring or fail (-ENOSYS, -EPERM, -EACCES, -ENOMEM) */
	EXE_IO_FALLBACK = 2, /* epoll + a thread pool for files */
};

struct exe_io_opts {
	/* Submission ring size (rounded up to a power of two); 0: 256. More
	 * operations than this may be in flight: they are queued. */
	unsigned entries;
	/* No thread: the caller drives the context with exe_io_run_once() or
	 * exe_io_run(), one thread at a time. */
	bool manual;
	/* 0 (EXE_IO_AUTO): the default, io_uring when the kernel allows it.
	 * With EXE_IO_AUTO the environment variable EXE_IO_BACKEND forces a
	 * backend: "io_uring", "fallback" or "auto", the names
	 * exe_io_backend() returns; any other value (here or there) makes
	 * exe_io_create() fail with -EINVAL. */
	enum exe_io_backend_kind backend;
	/* Fallback backend: threads for file operations; 0: 4. */
	unsigned file_workers;
};

/* exe_io_fsync() flags. */
#define EXE_IO_FSYNC_DATASYNC (1u << 0) /* fdatasync() */

/*
 * exe_io_create - make an io context (and start its thread unless manual).
 * @opts may be NULL (defaults). With EXE_IO_AUTO the fallback is used when
 * the kernel refuses io_uring or lacks an opcode the context needs.
 * The caller owns the context and destroys it with exe_io_destroy().
 * Return: 0 with *@out, -EINVAL (NULL @out, an unknown backend in @opts
 * or in EXE_IO_BACKEND, too many entries), -ENOMEM, -EAGAIN (no thread),
 * or the kernel's refusal (-ENOSYS, -EPERM, -EACCES, -ENOMEM at ring setup;
 * -EOPNOTSUPP: an opcode is missing) when io_uring was required
 * (EXE_IO_URING or EXE_IO_BACKEND=io_uring) but is unavailable.
 */
EXE_API int exe_io_create(struct exe_io **out, const struct exe_io_opts *opts);

/*
 * exe_io_destroy - shut down and free @io (see Lifetime above). Blocks until
 * the kernel released every buffer. Must not be called from the io thread
 * (a done callback or timer function) nor concurrently with
 * exe_io_run_once() on a manual context. NULL is ok.
 */
EXE_API void exe_io_destroy(struct exe_io *io);

/*
 * exe_io_backend - which backend @io runs.
 * Return: "io_uring" or "fallback" (static strings, the spellings
 * EXE_IO_BACKEND takes); NULL for NULL @io.
 */
EXE_API const char *exe_io_backend(const struct exe_io *io);

/*
 * exe_io_run_once - manual contexts: hand queued operations to the kernel,
 * wait up to @timeout_ns (negative: until something happens, 0: poll) for
 * completions, wake-ups or timers, and complete what finished on this
 * thread (callbacks and timer functions run here). It does not wait when
 * it found work to do, so call it in a loop.
 * Return: how many requests, completions and timers it handled (>= 0),
 * -EINVAL (NULL @io or a threaded context), -ESHUTDOWN.
 */
EXE_API int exe_io_run_once(struct exe_io *io, int64_t timeout_ns);

/*
 * exe_io_run - manual contexts: exe_io_run_once() in a loop until
 * exe_io_stop().
 * Return: 0, -EINVAL (NULL @io or a threaded context).
 */
EXE_API int exe_io_run(struct exe_io *io);

/*
 * exe_io_stop - make exe_io_run() return soon; any thread, also from a
 * callback.
 * Return: 0, -EINVAL (NULL @io or a threaded context).
 */
EXE_API int exe_io_stop(struct exe_io *io);

/*
 * The operations below share one contract. Each hands out one reference to a
 * future (*@out) whose value is the kernel's result, and borrows the rest as
 * described at the top of this file. Bad arguments are refused at submit
 * (-EINVAL: NULL @io or @out, NULL buffer with a non-zero length); a bad fd
 * fails the future (-EBADF), like every other kernel error. @offset is a
 * file offset; -1 uses (and moves) the file position.
 */

/*
 * exe_io_read - read(2)/pread(2) up to @len bytes of @fd into @buf at @offset.
 * @buf belongs to the kernel until the future is finished. Value: bytes read.
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -ESHUTDOWN (exe_io_destroy() has
 * started).
 */
EXE_API int exe_io_read(struct exe_io *io, int fd, void *buf, size_t len, int64_t offset,
                        struct exe_future **out);

/*
 * exe_io_write - write(2)/pwrite(2) @len bytes of @buf to @fd at @offset.
 * @buf belongs to the kernel until the future is finished. Value: bytes
 * written.
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_write(struct exe_io *io, int fd, const void *buf, size_t len, int64_t offset,
                         struct exe_future **out);

/*
 * exe_io_readv - readv(2)/preadv(2) into @iovcnt buffers at @offset. The
 * iovec array and its buffers belong to the kernel until the future is
 * finished. Value: bytes read.
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_readv(struct exe_io *io, int fd, const struct iovec *iov, unsigned iovcnt, int64_t offset,
                         struct exe_future **out);

/*
 * exe_io_writev - writev(2)/pwritev(2) from @iovcnt buffers at @offset. The
 * iovec array and its buffers belong to the kernel until the future is
 * finished. Value: bytes written.
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_writev(struct exe_io *io, int fd, const struct iovec *iov, unsigned iovcnt, int64_t offset,
                          struct exe_future **out);

/*
 * exe_io_fsync - fsync(2) @fd, or fdatasync(2) with @flags
 * EXE_IO_FSYNC_DATASYNC (the only flag). Value: 0.
 * Return: 0 with *@out, -EINVAL (an unknown flag too), -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_fsync(struct exe_io *io, int fd, unsigned flags, struct exe_future **out);

/*
 * exe_io_openat - openat(2); @path is copied at submit. Value: the new fd.
 * Return: 0 with *@out, -EINVAL (NULL @path too), -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_openat(struct exe_io *io, int dirfd, const char *path, int flags, unsigned mode,
                          struct exe_future **out);

/*
 * exe_io_close - close(2) @fd. Value: 0.
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_close(struct exe_io *io, int fd, struct exe_future **out);

/*
 * exe_io_accept - accept4(2) on a listening socket. @addr/@addrlen may be
 * NULL; else they are the kernel's until the future finishes. The fallback
 * backend puts @fd in non-blocking mode. Value: the new fd.
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_accept(struct exe_io *io, int fd, struct sockaddr *addr, unsigned *addrlen, int flags,
                          struct exe_future **out);

/*
 * exe_io_connect - connect(2); @addr is copied at submit. The fallback
 * backend puts @fd in non-blocking mode. Value: 0.
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_connect(struct exe_io *io, int fd, const struct sockaddr *addr, unsigned addrlen,
                           struct exe_future **out);

/*
 * exe_io_recv - recv(2) up to @len bytes into @buf, which belongs to the
 * kernel until the future is finished. Value: bytes received (0: the peer
 * closed).
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_recv(struct exe_io *io, int fd, void *buf, size_t len, int flags, struct exe_future **out);

/*
 * exe_io_send - send(2) @len bytes of @buf, which belongs to the kernel until
 * the future is finished. Never raises SIGPIPE (MSG_NOSIGNAL is added).
 * Value: bytes sent.
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_send(struct exe_io *io, int fd, const void *buf, size_t len, int flags,
                        struct exe_future **out);

/*
 * exe_io_poll - wait until @fd is ready for @events (POLLIN, POLLOUT, ...);
 * one shot. Value: the ready events.
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_poll(struct exe_io *io, int fd, unsigned events, struct exe_future **out);

/*
 * exe_io_nop - an operation that does nothing in the kernel: the cost of the
 * machinery itself. Value: 0.
 * Return: 0 with *@out, -EINVAL, -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_nop(struct exe_io *io, struct exe_future **out);

/*
 * exe_io_res - wait up to @timeout_ns for an io future and unwrap it.
 * Return: the kernel's non-negative result, or a negative code (the
 * operation's failure, -ECANCELED, -ETIMEDOUT when it is not finished).
 */
EXE_API int64_t exe_io_res(struct exe_future *f, int64_t timeout_ns);

/* ---- Timers ----
 *
 * Timers live in user space behind one kernel deadline per context, so a
 * million of them are cheap to arm and to cancel: arming takes a short
 * mutex, cancelling a timer that has not fired is one compare-and-swap.
 * Deadlines are on CLOCK_MONOTONIC. Timer functions run on the io thread.
 */

/*
 * A timer function, the same meaning for exe_call_later() and
 * exe_call_every():
 *   0               success; run again as scheduled (a one-shot timer is
 *                   then DONE, value NULL);
 *   EXE_TIMER_STOP  success, no more runs: the future is DONE;
 *   negative        the future FAILS with that code, no more runs.
 * Any other positive value fails the future with -EINVAL.
 */
typedef int exe_timer_fn(void *arg);

/* A timer function's return: done, do not run again. */
#define EXE_TIMER_STOP 1

/*
 * exe_io_sleep - a future that is DONE (value NULL) @ns nanoseconds from
 * now (0: as soon as possible). Cancelling it before then makes it
 * CANCELLED.
 * Return: 0, -EINVAL (NULL @io or @out, negative @ns), -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_io_sleep(struct exe_io *io, int64_t ns, struct exe_future **out);

/*
 * exe_call_later - run fn(arg) on the io thread @delay_ns from now (0: as
 * soon as possible). A successful cancel (return 0) before it fires
 * guarantees fn never runs; -EBUSY means it is running, -EALREADY that it
 * ran. @out may be NULL.
 * Return: 0, -EINVAL (NULL @io or @fn, negative @delay_ns), -ENOMEM,
 * -ESHUTDOWN.
 */
EXE_API int exe_call_later(struct exe_io *io, int64_t delay_ns, exe_timer_fn *fn, void *arg,
                           struct exe_future **out);

/*
 * exe_call_every - run fn(arg) at start + k * @interval_ns, k = 1, 2, ...
 * (fixed rate: lateness never accumulates; a tick missed by a busy io thread
 * runs late rather than being dropped). The future finishes when fn returns
 * EXE_TIMER_STOP or a negative code (see exe_timer_fn), when cancelled
 * (FAILED with -ECANCELED once
 * it has fired, CANCELLED before), or at exe_io_destroy(). Once cancel has
 * returned, fn is never started again (a call already running finishes).
 * @out may be NULL only if fn itself ends the timer.
 * Return: 0, -EINVAL (NULL @io or @fn, @interval_ns <= 0: an interval of
 * 0 would never let the io thread rest), -ENOMEM, -ESHUTDOWN.
 */
EXE_API int exe_call_every(struct exe_io *io, int64_t interval_ns, exe_timer_fn *fn, void *arg,
                           struct exe_future **out);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_IO_H */
