/*
 * proc_collector.c - the process pool's collector thread: it forks the fork
 * server, asks it for workers, hands tasks to them, reads their results,
 * runs the done callbacks, enforces deadlines and replaces dead workers.
 *
 * Design
 *  - One thread owns every worker record and every channel; what it shares
 *    is the queue and the ring (under the pool lock, proc_ring.c), the
 *    workers' cells (shared memory) and the counters. It sleeps in epoll on
 *    the worker channels, the fork-server socket and the pool's eventfd,
 *    with the nearest deadline as timeout.
 *  - Dispatch is the ring's: submitters place tasks, idle workers take them
 *    (work-conserving, first come first served, every untaken task
 *    cancellable). The collector learns of a start from the worker's cell
 *    (its claim word): it attaches the task (RUNNING, its deadline runs from
 *    the start the worker stamped), which frees the slot for the next task.
 *    Results come from the cells; the collector reads them, acknowledges
 *    them and finishes the futures. A memfd input is sent on the channel
 *    when the worker that took the task asks (NEED); a result too large for
 *    an entry or the task's arena block comes back on the channel.
 *  - Before sleeping while work is in flight, the collector polls the cells
 *    for an adaptive few microseconds; then it raises collector_asleep and
 *    looks once more, and the first worker with news after that writes a
 *    WAKE frame. Submitters see the collector awake (wake_pending) and skip
 *    the eventfd write; it rechecks the kicks counter under the pool lock
 *    before it sleeps.
 *  - Death: the fork server reaps the worker and sends pid and status. The
 *    channel and the cell are drained first (results posted before the
 *    death count); then the task the worker's claim names fails with the
 *    reason we had for stopping it (timeout, cancel, bad frame, destroy) or
 *    with the status ("killed by signal 11"). A slot the worker took but
 *    never reported goes back in line: that task never started. A
 *    replacement is asked for as soon as we decide to stop a worker, or
 *    when it dies unasked.
 *  - Map chunks are tasks like the others. A worker that dies in a chunk
 *    fails its first unfinished element: the values before it come from the
 *    worker's cell.
 *  - Recycling: a worker takes max_tasks_per_worker tasks, then exits; when
 *    its last claim is seen, its slot's replacement is spawned at once.
 *
 * Invariants
 *  - A worker record is freed only after the server reported its exit:
 *    its pidfd stays valid for signals until then (a dead pid cannot be
 *    reused before the server reaps it, and the pidfd tells dead from
 *    reused anyway).
 *  - Records are freed only in the fork-server message handler, which runs
 *    after the channel events of the same epoll batch.
 *  - A task a worker took is on its worker's in-flight list from the moment
 *    the collector attaches it until exe__proc_task_finish(); before that
 *    it is in the queue (and its slot), where the attach finds it.
 *  - A cell is reset before its worker is spawned and read only by this
 *    thread.
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

#include <ck_pr.h>

#include "alloc.h"
#include "ipc_internal.h" /* the shared futex calls */
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
	struct exe__ptask *head, *tail; /* attached, unfinished */
	struct exe__ptask *cur;         /* ... the one its claim word names, if unfinished */
	unsigned ninflight, dispatched; /* dispatched: claims seen */
	unsigned cell;                  /* its cell (pp->cells) */
	uint32_t seen_posted;           /* results read from the cell */
	uint64_t seen_claim;            /* the last claim word handled */
	uint64_t last_done;             /* the id of the last task of it finished */
	int64_t kill_at;  /* SIGKILL after SIGTERM; 0: none */
	int stop_sig;     /* the signal stop_sent sent (again once its pidfd comes) */
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
	t->prev = w->tail;
	if (w->tail)
		w->tail->next = t;
	else
		w->head = t;
	w->tail = t;
	w->ninflight++;
}

static void unlink_inflight(struct exe__pworker *w, struct exe__ptask *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		w->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		w->tail = t->prev;
	t->next = t->prev = NULL;
	w->ninflight--;
	if (w->cur == t)
		w->cur = NULL;
	w->last_done = t->id;
}

