/*
 * timers - the teaching text's threading.Timer, on an io context: one-shot
 * timers (exe_call_later), a periodic one (exe_call_every), a timer
 * cancelled before it fires, and a sleep future; each with its measured
 * lateness (when it ran minus when it was due).
 *
 * Timer functions run on the io context's own thread ("exe-io"), not on a
 * thread per timer as Python's Timer does: a thousand timers cost a thousand
 * small records, not a thousand threads.
 *
 * Run: timers [--unit-ms 50] [--ticks 5]
 * Exits non-zero when a timer did not fire, fired when cancelled, or was
 * later than --max-late-ms (default 100, generous for a loaded machine).
 */
#include <executor.h>

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int64_t t_start;

struct shot {
	const char *name;
	int64_t due_ns; /* absolute CLOCK_MONOTONIC deadline */
	int64_t ran_ns; /* 0: never ran */
};

static int later_fn(void *arg)
{
	struct shot *s = arg;
	char name[16] = "?";

	s->ran_ns = exe_now_ns();
	pthread_getname_np(pthread_self(), name, sizeof(name));
	printf("  %7.1f ms  %-10s fired on thread %s, %.3f ms late\n", (double)(s->ran_ns - t_start) / 1e6,
	       s->name, name, (double)(s->ran_ns - s->due_ns) / 1e6);
	return 0;
}

struct ticker {
	int64_t start_ns, interval_ns;
	int ticks, wanted;
	int64_t max_late_ns, sum_late_ns;
};

/* Fixed rate: tick k is due at start + k * interval, however late tick
 * k - 1 was. Returning 1 ends the timer (its future becomes DONE). */
