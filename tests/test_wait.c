/*
 * test_wait.c - waiting on many futures: exe_wait() and exe_as_completed.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <executor.h>
#include "alloc.h"
#include "future_helpers.h"

TestSuite(wait, .timeout = 60);
TestSuite(as_completed, .timeout = 60);

/* ---- helpers ---- */

/* A thread that performs a script of completions, each after a delay. */
enum action { DO_RESULT, DO_ERROR, DO_CANCEL };

struct step {
	struct exe_future *f;
	long delay_ms;
	enum action what;
	int code;
};

#define MAX_STEPS 16

struct script {
	pthread_t thread;
	struct step steps[MAX_STEPS];
	size_t n;
	int rcs[MAX_STEPS];
};

static void *script_main(void *arg)
{
	struct script *s = arg;
	size_t i;

	for (i = 0; i < s->n; i++) {
		struct step *st = &s->steps[i];

		sleep_ms(st->delay_ms);
		switch (st->what) {
		case DO_RESULT:
			s->rcs[i] = exe_future_set_result(st->f, (void *)(uintptr_t)(i + 1), NULL);
			break;
		case DO_ERROR: s->rcs[i] = exe_future_set_error(st->f, st->code, "step %zu failed", i); break;
		case DO_CANCEL: s->rcs[i] = exe_future_cancel(st->f); break;
		}
	}
	return NULL;
}

static void script_add(struct script *s, struct exe_future *f, long delay_ms, enum action what, int code)
{
	cr_assert_lt(s->n, MAX_STEPS);
	s->steps[s->n++] = (struct step){f, delay_ms, what, code};
}

static void script_start(struct script *s)
{
	cr_assert_eq(pthread_create(&s->thread, NULL, script_main, s), 0);
}

static void script_join(struct script *s)
{
	size_t i;

	cr_assert_eq(pthread_join(s->thread, NULL), 0);
	for (i = 0; i < s->n; i++)
		cr_assert_eq(s->rcs[i], 0, "script step %zu returned %d", i, s->rcs[i]);
}

static int64_t ms_since(int64_t t0)
{
	return (exe_now_ns() - t0) / EXE_NS_PER_MS;
}

/* Pool helpers: a task that blocks its worker until a gate opens. */
struct gate {
	atomic_int entered;
	atomic_int open;
};

static int gate_task(void *arg, void **result)
{
	struct gate *g = arg;
	int i;

	(void)result;
	atomic_store(&g->entered, 1);
	for (i = 0; i < 20000 && !atomic_load(&g->open); i++)
		sleep_ms(1);
	return atomic_load(&g->open) ? 0 : -ETIMEDOUT;
}

static void gate_wait_entered(struct gate *g)
{
	int i;

	for (i = 0; i < 10000 && !atomic_load(&g->entered); i++)
		sleep_ms(1);
	cr_assert(atomic_load(&g->entered), "the gate task never started");
}

struct where {
	pthread_t thread;
	atomic_int runs;
};

static int where_task(void *arg, void **result)
{
	struct where *w = arg;

	w->thread = pthread_self();
	atomic_fetch_add(&w->runs, 1);
	*result = (void *)0x42;
	return 0;
}

static struct exe_pool *pool_of(unsigned workers, bool no_caller_runs)
{
	struct exe_pool_opts o = {.workers = workers, .no_caller_runs = no_caller_runs};
	struct exe_pool *p = NULL;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	return p;
}

/* ---- exe_wait ---- */

Test(wait, all_returns_when_every_future_was_completed_by_other_threads)
{
	struct exe_future *fs[3];
	struct script s = {0};
	int i;

	promises(fs, 3);
	script_add(&s, fs[1], 10, DO_RESULT, 0);
	script_add(&s, fs[0], 10, DO_ERROR, -EIO);
	script_add(&s, fs[2], 10, DO_CANCEL, 0);
	script_start(&s);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_ALL, EXE_FOREVER), 3);
	for (i = 0; i < 3; i++)
		cr_assert(exe_future_is_finished(fs[i]), "future %d not finished", i);
	cr_assert_eq(exe_future_code(fs[0]), -EIO);
	cr_assert_eq(exe_future_code(fs[2]), -ECANCELED);
	script_join(&s);
	unref_all(fs, 3);
}

