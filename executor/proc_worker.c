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
 * Tasks come from the pool's ring and results go to this worker's cell
 * (proc_ring.c); the channel carries only READY, memfd payloads and WAKE.
 * Map chunks: a worker runs a chunk's elements in order and records each
 * value, then the count, in its own cell, so a death mid-chunk loses
 * nothing that finished before it.
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

/* What this worker sees of the pool (inherited at the same addresses). */
static struct exe__ring *ring;
static struct exe__cell *cell;
static unsigned cell_no;
static int chan_fd = -1;
static void *pp_arena;
static size_t arena_size;

static void send_frame(struct exe__frame *h, int fd)
{
	if (exe__frame_send(chan_fd, h, NULL, fd))
		_exit(WORKER_EXIT_CHANNEL);
}

/* The collector sleeps and we have news (a claim or a result): wake it. */
static void wake_collector(void)
{
	struct exe__frame h = {.kind = EXE__F_WAKE};

	if (exe__ring_collector_wanted(ring))
		send_frame(&h, -1);
}

static int fix_code(int rc)
{
	return rc > 0 ? -rc : rc;
}

/* The task this worker claimed, copied out of its slot. */
struct claimed {
	unsigned slot;
	uint16_t kind, flags;
	uint64_t id, fn, arg, len, out, out_cap;
};

/* The next result entry, once the collector has read enough of them. */
static struct exe__result *result_begin(const struct claimed *t, uint16_t kind)
{
	struct exe__result *r;

	exe__cell_wait_acked(cell, EXE__RESULTS - 1);
	r = &cell->results[atomic_load_explicit(&cell->posted, memory_order_relaxed) % EXE__RESULTS];
	r->id = t->id;
	r->slot = t->slot;
	r->kind = kind;
	r->flags = 0;
	r->status = 0;
	r->word = 0;
	r->len = 0;
	return r;
}

static void result_post(void)
{
	exe__cell_post(cell);
	wake_collector();
}

/* A failure with its message (truncated to what an entry holds). */
static void post_error(const struct claimed *t, uint16_t kind, int code, const char *msg)
{
	struct exe__result *r = result_begin(t, kind);
	size_t len = msg ? strlen(msg) : 0;

	if (len > EXE__RESULT_INLINE)
		len = EXE__RESULT_INLINE;
	r->status = code;
	if (len) {
		memcpy(r->data, msg, len);
		r->flags = EXE__FF_MSG;
		r->len = len;
	}
	result_post();
}

