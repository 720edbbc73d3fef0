/*
 * test_fiber.c - fibers: results through futures, every wait kind switches
 * (two fibers interleave on one thread), cancel, 100 000 fibers, awaiting
 * pool tasks, deep recursion and the guard page, the watchdog, several io
 * contexts, bad input.
 *
 * Fibers never call cr_assert (a failed assert would jump off the fiber's
 * stack): they record what they saw and the test thread checks it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <executor.h>

#define WAIT (10 * EXE_NS_PER_S)

TestSuite(fiber, .timeout = 60);

static struct exe_io *make_io(void)
{
	struct exe_io *io = NULL;

	cr_assert_eq(exe_io_create(&io, NULL), 0);
	return io;
}

static void join(struct exe_future *f)
{
	cr_assert_eq(exe_future_wait(f, WAIT), 0, "fiber did not finish");
}

/* ---- results and errors ---- */

static int add_one(void *arg, void **result)
{
	*result = (void *)((intptr_t)arg + 1);
	return 0;
}

static int fails(void *arg, void **result)
{
	(void)arg, (void)result;
	return exe_task_set_error(-ENOENT, "no such %s", "thing");
}

struct self_seen {
	struct exe_future *self, *task;
	struct exe_io *io;
	char name[32];
};

static int look_at_self(void *arg, void **result)
{
	struct self_seen *s = arg;

	(void)result;
	s->self = exe_fiber_self();
	s->task = exe_task_future();
	s->io = exe_fiber_io();
	snprintf(s->name, sizeof(s->name), "%s", exe_fiber_name());
	return 0;
}

Test(fiber, result_and_error_through_the_future)
{
	struct exe_io *io = make_io();
	struct exe_future *ok, *bad, *me;
	struct self_seen seen = {0};
	void *v = NULL;

	cr_assert_eq(exe_fiber_spawn(io, add_one, (void *)41, NULL, &ok), 0);
	cr_assert_eq(exe_fiber_spawn(io, fails, NULL, NULL, &bad), 0);
	cr_assert_eq(exe_fiber_spawn(io, look_at_self, &seen, &(struct exe_fiber_opts){.name = "me"}, &me),
	             0);
	cr_assert_eq(exe_future_result(ok, &v, WAIT), 0);
	cr_assert_eq((intptr_t)v, 42);
	cr_assert_eq(exe_future_result(bad, NULL, WAIT), -ENOENT);
	cr_assert_str_eq(exe_future_error(bad), "no such thing");
	join(me);
	cr_assert_eq(seen.self, me);
	cr_assert_eq(seen.task, me);
	cr_assert_eq(seen.io, io);
	cr_assert_str_eq(seen.name, "me");
	cr_assert_null(exe_fiber_self(), "not in a fiber here");
	exe_future_unref(ok);
	exe_future_unref(bad);
	exe_future_unref(me);
	/* Fire and forget: no future asked for. */
	cr_assert_eq(exe_fiber_spawn(io, add_one, NULL, NULL, NULL), 0);
	exe_io_destroy(io);
}

/* ---- every wait kind switches ----
 *
 * Fiber A starts first and waits; fiber B can only run if A's wait
 * switched; B then provides what A waits for. If a wait blocked the thread
 * instead, A's bounded wait would time out before B ever ran. */

enum wait_kind {
	W_FUTURE_WAIT,
	W_FUTURE_RESULT,
	W_IO_RES,
	W_WAIT_ALL,
	W_AS_COMPLETED,
	W_QUEUE_GET,
	W_QUEUE_PUT_FULL,
	W_QUEUE_JOIN,
	W_IO_SLEEP,
	W_FIBER_SLEEP,
	W_FIBER_RECV,
	W_YIELD,
	W_FIBER_FUTURE,
	W_KINDS
};

struct interleave {
	enum wait_kind kind;
	struct exe_io *io;
	struct exe_future *promise, *a_fut, *b_fut;
	struct exe_queue *q;
	int sv[2];
	char log[8];
	int n;
	int64_t a_rc;
	char buf[8];
};

#define A_WAIT (2 * EXE_NS_PER_S)