Test(wait, all_with_a_bound_returns_the_count_when_completed_in_time)
{
	struct exe_future *fs[2];
	struct script s = {0};

	promises(fs, 2);
	script_add(&s, fs[0], 10, DO_RESULT, 0);
	script_add(&s, fs[1], 10, DO_RESULT, 0);
	script_start(&s);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_ALL, 20 * EXE_NS_PER_S), 2);
	script_join(&s);
	unref_all(fs, 2);
}

Test(wait, any_returns_as_soon_as_one_finishes)
{
	struct exe_future *fs[3];
	struct script s = {0};

	promises(fs, 3);
	script_add(&s, fs[1], 20, DO_RESULT, 0);
	script_start(&s);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_ANY, EXE_FOREVER), 1);
	script_join(&s);
	cr_assert_eq(exe_future_state(fs[1]), EXE_FUTURE_DONE);
	cr_assert_eq(exe_future_state(fs[0]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_state(fs[2]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_future_set_result(fs[2], NULL, NULL), 0);
	unref_all(fs, 3);
}

Test(wait, any_counts_a_failure_as_finished)
{
	struct exe_future *fs[2];
	struct script s = {0};

	promises(fs, 2);
	script_add(&s, fs[0], 20, DO_ERROR, -EIO);
	script_start(&s);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_ANY, 20 * EXE_NS_PER_S), 1);
	script_join(&s);
	cr_assert_eq(exe_future_state(fs[1]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_cancel(fs[1]), 0);
	unref_all(fs, 2);
}

Test(wait, first_error_returns_on_the_first_failure)
{
	struct exe_future *fs[3];
	struct script s = {0};

	promises(fs, 3);
	script_add(&s, fs[0], 10, DO_RESULT, 0);
	script_add(&s, fs[1], 10, DO_ERROR, -ENOENT);
	script_start(&s);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_FIRST_ERROR, EXE_FOREVER), 2);
	script_join(&s);
	cr_assert_eq(exe_future_code(fs[1]), -ENOENT);
	cr_assert_eq(exe_future_state(fs[2]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_result(fs[2], NULL, NULL), 0);
	unref_all(fs, 3);
}

Test(wait, first_error_does_not_return_on_a_success_alone)
{
	struct exe_future *fs[2];

	promises(fs, 2);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_FIRST_ERROR, 0), -ETIMEDOUT);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_FIRST_ERROR, 20 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_eq(exe_future_set_error(fs[1], -EIO, NULL), 0);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_FIRST_ERROR, 0), 2);
	unref_all(fs, 2);
}

/* Python's FIRST_EXCEPTION: a cancelled future is not an exception. */
Test(wait, first_error_does_not_count_a_cancel_as_an_error)
{
	struct exe_future *fs[3];
	struct script s = {0};

	promises(fs, 3);
	script_add(&s, fs[2], 20, DO_CANCEL, 0);
	script_start(&s);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_FIRST_ERROR, 200 * EXE_NS_PER_MS), -ETIMEDOUT);
	script_join(&s);
	cr_assert_eq(exe_future_state(fs[2]), EXE_FUTURE_CANCELLED);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_FIRST_ERROR, 0), -ETIMEDOUT);
	cr_assert_eq(exe_future_set_error(fs[1], -EIO, NULL), 0);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_FIRST_ERROR, 0), 2, "a failure ends it");
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	unref_all(fs, 3);
}

Test(wait, first_error_returns_when_all_finished_with_only_cancels)
{
	struct exe_future *fs[2];

	promises(fs, 2);
	cr_assert_eq(exe_future_cancel(fs[0]), 0);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_FIRST_ERROR, 0), -ETIMEDOUT);
	cr_assert_eq(exe_future_cancel(fs[1]), 0);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_FIRST_ERROR, 0), 2);
	unref_all(fs, 2);
}

