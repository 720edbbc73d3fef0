/*
 * proc_worker.c - the child side of the process pool: the fork server and
 * the worker loop.
 *
 * Why a fork server. Forking a worker straight from the application could
 * copy a lock some other thread holds at that instant (a user mutex, a
 * library's internal lock) into a child where nobody will ever release it.
 * Exec'ing the program instead (with function pointers translated to
 * (module, offset) through dladdr) is safe but loses what the API promises:
 * arguments that are pointers into the program's memory, init functions with
 * pointer arguments, anything set up before the pool. So the pool forks one
 * server while it is being created, from its collector thread; the server is
 * single-threaded, never allocates and only runs this file's code, and every
 * worker, including each replacement started much later, is forked from it.
 * A worker therefore always starts from the program as it was at creation,
 * never from a state in which a later thread held a lock. libc's allocator
 * and stdio are made consistent by glibc's fork itself.
 *
 * Design
 *  - The server keeps descriptor 3 (its control socket) and stdio, nothing
 *    else. A spawn request carries the worker's channel end; the server
 *    forks, the child moves the channel to descriptor 3 and closes the rest,
 *    and the server answers with the child's pid and a pidfd (SCM_RIGHTS).
 *  - The server reaps its children through their pidfds (waitid(P_PIDFD))
 *    as soon as they exit and reports pid and status, so no zombie stays
 *    and the parent learns the signal that killed a worker.
 *  - When the control socket closes (pool shut down), or the parent dies,
 *    the server kills and reaps its remaining children and exits.
 *  - Parent death: each worker sets PR_SET_PDEATHSIG(SIGKILL); the server
 *    sets PR_SET_PDEATHSIG(SIGTERM), which it blocks except inside ppoll(),
 *    so it wakes, cleans up and exits (a SIGTERM from anyone else does the
 *    same). Both check after the prctl that their parent is still the one
 *    they expect (it may have died before).
 *  - A task's process tree ends with its worker. A worker leads its own
 *    process group and is a child subreaper, so whatever a task starts
 *    stays below it even after double forks and setsid(); it reaps adopted
 *    orphans between tasks. The server is a subreaper too: when a worker
 *    exits, the server kills the worker's process group while the worker is
 *    still a zombie (its pid, hence the group id, cannot be reused yet),
 *    reaps it, then kills and reaps every child it has that is not a worker
 *    (the dead worker's descendants, reparented to the server), until none
 *    is left. Killing one may orphan its own children onto the server: the
 *    sweep repeats. /proc/self/task/<tid>/children lists them.
 *
 * Map chunks: a worker runs a chunk's elements in order and records each
 * value, then the count, in its own cell of a shared array (the frame names
 * the cell), so a death mid-chunk loses nothing that finished before it.
 *
 * Worker exit statuses of its own: 0 asked to stop (end of channel), 120 the
 * channel failed, 121 the parent sent a bad frame.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "future_internal.h"
#include "proc_internal.h"

#define WORKER_EXIT_CHANNEL 120
#define WORKER_EXIT_BADFRAME 121

struct kid {
	pid_t pid;
	int pidfd;
};

size_t exe__proc_server_mem_size(unsigned kid_cap)
{
	return kid_cap * sizeof(struct kid) + (kid_cap + 1) * sizeof(struct pollfd);
}

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void close_from(unsigned first)
{
	if (syscall(SYS_close_range, first, ~0u, 0) == 0)
		return;
	for (int fd = (int)first; fd < 65536; fd++)
		close(fd);
}

static void die_with_parent(pid_t expected_parent, int sig)
{
	prctl(PR_SET_PDEATHSIG, sig);
	/* The parent may have died before the prctl: then nobody signals us. */
	if (getppid() != expected_parent)
		_exit(0);
}

/* ---- the worker ---- */

static void reply(int chan, struct exe__frame *h, const void *payload, int fd)
{
	if (exe__frame_send(chan, h, payload, fd))
		_exit(WORKER_EXIT_CHANNEL);
}

static void reply_error(int chan, uint16_t kind, uint64_t id, int code, const char *msg)
{
	struct exe__frame h = {.kind = kind, .id = id, .status = code};
	size_t len = msg ? strlen(msg) : 0;

	if (len >= EXE__INLINE_MAX)
		len = EXE__INLINE_MAX - 1;
	if (len) {
		h.flags = EXE__FF_MSG;
		h.len = len;
	}
	reply(chan, &h, msg, -1);
}

/* The arena as this worker sees it (inherited at the same address). */
static void *pp_arena;
static size_t arena_size;

