/*
 * stress_fiber - fibers on three io contexts racing with plain threads, for
 * ThreadSanitizer and AddressSanitizer: remote spawns, queue ping-pong
 * across contexts, fibers awaiting thread-pool tasks and promises that
 * other threads complete, timed waits whose deadlines race their wakes,
 * and cancels racing everything. Every item put is got exactly once; every
 * fiber's future finishes; exits non-zero otherwise.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <executor.h>

#define IOS 3
#define PAIRS 24    /* producer/consumer fiber pairs */
#define ITEMS 2000  /* per producer */
#define SPAWNERS 3  /* plain threads spawning fibers */
#define SPAWNS 300  /* per spawner */
#define VICTIMS 150 /* fibers cancelled while waiting */

static struct exe_io *ios[IOS];
static struct exe_pool *pool;
static struct exe_queue *q;
static _Atomic long got_sum, got_count, spawned_done, timed_out_ok;

static int square(void *arg, void **result)
{
	*result = (void *)((intptr_t)arg * (intptr_t)arg);
	return 0;
}

static int producer(void *arg, void **result)
{
	intptr_t base = (intptr_t)arg;

	(void)result;
	for (intptr_t i = 1; i <= ITEMS; i++) {
		int rc = exe_queue_put(q, (void *)(base + i), EXE_FOREVER);

		if (rc)
			return rc;
		if (i % 50 == 0)
			exe_fiber_yield();
	}
	return 0;
}

static int consumer(void *arg, void **result)
{
	(void)arg, (void)result;
	for (int i = 0; i < ITEMS; i++) {
		void *item;
		int rc = exe_queue_get(q, &item, EXE_FOREVER);

		if (rc)
			return rc;
		atomic_fetch_add(&got_sum, (long)(intptr_t)item);
		atomic_fetch_add(&got_count, 1);
		if (i % 40 == 0) {
			/* Await a pool task: woken from a worker thread. */
			struct exe_future *f;
			void *v;

			rc = exe_pool_submit(pool, square, (void *)(intptr_t)i, &f);
			if (rc)
				return rc;
			rc = exe_future_result(f, &v, EXE_FOREVER);
			exe_future_unref(f);
			if (rc || (intptr_t)v != (intptr_t)i * i)
				return rc ? rc : -EPROTO;
		}
		if (i % 60 == 0) {
			/* A deadline racing nothing: must time out. */
			struct exe_future *p;

			exe_future_create(&p);
			if (exe_future_wait(p, 100 * EXE_NS_PER_US) == -ETIMEDOUT)
				atomic_fetch_add(&timed_out_ok, 1);
			exe_future_unref(p);
		}
	}
	return 0;
}

static int short_lived(void *arg, void **result)
{
	struct exe_future *p = arg;

	(void)result;
	/* The promise is completed by the spawning thread: a remote wake. */
	int rc = exe_future_wait(p, EXE_FOREVER);

	exe_future_unref(p);
	atomic_fetch_add(&spawned_done, 1);
	return rc;
}

static void *spawner(void *arg)
{
	intptr_t id = (intptr_t)arg;

	for (int i = 0; i < SPAWNS; i++) {
		struct exe_future *p, *f;

		if (exe_future_create(&p))
			abort();
		exe_future_ref(p);
		if (exe_fiber_spawn(ios[(id + i) % IOS], short_lived, p, NULL, &f)) {
			fprintf(stderr, "spawn failed\n");
			exit(1);
		}
		exe_future_set_result(p, NULL, NULL);
		exe_future_unref(p);
		if (exe_future_wait(f, 10 * EXE_NS_PER_S) || exe_future_code(f) != 0) {
			fprintf(stderr, "short-lived fiber: %d\n", exe_future_code(f));
			exit(1);
		}
		exe_future_unref(f);
	}
	return NULL;
}

