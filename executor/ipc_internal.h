/*
 * ipc_internal.h - what the process-shared mutex and queue share: the robust
 * mutex setup and locking, futex calls on shared (not private) words, and
 * the header checksum.
 */
#ifndef EXE_IPC_INTERNAL_H
#define EXE_IPC_INTERNAL_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EXE_IPC_VERSION 1u

/* Initialise @m as robust, process-shared, error-checking.
 * Return: 0 or a negative code from pthread. */
int exe__ipc_mutex_init(pthread_mutex_t *m);

/* Whether @m's type word is the one exe__ipc_mutex_init() writes (robust,
 * process-shared, error-checking): a lock of another type, forged by
 * whoever wrote the shared bytes, could block or succeed where the callers
 * expect neither. Always true where the type word is not known (not glibc). */
bool exe__ipc_mutex_sane(const pthread_mutex_t *m);

/* Lock @m, waiting up to @timeout_ns (< 0: forever, 0: try once).
 * Return: 0, -EOWNERDEAD (locked), -ETIMEDOUT (0 included), -EBADMSG (corrupted bytes), -ENOTRECOVERABLE,
 * -EDEADLK. */
int exe__ipc_mutex_lock_timeout(pthread_mutex_t *m, int64_t timeout_ns);

/* A 64-bit mix of a segment's immutable header fields: a header whose
 * fields were overwritten (or that was never ours) fails the comparison. */
static inline uint64_t exe__ipc_check(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
	uint64_t h = 0x9e3779b97f4a7c15ull, v[4] = {a, b, c, d};

	for (int i = 0; i < 4; i++) {
		h ^= v[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
		h *= 0xbf58476d1ce4e5b9ull;
		h ^= h >> 31;
	}
	return h;
}

/* Futex calls without FUTEX_PRIVATE_FLAG: the word lives in memory mapped
 * by several processes, so the kernel must key it by page, not by mm.
 * Return: 0 (woken, value changed, signal), -ETIMEDOUT. */
static inline int exe__futex_wait_shared(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns)
{
	struct timespec ts, *tsp = NULL;

	if (deadline_ns >= 0) {
		ts.tv_sec = deadline_ns / 1000000000;
		ts.tv_nsec = deadline_ns % 1000000000;
		tsp = &ts;
	}
	if (syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, tsp, NULL, FUTEX_BITSET_MATCH_ANY) == 0)
		return 0;
	return errno == ETIMEDOUT ? -ETIMEDOUT : 0;
}

#define EXE_FUTEX_WAKE_ALL_SHARED INT_MAX

static inline void exe__futex_wake_shared(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

#endif
