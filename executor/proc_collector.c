/*
 * proc_collector.c - the process pool's collector thread: it forks the fork
 * server, asks it for workers, hands tasks to them, reads their results,
 * runs the done callbacks, enforces deadlines and replaces dead workers.
 *
 * Design
 *  - One thread owns every worker record and every channel; nothing here is
 *    shared but the queue (taken through exe__proc_queue_take()) and the
 *    counters. It sleeps in epoll on the worker channels, the fork-server
 *    socket and the pool's eventfd, with the nearest deadline as timeout.
 *  - Work-conserving dispatch: a task goes to a worker only when that
 *    worker is idle (ready, nothing in flight), in queue order. Nothing is
 *    handed ahead to a busy worker, so no task waits behind a long one while
 *    another worker is free, and every task still in the queue can be
 *    cancelled. A task is claimed (RUNNING) as it is handed to an idle
 *    worker, which starts it as soon as it reads the frame; its deadline
 *    runs from then.
 *  - Death: the fork server reaps the worker and sends pid and status. The
 *    channel is drained first (results written before the death count), then
 *    the task at the head fails with the reason we had for stopping the
 *    worker (timeout, cancel, bad frame, destroy) or with the status
 *    ("killed by signal 11"); tasks behind it never started and go back to
 *    the front of the line. A replacement is asked for as soon as we decide
 *    to stop a worker, or when it dies unasked.
 *  - Before sleeping in epoll while work is in flight, the collector polls
 *    the channels for an adaptive few microseconds (spin_poll()), and
 *    workers poll their channel likewise before blocking: a hand-off that
 *    comes within the spin costs no wake-up. Submitters see the collector
 *    awake (wake_pending) and skip the eventfd write; it rechecks the kicks
 *    counter under the pool lock before it sleeps.
 *  - Map chunks are tasks like the others (one frame out, one back). A
 *    worker that dies in a chunk fails its first unfinished element: the
 *    values before it come from the worker's progress cell.
 *  - Recycling: a worker that received its max_tasks_per_worker-th task gets
 *    its channel half-closed (it exits after that task) and its slot's
 *    replacement is spawned at once, so a backlog never waits for it.
 *
 * Invariants
 *  - A worker record is freed only after the server reported its exit:
 *    its pidfd stays valid for signals until then (a dead pid cannot be
 *    reused before the server reaps it, and the pidfd tells dead from
 *    reused anyway).
 *  - Records are freed only in the fork-server message handler, which runs
 *    after the channel events of the same epoll batch.
 *  - Every claimed task is on exactly one list: a worker's in-flight list or
 *    the redo list, until exe__proc_task_finish().
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "errors.h"
#include "future_internal.h"
#include "proc_internal.h"

enum wstate { W_SPAWNING, W_STARTING, W_READY, W_RETIRING };

struct exe__pworker {
	struct exe__pworker *next; /* pp->workers */
	uint64_t seq;
	unsigned slot;
	enum wstate state;
	bool in_slot; /* pp->slots[slot] == this */
	bool chan_open;
	bool counted;     /* in live_workers */
	bool stop_sent;   /* SIGTERM or SIGKILL sent */
	bool ready_early; /* READY came before the server's SPAWNED */
	pid_t pid;
	int chan, pidfd;
	int exit_code, exit_status;
	struct exe__ptask *head, *tail;
	unsigned ninflight, dispatched;
	unsigned cell;    /* its progress cell (pp->cells) */
	int64_t kill_at;  /* SIGKILL after SIGTERM; 0: none */
	int fail_code;    /* why we stopped it; 0: we did not */
	uint64_t fail_id; /* the task that reason is for; 0: all */
	char *fail_msg;
	struct exe__rx rx;
};

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	s = exe__vasprintf(f, ap);
	va_end(ap);
	return s;
}

