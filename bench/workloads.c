/*
 * workloads.c - the harness behind workloads.h: the task functions, the
 * libexecutor reference system, the interleaved runs, the table and the JSON
 * lines (the clock, spins and statistics are harness.c's). See workloads.h
 * for what is measured.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <executor.h>

#include "workloads.h"

#define MAX_SYSTEMS 16
#define MAX_RESULTS 128

bool bench_json_reference = true;

/* spin100us: each task also records how long its spin took, so efficiency
 * is judged against the loop's speed during the run itself. */
struct timed_spin {
	uint64_t iters;
	_Atomic size_t next;
	size_t cap;
	int64_t *took;
};

static int task_spin_timed(void *arg, void **result)
{
	struct timed_spin *ts = arg;
	int64_t t0 = bench_now_ns();
	size_t i;

	bench_spin(ts->iters);
	i = atomic_fetch_add_explicit(&ts->next, 1, memory_order_relaxed);
	if (i < ts->cap)
		ts->took[i] = bench_now_ns() - t0;
	*result = NULL;
	return 0;
}

struct stamp {
	int64_t start;
	pthread_t submitter;
	bool on_submitter;
};

static int task_stamp(void *arg, void **result)
{
	struct stamp *st = arg;

	st->start = bench_now_ns();
	st->on_submitter = pthread_equal(pthread_self(), st->submitter);
	*result = NULL;
	return 0;
}

/* ---- libexecutor-threads, the reference ---- */

struct lib_slot {
	struct bench_result res;
	struct exe_future *f;
};

/* Set while the latency-worker rows run: tasks must run on a worker. */
static bool lib_no_caller_runs;

static void *lib_create(unsigned nthreads)
{
	const struct exe_pool_opts po = { .workers = nthreads, .name = "bench",
					  .no_caller_runs = lib_no_caller_runs };
	struct exe_pool *p;
	int rc = exe_thread_pool_create(&p, &po);

	if (rc)
		bench_die("exe_thread_pool_create: %s", exe_strerror(rc));
	return p;
}

static void lib_destroy(void *ctx)
{
	exe_pool_destroy(ctx);
}

static struct exe_future *lib_submit(struct exe_pool *p, bench_task_fn *fn, void *arg)
{
	struct exe_future *f;
	int rc = exe_pool_submit(p, fn, arg, &f);

	if (rc)
		bench_die("exe_pool_submit: %s", exe_strerror(rc));
	return f;
}

static int lib_batch(void *ctx, bench_task_fn *fn, void *arg, size_t n, void *slots)
{
	struct lib_slot *s = slots;
	size_t i;

	for (i = 0; i < n; i++)
		s[i].f = lib_submit(ctx, fn, arg);
	/* In submission order, like a caller collecting results: the first
	 * infinite wait lets this thread run still-queued tasks itself. */
	for (i = 0; i < n; i++) {
		s[i].res.code = exe_future_result(s[i].f, &s[i].res.value, EXE_FOREVER);
		exe_future_unref(s[i].f);
	}
	return 0;
}

static int lib_one(void *ctx, bench_task_fn *fn, void *arg, int64_t *t_done)
{
	struct exe_future *f = lib_submit(ctx, fn, arg);
	int code = exe_future_result(f, NULL, EXE_FOREVER);

	*t_done = bench_now_ns();
	exe_future_unref(f);
	return code;
}

static int lib_batch_many(void *ctx, bench_task_fn *fn, void *arg, size_t n, void *slots)
{
	struct lib_slot *s = slots;
	struct exe_future **fs = bench_calloc(n, sizeof(*fs));
	void **args = bench_calloc(n, sizeof(*args));
	int rc;

	for (size_t i = 0; i < n; i++)
		args[i] = arg;
	rc = exe_pool_submit_many(ctx, fn, args, n, fs);
	if (rc)
		bench_die("exe_pool_submit_many: %s", exe_strerror(rc));
	rc = exe_wait(fs, n, EXE_WAIT_ALL, EXE_FOREVER);
	if (rc < 0)
		bench_die("exe_wait: %s", exe_strerror(rc));
	for (size_t i = 0; i < n; i++) {
		s[i].res.code = exe_future_result(fs[i], &s[i].res.value, 0);
		exe_future_unref(fs[i]);
	}
	free(args);
	free(fs);
	return 0;
}

/* The callback row: a done callback per task, nobody waits on a future.
 * One batch at a time per process, so its state is static. */
