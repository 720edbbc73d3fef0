/*
 * test_process_pool.c - the process-pool contract: bytes and pointer tasks,
 * worker naming and init, crashes that fail only their task (segfault,
 * abort, _exit, SIGKILL from outside, garbage on the channel), timeouts,
 * kill on cancel, large payloads, map, shutdown modes, recycling with a
 * backlog, and nothing left behind (no child, no descriptor).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <executor.h>

TestSuite(process_pool, .timeout = 60);

/* Shared with the workers: mapped before any pool exists. */
struct shared {
	_Atomic int pid;
	_Atomic int server_pid;
	_Atomic int inits;
	_Atomic int child, grandchild; /* processes a task started */
	_Atomic int count;             /* runs of count_task */
};
static struct shared *shm;

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static void map_shared(void)
{
	shm = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(shm, MAP_FAILED);
}

static void unmap_shared(void)
{
	munmap(shm, sizeof(*shm));
	shm = NULL;
}

static struct exe_pool *make_pool(unsigned workers)
{
	struct exe_pool_opts o = {.workers = workers, .name = "pp"};
	struct exe_pool *p = NULL;

	cr_assert_eq(exe_process_pool_create(&p, &o), 0);
	return p;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory itself */
}

/* ---- tasks (they run in the workers) ---- */

static int square(void *arg, void **result)
{
	intptr_t x = (intptr_t)arg;

	*result = (void *)(x * x);
	return 0;
}

static int upper(const void *in, size_t len, void **out, size_t *out_len)
{
	char *s = malloc(len);

	for (size_t i = 0; i < len; i++)
		s[i] = (char)(((const char *)in)[i] & ~0x20);
	*out = s;
	*out_len = len;
	return 0;
}

static int fail_with_message(void *arg, void **result)
{
	(void)result;
	return exe_task_set_error(-EIO, "disk %d on fire", (int)(intptr_t)arg);
}

static int my_pid(void *arg, void **result)
{
	(void)arg;
	*result = (void *)(intptr_t)getpid();
	return 0;
}

static int sleep_arg_ms(void *arg, void **result)
{
	sleep_ms((int)(intptr_t)arg);
	*result = arg;
	return 0;
}

static int publish_pid_after_ms(void *arg, void **result)
{
	sleep_ms((int)(intptr_t)arg);
	*result = (void *)(intptr_t)getpid();
	return 0;
}

static int *volatile bad_address = (int *)16;
static volatile int forever = 1;

static int segfault(void *arg, void **result)
{
	(void)arg;
	(void)result;
	*bad_address = 1;
	return 0;
}

static int do_abort(void *arg, void **result)
{
	(void)arg;
	(void)result;
	abort();
}

static int exit_3(void *arg, void **result)
{
	(void)arg;
	(void)result;
	_exit(3);
}

static int publish_pid_and_hang(void *arg, void **result)
{
	(void)arg;
	(void)result;
	shm->server_pid = getppid();
	shm->pid = getpid();
	while (forever)
		sleep_ms(10);
	return 0;
}

/* A task that starts two processes and hangs: a plain child (same process
 * group) and a daemon (double fork and setsid(): a new session, its parent
 * gone). Both publish their pids. */
static int start_processes_and_hang(void *arg, void **result)
{
	pid_t c;

	(void)arg, (void)result;
	if ((c = fork()) == 0) {
		setsid();
		if (fork() == 0) {
			shm->grandchild = getpid();
			for (;;)
				pause();
		}
		_exit(0);
	}
	waitpid(c, NULL, 0);
	if (fork() == 0) {
		shm->child = getpid();
		for (;;)
			pause();
	}
	while (!shm->grandchild || !shm->child)
		sleep_ms(1);
	shm->server_pid = getppid();
	shm->pid = getpid();
	while (forever)
		sleep_ms(10);
	return 0;
}

static int spin_forever(const void *in, size_t len, void **out, size_t *out_len)
{
	(void)in, (void)len, (void)out, (void)out_len;
	while (forever)
		__asm__ volatile("" ::: "memory");
	return 0;
}

static int spin_forever_ptr(void *arg, void **result)
{
	(void)arg, (void)result;
	while (forever)
		__asm__ volatile("" ::: "memory");
	return 0;
}

/* What a task could do to its channel: find the sockets it inherited and
 * write into them. */
static int write_garbage(void *arg, void **result)
{
	static const char junk[64] = "this is not a frame header, this is garbage!!!!!!!!!!!!!!!!!!!";
	struct stat st;
	int fd;

	(void)result;
	for (fd = 3; fd < 256; fd++)
		if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
			(void)!write(fd, junk, arg ? 20 : sizeof(junk));
	if (arg) /* a truncated header, then death */
		_exit(0);
	/* Still running when the pool sees the garbage: the task that broke
	 * the protocol is the one that fails. */
	sleep_ms(10000);
	return 0;
}

static int count_task(void *arg, void **result)
{
	*result = arg;
	atomic_fetch_add(&shm->count, 1);
	return 0;
}

/* Garbage, then on as if nothing happened. */
static int write_garbage_and_return(void *arg, void **result)
{
	static const char junk[64] = "this is not a frame header, this is garbage!!!!!!!!!!!!!!!!!!!";
	struct stat st;

	(void)arg;
	for (int fd = 3; fd < 256; fd++)
		if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
			(void)!write(fd, junk, sizeof(junk));
	*result = (void *)7;
	return 0;
}

static int thread_name(const void *in, size_t len, void **out, size_t *out_len)
{
	char *name = calloc(1, 16);

	(void)in, (void)len;
	prctl(PR_GET_NAME, name);
	*out = name;
	*out_len = strlen(name);
	return 0;
}

#define BIG (64u << 20)

static int big_result(const void *in, size_t len, void **out, size_t *out_len)
{
	uint32_t *v = malloc(BIG);

	(void)in, (void)len;
	for (size_t i = 0; i < BIG / 4; i++)
		v[i] = (uint32_t)(i * 2654435761u);
	*out = v;
	*out_len = BIG;
	return 0;
}

static int sum_bytes(const void *in, size_t len, void **out, size_t *out_len)
{
	uint64_t *s = malloc(sizeof(*s));

	*s = 0;
	for (size_t i = 0; i < len; i++)
		*s += ((const unsigned char *)in)[i];
	*out = s;
	*out_len = sizeof(*s);
	return 0;
}

static int count_init(void *arg)
{
	(void)arg;
	atomic_fetch_add(&shm->inits, 1);
	return 0;
}

static int failing_init(void *arg)
{
	(void)arg;
	return -ENOENT;
}

static int interrupt_self(void *arg, void **result)
{
	(void)arg;
	kill(getpid(), SIGINT);
	*result = (void *)42;
	return 0;
}

/* ---- helpers ---- */

static void expect_failure(struct exe_future *f, int code, const char *needle)
{
	cr_assert_eq(exe_future_result(f, NULL, 20 * EXE_NS_PER_S), code, "code %d (%s)", exe_future_code(f),
	             exe_future_error(f) ? exe_future_error(f) : "-");
	cr_assert_not_null(strstr(exe_future_error(f), needle), "message: %s", exe_future_error(f));
}

static void expect_square(struct exe_pool *p, intptr_t x)
{
	struct exe_future *f;
	void *v = NULL;

	cr_assert_eq(exe_pool_submit(p, square, (void *)x, &f), 0);
	cr_assert_eq(exe_future_result(f, &v, 20 * EXE_NS_PER_S), 0, "%s", exe_future_error(f));
	cr_assert_eq((intptr_t)v, x * x);
	exe_future_unref(f);
}

static void wait_running(struct exe_pool *p, uint64_t n)
{
	struct exe_pool_stats st;

	for (int i = 0; i < 10000; i++) {
		exe_pool_stats(p, &st);
		if (st.running >= n)
			return;
		sleep_ms(1);
	}
	cr_assert_fail("pool never had %lu running tasks", (unsigned long)n);
}

/* ---- basics ---- */

