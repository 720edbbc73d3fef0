/*
 * test_future.c - one future: states, results and errors, waiting, cancel,
 * done callbacks, references, promises and the in-task helpers.
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

TestSuite(future, .timeout = 30);

/* ---- helpers ---- */

/* A thread that completes a future after a delay. */
enum action { DO_RESULT, DO_ERROR, DO_CANCEL };

struct completer {
	pthread_t thread;
	struct exe_future *f;
	long delay_ms;
	enum action what;
	void *value;
	int code;
	int rc;
};

static void *completer_main(void *arg)
{
	struct completer *c = arg;

	sleep_ms(c->delay_ms);
	switch (c->what) {
	case DO_RESULT: c->rc = exe_future_set_result(c->f, c->value, NULL); break;
	case DO_ERROR: c->rc = exe_future_set_error(c->f, c->code, "late failure"); break;
	case DO_CANCEL: c->rc = exe_future_cancel(c->f); break;
	}
	return NULL;
}

static void completer_start(struct completer *c, struct exe_future *f, long delay_ms, enum action what)
{
	c->f = f;
	c->delay_ms = delay_ms;
	c->what = what;
	c->rc = 1;
	cr_assert_eq(pthread_create(&c->thread, NULL, completer_main, c), 0);
}

static void completer_join(struct completer *c)
{
	cr_assert_eq(pthread_join(c->thread, NULL), 0);
}

/* A thread that waits for a future (exe_future_result). */
struct waiter {
	pthread_t thread;
	struct exe_future *f;
	int64_t timeout_ns;
	atomic_int started;
	int rc;
	void *value;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	atomic_store(&w->started, 1);
	w->rc = exe_future_result(w->f, &w->value, w->timeout_ns);
	return NULL;
}

static void waiter_start(struct waiter *w, struct exe_future *f, int64_t timeout_ns)
{
	w->f = f;
	w->timeout_ns = timeout_ns;
	atomic_init(&w->started, 0);
	w->rc = 1;
	w->value = NULL;
	cr_assert_eq(pthread_create(&w->thread, NULL, waiter_main, w), 0);
	while (!atomic_load(&w->started))
		sleep_ms(1);
	sleep_ms(20); /* let it reach the futex */
}

/* A log of callback invocations. */
#define LOG_MAX 64

struct cb_log {
	atomic_int n;
	int ids[LOG_MAX];
	pthread_t threads[LOG_MAX];
	int codes[LOG_MAX];
	enum exe_future_state states[LOG_MAX];
};

struct cb_arg {
	struct cb_log *log;
	int id;
	int ret;            /* what the callback returns */
	struct cb_arg *add; /* a callback to add from inside this one */
	int add_rc;
};

static int log_cb(struct exe_future *f, void *arg)
{
	struct cb_arg *a = arg;
	int i = atomic_fetch_add(&a->log->n, 1);

	if (i < LOG_MAX) {
		a->log->ids[i] = a->id;
		a->log->threads[i] = pthread_self();
		a->log->codes[i] = exe_future_code(f);
		a->log->states[i] = exe_future_state(f);
	}
	if (a->add)
		a->add_rc = exe_future_on_done(f, log_cb, a->add);
	return a->ret;
}

static void log_init(struct cb_log *log)
{
	memset(log, 0, sizeof(*log));
	atomic_init(&log->n, 0);
}

/* A pool task that blocks until its gate opens (bounded: a test that
 * forgets to open it fails instead of hanging). */
struct gate {
	atomic_int entered;
	atomic_int open;
};

static int gate_task(void *arg, void **result)
{
	struct gate *g = arg;
	int i;

	atomic_store(&g->entered, 1);
	for (i = 0; i < 20000 && !atomic_load(&g->open); i++)
		sleep_ms(1);
	*result = NULL;
	return atomic_load(&g->open) ? 0 : -ETIMEDOUT;
}

static void gate_wait_entered(struct gate *g)
{
	int i;

	for (i = 0; i < 10000 && !atomic_load(&g->entered); i++)
		sleep_ms(1);
	cr_assert(atomic_load(&g->entered), "the gate task never started");
}

static struct exe_pool *pool_of(unsigned workers, bool no_caller_runs)
{
	struct exe_pool_opts o = {.workers = workers, .no_caller_runs = no_caller_runs};
	struct exe_pool *p = NULL;

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	return p;
}

/* ---- creation and one-way transitions ---- */

Test(future, create_gives_a_pending_unfinished_future)
{
	struct exe_future *f = promise();

	cr_assert_eq(exe_future_state(f), EXE_FUTURE_PENDING);
	cr_assert_not(exe_future_is_finished(f));
	cr_assert_eq(exe_future_code(f), -ETIMEDOUT);
	cr_assert_null(exe_future_error(f));
	cr_assert_not(exe_future_cancel_requested(f));
	exe_future_unref(f);
}

Test(future, create_with_null_out_returns_einval)
{
	cr_assert_eq(exe_future_create(NULL), -EINVAL);
}

Test(future, set_result_makes_it_done_with_the_value)
{
	struct exe_future *f = promise();
	int x = 7;
	void *v = NULL;

	cr_assert_eq(exe_future_set_result(f, &x, NULL), 0);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_DONE);
	cr_assert(exe_future_is_finished(f));
	cr_assert_eq(exe_future_result(f, &v, 0), 0);
	cr_assert_eq(v, &x);
	cr_assert_eq(exe_future_code(f), 0);
	cr_assert_null(exe_future_error(f));
	cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), 0);
	exe_future_unref(f);
}

Test(future, set_result_twice_returns_ealready_and_keeps_the_first_value)
{
	struct exe_future *f = promise();
	int a = 1, b = 2;
	void *v = NULL;

	cr_assert_eq(exe_future_set_result(f, &a, NULL), 0);
	cr_assert_eq(exe_future_set_result(f, &b, NULL), -EALREADY);
	cr_assert_eq(exe_future_set_error(f, -EIO, "late"), -EALREADY);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_DONE);
	cr_assert_eq(exe_future_result(f, &v, 0), 0);
	cr_assert_eq(v, &a);
	cr_assert_null(exe_future_error(f));
	exe_future_unref(f);
}

