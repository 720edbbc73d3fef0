/*
 * test_mpi.c - the MPI pool, run by CTest under `mpirun -n 3` and `-n 2`
 * (a plain program: every rank runs main; rank 0 checks, the others serve).
 *
 * Phases, each a pool created and destroyed on every rank:
 *  0. the worker ranks pass bad options: create fails everywhere, no hang;
 *  1. processes backend, 2 workers per rank: results, bytes of every size,
 *     errors with messages, unknown names, crashes, time limits, cancel,
 *     map in chunks, 10 000 tasks, callbacks, stats, load balance;
 *  2. threads backend: results, map, errors;
 *  3. shutdown with cancel-pending, then submit after shutdown.
 * `--kill-rank` instead makes a worker rank die (SIGKILL) while serving: the
 * job must end, not hang (tests/mpi_rank_death.sh checks that).
 * Exit status 0 on rank 0 means every check passed.
 */
#include <errno.h>
#include <executor.h>
#include <executor/mpi.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                                     \
	do {                                                                                                 \
		if (!(cond)) {                                                                               \
			failures++;                                                                          \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                      \
			fprintf(stderr, __VA_ARGS__);                                                        \
			fputc('\n', stderr);                                                                 \
		}                                                                                            \
	} while (0)

/* ---- tasks ---- */

static int echo(const void *in, size_t len, void **out, size_t *out_len)
{
	*out = malloc(len ? len : 1);
	if (!*out)
		return -ENOMEM;
	if (len)
		memcpy(*out, in, len);
	*out_len = len;
	return 0;
}
EXE_MPI_TASK(echo)

static int refuse(const void *in, size_t len, void **out, size_t *out_len)
{
	(void)in;
	(void)out;
	(void)out_len;
	exe_task_set_error(-EPERM, "refused %zu bytes", len);
	return -EPERM;
}
EXE_MPI_TASK(refuse)

static int crash(const void *in, size_t len, void **out, size_t *out_len)
{
	(void)in;
	(void)len;
	(void)out;
	(void)out_len;
	raise(SIGSEGV);
	return 0;
}
EXE_MPI_TASK(crash)

/* Sleeps the milliseconds given as a decimal string; returns its pid. */
static int nap(const void *in, size_t len, void **out, size_t *out_len)
{
	char buf[32];
	int *pid = malloc(sizeof(int));

	snprintf(buf, sizeof(buf), "%.*s", (int)len, (const char *)in);
	usleep((useconds_t)atoi(buf) * 1000);
	if (!pid)
		return -ENOMEM;
	*pid = getpid();
	*out = pid;
	*out_len = sizeof(int);
	return 0;
}
EXE_MPI_TASK(nap)

static int die_rank(const void *in, size_t len, void **out, size_t *out_len)
{
	(void)in;
	(void)len;
	(void)out;
	(void)out_len;
	raise(SIGKILL); /* with the threads backend: the whole rank */
	return 0;
}
EXE_MPI_TASK(die_rank)

static int square(void *arg, void **result)
{
	intptr_t x = (intptr_t)arg;

	*result = (void *)(x * x);
	return 0;
}
EXE_MPI_PTR_TASK(square)

static int fail_at_5000(void *arg, void **result)
{
	if ((intptr_t)arg == 5000)
		return -ERANGE;
	*result = (void *)((intptr_t)arg + 1);
	return 0;
}
EXE_MPI_PTR_TASK(fail_at_5000)

static int not_registered(void *arg, void **result)
{
	*result = arg;
	return 0;
}

/* ---- helpers ---- */

static struct exe_future *submit(struct exe_pool *p, const char *name, const void *in, size_t len)
{
	struct exe_future *f = NULL;
	int rc = exe_mpi_submit(p, name, in, len, NULL, &f);

	CHECK(rc == 0, "submit %s: %d", name, rc);
	return f;
}

static struct exe_future *submit_nap(struct exe_pool *p, int ms, const struct exe_submit_opts *o)
{
	char buf[16];
	struct exe_future *f = NULL;
	int rc;

	snprintf(buf, sizeof(buf), "%d", ms);
	rc = exe_mpi_submit(p, "nap", buf, strlen(buf), o, &f);
	CHECK(rc == 0, "submit nap: %d", rc);
	return f;
}

