/*
 * stress_steal - the thread pool's deques under fire. Tasks split into
 * children that land on their worker's deque (no waiting, so idle workers
 * must steal them), while outside threads submit more trees, cancel random
 * tasks and finally shut the pool down with CANCEL_PENDING racing all of it.
 * Checks, per task: it ran at most once; a cancelled task never ran; a DONE
 * task ran exactly once; every accepted task is finished after destroy; the
 * pool's counters agree. Then wake-ups: a task submitted to a pool whose
 * workers all sleep starts, also while the submitter sleeps in a finite
 * wait (no caller runs). A plain program: also run under ThreadSanitizer.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <executor.h>

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define ROUNDS 3
#define DEPTH 9
#define WAKE_ROUNDS 200
#else
#define ROUNDS 10
#define DEPTH 11
#define WAKE_ROUNDS 1000
#endif
#define ROOTS 8                           /* trees per round, from 2 threads */
#define TREE ((1 << (DEPTH + 1)) - 1)     /* tasks per tree */
#define SLOTS (ROOTS * TREE)

struct slot {
	_Atomic(struct exe_future *) f; /* one reference, dropped by the checker */
	_Atomic int ran;
	_Atomic int refused; /* its submit failed (shutdown): never accepted */
};

static struct slot slots[SLOTS];
static struct exe_pool *pool;
static _Atomic int stop_cancel;
static _Atomic long total_ran;

static void fail(const char *what, long i, long v)
{
	fprintf(stderr, "stress_steal: %s (task %ld, %ld)\n", what, i, v);
	exit(1);
}

/* Task i (heap numbering inside its tree) submits its two children and
 * returns without waiting for them. */
static int node(void *arg, void **result)
{
	uintptr_t id = (uintptr_t)arg, root = id / TREE, i = id % TREE;

	if (atomic_fetch_add(&slots[id].ran, 1) != 0)
		fail("a task ran twice", (long)id, 0);
	atomic_fetch_add(&total_ran, 1);
	for (uintptr_t c = 2 * i + 1; c <= 2 * i + 2 && c < TREE; c++) {
		uintptr_t cid = root * TREE + c;
		struct exe_future *f;
		int rc = exe_pool_submit(pool, node, (void *)cid, &f);

		if (rc == 0)
			atomic_store(&slots[cid].f, f);
		else if (rc == -ESHUTDOWN)
			atomic_store(&slots[cid].refused, 1);
		else
			fail("submit from a task failed", (long)cid, rc);
	}
	*result = NULL;
	return 0;
}

static void *rooter(void *arg)
{
	uintptr_t first = (uintptr_t)arg;

	for (uintptr_t r = first; r < ROOTS; r += 2) {
		uintptr_t id = r * TREE;
		struct exe_future *f;
		int rc = exe_pool_submit(pool, node, (void *)id, &f);

		if (rc == 0)
			atomic_store(&slots[id].f, f);
		else if (rc == -ESHUTDOWN)
			atomic_store(&slots[id].refused, 1);
		else
			fail("submit failed", (long)id, rc);
	}
	return NULL;
}

static void *canceller(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;

	while (!atomic_load(&stop_cancel)) {
		seed = seed * 1103515245u + 12345u;
		struct exe_future *f = atomic_load(&slots[(seed >> 8) % SLOTS].f);

		if (f)
			exe_future_cancel(f);
	}
	return NULL;
}