Test(future, set_error_twice_returns_ealready_and_keeps_the_first_error)
{
	struct exe_future *f = promise();
	int b = 2;
	void *v = &b;

	cr_assert_eq(exe_future_set_error(f, -EIO, "first %d", 1), 0);
	cr_assert_eq(exe_future_set_error(f, -ENOENT, "second"), -EALREADY);
	cr_assert_eq(exe_future_set_result(f, &b, NULL), -EALREADY);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_FAILED);
	cr_assert_eq(exe_future_result(f, &v, 0), -EIO);
	cr_assert_null(v, "a failed result reports no value");
	cr_assert_str_eq(exe_future_error(f), "first 1");
	exe_future_unref(f);
}

Test(future, completing_a_cancelled_future_returns_ealready)
{
	struct exe_future *f = promise();
	int x = 1;

	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(exe_future_set_result(f, &x, NULL), -EALREADY);
	cr_assert_eq(exe_future_set_error(f, -EIO, NULL), -EALREADY);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_CANCELLED);
	cr_assert_eq(exe_future_code(f), -ECANCELED);
	exe_future_unref(f);
}

Test(future, start_moves_pending_to_running_once)
{
	struct exe_future *f = promise();
	int x = 3;
	void *v = NULL;

	cr_assert_eq(exe_future_start(f), 0);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_RUNNING);
	cr_assert_not(exe_future_is_finished(f));
	cr_assert_eq(exe_future_code(f), -ETIMEDOUT);
	cr_assert_eq(exe_future_start(f), -EALREADY);
	cr_assert_eq(exe_future_set_result(f, &x, NULL), 0);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_DONE);
	cr_assert_eq(exe_future_result(f, &v, 0), 0);
	cr_assert_eq(v, &x);
	cr_assert_eq(exe_future_start(f), -EALREADY);
	exe_future_unref(f);
}

Test(future, start_on_cancelled_returns_ecanceled)
{
	struct exe_future *f = promise();

	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(exe_future_start(f), -ECANCELED);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_CANCELLED);
	exe_future_unref(f);
}

Test(future, start_on_failed_returns_ealready)
{
	struct exe_future *f = promise();

	cr_assert_eq(exe_future_set_error(f, -EIO, NULL), 0);
	cr_assert_eq(exe_future_start(f), -EALREADY);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_FAILED);
	exe_future_unref(f);
}

Test(future, null_arguments_return_einval)
{
	cr_assert_eq(exe_future_start(NULL), -EINVAL);
	cr_assert_eq(exe_future_set_result(NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_future_set_error(NULL, -EIO, NULL), -EINVAL);
	cr_assert_eq(exe_future_cancel(NULL), -EINVAL);
	cr_assert_eq(exe_future_wait(NULL, 0), -EINVAL);
	cr_assert_eq(exe_future_on_done(NULL, log_cb, NULL), -EINVAL);
	exe_future_unref(NULL); /* documented no-op */
}

/* ---- waiting with timeouts ---- */

Test(future, result_with_timeout_zero_on_pending_returns_etimedout)
{
	struct exe_future *f = promise();
	int sentinel;
	void *v = &sentinel;

	cr_assert_eq(exe_future_result(f, &v, 0), -ETIMEDOUT);
	cr_assert_eq(exe_future_wait(f, 0), -ETIMEDOUT);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_set_result(f, NULL, NULL), 0, "the timeout left it completable");
	cr_assert_eq(exe_future_wait(f, 0), 0);
	exe_future_unref(f);
}

Test(future, result_with_timeout_zero_on_running_returns_etimedout)
{
	struct exe_future *f = promise();

	cr_assert_eq(exe_future_start(f), 0);
	cr_assert_eq(exe_future_result(f, NULL, 0), -ETIMEDOUT);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_RUNNING);
	cr_assert_eq(exe_future_set_error(f, -EIO, NULL), 0);
	exe_future_unref(f);
}

