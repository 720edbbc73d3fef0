/*
 * bench_mpi.c - the MPI pool next to raw MPI and the local process pool, in
 * one run: `mpirun -n 3 --oversubscribe bench_mpi` (rank 0 measures, ranks 1
 * and 2 serve).
 *
 * What each figure is (median of --runs runs, default 5):
 *  - raw ping-pong 64 B / 1 MiB: rank 0 sends, rank 1 sends the same size
 *    back (MPI_Send/MPI_Recv), per round trip;
 *  - mpi pool empty task: exe_pool_submit() of a registered task that does
 *    nothing, then exe_future_result(), one at a time, per task; with the
 *    threads backend and with the default processes backend;
 *  - mpi pool 1 MiB in + out: exe_mpi_submit() of 1 MiB to a task that
 *    returns its input, then exe_future_bytes(), per task;
 *  - mpi pool map: exe_pool_map_opts() of 2 M elements (automatic chunks)
 *    over every worker rank, elements per second;
 *  - process pool: the same empty task and 1 MiB echo on a local process
 *    pool of rank 0, for comparison.
 * Ratios printed at the end compare figures of this run only.
 */
#include <errno.h>
#include <executor.h>
#include <executor/mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1 << 20)

static int runs = 5;

static int empty(void *arg, void **result)
{
	*result = arg;
	return 0;
}
EXE_MPI_PTR_TASK(empty)

static int echo(const void *in, size_t len, void **out, size_t *out_len)
{
	*out = malloc(len);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, in, len);
	*out_len = len;
	return 0;
}
EXE_MPI_TASK(echo)

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return v[n / 2];
}

/* Other ranks wait without spinning a core (a blocking MPI barrier polls). */
static void quiet_barrier(void)
{
	MPI_Request r;
	int done = 0;

	MPI_Ibarrier(MPI_COMM_WORLD, &r);
	while (!done) {
		MPI_Test(&r, &done, MPI_STATUS_IGNORE);
		if (!done)
			usleep(500);
	}
}

/* ---- raw MPI ---- */

