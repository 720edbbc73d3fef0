/*
 * test_compose.c - futures built from futures: then, all, any.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <executor.h>
#include "alloc.h"
#include "future_helpers.h"

TestSuite(then, .timeout = 60);
TestSuite(all, .timeout = 30);
TestSuite(any, .timeout = 30);

/* ---- helpers ---- */

static struct exe_pool *pool_of(unsigned workers)
{
	struct exe_pool_opts o = {.workers = workers};
	struct exe_pool *p = NULL;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	return p;
}

/* A continuation that records its call and adds @add to the value. */
struct step {
	atomic_int calls;
	pthread_t thread;
	struct exe_future *prev_seen;
	enum exe_future_state prev_state;
	intptr_t add;
	intptr_t mul;
	int fail;             /* non-zero: return this code */
	const char *fail_msg; /* with exe_task_set_error() */
};

static int step_fn(struct exe_future *prev, void *arg, void **result)
{
	struct step *s = arg;
	void *in = NULL;

	s->thread = pthread_self();
	s->prev_seen = prev;
	s->prev_state = exe_future_state(prev);
	atomic_fetch_add(&s->calls, 1);
	if (s->fail) {
		if (s->fail_msg)
			return exe_task_set_error(s->fail, "%s", s->fail_msg);
		return s->fail;
	}
	if (exe_future_result(prev, &in, 0) != 0)
		return -EPROTO;
	*result = (void *)(((intptr_t)in + s->add) * (s->mul ? s->mul : 1));
	return 0;
}

static intptr_t value_of(struct exe_future *f)
{
	void *v = (void *)-1;

	cr_assert_eq(exe_future_result(f, &v, 20 * EXE_NS_PER_S), 0, "code %d (%s)", exe_future_code(f),
	             exe_future_error(f) ? exe_future_error(f) : "-");
	return (intptr_t)v;
}

/* ---- then ---- */

Test(then, on_a_pool_runs_the_continuation_on_a_worker_after_success)
{
	struct exe_pool *p = pool_of(1);
	struct exe_future *src = promise(), *d = NULL;
	struct step s = {.add = 1};

	cr_assert_eq(exe_future_then(src, p, step_fn, &s, &d), 0);
	cr_assert_not_null(d);
	cr_assert_neq(d, src);
	cr_assert_eq(exe_future_state(d), EXE_FUTURE_PENDING);
	sleep_ms(10);
	cr_assert_eq(atomic_load(&s.calls), 0, "ran before its source finished");
	cr_assert_eq(exe_future_set_result(src, (void *)41, NULL), 0);
	cr_assert_eq(value_of(d), 42);
	cr_assert_eq(atomic_load(&s.calls), 1);
	cr_assert_eq(s.prev_seen, src);
	cr_assert_eq(s.prev_state, EXE_FUTURE_DONE);
	cr_assert_not(pthread_equal(s.thread, pthread_self()), "ran on the pool");
	exe_pool_destroy(p);
	exe_future_unref(d);
	exe_future_unref(src);
}

Test(then, with_pool_null_runs_inline_on_the_completing_thread)
{
	struct exe_future *src = promise(), *d = NULL;
	struct step s = {.add = 2};

	cr_assert_eq(exe_future_then(src, NULL, step_fn, &s, &d), 0);
	cr_assert_eq(atomic_load(&s.calls), 0);
	cr_assert_eq(exe_future_set_result(src, (void *)5, NULL), 0);
	cr_assert_eq(atomic_load(&s.calls), 1, "ran inside set_result");
	cr_assert(pthread_equal(s.thread, pthread_self()));
	cr_assert_eq(exe_future_state(d), EXE_FUTURE_DONE);
	cr_assert_eq(value_of(d), 7);
	exe_future_unref(d);
	exe_future_unref(src);
}