/* The task the worker reports for (@slot, @id): already attached, or
 * attached now. @take: off the in-flight list (its result is here).
 * NULL when the worker names a task it does not hold. */
static struct exe__ptask *lookup(struct exe__proc_pool *pp, struct exe__pworker *w, uint64_t slot, uint64_t id,
                                 bool take)
{
	struct exe__ptask *t;

	for (t = w->head; t; t = t->next)
		if (EXE__CLAIM_ID(t->id) == EXE__CLAIM_ID(id))
			break;
	if (!t) {
		pthread_mutex_lock(&pp->lock);
		t = exe__ring_attach_locked(pp, w->cell, slot, id);
		pthread_mutex_unlock(&pp->lock);
		if (!t)
			return NULL;
		t->deadline = 0;
		push_inflight(w, t);
	}
	if (take)
		unlink_inflight(w, t);
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
	/* nprocs < kid_cap: a free cell exists. Its last owner is reaped:
	 * nobody writes it until the new worker starts. */
	while (pp->cell_used[w->cell])
		w->cell++;
	{
		struct exe__cell *c = &pp->cells[w->cell];

		atomic_store_explicit(&c->claim, 0, memory_order_relaxed);
		atomic_store_explicit(&c->start, 0, memory_order_relaxed);
		atomic_store_explicit(&c->stop, 0, memory_order_relaxed);
		atomic_store_explicit(&c->posted, 0, memory_order_relaxed);
		atomic_store_explicit(&c->acked, 0, memory_order_relaxed);
		atomic_store_explicit(&c->ack_waiting, 0, memory_order_relaxed);
		atomic_store_explicit(&c->id, 0, memory_order_relaxed);
		atomic_store_explicit(&c->done, 0, memory_order_relaxed);
	}
	m.cell = (int32_t)w->cell;
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
	/* Take no new task meanwhile: one it took now would die with it. */
	atomic_store_explicit(&pp->cells[w->cell].stop, 1, memory_order_release);
	if (!w->stop_sent || sig == SIGKILL) {
		pidfd_signal(w->pidfd, sig);
		w->stop_sent = true;
		w->stop_sig = sig;
		w->kill_at = sig == SIGKILL ? 0 : now + pp->term_grace_ns;
	}
	if (w->state != W_RETIRING)
		w->state = W_RETIRING;
	vacate(pp, w, true);
}

static void bad_frame(struct exe__proc_pool *pp, struct exe__pworker *w, const char *why, int64_t now)
{
	stop_worker(pp, w, -EBADMSG, w->cur ? w->cur->id : 0,
	            fmt("worker %d broke the channel protocol (%s)", (int)w->pid, why), SIGKILL, now);
	/* Nothing more from this channel can be trusted. */
	chan_close(pp, w);
}

/* ---- results ---- */

static void retire(struct exe__proc_pool *pp, struct exe__pworker *w, bool replace);

/* A message from an entry or frame (@len bytes, already bounded). */
static char *copy_msg(uint16_t flags, const unsigned char *data, uint64_t len)
{
	char *m;

	if (!(flags & EXE__FF_MSG))
		return NULL;
	m = exe__malloc(len + 1);
	if (m) {
		memcpy(m, data, len);
		m[len] = '\0';
	}
	return m;
}

/* Remember how big recent large results were: the next bytes tasks are
 * offered an arena block of that class. */
static void note_result_size(struct exe__proc_pool *pp, uint64_t len)
{
	int cls = -1;

	if (len > EXE__RESULT_INLINE)
		for (cls = 0; cls < EXE__ARENA_CLASSES && exe__arena_class_size(cls) < len; cls++)
			;
	atomic_store_explicit(&pp->out_hint, cls < EXE__ARENA_CLASSES ? cls : -1, memory_order_relaxed);
}

