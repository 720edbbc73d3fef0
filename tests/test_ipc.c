/*
 * test_ipc.c - the robust process-shared mutex and the process-shared
 * message queue, exercised across fork()ed processes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <executor.h>

#include "ipc_helpers.h"

#define MS EXE_NS_PER_MS

TestSuite(ipc_mutex, .timeout = 30);
TestSuite(ipc_queue, .timeout = 60);

static void sleep_ns(int64_t ns)
{
	struct timespec ts = {ns / EXE_NS_PER_S, ns % EXE_NS_PER_S};

	nanosleep(&ts, NULL);
}

/* ---- mutex ---- */

struct ticket_state {
	long next_ticket;
	int in_update; /* set while the holder is half-way through an update */
};

Test(ipc_mutex, lock_unlock_and_misuse_codes)
{
	struct exe_ipc_mutex *m;

	cr_assert_eq(exe_ipc_mutex_create(&m, 0), 0);
	cr_assert_null(exe_ipc_mutex_data(m));
	cr_assert_eq(exe_ipc_mutex_lock(m, EXE_FOREVER), 0);
	cr_assert_eq(exe_ipc_mutex_lock(m, EXE_FOREVER), -EDEADLK);
	cr_assert_eq(exe_ipc_mutex_consistent(m), -EINVAL, "not in the owner-died state");
	cr_assert_eq(exe_ipc_mutex_unlock(m), 0);
	cr_assert_eq(exe_ipc_mutex_unlock(m), -EPERM);
	cr_assert_eq(exe_ipc_mutex_lock(m, 0), 0);
	cr_assert_eq(exe_ipc_mutex_unlock(m), 0);
	exe_ipc_mutex_destroy(m);
}

static void *try_lock_thread(void *arg)
{
	struct exe_ipc_mutex *m = arg;
	int64_t t0 = exe_now_ns();
	intptr_t ok = exe_ipc_mutex_lock(m, 0) == -ETIMEDOUT &&
	              exe_ipc_mutex_lock(m, 30 * MS) == -ETIMEDOUT && exe_now_ns() - t0 >= 30 * MS;

	return (void *)ok;
}

Test(ipc_mutex, lock_held_elsewhere_polls_eagain_and_times_out)
{
	struct exe_ipc_mutex *m;
	pthread_t t;
	void *ok;

	cr_assert_eq(exe_ipc_mutex_create(&m, 0), 0);
	cr_assert_eq(exe_ipc_mutex_lock(m, EXE_FOREVER), 0);
	pthread_create(&t, NULL, try_lock_thread, m);
	pthread_join(t, &ok);
	cr_assert(ok);
	cr_assert_eq(exe_ipc_mutex_unlock(m), 0);
	exe_ipc_mutex_destroy(m);
}

struct holder {
	struct exe_ipc_mutex *m;
	int pipe_w;
};

static int hold_and_hang(void *arg)
{
	struct holder *h = arg;
	struct ticket_state *st = exe_ipc_mutex_data(h->m);

	if (exe_ipc_mutex_lock(h->m, EXE_FOREVER) != 0)
		return 1;
	st->in_update = 1; /* and never finish it */
	st->next_ticket += 1000;
	if (write(h->pipe_w, "x", 1) != 1)
		return 2;
	for (;;)
		pause();
}

static pid_t start_holder(struct exe_ipc_mutex *m)
{
	struct holder h = {.m = m};
	int fds[2];
	char c;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	h.pipe_w = fds[1];
	pid = spawn(hold_and_hang, &h);
	close(fds[1]);
	cr_assert_eq(read(fds[0], &c, 1), 1, "the child took the lock");
	close(fds[0]);
	return pid;
}

