/*
 * test_process.c - struct exe_process: exit codes, join with timeout,
 * terminate/kill, is_alive, the pidfd, daemon children.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <executor.h>

#define MS EXE_NS_PER_MS

TestSuite(process, .timeout = 30);

static int sum_bytes(const void *arg, size_t len)
{
	const unsigned char *b = arg;
	int s = 0;

	for (size_t i = 0; i < len; i++)
		s += b[i];
	return s;
}

static int sleep_forever(const void *arg, size_t len)
{
	(void)arg;
	(void)len;
	for (;;)
		pause();
	return 0; /* not reached */
}

static int exit_with(const void *arg, size_t len)
{
	(void)len;
	return *(const int *)arg;
}

static int raise_signal(const void *arg, size_t len)
{
	(void)len;
	raise(*(const int *)arg);
	return 0;
}

static struct exe_process *start(exe_process_fn *fn, const void *arg, size_t len)
{
	struct exe_process *p;

	cr_assert_eq(exe_process_start(&p, fn, arg, len, NULL), 0);
	return p;
}

Test(process, child_gets_the_argument_buffer_and_its_return_is_the_exit_code)
{
	unsigned char buf[] = {1, 2, 3, 4, 10};
	struct exe_process *p = start(sum_bytes, buf, sizeof(buf));
	int code = -1;

	memset(buf, 0, sizeof(buf)); /* the child has its own copy */
	cr_assert_gt(exe_process_pid(p), 0);
	cr_assert_eq(exe_process_join(p, EXE_FOREVER), 0);
	cr_assert_eq(exe_process_exitcode(p, &code), 0);
	cr_assert_eq(code, 20);
	cr_assert_not(exe_process_is_alive(p));
	cr_assert_eq(exe_process_join(p, 0), 0, "join after exit returns at once");
	exe_process_destroy(p);
}

Test(process, exit_codes_follow_python)
{
	int values[] = {0, 1, 255, 256 + 7};
	int want[] = {0, 1, 255, 7};

	for (int i = 0; i < 4; i++) {
		struct exe_process *p = start(exit_with, &values[i], sizeof(int));
		int code;

		cr_assert_eq(exe_process_join(p, EXE_FOREVER), 0);
		cr_assert_eq(exe_process_exitcode(p, &code), 0);
		cr_assert_eq(code, want[i]);
		exe_process_destroy(p);
	}
	int sig = SIGABRT;
	struct exe_process *p = start(raise_signal, &sig, sizeof(sig));
	int code;

	cr_assert_eq(exe_process_join(p, EXE_FOREVER), 0);
	cr_assert_eq(exe_process_exitcode(p, &code), 0);
	cr_assert_eq(code, -SIGABRT);
	exe_process_destroy(p);
}

Test(process, join_times_out_on_a_running_child_then_kill_gives_minus_sigkill)
{
	struct exe_process *p = start(sleep_forever, NULL, 0);
	int64_t t0 = exe_now_ns();
	int code = 123;

	cr_assert_eq(exe_process_join(p, 0), -ETIMEDOUT);
	cr_assert_eq(exe_process_join(p, 50 * MS), -ETIMEDOUT);
	cr_assert_geq(exe_now_ns() - t0, 50 * MS);
	cr_assert(exe_process_is_alive(p));
	cr_assert_eq(exe_process_exitcode(p, &code), -ETIMEDOUT);
	cr_assert_eq(code, 123);
	cr_assert_eq(exe_process_kill(p), 0);
	cr_assert_eq(exe_process_join(p, 5000 * MS), 0);
	cr_assert_eq(exe_process_exitcode(p, &code), 0);
	cr_assert_eq(code, -SIGKILL);
	cr_assert_eq(exe_process_kill(p), 0, "no-op after exit");
	cr_assert_eq(exe_process_terminate(p), 0, "no-op after exit");
	exe_process_destroy(p);
}