static atomic_int callbacks;

static int count_cb(struct exe_future *f, void *arg)
{
	(void)f;
	(void)arg;
	atomic_fetch_add(&callbacks, 1);
	return 0;
}

/* ---- phase 1: processes ---- */

static void check_bytes(struct exe_pool *p)
{
	static const size_t sizes[] = {0, 1, 100, 32 * 1024, 32 * 1024 + 1, 1 << 20, 5 << 20};
	size_t i, k;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		unsigned char *in = malloc(sizes[i] + 1);
		struct exe_future *f;
		const void *data;
		size_t len;
		int rc;

		for (k = 0; k < sizes[i]; k++)
			in[k] = (unsigned char)(k * 7 + i);
		f = submit(p, "echo", in, sizes[i]);
		memset(in, 0, sizes[i]); /* the input was copied at submit */
		rc = exe_future_wait(f, 30 * EXE_NS_PER_S);
		CHECK(rc == 0, "echo %zu wait %d", sizes[i], rc);
		rc = exe_future_bytes(f, &data, &len, 0);
		CHECK(rc == 0 && len == sizes[i], "echo %zu: rc %d len %zu", sizes[i], rc, len);
		for (k = 0; rc == 0 && k < len; k++) {
			if (((const unsigned char *)data)[k] != (unsigned char)(k * 7 + i)) {
				CHECK(0, "echo %zu: byte %zu differs", sizes[i], k);
				break;
			}
		}
		exe_future_unref(f);
		free(in);
	}
}

/* exe_future_bytes() waits like exe_future_result(): 0 polls. */
static void check_bytes_wait(struct exe_pool *p)
{
	struct exe_future *f = submit_nap(p, 300, NULL);
	const void *data = NULL;
	size_t len = 0;
	int rc;

	rc = exe_future_bytes(f, &data, &len, 0);
	CHECK(rc == -ETIMEDOUT, "bytes of a running task, polled: %d", rc);
	rc = exe_future_bytes(f, &data, &len, 30 * EXE_NS_PER_S);
	CHECK(rc == 0 && len == sizeof(int) && data, "bytes after a wait: %d %zu", rc, len);
	exe_future_unref(f);
}

static void check_errors(struct exe_pool *p)
{
	struct exe_future *f;
	void *v;
	int rc;

	f = submit(p, "refuse", "abc", 3);
	rc = exe_future_result(f, &v, 30 * EXE_NS_PER_S);
	CHECK(rc == -EPERM, "refuse: %d", rc);
	CHECK(exe_future_error(f) && strstr(exe_future_error(f), "refused 3 bytes"), "message: %s",
	      exe_future_error(f));
	exe_future_unref(f);

	f = submit(p, "no_such_task", "x", 1);
	rc = exe_future_result(f, &v, 30 * EXE_NS_PER_S);
	CHECK(rc == -ENOENT, "unknown name: %d", rc);
	CHECK(exe_future_error(f) && strstr(exe_future_error(f), "no_such_task"), "message: %s",
	      exe_future_error(f));
	exe_future_unref(f);

	rc = exe_pool_submit(p, not_registered, (void *)1, &f);
	CHECK(rc == 0, "unregistered submit: %d", rc);
	if (rc == 0) {
		rc = exe_future_result(f, &v, 30 * EXE_NS_PER_S);
		CHECK(rc == -ENOENT, "unregistered function: %d", rc);
		CHECK(exe_future_error(f) && strstr(exe_future_error(f), "not registered"), "message: %s",
		      exe_future_error(f));
		exe_future_unref(f);
	}

	/* Bad arguments. */
	CHECK(exe_mpi_submit(NULL, "echo", NULL, 0, NULL, &f) == -EINVAL, "NULL pool");
	{
		struct exe_pool *tp;

		if (exe_thread_pool_create(&tp, NULL) == 0) {
			CHECK(exe_mpi_submit(tp, "echo", NULL, 0, NULL, &f) == -EOPNOTSUPP, "a thread pool");
			CHECK(exe_mpi_pool_ranks(tp) == 0, "ranks of a thread pool");
			exe_pool_destroy(tp);
		}
	}
	CHECK(exe_mpi_submit(p, NULL, NULL, 0, NULL, &f) == -EINVAL, "NULL name");
	CHECK(exe_mpi_submit(p, "echo", NULL, 5, NULL, &f) == -EINVAL, "NULL input with a length");
	{
		struct exe_submit_opts o = {.result_free = free};

		CHECK(exe_mpi_submit(p, "echo", "a", 1, &o, &f) == -EINVAL, "result_free refused");
	}
	CHECK(exe_mpi_register("echo", (exe_proc_task_fn *)refuse) == -EINVAL, "name taken");
	CHECK(exe_mpi_register("", echo) == -EINVAL, "empty name");
	CHECK(exe_mpi_register("echo", echo) == 0, "same again");
}

