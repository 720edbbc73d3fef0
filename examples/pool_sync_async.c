/*
 * pool_sync_async - synchronous versus asynchronous collection of results,
 * on a thread pool and on a process pool.
 *
 * Four tasks each sleep for a while and return n * n. They are collected
 * three ways:
 *   sync      submit one, wait for its result, then submit the next:
 *             the tasks run one after another (4 x the sleep);
 *   result    submit all four, then exe_future_result() on each in turn:
 *             they run side by side, the loop only waits for the slowest;
 *   callback  submit all four with a done callback each and do not wait at
 *             all; the callbacks print the results as the tasks finish.
 * Each task says which process and thread ran it, and each callback says
 * where it ran: on a thread pool, on the worker that finished the task; on a
 * process pool, on the pool's collector thread in the parent process.
 *
 * Run: pool_sync_async [--sleep-ms 300]
 * Exits non-zero when a result is wrong or the timings do not show the
 * difference (sync slower than the overlapped ways).
 */
#include <executor.h>

#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NTASKS 4

static long sleep_ms = 300;
/* Set before the process pool exists, so its workers (forks) see it too:
 * every line is stamped with seconds since program start. */
static int64_t t_prog;

static double stamp(void)
{
	return (double)(exe_now_ns() - t_prog) / 1e9;
}

static double since(int64_t t0)
{
	return (double)(exe_now_ns() - t0) / 1e9;
}

static const char *thread_name(char *buf, size_t len)
{
	if (pthread_getname_np(pthread_self(), buf, len))
		snprintf(buf, len, "?");
	return buf;
}

/* The task: runs on a pool worker (a thread, or a process). */
static int task(void *arg, void **result)
{
	intptr_t n = (intptr_t)arg;
	struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
	char name[16];

	printf("  %5.2fs  task %ld runs in pid %d, thread %s\n", stamp(), (long)n, (int)getpid(),
	       thread_name(name, sizeof(name)));
	nanosleep(&ts, NULL);
	*result = (void *)(n * n);
	return 0;
}

struct cb_state {
	intptr_t sum;
	int calls;
	int bad_place;             /* callbacks that ran somewhere they should not */
	const char *expect_prefix; /* thread name prefix the callback should see */
};

/* The done callback: thread pool - the worker that finished the task;
 * process pool - the collector thread "<name>-c" of this (parent) process. */
static int parse(struct exe_future *f, void *arg)
{
	struct cb_state *st = arg;
	char name[16];
	void *v;

	if (exe_future_result(f, &v, 0)) {
		printf("  callback: task failed: %s\n", exe_future_error(f));
		return 0;
	}
	thread_name(name, sizeof(name));
	printf("  %5.2fs  callback got %ld in pid %d, thread %s\n", stamp(), (long)(intptr_t)v, (int)getpid(),
	       name);
	/* With four workers, several callbacks may run at once. */
	__atomic_add_fetch(&st->sum, (intptr_t)v, __ATOMIC_RELAXED);
	__atomic_add_fetch(&st->calls, 1, __ATOMIC_RELAXED);
	if (strncmp(name, st->expect_prefix, strlen(st->expect_prefix)) != 0)
		__atomic_add_fetch(&st->bad_place, 1, __ATOMIC_RELAXED);
	return 0;
}

struct timings {
	double sync, result, callback;
};

