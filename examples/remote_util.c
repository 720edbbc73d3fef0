/*
 * remote_util.c - frame I/O and the command runner of the remote_cmd
 * examples (see remote_util.h).
 */
#include "remote_util.h"

#include <executor.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int rp_send(int fd, const struct rp_header *h, const void *body, size_t len)
{
	char *frame;
	size_t n, off = 0;
	int rc = rp_encode(h, body, len, &frame, &n);

	if (rc)
		return rc;
	while (off < n) {
		ssize_t w = send(fd, frame + off, n - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = w < 0 ? -errno : -EPIPE;
			break;
		}
		off += (size_t)w;
	}
	free(frame);
	return rc;
}

void rp_reader_free(struct rp_reader *r)
{
	free(r->buf);
	*r = (struct rp_reader){0};
}

/* Drop the frame handed out last time: it is at the start of the buffer. */
static void consume(struct rp_reader *r, size_t n)
{
	memmove(r->buf, r->buf + n, r->len - n);
	r->len -= n;
}

int rp_recv(int fd, struct rp_reader *r, size_t max_body, int64_t deadline_ns, struct rp_header *h,
            const void **body, const char **why)
{
	size_t limit = 4 + RP_MAX_HEADER + max_body;

	if (r->last && r->last <= r->len)
		consume(r, r->last);
	r->last = 0;
	for (;;) {
		long n = rp_parse(r->buf, r->len, max_body, h, body, why);
		ssize_t got;

		if (n > 0) {
			r->last = (size_t)n;
			return 1;
		}
		if (n < 0)
			return (int)n;
		if (r->len == r->cap) {
			/* rp_parse() refuses anything longer than @limit, so the
			 * buffer never grows past it. */
			size_t cap = r->cap ? r->cap * 2 : 4096;
			char *nb;

			if (cap > limit)
				cap = limit;
			if (cap <= r->len)
				return -EMSGSIZE;
			nb = realloc(r->buf, cap);
			if (!nb)
				return -ENOMEM;
			r->buf = nb;
			r->cap = cap;
		}
		if (deadline_ns >= 0) {
			/* The deadline is for the whole frame: a peer that drips
			 * a byte now and then gets no more time than a silent one. */
			struct pollfd p = {.fd = fd, .events = POLLIN};
			int64_t left = deadline_ns - exe_now_ns();
			int ready;

			if (left <= 0)
				return -ETIMEDOUT;
			ready = poll(&p, 1, (int)((left + EXE_NS_PER_MS - 1) / EXE_NS_PER_MS));
			if (ready < 0 && errno == EINTR)
				continue;
			if (ready < 0)
				return -errno;
			if (ready == 0)
				return -ETIMEDOUT;
		}
		got = recv(fd, r->buf + r->len, r->cap - r->len, 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
		if (got == 0)
			return r->len ? -EPIPE : 0;
		r->len += (size_t)got;
	}
}

/* ---- the command runner ----
 *
 * Containment. Every process a command starts must end when the command
 * does (its shell exited, its time ran out, its output went over the
 * limit) or when whoever ran it dies. A process group is not enough:
 * `cmd &` outlives the shell, `setsid cmd` leaves the group, and nothing
 * kills a group whose server was SIGKILLed. So each command runs under a
 * supervisor process of its own (the exe_process child), which:
 *  - is a child subreaper (PR_SET_CHILD_SUBREAPER): whatever the command's
 *    processes orphan - a double fork, a setsid daemon - is re-parented to
 *    it rather than to init, so every descendant stays its descendant. When
 *    the shell exits it SIGKILLs its children until it has none left (the
 *    orphans of each killed one become its children in turn). This works
 *    without privileges on any Linux since 3.4;
 *  - where allowed, also puts the shell in a new PID namespace (as root
 *    directly; otherwise inside a user namespace that maps only our own uid
 *    and gid, so files keep their owner). The shell is then the namespace's
 *    init, and when it dies the kernel kills every process in the namespace
 *    - even one the supervisor never saw, even if the supervisor itself was
 *    SIGKILLed. Where namespaces are refused (seccomp, sysctls, no
 *    CONFIG_PID_NS) the subreaper alone does the job;
 *  - gets SIGTERM when the thread that started it dies (PR_SET_PDEATHSIG:
 *    the server died), and the shell gets SIGKILL when the supervisor dies.
 *    On SIGTERM (that, or cmd_run's timeout) the supervisor kills everything
 *    and then itself with SIGKILL, which is what the caller reports.
 * cgroups would contain too (cgroup.kill), but need a delegated cgroup
 * tree, which an example cannot count on.
 * The supervisor is forked from a threaded program, so until it exits it
 * makes async-signal-safe calls only (system calls, no stdio or malloc).
 */

struct child_spec {
	const char *cmd;
	int out_w, err_w;
	pid_t parent;
	bool no_namespace;
};

static bool no_namespace;

void cmd_set_no_namespace(bool off)
{
	no_namespace = off;
}

static size_t fmt_ulong(char *p, unsigned long v)
{
	char tmp[24];
	size_t n = 0, len = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (n)
		p[len++] = tmp[--n];
	return len;
}

static bool write_file(const char *path, const char *text, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, text, len) == (ssize_t)len;
	close(fd);
	return ok;
}

