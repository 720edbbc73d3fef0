/*
 * test_queue.c - struct exe_queue: ordering per kind, timeouts, close,
 * task_done/join, bad input and allocation failure.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include <executor.h>
#include "alloc.h"

#define MS EXE_NS_PER_MS
#define P(i) ((void *)(uintptr_t)(i))
#define I(p) ((uintptr_t)(p))

/* exe_queue_close_now() as one value: the discarded count, or the code. */
static long close_now(struct exe_queue *q, exe_free_fn *discard)
{
	size_t n = 0;
	int rc = exe_queue_close_now(q, discard, &n);

	return rc ? rc : (long)n;
}

TestSuite(queue, .timeout = 20);

static struct exe_queue *make(enum exe_queue_kind kind, size_t capacity)
{
	struct exe_queue_opts o = {.kind = kind, .capacity = capacity};
	struct exe_queue *q = NULL;

	cr_assert_eq(exe_queue_create(&q, &o), 0);
	cr_assert_not_null(q);
	return q;
}

static uintptr_t get_now(struct exe_queue *q)
{
	void *v = P(0xdead);

	cr_assert_eq(exe_queue_get(q, &v, 0), 0);
	return I(v);
}

/* ---- ordering ---- */

Test(queue, fifo_returns_items_in_put_order)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);

	for (uintptr_t i = 1; i <= 100; i++)
		cr_assert_eq(exe_queue_put(q, P(i), 0), 0);
	cr_assert_eq(exe_queue_count(q), 100);
	for (uintptr_t i = 1; i <= 100; i++)
		cr_assert_eq(get_now(q), i);
	cr_assert(exe_queue_empty(q));
	exe_queue_destroy(q);
}

Test(queue, null_defaults_to_unbounded_fifo)
{
	struct exe_queue *q = NULL;

	cr_assert_eq(exe_queue_create(&q, NULL), 0);
	for (uintptr_t i = 0; i < 5000; i++)
		cr_assert_eq(exe_queue_put(q, P(i), 0), 0);
	cr_assert_not(exe_queue_full(q));
	for (uintptr_t i = 0; i < 5000; i++)
		cr_assert_eq(get_now(q), i);
	exe_queue_destroy(q);
}

Test(queue, fifo_keeps_order_when_growing_a_wrapped_ring)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);
	uintptr_t next_in = 0, next_out = 0;

	/* Interleave so the ring's head moves, then grow it several times. */
	for (int round = 0; round < 8; round++) {
		for (int k = 0; k < 7 + round * 5; k++)
			cr_assert_eq(exe_queue_put(q, P(next_in++), 0), 0);
		for (int k = 0; k < 5; k++)
			cr_assert_eq(get_now(q), next_out++);
	}
	while (next_out < next_in)
		cr_assert_eq(get_now(q), next_out++);
	exe_queue_destroy(q);
}

Test(queue, lifo_returns_last_put_first)
{
	struct exe_queue *q = make(EXE_QUEUE_LIFO, 0);

	for (uintptr_t i = 1; i <= 100; i++)
		cr_assert_eq(exe_queue_put(q, P(i), 0), 0);
	for (uintptr_t i = 100; i >= 1; i--)
		cr_assert_eq(get_now(q), i);
	exe_queue_destroy(q);
}

Test(queue, priority_returns_lowest_first)
{
	struct exe_queue *q = make(EXE_QUEUE_PRIORITY, 0);
	static const int64_t prios[] = {5, -3, INT64_MAX, 0, INT64_MIN, 42, 7, -100, 1, 2};
	static const int64_t sorted[] = {INT64_MIN, -100, -3, 0, 1, 2, 5, 7, 42, INT64_MAX};
	int64_t pr;
	void *v;

	for (size_t i = 0; i < 10; i++)
		cr_assert_eq(exe_queue_put_prio(q, P(prios[i] & 0xffff), prios[i], 0), 0);
	for (size_t i = 0; i < 10; i++) {
		cr_assert_eq(exe_queue_get_prio(q, &v, &pr, 0), 0);
		cr_assert_eq(pr, sorted[i]);
		cr_assert_eq(I(v), (uintptr_t)(sorted[i] & 0xffff));
	}
	exe_queue_destroy(q);
}

