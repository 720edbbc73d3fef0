/*
 * io_backends.h - run one test body on every io backend.
 *
 *	IO_TEST(suite, name) { ... uses `io` ... }
 *
 * defines suite_uring::name and suite_fallback::name, each making a fresh
 * context with that backend, running the body, then destroying it. The
 * io_uring variant is reported as skipped when the kernel refuses io_uring
 * (seccomp, kernel.io_uring_disabled, -ENOMEM at ring setup as the library
 * counts it): the fallback variant still runs.
 */
#ifndef TESTS_IO_BACKENDS_H
#define TESTS_IO_BACKENDS_H

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <string.h>

#include <executor.h>

static inline struct exe_io *io_test_make(int backend, bool manual)
{
	struct exe_io_opts o = {.backend = backend, .manual = manual};
	struct exe_io *io = NULL;
	int rc = exe_io_create(&io, &o);

	if (backend == EXE_IO_URING &&
	    (rc == -ENOSYS || rc == -EPERM || rc == -EACCES || rc == -EOPNOTSUPP || rc == -ENOMEM)) {
		/* A skip, never a pass: the report must say it did not run. */
		cr_skip_test("io_uring refused by the kernel (%d): io_uring case not run", rc);
	}
	cr_assert_eq(rc, 0, "exe_io_create: %d", rc);
	cr_assert_str_eq(exe_io_backend(io), backend == EXE_IO_URING ? "io_uring" : "fallback");
	return io;
}

#define IO_TEST_OPTS(suite, name, ...)                                                                       \
	static void suite##_##name##_body(struct exe_io *io, int backend __attribute__((unused)));           \
	static void suite##_##name##_run(int backend)                                                        \
	{                                                                                                    \
		struct exe_io *io = io_test_make(backend, false);                                            \
		if (!io)                                                                                     \
			return;                                                                              \
		suite##_##name##_body(io, backend);                                                          \
		exe_io_destroy(io);                                                                          \
	}                                                                                                    \
	Test(suite##_uring, name, ##__VA_ARGS__)                                                             \
	{                                                                                                    \
		suite##_##name##_run(EXE_IO_URING);                                                          \
	}                                                                                                    \
	Test(suite##_fallback, name, ##__VA_ARGS__)                                                          \
	{                                                                                                    \
		suite##_##name##_run(EXE_IO_FALLBACK);                                                       \
	}                                                                                                    \
	static void suite##_##name##_body(struct exe_io *io, int backend __attribute__((unused)))

#define IO_TEST(suite, name) IO_TEST_OPTS(suite, name)

#endif
