/*
 * futex.h - the two futex calls the library parks on, with absolute
 * CLOCK_MONOTONIC deadlines so a wait that wakes early never stretches its
 * bound. In a fiber the wait parks the fiber instead of the thread
 * (park.h), and every wake also wakes fibers parked on the word.
 */
#ifndef EXE_FUTEX_H
#define EXE_FUTEX_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "park.h"

/* Sleep while *@word == @expected, until woken or @deadline_ns (< 0: none).
 * Return: 0 (woken, or the word had changed, or a signal), -ETIMEDOUT;
 * in a fiber also -ECANCELED. */
static inline int exe__futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns)
{
	struct timespec ts, *tsp = NULL;

	if (exe__in_fiber())
		return exe__fiber_park_word(word, expected, deadline_ns);
	if (deadline_ns >= 0) {
		ts.tv_sec = deadline_ns / 1000000000;
		ts.tv_nsec = deadline_ns % 1000000000;
		tsp = &ts;
	}
	if (syscall(SYS_futex, word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, tsp, NULL,
	            FUTEX_BITSET_MATCH_ANY) == 0)
		return 0;
	return errno == ETIMEDOUT ? -ETIMEDOUT : 0;
}

static inline void exe__futex_wake(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
	exe__park_wake(word, n);
}

#define EXE_FUTEX_WAKE_ALL INT_MAX

#endif
