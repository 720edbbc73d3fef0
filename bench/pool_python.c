/*
 * pool_python.c - the python-thread-pool and python-process-pool rows:
 * bench_pool runs python_pools.py through python3 with its own task counts
 * and reads the script's JSON lines back as rows of its own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_pool.h"

/* Every workload name a row may carry: results point into this table. */
static const char *const workload_names[] = {
	"empty", "spin1us", "spin100us", "latency", "latency-hot", "callback", "memory",
	"map", "map-chunk64", "bytes1MiB", "crash-recovery",
};

/* A line of python_pools.py: the same keys bench_pool prints. Returns the
 * number after "key":, or false for null or a missing key. */
static bool json_num(const char *line, const char *key, double *v)
{
	char pat[40];
	const char *at;
	char *end;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	at = strstr(line, pat);
	if (!at)
		return false;
	at += strlen(pat);
	*v = strtod(at, &end);
	return end != at;
}

static bool json_str(const char *line, const char *key, char *buf, size_t cap)
{
	char pat[40];
	const char *at, *end;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	at = strstr(line, pat);
	if (!at)
		return false;
	at += strlen(pat);
	end = strchr(at, '"');
	if (!end || (size_t)(end - at) >= cap)
		return false;
	memcpy(buf, at, (size_t)(end - at));
	buf[end - at] = '\0';
	return true;
}

static void python_line(const char *line)
{
	char sys[32], wl[32];
	struct result r = { .workload = NULL };
	double v;

	if (!json_str(line, "system", sys, sizeof(sys)) || !json_str(line, "workload", wl, sizeof(wl)))
		bench_die("python_pools.py: cannot read '%s'", line);
	if (!strcmp(sys, "python-thread-pool"))
		r.sys = SYS_PYTHREAD;
	else if (!strcmp(sys, "python-process-pool"))
		r.sys = SYS_PYPROC;
	else
		bench_die("python_pools.py: unknown system '%s'", sys);
	for (size_t i = 0; i < sizeof(workload_names) / sizeof(workload_names[0]); i++)
		if (!strcmp(wl, workload_names[i]))
			r.workload = workload_names[i];
	if (!r.workload)
		bench_die("python_pools.py: unknown workload '%s'", wl);
	if (json_num(line, "tasks", &v))
		r.tasks = (size_t)v;
	json_num(line, "seconds", &r.seconds);
	json_num(line, "ns_per_task", &r.ns);
	r.latency = json_num(line, "p50_ns", &r.p50) && json_num(line, "p99_ns", &r.p99);
	json_num(line, "start_p50_ns", &r.start_p50);
	json_num(line, "start_p99_ns", &r.start_p99);
	json_num(line, "caller_pct", &r.caller_pct);
	json_num(line, "efficiency_pct", &r.efficiency);
	json_num(line, "detect_p50_ns", &r.detect);
	if (json_num(line, "spin_p50_ns", &v))
		snprintf(r.note, sizeof(r.note), "%.1f%% of ideal (median spin %.1f us, %u cpus)",
			 r.efficiency, v / 1000, bench_ncpu);
	else if (!strcmp(wl, "crash-recovery"))
		snprintf(r.note, sizeof(r.note), "crash to failure p50 %.0f us, new executor, 1 worker",
			 r.detect / 1000);
	else if (!strcmp(wl, "map"))
		snprintf(r.note, sizeof(r.note), "Executor.map(chunksize=%d)", CHUNK);
	else if (r.latency && strncmp(wl, "latency", 7) == 0)
		snprintf(r.note, sizeof(r.note), "start p50/p99 %.0f/%.0f ns", r.start_p50, r.start_p99);
	add_result(&r);
}

/* python3 runs python_pools.py with our task counts; its lines become rows.
 * A missing python3 or script is a note, not a failure: the C rows stand on
 * their own. */
void bench_python(const struct workload *wl, size_t nwl)
{
	char cmd[1024], line[1024];
	size_t len;
	FILE *f;
	int st;

	if (access(pool_opt.python, R_OK)) {
		printf("note: %s not found: python rows skipped\n", pool_opt.python);
		return;
	}
	st = system("python3 -c '' >/dev/null 2>&1");
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		printf("note: python3 is not available: python rows skipped\n");
		return;
	}
	len = (size_t)snprintf(cmd, sizeof(cmd),
			       "python3 '%s' --runs %d --workers %u --latency-samples %d --map-tasks %zu "
			       "--bytes-samples %d --crash-samples %d",
			       pool_opt.python, bench_opt.runs, bench_ncpu,
			       bench_opt.quick ? BENCH_LAT_SAMPLES / 4 : BENCH_LAT_SAMPLES,
			       bench_scaled(MAP_TASKS),
			       bench_opt.quick ? BYTES_SAMPLES / 8 : BYTES_SAMPLES / 2,
			       bench_opt.quick ? 3 : 5);
	for (size_t w = 0; w < nwl; w++)
		len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " --tasks %s=%zu,%zu", wl[w].name,
					bench_scaled(wl[w].tasks[SYS_PYTHREAD]),
					bench_scaled(wl[w].tasks[SYS_PYPROC]));
	for (int s = SYS_PYTHREAD; s <= SYS_PYPROC; s++)
		if (pool_opt.only && (pool_opt.only & (SYS_PYTHREAD_BIT | SYS_PYPROC_BIT)) == 1u << s)
			len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " --only %s", sys_name[s]);
	if (bench_opt.workload)
		len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " --workload '%s'", bench_opt.workload);
	if (len >= sizeof(cmd))
		bench_die("python command too long");
	fflush(stdout);
	f = popen(cmd, "r");
	if (!f)
		bench_die("popen: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '{')
			python_line(line);
	}
	st = pclose(f);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st))
		printf("note: python_pools.py failed (status %d): python rows may be missing\n", st);
}
