/*
 * stress_thread_pool - many submitter threads, random cancels, nested
 * submits and callbacks racing with completion, on one pool; then checks
 * that every task is accounted for exactly once; then shutdown(WAIT) racing
 * with submitters, where no accepted task may be lost. A plain program (not
 * Criterion) so it also runs under ThreadSanitizer. Exit 0 on success.
 *
 * EXE_STRESS_TASKS overrides the task count (default: 2 000 000, or 1 000 000
 * in sanitizer builds, which run ~10x slower).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <executor.h>

#define SUBMITTERS 4
#define WINDOW 64

static struct exe_pool *pool;
static long tasks_per_thread;
static _Atomic long executed, callbacks, cancelled_ok, results_ok, failures;

static int work(void *arg, void **result)
{
	uintptr_t x = (uintptr_t)arg;

	atomic_fetch_add_explicit(&executed, 1, memory_order_relaxed);
	*result = (void *)(x * 2 + 1);
	return 0;
}

static int nested(void *arg, void **result)
{
	struct exe_future *f;
	void *v;
	int rc;

	atomic_fetch_add_explicit(&executed, 1, memory_order_relaxed);
	rc = exe_pool_submit(pool, work, arg, &f);
	if (rc)
		return rc;
	rc = exe_future_result(f, &v, EXE_FOREVER);
	exe_future_unref(f);
	*result = v;
	return rc;
}

static int on_done(struct exe_future *f, void *arg)
{
	(void)f;
	(void)arg;
	atomic_fetch_add_explicit(&callbacks, 1, memory_order_relaxed);
	return 0;
}

static void fail(const char *what, long i, int rc)
{
	fprintf(stderr, "stress_thread_pool: %s (task %ld, rc %d)\n", what, i, rc);
	atomic_fetch_add(&failures, 1);
}

static void *submitter(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u;
	struct exe_future *window[WINDOW];
	uintptr_t expect[WINDOW];
	bool was_nested[WINDOW];
	long i;
	int n = 0;

	for (i = 0; i < tasks_per_thread; i++) {
		unsigned r = rand_r(&seed);
		uintptr_t x = (uintptr_t)r;
		bool nest = r % 97 == 0;
		int rc;

		rc = exe_pool_submit(pool, nest ? nested : work, (void *)x, &window[n]);
		if (rc) {
			fail("submit", i, rc);
			break;
		}
		expect[n] = x * 2 + 1;
		was_nested[n] = nest;
		if (r % 3 == 0)
			exe_future_on_done(window[n], on_done, NULL);
		if (r % 5 == 0) {
			rc = exe_future_cancel(window[n]);
			if (rc == 0)
				atomic_fetch_add_explicit(&cancelled_ok, 1, memory_order_relaxed);
			else if (rc != -EBUSY && rc != -EALREADY)
				fail("cancel", i, rc);
		}
		if (++n < WINDOW && i + 1 < tasks_per_thread)
			continue;
		for (int k = 0; k < n; k++) {
			void *v = NULL;

			rc = exe_future_result(window[k], &v, EXE_FOREVER);
			if (rc == 0 && (uintptr_t)v == expect[k])
				atomic_fetch_add_explicit(&results_ok, 1, memory_order_relaxed);
			else if (rc != -ECANCELED)
				fail("result", i, rc);
			(void)was_nested[k];
			exe_future_unref(window[k]);
		}
		n = 0;
	}
	return NULL;
}

/* ---- shutdown racing with submitters ---- */

static _Atomic long race_ran;
static _Atomic int race_stop;

static int count_task(void *arg, void **result)
{
	(void)arg;
	(void)result;
	atomic_fetch_add_explicit(&race_ran, 1, memory_order_relaxed);
	return 0;
}

struct racer {
	struct exe_pool *pool;
	long accepted;
};

