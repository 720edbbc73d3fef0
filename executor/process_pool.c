/*
 * process_pool.c - the process-pool executor: creation, submission, the
 * queue, cancellation, shutdown, stats. The collector thread that talks to
 * the workers is in proc_collector.c, the child processes in proc_worker.c,
 * bytes tasks in proc_bytes.c, the chunked map in proc_map.c.
 *
 * Design
 *  - A submission is a future plus a task record (struct exe__ptask) that
 *    holds the copied input (inline, or a sealed memfd when large). The
 *    record holds the producer's reference; f->arg points to the record.
 *  - The queue is a circular doubly linked list under the pool lock.
 *    The collector takes a task by claiming its future (PENDING -> RUNNING)
 *    and unlinking it in one critical section; a cancel that wins the race
 *    instead leaves the record linked, and the future's cancelled() hook
 *    unlinks and frees it. So a queued record is unlinked exactly once, by
 *    whoever moved its future out of PENDING.
 *  - Submitters wake the collector through an eventfd, written only when
 *    the collector sleeps (wake_pending clear, under the lock): while it is
 *    awake or spinning it sees the kicks counter move instead, so a busy
 *    pool takes submits without a system call.
 *  - exe_future_cancel() on a running task reaches the collector through a
 *    registry of live pools: the future's owner is compared with the
 *    registered pools under the registry lock, never dereferenced blindly,
 *    because the pool may be gone by then.
 *
 * Invariants
 *  - Lock order: registry lock, then pool lock. The pool lock is never held
 *    while user code runs (callbacks of a cancel run after the unlock).
 *  - A cancelled() hook does its last touch of the pool under the pool lock:
 *    the collector exits (and destroy frees) only after seeing the queue
 *    empty under that lock.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc.h"
#include "errors.h"
#include "future_internal.h"
#include "pool_internal.h"
#include "proc_internal.h"

#define DEFAULT_TERM_GRACE_NS (200 * EXE_NS_PER_MS)
#define DEFAULT_DESTROY_GRACE_NS (5 * EXE_NS_PER_S)

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct exe__proc_pool *registry;

static struct exe__proc_pool *pool_of(struct exe_pool *p)
{
	return (struct exe__proc_pool *)p;
}

/* ---- waking the collector ---- */

static void wake_locked(struct exe__proc_pool *pp)
{
	uint64_t one = 1;

	/* The collector, awake or spinning, sees this before it sleeps. */
	atomic_fetch_add_explicit(&pp->kicks, 1, memory_order_relaxed);
	if (pp->wake_pending)
		return;
	pp->wake_pending = 1;
	/* Cannot fail short of a full counter, which a pending wake-up rules
	 * out. */
	(void)!write(pp->evfd, &one, sizeof(one));
}

void exe__proc_wake(struct exe__proc_pool *pp)
{
	pthread_mutex_lock(&pp->lock);
	wake_locked(pp);
	pthread_mutex_unlock(&pp->lock);
}

/* ---- task records ---- */

void exe__proc_task_release(struct exe__proc_pool *pp, struct exe__ptask *t)
{
	if (t->in_cls >= 0)
		exe__arena_free(pp->arena, t->in_cls, t->in_off);
	if (t->out_cls >= 0)
		exe__arena_free(pp->arena, t->out_cls, t->out_off);
	t->in_cls = t->out_cls = -1;
}

void exe__proc_task_free(struct exe__ptask *t)
{
	if (t->memfd >= 0)
		close(t->memfd);
	exe__pmap_unref(t->map);
	exe__free(t);
}

void exe__proc_unlink_locked(struct exe__proc_pool *pp, struct exe__ptask *t)
{
	if (pp->unplaced == t)
		pp->unplaced = t->next;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->queued = false;
	pp->queued--;
	if (pp->space_waiters)
		pthread_cond_broadcast(&pp->cond);
}

struct exe__ptask *exe__proc_queue_take(struct exe__proc_pool *pp)
{
	struct exe__ptask *t;

	pthread_mutex_lock(&pp->lock);
	for (t = pp->qhead.next; t != &pp->qhead; t = t->next) {
		/* A record a worker took is left to its worker; one whose claim
		 * fails was cancelled: its cancelled() hook is on its way to
		 * unlink it. */
		if (t->slot >= 0 && exe__ring_revoke_locked(pp, t))
			continue;
		if (exe__future_claim(t->f)) {
			exe__proc_unlink_locked(pp, t);
			atomic_fetch_add(&pp->started, 1);
			pthread_mutex_unlock(&pp->lock);
			return t;
		}
	}
	pthread_mutex_unlock(&pp->lock);
	return NULL;
}