static struct {
	_Atomic size_t left;
	struct exe_future *all_done; /* a promise, completed by the last callback */
} cb_batch;

static int lib_cb(struct exe_future *f, void *arg)
{
	struct lib_slot *slot = arg;

	slot->res.code = exe_future_result(f, &slot->res.value, 0);
	if (atomic_fetch_sub_explicit(&cb_batch.left, 1, memory_order_acq_rel) == 1)
		exe_future_set_result(cb_batch.all_done, NULL, NULL);
	return 0;
}

static int lib_callback(void *ctx, bench_task_fn *fn, void *arg, size_t n, void *slots)
{
	struct lib_slot *s = slots;

	atomic_store(&cb_batch.left, n);
	if (exe_future_create(&cb_batch.all_done))
		bench_die("exe_future_create failed");
	/* The callback rides with the task (exe_pool_submit_cb()), as libuv's
	 * after-work callback does: no future handed out. */
	for (size_t i = 0; i < n; i++) {
		int rc = exe_pool_submit_cb(ctx, fn, arg, lib_cb, &s[i]);

		if (rc)
			bench_die("exe_pool_submit_cb: %s", exe_strerror(rc));
	}
	exe_future_wait(cb_batch.all_done, EXE_FOREVER);
	exe_future_unref(cb_batch.all_done);
	return 0;
}

struct lib_fib {
	struct exe_pool *pool;
	long n;
};

static int lib_fib_task(void *arg, void **result)
{
	struct lib_fib *a = arg, l = { a->pool, a->n - 1 }, r = { a->pool, a->n - 2 };
	struct exe_future *fl, *fr;
	void *vl = NULL, *vr = NULL;

	if (a->n < 2) {
		*result = (void *)(intptr_t)a->n;
		return 0;
	}
	fl = lib_submit(a->pool, lib_fib_task, &l);
	fr = lib_submit(a->pool, lib_fib_task, &r);
	if (exe_future_result(fl, &vl, EXE_FOREVER) || exe_future_result(fr, &vr, EXE_FOREVER))
		bench_die("fork-join: a task failed");
	exe_future_unref(fl);
	exe_future_unref(fr);
	*result = (void *)((intptr_t)vl + (intptr_t)vr);
	return 0;
}

static long lib_fork_join(void *ctx, int n)
{
	struct lib_fib a = { ctx, n };
	struct exe_future *f = lib_submit(ctx, lib_fib_task, &a);
	void *v = NULL;

	if (exe_future_result(f, &v, EXE_FOREVER))
		bench_die("fork-join: the root task failed");
	exe_future_unref(f);
	return (long)(intptr_t)v;
}

const struct bench_system bench_libexecutor_threads = {
	.name = "libexecutor-threads",
	.slot_size = sizeof(struct lib_slot),
	.create = lib_create,
	.destroy = lib_destroy,
	.batch = lib_batch,
	.one = lib_one,
	.batch_many = lib_batch_many,
	.callback = lib_callback,
	.fork_join = lib_fork_join,
};

/* ---- results ---- */

struct result {
	const char *system;
	const char *workload;
	size_t tasks;
	double seconds;
	double ns;        /* wall / tasks on throughput rows, mean on latency rows */
	bool latency;     /* p50 .. cpu_pct are set */
	double p50, p99, start_p50, start_p99, caller_pct;
	double cpu_pct;   /* process CPU time over wall time: what idle spinning costs */
	double efficiency; /* spin100us: percent of ideal, else 0 */
	double vs_lib;    /* libexecutor's figure / this row's; < 0: none */
};

static struct result results[MAX_RESULTS];
static int nresults;

static double row_metric(const struct result *r)
{
	return r->latency ? r->p50 : r->ns;
}

static void print_json(const struct result *r)
{
	bench_json_head(r->system, r->workload, r->tasks, r->seconds, r->ns, r->latency, r->p50, r->p99);
	if (r->vs_lib >= 0)
		printf(",\"vs_libexecutor\":%.3f", r->vs_lib);
	if (r->latency) {
		bench_json_latency(r->start_p50, r->start_p99, r->caller_pct);
		printf(",\"cpu_pct\":%.0f", r->cpu_pct);
	}
	if (r->efficiency > 0)
		printf(",\"efficiency_pct\":%.1f", r->efficiency);
	printf("}\n");
}

static void print_table_header(void)
{
	printf("%-20s %-12s %7s %10s %12s %8s %9s %9s  %s\n", "system", "workload", "tasks", "ns/task",
	       "tasks/s", "vs lib", "p50_ns", "p99_ns", "note");
}