static int fiber_a(void *arg, void **result)
{
	struct interleave *t = arg;
	struct exe_future *f = NULL;
	void *item = NULL;

	(void)result;
	t->log[t->n++] = 'a';
	switch (t->kind) {
	case W_FUTURE_WAIT: t->a_rc = exe_future_wait(t->promise, A_WAIT); break;
	case W_FUTURE_RESULT: t->a_rc = exe_future_result(t->promise, &item, A_WAIT); break;
	case W_IO_RES:
		exe_io_recv(t->io, t->sv[0], t->buf, 1, 0, &f);
		t->a_rc = exe_io_res(f, A_WAIT);
		break;
	case W_WAIT_ALL: t->a_rc = exe_wait(&t->promise, 1, EXE_WAIT_ALL, A_WAIT); break;
	case W_AS_COMPLETED: {
		struct exe_as_completed *it;

		exe_as_completed_create(&it, &t->promise, 1);
		t->a_rc = exe_as_completed_next(it, &f, A_WAIT);
		t->a_rc = t->a_rc == 0 && f == t->promise ? 0 : t->a_rc - 100;
		exe_as_completed_destroy(it);
		f = NULL;
		break;
	}
	case W_QUEUE_GET: t->a_rc = exe_queue_get(t->q, &item, A_WAIT); break;
	case W_QUEUE_PUT_FULL: t->a_rc = exe_queue_put(t->q, (void *)2, A_WAIT); break;
	case W_QUEUE_JOIN: t->a_rc = exe_queue_join(t->q, A_WAIT); break;
	case W_IO_SLEEP:
		exe_io_sleep(t->io, 50 * EXE_NS_PER_MS, &f);
		t->a_rc = exe_future_wait(f, A_WAIT);
		break;
	case W_FIBER_SLEEP: t->a_rc = exe_fiber_sleep(50 * EXE_NS_PER_MS); break;
	case W_FIBER_RECV: t->a_rc = exe_fiber_recv(t->sv[0], t->buf, 1, 0); break;
	case W_YIELD: t->a_rc = exe_fiber_yield(); break;
	case W_FIBER_FUTURE: t->a_rc = exe_future_wait(t->b_fut, A_WAIT); break;
	default: break;
	}
	exe_future_unref(f);
	t->log[t->n++] = 'A';
	return 0;
}

static int fiber_b(void *arg, void **result)
{
	struct interleave *t = arg;
	void *item;

	(void)result;
	t->log[t->n++] = 'b';
	switch (t->kind) {
	case W_FUTURE_WAIT:
	case W_FUTURE_RESULT:
	case W_WAIT_ALL:
	case W_AS_COMPLETED: exe_future_set_result(t->promise, NULL, NULL); break;
	case W_IO_RES:
	case W_FIBER_RECV:
		if (write(t->sv[1], "x", 1) != 1)
			t->log[t->n++] = '!';
		break;
	case W_QUEUE_GET: exe_queue_put(t->q, (void *)1, 0); break;
	case W_QUEUE_PUT_FULL: exe_queue_get(t->q, &item, 0); break;
	case W_QUEUE_JOIN:
		exe_queue_get(t->q, &item, 0);
		exe_queue_task_done(t->q);
		break;
	default: break;
	}
	t->log[t->n++] = 'B';
	return 0;
}

static int starter(void *arg, void **result)
{
	struct interleave *t = arg;
	int rc;

	(void)result;
	rc = exe_fiber_spawn(t->io, fiber_a, t, NULL, &t->a_fut);
	if (rc == 0)
		rc = exe_fiber_spawn(t->io, fiber_b, t, NULL, &t->b_fut);
	return rc;
}

static void interleave(enum wait_kind kind, const char *want, int64_t want_rc)
{
	struct interleave t = {.kind = kind};
	struct exe_future *a, *b, *s;

	t.io = make_io();
	cr_assert_eq(exe_future_create(&t.promise), 0);
	cr_assert_eq(exe_queue_create(&t.q, &(struct exe_queue_opts){.capacity = 1}), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, t.sv), 0);
	if (kind == W_QUEUE_PUT_FULL || kind == W_QUEUE_JOIN)
		cr_assert_eq(exe_queue_put(t.q, (void *)1, 0), 0);
	/* Spawned from a fiber on the hub, so B's future is known before A
	 * can run (A waits on it in W_FIBER_FUTURE). */
	cr_assert_eq(exe_fiber_spawn(t.io, starter, &t, NULL, &s), 0);
	cr_assert_eq(exe_future_result(s, NULL, WAIT), 0);
	exe_future_unref(s);
	a = t.a_fut;
	b = t.b_fut;
	join(a);
	join(b);
	t.log[t.n] = '\0';
	cr_assert_eq(t.a_rc, want_rc, "kind %d: A's wait returned %lld", kind, (long long)t.a_rc);
	cr_assert_str_eq(t.log, want, "kind %d: order %s", kind, t.log);
	exe_future_unref(a);
	exe_future_unref(b);
	exe_future_unref(t.promise);
	exe_queue_destroy(t.q);
	close(t.sv[0]);
	close(t.sv[1]);
	exe_io_destroy(t.io);
}

