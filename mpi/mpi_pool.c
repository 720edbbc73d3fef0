/*
 * mpi_pool.c - the MPI pool on the client: creation (static world and
 * spawn), submission, map in chunks, cancel, shutdown, destroy, stats. The
 * progress thread that makes the MPI calls is in mpi_progress.c, the worker
 * ranks' side in mpi_serve.c.
 *
 * Design
 *  - A submission is a future plus a task record holding the whole message
 *    to send (header, name, input): the input is copied once, at submit,
 *    straight into the message. The record holds the producer's reference
 *    and f->arg points to it.
 *  - The queue is a circular list under the pool lock. The progress thread
 *    takes a task by claiming its future (PENDING -> RUNNING) and unlinking
 *    it in one critical section; a cancel that wins instead leaves the record
 *    linked and the future's cancelled() hook unlinks and frees it, as in the
 *    process pool.
 *  - Cancel of a running task reaches the progress thread through a list of
 *    ids under the pool lock; the pool is looked up in a registry of live
 *    pools first, because a future may outlive its pool.
 *
 * Invariants
 *  - Lock order: registry lock, then pool lock. No user code runs under
 *    either.
 *  - Only the progress thread calls MPI while the pool lives (create and
 *    destroy call it before it starts and after it was joined).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_internal.h"

static const struct exe__pool_ops mpi_pool_ops;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct exe__mpi_pool *registry;

static struct exe__mpi_pool *mpool(struct exe_pool *p)
{
	return p && p->ops == &mpi_pool_ops ? (struct exe__mpi_pool *)p : NULL;
}

static void wake_locked(struct exe__mpi_pool *mp)
{
	if (mp->sleeping)
		pthread_cond_signal(&mp->cond);
}

/* ---- task records ---- */

void exe__mpi_map_unref(struct exe__mpi_map *m)
{
	/* acq_rel: pairs with the other holders' decrements. */
	if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		free(m);
}

static void task_free(struct exe__mpi_task *t)
{
	free(t->msg);
	exe__mpi_map_unref(t->map);
	free(t);
}

void exe__mpi_task_finish(struct exe__mpi_pool *mp, struct exe__mpi_task *t, int code, void *value,
                          exe_free_fn *value_free, char *msg)
{
	struct exe_future *f = t->f;

	task_free(t);
	/* relaxed: stats only; counted before the future is seen finished. */
	atomic_fetch_add_explicit(code == 0 ? &mp->completed : &mp->failed, 1, memory_order_relaxed);
	if (exe__future_complete(f, code, value, value_free, msg) && value_free && value)
		value_free(value);
	exe_future_unref(f);
}

void exe__mpi_bytes_free(void *v)
{
	struct exe__mpi_bytes *b = v;

	free(b->buf);
	free(b);
}

static void unlink_task(struct exe__mpi_pool *mp, struct exe__mpi_task *t)
{
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->prev = t->next = NULL;
	mp->queued--;
}

/* ---- future hooks ---- */

static void task_cancelled(struct exe_future *f)
{
	struct exe__mpi_pool *mp = f->owner;
	struct exe__mpi_task *t = f->arg;

	pthread_mutex_lock(&mp->lock);
	unlink_task(mp, t);
	atomic_fetch_add_explicit(&mp->cancelled, 1, memory_order_relaxed);
	if (mp->shutdown)
		wake_locked(mp); /* the progress thread may be waiting for the queue to empty */
	pthread_mutex_unlock(&mp->lock);
	task_free(t);
	exe_future_unref(f); /* the producer's reference */
}

static void task_cancel_running(struct exe_future *f)
{
	struct exe__mpi_pool *q;

	/* The pool may be gone: find it among the live ones first. The
	 * progress thread sends the request if the task is still out. */
	pthread_mutex_lock(&registry_lock);
	for (q = registry; q; q = q->live_next) {
		if ((void *)q != f->owner)
			continue;
		pthread_mutex_lock(&q->lock);
		if (q->ncancels == q->cancels_cap) {
			size_t ncap = q->cancels_cap ? 2 * q->cancels_cap : 16;
			struct exe_future **c = realloc(q->cancels, ncap * sizeof(*c));

			if (c) {
				q->cancels = c;
				q->cancels_cap = ncap;
			}
		}
		/* The future, not its task record: the record may be freed by
		 * the progress thread at any moment. It finds the task by its
		 * future among those in flight. */
		if (q->ncancels < q->cancels_cap)
			q->cancels[q->ncancels++] = exe_future_ref(f);
		wake_locked(q);
		pthread_mutex_unlock(&q->lock);
		break;
	}
	pthread_mutex_unlock(&registry_lock);
}