Test(then, on_an_already_done_future_with_pool_null_runs_before_returning)
{
	struct exe_future *src = promise(), *d = NULL;
	struct step s = {.mul = 3};

	cr_assert_eq(exe_future_set_result(src, (void *)4, NULL), 0);
	cr_assert_eq(exe_future_then(src, NULL, step_fn, &s, &d), 0);
	cr_assert_eq(atomic_load(&s.calls), 1);
	cr_assert_eq(exe_future_state(d), EXE_FUTURE_DONE);
	cr_assert_eq(value_of(d), 12);
	exe_future_unref(src);
	exe_future_unref(d);
}

static void *complete_later(void *arg)
{
	sleep_ms(10);
	exe_future_set_result(arg, (void *)100, NULL);
	return NULL;
}

Test(then, with_pool_null_runs_on_the_thread_that_completes_the_source)
{
	struct exe_future *src = promise(), *d = NULL;
	struct step s = {.add = 1};
	pthread_t th;

	cr_assert_eq(exe_future_then(src, NULL, step_fn, &s, &d), 0);
	cr_assert_eq(pthread_create(&th, NULL, complete_later, src), 0);
	cr_assert_eq(value_of(d), 101);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert(pthread_equal(s.thread, th));
	exe_future_unref(d);
	exe_future_unref(src);
}

static void check_error_flows(struct exe_pool *p)
{
	struct exe_future *src = promise(), *d = NULL;
	struct step s = {.add = 1};

	cr_assert_eq(exe_future_then(src, p, step_fn, &s, &d), 0);
	cr_assert_eq(exe_future_set_error(src, -EIO, "disk %d failed", 7), 0);
	cr_assert_eq(exe_future_result(d, NULL, 20 * EXE_NS_PER_S), -EIO);
	cr_assert_eq(exe_future_state(d), EXE_FUTURE_FAILED);
	cr_assert_str_eq(exe_future_error(d), "disk 7 failed");
	cr_assert_eq(atomic_load(&s.calls), 0, "the continuation must not run");
	exe_future_unref(d);
	exe_future_unref(src);
}

Test(then, a_failure_flows_through_with_the_same_code_and_message_inline)
{
	check_error_flows(NULL);
}

Test(then, a_failure_flows_through_with_the_same_code_and_message_on_a_pool)
{
	struct exe_pool *p = pool_of(1);

	check_error_flows(p);
	exe_pool_destroy(p);
}

Test(then, a_failure_without_message_keeps_the_generic_text)
{
	struct exe_future *src = promise(), *d = NULL;
	struct step s = {0};

	cr_assert_eq(exe_future_then(src, NULL, step_fn, &s, &d), 0);
	cr_assert_eq(exe_future_set_error(src, ENOENT, NULL), 0);
	cr_assert_eq(exe_future_code(d), -ENOENT);
	cr_assert_str_eq(exe_future_error(d), exe_future_error(src));
	exe_future_unref(d);
	exe_future_unref(src);
}

Test(then, a_failing_continuation_fails_the_derived_future)
{
	struct exe_pool *p = pool_of(1);
	struct exe_future *src = promise(), *d1 = NULL, *d2 = NULL, *d3 = NULL;
	struct step plain = {.fail = -ENOSPC}, positive = {.fail = ENOSPC},
		    msg = {.fail = -EACCES, .fail_msg = "no entry for user 12"};

	cr_assert_eq(exe_future_then(src, NULL, step_fn, &plain, &d1), 0);
	cr_assert_eq(exe_future_then(src, p, step_fn, &positive, &d2), 0);
	cr_assert_eq(exe_future_then(src, p, step_fn, &msg, &d3), 0);
	cr_assert_eq(exe_future_set_result(src, NULL, NULL), 0);
	cr_assert_eq(exe_future_result(d1, NULL, 20 * EXE_NS_PER_S), -ENOSPC);
	cr_assert_eq(exe_future_result(d2, NULL, 20 * EXE_NS_PER_S), -ENOSPC, "a positive code is negated");
	cr_assert_eq(exe_future_result(d3, NULL, 20 * EXE_NS_PER_S), -EACCES);
	cr_assert_str_eq(exe_future_error(d3), "no entry for user 12");
	cr_assert_eq(exe_future_state(src), EXE_FUTURE_DONE, "the source is not affected");
	exe_pool_destroy(p);
	exe_future_unref(d1);
	exe_future_unref(d2);
	exe_future_unref(d3);
	exe_future_unref(src);
}