/* A waits, B runs to completion, then A resumes with what B provided
 * (exe_wait: one future finished; recv: one byte). */
Test(fiber, future_wait_switches)
{
	interleave(W_FUTURE_WAIT, "abBA", 0);
}
Test(fiber, future_result_switches)
{
	interleave(W_FUTURE_RESULT, "abBA", 0);
}
Test(fiber, io_res_switches)
{
	interleave(W_IO_RES, "abBA", 1);
}
Test(fiber, exe_wait_switches)
{
	interleave(W_WAIT_ALL, "abBA", 1);
}
Test(fiber, as_completed_switches)
{
	interleave(W_AS_COMPLETED, "abBA", 0);
}
Test(fiber, queue_get_switches)
{
	interleave(W_QUEUE_GET, "abBA", 0);
}
Test(fiber, queue_put_switches)
{
	interleave(W_QUEUE_PUT_FULL, "abBA", 0);
}
Test(fiber, queue_join_switches)
{
	interleave(W_QUEUE_JOIN, "abBA", 0);
}
Test(fiber, io_sleep_switches)
{
	interleave(W_IO_SLEEP, "abBA", 0);
}
Test(fiber, fiber_sleep_switches)
{
	interleave(W_FIBER_SLEEP, "abBA", 0);
}
Test(fiber, fiber_recv_switches)
{
	interleave(W_FIBER_RECV, "abBA", 1);
}
Test(fiber, yield_switches)
{
	interleave(W_YIELD, "abBA", 0);
}
Test(fiber, waiting_on_a_fiber_switches)
{
	interleave(W_FIBER_FUTURE, "abBA", 0);
}

/* ---- the seed's spawn/join: two sleepers take the longer time ---- */

static int sleeper(void *arg, void **result)
{
	(void)result;
	return exe_fiber_sleep((int64_t)(intptr_t)arg * EXE_NS_PER_MS);
}

Test(fiber, two_sleeps_overlap)
{
	struct exe_io *io = make_io();
	struct exe_future *f[2];
	int64_t t0 = exe_now_ns(), took;

	cr_assert_eq(exe_fiber_spawn(io, sleeper, (void *)200, NULL, &f[0]), 0);
	cr_assert_eq(exe_fiber_spawn(io, sleeper, (void *)100, NULL, &f[1]), 0);
	cr_assert_eq(exe_wait(f, 2, EXE_WAIT_ALL, WAIT), 2);
	took = exe_now_ns() - t0;
	cr_assert_geq(took, 200 * EXE_NS_PER_MS);
	cr_assert_lt(took, 290 * EXE_NS_PER_MS, "took %lld ms: the sleeps did not overlap",
	             (long long)(took / EXE_NS_PER_MS));
	cr_assert_eq(exe_future_result(f[0], NULL, 0), 0);
	exe_future_unref(f[0]);
	exe_future_unref(f[1]);
	exe_io_destroy(io);
}

/* ---- cancel ---- */

struct cancel_probe {
	_Atomic int started;
	int first, second;
	int64_t recv_rc;
	int sv[2];
	char buf[16];
};

static int sleeps_long(void *arg, void **result)
{
	struct cancel_probe *p = arg;

	(void)result;
	atomic_store(&p->started, 1);
	p->first = exe_fiber_sleep(30 * EXE_NS_PER_S);
	p->second = exe_fiber_yield(); /* the next wait too */
	return p->first;
}

