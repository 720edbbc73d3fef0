/*
 * pool_report.c - bench_pool's rows: kept for the ratios and the targets,
 * printed as a table row or a JSON line as each is added, and the targets
 * libexecutor is held to. See bench_pool.c for how to read them.
 */
#include <stdio.h>
#include <string.h>

#include "bench_pool.h"

#define MAX_RESULTS 64

/* The row the "vs raw" column divides by. */
static const enum sys_id sys_base[NSYS] = {
	SYS_RAW, SYS_RAW, SYS_RAW, SYS_RAWPROC, SYS_RAWPROC, SYS_RAW, SYS_RAWPROC,
};

static struct result results[MAX_RESULTS];
static int nresults;

const struct result *find_result(enum sys_id sys, const char *workload)
{
	for (int i = 0; i < nresults; i++)
		if (results[i].sys == sys && !strcmp(results[i].workload, workload))
			return &results[i];
	return NULL;
}

static void print_json(const struct result *r)
{
	bench_json_head(sys_name[r->sys], r->workload, r->tasks, r->seconds, r->ns, r->latency, r->p50,
			r->p99);
	if (r->latency)
		bench_json_latency(r->start_p50, r->start_p99, r->caller_pct);
	if (r->efficiency > 0)
		printf(",\"efficiency_pct\":%.1f", r->efficiency);
	if (r->work_ratio > 0)
		printf(",\"work_ratio\":%.3f", r->work_ratio);
	if (r->memory)
		printf(",\"bytes_per_task\":%.1f", r->bytes);
	if (r->detect > 0)
		printf(",\"detect_p50_ns\":%.0f", r->detect);
	printf("}\n");
}

void print_table_header(void)
{
	printf("%-21s %-14s %7s %10s %12s %9s %8s %8s  %s\n", "system", "workload", "tasks", "ns/task",
	       "tasks/s", "vs raw", "p50_ns", "p99_ns", "note");
}

static void print_row(const struct result *r)
{
	const struct result *raw = find_result(sys_base[r->sys], r->workload);
	char ratio[24] = "-", p50[24] = "-", p99[24] = "-";

	if (raw && r->ns > 0 && !r->memory && strcmp(r->workload, "callback"))
		snprintf(ratio, sizeof(ratio), "%.1fx", raw->ns / r->ns);
	if (r->latency) {
		snprintf(p50, sizeof(p50), "%.0f", r->p50);
		snprintf(p99, sizeof(p99), "%.0f", r->p99);
	}
	printf("%-21s %-14s %7zu %10.1f %12.0f %9s %8s %8s  %s\n", sys_name[r->sys], r->workload, r->tasks,
	       r->ns, r->ns > 0 ? 1e9 / r->ns : 0.0, ratio, p50, p99, r->note);
}

void add_result(const struct result *r)
{
	if (nresults == MAX_RESULTS)
		bench_die("too many results");
	results[nresults] = *r;
	r = &results[nresults++];
	if (bench_opt.json)
		print_json(r);
	else
		print_row(r);
	fflush(stdout);
}

void set_latency(struct result *r, const struct bench_lat *runs)
{
	struct bench_lat m;

	bench_lat_medians(&m, runs, bench_opt.runs);
	r->ns = m.mean;
	r->seconds = m.wall / 1e9;
	r->p50 = m.p50;
	r->p99 = m.p99;
	r->start_p50 = m.sp50;
	r->start_p99 = m.sp99;
	r->caller_pct = m.caller;
}

/* ---- summary ---- */

/* @le: the target is an upper bound; else a lower bound. */
static void verdict(const char *what, bool have, double v, const char *unit, bool le, double target)
{
	char goal[32], got[32] = "-";

	snprintf(goal, sizeof(goal), "%s %g %s", le ? "<=" : ">=", target, unit);
	if (have)
		snprintf(got, sizeof(got), "%.1f %s", v, unit);
	printf("  %-26s %12s   target %-12s %s\n", what, got, goal,
	       !have ? "n/a" : (le ? v <= target : v >= target) ? "PASS" : "MISS");
}