Test(then, cancel_of_the_source_cancels_the_derived_future)
{
	struct exe_pool *p = pool_of(1);
	struct exe_future *src = promise(), *d1 = NULL, *d2 = NULL;
	struct step s = {0};

	cr_assert_eq(exe_future_then(src, NULL, step_fn, &s, &d1), 0);
	cr_assert_eq(exe_future_then(src, p, step_fn, &s, &d2), 0);
	cr_assert_eq(exe_future_cancel(src), 0);
	cr_assert_eq(exe_future_state(d1), EXE_FUTURE_CANCELLED);
	cr_assert_eq(exe_future_state(d2), EXE_FUTURE_CANCELLED, "cancelled at once, not via the pool");
	cr_assert_eq(exe_future_result(d2, NULL, 0), -ECANCELED);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&s.calls), 0);
	exe_future_unref(d1);
	exe_future_unref(d2);
	exe_future_unref(src);
}

static void check_cancel_derived_first(struct exe_pool *p)
{
	struct exe_future *src = promise(), *d = NULL;
	struct step s = {0};
	void *v = NULL;

	cr_assert_eq(exe_future_then(src, p, step_fn, &s, &d), 0);
	cr_assert_eq(exe_future_cancel(d), 0);
	cr_assert_eq(exe_future_state(d), EXE_FUTURE_CANCELLED);
	cr_assert_eq(exe_future_state(src), EXE_FUTURE_PENDING, "the source is left alone");
	cr_assert_eq(exe_future_set_result(src, (void *)9, NULL), 0);
	if (p)
		exe_pool_destroy(p); /* every task the pool got has run */
	cr_assert_eq(atomic_load(&s.calls), 0, "the continuation must not start");
	cr_assert_eq(exe_future_state(d), EXE_FUTURE_CANCELLED);
	cr_assert_eq(exe_future_result(src, &v, 0), 0);
	cr_assert_eq(v, (void *)9);
	exe_future_unref(d);
	exe_future_unref(src);
}

Test(then, cancelling_the_derived_future_first_prevents_the_continuation_inline)
{
	check_cancel_derived_first(NULL);
}

Test(then, cancelling_the_derived_future_first_prevents_the_continuation_on_a_pool)
{
	check_cancel_derived_first(pool_of(1));
}

/* A task that holds the only worker until its gate opens. */
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

Test(then, cancelling_the_derived_future_while_its_continuation_is_queued_prevents_it)
{
	struct exe_pool_opts o = {.workers = 1, .no_caller_runs = true};
	struct exe_pool *p = NULL;
	struct exe_future *blocker = NULL, *src = promise(), *d = NULL;
	struct gate g = {0};
	struct step s = {0};
	int i;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	cr_assert_eq(exe_pool_submit(p, gate_task, &g, &blocker), 0);
	for (i = 0; i < 10000 && !atomic_load(&g.entered); i++)
		sleep_ms(1);
	cr_assert(atomic_load(&g.entered));
	cr_assert_eq(exe_future_then(src, p, step_fn, &s, &d), 0);
	cr_assert_eq(exe_future_set_result(src, NULL, NULL), 0); /* continuation queued */
	cr_assert_eq(exe_future_state(d), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_cancel(d), 0);
	atomic_store(&g.open, 1);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&s.calls), 0);
	cr_assert_eq(exe_future_state(d), EXE_FUTURE_CANCELLED);
	exe_future_unref(d);
	exe_future_unref(src);
	exe_future_unref(blocker);
}

static int spin_cont(struct exe_future *prev, void *arg, void **result)
{
	atomic_int *started = arg;
	int i;

	(void)prev;
	(void)result;
	atomic_store(started, 1);
	for (i = 0; i < 200000 && !exe_task_cancelled(); i++)
		sched_yield();
	return exe_task_cancelled() ? -ECANCELED : -ETIMEDOUT;
}