Test(process_pool, bytes_task_returns_result_bytes_owned_by_future)
{
	struct exe_pool *p = make_pool(2);
	struct exe_future *f;
	const void *data;
	char in[] = "hello";
	size_t len;

	cr_assert_eq(exe_pool_submit_bytes(p, upper, in, 5, NULL, &f), 0);
	in[0] = 'j'; /* copied at submit */
	cr_assert_eq(exe_future_wait(f, EXE_FOREVER), 0);
	cr_assert_eq(exe_future_bytes(f, &data, &len, EXE_FOREVER), 0);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(data, "HELLO", 5), 0);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

Test(process_pool, pointer_task_value_crosses_as_bit_pattern)
{
	struct exe_pool *p = make_pool(2);

	for (intptr_t i = 0; i < 20; i++)
		expect_square(p, i - 7);
	exe_pool_destroy(p);
}

Test(process_pool, failed_task_carries_code_and_message_from_worker)
{
	struct exe_pool *p = make_pool(1);
	struct exe_future *f;

	cr_assert_eq(exe_pool_submit(p, fail_with_message, (void *)7, &f), 0);
	expect_failure(f, -EIO, "disk 7 on fire");
	cr_assert_str_eq(exe_future_error(f), "disk 7 on fire");
	exe_future_unref(f);
	exe_pool_destroy(p);
}

Test(process_pool, workers_are_processes_named_name_dash_index)
{
	struct exe_pool *p = make_pool(2);
	struct exe_future *f;
	const void *data;
	size_t len;
	void *pid;

	cr_assert_eq(exe_pool_submit_bytes(p, thread_name, NULL, 0, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), 0);
	cr_assert_eq(exe_future_bytes(f, &data, &len, EXE_FOREVER), 0);
	cr_assert(len == 4 && (!memcmp(data, "pp-0", 4) || !memcmp(data, "pp-1", 4)), "%.*s", (int)len,
	          (const char *)data);
	exe_future_unref(f);
	cr_assert_eq(exe_pool_submit(p, my_pid, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, &pid, EXE_FOREVER), 0);
	cr_assert_neq((intptr_t)pid, getpid());
	exe_future_unref(f);
	exe_pool_destroy(p);
}

Test(process_pool, init_runs_once_in_each_worker)
{
	struct exe_pool_opts o = {.workers = 3, .init = count_init};
	struct exe_pool *p = NULL;

	map_shared();
	cr_assert_eq(exe_process_pool_create(&p, &o), 0);
	for (int i = 0; i < 30; i++)
		expect_square(p, i);
	exe_pool_destroy(p);
	cr_assert_eq(shm->inits, 3, "inits: %d", shm->inits);
	unmap_shared();
}

Test(process_pool, failing_init_breaks_pool_with_enotrecoverable)
{
	struct exe_pool_opts o = {.workers = 1, .init = failing_init, .name = "brk"};
	struct exe_pool *p = NULL;
	struct exe_future *f;
	struct exe_pool_stats st;
	int rc;

	cr_assert_eq(exe_process_pool_create(&p, &o), 0);
	rc = exe_pool_submit(p, square, (void *)3, &f);
	if (rc == 0) {
		expect_failure(f, -ENOTRECOVERABLE, "init failed");
		exe_future_unref(f);
	}
	for (int i = 0; i < 2000 && !exe_pool_error(p); i++)
		sleep_ms(1);
	cr_assert_not_null(exe_pool_error(p));
	cr_assert_not_null(strstr(exe_pool_error(p), "brk-0"), "%s", exe_pool_error(p));
	cr_assert_eq(exe_pool_submit(p, square, (void *)3, &f), -ENOTRECOVERABLE);
	exe_pool_stats(p, &st);
	cr_assert(st.broken);
	exe_pool_destroy(p);
}

Test(process_pool, bad_arguments_return_einval)
{
	struct exe_pool *p = make_pool(1), *tp = NULL;
	struct exe_future *f = NULL;

	cr_assert_eq(exe_pool_submit_bytes(p, NULL, NULL, 0, NULL, &f), -EINVAL);
	cr_assert_eq(exe_pool_submit_bytes(p, upper, NULL, 3, NULL, &f), -EINVAL);
	cr_assert_eq(
	    exe_pool_submit_bytes(p, upper, "x", 1, &(struct exe_submit_opts){.result_free = free}, &f),
	    -EINVAL);
	cr_assert_eq(
	    exe_pool_submit_opts(p, square, NULL, &(struct exe_submit_opts){.result_free = free}, &f),
	    -EINVAL, "a worker's pointer cannot be freed here");
	cr_assert_null(f);
	cr_assert_eq(exe_process_pool_create(NULL, NULL), -EINVAL);
	cr_assert_eq(exe_thread_pool_create(&tp, NULL), 0);
	cr_assert_eq(exe_pool_submit_bytes(tp, upper, "x", 1, NULL, &f), -EOPNOTSUPP, "not a process pool");
	exe_pool_destroy(tp);
	cr_assert_eq(exe_pool_submit(p, square, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), 0);
	cr_assert_eq(exe_future_bytes(f, &(const void *){NULL}, &(size_t){0}, 0), -EINVAL,
	             "a pointer task has no bytes");
	exe_future_unref(f);
	exe_pool_destroy(p);
}

Test(process_pool, process_settings_live_in_process_pool_opts_only)
{
	struct exe_pool_opts o = {.workers = 1};
	struct exe_process_pool_opts bad = {.task_timeout_ns = -1};
	struct exe_pool *p = NULL;

	cr_assert_eq(exe_process_pool_create_opts(&p, &o, &bad), -EINVAL);
	bad = (struct exe_process_pool_opts){.term_grace_ns = -5};
	cr_assert_eq(exe_process_pool_create_opts(&p, &o, &bad), -EINVAL);
	cr_assert_null(p);
}