static void print_row(const struct result *r)
{
	char ratio[24] = "-", p50[24] = "-", p99[24] = "-", note[96] = "";

	if (r->vs_lib >= 0)
		snprintf(ratio, sizeof(ratio), "%.2fx", r->vs_lib);
	if (r->latency) {
		snprintf(p50, sizeof(p50), "%.0f", r->p50);
		snprintf(p99, sizeof(p99), "%.0f", r->p99);
		snprintf(note, sizeof(note), "start p50/p99 %.0f/%.0f ns, %.0f%% on caller, cpu %.0f%%",
			 r->start_p50, r->start_p99, r->caller_pct, r->cpu_pct);
	} else if (r->efficiency > 0) {
		snprintf(note, sizeof(note), "%.1f%% of ideal (%u cpus)", r->efficiency, bench_ncpu);
	}
	printf("%-20s %-12s %7zu %10.1f %12.0f %8s %9s %9s  %s\n", r->system, r->workload, r->tasks, r->ns,
	       r->ns > 0 ? 1e9 / r->ns : 0.0, ratio, p50, p99, note);
}

/* Rows of one workload are kept until all of it has run: the ratio needs
 * libexecutor's median, which is known only after the last round. */
static void add_results(struct result *rows, int n)
{
	const struct result *lib = NULL;

	for (int i = 0; i < n; i++)
		if (!strcmp(rows[i].system, bench_libexecutor_threads.name))
			lib = &rows[i];
	for (int i = 0; i < n; i++) {
		struct result *r = &rows[i];

		r->vs_lib = -1;
		if (lib && r != lib && row_metric(r) > 0)
			r->vs_lib = row_metric(lib) / row_metric(r);
		if (nresults == MAX_RESULTS)
			bench_die("too many results");
		results[nresults++] = *r;
		if (!bench_opt.json)
			print_row(r);
		else if (r != lib || bench_json_reference)
			print_json(r);
	}
	fflush(stdout);
}

/* ---- throughput ---- */

enum batch_kind { BATCH_EACH, BATCH_MANY, BATCH_CALLBACK };

struct workload {
	const char *name;
	bench_task_fn *fn;
	uint64_t *iters;
	size_t tasks;
	enum batch_kind kind;
};

/* The system's call for this workload's batch. */
static int (*batch_of(const struct bench_system *s, const struct workload *w))(void *, bench_task_fn *, void *,
									       size_t, void *)
{
	if (w->kind == BATCH_MANY && s->batch_many)
		return s->batch_many;
	if (w->kind == BATCH_CALLBACK && s->callback)
		return s->callback;
	return s->batch;
}

static void reset_codes(void *slots, size_t slot_size, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bench_slot_result(slots, slot_size, i)->code = 1;
}

static void check_codes(const struct bench_system *s, const char *wl, void *slots, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int code = bench_slot_result(slots, s->slot_size, i)->code;

		if (code)
			bench_die("%s/%s: task %zu %s (code %d)", s->name, wl, i,
				  code == 1 ? "never ran" : "failed", code);
	}
}

/*
 * Efficiency of one spin100us run: the work (the median spin a task measured,
 * times the tasks) over what ncpu CPUs could do in the wall time. The median
 * leaves out tasks that were preempted mid-spin.
 */
static double efficiency(struct timed_spin *ts, size_t n, double wall_ns)
{
	size_t got = atomic_load(&ts->next);

	if (got != n)
		bench_die("spin100us: %zu spins recorded, expected %zu", got, n);
	bench_sort_i64(ts->took, n);
	return 100.0 * (double)bench_percentile(ts->took, n, 50) * (double)n / bench_ncpu / wall_ns;
}

/* One run: a fresh pool, an untimed warm-up, the timed batch. Returns ns. */
static double run_batch(const struct bench_system *s, const struct workload *w, size_t n, void *slots,
			struct timed_spin *ts, double *eff)
{
	void *arg = ts->took ? (void *)ts : (void *)w->iters;
	size_t warm = n / 10 ? n / 10 : 1;
	void *ctx = s->create(bench_ncpu);
	int64_t t0, t1;

	reset_codes(slots, s->slot_size, warm);
	if (batch_of(s, w)(ctx, w->fn, arg, warm, slots))
		bench_die("%s/%s: warm-up batch failed", s->name, w->name);
	check_codes(s, w->name, slots, warm);