Test(future, positive_timeout_expires_and_leaves_the_future_unchanged)
{
	struct exe_future *f = promise();
	int64_t t0 = exe_now_ns();
	int x = 5;
	void *v = NULL;

	cr_assert_eq(exe_future_wait(f, 30 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_geq(exe_now_ns() - t0, 30 * EXE_NS_PER_MS, "returned before its bound");
	cr_assert_eq(exe_future_result(f, &v, 10 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_PENDING);
	cr_assert_not(exe_future_cancel_requested(f));
	cr_assert_eq(exe_future_set_result(f, &x, NULL), 0);
	cr_assert_eq(exe_future_result(f, &v, 10 * EXE_NS_PER_MS), 0);
	cr_assert_eq(v, &x);
	exe_future_unref(f);
}

Test(future, positive_timeout_returns_the_result_when_completed_in_time)
{
	struct exe_future *f = promise();
	struct completer c = {.value = (void *)0x1234};
	void *v = NULL;

	completer_start(&c, f, 20, DO_RESULT);
	cr_assert_eq(exe_future_result(f, &v, 10 * EXE_NS_PER_S), 0);
	cr_assert_eq(v, (void *)0x1234);
	completer_join(&c);
	cr_assert_eq(c.rc, 0);
	exe_future_unref(f);
}

Test(future, negative_timeout_waits_until_another_thread_completes_it)
{
	struct exe_future *f = promise();
	struct completer c = {.value = (void *)0xbeef};
	void *v = NULL;

	completer_start(&c, f, 30, DO_RESULT);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
	cr_assert_eq(v, (void *)0xbeef);
	completer_join(&c);
	cr_assert_eq(c.rc, 0);
	exe_future_unref(f);
}

Test(future, negative_timeout_reports_a_failure_from_another_thread)
{
	struct exe_future *f = promise();
	struct completer c = {.code = -ENOENT};

	completer_start(&c, f, 30, DO_ERROR);
	cr_assert_eq(exe_future_wait(f, -5), 0);
	cr_assert_eq(exe_future_result(f, NULL, 0), -ENOENT);
	cr_assert_str_eq(exe_future_error(f), "late failure");
	completer_join(&c);
	exe_future_unref(f);
}

/* ---- errors and codes ---- */

Test(future, set_error_records_code_and_formatted_message)
{
	struct exe_future *f = promise();

	cr_assert_eq(exe_future_set_error(f, -EIO, "disk %d of %s", 3, "raid"), 0);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_FAILED);
	cr_assert_eq(exe_future_code(f), -EIO);
	cr_assert_eq(exe_future_result(f, NULL, 0), -EIO);
	cr_assert_str_eq(exe_future_error(f), "disk 3 of raid");
	exe_future_unref(f);
}

Test(future, set_error_without_message_gives_the_generic_text)
{
	struct exe_future *f = promise();

	cr_assert_eq(exe_future_set_error(f, -ENOENT, NULL), 0);
	cr_assert_not_null(exe_future_error(f));
	cr_assert_str_eq(exe_future_error(f), exe_strerror(-ENOENT));
	exe_future_unref(f);
}

Test(future, set_error_negates_a_positive_code)
{
	struct exe_future *f = promise();

	cr_assert_eq(exe_future_set_error(f, EPERM, "denied"), 0);
	cr_assert_eq(exe_future_code(f), -EPERM);
	cr_assert_eq(exe_future_result(f, NULL, 0), -EPERM);
	cr_assert_str_eq(exe_future_error(f), "denied");
	exe_future_unref(f);
}

Test(future, set_error_turns_code_zero_into_einval)
{
	struct exe_future *f = promise();

	cr_assert_eq(exe_future_set_error(f, 0, "no code"), 0);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_FAILED);
	cr_assert_eq(exe_future_code(f), -EINVAL);
	cr_assert_str_eq(exe_future_error(f), "no code");
	exe_future_unref(f);
}

Test(future, code_reports_each_state)
{
	struct exe_future *pending = promise(), *running = promise(), *done = promise(), *failed = promise(),
			  *cancelled = promise();

	cr_assert_eq(exe_future_start(running), 0);
	cr_assert_eq(exe_future_set_result(done, NULL, NULL), 0);
	cr_assert_eq(exe_future_set_error(failed, -EMSGSIZE, NULL), 0);
	cr_assert_eq(exe_future_cancel(cancelled), 0);
	cr_assert_eq(exe_future_code(pending), -ETIMEDOUT);
	cr_assert_eq(exe_future_code(running), -ETIMEDOUT);
	cr_assert_eq(exe_future_code(done), 0);
	cr_assert_eq(exe_future_code(failed), -EMSGSIZE);
	cr_assert_eq(exe_future_code(cancelled), -ECANCELED);
	cr_assert_null(exe_future_error(pending));
	cr_assert_null(exe_future_error(running));
	cr_assert_null(exe_future_error(done));
	cr_assert_not_null(exe_future_error(failed));
	cr_assert_not_null(exe_future_error(cancelled));
	cr_assert_eq(exe_future_set_result(running, NULL, NULL), 0);
	exe_future_unref(pending);
	exe_future_unref(running);
	exe_future_unref(done);
	exe_future_unref(failed);
	exe_future_unref(cancelled);
}

/* ---- cancel ---- */

Test(future, cancel_of_pending_makes_it_cancelled)
{
	struct exe_future *f = promise();
	void *v = (void *)1;

	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_CANCELLED);
	cr_assert(exe_future_is_finished(f));
	cr_assert(exe_future_cancel_requested(f));
	cr_assert_eq(exe_future_result(f, &v, 0), -ECANCELED);
	cr_assert_null(v);
	cr_assert_eq(exe_future_wait(f, EXE_FOREVER), 0);
	cr_assert_not_null(exe_future_error(f));
	exe_future_unref(f);
}

Test(future, cancel_runs_callbacks_on_the_cancelling_thread_with_ecanceled)
{
	struct exe_future *f = promise();
	struct cb_log log;
	struct cb_arg a, b;

	log_init(&log);
	a = (struct cb_arg){.log = &log, .id = 1};
	b = (struct cb_arg){.log = &log, .id = 2};
	cr_assert_eq(exe_future_on_done(f, log_cb, &a), 0);
	cr_assert_eq(exe_future_on_done(f, log_cb, &b), 0);
	cr_assert_eq(atomic_load(&log.n), 0);
	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(atomic_load(&log.n), 2, "callbacks ran before cancel returned");
	cr_assert_eq(log.ids[0], 1);
	cr_assert_eq(log.ids[1], 2);
	cr_assert_eq(log.codes[0], -ECANCELED);
	cr_assert_eq(log.states[1], EXE_FUTURE_CANCELLED);
	cr_assert(pthread_equal(log.threads[0], pthread_self()));
	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(atomic_load(&log.n), 2, "a second cancel runs nothing again");
	exe_future_unref(f);
}

Test(future, cancel_wakes_waiters_in_other_threads)
{
	struct exe_future *f = promise();
	struct waiter w1, w2, w3;

	waiter_start(&w1, f, EXE_FOREVER);
	waiter_start(&w2, f, EXE_FOREVER);
	waiter_start(&w3, f, 20 * EXE_NS_PER_S);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_PENDING);
	cr_assert_eq(w1.rc, 1, "a waiter returned before the cancel");
	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(pthread_join(w1.thread, NULL), 0);
	cr_assert_eq(pthread_join(w2.thread, NULL), 0);
	cr_assert_eq(pthread_join(w3.thread, NULL), 0);
	cr_assert_eq(w1.rc, -ECANCELED);
	cr_assert_eq(w2.rc, -ECANCELED);
	cr_assert_eq(w3.rc, -ECANCELED);
	exe_future_unref(f);
}