Test(ipc_mutex, holder_killed_gives_eownerdead_and_the_lock_recovers)
{
	struct exe_ipc_mutex *m;
	struct ticket_state *st;
	pid_t pid;

	cr_assert_eq(exe_ipc_mutex_create(&m, sizeof(*st)), 0);
	st = exe_ipc_mutex_data(m);
	cr_assert_not_null(st);
	cr_assert_eq((uintptr_t)st % 64, 0);
	pid = start_holder(m);
	cr_assert_eq(exe_ipc_mutex_lock(m, 0), -ETIMEDOUT, "held by the child");
	kill(pid, SIGKILL);
	cr_assert_eq(wait_exit(pid), -SIGKILL);

	cr_assert_eq(exe_ipc_mutex_lock(m, 5000 * MS), -EOWNERDEAD);
	/* Repair: roll back the dead holder's half-done update. */
	cr_assert_eq(st->in_update, 1);
	st->next_ticket -= 1000;
	st->in_update = 0;
	cr_assert_eq(exe_ipc_mutex_consistent(m), 0);
	cr_assert_eq(exe_ipc_mutex_unlock(m), 0);

	cr_assert_eq(exe_ipc_mutex_lock(m, 0), 0, "usable again");
	cr_assert_eq(st->next_ticket, 0);
	cr_assert_eq(exe_ipc_mutex_unlock(m), 0);
	exe_ipc_mutex_destroy(m);
}

Test(ipc_mutex, unlock_without_consistent_makes_the_mutex_unrecoverable)
{
	struct exe_ipc_mutex *m;
	pid_t pid;

	cr_assert_eq(exe_ipc_mutex_create(&m, sizeof(struct ticket_state)), 0);
	pid = start_holder(m);
	kill(pid, SIGKILL);
	wait_exit(pid);
	cr_assert_eq(exe_ipc_mutex_lock(m, EXE_FOREVER), -EOWNERDEAD);
	cr_assert_eq(exe_ipc_mutex_unlock(m), 0);
	cr_assert_eq(exe_ipc_mutex_lock(m, EXE_FOREVER), -ENOTRECOVERABLE);
	cr_assert_eq(exe_ipc_mutex_lock(m, 0), -ENOTRECOVERABLE);
	exe_ipc_mutex_destroy(m);
}

#define TICKET_PROCS 4
#define TICKETS_EACH 5000

static int buy_tickets(void *arg)
{
	struct exe_ipc_mutex *m = arg;
	struct ticket_state *st = exe_ipc_mutex_data(m);

	for (int i = 0; i < TICKETS_EACH; i++) {
		if (exe_ipc_mutex_lock(m, EXE_FOREVER))
			return 1;
		long t = st->next_ticket;
		if (i % 64 == 0)
			sched_yield(); /* widen the window a lost update would need */
		st->next_ticket = t + 1;
		if (exe_ipc_mutex_unlock(m))
			return 2;
	}
	exe_ipc_mutex_destroy(m); /* in a child: drops the handle only */
	return 0;
}

Test(ipc_mutex, processes_buying_tickets_never_get_the_same_number)
{
	struct exe_ipc_mutex *m;
	pid_t pids[TICKET_PROCS];

	cr_assert_eq(exe_ipc_mutex_create(&m, sizeof(struct ticket_state)), 0);
	for (int i = 0; i < TICKET_PROCS; i++)
		pids[i] = spawn(buy_tickets, m);
	for (int i = 0; i < TICKET_PROCS; i++)
		cr_assert_eq(wait_exit(pids[i]), 0);
	cr_assert_eq(((struct ticket_state *)exe_ipc_mutex_data(m))->next_ticket,
	             (long)TICKET_PROCS * TICKETS_EACH);
	exe_ipc_mutex_destroy(m);
}

static int attach_and_count(void *arg)
{
	struct exe_ipc_mutex *m;
	long *counter;

	if (exe_ipc_mutex_attach_at(&m, arg, 4096))
		return 1;
	counter = exe_ipc_mutex_data(m);
	for (int i = 0; i < 1000; i++) {
		if (exe_ipc_mutex_lock(m, EXE_FOREVER))
			return 2;
		++*counter;
		exe_ipc_mutex_unlock(m);
	}
	exe_ipc_mutex_destroy(m);
	return 0;
}

