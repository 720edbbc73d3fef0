/*
 * executor/mpi.h - a pool whose workers are MPI ranks, behind the same
 * struct exe_pool and futures as the thread and process pools
 * (libexecutor-mpi: link `pkg-config --libs executor-mpi`, or the CMake
 * target executor::mpi). Not included by <executor.h>: include it yourself.
 *
 * Two ways to get workers.
 *  - Static world: start the program on N ranks (mpirun -n N, srun) and let
 *    every rank call exe_mpi_pool_create(). On the client rank (0 unless
 *    exe_mpi_pool_opts.client_rank says otherwise) it returns a pool; on every
 *    other rank it serves tasks, and returns EXE_MPI_SERVED only after the
 *    client destroyed its pool: that rank then finalizes MPI and exits.
 *        rc = exe_mpi_pool_create(&pool, MPI_COMM_WORLD, NULL);
 *        if (rc == EXE_MPI_SERVED) { MPI_Finalize(); return 0; }
 *  - Spawn: a program started alone calls exe_mpi_pool_spawn(), which starts
 *    N copies of a program (this one by default) with MPI_Comm_spawn(). The
 *    copies run main() as usual; their exe_mpi_pool_create() sees the parent
 *    and serves it. Where the MPI or the launcher cannot spawn (Cray, some
 *    batch systems) it returns -EOPNOTSUPP: use the static world there.
 *
 * Tasks by name. Code addresses differ between processes (PIE, ASLR) and
 * between binaries, so a task is registered under a name on every rank
 * before the pool is created, with EXE_MPI_TASK(fn) at file scope or
 * exe_mpi_register(). Bytes tasks have the process pool's shape
 * (exe_proc_task_fn): bytes in, bytes out, exe_future_bytes() reads the
 * result. Pointer tasks (exe_task_fn) registered with EXE_MPI_PTR_TASK()
 * also run through exe_pool_submit() and exe_pool_map(): the function is
 * found by its address on the client and sent by name; @arg and the value
 * cross as their 64-bit patterns (integers, not pointers). A name the worker
 * does not know fails that future with -ENOENT and a message; an
 * unregistered function given to exe_pool_submit() does the same.
 *
 * Worker ranks. Each worker rank runs its tasks on a local process pool
 * (the default, EXE_MPI_PROCESSES) or thread pool (EXE_MPI_THREADS: faster,
 * no isolation). With processes, a task that crashes fails only its own
 * future, "worker 4121 on host n07 (rank 2) killed by signal 11 (Segmentation
 * fault)" (-ECHILD), and the rank goes on; per-task timeouts and kill on
 * cancel behave as on a local process pool.
 *
 * Threads. One progress thread per client pool ("<name>-p") makes every MPI
 * call of the pool, polling with a short back-off (MPI offers nothing to
 * sleep on), and runs done callbacks of remote tasks; a slow callback delays
 * the pool's results. A rank receives a task only when one of its workers is
 * free, so a long task never holds back a queued one while another rank
 * idles. exe_pool_map_opts() sends a chunk of elements per message (0:
 * about four chunks per worker, at most 4096 elements): a failing element
 * stops its chunk and the map, the values before it are kept; a worker
 * process that dies in a chunk fails the map at the chunk's first element
 * (the values it computed died with it). exe_pool_map() and the lazy
 * exe_pool_map_open() send one message per element.
 * MPI must be initialized by the program with MPI_Init_thread() at
 * MPI_THREAD_MULTIPLE (the progress thread calls MPI beside the program's
 * threads) and finalized after exe_pool_destroy(). Do not destroy an MPI
 * pool from one of its done callbacks: that only shuts it down (the thread
 * cannot join itself) and the pool is never freed.
 *
 * Failure of a whole rank. What happens depends on the MPI, not on this
 * library: Open MPI 4.1 and MPICH without fault tolerance end the whole job
 * when a rank dies (mpirun prints which rank died and of which signal; no
 * process hangs). An MPI that reports the failure instead (error handler
 * MPI_ERRORS_RETURN, which the pool sets on its communicator: ULFM, Open MPI
 * 5 with --with-ft, MPICH with -disable-auto-cleanup) fails that rank's
 * unfinished futures with -ECHILD and a message naming the rank, and the
 * pool goes on with the others; when no rank is left the pool is broken
 * (-ENOTRECOVERABLE, exe_pool_error()). An MPI that does neither (Open MPI
 * 4.1 started with --enable-recovery: the job goes on, the dead rank's
 * messages just never come) is caught by heartbeats: a rank with tasks in
 * flight that stays silent for exe_mpi_pool_opts.liveness_ns is taken for
 * dead, with the same -ECHILD.
 */
