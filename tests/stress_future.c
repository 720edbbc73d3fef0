/*
 * stress_future - promises completed, cancelled and dropped from several
 * threads while other threads add callbacks, wait on them (exe_wait,
 * as_completed) and compose them (then/all/any). Checks that every callback
 * runs exactly once and every composed future settles consistently. A plain
 * program (not Criterion) so it also runs under ThreadSanitizer.
 * EXE_STRESS_ROUNDS overrides the round count.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <executor.h>

#define WIDTH 8

struct round {
	struct exe_future *in[WIDTH];
	_Atomic int callbacks[WIDTH];
	pthread_barrier_t *go;
};

static _Atomic long failures;

static void fail(const char *what, long round)
{
	fprintf(stderr, "stress_future: %s (round %ld)\n", what, round);
	atomic_fetch_add(&failures, 1);
}

static int count_cb(struct exe_future *f, void *arg)
{
	(void)f;
	atomic_fetch_add_explicit((_Atomic int *)arg, 1, memory_order_relaxed);
	return 0;
}

static int plus_one(struct exe_future *prev, void *arg, void **result)
{
	void *v = NULL;

	(void)arg;
	exe_future_result(prev, &v, 0);
	*result = (void *)((uintptr_t)v + 1);
	return 0;
}

/* Completes or cancels the inputs in a scrambled order. */
static void *completer(void *arg)
{
	struct round *r = arg;
	unsigned seed = (unsigned)(uintptr_t)r;

	pthread_barrier_wait(r->go);
	for (int k = 0; k < WIDTH; k++) {
		int i = (k * 5 + 3) % WIDTH;

		switch (rand_r(&seed) % 3) {
		case 0: exe_future_set_result(r->in[i], (void *)(uintptr_t)i, NULL); break;
		case 1: exe_future_set_error(r->in[i], -EIO, "input %d failed", i); break;
		default: exe_future_cancel(r->in[i]); break;
		}
	}
	return NULL;
}

/* Adds callbacks while the completer runs. */
static void *adder(void *arg)
{
	struct round *r = arg;

	pthread_barrier_wait(r->go);
	for (int i = 0; i < WIDTH; i++)
		if (exe_future_on_done(r->in[i], count_cb, &r->callbacks[i]))
			fail("on_done", -1);
	return NULL;
}

int main(void)
{
	long rounds = 20000, n;
	const char *env = getenv("EXE_STRESS_ROUNDS");
	pthread_barrier_t go;

#if defined(EXE_TSAN) || defined(__SANITIZE_ADDRESS__)
	rounds = 4000;
#endif
	if (env)
		rounds = atol(env);
	pthread_barrier_init(&go, NULL, 3);
	for (n = 0; n < rounds; n++) {
		struct round r = {.go = &go};
		struct exe_future *all, *any, *then0;
		struct exe_as_completed *it;
		struct exe_future *f;
		pthread_t c, a;
		int yielded = 0, rc;

		for (int i = 0; i < WIDTH; i++) {
			exe_future_create(&r.in[i]);
			atomic_init(&r.callbacks[i], 0);
		}
		exe_future_all(r.in, WIDTH, &all);
		exe_future_any(r.in, WIDTH, &any);
		exe_future_then(r.in[0], NULL, plus_one, NULL, &then0);
		exe_as_completed_create(&it, r.in, WIDTH);
		pthread_create(&c, NULL, completer, &r);
		pthread_create(&a, NULL, adder, &r);
		pthread_barrier_wait(&go);
		if (exe_wait(r.in, WIDTH, EXE_WAIT_ANY, -1) < 1)
			fail("wait any", n);
		while ((rc = exe_as_completed_next(it, &f, -1)) == 0)
			yielded++;
		if (rc != -EPIPE || yielded != WIDTH)
			fail("as_completed yielded each future once", n);
		pthread_join(c, NULL);
		pthread_join(a, NULL);
		if (exe_wait(r.in, WIDTH, EXE_WAIT_ALL, 0) != WIDTH)
			fail("wait all after completion", n);
		for (int i = 0; i < WIDTH; i++)
			if (atomic_load(&r.callbacks[i]) != 1)
				fail("callback count != 1", n);
		/* all: DONE only if every input is DONE. */
		{
			bool every_done = true;

			for (int i = 0; i < WIDTH; i++)
				every_done &= exe_future_state(r.in[i]) == EXE_FUTURE_DONE;
			if ((exe_future_result(all, NULL, -1) == 0) != every_done)
				fail("all disagrees with its inputs", n);
		}
		/* then: one more than input 0, or input 0's failure. */
		{
			void *v = NULL;
			int code0 = exe_future_code(r.in[0]);

			rc = exe_future_result(then0, &v, -1);
			if (rc != code0 || (rc == 0 && (uintptr_t)v != 1))
				fail("then disagrees with its source", n);
		}
		/* any: the index of a DONE input, or a failure when none is. */
		{
			void *v = NULL;

			rc = exe_future_result(any, &v, -1);
			if (rc == 0 && exe_future_state(r.in[(uintptr_t)v]) != EXE_FUTURE_DONE)
				fail("any picked an input that is not DONE", n);
		}
		exe_as_completed_destroy(it);
		exe_future_unref(all);
		exe_future_unref(any);
		exe_future_unref(then0);
		for (int i = 0; i < WIDTH; i++)
			exe_future_unref(r.in[i]);
	}
	pthread_barrier_destroy(&go);
	printf("stress_future: %ld rounds of %d promises, %ld failures\n", rounds, WIDTH,
	       atomic_load(&failures));
	return atomic_load(&failures) ? 1 : 0;
}
