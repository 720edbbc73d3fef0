/*
 * test_ipc_hostile.c - the process-shared queue against peers that do not
 * play along: a process stopped while it holds the queue's lock, and bytes
 * of the segment overwritten at random. Every call returns within its
 * timeout with a documented code; none hangs or crashes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <executor.h>

#include "ipc_helpers.h"

#define MS EXE_NS_PER_MS

TestSuite(ipc_hostile, .timeout = 60);

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

/* The queue's internal lock is the pthread mutex right after its 40-byte
 * header (magic, version, three geometry words, checksum). */
#define QUEUE_LOCK_OFFSET 40

static int lock_and_stop(void *arg)
{
	pthread_mutex_t *lock = (pthread_mutex_t *)((unsigned char *)arg + QUEUE_LOCK_OFFSET);

	prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a test that failed */
	if (pthread_mutex_lock(lock))
		return 1;
	raise(SIGSTOP);
	return 0; /* never reached: the test kills us while stopped */
}

struct probe {
	struct exe_ipc_queue *q;
	int64_t timeout;
	int put, get;
	long count;
	int close;
	int64_t put_ns, get_ns;
};

/* Run in a child with an alarm: a call that waits on the lock forever is
 * reported as a kill by SIGALRM instead of hanging the suite. */
static int probe_calls(void *arg)
{
	struct probe *pr = arg;
	char buf[16];
	size_t len;
	int64_t t0;

	alarm(10);
	t0 = exe_now_ns();
	pr->put = exe_ipc_queue_put(pr->q, "x", 1, pr->timeout);
	pr->put_ns = exe_now_ns() - t0;
	t0 = exe_now_ns();
	pr->get = exe_ipc_queue_get(pr->q, buf, sizeof(buf), &len, pr->timeout);
	pr->get_ns = exe_now_ns() - t0;
	pr->count = ipc_count(pr->q);
	return 0;
}

static void probe_in_child(struct probe *shared, struct exe_ipc_queue *q, int64_t timeout)
{
	*shared = (struct probe){.q = q, .timeout = timeout};
	cr_assert_eq(wait_exit(spawn(probe_calls, shared)), 0, "a call waited on the stopped holder's lock");
}

Test(ipc_hostile, a_stopped_lock_holder_never_stretches_a_timeout)
{
	struct exe_ipc_queue_opts o = {.max_msgs = 4, .max_bytes = 64};
	size_t size = exe_ipc_queue_mem_size(&o);
	unsigned char *mem = map_shared(size);
	struct probe *pr = map_shared(sizeof(*pr));
	struct exe_ipc_queue *q;
	char buf[16];
	size_t len;
	pid_t holder;
	int st;

	cr_assert_eq(exe_ipc_queue_init_at(&q, mem, size, &o), 0);
	cr_assert_eq(exe_ipc_queue_put(q, "m", 1, 0), 0);
	holder = spawn(lock_and_stop, mem);
	cr_assert_eq(waitpid(holder, &st, WUNTRACED), holder);
	cr_assert(WIFSTOPPED(st), "the holder stopped with the lock");

	/* Timeout 0: no wait at all, whoever holds the lock. */
	probe_in_child(pr, q, 0);
	cr_assert_eq(pr->put, -ETIMEDOUT);
	cr_assert_eq(pr->get, -ETIMEDOUT);
	cr_assert_lt(pr->put_ns, EXE_NS_PER_S, "a poll returned after %lld ns", (long long)pr->put_ns);
	cr_assert_eq(pr->count, 1, "count reads no lock");

	/* A bounded wait ends at its bound. */
	probe_in_child(pr, q, 50 * MS);
	cr_assert_eq(pr->put, -ETIMEDOUT);
	cr_assert_eq(pr->get, -ETIMEDOUT);
	cr_assert_geq(pr->put_ns, 50 * MS);
	cr_assert_geq(pr->get_ns, 50 * MS);

	/* close takes no lock either; the holder's death then frees it. */
	cr_assert_eq(exe_ipc_queue_close(q), 0);
	kill(holder, SIGKILL);
	cr_assert_eq(wait_exit(holder), -SIGKILL);
	cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), 0, "queued before close: delivered");
	cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), -EPIPE, "closed and drained");
	cr_assert_eq(exe_ipc_queue_put(q, "y", 1, 0), -EPIPE);
	exe_ipc_queue_destroy(q);
	munmap(pr, sizeof(*pr));
	munmap(mem, size);
}

static int corrupt_and_call(void *arg)
{
	struct exe_ipc_queue *q = arg;
	char buf[64];
	size_t len;
	int rc;

	alarm(10);
	for (int i = 0; i < 4; i++) {
		int64_t t = i < 2 ? 0 : MS;

		rc = exe_ipc_queue_put(q, "abc", 3, t);
		if (rc && rc != -EAGAIN && rc != -ETIMEDOUT && rc != -EPIPE && rc != -EBADMSG &&
		    rc != -ENOTRECOVERABLE)
			return 10;
		rc = exe_ipc_queue_get(q, buf, sizeof(buf), &len, t);
		if (rc && rc != -EAGAIN && rc != -ETIMEDOUT && rc != -EPIPE && rc != -EBADMSG &&
		    rc != -EMSGSIZE && rc != -ENOTRECOVERABLE)
			return 11;
		if (rc == 0 && len > sizeof(buf))
			return 12;
	}
	(void)ipc_count(q);
	(void)exe_ipc_queue_close(q);
	return 0;
}

/* Random bytes anywhere in the header, the lock and the state, 600 times:
 * every call returns (within its timeout) with one of its documented codes. */
Test(ipc_hostile, random_corruption_of_lock_and_state_never_hangs_or_crashes)
{
	struct exe_ipc_queue_opts o = {.max_msgs = 8, .max_bytes = 256};
	size_t size = exe_ipc_queue_mem_size(&o);
	unsigned char *mem = map_shared(size), *pristine = malloc(size);
	const size_t span = 256; /* header, mutex, state and the ring's start */
	struct exe_ipc_queue *q;
	uint64_t x = 0x9e3779b97f4a7c15ull;

	cr_assert_not_null(pristine);
	cr_assert_eq(exe_ipc_queue_init_at(&q, mem, size, &o), 0);
	cr_assert_eq(exe_ipc_queue_put(q, "hello", 5, 0), 0);
	cr_assert_eq(exe_ipc_queue_put(q, "world", 5, 0), 0);
	memcpy(pristine, mem, size);
	for (int trial = 0; trial < 600; trial++) {
		int n = 1 + trial % 8, rc;

		memcpy(mem, pristine, size);
		for (int i = 0; i < n; i++) {
			x = mix(x + (uint64_t)trial);
			/* Skip the 40-byte header most of the time: the checksum
			 * catches it at once, the lock and state are what hang. */
			mem[(trial % 4 ? QUEUE_LOCK_OFFSET : 0) + x % (span - QUEUE_LOCK_OFFSET)] =
			    (unsigned char)(x >> 32);
		}
		rc = wait_exit(spawn(corrupt_and_call, q));
		cr_assert_eq(rc, 0, "trial %d: %s", trial,
		             rc == -SIGALRM ? "a call hung"
		             : rc < 0       ? "a call crashed"
		                            : "an undocumented code");
	}
	memcpy(mem, pristine, size);
	exe_ipc_queue_destroy(q);
	free(pristine);
	munmap(mem, size);
}