#ifndef EXECUTOR_MPI_H
#define EXECUTOR_MPI_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "future.h"
#include "pool.h"
#include "process_pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* exe_mpi_pool_create() on a rank that served a client until it was done:
 * the program should finalize MPI and exit. */
#define EXE_MPI_SERVED 1

/* Longest registered task name, in bytes. */
#define EXE_MPI_NAME_MAX 64

enum exe_mpi_backend {
	EXE_MPI_PROCESSES = 0, /* a local process pool per rank: crashes are isolated */
	EXE_MPI_THREADS,       /* a local thread pool per rank: faster, no isolation */
};

/* Options of exe_mpi_pool_create() and exe_mpi_pool_spawn(). All-zero means
 * the defaults. The worker-side fields are read on the worker ranks (spawned
 * or static), each from its own opts. */
struct exe_mpi_pool_opts {
	/* Static world: the rank of the communicator that gets the pool;
	 * 0: rank 0. Must be the same on every rank. */
	int client_rank;
	/* Worker ranks: how tasks run there. */
	enum exe_mpi_backend backend;
	/* Worker ranks: local workers per rank; 0: the rank's online CPUs. */
	unsigned workers_per_rank;
	/* Client: a task running longer fails with -ETIME (its local worker
	 * process is killed); 0: no limit. Processes backend only. */
	int64_t task_timeout_ns;
	/* Client: exe_future_cancel() of a running task kills its worker
	 * process (EXE_SUBMIT_KILL_ON_CANCEL for every task). */
	bool kill_on_cancel;
	/* Client: the progress thread is "<name>-p"; 0 (NULL): "mpi". */
	const char *name;
	/* Both: the longest sleep of an idle poll loop; 0: 1 ms. Shorter is
	 * faster to react after idling and costs more CPU. */
	int64_t poll_max_ns;
	/* Client: a worker rank that runs tasks of this pool sends a heartbeat
	 * every 250 ms; one silent this long (or that does not answer the
	 * final BYE within it) is taken for dead: its tasks fail with -ECHILD
	 * and the pool goes on without it. For an MPI that neither aborts the
	 * job nor reports the failure (Open MPI 4.1 with --enable-recovery).
	 * 0: 10 s; EXE_FOREVER: never. */
	int64_t liveness_ns;
	/* Client: exe_pool_destroy(), once nothing is queued, gives running
	 * tasks this long, then kills them (processes backend; -ECANCELED),
	 * as a local process pool does; 0: 5 s; EXE_FOREVER: wait for them.
	 * Thread tasks are only asked to stop (exe_task_cancelled()). */
	int64_t destroy_grace_ns;
	/* Spawn: the program to start; NULL: this program (/proc/self/exe). */
	const char *command;
	/* Spawn: its arguments (NULL-terminated, without argv[0]); NULL: none. */
	char *const *argv;
};