/* "ID ID 1\n": our own id is the only one mapped into the namespace. */
static bool map_own_id(const char *path, unsigned long id)
{
	char line[64];
	size_t n = fmt_ulong(line, id);

	line[n++] = ' ';
	n += fmt_ulong(line + n, id);
	memcpy(line + n, " 1\n", 3);
	return write_file(path, line, n + 3);
}

/* Make the next fork() the init of a new PID namespace, if allowed.
 * Return: whether it will be. */
static bool enter_pid_namespace(void)
{
	uid_t uid = getuid();
	gid_t gid = getgid();

	if (unshare(CLONE_NEWPID) == 0)
		return true;
	if (unshare(CLONE_NEWUSER))
		return false;
	/* In the new user namespace we may map our own ids (and must, or
	 * the command would run as the overflow user). */
	if (!write_file("/proc/self/setgroups", "deny", 4) || !map_own_id("/proc/self/uid_map", uid) ||
	    !map_own_id("/proc/self/gid_map", gid))
		return false;
	return unshare(CLONE_NEWPID) == 0;
}

static _Noreturn void exec_shell(const struct child_spec *cs)
{
	sigset_t none;
	int devnull = open("/dev/null", O_RDONLY);

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(cs->out_w, 1) < 0 || dup2(cs->err_w, 2) < 0)
		_exit(127);
	execl("/bin/sh", "sh", "-c", cs->cmd, (char *)NULL);
	_exit(127);
}

/* The namespace's init: the shell is not init itself, because init ignores
 * every signal it has no handler for (`kill $$` would do nothing) and
 * cannot die of one. It reaps whatever is orphaned, and when the shell
 * ends passes its wait status up through @status_w and exits - which makes
 * the kernel kill everything left in the namespace. */
static _Noreturn void ns_init(const struct child_spec *cs, int status_w)
{
	pid_t sh = fork();

	if (sh < 0)
		_exit(127);
	if (sh == 0)
		exec_shell(cs);
	for (;;) {
		int st;
		pid_t w = waitpid(-1, &st, __WALL);

		if (w == sh) {
			(void)!write(status_w, &st, sizeof(st));
			_exit(0);
		}
		if (w < 0 && errno != EINTR)
			_exit(127);
	}
}

/* SIGKILL every child until there is none: each round, the orphans of the
 * processes killed in the last one have become our children (subreaper). */