void exe__proc_task_finish(struct exe__proc_pool *pp, struct exe__ptask *t, int code, void *value,
                           exe_free_fn *value_free, char *msg)
{
	struct exe_future *f = t->f;

	exe__proc_task_release(pp, t);
	exe__proc_task_free(t);
	if (code == 0)
		f->value_free = value_free;
	/* Counted first: whoever sees the future finished sees it counted. */
	atomic_fetch_add(code == 0 ? &pp->completed : &pp->failed, 1);
	exe__future_complete_owned(f, code, value, msg);
	exe_future_unref(f);
}

/* ---- future hooks ---- */

static int task_revoke(struct exe_future *f)
{
	struct exe__proc_pool *q;
	int rc = -EBUSY;

	/* The cancel saw @f PENDING, but the task may have started and
	 * finished since, and its pool been destroyed: look the owner up
	 * first, and touch the record only while the future is still PENDING
	 * under the pool lock (attaching and withdrawing both happen under
	 * it; a record is freed only after its future left PENDING). */
	pthread_mutex_lock(&registry_lock);
	for (q = registry; q && (void *)q != f->owner; q = q->live_next)
		;
	if (q) {
		pthread_mutex_lock(&q->lock);
		if ((atomic_load_explicit(&f->state, memory_order_acquire) & EXE__STATE_MASK) ==
		    EXE_FUTURE_PENDING)
			rc = exe__ring_revoke_locked(q, f->arg);
		pthread_mutex_unlock(&q->lock);
	}
	pthread_mutex_unlock(&registry_lock);
	return rc;
}

static void task_cancelled(struct exe_future *f)
{
	struct exe__proc_pool *pp = f->owner;
	struct exe__ptask *t = f->arg;

	pthread_mutex_lock(&pp->lock);
	exe__proc_unlink_locked(pp, t);
	exe__proc_task_release(pp, t);
	atomic_fetch_add(&pp->cancelled, 1);
	if (pp->shutdown)
		wake_locked(pp); /* the collector may be waiting for the queue to empty */
	pthread_mutex_unlock(&pp->lock);
	/* The pool may be gone from here on. */
	exe__proc_task_free(t);
	exe_future_unref(f); /* the producer's reference */
}