static void check_crash_and_timeout(struct exe_pool *p, int ranks)
{
	struct exe_submit_opts o = {.task_timeout_ns = 200 * EXE_NS_PER_MS};
	struct exe_future *f;
	int64_t t0;
	void *v;
	int rc, i;

	f = submit(p, "crash", NULL, 0);
	rc = exe_future_result(f, &v, 30 * EXE_NS_PER_S);
	CHECK(rc == -ECHILD, "crash: %d", rc);
	CHECK(exe_future_error(f) && strstr(exe_future_error(f), "on host") &&
	          strstr(exe_future_error(f), "killed by signal 11"),
	      "message: %s", exe_future_error(f));
	exe_future_unref(f);
	/* Every rank still serves. */
	for (i = 0; i < 4 * ranks; i++) {
		f = submit(p, "echo", "ok", 2);
		CHECK(exe_future_wait(f, 30 * EXE_NS_PER_S) == 0 && exe_future_code(f) == 0, "after crash");
		exe_future_unref(f);
	}

	t0 = exe_now_ns();
	f = submit_nap(p, 5000, &o);
	rc = exe_future_result(f, &v, 30 * EXE_NS_PER_S);
	CHECK(rc == -ETIME, "time limit: %d (%s)", rc, exe_future_error(f));
	CHECK(exe_now_ns() - t0 < 4 * EXE_NS_PER_S, "time limit took %lld ns",
	      (long long)(exe_now_ns() - t0));
	exe_future_unref(f);
}

static void check_cancel(struct exe_pool *p, unsigned slots)
{
	struct exe_submit_opts kill = {.flags = EXE_SUBMIT_KILL_ON_CANCEL};
	struct exe_future *busy[16], *queued, *running;
	unsigned i;
	int64_t t0;
	int rc;

	/* Occupy every worker, then one more waits in the client queue. */
	for (i = 0; i < slots && i < 16; i++)
		busy[i] = submit_nap(p, 1500, NULL);
	queued = submit_nap(p, 10, NULL);
	rc = exe_future_cancel(queued);
	CHECK(rc == 0, "cancel queued: %d", rc);
	CHECK(exe_future_code(queued) == -ECANCELED, "queued cancelled: %d", exe_future_code(queued));
	exe_future_unref(queued);
	for (i = 0; i < slots && i < 16; i++) {
		CHECK(exe_future_wait(busy[i], 30 * EXE_NS_PER_S) == 0 && exe_future_code(busy[i]) == 0,
		      "busy %u", i);
		exe_future_unref(busy[i]);
	}

	/* Without kill-on-cancel a running task only gets the request and
	 * runs to its end. */
	running = submit_nap(p, 600, NULL);
	while (exe_future_state(running) == EXE_FUTURE_PENDING)
		usleep(1000);
	usleep(100 * 1000);
	rc = exe_future_cancel(running);
	CHECK(rc == -EBUSY, "plain cancel of a running task: %d", rc);
	rc = exe_future_wait(running, 30 * EXE_NS_PER_S);
	CHECK(rc == 0 && exe_future_code(running) == 0, "ran to its end: %d %d (%s)", rc,
	      exe_future_code(running), exe_future_error(running));
	exe_future_unref(running);

	/* A running task with kill-on-cancel ends long before its time. */
	running = submit_nap(p, 5000, &kill);
	while (exe_future_state(running) == EXE_FUTURE_PENDING)
		usleep(1000);
	usleep(100 * 1000); /* let it reach its worker */
	t0 = exe_now_ns();
	rc = exe_future_cancel(running);
	CHECK(rc == -EBUSY, "cancel running: %d", rc);
	rc = exe_future_wait(running, 30 * EXE_NS_PER_S);
	CHECK(rc == 0 && exe_future_code(running) == -ECANCELED, "killed: %d %d", rc,
	      exe_future_code(running));
	CHECK(exe_now_ns() - t0 < 3 * EXE_NS_PER_S, "kill took %lld ns", (long long)(exe_now_ns() - t0));
	exe_future_unref(running);
}