Test(future, completion_wakes_waiters_in_other_threads)
{
	struct exe_future *f = promise();
	struct waiter w1, w2;

	waiter_start(&w1, f, EXE_FOREVER);
	waiter_start(&w2, f, 20 * EXE_NS_PER_S);
	cr_assert_eq(exe_future_set_result(f, (void *)0x77, NULL), 0);
	cr_assert_eq(pthread_join(w1.thread, NULL), 0);
	cr_assert_eq(pthread_join(w2.thread, NULL), 0);
	cr_assert_eq(w1.rc, 0);
	cr_assert_eq(w1.value, (void *)0x77);
	cr_assert_eq(w2.rc, 0);
	cr_assert_eq(w2.value, (void *)0x77);
	exe_future_unref(f);
}

Test(future, cancel_twice_returns_zero)
{
	struct exe_future *f = promise();

	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_CANCELLED);
	exe_future_unref(f);
}

Test(future, cancel_of_done_returns_ealready_and_keeps_the_value)
{
	struct exe_future *f = promise();
	int x = 9;
	void *v = NULL;

	cr_assert_eq(exe_future_set_result(f, &x, NULL), 0);
	cr_assert_eq(exe_future_cancel(f), -EALREADY);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_DONE);
	cr_assert_eq(exe_future_result(f, &v, 0), 0);
	cr_assert_eq(v, &x);
	exe_future_unref(f);
}

Test(future, cancel_of_failed_returns_ealready_and_keeps_the_error)
{
	struct exe_future *f = promise();

	cr_assert_eq(exe_future_set_error(f, -EIO, "io"), 0);
	cr_assert_eq(exe_future_cancel(f), -EALREADY);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_FAILED);
	cr_assert_eq(exe_future_code(f), -EIO);
	cr_assert_str_eq(exe_future_error(f), "io");
	exe_future_unref(f);
}

Test(future, cancel_of_a_started_promise_returns_ebusy_and_records_the_request)
{
	struct exe_future *f = promise();

	cr_assert_eq(exe_future_start(f), 0);
	cr_assert_eq(exe_future_cancel(f), -EBUSY);
	cr_assert(exe_future_cancel_requested(f));
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_RUNNING);
	cr_assert_eq(exe_future_cancel(f), -EBUSY);
	cr_assert_eq(exe_future_set_error(f, -ECANCELED, "stopped"), 0);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_FAILED);
	cr_assert_eq(exe_future_result(f, NULL, 0), -ECANCELED);
	exe_future_unref(f);
}

struct spin {
	atomic_int started;
	atomic_int saw_cancel;
	struct exe_future *self;
};

static int spin_until_cancelled(void *arg, void **result)
{
	struct spin *s = arg;
	int i;

	(void)result;
	s->self = exe_task_future();
	atomic_store(&s->started, 1);
	for (i = 0; i < 100000 && !exe_task_cancelled(); i++)
		sched_yield();
	if (!exe_task_cancelled())
		return -ETIMEDOUT;
	atomic_store(&s->saw_cancel, 1);
	return -ECANCELED;
}

Test(future, cancel_of_running_task_returns_ebusy_and_the_task_sees_the_request)
{
	struct exe_pool *p = pool_of(1, false);
	struct exe_future *f = NULL;
	struct spin s = {0};
	int i;

	cr_assert_eq(exe_pool_submit(p, spin_until_cancelled, &s, &f), 0);
	for (i = 0; i < 10000 && !atomic_load(&s.started); i++)
		sleep_ms(1);
	cr_assert(atomic_load(&s.started));
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_RUNNING);
	cr_assert_eq(exe_future_cancel(f), -EBUSY);
	cr_assert(exe_future_cancel_requested(f));
	cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), -ECANCELED);
	cr_assert(atomic_load(&s.saw_cancel));
	cr_assert_eq(s.self, f, "exe_task_future() is the task's own future");
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_FAILED,
	             "it ran, so it failed rather than being cancelled");
	cr_assert_eq(exe_future_cancel(f), -EALREADY);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

static atomic_int plain_runs;

static int plain_task(void *arg, void **result)
{
	atomic_fetch_add(&plain_runs, 1);
	*result = arg;
	return 0;
}

Test(future, cancel_of_a_queued_task_makes_it_cancelled_and_it_never_runs)
{
	struct exe_pool *p = pool_of(1, true);
	struct exe_future *blocker = NULL, *f = NULL;
	struct gate g = {0};

	cr_assert_eq(exe_pool_submit(p, gate_task, &g, &blocker), 0);
	gate_wait_entered(&g);
	cr_assert_eq(exe_pool_submit(p, plain_task, NULL, &f), 0);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_PENDING);
	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_CANCELLED);
	atomic_store(&g.open, 1);
	cr_assert_eq(exe_future_result(blocker, NULL, EXE_FOREVER), 0);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&plain_runs), 0);
	cr_assert_eq(exe_future_result(f, NULL, 0), -ECANCELED);
	exe_future_unref(f);
	exe_future_unref(blocker);
}

Test(future, start_and_set_result_on_a_pool_task_return_einval)
{
	struct exe_pool *p = pool_of(1, true);
	struct exe_future *blocker = NULL, *f = NULL;
	struct gate g = {0};
	void *v = NULL;

	cr_assert_eq(exe_pool_submit(p, gate_task, &g, &blocker), 0);
	gate_wait_entered(&g);
	cr_assert_eq(exe_pool_submit(p, plain_task, (void *)0x55, &f), 0);
	cr_assert_eq(exe_future_start(f), -EINVAL, "only promises are started by user code");
	cr_assert_eq(exe_future_set_result(f, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_future_set_error(f, -EIO, "x"), -EINVAL);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_PENDING);
	atomic_store(&g.open, 1);
	cr_assert_eq(exe_future_result(f, &v, 20 * EXE_NS_PER_S), 0, "the task still runs");
	cr_assert_eq(v, (void *)0x55);
	exe_future_unref(f);
	exe_future_unref(blocker);
	exe_pool_destroy(p);
}

