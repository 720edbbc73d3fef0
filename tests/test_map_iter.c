/*
 * test_map_iter.c - the lazy map (exe_pool_map_open / exe_map_next /
 * exe_map_close): input order, the window bound, close cancelling what has
 * not started, bounded memory over a million elements, failures mid-stream.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <executor.h>

TestSuite(map_iter, .timeout = 120);

static void sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static struct exe_pool *pool_of(unsigned workers)
{
	struct exe_pool *p = NULL;

	cr_assert_eq(exe_thread_pool_create(&p, &(struct exe_pool_opts){.workers = workers}), 0);
	return p;
}

static void **index_args(size_t n)
{
	void **a = malloc(n * sizeof(*a));

	cr_assert_not_null(a);
	for (size_t i = 0; i < n; i++)
		a[i] = (void *)(uintptr_t)i;
	return a;
}

/* Later elements finish first: element i sleeps (n - i) * 200 us. */
static int reverse_sleep(void *arg, void **result)
{
	uintptr_t i = (uintptr_t)arg;

	sleep_us((long)(40 - i % 40) * 200);
	*result = (void *)(i * 3);
	return 0;
}

Test(map_iter, results_come_in_input_order)
{
	struct exe_pool *p = pool_of(4);
	void **args = index_args(120);
	struct exe_map_iter *it = NULL;
	void *v;
	size_t k = 0;
	int rc;

	cr_assert_eq(exe_pool_map_open(&it, p, reverse_sleep, args, 120, NULL), 0);
	cr_assert_eq(exe_map_index(it), SIZE_MAX);
	while ((rc = exe_map_next(it, &v, EXE_FOREVER)) == 0) {
		cr_assert_eq(exe_map_index(it), k);
		cr_assert_eq((uintptr_t)v, k * 3, "element %zu out of order", k);
		k++;
	}
	cr_assert_eq(rc, -EPIPE);
	cr_assert_eq(k, 120);
	cr_assert_eq(exe_map_next(it, &v, 0), -EPIPE, "stays at the end");
	exe_map_close(it);
	free(args);
	exe_pool_destroy(p);
}

/* The window, counted where it matters. When exe_map_next() hands out
 * element k (and tops up), elements k+1..k+W may be in flight, so a task
 * for element i may only exist once the caller has consumed i - W of them
 * (it counts element k as consumed only after next returned). */
static _Atomic size_t consumed;
static _Atomic int window_violations;
static size_t window_w;

static int check_window(void *arg, void **result)
{
	size_t i = (uintptr_t)arg;

	if (i > atomic_load(&consumed) + window_w)
		atomic_fetch_add(&window_violations, 1);
	sleep_us(i % 7 * 50);
	*result = arg;
	return 0;
}

Test(map_iter, never_more_than_the_window_in_flight)
{
	struct exe_pool *p = pool_of(4);
	void **args = index_args(400);
	struct exe_map_iter *it = NULL;
	void *v;
	int rc;

	window_w = 3;
	atomic_store(&consumed, 0);
	atomic_store(&window_violations, 0);
	cr_assert_eq(exe_pool_map_open(&it, p, check_window, args, 400, &(struct exe_map_opts){.window = 3}),
	             0);
	while ((rc = exe_map_next(it, &v, 5 * EXE_NS_PER_S)) == 0) {
		cr_assert_eq((uintptr_t)v, atomic_load(&consumed));
		/* Consume slowly: an unbounded map would run far ahead. */
		sleep_us(100);
		atomic_fetch_add(&consumed, 1);
	}
	cr_assert_eq(rc, -EPIPE);
	cr_assert_eq(atomic_load(&consumed), 400);
	cr_assert_eq(atomic_load(&window_violations), 0, "%d tasks ran beyond the window",
	             atomic_load(&window_violations));
	exe_map_close(it);
	free(args);
	exe_pool_destroy(p);
}

static _Atomic int gate_open;
static _Atomic int ran;

static int gate_task(void *arg, void **result)
{
	(void)arg;
	(void)result;
	while (!atomic_load(&gate_open))
		sleep_us(200);
	return 0;
}

static int count_run(void *arg, void **result)
{
	atomic_fetch_add(&ran, 1);
	*result = arg;
	return 0;
}