static void check_map(struct exe_pool *p)
{
	enum { N = 100000 };
	void **args = malloc(N * sizeof(void *)), **res = calloc(N, sizeof(void *));
	struct exe_map_opts mo = {.chunk = 1000};
	size_t failed = 0, i;
	int rc;

	for (i = 0; i < N; i++)
		args[i] = (void *)(intptr_t)i;
	rc = exe_pool_map_opts(p, square, args, N, res, &mo, &failed);
	CHECK(rc == 0, "map chunk 1000: %d", rc);
	for (i = 0; rc == 0 && i < N; i++) {
		if ((intptr_t)res[i] != (intptr_t)i * (intptr_t)i) {
			CHECK(0, "map[%zu] = %ld", i, (long)(intptr_t)res[i]);
			break;
		}
	}
	memset(res, 0, N * sizeof(void *));
	rc = exe_pool_map_opts(p, square, args, 20000, res, NULL, &failed); /* automatic chunk */
	CHECK(rc == 0 && (intptr_t)res[19999] == (intptr_t)19999 * 19999, "map auto: %d", rc);
	rc = exe_pool_map(p, square, args, 50, res, 30 * EXE_NS_PER_S, &failed); /* one task each */
	CHECK(rc == 0 && (intptr_t)res[49] == 49 * 49, "map one by one: %d", rc);

	memset(res, 0, N * sizeof(void *));
	rc = exe_pool_map_opts(p, fail_at_5000, args, 20000, res, &mo, &failed);
	CHECK(rc == -ERANGE && failed == 5000, "map failure: %d at %zu", rc, failed);
	for (i = 0; i < 5000; i++) {
		if ((intptr_t)res[i] != (intptr_t)i + 1) {
			CHECK(0, "before the failure: res[%zu] = %ld", i, (long)(intptr_t)res[i]);
			break;
		}
	}
	rc = exe_pool_map_opts(p, not_registered, args, 10, res, &mo, &failed);
	CHECK(rc == -ENOENT, "map of an unregistered function: %d", rc);
	free(args);
	free(res);
}

static void check_many(struct exe_pool *p)
{
	enum { N = 10000 };
	struct exe_future **fs = malloc(N * sizeof(*fs));
	struct exe_pool_stats st0, st;
	int i, rc;

	exe_pool_stats(p, &st0);
	atomic_store(&callbacks, 0);
	for (i = 0; i < N; i++) {
		rc = exe_pool_submit(p, square, (void *)(intptr_t)i, &fs[i]);
		CHECK(rc == 0, "submit %d: %d", i, rc);
		if (rc)
			return;
		exe_future_on_done(fs[i], count_cb, NULL);
	}
	rc = exe_wait(fs, N, EXE_WAIT_ALL, 120 * EXE_NS_PER_S);
	CHECK(rc == N, "wait all: %d", rc);
	for (i = 0; i < N; i++) {
		void *v = NULL;

		rc = exe_future_result(fs[i], &v, 0);
		if (rc || (intptr_t)v != (intptr_t)i * i) {
			CHECK(0, "task %d: rc %d value %ld", i, rc, (long)(intptr_t)v);
			break;
		}
	}
	for (i = 0; i < N; i++)
		exe_future_unref(fs[i]);
	free(fs);
	/* The last callbacks may still be running when exe_wait() returns. */
	for (i = 0; i < 5000 && atomic_load(&callbacks) < N; i++)
		usleep(1000);
	CHECK(atomic_load(&callbacks) == N, "callbacks: %d", atomic_load(&callbacks));
	exe_pool_stats(p, &st);
	/* Chunks of an earlier map that stopped early may finish meanwhile. */
	CHECK(st.submitted - st0.submitted == N && st.completed - st0.completed >= N, "stats: %llu %llu",
	      (unsigned long long)(st.submitted - st0.submitted),
	      (unsigned long long)(st.completed - st0.completed));
	CHECK(st.queued == 0 && st.running == 0 && !st.shut_down && !st.broken, "stats idle");
}