Test(ipc_mutex, init_at_and_attach_at_share_caller_memory)
{
	void *mem = map_shared(4096);
	struct exe_ipc_mutex *m;
	pid_t a, b;

	cr_assert_eq(exe_ipc_mutex_init_at(&m, mem, 16, 8), -EINVAL, "too short");
	cr_assert_eq(exe_ipc_mutex_attach_at(&m, mem, 4096), -EBADMSG, "nothing built yet");
	cr_assert_eq(exe_ipc_mutex_init_at(&m, mem, 4096, sizeof(long)), 0);
	a = spawn(attach_and_count, mem);
	b = spawn(attach_and_count, mem);
	cr_assert_eq(wait_exit(a), 0);
	cr_assert_eq(wait_exit(b), 0);
	cr_assert_eq(*(long *)exe_ipc_mutex_data(m), 2000);
	exe_ipc_mutex_destroy(m);
	munmap(mem, 4096);
}

Test(ipc_mutex, corrupted_header_returns_ebadmsg)
{
	void *mem = map_shared(4096);
	struct exe_ipc_mutex *m;
	unsigned char saved[16];

	cr_assert_eq(exe_ipc_mutex_init_at(&m, mem, 4096, 64), 0);
	memcpy(saved, mem, sizeof(saved));
	memset(mem, 0x5a, 4);
	cr_assert_eq(exe_ipc_mutex_lock(m, 0), -EBADMSG);
	cr_assert_eq(exe_ipc_mutex_unlock(m), -EBADMSG);
	cr_assert_eq(exe_ipc_mutex_consistent(m), -EBADMSG);
	cr_assert_null(exe_ipc_mutex_data(m));
	memcpy(mem, saved, sizeof(saved));
	((unsigned char *)mem)[8] ^= 0x40; /* a geometry field: the checksum catches it */
	cr_assert_eq(exe_ipc_mutex_lock(m, 0), -EBADMSG);
	memcpy(mem, saved, sizeof(saved));
	cr_assert_eq(exe_ipc_mutex_lock(m, 0), 0, "intact again");
	cr_assert_eq(exe_ipc_mutex_unlock(m), 0);
	exe_ipc_mutex_destroy(m);
	munmap(mem, 4096);
}

Test(ipc_mutex, bad_arguments_return_einval)
{
	struct exe_ipc_mutex *m;
	char buf[64];

	cr_assert_eq(exe_ipc_mutex_create(NULL, 0), -EINVAL);
	cr_assert_eq(exe_ipc_mutex_create(&m, SIZE_MAX), -EINVAL);
	cr_assert_eq(exe_ipc_mutex_lock(NULL, 0), -EINVAL);
	cr_assert_eq(exe_ipc_mutex_unlock(NULL), -EINVAL);
	cr_assert_eq(exe_ipc_mutex_consistent(NULL), -EINVAL);
	cr_assert_eq(exe_ipc_mutex_init_at(&m, NULL, 4096, 0), -EINVAL);
	cr_assert_eq(exe_ipc_mutex_init_at(&m, buf + 1, 63, 0), -EINVAL);
	cr_assert_null(exe_ipc_mutex_data(NULL));
	exe_ipc_mutex_destroy(NULL);
}

/* ---- queue ---- */

static struct exe_ipc_queue *make_queue(size_t msgs, size_t bytes)
{
	struct exe_ipc_queue_opts o = {.max_msgs = msgs, .max_bytes = bytes};
	struct exe_ipc_queue *q;

	cr_assert_eq(exe_ipc_queue_create(&q, &o), 0);
	return q;
}

Test(ipc_queue, messages_come_out_in_order_as_copies)
{
	struct exe_ipc_queue *q = make_queue(0, 0);
	char msg[32], buf[32];
	size_t len;

	for (int i = 0; i < 10; i++) {
		int n = snprintf(msg, sizeof(msg), "message %d", i);
		cr_assert_eq(exe_ipc_queue_put(q, msg, (size_t)n + 1, 0), 0);
	}
	memset(msg, 0, sizeof(msg)); /* the queue holds copies */
	cr_assert_eq(ipc_count(q), 10);
	for (int i = 0; i < 10; i++) {
		char want[32];

		snprintf(want, sizeof(want), "message %d", i);
		cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), 0);
		cr_assert_eq(len, strlen(want) + 1);
		cr_assert_str_eq(buf, want);
	}
	cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), -ETIMEDOUT);
	exe_ipc_queue_destroy(q);
}