	reset_codes(slots, s->slot_size, n);
	atomic_store(&ts->next, 0);
	t0 = bench_now_ns();
	if (batch_of(s, w)(ctx, w->fn, arg, n, slots))
		bench_die("%s/%s: batch failed", s->name, w->name);
	t1 = bench_now_ns();
	s->destroy(ctx);
	check_codes(s, w->name, slots, n);
	if (ts->took)
		*eff = efficiency(ts, n, (double)(t1 - t0));
	return (double)(t1 - t0);
}

static void bench_throughput(const struct bench_system *const *sys, int nsys, const struct workload *w)
{
	static double ns[MAX_SYSTEMS][BENCH_MAX_RUNS], eff[MAX_SYSTEMS][BENCH_MAX_RUNS];
	struct result rows[MAX_SYSTEMS];
	size_t n = bench_scaled(w->tasks), slot_max = 0;
	struct timed_spin ts = { .cap = n };
	void *slots;

	const struct bench_system *const *all = sys;
	const struct bench_system *has[MAX_SYSTEMS];
	int nall = nsys;

	/* Systems without a batch (the futex ping-pong) run latency only. */
	nsys = 0;
	for (int i = 0; i < nall; i++)
		if (all[i]->batch)
			has[nsys++] = all[i];
	sys = has;
	for (int i = 0; i < nsys; i++)
		if (sys[i]->slot_size > slot_max)
			slot_max = sys[i]->slot_size;
	/* calloc + the first reset_codes() fault the pages in, untimed. */
	slots = bench_calloc(n, slot_max);
	if (w->fn == task_spin_timed) {
		ts.iters = *w->iters;
		ts.took = bench_calloc(n, sizeof(*ts.took));
	}
	for (int r = 0; r < bench_opt.runs; r++)
		for (int k = 0; k < nsys; k++) {
			int i = (k + r) % nsys;

			ns[i][r] = run_batch(sys[i], w, n, slots, &ts, &eff[i][r]);
		}
	for (int i = 0; i < nsys; i++) {
		rows[i] = (struct result){ .system = sys[i]->name, .workload = w->name, .tasks = n };
		rows[i].seconds = bench_median(ns[i], bench_opt.runs) / 1e9;
		rows[i].ns = rows[i].seconds * 1e9 / (double)n;
		if (ts.took)
			rows[i].efficiency = bench_median(eff[i], bench_opt.runs);
	}
	add_results(rows, nsys);
	free(ts.took);
	free(slots);
}

/* ---- fork-join ---- */

static long fib_plain(int n)
{
	return n < 2 ? n : fib_plain(n - 1) + fib_plain(n - 2);
}

struct fj_run {
	const struct bench_system *s;
	void *ctx;
	int n;
	long got;
};

static void fj_body(void *state)
{
	struct fj_run *fj = state;

	fj->got = fj->s->fork_join(fj->ctx, fj->n);
}

static void bench_fork_join(const struct bench_system *const *all, int nall)
{
	static double ns[MAX_SYSTEMS][BENCH_MAX_RUNS];
	const struct bench_system *sys[MAX_SYSTEMS];
	struct result rows[MAX_SYSTEMS];
	int n = bench_opt.quick ? 22 : 27, nsys = 0;
	long want = fib_plain(n);
	/* Calls of fib(n), each one task: 2 fib(n+1) - 1. */
	size_t tasks = (size_t)(2 * fib_plain(n + 1) - 1);

	for (int i = 0; i < nall; i++)
		if (all[i]->fork_join)
			sys[nsys++] = all[i];
	for (int r = 0; r < bench_opt.runs; r++)
		for (int k = 0; k < nsys; k++) {
			int i = (k + r) % nsys;
			struct fj_run fj = { .s = sys[i], .ctx = sys[i]->create(bench_ncpu), .n = n };
			int64_t t0;

			fj_body(&(struct fj_run){ .s = sys[i], .ctx = fj.ctx, .n = n - 5 }); /* warm-up */
			t0 = bench_now_ns();
			if (sys[i]->enclose)
				sys[i]->enclose(fj.ctx, fj_body, &fj);
			else
				fj_body(&fj);
			ns[i][r] = (double)(bench_now_ns() - t0);
			sys[i]->destroy(fj.ctx);
			if (fj.got != want)
				bench_die("%s/fork-join: fib(%d) = %ld, want %ld", sys[i]->name, n, fj.got, want);
		}
	for (int i = 0; i < nsys; i++) {
		rows[i] = (struct result){ .system = sys[i]->name, .workload = "fork-join", .tasks = tasks };
		rows[i].seconds = bench_median(ns[i], bench_opt.runs) / 1e9;
		rows[i].ns = rows[i].seconds * 1e9 / (double)tasks;
	}
	add_results(rows, nsys);
}

