/*
 * pool_procs.c - bench_pool's process systems: raw-processes and
 * libexecutor-processes, and the rows only process pools have: map,
 * map-chunk64, bytes1MiB, crash-recovery and fairness, with the floors
 * (floor-doorbell, floor-memcpy1MiB) they are held to. See bench_pool.c for what is
 * measured.
 */
#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_pool.h"

#define BYTES_LEN (1u << 20)
#define CRASH_SAMPLES 20

/* ---- raw-processes ---- */

/* One value slot per child in flight, shared with the children: mapped
 * before they are forked, so a child's store is seen here after waitpid(). */
struct rawp {
	int64_t *vals;
};

static void *rawp_create(void)
{
	struct rawp *rp = bench_calloc(1, sizeof(*rp));

	rp->vals = mmap(NULL, RAW_MAX_INFLIGHT * sizeof(*rp->vals), PROT_READ | PROT_WRITE,
			MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (rp->vals == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
	return rp;
}

static void rawp_destroy(void *ctx)
{
	struct rawp *rp = ctx;

	munmap(rp->vals, RAW_MAX_INFLIGHT * sizeof(*rp->vals));
	free(rp);
}

/* The child only runs the task, stores its value and leaves with _exit():
 * no atexit handlers, no stdio flush of buffers it shares with us. */
static pid_t rawp_start(exe_task_fn *fn, void *arg, int64_t *slot)
{
	pid_t pid = fork();

	if (pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		void *v = NULL;
		int code = fn(arg, &v);

		*slot = (int64_t)(intptr_t)v;
		_exit(code ? 1 : 0);
	}
	return pid;
}

/* 0 when the child exited with 0, else -EIO. */
static int rawp_finish(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			bench_die("waitpid: %s", strerror(errno));
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static int rawp_batch(void *ctx, exe_task_fn *fn, void *arg, size_t n, void **slots, int64_t *values)
{
	struct rawp *rp = ctx;
	pid_t ring[RAW_MAX_INFLIGHT];
	size_t i;
	int bad = 0;

	(void)slots;
	for (i = 0; i < n; i++) {
		size_t k = i % RAW_MAX_INFLIGHT;

		/* The slot still holds task i - 64: the oldest in flight. */
		if (i >= RAW_MAX_INFLIGHT) {
			if (rawp_finish(ring[k]))
				bad = 1;
			if (values)
				values[i - RAW_MAX_INFLIGHT] = rp->vals[k];
		}
		ring[k] = rawp_start(fn, arg, &rp->vals[k]);
	}
	for (i = n > RAW_MAX_INFLIGHT ? n - RAW_MAX_INFLIGHT : 0; i < n; i++) {
		size_t k = i % RAW_MAX_INFLIGHT;

		if (rawp_finish(ring[k]))
			bad = 1;
		if (values)
			values[i] = rp->vals[k];
	}
	return bad ? -EIO : 0;
}

static int rawp_one(void *ctx, exe_task_fn *fn, void *arg, int64_t *t_done, int64_t *value)
{
	struct rawp *rp = ctx;
	int code = rawp_finish(rawp_start(fn, arg, &rp->vals[0]));

	*t_done = bench_now_ns();
	*value = rp->vals[0];
	return code;
}

/* ---- libexecutor-processes ---- */

static struct exe_pool *libp_make(unsigned workers)
{
	const struct exe_pool_opts po = { .workers = workers, .name = "bench-pp" };
	struct exe_pool *p;
	int rc = exe_process_pool_create_opts(&p, &po, NULL);

	if (rc)
		bench_die("exe_process_pool_create: %s", exe_strerror(rc));
	return p;
}

static void *libp_create(void)
{
	return libp_make(bench_ncpu);
}

const struct sys_ops raw_procs_ops = { rawp_create, rawp_destroy, rawp_batch, rawp_one, true };
const struct sys_ops lib_procs_ops = { libp_create, lib_destroy, lib_batch, lib_one, true };

/* ---- process pools only ---- */

/* What map and map-chunk64 work on: the pool, and the elements the one way
 * or the other wants them. */
struct map_run {
	struct exe_pool *p;
	void **args, **res;     /* map */
	uint64_t *in, *vals;    /* map-chunk64 */
	struct exe_future **fs; /* map-chunk64: one per chunk */
};

/* A pool of ncpu workers, one untimed @once over n / 10 elements, then
 * --runs timed ones over @n: @r gets the median run, in seconds and ns per
 * element. */
static void time_map(struct result *r, void (*once)(struct map_run *m, size_t n), struct map_run *m,
		     size_t n)
{
	double ns[BENCH_MAX_RUNS];

	m->p = libp_make(bench_ncpu);
	once(m, n / 10);
	for (int i = 0; i < bench_opt.runs; i++) {
		int64_t t0 = bench_now_ns();

		once(m, n);
		ns[i] = (double)(bench_now_ns() - t0);
	}
	exe_pool_destroy(m->p);
	r->seconds = bench_median(ns, bench_opt.runs) / 1e9;
	r->ns = r->seconds * 1e9 / (double)n;
}

static void map_once(struct map_run *m, size_t n)
{
	const struct exe_map_opts mo = { .chunk = CHUNK };
	int rc = exe_pool_map_opts(m->p, bench_task_empty, m->args, n, m->res, &mo, NULL);

	if (rc)
		bench_die("exe_pool_map_opts: %s", exe_strerror(rc));
}

/* map: exe_pool_map_opts() over empty tasks, CHUNK elements per message
 * (the chunk size python-process-pool's row uses). */
void bench_map(void)
{
	size_t n = bench_scaled(MAP_TASKS);
	struct map_run m = {
		.args = bench_calloc(n, sizeof(void *)),
		.res = bench_calloc(n, sizeof(void *)),
	};
	struct result r = { .sys = SYS_LIBPROC, .workload = "map", .tasks = n };

	time_map(&r, map_once, &m, n);
	free(m.args);
	free(m.res);
	snprintf(r.note, sizeof(r.note), "exe_pool_map_opts, chunk %d", CHUNK);
	add_result(&r);
}

/* One bytes task runs bench_task_empty() over CHUNK arguments and returns the
 * CHUNK values: what a chunked map would send over the channel. */
static int task_chunk(const void *in, size_t in_len, void **out, size_t *out_len)
{
	const uint64_t *args = in;
	size_t m = in_len / sizeof(*args);
	uint64_t *vals = malloc(m * sizeof(*vals) + 1);

	if (!vals)
		return -ENOMEM;
	for (size_t i = 0; i < m; i++) {
		void *v = NULL;
		int rc = bench_task_empty((void *)(uintptr_t)args[i], &v);

		if (rc) {
			free(vals);
			return rc;
		}
		vals[i] = (uint64_t)(uintptr_t)v;
	}
	*out = vals;
	*out_len = m * sizeof(*vals);
	return 0;
}

static int chunk_batch(struct exe_pool *p, const uint64_t *args, uint64_t *vals, size_t n,
		       struct exe_future **fs)
{
	size_t nchunks = (n + CHUNK - 1) / CHUNK;
	int bad = 0;

	for (size_t c = 0; c < nchunks; c++) {
		size_t m = n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK;
		int rc = exe_pool_submit_bytes(p, task_chunk, args + c * CHUNK, m * sizeof(*args), NULL,
					       &fs[c]);

		if (rc)
			bench_die("exe_pool_submit_bytes: %s", exe_strerror(rc));
	}
	for (size_t c = 0; c < nchunks; c++) {
		size_t m = n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK;
		const void *data;
		size_t len;

		if (exe_future_wait(fs[c], EXE_FOREVER) || exe_future_bytes(fs[c], &data, &len, EXE_FOREVER) ||
		    len != m * sizeof(*vals))
			bad = 1;
		else
			memcpy(vals + c * CHUNK, data, len);
		exe_future_unref(fs[c]);
	}
	return bad ? -EIO : 0;
}

static void chunk_once(struct map_run *m, size_t n)
{
	if (chunk_batch(m->p, m->in, m->vals, n, m->fs))
		bench_die("map-chunk64: a chunk failed");
}

void bench_map_chunk(void)
{
	size_t n = bench_scaled(MAP_TASKS * 5);
	struct map_run m = {
		.in = bench_calloc(n, sizeof(uint64_t)),
		.vals = bench_calloc(n, sizeof(uint64_t)),
		.fs = bench_calloc(n / CHUNK + 1, sizeof(struct exe_future *)),
	};
	struct result r = { .sys = SYS_LIBPROC, .workload = "map-chunk64", .tasks = n };

	time_map(&r, chunk_once, &m, n);
	free(m.in);
	free(m.vals);
	free(m.fs);
	snprintf(r.note, sizeof(r.note), "by hand: a bytes task per %d elements", CHUNK);
	add_result(&r);
}

/* bytes1MiB: the result is a fresh copy of the input, as a task that
 * transforms a buffer would return, built where the pool can take it
 * without another copy (exe_proc_result_alloc()). */
static int task_copy(const void *in, size_t in_len, void **out, size_t *out_len)
{
	void *buf = exe_proc_result_alloc(in_len);

	if (!buf)
		return -ENOMEM;
	memcpy(buf, in, in_len);
	*out = buf;
	*out_len = in_len;
	return 0;
}

void bench_bytes(void)
{
	size_t n = bench_opt.quick ? BYTES_SAMPLES / 4 : BYTES_SAMPLES;
	int64_t *rt = bench_calloc(n, sizeof(*rt));
	unsigned char *in = bench_calloc(1, BYTES_LEN);
	struct bench_lat runs[BENCH_MAX_RUNS] = { { 0 } };
	struct result r = { .sys = SYS_LIBPROC, .workload = "bytes1MiB", .tasks = n, .latency = true };
	struct exe_pool *p = libp_make(bench_ncpu);

	/* Touched once here, so the first run does not pay for page faults on
	 * our side of the copy. */
	for (size_t i = 0; i < BYTES_LEN; i++)
		in[i] = (unsigned char)(i * 31);
	for (int run = 0; run < bench_opt.runs; run++) {
		int64_t sum = 0, t_run = bench_now_ns();

		for (size_t i = 0; i < n + BENCH_LAT_WARMUP / 5; i++) {
			struct exe_future *f;
			const void *data;
			size_t len;
			int64_t t0 = bench_now_ns(), t1;
			int rc = exe_pool_submit_bytes(p, task_copy, in, BYTES_LEN, NULL, &f);

			if (rc)
				bench_die("exe_pool_submit_bytes: %s", exe_strerror(rc));
			rc = exe_future_wait(f, EXE_FOREVER);
			if (!rc)
				rc = exe_future_bytes(f, &data, &len, EXE_FOREVER);
			t1 = bench_now_ns();
			if (rc || len != BYTES_LEN || memcmp((const char *)data + BYTES_LEN - 64,
							     in + BYTES_LEN - 64, 64))
				bench_die("bytes1MiB: bad result (%s)", exe_strerror(rc));
			exe_future_unref(f);
			if (i < BENCH_LAT_WARMUP / 5)
				continue;
			rt[i - BENCH_LAT_WARMUP / 5] = t1 - t0;
			sum += t1 - t0;
		}
		runs[run].wall = (double)(bench_now_ns() - t_run);
		bench_lat_figures(&runs[run], rt, NULL, n, sum, 0);
	}
	exe_pool_destroy(p);
	free(rt);
	free(in);
	set_latency(&r, runs);
	snprintf(r.note, sizeof(r.note), "1 MiB in + 1 MiB out per round trip, one at a time");
	add_result(&r);
}

/* crash-recovery: mapped shared before the pool exists, so the worker's
 * stamp reaches us. */
static int64_t *crash_stamp;
static int *volatile null_ptr;

void crash_stamp_init(void)
{
	crash_stamp = mmap(NULL, sizeof(*crash_stamp), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
			   0);
	if (crash_stamp == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
}

static int task_crash(void *arg, void **result)
{
	(void)arg;
	/* No core file, whatever the machine's core_pattern says. */
	prctl(PR_SET_DUMPABLE, 0);
	*result = NULL;
	*crash_stamp = bench_now_ns();
	*null_ptr = 1;
	return 0;
}

void bench_crash(enum sys_id s)
{
	size_t n = bench_opt.quick ? CRASH_SAMPLES / 2 : CRASH_SAMPLES;
	int64_t *rec = bench_calloc(n, sizeof(*rec)), *det = bench_calloc(n, sizeof(*det));
	struct bench_lat runs[BENCH_MAX_RUNS] = { { 0 } };
	double d50[BENCH_MAX_RUNS];
	struct result r = { .sys = s, .workload = "crash-recovery", .tasks = n, .latency = true };
	struct exe_pool *p = NULL;
	struct rawp *rp = NULL;

	if (s == SYS_LIBPROC)
		p = libp_make(1);
	else
		rp = rawp_create();
	for (int run = 0; run < bench_opt.runs; run++) {
		int64_t sum = 0, t_run = bench_now_ns();

		for (size_t i = 0; i < n; i++) {
			int64_t t_fail, t_next;
			int rc;

			*crash_stamp = 0;
			if (p) {
				struct exe_future *f = lib_submit(p, task_crash, NULL);

				rc = exe_future_result(f, NULL, EXE_FOREVER);
				t_fail = bench_now_ns();
				exe_future_unref(f);
				if (rc != -ECHILD)
					bench_die("crash-recovery: the crash gave %d (%s), not -ECHILD", rc,
						  exe_strerror(rc));
				f = lib_submit(p, bench_task_empty, NULL);
				rc = exe_future_result(f, NULL, EXE_FOREVER);
				t_next = bench_now_ns();
				exe_future_unref(f);
			} else {
				rc = rawp_finish(rawp_start(task_crash, NULL, &rp->vals[0]));
				t_fail = bench_now_ns();
				if (rc != -EIO)
					bench_die("crash-recovery: the raw child did not crash");
				rc = rawp_finish(rawp_start(bench_task_empty, NULL, &rp->vals[0]));
				t_next = bench_now_ns();
			}
			if (rc)
				bench_die("crash-recovery: the next task failed: %s", exe_strerror(rc));
			if (!*crash_stamp)
				bench_die("crash-recovery: the crash left no stamp");
			rec[i] = t_next - *crash_stamp;
			det[i] = t_fail - *crash_stamp;
			sum += rec[i];
		}
		runs[run].wall = (double)(bench_now_ns() - t_run);
		bench_lat_figures(&runs[run], rec, NULL, n, sum, 0);
		bench_sort_i64(det, n);
		d50[run] = (double)bench_percentile(det, n, 50);
	}
	if (p)
		exe_pool_destroy(p);
	else
		rawp_destroy(rp);
	free(rec);
	free(det);
	set_latency(&r, runs);
	r.detect = bench_median(d50, bench_opt.runs);
	snprintf(r.note, sizeof(r.note), "crash to failure p50 %.0f us%s", r.detect / 1000,
		 p ? ", 1 worker" : "");
	add_result(&r);
}

/* ---- floors: what the hardware allows between two processes ---- */

/* Shared between the submitting process and one forked child, mapped
 * before the fork. Each word on its own cache line. */
struct floor_shm {
	_Alignas(64) _Atomic uint32_t bell_in;  /* parent -> child: a new request */
	_Alignas(64) _Atomic uint32_t bell_out; /* child -> parent: done */
	_Alignas(64) _Atomic uint32_t stop;
	_Alignas(64) unsigned char in[BYTES_LEN];
	_Alignas(64) unsigned char out[BYTES_LEN];
};

static void floor_futex_wait(_Atomic uint32_t *w, uint32_t seen)
{
	syscall(SYS_futex, w, FUTEX_WAIT, seen, NULL, NULL, 0);
}

static void floor_futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* Wait for *@w to move past @seen: spinning (@spin) or sleeping on the
 * futex. */
static uint32_t floor_wait(_Atomic uint32_t *w, uint32_t seen, bool spin)
{
	uint32_t v;

	while ((v = atomic_load_explicit(w, memory_order_acquire)) == seen) {
		if (spin)
			__builtin_ia32_pause();
		else
			floor_futex_wait(w, seen);
	}
	return v;
}

/* The child: answer each request, copying in to out when @copy. */
static void floor_child(struct floor_shm *s, bool spin, bool copy)
{
	uint32_t seen = 0;

	for (;;) {
		seen = floor_wait(&s->bell_in, seen, spin);
		if (atomic_load(&s->stop))
			_exit(0);
		if (copy)
			memcpy(s->out, s->in, BYTES_LEN);
		atomic_fetch_add_explicit(&s->bell_out, 1, memory_order_release);
		if (!spin)
			floor_futex_wake(&s->bell_out);
	}
}

/*
 * floor-doorbell: an empty request and answer between two processes that
 * sleep on futex words (each side wakes the other with FUTEX_WAKE): the
 * floor for a hand-off that does not spin.
 * floor-memcpy1MiB: 1 MiB copied into shared memory, the other process
 * copies it to a 1 MiB result in shared memory, spin hand-off both ways: the
 * floor for bytes1MiB, where the pool also goes through shared memory.
 */
void bench_floor(bool copy)
{
	size_t n = copy ? (bench_opt.quick ? BYTES_SAMPLES / 4 : BYTES_SAMPLES)
			: (bench_opt.quick ? BENCH_LAT_SAMPLES / 4 : BENCH_LAT_SAMPLES);
	int64_t *rt = bench_calloc(n, sizeof(*rt));
	unsigned char *user = bench_calloc(1, BYTES_LEN);
	struct bench_lat runs[BENCH_MAX_RUNS] = { { 0 } };
	struct result r = { .sys = SYS_RAWPROC, .workload = copy ? "floor-memcpy1MiB" : "floor-doorbell",
			    .tasks = n, .latency = true };
	struct floor_shm *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint32_t seen = 0;
	pid_t child;

	if (s == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
	for (size_t i = 0; i < BYTES_LEN; i++)
		user[i] = (unsigned char)(i * 31);
	memset(s->in, 0, BYTES_LEN);
	memset(s->out, 0, BYTES_LEN);
	child = fork();
	if (child < 0)
		bench_die("fork: %s", strerror(errno));
	if (child == 0)
		floor_child(s, copy, copy);
	for (int run = 0; run < bench_opt.runs; run++) {
		int64_t sum = 0, t_run = bench_now_ns();

		for (size_t i = 0; i < n + BENCH_LAT_WARMUP / 5; i++) {
			int64_t t0 = bench_now_ns(), t1;

			if (copy)
				memcpy(s->in, user, BYTES_LEN);
			atomic_fetch_add_explicit(&s->bell_in, 1, memory_order_release);
			if (!copy)
				floor_futex_wake(&s->bell_in);
			seen = floor_wait(&s->bell_out, seen, copy);
			t1 = bench_now_ns();
			if (copy && memcmp(s->out + BYTES_LEN - 64, user + BYTES_LEN - 64, 64))
				bench_die("%s: bad copy", r.workload);
			if (i < BENCH_LAT_WARMUP / 5)
				continue;
			rt[i - BENCH_LAT_WARMUP / 5] = t1 - t0;
			sum += t1 - t0;
		}
		runs[run].wall = (double)(bench_now_ns() - t_run);
		bench_lat_figures(&runs[run], rt, NULL, n, sum, 0);
	}
	atomic_store(&s->stop, 1);
	atomic_fetch_add(&s->bell_in, 1);
	floor_futex_wake(&s->bell_in);
	waitpid(child, NULL, 0);
	munmap(s, sizeof(*s));
	free(rt);
	free(user);
	set_latency(&r, runs);
	snprintf(r.note, sizeof(r.note), copy ? "memcpy in, memcpy to the result, spin hand-off; no pool"
					      : "futex wake + wait each way; no pool");
	add_result(&r);
}

/* ---- fairness ---- */

#define FAIR_SHORT FAIR_SHORT_TASKS
#define FAIR_SHORT_NS (FAIR_SHORT_MS * 1000 * 1000)
#define FAIR_LONG_NS (200 * 1000 * 1000)

/* Where each short task stamps its start and end: mapped shared before the
 * pool exists, so the workers write into it. */
static int64_t (*fair_stamps)[2];

static int task_sleep_ns(void *arg, void **result)
{
	bench_sleep_ns((int64_t)(intptr_t)arg);
	*result = NULL;
	return 0;
}

static int task_short(void *arg, void **result)
{
	int64_t *st = fair_stamps[(intptr_t)arg];

	st[0] = bench_now_ns();
	bench_sleep_ns(FAIR_SHORT_NS);
	st[1] = bench_now_ns();
	*result = NULL;
	return 0;
}

/*
 * fairness: 2 workers, one long task (200 ms) submitted, then 20 short ones
 * (2 ms each). With work-conserving dispatch the short ones run one after
 * the other on the free worker, so the last one is done when they have all
 * run, long before the long one ends. The figure is the time from the long
 * task's submit to the last short task's end, over the time the short tasks
 * themselves ran (their own stamps: a 2 ms sleep takes longer on a busy
 * machine); the target is one short task of slack: (20 + 1) / 20.
 */
void bench_fairness(void)
{
	struct result r = { .sys = SYS_LIBPROC, .workload = "fairness", .tasks = FAIR_SHORT };
	double ratio[BENCH_MAX_RUNS], last[BENCH_MAX_RUNS];
	struct exe_pool *p;

	fair_stamps = mmap(NULL, FAIR_SHORT * sizeof(*fair_stamps), PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (fair_stamps == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
	p = libp_make(2);
	for (int run = 0; run < bench_opt.runs; run++) {
		struct exe_future *lng, *f[FAIR_SHORT];
		int64_t t0, end = 0, work = 0;

		/* Both workers idle and ready. */
		for (int i = 0; i < 2; i++)
			f[i] = lib_submit(p, task_sleep_ns, (void *)(intptr_t)(5 * 1000 * 1000));
		for (int i = 0; i < 2; i++) {
			exe_future_result(f[i], NULL, EXE_FOREVER);
			exe_future_unref(f[i]);
		}
		t0 = bench_now_ns();
		lng = lib_submit(p, task_sleep_ns, (void *)(intptr_t)FAIR_LONG_NS);
		for (int i = 0; i < FAIR_SHORT; i++)
			f[i] = lib_submit(p, task_short, (void *)(intptr_t)i);
		for (int i = 0; i < FAIR_SHORT; i++) {
			if (exe_future_result(f[i], NULL, EXE_FOREVER))
				bench_die("fairness: a short task failed");
			exe_future_unref(f[i]);
			if (fair_stamps[i][1] > end)
				end = fair_stamps[i][1];
			work += fair_stamps[i][1] - fair_stamps[i][0];
		}
		exe_future_result(lng, NULL, EXE_FOREVER);
		exe_future_unref(lng);
		last[run] = (double)(end - t0);
		ratio[run] = (double)(end - t0) / (double)work;
	}
	exe_pool_destroy(p);
	munmap(fair_stamps, FAIR_SHORT * sizeof(*fair_stamps));
	r.ns = bench_median(last, bench_opt.runs);
	r.seconds = r.ns / 1e9;
	r.work_ratio = bench_median(ratio, bench_opt.runs);
	snprintf(r.note, sizeof(r.note), "last of %d x %d ms after %.1f ms, %.3fx their run time (long %d ms)",
		 FAIR_SHORT, FAIR_SHORT_MS, r.ns / 1e6, r.work_ratio, FAIR_LONG_NS / 1000000);
	add_result(&r);
}