static int run_all(struct exe_pool *pool, const char *cb_prefix, struct timings *tm)
{
	struct exe_future *fs[NTASKS];
	struct cb_state st = {.expect_prefix = cb_prefix};
	intptr_t sum;
	int64_t t0;
	void *v;
	int bad = 0;

	printf(" sync: submit, wait for the result, then submit the next\n");
	t0 = exe_now_ns();
	sum = 0;
	for (intptr_t i = 1; i <= NTASKS; i++) {
		struct exe_future *f;

		if (exe_pool_submit(pool, task, (void *)i, &f))
			return -1;
		if (exe_future_result(f, &v, 10 * EXE_NS_PER_S) == 0)
			sum += (intptr_t)v;
		exe_future_unref(f);
	}
	tm->sync = since(t0);
	printf(" -> sum %ld in %.2f s\n\n", (long)sum, tm->sync);
	bad |= sum != 30;

	printf(" result: submit all, then result() on each future in turn\n");
	t0 = exe_now_ns();
	sum = 0;
	for (intptr_t i = 1; i <= NTASKS; i++)
		if (exe_pool_submit(pool, task, (void *)i, &fs[i - 1]))
			return -1;
	for (int i = 0; i < NTASKS; i++) {
		if (exe_future_result(fs[i], &v, 10 * EXE_NS_PER_S) == 0)
			sum += (intptr_t)v;
		exe_future_unref(fs[i]);
	}
	tm->result = since(t0);
	printf(" -> sum %ld in %.2f s\n\n", (long)sum, tm->result);
	bad |= sum != 30;

	printf(" callback: submit all with a done callback; main does not wait on any\n");
	t0 = exe_now_ns();
	for (intptr_t i = 1; i <= NTASKS; i++) {
		if (exe_pool_submit(pool, task, (void *)i, &fs[i - 1]))
			return -1;
		exe_future_on_done(fs[i - 1], parse, &st);
	}
	printf("  %5.2fs  main: all submitted, free to do other work\n", stamp());
	/* Wait only so the program can check and report; exe_wait() returns
	 * when the futures are final, a callback may still be finishing, so
	 * poll the counter the callbacks bump. */
	exe_wait(fs, NTASKS, EXE_WAIT_ALL, 10 * EXE_NS_PER_S);
	for (int i = 0; i < 1000 && __atomic_load_n(&st.calls, __ATOMIC_ACQUIRE) < NTASKS; i++)
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	tm->callback = since(t0);
	for (int i = 0; i < NTASKS; i++)
		exe_future_unref(fs[i]);
	printf(" -> sum %ld from %d callbacks in %.2f s\n\n", (long)st.sum, st.calls, tm->callback);
	bad |= st.sum != 30 || st.calls != NTASKS;
	if (st.bad_place) {
		printf(" !! %d callbacks ran outside a \"%s*\" thread\n", st.bad_place, cb_prefix);
		bad = 1;
	}
	return bad ? -1 : 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--sleep-ms N]\n", argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"sleep-ms", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct exe_pool_opts po = {.workers = NTASKS, .no_caller_runs = true};
	struct timings th, tp;
	struct exe_pool *pool;
	int c, rc, bad = 0;

	while ((c = getopt_long(argc, argv, "s:h", longopts, NULL)) != -1) {
		if (c == 's')
			sleep_ms = atol(optarg);
		else
			usage(argv[0]);
	}
	if (sleep_ms < 1 || sleep_ms > 60000)
		usage(argv[0]);
	/* Line buffering even into a pipe: the process-pool workers are forks
	 * of this program and print too; each line goes out whole. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_prog = exe_now_ns();
	printf("%d tasks, each sleeps %ld ms and returns n*n (sum 30); main is pid %d\n\n", NTASKS, sleep_ms,
	       (int)getpid());

	/* The process pool first: its workers are forked before this program
	 * starts any thread of its own. */
	po.name = "proc";
	rc = exe_process_pool_create(&pool, &po);
	if (rc) {
		fprintf(stderr, "process pool: %s\n", exe_strerror(rc));
		return 1;
	}
	printf("== process pool, %u worker processes (pids differ from main)\n", po.workers);
	bad |= run_all(pool, "proc-c", &tp) != 0;
	exe_pool_destroy(pool);

	po.name = "thr";
	rc = exe_thread_pool_create(&pool, &po);
	if (rc) {
		fprintf(stderr, "thread pool: %s\n", exe_strerror(rc));
		return 1;
	}
	printf("== thread pool, %u worker threads (same pid as main)\n", po.workers);
	bad |= run_all(pool, "thr-", &th) != 0;
	exe_pool_destroy(pool);

	printf("elapsed seconds      sync   result  callback\n");
	printf("  thread pool     %6.2f   %6.2f    %6.2f\n", th.sync, th.result, th.callback);
	printf("  process pool    %6.2f   %6.2f    %6.2f\n", tp.sync, tp.result, tp.callback);
	printf("sync pays %d sleeps; result and callback pay about one, because the tasks\n"
	       "overlap. Callbacks ran on the worker thread that finished each task\n"
	       "(thread pool) or on the collector thread of the main process (process pool).\n",
	       NTASKS);

	/* Sync pays every sleep in turn. */
	double serial = NTASKS * sleep_ms / 1e3;

	if (th.sync < serial * 0.95 || tp.sync < serial * 0.95)
		bad = 1;
	/* A lower bound holds on any machine; an upper one is a timing that a
	 * busy machine can break: report it, do not fail on it. */
	if (th.result > serial * 0.75 || th.callback > serial * 0.75 || tp.result > serial * 0.75 ||
	    tp.callback > serial * 0.75)
		printf("(the overlapped runs were slower than expected: the machine is busy)\n");
	printf("%s\n", bad ? "FAILED" : "OK");
	return bad;
}
