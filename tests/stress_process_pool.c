/*
 * stress_process_pool - several submitter threads against one process pool:
 * 10 000 tasks mixing bytes tasks with checked results, pointer tasks,
 * cancels (some killing a running worker), tasks that crash their worker
 * and tasks that run past their time limit, all at once. Checks that every
 * future finishes exactly once (one done callback each) with the outcome its
 * task implies, that the counts add up, and that nothing leaks: no
 * descriptor, no child process, no shared mapping. A plain program (not
 * Criterion) so it also runs under ThreadSanitizer, which watches the
 * submitters, the collector thread and the futures' hand-offs. Pointer
 * tasks count their runs in shared memory: each ran exactly once, and a
 * task cancelled at once after its submit (racing the workers that take it
 * from the ring) either was cancelled and never ran, or ran once and the
 * cancel said it had started.
 * EXE_STRESS_TASKS overrides the task count.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <executor.h>

#include "resource_counts.h"

#define SUBMITTERS 3
#define WINDOW 32

static struct exe_pool *pool;
static long tasks_per_thread;
static _Atomic long ok, cancelled, crashed, timed_out, failures;

static void fail(const char *what, long i, int rc)
{
	fprintf(stderr, "stress_process_pool: %s (task %ld, rc %d)\n", what, i, rc);
	atomic_fetch_add(&failures, 1);
}

/* Returns its input reversed; input "crash" kills the worker. */
static int reverse(const void *in, size_t len, void **out, size_t *out_len)
{
	const unsigned char *s = in;
	unsigned char *r;

	if (len == 5 && memcmp(in, "crash", 5) == 0)
		raise(SIGSEGV);
	if (len == 4 && memcmp(in, "spin", 4) == 0)
		for (;;)
			__asm__ volatile("" ::: "memory");
	r = malloc(len ? len : 1);
	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++)
		r[i] = s[len - 1 - i];
	*out = r;
	*out_len = len;
	return 0;
}

/* How often each pointer task ran: shared with the workers. */
static _Atomic int *runs;
static size_t nruns;

static int twice(void *arg, void **result)
{
	atomic_fetch_add(&runs[(uintptr_t)arg], 1);
	*result = (void *)((uintptr_t)arg * 2);
	return 0;
}

enum kind { BYTES, POINTER, CRASH, CANCEL, TIMEOUT, RACE };

/* Done callbacks: one per future, counted per task. */
static int count_done(struct exe_future *f, void *arg)
{
	(void)f;
	atomic_fetch_add((_Atomic int *)arg, 1);
	return 0;
}

struct slot {
	struct exe_future *f;
	enum kind kind;
	char in[32];
	size_t len;
	uintptr_t x;
	int cancel_rc; /* RACE: what the cancel right after the submit said */
};

static void check(struct slot *s, long i)
{
	const void *data;
	size_t len;
	void *v = NULL;
	int rc = exe_future_result(s->f, &v, EXE_FOREVER);

	switch (s->kind) {
	case BYTES:
		if (rc != 0 || exe_future_bytes(s->f, &data, &len, EXE_FOREVER) != 0 || len != s->len)
			fail("bytes task", i, rc);
		else
			for (size_t k = 0; k < len; k++)
				if (((const char *)data)[k] != s->in[len - 1 - k]) {
					fail("bytes result", i, 0);
					break;
				}
		atomic_fetch_add(&ok, 1);
		break;
	case POINTER:
		if (rc != 0 || (uintptr_t)v != s->x * 2)
			fail("pointer task", i, rc);
		if (atomic_load(&runs[s->x]) != 1)
			fail("pointer task did not run exactly once", i, atomic_load(&runs[s->x]));
		atomic_fetch_add(&ok, 1);
		break;
	case RACE:
		/* Cancelled: it must never run (checked again at the end).
		 * Not cancellable: it had started (-EBUSY) or even finished
		 * (-EALREADY), and runs to its result. */
		if (s->cancel_rc == 0 ? rc != -ECANCELED
		                      : (s->cancel_rc != -EBUSY && s->cancel_rc != -EALREADY) || rc != 0 ||
		                            (uintptr_t)v != s->x * 2)
			fail("cancel racing the workers", i, s->cancel_rc ? s->cancel_rc : rc);
		if (atomic_load(&runs[s->x]) != (s->cancel_rc == 0 ? 0 : 1))
			fail("raced task ran the wrong number of times", i, atomic_load(&runs[s->x]));
		atomic_fetch_add(s->cancel_rc == 0 ? &cancelled : &ok, 1);
		break;
	case CRASH:
		if (rc != -ECHILD || !exe_future_error(s->f) || !strstr(exe_future_error(s->f), "signal 11"))
			fail("crash not reported as a dead worker", i, rc);
		atomic_fetch_add(&crashed, 1);
		break;
	case CANCEL:
		/* Cancelled before it started, killed while running, or done. */
		if (rc != 0 && rc != -ECANCELED)
			fail("cancelled task", i, rc);
		atomic_fetch_add(rc ? &cancelled : &ok, 1);
		break;
	case TIMEOUT:
		if (rc != -ETIME)
			fail("task past its limit not failed with -ETIME", i, rc);
		atomic_fetch_add(&timed_out, 1);
		break;
	}
	exe_future_unref(s->f);
}

static _Atomic int *done_counts[SUBMITTERS];

