/*
 * queue.c - struct exe_queue: a FIFO, LIFO or priority queue of pointers
 * with blocking put/get, close and task_done/join.
 *
 * Design
 *  - One mutex guards everything; three condition variables on
 *    CLOCK_MONOTONIC: not_empty (getters), not_full (putters of a bounded
 *    queue), all_done (joiners). A lock-free ring would be faster under
 *    contention, but this queue must block with timeouts, order by
 *    priority, close with waiters on both sides and keep join's count
 *    exact, and each of those needs the state to change as one step: a
 *    mutex says so plainly, and the parking (futex inside the condvar)
 *    happens only when a thread really has to wait. The thread pool keeps
 *    its own lock-free queue for the hot submit path.
 *  - Storage is one array of slots, grown by doubling (up to capacity for a
 *    bounded queue) before the item is stored, so a put that cannot grow
 *    fails with -ENOMEM and leaves the queue as it was. It shrinks by half,
 *    best effort, when a large array falls to a quarter full.
 *      FIFO: a ring (head, count). LIFO: a stack (count).
 *      PRIORITY: a binary min-heap on (prio, seq); seq is a per-queue put
 *      counter, so equal priorities leave in put order and the order is
 *      total, whatever the values.
 *
 * Invariants (under lock)
 *  - count <= alloc, and count <= capacity when bounded.
 *  - unfinished counts puts not yet matched by task_done; it is never
 *    negative (task_done at 0 is -EINVAL; close_now saturates at 0).
 *  - Each successful put signals not_empty once; each successful get
 *    signals not_full once. A waiter re-checks its condition after every
 *    wake-up, timed out or not: a waiter that was signalled but also timed
 *    out takes the item it was woken for instead of leaving it behind for
 *    a thread that was never woken.
 *  - close and close_now broadcast both condvars; close_now also broadcasts
 *    all_done. Nothing is ever called with the lock held except
 *    exe__malloc/exe__free.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "park.h"
#include "errors.h"
#include <executor/queue.h>

#define MIN_SLOTS 16
#define SHRINK_ABOVE 1024 /* never shrink arrays this small */

struct slot {
	void *item;
	int64_t prio;
	uint64_t seq;
};

struct exe_queue {
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full, all_done;

	enum exe_queue_kind kind;
	size_t capacity; /* 0: unbounded */

	struct slot *slots;
	size_t alloc, head, count;
	uint64_t seq;
	uint64_t unfinished;
	bool closed;
};

/* ---- storage ---- */

static size_t ring_index(const struct exe_queue *q, size_t i)
{
	return (q->head + i) % q->alloc;
}

/* Move the items to an array of @n slots (n >= count), oldest first. */
static int resize(struct exe_queue *q, size_t n)
{
	struct slot *s;
	size_t i;

	if (n > SIZE_MAX / sizeof(*s))
		return -ENOMEM;
	s = exe__malloc(n * sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (i = 0; i < q->count; i++)
		s[i] = q->slots[q->kind == EXE_QUEUE_FIFO ? ring_index(q, i) : i];
	exe__free(q->slots);
	q->slots = s;
	q->alloc = n;
	q->head = 0;
	return 0;
}

/* Make room for one more item. Return: 0, -ENOMEM (queue unchanged). */
static int reserve(struct exe_queue *q)
{
	size_t n;

	if (q->count < q->alloc)
		return 0;
	n = q->alloc ? q->alloc * 2 : MIN_SLOTS;
	if (n < q->alloc)
		return -ENOMEM;
	if (q->capacity && n > q->capacity)
		n = q->capacity;
	return resize(q, n);
}

static void maybe_shrink(struct exe_queue *q)
{
	if (q->alloc > SHRINK_ABOVE && q->count <= q->alloc / 4)
		(void)resize(q, q->alloc / 2); /* on -ENOMEM keep the larger array */
}

static bool before(const struct slot *a, const struct slot *b)
{
	return a->prio < b->prio || (a->prio == b->prio && a->seq < b->seq);
}

static void heap_up(struct slot *h, size_t i)
{
	struct slot x = h[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!before(&x, &h[parent]))
			break;
		h[i] = h[parent];
		i = parent;
	}
	h[i] = x;
}

static void heap_down(struct slot *h, size_t n, size_t i)
{
	struct slot x = h[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && before(&h[c + 1], &h[c]))
			c++;
		if (!before(&h[c], &x))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = x;
}

/* Store one item; the caller made room with reserve(). */
static void push(struct exe_queue *q, void *item, int64_t prio)
{
	struct slot s = {.item = item, .prio = prio, .seq = q->seq++};

	switch (q->kind) {
	case EXE_QUEUE_FIFO: q->slots[ring_index(q, q->count)] = s; break;
	case EXE_QUEUE_LIFO: q->slots[q->count] = s; break;
	case EXE_QUEUE_PRIORITY:
		q->slots[q->count] = s;
		heap_up(q->slots, q->count);
		break;
	}
	q->count++;
}