static void kill_all_children(pid_t shell, int *shell_status, bool *shell_reaped)
{
	char path[64] = "/proc/self/task/", buf[4096];
	size_t n = strlen(path);

	n += fmt_ulong(path + n, (unsigned long)getpid());
	memcpy(path + n, "/children", sizeof("/children"));
	for (;;) {
		int fd = open(path, O_RDONLY | O_CLOEXEC), st;
		pid_t w;

		if (fd >= 0) {
			ssize_t got;
			unsigned long pid = 0;
			bool digits = false;

			while ((got = read(fd, buf, sizeof(buf))) > 0) {
				for (ssize_t i = 0; i <= got; i++) {
					if (i < got && buf[i] >= '0' && buf[i] <= '9') {
						pid = pid * 10 + (unsigned long)(buf[i] - '0');
						digits = true;
					} else if (digits && (i < got || got < (ssize_t)sizeof(buf))) {
						kill((pid_t)pid, SIGKILL);
						pid = 0;
						digits = false;
					}
				}
			}
			close(fd);
		}
		if (!*shell_reaped)
			kill(shell, SIGKILL);
		w = waitpid(-1, &st, __WALL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return; /* ECHILD: nothing left */
		if (w == shell) {
			*shell_status = st;
			*shell_reaped = true;
		}
	}
}

/* Runs in the supervisor (see above). Its exit status is the shell's. */
static int supervise(const void *arg, size_t len)
{
	const struct child_spec *cs = arg;
	int alive[2], status_pipe[2], status = 0, sig, relayed;
	bool reaped = false, stopped = false, in_ns;
	sigset_t waitset, none;
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	pid_t self = getpid(), shell;

	(void)len;
	sigemptyset(&none);
	sigemptyset(&waitset);
	sigaddset(&waitset, SIGCHLD);
	sigaddset(&waitset, SIGTERM);
	sigaddset(&waitset, SIGINT);
	sigaddset(&waitset, SIGHUP);
	sigprocmask(SIG_BLOCK, &waitset, NULL);
	sigaction(SIGCHLD, &dfl, NULL); /* an inherited SIG_IGN would auto-reap */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != cs->parent)
		return 127; /* the server died before the prctl: start nothing */
	/* Its own process group, so the caller's last resort (a kill of the
	 * group) reaches the shell's children too. */
	setpgid(0, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	in_ns = !cs->no_namespace && enter_pid_namespace();
	/* The first child learns of our death through this pipe's write end,
	 * which only we hold (getppid() says 0 inside a new namespace); the
	 * namespace's init reports the shell's status through the other. */
	if (pipe2(alive, O_CLOEXEC) || pipe2(status_pipe, O_CLOEXEC | O_NONBLOCK))
		return 127;
	shell = fork();
	if (shell < 0)
		return 127;
	if (shell == 0) {
		struct pollfd p = {.fd = alive[0], .events = POLLIN};

		close(alive[1]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (poll(&p, 1, 0) != 0)
			_exit(127); /* the supervisor died before the prctl */
		if (in_ns)
			ns_init(cs, status_pipe[1]);
		exec_shell(cs);
	}
	close(alive[0]);
	close(status_pipe[1]);
	close(cs->out_w); /* only the command holds the pipes now */
	close(cs->err_w);
	while (!reaped && !stopped) {
		siginfo_t si;

		sig = sigwaitinfo(&waitset, &si);
		if (sig == SIGCHLD) {
			pid_t w;
			int st;

			while ((w = waitpid(-1, &st, WNOHANG | __WALL)) > 0) {
				if (w == shell) {
					status = st;
					reaped = true;
				}
			}
		} else if (sig > 0) {
			stopped = true;
		}
	}
	kill_all_children(shell, &status, &reaped);
	/* With a namespace, "shell" was its init: the shell's own status
	 * came through the pipe (if it ended before init did). */
	if (in_ns && !stopped && read(status_pipe[0], &relayed, sizeof(relayed)) == (ssize_t)sizeof(relayed))
		status = relayed;
	if (stopped || !WIFEXITED(status)) {
		/* Die as the shell died (or by SIGKILL when stopped), so the
		 * caller sees the same status as without a supervisor. */
		struct rlimit no_core = {0, 0};

		sig = stopped || !WIFSIGNALED(status) ? SIGKILL : WTERMSIG(status);
		setrlimit(RLIMIT_CORE, &no_core);
		sigaction(sig, &dfl, NULL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		kill(self, sig);
		kill(self, SIGKILL);
	}
	return WEXITSTATUS(status);
}

int cmd_run(const char *cmd, int64_t timeout_ns, cmd_output_fn *fn, void *arg, struct cmd_result *res)
{
	int out[2], err[2];
	struct child_spec cs = {.cmd = cmd, .parent = getpid(), .no_namespace = no_namespace};
	struct exe_process *p;
	struct pollfd pfd[2];
	int64_t deadline = exe_now_ns() + timeout_ns, left;
	char buf[16384];
	int rc, open_pipes = 2, code = -1;
	pid_t pid;

	*res = (struct cmd_result){0};
	/* Close-on-exec: the child gets them only through its dup2()s, so
	 * commands running for other clients never hold these pipes open. */
	if (pipe2(out, O_CLOEXEC))
		return -errno;
	if (pipe2(err, O_CLOEXEC)) {
		rc = -errno;
		close(out[0]);
		close(out[1]);
		return rc;
	}
	cs.out_w = out[1];
	cs.err_w = err[1];
	rc = exe_process_start(&p, supervise, &cs, sizeof(cs), NULL);
	close(out[1]);
	close(err[1]);
	if (rc) {
		close(out[0]);
		close(err[0]);
		return rc;
	}
	pid = exe_process_pid(p);
	pfd[0] = (struct pollfd){.fd = out[0], .events = POLLIN};
	pfd[1] = (struct pollfd){.fd = err[0], .events = POLLIN};
	while (open_pipes > 0) {
		int n;

		left = deadline - exe_now_ns();
		if (left <= 0) {
			res->timed_out = true;
			break;
		}
		n = poll(pfd, 2, (int)((left + EXE_NS_PER_MS - 1) / EXE_NS_PER_MS));
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2 && n > 0; i++) {
			ssize_t got;

			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			got = read(pfd[i].fd, buf, sizeof(buf));
			if (got > 0) {
				if (fn(i ? RP_STDERR : RP_STDOUT, buf, (size_t)got, arg)) {
					res->stopped = true;
					open_pipes = 0;
				}
			} else if (got == 0 || errno != EINTR) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				open_pipes--;
			}
		}
	}
	/* Both pipes closed: the command is done - or it closed them itself
	 * and runs on, still under its own time limit. */
	if (!res->timed_out && !res->stopped) {
		left = deadline - exe_now_ns();
		if (exe_process_join(p, left > 0 ? left : 0) != 0)
			res->timed_out = true;
	}
	if (res->timed_out || res->stopped) {
		/* The supervisor kills everything the command started, then
		 * itself. Should it not within a grace period, SIGKILL it and
		 * the group (the PID namespace, if any, dies with it). */
		exe_process_terminate(p);
		if (exe_process_join(p, 2 * EXE_NS_PER_S) != 0) {
			exe_process_kill(p);
			kill(-pid, SIGKILL);
		}
	}
	exe_process_join(p, EXE_FOREVER);
	exe_process_exitcode(p, &code);
	res->exit_status = code;
	exe_process_destroy(p);
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	return 0;
}
