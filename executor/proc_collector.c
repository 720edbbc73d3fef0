/*
 * proc_collector.c - the process pool's collector thread: it forks the fork
 * server, asks it for workers, finishes the tasks they report (reading them
 * is proc_results.c's), runs the done callbacks, enforces deadlines and
 * replaces dead workers.
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

#include "proc_collector.h"

char *exe__proc_fmt(const char *f, ...)
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

void exe__proc_vacate(struct exe__proc_pool *pp, struct exe__pworker *w, bool replace)
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

void exe__proc_chan_close(struct exe__proc_pool *pp, struct exe__pworker *w)
{
	if (!w->chan_open)
		return;
	epoll_ctl(pp->epfd, EPOLL_CTL_DEL, w->chan, NULL);
	close(w->chan);
	w->chan = -1;
	w->chan_open = false;
}

/* Stop a worker on purpose; its tasks fail when it is reaped. */
void exe__proc_stop_worker(struct exe__proc_pool *pp, struct exe__pworker *w, int code, uint64_t id,
                           char *msg, int sig, int64_t now)
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
	exe__proc_vacate(pp, w, true);
}

void exe__proc_bad_frame(struct exe__proc_pool *pp, struct exe__pworker *w, const char *why, int64_t now)
{
	exe__proc_stop_worker(pp, w, -EBADMSG, w->cur ? w->cur->id : 0,
	                      exe__proc_fmt("worker %d broke the channel protocol (%s)", (int)w->pid, why),
	                      SIGKILL, now);
	/* Nothing more from this channel can be trusted. */
	exe__proc_chan_close(pp, w);
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
/* The task the dead worker ran fails (with the reason we stopped it for,
 * or its death); a task it took but never reported goes back in line.
 * After a protocol breach nothing it reported is trusted and what it took
 * may have run: every such task fails with the breach, rather than run
 * twice. */
static void fail_inflight(struct exe__proc_pool *pp, struct exe__pworker *w)
{
	bool breach = w->fail_code == -EBADMSG;
	struct exe__ptask *t, *taken = NULL;
	char what[160];

	describe(w, what, sizeof(what));
	pthread_mutex_lock(&pp->lock);
	exe__ring_reclaim_locked(pp, w->cell, breach ? &taken : NULL);
	pthread_mutex_unlock(&pp->lock);
	while ((t = taken)) {
		taken = t->next;
		exe__proc_task_finish(
		    pp, t, -EBADMSG, NULL, NULL,
		    exe__proc_fmt("%s; %s", w->fail_msg ? w->fail_msg : exe_strerror(-EBADMSG), what));
	}
	while ((t = w->head)) {
		bool named = t == w->cur;

		exe__proc_unlink_inflight(w, t);
		if (breach || (named && w->fail_code && (w->fail_id == 0 || w->fail_id == t->id)))
			finish_dead(pp, w, t, w->fail_code,
			            exe__proc_fmt("%s; %s",
			                          w->fail_msg ? w->fail_msg : exe_strerror(w->fail_code),
			                          what));
		else
			finish_dead(pp, w, t, -ECHILD, exe__proc_fmt("%s", what));
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
	exe__proc_chan_close(pp, w);
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
	exe__proc_read_worker(pp, w, now, true);
	exe__proc_chan_close(pp, w);
	exe__proc_poll_cell(pp, w, now);
	if (w->counted)
		atomic_fetch_sub(&pp->live_workers, 1);
	if (w->state == W_STARTING) {
		describe(w, what, sizeof(what));
		exe__pool_mark_broken(&pp->base, "worker %s-%u died during init: %s", pp->name, w->slot,
		                      what);
	}
	fail_inflight(pp, w);
	exe__proc_vacate(pp, w, true);
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
			w->fail_msg = exe__proc_fmt("the fork server died");
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
				exe__proc_vacate(pp, w, false);
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

void exe__proc_retire(struct exe__proc_pool *pp, struct exe__pworker *w, bool replace)
{
	w->state = W_RETIRING;
	/* It finishes what it has and exits once idle. */
	exe__ring_stop(pp, w->cell);
	exe__proc_vacate(pp, w, replace);
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
			exe__proc_stop_worker(
			    pp, w, -ETIME, t->id,
			    exe__proc_fmt("task timed out after %.3f s", (double)t->timeout_ns / 1e9),
			    SIGTERM, now);
		} else if (t->kill_on_cancel && exe_future_cancel_requested(t->f)) {
			exe__proc_stop_worker(pp, w, -ECANCELED, t->id,
			                      exe__proc_fmt("task cancelled while running"), SIGTERM, now);
		} else if (draining && pp->drain_deadline > 0 && now >= pp->drain_deadline) {
			exe__proc_stop_worker(pp, w, -ECANCELED, 0,
			                      exe__proc_fmt("pool destroyed while the task ran"), SIGTERM,
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
		if (exe__proc_cells_dirty(pp)) {
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

		exe__proc_poll_cells(pp, now);
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
					exe__proc_retire(pp, w, false);
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
				news = exe__proc_cells_dirty(pp);
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
				exe__proc_read_worker(pp, evs[i].data.ptr, now, false);
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