/* ---- done callbacks ---- */

Test(future, on_done_runs_inline_when_already_done)
{
	struct exe_future *f = promise();
	struct cb_log log;
	struct cb_arg a;

	log_init(&log);
	a = (struct cb_arg){.log = &log, .id = 1};
	cr_assert_eq(exe_future_set_result(f, NULL, NULL), 0);
	cr_assert_eq(exe_future_on_done(f, log_cb, &a), 0);
	cr_assert_eq(atomic_load(&log.n), 1, "ran before on_done returned");
	cr_assert(pthread_equal(log.threads[0], pthread_self()));
	cr_assert_eq(log.states[0], EXE_FUTURE_DONE);
	exe_future_unref(f);
}

Test(future, on_done_runs_on_the_finishing_thread_otherwise)
{
	struct exe_future *f = promise();
	struct completer c = {.value = NULL};
	struct cb_log log;
	struct cb_arg a;

	log_init(&log);
	a = (struct cb_arg){.log = &log, .id = 1};
	cr_assert_eq(exe_future_on_done(f, log_cb, &a), 0);
	cr_assert_eq(atomic_load(&log.n), 0, "not run while pending");
	completer_start(&c, f, 10, DO_RESULT);
	completer_join(&c);
	cr_assert_eq(c.rc, 0);
	cr_assert_eq(atomic_load(&log.n), 1, "ran before set_result returned");
	cr_assert(pthread_equal(log.threads[0], c.thread));
	cr_assert_eq(log.codes[0], 0);
	exe_future_unref(f);
}

Test(future, callbacks_run_exactly_once_in_registration_order)
{
	struct exe_future *f = promise();
	struct cb_log log;
	struct cb_arg a[8];
	int i;

	log_init(&log);
	for (i = 0; i < 8; i++)
		a[i] = (struct cb_arg){.log = &log, .id = i};
	for (i = 0; i < 5; i++)
		cr_assert_eq(exe_future_on_done(f, log_cb, &a[i]), 0);
	cr_assert_eq(exe_future_set_error(f, -EIO, NULL), 0);
	cr_assert_eq(atomic_load(&log.n), 5);
	for (i = 5; i < 8; i++)
		cr_assert_eq(exe_future_on_done(f, log_cb, &a[i]), 0);
	cr_assert_eq(exe_future_cancel(f), -EALREADY);
	cr_assert_eq(exe_future_set_result(f, NULL, NULL), -EALREADY);
	cr_assert_eq(atomic_load(&log.n), 8, "each callback ran once, none again");
	for (i = 0; i < 8; i++) {
		cr_assert_eq(log.ids[i], i, "callback %d ran at position %d", log.ids[i], i);
		cr_assert_eq(log.codes[i], -EIO);
	}
	exe_future_unref(f);
}

Test(future, callback_added_inside_a_running_callback_runs_after_the_queued_ones)
{
	struct exe_future *f = promise();
	struct cb_log log;
	struct cb_arg a, b, c;

	log_init(&log);
	c = (struct cb_arg){.log = &log, .id = 3};
	a = (struct cb_arg){.log = &log, .id = 1, .add = &c, .add_rc = 1};
	b = (struct cb_arg){.log = &log, .id = 2};
	cr_assert_eq(exe_future_on_done(f, log_cb, &a), 0);
	cr_assert_eq(exe_future_on_done(f, log_cb, &b), 0);
	cr_assert_eq(exe_future_set_result(f, NULL, NULL), 0);
	cr_assert_eq(a.add_rc, 0);
	cr_assert_eq(atomic_load(&log.n), 3);
	cr_assert_eq(log.ids[0], 1);
	cr_assert_eq(log.ids[1], 2, "the nested callback must not overtake b");
	cr_assert_eq(log.ids[2], 3);
	cr_assert(pthread_equal(log.threads[2], pthread_self()));
	exe_future_unref(f);
}

Test(future, callback_added_inside_an_inline_callback_runs_after_it_returns)
{
	struct exe_future *f = promise();
	struct cb_log log;
	struct cb_arg a, c, d;

	log_init(&log);
	d = (struct cb_arg){.log = &log, .id = 4};
	c = (struct cb_arg){.log = &log, .id = 3, .add = &d, .add_rc = 1};
	a = (struct cb_arg){.log = &log, .id = 1, .add = &c, .add_rc = 1};
	cr_assert_eq(exe_future_set_result(f, NULL, NULL), 0);
	cr_assert_eq(exe_future_on_done(f, log_cb, &a), 0);
	cr_assert_eq(atomic_load(&log.n), 3, "the whole chain ran before on_done returned");
	cr_assert_eq(log.ids[0], 1);
	cr_assert_eq(log.ids[1], 3);
	cr_assert_eq(log.ids[2], 4);
	exe_future_unref(f);
}

#define RACE_ITERS 2000
#define RACE_THREADS 3
#define RACE_CBS 4

struct race {
	pthread_barrier_t start, end;
	struct exe_future *f;
	atomic_int seq;
	atomic_int hits[RACE_THREADS][RACE_CBS];
	int order[RACE_THREADS][RACE_CBS];
	int add_failures;
};

struct race_cb {
	struct race *r;
	int t, k;
};

static int race_cb(struct exe_future *f, void *arg)
{
	struct race_cb *c = arg;

	(void)f;
	c->r->order[c->t][c->k] = atomic_fetch_add(&c->r->seq, 1);
	atomic_fetch_add(&c->r->hits[c->t][c->k], 1);
	return 0;
}

struct race_thread {
	pthread_t thread;
	struct race *r;
	int t;
	struct race_cb cbs[RACE_CBS];
};

static void *race_main(void *arg)
{
	struct race_thread *rt = arg;
	int iter, k;

	for (iter = 0; iter < RACE_ITERS; iter++) {
		pthread_barrier_wait(&rt->r->start);
		for (k = 0; k < RACE_CBS; k++) {
			rt->cbs[k] = (struct race_cb){rt->r, rt->t, k};
			if (exe_future_on_done(rt->r->f, race_cb, &rt->cbs[k]) != 0)
				rt->r->add_failures++;
		}
		pthread_barrier_wait(&rt->r->end);
	}
	return NULL;
}

