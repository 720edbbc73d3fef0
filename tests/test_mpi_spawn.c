/*
 * test_mpi_spawn.c - exe_mpi_pool_spawn(): a program started alone (mpirun
 * -n 1) spawns two copies of itself as worker ranks; the copies serve from
 * their exe_mpi_pool_create() and exit. Checks results, a map, and that
 * destroy lets the spawned ranks go (the job ends). Where the MPI cannot
 * spawn, -EOPNOTSUPP is the documented answer: the program says so and
 * exits 77, which CTest reports as skipped. With --expect-refusal (run
 * alone where the launcher has no free slot) -EOPNOTSUPP is required: the
 * refusal must come back as a code, not abort the program.
 */
#include <errno.h>
#include <executor.h>
#include <executor/mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int twice(void *arg, void **result)
{
	*result = (void *)((intptr_t)arg * 2);
	return 0;
}
EXE_MPI_PTR_TASK(twice)

int main(int argc, char **argv)
{
	struct exe_mpi_pool_opts o = {.workers_per_rank = 1, .backend = EXE_MPI_THREADS};
	void *args[1000], *res[1000];
	struct exe_pool *p = NULL;
	struct exe_future *f;
	int provided, rc, fails = 0, i;
	void *v = NULL;

	MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
	/* In a spawned copy this serves the parent and returns SERVED. */
	MPI_Comm parent;
	MPI_Comm_get_parent(&parent);
	if (parent != MPI_COMM_NULL) {
		rc = exe_mpi_pool_create(&p, MPI_COMM_WORLD, &o);
		MPI_Finalize();
		return rc == EXE_MPI_SERVED ? 0 : 1;
	}
	if (exe_mpi_pool_spawn(&p, 0, &o) != -EINVAL) {
		fprintf(stderr, "FAIL: 0 processes accepted\n");
		fails++;
	}
	rc = exe_mpi_pool_spawn(&p, 2, &o);
	if (argc > 1 && !strcmp(argv[1], "--expect-refusal")) {
		printf("spawn refused: %d (want %d)\n", rc, -EOPNOTSUPP);
		if (rc == 0)
			exe_pool_destroy(p);
		MPI_Finalize();
		return rc == -EOPNOTSUPP ? 0 : 1;
	}
	if (rc == -EOPNOTSUPP) {
		printf("this MPI cannot spawn here: exe_mpi_pool_spawn() says -EOPNOTSUPP (skipped)\n");
		MPI_Finalize();
		return 77;
	}
	if (rc) {
		fprintf(stderr, "FAIL: spawn: %d\n", rc);
		MPI_Finalize();
		return 1;
	}
	if (exe_mpi_pool_ranks(p) != 2) {
		fprintf(stderr, "FAIL: %d ranks\n", exe_mpi_pool_ranks(p));
		fails++;
	}
	rc = exe_pool_submit(p, twice, (void *)21, &f);
	if (rc || exe_future_result(f, &v, 30 * EXE_NS_PER_S) || (intptr_t)v != 42) {
		fprintf(stderr, "FAIL: task: %d %ld\n", rc, (long)(intptr_t)v);
		fails++;
	}
	if (!rc)
		exe_future_unref(f);
	for (i = 0; i < 1000; i++)
		args[i] = (void *)(intptr_t)i;
	rc = exe_pool_map_opts(p, twice, args, 1000, res, &(struct exe_map_opts){.chunk = 100}, NULL);
	for (i = 0; rc == 0 && i < 1000; i++)
		if ((intptr_t)res[i] != 2 * i)
			rc = -EBADMSG;
	if (rc) {
		fprintf(stderr, "FAIL: map: %d\n", rc);
		fails++;
	}
	exe_pool_destroy(p);
	MPI_Finalize();
	printf("spawn: %d failures\n", fails);
	return fails ? 1 : 0;
}
