/*
 * mpi_internal.h - libexecutor-mpi's wire format and the pieces its files
 * share: the task registry, the client pool object, the worker-rank server.
 *
 * Wire. Every message starts with struct exe__mpi_hdr and goes with tag
 * EXE__MPI_TAG_HDR; the receiver sizes its buffer with a matched probe
 * (MPI_Improbe + MPI_Mrecv), so a message is one transfer whatever its size.
 *  client -> worker  TASK   hdr, task name, input bytes
 *                    CHUNK  hdr, task name, count 64-bit arguments (a pointer
 *                           task is a chunk of one)
 *                    CANCEL hdr (id of a running task)
 *                    BYE    hdr: the client is done, finish and leave
 *  worker -> client  HELLO  hdr (code = local workers), host name
 *                    RESULT hdr (code, count = chunk elements done), message,
 *                           then the result bytes inline, or, when ext is
 *                           set, in the next EXE__MPI_TAG_PAYLOAD message
 *                           from that rank (sent from where the bytes lie,
 *                           without a copy)
 *                    BYE_ACK hdr: nothing more comes from this rank
 *                    HEARTBEAT hdr: every 250 ms while tasks run there
 * MPI keeps messages between two ranks with the same tag in order, so a
 * payload is always the one announced by the last ext header from its rank.
 */
#ifndef EXE_MPI_INTERNAL_H
#define EXE_MPI_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <executor/mpi.h>
#include "future_internal.h"
#include "pool_internal.h"

#define EXE__MPI_TAG_HDR 7301
#define EXE__MPI_TAG_PAYLOAD 7302
#define EXE__MPI_INLINE_MAX (32 * 1024) /* result bytes sent inside the header message */
#define EXE__MPI_CHUNK_MAX 4096         /* elements per chunk message */
#define EXE__MPI_DEFAULT_POLL_MAX EXE_NS_PER_MS
/* Polling stays hot (yielding, not sleeping) this long after the last
 * message: a round trip of the pool spans several thread hand-offs, and a
 * side that fell asleep in between makes the next one slower still. */
#define EXE__MPI_SPIN_NS (200 * EXE_NS_PER_US)

enum exe__mpi_type {
	EXE__M_HELLO = 1,
	EXE__M_TASK,
	EXE__M_CHUNK,
	EXE__M_CANCEL,
	EXE__M_BYE,
	EXE__M_RESULT,
	EXE__M_BYE_ACK,
	EXE__M_HEARTBEAT,
};

#define EXE__MPI_HEARTBEAT_NS (250 * EXE_NS_PER_MS) /* while tasks run on a rank */
#define EXE__MPI_DEFAULT_LIVENESS (10 * EXE_NS_PER_S)

#define EXE__MPI_F_KILL 1u  /* TASK/CHUNK: kill the worker on cancel */
#define EXE__MPI_F_FORCE 2u /* CANCEL: kill even without EXE__MPI_F_KILL (destroy) */
#define EXE__MPI_DEFAULT_DESTROY_GRACE (5 * EXE_NS_PER_S)

struct exe__mpi_hdr {
	uint32_t type;      /* enum exe__mpi_type */
	uint32_t flags;     /* EXE__MPI_F_* */
	uint64_t id;        /* the client's task id, echoed in RESULT and CANCEL */
	int64_t timeout_ns; /* TASK/CHUNK: the task's time limit, 0 none */
	uint64_t len;       /* bytes of payload (inline or ext) */
	uint32_t name_len;  /* bytes of name (TASK, CHUNK), message (RESULT), host (HELLO) */
	int32_t code;       /* RESULT: 0 or a negative code; HELLO: local workers */
	uint32_t ext;       /* RESULT: the payload follows in its own message */
	uint32_t count;     /* CHUNK: elements; RESULT of a chunk: elements done */
};

/* ---- registry (mpi_registry.c) ---- */

enum exe__mpi_kind { EXE__MPI_BYTES = 1, EXE__MPI_PTR };

/* The function registered as @name (@len bytes, not terminated) with @kind,
 * or NULL. */
void *exe__mpi_lookup(const char *name, size_t len, enum exe__mpi_kind kind);
/* Copy the name @fn was registered under as a pointer task into @buf
 * (EXE_MPI_NAME_MAX bytes, not terminated); its length, 0 if unknown. */
size_t exe__mpi_name_of(exe_task_fn *fn, char *buf);

/* ---- polling ---- */

/* Sleep (on @cond, under @lock, so a wake-up ends it) for a back-off that
 * starts after EXE__MPI_SPIN_NS of busy polling since @last_active and
 * doubles per idle round up to @max_ns. @round counts idle rounds. */
void exe__mpi_backoff(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t last_active, unsigned *round,
                      int64_t max_ns);