Test(future, callbacks_added_concurrently_with_completion_each_run_exactly_once)
{
	static struct race r;
	static struct race_thread th[RACE_THREADS];
	int iter, t, k;

	cr_assert_eq(pthread_barrier_init(&r.start, NULL, RACE_THREADS + 1), 0);
	cr_assert_eq(pthread_barrier_init(&r.end, NULL, RACE_THREADS + 1), 0);
	for (t = 0; t < RACE_THREADS; t++) {
		th[t].r = &r;
		th[t].t = t;
		cr_assert_eq(pthread_create(&th[t].thread, NULL, race_main, &th[t]), 0);
	}
	for (iter = 0; iter < RACE_ITERS; iter++) {
		r.f = promise();
		atomic_store(&r.seq, 0);
		for (t = 0; t < RACE_THREADS; t++)
			for (k = 0; k < RACE_CBS; k++)
				atomic_store(&r.hits[t][k], 0);
		pthread_barrier_wait(&r.start);
		if (iter % 2)
			cr_assert_eq(exe_future_set_result(r.f, NULL, NULL), 0);
		else
			cr_assert_eq(exe_future_cancel(r.f), 0);
		pthread_barrier_wait(&r.end);
		/* Every on_done and the completion returned: all ran. */
		for (t = 0; t < RACE_THREADS; t++) {
			for (k = 0; k < RACE_CBS; k++) {
				cr_assert_eq(atomic_load(&r.hits[t][k]), 1,
				             "iteration %d: callback %d/%d ran %d times", iter, t, k,
				             atomic_load(&r.hits[t][k]));
				if (k > 0)
					cr_assert_lt(r.order[t][k - 1], r.order[t][k],
					             "iteration %d: thread %d's callbacks ran out of order",
					             iter, t);
			}
		}
		exe_future_unref(r.f);
	}
	for (t = 0; t < RACE_THREADS; t++)
		cr_assert_eq(pthread_join(th[t].thread, NULL), 0);
	cr_assert_eq(r.add_failures, 0);
	pthread_barrier_destroy(&r.start);
	pthread_barrier_destroy(&r.end);
}

/* The error hook. */
struct hook_log {
	atomic_int calls;
	int code;
	char what[64];
};

static void record_hook(const char *what, int code, const char *msg, void *arg)
{
	struct hook_log *h = arg;

	(void)msg;
	if (atomic_fetch_add(&h->calls, 1) == 0) {
		h->code = code;
		strncpy(h->what, what ? what : "", sizeof(h->what) - 1);
	}
}

Test(future, callback_returning_nonzero_goes_to_the_error_hook_and_not_to_the_future)
{
	struct exe_future *f = promise();
	struct hook_log h = {0};
	struct cb_log log;
	struct cb_arg a, b, c;
	int x = 4;
	void *v = NULL;

	log_init(&log);
	a = (struct cb_arg){.log = &log, .id = 1, .ret = EPROTO};
	b = (struct cb_arg){.log = &log, .id = 2, .ret = -ENOSPC};
	c = (struct cb_arg){.log = &log, .id = 3};
	exe_set_error_hook(record_hook, &h);
	cr_assert_eq(exe_future_on_done(f, log_cb, &a), 0);
	cr_assert_eq(exe_future_on_done(f, log_cb, &b), 0);
	cr_assert_eq(exe_future_on_done(f, log_cb, &c), 0);
	cr_assert_eq(exe_future_set_result(f, &x, NULL), 0);
	exe_set_error_hook(NULL, NULL);
	cr_assert_eq(atomic_load(&log.n), 3, "a failing callback does not stop the others");
	cr_assert_eq(atomic_load(&h.calls), 2);
	cr_assert_eq(h.code, -EPROTO, "a positive return is reported negated");
	cr_assert_str_eq(h.what, "done callback");
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_DONE);
	cr_assert_eq(exe_future_result(f, &v, 0), 0);
	cr_assert_eq(v, &x);
	cr_assert_null(exe_future_error(f));
	exe_future_unref(f);
}