Test(ipc_queue, empty_messages_are_messages)
{
	struct exe_ipc_queue *q = make_queue(0, 0);
	size_t len = 99;

	cr_assert_eq(exe_ipc_queue_put(q, NULL, 0, 0), 0);
	cr_assert_eq(ipc_count(q), 1);
	cr_assert_eq(exe_ipc_queue_get(q, NULL, 0, &len, 0), 0);
	cr_assert_eq(len, 0);
	exe_ipc_queue_destroy(q);
}

Test(ipc_queue, message_over_the_byte_bound_returns_emsgsize)
{
	struct exe_ipc_queue *q = make_queue(4, 100);
	char big[101] = {0}, small[10];
	size_t len = 0;

	cr_assert_eq(exe_ipc_queue_put(q, big, 101, EXE_FOREVER), -EMSGSIZE);
	cr_assert_eq(exe_ipc_queue_put(q, big, 100, 0), 0, "exactly the bound fits");
	/* A buffer too small for the next message: it stays queued. */
	cr_assert_eq(exe_ipc_queue_get(q, small, sizeof(small), &len, 0), -EMSGSIZE);
	cr_assert_eq(len, 100);
	cr_assert_eq(ipc_count(q), 1);
	cr_assert_eq(exe_ipc_queue_get(q, big, sizeof(big), &len, 0), 0);
	cr_assert_eq(len, 100);
	exe_ipc_queue_destroy(q);
}

Test(ipc_queue, bounded_by_count_and_by_bytes)
{
	struct exe_ipc_queue *q = make_queue(3, 100);
	char buf[100] = {0};
	size_t len;
	int64_t t0;

	for (int i = 0; i < 3; i++)
		cr_assert_eq(exe_ipc_queue_put(q, buf, 1, 0), 0);
	cr_assert_eq(exe_ipc_queue_put(q, buf, 1, 0), -ETIMEDOUT, "count bound");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), 0);
	cr_assert_eq(exe_ipc_queue_put(q, buf, 60, 0), 0);
	cr_assert_eq(exe_ipc_queue_put(q, buf, 41, 0), -ETIMEDOUT, "byte bound");
	t0 = exe_now_ns();
	cr_assert_eq(exe_ipc_queue_put(q, buf, 41, 30 * MS), -ETIMEDOUT);
	cr_assert_geq(exe_now_ns() - t0, 30 * MS);
	cr_assert_eq(exe_ipc_queue_put(q, buf, 40, 0), 0, "what fits still goes in");
	cr_assert_eq(ipc_count(q), 2);
	exe_ipc_queue_destroy(q);
}

Test(ipc_queue, timed_get_on_empty_returns_etimedout)
{
	struct exe_ipc_queue *q = make_queue(0, 0);
	char buf[8];
	size_t len;
	int64_t t0 = exe_now_ns();

	cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 40 * MS), -ETIMEDOUT);
	cr_assert_geq(exe_now_ns() - t0, 40 * MS);
	exe_ipc_queue_destroy(q);
}

Test(ipc_queue, contents_survive_wrapping_around_the_ring)
{
	struct exe_ipc_queue *q = make_queue(5, 37);
	unsigned char msg[37], buf[37];
	size_t len;
	uint32_t put = 0, got = 0;

	/* Odd sizes against a small ring: headers and payloads wrap at every
	 * offset. Message k holds bytes k, k+1, ... of length k % 13. */
	while (got < 5000) {
		while (put < 5000) {
			size_t n = put % 13;
			for (size_t i = 0; i < n; i++)
				msg[i] = (unsigned char)(put + i);
			int rc = exe_ipc_queue_put(q, msg, n, 0);
			if (rc == -ETIMEDOUT)
				break;
			cr_assert_eq(rc, 0);
			put++;
		}
		cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), 0);
		cr_assert_eq(len, got % 13);
		for (size_t i = 0; i < len; i++)
			cr_assert_eq(buf[i], (unsigned char)(got + i), "message %u byte %zu", got, i);
		got++;
	}
	exe_ipc_queue_destroy(q);
}