Test(process_pool, future_bytes_waits_for_the_result)
{
	struct exe_pool *p = make_pool(1);
	struct exe_future *f, *slow;
	const void *data = NULL;
	size_t len = 0;

	cr_assert_eq(exe_pool_submit(p, sleep_arg_ms, (void *)200, &slow), 0);
	cr_assert_eq(exe_pool_submit_bytes(p, upper, "abc", 3, NULL, &f), 0);
	/* Queued behind the slow task: a poll and a short wait find nothing. */
	cr_assert_eq(exe_future_bytes(f, &data, &len, 0), -ETIMEDOUT);
	cr_assert_eq(exe_future_bytes(f, &data, &len, 20 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_null(data);
	cr_assert_eq(exe_future_state(f), EXE_FUTURE_PENDING);
	/* One call waits and gives the bytes. */
	cr_assert_eq(exe_future_bytes(f, &data, &len, EXE_FOREVER), 0);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(data, "ABC", 3), 0);
	cr_assert_eq(exe_future_bytes(NULL, &data, &len, 0), -EINVAL);
	cr_assert_eq(exe_future_bytes(f, NULL, &len, 0), -EINVAL);
	exe_future_unref(f);
	exe_future_unref(slow);
	exe_pool_destroy(p);
}

Test(process_pool, sigint_reaches_the_parent_only)
{
	struct exe_pool *p = make_pool(1);
	struct exe_future *f;
	void *v;

	cr_assert_eq(exe_pool_submit(p, interrupt_self, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0, "%s", exe_future_error(f));
	cr_assert_eq((intptr_t)v, 42);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

/* ---- callbacks ---- */

static char cb_thread[16];
static _Atomic int cb_ran;

static int record_thread(struct exe_future *f, void *arg)
{
	(void)f, (void)arg;
	pthread_getname_np(pthread_self(), cb_thread, sizeof(cb_thread));
	atomic_store(&cb_ran, 1);
	return 0;
}

Test(process_pool, done_callbacks_run_on_the_collector_thread)
{
	struct exe_pool *p = make_pool(1);
	struct exe_future *f;

	cr_assert_eq(exe_pool_submit(p, sleep_arg_ms, (void *)100, &f), 0);
	cr_assert_eq(exe_future_on_done(f, record_thread, NULL), 0);
	cr_assert_eq(exe_future_wait(f, EXE_FOREVER), 0);
	while (!atomic_load(&cb_ran))
		sleep_ms(1);
	cr_assert_str_eq(cb_thread, "pp-c");
	exe_future_unref(f);
	exe_pool_destroy(p);
}

/* ---- crashes: only the running task fails, the pool goes on ---- */

static void crash_case(exe_task_fn *fn, int code, const char *needle)
{
	struct exe_pool *p = make_pool(1);
	struct exe_future *crash, *queued[4];
	struct exe_pool_stats st;
	void *v;

	cr_assert_eq(exe_pool_submit(p, fn, NULL, &crash), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(exe_pool_submit(p, square, (void *)(intptr_t)(i + 2), &queued[i]), 0);
	expect_failure(crash, code, needle);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(exe_future_result(queued[i], &v, 20 * EXE_NS_PER_S), 0, "queued task %d: %s", i,
		             exe_future_error(queued[i]));
		cr_assert_eq((intptr_t)v, (i + 2) * (i + 2));
		exe_future_unref(queued[i]);
	}
	expect_square(p, 9);
	exe_pool_stats(p, &st);
	cr_assert_geq(st.worker_restarts, 1);
	cr_assert_eq(st.failed, 1);
	cr_assert_eq(st.completed, 5);
	exe_future_unref(crash);
	exe_pool_destroy(p);
}

Test(process_pool, worker_segfault_fails_only_its_task_with_signal_message)
{
	crash_case(segfault, -ECHILD, "killed by signal 11 (Segmentation fault");
}

Test(process_pool, worker_abort_fails_only_its_task_with_signal_message)
{
	crash_case(do_abort, -ECHILD, "killed by signal 6 (Aborted");
}

Test(process_pool, worker_exit_fails_only_its_task_with_exit_status)
{
	crash_case(exit_3, -ECHILD, "exited with status 3");
}

Test(process_pool, garbage_written_to_the_channel_fails_task_with_ebadmsg)
{
	crash_case(write_garbage, -EBADMSG, "bad magic");
}

/* A worker that broke the protocol and went on taking tasks: which of them
 * ran before the pool noticed is not known, so each of its tasks either
 * succeeds (its result was read before) or fails with -EBADMSG; none runs
 * twice, none is lost, and the pool goes on with a new worker. */
Test(process_pool, tasks_after_a_protocol_breach_finish_once, .init = map_shared, .fini = unmap_shared)
{
	struct exe_pool *p = make_pool(1);
	struct exe_future *f[17];
	void *v;
	int failed = 0;

	cr_assert_eq(exe_pool_submit(p, write_garbage_and_return, NULL, &f[0]), 0);
	for (int i = 1; i < 17; i++)
		cr_assert_eq(exe_pool_submit(p, count_task, NULL, &f[i]), 0);
	for (int i = 0; i < 17; i++) {
		int rc = exe_future_result(f[i], &v, 20 * EXE_NS_PER_S);

		cr_assert(rc == 0 || rc == -EBADMSG, "task %d: %d (%s)", i, rc, exe_future_error(f[i]));
		failed += rc != 0;
		exe_future_unref(f[i]);
	}
	/* Each counting task ran at most once (failed ones may have run). */
	cr_assert_leq(atomic_load(&shm->count), 16);
	cr_assert_geq(atomic_load(&shm->count), 16 - failed);
	expect_square(p, 5);
	exe_pool_destroy(p);
}

static int write_truncated(void *arg, void **result)
{
	(void)arg;
	return write_garbage((void *)1, result);
}

Test(process_pool, truncated_frame_fails_task_with_ebadmsg)
{
	crash_case(write_truncated, -EBADMSG, "truncated frame");
}

Test(process_pool, worker_killed_from_outside_fails_only_its_task)
{
	struct exe_pool *p;
	struct exe_future *f;
	char needle[64];

	map_shared();
	p = make_pool(2);
	cr_assert_eq(exe_pool_submit(p, publish_pid_and_hang, NULL, &f), 0);
	while (!shm->pid)
		sleep_ms(1);
	cr_assert_eq(kill(shm->pid, SIGKILL), 0);
	snprintf(needle, sizeof(needle), "worker %d killed by signal 9 (Killed)", shm->pid);
	expect_failure(f, -ECHILD, needle);
	exe_future_unref(f);
	expect_square(p, 5);
	exe_pool_destroy(p);
	unmap_shared();
}

Test(process_pool, next_result_after_a_crash_arrives_quickly)
{
	struct exe_pool *p = make_pool(1);
	struct exe_future *f;
	int64_t t0;

	expect_square(p, 2);
	cr_assert_eq(exe_pool_submit(p, segfault, NULL, &f), 0);
	exe_future_wait(f, EXE_FOREVER);
	exe_future_unref(f);
	t0 = exe_now_ns();
	expect_square(p, 3);
	cr_log_info("result after a crash: %.3f ms", (double)(exe_now_ns() - t0) / 1e6);
	cr_assert_lt(exe_now_ns() - t0, 500 * EXE_NS_PER_MS);
	exe_pool_destroy(p);
}

/* ---- timeouts and cancel ---- */

Test(process_pool, task_past_its_timeout_fails_with_etime_and_worker_is_replaced)
{
	struct exe_pool *p = make_pool(1);
	struct exe_submit_opts o = {.task_timeout_ns = 200 * EXE_NS_PER_MS};
	struct exe_future *f;
	int64_t t0 = exe_now_ns();

	cr_assert_eq(exe_pool_submit_bytes(p, spin_forever, NULL, 0, &o, &f), 0);
	expect_failure(f, -ETIME, "timed out after 0.200 s");
	cr_assert_not_null(strstr(exe_future_error(f), "signal 15"), "%s", exe_future_error(f));
	cr_assert_lt(exe_now_ns() - t0, 5 * EXE_NS_PER_S);
	exe_future_unref(f);
	expect_square(p, 4);
	exe_pool_destroy(p);
}

Test(process_pool, pool_task_timeout_applies_to_every_task)
{
	struct exe_pool_opts o = {.workers = 1};
	struct exe_process_pool_opts po = {.task_timeout_ns = 150 * EXE_NS_PER_MS};
	struct exe_pool *p = NULL;
	struct exe_future *f;

	cr_assert_eq(exe_process_pool_create_opts(&p, &o, &po), 0);
	cr_assert_eq(exe_pool_submit(p, spin_forever_ptr, NULL, &f), 0);
	expect_failure(f, -ETIME, "timed out");
	exe_future_unref(f);
	expect_square(p, 6);
	exe_pool_destroy(p);
}

Test(process_pool, cancel_with_kill_flag_kills_running_task)
{
	struct exe_pool *p = make_pool(1);
	struct exe_submit_opts o = {.flags = EXE_SUBMIT_KILL_ON_CANCEL};
	struct exe_future *f;

	cr_assert_eq(exe_pool_submit_bytes(p, spin_forever, NULL, 0, &o, &f), 0);
	wait_running(p, 1);
	sleep_ms(20);
	cr_assert_eq(exe_future_cancel(f), -EBUSY);
	expect_failure(f, -ECANCELED, "cancelled while running");
	exe_future_unref(f);
	expect_square(p, 7);
	exe_pool_destroy(p);
}

Test(process_pool, cancel_without_kill_lets_running_task_finish)
{
	struct exe_pool *p = make_pool(1);
	struct exe_future *f;
	void *v;

	cr_assert_eq(exe_pool_submit(p, sleep_arg_ms, (void *)150, &f), 0);
	wait_running(p, 1);
	cr_assert_eq(exe_future_cancel(f), -EBUSY);
	cr_assert_eq(exe_future_result(f, &v, EXE_FOREVER), 0);
	cr_assert_eq((intptr_t)v, 150);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

static _Atomic int cancelled_cbs;

static int count_cancel(struct exe_future *f, void *arg)
{
	(void)arg;
	if (exe_future_state(f) == EXE_FUTURE_CANCELLED)
		atomic_fetch_add(&cancelled_cbs, 1);
	return 0;
}

Test(process_pool, cancel_of_queued_task_runs_its_callbacks)
{
	struct exe_pool *p = make_pool(1);
	struct exe_future *busy[2], *f;

	for (int i = 0; i < 2; i++)
		cr_assert_eq(exe_pool_submit(p, sleep_arg_ms, (void *)100, &busy[i]), 0);
	cr_assert_eq(exe_pool_submit(p, square, (void *)3, &f), 0);
	exe_future_on_done(f, count_cancel, NULL);
	cr_assert_eq(exe_future_cancel(f), 0);
	cr_assert_eq(atomic_load(&cancelled_cbs), 1);
	cr_assert_eq(exe_future_result(f, NULL, 0), -ECANCELED);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(exe_future_result(busy[i], NULL, EXE_FOREVER), 0);
		exe_future_unref(busy[i]);
	}
	exe_future_unref(f);
	exe_pool_destroy(p);
}

/* ---- work conservation: no task waits behind a busy worker ---- */

/* Both workers of @p are ready: two tasks ran at once on two of them. */
static void wait_two_ready(struct exe_pool *p)
{
	for (int tries = 0; tries < 100; tries++) {
		struct exe_future *f[2];
		void *pid[2];

		for (int i = 0; i < 2; i++)
			cr_assert_eq(exe_pool_submit(p, publish_pid_after_ms, (void *)30, &f[i]), 0);
		for (int i = 0; i < 2; i++) {
			cr_assert_eq(exe_future_result(f[i], &pid[i], 20 * EXE_NS_PER_S), 0);
			exe_future_unref(f[i]);
		}
		if (pid[0] != pid[1])
			return;
	}
	cr_assert_fail("two workers never became ready");
}

static struct exe_pool *make_pool_fast_destroy(unsigned workers)
{
	struct exe_pool_opts o = {.workers = workers, .name = "wc"};
	struct exe_process_pool_opts po = {.destroy_grace_ns = 50 * EXE_NS_PER_MS,
	                                   .term_grace_ns = 50 * EXE_NS_PER_MS};
	struct exe_pool *p = NULL;

	cr_assert_eq(exe_process_pool_create_opts(&p, &o, &po), 0);
	return p;
}

Test(process_pool, an_idle_worker_takes_a_new_task_while_the_other_runs_a_long_one)
{
	struct exe_pool *p = make_pool_fast_destroy(2);
	struct exe_future *lng, *mid, *quick;

	wait_two_ready(p);
	cr_assert_eq(exe_pool_submit(p, sleep_arg_ms, (void *)3000, &lng), 0);
	cr_assert_eq(exe_pool_submit(p, sleep_arg_ms, (void *)50, &mid), 0);
	wait_running(p, 2);
	cr_assert_eq(exe_pool_submit(p, square, (void *)5, &quick), 0);
	/* The worker running the 50 ms task is free well before the long
	 * task ends: the quick task must not wait for the long one. */
	cr_assert_eq(exe_future_result(quick, NULL, 2 * EXE_NS_PER_S), 0, "the quick task waited");
	cr_assert_eq(exe_future_state(lng), EXE_FUTURE_RUNNING);
	exe_future_unref(quick);
	exe_future_unref(mid);
	exe_pool_destroy(p); /* kills the long task after its grace */
	cr_assert_eq(exe_future_code(lng), -ECANCELED);
	exe_future_unref(lng);
}

Test(process_pool, two_long_tasks_right_after_create_run_on_two_workers)
{
	for (int round = 0; round < 3; round++) {
		struct exe_pool *p = make_pool_fast_destroy(2);
		struct exe_future *f[2];
		void *pid[2];

		for (int i = 0; i < 2; i++)
			cr_assert_eq(exe_pool_submit(p, publish_pid_after_ms, (void *)300, &f[i]), 0);
		for (int i = 0; i < 2; i++)
			cr_assert_eq(exe_future_result(f[i], &pid[i], 20 * EXE_NS_PER_S), 0);
		cr_assert_neq((intptr_t)pid[0], (intptr_t)pid[1], "round %d: both ran on worker %ld", round,
		              (long)(intptr_t)pid[0]);
		for (int i = 0; i < 2; i++)
			exe_future_unref(f[i]);
		exe_pool_destroy(p);
	}
}

Test(process_pool, every_queued_task_is_pending_and_cancel_returns_0)
{
	struct exe_pool *p = make_pool_fast_destroy(2);
	struct exe_future *busy[2], *q[8];
	struct exe_pool_stats st;

	wait_two_ready(p);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(exe_pool_submit(p, sleep_arg_ms, (void *)400, &busy[i]), 0);
	wait_running(p, 2);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(exe_pool_submit(p, square, (void *)(intptr_t)i, &q[i]), 0);
	sleep_ms(30); /* time for the collector to hand tasks out, if it did */
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(exe_future_state(q[i]), EXE_FUTURE_PENDING, "task %d left the queue", i);
		cr_assert_eq(exe_future_cancel(q[i]), 0, "task %d", i);
		cr_assert_eq(exe_future_state(q[i]), EXE_FUTURE_CANCELLED, "task %d", i);
	}
	exe_pool_stats(p, &st);
	cr_assert_eq(st.cancelled, 8);
	cr_assert_eq(st.queued, 0);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(exe_future_result(busy[i], NULL, 20 * EXE_NS_PER_S), 0);
		exe_future_unref(busy[i]);
	}
	for (int i = 0; i < 8; i++)
		exe_future_unref(q[i]);
	exe_pool_destroy(p);
}

Test(process_pool, a_crashing_task_does_not_wait_behind_a_long_one)
{
	struct exe_pool *p = make_pool_fast_destroy(2);
	struct exe_future *lng, *mid, *crash, *after;

	wait_two_ready(p);
	cr_assert_eq(exe_pool_submit(p, sleep_arg_ms, (void *)3000, &lng), 0);
	cr_assert_eq(exe_pool_submit(p, sleep_arg_ms, (void *)50, &mid), 0);
	wait_running(p, 2);
	cr_assert_eq(exe_pool_submit(p, segfault, NULL, &crash), 0);
	cr_assert_eq(exe_pool_submit(p, square, (void *)4, &after), 0);
	expect_failure(crash, -ECHILD, "signal 11");
	cr_assert_eq(exe_future_state(lng), EXE_FUTURE_RUNNING, "the crash waited for the long task");
	cr_assert_eq(exe_future_result(after, NULL, 2 * EXE_NS_PER_S), 0, "%s", exe_future_error(after));
	cr_assert_eq(exe_future_state(lng), EXE_FUTURE_RUNNING);
	exe_future_unref(crash);
	exe_future_unref(after);
	exe_future_unref(mid);
	exe_pool_destroy(p);
	exe_future_unref(lng);
}

Test(process_pool, a_crash_never_fails_a_task_that_had_not_started)
{
	struct exe_pool *p = make_pool(2);
	struct exe_future *f[40];

	for (int i = 0; i < 40; i++)
		cr_assert_eq(exe_pool_submit(p, i % 4 == 1 ? segfault : square, (void *)(intptr_t)i, &f[i]),
		             0);
	for (int i = 0; i < 40; i++) {
		void *v = NULL;
		int rc = exe_future_result(f[i], &v, 20 * EXE_NS_PER_S);

		if (i % 4 == 1) {
			cr_assert_eq(rc, -ECHILD, "crasher %d: %d", i, rc);
		} else {
			cr_assert_eq(rc, 0, "task %d failed: %s", i, exe_future_error(f[i]));
			cr_assert_eq((intptr_t)v, (intptr_t)i * i);
		}
		exe_future_unref(f[i]);
	}
	exe_pool_destroy(p);
}

/* ---- payloads ---- */

Test(process_pool, result_of_64_mib_arrives_intact)
{
	struct exe_pool *p = make_pool(1);
	struct exe_future *f;
	const uint32_t *v;
	const void *data;
	size_t len;

	cr_assert_eq(exe_pool_submit_bytes(p, big_result, NULL, 0, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), 0, "%s", exe_future_error(f));
	cr_assert_eq(exe_future_bytes(f, &data, &len, EXE_FOREVER), 0);
	cr_assert_eq(len, BIG);
	v = data;
	for (size_t i = 0; i < BIG / 4; i++)
		if (v[i] != (uint32_t)(i * 2654435761u))
			cr_assert_fail("word %zu differs", i);
	exe_future_unref(f);
	exe_pool_destroy(p);
}

Test(process_pool, large_input_is_copied_at_submit)
{
	struct exe_pool *p = make_pool(2);
	size_t n = 3u << 20;
	unsigned char *in = malloc(n);
	struct exe_future *f[2];
	uint64_t want = 0;
	const void *data;
	size_t len;

	for (size_t i = 0; i < n; i++) {
		in[i] = (unsigned char)(i * 31);
		want += in[i];
	}
	cr_assert_eq(exe_pool_submit_bytes(p, sum_bytes, in, n, NULL, &f[0]), 0);
	cr_assert_eq(exe_pool_submit_bytes(p, sum_bytes, in, 1000, NULL, &f[1]), 0);
	memset(in, 0, n);
	cr_assert_eq(exe_future_result(f[0], NULL, EXE_FOREVER), 0, "%s", exe_future_error(f[0]));
	cr_assert_eq(exe_future_bytes(f[0], &data, &len, EXE_FOREVER), 0);
	cr_assert_eq(len, 8);
	cr_assert_eq(*(const uint64_t *)data, want);
	cr_assert_eq(exe_future_result(f[1], NULL, EXE_FOREVER), 0);
	exe_future_unref(f[0]);
	exe_future_unref(f[1]);
	free(in);
	exe_pool_destroy(p);
}

static int echo(const void *in, size_t len, void **out, size_t *out_len)
{
	void *o = malloc(len);

	memcpy(o, in, len);
	*out = o;
	*out_len = len;
	return 0;
}

Test(process_pool, mib_payloads_round_trip_intact_in_any_size_order)
{
	static const size_t sizes[] = {1u << 20, 1u << 20, 40000,     3u << 20,
	                               1u << 20, 100,      20u << 20, 1u << 20};
	struct exe_pool *p = make_pool(2);
	size_t cap = (20u << 20) + 16;
	unsigned char *in = malloc(cap);

	for (size_t i = 0; i < cap; i++)
		in[i] = (unsigned char)(i * 13 + 5);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct exe_future *f;
		const void *data;
		size_t len;

		cr_assert_eq(exe_pool_submit_bytes(p, echo, in + k, sizes[k], NULL, &f), 0);
		cr_assert_eq(exe_future_result(f, NULL, EXE_FOREVER), 0, "%s", exe_future_error(f));
		cr_assert_eq(exe_future_bytes(f, &data, &len, EXE_FOREVER), 0);
		cr_assert_eq(len, sizes[k]);
		cr_assert_eq(memcmp(data, in + k, len), 0, "payload %zu differs", k);
		exe_future_unref(f);
	}
	free(in);
	exe_pool_destroy(p);
}

