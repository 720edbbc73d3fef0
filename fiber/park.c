/*
 * park.c - how the library's waits park a fiber (park.h): a parking lot
 * for futex words and condition variables, and the future wait.
 *
 * Design
 *  - The parking lot is a fixed hash table of buckets keyed by address.
 *    A fiber that would sleep on a futex word (or a condvar) puts an entry
 *    - on its own stack - in the word's bucket, under the bucket's lock,
 *    and parks (fiber.c). exe__futex_wake() and the queue's signals call
 *    exe__park_wake() after their usual wake: it wakes the fibers whose
 *    entries match, under the same lock. The parked fiber removes its entry
 *    itself if it woke for another reason (a timeout, a cancel), under the
 *    lock, so no waker touches an entry whose fiber moved on.
 *  - The waker's fast path is one fence and one load of the bucket's count:
 *    threads that never meet a fiber pay nothing more. The count and the
 *    word form a Dekker pair: the fiber raises the count, then (fence)
 *    re-reads the word; the waker changed the word, then (fence) reads the
 *    count. One of them sees the other: either the fiber sees the new word
 *    and does not park, or the waker sees the count and takes the lock the
 *    entry was inserted under.
 *  - A condvar needs no Dekker: the fiber inserts its entry while holding
 *    the queue's mutex, and signallers hold it too.
 *  - A fiber's wait on a future registers a done callback instead (no
 *    futex call for the finishing thread). The callback may run late, after
 *    the fiber stopped waiting (callbacks are copied, then called outside
 *    the future's lock): it holds a reference on the fiber, and a wake that
 *    finds the fiber in some later wait is a spurious wake, which every
 *    wait of the library tolerates (each re-checks its condition).
 *
 * Invariants
 *  - An entry is linked only while its fiber is between insertion and its
 *    own removal check; both happen under the bucket lock.
 *  - bucket.count == number of linked entries (changed under the lock).
 */
#include <ck_pr.h> /* ck_pr_stall(): the spin hint on every CPU */
#include <errno.h>
#include <limits.h>
#include <stdint.h>

#include "errors.h"
#include "fiber_obj.h"

#define LOT_BUCKETS 64

struct lot_entry {
	struct lot_entry *next;
	const void *key;
	struct exe__fiber *fb;
	bool linked;
};

struct lot_bucket {
	_Alignas(64) _Atomic uint32_t lock;
	_Atomic uint32_t count; /* Dekker with the keys' words: see Design */
	struct lot_entry *head;
};

static struct lot_bucket lot[LOT_BUCKETS];

static struct lot_bucket *bucket_of(const void *key)
{
	uintptr_t k = (uintptr_t)key;

	k ^= k >> 17;
	k *= 0x9e3779b97f4a7c15ull;
	return &lot[(k >> 58) % LOT_BUCKETS];
}

static void bucket_lock(struct lot_bucket *b)
{
	/* acquire: pairs with the release in bucket_unlock(). */
	while (atomic_exchange_explicit(&b->lock, 1, memory_order_acquire))
		while (atomic_load_explicit(&b->lock, memory_order_relaxed))
			ck_pr_stall();
}

static void bucket_unlock(struct lot_bucket *b)
{
	atomic_store_explicit(&b->lock, 0, memory_order_release);
}

static void insert(struct lot_bucket *b, struct lot_entry *e)
{
	e->next = b->head;
	b->head = e;
	e->linked = true;
	/* relaxed under the lock; the Dekker order is the caller's fence. */
	atomic_fetch_add_explicit(&b->count, 1, memory_order_relaxed);
}

/* The fiber is back: take its entry out unless a waker did. */
static void remove_own(struct lot_bucket *b, struct lot_entry *e)
{
	struct lot_entry **pp;

	bucket_lock(b);
	if (e->linked) {
		for (pp = &b->head; *pp != e; pp = &(*pp)->next)
			;
		*pp = e->next;
		e->linked = false;
		atomic_fetch_sub_explicit(&b->count, 1, memory_order_relaxed);
	}
	bucket_unlock(b);
}