static void *submitter(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg, seed = id * 2654435761u;
	struct slot w[WINDOW];
	struct exe_submit_opts kill = {.flags = EXE_SUBMIT_KILL_ON_CANCEL};
	struct exe_submit_opts limit = {.task_timeout_ns = 20 * EXE_NS_PER_MS};
	_Atomic int *counts = done_counts[id - 1];
	int n = 0;

	for (long i = 0; i < tasks_per_thread; i++) {
		struct slot *s = &w[n];
		unsigned r = rand_r(&seed);
		int rc;

		s->kind = r % 50 == 0    ? CRASH
		          : r % 199 == 0 ? TIMEOUT
		          : r % 7 == 0   ? CANCEL
		          : r % 5 == 0   ? RACE
		          : r % 2        ? POINTER
		                         : BYTES;
		if (s->kind == TIMEOUT) {
			rc = exe_pool_submit_bytes(pool, reverse, "spin", 4, &limit, &s->f);
		} else if (s->kind == POINTER || s->kind == RACE) {
			s->x = (uintptr_t)(id - 1) * (uintptr_t)tasks_per_thread + (uintptr_t)i;
			rc = exe_pool_submit(pool, twice, (void *)s->x, &s->f);
			if (rc == 0 && s->kind == RACE)
				s->cancel_rc = exe_future_cancel(s->f);
		} else {
			s->len = s->kind == CRASH
			             ? 5
			             : (size_t)snprintf(s->in, sizeof(s->in), "task %u/%ld", r, i);
			if (s->kind == CRASH)
				memcpy(s->in, "crash", 5);
			rc = exe_pool_submit_bytes(pool, reverse, s->in, s->len,
			                           s->kind == CANCEL ? &kill : NULL, &s->f);
			if (rc == 0 && s->kind == CANCEL)
				exe_future_cancel(s->f);
		}
		if (rc) {
			fail("submit", i, rc);
			break;
		}
		if (exe_future_on_done(s->f, count_done, &counts[i]))
			fail("on_done", i, 0);
		if (++n < WINDOW && i + 1 < tasks_per_thread)
			continue;
		for (int k = 0; k < n; k++)
			check(&w[k], i);
		n = 0;
	}
	return NULL;
}

int main(void)
{
	struct exe_pool_stats st;
	pthread_t t[SUBMITTERS];
	long total = 10000;
	const char *env = getenv("EXE_STRESS_TASKS");
	int fds_before, maps_before;

	if (env)
		total = atol(env);
	tasks_per_thread = total / SUBMITTERS;
	nruns = (size_t)tasks_per_thread * SUBMITTERS;
	runs = mmap(NULL, nruns * sizeof(*runs), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (runs == MAP_FAILED)
		return 1;
	for (int i = 0; i < SUBMITTERS; i++)
		done_counts[i] = calloc((size_t)tasks_per_thread, sizeof(_Atomic int));
	fds_before = count_dir("/proc/self/fd");
	maps_before = count_shared_maps();
	/* Before any other thread: the fork server copies this process. */
	if (exe_process_pool_create(&pool, &(struct exe_pool_opts){.workers = 2, .name = "pstress"}))
		return 1;
	for (int i = 0; i < SUBMITTERS; i++)
		pthread_create(&t[i], NULL, submitter, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < SUBMITTERS; i++)
		pthread_join(t[i], NULL);
	exe_pool_shutdown(pool, EXE_SHUTDOWN_WAIT);
	exe_pool_stats(pool, &st);
	exe_pool_destroy(pool);
	/* Every worker is gone: no task runs any more. */
	for (size_t k = 0; k < nruns; k++)
		if (atomic_load(&runs[k]) > 1)
			fail("a task ran twice", (long)k, atomic_load(&runs[k]));
	if (atomic_load(&ok) + atomic_load(&cancelled) + atomic_load(&crashed) + atomic_load(&timed_out) !=
	    tasks_per_thread * SUBMITTERS)
		fail("outcomes do not add up", 0, 0);
	for (int i = 0; i < SUBMITTERS; i++) {
		for (long k = 0; k < tasks_per_thread; k++)
			if (atomic_load(&done_counts[i][k]) != 1)
				fail("a future did not finish exactly once", k,
				     atomic_load(&done_counts[i][k]));
		free((void *)done_counts[i]);
	}
	if (count_dir("/proc/self/fd") != fds_before)
		fail("descriptors leaked", count_dir("/proc/self/fd") - fds_before, 0);
	if (count_shared_maps() != maps_before)
		fail("shared mappings leaked", count_shared_maps() - maps_before, 0);
	errno = 0;
	if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
		fail("a child process is left", 0, 0);
	munmap((void *)runs, nruns * sizeof(*runs));
	if (st.worker_restarts < (uint64_t)atomic_load(&crashed))
		fail("fewer worker restarts than crashes", (long)st.worker_restarts, 0);
	printf("stress_process_pool: %ld tasks, %ld ok, %ld cancelled, %ld crashed, %ld timed out, %lu "
	       "restarts, "
	       "%ld failures\n",
	       tasks_per_thread * SUBMITTERS, atomic_load(&ok), atomic_load(&cancelled),
	       atomic_load(&crashed), atomic_load(&timed_out), (unsigned long)st.worker_restarts,
	       atomic_load(&failures));
	return atomic_load(&failures) ? 1 : 0;
}