Test(queue, priority_keeps_put_order_for_equal_priorities)
{
	struct exe_queue *q = make(EXE_QUEUE_PRIORITY, 0);
	uintptr_t next[3] = {0, 0, 0};
	int64_t pr;
	void *v;

	/* 3000 items over 3 priorities, interleaved pseudo-randomly; the item
	 * encodes (priority, put index within that priority). */
	uint32_t x = 12345;
	uintptr_t count[3] = {0, 0, 0};
	for (int i = 0; i < 3000; i++) {
		x = x * 1103515245u + 12345u;
		int p = (x >> 16) % 3;
		cr_assert_eq(exe_queue_put_prio(q, P((uintptr_t)p << 20 | count[p]++), p, 0), 0);
	}
	for (int i = 0; i < 3000; i++) {
		cr_assert_eq(exe_queue_get_prio(q, &v, &pr, 0), 0);
		int p = (int)(I(v) >> 20);
		cr_assert_eq(pr, p);
		cr_assert_eq(I(v) & 0xfffff, next[p], "priority %d: got #%zu, want #%zu", p,
		             (size_t)(I(v) & 0xfffff), (size_t)next[p]);
		next[p]++;
		/* Every lower priority is exhausted before a higher one starts. */
		for (int lower = 0; lower < p; lower++)
			cr_assert_eq(next[lower], count[lower]);
	}
	exe_queue_destroy(q);
}

Test(queue, priority_put_without_prio_uses_zero)
{
	struct exe_queue *q = make(EXE_QUEUE_PRIORITY, 0);
	int64_t pr = 99;
	void *v;

	cr_assert_eq(exe_queue_put_prio(q, P(1), 1, 0), 0);
	cr_assert_eq(exe_queue_put(q, P(2), 0), 0);
	cr_assert_eq(exe_queue_put_prio(q, P(3), -1, 0), 0);
	cr_assert_eq(exe_queue_get_prio(q, &v, &pr, 0), 0);
	cr_assert_eq(I(v), 3);
	cr_assert_eq(exe_queue_get_prio(q, &v, &pr, 0), 0);
	cr_assert_eq(I(v), 2);
	cr_assert_eq(pr, 0);
	cr_assert_eq(get_now(q), 1);
	exe_queue_destroy(q);
}

Test(queue, fifo_ignores_priority)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);
	int64_t pr = 99;
	void *v;

	cr_assert_eq(exe_queue_put_prio(q, P(1), 10, 0), 0);
	cr_assert_eq(exe_queue_put_prio(q, P(2), -10, 0), 0);
	cr_assert_eq(exe_queue_get_prio(q, &v, &pr, 0), 0);
	cr_assert_eq(I(v), 1);
	cr_assert_eq(pr, 0);
	cr_assert_eq(get_now(q), 2);
	exe_queue_destroy(q);
}

Test(queue, null_item_is_a_valid_item)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);
	void *v = P(1);

	cr_assert_eq(exe_queue_put(q, NULL, 0), 0);
	cr_assert_eq(exe_queue_get(q, &v, 0), 0);
	cr_assert_null(v);
	exe_queue_destroy(q);
}

Test(queue, shrinks_and_regrows_after_a_burst)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);

	for (int round = 0; round < 3; round++) {
		for (uintptr_t i = 0; i < 20000; i++)
			cr_assert_eq(exe_queue_put(q, P(i), 0), 0);
		for (uintptr_t i = 0; i < 20000; i++)
			cr_assert_eq(get_now(q), i);
	}
	exe_queue_destroy(q);
}

/* ---- bounds and timeouts ---- */

