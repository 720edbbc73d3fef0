/*
 * proc_results.c - the collector reading what workers report: results and
 * claims from their cells (shared memory, see proc_ring.c), and the few
 * frames that still come on their channels (READY, NEED, WAKE, memfd
 * results). Everything a worker writes is checked before it is believed:
 * a worker runs user code, and a result for a task it does not hold, a
 * malformed entry or garbage on the channel gets it killed (-EBADMSG).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "future_internal.h"
#include "ipc_internal.h" /* the shared futex calls */
#include "proc_collector.h"

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

void exe__proc_unlink_inflight(struct exe__pworker *w, struct exe__ptask *t)
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
 * attached now (on the in-flight list until its result is taken). NULL
 * when the worker names a task it does not hold. */
static struct exe__ptask *lookup(struct exe__proc_pool *pp, struct exe__pworker *w, uint64_t slot,
                                 uint64_t id)
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
	return t;
}

/* ---- results ---- */

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
	                      exe__proc_fmt("no memory for a %llu byte result", (unsigned long long)len));
}

/* One result entry of @w's cell (copied out before it is acknowledged).
 * Return false when the entry broke the protocol (the worker is stopped). */
static bool on_result(struct exe__proc_pool *pp, struct exe__pworker *w, const struct exe__result *r,
                      int64_t now)
{
	const struct exe__cell *cell = &pp->cells[w->cell];
	const struct exe__result_head h = {
	    .kind = r->kind, .flags = r->flags, .status = r->status, .word = r->word, .len = r->len};
	struct exe__ptask *t = lookup(pp, w, r->slot, r->id);
	const char *why;

	if (!t) {
		exe__proc_bad_frame(pp, w, "result for a task it does not hold", now);
		return false;
	}
	/* A bad entry leaves the task attached: it fails with the breach
	 * when the worker is reaped, like everything else the worker held. */
	if (exe__result_check(&h, t->kind, t->in_len / sizeof(uint64_t),
	                      t->out_cls >= 0 ? exe__arena_class_size(t->out_cls) : 0, &why)) {
		exe__proc_bad_frame(pp, w, why, now);
		return false;
	}
	exe__proc_unlink_inflight(w, t);
	/* Only h from here on: the entry itself may change under us. */
	if (h.kind == EXE__F_RESULT_CHUNK) {
		exe__proc_chunk_finish(pp, t, h.word, cell->vals, h.status,
		                       copy_msg(h.flags, r->data, h.len));
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
bool exe__proc_poll_cell(struct exe__proc_pool *pp, struct exe__pworker *w, int64_t now)
{
	struct exe__cell *cell = &pp->cells[w->cell];
	/* acquire: pairs with exe__cell_post()'s release. */
	uint32_t posted = atomic_load_explicit(&cell->posted, memory_order_acquire);
	bool news = false;
	uint64_t c;

	while (trusted(w) && w->seen_posted != posted) {
		if (posted - w->seen_posted > EXE__RESULTS) {
			exe__proc_bad_frame(pp, w, "more results than entries", now);
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
			t = lookup(pp, w, EXE__CLAIM_SLOT(c), c);
			if (!t) {
				exe__proc_bad_frame(pp, w, "claim of a task it does not hold", now);
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
			exe__proc_retire(pp, w, true);
	}
	return news;
}

bool exe__proc_poll_cells(struct exe__proc_pool *pp, int64_t now)
{
	struct exe__pworker *w, *next;
	bool news = false;

	for (w = pp->workers; w; w = next) {
		next = w->next;
		news |= exe__proc_poll_cell(pp, w, now);
	}
	return news;
}

/* Whether any cell has news, without touching it. */
bool exe__proc_cells_dirty(struct exe__proc_pool *pp)
{
	const struct exe__pworker *w;

	for (w = pp->workers; w; w = w->next) {
		const struct exe__cell *cell = &pp->cells[w->cell];

		if ((trusted(w) &&
		     atomic_load_explicit(&cell->posted, memory_order_seq_cst) != w->seen_posted) ||
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
		exe__proc_bad_frame(pp, w, why, now);
		return;
	}
	/* Results posted before it come first. */
	exe__proc_poll_cell(pp, w, now);
	/* As in on_result(): a bad frame leaves the task attached, to fail
	 * with the breach. */
	t = lookup(pp, w, h->out, h->id);
	if (!t || t->kind != EXE__F_TASK_BYTES) {
		close(fd);
		exe__proc_bad_frame(pp, w, "result for a task it does not hold", now);
		return;
	}
	rc = exe__memfd_map(fd, h->len, &map, &why);
	close(fd);
	if (rc) {
		exe__proc_bad_frame(pp, w, rc == -EBADMSG ? why : "cannot map the result", now);
		return;
	}
	exe__proc_unlink_inflight(w, t);
	note_result_size(pp, h->len);
	finish_bytes(pp, t, NULL, h->len, map);
}

/* The worker took a task whose input is a memfd: send it. */
static void on_need(struct exe__proc_pool *pp, struct exe__pworker *w, const struct exe__frame *h,
                    int64_t now)
{
	struct exe__frame out = {.kind = EXE__F_TASK_BYTES, .id = h->id, .flags = EXE__FF_MEMFD};
	struct exe__ptask *t = lookup(pp, w, h->out, h->id);

	if (!t || t->memfd < 0) {
		exe__proc_bad_frame(pp, w, "asked for an input it does not need", now);
		return;
	}
	out.word = t->fn;
	out.len = t->in_len;
	if (exe__frame_send(w->chan, &out, NULL, t->memfd))
		exe__proc_stop_worker(pp, w, 0, 0, NULL, SIGKILL, now); /* dying: the death report follows */
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
		exe__proc_bad_frame(pp, w, "unexpected frame", now);
		return;
	}
	if (fd >= 0)
		close(fd);
	if (w->state != W_STARTING && w->state != W_SPAWNING && !(w->state == W_RETIRING && !w->dispatched)) {
		exe__proc_bad_frame(pp, w, "unexpected ready frame", now);
		return;
	}
	if (h->status) {
		exe__pool_mark_broken(&pp->base, "worker init failed in %s-%u: %s (%d)", pp->name, w->slot,
		                      exe_strerror(h->status), h->status);
		w->state = W_RETIRING; /* it exits by itself */
		exe__proc_vacate(pp, w, false);
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
void exe__proc_read_worker(struct exe__proc_pool *pp, struct exe__pworker *w, int64_t now, bool drain)
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
			exe__proc_bad_frame(pp, w, "too many or truncated descriptors", now);
			return;
		}
		if (n <= 0) {
			/* End of file: the worker is gone or going; its status
			 * comes from the fork server. Bytes left over are a frame
			 * cut short. */
			if (n == 0 && w->rx.end > w->rx.start) {
				exe__proc_stop_worker(
				    pp, w, -EBADMSG, w->cur ? w->cur->id : 0,
				    exe__proc_fmt(
					"worker %d sent a truncated frame (%zu bytes, then end of file)",
					(int)w->pid, w->rx.end - w->rx.start),
				    SIGKILL, now);
			}
			exe__proc_chan_close(pp, w);
			return;
		}
		while ((rc = exe__rx_next(&w->rx, &h, &payload, &fd, &why)) == 1 && w->chan_open)
			on_frame(pp, w, &h, payload, fd, now);
		if (rc < 0) {
			exe__proc_bad_frame(pp, w, why, now);
			return;
		}
		if (dry)
			return;
	}
}
