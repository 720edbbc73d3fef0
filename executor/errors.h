/* errors.h - internal error reporting and deadline helpers. */
#ifndef EXE_ERRORS_H
#define EXE_ERRORS_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

/* Send a failure that has no caller to the error hook. */
void exe__report_error(const char *what, int code, const char *msg);

/* An absolute CLOCK_MONOTONIC deadline for a relative timeout; -1 = none. */
int64_t exe__deadline(int64_t timeout_ns);

/*
 * What a blocking queue call that cannot go on returns now, or 0 to (go on)
 * wait: closed and drained -EPIPE, a 0 timeout or a passed deadline
 * -ETIMEDOUT (a poll is a 0-timeout wait). One ladder for every put and
 * get, so they agree.
 */
static inline int exe__blocked_verdict(bool closed, int64_t timeout_ns, bool timed_out)
{
	if (closed)
		return -EPIPE;
	if (timeout_ns == 0)
		return -ETIMEDOUT;
	return timed_out ? -ETIMEDOUT : 0;
}

#endif
