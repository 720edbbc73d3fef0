/*
 * stress_io.c - several threads hammer one io context with nops, sleeps,
 * call_later timers, periodic timers, file reads and socket receives,
 * cancelling at random; then rounds of destroy with work in flight while
 * another thread cancels that work. Checked: every future
 * finishes; a timer whose cancel returned 0 never ran its function, one that
 * finished DONE ran it exactly once; every done callback ran exactly once.
 * Runs on io_uring (when the kernel allows it) and on the fallback.
 *
 * A plain program (Criterion cannot run under ThreadSanitizer).
 * Usage: stress_io [iterations per thread]   (or EXE_STRESS_IO_ITERS=n)
 * Exit status 0 on success; one result line per backend on stdout.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <executor.h>

#define THREADS 4
#define SLOTS 64
#define DEFAULT_ITERS 100000L
#define WAIT (20 * EXE_NS_PER_S)

enum kind { K_NONE, K_NOP, K_SLEEP, K_LATER, K_EVERY, K_RECV, K_READ };

struct slot {
	enum kind kind;
	struct exe_future *f;
	int cancel_rc;   /* 1: not cancelled */
	_Atomic int ran; /* timer function calls */
	char buf[512];
};

struct worker {
	pthread_t thread;
	struct exe_io *io;
	unsigned seed;
	long iters;
	struct slot slots[SLOTS];
	int sv[2];
	int file;
	long ops, cancels_won;
};

static _Atomic long cb_added, cb_called;
static atomic_int failed;

static void fail(const char *what, long a, long b)
{
	fprintf(stderr, "stress_io: %s (%ld, %ld)\n", what, a, b);
	atomic_store(&failed, 1);
}

static int on_done(struct exe_future *f, void *arg)
{
	(void)f;
	(void)arg;
	atomic_fetch_add(&cb_called, 1);
	return 0;
}

static int free_buf(struct exe_future *f, void *arg)
{
	(void)f;
	free(arg);
	return 0;
}

static int timer_fn(void *arg)
{
	atomic_fetch_add(&((struct slot *)arg)->ran, 1);
	return 0;
}

static int count_every(void *arg)
{
	atomic_fetch_add((_Atomic int *)arg, 1);
	return 0;
}

static int every_fn(void *arg)
{
	struct slot *s = arg;

	/* Stops itself after a few ticks unless cancelled first. */
	return atomic_fetch_add(&s->ran, 1) >= 5 ? EXE_TIMER_STOP : 0;
}

/* Wait for a slot's future and check its outcome. */
static void settle(struct worker *w, struct slot *s)
{
	enum exe_future_state st;

	if (s->kind == K_NONE)
		return;
	if (s->kind == K_RECV) {
		/* Receives never finish by themselves. */
		int c = exe_future_cancel(s->f);

		if (s->cancel_rc == 1)
			s->cancel_rc = c;
	}
	if (exe_future_wait(s->f, WAIT)) {
		fail("future never finished", s->kind, 0);
		return;
	}
	st = exe_future_state(s->f);
	if (s->cancel_rc == 0 && st != EXE_FUTURE_CANCELLED)
		fail("cancel returned 0 but the future is not CANCELLED", s->kind, st);
	switch (s->kind) {
	case K_LATER:
		if (st == EXE_FUTURE_CANCELLED && atomic_load(&s->ran) != 0)
			fail("cancelled timer ran", atomic_load(&s->ran), 0);
		if (st == EXE_FUTURE_DONE && atomic_load(&s->ran) != 1)
			fail("finished timer ran != 1 times", atomic_load(&s->ran), 0);
		break;
	case K_EVERY:
		if (st == EXE_FUTURE_CANCELLED && atomic_load(&s->ran) != 0)
			fail("cancelled periodic timer ran", atomic_load(&s->ran), 0);
		if (st == EXE_FUTURE_DONE && atomic_load(&s->ran) != 6)
			fail("periodic timer ran != 6 times", atomic_load(&s->ran), 0);
		if (st == EXE_FUTURE_FAILED && exe_future_code(s->f) != -ECANCELED)
			fail("periodic timer failed", exe_future_code(s->f), 0);
		break;
	case K_NOP:
		if (st != EXE_FUTURE_DONE && st != EXE_FUTURE_CANCELLED &&
		    !(st == EXE_FUTURE_FAILED && exe_future_code(s->f) == -ECANCELED))
			fail("nop failed", st, exe_future_code(s->f));
		break;
	case K_READ:
		if (st == EXE_FUTURE_DONE && exe_io_res(s->f, 0) != (int64_t)sizeof(s->buf))
			fail("file read", exe_io_res(s->f, 0), 0);
		if (st == EXE_FUTURE_FAILED && exe_future_code(s->f) != -ECANCELED)
			fail("file read failed", exe_future_code(s->f), 0);
		break;
	case K_RECV:
		/* Nobody writes to the socket: only a cancel ends it. */
		if (st != EXE_FUTURE_CANCELLED && exe_future_code(s->f) != -ECANCELED &&
		    exe_future_code(s->f) != -EINTR)
			fail("recv ended without cancel", st, exe_future_code(s->f));
		break;
	default: break;
	}
	if (s->cancel_rc == 0)
		w->cancels_won++;
	exe_future_unref(s->f);
	s->kind = K_NONE;
	s->f = NULL;
}