/* ---- latency ---- */

struct lat_run {
	const struct bench_system *s;
	void *ctx;
	const char *workload;
	bool hot;
	size_t n;
	int64_t *to_result, *to_start;
	int64_t sum;
	size_t on_caller;
};

/* The sample loop; runs inside the system's enclose() when it has one, so
 * "on caller" compares against the thread that really submits. */
static void lat_body(void *state)
{
	struct lat_run *lr = state;
	struct stamp st = { .submitter = pthread_self() };

	for (size_t i = 0; i < lr->n + BENCH_LAT_WARMUP; i++) {
		int64_t t0, t1;

		if (!lr->hot)
			bench_sleep_ns(BENCH_LAT_IDLE_NS);
		t0 = bench_now_ns();
		if (lr->s->one(lr->ctx, task_stamp, &st, &t1))
			bench_die("%s/%s: a task failed", lr->s->name, lr->workload);
		if (i < BENCH_LAT_WARMUP)
			continue;
		lr->to_result[i - BENCH_LAT_WARMUP] = t1 - t0;
		lr->to_start[i - BENCH_LAT_WARMUP] = st.start - t0;
		lr->sum += t1 - t0;
		lr->on_caller += st.on_submitter;
	}
}

static int64_t cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
	       ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

static void run_latency(const struct bench_system *s, struct lat_run *lr, struct bench_lat *out)
{
	int64_t t0, c0;

	lr->s = s;
	lr->sum = 0;
	lr->on_caller = 0;
	lr->ctx = s->create(bench_ncpu);
	c0 = cpu_ns();
	t0 = bench_now_ns();
	if (s->enclose)
		s->enclose(lr->ctx, lat_body, lr);
	else
		lat_body(lr);
	out->wall = (double)(bench_now_ns() - t0);
	/* Every thread of the process: a pool whose idle workers spin shows
	 * here, while its latency looks good. */
	out->cpu = 100.0 * (double)(cpu_ns() - c0) / out->wall;
	s->destroy(lr->ctx);
	bench_lat_figures(out, lr->to_result, lr->to_start, lr->n, lr->sum, lr->on_caller);
}

static void bench_latency(const struct bench_system *const *sys, int nsys, bool hot, const char *name)
{
	static struct bench_lat smp[MAX_SYSTEMS][BENCH_MAX_RUNS];
	struct result rows[MAX_SYSTEMS];
	struct lat_run lr = { .workload = name, .hot = hot };

	lr.n = bench_opt.quick ? BENCH_LAT_SAMPLES / 4 : BENCH_LAT_SAMPLES;
	lr.to_result = bench_calloc(lr.n, sizeof(int64_t));
	lr.to_start = bench_calloc(lr.n, sizeof(int64_t));
	for (int r = 0; r < bench_opt.runs; r++)
		for (int k = 0; k < nsys; k++) {
			int i = (k + r) % nsys;

			run_latency(sys[i], &lr, &smp[i][r]);
		}
	/* Each latency figure is the median over the runs of that figure. */
	for (int i = 0; i < nsys; i++) {
		struct bench_lat m;

		bench_lat_medians(&m, smp[i], bench_opt.runs);
		rows[i] = (struct result){ .system = sys[i]->name, .workload = lr.workload, .tasks = lr.n,
					   .latency = true, .ns = m.mean, .seconds = m.wall / 1e9,
					   .p50 = m.p50, .p99 = m.p99, .start_p50 = m.sp50,
					   .start_p99 = m.sp99, .caller_pct = m.caller, .cpu_pct = m.cpu };
	}
	add_results(rows, nsys);
	free(lr.to_result);
	free(lr.to_start);
}

/* ---- summary ---- */