static void *race_submitter(void *arg)
{
	struct racer *r = arg;

	while (!atomic_load(&race_stop)) {
		int rc = exe_pool_submit(r->pool, count_task, NULL, NULL);

		if (rc == 0)
			r->accepted++;
		else if (rc == -ESHUTDOWN)
			break;
		else
			fail("submit during shutdown", r->accepted, rc);
	}
	return NULL;
}

/* Every submit that returned 0 before, during or after a concurrent
 * shutdown(WAIT) must have run once shutdown returned: none lost. */
static void shutdown_race(int rounds)
{
	for (int round = 0; round < rounds; round++) {
		struct racer r[SUBMITTERS];
		pthread_t t[SUBMITTERS];
		struct exe_pool *p;
		long accepted = 0;

		if (exe_thread_pool_create(&p, &(struct exe_pool_opts){.workers = 2, .name = "race"}))
			fail("create", round, 0);
		atomic_store(&race_ran, 0);
		atomic_store(&race_stop, 0);
		for (int i = 0; i < SUBMITTERS; i++) {
			r[i] = (struct racer){.pool = p};
			pthread_create(&t[i], NULL, race_submitter, &r[i]);
		}
		for (volatile int spin = 0; spin < (round % 7) * 20000; spin++)
			;
		exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT);
		atomic_store(&race_stop, 1);
		for (int i = 0; i < SUBMITTERS; i++) {
			pthread_join(t[i], NULL);
			accepted += r[i].accepted;
		}
		if (atomic_load(&race_ran) != accepted)
			fail("an accepted task did not run before shutdown(WAIT) returned", round,
			     (int)(accepted - atomic_load(&race_ran)));
		exe_pool_destroy(p);
	}
}

int main(void)
{
	struct exe_pool_stats st;
	pthread_t threads[SUBMITTERS];
	long total = 2000000;
	const char *env = getenv("EXE_STRESS_TASKS");
	long nested_extra;

#if defined(EXE_TSAN) || defined(__SANITIZE_ADDRESS__)
	total = 1000000;
#endif
	if (env)
		total = atol(env);
	tasks_per_thread = total / SUBMITTERS;
	if (exe_thread_pool_create(&pool, &(struct exe_pool_opts){.workers = 2, .name = "stress"}))
		return 1;
	for (int t = 0; t < SUBMITTERS; t++)
		pthread_create(&threads[t], NULL, submitter, (void *)(uintptr_t)(t + 1));
	for (int t = 0; t < SUBMITTERS; t++)
		pthread_join(threads[t], NULL);
	exe_pool_shutdown(pool, EXE_SHUTDOWN_WAIT);
	exe_pool_stats(pool, &st);
	exe_pool_destroy(pool);

	/* Every submitted task either ran once or was cancelled before it
	 * started; nested tasks submit one more each. */
	nested_extra = (long)st.submitted - tasks_per_thread * SUBMITTERS;
	if ((long)st.submitted != atomic_load(&executed) + atomic_load(&cancelled_ok))
		fail("submitted != executed + cancelled", (long)st.submitted, 0);
	if ((long)st.completed != atomic_load(&executed))
		fail("completed != executed", (long)st.completed, 0);
	if ((long)st.cancelled != atomic_load(&cancelled_ok))
		fail("cancelled count", (long)st.cancelled, 0);
	if (atomic_load(&results_ok) + atomic_load(&cancelled_ok) != tasks_per_thread * SUBMITTERS)
		fail("results + cancels != tasks", atomic_load(&results_ok), 0);
	shutdown_race(200);
	printf("stress_thread_pool: %ld tasks (+%ld nested), %ld cancelled, %ld callbacks, 200 shutdown races, "
	       "%ld failures\n",
	       tasks_per_thread * SUBMITTERS, nested_extra, atomic_load(&cancelled_ok),
	       atomic_load(&callbacks), atomic_load(&failures));
	return atomic_load(&failures) ? 1 : 0;
}