Test(map_iter, close_cancels_what_has_not_started)
{
	struct exe_pool *p = pool_of(1);
	void **args = index_args(100);
	struct exe_future *gate = NULL;
	struct exe_map_iter *it = NULL;
	struct exe_pool_stats st;
	void *v = (void *)1;

	atomic_store(&gate_open, 0);
	atomic_store(&ran, 0);
	cr_assert_eq(exe_pool_submit(p, gate_task, NULL, &gate), 0);
	cr_assert_eq(exe_pool_map_open(&it, p, count_run, args, 100, &(struct exe_map_opts){.window = 4}), 0);
	/* A poll submits the window and finds nothing finished. */
	cr_assert_eq(exe_map_next(it, &v, 0), -ETIMEDOUT);
	cr_assert_eq(v, (void *)1, "value untouched on -ETIMEDOUT");
	cr_assert_eq(exe_pool_stats(p, &st), 0);
	cr_assert_eq(st.submitted, 5, "gate + a window of 4");
	exe_map_close(it);
	atomic_store(&gate_open, 1);
	cr_assert_eq(exe_future_wait(gate, EXE_FOREVER), 0);
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT), 0);
	cr_assert_eq(atomic_load(&ran), 0, "%d elements ran after close", atomic_load(&ran));
	cr_assert_eq(exe_pool_stats(p, &st), 0);
	cr_assert_eq(st.cancelled, 4);
	exe_future_unref(gate);
	free(args);
	exe_pool_destroy(p);
}

static int plus_one(void *arg, void **result)
{
	*result = (void *)((uintptr_t)arg + 1);
	return 0;
}


/* A bounded pool queue that is full: a poll never blocks on it, a waiting
 * next submits as room appears, and nothing is lost or reordered. */
Test(map_iter, a_full_bounded_queue_never_blocks_a_poll)
{
	struct exe_pool *p = NULL;
	void **args = index_args(20);
	struct exe_future *gate = NULL;
	struct exe_map_iter *it = NULL;
	struct exe_pool_stats st;
	int64_t t0;
	void *v;

	atomic_store(&gate_open, 0);
	atomic_store(&ran, 0);
	cr_assert_eq(exe_thread_pool_create(&p, &(struct exe_pool_opts){.workers = 1, .queue_capacity = 2}), 0);
	cr_assert_eq(exe_pool_submit(p, gate_task, NULL, &gate), 0);
	cr_assert_eq(exe_pool_map_open(&it, p, count_run, args, 20, &(struct exe_map_opts){.window = 8}), 0);
	t0 = exe_now_ns();
	cr_assert_eq(exe_map_next(it, &v, 0), -ETIMEDOUT);
	cr_assert_lt(exe_now_ns() - t0, 500 * EXE_NS_PER_MS, "a poll blocked");
	cr_assert_eq(exe_pool_stats(p, &st), 0);
	cr_assert_leq(st.submitted, 3, "the gate and at most the queue's 2");
	atomic_store(&gate_open, 1);
	for (uintptr_t i = 0; i < 20; i++) {
		cr_assert_eq(exe_map_next(it, &v, EXE_FOREVER), 0);
		cr_assert_eq((uintptr_t)v, i);
	}
	cr_assert_eq(exe_map_next(it, &v, EXE_FOREVER), -EPIPE);
	cr_assert_eq(atomic_load(&ran), 20);
	exe_map_close(it);
	exe_future_unref(gate);
	free(args);
	exe_pool_destroy(p);
}

/* A million elements: the library's memory stays at a window's worth
 * (an eager map would hold a million futures, well over 100 MB). */
Test(map_iter, a_million_elements_in_bounded_memory)
{
	const size_t n = 1000000;
	struct exe_pool *p = pool_of(2);
	void **args = index_args(n);
	struct exe_map_iter *it = NULL;
	size_t base, peak = 0, k = 0;
	uint64_t sum = 0;
	void *v;
	int rc;

	base = mallinfo2().uordblks;
	cr_assert_eq(exe_pool_map_open(&it, p, plus_one, args, n, NULL), 0);
	while ((rc = exe_map_next(it, &v, EXE_FOREVER)) == 0) {
		sum += (uintptr_t)v;
		if (++k % 4096 == 0) {
			size_t now = mallinfo2().uordblks;

			if (now > peak)
				peak = now;
		}
	}
	cr_assert_eq(rc, -EPIPE);
	cr_assert_eq(k, n);
	cr_assert_eq(sum, (uint64_t)n * (n + 1) / 2);
	cr_assert_lt(peak > base ? peak - base : 0, 4u << 20, "grew by %zu bytes", peak - base);
	exe_map_close(it);
	free(args);
	exe_pool_destroy(p);
}

static int fail_some(void *arg, void **result)
{
	uintptr_t i = (uintptr_t)arg;

	if (i == 5 || i == 7)
		return i == 5 ? -EIO : -ETIMEDOUT; /* a task's own -ETIMEDOUT is a failure */
	*result = (void *)(i + 100);
	return 0;
}