static void one_round(int round)
{
	struct exe_pool_opts o = {.workers = 2 + (unsigned)(round % 3), .no_caller_runs = round % 2};
	pthread_t r[2], c;
	struct exe_pool_stats st;
	long accepted = 0, ran = 0, cancelled = 0;
	struct timespec tick = {0, 20000};
	/* Shut down after 0, 1/8, 2/8 ... of the tasks ran (or 2 s). */
	long until = (long)(round % 5) * SLOTS / 8;

	for (long i = 0; i < SLOTS; i++) {
		atomic_store(&slots[i].f, NULL);
		atomic_store(&slots[i].ran, 0);
		atomic_store(&slots[i].refused, 0);
	}
	if (exe_thread_pool_create(&pool, &o))
		fail("create", 0, 0);
	atomic_store(&stop_cancel, 0);
	pthread_create(&c, NULL, canceller, (void *)(uintptr_t)(round + 1));
	pthread_create(&r[0], NULL, rooter, (void *)0);
	pthread_create(&r[1], NULL, rooter, (void *)1);
	atomic_store(&total_ran, 0);
	/* Cancels prune whole subtrees: stop waiting once the pool is idle. */
	for (int i = 0; i < 100000 && atomic_load(&total_ran) < until; i++) {
		nanosleep(&tick, NULL);
		exe_pool_stats(pool, &st);
		if (i > 10 && st.queued == 0 && st.running == 0)
			break;
	}
	/* Shutdown races the trees still splitting: pending tasks are
	 * cancelled wherever they sit (shared queue or a deque), tasks
	 * submitted later are refused, nothing accepted is lost. */
	exe_pool_shutdown(pool, EXE_SHUTDOWN_CANCEL_PENDING);
	pthread_join(r[0], NULL);
	pthread_join(r[1], NULL);
	atomic_store(&stop_cancel, 1);
	pthread_join(c, NULL);
	/* Tasks still running may still split: count once all finished. */
	exe_pool_shutdown(pool, EXE_SHUTDOWN_WAIT);
	exe_pool_stats(pool, &st);
	exe_pool_destroy(pool);

	for (long i = 0; i < SLOTS; i++) {
		struct exe_future *f = atomic_load(&slots[i].f);
		int n = atomic_load(&slots[i].ran);

		if (!f) {
			if (n)
				fail("a task ran without being accepted", i, n);
			continue;
		}
		accepted++;
		switch (exe_future_state(f)) {
		case EXE_FUTURE_DONE:
			if (n != 1)
				fail("a DONE task did not run exactly once", i, n);
			ran++;
			break;
		case EXE_FUTURE_CANCELLED:
			if (n != 0)
				fail("a cancelled task ran", i, n);
			cancelled++;
			break;
		default: fail("a task not finished after destroy", i, exe_future_state(f));
		}
		exe_future_unref(f);
	}
	if (st.submitted != (uint64_t)accepted || st.completed != (uint64_t)ran || st.cancelled != (uint64_t)cancelled)
		fail("stats disagree with the futures (submitted, accepted)", (long)st.submitted, accepted);
	printf("round %d: %u workers, %ld accepted, %ld ran, %ld cancelled\n", round, o.workers, accepted, ran,
	       cancelled);
}

/* ---- wake-ups ---- */

static int stamp(void *arg, void **result)
{
	(void)arg;
	*result = (void *)1;
	return 0;
}

static void wake_ups(void)
{
	struct exe_pool_opts o = {.workers = 2, .no_caller_runs = true};
	unsigned seed = 7;

	if (exe_thread_pool_create(&pool, &o))
		fail("create", 0, 0);
	for (int i = 0; i < WAKE_ROUNDS; i++) {
		struct timespec idle;
		struct exe_future *f;
		int rc;

		/* 0-100 us: workers spinning, just parking, or asleep. */
		seed = seed * 1103515245u + 12345u;
		idle = (struct timespec){0, (long)((seed >> 8) % 100) * 1000};
		nanosleep(&idle, NULL);
		if (exe_pool_submit(pool, stamp, NULL, &f))
			fail("submit", i, 0);
		rc = exe_future_wait(f, 5LL * 1000000000);
		if (rc)
			fail("a task submitted to a sleeping pool never started (lost wake-up)", i, rc);
		exe_future_unref(f);
	}
	exe_pool_destroy(pool);
	printf("wake-ups: %d tasks after idle, each started within a finite wait\n", WAKE_ROUNDS);
}

int main(void)
{
	for (int round = 0; round < ROUNDS; round++)
		one_round(round);
	wake_ups();
	return 0;
}