Test(queue, bounded_put_without_wait_returns_eagain_when_full)
{
	enum exe_queue_kind kinds[] = {EXE_QUEUE_FIFO, EXE_QUEUE_LIFO, EXE_QUEUE_PRIORITY};

	for (int k = 0; k < 3; k++) {
		struct exe_queue *q = make(kinds[k], 3);

		for (uintptr_t i = 0; i < 3; i++)
			cr_assert_eq(exe_queue_put(q, P(i), 0), 0);
		cr_assert(exe_queue_full(q));
		cr_assert_eq(exe_queue_put(q, P(9), 0), -ETIMEDOUT);
		cr_assert_eq(exe_queue_count(q), 3);
		get_now(q);
		cr_assert_not(exe_queue_full(q));
		cr_assert_eq(exe_queue_put(q, P(9), 0), 0);
		exe_queue_destroy(q);
	}
}

Test(queue, get_without_wait_returns_eagain_when_empty)
{
	struct exe_queue *q = make(EXE_QUEUE_LIFO, 0);
	void *v = P(7);

	cr_assert_eq(exe_queue_get(q, &v, 0), -ETIMEDOUT);
	cr_assert_eq(I(v), 7, "a failed get leaves *item alone");
	exe_queue_destroy(q);
}

Test(queue, timed_get_on_empty_returns_etimedout_after_the_bound)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);
	void *v;
	int64_t t0 = exe_now_ns();

	cr_assert_eq(exe_queue_get(q, &v, 50 * MS), -ETIMEDOUT);
	int64_t dt = exe_now_ns() - t0;
	cr_assert_geq(dt, 50 * MS);
	cr_assert_lt(dt, 2000 * MS);
	exe_queue_destroy(q);
}

Test(queue, timed_put_on_full_returns_etimedout_and_leaves_queue_unchanged)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 1);
	int64_t t0;

	cr_assert_eq(exe_queue_put(q, P(1), 0), 0);
	t0 = exe_now_ns();
	cr_assert_eq(exe_queue_put(q, P(2), 30 * MS), -ETIMEDOUT);
	cr_assert_geq(exe_now_ns() - t0, 30 * MS);
	cr_assert_eq(exe_queue_count(q), 1);
	cr_assert_eq(get_now(q), 1);
	cr_assert_eq(exe_queue_join(q, 0), -ETIMEDOUT, "one put, no task_done");
	cr_assert_eq(exe_queue_task_done(q), 0);
	cr_assert_eq(exe_queue_task_done(q), -EINVAL, "the timed-out put did not count");
	exe_queue_destroy(q);
}

struct delayed {
	struct exe_queue *q;
	int64_t delay_ns;
	uintptr_t item;
	int rc;
	void *got;
};

static void sleep_ns(int64_t ns)
{
	struct timespec ts = {ns / EXE_NS_PER_S, ns % EXE_NS_PER_S};

	nanosleep(&ts, NULL);
}

static void *delayed_put(void *arg)
{
	struct delayed *d = arg;

	sleep_ns(d->delay_ns);
	d->rc = exe_queue_put(d->q, P(d->item), EXE_FOREVER);
	return NULL;
}

static void *delayed_get(void *arg)
{
	struct delayed *d = arg;

	sleep_ns(d->delay_ns);
	d->rc = exe_queue_get(d->q, &d->got, EXE_FOREVER);
	return NULL;
}

Test(queue, blocked_get_wakes_on_put_from_another_thread)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);
	struct delayed d = {.q = q, .delay_ns = 20 * MS, .item = 77};
	pthread_t t;
	void *v = NULL;

	pthread_create(&t, NULL, delayed_put, &d);
	cr_assert_eq(exe_queue_get(q, &v, EXE_FOREVER), 0);
	cr_assert_eq(I(v), 77);
	pthread_join(t, NULL);
	cr_assert_eq(d.rc, 0);
	exe_queue_destroy(q);
}

