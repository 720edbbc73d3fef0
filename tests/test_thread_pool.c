/*
 * test_thread_pool.c - the thread-pool contract: submit, results, naming,
 * init, bounded queues, shutdown modes, nested waits, map, stats.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <executor.h>

#include "alloc.h"

TestSuite(thread_pool, .timeout = 60);

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static struct exe_pool *make_pool(unsigned workers, size_t capacity)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = workers, .queue_capacity = capacity, .name = "tp"};

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	return p;
}

static int square(void *arg, void **result)
{
	intptr_t x = (intptr_t)arg;

	*result = (void *)(x * x);
	return 0;
}

static int fail_with_message(void *arg, void **result)
{
	(void)result;
	return exe_task_set_error(-EIO, "disk %d on fire", (int)(intptr_t)arg);
}

/* Blocks until the gate promise is completed. Owns one reference to the
 * gate (submit it with exe_future_ref(gate)): the test may drop its own
 * while the task is still returning from the wait. */
static int wait_gate(void *arg, void **result)
{
	int rc = exe_future_wait(arg, EXE_FOREVER);

	(void)result;
	exe_future_unref(arg);
	return rc;
}

static void wait_running(struct exe_pool *p, uint64_t n)
{
	struct exe_pool_stats st;

	for (int i = 0; i < 5000; i++) {
		exe_pool_stats(p, &st);
		if (st.running >= n)
			return;
		sleep_ms(1);
	}
	cr_assert_fail("pool never had %lu running tasks", (unsigned long)n);
}

Test(thread_pool, submit_returns_future_with_task_value)
{
	struct exe_pool *p = make_pool(2, 0);
	struct exe_future *f;
	void *v = NULL;

	cr_assert_eq(exe_pool_submit(p, square, (void *)(intptr_t)12, &f), 0);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
	cr_assert_eq((intptr_t)v, 144);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_DONE);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

Test(thread_pool, null_options_mean_one_worker_per_cpu)
{
	struct exe_pool *p = NULL;
	struct exe_pool_stats st;

	cr_assert_eq(exe_thread_pool_create(&p, NULL), 0);
	cr_assert_eq(exe_pool_stats(p, &st), 0);
	cr_assert_eq(st.workers, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
	exe_pool_destroy(p);
}

Test(thread_pool, bad_arguments_return_einval)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *f = NULL;

	cr_assert_eq(exe_pool_submit(p, NULL, NULL, &f), -EINVAL);
	cr_assert_null(f);
	cr_assert_eq(exe_pool_submit(NULL, square, NULL, &f), -EINVAL);
	cr_assert_eq(exe_pool_submit_opts(p, square, NULL, &(struct exe_submit_opts){.flags = 1u << 7}, &f),
	             -EINVAL);
	cr_assert_eq(exe_pool_shutdown(p, 1u << 9), -EINVAL);
	cr_assert_eq(exe_thread_pool_create(NULL, NULL), -EINVAL);
	exe_pool_destroy(p);
	exe_pool_destroy(NULL);
}

Test(thread_pool, failed_task_carries_code_and_message)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *f;

	exe_pool_submit(p, fail_with_message, (void *)(intptr_t)7, &f);
	cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), -EIO);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_FAILED);
	cr_assert_str_eq(exe_future_error(f), "disk 7 on fire");
	exe_future_unref(f);
	exe_pool_destroy(p);
}

static int positive_code(void *arg, void **result)
{
	(void)arg;
	(void)result;
	return EPERM;
}

Test(thread_pool, positive_task_return_is_a_negated_failure)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *f;

	exe_pool_submit(p, positive_code, NULL, &f);
	cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), -EPERM);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

Test(thread_pool, submit_after_shutdown_returns_eshutdown)
{
	struct exe_pool *p = make_pool(2, 0);
	struct exe_future *f = NULL;
	struct exe_pool_stats st;

	cr_assert_eq(exe_pool_shutdown(p, 0), 0);
	cr_assert_eq(exe_pool_submit(p, square, NULL, &f), -ESHUTDOWN);
	cr_assert_null(f);
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT), 0, "shutdown is idempotent");
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT), 0);
	exe_pool_stats(p, &st);
	cr_assert(st.shut_down);
	cr_assert_eq(st.submitted, 0, "a refused submit is not counted");
	cr_assert_eq(st.workers, 0, "every worker exited");
	exe_pool_destroy(p);
}

static int get_thread_name(void *arg, void **result)
{
	(void)arg;
	char *name = malloc(16);

	pthread_getname_np(pthread_self(), name, 16);
	*result = name;
	return 0;
}

