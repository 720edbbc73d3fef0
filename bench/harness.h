/*
 * harness.h - what every benchmark program in bench/ shares: errors and
 * memory, the clock, medians and percentiles, the calibrated spin loop and
 * the tasks built on it, the common command-line options and the common
 * fields of a JSON result line. Part of the bench_workloads library.
 */
#ifndef BENCH_HARNESS_H
#define BENCH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BENCH_MAX_RUNS 99

/* Latency workloads, one task at a time: the samples of one run (a quarter
 * with --quick), the untimed ones before them, and the sleep between two
 * tasks in "latency" (every worker has parked by then). */
#define BENCH_LAT_SAMPLES 2000
#define BENCH_LAT_WARMUP 50
#define BENCH_LAT_IDLE_NS (200 * 1000)

struct bench_opts {
	bool quick, json;
	int runs;             /* runs per figure: 5, 3 with --quick, or --runs */
	const char *only;     /* --only: a system name prefix, or NULL for all */
	const char *workload; /* --workload: only this one, or NULL for all */
};

extern struct bench_opts bench_opt;

/* Online CPUs, at least 1; set by bench_init(). */
extern unsigned bench_ncpu;

/* The program's name, the prefix of bench_die()'s messages. */
extern const char *bench_prog_name;

/* Sets the program's name and bench_ncpu. bench_parse_opts() calls it. */
void bench_init(const char *prog);

/* Flushes stdout, prints "prog: message" to stderr and exits with 1. */
void bench_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* calloc() that never returns NULL (and never asks for 0 bytes). */
void *bench_calloc(size_t n, size_t size);

/* CLOCK_MONOTONIC, one clock for every process. */
int64_t bench_now_ns(void);
void bench_sleep_ns(int64_t ns);

/* Parses --quick, --json, --runs N (1..BENCH_MAX_RUNS), --only SYSTEM,
 * --workload W and --help (@usage on stdout, exit 0) into bench_opt, after
 * bench_init(@prog). @extra, when not NULL, sees each argument first and
 * returns how many arguments it took (0: not one of its own). Anything else
 * is "unknown or incomplete option", @usage on stderr, exit 2. */
void bench_parse_opts(const char *prog, int argc, char **argv, void (*usage)(FILE *out),
		      int (*extra)(int argc, char **argv, int i));

/* @n / 5 with --quick, at least 1. */
size_t bench_scaled(size_t n);

/* Whether --only selects @name (a prefix of it), or --only was not given. */
bool bench_only_matches(const char *name);

/* Whether --workload is @name, or --workload was not given. */
bool bench_workload_matches(const char *name);

/* ---- statistics ---- */

/* Sorts @v. For an even count it takes the upper middle, so the figure is
 * one that a run really produced. */
double bench_median(double *v, int n);

/* The median over @n runs (at most BENCH_MAX_RUNS) of the double at
 * offset @field in each of the @size-byte records at @runs. */
double bench_median_of(const void *runs, size_t size, size_t field, int n);

void bench_sort_i64(int64_t *v, size_t n);

/* Nearest rank on a sorted array. */
int64_t bench_percentile(const int64_t *sorted, size_t n, unsigned pct);

/* The figures of one latency run of @n samples. */
struct bench_lat {
	double mean, p50, p99; /* submit to result */
	double sp50, sp99;     /* submit to start */
	double caller;         /* percent of the tasks run on the submitting thread */
	double wall;           /* the run's wall time, set by the caller */
	double cpu;            /* CPU time over wall time, set by the caller */
};

/* Sorts @to_result and, when not NULL, @to_start, and fills @out's figures
 * from them; @sum is the sum of @to_result, @on_caller the tasks that ran
 * on the submitting thread. */
void bench_lat_figures(struct bench_lat *out, int64_t *to_result, int64_t *to_start, size_t n, int64_t sum,
		       size_t on_caller);

/* Each figure of @out: the median of that figure over the @n @runs. */
void bench_lat_medians(struct bench_lat *out, const struct bench_lat *runs, int n);

/* ---- the work ---- */

/* Calibrated by bench_calibrate(): iterations of bench_spin() for ~1 us and
 * ~100 us, and the median time each took right after. */
extern uint64_t bench_iters_1us, bench_iters_100us;
extern double bench_spin_ns_1us, bench_spin_ns_100us;

void bench_spin(uint64_t iters);
void bench_calibrate(void);

/* "spin1us = ... ns (... iterations), spin100us = ..." and a blank line. */
void bench_print_spins(void);

/* The task returns at once. */
int bench_task_empty(void *arg, void **result);

/* The task spins *(const uint64_t *)@arg iterations. @arg must point to
 * memory that exists before any pool does, so process workers read it too. */
int bench_task_spin(void *arg, void **result);

/* ---- JSON result lines ---- */

/* ,"key":@v with @decimals decimals, or ,"key":null when !@have. */
void bench_json_num(const char *key, bool have, double v, int decimals);

/* The start of a result line, the fields every task benchmark prints:
 * {"system","workload","tasks","seconds","ns_per_task","tasks_per_s",
 * "p50_ns","p99_ns"} (the percentiles null unless @latency). The caller adds
 * its own fields and closes the line with "}\n". */
void bench_json_head(const char *system, const char *workload, size_t tasks, double seconds, double ns,
		     bool latency, double p50, double p99);

/* ,"start_p50_ns","start_p99_ns","caller_pct": a latency row's note. */
void bench_json_latency(double start_p50, double start_p99, double caller_pct);

#ifdef __cplusplus
}
#endif

#endif /* BENCH_HARNESS_H */