Test(queue, blocked_put_wakes_on_get_from_another_thread)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 1);
	struct delayed d = {.q = q, .delay_ns = 20 * MS};
	pthread_t t;

	cr_assert_eq(exe_queue_put(q, P(1), 0), 0);
	pthread_create(&t, NULL, delayed_get, &d);
	cr_assert_eq(exe_queue_put(q, P(2), 5000 * MS), 0);
	pthread_join(t, NULL);
	cr_assert_eq(d.rc, 0);
	cr_assert_eq(I(d.got), 1);
	cr_assert_eq(get_now(q), 2);
	exe_queue_destroy(q);
}

/* ---- close ---- */

Test(queue, put_after_close_returns_epipe_and_get_drains_first)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);
	void *v;

	cr_assert_eq(exe_queue_put(q, P(1), 0), 0);
	cr_assert_eq(exe_queue_put(q, P(2), 0), 0);
	cr_assert_eq(exe_queue_close(q), 0);
	cr_assert_eq(exe_queue_close(q), 0, "close is idempotent");
	cr_assert(exe_queue_closed(q));
	cr_assert_eq(exe_queue_put(q, P(3), 0), -EPIPE);
	cr_assert_eq(exe_queue_put(q, P(3), EXE_FOREVER), -EPIPE);
	cr_assert_eq(get_now(q), 1);
	cr_assert_eq(exe_queue_get(q, &v, EXE_FOREVER), 0);
	cr_assert_eq(I(v), 2);
	cr_assert_eq(exe_queue_get(q, &v, 0), -EPIPE);
	cr_assert_eq(exe_queue_get(q, &v, EXE_FOREVER), -EPIPE);
	cr_assert_eq(exe_queue_get(q, &v, 10 * MS), -EPIPE);
	exe_queue_destroy(q);
}

#define NWAITERS 4

struct waiter {
	struct exe_queue *q;
	bool put;
	atomic_int *started;
	int rc;
};

static void *wait_forever(void *arg)
{
	struct waiter *w = arg;
	void *v;

	atomic_fetch_add(w->started, 1);
	w->rc = w->put ? exe_queue_put(w->q, P(5), EXE_FOREVER) : exe_queue_get(w->q, &v, EXE_FOREVER);
	return NULL;
}

/* Start NWAITERS blocked getters or putters, close, and check they all fail
 * with -EPIPE. The short sleep lets them block; if one has not blocked yet it
 * still meets the closed queue, so the test cannot pass by luck. */
static void close_wakes(bool putters)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 2);
	struct waiter w[NWAITERS];
	pthread_t t[NWAITERS];
	atomic_int started = 0;

	if (putters) {
		cr_assert_eq(exe_queue_put(q, P(1), 0), 0);
		cr_assert_eq(exe_queue_put(q, P(2), 0), 0);
	}
	for (int i = 0; i < NWAITERS; i++) {
		w[i] = (struct waiter){.q = q, .put = putters, .started = &started, .rc = 1};
		pthread_create(&t[i], NULL, wait_forever, &w[i]);
	}
	while (atomic_load(&started) < NWAITERS)
		sleep_ns(MS);
	sleep_ns(30 * MS);
	cr_assert_eq(exe_queue_close(q), 0);
	for (int i = 0; i < NWAITERS; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].rc, -EPIPE, "waiter %d: %d", i, w[i].rc);
	}
	if (putters) {
		cr_assert_eq(exe_queue_count(q), 2, "the queued items survive close");
		cr_assert_eq(get_now(q), 1);
		cr_assert_eq(get_now(q), 2);
	}
	exe_queue_destroy(q);
}

Test(queue, close_wakes_blocked_getters_with_epipe)
{
	close_wakes(false);
}

Test(queue, close_wakes_blocked_putters_with_epipe)
{
	close_wakes(true);
}

static atomic_int discarded;

static void count_discard(void *item)
{
	cr_assert_lt(I(item), 10);
	atomic_fetch_add(&discarded, 1);
}