void exe__park_wake(const void *key, int n)
{
	struct lot_bucket *b = bucket_of(key);
	struct lot_entry **pp, *e;

	/* seq_cst fence: the caller's change of the word comes before the
	 * count is read (Dekker with exe__fiber_park_word's fence). */
	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&b->count, memory_order_relaxed))
		return;
	bucket_lock(b);
	for (pp = &b->head; (e = *pp) && n > 0;) {
		if (e->key != key) {
			pp = &e->next;
			continue;
		}
		*pp = e->next;
		e->linked = false;
		atomic_fetch_sub_explicit(&b->count, 1, memory_order_relaxed);
		/* Under the lock: the fiber cannot get past remove_own() and
		 * finish until we let go. */
		if (exe__fiber_wake(e->fb, EXE__WOKE))
			n--;
	}
	bucket_unlock(b);
}

int exe__fiber_park_word(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns)
{
	struct exe__fiber *fb = exe__tls_fiber;
	struct lot_bucket *b = bucket_of(word);
	struct lot_entry e = {.key = word, .fb = fb};
	int rc;

	if (fb->cancel_pending)
		return -ECANCELED;
	atomic_store_explicit(&fb->park, EXE__PARK_PREPARING, memory_order_relaxed);
	bucket_lock(b);
	insert(b, &e);
	/* seq_cst fence: the count is raised before the word is re-read
	 * (Dekker with exe__park_wake's fence). */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(word, memory_order_relaxed) != expected) {
		/* Still the head: we held the lock since inserting it. */
		b->head = e.next;
		atomic_fetch_sub_explicit(&b->count, 1, memory_order_relaxed);
		bucket_unlock(b);
		atomic_store_explicit(&fb->park, EXE__PARK_RUNNING, memory_order_relaxed);
		return 0;
	}
	bucket_unlock(b);
	rc = exe__fiber_park_until(fb, deadline_ns);
	remove_own(b, &e);
	return rc;
}

int exe__fiber_cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ns)
{
	struct exe__fiber *fb = exe__tls_fiber;
	struct lot_bucket *b = bucket_of(c);
	struct lot_entry e = {.key = c, .fb = fb};
	int rc;

	if (fb->cancel_pending)
		return -ECANCELED;
	atomic_store_explicit(&fb->park, EXE__PARK_PREPARING, memory_order_relaxed);
	bucket_lock(b);
	insert(b, &e);
	bucket_unlock(b);
	pthread_mutex_unlock(m);
	rc = exe__fiber_park_until(fb, deadline_ns);
	remove_own(b, &e);
	pthread_mutex_lock(m);
	return rc;
}

/* ---- a fiber waiting on a future ---- */

static int future_wake(struct exe_future *f, void *arg)
{
	struct exe__fiber *fb = arg;

	(void)f;
	exe__fiber_wake(fb, EXE__WOKE);
	exe_future_unref(&fb->fut);
	return 0;
}

int exe__fiber_wait_future(struct exe_future *f, int64_t timeout_ns)
{
	struct exe__fiber *fb = exe__tls_fiber;
	int64_t deadline = exe__deadline(timeout_ns);
	struct exe__cb node;
	int rc;

	if (f == &fb->fut)
		return -EDEADLK;
	for (;;) {
		if (exe_future_is_finished(f))
			return 0;
		if (fb->cancel_pending)
			return -ECANCELED;
		node.fn = future_wake;
		node.arg = fb;
		node.pool = NULL;
		node.heap = false;
		atomic_store_explicit(&fb->park, EXE__PARK_PREPARING, memory_order_relaxed);
		/* The node's reference on fb: dropped by the callback, or below
		 * when the node is unlinked before it ran. */
		exe_future_ref(&fb->fut);
		/* Runs future_wake at once if f finished meanwhile: the park
		 * below then does not switch. */
		exe__future_add_node(f, &node);
		rc = exe__fiber_park_until(fb, deadline);
		if (exe__future_remove_node(f, &node))
			exe_future_unref(&fb->fut);
		if (exe_future_is_finished(f))
			return 0;
		if (rc)
			return rc;
	}
}