static int fix_code(int rc)
{
	return rc > 0 ? -rc : rc;
}

static void run_ptr(int chan, const struct exe__frame *t, struct exe_future *cur)
{
	exe_task_fn *fn = (exe_task_fn *)(uintptr_t)t->word;
	struct exe__frame h = {.kind = EXE__F_RESULT_PTR, .id = t->id};
	void *value = NULL;
	int rc;

	exe__task_swap(cur);
	rc = fix_code(fn((void *)(uintptr_t)t->arg, &value));
	exe__task_swap(NULL);
	if (rc) {
		reply_error(chan, EXE__F_RESULT_PTR, t->id, rc, cur->msg);
	} else {
		h.word = (uint64_t)(uintptr_t)value;
		reply(chan, &h, NULL, -1);
	}
	exe__free(cur->msg);
	cur->msg = NULL;
}

/* The arena block the parent offered for the running bytes task's result,
 * for exe_proc_result_alloc(): NULL outside a bytes task or without one. */
static unsigned char *out_block;
static size_t out_block_cap;
static bool out_block_taken;

void *exe_proc_result_alloc(size_t len)
{
	if (out_block && !out_block_taken && len <= out_block_cap) {
		out_block_taken = true;
		return out_block;
	}
	return malloc(len ? len : 1);
}

static void run_bytes(int chan, const struct exe__frame *t, const unsigned char *payload, int fd,
                      struct exe_future *cur, void *scratch)
{
	exe_proc_task_fn *fn = (exe_proc_task_fn *)(uintptr_t)t->word;
	struct exe__frame h = {.kind = EXE__F_RESULT_BYTES, .id = t->id};
	const void *in = NULL;
	void *map = NULL, *out = NULL;
	size_t out_len = 0;
	char msg[160];
	int rc;

	if (t->flags & EXE__FF_ARENA) {
		if (!pp_arena || t->arg > arena_size || t->len > arena_size - t->arg)
			_exit(WORKER_EXIT_BADFRAME);
		in = (const unsigned char *)pp_arena + t->arg;
	} else if (fd >= 0) {
		const char *why = "cannot map";

		rc = exe__memfd_map(fd, t->len, &map, &why);
		close(fd);
		if (rc) {
			snprintf(msg, sizeof(msg), "worker could not map its %llu byte input: %s",
			         (unsigned long long)t->len, rc == -EBADMSG ? why : strerror(-rc));
			reply_error(chan, EXE__F_RESULT_BYTES, t->id, rc, msg);
			return;
		}
		in = map;
	} else if (t->len) {
		/* Inline bytes sit at any offset of the receive buffer: give
		 * the task an aligned copy. */
		memcpy(scratch, payload, t->len);
		in = scratch;
	}
	out_block = NULL;
	out_block_taken = false;
	if (t->out_cap && pp_arena && t->out <= arena_size && t->out_cap <= arena_size - t->out) {
		out_block = (unsigned char *)pp_arena + t->out;
		out_block_cap = t->out_cap;
	}
	exe__task_swap(cur);
	rc = fix_code(fn(in, t->len, &out, &out_len));
	exe__task_swap(NULL);
	if (map)
		munmap(map, t->len);
	if (out_block && out == out_block) {
		/* Written in place by the task (exe_proc_result_alloc()): no copy,
		 * nothing to free. */
		out_block = NULL;
		if (rc == 0 && out_len > out_block_cap) {
			rc = -EINVAL;
			exe__free(cur->msg);
			cur->msg = strdup("task returned more bytes than exe_proc_result_alloc() gave");
		}
		if (rc) {
			reply_error(chan, EXE__F_RESULT_BYTES, t->id, rc, cur->msg);
		} else {
			h.flags = out_len ? EXE__FF_ARENA : 0;
			h.len = out_len;
			reply(chan, &h, NULL, -1);
		}
		exe__free(cur->msg);
		cur->msg = NULL;
		return;
	}
	out_block = NULL;
	if (rc == 0 && !out && out_len) {
		rc = -EINVAL;
		exe__free(cur->msg);
		cur->msg = strdup("task returned a length without data");
	}
	if (rc) {
		free(out);
		reply_error(chan, EXE__F_RESULT_BYTES, t->id, rc, cur->msg);
	} else if (out_len > EXE__INLINE_MAX && out_len <= t->out_cap && pp_arena && t->out <= arena_size &&
	           t->out_cap <= arena_size - t->out) {
		/* The block the parent chose at dispatch: one copy, no new
		 * pages. */
		memcpy((unsigned char *)pp_arena + t->out, out, out_len);
		free(out);
		h.flags = EXE__FF_ARENA;
		h.len = out_len;
		reply(chan, &h, NULL, -1);
	} else if (out_len > EXE__INLINE_MAX) {
		int mfd = exe__memfd_from(out, out_len, "exe-result");

		free(out);
		if (mfd < 0) {
			snprintf(msg, sizeof(msg), "worker could not pass its %zu byte result: %s", out_len,
			         strerror(-mfd));
			reply_error(chan, EXE__F_RESULT_BYTES, t->id, mfd, msg);
		} else {
			h.flags = EXE__FF_MEMFD;
			h.len = out_len;
			reply(chan, &h, NULL, mfd);
			close(mfd);
		}
	} else {
		h.len = out_len;
		reply(chan, &h, out, -1);
		free(out);
	}
	exe__free(cur->msg);
	cur->msg = NULL;
}