Test(thread_pool, workers_are_named_name_dash_index)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = 2, .name = "pix", .no_caller_runs = true};
	struct exe_future *f;
	struct exe_submit_opts so = {.result_free = free};
	void *v;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	exe_pool_submit_opts(p, get_thread_name, NULL, &so, &f);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
	cr_assert(strcmp(v, "pix-0") == 0 || strcmp(v, "pix-1") == 0, "name was %s", (char *)v);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

Test(thread_pool, long_names_are_truncated_not_refused)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = 1, .name = "averyveryverylongname", .no_caller_runs = true};
	struct exe_future *f;
	void *v;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	exe_pool_submit_opts(p, get_thread_name, NULL, &(struct exe_submit_opts){.result_free = free}, &f);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
	cr_assert_str_eq(v, "averyveryverylo");
	exe_future_unref(f);
	exe_pool_destroy(p);
}

static _Atomic int init_calls;

static int count_init(void *arg)
{
	(void)arg;
	atomic_fetch_add(&init_calls, 1);
	return 0;
}

Test(thread_pool, init_runs_once_on_each_worker)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = 3, .init = count_init};
	struct exe_future *fs[30];

	atomic_store(&init_calls, 0);
	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	for (int i = 0; i < 30; i++)
		exe_pool_submit(p, square, (void *)(intptr_t)i, &fs[i]);
	for (int i = 0; i < 30; i++) {
		cr_assert_eq(exe_future_result(fs[i], NULL, EXE_FOREVER), 0);
		exe_future_unref(fs[i]);
	}
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&init_calls), 3);
}

static int failing_init(void *arg)
{
	(void)arg;
	return -ENOENT;
}

Test(thread_pool, failing_init_breaks_the_pool_with_a_clear_error)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = 1, .init = failing_init, .name = "brk"};
	struct exe_future *f = NULL;
	struct exe_pool_stats st;
	int rc;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	/* A task queued before the init failed must fail, not hang. */
	rc = exe_pool_submit(p, square, NULL, &f);
	if (rc == 0) {
		cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), -ENOTRECOVERABLE);
		cr_assert_not_null(strstr(exe_future_error(f), "init failed"));
		exe_future_unref(f);
	} else {
		cr_assert_eq(rc, -ENOTRECOVERABLE);
	}
	cr_assert_eq(exe_pool_submit(p, square, NULL, &f), -ENOTRECOVERABLE);
	cr_assert_not_null(exe_pool_error(p));
	cr_assert_not_null(strstr(exe_pool_error(p), "brk-0"), "message: %s", exe_pool_error(p));
	exe_pool_stats(p, &st);
	cr_assert(st.broken);
	exe_pool_destroy(p);
}

Test(thread_pool, bounded_queue_returns_eagain_when_full)
{
	struct exe_pool *p = make_pool(1, 2);
	struct exe_future *gate, *blocker, *a, *b, *c = NULL;
	struct exe_pool_stats st;

	exe_future_create(&gate);
	exe_pool_submit(p, wait_gate, exe_future_ref(gate), &blocker);
	wait_running(p, 1);
	cr_assert_eq(exe_pool_submit(p, square, NULL, &a), 0);
	cr_assert_eq(exe_pool_submit(p, square, NULL, &b), 0);
	cr_assert_eq(exe_pool_submit(p, square, NULL, &c), -EAGAIN);
	cr_assert_null(c);
	exe_pool_stats(p, &st);
	cr_assert_eq(st.queued, 2);
	cr_assert_eq(st.submitted, 3);
	exe_future_set_result(gate, NULL, NULL);
	cr_assert_eq(exe_future_result(a, NULL, EXE_FOREVER), 0);
	cr_assert_eq(exe_future_result(b, NULL, EXE_FOREVER), 0);
	exe_future_unref(a);
	exe_future_unref(b);
	exe_future_unref(blocker);
	exe_future_unref(gate);
	exe_pool_destroy(p);
}

static void *open_gate_later(void *arg)
{
	sleep_ms(30);
	exe_future_set_result(arg, NULL, NULL);
	return NULL;
}

Test(thread_pool, blocking_submit_waits_for_room)
{
	struct exe_pool *p = make_pool(1, 1);
	struct exe_future *gate, *blocker, *a, *b;
	struct exe_submit_opts block = {.flags = EXE_SUBMIT_BLOCK};
	pthread_t t;

	exe_future_create(&gate);
	exe_pool_submit(p, wait_gate, exe_future_ref(gate), &blocker);
	wait_running(p, 1);
	cr_assert_eq(exe_pool_submit(p, square, NULL, &a), 0);
	cr_assert_eq(exe_pool_submit_opts(p, square, NULL,
	                                  &(struct exe_submit_opts){.flags = EXE_SUBMIT_BLOCK,
	                                                            .block_timeout_ns = 5 * EXE_NS_PER_MS},
	                                  &b),
	             -ETIMEDOUT);
	pthread_create(&t, NULL, open_gate_later, gate);
	cr_assert_eq(exe_pool_submit_opts(p, square, (void *)(intptr_t)3, &block, &b), 0);
	cr_assert_eq(exe_future_result(b, NULL, EXE_FOREVER), 0);
	pthread_join(t, NULL);
	exe_future_unref(a);
	exe_future_unref(b);
	exe_future_unref(blocker);
	exe_future_unref(gate);
	exe_pool_destroy(p);
}