/* A message for an MPI error code ("MPI_ERR_...: text"); owned, may be NULL. */
char *exe__mpi_errmsg(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *exe__mpi_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Whether MPI is initialized at MPI_THREAD_MULTIPLE. */
bool exe__mpi_thread_ok(void);

/* ---- the worker rank (mpi_serve.c) ---- */

/* Serve the client at rank @client of @comm until it says BYE. A non-zero
 * @refuse (this rank's options are bad) is sent in the HELLO instead of a
 * worker count, so the client fails its create rather than wait. Returns
 * EXE_MPI_SERVED, or a negative code when the local pool cannot start (or
 * @refuse) or MPI failed. */
int exe__mpi_serve(MPI_Comm comm, int client, const struct exe_mpi_pool_opts *opts, int refuse);

/* ---- the client pool (mpi_pool.c, mpi_progress.c) ---- */

struct exe__mpi_task;

struct exe__mpi_rank {
	int rank;       /* in the pool's communicator (remote group for spawn) */
	unsigned slots; /* local workers there */
	unsigned inflight;
	uint64_t last_seq;  /* the sequence number of the last task sent there */
	int64_t last_heard; /* when a message last came (or the first task went) */
	bool dead;
	char host[64];
	struct exe__mpi_task **table; /* in-flight tasks by slot index (slots entries) */
};

/* A map in chunks: values land here, shared by the map and its chunks
 * (reference counted: a map that stopped early leaves chunks in flight). */
struct exe__mpi_map {
	_Atomic uint32_t refs;
	uint64_t *vals;
	uint32_t *done; /* per chunk: elements finished, published by the chunk's future */
};

struct exe__mpi_task {
	struct exe_future *f;              /* the producer's reference */
	struct exe__mpi_task *prev, *next; /* the client queue, under the pool lock */
	struct exe__mpi_hdr *msg;          /* the whole message: header, name, payload */
	size_t msg_len;
	bool bytes; /* a bytes task (else a chunk or pointer task) */
	MPI_Request send;
	int rank_idx;             /* where it went, -1 while queued */
	struct exe__mpi_map *map; /* map chunks */
	size_t first, chunk;
};

struct exe__mpi_pool {
	struct exe_pool base;
	MPI_Comm comm;
	bool inter; /* spawn: comm is an intercommunicator */
	struct exe__mpi_rank *ranks;
	int nranks;
	int *rank_idx; /* comm rank -> index in ranks (-1: not a worker) */
	int comm_size;
	char name[16];
	int64_t poll_max_ns;
	int64_t liveness_ns;      /* < 0: never */
	int64_t destroy_grace_ns; /* < 0: wait forever */
	int64_t grace_from;       /* progress thread: when destroy found the queue empty (0: not yet) */
	bool forced;              /* progress thread: the forced cancels went out */
	int64_t task_timeout_ns;
	bool kill_on_cancel;
	bool threads_backend;
	pthread_t progress;
	bool progress_started;

	pthread_mutex_t lock;       /* queue, cancel list, flags below */
	pthread_cond_t cond;        /* wakes the progress thread */
	pthread_cond_t done_cond;   /* the progress thread finished (drained) */
	struct exe__mpi_task qhead; /* circular list of queued tasks */
	size_t queued;
	struct exe_future **cancels; /* running tasks to cancel (references), for the progress thread */
	size_t ncancels, cancels_cap;
	bool shutdown;
	bool destroying; /* destroy: running tasks get destroy_grace_ns, then are killed */
	bool drained;    /* the progress thread has said BYE and exited */
	bool sleeping;   /* the progress thread waits on cond */
	uint64_t seq;    /* progress thread only: task id sequence */

	_Atomic uint64_t submitted, completed, failed, cancelled; /* stats: relaxed counters */
	_Atomic uint64_t running;                                 /* in flight on worker ranks */
	_Atomic unsigned live_slots;                              /* workers on ranks still alive */
	_Atomic int live_ranks;
	struct exe__mpi_pool *live_next; /* registry of live pools (cancel of running tasks) */
};

/* The progress thread (mpi_progress.c). */
void *exe__mpi_progress_main(void *arg);
/* Finish a task record: complete its future (callbacks run here), drop the
 * producer's reference, free the record. Progress thread, or any thread for
 * a record that never left the queue. */
void exe__mpi_task_finish(struct exe__mpi_pool *mp, struct exe__mpi_task *t, int code, void *value,
                          exe_free_fn *value_free, char *msg);
void exe__mpi_map_unref(struct exe__mpi_map *m);

extern const struct exe__future_ops exe__mpi_bytes_ops;
extern const struct exe__future_ops exe__mpi_ptr_ops;

/* A bytes result: the future's value. */
struct exe__mpi_bytes {
	void *buf; /* freed with the value (NULL: the bytes follow this struct's allocation) */
	const void *data;
	size_t len;
};
void exe__mpi_bytes_free(void *v);

#endif