Test(ipc_queue, close_drains_then_returns_epipe)
{
	struct exe_ipc_queue *q = make_queue(0, 0);
	char buf[8];
	size_t len;

	cr_assert_eq(exe_ipc_queue_put(q, "a", 1, 0), 0);
	cr_assert_eq(exe_ipc_queue_close(q), 0);
	cr_assert_eq(exe_ipc_queue_close(q), 0, "idempotent");
	cr_assert_eq(exe_ipc_queue_put(q, "b", 1, 0), -EPIPE);
	cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, EXE_FOREVER), 0);
	cr_assert_eq(buf[0], 'a');
	cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, EXE_FOREVER), -EPIPE);
	exe_ipc_queue_destroy(q);
}

static int blocked_get_expects_epipe(void *arg)
{
	char buf[8];
	size_t len;

	return exe_ipc_queue_get(arg, buf, sizeof(buf), &len, EXE_FOREVER) == -EPIPE ? 0 : 1;
}

static int blocked_put_expects_epipe(void *arg)
{
	return exe_ipc_queue_put(arg, "x", 1, EXE_FOREVER) == -EPIPE ? 0 : 1;
}

Test(ipc_queue, close_wakes_getters_and_putters_in_other_processes)
{
	struct exe_ipc_queue *empty = make_queue(1, 16), *full = make_queue(1, 16);
	pid_t pids[4];

	cr_assert_eq(exe_ipc_queue_put(full, "f", 1, 0), 0);
	pids[0] = spawn(blocked_get_expects_epipe, empty);
	pids[1] = spawn(blocked_get_expects_epipe, empty);
	pids[2] = spawn(blocked_put_expects_epipe, full);
	pids[3] = spawn(blocked_put_expects_epipe, full);
	sleep_ns(50 * MS);
	cr_assert_eq(exe_ipc_queue_close(empty), 0);
	cr_assert_eq(exe_ipc_queue_close(full), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(wait_exit(pids[i]), 0, "child %d", i);
	exe_ipc_queue_destroy(empty);
	exe_ipc_queue_destroy(full);
}

#define NMSG 100000

struct result {
	uint64_t count, checksum, errors;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

/* Message i: its 8-byte index then (i % 57) bytes derived from it. */
static size_t make_msg(uint64_t i, unsigned char *msg)
{
	size_t n = 8 + i % 57;

	memcpy(msg, &i, 8);
	for (size_t k = 8; k < n; k++)
		msg[k] = (unsigned char)mix(i + k);
	return n;
}

static int producer(void *arg)
{
	struct exe_ipc_queue *q = arg;
	unsigned char msg[64];

	for (uint64_t i = 0; i < NMSG; i++)
		if (exe_ipc_queue_put(q, msg, make_msg(i, msg), EXE_FOREVER))
			return 1;
	return exe_ipc_queue_close(q) ? 2 : 0;
}

struct consumer_arg {
	struct exe_ipc_queue *q;
	struct result *res;
};

static int consumer(void *arg)
{
	struct consumer_arg *c = arg;
	unsigned char buf[64], want[64];
	size_t len;
	int rc;

	while ((rc = exe_ipc_queue_get(c->q, buf, sizeof(buf), &len, EXE_FOREVER)) == 0) {
		uint64_t i;

		memcpy(&i, buf, 8);
		if (i != c->res->count || len != make_msg(i, want) || memcmp(buf, want, len))
			c->res->errors++;
		c->res->checksum += mix(i) ^ len;
		c->res->count++;
	}
	return rc == -EPIPE ? 0 : 3;
}

Test(ipc_queue, producer_and_consumer_processes_move_100000_messages)
{
	struct exe_ipc_queue *q = make_queue(128, 4096);
	struct result *res = map_shared(sizeof(*res));
	struct consumer_arg c = {.q = q, .res = res};
	uint64_t want = 0;
	pid_t p, k;

	k = spawn(consumer, &c);
	p = spawn(producer, q);
	cr_assert_eq(wait_exit(p), 0);
	cr_assert_eq(wait_exit(k), 0);
	for (uint64_t i = 0; i < NMSG; i++)
		want += mix(i) ^ (8 + i % 57);
	cr_assert_eq(res->count, NMSG);
	cr_assert_eq(res->errors, 0);
	cr_assert_eq(res->checksum, want);
	cr_assert_eq(ipc_count(q), 0);
	munmap(res, sizeof(*res));
	exe_ipc_queue_destroy(q);
}

static int put_get_forever(void *arg)
{
	struct exe_ipc_queue *q = arg;
	char buf[64] = {0};
	size_t len;

	while (exe_ipc_queue_put(q, buf, 33, EXE_FOREVER) == 0 &&
	       exe_ipc_queue_get(q, buf, sizeof(buf), &len, EXE_FOREVER) == 0)
		;
	return 1; /* never: only its own death can stop it */
}

Test(ipc_queue, a_process_killed_mid_operation_leaves_a_usable_queue)
{
	/* Kill a busy child at arbitrary points, many times: the queue must
	 * hold 0 or 1 message (the child's put/get pairs) and keep working. */
	for (int round = 0; round < 40; round++) {
		struct exe_ipc_queue *q = make_queue(4, 256);
		char buf[64];
		size_t len;
		pid_t pid = spawn(put_get_forever, q);
		long n;

		sleep_ns((1 + round % 5) * MS);
		kill(pid, SIGKILL);
		cr_assert_eq(wait_exit(pid), -SIGKILL);
		n = ipc_count(q);
		cr_assert(n == 0 || n == 1, "round %d: count %ld", round, n);
		while (n-- > 0) {
			cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), 0);
			cr_assert_eq(len, 33);
		}
		cr_assert_eq(exe_ipc_queue_put(q, "x", 1, 0), 0);
		cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), 0);
		cr_assert_eq(ipc_count(q), 0);
		exe_ipc_queue_destroy(q);
	}
}