Test(fiber, cancel_wakes_the_current_wait_and_the_next)
{
	struct exe_io *io = make_io();
	struct cancel_probe p = {0};
	struct exe_future *f;
	int64_t t0;

	cr_assert_eq(exe_fiber_spawn(io, sleeps_long, &p, NULL, &f), 0);
	while (!atomic_load(&p.started))
		exe_fiber_sleep(EXE_NS_PER_MS);
	exe_fiber_sleep(10 * EXE_NS_PER_MS); /* let it park */
	t0 = exe_now_ns();
	cr_assert_eq(exe_future_cancel(f), -EBUSY);
	cr_assert_eq(exe_future_result(f, NULL, WAIT), -ECANCELED);
	cr_assert_lt(exe_now_ns() - t0, EXE_NS_PER_S);
	cr_assert_eq(p.first, -ECANCELED);
	cr_assert_eq(p.second, -ECANCELED);
	exe_future_unref(f);
	exe_io_destroy(io);
}

static int never_runs(void *arg, void **result)
{
	(void)result;
	atomic_store((_Atomic int *)arg, 1);
	return 0;
}

static int spawn_then_cancel(void *arg, void **result)
{
	struct exe_future *g;
	int rc;

	(void)result;
	/* On the hub: the new fiber cannot start before this one waits. */
	exe_fiber_spawn(exe_fiber_io(), never_runs, arg, NULL, &g);
	rc = exe_future_cancel(g);
	exe_future_wait(g, EXE_FOREVER);
	rc = rc == 0 && exe_future_state(g) == EXE_FUTURE_CANCELLED ? 0 : -EPROTO;
	exe_future_unref(g);
	return rc;
}

Test(fiber, cancel_before_start_means_it_never_runs)
{
	struct exe_io *io = make_io();
	_Atomic int ran = 0;
	struct exe_future *f;

	cr_assert_eq(exe_fiber_spawn(io, spawn_then_cancel, (void *)&ran, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, NULL, WAIT), 0);
	exe_fiber_sleep(20 * EXE_NS_PER_MS);
	cr_assert_eq(atomic_load(&ran), 0);
	exe_future_unref(f);
	exe_io_destroy(io);
}

static int receives(void *arg, void **result)
{
	struct cancel_probe *p = arg;

	(void)result;
	atomic_store(&p->started, 1);
	p->recv_rc = exe_fiber_recv(p->sv[0], p->buf, sizeof(p->buf), 0);
	return (int)p->recv_rc;
}

struct canceller {
	struct exe_future *target;
	int rc;
};

static int cancels(void *arg, void **result)
{
	struct canceller *c = arg;

	(void)result;
	exe_fiber_sleep(20 * EXE_NS_PER_MS);
	c->rc = exe_future_cancel(c->target);
	return 0;
}

Test(fiber, cancel_from_another_fiber_stops_a_recv)
{
	struct exe_io *io = make_io();
	struct cancel_probe p = {0};
	struct canceller c = {0};
	struct exe_future *f, *g;
	char byte = 'z';

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.sv), 0);
	cr_assert_eq(exe_fiber_spawn(io, receives, &p, NULL, &f), 0);
	c.target = f;
	cr_assert_eq(exe_fiber_spawn(io, cancels, &c, NULL, &g), 0);
	cr_assert_eq(exe_future_result(f, NULL, WAIT), -ECANCELED);
	join(g);
	cr_assert_eq(c.rc, -EBUSY);
	cr_assert_eq(p.recv_rc, -ECANCELED);
	/* The recv was stopped: a byte sent now stays in the socket. */
	cr_assert_eq(write(p.sv[1], &byte, 1), 1);
	cr_assert_eq(recv(p.sv[0], &byte, 1, MSG_DONTWAIT), 1);
	cr_assert_eq(byte, 'z');
	exe_future_unref(f);
	exe_future_unref(g);
	close(p.sv[0]);
	close(p.sv[1]);
	exe_io_destroy(io);
}

static int queue_getter(void *arg, void **result)
{
	void *item;

	(void)result;
	return exe_queue_get(arg, &item, EXE_FOREVER);
}

static int waits_on_promise(void *arg, void **result)
{
	(void)result;
	return exe_future_wait(arg, EXE_FOREVER);
}

