/*
 * test_nested_waits.c - waits inside pool tasks: a task waiting on itself is
 * refused (-EDEADLK, also through exe_wait and as_completed), nested waits complete with one worker at any depth, and
 * a chain deeper than any stack neither crashes nor deadlocks (the help depth
 * is bounded; past it the pool adds compensating threads).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>

#include <executor.h>

TestSuite(nested_waits, .timeout = 120);

static struct exe_pool *make_pool(unsigned workers, bool no_caller_runs)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = workers, .no_caller_runs = no_caller_runs, .name = "nest"};

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	return p;
}

/* ---- a task waiting on its own future ---- */

static int wait_self(void *arg, void **result)
{
	(void)arg;
	*result = (void *)(intptr_t)exe_future_wait(exe_task_future(), EXE_FOREVER);
	return 0;
}

static int wait_self_finite(void *arg, void **result)
{
	(void)arg;
	*result = (void *)(intptr_t)exe_future_result(exe_task_future(), NULL, 1000000000);
	return 0;
}

static int wait_all_with_self(void *arg, void **result)
{
	struct exe_future *fs[2] = {arg, exe_task_future()};

	*result = (void *)(intptr_t)exe_wait(fs, 2, EXE_WAIT_ALL, EXE_FOREVER);
	return 0;
}

static void expect_task_value(struct exe_pool *p, exe_task_fn *fn, void *arg, intptr_t want)
{
	struct exe_future *f;
	void *v = NULL;

	cr_assert_eq(exe_pool_submit(p, fn, arg, &f), 0);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
	cr_assert_eq((intptr_t)v, want, "got %ld, want %ld", (long)(intptr_t)v, (long)want);
	exe_future_unref(f);
}

Test(nested_waits, task_waiting_on_its_own_future_gets_edeadlk)
{
	struct exe_pool *p = make_pool(1, true);

	expect_task_value(p, wait_self, NULL, -EDEADLK);
	/* A finite wait could only time out: refused the same way. */
	expect_task_value(p, wait_self_finite, NULL, -EDEADLK);
	exe_pool_destroy(p);
}

Test(nested_waits, exe_wait_all_including_own_future_gets_edeadlk)
{
	struct exe_pool *p = make_pool(2, true);
	struct exe_future *done;

	exe_future_create(&done);
	exe_future_set_result(done, NULL, NULL);
	expect_task_value(p, wait_all_with_self, done, -EDEADLK);
	exe_future_unref(done);
	exe_pool_destroy(p);
}

/* as_completed over {@arg, own future}: @arg (finished) comes first, then
 * only the task's own future is left. Packs the three codes of next():
 * first, then forever, then a finite wait. */
static int as_completed_with_self(void *arg, void **result)
{
	struct exe_future *fs[2] = {arg, exe_task_future()}, *got = NULL;
	struct exe_as_completed *it;
	int first, forever, finite;

	if (exe_as_completed_create(&it, fs, 2))
		return -ENOMEM;
	first = exe_as_completed_next(it, &got, EXE_FOREVER);
	if (first == 0 && got != arg)
		first = -EBADMSG;
	forever = exe_as_completed_next(it, &got, EXE_FOREVER);
	finite = exe_as_completed_next(it, &got, 1000000000);
	exe_as_completed_destroy(it);
	*result = (void *)(intptr_t)(first == 0 && forever == finite ? forever : -EBADMSG);
	return 0;
}

Test(nested_waits, as_completed_left_with_only_its_own_future_gets_edeadlk)
{
	struct exe_pool *p = make_pool(2, true);
	struct exe_future *done;

	exe_future_create(&done);
	exe_future_set_result(done, NULL, NULL);
	expect_task_value(p, as_completed_with_self, done, -EDEADLK);
	exe_future_unref(done);
	exe_pool_destroy(p);
}

/* Another unfinished future (a promise nobody completes) can still finish:
 * a finite wait times out instead of refusing. */
static int as_completed_self_and_open(void *arg, void **result)
{
	struct exe_future *fs[2] = {arg, exe_task_future()}, *got = NULL;
	struct exe_as_completed *it;

	if (exe_as_completed_create(&it, fs, 2))
		return -ENOMEM;
	*result = (void *)(intptr_t)exe_as_completed_next(it, &got, 20 * 1000000);
	exe_as_completed_destroy(it);
	return 0;
}

Test(nested_waits, as_completed_with_another_open_future_times_out)
{
	struct exe_pool *p = make_pool(2, true);
	struct exe_future *open;

	exe_future_create(&open);
	expect_task_value(p, as_completed_self_and_open, open, -ETIMEDOUT);
	exe_future_set_result(open, NULL, NULL);
	exe_future_unref(open);
	exe_pool_destroy(p);
}

/* The outer task waits on an inner one, which the outer runs itself (help);
 * the inner waits on the outer, which is running below it on the same
 * stack. */
static int inner_waits_outer(void *arg, void **result)
{
	*result = (void *)(intptr_t)exe_future_wait(arg, EXE_FOREVER);
	return 0;
}

static int outer(void *arg, void **result)
{
	struct exe_pool *p = arg;
	struct exe_future *in;
	void *v = NULL;
	int rc;

	rc = exe_pool_submit(p, inner_waits_outer, exe_task_future(), &in);
	if (rc)
		return rc;
	rc = exe_future_result(in, &v, EXE_FOREVER);
	exe_future_unref(in);
	*result = v;
	return rc;
}

Test(nested_waits, helped_task_waiting_on_the_task_below_it_gets_edeadlk)
{
	struct exe_pool *p = make_pool(1, true);

	expect_task_value(p, outer, p, -EDEADLK);
	exe_pool_destroy(p);
}

/* ---- deep chains: each task submits the next and waits on it ---- */

struct chain {
	struct exe_pool *pool;
	intptr_t left;
};

static int chain_link(void *arg, void **result)
{
	struct chain *c = arg, next = {c->pool, c->left - 1};
	struct exe_future *f;
	void *v = NULL;
	int rc;

	if (c->left == 0) {
		*result = (void *)(intptr_t)0;
		return 0;
	}
	rc = exe_pool_submit(c->pool, chain_link, &next, &f);
	if (rc)
		return rc;
	rc = exe_future_result(f, &v, EXE_FOREVER);
	exe_future_unref(f);
	*result = (void *)((intptr_t)v + 1);
	return rc;
}

static void run_chain(unsigned workers, bool no_caller_runs, intptr_t depth)
{
	struct exe_pool *p = make_pool(workers, no_caller_runs);
	struct chain c = {p, depth};

	expect_task_value(p, chain_link, &c, depth);
	exe_pool_destroy(p);
}

Test(nested_waits, sixty_four_levels_on_one_worker)
{
	run_chain(1, true, 64);
	run_chain(1, false, 64);
}

Test(nested_waits, chain_deeper_than_the_help_bound_completes_on_one_worker)
{
	run_chain(1, true, 1000);
}

Test(nested_waits, fifty_thousand_deep_chain_does_not_crash)
{
	run_chain(1, true, 50000);
#if !defined(__SANITIZE_THREAD__)
	/* ThreadSanitizer runs this ~50x slower: one chain there is enough. */
	run_chain(2, false, 50000);
#endif
}