static void bytes_of(const struct exe_future *f, const void **data, size_t *len)
{
	const struct exe__mpi_bytes *b = f->value;

	*data = b->len ? b->data : NULL;
	*len = b->len;
}

const struct exe__future_ops exe__mpi_ptr_ops = {
    .cancelled = task_cancelled,
    .cancel_running = task_cancel_running,
};

const struct exe__future_ops exe__mpi_bytes_ops = {
    .cancelled = task_cancelled,
    .cancel_running = task_cancel_running,
    .bytes = bytes_of,
};

/* ---- submit ---- */

static struct exe__mpi_task *task_new(enum exe__mpi_type type, const char *name, size_t name_len,
                                      size_t payload)
{
	struct exe__mpi_task *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->msg_len = sizeof(struct exe__mpi_hdr) + name_len + payload;
	t->msg = malloc(t->msg_len);
	if (!t->msg) {
		free(t);
		return NULL;
	}
	memset(t->msg, 0, sizeof(*t->msg));
	t->msg->type = type;
	t->msg->name_len = (uint32_t)name_len;
	t->msg->len = payload;
	memcpy(t->msg + 1, name, name_len);
	t->rank_idx = -1;
	return t;
}

static unsigned char *task_payload(struct exe__mpi_task *t)
{
	return (unsigned char *)(t->msg + 1) + t->msg->name_len;
}

/* Queue @t with a new future; takes @t in every case. */
static int enqueue(struct exe__mpi_pool *mp, struct exe__mpi_task *t, const struct exe__future_ops *ops,
                   const struct exe_submit_opts *o, struct exe_future **out)
{
	int64_t limit = o && o->task_timeout_ns ? o->task_timeout_ns : mp->task_timeout_ns;
	struct exe_future *f;

	if ((o && (o->flags & EXE_SUBMIT_KILL_ON_CANCEL)) || mp->kill_on_cancel)
		t->msg->flags |= EXE__MPI_F_KILL;
	t->msg->timeout_ns = limit;
	f = exe__future_new(ops, mp, out ? 2 : 1);
	if (!f) {
		task_free(t);
		return -ENOMEM;
	}
	t->f = f;
	f->arg = t;
	pthread_mutex_lock(&mp->lock);
	if (mp->shutdown || exe__pool_is_broken(&mp->base)) {
		int rc = mp->shutdown ? -ESHUTDOWN : -ENOTRECOVERABLE;

		pthread_mutex_unlock(&mp->lock);
		f->arg = NULL;
		task_free(t);
		/* Nobody else saw it: drop both references through a completion. */
		exe__future_complete(f, rc, NULL, NULL, NULL);
		exe_future_unref(f);
		if (out)
			exe_future_unref(f);
		return rc;
	}
	t->next = &mp->qhead;
	t->prev = mp->qhead.prev;
	mp->qhead.prev->next = t;
	mp->qhead.prev = t;
	mp->queued++;
	/* relaxed: stats only. */
	atomic_fetch_add_explicit(&mp->submitted, 1, memory_order_relaxed);
	wake_locked(mp);
	pthread_mutex_unlock(&mp->lock);
	if (out)
		*out = f;
	return 0;
}

static int check_submit_opts(struct exe__mpi_pool *mp, const struct exe_submit_opts *o)
{
	if (!o)
		return 0;
	if ((o->flags & ~(unsigned)(EXE_SUBMIT_BLOCK | EXE_SUBMIT_KILL_ON_CANCEL)) || o->result_free ||
	    o->task_timeout_ns < 0)
		return -EINVAL;
	if (o->task_timeout_ns && mp->threads_backend)
		return -EINVAL; /* a thread cannot be stopped at a time limit */
	return 0;
}

