/*
 * test_submit_cb.c - exe_pool_submit_cb(): the done callback runs exactly
 * once per accepted task, sees the task's result (value, failure, or the
 * cancel of a shutdown), never runs for a refused submit, works from inside
 * tasks (the worker's deque) and on a process pool (the generic path).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include <executor.h>

#include "alloc.h"

TestSuite(submit_cb, .timeout = 60);

#define NTASKS 2000

static struct exe_pool *make_pool(unsigned workers, size_t capacity)
{
	struct exe_pool *p = NULL;
	struct exe_pool_opts o = {.workers = workers, .queue_capacity = capacity, .name = "cb"};

	cr_assert_eq(exe_thread_pool_create(&p, &o), 0);
	return p;
}

/* What each task's callback saw, by task index. */
static _Atomic int calls[NTASKS];
static _Atomic intptr_t seen_value[NTASKS];
static _Atomic int seen_code[NTASKS];
static _Atomic int total_calls;

static void reset(void)
{
	for (int i = 0; i < NTASKS; i++) {
		atomic_store(&calls[i], 0);
		atomic_store(&seen_value[i], -1);
		atomic_store(&seen_code[i], 1);
	}
	atomic_store(&total_calls, 0);
}

/* The task returns its index + 1000, or fails with -EIO for odd indexes
 * when arg says so. */
struct job {
	int index;
	bool fail_odd;
};

static struct job jobs[NTASKS];

static int job_task(void *arg, void **result)
{
	struct job *j = arg;

	if (j->fail_odd && (j->index & 1))
		return -EIO;
	*result = (void *)(intptr_t)(j->index + 1000);
	return 0;
}

static int record(struct exe_future *f, void *arg)
{
	struct job *j = arg;
	void *v = NULL;
	int code = exe_future_result(f, &v, 0);

	atomic_store(&seen_code[j->index], code);
	atomic_store(&seen_value[j->index], (intptr_t)v);
	atomic_fetch_add(&calls[j->index], 1);
	atomic_fetch_add(&total_calls, 1);
	return 0;
}

static void wait_calls(int n)
{
	struct timespec ts = {0, 1000000};

	for (int i = 0; i < 10000 && atomic_load(&total_calls) < n; i++)
		nanosleep(&ts, NULL);
	cr_assert_eq(atomic_load(&total_calls), n, "%d callbacks ran, want %d", atomic_load(&total_calls), n);
}

static void submit_all(struct exe_pool *p, bool fail_odd)
{
	for (int i = 0; i < NTASKS; i++) {
		jobs[i] = (struct job){i, fail_odd};
		cr_assert_eq(exe_pool_submit_cb(p, job_task, &jobs[i], record, &jobs[i]), 0);
	}
}

static void check_all(bool fail_odd)
{
	for (int i = 0; i < NTASKS; i++) {
		cr_assert_eq(atomic_load(&calls[i]), 1, "task %d: %d callbacks", i, atomic_load(&calls[i]));
		if (fail_odd && (i & 1)) {
			cr_assert_eq(atomic_load(&seen_code[i]), -EIO);
		} else {
			cr_assert_eq(atomic_load(&seen_code[i]), 0);
			cr_assert_eq(atomic_load(&seen_value[i]), i + 1000);
		}
	}
}

Test(submit_cb, every_callback_runs_once_with_its_tasks_result)
{
	struct exe_pool *p = make_pool(2, 0);

	reset();
	submit_all(p, false);
	wait_calls(NTASKS);
	check_all(false);
	exe_pool_destroy(p);
}

Test(submit_cb, failed_tasks_reach_their_callback_with_the_code)
{
	struct exe_pool *p = make_pool(3, 0);

	reset();
	submit_all(p, true);
	wait_calls(NTASKS);
	check_all(true);
	exe_pool_destroy(p);
}

Test(submit_cb, bad_arguments)
{
	struct exe_pool *p = make_pool(1, 0);

	reset();
	cr_assert_eq(exe_pool_submit_cb(NULL, job_task, &jobs[0], record, &jobs[0]), -EINVAL);
	cr_assert_eq(exe_pool_submit_cb(p, NULL, &jobs[0], record, &jobs[0]), -EINVAL);
	cr_assert_eq(exe_pool_submit_cb(p, job_task, &jobs[0], NULL, &jobs[0]), -EINVAL);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&total_calls), 0);
}

Test(submit_cb, refused_submits_never_run_their_callback)
{
	struct exe_pool *p = make_pool(1, 0);

	reset();
	jobs[0] = (struct job){0, false};
	cr_assert_eq(exe_pool_shutdown(p, 0), 0);
	cr_assert_eq(exe_pool_submit_cb(p, job_task, &jobs[0], record, &jobs[0]), -ESHUTDOWN);
	/* Out of memory: the future (which carries the callback). */
	exe_pool_destroy(p);
	p = make_pool(1, 0);
	exe__alloc_fail_after(0);
	cr_assert_eq(exe_pool_submit_cb(p, job_task, &jobs[0], record, &jobs[0]), -ENOMEM);
	exe__alloc_fail_after(-1);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&total_calls), 0);
}

/* A gate task holds the only worker so the rest stay queued. */
static _Atomic int gate_open, gate_entered;

static int gate_task(void *arg, void **result)
{
	struct timespec ts = {0, 100000};

	(void)arg;
	(void)result;
	atomic_store(&gate_entered, 1);
	while (!atomic_load(&gate_open))
		nanosleep(&ts, NULL);
	return 0;
}

