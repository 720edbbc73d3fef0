/*
 * test_submit_many.c - exe_pool_submit_many(): every task once, futures in
 * order, all or nothing on every failure (bad arguments, shutdown, a full
 * bounded queue, out of memory), enough sleeping workers woken.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <executor.h>

#include "alloc.h"

TestSuite(submit_many, .timeout = 60);

static struct exe_pool *make_pool(unsigned workers, size_t capacity, bool no_caller_runs)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {
	    .workers = workers, .queue_capacity = capacity, .no_caller_runs = no_caller_runs, .name = "many"};

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	return p;
}

static _Atomic long ran[4096];

static int mark(void *arg, void **result)
{
	intptr_t i = (intptr_t)arg;

	atomic_fetch_add(&ran[i], 1);
	*result = (void *)(i * 3);
	return 0;
}

static void *args_upto(size_t n)
{
	void **a = malloc(n * sizeof(*a));

	for (size_t i = 0; i < n; i++)
		a[i] = (void *)(intptr_t)i;
	return a;
}

Test(submit_many, every_task_runs_once_with_its_future_in_order)
{
	struct exe_pool *p = make_pool(2, 0, false);
	size_t n = 4000;
	void **args = args_upto(n);
	struct exe_future **fs = calloc(n, sizeof(*fs));

	for (size_t i = 0; i < n; i++)
		atomic_store(&ran[i], 0);
	cr_assert_eq(exe_pool_submit_many(p, mark, args, n, fs), 0);
	cr_assert_eq(exe_wait(fs, n, EXE_WAIT_ALL, EXE_FOREVER), (int)n);
	for (size_t i = 0; i < n; i++) {
		void *v = NULL;

		cr_assert_eq(exe_future_result(fs[i], &v, 0), 0);
		cr_assert_eq((intptr_t)v, (intptr_t)i * 3);
		cr_assert_eq(atomic_load(&ran[i]), 1, "task %zu ran %ld times", i, atomic_load(&ran[i]));
		exe_future_unref(fs[i]);
	}
	free(fs);
	free(args);
	exe_pool_destroy(p);
}

Test(submit_many, fire_and_forget_batch_runs_every_task_before_destroy_returns)
{
	struct exe_pool *p = make_pool(2, 0, true);
	size_t n = 3000;
	void **args = args_upto(n);

	for (size_t i = 0; i < n; i++)
		atomic_store(&ran[i], 0);
	cr_assert_eq(exe_pool_submit_many(p, mark, args, n, NULL), 0);
	exe_pool_destroy(p);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(atomic_load(&ran[i]), 1, "task %zu ran %ld times", i, atomic_load(&ran[i]));
	free(args);
}

Test(submit_many, bad_arguments_and_empty_batch)
{
	struct exe_pool *p = make_pool(1, 0, false);
	void *args[1] = {NULL};
	struct exe_future *f = NULL;
	struct exe_pool_stats st;

	cr_assert_eq(exe_pool_submit_many(NULL, mark, args, 1, &f), -EINVAL);
	cr_assert_eq(exe_pool_submit_many(p, NULL, args, 1, &f), -EINVAL);
	cr_assert_eq(exe_pool_submit_many(p, mark, NULL, 1, &f), -EINVAL);
	cr_assert_eq(exe_pool_submit_many(p, mark, NULL, 0, NULL), 0);
	cr_assert_null(f);
	exe_pool_stats(p, &st);
	cr_assert_eq(st.submitted, 0);
	exe_pool_destroy(p);
}

Test(submit_many, after_shutdown_refuses_the_whole_batch)
{
	struct exe_pool *p = make_pool(1, 0, false);
	void *args[3] = {0};
	struct exe_future *fs[3];

	exe_pool_shutdown(p, 0);
	cr_assert_eq(exe_pool_submit_many(p, mark, args, 3, fs), -ESHUTDOWN);
	exe_pool_destroy(p);
}

static int wait_gate(void *arg, void **result)
{
	(void)result;
	return exe_future_wait(arg, EXE_FOREVER);
}

Test(submit_many, bounded_queue_takes_a_batch_only_if_all_of_it_fits)
{
	struct exe_pool *p = make_pool(1, 4, true);
	struct exe_future *gate, *blocker, *single, *fs[5];
	struct exe_pool_stats st;
	void **args = args_upto(5);

	exe_future_create(&gate);
	cr_assert_eq(exe_pool_submit(p, wait_gate, gate, &blocker), 0);
	/* Once the blocker runs (a running task holds no place), one more
	 * queued task leaves exactly 3 places: whether the blocker had
	 * started by the batch's submit was a race before. */
	for (int i = 0; i < 20000; i++) {
		exe_pool_stats(p, &st);
		if (st.running == 1)
			break;
		nanosleep(&(struct timespec){0, 100000}, NULL);
	}
	cr_assert_eq(st.running, 1, "the blocker never started");
	cr_assert_eq(exe_pool_submit(p, mark, args[0], &single), 0);
	cr_assert_eq(exe_pool_submit_many(p, mark, args, 4, fs), -EAGAIN);
	cr_assert_eq(exe_pool_submit_many(p, mark, args, 5, fs), -EAGAIN);
	exe_pool_stats(p, &st);
	cr_assert_eq(st.submitted, 2);
	cr_assert_eq(exe_pool_submit_many(p, mark, args, 3, fs), 0);
	exe_future_set_result(gate, NULL, NULL);
	cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_ALL, EXE_FOREVER), 3);
	for (int i = 0; i < 3; i++)
		exe_future_unref(fs[i]);
	cr_assert_eq(exe_future_wait(single, EXE_FOREVER), 0);
	exe_future_unref(single);
	exe_future_unref(blocker);
	exe_future_unref(gate);
	free(args);
	exe_pool_destroy(p);
}