Test(thread_pool, blocked_submitter_is_released_by_shutdown)
{
	struct exe_pool *p = make_pool(1, 1);
	struct exe_future *gate, *blocker, *a, *b = NULL;
	struct exe_submit_opts block = {.flags = EXE_SUBMIT_BLOCK};
	pthread_t t;

	exe_future_create(&gate);
	exe_pool_submit(p, wait_gate, exe_future_ref(gate), &blocker);
	wait_running(p, 1);
	exe_pool_submit(p, square, NULL, &a);
	pthread_create(&t, NULL, open_gate_later, gate); /* lets destroy finish */
	exe_pool_shutdown(p, 0);
	cr_assert_eq(exe_pool_submit_opts(p, square, NULL, &block, &b), -ESHUTDOWN);
	pthread_join(t, NULL);
	exe_future_unref(a);
	exe_future_unref(blocker);
	exe_future_unref(gate);
	exe_pool_destroy(p);
}

static _Atomic int cb_cancelled_seen;

static int note_cancel(struct exe_future *f, void *arg)
{
	(void)arg;
	if (exe_future_code(f) == -ECANCELED)
		atomic_fetch_add(&cb_cancelled_seen, 1);
	return 0;
}

Test(thread_pool, shutdown_cancel_pending_cancels_queued_tasks_and_runs_callbacks)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *gate, *blocker, *fs[10];
	struct exe_pool_stats st;
	pthread_t t;

	atomic_store(&cb_cancelled_seen, 0);
	exe_future_create(&gate);
	exe_pool_submit(p, wait_gate, exe_future_ref(gate), &blocker);
	wait_running(p, 1);
	for (int i = 0; i < 10; i++) {
		exe_pool_submit(p, square, NULL, &fs[i]);
		exe_future_on_done(fs[i], note_cancel, NULL);
	}
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_CANCEL_PENDING), 0);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(exe_future_result(fs[i], NULL, 0), -ECANCELED);
	cr_assert_eq(atomic_load(&cb_cancelled_seen), 10);
	cr_assert_eq(exe_future_state(blocker), EXE_FUTURE_RUNNING, "running work is not cancelled");
	pthread_create(&t, NULL, open_gate_later, gate);
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT), 0);
	cr_assert_eq(exe_future_result(blocker, NULL, 0), 0);
	exe_pool_stats(p, &st);
	cr_assert_eq(st.cancelled, 10);
	cr_assert_eq(st.completed, 1);
	pthread_join(t, NULL);
	for (int i = 0; i < 10; i++)
		exe_future_unref(fs[i]);
	exe_future_unref(blocker);
	exe_future_unref(gate);
	exe_pool_destroy(p);
}

static int slow_square(void *arg, void **result)
{
	sleep_ms(1);
	return square(arg, result);
}

Test(thread_pool, shutdown_wait_drains_running_and_queued_tasks)
{
	struct exe_pool *p = make_pool(2, 0);
	struct exe_future *fs[40];
	struct exe_pool_stats st;

	for (int i = 0; i < 40; i++)
		exe_pool_submit(p, slow_square, (void *)(intptr_t)i, &fs[i]);
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT), 0);
	for (int i = 0; i < 40; i++) {
		void *v;

		cr_assert_eq(exe_future_result(fs[i], &v, 0), 0, "task %d not finished after shutdown", i);
		cr_assert_eq((intptr_t)v, (intptr_t)i * i);
		exe_future_unref(fs[i]);
	}
	exe_pool_stats(p, &st);
	cr_assert_eq(st.completed, 40);
	cr_assert_eq(st.queued + st.running, 0);
	exe_pool_destroy(p);
}

Test(thread_pool, destroy_leaves_caller_futures_finished_and_valid)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *fs[20];

	for (int i = 0; i < 20; i++)
		exe_pool_submit(p, slow_square, (void *)(intptr_t)i, &fs[i]);
	exe_pool_destroy(p);
	for (int i = 0; i < 20; i++) {
		cr_assert(exe_future_is_finished(fs[i]));
		cr_assert_eq(exe_future_cancel(fs[i]), -EALREADY);
		exe_future_unref(fs[i]);
	}
}