/* The pool's progress cells as this worker sees them (inherited). */
static struct exe__cell *pp_cells;
static size_t ncells;

/*
 * A chunk: fn over each argument in order, stopping at the first failure.
 * Each value goes to this worker's cell as soon as it exists, with the count
 * after it, so that if the worker dies mid-chunk the parent still has the
 * values before the element that killed it. The reply carries the values
 * again: the cell is reused by the next chunk before the parent reads it.
 */
static void run_chunk(int chan, const struct exe__frame *t, const unsigned char *payload,
                      struct exe_future *cur, void *scratch)
{
	exe_task_fn *fn = (exe_task_fn *)(uintptr_t)t->word;
	struct exe__frame h = {.kind = EXE__F_RESULT_CHUNK, .id = t->id};
	size_t len = t->len / sizeof(uint64_t), i, mlen = 0;
	struct exe__cell *cell;
	unsigned char *out = scratch;
	int rc = 0;

	if (!pp_cells || t->out >= ncells || t->len % sizeof(uint64_t) || len == 0 || len > EXE__CHUNK_MAX)
		_exit(WORKER_EXIT_BADFRAME);
	cell = &pp_cells[t->out];
	atomic_store_explicit(&cell->done, 0, memory_order_relaxed);
	atomic_store_explicit(&cell->id, t->id, memory_order_release);
	exe__task_swap(cur);
	for (i = 0; i < len; i++) {
		uint64_t a;
		void *value = NULL;

		memcpy(&a, payload + i * sizeof(a), sizeof(a));
		rc = fix_code(fn((void *)(uintptr_t)a, &value));
		if (rc)
			break;
		cell->vals[i] = (uint64_t)(uintptr_t)value;
		atomic_store_explicit(&cell->done, i + 1, memory_order_release);
		/* A message without a failure means nothing: drop it before
		 * the next element, which may fail with none. */
		exe__free(cur->msg);
		cur->msg = NULL;
	}
	exe__task_swap(NULL);
	/* The reply is built in the scratch buffer: the arguments it replaces
	 * live in the receive buffer, not there. */
	memcpy(out, cell->vals, i * sizeof(uint64_t));
	if (rc && cur->msg) {
		mlen = strlen(cur->msg);
		if (mlen > EXE__INLINE_MAX - i * sizeof(uint64_t))
			mlen = EXE__INLINE_MAX - i * sizeof(uint64_t);
		memcpy(out + i * sizeof(uint64_t), cur->msg, mlen);
	}
	h.word = i;
	h.arg = mlen;
	h.status = rc;
	h.len = i * sizeof(uint64_t) + mlen;
	reply(chan, &h, out, -1);
	exe__free(cur->msg);
	cur->msg = NULL;
}

static void reset_signals(void)
{
	static const int crash[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS, SIGTERM};
	struct sigaction sa = {.sa_handler = SIG_DFL};
	sigset_t none;
	size_t i;

	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(crash) / sizeof(crash[0]); i++)
		sigaction(crash[i], &sa, NULL);
	/* The server blocks SIGTERM outside its ppoll(). */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