static int get_then_die(void *arg)
{
	char buf[8];
	size_t len;

	exe_ipc_queue_get(arg, buf, sizeof(buf), &len, EXE_FOREVER);
	return 0;
}

static int get_expects_m(void *arg)
{
	char buf[8];
	size_t len;

	return exe_ipc_queue_get(arg, buf, sizeof(buf), &len, EXE_FOREVER) == 0 && len == 1 && buf[0] == 'm'
	           ? 0
	           : 1;
}

Test(ipc_queue, a_waiter_killed_while_sleeping_swallows_no_wakeup)
{
	struct exe_ipc_queue *q = make_queue(0, 0);
	pid_t dead = spawn(get_then_die, q), live;

	sleep_ns(30 * MS);
	kill(dead, SIGKILL);
	cr_assert_eq(wait_exit(dead), -SIGKILL);
	live = spawn(get_expects_m, q);
	sleep_ns(30 * MS);
	cr_assert_eq(exe_ipc_queue_put(q, "m", 1, 0), 0);
	cr_assert_eq(wait_exit(live), 0, "the live getter got the message");
	exe_ipc_queue_destroy(q);
}

Test(ipc_queue, corrupted_segment_returns_ebadmsg_instead_of_crashing)
{
	struct exe_ipc_queue_opts o = {.max_msgs = 8, .max_bytes = 256};
	size_t size = exe_ipc_queue_mem_size(&o);
	unsigned char *mem = map_shared(size), saved[64], *p;
	struct exe_ipc_queue *q, *other;
	char buf[64];
	size_t len;
	uint32_t huge = 0xfffffff0u;

	cr_assert_gt(size, 0);
	cr_assert_eq(exe_ipc_queue_attach_at(&other, mem, size), -EBADMSG, "zeroed memory is no queue");
	cr_assert_eq(exe_ipc_queue_init_at(&q, mem, size - 1, &o), -EINVAL);
	cr_assert_eq(exe_ipc_queue_init_at(&q, mem, size, &o), 0);
	cr_assert_eq(exe_ipc_queue_attach_at(&other, mem, size), 0);
	cr_assert_eq(exe_ipc_queue_put(other, "ZYXWVUTS", 8, 0), 0);
	memcpy(saved, mem, sizeof(saved));

	/* The magic. */
	memset(mem, 0xee, 4);
	cr_assert_eq(exe_ipc_queue_put(q, "a", 1, 0), -EBADMSG);
	cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), -EBADMSG);
	cr_assert_eq(exe_ipc_queue_close(q), -EBADMSG);
	cr_assert_eq(ipc_count(q), -EBADMSG);
	memcpy(mem, saved, sizeof(saved));

	/* A geometry field (max_msgs/max_bytes): the checksum. */
	mem[17] ^= 0x10;
	cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), -EBADMSG);
	memcpy(mem, saved, sizeof(saved));

	/* The length word of the queued message. */
	p = memmem(mem, size, "ZYXWVUTS", 8);
	cr_assert_not_null(p);
	memcpy(p - 4, &huge, 4);
	cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), -EBADMSG);
	huge = 8;
	memcpy(p - 4, &huge, 4);
	cr_assert_eq(exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0), 0, "intact again");
	cr_assert_eq(memcmp(buf, "ZYXWVUTS", 8), 0);

	/* Garbage in the header (40 bytes) and in the state after the mutex:
	 * nothing crashes. (A scribbled mutex word can only make lock wait;
	 * that is not detectable, so the mutex itself is left alone.) */
	for (unsigned seed = 1; seed < 200; seed++) {
		const size_t state = 40 + sizeof(pthread_mutex_t);
		unsigned char copy[256];

		memcpy(copy, mem, sizeof(copy));
		for (size_t i = 0; i < 16; i++) {
			size_t at = (seed * 7919 + i * 104729) % 88;

			mem[at < 40 ? at : state + at - 40] = (unsigned char)(seed * 31 + i);
		}
		(void)exe_ipc_queue_put(q, "a", 1, 0);
		(void)exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0);
		(void)ipc_count(q);
		memcpy(mem, copy, sizeof(copy));
	}
	exe_ipc_queue_destroy(other);
	exe_ipc_queue_destroy(q);
	munmap(mem, size);
}