Test(queue, close_now_discards_items_and_releases_join)
{
	enum exe_queue_kind kinds[] = {EXE_QUEUE_FIFO, EXE_QUEUE_LIFO, EXE_QUEUE_PRIORITY};

	for (int k = 0; k < 3; k++) {
		struct exe_queue *q = make(kinds[k], 0);
		void *v;

		atomic_store(&discarded, 0);
		for (uintptr_t i = 0; i < 10; i++)
			cr_assert_eq(exe_queue_put(q, P(i), 0), 0);
		get_now(q); /* taken but not done: join must still wait for it */
		cr_assert_eq(close_now(q, count_discard), 9);
		cr_assert_eq(atomic_load(&discarded), 9);
		cr_assert_eq(exe_queue_count(q), 0);
		cr_assert_eq(exe_queue_get(q, &v, EXE_FOREVER), -EPIPE);
		cr_assert_eq(exe_queue_put(q, P(1), 0), -EPIPE);
		cr_assert_eq(exe_queue_join(q, 0), -ETIMEDOUT);
		cr_assert_eq(exe_queue_task_done(q), 0);
		cr_assert_eq(exe_queue_join(q, 0), 0);
		cr_assert_eq(close_now(q, count_discard), 0, "idempotent");
		exe_queue_destroy(q);
	}
}

struct joiner {
	struct exe_queue *q;
	int rc;
};

static void *join_forever(void *arg)
{
	struct joiner *j = arg;

	j->rc = exe_queue_join(j->q, EXE_FOREVER);
	return NULL;
}

Test(queue, close_now_wakes_a_blocked_joiner)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);
	struct joiner j = {.q = q, .rc = 1};
	pthread_t t;

	cr_assert_eq(exe_queue_put(q, P(1), 0), 0);
	pthread_create(&t, NULL, join_forever, &j);
	sleep_ns(20 * MS);
	cr_assert_eq(close_now(q, NULL), 1);
	pthread_join(t, NULL);
	cr_assert_eq(j.rc, 0);
	exe_queue_destroy(q);
}

/* ---- task_done / join ---- */

Test(queue, join_on_a_fresh_queue_returns_at_once)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);

	cr_assert_eq(exe_queue_join(q, 0), 0);
	cr_assert_eq(exe_queue_join(q, EXE_FOREVER), 0);
	exe_queue_destroy(q);
}

Test(queue, task_done_more_than_puts_returns_einval)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);

	cr_assert_eq(exe_queue_task_done(q), -EINVAL);
	cr_assert_eq(exe_queue_put(q, P(1), 0), 0);
	cr_assert_eq(exe_queue_put(q, P(2), 0), 0);
	get_now(q);
	get_now(q);
	cr_assert_eq(exe_queue_task_done(q), 0);
	cr_assert_eq(exe_queue_join(q, 0), -ETIMEDOUT);
	cr_assert_eq(exe_queue_task_done(q), 0);
	cr_assert_eq(exe_queue_join(q, 0), 0);
	cr_assert_eq(exe_queue_task_done(q), -EINVAL);
	exe_queue_destroy(q);
}

Test(queue, timed_join_returns_etimedout)
{
	struct exe_queue *q = make(EXE_QUEUE_FIFO, 0);
	int64_t t0;

	cr_assert_eq(exe_queue_put(q, P(1), 0), 0);
	t0 = exe_now_ns();
	cr_assert_eq(exe_queue_join(q, 30 * MS), -ETIMEDOUT);
	cr_assert_geq(exe_now_ns() - t0, 30 * MS);
	exe_queue_destroy(q);
}

struct consumer {
	struct exe_queue *q;
	long taken;
};

static void *consume_until_closed(void *arg)
{
	struct consumer *c = arg;
	void *v;

	while (exe_queue_get(c->q, &v, EXE_FOREVER) == 0) {
		c->taken++;
		cr_assert_eq(exe_queue_task_done(c->q), 0);
	}
	return NULL;
}