static int victim(void *arg, void **result)
{
	(void)result;
	switch ((intptr_t)arg % 3) {
	case 0: return exe_fiber_sleep(10 * EXE_NS_PER_S);
	case 1: {
		struct exe_future *p;
		int rc;

		exe_future_create(&p);
		rc = exe_future_wait(p, EXE_FOREVER);
		exe_future_unref(p);
		return rc;
	}
	default: {
		void *item;
		struct exe_queue *mine;
		int rc;

		exe_queue_create(&mine, NULL);
		rc = exe_queue_get(mine, &item, EXE_FOREVER);
		exe_queue_destroy(mine);
		return rc;
	}
	}
}

static void *canceller(void *arg)
{
	struct exe_future **fs = arg;

	for (int i = 0; i < VICTIMS; i++) {
		int rc = exe_future_cancel(fs[i]);

		if (rc != 0 && rc != -EBUSY) {
			fprintf(stderr, "cancel: %d\n", rc);
			exit(1);
		}
	}
	return NULL;
}

int main(void)
{
	struct exe_future *prod[PAIRS], *cons[PAIRS], *vict[VICTIMS];
	pthread_t sp[SPAWNERS], cx;
	long want = 0;

	for (int i = 0; i < IOS; i++)
		if (exe_io_create(&ios[i], NULL))
			return 1;
	if (exe_thread_pool_create(&pool, &(struct exe_pool_opts){.workers = 2}) ||
	    exe_queue_create(&q, &(struct exe_queue_opts){.capacity = 8}))
		return 1;
	for (int i = 0; i < PAIRS; i++) {
		intptr_t base = (intptr_t)i * 100000;

		if (exe_fiber_spawn(ios[i % IOS], producer, (void *)base, NULL, &prod[i]) ||
		    exe_fiber_spawn(ios[(i + 1) % IOS], consumer, NULL, NULL, &cons[i]))
			return 1;
		for (long k = 1; k <= ITEMS; k++)
			want += base + k;
	}
	for (int i = 0; i < VICTIMS; i++)
		if (exe_fiber_spawn(ios[i % IOS], victim, (void *)(intptr_t)i, NULL, &vict[i]))
			return 1;
	for (intptr_t i = 0; i < SPAWNERS; i++)
		pthread_create(&sp[i], NULL, spawner, (void *)i);
	pthread_create(&cx, NULL, canceller, vict);
	pthread_join(cx, NULL);
	for (int i = 0; i < SPAWNERS; i++)
		pthread_join(sp[i], NULL);

	for (int i = 0; i < PAIRS; i++) {
		if (exe_future_wait(prod[i], 60 * EXE_NS_PER_S) || exe_future_code(prod[i]) ||
		    exe_future_wait(cons[i], 60 * EXE_NS_PER_S) || exe_future_code(cons[i])) {
			fprintf(stderr, "pair %d: %d %d\n", i, exe_future_code(prod[i]),
			        exe_future_code(cons[i]));
			return 1;
		}
		exe_future_unref(prod[i]);
		exe_future_unref(cons[i]);
	}
	for (int i = 0; i < VICTIMS; i++) {
		if (exe_future_wait(vict[i], 10 * EXE_NS_PER_S) || exe_future_code(vict[i]) != -ECANCELED) {
			fprintf(stderr, "victim %d: %d\n", i, exe_future_code(vict[i]));
			return 1;
		}
		exe_future_unref(vict[i]);
	}
	for (int i = 0; i < IOS; i++)
		exe_io_destroy(ios[i]);
	exe_pool_destroy(pool);
	exe_queue_destroy(q);
	if (atomic_load(&got_count) != (long)PAIRS * ITEMS || atomic_load(&got_sum) != want ||
	    atomic_load(&spawned_done) != SPAWNERS * SPAWNS || atomic_load(&timed_out_ok) == 0) {
		fprintf(stderr, "lost work: %ld items, sum %ld (want %ld), %ld spawned\n",
		        atomic_load(&got_count), atomic_load(&got_sum), want, atomic_load(&spawned_done));
		return 1;
	}
	printf("stress_fiber: %ld items through %d fiber pairs on %d contexts, %d remote spawns, %d cancels: "
	       "ok\n",
	       atomic_load(&got_count), PAIRS, IOS, SPAWNERS * SPAWNS, VICTIMS);
	return 0;
}