Test(wait, first_error_without_failures_waits_for_all)
{
	struct exe_future *fs[3];
	struct script s = {0};
	int i;

	promises(fs, 3);
	script_add(&s, fs[0], 10, DO_RESULT, 0);
	script_add(&s, fs[2], 10, DO_RESULT, 0);
	script_add(&s, fs[1], 10, DO_RESULT, 0);
	script_start(&s);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_FIRST_ERROR, EXE_FOREVER), 3);
	for (i = 0; i < 3; i++)
		cr_assert_eq(exe_future_state(fs[i]), EXE_FUTURE_DONE);
	script_join(&s);
	unref_all(fs, 3);
}

Test(wait, timeout_returns_etimedout_and_changes_nothing)
{
	struct exe_future *fs[3];
	int64_t t0;

	promises(fs, 3);
	cr_assert_eq(exe_future_set_result(fs[0], (void *)1, NULL), 0);
	t0 = exe_now_ns();
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_ALL, 30 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_geq(ms_since(t0), 30, "returned before its bound");
	cr_assert_eq(exe_wait(fs + 1, 2, EXE_WAIT_ANY, 10 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_FIRST_ERROR, 10 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_eq(exe_future_state(fs[0]), EXE_FUTURE_DONE);
	cr_assert_eq(exe_future_state(fs[1]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_state(fs[2]), EXE_FUTURE_PENDING);
	cr_assert_not(exe_future_cancel_requested(fs[1]));
	/* The abandoned waits left nothing behind that could misfire. */
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	cr_assert_eq(exe_future_set_error(fs[2], -EIO, NULL), 0);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_ALL, 0), 3);
	unref_all(fs, 3);
}

Test(wait, timeout_zero_polls)
{
	struct exe_future *fs[2];

	promises(fs, 2);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_ALL, 0), -ETIMEDOUT);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_ANY, 0), -ETIMEDOUT);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_FIRST_ERROR, 0), -ETIMEDOUT);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_ANY, 0), 1);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_ALL, 0), -ETIMEDOUT);
	cr_assert_eq(exe_future_state(fs[0]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_cancel(fs[0]), 0);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_ALL, 0), 2);
	unref_all(fs, 2);
}

struct bg_wait {
	pthread_t thread;
	struct exe_future **fs;
	size_t n;
	enum exe_wait_mode mode;
	int64_t timeout_ns;
	atomic_int started;
	int rc;
	int64_t took_ms;
};

static void *bg_wait_main(void *arg)
{
	struct bg_wait *b = arg;
	int64_t t0 = exe_now_ns();

	atomic_store(&b->started, 1);
	b->rc = exe_wait(b->fs, b->n, b->mode, b->timeout_ns);
	b->took_ms = ms_since(t0);
	return NULL;
}

static void bg_wait_start(struct bg_wait *b)
{
	b->rc = 1;
	atomic_init(&b->started, 0);
	cr_assert_eq(pthread_create(&b->thread, NULL, bg_wait_main, b), 0);
	while (!atomic_load(&b->started))
		sleep_ms(1);
	sleep_ms(20); /* let it go to sleep */
}

Test(wait, cancellation_wakes_a_waiter_at_once)
{
	struct exe_future *fs[2];
	struct bg_wait b;

	promises(fs, 2);
	b = (struct bg_wait){.fs = fs, .n = 2, .mode = EXE_WAIT_ANY, .timeout_ns = 30 * EXE_NS_PER_S};
	bg_wait_start(&b);
	cr_assert_eq(b.rc, 1, "the wait returned before anything finished");
	cr_assert_eq(exe_future_cancel(fs[1]), 0);
	cr_assert_eq(pthread_join(b.thread, NULL), 0);
	cr_assert_eq(b.rc, 1);
	cr_assert_lt(b.took_ms, 15000, "woken by the cancel, not by its 30 s bound (took %lld ms)",
	             (long long)b.took_ms);
	cr_assert_eq(exe_future_state(fs[0]), EXE_FUTURE_PENDING);
	unref_all(fs, 2);
}