static void finish_bytes(struct exe__proc_pool *pp, struct exe__ptask *t, const void *copy, uint64_t len,
                         void *map)
{
	void *b = exe__proc_bytes_new(copy, len, map);

	if (b) {
		exe__proc_task_finish(pp, t, 0, b, exe__proc_bytes_free, NULL);
		return;
	}
	if (map)
		munmap(map, len);
	exe__proc_task_finish(pp, t, -ENOMEM, NULL, NULL,
	                      fmt("no memory for a %llu byte result", (unsigned long long)len));
}

/* One result entry of @w's cell (copied out before it is acknowledged).
 * Return false when the entry broke the protocol (the worker is stopped). */
static bool on_result(struct exe__proc_pool *pp, struct exe__pworker *w, const struct exe__result *r, int64_t now)
{
	const struct exe__cell *cell = &pp->cells[w->cell];
	const struct exe__result_head h = {
	    .kind = r->kind, .flags = r->flags, .status = r->status, .word = r->word, .len = r->len};
	struct exe__ptask *t = lookup(pp, w, r->slot, r->id, true);
	const char *why;

	if (!t) {
		bad_frame(pp, w, "result for a task it does not hold", now);
		return false;
	}
	if (exe__result_check(&h, t->kind, t->in_len / sizeof(uint64_t),
	                      t->out_cls >= 0 ? exe__arena_class_size(t->out_cls) : 0, &why)) {
		exe__proc_task_finish(pp, t, -EBADMSG, NULL, NULL,
		                      fmt("worker %d broke the channel protocol (%s)", (int)w->pid, why));
		bad_frame(pp, w, why, now);
		return false;
	}
	/* Only h from here on: the entry itself may change under us. */
	if (h.kind == EXE__F_RESULT_CHUNK) {
		exe__proc_chunk_finish(pp, t, h.word, cell->vals, h.status, copy_msg(h.flags, r->data, h.len));
	} else if (h.status) {
		exe__proc_task_finish(pp, t, h.status, NULL, NULL, copy_msg(h.flags, r->data, h.len));
	} else if (h.kind == EXE__F_RESULT_PTR) {
		exe__proc_task_finish(pp, t, 0, (void *)(uintptr_t)h.word, NULL, NULL);
	} else if (h.flags & EXE__FF_ARENA) {
		void *b = exe__proc_bytes_arena(pp->arena, t->out_cls, t->out_off, h.len);

		note_result_size(pp, h.len);
		if (b)
			t->out_cls = -1; /* the future owns the block now */
		if (b)
			exe__proc_task_finish(pp, t, 0, b, exe__proc_bytes_free, NULL);
		else
			exe__proc_task_finish(pp, t, -ENOMEM, NULL, NULL, NULL);
	} else {
		note_result_size(pp, h.len);
		finish_bytes(pp, t, r->data, h.len, NULL);
	}
	return true;
}

/* After a protocol breach a worker's results are not read: the task its
 * claim names fails with the breach when it dies. */
static bool trusted(const struct exe__pworker *w)
{
	return !(w->stop_sent && w->fail_code == -EBADMSG);
}

/* Read @w's cell: new results in order, then its latest claim. Return true
 * when there was news. */