Test(ipc_queue, bad_arguments_return_einval)
{
	struct exe_ipc_queue_opts huge = {.max_bytes = (size_t)1 << 40};
	struct exe_ipc_queue *q;
	size_t len;

	cr_assert_eq(exe_ipc_queue_create(NULL, NULL), -EINVAL);
	cr_assert_eq(exe_ipc_queue_create(&q, &huge), -EINVAL);
	cr_assert_eq(exe_ipc_queue_mem_size(&huge), 0);
	cr_assert_eq(exe_ipc_queue_put(NULL, "a", 1, 0), -EINVAL);
	cr_assert_eq(exe_ipc_queue_get(NULL, NULL, 0, &len, 0), -EINVAL);
	cr_assert_eq(exe_ipc_queue_close(NULL), -EINVAL);
	cr_assert_eq(ipc_count(NULL), -EINVAL);
	q = make_queue(0, 0);
	cr_assert_eq(exe_ipc_queue_put(q, NULL, 1, 0), -EINVAL);
	cr_assert_eq(exe_ipc_queue_get(q, NULL, 0, NULL, 0), -EINVAL);
	exe_ipc_queue_destroy(q);
	exe_ipc_queue_destroy(NULL);
}

/* ---- event ---- */

TestSuite(ipc_event, .timeout = 30);