static int pidfd_signal(int pidfd, int sig)
{
	return pidfd < 0 ? -ESRCH : (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static void describe(const struct exe__pworker *w, char *buf, size_t len)
{
	const char *sd = sigdescr_np(w->exit_status);

	switch (w->exit_code) {
	case CLD_EXITED:
		snprintf(buf, len, "worker %d exited with status %d", (int)w->pid, w->exit_status);
		break;
	case CLD_KILLED:
	case CLD_DUMPED:
		snprintf(buf, len, "worker %d killed by signal %d (%s%s)", (int)w->pid, w->exit_status,
		         sd ? sd : "unknown signal", w->exit_code == CLD_DUMPED ? ", core dumped" : "");
		break;
	default: snprintf(buf, len, "worker %d lost", (int)w->pid);
	}
}

/* ---- worker lists ---- */

static void push_inflight(struct exe__pworker *w, struct exe__ptask *t)
{
	t->next = NULL;
	if (w->tail)
		w->tail->next = t;
	else
		w->head = t;
	w->tail = t;
	w->ninflight++;
}

static void start_head(struct exe__pworker *w, int64_t now)
{
	struct exe__ptask *t = w->head;

	if (t)
		t->deadline = t->timeout_ns ? now + t->timeout_ns : 0;
}

static struct exe__ptask *pop_head(struct exe__pworker *w, int64_t now)
{
	struct exe__ptask *t = w->head;

	w->head = t->next;
	if (!w->head)
		w->tail = NULL;
	w->ninflight--;
	start_head(w, now);
	return t;
}

/* Tasks a dead worker never started go back to the front, in order. */
static void redo_front(struct exe__proc_pool *pp, struct exe__ptask *first, struct exe__ptask *last)
{
	last->next = pp->redo_head;
	if (!pp->redo_head)
		pp->redo_tail = last;
	pp->redo_head = first;
}

static struct exe__ptask *redo_pop(struct exe__proc_pool *pp)
{
	struct exe__ptask *t = pp->redo_head;

	if (t) {
		pp->redo_head = t->next;
		if (!pp->redo_head)
			pp->redo_tail = NULL;
	}
	return t;
}

/* ---- spawning ---- */

static bool closing(struct exe__proc_pool *pp);

static void spawn(struct exe__proc_pool *pp, unsigned slot)
{
	struct exe__ctl_msg m = {.magic = EXE__CTL_MAGIC, .type = EXE__CTL_SPAWN, .slot = (int32_t)slot};
	struct epoll_event ev = {.events = EPOLLIN};
	struct exe__pworker *w;
	int sv[2], rc;

	if (exe__pool_is_broken(&pp->base) || pp->ctl < 0 || closing(pp))
		return;
	if (pp->nprocs >= pp->kid_cap)
		return; /* retried once a process is reaped */
	w = exe__calloc(1, sizeof(*w));
	if (!w || exe__rx_init(&w->rx)) {
		exe__free(w);
		exe__pool_mark_broken(&pp->base, "cannot start worker %s-%u: out of memory", pp->name, slot);
		return;
	}
	w->chan = w->pidfd = -1;
	/* nprocs < kid_cap: a free cell exists. */
	while (pp->cell_used[w->cell])
		w->cell++;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		rc = -errno;
		goto fail;
	}
	w->chan = sv[0];
	m.seq = w->seq = ++pp->worker_seq;
	rc = exe__ctl_send(pp->ctl, &m, sv[1]);
	close(sv[1]);
	if (rc)
		goto fail;
	ev.data.ptr = w;
	if (epoll_ctl(pp->epfd, EPOLL_CTL_ADD, w->chan, &ev) < 0) {
		rc = -errno;
		goto fail; /* the server's child sees end of file and exits */
	}
	w->chan_open = true;
	w->slot = slot;
	w->state = W_SPAWNING;
	w->in_slot = true;
	pp->slots[slot] = w;
	w->next = pp->workers;
	pp->workers = w;
	pp->nprocs++;
	pp->cell_used[w->cell] = 1;
	return;
fail:
	if (w->chan >= 0)
		close(w->chan);
	exe__rx_fini(&w->rx);
	exe__free(w);
	exe__pool_mark_broken(&pp->base, "cannot start worker %s-%u: %s", pp->name, slot, exe_strerror(rc));
}

static void vacate(struct exe__proc_pool *pp, struct exe__pworker *w, bool replace)
{
	if (!w->in_slot)
		return;
	w->in_slot = false;
	pp->slots[w->slot] = NULL;
	if (replace && !exe__pool_is_broken(&pp->base) && !closing(pp)) {
		atomic_fetch_add(&pp->restarts, 1);
		spawn(pp, w->slot); /* or later, from the loop, when at the limit */
	}
}

static void chan_close(struct exe__proc_pool *pp, struct exe__pworker *w)
{
	if (!w->chan_open)
		return;
	epoll_ctl(pp->epfd, EPOLL_CTL_DEL, w->chan, NULL);
	close(w->chan);
	w->chan = -1;
	w->chan_open = false;
}

/* Stop a worker on purpose; its tasks fail when it is reaped. */
static void stop_worker(struct exe__proc_pool *pp, struct exe__pworker *w, int code, uint64_t id, char *msg,
                        int sig, int64_t now)
{
	if (!w->fail_code) {
		w->fail_code = code;
		w->fail_id = id;
		w->fail_msg = msg;
	} else {
		exe__free(msg);
	}
	if (!w->stop_sent || sig == SIGKILL) {
		pidfd_signal(w->pidfd, sig);
		w->stop_sent = true;
		w->kill_at = sig == SIGKILL ? 0 : now + pp->term_grace_ns;
	}
	if (w->state != W_RETIRING)
		w->state = W_RETIRING;
	vacate(pp, w, true);
}

static void bad_frame(struct exe__proc_pool *pp, struct exe__pworker *w, const char *why, int64_t now)
{
	stop_worker(pp, w, -EBADMSG, w->head ? w->head->id : 0,
	            fmt("worker %d broke the channel protocol (%s)", (int)w->pid, why), SIGKILL, now);
	/* Nothing more from this channel can be trusted. */
	chan_close(pp, w);
}

/* ---- results ---- */

static char *copy_msg(const struct exe__frame *h, const unsigned char *payload)
{
	char *m;

	if (!(h->flags & EXE__FF_MSG))
		return NULL;
	m = exe__malloc(h->len + 1);
	if (m) {
		memcpy(m, payload, h->len);
		m[h->len] = '\0';
	}
	return m;
}

static bool send_task(struct exe__proc_pool *pp, struct exe__pworker *w, struct exe__ptask *t, int64_t now);
static struct exe__ptask *next_task(struct exe__proc_pool *pp);

/* @w just handed back its only task: give it the next queued one before
 * finishing that task (waking its waiter, running its callbacks), so the
 * worker is idle for one channel hop, not for the whole completion. */
static void refill(struct exe__proc_pool *pp, struct exe__pworker *w, int64_t now)
{
	struct exe__ptask *t;

	if (w->state != W_READY || !w->in_slot || !w->chan_open || w->ninflight ||
	    exe__pool_is_broken(&pp->base))
		return;
	t = next_task(pp);
	if (t)
		send_task(pp, w, t, now);
}

/* A chunk's values and outcome: @h->word values, then @h->arg bytes of the
 * failing element's message. Only all values go with status 0. */
static void on_chunk_result(struct exe__proc_pool *pp, struct exe__pworker *w, const struct exe__frame *h,
                            const unsigned char *payload, int fd, int64_t now)
{
	uint64_t len = w->head->in_len / sizeof(uint64_t);
	struct exe__ptask *t;
	char *msg = NULL;

	if (fd >= 0 || exe__frame_check_chunk_result(h, len)) {
		if (fd >= 0)
			close(fd);
		bad_frame(pp, w, "malformed chunk result", now);
		return;
	}
	t = pop_head(w, now);
	refill(pp, w, now);
	if (h->arg) {
		msg = exe__malloc(h->arg + 1);
		if (msg) {
			memcpy(msg, payload + h->word * sizeof(uint64_t), h->arg);
			msg[h->arg] = '\0';
		}
	}
	/* Inline values may sit at any offset of the receive buffer: the
	 * finish copies them out with memcpy. */
	exe__proc_chunk_finish(pp, t, h->word, payload, h->status, msg);
}

static void on_result(struct exe__proc_pool *pp, struct exe__pworker *w, const struct exe__frame *h,
                      const unsigned char *payload, int fd, int64_t now)
{
	struct exe__ptask *t = w->head;
	uint16_t want = !t                             ? 0
	                : t->kind == EXE__F_TASK_PTR   ? EXE__F_RESULT_PTR
	                : t->kind == EXE__F_TASK_CHUNK ? EXE__F_RESULT_CHUNK
	                                               : EXE__F_RESULT_BYTES;
	const char *why = "unexpected result";
	void *map = NULL, *b;
	int rc;

	bool arena = h->flags & EXE__FF_ARENA;

	if (want == EXE__F_RESULT_CHUNK && h->kind == want && h->id == t->id) {
		on_chunk_result(pp, w, h, payload, fd, now);
		return;
	}

	if (!t || h->id != t->id || h->kind != want ||
	    (fd >= 0 && (h->status || want != EXE__F_RESULT_BYTES)) ||
	    (arena && (h->status || t->out_cls < 0 || h->len > exe__arena_class_size(t->out_cls)))) {
		if (fd >= 0)
			close(fd);
		bad_frame(pp, w, t && h->id != t->id ? "result for another task" : why, now);
		return;
	}
	if (fd >= 0) {
		rc = exe__memfd_map(fd, h->len, &map, &why);
		close(fd);
		if (rc) {
			if (rc != -EBADMSG)
				why = "cannot map the result";
			bad_frame(pp, w, why, now);
			return;
		}
	}
	t = pop_head(w, now);
	refill(pp, w, now);
	if (want == EXE__F_RESULT_BYTES && !h->status) {
		int cls = -1;

		/* Size the block offered to the next tasks after this result
		 * (none when it came inline). */
		if (h->len > EXE__INLINE_MAX)
			for (cls = 0; cls < EXE__ARENA_CLASSES && exe__arena_class_size(cls) < h->len; cls++)
				;
		atomic_store_explicit(&pp->out_hint, cls < EXE__ARENA_CLASSES ? cls : -1,
		                      memory_order_relaxed);
	}
	if (arena) {
		b = exe__proc_bytes_arena(pp->arena, t->out_cls, t->out_off, h->len);
		if (b)
			t->out_cls = -1; /* the future owns the block now */
		if (b)
			exe__proc_task_finish(pp, t, 0, b, exe__proc_bytes_free, NULL);
		else
			exe__proc_task_finish(pp, t, -ENOMEM, NULL, NULL, NULL);
	} else if (h->status) {
		exe__proc_task_finish(pp, t, h->status, NULL, NULL, copy_msg(h, payload));
	} else if (want == EXE__F_RESULT_PTR) {
		exe__proc_task_finish(pp, t, 0, (void *)(uintptr_t)h->word, NULL, NULL);
	} else {
		b = exe__proc_bytes_new(payload, h->len, map);
		if (b)
			exe__proc_task_finish(pp, t, 0, b, exe__proc_bytes_free, NULL);
		else
			exe__proc_task_finish(
			    pp, t, -ENOMEM, NULL, NULL,
			    fmt("no memory for a %llu byte result", (unsigned long long)h->len));
		if (!b && map)
			munmap(map, h->len);
	}
}

static void on_frame(struct exe__proc_pool *pp, struct exe__pworker *w, const struct exe__frame *h,
                     const unsigned char *payload, int fd, int64_t now)
{
	if (h->kind != EXE__F_READY) {
		on_result(pp, w, h, payload, fd, now);
		return;
	}
	if (fd >= 0)
		close(fd);
	if (w->state != W_STARTING && w->state != W_SPAWNING && !(w->state == W_RETIRING && !w->dispatched)) {
		bad_frame(pp, w, "unexpected ready frame", now);
		return;
	}
	if (h->status) {
		exe__pool_mark_broken(&pp->base, "worker init failed in %s-%u: %s (%d)", pp->name, w->slot,
		                      exe_strerror(h->status), h->status);
		w->state = W_RETIRING; /* it exits by itself */
		vacate(pp, w, false);
		return;
	}
	/* The channel and the server's socket race: READY may come first. */
	if (w->state == W_SPAWNING)
		w->ready_early = true;
	else if (w->state == W_STARTING)
		w->state = W_READY;
}

/*
 * Read what the channel holds and handle every complete frame. The channel
 * is level-triggered, so in the loop one short read is enough: a unix stream
 * socket fills the buffer from every queued write unless it ran dry, or
 * stopped after a write that carried descriptors; anything left (or arriving
 * later) wakes epoll again. That saves a recvmsg() returning EAGAIN per
 * wake-up, which is most of them with small tasks. @drain (a dead worker)
 * reads to the end instead.
 */
static void read_worker(struct exe__proc_pool *pp, struct exe__pworker *w, int64_t now, bool drain)
{
	int rounds;

	for (rounds = 0; rounds < 32 && w->chan_open; rounds++) {
		const unsigned char *payload;
		struct exe__frame h;
		const char *why;
		size_t room = EXE__RX_CAP - (w->rx.end - w->rx.start);
		unsigned nfds = w->rx.nfds;
		ssize_t n = exe__rx_fill(&w->rx, w->chan, true);
		int fd, rc;
		bool dry = !drain && n > 0 && (size_t)n < room && w->rx.nfds == nfds;

		if (n == -EAGAIN)
			return;
		if (n == -EBADMSG) {
			bad_frame(pp, w, "too many or truncated descriptors", now);
			return;
		}
		if (n <= 0) {
			/* End of file: the worker is gone or going; its status
			 * comes from the fork server. Bytes left over are a frame
			 * cut short. */
			if (n == 0 && w->rx.end > w->rx.start) {
				stop_worker(
				    pp, w, -EBADMSG, w->head ? w->head->id : 0,
				    fmt("worker %d sent a truncated frame (%zu bytes, then end of file)",
				        (int)w->pid, w->rx.end - w->rx.start),
				    SIGKILL, now);
			}
			chan_close(pp, w);
			return;
		}
		while ((rc = exe__rx_next(&w->rx, &h, &payload, &fd, &why)) == 1 && w->chan_open)
			on_frame(pp, w, &h, payload, fd, now);
		if (rc < 0) {
			bad_frame(pp, w, why, now);
			return;
		}
		if (dry)
			return;
	}
}

/* ---- deaths ---- */

/* The task a dead worker was running fails. For a chunk that is its first
 * unfinished element: the worker's cell holds the values before it, when the
 * cell speaks of this chunk (the worker may have died before starting it).
 * The cell is shared with other workers, so its count is only trusted up to
 * the chunk's length. */
static void finish_dead(struct exe__proc_pool *pp, struct exe__pworker *w, struct exe__ptask *t, int code,
                        char *msg)
{
	const struct exe__cell *cell = &pp->cells[w->cell];
	uint64_t len = t->in_len / sizeof(uint64_t), done = 0;

	if (t->kind != EXE__F_TASK_CHUNK) {
		exe__proc_task_finish(pp, t, code, NULL, NULL, msg);
		return;
	}
	if (atomic_load_explicit(&cell->id, memory_order_acquire) == t->id) {
		done = atomic_load_explicit(&cell->done, memory_order_acquire);
		if (done > len)
			done = len;
	}
	/* A cell that claims the whole chunk still lacks the result frame:
	 * the last element counts as unfinished. */
	if (done == len)
		done = len - 1;
	exe__proc_chunk_finish(pp, t, done, cell->vals, code, msg);
}

static void fail_inflight(struct exe__proc_pool *pp, struct exe__pworker *w, int64_t now)
{
	char what[160];
	struct exe__ptask *t, *rest;

	describe(w, what, sizeof(what));
	if (!w->head)
		return;
	t = pop_head(w, now);
	if (w->fail_code && (w->fail_id == 0 || w->fail_id == t->id))
		finish_dead(pp, w, t, w->fail_code,
		            fmt("%s; %s", w->fail_msg ? w->fail_msg : exe_strerror(w->fail_code), what));
	else
		finish_dead(pp, w, t, -ECHILD, fmt("%s", what));
	rest = w->head;
	if (!rest)
		return;
	if (w->fail_code == -ECANCELED && w->fail_id == 0) {
		/* Destroy ran out of patience: nothing more runs. */
		while (w->head)
			exe__proc_task_finish(pp, pop_head(w, now), -ECANCELED, NULL, NULL,
			                      fmt("pool destroyed before the task started"));
		return;
	}
	redo_front(pp, rest, w->tail);
	w->head = w->tail = NULL;
	w->ninflight = 0;
}

static void free_worker(struct exe__proc_pool *pp, struct exe__pworker *w)
{
	struct exe__pworker **pw;

	for (pw = &pp->workers; *pw; pw = &(*pw)->next) {
		if (*pw == w) {
			*pw = w->next;
			break;
		}
	}
	chan_close(pp, w);
	if (w->pidfd >= 0)
		close(w->pidfd);
	exe__rx_fini(&w->rx);
	exe__free(w->fail_msg);
	pp->cell_used[w->cell] = 0; /* the process is gone: nobody writes it */
	exe__free(w);
	pp->nprocs--;
}

static void on_exit_(struct exe__proc_pool *pp, struct exe__pworker *w, int64_t now)
{
	char what[160];

	/* Results written before the death are still in the socket. */
	read_worker(pp, w, now, true);
	chan_close(pp, w);
	if (w->counted)
		atomic_fetch_sub(&pp->live_workers, 1);
	if (w->state == W_STARTING) {
		describe(w, what, sizeof(what));
		exe__pool_mark_broken(&pp->base, "worker %s-%u died during init: %s", pp->name, w->slot,
		                      what);
	}
	fail_inflight(pp, w, now);
	vacate(pp, w, true);
	free_worker(pp, w);
}

static struct exe__pworker *find_worker(struct exe__proc_pool *pp, uint64_t seq, pid_t pid)
{
	struct exe__pworker *w;

	for (w = pp->workers; w; w = w->next)
		if ((seq && w->seq == seq) || (pid > 0 && w->pid == pid))
			return w;
	return NULL;
}

/* The fork server died (killed from outside). A new one cannot be forked
 * safely from this process, which has threads now (the reason the server
 * exists), so the pool is broken for good: -ENOTRECOVERABLE. */
static void server_lost(struct exe__proc_pool *pp, int64_t now)
{
	exe__pool_mark_broken(&pp->base, "the fork server of %s (pid %d) died: recreate the pool", pp->name,
	                      (int)pp->server_pid);
	epoll_ctl(pp->epfd, EPOLL_CTL_DEL, pp->ctl, NULL);
	close(pp->ctl);
	pp->ctl = -1;
	/* Its children die with it (PR_SET_PDEATHSIG); no status will come.
	 * Their process groups (what their tasks started) go too, as far as
	 * they still exist. */
	while (pp->workers) {
		struct exe__pworker *w = pp->workers;

		if (w->pid > 0 && !w->fail_code) {
			w->fail_code = -ECHILD;
			w->fail_id = 0;
			w->fail_msg = fmt("the fork server died");
		}
		if (w->pid > 0)
			kill(-w->pid, SIGKILL);
		pidfd_signal(w->pidfd, SIGKILL);
		on_exit_(pp, w, now);
	}
}

static void read_server(struct exe__proc_pool *pp, int64_t now)
{
	struct exe__ctl_msg m;
	struct exe__pworker *w;
	int fd, rc;

	while (pp->ctl >= 0 && (rc = exe__ctl_recv(pp->ctl, &m, &fd, true)) != -EAGAIN) {
		if (rc <= 0 && rc != -EBADMSG) {
			server_lost(pp, now);
			return;
		}
		if (rc < 0)
			continue;
		if (m.type == EXE__CTL_SPAWNED && (w = find_worker(pp, m.seq, 0)) && w->pid == 0) {
			if (m.pid < 0 || fd < 0) {
				if (!closing(pp))
					exe__pool_mark_broken(&pp->base, "cannot start worker %s-%u: %s",
					                      pp->name, w->slot,
					                      exe_strerror(m.pid < 0 ? m.pid : -EBADMSG));
				if (fd >= 0)
					close(fd);
				vacate(pp, w, false);
				free_worker(pp, w);
				continue;
			}
			w->pid = m.pid;
			w->pidfd = fd;
			if (w->state == W_SPAWNING)
				w->state = w->ready_early ? W_READY : W_STARTING;
			w->counted = true;
			atomic_fetch_add(&pp->live_workers, 1);
			continue;
		}
		if (fd >= 0)
			close(fd);
		if (m.type == EXE__CTL_EXITED && (w = find_worker(pp, 0, m.pid))) {
			w->exit_code = m.code;
			w->exit_status = m.status;
			on_exit_(pp, w, now);
		}
	}
}

/* ---- dispatch ---- */

static void retire(struct exe__proc_pool *pp, struct exe__pworker *w, bool replace)
{
	w->state = W_RETIRING;
	/* Half-close: it finishes what it has, reads end of file and exits. */
	shutdown(w->chan, SHUT_WR);
	vacate(pp, w, replace);
}

static bool send_task(struct exe__proc_pool *pp, struct exe__pworker *w, struct exe__ptask *t, int64_t now)
{
	struct exe__frame h = {.kind = t->kind, .id = t->id, .word = t->fn, .arg = t->arg, .len = t->in_len};
	int hint = atomic_load_explicit(&pp->out_hint, memory_order_relaxed);

	if (t->memfd >= 0)
		h.flags = EXE__FF_MEMFD;
	if (t->in_cls >= 0) {
		h.flags = EXE__FF_ARENA;
		h.arg = t->in_off;
	}
	/* Recent large results were this big: offer a block for this one. */
	if (t->kind == EXE__F_TASK_BYTES && t->out_cls < 0 && hint >= 0)
		t->out_cls = exe__arena_alloc(pp->arena, exe__arena_class_size(hint), &t->out_off);
	if (t->out_cls >= 0) {
		h.out = t->out_off;
		h.out_cap = exe__arena_class_size(t->out_cls);
	}
	if (t->kind == EXE__F_TASK_CHUNK)
		h.out = w->cell;
	if (exe__frame_send(w->chan, &h, t->in, t->memfd)) {
		/* The worker is dying: the task goes back, the death
		 * report follows. */
		t->next = NULL;
		redo_front(pp, t, t);
		stop_worker(pp, w, 0, 0, NULL, SIGKILL, now);
		return false;
	}
	push_inflight(w, t);
	w->dispatched++;
	if (w->ninflight == 1)
		start_head(w, now);
	if (pp->max_tasks && w->dispatched >= pp->max_tasks)
		retire(pp, w, true);
	return true;
}

static struct exe__ptask *next_task(struct exe__proc_pool *pp)
{
	struct exe__ptask *t = redo_pop(pp);

	return t ? t : exe__proc_queue_take(pp);
}

static void dispatch(struct exe__proc_pool *pp, int64_t now)
{
	unsigned i;

	if (exe__pool_is_broken(&pp->base))
		return;
	for (i = 0; i < pp->nworkers; i++) {
		struct exe__pworker *w = pp->slots[i];
		struct exe__ptask *t;

		if (!w || w->state != W_READY || w->ninflight)
			continue;
		t = next_task(pp);
		if (!t)
			return;
		send_task(pp, w, t, now);
	}
}

static void fail_queue(struct exe__proc_pool *pp)
{
	struct exe__ptask *t;

	while ((t = next_task(pp)))
		exe__proc_task_finish(pp, t, -ENOTRECOVERABLE, NULL, NULL, exe__pool_broken_msg(&pp->base));
}

/* ---- deadlines ---- */

static int64_t earliest(int64_t a, int64_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

/* Returns the next instant to look again (0: none). */
static int64_t check_workers(struct exe__proc_pool *pp, bool draining, int64_t now)
{
	struct exe__pworker *w;
	int64_t next = 0;

	for (w = pp->workers; w; w = w->next) {
		struct exe__ptask *t = w->head;

		if (w->kill_at && now >= w->kill_at) {
			pidfd_signal(w->pidfd, SIGKILL);
			w->kill_at = 0;
		}
		next = earliest(next, w->kill_at);
		if (!t || w->stop_sent)
			continue;
		if (t->deadline && now >= t->deadline) {
			stop_worker(pp, w, -ETIME, t->id,
			            fmt("task timed out after %.3f s", (double)t->timeout_ns / 1e9), SIGTERM,
			            now);
		} else if (t->kill_on_cancel && exe_future_cancel_requested(t->f)) {
			stop_worker(pp, w, -ECANCELED, t->id, fmt("task cancelled while running"), SIGTERM,
			            now);
		} else if (draining && pp->drain_deadline > 0 && now >= pp->drain_deadline) {
			stop_worker(pp, w, -ECANCELED, 0, fmt("pool destroyed while the task ran"), SIGTERM,
			            now);
		} else {
			next = earliest(next, t->deadline);
			continue;
		}
		next = earliest(next, w->kill_at);
	}
	if (draining && pp->drain_deadline > 0)
		next = earliest(next, pp->drain_deadline > now ? pp->drain_deadline : 0);
	return next;
}

/* ---- the loop ---- */

static bool closing(struct exe__proc_pool *pp)
{
	return pp->drain_deadline < 0;
}

static bool all_idle(struct exe__proc_pool *pp)
{
	struct exe__pworker *w;

	if (pp->redo_head)
		return false;
	for (w = pp->workers; w; w = w->next)
		if (w->ninflight)
			return false;
	return true;
}

static int start_server(struct exe__proc_pool *pp)
{
	pid_t pid = fork();
	int rc;

	if (pid < 0)
		return -errno;
	if (pid == 0)
		exe__proc_server_main(pp, pp->ctl_child);
	close(pp->ctl_child);
	pp->ctl_child = -1;
	pp->server_pid = pid;
	pp->server_pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pp->server_pidfd < 0) {
		rc = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return rc;
	}
	return 0;
}

static void stop_server(struct exe__proc_pool *pp)
{
	siginfo_t si;

	if (pp->ctl >= 0) {
		epoll_ctl(pp->epfd, EPOLL_CTL_DEL, pp->ctl, NULL);
		close(pp->ctl); /* end of file: it kills what is left and exits */
		pp->ctl = -1;
	}
	while (waitid(P_PIDFD, (id_t)pp->server_pidfd, &si, WEXITED) < 0 && errno == EINTR)
		;
	close(pp->server_pidfd);
	pp->server_pidfd = -1;
}

/* Poll the channels (and the kicks counter) for up to @budget ns before
 * sleeping in epoll: a worker's result or a submit that comes within the
 * budget costs no wake-up. Return what epoll_pwait2() returned (0: nothing
 * within the budget); *@kicked when a wake request came instead. */
static int spin_poll(struct exe__proc_pool *pp, struct epoll_event *evs, uint32_t seen, int64_t budget,
                     bool *kicked)
{
	const struct timespec zero = {0, 0};
	int64_t until = exe_now_ns() + budget;
	unsigned k = 0;

	do {
		int n = epoll_pwait2(pp->epfd, evs, 64, &zero, NULL);

		if (n != 0)
			return n;
		/* relaxed: the lock taken before sleeping orders the rest. */
		if (atomic_load_explicit(&pp->kicks, memory_order_relaxed) != seen) {
			*kicked = true;
			return 0;
		}
		/* Give a worker sharing this CPU its turn now and then. */
		if (++k % 8 == 0)
			sched_yield();
	} while (exe_now_ns() < until);
	return 0;
}

static void run(struct exe__proc_pool *pp)
{
	int64_t close_at = 0, spin_ns = EXE__SPIN_MIN_NS;

	for (;;) {
		struct epoll_event evs[64];
		struct timespec ts, *tsp = NULL;
		bool shut, destroying, qempty, woke = false, kicked = false;
		int64_t now, next, t_wait;
		uint32_t seen;
		int n, i;

		now = exe_now_ns();
		pthread_mutex_lock(&pp->lock);
		/* Awake: submitters need not write the eventfd until we sleep. */
		pp->wake_pending = 1;
		seen = pp->kicks;
		shut = pp->shutdown;
		destroying = pp->destroying;
		qempty = pp->qhead.next == &pp->qhead;
		pthread_mutex_unlock(&pp->lock);

		if (exe__pool_is_broken(&pp->base))
			fail_queue(pp);
		for (i = 0; i < (int)pp->nworkers; i++)
			if (!pp->slots[i])
				spawn(pp, (unsigned)i);
		dispatch(pp, now);
		if (destroying && qempty && !pp->redo_head && pp->drain_deadline == 0 &&
		    pp->destroy_grace_ns > 0)
			pp->drain_deadline = now + pp->destroy_grace_ns;
		next = check_workers(pp, destroying && qempty, now);

		if (shut && qempty && all_idle(pp) && !closing(pp)) {
			struct exe__pworker *w;

			pp->drain_deadline = -1; /* closing: no more spawns */
			for (w = pp->workers; w; w = w->next)
				if (w->chan_open && w->state != W_RETIRING)
					retire(pp, w, false);
			close_at = now + pp->term_grace_ns;
		}
		if (closing(pp)) {
			struct exe__pworker *w;

			if (!pp->workers)
				break;
			if (now >= close_at) /* idle workers that do not leave */
				for (w = pp->workers; w; w = w->next)
					pidfd_signal(w->pidfd, SIGKILL);
			next = earliest(next, close_at > now ? close_at : 0);
		}

		if (next) {
			int64_t d = next > now ? next - now : 0;

			ts.tv_sec = d / EXE_NS_PER_S;
			ts.tv_nsec = d % EXE_NS_PER_S;
			tsp = &ts;
		}
		n = 0;
		t_wait = now;
		if (!closing(pp) && (!qempty || !all_idle(pp)) && spin_ns > 0)
			n = spin_poll(pp, evs, seen, spin_ns, &kicked);
		if (n == 0 && !kicked) {
			pthread_mutex_lock(&pp->lock);
			kicked = pp->kicks != seen;
			if (!kicked)
				pp->wake_pending = 0; /* asleep: the next wake request writes */
			pthread_mutex_unlock(&pp->lock);
			if (!kicked)
				n = epoll_pwait2(pp->epfd, evs, 64, tsp, NULL);
		}
		now = exe_now_ns();
		/* Only waits for the channels or submitters teach the spin: a
		 * deadline's timeout does not. */
		if (n > 0 || kicked)
			spin_ns = exe__spin_adapt(spin_ns, now - t_wait);
		/* Channels first: the server's messages may free workers. */
		for (i = 0; i < n; i++) {
			if (evs[i].data.u64 == 0)
				woke = true;
			else if (evs[i].data.u64 != 1)
				read_worker(pp, evs[i].data.ptr, now, false);
		}
		if (woke) {
			uint64_t v;

			(void)!read(pp->evfd, &v, sizeof(v));
		}
		for (i = 0; i < n; i++)
			if (evs[i].data.u64 == 1)
				read_server(pp, now);
	}
}

void *exe__proc_collector_main(void *arg)
{
	struct exe__proc_pool *pp = arg;
	char name[32];
	int rc;

	snprintf(name, sizeof(name), "%s-c", pp->name);
	name[15] = '\0';
	pthread_setname_np(pthread_self(), name);
	/* exe_pool_shutdown(WAIT) from a done callback would join this
	 * thread from itself: the front end refuses it (-EDEADLK). */
	exe__tls_worker_owner = pp;

	rc = start_server(pp);
	pthread_mutex_lock(&pp->lock);
	pp->start_rc = rc;
	pthread_cond_broadcast(&pp->cond);
	pthread_mutex_unlock(&pp->lock);
	if (rc)
		return NULL;
	run(pp);
	stop_server(pp);
	return NULL;
}