static struct slot pop(struct exe_queue *q)
{
	struct slot s;

	switch (q->kind) {
	case EXE_QUEUE_FIFO:
		s = q->slots[q->head];
		q->head = (q->head + 1) % q->alloc;
		q->count--;
		break;
	case EXE_QUEUE_LIFO: s = q->slots[--q->count]; break;
	case EXE_QUEUE_PRIORITY:
	default:
		s = q->slots[0];
		if (--q->count) {
			q->slots[0] = q->slots[q->count];
			heap_down(q->slots, q->count, 0);
		}
		break;
	}
	if (q->count == 0)
		q->head = 0;
	return s;
}

/* ---- waiting ---- */

/* Wait on @c until signalled or @deadline_ns (< 0: none).
 * Return: 0 (woken, possibly spuriously), -ETIMEDOUT. */
static int cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ns)
{
	struct timespec ts;

	/* A fiber parks instead of blocking its thread (park.h); it may also
	 * return -ECANCELED. */
	if (exe__in_fiber())
		return exe__fiber_cond_wait(c, m, deadline_ns);
	if (deadline_ns < 0) {
		pthread_cond_wait(c, m);
		return 0;
	}
	ts.tv_sec = deadline_ns / EXE_NS_PER_S;
	ts.tv_nsec = deadline_ns % EXE_NS_PER_S;
	return pthread_cond_timedwait(c, m, &ts) == ETIMEDOUT ? -ETIMEDOUT : 0;
}

/* Signal threads and fibers waiting on @c; called with the lock held. */
static void cond_signal(pthread_cond_t *c)
{
	pthread_cond_signal(c);
	exe__park_wake(c, 1);
}

static void cond_broadcast(pthread_cond_t *c)
{
	pthread_cond_broadcast(c);
	exe__park_wake(c, INT_MAX);
}

/* ---- public ---- */

int exe_queue_create(struct exe_queue **out, const struct exe_queue_opts *opts)
{
	static const struct exe_queue_opts defaults;
	pthread_condattr_t ca;
	struct exe_queue *q;
	int err;

	if (!out)
		return -EINVAL;
	if (!opts)
		opts = &defaults;
	if (opts->kind != EXE_QUEUE_FIFO && opts->kind != EXE_QUEUE_LIFO && opts->kind != EXE_QUEUE_PRIORITY)
		return -EINVAL;
	q = exe__calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->kind = opts->kind;
	q->capacity = opts->capacity;

	err = pthread_condattr_init(&ca);
	if (err)
		goto fail_free;
	err = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (err)
		goto fail_attr;
	err = pthread_mutex_init(&q->lock, NULL);
	if (err)
		goto fail_attr;
	err = pthread_cond_init(&q->not_empty, &ca);
	if (err)
		goto fail_mutex;
	err = pthread_cond_init(&q->not_full, &ca);
	if (err)
		goto fail_ne;
	err = pthread_cond_init(&q->all_done, &ca);
	if (err)
		goto fail_nf;
	pthread_condattr_destroy(&ca);
	*out = q;
	return 0;

fail_nf:
	pthread_cond_destroy(&q->not_full);
fail_ne:
	pthread_cond_destroy(&q->not_empty);
fail_mutex:
	pthread_mutex_destroy(&q->lock);
fail_attr:
	pthread_condattr_destroy(&ca);
fail_free:
	exe__free(q);
	return -err;
}

void exe_queue_destroy(struct exe_queue *q)
{
	if (!q)
		return;
	pthread_cond_destroy(&q->all_done);
	pthread_cond_destroy(&q->not_full);
	pthread_cond_destroy(&q->not_empty);
	pthread_mutex_destroy(&q->lock);
	exe__free(q->slots);
	exe__free(q);
}