/* With one worker per rank, a long task on one rank must not hold back
 * short ones while the other rank is free. */
static void check_balance(struct exe_pool *p, int ranks)
{
	struct exe_future *slow, *quick[10];
	int i;

	if (ranks < 2)
		return;
	slow = submit_nap(p, 2000, NULL);
	for (i = 0; i < 10; i++)
		quick[i] = submit_nap(p, 1, NULL);
	for (i = 0; i < 10; i++) {
		int rc = exe_future_wait(quick[i], 30 * EXE_NS_PER_S);

		CHECK(rc == 0, "quick %d", i);
		exe_future_unref(quick[i]);
	}
	CHECK(exe_future_state(slow) == EXE_FUTURE_RUNNING, "the quick tasks waited behind the slow one");
	exe_future_wait(slow, 30 * EXE_NS_PER_S);
	exe_future_unref(slow);
}

/* ---- phase 3: shutdown ---- */

static void check_shutdown(struct exe_pool *p, int ranks)
{
	struct exe_future *fs[8], *f;
	struct exe_pool_stats st;
	int i, n = ranks + 4, rc;

	for (i = 0; i < n; i++)
		fs[i] = submit_nap(p, 300, NULL);
	usleep(100 * 1000);
	rc = exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT | EXE_SHUTDOWN_CANCEL_PENDING);
	CHECK(rc == 0, "shutdown: %d", rc);
	for (i = 0; i < n; i++) {
		int code = exe_future_code(fs[i]);

		/* One worker per rank: the first `ranks` ran, the rest were queued. */
		if (i < ranks)
			CHECK(code == 0, "running task %d: %d", i, code);
		else
			CHECK(code == -ECANCELED, "queued task %d: %d", i, code);
		exe_future_unref(fs[i]);
	}
	CHECK(exe_mpi_submit(p, "echo", "x", 1, NULL, &f) == -ESHUTDOWN, "submit after shutdown");
	CHECK(exe_pool_submit(p, square, NULL, &f) == -ESHUTDOWN, "pointer submit after shutdown");
	exe_pool_stats(p, &st);
	CHECK(st.shut_down && st.cancelled >= 4, "stats after shutdown");
	CHECK(exe_pool_shutdown(p, EXE_SHUTDOWN_WAIT) == 0, "shutdown again");
	CHECK(exe_pool_error(p) == NULL, "not broken");
}

/* Phase 0: the worker ranks pass bad options. Every rank must come back:
 * the client with their code, the workers with it too, nobody waiting. */
static void check_bad_worker_opts(void)
{
	struct exe_mpi_pool_opts o = {0};
	struct exe_pool *p = (struct exe_pool *)&o;
	int rank, rc;

	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	if (rank != 0)
		o.backend = (enum exe_mpi_backend)99;
	rc = exe_mpi_pool_create(&p, MPI_COMM_WORLD, &o);
	CHECK(rc == -EINVAL && p == NULL, "rank %d: bad worker options: %d", rank, rc);
	if (rank != 0 && rc == -EINVAL)
		return;
	if (rc == 0)
		exe_pool_destroy(p);
}