int exe_mpi_submit(struct exe_pool *p, const char *name, const void *in, size_t in_len,
                   const struct exe_submit_opts *o, struct exe_future **out)
{
	struct exe__mpi_pool *mp = mpool(p);
	struct exe__mpi_task *t;
	size_t nlen;
	int rc;

	if (!p || !name || (!in && in_len) || in_len > (size_t)INT_MAX - 4096)
		return -EINVAL;
	if (!mp)
		return -EOPNOTSUPP; /* a named task on a pool of another kind */
	nlen = strnlen(name, EXE_MPI_NAME_MAX + 1);
	if (nlen == 0 || nlen > EXE_MPI_NAME_MAX)
		return -EINVAL;
	if ((rc = check_submit_opts(mp, o)))
		return rc;
	t = task_new(EXE__M_TASK, name, nlen, in_len);
	if (!t)
		return -ENOMEM;
	t->bytes = true;
	if (in_len)
		memcpy(task_payload(t), in, in_len);
	return enqueue(mp, t, &exe__mpi_bytes_ops, o, out);
}

/* A future that failed before it was queued (an unregistered function). */
static int failed_future(struct exe__mpi_pool *mp, int code, char *msg, struct exe_future **out)
{
	struct exe_future *f = exe__future_new(&exe__mpi_ptr_ops, mp, 1);

	if (!f) {
		free(msg);
		return -ENOMEM;
	}
	atomic_fetch_add_explicit(&mp->submitted, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mp->failed, 1, memory_order_relaxed);
	exe__future_complete(f, code, NULL, NULL, msg);
	if (out)
		*out = f;
	else
		exe_future_unref(f);
	return 0;
}

static int mp_submit(struct exe_pool *p, exe_task_fn *fn, void *arg, const struct exe_submit_opts *o,
                     struct exe_future **out)
{
	struct exe__mpi_pool *mp = (struct exe__mpi_pool *)p;
	char name[EXE_MPI_NAME_MAX];
	struct exe__mpi_task *t;
	uint64_t a = (uint64_t)(uintptr_t)arg;
	size_t nlen;
	int rc;

	if ((rc = check_submit_opts(mp, o)))
		return rc;
	nlen = exe__mpi_name_of(fn, name);
	if (!nlen)
		return failed_future(mp, -ENOENT,
		                     exe__mpi_strdupf("task function %p is not registered for MPI pools "
		                                      "(EXE_MPI_PTR_TASK or exe_mpi_register_ptr())",
		                                      (void *)(uintptr_t)fn),
		                     out);
	t = task_new(EXE__M_CHUNK, name, nlen, 8);
	if (!t)
		return -ENOMEM;
	t->msg->count = 1;
	memcpy(task_payload(t), &a, 8);
	return enqueue(mp, t, &exe__mpi_ptr_ops, o, out);
}

/* ---- map in chunks ---- */

/* Nanoseconds left before @deadline: -1 for none (-1), else >= 0. */
static int64_t remaining(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - exe_now_ns();
	return left > 0 ? left : 0;
}