static bool poll_cell(struct exe__proc_pool *pp, struct exe__pworker *w, int64_t now)
{
	struct exe__cell *cell = &pp->cells[w->cell];
	/* acquire: pairs with exe__cell_post()'s release. */
	uint32_t posted = atomic_load_explicit(&cell->posted, memory_order_acquire);
	bool news = false;
	uint64_t c;

	while (trusted(w) && w->seen_posted != posted) {
		if (posted - w->seen_posted > EXE__RESULTS) {
			bad_frame(pp, w, "more results than entries", now);
			return true;
		}
		if (!on_result(pp, w, &cell->results[w->seen_posted % EXE__RESULTS], now))
			return true;
		w->seen_posted++;
		news = true;
		/* seq_cst, both: the worker raises ack_waiting, then reads
		 * acked. */
		atomic_store_explicit(&cell->acked, w->seen_posted, memory_order_seq_cst);
		if (atomic_load_explicit(&cell->ack_waiting, memory_order_seq_cst))
			exe__futex_wake_shared(&cell->acked, 1);
	}
	/* acquire: pairs with the worker's release after copying its slot. */
	c = atomic_load_explicit(&cell->claim, memory_order_acquire);
	if (c && c != w->seen_claim) {
		struct exe__ptask *t = NULL;

		w->seen_claim = c;
		news = true;
		w->dispatched++;
		if (EXE__CLAIM_ID(w->last_done) != EXE__CLAIM_ID(c)) {
			t = lookup(pp, w, EXE__CLAIM_SLOT(c), c, false);
			if (!t) {
				bad_frame(pp, w, "claim of a task it does not hold", now);
				return true;
			}
		}
		if (t) {
			int64_t start = atomic_load_explicit(&cell->start, memory_order_relaxed);

			/* A start stamp from the future or the distant past is
			 * a broken worker's: count from now instead. */
			if (start > now || start < now - EXE_NS_PER_S)
				start = now;
			w->cur = t;
			t->deadline = t->timeout_ns ? start + t->timeout_ns : 0;
		}
		if (pp->max_tasks && w->dispatched >= pp->max_tasks && w->state != W_RETIRING)
			retire(pp, w, true);
	}
	return news;
}

static bool poll_cells(struct exe__proc_pool *pp, int64_t now)
{
	struct exe__pworker *w, *next;
	bool news = false;

	for (w = pp->workers; w; w = next) {
		next = w->next;
		news |= poll_cell(pp, w, now);
	}
	return news;
}

/* Whether any cell has news, without touching it. */
static bool cells_dirty(struct exe__proc_pool *pp)
{
	const struct exe__pworker *w;

	for (w = pp->workers; w; w = w->next) {
		const struct exe__cell *cell = &pp->cells[w->cell];

		if ((trusted(w) && atomic_load_explicit(&cell->posted, memory_order_seq_cst) != w->seen_posted) ||
		    atomic_load_explicit(&cell->claim, memory_order_seq_cst) != w->seen_claim)
			return true;
	}
	return false;
}

/* A result too large for its entry and its arena block, in a memfd. */
static void on_memfd_result(struct exe__proc_pool *pp, struct exe__pworker *w, const struct exe__frame *h,
                            int fd, int64_t now)
{
	struct exe__ptask *t;
	const char *why = "malformed result";
	void *map = NULL;
	int rc;

	if (fd < 0 || h->status || h->flags != EXE__FF_MEMFD) {
		if (fd >= 0)
			close(fd);
		bad_frame(pp, w, why, now);
		return;
	}
	/* Results posted before it come first. */
	poll_cell(pp, w, now);
	t = lookup(pp, w, h->out, h->id, true);
	if (!t || t->kind != EXE__F_TASK_BYTES) {
		close(fd);
		if (t)
			exe__proc_task_finish(pp, t, -EBADMSG, NULL, NULL,
			                      fmt("worker %d broke the channel protocol (%s)", (int)w->pid, why));
		bad_frame(pp, w, "result for a task it does not hold", now);
		return;
	}
	rc = exe__memfd_map(fd, h->len, &map, &why);
	close(fd);
	if (rc) {
		if (rc != -EBADMSG)
			why = "cannot map the result";
		exe__proc_task_finish(pp, t, -EBADMSG, NULL, NULL,
		                      fmt("worker %d broke the channel protocol (%s)", (int)w->pid, why));
		bad_frame(pp, w, why, now);
		return;
	}
	note_result_size(pp, h->len);
	finish_bytes(pp, t, NULL, h->len, map);
}

/* The worker took a task whose input is a memfd: send it. */
static void on_need(struct exe__proc_pool *pp, struct exe__pworker *w, const struct exe__frame *h, int64_t now)
{
	struct exe__frame out = {.kind = EXE__F_TASK_BYTES, .id = h->id, .flags = EXE__FF_MEMFD};
	struct exe__ptask *t = lookup(pp, w, h->out, h->id, false);

	if (!t || t->memfd < 0) {
		bad_frame(pp, w, "asked for an input it does not need", now);
		return;
	}
	out.word = t->fn;
	out.len = t->in_len;
	if (exe__frame_send(w->chan, &out, NULL, t->memfd))
		stop_worker(pp, w, 0, 0, NULL, SIGKILL, now); /* dying: the death report follows */
}

