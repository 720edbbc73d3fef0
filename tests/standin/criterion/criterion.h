/*
 * criterion.h (stand-in) - the dozen Criterion macros the contract suites
 * use, so the same test bodies also build as plain programs: Criterion
 * itself aborts under ThreadSanitizer, and these suites are exactly the
 * concurrent code TSan should watch. Found first on the include path of
 * the *_plain test programs only (tests/CMakeLists.txt).
 *
 * Each Test() registers itself from a constructor; main() runs every test
 * (or those whose "suite::name" contains argv[1]) in a forked child of a
 * single-threaded parent, as Criterion does, so tests keep their own
 * process state and TSan never sees a fork of a threaded process. A failed
 * assertion prints file:line and exits the child with 1; cr_skip_test()
 * exits with 77; the suite's .timeout becomes an alarm(). The program exits
 * 1 if any test failed, 77 if all were skipped, else 0.
 */
#ifndef EXE_CRITERION_STANDIN_H
#define EXE_CRITERION_STANDIN_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct sit_opts {
	int sit_unused; /* lets a Test() without options initialise to {0} */
	int timeout;
	void (*init)(void);
	void (*fini)(void);
};

struct sit_test {
	const char *suite, *name;
	void (*fn)(void);
	const struct sit_opts *opts;
	struct sit_test *next;
};

struct sit_suite {
	const char *name;
	const struct sit_opts *opts;
	struct sit_suite *next;
};

static struct sit_test *sit_tests, **sit_tail = &sit_tests;
static struct sit_suite *sit_suites;

static inline void sit_add_test(struct sit_test *t)
{
	*sit_tail = t; /* in definition order, as the file reads */
	sit_tail = &t->next;
}

static inline __attribute__((noreturn, format(printf, 4, 5))) void
sit_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: assertion failed: %s", file, line, expr);
	if (fmt && *fmt) {
		fputs(": ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fputc('\n', stderr);
	fflush(NULL);
	_exit(1);
}

static inline __attribute__((noreturn, format(printf, 1, 2))) void sit_skip(const char *fmt, ...)
{
	va_list ap;

	fputs("skipped: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(NULL);
	_exit(77);
}

#define TestSuite(suite, ...)                                                                                \
	static const struct sit_opts sit_suite_opts_##suite = {.sit_unused = 0, __VA_ARGS__};                \
	static struct sit_suite sit_suite_##suite = {#suite, &sit_suite_opts_##suite, NULL};                 \
	__attribute__((constructor)) static void sit_suite_reg_##suite(void)                                 \
	{                                                                                                    \
		sit_suite_##suite.next = sit_suites;                                                         \
		sit_suites = &sit_suite_##suite;                                                             \
	}                                                                                                    \
	struct sit_semicolon_##suite

#define Test(suite, name, ...)                                                                               \
	static void suite##_##name##_sit(void);                                                              \
	static const struct sit_opts suite##_##name##_sit_opts = {.sit_unused = 0, __VA_ARGS__};             \
	static struct sit_test suite##_##name##_sit_t = {#suite, #name, suite##_##name##_sit,                \
	                                                 &suite##_##name##_sit_opts, NULL};                  \
	__attribute__((constructor)) static void suite##_##name##_sit_reg(void)                              \
	{                                                                                                    \
		sit_add_test(&suite##_##name##_sit_t);                                                       \
	}                                                                                                    \
	static void suite##_##name##_sit(void)

#define cr_assert(cond, ...)                                                                                 \
	do {                                                                                                 \
		if (!(cond))                                                                                 \
			sit_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);                                 \
	} while (0)
#define cr_expect cr_assert
#define cr_assert_not(cond, ...) cr_assert(!(cond), __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) cr_assert(strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_assert_fail(...) sit_fail(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_skip_test(...) sit_skip("" __VA_ARGS__)
#define cr_log_warn(...) (fprintf(stderr, "warning: " __VA_ARGS__), fputc('\n', stderr))
#define cr_log_info(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr))

static int sit_suite_timeout(const char *suite)
{
	for (struct sit_suite *s = sit_suites; s; s = s->next)
		if (!strcmp(s->name, suite))
			return s->opts->timeout;
	return 0;
}

static int sit_run(struct sit_test *t)
{
	int timeout = t->opts->timeout ? t->opts->timeout : sit_suite_timeout(t->suite);
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		/* Sanitizer slowdowns: twice the suite's bound (60 s if none). */
		alarm((unsigned)(timeout > 0 ? 2 * timeout : 60));
		if (t->opts->init)
			t->opts->init();
		t->fn();
		if (t->opts->fini)
			t->opts->fini();
		fflush(NULL);
		exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	fprintf(stderr, "%s::%s: killed by signal %d%s\n", t->suite, t->name, WTERMSIG(status),
	        WTERMSIG(status) == SIGALRM ? " (timed out)" : "");
	return 1;
}

int main(int argc, char **argv)
{
	int run = 0, failed = 0, skipped = 0;

	for (struct sit_test *t = sit_tests; t; t = t->next) {
		char full[256];
		int rc;

		snprintf(full, sizeof(full), "%s::%s", t->suite, t->name);
		if (argc > 1 && !strstr(full, argv[1]))
			continue;
		rc = sit_run(t);
		run++;
		if (rc == 77) {
			skipped++;
			printf("[SKIP] %s\n", full);
		} else if (rc) {
			failed++;
			printf("[FAIL] %s (%d)\n", full, rc);
		} else {
			printf("[PASS] %s\n", full);
		}
	}
	printf("%d run, %d failed, %d skipped\n", run, failed, skipped);
	return failed ? 1 : run && skipped == run ? 77 : 0;
}

#endif
