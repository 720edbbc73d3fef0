/*
 * test_contract.c - the rules of common.h that hold across the whole API:
 * one meaning per code (exe_strerror says it), the NULL rule, and the
 * version in one place.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include <executor.h>

TestSuite(contract, .timeout = 30);

Test(contract, strerror_has_one_text_per_code_and_handles_every_int)
{
	/* INT_MIN cannot be negated: it must not be (UBSan traps if it is). */
	cr_assert_not_null(exe_strerror(INT_MIN));
	cr_assert_not_null(exe_strerror(INT_MAX));
	cr_assert_str_eq(exe_strerror(-EAGAIN), exe_strerror(EAGAIN));
	/* -EAGAIN also means "no thread for now": not a queue-only text. */
	cr_assert_null(strstr(exe_strerror(-EAGAIN), "queue is full"));
	cr_assert_str_eq(exe_strerror(-ETIMEDOUT), "not finished within the time given");
	cr_assert_str_eq(exe_strerror(-ETIME), "task ran past its time limit");
	cr_assert_str_eq(exe_strerror(-EPIPE), "closed or ended");
	cr_assert_str_eq(exe_strerror(-ENOTRECOVERABLE), "broken for good (recreate it)");
	cr_assert_str_eq(exe_strerror(-EBADMSG), "malformed bytes or corrupted shared memory");
	/* Every code of the table has its own words. */
	int codes[] = {EINVAL,  ENOMEM,   EAGAIN,     ETIMEDOUT, ETIME,           ECANCELED,
	               EBUSY,   EALREADY, ESHUTDOWN,  EPIPE,     ENOTRECOVERABLE, ECHILD,
	               EBADMSG, EMSGSIZE, EOWNERDEAD, EDEADLK,   EOPNOTSUPP,      ENOENT};
	size_t n = sizeof(codes) / sizeof(codes[0]);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			cr_assert_str_neq(exe_strerror(-codes[i]), exe_strerror(-codes[j]), "%d vs %d",
			                  codes[i], codes[j]);
}

Test(contract, corrupted_ipc_mutex_bytes_are_ebadmsg_not_einval)
{
	size_t len = exe_ipc_mutex_mem_size(0);
	void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct exe_ipc_mutex *m;
	pthread_mutex_t *pm;

	cr_assert_neq(mem, MAP_FAILED);
	cr_assert_eq(exe_ipc_mutex_init_at(&m, mem, len, 0), 0);
	/* The header is intact; the pthread mutex's own kind word is garbage. */
	pm = (pthread_mutex_t *)((char *)mem + 24);
	pm->__data.__kind = 0x7fff;
	cr_assert_eq(exe_ipc_mutex_lock(m, 0), -EBADMSG);
	cr_assert_eq(exe_ipc_mutex_lock(m, EXE_NS_PER_MS), -EBADMSG);
	cr_assert_eq(exe_ipc_mutex_lock(m, EXE_FOREVER), -EBADMSG);
	exe_ipc_mutex_destroy(m);
	munmap(mem, len);
}

/* The NULL rule: a NULL future reads as FAILED with -EINVAL; no query
 * crashes (they dereferenced it before). */