Test(ipc_event, starts_clear_and_set_clear_are_seen)
{
	struct exe_ipc_event *e;

	cr_assert_eq(exe_ipc_event_create(&e), 0);
	cr_assert_not(exe_ipc_event_is_set(e));
	cr_assert_eq(exe_ipc_event_wait(e, 0), -ETIMEDOUT);
	cr_assert_eq(exe_ipc_event_wait(e, 2 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_eq(exe_ipc_event_set(e), 0);
	cr_assert_eq(exe_ipc_event_set(e), 0, "set twice is fine");
	cr_assert(exe_ipc_event_is_set(e));
	cr_assert_eq(exe_ipc_event_wait(e, 0), 0);
	cr_assert_eq(exe_ipc_event_clear(e), 0);
	cr_assert_not(exe_ipc_event_is_set(e));
	exe_ipc_event_destroy(e);
}

static int wait_event_forever(void *arg)
{
	return exe_ipc_event_wait(arg, EXE_FOREVER) == 0 ? 7 : 1;
}

Test(ipc_event, set_wakes_waiters_in_other_processes)
{
	struct exe_ipc_event *e;
	pid_t kids[3];

	cr_assert_eq(exe_ipc_event_create(&e), 0);
	for (int i = 0; i < 3; i++)
		kids[i] = spawn(wait_event_forever, e);
	sleep_ns(20 * EXE_NS_PER_MS);
	cr_assert_eq(exe_ipc_event_set(e), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(wait_exit(kids[i]), 7);
	exe_ipc_event_destroy(e);
}

Test(ipc_event, a_waiter_killed_while_waiting_does_not_wedge_the_event)
{
	struct exe_ipc_event *e;
	pid_t victim, survivor;

	cr_assert_eq(exe_ipc_event_create(&e), 0);
	victim = spawn(wait_event_forever, e);
	survivor = spawn(wait_event_forever, e);
	sleep_ns(20 * EXE_NS_PER_MS);
	kill(victim, SIGKILL);
	cr_assert_eq(wait_exit(victim), -SIGKILL);
	cr_assert_eq(exe_ipc_event_set(e), 0);
	cr_assert_eq(wait_exit(survivor), 7, "the survivor was woken");
	/* And the event still works for a new round. */
	cr_assert_eq(exe_ipc_event_clear(e), 0);
	survivor = spawn(wait_event_forever, e);
	sleep_ns(10 * EXE_NS_PER_MS);
	cr_assert_eq(exe_ipc_event_set(e), 0);
	cr_assert_eq(wait_exit(survivor), 7);
	exe_ipc_event_destroy(e);
}

static int attach_and_set(void *arg)
{
	struct exe_ipc_event *e;

	if (exe_ipc_event_attach_at(&e, arg, exe_ipc_event_mem_size()))
		return 1;
	exe_ipc_event_set(e);
	exe_ipc_event_destroy(e);
	return 0;
}

Test(ipc_event, init_at_and_attach_at_share_caller_memory)
{
	size_t len = exe_ipc_event_mem_size();
	void *mem = map_shared(len);
	struct exe_ipc_event *e;
	pid_t kid;

	cr_assert_eq(exe_ipc_event_init_at(&e, mem, len), 0);
	kid = spawn(attach_and_set, mem);
	cr_assert_eq(exe_ipc_event_wait(e, 5 * EXE_NS_PER_S), 0);
	cr_assert_eq(wait_exit(kid), 0);
	exe_ipc_event_destroy(e);
	munmap(mem, len);
}

Test(ipc_event, corrupted_or_foreign_memory_returns_ebadmsg_and_bad_input_einval)
{
	size_t len = exe_ipc_event_mem_size();
	unsigned char *mem = map_shared(len);
	struct exe_ipc_event *e, *other;

	cr_assert_eq(exe_ipc_event_attach_at(&other, mem, len), -EBADMSG, "zeroed memory is not an event");
	cr_assert_eq(exe_ipc_event_init_at(&e, mem, len), 0);
	cr_assert_eq(exe_ipc_event_init_at(&other, mem, len - 1), -EINVAL);
	cr_assert_eq(exe_ipc_event_init_at(&other, mem + 1, len), -EINVAL);
	memset(mem + 8, 0x5a, len - 8); /* checksum and state: garbage */
	cr_assert_eq(exe_ipc_event_set(e), -EBADMSG);
	cr_assert_eq(exe_ipc_event_wait(e, EXE_FOREVER), -EBADMSG, "never sleeps on garbage");
	memset(mem, 0xff, 8);
	cr_assert_not(exe_ipc_event_is_set(e), "a corrupted event reads as clear");
	cr_assert_eq(exe_ipc_event_set(NULL), -EINVAL);
	cr_assert_eq(exe_ipc_event_create(NULL), -EINVAL);
	exe_ipc_event_destroy(e);
	exe_ipc_event_destroy(NULL);
	munmap(mem, len);
}