Test(future, on_done_with_null_callback_returns_einval)
{
	struct exe_future *f = promise();
	struct exe_pool *p = pool_of(1, false);

	cr_assert_eq(exe_future_on_done(f, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_future_on_done_in(f, p, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_future_on_done_in(f, NULL, log_cb, NULL), -EINVAL);
	cr_assert_eq(exe_future_set_result(f, NULL, NULL), 0, "nothing was registered to run");
	exe_future_unref(f);
	exe_pool_destroy(p);
}

Test(future, on_done_allocation_failure_returns_enomem_and_adds_nothing)
{
	struct exe_future *f = promise();
	struct cb_log log;
	struct cb_arg a, b;
	int rc;

	log_init(&log);
	a = (struct cb_arg){.log = &log, .id = 1};
	b = (struct cb_arg){.log = &log, .id = 2};
	exe__alloc_fail_after(0);
	rc = exe_future_on_done(f, log_cb, &a);
	exe__alloc_fail_after(-1);
	cr_assert_eq(rc, -ENOMEM);
	cr_assert_eq(exe_future_on_done(f, log_cb, &b), 0);
	cr_assert_eq(exe_future_set_result(f, NULL, NULL), 0);
	cr_assert_eq(atomic_load(&log.n), 1);
	cr_assert_eq(log.ids[0], 2);
	exe_future_unref(f);
}

Test(future, create_allocation_failure_returns_enomem)
{
	struct exe_future *f = (struct exe_future *)&f;
	int rc;

	exe__alloc_fail_after(0);
	rc = exe_future_create(&f);
	exe__alloc_fail_after(-1);
	cr_assert_eq(rc, -ENOMEM);
	cr_assert_eq(f, (struct exe_future *)&f, "*out untouched on failure");
}

Test(future, set_error_survives_message_allocation_failure)
{
	struct exe_future *f = promise();
	int rc;

	exe__alloc_fail_after(0);
	rc = exe_future_set_error(f, -EIO, "lost %s", "message");
	exe__alloc_fail_after(-1);
	cr_assert_eq(rc, 0);
	cr_assert_eq(exe_future_code(f), -EIO);
	cr_assert_str_eq(exe_future_error(f), exe_strerror(-EIO));
	exe_future_unref(f);
}

struct on_pool_log {
	atomic_int runs;
	pthread_t thread;
	int code;
};

static int on_pool_cb(struct exe_future *f, void *arg)
{
	struct on_pool_log *l = arg;

	l->thread = pthread_self();
	l->code = exe_future_code(f);
	atomic_fetch_add(&l->runs, 1);
	return 0;
}

Test(future, on_done_in_runs_the_callback_as_a_task_of_the_pool)
{
	struct exe_pool *p = pool_of(1, true);
	struct exe_future *f = promise();
	struct on_pool_log l = {0};

	cr_assert_eq(exe_future_on_done_in(f, p, on_pool_cb, &l), 0);
	cr_assert_eq(exe_future_set_result(f, NULL, NULL), 0);
	exe_pool_destroy(p); /* drains the callback task */
	cr_assert_eq(atomic_load(&l.runs), 1);
	cr_assert_eq(l.code, 0);
	cr_assert_not(pthread_equal(l.thread, pthread_self()), "the callback ran on a worker");
	exe_future_unref(f);
}

Test(future, on_done_in_a_shut_down_pool_runs_on_the_finishing_thread_and_tells_the_hook)
{
	struct exe_pool *p = pool_of(1, true);
	struct exe_future *f = promise();
	struct on_pool_log l = {0};
	struct hook_log h = {0};

	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT), 0);
	cr_assert_eq(exe_future_on_done_in(f, p, on_pool_cb, &l), 0);
	exe_set_error_hook(record_hook, &h);
	cr_assert_eq(exe_future_set_result(f, NULL, NULL), 0);
	exe_set_error_hook(NULL, NULL);
	cr_assert_eq(atomic_load(&l.runs), 1);
	cr_assert(pthread_equal(l.thread, pthread_self()));
	cr_assert_eq(atomic_load(&h.calls), 1);
	cr_assert_eq(h.code, -ESHUTDOWN);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

/* ---- references and dropping ---- */

struct drop_log {
	atomic_int runs;
	int code;
	enum exe_future_state state;
	char msg[96];
};

static int drop_cb(struct exe_future *f, void *arg)
{
	struct drop_log *d = arg;
	const char *m = exe_future_error(f);

	d->code = exe_future_code(f);
	d->state = exe_future_state(f);
	strncpy(d->msg, m ? m : "(null)", sizeof(d->msg) - 1);
	atomic_fetch_add(&d->runs, 1);
	return 0;
}

Test(future, unref_of_an_unfinished_promise_cancels_it_and_runs_its_callbacks)
{
	struct exe_future *f = promise();
	struct drop_log d = {0};

	cr_assert_eq(exe_future_on_done(f, drop_cb, &d), 0);
	exe_future_ref(f);
	exe_future_unref(f);
	cr_assert_eq(atomic_load(&d.runs), 0, "a reference is still held");
	exe_future_unref(f);
	cr_assert_eq(atomic_load(&d.runs), 1);
	cr_assert_eq(d.state, EXE_FUTURE_CANCELLED);
	cr_assert_eq(d.code, -ECANCELED);
	cr_assert_not_null(strstr(d.msg, "promise dropped"), "message was \"%s\"", d.msg);
}

Test(future, unref_of_a_started_promise_cancels_it_too)
{
	struct exe_future *f = promise();
	struct drop_log d = {0};

	cr_assert_eq(exe_future_start(f), 0);
	cr_assert_eq(exe_future_on_done(f, drop_cb, &d), 0);
	exe_future_unref(f);
	cr_assert_eq(atomic_load(&d.runs), 1);
	cr_assert_eq(d.code, -ECANCELED);
	cr_assert_not_null(strstr(d.msg, "promise dropped"), "message was \"%s\"", d.msg);
}

static int keep_cb(struct exe_future *f, void *arg)
{
	*(struct exe_future **)arg = exe_future_ref(f);
	return 0;
}

Test(future, a_dropped_promise_stays_valid_for_a_callback_that_took_a_reference)
{
	struct exe_future *f = promise(), *kept = NULL;

	cr_assert_eq(exe_future_on_done(f, keep_cb, &kept), 0);
	exe_future_unref(f);
	cr_assert_eq(kept, f);
	cr_assert_eq(exe_future_state(kept), EXE_FUTURE_CANCELLED);
	cr_assert_eq(exe_future_result(kept, NULL, 0), -ECANCELED);
	exe_future_unref(kept);
}

static atomic_int frees;
static void *freed_value;

static void count_free(void *v)
{
	freed_value = v;
	atomic_fetch_add(&frees, 1);
}

Test(future, value_free_is_called_once_when_the_last_reference_goes)
{
	struct exe_future *f = promise();
	int x = 1, y = 2;
	void *v = NULL;

	cr_assert_eq(exe_future_set_result(f, &x, count_free), 0);
	cr_assert_eq(exe_future_set_result(f, &y, count_free), -EALREADY);
	exe_future_ref(f);
	cr_assert_eq(exe_future_result(f, &v, 0), 0);
	cr_assert_eq(v, &x);
	exe_future_unref(f);
	cr_assert_eq(atomic_load(&frees), 0, "freed while a reference remains");
	exe_future_unref(f);
	cr_assert_eq(atomic_load(&frees), 1);
	cr_assert_eq(freed_value, &x, "the rejected value was not taken");
}

Test(future, the_free_function_is_not_called_when_set_result_is_rejected)
{
	struct exe_future *f = promise();
	int y = 2;

	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(exe_future_set_result(f, &y, count_free), -EALREADY);
	exe_future_unref(f);
	cr_assert_eq(atomic_load(&frees), 0);
}

/* ---- inside a task ---- */

static int failing_task(void *arg, void **result)
{
	(void)arg;
	(void)result;
	return exe_task_set_error(-EIO, "sector %d unreadable", 17);
}

Test(future, task_set_error_gives_the_failure_its_message)
{
	struct exe_pool *p = pool_of(1, false);
	struct exe_future *f = NULL;

	cr_assert_eq(exe_pool_submit(p, failing_task, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), -EIO);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_FAILED);
	cr_assert_str_eq(exe_future_error(f), "sector 17 unreadable");
	exe_future_unref(f);
	exe_pool_destroy(p);
}