Test(submit_many, out_of_memory_midway_queues_nothing)
{
	struct exe_pool *p = make_pool(1, 0, false);
	void **args = args_upto(10);
	struct exe_future *fs[10];
	struct exe_pool_stats st;
	int rc;

	exe__alloc_fail_after(5);
	rc = exe_pool_submit_many(p, mark, args, 10, fs);
	exe__alloc_fail_after(-1);
	cr_assert_eq(rc, -ENOMEM);
	exe_pool_stats(p, &st);
	cr_assert_eq(st.submitted, 0);
	free(args);
	exe_pool_destroy(p);
}

/* Each task waits until every task of the batch started: only possible when
 * the batch woke every sleeping worker. */
static _Atomic int started;

static int meet(void *arg, void **result)
{
	int n = (int)(intptr_t)arg;
	struct timespec ts = {0, 100000};

	(void)result;
	atomic_fetch_add(&started, 1);
	for (int i = 0; i < 20000 && atomic_load(&started) < n; i++)
		nanosleep(&ts, NULL);
	return atomic_load(&started) >= n ? 0 : -ETIMEDOUT;
}

Test(submit_many, batch_wakes_every_sleeping_worker_it_can_use)
{
	struct exe_pool *p = make_pool(3, 0, true);
	void *args[3] = {(void *)3, (void *)3, (void *)3};
	struct exe_future *fs[3];
	struct timespec idle = {0, 50 * 1000 * 1000};

	for (int round = 0; round < 5; round++) {
		atomic_store(&started, 0);
		nanosleep(&idle, NULL); /* the workers park */
		cr_assert_eq(exe_pool_submit_many(p, meet, args, 3, fs), 0);
		/* A finite wait never runs tasks: the workers must. */
		cr_assert_eq(exe_wait(fs, 3, EXE_WAIT_ALL, 10 * 1000000000LL), 3);
		for (int i = 0; i < 3; i++) {
			cr_assert_eq(exe_future_code(fs[i]), 0);
			exe_future_unref(fs[i]);
		}
	}
	exe_pool_destroy(p);
}