int exe_queue_put_prio(struct exe_queue *q, void *item, int64_t prio, int64_t timeout_ns)
{
	int64_t deadline = timeout_ns > 0 ? exe__deadline(timeout_ns) : -1;
	bool timed_out = false;
	int rc;

	if (!q)
		return -EINVAL;
	if (q->kind != EXE_QUEUE_PRIORITY)
		prio = 0;
	pthread_mutex_lock(&q->lock);
	for (;;) {
		if (q->closed) {
			rc = -EPIPE;
			break;
		}
		if (!q->capacity || q->count < q->capacity) {
			rc = reserve(q);
			if (rc == 0) {
				push(q, item, prio);
				q->unfinished++;
				cond_signal(&q->not_empty);
			}
			break;
		}
		rc = exe__blocked_verdict(false, timeout_ns, timed_out);
		if (rc)
			break;
		/* A timeout still re-checks once: see the invariants. */
		rc = cond_wait(&q->not_full, &q->lock, deadline);
		if (rc == -ECANCELED)
			break;
		timed_out = rc == -ETIMEDOUT;
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

int exe_queue_put(struct exe_queue *q, void *item, int64_t timeout_ns)
{
	return exe_queue_put_prio(q, item, 0, timeout_ns);
}

int exe_queue_get_prio(struct exe_queue *q, void **item, int64_t *prio, int64_t timeout_ns)
{
	int64_t deadline = timeout_ns > 0 ? exe__deadline(timeout_ns) : -1;
	bool timed_out = false;
	struct slot s;
	int rc;

	if (!q || !item)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	for (;;) {
		if (q->count) {
			s = pop(q);
			maybe_shrink(q);
			if (q->capacity)
				cond_signal(&q->not_full);
			rc = 0;
			break;
		}
		rc = exe__blocked_verdict(q->closed, timeout_ns, timed_out);
		if (rc)
			break;
		rc = cond_wait(&q->not_empty, &q->lock, deadline);
		if (rc == -ECANCELED)
			break;
		timed_out = rc == -ETIMEDOUT;
	}
	pthread_mutex_unlock(&q->lock);
	if (rc == 0) {
		*item = s.item;
		if (prio)
			*prio = s.prio;
	}
	return rc;
}

int exe_queue_get(struct exe_queue *q, void **item, int64_t timeout_ns)
{
	return exe_queue_get_prio(q, item, NULL, timeout_ns);
}

int exe_queue_close(struct exe_queue *q)
{
	if (!q)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	cond_broadcast(&q->not_empty);
	cond_broadcast(&q->not_full);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

int exe_queue_close_now(struct exe_queue *q, exe_free_fn *discard, size_t *discarded)
{
	struct exe_queue old;
	size_t i;

	if (!q)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	/* Take the whole array: the discards run after unlocking, on a copy no
	 * other thread can reach, and nothing needs allocating. */
	old.kind = q->kind;
	old.slots = q->slots;
	old.alloc = q->alloc;
	old.head = q->head;
	old.count = q->count;
	q->slots = NULL;
	q->alloc = q->head = q->count = 0;
	q->unfinished = q->unfinished > old.count ? q->unfinished - old.count : 0;
	cond_broadcast(&q->not_empty);
	cond_broadcast(&q->not_full);
	if (q->unfinished == 0)
		cond_broadcast(&q->all_done);
	pthread_mutex_unlock(&q->lock);

	if (discard)
		for (i = 0; i < old.count; i++)
			discard(old.slots[old.kind == EXE_QUEUE_FIFO ? (old.head + i) % old.alloc : i].item);
	exe__free(old.slots);
	if (discarded)
		*discarded = old.count;
	return 0;
}

size_t exe_queue_count(struct exe_queue *q)
{
	size_t n;

	if (!q)
		return 0;
	pthread_mutex_lock(&q->lock);
	n = q->count;
	pthread_mutex_unlock(&q->lock);
	return n;
}

bool exe_queue_empty(struct exe_queue *q)
{
	return exe_queue_count(q) == 0;
}

bool exe_queue_full(struct exe_queue *q)
{
	bool full;

	if (!q)
		return false;
	pthread_mutex_lock(&q->lock);
	full = q->capacity && q->count >= q->capacity;
	pthread_mutex_unlock(&q->lock);
	return full;
}

bool exe_queue_closed(struct exe_queue *q)
{
	bool closed;

	if (!q)
		return false;
	pthread_mutex_lock(&q->lock);
	closed = q->closed;
	pthread_mutex_unlock(&q->lock);
	return closed;
}

int exe_queue_task_done(struct exe_queue *q)
{
	int rc = 0;

	if (!q)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	if (q->unfinished == 0)
		rc = -EINVAL;
	else if (--q->unfinished == 0)
		cond_broadcast(&q->all_done);
	pthread_mutex_unlock(&q->lock);
	return rc;
}

int exe_queue_join(struct exe_queue *q, int64_t timeout_ns)
{
	int64_t deadline = timeout_ns > 0 ? exe__deadline(timeout_ns) : -1;
	int rc = 0;

	if (!q)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	while (q->unfinished) {
		if (timeout_ns == 0 || rc == -ETIMEDOUT) {
			rc = -ETIMEDOUT;
			break;
		}
		rc = cond_wait(&q->all_done, &q->lock, deadline);
		if (rc == -ECANCELED)
			break;
	}
	if (q->unfinished == 0)
		rc = 0;
	pthread_mutex_unlock(&q->lock);
	return rc;
}