static int submit_child(void *arg, void **result)
{
	struct exe_pool *p = arg;
	struct exe_future *f;
	void *v;
	int rc;

	rc = exe_pool_submit(p, square, (void *)(intptr_t)9, &f);
	if (rc)
		return rc;
	rc = exe_future_result(f, &v, EXE_FOREVER);
	exe_future_unref(f);
	*result = v;
	return rc;
}

Test(thread_pool, task_waiting_on_task_of_same_one_worker_pool_does_not_deadlock)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = 1, .no_caller_runs = true};
	struct exe_future *f;
	void *v;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	cr_assert_eq(exe_pool_submit(p, submit_child, p, &f), 0);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
	cr_assert_eq((intptr_t)v, 81);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

struct fib_arg {
	struct exe_pool *pool;
	intptr_t n;
};

static int fib(void *arg, void **result)
{
	struct fib_arg *a = arg, l = {a->pool, a->n - 1}, r = {a->pool, a->n - 2};
	struct exe_future *fl, *fr;
	void *vl, *vr;

	if (a->n < 2) {
		*result = (void *)a->n;
		return 0;
	}
	exe_pool_submit(a->pool, fib, &l, &fl);
	exe_pool_submit(a->pool, fib, &r, &fr);
	exe_future_result(fl, &vl, EXE_FOREVER);
	exe_future_result(fr, &vr, EXE_FOREVER);
	exe_future_unref(fl);
	exe_future_unref(fr);
	*result = (void *)((intptr_t)vl + (intptr_t)vr);
	return 0;
}

Test(thread_pool, recursive_nested_waits_complete_on_one_worker)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = 1, .no_caller_runs = true};
	struct fib_arg a;
	struct exe_future *f;
	void *v;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	a.pool = p;
	a.n = 15;
	exe_pool_submit(p, fib, &a, &f);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
	cr_assert_eq((intptr_t)v, 610);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

static int shutdown_self(void *arg, void **result)
{
	(void)result;
	return exe_pool_shutdown(arg, EXE_SHUTDOWN_WAIT);
}

Test(thread_pool, shutdown_with_wait_inside_own_task_returns_edeadlk)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = 1, .no_caller_runs = true};
	struct exe_future *f;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	exe_pool_submit(p, shutdown_self, p, &f);
	cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), -EDEADLK);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

static int current_thread(void *arg, void **result)
{
	(void)arg;
	*result = (void *)pthread_self();
	return 0;
}

Test(thread_pool, no_caller_runs_keeps_tasks_on_pool_threads)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = 1, .no_caller_runs = true};

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	for (int i = 0; i < 200; i++) {
		struct exe_future *f;
		void *v;

		exe_pool_submit(p, current_thread, NULL, &f);
		cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
		cr_assert_neq((pthread_t)v, pthread_self());
		exe_future_unref(f);
	}
	exe_pool_destroy(p);
}

Test(thread_pool, waiting_caller_runs_a_pending_task_when_workers_are_busy)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *gate, *blocker, *f;
	void *v;

	exe_future_create(&gate);
	exe_pool_submit(p, wait_gate, exe_future_ref(gate), &blocker);
	wait_running(p, 1);
	exe_pool_submit(p, current_thread, NULL, &f);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
	cr_assert_eq((pthread_t)v, pthread_self(), "the waiting caller ran it");
	exe_future_set_result(gate, NULL, NULL);
	exe_future_wait(blocker, EXE_FOREVER);
	exe_future_unref(f);
	exe_future_unref(blocker);
	exe_future_unref(gate);
	exe_pool_destroy(p);
}

static _Atomic pthread_t cb_thread;

static int record_cb_thread(struct exe_future *f, void *arg)
{
	(void)f;
	(void)arg;
	atomic_store(&cb_thread, pthread_self());
	return 0;
}

Test(thread_pool, done_callback_runs_on_the_finishing_worker)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = 1, .no_caller_runs = true};
	struct exe_future *gate, *f;
	void *worker;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	exe_future_create(&gate);
	/* The task blocks until the callback is registered. */
	exe_pool_submit(p, wait_gate, exe_future_ref(gate), &f);
	atomic_store(&cb_thread, (pthread_t)0);
	exe_future_on_done(f, record_cb_thread, NULL);
	exe_future_set_result(gate, NULL, NULL);
	exe_future_wait(f, EXE_FOREVER);
	exe_future_unref(f);
	exe_pool_submit(p, current_thread, NULL, &f);
	exe_future_result(f, &worker, EXE_FOREVER);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&cb_thread), (pthread_t)worker);
	exe_future_unref(f);
	exe_future_unref(gate);
}