__attribute__((noreturn)) static void worker_main(struct exe__proc_pool *pp, int slot, int chan, pid_t server)
{
	static alignas(64) unsigned char scratch[EXE__INLINE_MAX];
	struct exe__frame h = {.kind = EXE__F_READY};
	struct exe_future *cur;
	struct exe__rx rx;
	int64_t spin_ns = EXE__SPIN_MIN_NS;
	char name[32];
	int rc = 0;

	snprintf(name, sizeof(name), "%s-%d", pp->name, slot);
	name[15] = '\0';
	prctl(PR_SET_NAME, name);
	die_with_parent(server, SIGKILL);
	reset_signals();
	/* What a task starts stays in this tree (see the top of the file). */
	setpgid(0, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1);

	if (pp->init)
		rc = fix_code(pp->init(pp->init_arg));
	h.status = rc;
	reply(chan, &h, NULL, -1);
	if (rc)
		_exit(0);
	if (pp->arena) {
		pp_arena = exe__arena_base(pp->arena);
		arena_size = exe__arena_size(pp->arena);
	}
	pp_cells = pp->cells;
	ncells = pp->cells_size / sizeof(*pp_cells);
	cur = exe__future_new(NULL, NULL, 1);
	if (!cur || exe__rx_init(&rx))
		_exit(WORKER_EXIT_CHANNEL);
	for (;;) {
		const unsigned char *payload;
		const char *why;
		int fd;

		rc = exe__rx_next(&rx, &h, &payload, &fd, &why);
		if (rc == 0) {
			int64_t t0 = exe_now_ns(), until = t0 + spin_ns;
			ssize_t n;

			/* Poll for the next task a little before sleeping: a
			 * busy pool hands one over within microseconds. */
			do
				n = exe__rx_fill(&rx, chan, true);
			while (n == -EAGAIN && exe_now_ns() < until);
			if (n == -EAGAIN)
				n = exe__rx_fill(&rx, chan, false);
			spin_ns = exe__spin_adapt(spin_ns, exe_now_ns() - t0);

			if (n == 0)
				_exit(0);
			if (n < 0)
				_exit(n == -EBADMSG ? WORKER_EXIT_BADFRAME : WORKER_EXIT_CHANNEL);
			continue;
		}
		if (rc < 0)
			_exit(WORKER_EXIT_BADFRAME);
		/* Orphans of earlier tasks this subreaper adopted. */
		while (waitpid(-1, NULL, WNOHANG | __WALL) > 0)
			;
		if (h.kind == EXE__F_TASK_PTR && fd < 0 && !(h.flags & EXE__FF_ARENA))
			run_ptr(chan, &h, cur);
		else if (h.kind == EXE__F_TASK_BYTES)
			run_bytes(chan, &h, payload, fd, cur, scratch);
		else if (h.kind == EXE__F_TASK_CHUNK && fd < 0 && !(h.flags & EXE__FF_ARENA))
			run_chunk(chan, &h, payload, cur, scratch);
		else
			_exit(WORKER_EXIT_BADFRAME);
	}
}

/* ---- the fork server ---- */

static void spawn(struct exe__proc_pool *pp, int ctl, struct kid *kids, unsigned *nkids,
                  const struct exe__ctl_msg *req, int chan)
{
	struct exe__ctl_msg m = {
	    .magic = EXE__CTL_MAGIC, .type = EXE__CTL_SPAWNED, .seq = req->seq, .slot = req->slot};
	pid_t self = getpid(), pid;
	int pidfd = -1;

	if (chan < 0 || *nkids >= pp->kid_cap) {
		m.pid = chan < 0 ? -EBADMSG : -EAGAIN;
		goto out;
	}
	pid = fork();
	if (pid == 0) {
		/* The channel becomes descriptor 3 (replacing the control
		 * socket); nothing else of the server's stays open. */
		if (chan != 3 && dup3(chan, 3, O_CLOEXEC) < 0)
			_exit(WORKER_EXIT_CHANNEL);
		close_from(4);
		worker_main(pp, req->slot, 3, self);
	}
	if (pid < 0) {
		m.pid = -errno;
		goto out;
	}
	setpgid(pid, pid); /* the child does it too: whichever runs first */
	pidfd = pidfd_open_(pid);
	if (pidfd < 0) {
		/* Without a pidfd we cannot reap it race-free: do not keep it. */
		m.pid = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		goto out;
	}
	kids[*nkids].pid = pid;
	kids[*nkids].pidfd = pidfd;
	(*nkids)++;
	m.pid = pid;
out:
	if (chan >= 0)
		close(chan);
	exe__ctl_send(ctl, &m, pidfd);
}

/* Kill and reap every child of the server that is not one of @kids: the
 * descendants of dead workers, reparented here. No allocation: the list is
 * read into a stack buffer. */