static void task_cancel_running(struct exe_future *f)
{
	struct exe__proc_pool *q;

	/* The task may have finished and its pool been destroyed since the
	 * cancel flag was set: look the owner up before touching it. The
	 * collector decides, from the flag, whether the worker dies. */
	pthread_mutex_lock(&registry_lock);
	for (q = registry; q; q = q->live_next) {
		if ((void *)q == f->owner) {
			exe__proc_wake(q);
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

const struct exe__future_ops exe__proc_ptr_ops = {
    .revoke = task_revoke,
    .cancelled = task_cancelled,
    .cancel_running = task_cancel_running,
};

const struct exe__future_ops exe__proc_bytes_ops = {
    .revoke = task_revoke,
    .cancelled = task_cancelled,
    .cancel_running = task_cancel_running,
    .bytes = exe__proc_bytes_of,
};

/* ---- submit ---- */

static int wait_for_room(struct exe__proc_pool *pp, const struct exe_submit_opts *o)
{
	int64_t deadline;

	if (!o || !(o->flags & EXE_SUBMIT_BLOCK))
		return -EAGAIN;
	deadline = o->block_timeout_ns > 0 ? exe__deadline(o->block_timeout_ns) : -1;
	pp->space_waiters++;
	while (!pp->shutdown && pp->queued >= pp->capacity) {
		if (deadline < 0) {
			pthread_cond_wait(&pp->cond, &pp->lock);
		} else {
			struct timespec ts = {deadline / EXE_NS_PER_S, deadline % EXE_NS_PER_S};

			if (pthread_cond_timedwait(&pp->cond, &pp->lock, &ts) == ETIMEDOUT && !pp->shutdown &&
			    pp->queued >= pp->capacity) {
				pp->space_waiters--;
				return -ETIMEDOUT;
			}
		}
	}
	pp->space_waiters--;
	return pp->shutdown ? -ESHUTDOWN : 0;
}

int exe__proc_enqueue(struct exe__proc_pool *pp, struct exe__ptask *t, const struct exe__future_ops *ops,
                      const struct exe_submit_opts *o, struct exe_future **out)
{
	struct exe_future *f;
	int rc = 0;

	if (exe__pool_is_broken(&pp->base)) {
		exe__proc_task_release(pp, t);
		exe__proc_task_free(t);
		return -ENOTRECOVERABLE;
	}
	f = exe__future_new(ops, pp, out ? 2 : 1);
	if (!f) {
		exe__proc_task_release(pp, t);
		exe__proc_task_free(t);
		return -ENOMEM;
	}
	f->arg = t;
	t->f = f;
	t->timeout_ns = o && o->task_timeout_ns ? o->task_timeout_ns : pp->task_timeout_ns;
	t->kill_on_cancel = pp->kill_on_cancel || (o && (o->flags & EXE_SUBMIT_KILL_ON_CANCEL));
	pthread_mutex_lock(&pp->lock);
	if (pp->shutdown)
		rc = -ESHUTDOWN;
	else if (pp->capacity && pp->queued >= pp->capacity)
		rc = wait_for_room(pp, o);
	if (rc) {
		exe__proc_task_release(pp, t);
		pthread_mutex_unlock(&pp->lock);
		exe__future_discard(f); /* never published */
		exe__proc_task_free(t);
		return rc;
	}
	t->id = ++pp->next_id;
	t->queued = true;
	t->next = &pp->qhead;
	t->prev = pp->qhead.prev;
	pp->qhead.prev->next = t;
	pp->qhead.prev = t;
	pp->queued++;
	atomic_fetch_add(&pp->submitted, 1);
	if (pp->unplaced == &pp->qhead)
		pp->unplaced = t;
	/* Into the ring, where an idle worker takes it; the collector hears
	 * of it from that worker. Only a task left waiting for a slot needs
	 * the collector, which frees slots. */
	exe__ring_fill_locked(pp);
	if (t->slot < 0)
		wake_locked(pp);
	pthread_mutex_unlock(&pp->lock);
	if (out)
		*out = f;
	return 0;
}

struct exe__ptask *exe__proc_task_new(size_t inline_len)
{
	struct exe__ptask *t = exe__malloc(sizeof(*t) + inline_len);

	if (t) {
		memset(t, 0, sizeof(*t));
		t->memfd = -1;
		t->slot = -1;
		t->in_cls = t->out_cls = -1;
	}
	return t;
}

static int pp_submit(struct exe_pool *p, exe_task_fn *fn, void *arg, const struct exe_submit_opts *o,
                     struct exe_future **out)
{
	struct exe__ptask *t;

	/* The value lives in the worker: nothing here could free it. */
	if (o && (o->result_free || o->task_timeout_ns < 0))
		return -EINVAL;
	t = exe__proc_task_new(0);
	if (!t)
		return -ENOMEM;
	t->kind = EXE__F_TASK_PTR;
	t->fn = (uint64_t)(uintptr_t)fn;
	t->arg = (uint64_t)(uintptr_t)arg;
	return exe__proc_enqueue(pool_of(p), t, &exe__proc_ptr_ops, o, out);
}

/* ---- shutdown, destroy, stats ---- */

static void join_collector(struct exe__proc_pool *pp)
{
	pthread_mutex_lock(&pp->life_lock);
	if (!pp->joined) {
		pthread_join(pp->collector, NULL);
		pp->joined = true;
	}
	pthread_mutex_unlock(&pp->life_lock);
}

static struct exe_future *first_pending(struct exe__proc_pool *pp)
{
	struct exe__ptask *t;

	for (t = pp->qhead.next; t != &pp->qhead; t = t->next)
		if (exe_future_state(t->f) == EXE_FUTURE_PENDING)
			return exe_future_ref(t->f);
	return NULL;
}

static int pp_shutdown(struct exe_pool *p, unsigned flags)
{
	struct exe__proc_pool *pp = pool_of(p);
	struct exe_future *f;

	pthread_mutex_lock(&pp->lock);
	pp->shutdown = true;
	pthread_cond_broadcast(&pp->cond);
	if (flags & EXE_SHUTDOWN_CANCEL_PENDING) {
		/* Cancel outside the lock: callbacks run on this thread, and
		 * the cancelled() hook takes the lock to unlink. */
		while ((f = first_pending(pp))) {
			pthread_mutex_unlock(&pp->lock);
			exe__future_cancel_pending(f);
			exe_future_unref(f);
			pthread_mutex_lock(&pp->lock);
		}
	}
	wake_locked(pp);
	pthread_mutex_unlock(&pp->lock);
	if (flags & EXE_SHUTDOWN_WAIT)
		join_collector(pp);
	return 0;
}

static void pp_free(struct exe__proc_pool *pp)
{
	if (pp->evfd >= 0)
		close(pp->evfd);
	if (pp->epfd >= 0)
		close(pp->epfd);
	if (pp->ctl >= 0)
		close(pp->ctl);
	if (pp->ctl_child >= 0)
		close(pp->ctl_child);
	pthread_mutex_destroy(&pp->lock);
	pthread_cond_destroy(&pp->cond);
	pthread_mutex_destroy(&pp->life_lock);
	exe__arena_unref(pp->arena); /* results still held keep it mapped */
	if (pp->cells)
		munmap(pp->cells, pp->cells_size);
	if (pp->ring)
		munmap(pp->ring, pp->ring_size);
	exe__free(pp->slot_task);
	exe__free(pp->cell_used);
	exe__free(pp->server_mem);
	exe__free(pp->slots);
	exe__free(pp);
}

static void pp_destroy(struct exe_pool *p)
{
	struct exe__proc_pool *pp = pool_of(p);
	struct exe__proc_pool **pq;

	pthread_mutex_lock(&pp->lock);
	pp->destroying = true;
	pthread_mutex_unlock(&pp->lock);
	pp_shutdown(p, EXE_SHUTDOWN_WAIT);
	pthread_mutex_lock(&registry_lock);
	for (pq = &registry; *pq; pq = &(*pq)->live_next) {
		if (*pq == pp) {
			*pq = pp->live_next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	pp_free(pp);
}

static void pp_stats(struct exe_pool *p, struct exe_pool_stats *st)
{
	struct exe__proc_pool *pp = pool_of(p);
	uint64_t started = atomic_load(&pp->started), done = atomic_load(&pp->completed);
	uint64_t failed = atomic_load(&pp->failed), cancelled = atomic_load(&pp->cancelled);
	uint64_t submitted = atomic_load(&pp->submitted);

	st->submitted = submitted;
	st->completed = done;
	st->failed = failed;
	st->cancelled = cancelled;
	st->running = started > done + failed ? started - done - failed : 0;
	st->queued = submitted > started + cancelled ? submitted - started - cancelled : 0;
	st->workers = atomic_load(&pp->live_workers);
	st->worker_restarts = atomic_load(&pp->restarts);
	pthread_mutex_lock(&pp->lock);
	st->shut_down = pp->shutdown;
	pthread_mutex_unlock(&pp->lock);
}

const struct exe__pool_ops exe__proc_pool_ops = {
    .submit = pp_submit,
    .shutdown = pp_shutdown,
    .destroy = pp_destroy,
    .stats = pp_stats,
    .map = exe__proc_map,
    .map_open = exe__proc_map_open,
};

/* ---- create ---- */

static int setup(struct exe__proc_pool *pp)
{
	struct epoll_event ev = {.events = EPOLLIN};
	pthread_condattr_t ca;
	int sv[2];

	pthread_mutex_init(&pp->lock, NULL);
	pthread_mutex_init(&pp->life_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pp->cond, &ca);
	pthread_condattr_destroy(&ca);
	pp->qhead.next = pp->qhead.prev = &pp->qhead;
	pp->unplaced = &pp->qhead;

	pp->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (pp->evfd < 0)
		return -errno;
	pp->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (pp->epfd < 0)
		return -errno;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pp->ctl = sv[0];
	pp->ctl_child = sv[1];
	ev.data.u64 = 0;
	if (epoll_ctl(pp->epfd, EPOLL_CTL_ADD, pp->evfd, &ev) < 0)
		return -errno;
	ev.data.u64 = 1;
	if (epoll_ctl(pp->epfd, EPOLL_CTL_ADD, pp->ctl, &ev) < 0)
		return -errno;
	return 0;
}

/* Start the collector (which forks the fork server) and wait until the
 * server runs. */
static int start(struct exe__proc_pool *pp)
{
	sigset_t all, old;
	int rc;

	/* The collector blocks every signal: they belong to the application.
	 * Its mask is inherited, then reset, by the fork server. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pp->start_rc = 1;
	rc = -pthread_create(&pp->collector, NULL, exe__proc_collector_main, pp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		return rc;
	pthread_mutex_lock(&pp->lock);
	while (pp->start_rc == 1)
		pthread_cond_wait(&pp->cond, &pp->lock);
	rc = pp->start_rc;
	pthread_mutex_unlock(&pp->lock);
	if (rc) {
		join_collector(pp);
		return rc;
	}
	pthread_mutex_lock(&registry_lock);
	pp->live_next = registry;
	registry = pp;
	pthread_mutex_unlock(&registry_lock);
	return 0;
}

/* Zeroed memory shared with every process forked later; pages come on
 * use. NULL when the mapping fails. */
static void *shared_map(size_t size)
{
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return m == MAP_FAILED ? NULL : m;
}

int exe_process_pool_create_opts(struct exe_pool **out, const struct exe_pool_opts *opts,
                                 const struct exe_process_pool_opts *popts)
{
	struct exe_pool_opts defaults = {0};
	struct exe_process_pool_opts pdefaults = {0};
	struct exe__proc_pool *pp;
	int rc;

	if (!out)
		return -EINVAL;
	if (!opts)
		opts = &defaults;
	if (!popts)
		popts = &pdefaults;
	if (opts->queue_capacity > (1u << 30) || popts->task_timeout_ns < 0 || popts->term_grace_ns < 0 ||
	    opts->workers > 4096)
		return -EINVAL;
	pp = exe__calloc(1, sizeof(*pp));
	if (!pp)
		return -ENOMEM;
	pp->base.ops = &exe__proc_pool_ops;
	pp->evfd = pp->epfd = pp->ctl = pp->ctl_child = pp->server_pidfd = -1;
	pp->nworkers = opts->workers;
	if (!pp->nworkers) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		pp->nworkers = n > 0 ? (unsigned)n : 1;
	}
	pp->capacity = opts->queue_capacity;
	pp->init = opts->init;
	pp->init_arg = opts->init_arg;
	pp->max_tasks = popts->max_tasks_per_worker;
	pp->task_timeout_ns = popts->task_timeout_ns;
	pp->term_grace_ns = popts->term_grace_ns ? popts->term_grace_ns : DEFAULT_TERM_GRACE_NS;
	pp->destroy_grace_ns = popts->destroy_grace_ns ? popts->destroy_grace_ns : DEFAULT_DESTROY_GRACE_NS;
	pp->kill_on_cancel = popts->kill_on_cancel;
	pp->parent_pid = getpid();
	snprintf(pp->name, sizeof(pp->name), "%s", opts->name && *opts->name ? opts->name : "exe");
	/* Room for every slot's worker, a retiring one per slot, and spares. */
	pp->kid_cap = 2 * pp->nworkers + 4;
	pp->server_mem = exe__calloc(1, exe__proc_server_mem_size(pp->kid_cap));
	pp->slots = exe__calloc(pp->nworkers, sizeof(*pp->slots));
	pp->cell_used = exe__calloc(pp->kid_cap, 1);
	if (!pp->server_mem || !pp->slots || !pp->cell_used) {
		rc = -ENOMEM;
		goto fail;
	}
	atomic_init(&pp->out_hint, -1);
	/* One cell per worker process that can exist at once, and the task
	 * ring with two slots per worker (so that every worker finds a task
	 * placed while the collector attaches the ones just taken): shared
	 * before the fork server exists, so every worker has them. */
	pp->nslots = pp->nworkers > EXE__RING_MIN_SLOTS / 2 ? 2 * pp->nworkers : EXE__RING_MIN_SLOTS;
	pp->slot_task = exe__calloc(pp->nslots, sizeof(*pp->slot_task));
	pp->cells_size = pp->kid_cap * sizeof(struct exe__cell);
	pp->cells = shared_map(pp->cells_size);
	pp->ring_size = sizeof(*pp->ring) + pp->nslots * sizeof(pp->ring->slots[0]);
	pp->ring = shared_map(pp->ring_size);
	if (!pp->slot_task || !pp->cells || !pp->ring) {
		rc = -ENOMEM;
		goto fail;
	}
	pp->ring->nslots = pp->nslots;
	rc = exe__arena_create(&pp->arena, EXE__ARENA_SIZE);
	if (rc == 0)
		rc = setup(pp);
	if (rc == 0)
		rc = start(pp);
	if (rc)
		goto fail;
	*out = &pp->base;
	return 0;
fail:
	pp_free(pp);
	return rc;
}

int exe_process_pool_create(struct exe_pool **out, const struct exe_pool_opts *opts)
{
	return exe_process_pool_create_opts(out, opts, NULL);
}
