/*
 * process.c - struct exe_process: a forked child running a function of this
 * program, managed through a pidfd.
 *
 * Design
 *  - fork(), then pidfd_open() in the parent. The child is our unreaped
 *    child until we reap it, so its pid cannot be reused and pidfd_open()
 *    cannot name another process. The pidfd becomes readable when the child
 *    exits: join polls it (ppoll, so the timeout is exact to the ns) and
 *    reaps with waitid(P_PIDFD, WNOHANG). Signals go through
 *    pidfd_send_signal(), which cannot hit a recycled pid either.
 *  - The child unblocks every signal first: a thread-pool worker (or any
 *    thread) blocks signals, and a child that inherited that mask would
 *    ignore terminate(). A daemon child sets PR_SET_PDEATHSIG, then checks
 *    its parent is still the one that forked it (the parent may have died
 *    before the prctl).
 *
 * Invariants
 *  - lock guards exited/code and the reaping waitid: the child is reaped
 *    exactly once, and once exited is set the pid is never signalled.
 *  - Nothing blocks with lock held (the wait for exit is a poll on the fd).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "errors.h"
#include <executor/process.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

struct exe_process {
	pid_t pid;
	int pidfd;
	bool daemon;
	pthread_mutex_t lock;
	bool exited; /* reaped; code valid */
	int code;
};

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_signal(int fd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
}

static _Noreturn void child_main(exe_process_fn *fn, const void *arg, size_t len, bool daemon, pid_t parent)
{
	sigset_t all;

	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	if (daemon) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* The parent died before the prctl: die as the signal would
		 * have made us, so observers see the same end either way. */
		if (getppid() != parent)
			raise(SIGKILL);
	}
	_exit(fn(arg, len) & 0xff);
}

int exe_process_start(struct exe_process **out, exe_process_fn *fn, const void *arg, size_t len,
                      const struct exe_process_opts *opts)
{
	bool daemon = opts && opts->daemon;
	pid_t parent = getpid(), pid;
	struct exe_process *p;
	int err, fd;

	if (!out || !fn || (!arg && len))
		return -EINVAL;
	p = exe__calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	err = pthread_mutex_init(&p->lock, NULL);
	if (err) {
		exe__free(p);
		return -err;
	}
	pid = fork();
	if (pid < 0) {
		err = -errno;
		goto fail;
	}
	if (pid == 0)
		child_main(fn, arg, len, daemon, parent);
	fd = pidfd_open_(pid);
	if (fd < 0) {
		err = -errno;
		/* Without a pidfd there is no handle: do not leave the child
		 * running unmanaged, nor a zombie. */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		goto fail;
	}
	p->pid = pid;
	p->pidfd = fd;
	p->daemon = daemon;
	*out = p;
	return 0;

fail:
	pthread_mutex_destroy(&p->lock);
	exe__free(p);
	return err;
}

/* Reap the child if it has exited. Return: whether it has. */
static bool reap(struct exe_process *p)
{
	siginfo_t si = {0};
	bool done;

	pthread_mutex_lock(&p->lock);
	if (!p->exited && waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid != 0) {
		p->code = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
		p->exited = true;
	}
	done = p->exited;
	pthread_mutex_unlock(&p->lock);
	return done;
}

int exe_process_join(struct exe_process *p, int64_t timeout_ns)
{
	int64_t deadline;
	struct pollfd pfd;

	if (!p)
		return -EINVAL;
	deadline = exe__deadline(timeout_ns);
	pfd.fd = p->pidfd;
	pfd.events = POLLIN;
	for (;;) {
		struct timespec ts, *tsp = NULL;
		int64_t left;

		if (reap(p))
			return 0;
		if (timeout_ns == 0)
			return -ETIMEDOUT;
		if (deadline >= 0) {
			left = deadline - exe_now_ns();
			if (left <= 0)
				return -ETIMEDOUT;
			ts.tv_sec = left / EXE_NS_PER_S;
			ts.tv_nsec = left % EXE_NS_PER_S;
			tsp = &ts;
		}
		/* EINTR and spurious readiness just loop to reap(). */
		ppoll(&pfd, 1, tsp, NULL);
	}
}

static int send_signal(struct exe_process *p, int sig)
{
	if (!p)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	/* Under lock: never signal after reaping. A child that exited but is
	 * not reaped yet is a zombie; signalling it is harmless. */
	if (!p->exited)
		pidfd_signal(p->pidfd, sig);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int exe_process_terminate(struct exe_process *p)
{
	return send_signal(p, SIGTERM);
}

int exe_process_kill(struct exe_process *p)
{
	return send_signal(p, SIGKILL);
}

bool exe_process_is_alive(struct exe_process *p)
{
	return p && !reap(p);
}

int exe_process_exitcode(struct exe_process *p, int *code)
{
	if (!p || !code)
		return -EINVAL;
	if (!reap(p))
		return -ETIMEDOUT; /* a query of something not finished: a 0-timeout wait */
	*code = p->code;           /* immutable once exited is set (under lock in reap()) */
	return 0;
}

pid_t exe_process_pid(struct exe_process *p)
{
	return p ? p->pid : -1;
}

int exe_process_fd(struct exe_process *p)
{
	return p ? p->pidfd : -1;
}

void exe_process_destroy(struct exe_process *p)
{
	if (!p)
		return;
	if (!reap(p)) {
		exe_process_kill(p);
		exe_process_join(p, EXE_FOREVER);
	}
	close(p->pidfd);
	pthread_mutex_destroy(&p->lock);
	exe__free(p);
}