static int tick_fn(void *arg)
{
	struct ticker *t = arg;
	int64_t now = exe_now_ns();
	int64_t late = now - (t->start_ns + (int64_t)(t->ticks + 1) * t->interval_ns);

	t->ticks++;
	if (late > t->max_late_ns)
		t->max_late_ns = late;
	t->sum_late_ns += late;
	printf("  %7.1f ms  tick %d, %.3f ms late\n", (double)(now - t_start) / 1e6, t->ticks,
	       (double)late / 1e6);
	return t->ticks >= t->wanted ? EXE_TIMER_STOP : 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--unit-ms N] [--ticks N] [--max-late-ms N]\n", argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"unit-ms", required_argument, NULL, 'u'},
	    {"ticks", required_argument, NULL, 't'},
	    {"max-late-ms", required_argument, NULL, 'm'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct shot shots[3] = {{.name = "later x3"}, {.name = "later x1"}, {.name = "later x2"}};
	struct shot cancelled = {.name = "cancelled"};
	struct ticker tk = {0};
	struct exe_future *fs[3], *fc, *fe, *fsl;
	struct exe_io *io;
	long unit_ms = 50, max_late_ms = 100;
	int64_t unit, sleep_due, sleep_done, worst = 0;
	int c, rc, crc, bad = 0;

	tk.wanted = 5;
	while ((c = getopt_long(argc, argv, "u:t:m:h", longopts, NULL)) != -1) {
		if (c == 'u')
			unit_ms = atol(optarg);
		else if (c == 't')
			tk.wanted = atoi(optarg);
		else if (c == 'm')
			max_late_ms = atol(optarg);
		else
			usage(argv[0]);
	}
	if (unit_ms < 1 || unit_ms > 10000 || tk.wanted < 1 || tk.wanted > 1000 || max_late_ms < 1)
		usage(argv[0]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	unit = unit_ms * EXE_NS_PER_MS;

	rc = exe_io_create(&io, NULL);
	if (rc) {
		fprintf(stderr, "io: %s\n", exe_strerror(rc));
		return 1;
	}
	printf("io backend %s; one unit = %ld ms\n", exe_io_backend(io), unit_ms);
	t_start = exe_now_ns();

	/* Armed out of order on purpose: they fire in deadline order. */
	int64_t mult[3] = {3, 1, 2};

	for (int i = 0; i < 3; i++) {
		shots[i].due_ns = t_start + mult[i] * unit;
		exe_call_later(io, mult[i] * unit, later_fn, &shots[i], &fs[i]);
	}
	/* Due after the others; cancelled right away: it must never run. */
	cancelled.due_ns = t_start + 2 * unit;
	exe_call_later(io, 2 * unit, later_fn, &cancelled, &fc);
	crc = exe_future_cancel(fc);
	printf("  %7.1f ms  cancel of the 2-unit timer returned %d (%s)\n",
	       (double)(exe_now_ns() - t_start) / 1e6, crc, crc ? exe_strerror(crc) : "cancelled");

	tk.start_ns = exe_now_ns();
	tk.interval_ns = unit;
	exe_call_every(io, unit, tick_fn, &tk, &fe);

	sleep_due = exe_now_ns() + 4 * unit;
	exe_io_sleep(io, 4 * unit, &fsl);
	rc = exe_future_wait(fsl, 60 * EXE_NS_PER_S);
	sleep_done = exe_now_ns();
	printf("  %7.1f ms  exe_io_sleep(4 units) woke main %.3f ms late\n",
	       (double)(sleep_done - t_start) / 1e6, (double)(sleep_done - sleep_due) / 1e6);

	exe_wait(fs, 3, EXE_WAIT_ALL, 60 * EXE_NS_PER_S);
	if (exe_future_result(fe, NULL, 60 * EXE_NS_PER_S) != 0) {
		printf("!! the periodic timer did not finish cleanly\n");
		bad = 1;
	}

	printf("\ntimer            due (ms)   ran (ms)   late (ms)\n");
	for (int i = 0; i < 3; i++) {
		int64_t late = shots[i].ran_ns - shots[i].due_ns;

		printf("  %-12s %9.1f  %9.1f   %9.3f\n", shots[i].name,
		       (double)(shots[i].due_ns - t_start) / 1e6, (double)(shots[i].ran_ns - t_start) / 1e6,
		       (double)late / 1e6);
		if (!shots[i].ran_ns || late < 0)
			bad = 1;
		if (late > worst)
			worst = late;
	}
	printf("  %-12s %9.1f  %9s   %9s   (future %s)\n", cancelled.name,
	       (double)(cancelled.due_ns - t_start) / 1e6, cancelled.ran_ns ? "RAN" : "never", "-",
	       exe_future_state(fc) == EXE_FUTURE_CANCELLED ? "CANCELLED" : "not cancelled");
	printf("  every %ld ms: %d ticks, mean %.3f ms late, worst %.3f ms late\n", unit_ms, tk.ticks,
	       (double)tk.sum_late_ns / 1e6 / (tk.ticks ? tk.ticks : 1), (double)tk.max_late_ns / 1e6);
	if (tk.max_late_ns > worst)
		worst = tk.max_late_ns;
	if (sleep_done - sleep_due > worst)
		worst = sleep_done - sleep_due;

	if (cancelled.ran_ns || crc != 0 || exe_future_state(fc) != EXE_FUTURE_CANCELLED) {
		printf("!! the cancelled timer was not cancelled cleanly\n");
		bad = 1;
	}
	if (tk.ticks != tk.wanted || rc != 0) {
		printf("!! a timer is missing\n");
		bad = 1;
	}
	/* Lateness is measured and shown, not judged: bench_io does that. */
	if (worst > max_late_ms * EXE_NS_PER_MS)
		printf("(worst lateness %.3f ms is over %ld ms: the machine is busy)\n", (double)worst / 1e6,
		       max_late_ms);
	for (int i = 0; i < 3; i++)
		exe_future_unref(fs[i]);
	exe_future_unref(fc);
	exe_future_unref(fe);
	exe_future_unref(fsl);
	exe_io_destroy(io);
	printf("Timers ran in deadline order on the io thread, a cancelled one never ran.\n");
	printf("%s\n", bad ? "FAILED" : "OK");
	return bad;
}