/* The result built in place: its first 8 bytes are the length asked for
 * (from the input), then a pattern; "fail" after the allocation fails. */
static int build_in_place(const void *in, size_t len, void **out, size_t *out_len)
{
	uint64_t want;
	unsigned char *b;

	if (len == 4 && !memcmp(in, "fail", 4)) {
		*out = exe_proc_result_alloc(1 << 20);
		return exe_task_set_error(-EIO, "failed after allocating");
	}
	memcpy(&want, in, sizeof(want));
	b = exe_proc_result_alloc(want);
	if (!b)
		return -ENOMEM;
	for (uint64_t i = 0; i < want; i++)
		b[i] = (unsigned char)(i * 7 + want);
	*out = b;
	*out_len = want;
	return 0;
}

Test(process_pool, results_built_in_place_arrive_intact_whatever_their_size)
{
	static const uint64_t sizes[] = {1 << 20, 1 << 20,       3,        0,      100000,
	                                 1 << 20, (1 << 20) + 1, 5u << 20, 1 << 20};
	struct exe_pool *p = make_pool(1);
	void *outside = exe_proc_result_alloc(10);

	cr_assert_not_null(outside, "outside a task it is malloc()");
	free(outside);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct exe_future *f;
		const void *data;
		size_t len;

		cr_assert_eq(exe_pool_submit_bytes(p, build_in_place, &sizes[k], sizeof(sizes[k]), NULL, &f),
		             0);
		cr_assert_eq(exe_future_bytes(f, &data, &len, 20 * EXE_NS_PER_S), 0, "size %lu: %s",
		             (unsigned long)sizes[k], exe_future_error(f));
		cr_assert_eq(len, sizes[k]);
		for (uint64_t i = 0; i < len; i++)
			if (((const unsigned char *)data)[i] != (unsigned char)(i * 7 + sizes[k]))
				cr_assert_fail("size %lu: byte %lu differs", (unsigned long)sizes[k],
				               (unsigned long)i);
		exe_future_unref(f);
		if (k == 1) { /* a failure after the allocation takes the block back */
			cr_assert_eq(exe_pool_submit_bytes(p, build_in_place, "fail", 4, NULL, &f), 0);
			expect_failure(f, -EIO, "failed after allocating");
			exe_future_unref(f);
		}
	}
	exe_pool_destroy(p);
}