Test(then, cancel_of_a_running_continuation_returns_ebusy_and_it_sees_the_request)
{
	struct exe_pool *p = pool_of(1);
	struct exe_future *src = promise(), *d = NULL;
	atomic_int started = 0;
	int i;

	cr_assert_eq(exe_future_then(src, p, spin_cont, &started, &d), 0);
	cr_assert_eq(exe_future_set_result(src, NULL, NULL), 0);
	for (i = 0; i < 10000 && !atomic_load(&started); i++)
		sleep_ms(1);
	cr_assert(atomic_load(&started));
	cr_assert_eq(exe_future_state(d), EXE_FUTURE_RUNNING);
	cr_assert_eq(exe_future_cancel(d), -EBUSY);
	cr_assert_eq(exe_future_result(d, NULL, 20 * EXE_NS_PER_S), -ECANCELED);
	exe_pool_destroy(p);
	exe_future_unref(d);
	exe_future_unref(src);
}

Test(then, chains_pass_values_along)
{
	struct exe_pool *p = pool_of(2);
	struct exe_future *src = promise(), *d1 = NULL, *d2 = NULL, *d3 = NULL;
	struct step a = {.add = 1}, b = {.mul = 2}, c = {.add = 3};

	cr_assert_eq(exe_future_then(src, p, step_fn, &a, &d1), 0);
	cr_assert_eq(exe_future_then(d1, NULL, step_fn, &b, &d2), 0);
	cr_assert_eq(exe_future_then(d2, p, step_fn, &c, &d3), 0);
	cr_assert_eq(exe_future_set_result(src, (void *)10, NULL), 0);
	cr_assert_eq(value_of(d3), (10 + 1) * 2 + 3);
	cr_assert_eq(value_of(d1), 11);
	cr_assert_eq(value_of(d2), 22);
	cr_assert_eq(b.prev_seen, d1);
	cr_assert_eq(c.prev_seen, d2);
	exe_pool_destroy(p);
	exe_future_unref(d3);
	exe_future_unref(d2);
	exe_future_unref(d1);
	exe_future_unref(src);
}

Test(then, a_failure_in_the_middle_of_a_chain_reaches_the_end)
{
	struct exe_pool *p = pool_of(2);
	struct exe_future *src = promise(), *d1 = NULL, *d2 = NULL, *d3 = NULL;
	struct step a = {.add = 1}, b = {.fail = -EDOM, .fail_msg = "out of range"}, c = {.add = 3};

	cr_assert_eq(exe_future_then(src, p, step_fn, &a, &d1), 0);
	cr_assert_eq(exe_future_then(d1, p, step_fn, &b, &d2), 0);
	cr_assert_eq(exe_future_then(d2, NULL, step_fn, &c, &d3), 0);
	cr_assert_eq(exe_future_set_result(src, (void *)1, NULL), 0);
	cr_assert_eq(exe_future_result(d3, NULL, 20 * EXE_NS_PER_S), -EDOM);
	cr_assert_str_eq(exe_future_error(d3), "out of range");
	cr_assert_eq(atomic_load(&a.calls), 1);
	cr_assert_eq(atomic_load(&b.calls), 1);
	cr_assert_eq(atomic_load(&c.calls), 0);
	exe_pool_destroy(p);
	exe_future_unref(d3);
	exe_future_unref(d2);
	exe_future_unref(d1);
	exe_future_unref(src);
}

Test(then, the_source_may_be_dropped_by_the_caller_after_then)
{
	struct exe_pool *p = pool_of(1);
	struct exe_future *src = promise(), *keep, *d = NULL;
	struct step s = {.add = 1};

	keep = src;
	cr_assert_eq(exe_future_then(src, p, step_fn, &s, &d), 0);
	cr_assert_eq(exe_future_set_result(keep, (void *)1, NULL), 0);
	exe_future_unref(src);
	cr_assert_eq(value_of(d), 2);
	exe_pool_destroy(p);
	exe_future_unref(d);
}

static atomic_int frees;

static void count_free(void *v)
{
	free(v);
	atomic_fetch_add(&frees, 1);
}