Test(fiber, destroy_cancels_parked_fibers)
{
	struct exe_io *io = make_io();
	struct exe_queue *q;
	struct exe_future *p, *f[3];

	cr_assert_eq(exe_queue_create(&q, NULL), 0);
	cr_assert_eq(exe_future_create(&p), 0);
	cr_assert_eq(exe_fiber_spawn(io, queue_getter, q, NULL, &f[0]), 0);
	cr_assert_eq(exe_fiber_spawn(io, waits_on_promise, p, NULL, &f[1]), 0);
	cr_assert_eq(exe_fiber_spawn(io, sleeper, (void *)30000, NULL, &f[2]), 0);
	exe_fiber_sleep(20 * EXE_NS_PER_MS);
	exe_io_destroy(io);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(exe_future_result(f[i], NULL, 0), -ECANCELED, "fiber %d", i);
		exe_future_unref(f[i]);
	}
	exe_future_unref(p);
	exe_queue_destroy(q);
}

/* ---- many fibers ---- */

#define MANY 100000
#define WAVE 1000

static int yields_once(void *arg, void **result)
{
	exe_fiber_yield();
	*result = arg;
	return 0;
}

struct many {
	long sum;
	int failures;
};

static int spawner(void *arg, void **result)
{
	struct many *m = arg;
	struct exe_future **fs = malloc(WAVE * sizeof(*fs));

	(void)result;
	if (!fs)
		return -ENOMEM;
	/* In waves, so the stacks alive at once stay well under the
	 * mappings limit (fiber.h). */
	for (long base = 0; base < MANY; base += WAVE) {
		for (long i = 0; i < WAVE; i++)
			if (exe_fiber_spawn(exe_fiber_io(), yields_once, (void *)(base + i), NULL, &fs[i]))
				m->failures++;
		if (exe_wait(fs, WAVE, EXE_WAIT_ALL, EXE_FOREVER) != WAVE)
			m->failures++;
		for (long i = 0; i < WAVE; i++) {
			void *v;

			if (exe_future_result(fs[i], &v, 0) == 0)
				m->sum += (long)(intptr_t)v;
			else
				m->failures++;
			exe_future_unref(fs[i]);
		}
	}
	free(fs);
	return 0;
}

Test(fiber, hundred_thousand_fibers)
{
	struct exe_io *io = make_io();
	struct many m = {0};
	struct exe_future *f;

	cr_assert_eq(exe_fiber_spawn(io, spawner, &m, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, NULL, 100 * EXE_NS_PER_S), 0);
	cr_assert_eq(m.failures, 0);
	cr_assert_eq(m.sum, (long)MANY * (MANY - 1) / 2);
	exe_future_unref(f);
	exe_io_destroy(io);
}

/* ---- awaiting pool tasks ---- */

static int slow_square(void *arg, void **result)
{
	struct timespec ts = {0, 100 * 1000 * 1000};

	nanosleep(&ts, NULL);
	*result = (void *)((intptr_t)arg * (intptr_t)arg);
	return 0;
}

static int proc_double(const void *in, size_t in_len, void **out, size_t *out_len)
{
	char *o = malloc(in_len * 2);
	struct timespec ts = {0, 100 * 1000 * 1000};

	nanosleep(&ts, NULL);
	if (!o)
		return -ENOMEM;
	memcpy(o, in, in_len);
	memcpy(o + in_len, in, in_len);
	*out = o;
	*out_len = in_len * 2;
	return 0;
}

struct awaiter {
	struct exe_pool *tp, *pp;
	int64_t thread_value;
	char bytes[16];
	int rc;
	_Atomic long ticks; /* the ticker's progress */
	long ticks_during;  /* ... while the awaiter waited */
};

static int awaits_pools(void *arg, void **result)
{
	struct awaiter *a = arg;
	struct exe_future *f;
	const void *data;
	size_t len;
	void *v;
	long t0;

	(void)result;
	t0 = atomic_load(&a->ticks);
	a->rc = exe_pool_submit(a->tp, slow_square, (void *)7, &f);
	if (a->rc == 0) {
		a->rc = exe_future_result(f, &v, EXE_FOREVER);
		a->thread_value = (intptr_t)v;
		exe_future_unref(f);
	}
	if (a->rc == 0)
		a->rc = exe_pool_submit_bytes(a->pp, proc_double, "ab", 2, NULL, &f);
	if (a->rc == 0) {
		/* exe_future_bytes() waits, and in a fiber that parks. */
		a->rc = exe_future_bytes(f, &data, &len, EXE_FOREVER);
		if (a->rc == 0 && len < sizeof(a->bytes))
			memcpy(a->bytes, data, len);
		exe_future_unref(f);
	}
	a->ticks_during = atomic_load(&a->ticks) - t0;
	return a->rc;
}

