/*
 * executor/fiber.h - stackful fibers on an io context's thread: sequential
 * code that switches whenever it would wait (gevent's spawn and hub in C).
 *
 * A fiber runs an ordinary task (exe_task_fn, as the pools do) on the thread
 * of the io context it was spawned on; the io thread is its hub. Many fibers
 * share that one thread (N:1): only one runs at a time, and it runs until it
 * waits. Its result is an ordinary future: wait on it, add callbacks,
 * exe_wait() it together with pool futures, cancel it.
 *
 * Every wait of the library switches. Called from a fiber, these suspend
 * the fiber and let the others run; called from a plain thread they block
 * as before:
 *   exe_future_wait(), exe_future_result(), exe_io_res() (so an io
 *   operation followed by a wait on its future reads like a blocking call),
 *   exe_wait(), exe_as_completed_next(), exe_queue_put/get/join() and their
 *   variants, exe_fiber_sleep(), exe_fiber_yield() and the wrappers below.
 * A wait from a fiber never spins and never runs a pool task inline (a
 * plain thread may): either would hold up every fiber of the thread.
 *
 * The trap. A call that does not switch - read(2) on a socket, sleep(3),
 * pthread_join(), a long computation - blocks the hub thread and every
 * fiber on it. exe_fiber_watchdog() reports such a fiber through the error
 * hook, with its name and how long it ran. Use the wrappers below or io
 * operations instead.
 *
 * Cancel. exe_future_cancel() on a fiber that has not started yet makes it
 * CANCELLED; it never runs. On a running fiber it returns -EBUSY and the
 * fiber's current wait returns -ECANCELED (at once, whatever it waited for),
 * and so does every later wait that would suspend it, so the fiber unwinds
 * quickly. A wait whose answer is already there (a finished future, a
 * non-empty queue) still returns it. The wrappers below cancel their io
 * operation and wait until the kernel has let go of the buffer before they
 * return -ECANCELED; a fiber that called exe_io_*() itself must not reuse
 * that buffer before the operation's future finished. A fiber that returns
 * (any code) FAILS its future with that code; cancel never forces it.
 *
 * Stacks. Each fiber has its own stack: mmap'd, 64 KiB by default
 * (exe_fiber_opts.stack_size), touched lazily (an idle fiber costs a few
 * resident pages), with a PROT_NONE guard page below it. Overflow hits the
 * guard page and the process dies with SIGSEGV: it is not detected or
 * recovered. Large local arrays and deep recursion need a larger stack.
 * Stacks of finished fibers are kept for reuse by the same io context.
 * Each live fiber costs two memory mappings; Linux allows vm.max_map_count
 * (65530 by default) per process, so about 30 000 fibers can be alive at
 * once unless it is raised; past that a fiber fails with -ENOMEM.
 *
 * Threads. exe_fiber_spawn() and cancel are safe from any thread. A fiber
 * stays on its io context's thread for its whole life. Several io contexts
 * (say, one per core) each run their own fibers; a fiber may wait on any
 * future, including another context's fiber.
 *
 * Lifetime. exe_io_destroy() cancels every fiber of the context and waits
 * for each to return: a fiber that ignores -ECANCELED and never returns
 * keeps it waiting. exe_io_destroy() must not be called from a fiber.
 */
#ifndef EXECUTOR_FIBER_H
#define EXECUTOR_FIBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "future.h"
#include "io.h"
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sockaddr;

struct exe_fiber_opts {
	/* Stack size in bytes, rounded up to whole pages; 0: 64 KiB. At
	 * least 16 KiB and at most 1 GiB (else -EINVAL). */
	size_t stack_size;
	/* A name for reports (the watchdog); copied, at most 31 bytes kept.
	 * NULL: "fiber". */
	const char *name;
};

/*
 * exe_fiber_spawn - start fn(arg, &result) as a fiber on @io's thread.
 * @opts may be NULL (defaults). The fiber starts soon, after the fibers
 * already ready to run. Its return becomes the future's outcome, as for a
 * pool task: 0 -> DONE with the result, negative -> FAILED with that code
 * (exe_task_set_error() and exe_task_set_result_free() work inside it).
 * @out (may be NULL: nobody will look at the outcome) receives a reference.
 * Any thread, including a fiber or a callback of @io.
 * Return: 0, -EINVAL (@io or @fn NULL, bad stack size), -ENOMEM,
 * -ESHUTDOWN (exe_io_destroy() has started). A stack that cannot be mapped
 * when the fiber starts fails its future with -ENOMEM.
 */
