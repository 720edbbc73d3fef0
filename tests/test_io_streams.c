/*
 * test_io_streams.c - stream reads and writes (no offset) on fds that are
 * not files: pipes, signalfds, eventfds. On both backends they complete
 * when the fd is ready, a pending one can be cancelled, and destroy never
 * waits on one that would never complete (the fallback used to block a
 * file thread in read() that no cancel could reach).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "io_backends.h"

TestSuite(io_streams_uring, .timeout = 30);
TestSuite(io_streams_fallback, .timeout = 30);

#define MS EXE_NS_PER_MS

IO_TEST(io_streams, a_pipe_read_completes_when_data_arrives)
{
	struct exe_future *f;
	char buf[8] = {0};
	void *v;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(exe_io_read(io, p[0], buf, sizeof(buf), -1, &f), 0);
	cr_assert_eq(exe_future_result(f, &v, 50 * MS), -ETIMEDOUT, "nothing to read yet");
	cr_assert_eq(write(p[1], "hi", 2), 2);
	cr_assert_eq(exe_future_result(f, &v, 5 * EXE_NS_PER_S), 0);
	cr_assert_eq((intptr_t)v, 2);
	cr_assert_str_eq(buf, "hi");
	exe_future_unref(f);
	close(p[0]);
	close(p[1]);
}

IO_TEST(io_streams, a_pending_pipe_read_is_cancelled)
{
	struct exe_future *f;
	char buf[8];
	int p[2];

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(exe_io_read(io, p[0], buf, sizeof(buf), -1, &f), 0);
	exe_future_cancel(f);
	cr_assert_eq(exe_future_wait(f, 5 * EXE_NS_PER_S), 0, "the cancel finished the read");
	cr_assert(exe_future_code(f) == -ECANCELED || exe_future_state(f) == EXE_FUTURE_CANCELLED);
	exe_future_unref(f);
	close(p[0]);
	close(p[1]);
}

IO_TEST(io_streams, an_eventfd_write_and_read_round_trip)
{
	struct exe_future *w, *r;
	uint64_t one = 1, got = 0;
	void *v;
	int efd = eventfd(0, EFD_CLOEXEC);

	cr_assert_geq(efd, 0);
	cr_assert_eq(exe_io_read(io, efd, &got, sizeof(got), -1, &r), 0);
	cr_assert_eq(exe_io_write(io, efd, &one, sizeof(one), -1, &w), 0);
	cr_assert_eq(exe_future_result(w, &v, 5 * EXE_NS_PER_S), 0);
	cr_assert_eq(exe_future_result(r, &v, 5 * EXE_NS_PER_S), 0);
	cr_assert_eq(got, 1);
	exe_future_unref(w);
	exe_future_unref(r);
	close(efd);
}

/* What echo_server does: a signalfd read that only a signal (or destroy)
 * ends, on a context the caller drives. Destroy must cancel it, not wait
 * for a signal forever. */
static void destroy_ends_signalfd_read(bool manual)
{
	struct exe_io *io = io_test_make(EXE_IO_FALLBACK, manual);
	struct signalfd_siginfo si;
	struct exe_future *f;
	sigset_t mask, old;
	int sfd;

	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &mask, &old);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	cr_assert_geq(sfd, 0);
	cr_assert_eq(exe_io_read(io, sfd, &si, sizeof(si), -1, &f), 0);
	/* Let the context start the read (a read not started yet is simply
	 * dropped by destroy). */
	if (manual)
		exe_io_run_once(io, 50 * MS);
	else
		usleep(50 * 1000);
	exe_io_destroy(io); /* hung here before: a file thread sat in read() */
	cr_assert(exe_future_is_finished(f));
	cr_assert_eq(exe_future_code(f), -ECANCELED, "an io operation cancelled by destroy fails so");
	exe_future_unref(f);
	close(sfd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

Test(io_streams_fallback, destroy_ends_a_signalfd_read_no_signal_will_finish)
{
	destroy_ends_signalfd_read(false);
}

Test(io_streams_fallback, destroy_ends_a_signalfd_read_on_a_manual_context)
{
	destroy_ends_signalfd_read(true);
}