bool any_result(enum sys_id sys)
{
	for (int i = 0; i < nresults; i++)
		if (results[i].sys == sys)
			return true;
	return false;
}

void summary_threads(void)
{
	const struct result *lib = find_result(SYS_LIB, "empty");
	const struct result *raw = find_result(SYS_RAW, "empty");
	const struct result *naive = find_result(SYS_NAIVE, "empty");
	const struct result *r;

	printf("\ntargets (libexecutor-threads):\n");
	verdict("empty ns/task", lib, lib ? lib->ns : 0, "ns", true, 120);
	verdict("empty vs raw-threads", lib && raw, lib && raw ? raw->ns / lib->ns : 0, "x", false, 250);
	verdict("empty vs naive-pool", lib && naive, lib && naive ? naive->ns / lib->ns : 0, "x", false, 2.5);
	r = find_result(SYS_LIB, "spin1us");
	verdict("spin1us ns/task", r, r ? r->ns : 0, "ns", true, 600);
	r = find_result(SYS_LIB, "spin100us");
	verdict("spin100us efficiency", r, r ? r->efficiency : 0, "%", false, 97);
	r = find_result(SYS_LIB, "latency");
	verdict("latency p50 (parked)", r, r ? r->p50 / 1000 : 0, "us", true, 6);
	verdict("latency p99 (parked)", r, r ? r->p99 / 1000 : 0, "us", true, 20);
	r = find_result(SYS_LIB, "latency-hot");
	verdict("latency p50 (hot)", r, r ? r->p50 / 1000 : 0, "us", true, 1);
	r = find_result(SYS_LIB, "latency-worker");
	naive = find_result(SYS_NAIVE, "latency-worker");
	verdict("latency-worker p50 vs naive", r && naive, r && naive ? naive->p50 / r->p50 : 0, "x", false, 1);
	r = find_result(SYS_LIB, "callback");
	verdict("callback overhead", r, r ? r->ns : 0, "ns", true, 30);
	r = find_result(SYS_LIB, "memory");
	verdict("memory per queued task", r, r ? r->bytes : 0, "B", true, 128);
}

void summary_processes(void)
{
	const struct result *lib = find_result(SYS_LIBPROC, "empty");
	const struct result *r = find_result(SYS_PYPROC, "empty");

	const struct result *bell = find_result(SYS_RAWPROC, "floor-doorbell");
	const struct result *copy = find_result(SYS_RAWPROC, "floor-memcpy1MiB");
	const struct result *bytes = find_result(SYS_LIBPROC, "bytes1MiB");

	printf("\ntargets (libexecutor-processes):\n");
	verdict("empty submit+result", lib, lib ? lib->ns / 1000 : 0, "us", true, 5);
	verdict("empty vs doorbell floor", lib && bell, lib && bell ? lib->ns / bell->p50 : 0, "x", true, 25);
	verdict("empty vs python processes", lib && r, lib && r ? r->ns / lib->ns : 0, "x", false, 30);
	verdict("1 MiB in+out vs floor, p50", bytes && copy, bytes && copy ? bytes->p50 / copy->p50 : 0, "x",
		true, 2.0);
	r = find_result(SYS_LIBPROC, "fairness");
	verdict("fairness, last short / work", r, r ? r->work_ratio : 0, "x", true,
		(FAIR_SHORT_TASKS + 1.0) / FAIR_SHORT_TASKS);
	r = find_result(SYS_LIBPROC, "map");
	verdict("map, per task", r, r ? r->ns / 1000 : 0, "us", true, 1);
	r = find_result(SYS_LIBPROC, "spin100us");
	verdict("spin100us efficiency", r, r ? r->efficiency : 0, "%", false, 90);
	r = find_result(SYS_LIBPROC, "bytes1MiB");
	verdict("1 MiB in + out, p50", r, r ? r->p50 / 1000 : 0, "us", true, 150);
	r = find_result(SYS_LIBPROC, "crash-recovery");
	verdict("crash recovery, p50", r, r ? r->p50 / 1e6 : 0, "ms", true, 5);
}
