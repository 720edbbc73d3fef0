/*
 * fiber_spawn_join - gevent's first lesson in C: two fibers, "eat" and
 * "play", each sleeping on ONE thread, finish in the longer sleep, not the
 * sum, because a fiber switches whenever it waits.
 *
 *	g1 = gevent.spawn(eat, 'egon')       exe_fiber_spawn(io, eat, "egon", ...)
 *	g2 = gevent.spawn(play, 'egon')      exe_fiber_spawn(io, play, "egon", ...)
 *	gevent.joinall([g1, g2])             exe_wait(fs, 2, EXE_WAIT_ALL, ...)
 *
 * Then the trap the teaching text warns about: the same two fibers with a
 * plain nanosleep(), which does not switch, take the sum - one blocked
 * fiber blocks the whole thread - and the watchdog names the culprit.
 *
 * Run: fiber_spawn_join [--unit-ms 100]
 * Exits non-zero unless the switching run took about the longer sleep and
 * the blocking run about the sum.
 */
#include <executor.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t unit_ns = 100 * EXE_NS_PER_MS;
static int64_t t0;
static int watchdog_reports;

static double ms_since_start(void)
{
	return (double)(exe_now_ns() - t0) / 1e6;
}

/* What a fiber does while "busy": switch (exe_fiber_sleep) or block. */
static int wait_units(int units, bool blocking)
{
	if (blocking) {
		int64_t ns = units * unit_ns;
		struct timespec ts = {ns / EXE_NS_PER_S, ns % EXE_NS_PER_S};

		return nanosleep(&ts, NULL);
	}
	return exe_fiber_sleep(units * unit_ns);
}

struct who {
	const char *name;
	bool blocking;
};

static int eat(void *arg, void **result)
{
	struct who *w = arg;

	(void)result;
	printf("%7.1f ms  %s eat 1 (fiber \"%s\")\n", ms_since_start(), w->name, exe_fiber_name());
	wait_units(2, w->blocking);
	printf("%7.1f ms  %s eat 2\n", ms_since_start(), w->name);
	return 0;
}

static int play(void *arg, void **result)
{
	struct who *w = arg;

	(void)result;
	printf("%7.1f ms  %s play 1 (fiber \"%s\")\n", ms_since_start(), w->name, exe_fiber_name());
	wait_units(1, w->blocking);
	printf("%7.1f ms  %s play 2\n", ms_since_start(), w->name);
	return 0;
}

static void on_error(const char *what, int code, const char *msg, void *arg)
{
	(void)arg;
	watchdog_reports++;
	printf("           [error hook] %s (%s): %s\n", what, exe_strerror(code), msg ? msg : "");
}

/* Spawn both, join both; return the elapsed milliseconds or -1. */
static double run(struct exe_io *io, bool blocking)
{
	struct who w = {"egon", blocking};
	struct exe_future *fs[2];
	double took;

	t0 = exe_now_ns();
	if (exe_fiber_spawn(io, eat, &w, &(struct exe_fiber_opts){.name = "eat"}, &fs[0]) ||
	    exe_fiber_spawn(io, play, &w, &(struct exe_fiber_opts){.name = "play"}, &fs[1]))
		return -1;
	if (exe_wait(fs, 2, EXE_WAIT_ALL, EXE_FOREVER) != 2)
		return -1;
	took = ms_since_start();
	printf("%7.1f ms  main: both joined\n", took);
	exe_future_unref(fs[0]);
	exe_future_unref(fs[1]);
	return took;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {{"unit-ms", required_argument, NULL, 'u'}, {0}};
	struct exe_io *io;
	double unit_ms, fast, slow;
	int c, rc, bad = 0;

	while ((c = getopt_long(argc, argv, "u:", longopts, NULL)) != -1) {
		if (c != 'u') {
			fprintf(stderr, "usage: %s [--unit-ms N]\n", argv[0]);
			return 2;
		}
		unit_ns = atol(optarg) * EXE_NS_PER_MS;
	}
	if (unit_ns <= 0)
		return 2;
	unit_ms = (double)unit_ns / 1e6;
	setvbuf(stdout, NULL, _IOLBF, 0);
	rc = exe_io_create(&io, NULL);
	if (rc) {
		fprintf(stderr, "io: %s\n", exe_strerror(rc));
		return 1;
	}
	exe_set_error_hook(on_error, NULL);
	exe_fiber_watchdog(io, unit_ns / 2);

	printf(
	    "--- eat sleeps %.0f ms, play %.0f ms, both fibers on one io thread, switching on each wait:\n",
	    2 * unit_ms, unit_ms);
	fast = run(io, false);
	printf("--- the same with nanosleep(), which does not switch (the trap):\n");
	slow = run(io, true);
	exe_io_destroy(io);
	exe_set_error_hook(NULL, NULL);

	printf("\nswitching: %.0f ms (the longer sleep is %.0f ms); blocking: %.0f ms (the sum is %.0f ms); "
	       "watchdog reports: %d\n",
	       fast, 2 * unit_ms, slow, 3 * unit_ms, watchdog_reports);
	if (fast < 0 || fast < 2 * unit_ms || fast >= 2.8 * unit_ms) {
		printf("FAILED: the switching fibers did not overlap\n");
		bad = 1;
	}
	if (slow < 3 * unit_ms) {
		printf("FAILED: the blocking fibers overlapped\n");
		bad = 1;
	}
	if (watchdog_reports < 1) {
		printf("FAILED: the watchdog did not report the blocking fibers\n");
		bad = 1;
	}
	return bad;
}