static int mp_map(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
                  int64_t deadline, size_t chunk, size_t *failed_index)
{
	struct exe__mpi_pool *mp = (struct exe__mpi_pool *)p;
	char name[EXE_MPI_NAME_MAX];
	struct exe_future **fs;
	struct exe__mpi_map *m;
	size_t nchunks, c, i, submitted = 0, fail_at = 0, nlen;
	int rc = 0, crc = 0;

	nlen = exe__mpi_name_of(fn, name);
	if (!nlen) {
		if (failed_index)
			*failed_index = 0;
		return -ENOENT;
	}
	if (!chunk) {
		/* About four chunks per worker, as the process pool does. */
		size_t per = 4 * (size_t)(atomic_load_explicit(&mp->live_slots, memory_order_relaxed) + 1);

		chunk = n / per + (n % per != 0);
	}
	if (chunk > EXE__MPI_CHUNK_MAX)
		chunk = EXE__MPI_CHUNK_MAX;
	if (chunk < 1)
		chunk = 1;
	nchunks = n / chunk + (n % chunk != 0);
	if (n > (SIZE_MAX - sizeof(*m)) / (sizeof(uint64_t) + sizeof(uint32_t)))
		return -ENOMEM;
	m = malloc(sizeof(*m) + n * sizeof(uint64_t) + nchunks * sizeof(uint32_t));
	fs = calloc(nchunks, sizeof(*fs));
	if (!m || !fs) {
		free(m);
		free(fs);
		return -ENOMEM;
	}
	atomic_init(&m->refs, 1);
	m->vals = (uint64_t *)(m + 1);
	m->done = (uint32_t *)(m->vals + n);
	for (c = 0; c < nchunks; c++) {
		size_t first = c * chunk, len = n - first < chunk ? n - first : chunk;
		struct exe__mpi_task *t;
		unsigned char *pl;

		if (deadline >= 0 && remaining(deadline) == 0) {
			rc = -ETIMEDOUT;
			break;
		}
		m->done[c] = 0;
		t = task_new(EXE__M_CHUNK, name, nlen, len * 8);
		if (!t) {
			rc = -ENOMEM;
			break;
		}
		t->msg->count = (uint32_t)len;
		pl = task_payload(t);
		for (i = 0; i < len; i++) {
			uint64_t a = (uint64_t)(uintptr_t)args[first + i];

			memcpy(pl + i * 8, &a, 8);
		}
		atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
		t->map = m;
		t->first = first;
		t->chunk = c;
		rc = enqueue(mp, t, &exe__mpi_ptr_ops, NULL, &fs[c]);
		if (rc)
			break;
		submitted++;
	}
	/* Collect in order, even after a failed submit: an earlier element's
	 * failure comes first. */
	for (c = 0; c < submitted && !crc; c++) {
		size_t first = c * chunk, len = n - first < chunk ? n - first : chunk, k = len;
		int code = exe_future_wait(fs[c], remaining(deadline));

		if (code)
			k = 0;
		else if ((code = exe_future_code(fs[c]))) /* acquire: done[] and vals[] */
			k = m->done[c] < len ? m->done[c] : len;
		for (i = 0; i < k; i++)
			results[first + i] = (void *)(uintptr_t)m->vals[first + i];
		if (code) {
			crc = code;
			fail_at = first + k;
		}
	}
	if (crc)
		rc = crc;
	else if (rc)
		fail_at = submitted * chunk;
	if (rc && failed_index)
		*failed_index = fail_at;
	for (c = 0; c < submitted; c++) {
		if (rc)
			exe__future_cancel_pending(fs[c]);
		exe_future_unref(fs[c]);
	}
	free(fs);
	exe__mpi_map_unref(m);
	return rc;
}

/* ---- shutdown, destroy, stats ---- */

static struct exe_future *first_pending(struct exe__mpi_pool *mp)
{
	struct exe__mpi_task *t;

	for (t = mp->qhead.next; t != &mp->qhead; t = t->next) {
		if (exe_future_state(t->f) == EXE_FUTURE_PENDING)
			return exe_future_ref(t->f);
	}
	return NULL;
}

static int mp_shutdown(struct exe_pool *p, unsigned flags)
{
	struct exe__mpi_pool *mp = (struct exe__mpi_pool *)p;
	struct exe_future *f;

	if ((flags & EXE_SHUTDOWN_WAIT) && mp->progress_started &&
	    pthread_equal(pthread_self(), mp->progress))
		return -EDEADLK; /* a done callback would wait for itself */
	pthread_mutex_lock(&mp->lock);
	mp->shutdown = true;
	wake_locked(mp);
	while ((flags & EXE_SHUTDOWN_CANCEL_PENDING) && (f = first_pending(mp))) {
		pthread_mutex_unlock(&mp->lock);
		exe__future_cancel_pending(f); /* the hook unlinks it */
		exe_future_unref(f);
		pthread_mutex_lock(&mp->lock);
	}
	while ((flags & EXE_SHUTDOWN_WAIT) && !mp->drained)
		pthread_cond_wait(&mp->done_cond, &mp->lock);
	pthread_mutex_unlock(&mp->lock);
	return 0;
}