Test(process_pool, result_bytes_outlive_the_pool)
{
	struct exe_pool *p = make_pool(1);
	unsigned char *in = calloc(1, 1u << 20);
	struct exe_future *f[2];
	const void *data;
	size_t len;

	in[12345] = 7;
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(exe_pool_submit_bytes(p, echo, in, 1u << 20, NULL, &f[i]), 0);
		cr_assert_eq(exe_future_wait(f[i], EXE_FOREVER), 0);
	}
	exe_pool_destroy(p);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(exe_future_bytes(f[i], &data, &len, EXE_FOREVER), 0);
		cr_assert_eq(len, 1u << 20);
		cr_assert_eq(((const unsigned char *)data)[12345], 7);
		exe_future_unref(f[i]);
	}
	free(in);
}

/* ---- many tasks ---- */

Test(process_pool, map_runs_10000_tiny_tasks_in_order)
{
	struct exe_pool *p = make_pool(2);
	size_t n = 10000, bad = 0;
	void **args = malloc(n * sizeof(*args)), **res = calloc(n, sizeof(*res));
	struct exe_pool_stats st;
	int64_t t0;

	for (size_t i = 0; i < n; i++)
		args[i] = (void *)(intptr_t)i;
	t0 = exe_now_ns();
	cr_assert_eq(exe_pool_map(p, square, args, n, res, 50 * EXE_NS_PER_S, &bad), 0, "failed at %zu", bad);
	cr_log_info("map of %zu tasks: %.2f us/task", n, (double)(exe_now_ns() - t0) / 1e3 / (double)n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq((intptr_t)res[i], (intptr_t)(i * i));
	exe_pool_stats(p, &st);
	cr_assert_eq(st.completed, n);
	cr_assert_eq(st.queued + st.running, 0);
	free(args);
	free(res);
	exe_pool_destroy(p);
}

/* ---- chunked map ---- */

/* Fails at element 100; counts (in shared memory) the elements after it that
 * still ran. */
static int fail_at_100(void *arg, void **result)
{
	intptr_t x = (intptr_t)arg;

	if (x > 100)
		atomic_fetch_add(&shm->inits, 1);
	if (x == 100)
		return exe_task_set_error(-EIO, "element %d failed", (int)x);
	*result = (void *)(x * 3);
	return 0;
}

static int crash_at_70(void *arg, void **result)
{
	intptr_t x = (intptr_t)arg;

	if (x == 70)
		*bad_address = 1;
	*result = (void *)(x + 1000);
	return 0;
}

static void **iota(size_t n)
{
	void **args = malloc(n * sizeof(*args));

	for (size_t i = 0; i < n; i++)
		args[i] = (void *)(intptr_t)i;
	return args;
}

Test(process_pool, chunked_map_runs_10000_tiny_tasks_in_order)
{
	struct exe_pool *p = make_pool(2);
	size_t n = 10000, bad = 0, chunks[] = {64, 0, 1000, 5000};
	void **args = iota(n), **res = malloc(n * sizeof(*res));
	struct exe_pool_stats st;
	uint64_t before = 0;

	for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
		struct exe_map_opts o = {.timeout_ns = 50 * EXE_NS_PER_S, .chunk = chunks[k]};
		int64_t t0 = exe_now_ns();

		memset(res, 0xff, n * sizeof(*res));
		cr_assert_eq(exe_pool_map_opts(p, square, args, n, res, &o, &bad), 0,
		             "chunk %zu: failed at %zu", chunks[k], bad);
		cr_log_info("chunk %zu: %.3f us/element", chunks[k],
		            (double)(exe_now_ns() - t0) / 1e3 / (double)n);
		for (size_t i = 0; i < n; i++)
			cr_assert_eq((intptr_t)res[i], (intptr_t)(i * i), "chunk %zu, element %zu", chunks[k],
			             i);
		exe_pool_stats(p, &st);
		/* One task per chunk (5000 is capped at 1024 per chunk). */
		if (chunks[k] == 64)
			cr_assert_eq(st.completed - before, (n + 63) / 64);
		else if (chunks[k] == 0)
			cr_assert_lt(st.completed - before, n / 16);
		else if (chunks[k] == 5000)
			cr_assert_eq(st.completed - before, (n + 1023) / 1024);
		cr_assert_eq(st.queued + st.running, 0);
		before = st.completed;
	}
	/* Tiny maps and the per-element path still work. */
	{
		struct exe_map_opts o = {.chunk = 1};

		cr_assert_eq(exe_pool_map_opts(p, square, args + 3, 1, res, NULL, &bad), 0);
		cr_assert_eq((intptr_t)res[0], 9);
		cr_assert_eq(exe_pool_map_opts(p, square, args, 7, res, &o, &bad), 0);
		cr_assert_eq((intptr_t)res[6], 36);
		cr_assert_eq(exe_pool_map_opts(p, square, args, 0, res, NULL, &bad), 0);
		cr_assert_eq(exe_pool_map_opts(p, NULL, args, 7, res, NULL, &bad), -EINVAL);
	}
	free(args);
	free(res);
	exe_pool_destroy(p);
}