static int ticker(void *arg, void **result)
{
	struct awaiter *a = arg;

	(void)result;
	for (int i = 0; i < 1000 && !exe_future_is_finished(exe_fiber_self()); i++) {
		atomic_fetch_add(&a->ticks, 1);
		if (exe_fiber_sleep(EXE_NS_PER_MS))
			break;
	}
	return 0;
}

Test(fiber, awaits_thread_and_process_pool_tasks)
{
	struct exe_io *io = make_io();
	struct awaiter a = {0};
	struct exe_future *f, *t;

	cr_assert_eq(exe_thread_pool_create(&a.tp, NULL), 0);
	cr_assert_eq(exe_process_pool_create(&a.pp, &(struct exe_pool_opts){.workers = 1}), 0);
	cr_assert_eq(exe_fiber_spawn(io, ticker, &a, NULL, &t), 0);
	cr_assert_eq(exe_fiber_spawn(io, awaits_pools, &a, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, NULL, WAIT), 0, "rc %d", a.rc);
	cr_assert_eq(a.thread_value, 49);
	cr_assert_str_eq(a.bytes, "abab");
	/* ~200 ms of waiting: the other fiber kept ticking meanwhile. */
	cr_assert_gt(a.ticks_during, 20, "ticks %ld", a.ticks_during);
	exe_future_cancel(t);
	exe_future_wait(t, WAIT);
	exe_future_unref(f);
	exe_future_unref(t);
	exe_pool_destroy(a.tp);
	exe_pool_destroy(a.pp);
	exe_io_destroy(io);
}

/* ---- stacks ---- */

static long __attribute__((noinline)) recurse(long depth)
{
	volatile char frame[1024];

	frame[0] = (char)depth;
	frame[sizeof(frame) - 1] = (char)depth;
	if (depth == 0)
		return frame[0];
	return recurse(depth - 1) + 1 + (frame[sizeof(frame) - 1] - (char)depth);
}

static int deep(void *arg, void **result)
{
	*result = (void *)recurse((long)(intptr_t)arg);
	return 0;
}

Test(fiber, deep_recursion_up_to_the_stack_size)
{
	struct exe_io *io = make_io();
	/* 256 KiB stack, ~1.1 KiB a frame (more under ASan, whose frames
	 * live elsewhere): 150 frames use most of it. */
	struct exe_fiber_opts o = {.stack_size = 256 * 1024};
	struct exe_future *f;
	void *v;

	cr_assert_eq(exe_fiber_spawn(io, deep, (void *)150, &o, &f), 0);
	cr_assert_eq(exe_future_result(f, &v, WAIT), 0);
	cr_assert_eq((intptr_t)v, 150);
	exe_future_unref(f);
	/* The default stack too, at 48 frames (~53 KiB of 64). */
	cr_assert_eq(exe_fiber_spawn(io, deep, (void *)48, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, &v, WAIT), 0);
	cr_assert_eq((intptr_t)v, 48);
	exe_future_unref(f);
	exe_io_destroy(io);
}

/* Stacks are pooled: the next fiber of the context runs on the stack the
 * last one left, pages and all (a fresh mapping would read as zeros). */
static int __attribute__((noinline)) stack_probe(bool write)
{
	volatile unsigned char area[512];
	int seen = 0;

	for (size_t i = 0; i < sizeof(area); i++) {
		if (write)
			area[i] = 0xA5;
		else
			seen += area[i] == 0xA5;
	}
	return seen;
}

static int writes_stack(void *arg, void **result)
{
	(void)arg, (void)result;
	return stack_probe(true) == 0 ? 0 : -EPROTO;
}

static int reads_stack(void *arg, void **result)
{
	(void)arg;
	*result = (void *)(intptr_t)stack_probe(false);
	return 0;
}

Test(fiber, a_finished_fibers_stack_is_reused)
{
	struct exe_io *io = make_io();
	struct exe_future *f;
	void *v;

	cr_assert_eq(exe_fiber_spawn(io, writes_stack, NULL, NULL, &f), 0);
	join(f);
	exe_future_unref(f);
	cr_assert_eq(exe_fiber_spawn(io, reads_stack, NULL, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, &v, WAIT), 0);
	cr_assert_gt((intptr_t)v, 256, "only %d of 512 bytes left by the last fiber", (int)(intptr_t)v);
	exe_future_unref(f);
	exe_io_destroy(io);
}