static void sweep_orphans(const struct kid *kids, unsigned nkids)
{
	char path[64], buf[4096];
	int round;

	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
	for (round = 0; round < 1000; round++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC), found = 0;
		ssize_t n;
		char *s;

		if (fd < 0)
			return;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			return;
		buf[n] = '\0';
		for (s = buf; *s;) {
			long pid = strtol(s, &s, 10);
			unsigned i;

			if (pid <= 0)
				break;
			for (i = 0; i < nkids && kids[i].pid != pid; i++)
				;
			if (i < nkids)
				continue;
			/* Our child until we reap it: the pid is stable. Its group
			 * (if it leads one) goes with it. */
			kill((pid_t)-pid, SIGKILL);
			kill((pid_t)pid, SIGKILL);
			while (waitpid((pid_t)pid, NULL, __WALL) < 0 && errno == EINTR)
				;
			found++;
		}
		if (!found)
			return;
	}
}

static void reap(int ctl, struct kid *k)
{
	struct exe__ctl_msg m = {.magic = EXE__CTL_MAGIC, .type = EXE__CTL_EXITED, .pid = k->pid};
	siginfo_t si;

	/* Still a zombie: its process group id cannot be reused yet. */
	kill(-k->pid, SIGKILL);
	memset(&si, 0, sizeof(si));
	while (waitid(P_PIDFD, (id_t)k->pidfd, &si, WEXITED) < 0 && errno == EINTR)
		;
	close(k->pidfd);
	m.code = si.si_code;
	m.status = si.si_status;
	if (ctl >= 0)
		exe__ctl_send(ctl, &m, -1);
}

static volatile sig_atomic_t server_stop;

static void on_stop_signal(int sig)
{
	(void)sig;
	server_stop = 1;
}

__attribute__((noreturn)) void exe__proc_server_main(struct exe__proc_pool *pp, int ctl)
{
	struct kid *kids = pp->server_mem;
	struct pollfd *pfds = (struct pollfd *)(kids + pp->kid_cap);
	struct sigaction sa = {.sa_handler = SIG_IGN};
	unsigned nkids = 0, i;
	sigset_t none, term;
	char name[32];

	snprintf(name, sizeof(name), "%s-fs", pp->name);
	name[15] = '\0';
	prctl(PR_SET_NAME, name);
	/* SIGTERM (the parent's death, or anyone's request) stops the server
	 * with its cleanup; it is delivered only inside ppoll(). Forked from a
	 * thread that blocks every signal, so nothing arrives before this. */
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	die_with_parent(pp->parent_pid, SIGTERM);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	/* Own process group: a terminal's SIGINT/SIGQUIT/SIGTSTP go to the
	 * parent's group only. SIGINT is ignored too, for kill(0, SIGINT). */
	setpgid(0, 0);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL); /* SIG_IGN would auto-reap and lose statuses */
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&none);
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_SETMASK, &term, NULL); /* forked from a thread that blocks all */
	if (ctl != 3) {
		if (dup3(ctl, 3, O_CLOEXEC) < 0)
			_exit(1);
		ctl = 3;
	}
	close_from(4);

	for (;;) {
		struct exe__ctl_msg m;
		int fd, rc;

		pfds[0] = (struct pollfd){.fd = ctl, .events = POLLIN};
		for (i = 0; i < nkids; i++)
			pfds[i + 1] = (struct pollfd){.fd = kids[i].pidfd, .events = POLLIN};
		if (server_stop)
			break;
		if (ppoll(pfds, nkids + 1, NULL, &none) < 0)
			continue;
		/* Reap first: a worker's status goes out before any answer
		 * that might depend on it. */
		for (i = nkids; i-- > 0;) {
			if (!pfds[i + 1].revents)
				continue;
			reap(ctl, &kids[i]);
			kids[i] = kids[--nkids];
			sweep_orphans(kids, nkids);
		}
		if (!pfds[0].revents)
			continue;
		rc = exe__ctl_recv(ctl, &m, &fd, false);
		if (rc == 1 && m.type == EXE__CTL_SPAWN) {
			spawn(pp, ctl, kids, &nkids, &m, fd);
			continue;
		}
		if (fd >= 0)
			close(fd);
		if (rc == -EBADMSG || rc == -EAGAIN)
			continue;
		break; /* end of the control socket: the pool is gone */
	}
	for (i = 0; i < nkids; i++)
		syscall(SYS_pidfd_send_signal, kids[i].pidfd, SIGKILL, NULL, 0);
	for (i = 0; i < nkids; i++)
		reap(-1, &kids[i]);
	sweep_orphans(kids, 0);
	_exit(0);
}