static void on_frame(struct exe__proc_pool *pp, struct exe__pworker *w, const struct exe__frame *h,
                     const unsigned char *payload, int fd, int64_t now)
{
	(void)payload;
	switch (h->kind) {
	case EXE__F_WAKE:
		if (fd >= 0)
			close(fd);
		return; /* the cells are read on every turn of the loop */
	case EXE__F_NEED:
		if (fd >= 0)
			close(fd);
		on_need(pp, w, h, now);
		return;
	case EXE__F_RESULT_BYTES: on_memfd_result(pp, w, h, fd, now); return;
	case EXE__F_READY: break;
	default:
		if (fd >= 0)
			close(fd);
		bad_frame(pp, w, "unexpected frame", now);
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
 * later) wakes epoll again. @drain (a dead worker) reads to the end instead.
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
				    pp, w, -EBADMSG, w->cur ? w->cur->id : 0,
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

/* The task the dead worker ran fails (with the reason we stopped it for,
 * or its death); a task it took but never reported goes back in line. */
static void fail_inflight(struct exe__proc_pool *pp, struct exe__pworker *w)
{
	char what[160];
	struct exe__ptask *t;

	describe(w, what, sizeof(what));
	while ((t = w->head)) {
		bool named = t == w->cur;

		unlink_inflight(w, t);
		if (named && w->fail_code && (w->fail_id == 0 || w->fail_id == t->id))
			finish_dead(pp, w, t, w->fail_code,
			            fmt("%s; %s", w->fail_msg ? w->fail_msg : exe_strerror(w->fail_code), what));
		else
			finish_dead(pp, w, t, -ECHILD, fmt("%s", what));
	}
	/* After a protocol breach, what it took and did not report may have
	 * run: those fail too, rather than run twice. */
	bool breach = w->fail_code == -EBADMSG;
	struct exe__ptask *taken = NULL;

	pthread_mutex_lock(&pp->lock);
	exe__ring_reclaim_locked(pp, w->cell, breach ? &taken : NULL);
	pthread_mutex_unlock(&pp->lock);
	while ((t = taken)) {
		taken = t->next;
		exe__proc_task_finish(pp, t, -EBADMSG, NULL, NULL,
		                      fmt("%s; %s", w->fail_msg ? w->fail_msg : exe_strerror(-EBADMSG), what));
	}
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

	/* Results written before the death are still in the socket and the
	 * cell; the cell's claim names the task it was running. */
	read_worker(pp, w, now, true);
	chan_close(pp, w);
	poll_cell(pp, w, now);
	if (w->counted)
		atomic_fetch_sub(&pp->live_workers, 1);
	if (w->state == W_STARTING) {
		describe(w, what, sizeof(what));
		exe__pool_mark_broken(&pp->base, "worker %s-%u died during init: %s", pp->name, w->slot,
		                      what);
	}
	fail_inflight(pp, w);
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
			/* Stopped before we knew it (it took a task before the
			 * server's answer came): the signal goes now. */
			if (w->stop_sent)
				pidfd_signal(w->pidfd, w->stop_sig);
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
	/* It finishes what it has and exits once idle. */
	exe__ring_stop(pp, w->cell);
	vacate(pp, w, replace);
}

static void fail_queue(struct exe__proc_pool *pp)
{
	struct exe__ptask *t;

	while ((t = exe__proc_queue_take(pp)))
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
		struct exe__ptask *t = w->cur;

		if (w->kill_at && now >= w->kill_at) {
			pidfd_signal(w->pidfd, SIGKILL);
			w->kill_at = 0;
		}
		next = earliest(next, w->kill_at);
		if (!t || w->stop_sent || w->pidfd < 0)
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

/* Poll the cells, the kicks counter and now and then the channels for up
 * to @budget ns before sleeping: a result, claim or submit that comes
 * within the budget costs no wake-up. Return what epoll_pwait2() returned
 * (0: nothing from the channels); *@kicked when a wake request came, *@news
 * when a cell changed. */
static int spin_poll(struct exe__proc_pool *pp, struct epoll_event *evs, uint32_t seen, int64_t budget,
                     bool *kicked, bool *news)
{
	const struct timespec zero = {0, 0};
	int64_t until = exe_now_ns() + budget;
	unsigned k = 0;

	do {
		if (cells_dirty(pp)) {
			*news = true;
			return 0;
		}
		/* relaxed: the lock taken before sleeping orders the rest. */
		if (atomic_load_explicit(&pp->kicks, memory_order_relaxed) != seen) {
			*kicked = true;
			return 0;
		}
		if (++k % 32 == 0) {
			int n = epoll_pwait2(pp->epfd, evs, 64, &zero, NULL);

			if (n != 0)
				return n;
			/* Give a worker sharing this CPU its turn now and then. */
			sched_yield();
		} else {
			ck_pr_stall();
		}
	} while (exe_now_ns() < until);
	return 0;
}

static void run(struct exe__proc_pool *pp)
{
	int64_t close_at = 0, spin_ns = EXE__SPIN_MIN_NS;

	for (;;) {
		struct epoll_event evs[64];
		struct timespec ts, *tsp = NULL;
		bool shut, destroying, qempty, woke = false, kicked = false, news = false;
		int64_t now, next, t_wait;
		uint32_t seen;
		int n, i;

		now = exe_now_ns();
		pthread_mutex_lock(&pp->lock);
		/* Awake: submitters need not write the eventfd until we sleep. */
		pp->wake_pending = 1;
		seen = pp->kicks;
		pthread_mutex_unlock(&pp->lock);

		poll_cells(pp, now);
		if (exe__pool_is_broken(&pp->base))
			fail_queue(pp);
		for (i = 0; i < (int)pp->nworkers; i++)
			if (!pp->slots[i])
				spawn(pp, (unsigned)i);
		pthread_mutex_lock(&pp->lock);
		shut = pp->shutdown;
		destroying = pp->destroying;
		qempty = pp->qhead.next == &pp->qhead;
		pthread_mutex_unlock(&pp->lock);
		if (destroying && qempty && pp->drain_deadline == 0 && pp->destroy_grace_ns > 0)
			pp->drain_deadline = now + pp->destroy_grace_ns;
		next = check_workers(pp, destroying && qempty, now);

		if (shut && qempty && all_idle(pp) && !closing(pp)) {
			struct exe__pworker *w;

			pp->drain_deadline = -1; /* closing: no more spawns */
			for (w = pp->workers; w; w = w->next)
				if (w->state != W_RETIRING)
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
			n = spin_poll(pp, evs, seen, spin_ns, &kicked, &news);
		if (n == 0 && !kicked && !news) {
			pthread_mutex_lock(&pp->lock);
			kicked = pp->kicks != seen;
			if (!kicked)
				pp->wake_pending = 0; /* asleep: the next wake request writes */
			pthread_mutex_unlock(&pp->lock);
			if (!kicked) {
				/* seq_cst, both: workers post or claim, then read
				 * collector_asleep (exe__ring_collector_wanted()). */
				atomic_store_explicit(&pp->ring->collector_asleep, 1, memory_order_seq_cst);
				news = cells_dirty(pp);
				if (!news)
					n = epoll_pwait2(pp->epfd, evs, 64, tsp, NULL);
				atomic_store_explicit(&pp->ring->collector_asleep, 0, memory_order_seq_cst);
			}
		}
		now = exe_now_ns();
		/* Only waits for the workers or submitters teach the spin: a
		 * deadline's timeout does not. */
		if (n > 0 || kicked || news)
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