Test(queue, join_returns_when_consumers_marked_every_item_done)
{
	struct exe_queue *q = make(EXE_QUEUE_PRIORITY, 8);
	struct consumer c[3];
	pthread_t t[3];
	long total = 0;

	for (int i = 0; i < 3; i++) {
		c[i] = (struct consumer){.q = q};
		pthread_create(&t[i], NULL, consume_until_closed, &c[i]);
	}
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(exe_queue_put_prio(q, P(i), i % 7, EXE_FOREVER), 0);
	cr_assert_eq(exe_queue_join(q, EXE_FOREVER), 0);
	cr_assert(exe_queue_empty(q));
	cr_assert_eq(exe_queue_close(q), 0);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		total += c[i].taken;
	}
	cr_assert_eq(total, 1000);
	exe_queue_destroy(q);
}

/* ---- many threads (the long version is stress_queue) ---- */

#define MT_PRODUCERS 4
#define MT_CONSUMERS 4
#define MT_PER_PRODUCER 20000

struct mt {
	struct exe_queue *q;
	int id;
	uint64_t sum;
	long n;
};

static void *mt_produce(void *arg)
{
	struct mt *m = arg;

	for (uintptr_t i = 0; i < MT_PER_PRODUCER; i++) {
		uintptr_t v = (uintptr_t)m->id * MT_PER_PRODUCER + i + 1;

		cr_assert_eq(exe_queue_put_prio(m->q, P(v), (int64_t)(v % 13), EXE_FOREVER), 0);
		m->sum += v;
	}
	return NULL;
}

static void *mt_consume(void *arg)
{
	struct mt *m = arg;
	void *v;

	while (exe_queue_get(m->q, &v, EXE_FOREVER) == 0) {
		m->sum += I(v);
		m->n++;
	}
	return NULL;
}

Test(queue, many_producers_and_consumers_lose_nothing_on_every_kind)
{
	enum exe_queue_kind kinds[] = {EXE_QUEUE_FIFO, EXE_QUEUE_LIFO, EXE_QUEUE_PRIORITY};

	for (int k = 0; k < 3; k++) {
		struct exe_queue *q = make(kinds[k], k == 1 ? 0 : 64);
		struct mt p[MT_PRODUCERS], c[MT_CONSUMERS];
		pthread_t tp[MT_PRODUCERS], tc[MT_CONSUMERS];
		uint64_t in = 0, out = 0;
		long n = 0;

		for (int i = 0; i < MT_CONSUMERS; i++) {
			c[i] = (struct mt){.q = q, .id = i};
			pthread_create(&tc[i], NULL, mt_consume, &c[i]);
		}
		for (int i = 0; i < MT_PRODUCERS; i++) {
			p[i] = (struct mt){.q = q, .id = i};
			pthread_create(&tp[i], NULL, mt_produce, &p[i]);
		}
		for (int i = 0; i < MT_PRODUCERS; i++) {
			pthread_join(tp[i], NULL);
			in += p[i].sum;
		}
		exe_queue_close(q);
		for (int i = 0; i < MT_CONSUMERS; i++) {
			pthread_join(tc[i], NULL);
			out += c[i].sum;
			n += c[i].n;
		}
		cr_assert_eq(n, (long)MT_PRODUCERS * MT_PER_PRODUCER, "kind %d", k);
		cr_assert_eq(out, in, "kind %d", k);
		exe_queue_destroy(q);
	}
}

/* ---- bad input ---- */