static int failing_cb(struct exe_future *f, void *arg)
{
	(void)f;
	(void)arg;
	return -EIO;
}

static _Atomic int hook_calls;

static void counting_hook(const char *what, int code, const char *msg, void *arg)
{
	(void)what;
	(void)msg;
	(void)arg;
	if (code == -EIO)
		atomic_fetch_add(&hook_calls, 1);
}

Test(thread_pool, a_failing_callback_never_kills_the_worker)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *f;
	void *v;

	atomic_store(&hook_calls, 0);
	exe_set_error_hook(counting_hook, NULL);
	for (int i = 0; i < 50; i++) {
		exe_pool_submit(p, square, (void *)(intptr_t)i, &f);
		exe_future_on_done(f, failing_cb, NULL);
		cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
		cr_assert_eq((intptr_t)v, (intptr_t)i * i);
		exe_future_unref(f);
	}
	exe_pool_destroy(p);
	exe_set_error_hook(NULL, NULL);
	cr_assert_eq(atomic_load(&hook_calls), 50);
}

static _Atomic int freed;

static void count_free(void *v)
{
	(void)v;
	atomic_fetch_add(&freed, 1);
}

Test(thread_pool, result_free_function_runs_when_future_is_freed)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *f;

	atomic_store(&freed, 0);
	exe_pool_submit_opts(p, square, (void *)(intptr_t)2,
	                     &(struct exe_submit_opts){.result_free = count_free}, &f);
	exe_future_wait(f, EXE_FOREVER);
	cr_assert_eq(atomic_load(&freed), 0);
	exe_future_unref(f);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&freed), 1);
}

static _Atomic int ran;

static int count_run(void *arg, void **result)
{
	(void)arg;
	(void)result;
	atomic_fetch_add(&ran, 1);
	return 0;
}

Test(thread_pool, fire_and_forget_tasks_all_run)
{
	struct exe_pool *p = make_pool(2, 0);

	atomic_store(&ran, 0);
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(exe_pool_submit(p, count_run, NULL, NULL), 0);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&ran), 1000);
}

/* Past the shared queue's ring (64 Ki entries) submits go to an overflow
 * list, which workers move back into the ring: no task lost or run twice,
 * and one submitter's tasks still run in the order submitted - also those
 * submitted while the worker frees ring space with the list still full. */
enum { ORDER_BEFORE = 70000, ORDER_AFTER = 10000, ORDER_BATCH = 20000 };
enum { ORDER_N = ORDER_BEFORE + ORDER_AFTER + ORDER_BATCH };
static _Atomic int order_next;
static int order_seen[ORDER_N];
static _Atomic int order_bad;

static int record_order(void *arg, void **result)
{
	int i = (int)(intptr_t)arg, at = atomic_fetch_add(&order_next, 1);

	(void)result;
	if (i < 0 || i >= ORDER_N || at >= ORDER_N)
		atomic_store(&order_bad, 1);
	else
		order_seen[at] = i;
	return 0;
}

Test(thread_pool, a_backlog_past_the_ring_runs_every_task_once_in_order)
{
	struct exe_pool *p = make_pool(1, 0);
	static void *args[ORDER_BATCH];
	struct exe_future *gate, *g;
	struct exe_pool_stats st;
	int i;

	atomic_store(&order_next, 0);
	atomic_store(&order_bad, 0);
	cr_assert_eq(exe_future_create(&gate), 0);
	cr_assert_eq(exe_pool_submit(p, wait_gate, exe_future_ref(gate), &g), 0);
	wait_running(p, 1);
	for (i = 0; i < ORDER_BEFORE; i++)
		cr_assert_eq(exe_pool_submit(p, record_order, (void *)(intptr_t)i, NULL), 0);
	exe_pool_stats(p, &st);
	cr_assert_eq(st.queued, ORDER_BEFORE, "queued %lu", (unsigned long)st.queued);
	cr_assert_eq(exe_future_set_result(gate, NULL, NULL), 0);
	exe_future_unref(gate);
	for (; i < ORDER_BEFORE + ORDER_AFTER; i++)
		cr_assert_eq(exe_pool_submit(p, record_order, (void *)(intptr_t)i, NULL), 0);
	for (int k = 0; k < ORDER_BATCH; k++)
		args[k] = (void *)(intptr_t)(i + k);
	cr_assert_eq(exe_pool_submit_many(p, record_order, args, ORDER_BATCH, NULL), 0);
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT), 0);
	exe_pool_stats(p, &st);
	cr_assert_eq(st.submitted, ORDER_N + 1);
	cr_assert_eq(st.completed, ORDER_N + 1);
	cr_assert_eq(atomic_load(&order_next), ORDER_N);
	cr_assert_eq(atomic_load(&order_bad), 0);
	for (i = 0; i < ORDER_N; i++)
		cr_assert_eq(order_seen[i], i, "position %d ran task %d", i, order_seen[i]);
	exe_future_unref(g);
	exe_pool_destroy(p);
}