Test(process_pool, chunked_map_stops_at_a_failure_mid_chunk)
{
	struct exe_pool *p;
	struct exe_map_opts o = {.chunk = 64};
	size_t n = 1000, bad = 0;
	void **args = iota(n), **res = calloc(n, sizeof(*res));

	map_shared();
	p = make_pool(2);
	cr_assert_eq(exe_pool_map_opts(p, fail_at_100, args, n, res, &o, &bad), -EIO);
	cr_assert_eq(bad, 100);
	for (size_t i = 0; i < 100; i++)
		cr_assert_eq((intptr_t)res[i], (intptr_t)(3 * i), "element %zu", i);
	/* The rest of the failing chunk (101..127) never ran. Later chunks may
	 * have (handed to a worker ahead), not all of them: cancelled. */
	exe_pool_destroy(p);
	cr_assert_leq(shm->inits, 1000 - 128, "%d elements ran after the failure", shm->inits);
	{
		int ran = shm->inits;

		shm->inits = 0;
		p = make_pool(1);
		/* The failing chunk is the last one: nothing after 100 runs. */
		cr_assert_eq(exe_pool_map_opts(p, fail_at_100, args, 128, res, &o, &bad), -EIO);
		cr_assert_eq(bad, 100);
		exe_pool_destroy(p);
		cr_assert_eq(shm->inits, 0, "%d elements ran after the failure in its chunk", shm->inits);
		cr_log_info("first map: %d elements after the failure ran", ran);
	}
	free(args);
	free(res);
	unmap_shared();
}

Test(process_pool, chunked_map_crash_mid_chunk_keeps_earlier_values_and_pool_goes_on)
{
	struct exe_pool *p = make_pool(2);
	struct exe_map_opts o = {.chunk = 64};
	struct exe_pool_stats st;
	size_t n = 300, bad = 0;
	void **args = iota(n), **res = calloc(n, sizeof(*res));

	cr_assert_eq(exe_pool_map_opts(p, crash_at_70, args, n, res, &o, &bad), -ECHILD);
	cr_assert_eq(bad, 70);
	/* 64..69 ran in the chunk that crashed: their values survive. */
	for (size_t i = 0; i < 70; i++)
		cr_assert_eq((intptr_t)res[i], (intptr_t)(i + 1000), "element %zu", i);
	/* The pool goes on: a fresh worker, every element. */
	cr_assert_eq(exe_pool_map_opts(p, square, args, n, res, &o, &bad), 0, "failed at %zu", bad);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq((intptr_t)res[i], (intptr_t)(i * i));
	expect_square(p, 7);
	exe_pool_stats(p, &st);
	cr_assert_geq(st.worker_restarts, 1);
	/* A crash in the first element of a chunk: nothing of it is kept. */
	cr_assert_eq(exe_pool_map_opts(p, crash_at_70, args + 70, 10, res, &o, &bad), -ECHILD);
	cr_assert_eq(bad, 0);
	free(args);
	free(res);
	exe_pool_destroy(p);
}

Test(process_pool, chunked_map_times_out_with_etimedout)
{
	struct exe_pool *p = make_pool(2);
	struct exe_map_opts o = {.timeout_ns = 200 * EXE_NS_PER_MS, .chunk = 4};
	size_t n = 200, bad = n;
	void **args = malloc(n * sizeof(*args)), **res = calloc(n, sizeof(*res));
	int64_t t0;

	for (size_t i = 0; i < n; i++)
		args[i] = (void *)(intptr_t)10; /* 10 ms each: 1 s on two workers */
	t0 = exe_now_ns();
	cr_assert_eq(exe_pool_map_opts(p, sleep_arg_ms, args, n, res, &o, &bad), -ETIMEDOUT);
	cr_assert_lt(exe_now_ns() - t0, 600 * EXE_NS_PER_MS);
	cr_assert_lt(bad, n);
	cr_assert_eq(bad % 4, 0, "a chunk is all or nothing at the deadline: %zu", bad);
	for (size_t i = 0; i < bad; i++)
		cr_assert_eq((intptr_t)res[i], 10);
	/* What had not started was cancelled: the pool is free again soon. */
	t0 = exe_now_ns();
	expect_square(p, 6);
	cr_assert_lt(exe_now_ns() - t0, 500 * EXE_NS_PER_MS);
	free(args);
	free(res);
	exe_pool_destroy(p);
}

Test(process_pool, chunk_time_limit_fails_the_element_that_ran_past_it)
{
	struct exe_pool_opts o1 = {.workers = 1};
	struct exe_process_pool_opts po = {.task_timeout_ns = 100 * EXE_NS_PER_MS};
	struct exe_map_opts o = {.chunk = 8};
	struct exe_pool *p = NULL;
	void *args[8], *res[8];
	size_t bad = 99;

	for (int i = 0; i < 8; i++)
		args[i] = (void *)(intptr_t)(i == 5 ? 5000 : 1);
	cr_assert_eq(exe_process_pool_create_opts(&p, &o1, &po), 0);
	/* The chunk may take 8 x 100 ms; element 5 alone takes 5 s: the
	 * element's own limit (-ETIME), not the caller's wait (-ETIMEDOUT). */
	cr_assert_eq(exe_pool_map_opts(p, sleep_arg_ms, args, 8, res, &o, &bad), -ETIME);
	cr_assert_eq(bad, 5);
	for (int i = 0; i < 5; i++)
		cr_assert_eq((intptr_t)res[i], 1);
	expect_square(p, 8);
	exe_pool_destroy(p);
}

/* ---- the lazy map in chunks ---- */

static int pid_and_index(void *arg, void **result)
{
	*result = (void *)(((intptr_t)getpid() << 32) | (intptr_t)arg);
	return 0;
}

Test(process_pool, lazy_map_sends_chunks_and_hands_results_out_in_order)
{
	struct exe_pool *p = make_pool(2);
	struct exe_map_opts o = {.chunk = 64, .window = 512};
	size_t n = 10000, k = 0;
	void **args = malloc(n * sizeof(*args));
	intptr_t *pid = malloc(n * sizeof(*pid));
	struct exe_map_iter *it = NULL;
	void *v;
	int rc;

	for (size_t i = 0; i < n; i++)
		args[i] = (void *)(intptr_t)i;
	cr_assert_eq(exe_pool_map_open(&it, p, pid_and_index, args, n, &o), 0);
	while ((rc = exe_map_next(it, &v, 20 * EXE_NS_PER_S)) == 0) {
		cr_assert_eq(exe_map_index(it), k);
		cr_assert_eq((intptr_t)v & 0xffffffff, (intptr_t)k, "element %zu out of order", k);
		pid[k++] = (intptr_t)v >> 32;
	}
	cr_assert_eq(rc, -EPIPE);
	cr_assert_eq(k, n);
	/* One chunk, one message, one worker: 64 elements in a row ran in the
	 * same process. */
	for (size_t c = 0; c < n / 64; c++)
		for (size_t i = 1; i < 64; i++)
			cr_assert_eq(pid[c * 64 + i], pid[c * 64], "chunk %zu split between workers", c);
	exe_map_close(it);
	free(args);
	free(pid);
	exe_pool_destroy(p);
}