static double raw_pingpong(int rank, size_t size, int iters)
{
	char *buf = calloc(1, size);
	double t0 = 0;
	int i;

	for (i = -iters / 10; i < iters; i++) {
		if (i == 0)
			t0 = (double)exe_now_ns();
		if (rank == 0) {
			MPI_Send(buf, (int)size, MPI_BYTE, 1, 1, MPI_COMM_WORLD);
			MPI_Recv(buf, (int)size, MPI_BYTE, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		} else if (rank == 1) {
			MPI_Recv(buf, (int)size, MPI_BYTE, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			MPI_Send(buf, (int)size, MPI_BYTE, 0, 1, MPI_COMM_WORLD);
		}
	}
	free(buf);
	return ((double)exe_now_ns() - t0) / iters;
}

/* ---- pools ---- */

static double pool_empty(struct exe_pool *p, int iters)
{
	double t0 = 0;
	int i;

	for (i = -iters / 10; i < iters; i++) {
		struct exe_future *f;
		void *v;

		if (i == 0)
			t0 = (double)exe_now_ns();
		if (exe_pool_submit(p, empty, (void *)1, &f) || exe_future_result(f, &v, EXE_FOREVER)) {
			fprintf(stderr, "empty task failed\n");
			exit(1);
		}
		exe_future_unref(f);
	}
	return ((double)exe_now_ns() - t0) / iters;
}

static double pool_mib(struct exe_pool *p, bool mpi, int iters)
{
	char *in = calloc(1, MIB);
	double t0 = 0;
	int i;

	for (i = -2; i < iters; i++) {
		struct exe_future *f;
		const void *d;
		size_t len;
		int rc;

		if (i == 0)
			t0 = (double)exe_now_ns();
		rc = mpi ? exe_mpi_submit(p, "echo", in, MIB, NULL, &f)
		         : exe_pool_submit_bytes(p, echo, in, MIB, NULL, &f);
		if (rc || exe_future_wait(f, EXE_FOREVER) || exe_future_bytes(f, &d, &len, 0) || len != MIB) {
			fprintf(stderr, "1 MiB echo failed\n");
			exit(1);
		}
		exe_future_unref(f);
	}
	free(in);
	return ((double)exe_now_ns() - t0) / iters;
}

static double pool_map(struct exe_pool *p, size_t n)
{
	void **args = malloc(n * sizeof(void *)), **res = malloc(n * sizeof(void *));
	double t0;
	size_t i;

	for (i = 0; i < n; i++)
		args[i] = (void *)(uintptr_t)i;
	t0 = (double)exe_now_ns();
	if (exe_pool_map_opts(p, empty, args, n, res, NULL, NULL)) {
		fprintf(stderr, "map failed\n");
		exit(1);
	}
	t0 = (double)exe_now_ns() - t0;
	free(args);
	free(res);
	return (double)n / (t0 / 1e9);
}

int main(int argc, char **argv)
{
	double raw64[16], rawmib[16], e_thr[16], e_proc[16], mib_thr[16], mib_proc[16], map[16], lp_e[16],
	    lp_mib[16], r_et[16], r_ep[16], r_mt[16], r_mp[16];
	int provided, rank, size, r, backend;
	int iters = 2000, mib_iters = 50;

	MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	for (r = 1; r < argc; r++) {
		if (!strcmp(argv[r], "--runs") && r + 1 < argc)
			runs = atoi(argv[++r]);
		else if (!strcmp(argv[r], "--quick"))
			iters = 300, mib_iters = 10, runs = 3;
	}
	if (runs < 1 || runs > 16 || size < 2) {
		if (rank == 0)
			fprintf(stderr, "usage: mpirun -n 3 bench_mpi [--runs N (1..16)] [--quick]\n");
		MPI_Finalize();
		return 2;
	}
	/* Each run measures raw MPI and then both pools back to back, so that
	 * the ratios (taken per run, then the median) compare figures taken
	 * under the same load: this machine's load changes within seconds. */
	for (r = 0; r < runs; r++) {
		raw64[r] = raw_pingpong(rank, 64, iters);
		rawmib[r] = raw_pingpong(rank, MIB, mib_iters);
		quiet_barrier();
		for (backend = 0; backend < 2; backend++) {
			struct exe_mpi_pool_opts o = {
			    .backend = backend ? EXE_MPI_PROCESSES : EXE_MPI_THREADS, .workers_per_rank = 1};
			struct exe_pool *p;
			int rc = exe_mpi_pool_create(&p, MPI_COMM_WORLD, &o);

			if (rc == EXE_MPI_SERVED)
				continue;
			if (rc) {
				fprintf(stderr, "exe_mpi_pool_create: %d\n", rc);
				MPI_Abort(MPI_COMM_WORLD, 1);
			}
			(backend ? e_proc : e_thr)[r] = pool_empty(p, iters);
			(backend ? mib_proc : mib_thr)[r] = pool_mib(p, true, mib_iters);
			if (backend)
				map[r] = pool_map(p, 2000000);
			exe_pool_destroy(p);
		}
		if (rank == 0) {
			r_et[r] = e_thr[r] / raw64[r];
			r_ep[r] = e_proc[r] / raw64[r];
			r_mt[r] = mib_thr[r] / rawmib[r];
			r_mp[r] = mib_proc[r] / rawmib[r];
		}
	}
	if (rank == 0) {
		struct exe_pool_opts po = {.workers = 1};
		struct exe_pool *lp;

		exe_process_pool_create(&lp, &po);
		for (r = 0; r < runs; r++) {
			lp_e[r] = pool_empty(lp, iters);
			lp_mib[r] = pool_mib(lp, false, mib_iters);
		}
		exe_pool_destroy(lp);
	}
	quiet_barrier();
	if (rank == 0) {
		double a = median(raw64, runs), b = median(rawmib, runs), et = median(e_thr, runs),
		       ep = median(e_proc, runs), mt = median(mib_thr, runs), mpp = median(mib_proc, runs),
		       mp = median(map, runs), le = median(lp_e, runs), lm = median(lp_mib, runs),
		       ret = median(r_et, runs), rep = median(r_ep, runs), rmt = median(r_mt, runs),
		       rmp = median(r_mp, runs);

		printf("bench_mpi: %d ranks (%d workers), medians of %d runs (ratios: median of the per-run "
		       "ratios)\n",
		       size, size - 1, runs);
		printf("  raw MPI ping-pong 64 B            %10.1f us\n", a / 1e3);
		printf("  raw MPI ping-pong 1 MiB           %10.1f us\n", b / 1e3);
		printf("  mpi pool empty task (threads)     %10.1f us   %.2fx raw 64 B (target <= 4x)\n",
		       et / 1e3, ret);
		printf("  mpi pool empty task (processes)   %10.1f us   %.2fx raw 64 B\n", ep / 1e3, rep);
		printf("  mpi pool 1 MiB in+out (threads)   %10.1f us   %.2fx raw 1 MiB (target <= 1.5x)\n",
		       mt / 1e3, rmt);
		printf("  mpi pool 1 MiB in+out (processes) %10.1f us   %.2fx raw 1 MiB\n", mpp / 1e3, rmp);
		printf("  mpi pool map, processes           %10.0f elements/s (target >= 1e6 with 2 worker "
		       "ranks)\n",
		       mp);
		printf("  local process pool empty task     %10.1f us\n", le / 1e3);
		printf("  local process pool 1 MiB in+out   %10.1f us\n", lm / 1e3);
	}
	MPI_Finalize();
	return 0;
}