/* A task pushes two children on its worker's deque and keeps its worker
 * busy without waiting (no help): the older child is a spare task, and the
 * other worker, asleep, must be woken to steal it. */
static _Atomic int spare_started;

static int spare_child(void *arg, void **result)
{
	(void)arg;
	(void)result;
	atomic_store(&spare_started, 1);
	return 0;
}

static int pushes_a_spare(void *arg, void **result)
{
	struct exe_pool *p = arg;
	struct timespec ts = {0, 100000};
	int i;

	(void)result;
	if (exe_pool_submit(p, spare_child, NULL, NULL) || exe_pool_submit(p, spare_child, NULL, NULL))
		return -EIO;
	/* Not a wait: sleeping here keeps this worker from its deque. */
	for (i = 0; i < 50000 && !atomic_load(&spare_started); i++)
		nanosleep(&ts, NULL);
	return atomic_load(&spare_started) ? 0 : -ETIMEDOUT;
}

Test(thread_pool, a_spare_task_on_a_busy_workers_deque_wakes_a_sleeping_thief)
{
	struct exe_pool_opts o = {.workers = 2, .no_caller_runs = true, .name = "spare"};
	struct exe_pool *p = NULL;
	struct exe_future *f;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	for (int round = 0; round < 3; round++) {
		atomic_store(&spare_started, 0);
		sleep_ms(20); /* both workers park */
		cr_assert_eq(exe_pool_submit(p, pushes_a_spare, p, &f), 0);
		cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), 0, "round %d: the spare child never started",
		             round);
		exe_future_unref(f);
	}
	exe_pool_destroy(p);
}

Test(thread_pool, cancel_racing_with_start_runs_each_task_at_most_once)
{
	struct exe_pool *p = make_pool(2, 0);
	enum { N = 5000 };
	int cancelled = 0, busy_or_done = 0;

	atomic_store(&ran, 0);
	for (int i = 0; i < N; i++) {
		struct exe_future *f;
		int rc;

		exe_pool_submit(p, count_run, NULL, &f);
		rc = exe_future_cancel(f);
		if (rc == 0) {
			cr_assert_eq(exe_future_result(f, NULL, 0), -ECANCELED);
			cancelled++;
		} else {
			cr_assert(rc == -EBUSY || rc == -EALREADY, "rc %d", rc);
			busy_or_done++;
		}
		exe_future_unref(f);
	}
	exe_pool_destroy(p);
	cr_assert_eq(cancelled + busy_or_done, N);
	cr_assert_eq(atomic_load(&ran), busy_or_done, "a cancelled task ran, or a started one did not");
}

static int spin_until_cancelled(void *arg, void **result)
{
	(void)arg;
	(void)result;
	while (!exe_task_cancelled())
		sched_yield();
	return -ECANCELED;
}

Test(thread_pool, cancel_of_running_task_is_a_request_it_can_poll)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *f;

	exe_pool_submit(p, spin_until_cancelled, NULL, &f);
	wait_running(p, 1);
	cr_assert_eq(exe_future_cancel(f), -EBUSY);
	cr_assert(exe_future_cancel_requested(f));
	cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), -ECANCELED);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_FAILED, "it stopped on its own terms");
	exe_future_unref(f);
	exe_pool_destroy(p);
}

Test(thread_pool, stats_count_each_outcome)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *gate, *blocker, *ok, *bad, *never;
	struct exe_pool_stats st;

	exe_future_create(&gate);
	exe_pool_submit(p, wait_gate, exe_future_ref(gate), &blocker);
	wait_running(p, 1);
	exe_pool_submit(p, square, NULL, &ok);
	exe_pool_submit(p, fail_with_message, NULL, &bad);
	exe_pool_submit(p, square, NULL, &never);
	exe_future_cancel(never);
	exe_pool_stats(p, &st);
	cr_assert_eq(st.submitted, 4);
	cr_assert_eq(st.running, 1);
	cr_assert_eq(st.queued, 2);
	cr_assert_eq(st.cancelled, 1);
	exe_future_set_result(gate, NULL, NULL);
	exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT);
	exe_pool_stats(p, &st);
	cr_assert_eq(st.completed, 2);
	cr_assert_eq(st.failed, 1);
	cr_assert_eq(st.cancelled, 1);
	cr_assert_eq(st.queued + st.running, 0);
	exe_future_unref(gate);
	exe_future_unref(blocker);
	exe_future_unref(ok);
	exe_future_unref(bad);
	exe_future_unref(never);
	exe_pool_destroy(p);
}