Test(wait, cancellation_wakes_an_all_waiter_when_it_is_the_last)
{
	struct exe_future *fs[2];
	struct bg_wait b;

	promises(fs, 2);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	b = (struct bg_wait){.fs = fs, .n = 2, .mode = EXE_WAIT_ALL, .timeout_ns = 30 * EXE_NS_PER_S};
	bg_wait_start(&b);
	cr_assert_eq(exe_future_cancel(fs[1]), 0);
	cr_assert_eq(pthread_join(b.thread, NULL), 0);
	cr_assert_eq(b.rc, 2);
	cr_assert_lt(b.took_ms, 15000, "took %lld ms", (long long)b.took_ms);
	unref_all(fs, 2);
}

Test(wait, duplicates_are_waited_for_and_counted_once)
{
	struct exe_future *a = promise(), *b = promise();
	struct exe_future *fs[4] = {a, a, b, a};
	struct script s = {0};

	cr_assert_eq(exe_future_set_result(a, NULL, NULL), 0);
	cr_assert_eq(exe_wait(fs, 4, EXE_WAIT_ANY, 0), 1, "one distinct future finished");
	cr_assert_eq(exe_wait(fs, 4, EXE_WAIT_ALL, 0), -ETIMEDOUT);
	script_add(&s, b, 20, DO_RESULT, 0);
	script_start(&s);
	cr_assert_eq(exe_wait(fs, 4, EXE_WAIT_ALL, EXE_FOREVER), 2);
	script_join(&s);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_ALL, 0), 1, "{a, a} is one future");
	exe_future_unref(a);
	exe_future_unref(b);
}

/* Past 64 futures the count uses a hash set: still once per distinct one. */
Test(wait, a_big_wait_for_all_counts_duplicates_once)
{
	enum { DISTINCT = 150 };
	struct exe_future *d[DISTINCT], *fs[3 * DISTINCT];

	for (int i = 0; i < DISTINCT; i++) {
		d[i] = promise();
		cr_assert_eq(exe_future_set_result(d[i], NULL, NULL), 0);
	}
	for (int i = 0; i < 3 * DISTINCT; i++)
		fs[i] = d[(i * 7) % DISTINCT];
	cr_assert_eq(exe_wait(fs, 3 * DISTINCT, EXE_WAIT_ALL, EXE_FOREVER), DISTINCT);
	cr_assert_eq(exe_wait(fs, 3 * DISTINCT, EXE_WAIT_ALL, 0), DISTINCT);
	cr_assert_eq(exe_wait(fs, 3 * DISTINCT, EXE_WAIT_ANY, 0), DISTINCT);
	unref_all(d, DISTINCT);
}

Test(wait, duplicates_of_a_pending_future_are_woken_together)
{
	struct exe_future *a = promise();
	struct exe_future *fs[3] = {a, a, a};
	struct script s = {0};

	script_add(&s, a, 20, DO_CANCEL, 0);
	script_start(&s);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_ALL, 20 * EXE_NS_PER_S), 1);
	script_join(&s);
	exe_future_unref(a);
}

Test(wait, null_entries_and_bad_arguments_return_einval)
{
	struct exe_future *a = promise();
	struct exe_future *fs[3] = {a, NULL, a};

	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_ALL, 0), -EINVAL);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_ANY, EXE_FOREVER), -EINVAL, "checked before waiting");
	cr_assert_eq(exe_wait(NULL, 2, EXE_WAIT_ALL, 0), -EINVAL);
	cr_assert_eq(exe_wait(fs, 1, (enum exe_wait_mode)7, 0), -EINVAL);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_PENDING);
	exe_future_unref(a);
}

Test(wait, an_empty_array_returns_zero_at_once_in_every_mode)
{
	cr_assert_eq(exe_wait(NULL, 0, EXE_WAIT_ALL, EXE_FOREVER), 0);
	cr_assert_eq(exe_wait(NULL, 0, EXE_WAIT_FIRST_ERROR, EXE_FOREVER), 0);
	cr_assert_eq(exe_wait(NULL, 0, EXE_WAIT_ANY, 10 * EXE_NS_PER_S), 0,
	             "nothing can ever finish: no waiting");
	cr_assert_eq(exe_wait(NULL, 0, EXE_WAIT_ANY, 0), 0);
}

