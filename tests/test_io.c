/*
 * test_io.c - the io context contract, on both backends: file round trips,
 * short reads, sockets (a 200-connection loopback echo on one io thread),
 * cancel, bad input, destroy with work in flight, manual driving.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "io_backends.h"

#define WAIT (10 * EXE_NS_PER_S)

TestSuite(io, .timeout = 60);
TestSuite(io_uring, .timeout = 60);
TestSuite(io_fallback, .timeout = 60);

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static int temp_file(char *path, size_t n)
{
	int fd;

	snprintf(path, n, "/tmp/exe_test_io_XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	return fd;
}

/* Submit-and-wait helper: the result of one operation. @fp, not *@fp: the
 * argument is evaluated before the submit call has stored the future. */
static int64_t res_of(int rc, struct exe_future **fp)
{
	int64_t r;

	cr_assert_eq(rc, 0, "submit: %d", rc);
	r = exe_io_res(*fp, WAIT);
	exe_future_unref(*fp);
	*fp = NULL;
	return r;
}

static int listen_local(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	cr_assert_eq(listen(fd, 1024), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
	return fd;
}

IO_TEST(io, nop_completes_with_zero)
{
	struct exe_future *f[100];
	int i;

	for (i = 0; i < 100; i++)
		cr_assert_eq(exe_io_nop(io, &f[i]), 0);
	for (i = 0; i < 100; i++) {
		cr_assert_eq(exe_io_res(f[i], WAIT), 0);
		cr_assert_eq(exe_future_state(f[i]), EXE_FUTURE_DONE);
		exe_future_unref(f[i]);
	}
}

IO_TEST(io, file_write_fsync_read_round_trip)
{
	char path[64];
	int fd = temp_file(path, sizeof(path));
	size_t n = 256 * 1024, i;
	unsigned char *out = malloc(n), *in = malloc(n);
	struct exe_future *f;

	for (i = 0; i < n; i++)
		out[i] = (unsigned char)(i * 7 + 3);
	cr_assert_eq(exe_io_write(io, fd, out, n, 0, &f), 0);
	cr_assert_eq(res_of(0, &f), (int64_t)n);
	cr_assert_eq(res_of(exe_io_fsync(io, fd, 0, &f), &f), 0);
	cr_assert_eq(res_of(exe_io_fsync(io, fd, EXE_IO_FSYNC_DATASYNC, &f), &f), 0);
	memset(in, 0, n);
	cr_assert_eq(res_of(exe_io_read(io, fd, in, n, 0, &f), &f), (int64_t)n);
	cr_assert(memcmp(in, out, n) == 0);

	/* Offsets: a middle slice. */
	memset(in, 0, n);
	cr_assert_eq(res_of(exe_io_read(io, fd, in, 1000, 5000, &f), &f), 1000);
	cr_assert(memcmp(in, out + 5000, 1000) == 0);
	close(fd);
	unlink(path);
	free(out);
	free(in);
}

IO_TEST(io, vectored_round_trip)
{
	char path[64], a[100], b[200], c[100], d[200];
	int fd = temp_file(path, sizeof(path));
	struct iovec wv[2] = {{a, sizeof(a)}, {b, sizeof(b)}};
	struct iovec rv[2] = {{c, sizeof(c)}, {d, sizeof(d)}};
	struct exe_future *f;

	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	cr_assert_eq(res_of(exe_io_writev(io, fd, wv, 2, 0, &f), &f), 300);
	cr_assert_eq(res_of(exe_io_readv(io, fd, rv, 2, 0, &f), &f), 300);
	cr_assert(memcmp(a, c, sizeof(a)) == 0 && memcmp(b, d, sizeof(b)) == 0);
	close(fd);
	unlink(path);
}

IO_TEST(io, short_read_at_eof)
{
	char path[64], buf[4096];
	int fd = temp_file(path, sizeof(path));
	struct exe_future *f;

	memset(buf, 'x', 100);
	cr_assert_eq(pwrite(fd, buf, 100, 0), 100);
	cr_assert_eq(res_of(exe_io_read(io, fd, buf, sizeof(buf), 50, &f), &f), 50);
	cr_assert_eq(res_of(exe_io_read(io, fd, buf, sizeof(buf), 100, &f), &f), 0);
	cr_assert_eq(res_of(exe_io_read(io, fd, buf, sizeof(buf), 1 << 20, &f), &f), 0);
	close(fd);
	unlink(path);
}

IO_TEST(io, file_position_with_offset_minus_one)
{
	char path[64], buf[16];
	int fd = temp_file(path, sizeof(path));
	struct exe_future *f;

	cr_assert_eq(res_of(exe_io_write(io, fd, "hello world", 11, -1, &f), &f), 11);
	cr_assert_eq(lseek(fd, 0, SEEK_CUR), 11);
	lseek(fd, 6, SEEK_SET);
	cr_assert_eq(res_of(exe_io_read(io, fd, buf, sizeof(buf), -1, &f), &f), 5);
	cr_assert(memcmp(buf, "world", 5) == 0);
	close(fd);
	unlink(path);
}

IO_TEST(io, openat_and_close)
{
	char path[64];
	int fd = temp_file(path, sizeof(path));
	struct exe_future *f;
	int64_t nfd;
	char buf[8];

	close(fd);
	nfd = res_of(exe_io_openat(io, AT_FDCWD, path, O_RDWR | O_CLOEXEC, 0, &f), &f);
	cr_assert_geq(nfd, 0);
	cr_assert_eq(res_of(exe_io_close(io, (int)nfd, &f), &f), 0);
	/* The fd is gone now. */
	cr_assert_eq(res_of(exe_io_read(io, (int)nfd, buf, sizeof(buf), 0, &f), &f), -EBADF);
	cr_assert_eq(res_of(exe_io_openat(io, AT_FDCWD, "/nonexistent/x", O_RDONLY, 0, &f), &f), -ENOENT);
	unlink(path);
}

IO_TEST(io, bad_input_gives_clear_codes)
{
	struct exe_future *f = NULL;
	char buf[8];
	int sv[2];

	cr_assert_eq(exe_io_read(io, 0, NULL, 10, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_recv(io, 0, NULL, 10, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_read(io, 0, buf, 8, -2, &f), -EINVAL);
	cr_assert_eq(exe_io_nop(io, NULL), -EINVAL);
	cr_assert_eq(exe_io_poll(io, 0, 0, &f), -EINVAL);
	cr_assert_eq(exe_io_read(io, -1, buf, sizeof(buf), 0, &f), 0);
	cr_assert_eq(exe_io_res(f, WAIT), -EBADF);
	/* Cancel of a finished operation. */
	cr_assert_eq(exe_future_cancel(f), -EALREADY);
	exe_future_unref(f);
	cr_assert_eq(res_of(exe_io_recv(io, -1, buf, sizeof(buf), 0, &f), &f), -EBADF);
	cr_assert_eq(res_of(exe_io_send(io, 12345, buf, sizeof(buf), 0, &f), &f), -EBADF);
	/* Zero-length operations are fine. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(res_of(exe_io_send(io, sv[0], buf, 0, 0, &f), &f), 0);
	cr_assert_eq(res_of(exe_io_send(io, sv[0], NULL, 0, 0, &f), &f), 0);
	close(sv[0]);
	close(sv[1]);
}

IO_TEST(io, poll_reports_readiness)
{
	struct exe_future *f;
	int sv[2];
	int64_t r;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(exe_io_poll(io, sv[0], POLLIN, &f), 0);
	cr_assert_eq(exe_future_wait(f, 20 * EXE_NS_PER_MS), -ETIMEDOUT);
	cr_assert_eq(write(sv[1], "x", 1), 1);
	r = exe_io_res(f, WAIT);
	cr_assert(r > 0 && (r & POLLIN), "poll res %lld", (long long)r);
	exe_future_unref(f);
	close(sv[0]);
	close(sv[1]);
}

IO_TEST(io, cancel_pending_recv)
{
	struct exe_future *f;
	char buf[64];
	int sv[2], rc;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(exe_io_recv(io, sv[0], buf, sizeof(buf), 0, &f), 0);
	sleep_ms(20); /* in the kernel by now */
	rc = exe_future_cancel(f);
	cr_assert(rc == -EBUSY || rc == 0, "cancel: %d", rc);
	rc = (int)exe_io_res(f, WAIT);
	cr_assert(rc == -ECANCELED || rc == -EINTR, "res %d", rc);
	cr_assert(exe_future_is_finished(f));
	exe_future_unref(f);
	/* The socket still works. */
	cr_assert_eq(write(sv[1], "y", 1), 1);
	cr_assert_eq(res_of(exe_io_recv(io, sv[0], buf, sizeof(buf), 0, &f), &f), 1);
	close(sv[0]);
	close(sv[1]);
}

IO_TEST(io, cancel_right_after_submit_never_hangs)
{
	enum { N = 500 };
	struct exe_future *f[N];
	char buf[N];
	int sv[2], i, cancelled = 0;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	for (i = 0; i < N; i++) {
		cr_assert_eq(exe_io_recv(io, sv[0], &buf[i], 1, 0, &f[i]), 0);
		exe_future_cancel(f[i]);
	}
	for (i = 0; i < N; i++) {
		int rc = (int)exe_io_res(f[i], WAIT);

		cr_assert(rc == -ECANCELED || rc == -EINTR, "res %d", rc);
		cancelled++;
		exe_future_unref(f[i]);
	}
	cr_assert_eq(cancelled, N);
	close(sv[0]);
	close(sv[1]);
}

IO_TEST(io, accept_after_close_fails_with_ebadf)
{
	struct sockaddr_in addr;
	struct exe_future *f;
	int lfd = listen_local(&addr), rc;

	/* A pending accept can be cancelled... */
	cr_assert_eq(exe_io_accept(io, lfd, NULL, NULL, SOCK_CLOEXEC, &f), 0);
	sleep_ms(10);
	exe_future_cancel(f);
	rc = (int)exe_io_res(f, WAIT);
	cr_assert(rc == -ECANCELED || rc == -EINTR, "res %d", rc);
	exe_future_unref(f);
	/* ...and one on a closed listener fails cleanly. */
	close(lfd);
	cr_assert_eq(res_of(exe_io_accept(io, lfd, NULL, NULL, 0, &f), &f), -EBADF);
}

/* ---- a loopback echo: 200 connections on one io thread ---- */

#define CONNS 200
#define MSG 64

struct echo_conn {
	int cfd, sfd;
	char out[MSG], srv[MSG], in[MSG];
};

static void wait_all(struct exe_future **fs, int n)
{
	cr_assert_geq(exe_wait(fs, (size_t)n, EXE_WAIT_ALL, 30 * EXE_NS_PER_S), 0);
}

IO_TEST(io, tcp_echo_many_connections)
{
	struct echo_conn *c = calloc(CONNS, sizeof(*c));
	struct exe_future **acc = calloc(CONNS, sizeof(*acc)), **con = calloc(CONNS, sizeof(*con));
	struct sockaddr_in addr;
	int lfd = listen_local(&addr), i, round;

	for (i = 0; i < CONNS; i++)
		cr_assert_eq(exe_io_accept(io, lfd, NULL, NULL, SOCK_CLOEXEC, &acc[i]), 0);
	for (i = 0; i < CONNS; i++) {
		c[i].cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert_geq(c[i].cfd, 0);
		cr_assert_eq(exe_io_connect(io, c[i].cfd, (struct sockaddr *)&addr, sizeof(addr), &con[i]),
		             0);
	}
	wait_all(con, CONNS);
	wait_all(acc, CONNS);
	for (i = 0; i < CONNS; i++) {
		cr_assert_eq(exe_io_res(con[i], 0), 0);
		c[i].sfd = (int)exe_io_res(acc[i], 0);
		cr_assert_geq(c[i].sfd, 0);
		exe_future_unref(con[i]);
		exe_future_unref(acc[i]);
	}
	for (round = 0; round < 3; round++) {
		struct exe_future **r = con, **s = acc;

		/* Server side: a recv on every accepted socket. */
		for (i = 0; i < CONNS; i++)
			cr_assert_eq(exe_io_recv(io, c[i].sfd, c[i].srv, MSG, MSG_WAITALL, &r[i]), 0);
		for (i = 0; i < CONNS; i++) {
			snprintf(c[i].out, MSG, "conn %d round %d", i, round);
			cr_assert_eq(exe_io_send(io, c[i].cfd, c[i].out, MSG, 0, &s[i]), 0);
		}
		wait_all(r, CONNS);
		wait_all(s, CONNS);
		for (i = 0; i < CONNS; i++) {
			cr_assert_eq(exe_io_res(r[i], 0), MSG);
			cr_assert_eq(exe_io_res(s[i], 0), MSG);
			exe_future_unref(r[i]);
			exe_future_unref(s[i]);
		}
		/* Echo back, client receives its own message. */
		for (i = 0; i < CONNS; i++) {
			cr_assert_eq(exe_io_recv(io, c[i].cfd, c[i].in, MSG, MSG_WAITALL, &r[i]), 0);
			cr_assert_eq(exe_io_send(io, c[i].sfd, c[i].srv, MSG, 0, &s[i]), 0);
		}
		wait_all(r, CONNS);
		wait_all(s, CONNS);
		for (i = 0; i < CONNS; i++) {
			cr_assert_eq(exe_io_res(r[i], 0), MSG);
			cr_assert(memcmp(c[i].in, c[i].out, MSG) == 0, "conn %d got %.20s", i, c[i].in);
			exe_future_unref(r[i]);
			exe_future_unref(s[i]);
		}
	}
	/* Orderly close: the peer reads 0. */
	for (i = 0; i < CONNS; i++) {
		struct exe_future *f;

		cr_assert_eq(res_of(exe_io_close(io, c[i].cfd, &f), &f), 0);
		cr_assert_eq(res_of(exe_io_recv(io, c[i].sfd, c[i].in, MSG, 0, &f), &f), 0);
		close(c[i].sfd);
	}
	close(lfd);
	free(c);
	free(acc);
	free(con);
}

/* ---- callbacks, threads, lifetime ---- */

struct cb_seen {
	_Atomic int calls;
	char thread[16];
};

static int on_done_record(struct exe_future *f, void *arg)
{
	struct cb_seen *s = arg;

	(void)f;
	pthread_getname_np(pthread_self(), s->thread, sizeof(s->thread));
	atomic_fetch_add(&s->calls, 1);
	return 0;
}

IO_TEST(io, callbacks_run_on_the_io_thread)
{
	struct cb_seen seen = {0};
	struct exe_future *f;
	int sv[2];
	char buf[4];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(exe_io_recv(io, sv[0], buf, sizeof(buf), 0, &f), 0);
	cr_assert_eq(exe_future_on_done(f, on_done_record, &seen), 0);
	sleep_ms(5);
	cr_assert_eq(write(sv[1], "abc", 3), 3);
	cr_assert_eq(exe_io_res(f, WAIT), 3);
	while (atomic_load(&seen.calls) == 0)
		sleep_ms(1);
	cr_assert_str_eq(seen.thread, "exe-io");
	exe_future_unref(f);
	close(sv[0]);
	close(sv[1]);
}

struct late_submit {
	struct exe_io *io;
	_Atomic int rc;
};

static int submit_from_callback(struct exe_future *f, void *arg)
{
	struct late_submit *ls = arg;
	struct exe_future *g = NULL;

	(void)f;
	atomic_store(&ls->rc, exe_io_nop(ls->io, &g));
	exe_future_unref(g);
	return 0;
}

static void destroy_body(int backend)
{
	enum { N = 50 };
	struct exe_io *io = io_test_make(backend, false);
	struct exe_future *rf[N], *sf[N];
	int sv[N][2], i;
	char buf[N][8];
	struct late_submit ls = {.io = io, .rc = 1};

	if (!io)
		return;
	for (i = 0; i < N; i++) {
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
		cr_assert_eq(exe_io_recv(io, sv[i][0], buf[i], sizeof(buf[i]), 0, &rf[i]), 0);
		cr_assert_eq(exe_io_sleep(io, 60 * EXE_NS_PER_S, &sf[i]), 0);
	}
	cr_assert_eq(exe_future_on_done(rf[0], submit_from_callback, &ls), 0);
	sleep_ms(20);
	exe_io_destroy(io);
	for (i = 0; i < N; i++) {
		int rc = exe_future_code(rf[i]);

		cr_assert(rc == -ECANCELED || rc == -EINTR, "recv %d: %d", i, rc);
		cr_assert_eq(exe_future_state(sf[i]), EXE_FUTURE_CANCELLED);
		exe_future_unref(rf[i]);
		exe_future_unref(sf[i]);
		close(sv[i][0]);
		close(sv[i][1]);
	}
	cr_assert_eq(atomic_load(&ls.rc), -ESHUTDOWN);
}

Test(io_uring, destroy_cancels_in_flight_and_refuses_new_work)
{
	destroy_body(EXE_IO_URING);
}
Test(io_fallback, destroy_cancels_in_flight_and_refuses_new_work)
{
	destroy_body(EXE_IO_FALLBACK);
}

/* ---- manual contexts ---- */

static void manual_body(int backend)
{
	struct exe_io *io = io_test_make(backend, true);
	struct exe_future *f, *t;
	int n = 0;

	if (!io)
		return;
	cr_assert_eq(exe_io_nop(io, &f), 0);
	cr_assert_eq(exe_io_sleep(io, 5 * EXE_NS_PER_MS, &t), 0);
	while (!exe_future_is_finished(f) || !exe_future_is_finished(t)) {
		cr_assert_geq(exe_io_run_once(io, 100 * EXE_NS_PER_MS), 0);
		cr_assert_lt(++n, 1000);
	}
	cr_assert_eq(exe_io_res(f, 0), 0);
	cr_assert_eq(exe_future_state(t), EXE_FUTURE_DONE);
	exe_future_unref(f);
	exe_future_unref(t);
	/* A pending op at destroy is cancelled by the destroying thread. */
	cr_assert_eq(exe_io_sleep(io, 60 * EXE_NS_PER_S, &t), 0);
	exe_io_destroy(io);
	cr_assert_eq(exe_future_state(t), EXE_FUTURE_CANCELLED);
	exe_future_unref(t);
}

Test(io_uring, manual_context_runs_on_the_caller)
{
	manual_body(EXE_IO_URING);
}
Test(io_fallback, manual_context_runs_on_the_caller)
{
	manual_body(EXE_IO_FALLBACK);
}

static void *run_thread(void *arg)
{
	return (void *)(intptr_t)exe_io_run(arg);
}

static void run_stop_body(int backend)
{
	struct exe_io *io = io_test_make(backend, true);
	struct exe_future *f;
	pthread_t th;
	void *ret;

	if (!io)
		return;
	cr_assert_eq(pthread_create(&th, NULL, run_thread, io), 0);
	/* Submissions from another thread wake the driving thread. */
	cr_assert_eq(exe_io_nop(io, &f), 0);
	cr_assert_eq(exe_io_res(f, WAIT), 0);
	exe_future_unref(f);
	cr_assert_eq(exe_io_sleep(io, 2 * EXE_NS_PER_MS, &f), 0);
	cr_assert_eq(exe_future_result(f, NULL, WAIT), 0);
	exe_future_unref(f);
	cr_assert_eq(exe_io_stop(io), 0);
	cr_assert_eq(pthread_join(th, &ret), 0);
	cr_assert_eq((intptr_t)ret, 0);
	exe_io_destroy(io);
}

Test(io_uring, run_until_stop)
{
	run_stop_body(EXE_IO_URING);
}
Test(io_fallback, run_until_stop)
{
	run_stop_body(EXE_IO_FALLBACK);
}

Test(io, threaded_context_refuses_run_calls)
{
	struct exe_io *io = NULL;

	cr_assert_eq(exe_io_create(&io, NULL), 0);
	cr_assert_eq(exe_io_run_once(io, 0), -EINVAL);
	cr_assert_eq(exe_io_run(io), -EINVAL);
	cr_assert_eq(exe_io_stop(io), -EINVAL);
	exe_io_destroy(io);
	exe_io_destroy(NULL);
}

Test(io, environment_forces_the_fallback)
{
	struct exe_io *io = NULL;

	setenv("EXE_IO_BACKEND", "fallback", 1);
	cr_assert_eq(exe_io_create(&io, NULL), 0);
	cr_assert_str_eq(exe_io_backend(io), "fallback");
	exe_io_destroy(io);
	unsetenv("EXE_IO_BACKEND");
}

Test(io, the_largest_ring_is_accepted)
{
	struct exe_io_opts o = {.entries = 32768};
	struct exe_io *io = NULL;
	struct exe_future *f;

	cr_assert_eq(exe_io_create(&io, &o), 0);
	cr_assert_eq(exe_io_nop(io, &f), 0);
	cr_assert_eq(exe_io_res(f, WAIT), 0);
	exe_future_unref(f);
	exe_io_destroy(io);
	o.entries = 32769;
	cr_assert_eq(exe_io_create(&io, &o), -EINVAL);
}

Test(io, bad_options_are_refused)
{
	struct exe_io_opts o = {.backend = 7};
	struct exe_io *io = NULL;

	cr_assert_eq(exe_io_create(&io, &o), -EINVAL);
	cr_assert_eq(exe_io_create(NULL, NULL), -EINVAL);
	cr_assert_null(exe_io_backend(NULL), "a query of NULL returns NULL, not a crash");
}

/* One spelling per backend, the one exe_io_backend() returns; a typo is an
 * error, not a silent "auto". */
Test(io, environment_takes_one_spelling_and_refuses_the_rest)
{
	struct exe_io *io = NULL;
	const char *bad[] = {"uring", "epoll", "IO_URING", "", "fallback "};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("EXE_IO_BACKEND", bad[i], 1);
		cr_assert_eq(exe_io_create(&io, NULL), -EINVAL, "\"%s\" accepted", bad[i]);
	}
	setenv("EXE_IO_BACKEND", "auto", 1);
	cr_assert_eq(exe_io_create(&io, NULL), 0);
	exe_io_destroy(io);
	/* An explicit option wins over the environment. */
	setenv("EXE_IO_BACKEND", "bogus", 1);
	cr_assert_eq(exe_io_create(&io, &(struct exe_io_opts){.backend = EXE_IO_FALLBACK}), 0);
	cr_assert_str_eq(exe_io_backend(io), "fallback");
	exe_io_destroy(io);
	unsetenv("EXE_IO_BACKEND");
}