Test(thread_pool, allocation_failure_at_submit_returns_enomem_and_counts_nothing)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *f = NULL;
	struct exe_pool_stats st;

	exe__alloc_fail_after(0);
	cr_assert_eq(exe_pool_submit(p, square, NULL, &f), -ENOMEM);
	exe__alloc_fail_after(-1);
	cr_assert_null(f);
	exe_pool_stats(p, &st);
	cr_assert_eq(st.submitted, 0);
	exe_pool_destroy(p);
}

Test(thread_pool, map_returns_results_in_order)
{
	struct exe_pool *p = make_pool(2, 0);
	void *args[100], *results[100];

	for (intptr_t i = 0; i < 100; i++)
		args[i] = (void *)i;
	cr_assert_eq(exe_pool_map(p, square, args, 100, results, EXE_FOREVER, NULL), 0);
	for (intptr_t i = 0; i < 100; i++)
		cr_assert_eq((intptr_t)results[i], i * i);
	exe_pool_destroy(p);
}

static int fail_on_five(void *arg, void **result)
{
	if ((intptr_t)arg == 5)
		return -EDOM;
	sleep_ms(2);
	return square(arg, result);
}

Test(thread_pool, map_stops_at_the_first_failure_in_order_and_cancels_the_rest)
{
	struct exe_pool *p = make_pool(1, 0);
	void *args[50], *results[50];
	struct exe_pool_stats st;
	size_t at = 0;

	for (intptr_t i = 0; i < 50; i++)
		args[i] = (void *)i;
	cr_assert_eq(exe_pool_map(p, fail_on_five, args, 50, results, EXE_FOREVER, &at), -EDOM);
	cr_assert_eq(at, 5);
	exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT);
	exe_pool_stats(p, &st);
	cr_assert_gt(st.cancelled, 30, "queued calls were cancelled (%lu)", (unsigned long)st.cancelled);
	exe_pool_destroy(p);
}

Test(thread_pool, map_with_deadline_returns_etimedout)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = 1, .no_caller_runs = true};
	void *args[200], *results[200];
	size_t at = 0;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	for (intptr_t i = 0; i < 200; i++)
		args[i] = (void *)i;
	cr_assert_eq(exe_pool_map(p, slow_square, args, 200, results, 20 * EXE_NS_PER_MS, &at), -ETIMEDOUT);
	cr_assert_lt(at, 200);
	exe_pool_destroy(p);
}

Test(thread_pool, map_of_nothing_succeeds_and_bad_input_fails)
{
	struct exe_pool *p = make_pool(1, 0);

	cr_assert_eq(exe_pool_map(p, square, NULL, 0, NULL, EXE_FOREVER, NULL), 0);
	cr_assert_eq(exe_pool_map(p, NULL, NULL, 0, NULL, EXE_FOREVER, NULL), -EINVAL);
	exe_pool_shutdown(p, 0);
	{
		void *args[1] = {NULL}, *res[1];

		cr_assert_eq(exe_pool_map(p, square, args, 1, res, EXE_FOREVER, NULL), -ESHUTDOWN);
	}
	exe_pool_destroy(p);
}

static _Atomic pthread_t moved_thread;
static _Atomic int refused_hook_calls;

static int record_moved(struct exe_future *f, void *arg)
{
	(void)f;
	(void)arg;
	atomic_store(&moved_thread, pthread_self());
	return 0;
}

static void refused_hook(const char *what, int code, const char *msg, void *arg)
{
	(void)what;
	(void)msg;
	(void)arg;
	if (code == -ESHUTDOWN)
		atomic_fetch_add(&refused_hook_calls, 1);
}

Test(thread_pool, on_done_in_runs_the_callback_on_the_named_pool)
{
	struct exe_pool *work = make_pool(1, 0), *cbs = NULL;
	struct exe_pool_opts o = {.workers = 1, .no_caller_runs = true, .name = "cbs"};
	struct exe_future *f;

	cr_assert_eq(exe_thread_pool_create(&cbs, &o), 0);
	atomic_store(&moved_thread, (pthread_t)0);
	exe_pool_submit(work, square, NULL, &f);
	cr_assert_eq(exe_future_on_done_in(f, cbs, record_moved, NULL), 0);
	exe_future_wait(f, EXE_FOREVER);
	exe_pool_shutdown(cbs, EXE_SHUTDOWN_WAIT);
	cr_assert_neq(atomic_load(&moved_thread), (pthread_t)0);
	cr_assert_neq(atomic_load(&moved_thread), pthread_self());
	exe_future_unref(f);
	exe_pool_destroy(work);
	exe_pool_destroy(cbs);
}