Test(wait, allocation_failure_returns_enomem_and_changes_nothing)
{
	struct exe_future *fs[2];
	long k;
	int rc;

	promises(fs, 2);
	/* ANY registers a callback on each future (ALL waits on each in turn
	 * and allocates nothing). */
	for (k = 0; k < 2; k++) {
		exe__alloc_fail_after(k);
		rc = exe_wait(fs, 2, EXE_WAIT_ANY, 10 * EXE_NS_PER_MS);
		exe__alloc_fail_after(-1);
		cr_assert_eq(rc, -ENOMEM, "failing after %ld allocations gave %d", k, rc);
	}
	cr_assert_eq(exe_future_state(fs[0]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	exe__alloc_fail_after(0);
	rc = exe_wait(fs, 2, EXE_WAIT_ALL, 10 * EXE_NS_PER_MS);
	exe__alloc_fail_after(-1);
	cr_assert_eq(rc, 2, "an already-met condition needs no memory");
	unref_all(fs, 2);
}

#define MANY 32
#define MANY_THREADS 4

struct many_arg {
	struct exe_future **fs;
	int t;
};

static void *many_main(void *arg)
{
	struct many_arg *m = arg;
	int i;

	for (i = m->t; i < MANY; i += MANY_THREADS) {
		if (i % 3 == 0)
			sleep_ms(1);
		if (i % 5 == 0)
			exe_future_cancel(m->fs[i]);
		else
			exe_future_set_result(m->fs[i], NULL, NULL);
	}
	return NULL;
}

Test(wait, all_over_many_futures_completed_by_several_threads)
{
	struct exe_future *fs[MANY];
	struct many_arg args[MANY_THREADS];
	pthread_t th[MANY_THREADS];
	int round, t, i;

	for (round = 0; round < 50; round++) {
		promises(fs, MANY);
		for (t = 0; t < MANY_THREADS; t++) {
			args[t] = (struct many_arg){fs, t};
			cr_assert_eq(pthread_create(&th[t], NULL, many_main, &args[t]), 0);
		}
		cr_assert_eq(exe_wait(fs, MANY, EXE_WAIT_ALL, 20 * EXE_NS_PER_S), MANY);
		for (i = 0; i < MANY; i++)
			cr_assert(exe_future_is_finished(fs[i]));
		for (t = 0; t < MANY_THREADS; t++)
			cr_assert_eq(pthread_join(th[t], NULL), 0);
		unref_all(fs, MANY);
	}
}

Test(wait, mixes_pool_tasks_and_promises)
{
	struct exe_pool *p = pool_of(2, true);
	struct where w = {0};
	struct exe_future *fs[2] = {NULL, promise()};
	struct script s = {0};

	cr_assert_eq(exe_pool_submit(p, where_task, &w, &fs[0]), 0);
	script_add(&s, fs[1], 10, DO_RESULT, 0);
	script_start(&s);
	cr_assert_eq(exe_wait(fs, 2, EXE_WAIT_ALL, EXE_FOREVER), 2);
	script_join(&s);
	cr_assert_eq(atomic_load(&w.runs), 1);
	exe_pool_destroy(p);
	unref_all(fs, 2);
}

Test(wait, an_infinite_wait_runs_a_queued_task_on_the_caller_when_the_worker_is_busy)
{
	struct exe_pool *p = pool_of(1, false);
	struct exe_future *blocker = NULL, *f = NULL;
	struct gate g = {0};
	struct where w = {0};
	void *v = NULL;

	cr_assert_eq(exe_pool_submit(p, gate_task, &g, &blocker), 0);
	gate_wait_entered(&g);
	cr_assert_eq(exe_pool_submit(p, where_task, &w, &f), 0);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_wait(&f, 1, EXE_WAIT_ALL, 50 * EXE_NS_PER_MS), -ETIMEDOUT,
	             "a bounded wait never runs the task itself");
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_wait(&f, 1, EXE_WAIT_ALL, EXE_FOREVER), 1);
	cr_assert_eq(atomic_load(&w.runs), 1);
	cr_assert(pthread_equal(w.thread, pthread_self()), "the waiting thread ran the task");
	cr_assert_eq(exe_future_result(f, &v, 0), 0);
	cr_assert_eq(v, (void *)0x42);
	cr_assert_eq(exe_future_state(blocker), EXE_FUTURE_RUNNING);
	atomic_store(&g.open, 1);
	cr_assert_eq(exe_future_result(blocker, NULL, EXE_FOREVER), 0);
	exe_future_unref(f);
	exe_future_unref(blocker);
	exe_pool_destroy(p);
}

