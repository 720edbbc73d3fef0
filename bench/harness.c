/*
 * harness.c - the helpers behind harness.h, shared by every benchmark
 * program: errors, the clock, statistics, the spin loop, options, JSON.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

struct bench_opts bench_opt;
unsigned bench_ncpu = 1;
const char *bench_prog_name = "bench";
uint64_t bench_iters_1us, bench_iters_100us;
double bench_spin_ns_1us, bench_spin_ns_100us;

void bench_init(const char *prog)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	bench_prog_name = prog;
	bench_ncpu = cpus > 0 ? (unsigned)cpus : 1;
}

void bench_die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: ", bench_prog_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void *bench_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		bench_die("out of memory");
	return p;
}

int64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_sleep_ns(int64_t ns)
{
	struct timespec ts = { ns / 1000000000, ns % 1000000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* ---- options ---- */

void bench_parse_opts(const char *prog, int argc, char **argv, void (*usage)(FILE *out),
		      int (*extra)(int argc, char **argv, int i))
{
	bench_init(prog);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int taken = extra ? extra(argc, argv, i) : 0;

		if (taken) {
			i += taken - 1;
		} else if (!strcmp(a, "--quick")) {
			bench_opt.quick = true;
		} else if (!strcmp(a, "--json")) {
			bench_opt.json = true;
		} else if (!strcmp(a, "--runs") && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);

			if (*end || v < 1 || v > BENCH_MAX_RUNS)
				bench_die("--runs wants 1..%d", BENCH_MAX_RUNS);
			bench_opt.runs = (int)v;
		} else if (!strcmp(a, "--only") && i + 1 < argc) {
			bench_opt.only = argv[++i];
		} else if (!strcmp(a, "--workload") && i + 1 < argc) {
			bench_opt.workload = argv[++i];
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		} else {
			fprintf(stderr, "%s: unknown or incomplete option '%s'\n", prog, a);
			usage(stderr);
			exit(2);
		}
	}
	if (!bench_opt.runs)
		bench_opt.runs = bench_opt.quick ? 3 : 5;
}

size_t bench_scaled(size_t n)
{
	if (bench_opt.quick)
		n /= 5;
	return n ? n : 1;
}

bool bench_only_matches(const char *name)
{
	return !bench_opt.only || !strncmp(name, bench_opt.only, strlen(bench_opt.only));
}

bool bench_workload_matches(const char *name)
{
	return !bench_opt.workload || !strcmp(bench_opt.workload, name);
}

/* ---- statistics ---- */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

double bench_median_of(const void *runs, size_t size, size_t field, int n)
{
	double v[BENCH_MAX_RUNS];

	for (int r = 0; r < n; r++)
		memcpy(&v[r], (const char *)runs + (size_t)r * size + field, sizeof(v[r]));
	return bench_median(v, n);
}

void bench_sort_i64(int64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_i64);
}

int64_t bench_percentile(const int64_t *sorted, size_t n, unsigned pct)
{
	size_t rank = (n * pct + 99) / 100;

	return sorted[rank ? rank - 1 : 0];
}

void bench_lat_figures(struct bench_lat *out, int64_t *to_result, int64_t *to_start, size_t n, int64_t sum,
		       size_t on_caller)
{
	bench_sort_i64(to_result, n);
	out->mean = (double)sum / (double)n;
	out->p50 = (double)bench_percentile(to_result, n, 50);
	out->p99 = (double)bench_percentile(to_result, n, 99);
	if (to_start) {
		bench_sort_i64(to_start, n);
		out->sp50 = (double)bench_percentile(to_start, n, 50);
		out->sp99 = (double)bench_percentile(to_start, n, 99);
	}
	out->caller = 100.0 * (double)on_caller / (double)n;
}

void bench_lat_medians(struct bench_lat *out, const struct bench_lat *runs, int n)
{
#define MEDIAN_OF(f) bench_median_of(runs, sizeof(*runs), offsetof(struct bench_lat, f), n)
	out->mean = MEDIAN_OF(mean);
	out->p50 = MEDIAN_OF(p50);
	out->p99 = MEDIAN_OF(p99);
	out->sp50 = MEDIAN_OF(sp50);
	out->sp99 = MEDIAN_OF(sp99);
	out->caller = MEDIAN_OF(caller);
	out->wall = MEDIAN_OF(wall);
	out->cpu = MEDIAN_OF(cpu);
#undef MEDIAN_OF
}

/* ---- the work ---- */

/* volatile: every increment is a load and a store the compiler must keep, so
 * the loop runs as long as calibrated at any optimisation level. */
void bench_spin(uint64_t iters)
{
	volatile uint64_t i;

	for (i = 0; i < iters; i++)
		;
}

static double time_spin(uint64_t iters, int reps)
{
	int64_t t0 = bench_now_ns();

	for (int i = 0; i < reps; i++)
		bench_spin(iters);
	return (double)(bench_now_ns() - t0) / reps;
}

/* Medians, not minima: on a shared or virtual machine the loop's speed drifts
 * by tens of percent, and the median is the speed the workloads will meet. */
static double spin_median(uint64_t iters, int reps, int trials)
{
	double t[15];

	for (int i = 0; i < trials; i++)
		t[i] = time_spin(iters, reps);
	return bench_median(t, trials);
}

void bench_calibrate(void)
{
	const uint64_t probe = 1u << 20;
	double per_probe = spin_median(probe, 1, 9);

	bench_iters_1us = (uint64_t)(1000.0 * probe / per_probe + 0.5);
	bench_iters_100us = (uint64_t)(100000.0 * probe / per_probe + 0.5);
	if (!bench_iters_1us)
		bench_iters_1us = 1;
	bench_spin_ns_1us = spin_median(bench_iters_1us, 1000, 9);
	bench_spin_ns_100us = spin_median(bench_iters_100us, 5, 9);
}

void bench_print_spins(void)
{
	printf("spin1us = %.0f ns (%llu iterations), spin100us = %.1f us (%llu iterations)\n\n",
	       bench_spin_ns_1us, (unsigned long long)bench_iters_1us, bench_spin_ns_100us / 1000,
	       (unsigned long long)bench_iters_100us);
}

int bench_task_empty(void *arg, void **result)
{
	(void)arg;
	*result = NULL;
	return 0;
}

int bench_task_spin(void *arg, void **result)
{
	bench_spin(*(const uint64_t *)arg);
	*result = NULL;
	return 0;
}

/* ---- JSON ---- */

void bench_json_num(const char *key, bool have, double v, int decimals)
{
	printf(",\"%s\":", key);
	if (have)
		printf("%.*f", decimals, v);
	else
		printf("null");
}

void bench_json_head(const char *system, const char *workload, size_t tasks, double seconds, double ns,
		     bool latency, double p50, double p99)
{
	printf("{\"system\":\"%s\",\"workload\":\"%s\",\"tasks\":%zu,\"seconds\":%.6f,"
	       "\"ns_per_task\":%.1f,\"tasks_per_s\":%.0f",
	       system, workload, tasks, seconds, ns, ns > 0 ? 1e9 / ns : 0.0);
	bench_json_num("p50_ns", latency, p50, 0);
	bench_json_num("p99_ns", latency, p99, 0);
}

void bench_json_latency(double start_p50, double start_p99, double caller_pct)
{
	bench_json_num("start_p50_ns", true, start_p50, 0);
	bench_json_num("start_p99_ns", true, start_p99, 0);
	printf(",\"caller_pct\":%.1f", caller_pct);
}