/* The pool's only worker blocked in gate_task (until gate_open); the
 * counters reset. Returns the gate task's future. */
static struct exe_future *hold_the_worker(struct exe_pool *p)
{
	struct timespec ts = {0, 100000};
	struct exe_future *g;

	reset();
	atomic_store(&gate_open, 0);
	atomic_store(&gate_entered, 0);
	cr_assert_eq(exe_pool_submit(p, gate_task, NULL, &g), 0);
	while (!atomic_load(&gate_entered))
		nanosleep(&ts, NULL);
	return g;
}

Test(submit_cb, a_bounded_queue_refuses_when_full_and_the_callback_never_runs)
{
	struct exe_pool *p = make_pool(1, 2);
	struct exe_future *g = hold_the_worker(p);
	for (int i = 0; i < 3; i++)
		jobs[i] = (struct job){i, false};
	cr_assert_eq(exe_pool_submit_cb(p, job_task, &jobs[0], record, &jobs[0]), 0);
	cr_assert_eq(exe_pool_submit_cb(p, job_task, &jobs[1], record, &jobs[1]), 0);
	cr_assert_eq(exe_pool_submit_cb(p, job_task, &jobs[2], record, &jobs[2]), -EAGAIN);
	atomic_store(&gate_open, 1);
	wait_calls(2);
	exe_future_unref(g);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&calls[2]), 0);
}

Test(submit_cb, shutdown_cancelling_pending_tasks_runs_their_callbacks_cancelled)
{
	struct exe_pool *p = make_pool(1, 0);
	struct exe_future *g = hold_the_worker(p);
	for (int i = 0; i < 50; i++) {
		jobs[i] = (struct job){i, false};
		cr_assert_eq(exe_pool_submit_cb(p, job_task, &jobs[i], record, &jobs[i]), 0);
	}
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_CANCEL_PENDING), 0);
	atomic_store(&gate_open, 1);
	exe_future_unref(g);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&total_calls), 50);
	for (int i = 0; i < 50; i++) {
		cr_assert_eq(atomic_load(&calls[i]), 1);
		cr_assert_eq(atomic_load(&seen_code[i]), -ECANCELED);
	}
}

/* A task submits the batch from a worker: its deque, then thieves. */
static int spawner(void *arg, void **result)
{
	struct exe_pool *p = arg;

	(void)result;
	for (int i = 0; i < NTASKS; i++) {
		jobs[i] = (struct job){i, false};
		if (exe_pool_submit_cb(p, job_task, &jobs[i], record, &jobs[i]))
			return -EIO;
	}
	return 0;
}

static _Atomic int spawner_calls;

static int spawner_done(struct exe_future *f, void *arg)
{
	(void)arg;
	if (exe_future_code(f) == 0)
		atomic_fetch_add(&spawner_calls, 1);
	return 0;
}

Test(submit_cb, submits_from_a_task_run_every_callback)
{
	struct exe_pool *p = make_pool(2, 0);

	reset();
	atomic_store(&spawner_calls, 0);
	cr_assert_eq(exe_pool_submit_cb(p, spawner, p, spawner_done, NULL), 0);
	wait_calls(NTASKS);
	check_all(false);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&spawner_calls), 1);
}

static int proc_task(void *arg, void **result)
{
	*result = arg;
	return 0;
}

Test(submit_cb, a_process_pool_runs_the_callback_through_the_generic_path)
{
	struct exe_pool_opts o = {.workers = 1};
	struct exe_pool *p = NULL;

	reset();
	cr_assert_eq(exe_process_pool_create(&p, &o), 0);
	jobs[7] = (struct job){7, false};
	cr_assert_eq(exe_pool_submit_cb(p, proc_task, (void *)(intptr_t)1007, record, &jobs[7]), 0);
	wait_calls(1);
	cr_assert_eq(atomic_load(&seen_code[7]), 0);
	cr_assert_eq(atomic_load(&seen_value[7]), 1007);
	exe_pool_destroy(p);
}

/* The task adds a callback to its own future: it runs after the one given
 * to exe_pool_submit_cb(), which was attached first. */
static _Atomic int order_pos, first_at, second_at;

static int mark_first(struct exe_future *f, void *arg)
{
	(void)f;
	(void)arg;
	atomic_store(&first_at, atomic_fetch_add(&order_pos, 1));
	return 0;
}

static int mark_second(struct exe_future *f, void *arg)
{
	(void)f;
	(void)arg;
	atomic_store(&second_at, atomic_fetch_add(&order_pos, 1));
	return 0;
}

static int adds_own_callback(void *arg, void **result)
{
	(void)arg;
	(void)result;
	return exe_future_on_done(exe_task_future(), mark_second, NULL);
}

Test(submit_cb, callbacks_the_task_adds_run_after_the_submitted_one)
{
	struct exe_pool *p = make_pool(1, 0);
	struct timespec ts = {0, 1000000};

	atomic_store(&order_pos, 1);
	atomic_store(&first_at, 0);
	atomic_store(&second_at, 0);
	cr_assert_eq(exe_pool_submit_cb(p, adds_own_callback, NULL, mark_first, NULL), 0);
	for (int i = 0; i < 5000 && atomic_load(&order_pos) < 3; i++)
		nanosleep(&ts, NULL);
	exe_pool_destroy(p);
	cr_assert_eq(atomic_load(&first_at), 1);
	cr_assert_eq(atomic_load(&second_at), 2);
}
