/*
 * ipc_helpers.h - what the cross-process suites (test_ipc, test_ipc_hostile)
 * share: forking a child that runs a function, its exit status, shared
 * memory to put an ipc object in, and the queue's count as one value.
 * Include after <criterion/criterion.h> and <executor.h>.
 */
#ifndef EXE_TESTS_IPC_HELPERS_H
#define EXE_TESTS_IPC_HELPERS_H

#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* Fork; the child runs @fn(@arg) and _exit()s with its return value (no
 * atexit handlers of the test runner run in the child). */
static inline pid_t spawn(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(fn(arg));
	return pid;
}

/* The child's exit status, or minus the signal that killed it. */
static inline int wait_exit(pid_t pid)
{
	int st;

	cr_assert_eq(waitpid(pid, &st, 0), pid);
	if (WIFSIGNALED(st))
		return -WTERMSIG(st);
	return WEXITSTATUS(st);
}

static inline void *map_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	return p;
}

/* exe_ipc_queue_count() as one value: the count, or the negative code. */
static inline long ipc_count(struct exe_ipc_queue *q)
{
	size_t n = 0;
	int rc = exe_ipc_queue_count(q, &n);

	return rc ? rc : (long)n;
}

#endif