#define TAIL 32
#define DESTROY_ROUNDS 40

struct tail {
	struct exe_future *f[TAIL];
	unsigned seed;
};

/* Cancels the tail's futures while the owner destroys the context: a
 * cancel may meet the operation queued, in the kernel, being torn down or
 * finished. */
static void *cancel_tail(void *arg)
{
	struct tail *t = arg;
	int i;

	for (i = TAIL - 1; i >= 0; i--) {
		int c = exe_future_cancel(t->f[i]), spin = (int)(rand_r(&t->seed) % 2000);

		if (c != 0 && c != -EBUSY && c != -EALREADY)
			fail("tail cancel", c, i);
		while (spin--)
			__asm__ volatile("" ::: "memory");
	}
	return NULL;
}

static void destroy_round(int backend, unsigned round)
{
	struct exe_io_opts o = {.backend = backend};
	struct tail t = {.seed = round * 7919u + 1};
	struct exe_io *io;
	pthread_t th;
	int i, rc, sv[2];
	_Atomic int ticks = 0;

	if (exe_io_create(&io, &o) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		fail("destroy round setup", round, 0);
		return;
	}
	for (i = 0; i < TAIL; i++) {
		char *buf = malloc(8);

		switch (i % 4) {
		case 0: rc = exe_io_sleep(io, 30 * EXE_NS_PER_S, &t.f[i]); break;
		case 1: rc = exe_call_every(io, 50 * EXE_NS_PER_US, count_every, &ticks, &t.f[i]); break;
		case 2: rc = exe_io_nop(io, &t.f[i]); break;
		default: rc = exe_io_recv(io, sv[0], buf, 8, 0, &t.f[i]); break;
		}
		if (rc)
			fail("tail submit", rc, i);
		/* A receive's buffer is the kernel's until its future is done. */
		if (i % 4 == 3 && exe_future_on_done(t.f[i], free_buf, buf))
			fail("on_done", i, 0);
		else if (i % 4 != 3)
			free(buf);
	}
	pthread_create(&th, NULL, cancel_tail, &t);
	if (round % 2) {
		struct timespec ts = {0, (long)(rand_r(&t.seed) % 200) * 1000};

		nanosleep(&ts, NULL);
	}
	exe_io_destroy(io);
	pthread_join(th, NULL);
	for (i = 0; i < TAIL; i++) {
		if (!exe_future_is_finished(t.f[i]))
			fail("future unfinished after destroy", round, i);
		exe_future_unref(t.f[i]);
	}
	close(sv[0]);
	close(sv[1]);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	long i;

	for (i = 0; i < w->iters && !atomic_load(&failed); i++) {
		struct slot *s = &w->slots[rand_r(&w->seed) % SLOTS];
		int r = rand_r(&w->seed) % 100, rc = 0;

		if (s->kind != K_NONE && r < 30) {
			/* Cancel something that may be queued, in the kernel,
			 * firing or finished. */
			int c = exe_future_cancel(s->f);

			if (s->cancel_rc == 1)
				s->cancel_rc = c;
			if (c != 0 && c != -EBUSY && c != -EALREADY)
				fail("cancel", c, 0);
			continue;
		}
		settle(w, s);
		s->cancel_rc = 1;
		atomic_store(&s->ran, 0);
		if (r < 50) {
			s->kind = K_NOP;
			rc = exe_io_nop(w->io, &s->f);
		} else if (r < 60) {
			s->kind = K_SLEEP;
			rc = exe_io_sleep(w->io, rand_r(&w->seed) % 500 * EXE_NS_PER_US, &s->f);
		} else if (r < 85) {
			s->kind = K_LATER;
			rc =
			    exe_call_later(w->io, rand_r(&w->seed) % 300 * EXE_NS_PER_US, timer_fn, s, &s->f);
		} else if (r < 90) {
			s->kind = K_EVERY;
			rc = exe_call_every(w->io, 100 * EXE_NS_PER_US, every_fn, s, &s->f);
		} else if (r < 95) {
			s->kind = K_READ;
			rc = exe_io_read(w->io, w->file, s->buf, sizeof(s->buf),
			                 (int64_t)(rand_r(&w->seed) % 64) * 512, &s->f);
		} else {
			s->kind = K_RECV;
			rc = exe_io_recv(w->io, w->sv[0], s->buf, sizeof(s->buf), 0, &s->f);
			/* Must be cancelled to finish. */
			if (rc == 0 && rand_r(&w->seed) % 2) {
				s->cancel_rc = exe_future_cancel(s->f);
			}
		}
		if (rc) {
			fail("submit", s->kind, rc);
			s->kind = K_NONE;
			break;
		}
		if (rand_r(&w->seed) % 4 == 0) {
			if (exe_future_on_done(s->f, on_done, NULL) == 0)
				atomic_fetch_add(&cb_added, 1);
		}
		w->ops++;
	}
	for (i = 0; i < SLOTS; i++)
		settle(w, &w->slots[i]);
	return NULL;
}