/*
 * exe_mpi_pool_create - make an MPI pool over the ranks of @comm (static
 * world; collective: every rank of @comm calls it), or serve the parent when
 * this process was spawned by exe_mpi_pool_spawn() (then @comm is unused).
 * The pool works on a duplicate of @comm. On the client rank, *@out gets the
 * pool once every worker rank said how many workers it has.
 * On a worker rank the call serves until the client destroys its pool;
 * *@out is then NULL.
 * Return: 0 with *@out on the client; EXE_MPI_SERVED on a worker rank;
 * -EINVAL (bad argument or option, a communicator with one rank),
 * -EOPNOTSUPP (MPI not initialized at MPI_THREAD_MULTIPLE on the client),
 * -ENOMEM, -ENOTRECOVERABLE (an MPI call failed: the job is unusable), or a
 * code from the local pool a worker rank could not start.
 */
EXE_API int exe_mpi_pool_create(struct exe_pool **out, MPI_Comm comm, const struct exe_mpi_pool_opts *opts);

/*
 * exe_mpi_pool_spawn - start @nprocs worker processes with MPI_Comm_spawn()
 * (opts->command, default this program) and make a pool of them. Only this
 * process calls it (MPI_COMM_SELF is the parent). The spawned programs must
 * call exe_mpi_pool_create() (it serves, then returns EXE_MPI_SERVED).
 * Return: 0 with *@out, -EINVAL, -EOPNOTSUPP (this MPI or launcher cannot
 * spawn, or MPI is not at MPI_THREAD_MULTIPLE), -ENOMEM, -ENOTRECOVERABLE.
 */
EXE_API int exe_mpi_pool_spawn(struct exe_pool **out, int nprocs, const struct exe_mpi_pool_opts *opts);

/*
 * exe_mpi_register - register a bytes task under @name (at most
 * EXE_MPI_NAME_MAX bytes) in this process. Register the same names on every
 * rank, before exe_mpi_pool_create(). Registering a name again with the same
 * function is a no-op. Thread-safe.
 * Return: 0, -EINVAL (NULL, empty or long name, NULL fn, the name taken by
 * another function), -ENOMEM.
 */
EXE_API int exe_mpi_register(const char *name, exe_proc_task_fn *fn);

/* exe_mpi_register_ptr - the same for a pointer task (exe_task_fn), which
 * exe_pool_submit() and exe_pool_map() then find by its address.
 * Return: as exe_mpi_register(). */
EXE_API int exe_mpi_register_ptr(const char *name, exe_task_fn *fn);

/* Register at program start, under the function's own name. At file scope. */
#define EXE_MPI_TASK(fn)                                                                                     \
	__attribute__((constructor)) static void exe__mpi_reg_##fn(void)                                     \
	{                                                                                                    \
		(void)exe_mpi_register(#fn, fn);                                                             \
	}
#define EXE_MPI_PTR_TASK(fn)                                                                                 \
	__attribute__((constructor)) static void exe__mpi_reg_##fn(void)                                     \
	{                                                                                                    \
		(void)exe_mpi_register_ptr(#fn, fn);                                                         \
	}

/*
 * exe_mpi_submit - queue the bytes task registered as @name on an MPI pool.
 * The input is copied before the call returns. @o (may be NULL) may set
 * EXE_SUBMIT_KILL_ON_CANCEL and task_timeout_ns (processes backend);
 * EXE_SUBMIT_BLOCK is accepted and never needed (the client queue is
 * unbounded); result_free must be NULL. exe_future_bytes() reads the result.
 * @out (may be NULL) receives a reference to the future. Thread-safe.
 * Return: 0, -EINVAL (NULL @p, NULL or long @name, @in NULL with a length,
 * a bad option), -EOPNOTSUPP (@p is not an MPI pool), -ESHUTDOWN,
 * -ENOTRECOVERABLE (pool broken), -ENOMEM. An unknown name fails the future
 * (-ENOENT), not the submit.
 */
EXE_API int exe_mpi_submit(struct exe_pool *p, const char *name, const void *in, size_t in_len,
                           const struct exe_submit_opts *o, struct exe_future **out);

/* exe_mpi_pool_ranks - how many worker ranks @p has left (0 for NULL or a
 * pool of another kind). */
EXE_API int exe_mpi_pool_ranks(struct exe_pool *p);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_MPI_H */