Test(wait, future_wait_forever_also_runs_the_queued_task_on_the_caller)
{
	struct exe_pool *p = pool_of(1, false);
	struct exe_future *blocker = NULL, *f = NULL;
	struct gate g = {0};
	struct where w = {0};

	cr_assert_eq(exe_pool_submit(p, gate_task, &g, &blocker), 0);
	gate_wait_entered(&g);
	cr_assert_eq(exe_pool_submit(p, where_task, &w, &f), 0);
	cr_assert_eq(exe_future_wait(f, EXE_FOREVER), 0);
	cr_assert(pthread_equal(w.thread, pthread_self()));
	atomic_store(&g.open, 1);
	exe_future_unref(f);
	exe_future_unref(blocker);
	exe_pool_destroy(p);
}

Test(wait, with_no_caller_runs_the_task_waits_for_the_worker)
{
	struct exe_pool *p = pool_of(1, true);
	struct exe_future *blocker = NULL, *f = NULL;
	struct gate g = {0};
	struct where w = {0};
	struct bg_wait b;

	cr_assert_eq(exe_pool_submit(p, gate_task, &g, &blocker), 0);
	gate_wait_entered(&g);
	cr_assert_eq(exe_pool_submit(p, where_task, &w, &f), 0);
	b = (struct bg_wait){.fs = &f, .n = 1, .mode = EXE_WAIT_ALL, .timeout_ns = EXE_FOREVER};
	bg_wait_start(&b);
	cr_assert_eq(b.rc, 1, "the waiter returned while the only worker was busy");
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_PENDING);
	cr_assert_eq(atomic_load(&w.runs), 0);
	atomic_store(&g.open, 1);
	cr_assert_eq(pthread_join(b.thread, NULL), 0);
	cr_assert_eq(b.rc, 1);
	cr_assert_eq(atomic_load(&w.runs), 1);
	cr_assert_not(pthread_equal(w.thread, b.thread), "ran on the worker, not the waiter");
	exe_future_unref(f);
	exe_future_unref(blocker);
	exe_pool_destroy(p);
}

/* ---- exe_as_completed ---- */

static struct exe_as_completed *iter(struct exe_future *const *fs, size_t n)
{
	struct exe_as_completed *it = NULL;

	cr_assert_eq(exe_as_completed_create(&it, fs, n), 0);
	cr_assert_not_null(it);
	return it;
}

Test(as_completed, yields_in_finish_order_then_returns_epipe)
{
	struct exe_future *fs[3], *f = NULL;
	struct exe_as_completed *it;
	struct script s = {0};

	promises(fs, 3);
	it = iter(fs, 3);
	script_add(&s, fs[2], 10, DO_RESULT, 0);
	script_add(&s, fs[0], 10, DO_ERROR, -EIO);
	script_add(&s, fs[1], 10, DO_RESULT, 0);
	script_start(&s);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, fs[2]);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, fs[0]);
	cr_assert_eq(exe_future_code(f), -EIO);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, fs[1]);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), -EPIPE);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), -EPIPE, "stays at the end");
	script_join(&s);
	exe_as_completed_destroy(it);
	unref_all(fs, 3);
}

Test(as_completed, yields_futures_completed_before_the_call_in_finish_order)
{
	struct exe_future *fs[3], *f = NULL;
	struct exe_as_completed *it;

	promises(fs, 3);
	it = iter(fs, 3);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	cr_assert_eq(exe_future_set_result(fs[2], NULL, NULL), 0);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, fs[1]);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, fs[2]);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, fs[0]);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), -EPIPE);
	exe_as_completed_destroy(it);
	unref_all(fs, 3);
}