static void run_ptr(const struct claimed *t, struct exe_future *cur)
{
	exe_task_fn *fn = (exe_task_fn *)(uintptr_t)t->fn;
	struct exe__result *r;
	void *value = NULL;
	int rc;

	exe__task_swap(cur);
	rc = fix_code(fn((void *)(uintptr_t)t->arg, &value));
	exe__task_swap(NULL);
	if (rc) {
		post_error(t, EXE__F_RESULT_PTR, rc, cur->msg);
	} else {
		r = result_begin(t, EXE__F_RESULT_PTR);
		r->word = (uint64_t)(uintptr_t)value;
		result_post();
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

static bool in_arena(uint64_t off, uint64_t len)
{
	return pp_arena && off <= arena_size && len <= arena_size - off;
}

/* Bytes the task returned (@out, @out_len, not the offered block): inline,
 * into the offered block, or in a memfd over the channel. */
static void post_bytes(const struct claimed *t, void *out, size_t out_len)
{
	struct exe__result *r;
	char msg[160];

	if (out_len <= EXE__RESULT_INLINE) {
		r = result_begin(t, EXE__F_RESULT_BYTES);
		if (out_len)
			memcpy(r->data, out, out_len);
		r->len = out_len;
		free(out);
		result_post();
	} else if (out_len <= t->out_cap && in_arena(t->out, t->out_cap)) {
		/* The block the parent chose at dispatch: one copy, no new
		 * pages. */
		memcpy((unsigned char *)pp_arena + t->out, out, out_len);
		free(out);
		r = result_begin(t, EXE__F_RESULT_BYTES);
		r->flags = EXE__FF_ARENA;
		r->len = out_len;
		result_post();
	} else {
		struct exe__frame h = {.kind = EXE__F_RESULT_BYTES, .id = t->id, .out = t->slot};
		int mfd = exe__memfd_from(out, out_len, "exe-result");

		free(out);
		if (mfd < 0) {
			snprintf(msg, sizeof(msg), "worker could not pass its %zu byte result: %s", out_len,
			         strerror(-mfd));
			post_error(t, EXE__F_RESULT_BYTES, mfd, msg);
			return;
		}
		h.flags = EXE__FF_MEMFD;
		h.len = out_len;
		send_frame(&h, mfd);
		close(mfd);
	}
}

/* A memfd input comes over the channel once asked for. */
static int fetch_input(const struct claimed *t, struct exe__rx *rx, int *fd)
{
	struct exe__frame need = {.kind = EXE__F_NEED, .id = t->id, .out = t->slot}, h;
	const unsigned char *payload;
	const char *why;
	int rc;

	send_frame(&need, -1);
	while ((rc = exe__rx_next(rx, &h, &payload, fd, &why)) == 0) {
		ssize_t n = exe__rx_fill(rx, chan_fd, false);

		if (n == 0)
			_exit(0);
		if (n < 0)
			_exit(n == -EBADMSG ? WORKER_EXIT_BADFRAME : WORKER_EXIT_CHANNEL);
	}
	if (rc < 0 || h.kind != EXE__F_TASK_BYTES || h.id != t->id || *fd < 0 || h.len != t->len)
		_exit(WORKER_EXIT_BADFRAME);
	return 0;
}

static void run_bytes(const struct claimed *t, struct exe_future *cur, const void *scratch, struct exe__rx *rx)
{
	exe_proc_task_fn *fn = (exe_proc_task_fn *)(uintptr_t)t->fn;
	const void *in = NULL;
	void *map = NULL, *out = NULL;
	size_t out_len = 0;
	char msg[160];
	int rc, fd = -1;

	if (t->flags & EXE__FF_ARENA) {
		if (!in_arena(t->arg, t->len))
			_exit(WORKER_EXIT_BADFRAME);
		in = (const unsigned char *)pp_arena + t->arg;
	} else if (t->flags & EXE__FF_MEMFD) {
		const char *why = "cannot map";

		fetch_input(t, rx, &fd);
		rc = exe__memfd_map(fd, t->len, &map, &why);
		close(fd);
		if (rc) {
			snprintf(msg, sizeof(msg), "worker could not map its %llu byte input: %s",
			         (unsigned long long)t->len, rc == -EBADMSG ? why : strerror(-rc));
			post_error(t, EXE__F_RESULT_BYTES, rc, msg);
			return;
		}
		in = map;
	} else if (t->len) {
		in = scratch;
	}
	out_block = NULL;
	out_block_taken = false;
	if (t->out_cap && in_arena(t->out, t->out_cap)) {
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
			post_error(t, EXE__F_RESULT_BYTES, rc, cur->msg);
		} else {
			struct exe__result *r = result_begin(t, EXE__F_RESULT_BYTES);

			r->flags = out_len ? EXE__FF_ARENA : 0;
			r->len = out_len;
			result_post();
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
		post_error(t, EXE__F_RESULT_BYTES, rc, cur->msg);
	} else {
		post_bytes(t, out, out_len);
	}
	exe__free(cur->msg);
	cur->msg = NULL;
}

/*
 * A chunk: fn over each argument in order, stopping at the first failure.
 * Each value goes to this worker's cell as soon as it exists, with the count
 * after it, so that if the worker dies mid-chunk the parent still has the
 * values before the element that killed it. The result entry names the
 * count; the values stay in the cell until the collector has read them,
 * which is why a chunk starts only once every earlier result was read.
 */
static void run_chunk(const struct claimed *t, struct exe_future *cur, const void *args)
{
	exe_task_fn *fn = (exe_task_fn *)(uintptr_t)t->fn;
	size_t len = t->len / sizeof(uint64_t), i;
	struct exe__result *r;
	int rc = 0;

	if (t->len % sizeof(uint64_t) || len == 0 || len > EXE__CHUNK_MAX)
		_exit(WORKER_EXIT_BADFRAME);
	exe__cell_wait_acked(cell, 0);
	atomic_store_explicit(&cell->done, 0, memory_order_relaxed);
	atomic_store_explicit(&cell->id, t->id, memory_order_release);
	exe__task_swap(cur);
	for (i = 0; i < len; i++) {
		uint64_t a;
		void *value = NULL;

		memcpy(&a, (const unsigned char *)args + i * sizeof(a), sizeof(a));
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
	r = result_begin(t, EXE__F_RESULT_CHUNK);
	r->word = i;
	r->status = rc;
	if (rc && cur->msg) {
		size_t mlen = strlen(cur->msg);

		if (mlen > EXE__RESULT_INLINE)
			mlen = EXE__RESULT_INLINE;
		memcpy(r->data, cur->msg, mlen);
		r->flags = EXE__FF_MSG;
		r->len = mlen;
	}
	result_post();
	exe__free(cur->msg);
	cur->msg = NULL;
}

/* Orphans of earlier tasks this subreaper adopted: reaped between tasks,
 * only after a SIGCHLD said there are some (no system call per task). */
static volatile sig_atomic_t orphans;

static void on_sigchld(int sig)
{
	(void)sig;
	orphans = 1;
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
	sa.sa_handler = on_sigchld;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGCHLD, &sa, NULL);
	/* The server blocks SIGTERM outside its ppoll(). */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Take the task in @slot: copy it out, then report the claim. */
static void claim(unsigned slot, struct claimed *t, void *scratch)
{
	const struct exe__slot *s = &ring->slots[slot];

	t->slot = slot;
	t->kind = s->kind;
	t->flags = s->flags;
	t->id = s->id;
	t->fn = s->fn;
	t->arg = s->arg;
	t->len = s->len;
	t->out = s->out;
	t->out_cap = s->out_cap;
	if (!(t->flags & (EXE__FF_ARENA | EXE__FF_MEMFD)) && t->len) {
		if (t->len > EXE__SLOT_INLINE)
			_exit(WORKER_EXIT_BADFRAME);
		/* An aligned copy: the slot is reused once the claim is seen. */
		memcpy(scratch, s->payload, t->len);
	}
	atomic_store_explicit(&cell->start, exe_now_ns(), memory_order_relaxed);
	/* release: the copy above is done before the collector, seeing the
	 * claim (acquire), frees the slot. */
	atomic_store_explicit(&cell->claim, EXE__CLAIM(slot, t->id), memory_order_release);
	wake_collector();
}

__attribute__((noreturn)) static void worker_main(struct exe__proc_pool *pp, int slot, unsigned cell_index,
                                                  int channel, pid_t server)
{
	static alignas(64) unsigned char scratch[EXE__SLOT_INLINE];
	struct exe__frame h = {.kind = EXE__F_READY};
	struct exe_future *cur;
	struct exe__rx rx;
	int64_t spin_ns = EXE__SPIN_MIN_NS;
	unsigned claims = 0;
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
	chan_fd = channel;
	if (cell_index >= pp->kid_cap)
		_exit(WORKER_EXIT_BADFRAME);
	ring = pp->ring;
	cell_no = cell_index;
	cell = &pp->cells[cell_no];

	if (pp->init)
		rc = fix_code(pp->init(pp->init_arg));
	h.status = rc;
	send_frame(&h, -1);
	if (rc)
		_exit(0);
	if (pp->arena) {
		pp_arena = exe__arena_base(pp->arena);
		arena_size = exe__arena_size(pp->arena);
	}
	cur = exe__future_new(NULL, NULL, 1);
	if (!cur || exe__rx_init(&rx))
		_exit(WORKER_EXIT_CHANNEL);
	for (;;) {
		struct claimed t;
		int i;

		/* Recycling: the collector counts the claims too and has a
		 * replacement on its way. */
		if (pp->max_tasks && claims >= pp->max_tasks)
			_exit(0);
		i = exe__ring_take(ring, cell, cell_no, &spin_ns);
		if (i < 0)
			_exit(0);
		claims++;
		claim((unsigned)i, &t, scratch);
		if (orphans) {
			orphans = 0;
			while (waitpid(-1, NULL, WNOHANG | __WALL) > 0)
				;
		}
		if (t.kind == EXE__F_TASK_PTR && !(t.flags & (EXE__FF_ARENA | EXE__FF_MEMFD)))
			run_ptr(&t, cur);
		else if (t.kind == EXE__F_TASK_BYTES)
			run_bytes(&t, cur, scratch, &rx);
		else if (t.kind == EXE__F_TASK_CHUNK && !(t.flags & (EXE__FF_ARENA | EXE__FF_MEMFD)))
			run_chunk(&t, cur, scratch);
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
		worker_main(pp, req->slot, (unsigned)req->cell, 3, self);
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