/* Elements 64..71 form chunk 8 (chunk 8 elements): element 70 fails or
 * crashes, 71 never runs, the rest of the map goes on. */
static void lazy_chunk_failure_case(exe_task_fn *fn, int code, bool crash)
{
	struct exe_pool *p = make_pool(2);
	struct exe_map_opts o = {.chunk = 8, .window = 64};
	size_t n = 200, k = 0;
	void **args = malloc(n * sizeof(*args));
	struct exe_map_iter *it = NULL;
	void *v;
	int rc;

	map_shared();
	for (size_t i = 0; i < n; i++)
		args[i] = (void *)(intptr_t)i;
	cr_assert_eq(exe_pool_map_open(&it, p, fn, args, n, &o), 0);
	while ((rc = exe_map_next(it, &v, 20 * EXE_NS_PER_S)) != -EPIPE) {
		cr_assert_eq(exe_map_index(it), k);
		if (k == 70) {
			cr_assert_eq(rc, code, "element 70: %d", rc);
		} else if (k == 71) {
			cr_assert_eq(rc, -ECANCELED, "element 71, after the failure in its chunk: %d", rc);
		} else {
			cr_assert_eq(rc, 0, "element %zu: %d", k, rc);
			cr_assert_eq((intptr_t)v, crash ? (intptr_t)k + 1000 : (intptr_t)k * 3);
		}
		k++;
	}
	cr_assert_eq(k, n);
	exe_map_close(it);
	free(args);
	unmap_shared();
	exe_pool_destroy(p);
}

static int fail_at_70(void *arg, void **result)
{
	intptr_t x = (intptr_t)arg;

	if (x == 70)
		return exe_task_set_error(-EIO, "element %d failed", (int)x);
	*result = (void *)(x * 3);
	return 0;
}

Test(process_pool, lazy_map_chunk_failure_fails_its_element_and_the_map_goes_on)
{
	lazy_chunk_failure_case(fail_at_70, -EIO, false);
}

Test(process_pool, lazy_map_chunk_crash_fails_its_element_and_the_map_goes_on)
{
	lazy_chunk_failure_case(crash_at_70, -ECHILD, true);
}

Test(process_pool, lazy_map_close_cancels_chunks_not_started)
{
	struct exe_pool *p = make_pool(1);
	struct exe_map_opts o = {.chunk = 4, .window = 64};
	size_t n = 400;
	void **args = malloc(n * sizeof(*args));
	struct exe_map_iter *it = NULL;
	struct exe_pool_stats st;
	void *v;

	for (size_t i = 0; i < n; i++)
		args[i] = (void *)(intptr_t)20; /* 20 ms each: 80 ms a chunk */
	cr_assert_eq(exe_pool_map_open(&it, p, sleep_arg_ms, args, n, &o), 0);
	cr_assert_eq(exe_map_next(it, &v, 20 * EXE_NS_PER_S), 0);
	cr_assert_eq((intptr_t)v, 20);
	exe_map_close(it); /* one chunk runs, the other 15 in the window never start */
	exe_pool_stats(p, &st);
	cr_assert_geq(st.cancelled, 14, "cancelled %lu", (unsigned long)st.cancelled);
	cr_assert_leq(st.submitted, 17, "the map went past its window: %lu", (unsigned long)st.submitted);
	free(args);
	exe_pool_destroy(p);
}

/* ---- shutdown, recycling, cleanup ---- */

Test(process_pool, submit_after_shutdown_returns_eshutdown)
{
	struct exe_pool *p = make_pool(2);
	struct exe_future *f = NULL;
	struct exe_pool_stats st;

	cr_assert_eq(exe_pool_shutdown(p, 0), 0);
	cr_assert_eq(exe_pool_submit(p, square, NULL, &f), -ESHUTDOWN);
	cr_assert_eq(exe_pool_submit_bytes(p, upper, "a", 1, NULL, &f), -ESHUTDOWN);
	cr_assert_null(f);
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT), 0);
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT), 0, "idempotent");
	exe_pool_stats(p, &st);
	cr_assert(st.shut_down);
	cr_assert_eq(st.workers, 0, "every worker exited");
	exe_pool_destroy(p);
}

Test(process_pool, shutdown_wait_drains_queued_work)
{
	struct exe_pool *p = make_pool(2);
	struct exe_future *f[12];

	for (int i = 0; i < 12; i++)
		cr_assert_eq(exe_pool_submit(p, sleep_arg_ms, (void *)(intptr_t)(10 + i), &f[i]), 0);
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT), 0);
	for (int i = 0; i < 12; i++) {
		cr_assert_eq(exe_future_state(f[i]), EXE_FUTURE_DONE);
		exe_future_unref(f[i]);
	}
	exe_pool_destroy(p);
}

Test(process_pool, shutdown_cancel_pending_cancels_queued_and_finishes_running)
{
	struct exe_pool *p = make_pool(1);
	struct exe_future *run, *q[6];
	struct exe_pool_stats st;
	void *v;

	cr_assert_eq(exe_pool_submit(p, sleep_arg_ms, (void *)200, &run), 0);
	wait_running(p, 1);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(exe_pool_submit(p, square, (void *)(intptr_t)i, &q[i]), 0);
	sleep_ms(20);
	cr_assert_eq(exe_pool_shutdown(p, EXE_SHUTDOWN_CANCEL_PENDING | EXE_SHUTDOWN_WAIT), 0);
	cr_assert_eq(exe_future_result(run, &v, 0), 0);
	cr_assert_eq((intptr_t)v, 200);
	exe_pool_stats(p, &st);
	/* Nothing is handed to a busy worker ahead of time: every task that
	 * had not started is cancelled. */
	for (int i = 0; i < 6; i++)
		cr_assert_eq(exe_future_state(q[i]), EXE_FUTURE_CANCELLED, "task %d", i);
	cr_assert_eq(st.cancelled, 6);
	cr_assert_eq(st.workers, 0);
	for (int i = 0; i < 6; i++)
		exe_future_unref(q[i]);
	exe_future_unref(run);
	exe_pool_destroy(p);
}

Test(process_pool, destroy_kills_stragglers_after_grace_period)
{
	struct exe_pool_opts o = {.workers = 1};
	struct exe_process_pool_opts po = {.destroy_grace_ns = 300 * EXE_NS_PER_MS,
	                                   .term_grace_ns = 50 * EXE_NS_PER_MS};
	struct exe_pool *p = NULL;
	struct exe_future *f;
	int64_t t0;

	cr_assert_eq(exe_process_pool_create_opts(&p, &o, &po), 0);
	cr_assert_eq(exe_pool_submit(p, spin_forever_ptr, NULL, &f), 0);
	wait_running(p, 1);
	t0 = exe_now_ns();
	exe_pool_destroy(p);
	cr_assert_lt(exe_now_ns() - t0, 3 * EXE_NS_PER_S);
	expect_failure(f, -ECANCELED, "pool destroyed");
	exe_future_unref(f);
}

