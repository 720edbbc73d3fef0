/*
 * mpi_primes.c - count the primes below N with exe_pool_map(), on whatever
 * pool the command line names. The workload does not change: only the call
 * that creates the pool does.
 *
 *   mpi_primes --pool process            # one machine, a process per CPU
 *   mpi_primes --pool thread
 *   mpirun -n 4 mpi_primes --pool mpi    # rank 0 counts, ranks 1..3 work
 *   srun -n 64 mpi_primes --pool mpi     # the same on a Slurm cluster
 *
 * Each element of the map is a block of numbers; the task returns how many
 * primes the block holds (trial division: plain CPU work). The program
 * checks the total against a sieve and exits non-zero if they differ.
 */
#include <errno.h>
#include <executor.h>
#include <executor/mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 10000

static bool is_prime(long n)
{
	if (n < 2)
		return false;
	for (long d = 2; d * d <= n; d++)
		if (n % d == 0)
			return false;
	return true;
}

/* One block: the primes in [b * BLOCK, (b + 1) * BLOCK). */
static int count_block(void *arg, void **result)
{
	long b = (long)(intptr_t)arg, n = 0;

	for (long x = b * BLOCK; x < (b + 1) * BLOCK; x++)
		n += is_prime(x);
	*result = (void *)(intptr_t)n;
	return 0;
}
/* Found by name on the MPI ranks; harmless for the local pools. */
EXE_MPI_PTR_TASK(count_block)

static long sieve_count(long limit)
{
	char *composite = calloc((size_t)limit, 1);
	long n = 0;

	for (long i = 2; i < limit; i++) {
		if (composite[i])
			continue;
		n++;
		for (long j = i * i; j < limit; j += i)
			composite[j] = 1;
	}
	free(composite);
	return n;
}

/* The workload: the same for every pool. */
static int count_primes(struct exe_pool *pool, long blocks, long *total)
{
	void **args = malloc((size_t)blocks * sizeof(void *));
	void **counts = malloc((size_t)blocks * sizeof(void *));
	size_t failed = 0;
	int rc;

	for (long b = 0; b < blocks; b++)
		args[b] = (void *)(intptr_t)b;
	rc = exe_pool_map(pool, count_block, args, (size_t)blocks, counts, EXE_FOREVER, &failed);
	*total = 0;
	for (long b = 0; rc == 0 && b < blocks; b++)
		*total += (long)(intptr_t)counts[b];
	if (rc)
		fprintf(stderr, "map failed at block %zu: %s\n", failed, exe_strerror(rc));
	free(args);
	free(counts);
	return rc;
}

int main(int argc, char **argv)
{
	const char *kind = "process";
	long blocks = 200, total = 0, expect;
	struct exe_pool *pool = NULL;
	bool mpi = false;
	int64_t t0;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pool") && i + 1 < argc)
			kind = argv[++i];
		else if (!strcmp(argv[i], "--blocks") && i + 1 < argc)
			blocks = atol(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--pool process|thread|mpi] [--blocks N]\n", argv[0]);
			return 2;
		}
	}
	if (blocks < 1) {
		fprintf(stderr, "--blocks must be positive\n");
		return 2;
	}
	if (!strcmp(kind, "mpi")) {
		int provided;

		mpi = true;
		MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
		rc = exe_mpi_pool_create(&pool, MPI_COMM_WORLD, NULL);
		if (rc == EXE_MPI_SERVED) { /* a worker rank: its client is done */
			MPI_Finalize();
			return 0;
		}
	} else if (!strcmp(kind, "thread")) {
		rc = exe_thread_pool_create(&pool, NULL);
	} else if (!strcmp(kind, "process")) {
		rc = exe_process_pool_create(&pool, NULL);
	} else {
		fprintf(stderr, "unknown pool '%s'\n", kind);
		return 2;
	}
	if (rc) {
		fprintf(stderr, "creating the %s pool: %s\n", kind, exe_strerror(rc));
		if (mpi)
			MPI_Finalize();
		return 1;
	}

	t0 = exe_now_ns();
	rc = count_primes(pool, blocks, &total);
	t0 = exe_now_ns() - t0;
	exe_pool_destroy(pool);
	if (mpi)
		MPI_Finalize();
	if (rc)
		return 1;
	expect = sieve_count(blocks * BLOCK);
	printf("%ld primes below %ld on a %s pool in %.1f ms (sieve: %ld)\n", total, blocks * BLOCK, kind,
	       (double)t0 / 1e6, expect);
	return total == expect ? 0 : 1;
}