static int alloc_cont(struct exe_future *prev, void *arg, void **result)
{
	int *v = malloc(sizeof(*v));

	(void)arg;
	(void)prev;
	if (!v)
		return -ENOMEM;
	*v = 77;
	exe_task_set_result_free(count_free);
	*result = v;
	return 0;
}

Test(then, a_continuation_value_with_a_free_function_is_freed_with_the_derived_future)
{
	struct exe_pool *p = pool_of(1);
	struct exe_future *src = promise(), *d = NULL;
	void *v = NULL;

	cr_assert_eq(exe_future_then(src, p, alloc_cont, NULL, &d), 0);
	cr_assert_eq(exe_future_set_result(src, NULL, NULL), 0);
	cr_assert_eq(exe_future_result(d, &v, 20 * EXE_NS_PER_S), 0);
	cr_assert_eq(*(int *)v, 77);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&frees), 0);
	exe_future_unref(d);
	cr_assert_eq(atomic_load(&frees), 1);
	exe_future_unref(src);
}

Test(then, on_a_shut_down_pool_fails_the_derived_future_with_eshutdown)
{
	struct exe_pool *p = pool_of(1);
	struct exe_future *src = promise(), *d = NULL;
	struct step s = {0};

	cr_assert_eq(exe_future_then(src, p, step_fn, &s, &d), 0);
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT), 0);
	cr_assert_eq(exe_future_set_result(src, NULL, NULL), 0);
	cr_assert_eq(exe_future_result(d, NULL, 0), -ESHUTDOWN);
	cr_assert_eq(atomic_load(&s.calls), 0);
	exe_pool_destroy(p);
	exe_future_unref(d);
	exe_future_unref(src);
}

Test(then, bad_arguments_return_einval)
{
	struct exe_future *src = promise(), *d = (struct exe_future *)&d;
	struct step s = {0};

	cr_assert_eq(exe_future_then(NULL, NULL, step_fn, &s, &d), -EINVAL);
	cr_assert_eq(exe_future_then(src, NULL, NULL, &s, &d), -EINVAL);
	cr_assert_eq(exe_future_then(src, NULL, step_fn, &s, NULL), -EINVAL);
	cr_assert_eq(d, (struct exe_future *)&d);
	cr_assert_eq(exe_future_set_result(src, NULL, NULL), 0);
	cr_assert_eq(atomic_load(&s.calls), 0);
	exe_future_unref(src);
}

Test(then, allocation_failure_returns_enomem_and_registers_nothing)
{
	struct exe_future *src = promise(), *d = NULL;
	struct step s = {0};
	long k;
	int rc;

	for (k = 0; k < 3; k++) {
		exe__alloc_fail_after(k);
		rc = exe_future_then(src, NULL, step_fn, &s, &d);
		exe__alloc_fail_after(-1);
		cr_assert_eq(rc, -ENOMEM, "failing after %ld allocations gave %d", k, rc);
		cr_assert_null(d);
	}
	cr_assert_eq(exe_future_set_result(src, NULL, NULL), 0);
	cr_assert_eq(atomic_load(&s.calls), 0);
	exe_future_unref(src);
}

Test(then, a_derived_future_cannot_be_completed_or_started_by_the_user)
{
	struct exe_future *src = promise(), *d = NULL;
	struct step s = {.add = 1};

	cr_assert_eq(exe_future_then(src, NULL, step_fn, &s, &d), 0);
	cr_assert_eq(exe_future_set_result(d, (void *)5, NULL), -EINVAL);
	cr_assert_eq(exe_future_set_error(d, -EIO, "no"), -EINVAL);
	cr_assert_eq(exe_future_start(d), -EINVAL);
	cr_assert_eq(exe_future_state(d), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_result(src, (void *)1, NULL), 0);
	cr_assert_eq(value_of(d), 2, "only the source decided it");
	exe_future_unref(d);
	exe_future_unref(src);
}

/* ---- all ---- */