Test(queue, bad_arguments_return_einval)
{
	struct exe_queue_opts bad = {.kind = (enum exe_queue_kind)7};
	struct exe_queue *q = P(1);
	void *v;

	cr_assert_eq(exe_queue_create(NULL, NULL), -EINVAL);
	cr_assert_eq(exe_queue_create(&q, &bad), -EINVAL);
	cr_assert_eq(I(q), 1, "*out untouched on failure");
	cr_assert_eq(exe_queue_put(NULL, P(1), 0), -EINVAL);
	cr_assert_eq(exe_queue_put_prio(NULL, P(1), 0, 0), -EINVAL);
	cr_assert_eq(exe_queue_get(NULL, &v, 0), -EINVAL);
	cr_assert_eq(exe_queue_get_prio(NULL, &v, NULL, 0), -EINVAL);
	cr_assert_eq(exe_queue_close(NULL), -EINVAL);
	cr_assert_eq(close_now(NULL, NULL), -EINVAL);
	cr_assert_eq(exe_queue_task_done(NULL), -EINVAL);
	cr_assert_eq(exe_queue_join(NULL, 0), -EINVAL);
	cr_assert_eq(exe_queue_count(NULL), 0);
	cr_assert(exe_queue_empty(NULL));
	cr_assert_not(exe_queue_full(NULL));
	cr_assert_not(exe_queue_closed(NULL));
	exe_queue_destroy(NULL);

	q = make(EXE_QUEUE_FIFO, 0);
	cr_assert_eq(exe_queue_put(q, P(1), 0), 0);
	cr_assert_eq(exe_queue_get(q, NULL, 0), -EINVAL);
	cr_assert_eq(exe_queue_count(q), 1, "a rejected get takes nothing");
	exe_queue_destroy(q);
}

/* ---- allocation failure ---- */

Test(queue, create_fails_cleanly_without_memory)
{
	struct exe_queue *q = NULL;

	exe__alloc_fail_after(0);
	cr_assert_eq(exe_queue_create(&q, NULL), -ENOMEM);
	exe__alloc_fail_after(-1);
	cr_assert_null(q);
}

Test(queue, failed_put_leaves_the_queue_unchanged)
{
	enum exe_queue_kind kinds[] = {EXE_QUEUE_FIFO, EXE_QUEUE_LIFO, EXE_QUEUE_PRIORITY};

	for (int k = 0; k < 3; k++) {
		struct exe_queue *q = make(kinds[k], 0);
		uintptr_t n = 0;
		int rc;

		/* The first put allocates; fill until the next put must grow. */
		exe__alloc_fail_after(0);
		cr_assert_eq(exe_queue_put(q, P(1), 0), -ENOMEM);
		cr_assert_eq(exe_queue_count(q), 0);
		cr_assert_eq(exe_queue_join(q, 0), 0, "a failed put is no unfinished task");
		exe__alloc_fail_after(1);
		while ((rc = exe_queue_put_prio(q, P(n), -(int64_t)n, 0)) == 0)
			n++;
		exe__alloc_fail_after(-1);
		cr_assert_eq(rc, -ENOMEM);
		cr_assert_gt(n, 1);
		cr_assert_eq(exe_queue_count(q), n);
		/* Everything is there, in the kind's order. */
		for (uintptr_t i = 0; i < n; i++)
			cr_assert_eq(get_now(q), k == 0 ? i : n - 1 - i, "kind %d item %zu", k, (size_t)i);
		for (uintptr_t i = 0; i < n; i++)
			cr_assert_eq(exe_queue_task_done(q), 0);
		cr_assert_eq(exe_queue_task_done(q), -EINVAL);
		cr_assert_eq(exe_queue_put(q, P(1), 0), 0, "works again once memory is back");
		exe_queue_destroy(q);
	}
}

Test(queue, every_allocation_failure_point_is_clean)
{
	/* Walk the failure point through create + a growing workload: each run
	 * either succeeds or fails with -ENOMEM, and never leaks (ASan). */
	for (long fail = 0; fail < 12; fail++) {
		struct exe_queue *q = NULL;
		int rc;

		exe__alloc_fail_after(fail);
		rc = exe_queue_create(&q, NULL);
		if (rc) {
			cr_assert_eq(rc, -ENOMEM);
			continue;
		}
		for (uintptr_t i = 0; i < 2000; i++) {
			rc = exe_queue_put(q, P(i), 0);
			cr_assert(rc == 0 || rc == -ENOMEM);
		}
		exe__alloc_fail_after(-1);
		while (!exe_queue_empty(q))
			get_now(q);
		exe_queue_destroy(q);
	}
	exe__alloc_fail_after(-1);
}