Test(fiber, overflow_hits_the_guard_page, .signal = SIGSEGV)
{
	struct exe_io *io = make_io();
	struct exe_future *f;

	/* 64 KiB of stack cannot hold 1000 frames of 1 KiB. */
	cr_assert_eq(exe_fiber_spawn(io, deep, (void *)1000, NULL, &f), 0);
	exe_future_wait(f, WAIT);
	cr_assert_fail("the overflow went unnoticed");
}

/* ---- the watchdog ---- */

struct hook_log {
	pthread_mutex_t lock;
	int calls;
	int code;
	char what[32];
	char msg[200];
};

static void record_hook(const char *what, int code, const char *msg, void *arg)
{
	struct hook_log *h = arg;

	pthread_mutex_lock(&h->lock);
	h->calls++;
	h->code = code;
	snprintf(h->what, sizeof(h->what), "%s", what);
	snprintf(h->msg, sizeof(h->msg), "%s", msg ? msg : "");
	pthread_mutex_unlock(&h->lock);
}

static int blocks_the_thread(void *arg, void **result)
{
	struct timespec ts = {0, 300 * 1000 * 1000};

	(void)arg, (void)result;
	nanosleep(&ts, NULL); /* the trap: does not switch */
	return 0;
}

static int switches_often(void *arg, void **result)
{
	(void)arg, (void)result;
	for (int i = 0; i < 30; i++)
		exe_fiber_sleep(10 * EXE_NS_PER_MS);
	return 0;
}

Test(fiber, watchdog_names_a_fiber_that_blocks)
{
	struct hook_log h = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct exe_io *io = make_io();
	struct exe_future *f;

	exe_set_error_hook(record_hook, &h);
	cr_assert_eq(exe_fiber_watchdog(io, 50 * EXE_NS_PER_MS), 0);
	cr_assert_eq(
	    exe_fiber_spawn(io, blocks_the_thread, NULL, &(struct exe_fiber_opts){.name = "blocker"}, &f), 0);
	join(f);
	exe_io_destroy(io);
	exe_set_error_hook(NULL, NULL);
	cr_assert_eq(h.calls, 1, "reported %d times", h.calls);
	cr_assert_str_eq(h.what, "fiber watchdog");
	cr_assert_eq(h.code, -ETIME);
	cr_assert(strstr(h.msg, "\"blocker\""), "message: %s", h.msg);
	exe_future_unref(f);
}

Test(fiber, watchdog_stays_quiet_for_fibers_that_switch)
{
	struct hook_log h = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct exe_io *io = make_io();
	struct exe_future *f[2];

	exe_set_error_hook(record_hook, &h);
	cr_assert_eq(exe_fiber_watchdog(io, 50 * EXE_NS_PER_MS), 0);
	cr_assert_eq(exe_fiber_spawn(io, switches_often, NULL, NULL, &f[0]), 0);
	cr_assert_eq(exe_fiber_spawn(io, switches_often, NULL, NULL, &f[1]), 0);
	cr_assert_eq(exe_wait(f, 2, EXE_WAIT_ALL, WAIT), 2);
	exe_io_destroy(io);
	exe_set_error_hook(NULL, NULL);
	cr_assert_eq(h.calls, 0, "reported: %s", h.msg);
	exe_future_unref(f[0]);
	exe_future_unref(f[1]);
}

/* ---- several io contexts ---- */

struct cross {
	struct exe_future *other;
	struct exe_queue *q;
	int rc;
};

static int waits_across(void *arg, void **result)
{
	struct cross *c = arg;
	void *item = NULL;

	c->rc = exe_queue_get(c->q, &item, WAIT);
	if (c->rc == 0)
		c->rc = exe_future_wait(c->other, WAIT);
	*result = item;
	return c->rc;
}

static int puts_later(void *arg, void **result)
{
	(void)result;
	exe_fiber_sleep(20 * EXE_NS_PER_MS);
	return exe_queue_put(arg, (void *)5, EXE_FOREVER);
}