Test(all, is_done_when_every_input_is_done)
{
	struct exe_future *fs[3], *a = NULL;
	void *v = (void *)1;

	promises(fs, 3);
	cr_assert_eq(exe_future_all(fs, 3, &a), 0);
	cr_assert_eq(exe_future_set_result(fs[2], NULL, NULL), 0);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_PENDING, "one input still pending");
	cr_assert_eq(exe_future_result(a, NULL, 10 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_DONE);
	cr_assert_eq(exe_future_result(a, &v, 0), 0);
	cr_assert_null(v);
	exe_future_unref(a);
	unref_all(fs, 3);
}

Test(all, fails_fast_with_the_first_failures_code_and_message)
{
	struct exe_future *fs[3], *a = NULL;

	promises(fs, 3);
	cr_assert_eq(exe_future_all(fs, 3, &a), 0);
	cr_assert_eq(exe_future_set_error(fs[1], -EBADMSG, "bad frame %d", 4), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_FAILED, "failed before the others finished");
	cr_assert_eq(exe_future_code(a), -EBADMSG);
	cr_assert_str_eq(exe_future_error(a), "bad frame 4");
	cr_assert_eq(exe_future_set_error(fs[0], -EIO, "later"), 0);
	cr_assert_eq(exe_future_set_result(fs[2], NULL, NULL), 0);
	cr_assert_eq(exe_future_code(a), -EBADMSG, "a later failure does not replace the first");
	cr_assert_str_eq(exe_future_error(a), "bad frame 4");
	cr_assert_eq(exe_future_state(fs[0]), EXE_FUTURE_FAILED, "inputs are left alone");
	exe_future_unref(a);
	unref_all(fs, 3);
}