static void *start_from_blocking_thread(void *arg)
{
	sigset_t all;

	/* As a pool worker does: block everything, then start a child. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	cr_assert_eq(exe_process_start(arg, sleep_forever, NULL, 0, NULL), 0);
	return NULL;
}

Test(process, terminate_works_even_when_the_starting_thread_blocks_signals)
{
	struct exe_process *p;
	pthread_t t;
	int code;

	pthread_create(&t, NULL, start_from_blocking_thread, &p);
	pthread_join(t, NULL);
	cr_assert_eq(exe_process_terminate(p), 0);
	cr_assert_eq(exe_process_join(p, 5000 * MS), 0);
	cr_assert_eq(exe_process_exitcode(p, &code), 0);
	cr_assert_eq(code, -SIGTERM);
	exe_process_destroy(p);
}

Test(process, the_fd_becomes_readable_when_the_child_exits)
{
	int zero = 0;
	struct exe_process *p = start(sleep_forever, NULL, 0);
	struct pollfd pfd = {.fd = exe_process_fd(p), .events = POLLIN};

	cr_assert_geq(pfd.fd, 0);
	cr_assert_eq(poll(&pfd, 1, 0), 0, "running: not readable");
	exe_process_kill(p);
	cr_assert_eq(poll(&pfd, 1, 5000), 1);
	cr_assert(pfd.revents & POLLIN);
	cr_assert_not(exe_process_is_alive(p));
	exe_process_destroy(p);

	p = start(exit_with, &zero, sizeof(zero));
	pfd.fd = exe_process_fd(p);
	cr_assert_eq(poll(&pfd, 1, 5000), 1);
	exe_process_destroy(p);
}

Test(process, destroy_kills_and_reaps_a_running_child)
{
	struct exe_process *p = start(sleep_forever, NULL, 0);
	pid_t pid = exe_process_pid(p);

	exe_process_destroy(p);
	cr_assert_eq(kill(pid, 0), -1, "no process and no zombie left");
	cr_assert_eq(errno, ESRCH);
}

/* The middle process: starts a daemon child, reports its pid, then exits. */
static int start_daemon_then_exit(const void *arg, size_t len)
{
	struct exe_process_opts o = {.daemon = true};
	struct exe_process *p;
	int fd = *(const int *)arg;
	pid_t pid;

	(void)len;
	if (exe_process_start(&p, sleep_forever, NULL, 0, &o))
		return 1;
	pid = exe_process_pid(p);
	if (write(fd, &pid, sizeof(pid)) != sizeof(pid))
		return 2;
	return 0; /* exits without destroy: only PR_SET_PDEATHSIG can kill it */
}

Test(process, a_daemon_child_dies_with_its_parent)
{
	struct exe_process *mid;
	int fds[2], st;
	pid_t daemon_pid;

	/* Orphans are re-parented to us, so we can reap the daemon and read
	 * how it died. */
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	cr_assert_eq(pipe(fds), 0);
	mid = start(start_daemon_then_exit, &fds[1], sizeof(int));
	cr_assert_eq(read(fds[0], &daemon_pid, sizeof(daemon_pid)), sizeof(daemon_pid));
	cr_assert_eq(exe_process_join(mid, 5000 * MS), 0);
	exe_process_destroy(mid);
	cr_assert_eq(waitpid(daemon_pid, &st, 0), daemon_pid);
	cr_assert(WIFSIGNALED(st));
	cr_assert_eq(WTERMSIG(st), SIGKILL);
	close(fds[0]);
	close(fds[1]);
}

struct joiner {
	struct exe_process *p;
	int rc;
};

static void *join_thread(void *arg)
{
	struct joiner *j = arg;

	j->rc = exe_process_join(j->p, 5000 * MS);
	return NULL;
}

Test(process, several_threads_can_join_the_same_child)
{
	struct exe_process *p = start(sleep_forever, NULL, 0);
	struct joiner j[3];
	pthread_t t[3];
	int code;

	for (int i = 0; i < 3; i++) {
		j[i] = (struct joiner){.p = p, .rc = 1};
		pthread_create(&t[i], NULL, join_thread, &j[i]);
	}
	struct timespec ts = {0, 20 * MS};
	nanosleep(&ts, NULL);
	exe_process_terminate(p);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(j[i].rc, 0);
	}
	cr_assert_eq(exe_process_exitcode(p, &code), 0);
	cr_assert_eq(code, -SIGTERM);
	exe_process_destroy(p);
}

Test(process, bad_arguments_return_einval)
{
	struct exe_process *p;
	int code;

	cr_assert_eq(exe_process_start(NULL, sum_bytes, NULL, 0, NULL), -EINVAL);
	cr_assert_eq(exe_process_start(&p, NULL, NULL, 0, NULL), -EINVAL);
	cr_assert_eq(exe_process_start(&p, sum_bytes, NULL, 3, NULL), -EINVAL);
	cr_assert_eq(exe_process_join(NULL, 0), -EINVAL);
	cr_assert_eq(exe_process_kill(NULL), -EINVAL);
	cr_assert_eq(exe_process_terminate(NULL), -EINVAL);
	cr_assert_eq(exe_process_exitcode(NULL, &code), -EINVAL);
	cr_assert_not(exe_process_is_alive(NULL));
	cr_assert_eq(exe_process_pid(NULL), -1);
	cr_assert_eq(exe_process_fd(NULL), -1);
	exe_process_destroy(NULL);
}