static int run_phase(int phase, bool kill_rank)
{
	struct exe_mpi_pool_opts o = {.workers_per_rank = phase == 1 ? 2 : 1,
	                              .destroy_grace_ns = 300 * EXE_NS_PER_MS};
	struct exe_pool *p;
	struct exe_pool_stats st;
	int rc, ranks;

	if (phase == 0) {
		check_bad_worker_opts();
		return 0;
	}

	if (phase == 2 || kill_rank)
		o.backend = EXE_MPI_THREADS;
	if (kill_rank)
		o.liveness_ns = 2 * EXE_NS_PER_S;
	rc = exe_mpi_pool_create(&p, MPI_COMM_WORLD, &o);
	if (rc == EXE_MPI_SERVED)
		return 1;
	if (rc) {
		fprintf(stderr, "FAIL phase %d: create: %d\n", phase, rc);
		exit(1);
	}
	ranks = exe_mpi_pool_ranks(p);
	exe_pool_stats(p, &st);
	CHECK(ranks >= 1 && st.workers == o.workers_per_rank * (unsigned)ranks, "ranks %d workers %u", ranks,
	      st.workers);
	if (kill_rank) {
		struct exe_future *f = submit_nap(p, 3000, NULL);

		/* A task longer than the liveness bound: the heartbeats keep its
		 * rank alive. */
		CHECK(exe_future_wait(f, 30 * EXE_NS_PER_S) == 0 && exe_future_code(f) == 0,
		      "a 3 s task with a 2 s liveness bound: %d (%s)", exe_future_code(f),
		      exe_future_error(f));
		exe_future_unref(f);
		f = submit(p, "die_rank", NULL, 0);

		/* Open MPI ends the job here; with --enable-recovery it goes on
		 * and the heartbeats find the dead rank; an MPI that reports the
		 * failure fails the future at once. */
		rc = exe_future_wait(f, 60 * EXE_NS_PER_S);
		fprintf(stderr, "die_rank: wait %d, code %d (%s)\n", rc, exe_future_code(f),
		        exe_future_error(f));
		CHECK(rc == 0 && exe_future_code(f) == -ECHILD, "the dead rank's task failed");
		exe_future_unref(f);
		/* The pool goes on with the ranks left. */
		for (int i = 0; i < 10; i++) {
			f = submit(p, "echo", "ok", 2);
			CHECK(exe_future_wait(f, 30 * EXE_NS_PER_S) == 0 && exe_future_code(f) == 0,
			      "after a rank died: %d", exe_future_code(f));
			exe_future_unref(f);
		}
		CHECK(exe_mpi_pool_ranks(p) == ranks - 1, "ranks left: %d", exe_mpi_pool_ranks(p));
		exe_pool_destroy(p);
		fprintf(stderr, "rank death: %d failures; the pool went on without the dead rank\n",
		        failures);
		return 0;
	}
	if (phase == 1) {
		struct exe_future *f;
		int64_t t0;

		check_bytes(p);
		check_bytes_wait(p);
		check_errors(p);
		check_crash_and_timeout(p, ranks);
		check_cancel(p, st.workers);
		check_map(p);
		check_many(p);
		/* Destroy gives a running task its grace (300 ms here), then
		 * kills it: it does not wait the task's minute. */
		f = submit_nap(p, 60000, NULL);
		while (exe_future_state(f) == EXE_FUTURE_PENDING)
			usleep(1000);
		t0 = exe_now_ns();
		exe_pool_destroy(p);
		CHECK(exe_now_ns() - t0 < 10 * EXE_NS_PER_S, "destroy took %lld ms",
		      (long long)((exe_now_ns() - t0) / EXE_NS_PER_MS));
		CHECK(exe_future_code(f) == -ECANCELED, "killed at destroy: %d (%s)", exe_future_code(f),
		      exe_future_error(f));
		exe_future_unref(f);
		fprintf(stderr, "phase 1 done (%d ranks): %d failures\n", ranks, failures);
		return 0;
	} else if (phase == 2) {
		check_bytes(p);
		check_errors(p);
		check_map(p);
		check_balance(p, ranks);
	} else {
		check_shutdown(p, ranks);
	}
	exe_pool_destroy(p);
	fprintf(stderr, "phase %d done (%d ranks): %d failures\n", phase, ranks, failures);
	return 0;
}

int main(int argc, char **argv)
{
	bool kill_rank = argc > 1 && !strcmp(argv[1], "--kill-rank");
	int provided, phase, served = 0;

	MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
	for (phase = kill_rank ? 1 : 0; phase <= (kill_rank ? 1 : 3); phase++)
		served += run_phase(phase, kill_rank);
	if (kill_rank) {
		/* MPI_Finalize would wait for the dead rank. */
		fflush(NULL);
		_exit(failures ? 1 : 0);
	}
	MPI_Finalize();
	if (served)
		return 0;
	if (failures)
		fprintf(stderr, "%d failures\n", failures);
	return failures ? 1 : 0;
}