Test(thread_pool, on_done_in_a_refusing_pool_still_runs_the_callback_once)
{
	struct exe_pool *closed = make_pool(1, 0);
	struct exe_future *f;

	exe_pool_shutdown(closed, EXE_SHUTDOWN_WAIT);
	atomic_store(&moved_thread, (pthread_t)0);
	atomic_store(&refused_hook_calls, 0);
	exe_set_error_hook(refused_hook, NULL);
	exe_future_create(&f);
	cr_assert_eq(exe_future_on_done_in(f, closed, record_moved, NULL), 0);
	exe_future_set_result(f, NULL, NULL);
	exe_set_error_hook(NULL, NULL);
	cr_assert_eq(atomic_load(&moved_thread), pthread_self(), "ran on the finishing thread");
	cr_assert_eq(atomic_load(&refused_hook_calls), 1);
	exe_future_unref(f);
	exe_pool_destroy(closed);
}

static int fail_at_7(void *arg, void **result)
{
	if ((intptr_t)arg == 7)
		return -EIO;
	return square(arg, result);
}

Test(thread_pool, map_opts_runs_per_element_whatever_the_chunk)
{
	struct exe_pool *p = make_pool(2, 4);
	struct exe_map_opts o = {.timeout_ns = 10 * EXE_NS_PER_S, .chunk = 16};
	void *args[100], *res[100];
	size_t bad = 0;

	for (intptr_t i = 0; i < 100; i++)
		args[i] = (void *)i;
	/* A bounded queue: the map blocks for room, as exe_pool_map() does. */
	cr_assert_eq(exe_pool_map_opts(p, square, args, 100, res, &o, &bad), 0, "failed at %zu", bad);
	for (intptr_t i = 0; i < 100; i++)
		cr_assert_eq((intptr_t)res[i], i * i);
	cr_assert_eq(exe_pool_map_opts(p, square, args, 100, res, NULL, &bad), 0);
	cr_assert_eq(exe_pool_map_opts(p, fail_at_7, args, 100, res, &o, &bad), -EIO);
	cr_assert_eq(bad, 7);
	cr_assert_eq((intptr_t)res[6], 36);
	exe_pool_destroy(p);
}

struct rendezvous {
	_Atomic int arrived;
	int expected;
};

/* Every task must be running at once for any of them to return 0: the
 * shape of producers and consumers blocking on each other. */
static int meet_everyone(void *arg, void **result)
{
	struct rendezvous *r = arg;
	int64_t deadline = exe_now_ns() + 2 * EXE_NS_PER_S;

	(void)result;
	atomic_fetch_add(&r->arrived, 1);
	while (atomic_load(&r->arrived) < r->expected) {
		if (exe_now_ns() > deadline)
			return -ETIMEDOUT;
		sched_yield();
	}
	return 0;
}

Test(thread_pool, tasks_that_need_every_worker_at_once_all_get_one)
{
	enum { WORKERS = 5, ROUNDS = 200 };
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = { .workers = WORKERS, .no_caller_runs = true };

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	for (int round = 0; round < ROUNDS; round++) {
		struct rendezvous r = { .expected = WORKERS };
		struct exe_future *fs[WORKERS];

		/* Vary the pause so the submits meet workers spinning, parking
		 * and asleep. */
		if (round % 4)
			sleep_ms(round % 3);
		for (int i = 0; i < WORKERS; i++)
			cr_assert_eq(exe_pool_submit(p, meet_everyone, &r, &fs[i]), 0);
		for (int i = 0; i < WORKERS; i++) {
			cr_assert_eq(exe_future_result(fs[i], NULL, EXE_FOREVER), 0,
			             "round %d: a task waited for a worker that was never woken", round);
			exe_future_unref(fs[i]);
		}
	}
	exe_pool_destroy(p);
}

Test(thread_pool, map_whose_submit_fails_midway_fills_the_results_before_it)
{
	struct exe_pool *p = make_pool(1, 0);
	void *args[10], *results[10] = {0};
	size_t at = 99;

	for (intptr_t i = 0; i < 10; i++)
		args[i] = (void *)(i + 1);
	/* The future array, then three futures; the fourth submit fails. */
	exe__alloc_fail_after(4);
	cr_assert_eq(exe_pool_map(p, square, args, 10, results, EXE_FOREVER, &at), -ENOMEM);
	exe__alloc_fail_after(-1);
	cr_assert_eq(at, 3);
	for (intptr_t i = 0; i < 3; i++)
		cr_assert_eq((intptr_t)results[i], (i + 1) * (i + 1));
	exe_pool_destroy(p);
}