static int recovering_task(void *arg, void **result)
{
	(void)arg;
	exe_task_set_error(-EIO, "transient");
	*result = (void *)0x99;
	return 0;
}

Test(future, task_that_sets_an_error_message_then_succeeds_has_no_error)
{
	struct exe_pool *p = pool_of(1, false);
	struct exe_future *f = NULL;
	void *v = NULL;

	cr_assert_eq(exe_pool_submit(p, recovering_task, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
	cr_assert_eq(v, (void *)0x99);
	cr_assert_null(exe_future_error(f));
	exe_future_unref(f);
	exe_pool_destroy(p);
}

static int positive_code_task(void *arg, void **result)
{
	(void)arg;
	(void)result;
	return ENOENT;
}

Test(future, task_returning_a_positive_code_fails_with_it_negated)
{
	struct exe_pool *p = pool_of(1, false);
	struct exe_future *f = NULL;

	cr_assert_eq(exe_pool_submit(p, positive_code_task, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), -ENOENT);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

static void free_and_count(void *v)
{
	free(v);
	atomic_fetch_add(&frees, 1);
}

static int allocating_task(void *arg, void **result)
{
	int *v = malloc(sizeof(*v));

	(void)arg;
	if (!v)
		return -ENOMEM;
	*v = 1234;
	exe_task_set_result_free(free_and_count);
	*result = v;
	return 0;
}

Test(future, task_set_result_free_frees_the_value_with_the_future)
{
	struct exe_pool *p = pool_of(1, false);
	struct exe_future *f = NULL;
	void *v = NULL;

	cr_assert_eq(exe_pool_submit(p, allocating_task, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
	cr_assert_not_null(v);
	cr_assert_eq(*(int *)v, 1234);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&frees), 0, "the value is owned by the future, not the pool");
	exe_future_unref(f);
	cr_assert_eq(atomic_load(&frees), 1);
}

Test(future, task_helpers_outside_a_task_do_nothing)
{
	cr_assert_not(exe_task_cancelled());
	cr_assert_null(exe_task_future());
	cr_assert_eq(exe_task_set_error(-EIO, "nowhere"), -EIO);
	exe_task_set_result_free(count_free); /* no task: no effect, no crash */
	cr_assert_eq(atomic_load(&frees), 0);
}

static int cancelled_probe(struct exe_future *f, void *arg)
{
	(void)f;
	*(int *)arg = exe_task_cancelled() ? 1 : 0;
	return 0;
}

Test(future, task_cancelled_is_false_in_a_callback_of_a_cancelled_promise)
{
	struct exe_future *f = promise();
	int seen = -1;

	cr_assert_eq(exe_future_on_done(f, cancelled_probe, &seen), 0);
	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(seen, 0, "no task runs on this thread");
	exe_future_unref(f);
}

#define DUEL_ROUNDS 20000

/* One setter thread for every round (a thread per round made the test a
 * benchmark of pthread_create, 25 s under ASan on a loaded machine): the
 * barrier "go" starts a round's race, "done" ends it. */
struct duel {
	pthread_barrier_t go, done;
	struct exe_future *f;
	int set_rc, cancel_rc;
};

static void *duel_setter(void *arg)
{
	struct duel *d = arg;

	for (int round = 0; round < DUEL_ROUNDS; round++) {
		pthread_barrier_wait(&d->go);
		d->set_rc = exe_future_set_result(d->f, (void *)1, NULL);
		pthread_barrier_wait(&d->done);
	}
	return NULL;
}

Test(future, cancel_racing_set_result_on_a_pending_promise_has_exactly_one_winner)
{
	static struct duel d;
	pthread_t th;
	int round, cancelled = 0, done = 0;

	cr_assert_eq(pthread_barrier_init(&d.go, NULL, 2), 0);
	cr_assert_eq(pthread_barrier_init(&d.done, NULL, 2), 0);
	cr_assert_eq(pthread_create(&th, NULL, duel_setter, &d), 0);
	for (round = 0; round < DUEL_ROUNDS; round++) {
		d.f = promise();
		pthread_barrier_wait(&d.go);
		d.cancel_rc = exe_future_cancel(d.f);
		pthread_barrier_wait(&d.done);
		if (d.cancel_rc == 0) {
			cr_assert_eq(d.set_rc, -EALREADY, "round %d", round);
			cr_assert_eq(exe_future_state(d.f), EXE_FUTURE_CANCELLED, "round %d", round);
			cancelled++;
		} else {
			cr_assert_eq(d.cancel_rc, -EALREADY,
			             "round %d: a promise that never started cannot be busy (cancel gave %d)",
			             round, d.cancel_rc);
			cr_assert_eq(d.set_rc, 0, "round %d", round);
			cr_assert_eq(exe_future_state(d.f), EXE_FUTURE_DONE, "round %d", round);
			cr_assert_not(exe_future_cancel_requested(d.f), "round %d: DONE but cancel requested",
			              round);
			done++;
		}
		exe_future_unref(d.f);
	}
	cr_assert_eq(pthread_join(th, NULL), 0);
	pthread_barrier_destroy(&d.done);
	pthread_barrier_destroy(&d.go);
	cr_assert_eq(cancelled + done, 20000);
}