Test(as_completed, yields_each_distinct_future_once)
{
	struct exe_future *a = promise(), *b = promise(), *f = NULL;
	struct exe_future *fs[5] = {a, b, a, a, b};
	struct exe_as_completed *it = iter(fs, 5);
	int seen_a = 0, seen_b = 0;

	cr_assert_eq(exe_future_set_result(b, NULL, NULL), 0);
	cr_assert_eq(exe_future_set_result(a, NULL, NULL), 0);
	while (exe_as_completed_next(it, &f, EXE_FOREVER) == 0) {
		seen_a += f == a;
		seen_b += f == b;
	}
	cr_assert_eq(seen_a, 1);
	cr_assert_eq(seen_b, 1);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), -EPIPE);
	exe_as_completed_destroy(it);
	exe_future_unref(a);
	exe_future_unref(b);
}

Test(as_completed, returns_etimedout_when_its_wait_runs_out_then_keeps_working)
{
	struct exe_future *fs[2], *f = NULL;
	struct exe_as_completed *it;
	struct script s = {0};
	int64_t t0 = exe_now_ns();

	promises(fs, 2);
	it = iter(fs, 2);
	cr_assert_eq(exe_as_completed_next(it, &f, 30 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_geq(ms_since(t0), 30, "returned before the deadline");
	cr_assert_eq(exe_future_state(fs[0]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_state(fs[1]), EXE_FUTURE_PENDING);
	script_add(&s, fs[1], 20, DO_RESULT, 0);
	script_add(&s, fs[0], 10, DO_RESULT, 0);
	script_start(&s);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0, "a later call waits without a bound");
	cr_assert_eq(f, fs[1]);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, fs[0]);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), -EPIPE);
	script_join(&s);
	exe_as_completed_destroy(it);
	unref_all(fs, 2);
}

Test(as_completed, timeout_zero_yields_what_is_finished_then_times_out)
{
	struct exe_future *fs[2], *f = NULL;
	struct exe_as_completed *it;

	promises(fs, 2);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	it = iter(fs, 2);
	cr_assert_eq(exe_as_completed_next(it, &f, 0), 0);
	cr_assert_eq(f, fs[1]);
	cr_assert_eq(exe_as_completed_next(it, &f, 0), -ETIMEDOUT);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, fs[0]);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), -EPIPE);
	exe_as_completed_destroy(it);
	unref_all(fs, 2);
}

Test(as_completed, a_cancel_is_yielded)
{
	struct exe_future *fs[2], *f = NULL;
	struct exe_as_completed *it;
	struct script s = {0};

	promises(fs, 2);
	it = iter(fs, 2);
	script_add(&s, fs[1], 20, DO_CANCEL, 0);
	script_start(&s);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, fs[1]);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_CANCELLED);
	script_join(&s);
	cr_assert_eq(exe_future_state(fs[0]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, fs[0]);
	exe_as_completed_destroy(it);
	unref_all(fs, 2);
}

Test(as_completed, destroy_before_all_finished_leaves_the_futures_usable)
{
	struct exe_future *fs[3], *f = NULL;
	struct exe_as_completed *it;
	int x = 3;
	void *v = NULL;

	promises(fs, 3);
	it = iter(fs, 3);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, fs[0]);
	exe_as_completed_destroy(it);
	cr_assert_eq(exe_future_state(fs[1]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_result(fs[1], &x, NULL), 0);
	cr_assert_eq(exe_future_cancel(fs[2]), 0);
	cr_assert_eq(exe_future_result(fs[1], &v, 0), 0);
	cr_assert_eq(v, &x);
	unref_all(fs, 3);
}

Test(as_completed, destroy_without_next_and_unref_of_pending_futures_does_not_leak)
{
	struct exe_future *fs[2];
	struct exe_as_completed *it;

	promises(fs, 2);
	it = iter(fs, 2);
	exe_as_completed_destroy(it);
	unref_all(fs, 2);
}

Test(as_completed, holds_a_reference_on_every_future)
{
	struct exe_future *a = promise(), *b = promise(), *f = NULL;
	struct exe_future *fs[2] = {a, b};
	struct exe_as_completed *it = iter(fs, 2);

	cr_assert_eq(exe_future_set_error(a, -EIO, "kept"), 0);
	exe_future_unref(a);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, a);
	cr_assert_str_eq(exe_future_error(f), "kept");
	cr_assert_eq(exe_future_set_result(b, NULL, NULL), 0);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(f, b);
	exe_as_completed_destroy(it);
	exe_future_unref(b);
}