static void mp_free(struct exe__mpi_pool *mp)
{
	int i;

	for (i = 0; i < mp->nranks; i++)
		free(mp->ranks[i].table);
	free(mp->ranks);
	free(mp->rank_idx);
	free(mp->cancels);
	pthread_cond_destroy(&mp->cond);
	pthread_cond_destroy(&mp->done_cond);
	pthread_mutex_destroy(&mp->lock);
	free(mp);
}

static void registry_remove(struct exe__mpi_pool *mp)
{
	struct exe__mpi_pool **pp;

	pthread_mutex_lock(&registry_lock);
	for (pp = &registry; *pp; pp = &(*pp)->live_next) {
		if (*pp == mp) {
			*pp = mp->live_next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

static void mp_destroy(struct exe_pool *p)
{
	struct exe__mpi_pool *mp = (struct exe__mpi_pool *)p;

	if (pthread_equal(pthread_self(), mp->progress)) {
		/* From a done callback: joining ourselves would deadlock and
		 * freeing would pull the pool from under the progress thread.
		 * Stop accepting work; the pool is not freed (documented). */
		mp_shutdown(p, 0);
		return;
	}
	pthread_mutex_lock(&mp->lock);
	mp->destroying = true;
	pthread_mutex_unlock(&mp->lock);
	mp_shutdown(p, EXE_SHUTDOWN_WAIT);
	pthread_join(mp->progress, NULL);
	registry_remove(mp);
	/* Every rank answered BYE (or is dead): no message of ours is in
	 * flight, so freeing or disconnecting cannot wait on anything. */
	if (mp->inter)
		MPI_Comm_disconnect(&mp->comm);
	else
		MPI_Comm_free(&mp->comm);
	mp_free(mp);
}

static void mp_stats(struct exe_pool *p, struct exe_pool_stats *st)
{
	struct exe__mpi_pool *mp = (struct exe__mpi_pool *)p;

	/* relaxed: a snapshot, each counter exact. */
	st->submitted = atomic_load_explicit(&mp->submitted, memory_order_relaxed);
	st->completed = atomic_load_explicit(&mp->completed, memory_order_relaxed);
	st->failed = atomic_load_explicit(&mp->failed, memory_order_relaxed);
	st->cancelled = atomic_load_explicit(&mp->cancelled, memory_order_relaxed);
	st->running = atomic_load_explicit(&mp->running, memory_order_relaxed);
	st->workers = atomic_load_explicit(&mp->live_slots, memory_order_relaxed);
	pthread_mutex_lock(&mp->lock);
	st->queued = mp->queued;
	st->shut_down = mp->shutdown;
	pthread_mutex_unlock(&mp->lock);
}

static const struct exe__pool_ops mpi_pool_ops = {
    .submit = mp_submit,
    .shutdown = mp_shutdown,
    .destroy = mp_destroy,
    .stats = mp_stats,
    .map = mp_map,
};

int exe_mpi_pool_ranks(struct exe_pool *p)
{
	struct exe__mpi_pool *mp = mpool(p);

	return mp ? atomic_load_explicit(&mp->live_ranks, memory_order_relaxed) : 0;
}

/* ---- create ---- */

static int check_opts(const struct exe_mpi_pool_opts *o)
{
	if (o->backend != EXE_MPI_PROCESSES && o->backend != EXE_MPI_THREADS)
		return -EINVAL;
	if (o->task_timeout_ns < 0 || o->poll_max_ns < 0 || o->client_rank < 0 ||
	    (o->liveness_ns < 0 && o->liveness_ns != EXE_FOREVER) ||
	    (o->destroy_grace_ns < 0 && o->destroy_grace_ns != EXE_FOREVER))
		return -EINVAL;
	if (o->task_timeout_ns && o->backend == EXE_MPI_THREADS)
		return -EINVAL;
	return 0;
}

/* Wait for every worker's HELLO, then start the progress thread. Takes
 * @comm (freed or disconnected on failure). */
static int client_start(struct exe_pool **out, MPI_Comm comm, bool inter, int client,
                        const struct exe_mpi_pool_opts *o, int refuse)
{
	struct exe__mpi_pool *mp = calloc(1, sizeof(*mp));
	pthread_condattr_t ca;
	int size, i, n = 0, rc = 0;

	if (!mp) {
		rc = -ENOMEM;
		goto fail_comm;
	}
	if (inter)
		MPI_Comm_remote_size(comm, &size);
	else
		MPI_Comm_size(comm, &size);
	mp->comm = comm;
	mp->inter = inter;
	mp->comm_size = size;
	mp->poll_max_ns = o->poll_max_ns > 0 ? o->poll_max_ns : EXE__MPI_DEFAULT_POLL_MAX;
	mp->liveness_ns = o->liveness_ns ? o->liveness_ns : EXE__MPI_DEFAULT_LIVENESS;
	mp->destroy_grace_ns = o->destroy_grace_ns ? o->destroy_grace_ns : EXE__MPI_DEFAULT_DESTROY_GRACE;
	mp->task_timeout_ns = o->task_timeout_ns;
	mp->kill_on_cancel = o->kill_on_cancel;
	mp->threads_backend = o->backend == EXE_MPI_THREADS;
	snprintf(mp->name, sizeof(mp->name), "%.13s-p", o->name ? o->name : "mpi");
	mp->qhead.next = mp->qhead.prev = &mp->qhead;
	pthread_mutex_init(&mp->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&mp->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&mp->done_cond, NULL);
	mp->base.ops = &mpi_pool_ops;
	mp->rank_idx = malloc((size_t)size * sizeof(int));
	mp->ranks = calloc((size_t)size, sizeof(*mp->ranks));
	if (!mp->rank_idx || !mp->ranks) {
		rc = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < size; i++) {
		mp->rank_idx[i] = -1;
		if (!inter && i == client)
			continue;
		mp->rank_idx[i] = n;
		mp->ranks[n++].rank = i;
	}
	mp->nranks = n;
	/* Every worker says hello, even one whose local pool failed or whose
	 * options were bad. Hear them all before giving up, so that every
	 * rank that serves gets its BYE below. */
	for (i = 0; i < n; i++) {
		/* A header and a host name (below 64 bytes, see mpi_serve.c). */
		struct exe__mpi_hdr h[4];
		struct exe__mpi_rank *r;
		MPI_Status st;
		int count, idx;

		memset(h, 0, sizeof(h));
		if (MPI_Recv(h, sizeof(h), MPI_BYTE, MPI_ANY_SOURCE, EXE__MPI_TAG_HDR, comm, &st) !=
		    MPI_SUCCESS) {
			rc = -ENOTRECOVERABLE;
			break;
		}
		MPI_Get_count(&st, MPI_BYTE, &count);
		idx = st.MPI_SOURCE >= 0 && st.MPI_SOURCE < size ? mp->rank_idx[st.MPI_SOURCE] : -1;
		if (idx < 0 || count < (int)sizeof(h[0]) || h[0].type != EXE__M_HELLO) {
			rc = rc ? rc : -EBADMSG;
			continue;
		}
		r = &mp->ranks[idx];
		if (h[0].code <= 0) {
			rc = rc ? rc : (h[0].code ? h[0].code : -ENOTRECOVERABLE);
			r->dead = true;
			continue;
		}
		r->slots = (unsigned)h[0].code;
		snprintf(r->host, sizeof(r->host), "%.*s", (int)(count - (int)sizeof(h[0])), (char *)(h + 1));
		r->table = calloc(r->slots, sizeof(*r->table));
		if (!r->table) {
			rc = rc ? rc : -ENOMEM;
			continue;
		}
		atomic_fetch_add_explicit(&mp->live_slots, r->slots, memory_order_relaxed);
		atomic_fetch_add_explicit(&mp->live_ranks, 1, memory_order_relaxed);
	}
	if (!rc)
		rc = refuse; /* this rank's options or thread level */
	if (rc)
		goto fail; /* a worker's local pool did not start, or its options were bad */
	if ((rc = -pthread_create(&mp->progress, NULL, exe__mpi_progress_main, mp)))
		goto fail;
	mp->progress_started = true;
	pthread_mutex_lock(&registry_lock);
	mp->live_next = registry;
	registry = mp;
	pthread_mutex_unlock(&registry_lock);
	*out = &mp->base;
	return 0;
fail:
	/* Ranks that did start serve until a BYE: send it so they return. */
	for (i = 0; i < mp->nranks; i++) {
		struct exe__mpi_hdr bye = {.type = EXE__M_BYE}, ack;

		if (mp->ranks[i].dead || !mp->ranks[i].slots)
			continue;
		if (MPI_Send(&bye, sizeof(bye), MPI_BYTE, mp->ranks[i].rank, EXE__MPI_TAG_HDR, comm) ==
		    MPI_SUCCESS)
			MPI_Recv(&ack, sizeof(ack), MPI_BYTE, mp->ranks[i].rank, EXE__MPI_TAG_HDR, comm,
			         MPI_STATUS_IGNORE);
	}
	mp_free(mp);
fail_comm:
	if (inter)
		MPI_Comm_disconnect(&comm);
	else
		MPI_Comm_free(&comm);
	return rc;
}

int exe_mpi_pool_create(struct exe_pool **out, MPI_Comm comm, const struct exe_mpi_pool_opts *opts)
{
	struct exe_mpi_pool_opts o = {0};
	MPI_Comm parent = MPI_COMM_NULL, dup;
	int init = 0, rank, size, rc, refuse;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (opts)
		o = *opts;
	MPI_Initialized(&init);
	if (!init)
		return -EOPNOTSUPP;
	/* From here on a rank whose own options are bad still takes part in
	 * the handshake and reports its code there: returning early would
	 * leave the other ranks waiting in a collective call forever. */
	refuse = check_opts(&o);
	MPI_Comm_get_parent(&parent);
	if (parent != MPI_COMM_NULL) {
		/* Spawned by exe_mpi_pool_spawn(): serve the parent (remote rank
		 * 0), then leave the intercommunicator. */
		MPI_Comm_set_errhandler(parent, MPI_ERRORS_RETURN);
		rc = exe__mpi_serve(parent, 0, &o, refuse);
		MPI_Comm_disconnect(&parent);
		return rc;
	}
	if (comm == MPI_COMM_NULL)
		return -EINVAL;
	MPI_Comm_size(comm, &size);
	MPI_Comm_rank(comm, &rank);
	/* The same answer on every rank: nobody enters the collective below. */
	if (size < 2 || o.client_rank < 0 || o.client_rank >= size)
		return -EINVAL;
	/* Collective. A private communicator keeps our tags away from the
	 * program's messages, and errors are returned, not fatal, on it. */
	if (MPI_Comm_dup(comm, &dup) != MPI_SUCCESS)
		return -ENOTRECOVERABLE;
	MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
	if (rank != o.client_rank) {
		rc = exe__mpi_serve(dup, o.client_rank, &o, refuse);
		MPI_Comm_free(&dup);
		return rc;
	}
	if (!refuse && !exe__mpi_thread_ok())
		refuse = -EOPNOTSUPP;
	return client_start(out, dup, false, o.client_rank, &o, refuse);
}

int exe_mpi_pool_spawn(struct exe_pool **out, int nprocs, const struct exe_mpi_pool_opts *opts)
{
	struct exe_mpi_pool_opts o = {0};
	char self[4096];
	const char *cmd;
	MPI_Comm inter;
	int *errs, rc, i;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (opts)
		o = *opts;
	if (nprocs < 1 || (rc = check_opts(&o)))
		return -EINVAL;
	if (!exe__mpi_thread_ok())
		return -EOPNOTSUPP;
	cmd = o.command;
	if (!cmd) {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

		if (n <= 0)
			return -EINVAL;
		self[n] = 0;
		cmd = self;
	}
	errs = calloc((size_t)nprocs, sizeof(int));
	if (!errs)
		return -ENOMEM;
	/* A launcher that cannot spawn reports it here, not by aborting. */
	MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
	rc = MPI_Comm_spawn(cmd, o.argv ? (char **)o.argv : MPI_ARGV_NULL, nprocs, MPI_INFO_NULL, 0,
	                    MPI_COMM_SELF, &inter, errs);
	for (i = 0; rc == MPI_SUCCESS && i < nprocs; i++)
		if (errs[i] != MPI_SUCCESS)
			rc = errs[i];
	free(errs);
	if (rc != MPI_SUCCESS)
		return -EOPNOTSUPP;
	MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
	return client_start(out, inter, true, 0, &o, 0);
}