Test(fiber, fibers_of_two_contexts_wait_on_each_other)
{
	struct exe_io *a = make_io(), *b = make_io();
	struct cross c = {0};
	struct exe_future *fa, *fb;
	void *v;

	cr_assert_eq(exe_queue_create(&c.q, NULL), 0);
	cr_assert_eq(exe_fiber_spawn(b, puts_later, c.q, NULL, &fb), 0);
	c.other = fb;
	cr_assert_eq(exe_fiber_spawn(a, waits_across, &c, NULL, &fa), 0);
	cr_assert_eq(exe_future_result(fa, &v, WAIT), 0, "rc %d", c.rc);
	cr_assert_eq((intptr_t)v, 5);
	exe_future_unref(fa);
	exe_future_unref(fb);
	exe_io_destroy(a);
	exe_io_destroy(b);
	exe_queue_destroy(c.q);
}

Test(fiber, manual_context_runs_fibers_in_run_once)
{
	struct exe_io *io = NULL;
	struct exe_future *f[2];
	int64_t deadline = exe_now_ns() + WAIT;

	cr_assert_eq(exe_io_create(&io, &(struct exe_io_opts){.manual = true}), 0);
	cr_assert_eq(exe_fiber_spawn(io, sleeper, (void *)30, NULL, &f[0]), 0);
	cr_assert_eq(exe_fiber_spawn(io, add_one, (void *)1, NULL, &f[1]), 0);
	while (!(exe_future_is_finished(f[0]) && exe_future_is_finished(f[1])) && exe_now_ns() < deadline)
		exe_io_run_once(io, 10 * EXE_NS_PER_MS);
	cr_assert_eq(exe_future_result(f[0], NULL, 0), 0);
	cr_assert_eq(exe_future_result(f[1], NULL, 0), 0);
	exe_future_unref(f[0]);
	exe_future_unref(f[1]);
	exe_io_destroy(io);
}

/* ---- bad input, and outside a fiber ---- */

static int waits_on_itself(void *arg, void **result)
{
	(void)arg, (void)result;
	return exe_future_wait(exe_fiber_self(), EXE_FOREVER);
}

Test(fiber, bad_input)
{
	struct exe_io *io = make_io();
	struct exe_future *f;

	cr_assert_eq(exe_fiber_spawn(NULL, add_one, NULL, NULL, &f), -EINVAL);
	cr_assert_eq(exe_fiber_spawn(io, NULL, NULL, NULL, &f), -EINVAL);
	cr_assert_eq(exe_fiber_spawn(io, add_one, NULL, &(struct exe_fiber_opts){.stack_size = 4096}, &f),
	             -EINVAL);
	cr_assert_eq(
	    exe_fiber_spawn(io, add_one, NULL, &(struct exe_fiber_opts){.stack_size = (size_t)1 << 31}, &f),
	    -EINVAL);
	cr_assert_eq(exe_fiber_watchdog(NULL, 1), -EINVAL);
	cr_assert_eq(exe_fiber_watchdog(io, -1), -EINVAL);
	cr_assert_eq(exe_fiber_sleep(-1), -EINVAL);
	cr_assert_eq(exe_fiber_accept(0, NULL, (unsigned[]){4}, 0), -EINVAL);
	cr_assert_eq(exe_fiber_connect(0, NULL, 0), -EINVAL);
	/* A fiber waiting on its own future would wait forever. */
	cr_assert_eq(exe_fiber_spawn(io, waits_on_itself, NULL, NULL, &f), 0);
	cr_assert_eq(exe_future_result(f, NULL, WAIT), -EDEADLK);
	exe_future_unref(f);
	exe_io_destroy(io);
}

Test(fiber, outside_a_fiber_the_calls_block_the_thread)
{
	int sv[2];
	char c = 0;

	cr_assert_null(exe_fiber_io());
	cr_assert_null(exe_fiber_name());
	cr_assert_eq(exe_fiber_yield(), 0);
	cr_assert_eq(exe_fiber_sleep(EXE_NS_PER_MS), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(exe_fiber_send(sv[1], "q", 1, 0), 1);
	cr_assert_eq(exe_fiber_recv(sv[0], &c, 1, 0), 1);
	cr_assert_eq(c, 'q');
	cr_assert_eq(exe_fiber_write(sv[1], "r", 1, -1), 1);
	cr_assert_eq(exe_fiber_read(sv[0], &c, 1, -1), 1);
	cr_assert_eq(c, 'r');
	cr_assert_eq(exe_fiber_recv(-1, &c, 1, 0), -EBADF);
	close(sv[0]);
	close(sv[1]);
}
