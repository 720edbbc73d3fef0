/*
 * future_helpers.h - small helpers the future, wait and compose suites share.
 * Header-only (static inline): each Criterion suite is its own executable.
 */
#ifndef EXE_TESTS_FUTURE_HELPERS_H
#define EXE_TESTS_FUTURE_HELPERS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <time.h>

#include <executor.h>

static inline void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* A new promise; the test owns its reference. */
static inline struct exe_future *promise(void)
{
	struct exe_future *f = NULL;

	cr_assert_eq(exe_future_create(&f), 0);
	cr_assert_not_null(f);
	return f;
}

static inline void promises(struct exe_future **fs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fs[i] = promise();
}

static inline void unref_all(struct exe_future **fs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		exe_future_unref(fs[i]);
}

#endif
