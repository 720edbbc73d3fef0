/*
 * remote_util.c - frame I/O and the command runner of the remote_cmd
 * examples (see remote_util.h).
 */
#include "remote_util.h"

#include <executor.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

int rp_recv(int fd, struct rp_reader *r, size_t max_body, struct rp_header *h, const void **body,
            const char **why)
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

/* ---- the command runner ---- */

struct child_spec {
	const char *cmd;
	int out_w, err_w;
};

/* Runs in the forked child: only async-signal-safe calls until exec. */
static int child_exec(const void *arg, size_t len)
{
	const struct child_spec *cs = arg;
	int devnull = open("/dev/null", O_RDONLY);

	(void)len;
	/* Its own process group, so a timeout kills the shell's children too. */
	setpgid(0, 0);
	if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(cs->out_w, 1) < 0 || dup2(cs->err_w, 2) < 0)
		return 127;
	execl("/bin/sh", "sh", "-c", cs->cmd, (char *)NULL);
	return 127;
}

int cmd_run(const char *cmd, int64_t timeout_ns, cmd_output_fn *fn, void *arg, struct cmd_result *res)
{
	int out[2], err[2];
	struct child_spec cs = {.cmd = cmd};
	struct exe_process *p;
	struct pollfd pfd[2];
	int64_t deadline = exe_now_ns() + timeout_ns;
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
	rc = exe_process_start(&p, child_exec, &cs, sizeof(cs), NULL);
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
		int64_t left = deadline - exe_now_ns();
		int n;

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
	/* Both pipes closed: the command is done, or about to be. Otherwise
	 * (timeout, stop) kill the group: a shell's children included. */
	if (res->timed_out || res->stopped) {
		kill(-pid, SIGKILL);
		exe_process_kill(p);
	}
	if (exe_process_join(p, 5 * EXE_NS_PER_S) != 0) {
		kill(-pid, SIGKILL);
		exe_process_join(p, EXE_FOREVER);
	}
	exe_process_exitcode(p, &code);
	res->exit_status = code;
	exe_process_destroy(p);
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	return 0;
}