EXE_API int exe_fiber_spawn(struct exe_io *io, exe_task_fn *fn, void *arg, const struct exe_fiber_opts *opts,
                            struct exe_future **out);

/* exe_fiber_self - the future of the fiber running on this thread (borrowed),
 * or NULL outside a fiber. */
EXE_API struct exe_future *exe_fiber_self(void);

/* exe_fiber_io - the io context of the running fiber, or NULL outside one. */
EXE_API struct exe_io *exe_fiber_io(void);

/* exe_fiber_name - the running fiber's name, or NULL outside a fiber. */
EXE_API const char *exe_fiber_name(void);

/*
 * exe_fiber_yield - let the other ready fibers of this thread run, then go
 * on (gevent.sleep(0)). Outside a fiber it yields the CPU (sched_yield).
 * Return: 0, -ECANCELED (the fiber was cancelled).
 */
EXE_API int exe_fiber_yield(void);

/*
 * exe_fiber_sleep - suspend the fiber for @ns nanoseconds (0: yield).
 * Outside a fiber it sleeps the thread.
 * Return: 0, -EINVAL (@ns negative), -ECANCELED.
 */
EXE_API int exe_fiber_sleep(int64_t ns);

/*
 * The wrappers below are an io operation on the running fiber's io context
 * and a wait for it, so each reads like the blocking call and returns its
 * result directly. Outside a fiber they make the plain system call (which
 * blocks the thread). Buffers are borrowed for the call. A cancelled fiber
 * gets -ECANCELED after the operation was stopped (the kernel has let go of
 * the buffer). Codes common to all of them: -EINVAL (a NULL buffer with a
 * length), -ENOMEM, -ESHUTDOWN (the io context is being destroyed),
 * -ECANCELED, and the kernel's own (-EBADF, -ECONNRESET, ...).
 */

/*
 * exe_fiber_read - read(2) / pread(2) that switches while it waits.
 * @offset: a file offset; -1 uses (and moves) the file position.
 * Return: the bytes read (0 at end of file), or a negative code (above).
 */
EXE_API int64_t exe_fiber_read(int fd, void *buf, size_t len, int64_t offset);

/*
 * exe_fiber_write - write(2) / pwrite(2) that switches while it waits.
 * @offset: a file offset; -1 uses (and moves) the file position.
 * Return: the bytes written, or a negative code (above).
 */
EXE_API int64_t exe_fiber_write(int fd, const void *buf, size_t len, int64_t offset);

/*
 * exe_fiber_recv - recv(2) that switches while it waits (gevent's
 * conn.recv()).
 * Return: the bytes received (0: the peer closed), or a negative code.
 */
EXE_API int64_t exe_fiber_recv(int fd, void *buf, size_t len, int flags);

/*
 * exe_fiber_send - send(2) that switches while it waits; never raises
 * SIGPIPE (MSG_NOSIGNAL is added). It may send less than @len.
 * Return: the bytes sent, or a negative code (-EPIPE: the peer closed).
 */
EXE_API int64_t exe_fiber_send(int fd, const void *buf, size_t len, int flags);

/*
 * exe_fiber_accept - accept4(2) that switches while it waits. @addr and
 * @addrlen may both be NULL (one alone is -EINVAL).
 * Return: the new fd, or a negative code.
 */
EXE_API int exe_fiber_accept(int fd, struct sockaddr *addr, unsigned *addrlen, int flags);

/*
 * exe_fiber_connect - connect(2) that switches while it waits; @addr is
 * copied.
 * Return: 0, or a negative code (-EINVAL: @addr NULL or @addrlen 0,
 * -ECONNREFUSED, ...).
 */
EXE_API int exe_fiber_connect(int fd, const struct sockaddr *addr, unsigned addrlen);

/*
 * exe_fiber_watchdog - report fibers of @io that run longer than @bound_ns
 * without switching: the error hook gets what "fiber watchdog", code -ETIME
 * and a message naming the fiber and how long it had run, once per such
 * stretch, while the fiber is still running (a fiber stuck for good is
 * reported too). A small thread samples the context every @bound_ns / 4;
 * switches cost one clock read more while it is on. 0 turns it off.
 * Any thread.
 * Return: 0, -EINVAL (@io NULL, @bound_ns negative), -EAGAIN (no thread).
 */
EXE_API int exe_fiber_watchdog(struct exe_io *io, int64_t bound_ns);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_FIBER_H */