Test(map_iter, a_failure_mid_stream_is_reported_at_its_index_and_the_map_goes_on)
{
	struct exe_pool *p = pool_of(2);
	void **args = index_args(10);
	struct exe_map_iter *it = NULL;
	void *v;

	cr_assert_eq(exe_pool_map_open(&it, p, fail_some, args, 10, NULL), 0);
	for (size_t i = 0; i < 10; i++) {
		int rc = exe_map_next(it, &v, EXE_FOREVER);

		cr_assert_eq(exe_map_index(it), i);
		if (i == 5) {
			cr_assert_eq(rc, -EIO);
			cr_assert_null(v);
		} else if (i == 7) {
			cr_assert_eq(rc, -ETIMEDOUT, "the task's code, not a wait");
		} else {
			cr_assert_eq(rc, 0);
			cr_assert_eq((uintptr_t)v, i + 100);
		}
	}
	cr_assert_eq(exe_map_next(it, &v, EXE_FOREVER), -EPIPE);
	exe_map_close(it);
	free(args);
	exe_pool_destroy(p);
}

static int slow_first(void *arg, void **result)
{
	if ((uintptr_t)arg == 0)
		sleep_us(100000);
	*result = arg;
	return 0;
}

Test(map_iter, a_timeout_loses_nothing)
{
	struct exe_pool *p = pool_of(2);
	void **args = index_args(4);
	struct exe_map_iter *it = NULL;
	void *v;

	cr_assert_eq(exe_pool_map_open(&it, p, slow_first, args, 4, NULL), 0);
	cr_assert_eq(exe_map_next(it, &v, 10 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_eq(exe_map_index(it), SIZE_MAX);
	for (uintptr_t i = 0; i < 4; i++) {
		cr_assert_eq(exe_map_next(it, &v, EXE_FOREVER), 0);
		cr_assert_eq((uintptr_t)v, i);
	}
	cr_assert_eq(exe_map_next(it, &v, 0), -EPIPE);
	exe_map_close(it);
	free(args);
	exe_pool_destroy(p);
}

Test(map_iter, a_refused_submit_fails_its_element_and_ends_the_map)
{
	struct exe_pool *p = pool_of(1);
	void **args = index_args(6);
	struct exe_map_iter *it = NULL;
	void *v;

	cr_assert_eq(exe_pool_map_open(&it, p, plus_one, args, 6, &(struct exe_map_opts){.window = 2}), 0);
	/* Hands out 0 and tops the window up: 1 and 2 are submitted. */
	cr_assert_eq(exe_map_next(it, &v, EXE_FOREVER), 0);
	cr_assert_eq(exe_pool_shutdown(p, 0), 0);
	cr_assert_eq(exe_map_next(it, &v, EXE_FOREVER), 0, "submitted before the shutdown");
	cr_assert_eq(exe_map_next(it, &v, EXE_FOREVER), 0, "submitted before the shutdown");
	cr_assert_eq(exe_map_next(it, &v, EXE_FOREVER), -ESHUTDOWN);
	cr_assert_null(v);
	cr_assert_eq(exe_map_index(it), 3);
	cr_assert_eq(exe_map_next(it, &v, EXE_FOREVER), -EPIPE);
	exe_map_close(it);
	free(args);
	exe_pool_destroy(p);
}

Test(map_iter, an_empty_map_ends_at_once_and_bad_arguments_are_einval)
{
	struct exe_pool *p = pool_of(1);
	struct exe_map_iter *it = NULL;
	void *a[1] = {NULL}, *v;

	cr_assert_eq(exe_pool_map_open(&it, p, plus_one, NULL, 0, NULL), 0);
	cr_assert_eq(exe_map_next(it, &v, EXE_FOREVER), -EPIPE);
	exe_map_close(it);
	cr_assert_eq(exe_pool_map_open(NULL, p, plus_one, a, 1, NULL), -EINVAL);
	cr_assert_eq(exe_pool_map_open(&it, NULL, plus_one, a, 1, NULL), -EINVAL);
	cr_assert_eq(exe_pool_map_open(&it, p, NULL, a, 1, NULL), -EINVAL);
	cr_assert_eq(exe_pool_map_open(&it, p, plus_one, NULL, 1, NULL), -EINVAL);
	cr_assert_eq(exe_pool_map_open(&it, p, plus_one, a, 1, &(struct exe_map_opts){.timeout_ns = 1}),
	             -EINVAL);
	cr_assert_eq(exe_map_next(NULL, &v, 0), -EINVAL);
	cr_assert_eq(exe_map_index(NULL), SIZE_MAX);
	exe_map_close(NULL);
	exe_pool_destroy(p);
}

Test(map_iter, works_on_a_process_pool)
{
	struct exe_pool *p = NULL;
	void **args = index_args(50);
	struct exe_map_iter *it = NULL;
	void *v;
	size_t k = 0;

	cr_assert_eq(exe_process_pool_create(&p, &(struct exe_pool_opts){.workers = 2}), 0);
	cr_assert_eq(exe_pool_map_open(&it, p, plus_one, args, 50, NULL), 0);
	while (exe_map_next(it, &v, 10 * EXE_NS_PER_S) == 0) {
		cr_assert_eq((uintptr_t)v, k + 1);
		k++;
	}
	cr_assert_eq(k, 50);
	exe_map_close(it);
	free(args);
	exe_pool_destroy(p);
}