Test(all, is_cancelled_when_one_input_is_cancelled)
{
	struct exe_future *fs[2], *a = NULL;

	promises(fs, 2);
	cr_assert_eq(exe_future_all(fs, 2, &a), 0);
	cr_assert_eq(exe_future_cancel(fs[0]), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_CANCELLED);
	cr_assert_eq(exe_future_result(a, NULL, 0), -ECANCELED);
	cr_assert_eq(exe_future_state(fs[1]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	exe_future_unref(a);
	unref_all(fs, 2);
}

Test(all, of_an_empty_array_is_done_at_once)
{
	struct exe_future *a = NULL;

	cr_assert_eq(exe_future_all(NULL, 0, &a), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_DONE);
	cr_assert_eq(exe_future_result(a, NULL, 0), 0);
	exe_future_unref(a);
}

Test(all, of_already_finished_inputs_is_decided_at_once)
{
	struct exe_future *fs[2], *a = NULL, *b = NULL;

	promises(fs, 2);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	cr_assert_eq(exe_future_all(fs, 2, &a), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_DONE);
	unref_all(fs, 2);
	promises(fs, 2);
	cr_assert_eq(exe_future_set_error(fs[1], -EIO, "early"), 0);
	cr_assert_eq(exe_future_all(fs, 2, &b), 0);
	cr_assert_eq(exe_future_code(b), -EIO);
	cr_assert_str_eq(exe_future_error(b), "early");
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	exe_future_unref(a);
	exe_future_unref(b);
	unref_all(fs, 2);
}

Test(all, accepts_duplicates)
{
	struct exe_future *p = promise(), *a = NULL;
	struct exe_future *fs[3] = {p, p, p};

	cr_assert_eq(exe_future_all(fs, 3, &a), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_result(p, NULL, NULL), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_DONE);
	exe_future_unref(a);
	exe_future_unref(p);
}

Test(all, cancel_of_the_derived_future_leaves_the_inputs_alone)
{
	struct exe_future *fs[2], *a = NULL;

	promises(fs, 2);
	cr_assert_eq(exe_future_all(fs, 2, &a), 0);
	cr_assert_eq(exe_future_cancel(a), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_CANCELLED);
	cr_assert_eq(exe_future_state(fs[0]), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_CANCELLED);
	exe_future_unref(a);
	unref_all(fs, 2);
}

static int value_task(void *arg, void **result)
{
	sleep_ms(5);
	*result = arg;
	return 0;
}

Test(all, keeps_pool_task_inputs_alive_after_the_caller_drops_them)
{
	struct exe_pool *p = pool_of(2);
	struct exe_future *fs[4], *a = NULL;
	int i;

	for (i = 0; i < 4; i++)
		cr_assert_eq(exe_pool_submit(p, value_task, (void *)(intptr_t)i, &fs[i]), 0);
	cr_assert_eq(exe_future_all(fs, 4, &a), 0);
	unref_all(fs, 4);
	cr_assert_eq(exe_future_result(a, NULL, 20 * EXE_NS_PER_S), 0);
	exe_pool_destroy(p);
	exe_future_unref(a);
}

Test(all, bad_arguments_return_einval)
{
	struct exe_future *p = promise(), *a = (struct exe_future *)&a;
	struct exe_future *fs[2] = {p, NULL};

	cr_assert_eq(exe_future_all(fs, 2, &a), -EINVAL);
	cr_assert_eq(exe_future_all(NULL, 2, &a), -EINVAL);
	cr_assert_eq(exe_future_all(fs, 1, NULL), -EINVAL);
	cr_assert_eq(exe_future_any(fs, 2, &a), -EINVAL);
	cr_assert_eq(a, (struct exe_future *)&a);
	exe_future_unref(p);
}

Test(all, allocation_failure_returns_enomem_without_leaks)
{
	struct exe_future *fs[2], *a = NULL;
	long k;
	int rc;

	promises(fs, 2);
	for (k = 0; k < 4; k++) {
		exe__alloc_fail_after(k);
		rc = exe_future_all(fs, 2, &a);
		exe__alloc_fail_after(-1);
		cr_assert_eq(rc, -ENOMEM, "failing after %ld allocations gave %d", k, rc);
	}
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	unref_all(fs, 2);
}

Test(all, a_callback_allocation_failure_fails_the_derived_future_with_enomem)
{
	struct exe_future *fs[2], *a = NULL;
	int rc;

	promises(fs, 2);
	/* group, inputs, members, the future, then the first callback node */
	exe__alloc_fail_after(4);
	rc = exe_future_all(fs, 2, &a);
	exe__alloc_fail_after(-1);
	cr_assert_eq(rc, 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_FAILED);
	cr_assert_eq(exe_future_code(a), -ENOMEM);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	cr_assert_eq(exe_future_code(a), -ENOMEM);
	exe_future_unref(a);
	unref_all(fs, 2);
}

Test(all, derived_future_cannot_be_completed_by_the_user)
{
	struct exe_future *fs[1], *a = NULL;

	promises(fs, 1);
	cr_assert_eq(exe_future_all(fs, 1, &a), 0);
	cr_assert_eq(exe_future_set_result(a, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_future_set_error(a, -EIO, NULL), -EINVAL);
	cr_assert_eq(exe_future_start(a), -EINVAL);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_DONE);
	exe_future_unref(a);
	unref_all(fs, 1);
}

/* ---- any ---- */

Test(any, value_is_the_index_of_the_first_done_input)
{
	struct exe_future *fs[3], *a = NULL;

	promises(fs, 3);
	cr_assert_eq(exe_future_any(fs, 3, &a), 0);
	cr_assert_eq(exe_future_set_error(fs[0], -EIO, NULL), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_PENDING, "a failure alone does not decide any");
	cr_assert_eq(exe_future_set_result(fs[2], (void *)99, NULL), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_DONE);
	cr_assert_eq(value_of(a), 2);
	cr_assert_eq(exe_future_set_result(fs[1], NULL, NULL), 0);
	cr_assert_eq(value_of(a), 2, "the first one stays");
	exe_future_unref(a);
	unref_all(fs, 3);
}

Test(any, index_zero_is_a_null_value)
{
	struct exe_future *fs[2], *a = NULL;

	promises(fs, 2);
	cr_assert_eq(exe_future_any(fs, 2, &a), 0);
	cr_assert_eq(exe_future_set_result(fs[0], (void *)5, NULL), 0);
	cr_assert_eq(value_of(a), 0);
	cr_assert_eq(exe_future_cancel(fs[1]), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_DONE);
	exe_future_unref(a);
	unref_all(fs, 2);
}

Test(any, when_all_fail_reports_the_first_failure_in_array_order)
{
	struct exe_future *fs[3], *a = NULL;

	promises(fs, 3);
	cr_assert_eq(exe_future_any(fs, 3, &a), 0);
	cr_assert_eq(exe_future_set_error(fs[2], -ENOENT, "third"), 0);
	cr_assert_eq(exe_future_cancel(fs[0]), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_error(fs[1], -EIO, "second"), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_FAILED);
	cr_assert_eq(exe_future_code(a), -EIO, "fs[1] is the first failure by position");
	cr_assert_str_eq(exe_future_error(a), "second");
	exe_future_unref(a);
	unref_all(fs, 3);
}

Test(any, when_all_are_cancelled_is_cancelled)
{
	struct exe_future *fs[2], *a = NULL;

	promises(fs, 2);
	cr_assert_eq(exe_future_any(fs, 2, &a), 0);
	cr_assert_eq(exe_future_cancel(fs[1]), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_cancel(fs[0]), 0);
	cr_assert_eq(exe_future_state(a), EXE_FUTURE_CANCELLED);
	cr_assert_eq(exe_future_result(a, NULL, 0), -ECANCELED);
	exe_future_unref(a);
	unref_all(fs, 2);
}

Test(any, of_an_empty_array_is_finished_at_once_as_cancelled)
{
	struct exe_future *a = NULL;

	cr_assert_eq(exe_future_any(NULL, 0, &a), 0);
	cr_assert(exe_future_is_finished(a), "nothing can ever decide it");
	cr_assert_eq(exe_future_code(a), -ECANCELED);
	exe_future_unref(a);
}

Test(any, waits_for_inputs_completed_by_another_thread)
{
	struct exe_future *fs[2], *a = NULL;
	pthread_t th;

	promises(fs, 2);
	cr_assert_eq(exe_future_any(fs, 2, &a), 0);
	cr_assert_eq(pthread_create(&th, NULL, complete_later, fs[1]), 0);
	cr_assert_eq(value_of(a), 1);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(exe_future_set_result(fs[0], NULL, NULL), 0);
	exe_future_unref(a);
	unref_all(fs, 2);
}

Test(any, derived_future_cannot_be_completed_by_the_user)
{
	struct exe_future *fs[1], *a = NULL;

	promises(fs, 1);
	cr_assert_eq(exe_future_any(fs, 1, &a), 0);
	cr_assert_eq(exe_future_set_result(a, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_future_set_error(a, -EIO, NULL), -EINVAL);
	cr_assert_eq(exe_future_set_error(fs[0], -EPERM, "only"), 0);
	cr_assert_eq(exe_future_code(a), -EPERM);
	cr_assert_str_eq(exe_future_error(a), "only");
	exe_future_unref(a);
	unref_all(fs, 1);
}

struct any_race {
	struct exe_future *f;
	int which;
};

static void *race_complete(void *arg)
{
	struct any_race *r = arg;

	if (r->which)
		exe_future_set_result(r->f, NULL, NULL);
	else
		exe_future_set_error(r->f, -EIO, NULL);
	return NULL;
}

Test(any, racing_completions_decide_it_exactly_once)
{
	int round;

	for (round = 0; round < 500; round++) {
		struct exe_future *fs[2], *a = NULL;
		struct any_race r[2];
		pthread_t th[2];
		int i;

		promises(fs, 2);
		cr_assert_eq(exe_future_any(fs, 2, &a), 0);
		for (i = 0; i < 2; i++) {
			r[i] = (struct any_race){fs[i], i};
			cr_assert_eq(pthread_create(&th[i], NULL, race_complete, &r[i]), 0);
		}
		for (i = 0; i < 2; i++)
			cr_assert_eq(pthread_join(th[i], NULL), 0);
		cr_assert_eq(value_of(a), 1, "round %d: the only DONE input is 1", round);
		exe_future_unref(a);
		unref_all(fs, 2);
	}
}