static void summary(const char *const *workloads, int nwl)
{
	printf("\nwho is first (throughput rows: ns/task; latency rows: p50):\n");
	for (int w = 0; w < nwl; w++) {
		const struct result *best = NULL, *lib = NULL;

		for (int i = 0; i < nresults; i++) {
			const struct result *r = &results[i];

			if (strcmp(r->workload, workloads[w]))
				continue;
			if (!best || row_metric(r) < row_metric(best))
				best = r;
			if (!strcmp(r->system, bench_libexecutor_threads.name))
				lib = r;
		}
		if (!best)
			continue;
		if (!lib)
			printf("  %-12s first: %s (libexecutor not run)\n", workloads[w], best->system);
		else if (best == lib)
			printf("  %-12s first: libexecutor-threads\n", workloads[w]);
		else
			printf("  %-12s first: %s, %.2fx libexecutor-threads\n", workloads[w], best->system,
			       best->vs_lib);
	}
}

/* ---- options and the run ---- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: %s [--quick] [--json] [--runs N] [--only SYSTEM] [--workload W]\n"
		"  --quick        5x fewer tasks, 4x fewer latency samples, 3 runs\n"
		"  --json         one JSON object per result per line, no table\n"
		"  --runs N       runs per figure, median reported (default 5, 3 with --quick)\n"
		"  --only SYSTEM  one system (a name prefix); libexecutor-threads always runs too\n"
		"  --workload W   empty, empty-batch, callback, spin1us, spin100us, fork-join,\n"
		"                 latency, latency-hot or latency-worker\n"
		"What is measured is explained at the top of bench/workloads.h.\n",
		bench_prog_name);
}

void bench_parse_args(const char *prog, int argc, char **argv)
{
	bench_parse_opts(prog, argc, argv, usage, NULL);
}

void bench_run(const char *prog, const struct bench_system *systems, int nsys)
{
	/* Task counts as in bench_pool's pool rows, so the figures line up. */
	struct workload wl[] = {
		{ "empty", bench_task_empty, NULL, 200000, BATCH_EACH },
		{ "empty-batch", bench_task_empty, NULL, 200000, BATCH_MANY },
		{ "callback", bench_task_empty, NULL, 200000, BATCH_CALLBACK },
		{ "spin1us", bench_task_spin, &bench_iters_1us, 100000, BATCH_EACH },
		{ "spin100us", task_spin_timed, &bench_iters_100us, 4000, BATCH_EACH },
	};
	const char *names[] = { "empty", "empty-batch", "callback", "spin1us", "spin100us", "fork-join",
				"latency", "latency-hot", "latency-worker" };
	const struct bench_system *run[MAX_SYSTEMS];
	int nrun = 0;

	(void)prog;
	for (int i = 0; i < nsys; i++) {
		const struct bench_system *s = &systems[i];
		bool is_lib = !strcmp(s->name, bench_libexecutor_threads.name);

		if (!is_lib && !bench_only_matches(s->name))
			continue;
		if (s->missing) {
			/* In JSON mode stdout carries only result lines. */
			fprintf(bench_opt.json ? stderr : stdout, "%s: skipped: install %s\n", s->name, s->missing);
			continue;
		}
		if (nrun == MAX_SYSTEMS)
			bench_die("too many systems");
		run[nrun++] = s;
	}
	if (bench_opt.workload) {
		bool known = false;

		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			known |= !strcmp(names[i], bench_opt.workload);
		if (!known)
			bench_die("unknown workload '%s'", bench_opt.workload);
	}

	bench_calibrate();
	if (!bench_opt.json) {
		printf("%s: libexecutor %d.%d.%d, %u online CPUs, %u workers per pool, %s mode, median of %d "
		       "interleaved runs\n",
		       bench_prog_name, EXE_VERSION_MAJOR, EXE_VERSION_MINOR, EXE_VERSION_PATCH, bench_ncpu,
		       bench_ncpu, bench_opt.quick ? "quick" : "full", bench_opt.runs);
		bench_print_spins();
		print_table_header();
	}
	if (!nrun)
		return;
	for (size_t w = 0; w < sizeof(wl) / sizeof(wl[0]); w++)
		if (bench_workload_matches(wl[w].name))
			bench_throughput(run, nrun, &wl[w]);
	if (bench_workload_matches("fork-join"))
		bench_fork_join(run, nrun);
	for (int hot = 0; hot < 2; hot++)
		if (bench_workload_matches(hot ? "latency-hot" : "latency"))
			bench_latency(run, nrun, hot, hot ? "latency-hot" : "latency");
	if (bench_workload_matches("latency-worker")) {
		lib_no_caller_runs = true;
		bench_latency(run, nrun, false, "latency-worker");
		lib_no_caller_runs = false;
	}
	if (!bench_opt.json)
		summary(names, (int)(sizeof(names) / sizeof(names[0])));
}
