/*
 * executor/process.h - run a function of this program in a forked child and
 * manage it as Python's multiprocessing.Process does: join with a timeout,
 * terminate, kill, is_alive, exit code, pid, a pollable fd, daemon children.
 *
 * The child is a fork() of the caller: it sees this process's memory as it
 * was at the fork, runs fn and exits with its return value (0-255) without
 * running atexit handlers. If the caller has other threads, only the forking
 * thread exists in the child: fn must not use locks another thread may have
 * held (malloc is safe with glibc; the library's pools and queues are not).
 * Start children before creating thread pools where you can.
 *
 * Exit codes follow Python: the status passed to exit for a normal exit,
 * -signo for a child killed by a signal.
 *
 * Threads. Every call may be made from any thread, concurrently, except
 * exe_process_destroy(), which must be the last call on the handle. The
 * child is reaped by this handle (through its pidfd): do not waitpid() it.
 */
#ifndef EXECUTOR_PROCESS_H
#define EXECUTOR_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct exe_process;

/* The child's body: its return value (masked to 0-255) is the exit status.
 * @arg/@len are the buffer given to exe_process_start(), in the child's copy
 * of memory. */
typedef int exe_process_fn(const void *arg, size_t len);

struct exe_process_opts {
	/* Kill the child (SIGKILL) when the thread that started it exits,
	 * which includes any exit of this process, orderly or not
	 * (PR_SET_PDEATHSIG). Start daemons from a long-lived thread. */
	bool daemon;
};

/*
 * exe_process_start - fork a child that runs @fn(@arg, @len) and exits.
 * @arg may be NULL when @len is 0; the parent keeps ownership of it (the
 * child has its own copy from the fork). @opts may be NULL. The child starts
 * with every signal unblocked, even if the caller blocks some.
 * Ownership: *@out is the caller's: exe_process_destroy().
 * Return: 0 with *@out set; -EINVAL (NULL @out or @fn, NULL @arg with
 * @len); -ENOMEM; -EAGAIN (fork); -ENOSYS (no pidfd: Linux < 5.4).
 */
EXE_API int exe_process_start(struct exe_process **out, exe_process_fn *fn, const void *arg, size_t len,
                              const struct exe_process_opts *opts);

/*
 * exe_process_join - wait until the child exits (and reap it), up to
 * @timeout_ns (negative: forever; 0: check once).
 * Return: 0 the child has exited (see exe_process_exitcode()); -ETIMEDOUT
 * still running; -EINVAL NULL @p.
 */
EXE_API int exe_process_join(struct exe_process *p, int64_t timeout_ns);

/*
 * exe_process_terminate - send SIGTERM (no-op once the child has exited).
 * Return: 0; -EINVAL NULL @p.
 */
EXE_API int exe_process_terminate(struct exe_process *p);

/*
 * exe_process_kill - send SIGKILL (no-op once the child has exited).
 * Return: 0; -EINVAL NULL @p.
 */
EXE_API int exe_process_kill(struct exe_process *p);

/*
 * exe_process_is_alive - whether the child is still running (reaps it if
 * it has exited).
 * Return: true while it runs; false once it exited and for NULL @p.
 */
EXE_API bool exe_process_is_alive(struct exe_process *p);

/*
 * exe_process_exitcode - the child's exit code without waiting: its exit
 * status, or -signo if a signal killed it.
 * Return: 0 with *@code set; -ETIMEDOUT still running (a 0-timeout join);
 * -EINVAL NULL argument.
 */
EXE_API int exe_process_exitcode(struct exe_process *p, int *code);

/*
 * exe_process_pid - the child's pid, valid until destroy: the child is not
 * reaped by anyone else, so the pid cannot be reused before it is joined.
 * Return: the pid; -1 for NULL @p.
 */
EXE_API pid_t exe_process_pid(struct exe_process *p);

/*
 * exe_process_fd - a pidfd for the child: readable (POLLIN) once it has
 * exited, for poll/epoll/io_uring. Owned by @p, closed by destroy.
 * Return: the fd; -1 for NULL @p.
 */
EXE_API int exe_process_fd(struct exe_process *p);

/*
 * exe_process_destroy - release @p. A child still running is killed
 * (SIGKILL) and reaped, so no zombie is left behind: join first to let it
 * finish. NULL is a no-op.
 */
EXE_API void exe_process_destroy(struct exe_process *p);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_PROCESS_H */