struct destroy_race {
	struct exe_future **fs;
	size_t n;
};

static void *finish_all_main(void *arg)
{
	struct destroy_race *d = arg;
	size_t i;

	for (i = 0; i < d->n; i++) {
		if (i % 2)
			exe_future_cancel(d->fs[i]);
		else
			exe_future_set_result(d->fs[i], NULL, NULL);
	}
	return NULL;
}

Test(as_completed, destroy_racing_with_completions_is_safe)
{
	struct exe_future *fs[6], *f = NULL;
	struct destroy_race d = {fs, 6};
	pthread_t th;
	int round;

	for (round = 0; round < 300; round++) {
		struct exe_as_completed *it;

		promises(fs, 6);
		it = iter(fs, 6);
		cr_assert_eq(pthread_create(&th, NULL, finish_all_main, &d), 0);
		if (round % 3 == 0)
			cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
		exe_as_completed_destroy(it);
		cr_assert_eq(pthread_join(th, NULL), 0);
		unref_all(fs, 6);
	}
}

Test(as_completed, bad_arguments_return_einval)
{
	struct exe_future *a = promise(), *f = NULL;
	struct exe_future *fs[2] = {a, NULL};
	struct exe_as_completed *it = (struct exe_as_completed *)&it;

	cr_assert_eq(exe_as_completed_create(NULL, fs, 1), -EINVAL);
	cr_assert_eq(exe_as_completed_create(&it, fs, 2), -EINVAL);
	cr_assert_eq(exe_as_completed_create(&it, NULL, 1), -EINVAL);
	cr_assert_eq(it, (struct exe_as_completed *)&it, "*out untouched on failure");
	cr_assert_eq(exe_as_completed_next(NULL, &f, 0), -EINVAL);
	it = iter(fs, 1);
	cr_assert_eq(exe_as_completed_next(it, NULL, 0), -EINVAL);
	exe_as_completed_destroy(it);
	exe_as_completed_destroy(NULL);
	exe_future_unref(a);
}

Test(as_completed, an_empty_iterator_ends_at_once)
{
	struct exe_as_completed *it = iter(NULL, 0);
	struct exe_future *f = NULL;

	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), -EPIPE);
	cr_assert_null(f);
	exe_as_completed_destroy(it);
}

Test(as_completed, allocation_failure_in_create_returns_enomem_without_leaks)
{
	struct exe_future *fs[2], *f = NULL;
	struct exe_as_completed *it = NULL;
	long k;
	int rc;

	promises(fs, 2);
	for (k = 0; k < 5; k++) {
		exe__alloc_fail_after(k);
		rc = exe_as_completed_create(&it, fs, 2);
		exe__alloc_fail_after(-1);
		cr_assert_eq(rc, -ENOMEM, "failing after %ld allocations gave %d", k, rc);
	}
	it = iter(fs, 2);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), 0);
	cr_assert_eq(exe_as_completed_next(it, &f, EXE_FOREVER), -EPIPE);
	exe_as_completed_destroy(it);
	unref_all(fs, 2);
}

Test(as_completed, without_a_deadline_runs_a_queued_task_on_the_caller_when_the_worker_is_busy)
{
	struct exe_pool *p = pool_of(1, false);
	struct exe_future *blocker = NULL, *f = NULL, *got = NULL;
	struct exe_as_completed *it;
	struct gate g = {0};
	struct where w = {0};

	cr_assert_eq(exe_pool_submit(p, gate_task, &g, &blocker), 0);
	gate_wait_entered(&g);
	cr_assert_eq(exe_pool_submit(p, where_task, &w, &f), 0);
	it = iter(&f, 1);
	cr_assert_eq(exe_as_completed_next(it, &got, EXE_FOREVER), 0);
	cr_assert_eq(got, f);
	cr_assert(pthread_equal(w.thread, pthread_self()));
	exe_as_completed_destroy(it);
	atomic_store(&g.open, 1);
	exe_future_unref(f);
	exe_future_unref(blocker);
	exe_pool_destroy(p);
}