static int run(int backend, long iters)
{
	struct exe_io_opts o = {.backend = backend};
	struct worker *w = calloc(THREADS, sizeof(*w));
	struct exe_io *io;
	int64_t t0 = exe_now_ns();
	long ops = 0, won = 0;
	char path[] = "/tmp/stress_io_XXXXXX", block[512];
	int i, rc, file;

	rc = exe_io_create(&io, &o);
	if (rc) {
		free(w);
		return rc;
	}
	/* 32 KiB for the file reads. */
	file = mkstemp(path);
	if (file < 0)
		fail("mkstemp", errno, 0);
	unlink(path);
	memset(block, 'f', sizeof(block));
	for (i = 0; i < 64; i++)
		if (pwrite(file, block, sizeof(block), (off_t)i * 512) != (ssize_t)sizeof(block))
			fail("pwrite", errno, i);
	atomic_store(&cb_added, 0);
	atomic_store(&cb_called, 0);
	for (i = 0; i < THREADS; i++) {
		w[i].io = io;
		w[i].seed = 1234u + (unsigned)i;
		w[i].iters = iters;
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, w[i].sv))
			fail("socketpair", errno, 0);
		w[i].file = file;
		pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
	}
	for (i = 0; i < THREADS; i++) {
		pthread_join(w[i].thread, NULL);
		ops += w[i].ops;
		won += w[i].cancels_won;
	}
	/* Destroy with work in flight: receives and far timers. */
	exe_io_destroy(io);
	for (i = 0; i < DESTROY_ROUNDS; i++)
		destroy_round(backend, (unsigned)i);
	if (atomic_load(&cb_called) != atomic_load(&cb_added))
		fail("callbacks", atomic_load(&cb_called), atomic_load(&cb_added));
	printf("stress_io %s: %d threads, %ld ops, %ld cancels won, %ld callbacks, %.2f s: %s\n",
	       backend == EXE_IO_URING ? "io_uring" : "fallback", THREADS, ops, won, atomic_load(&cb_called),
	       (double)(exe_now_ns() - t0) / 1e9, atomic_load(&failed) ? "FAILED" : "ok");
	for (i = 0; i < THREADS; i++) {
		close(w[i].sv[0]);
		close(w[i].sv[1]);
	}
	close(file);
	free(w);
	return 0;
}

int main(int argc, char **argv)
{
	long iters = DEFAULT_ITERS;
	const char *env = getenv("EXE_STRESS_IO_ITERS");
	bool refused = false;
	int rc;

	if (argc > 1)
		iters = atol(argv[1]);
	else if (env)
		iters = atol(env);
	rc = run(EXE_IO_URING, iters);
	if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES || rc == -EOPNOTSUPP || rc == -ENOMEM) {
		printf("stress_io io_uring: refused by the kernel (%d), not run: SKIP\n", rc);
		refused = true;
	} else if (rc)
		fail("exe_io_create(io_uring)", rc, 0);
	rc = run(EXE_IO_FALLBACK, iters);
	if (rc)
		fail("exe_io_create(fallback)", rc, 0);
	if (atomic_load(&failed))
		return 1;
	/* 77: CTest's skip code (SKIP_RETURN_CODE), so a refused io_uring
	 * reads as "not run", never as a pass. */
	return refused ? 77 : 0;
}