Test(process_pool, recycling_with_a_backlog_runs_every_task_on_fresh_workers)
{
	struct exe_pool_opts o = {.workers = 2};
	struct exe_process_pool_opts po = {.max_tasks_per_worker = 3};
	struct exe_pool *p = NULL;
	struct exe_future *f[60];
	struct exe_pool_stats st;
	intptr_t pids[60];
	int distinct = 0;
	int64_t t0 = exe_now_ns();

	cr_assert_eq(exe_process_pool_create_opts(&p, &o, &po), 0);
	for (int i = 0; i < 60; i++)
		cr_assert_eq(exe_pool_submit(p, my_pid, NULL, &f[i]), 0);
	for (int i = 0; i < 60; i++) {
		void *v;

		cr_assert_eq(exe_future_result(f[i], &v, 20 * EXE_NS_PER_S), 0, "task %d: %s", i,
		             exe_future_error(f[i]));
		pids[i] = (intptr_t)v;
		exe_future_unref(f[i]);
	}
	cr_log_info("60 tasks, 3 per worker: %.1f ms", (double)(exe_now_ns() - t0) / 1e6);
	for (int i = 0; i < 60; i++) {
		int seen = 0, j;

		for (j = 0; j < i; j++)
			seen += pids[j] == pids[i];
		distinct += !seen;
		cr_assert_lt(seen, 3, "pid %ld ran more than 3 tasks", (long)pids[i]);
	}
	cr_assert_geq(distinct, 20);
	exe_pool_stats(p, &st);
	cr_assert_geq(st.worker_restarts, 18);
	exe_pool_destroy(p);
}

Test(process_pool, stats_count_submitted_completed_failed_and_workers)
{
	struct exe_pool *p = make_pool(2);
	struct exe_future *f[3];
	struct exe_pool_stats st;

	exe_pool_submit(p, square, (void *)2, &f[0]);
	exe_pool_submit(p, fail_with_message, (void *)1, &f[1]);
	exe_pool_submit(p, square, (void *)3, &f[2]);
	for (int i = 0; i < 3; i++) {
		exe_future_wait(f[i], EXE_FOREVER);
		exe_future_unref(f[i]);
	}
	for (int i = 0; i < 1000; i++) {
		exe_pool_stats(p, &st);
		if (st.workers == 2 && st.completed + st.failed == 3)
			break;
		sleep_ms(1);
	}
	cr_assert_eq(st.submitted, 3);
	cr_assert_eq(st.completed, 2);
	cr_assert_eq(st.failed, 1);
	cr_assert_eq(st.workers, 2);
	cr_assert(!st.broken && !st.shut_down);
	exe_pool_destroy(p);
}

Test(process_pool, destroy_leaves_no_child_process_and_no_descriptor)
{
	int before = count_fds(), after;
	struct exe_pool *p;
	struct exe_future *f[3];
	char *in = calloc(1, 1u << 20);

	p = make_pool(2);
	cr_assert_eq(exe_pool_submit_bytes(p, sum_bytes, in, 1u << 20, NULL, &f[0]), 0);
	cr_assert_eq(exe_pool_submit(p, segfault, NULL, &f[1]), 0);
	cr_assert_eq(exe_pool_submit_bytes(p, big_result, NULL, 0, NULL, &f[2]), 0);
	for (int i = 0; i < 3; i++)
		exe_future_wait(f[i], EXE_FOREVER);
	exe_pool_destroy(p);
	for (int i = 0; i < 3; i++)
		exe_future_unref(f[i]);
	free(in);
	after = count_fds();
	cr_assert_eq(after, before, "descriptors: %d before, %d after", before, after);
	errno = 0;
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1);
	cr_assert_eq(errno, ECHILD, "a child process is left");
}

static bool process_gone(pid_t pid)
{
	char path[64], buf[256], *s;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fp = fopen(path, "r");
	if (!fp)
		return true;
	s = fgets(buf, sizeof(buf), fp);
	fclose(fp);
	s = s ? strrchr(buf, ')') : NULL;
	return !s || s[2] == 'Z' || s[2] == 'X';
}

static void wait_gone(pid_t pid, const char *what)
{
	for (int i = 0; i < 3000 && !process_gone(pid); i++)
		sleep_ms(1);
	cr_assert(process_gone(pid), "%s %d is still alive", what, (int)pid);
}

Test(process_pool, a_tasks_process_tree_ends_with_its_worker)
{
	struct exe_pool_opts o = {.workers = 1};
	struct exe_process_pool_opts po = {.kill_on_cancel = true, .term_grace_ns = 50 * EXE_NS_PER_MS};
	struct exe_pool *p = NULL;
	struct exe_future *f;

	map_shared();
	cr_assert_eq(exe_process_pool_create_opts(&p, &o, &po), 0);
	cr_assert_eq(exe_pool_submit(p, start_processes_and_hang, NULL, &f), 0);
	while (!shm->pid)
		sleep_ms(1);
	cr_assert(!process_gone(shm->child) && !process_gone(shm->grandchild));
	cr_assert_eq(exe_future_cancel(f), -EBUSY);
	expect_failure(f, -ECANCELED, "cancelled while running");
	wait_gone(shm->pid, "worker");
	wait_gone(shm->child, "the task's child");
	wait_gone(shm->grandchild, "the task's daemonized grandchild");
	exe_future_unref(f);
	expect_square(p, 3); /* the pool goes on */
	exe_pool_destroy(p);
	unmap_shared();
}

Test(process_pool, a_tasks_process_tree_ends_when_the_parent_is_killed)
{
	pid_t app;

	map_shared();
	app = fork();
	if (app == 0) {
		struct exe_pool *p = NULL;
		struct exe_future *f;

		if (exe_process_pool_create(&p, &(struct exe_pool_opts){.workers = 1}))
			_exit(1);
		exe_pool_submit(p, start_processes_and_hang, NULL, &f);
		for (;;)
			pause(); /* killed by the test */
	}
	while (!shm->pid)
		sleep_ms(1);
	kill(app, SIGKILL);
	cr_assert_eq(waitpid(app, NULL, 0), app);
	wait_gone(shm->server_pid, "fork server");
	wait_gone(shm->pid, "worker");
	wait_gone(shm->child, "the task's child");
	wait_gone(shm->grandchild, "the task's daemonized grandchild");
	unmap_shared();
}

/* The fork server killed from outside (SIGKILL, or SIGTERM which it takes
 * as a request to clean up): running tasks fail with -ECHILD, the pool is
 * broken for good (-ENOTRECOVERABLE, with a message), destroy still leaves
 * nothing behind. */
static void server_death_case(int sig)
{
	int fds_before = count_fds();
	struct exe_pool *p;
	struct exe_future *f, *g;
	int rc = 0;

	map_shared();
	p = make_pool(2);
	cr_assert_eq(exe_pool_submit(p, publish_pid_and_hang, NULL, &f), 0);
	while (!shm->pid)
		sleep_ms(1);
	kill(shm->server_pid, sig);
	expect_failure(f, -ECHILD, "fork server died");
	for (int i = 0; i < 3000 && !exe_pool_error(p); i++)
		sleep_ms(1);
	cr_assert_not_null(exe_pool_error(p));
	cr_assert_not_null(strstr(exe_pool_error(p), "fork server"), "%s", exe_pool_error(p));
	rc = exe_pool_submit(p, square, (void *)2, &g);
	cr_assert_eq(rc, -ENOTRECOVERABLE);
	wait_gone(shm->pid, "worker");
	exe_future_unref(f);
	exe_pool_destroy(p);
	cr_assert_eq(count_fds(), fds_before);
	errno = 0;
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1);
	cr_assert_eq(errno, ECHILD, "a child process is left");
	unmap_shared();
}

Test(process_pool, fork_server_killed_breaks_the_pool_for_good)
{
	server_death_case(SIGKILL);
}

Test(process_pool, fork_server_terminated_breaks_the_pool_for_good)
{
	server_death_case(SIGTERM);
}

Test(process_pool, workers_die_with_the_parent)
{
	pid_t child;
	int status;

	map_shared();
	child = fork();
	if (child == 0) {
		struct exe_pool *p = NULL;
		struct exe_future *f;

		if (exe_process_pool_create(&p, &(struct exe_pool_opts){.workers = 1}))
			_exit(1);
		exe_pool_submit(p, publish_pid_and_hang, NULL, &f);
		while (!shm->pid)
			sleep_ms(1);
		_exit(0); /* no destroy */
	}
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (int i = 0; i < 3000 && !(process_gone(shm->pid) && process_gone(shm->server_pid)); i++)
		sleep_ms(1);
	cr_assert(process_gone(shm->pid), "worker %d outlived its parent", shm->pid);
	cr_assert(process_gone(shm->server_pid), "fork server %d outlived its parent", shm->server_pid);
	unmap_shared();
}