Test(contract, future_queries_on_null_return_the_documented_neutral_values)
{
	cr_assert_eq(exe_future_state(NULL), EXE_FUTURE_FAILED);
	cr_assert(exe_future_is_finished(NULL));
	cr_assert_eq(exe_future_code(NULL), -EINVAL);
	cr_assert_str_eq(exe_future_error(NULL), exe_strerror(-EINVAL));
	cr_assert_not(exe_future_cancel_requested(NULL));
	cr_assert_null(exe_future_ref(NULL));
	exe_future_unref(NULL);
	cr_assert_eq(exe_future_wait(NULL, 0), -EINVAL);
	cr_assert_eq(exe_future_result(NULL, NULL, 0), -EINVAL);
	cr_assert_eq(exe_future_cancel(NULL), -EINVAL);
	cr_assert_eq(exe_future_on_done(NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_future_start(NULL), -EINVAL);
	cr_assert_eq(exe_future_set_result(NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_future_set_error(NULL, -EIO, NULL), -EINVAL);
}

/* "Not finished yet" is one code: a query is a 0-timeout wait. */
Test(contract, not_finished_is_etimedout_for_every_query_and_poll)
{
	struct exe_future *f = NULL;
	struct exe_queue *q = NULL;
	void *v;

	cr_assert_eq(exe_future_create(&f), 0);
	cr_assert_eq(exe_future_code(f), -ETIMEDOUT);
	cr_assert_eq(exe_future_wait(f, 0), -ETIMEDOUT);
	cr_assert_eq(exe_future_result(f, &v, 0), -ETIMEDOUT);
	cr_assert_eq(exe_wait(&f, 1, EXE_WAIT_ANY, 0), -ETIMEDOUT);
	exe_future_unref(f);
	cr_assert_eq(exe_queue_create(&q, &(struct exe_queue_opts){.capacity = 1}), 0);
	cr_assert_eq(exe_queue_get(q, &v, 0), -ETIMEDOUT);
	cr_assert_eq(exe_queue_put(q, NULL, 0), 0);
	cr_assert_eq(exe_queue_put(q, NULL, 0), -ETIMEDOUT);
	exe_queue_destroy(q);
}

static int identity(void *arg, void **result)
{
	*result = arg;
	return 0;
}

/* exe_pool_map's timeout is an argument: 0 polls, so it gives up before
 * submitting anything and says which element it stopped at. */
Test(contract, pool_map_with_timeout_zero_polls)
{
	struct exe_pool *p = NULL;
	struct exe_pool_stats st;
	void *args[3] = {(void *)1, (void *)2, (void *)3}, *res[3];
	size_t bad = 99;

	cr_assert_eq(exe_thread_pool_create(&p, &(struct exe_pool_opts){.workers = 1}), 0);
	cr_assert_eq(exe_pool_map(p, identity, args, 3, res, 0, &bad), -ETIMEDOUT);
	cr_assert_eq(bad, 0);
	cr_assert_eq(exe_pool_stats(p, &st), 0);
	cr_assert_eq(st.submitted, 0, "a poll submitted work");
	cr_assert_eq(exe_pool_map(p, identity, args, 3, res, EXE_FOREVER, &bad), 0);
	cr_assert_eq((intptr_t)res[2], 3);
	exe_pool_destroy(p);
}

/* Queries and predicates of NULL objects return their neutral value. */
Test(contract, queries_of_null_objects_are_neutral)
{
	size_t n = 5;

	cr_assert_eq(exe_queue_count(NULL), 0);
	cr_assert(exe_queue_empty(NULL));
	cr_assert_not(exe_queue_full(NULL));
	cr_assert_not(exe_queue_closed(NULL));
	cr_assert_eq(exe_queue_close_now(NULL, NULL, &n), -EINVAL);
	cr_assert_eq(n, 5);
	cr_assert_eq(exe_ipc_queue_count(NULL, &n), -EINVAL);
	cr_assert_not(exe_ipc_event_is_set(NULL));
	cr_assert_null(exe_ipc_mutex_data(NULL));
	cr_assert_null(exe_pool_error(NULL));
	cr_assert_eq(exe_pool_stats(NULL, NULL), -EINVAL);
	cr_assert_eq(exe_process_pid(NULL), -1);
	cr_assert_not(exe_process_is_alive(NULL));
	cr_assert_null(exe_fiber_self()); /* outside a fiber */
	cr_assert_null(exe_fiber_io());
	cr_assert_null(exe_fiber_name());
	exe_pool_destroy(NULL);
	exe_queue_destroy(NULL);
	exe_io_destroy(NULL);
	exe_process_destroy(NULL);
	exe_ipc_queue_destroy(NULL);
	exe_ipc_mutex_destroy(NULL);
	exe_ipc_event_destroy(NULL);
	exe_as_completed_destroy(NULL);
}

/* The version has one source: the header CMake reads. */
Test(contract, version_is_the_one_the_build_was_configured_with)
{
	cr_assert_str_eq(exe_version(), EXE_VERSION_STRING);
	cr_assert_str_eq(exe_version(), EXE_TEST_PROJECT_VERSION);
}

/* The NULL rule across the whole API: every int-returning call given a NULL
 * object returns -EINVAL, never crashes. */
Test(contract, every_call_refuses_a_null_object_with_einval)
{
	struct exe_future *f = NULL;
	void *v = NULL;
	size_t len = 0;
	int code = 0;
	char buf[4];

	/* futures and composition */
	cr_assert_eq(exe_future_on_done_in(NULL, NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_future_then(NULL, NULL, NULL, NULL, &f), -EINVAL);
	cr_assert_eq(exe_future_all(NULL, 1, &f), -EINVAL);
	cr_assert_eq(exe_future_any(NULL, 1, &f), -EINVAL);
	cr_assert_eq(exe_future_create(NULL), -EINVAL);
	cr_assert_eq(exe_wait(NULL, 1, EXE_WAIT_ALL, 0), -EINVAL);
	cr_assert_eq(exe_as_completed_create(NULL, NULL, 0), -EINVAL);
	cr_assert_eq(exe_as_completed_next(NULL, &f, 0), -EINVAL);
	cr_assert_eq(exe_future_bytes(NULL, (const void **)&v, &len, 0), -EINVAL);
	/* pools */
	cr_assert_eq(exe_thread_pool_create(NULL, NULL), -EINVAL);
	cr_assert_eq(exe_process_pool_create(NULL, NULL), -EINVAL);
	cr_assert_eq(exe_pool_submit(NULL, NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_pool_submit_opts(NULL, NULL, NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_pool_submit_bytes(NULL, NULL, NULL, 0, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_pool_map(NULL, NULL, NULL, 0, NULL, 0, NULL), -EINVAL);
	cr_assert_eq(exe_pool_map_opts(NULL, NULL, NULL, 0, NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_pool_map_open(NULL, NULL, NULL, NULL, 0, NULL), -EINVAL);
	cr_assert_eq(exe_map_next(NULL, &v, 0), -EINVAL);
	cr_assert_eq(exe_pool_shutdown(NULL, 0), -EINVAL);
	/* io */
	cr_assert_eq(exe_io_create(NULL, NULL), -EINVAL);
	cr_assert_eq(exe_io_run_once(NULL, 0), -EINVAL);
	cr_assert_eq(exe_io_run(NULL), -EINVAL);
	cr_assert_eq(exe_io_stop(NULL), -EINVAL);
	cr_assert_eq(exe_io_read(NULL, 0, buf, 1, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_write(NULL, 0, buf, 1, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_readv(NULL, 0, NULL, 0, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_writev(NULL, 0, NULL, 0, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_fsync(NULL, 0, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_openat(NULL, 0, "x", 0, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_close(NULL, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_accept(NULL, 0, NULL, NULL, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_connect(NULL, 0, NULL, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_recv(NULL, 0, buf, 1, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_send(NULL, 0, buf, 1, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_poll(NULL, 0, 1, &f), -EINVAL);
	cr_assert_eq(exe_io_nop(NULL, &f), -EINVAL);
	cr_assert_eq(exe_io_res(NULL, 0), -EINVAL);
	cr_assert_eq(exe_io_sleep(NULL, 0, &f), -EINVAL);
	cr_assert_eq(exe_call_later(NULL, 0, NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(exe_call_every(NULL, 1, NULL, NULL, NULL), -EINVAL);
	/* fibers (the wrappers' object is the running fiber: NULL buffers) */
	cr_assert_eq(exe_fiber_spawn(NULL, NULL, NULL, NULL, &f), -EINVAL);
	cr_assert_eq(exe_fiber_watchdog(NULL, 0), -EINVAL);
	cr_assert_eq(exe_fiber_read(0, NULL, 1, 0), -EINVAL);
	cr_assert_eq(exe_fiber_write(0, NULL, 1, 0), -EINVAL);
	cr_assert_eq(exe_fiber_recv(0, NULL, 1, 0), -EINVAL);
	cr_assert_eq(exe_fiber_send(0, NULL, 1, 0), -EINVAL);
	cr_assert_eq(exe_fiber_accept(0, NULL, (unsigned[]){4}, 0), -EINVAL);
	cr_assert_eq(exe_fiber_connect(0, NULL, 0), -EINVAL);
	/* queues */
	cr_assert_eq(exe_queue_create(NULL, NULL), -EINVAL);
	cr_assert_eq(exe_queue_put(NULL, NULL, 0), -EINVAL);
	cr_assert_eq(exe_queue_put_prio(NULL, NULL, 0, 0), -EINVAL);
	cr_assert_eq(exe_queue_get(NULL, &v, 0), -EINVAL);
	cr_assert_eq(exe_queue_get_prio(NULL, &v, NULL, 0), -EINVAL);
	cr_assert_eq(exe_queue_close(NULL), -EINVAL);
	cr_assert_eq(exe_queue_task_done(NULL), -EINVAL);
	cr_assert_eq(exe_queue_join(NULL, 0), -EINVAL);
	/* ipc */
	cr_assert_eq(exe_ipc_mutex_create(NULL, 0), -EINVAL);
	cr_assert_eq(exe_ipc_mutex_init_at(NULL, NULL, 0, 0), -EINVAL);
	cr_assert_eq(exe_ipc_mutex_attach_at(NULL, NULL, 0), -EINVAL);
	cr_assert_eq(exe_ipc_mutex_lock(NULL, 0), -EINVAL);
	cr_assert_eq(exe_ipc_mutex_consistent(NULL), -EINVAL);
	cr_assert_eq(exe_ipc_mutex_unlock(NULL), -EINVAL);
	cr_assert_eq(exe_ipc_queue_create(NULL, NULL), -EINVAL);
	cr_assert_eq(exe_ipc_queue_init_at(NULL, NULL, 0, NULL), -EINVAL);
	cr_assert_eq(exe_ipc_queue_attach_at(NULL, NULL, 0), -EINVAL);
	cr_assert_eq(exe_ipc_queue_put(NULL, buf, 1, 0), -EINVAL);
	cr_assert_eq(exe_ipc_queue_get(NULL, buf, sizeof(buf), &len, 0), -EINVAL);
	cr_assert_eq(exe_ipc_queue_close(NULL), -EINVAL);
	cr_assert_eq(exe_ipc_event_create(NULL), -EINVAL);
	cr_assert_eq(exe_ipc_event_init_at(NULL, NULL, 0), -EINVAL);
	cr_assert_eq(exe_ipc_event_attach_at(NULL, NULL, 0), -EINVAL);
	cr_assert_eq(exe_ipc_event_set(NULL), -EINVAL);
	cr_assert_eq(exe_ipc_event_clear(NULL), -EINVAL);
	cr_assert_eq(exe_ipc_event_wait(NULL, 0), -EINVAL);
	/* processes */
	cr_assert_eq(exe_process_start(NULL, NULL, NULL, 0, NULL), -EINVAL);
	cr_assert_eq(exe_process_join(NULL, 0), -EINVAL);
	cr_assert_eq(exe_process_terminate(NULL), -EINVAL);
	cr_assert_eq(exe_process_kill(NULL), -EINVAL);
	cr_assert_eq(exe_process_exitcode(NULL, &code), -EINVAL);
	cr_assert_eq(exe_process_fd(NULL), -1);
	cr_assert_null(f, "no call wrote an out-pointer on failure");
}
