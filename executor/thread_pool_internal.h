/*
 * thread_pool_internal.h - what the thread pool's files share: the pool and
 * worker structures and the calls between the queue (tp_queue.c), the
 * workers and nested waits (tp_worker.c) and the front end (thread_pool.c).
 * The design and invariants are at the top of thread_pool.c.
 */
#ifndef EXE_THREAD_POOL_INTERNAL_H
#define EXE_THREAD_POOL_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "deque.h"
#include "future_internal.h"
#include "mpmc_ring.h"
#include "pool_internal.h"

/* 16 Ki cells (256 KiB, mapped only as far as the ring has gone round):
 * bursts this size never touch the overflow lock. 64 Ki cells measured no
 * faster, and a long-lived pool ends up with the whole ring resident. */
#define RING_SLOTS_UNBOUNDED 16384u
#define SPIN_NS (30 * 1000)         /* idle spin before parking: ~ one cross-core wake */
#define GLOBAL_EVERY 61             /* a worker looks at the shared queue first every N tasks */

struct worker {
	alignas(64) pthread_t thread;
	struct thread_pool *pool;
	unsigned index;
	bool started_ok;
	bool temporary; /* a compensating thread (see task_blocking()) */
	unsigned tick;  /* tasks taken, for GLOBAL_EVERY */
	/* Written by this worker only; read by stats and the exit check.
	 * Temporary workers count in the pool's shared ext_* counters.
	 * submitted: tasks this worker's own tasks pushed on its deque. */
	_Atomic uint64_t started, completed, failed, submitted;
	/* Tasks submitted by this worker's tasks (not by temporary workers,
	 * which use the shared queue). Owner: this worker; thieves: all. */
	struct exe__deque dq;
};

struct thread_pool {
	struct exe_pool base;

	/* Read-mostly after create. */
	unsigned nworkers;
	size_t capacity;
	bool helpable;
	char name[16];
	exe_init_fn *init;
	void *init_arg;
	struct worker *workers;

	/* The injection queue (lock-free; its own lines inside). */
	struct exe__ring ring;

	/* Bounded pools only: not yet started. */
	alignas(64) _Atomic int64_t queued;
	/* Submits refused by shutdown after they reserved a ring position
	 * (their entry is a cancelled future nobody counts): see
	 * exe__tp_enqueue(). */
	_Atomic uint64_t refused;

	/* The overflow list (ring full) and what it took in and moved into
	 * the ring, written under submit_lock; shutdown sets its flag under
	 * it; idle workers check the queue under it. */
	alignas(64) pthread_mutex_t submit_lock;
	struct exe_future *of_head, *of_tail;
	_Atomic uint64_t of_added, of_moved;
	/* Its own line: idle workers poll it, producers test it per submit. */
	alignas(64) _Atomic size_t of_len;

	/* Parking. */
	alignas(64) _Atomic uint32_t park_seq;
	_Atomic uint32_t sleepers;
	_Atomic uint32_t spinners; /* idle workers still polling the queue */

	/* Finishes by threads outside the pool. */
	alignas(64) _Atomic uint64_t ext_started, ext_completed, ext_failed, cancelled;

	/* Blocking submit on a full bounded queue (slow path). */
	alignas(64) pthread_mutex_t space_lock;
	pthread_cond_t space_cond;
	_Atomic uint32_t space_waiters;

	/* Workers not asleep in a wait on a task of this pool, and the
	 * compensating threads alive (task_blocking()). */
	alignas(64) _Atomic int active;
	_Atomic unsigned compensators;

	/* Lifecycle. */
	_Atomic uint32_t shutdown;
	_Atomic unsigned live_workers;
	pthread_mutex_t life_lock; /* serializes join/teardown */
	bool joined;
};

/* A seq_cst fence for the deque-push / idle-worker Dekker pair
 * (push_local(), idle_state()). TSan does not model fences (GCC refuses
 * them under -fsanitize=thread): its builds rely on the seq_cst RMWs
 * around them, which TSan does model. */
#ifdef EXE_TSAN
#define EXE__TP_FENCE() ((void)0)
#else
#define EXE__TP_FENCE() atomic_thread_fence(memory_order_seq_cst)
#endif

/* The permanent worker this thread is, or NULL (tp_worker.c). */
extern EXE__TLS struct worker *exe__tp_tls_self;

static inline struct thread_pool *exe__tp_pool_of(struct exe_pool *p)
{
	return (struct thread_pool *)p;
}

static inline void exe__tp_bump(_Atomic uint64_t *counter)
{
	/* Owned by one thread: a load and a store, no locked instruction. */
	atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}

/* ---- the queue and parking (tp_queue.c) ---- */

enum idle { IDLE_WORK, IDLE_PARK, IDLE_EXIT };

/* Work anywhere: the shared queue or a worker's deque. */
bool exe__tp_queue_nonempty(struct thread_pool *tp);
/* Whether a submit must wake a sleeper (after its entry is in). */
bool exe__tp_wake_needed(struct thread_pool *tp);
/* Tasks accepted through the shared queue. */
uint64_t exe__tp_injected_count(struct thread_pool *tp);
void exe__tp_wake_one(struct thread_pool *tp);
void exe__tp_wake_all(struct thread_pool *tp);
/* Queue @f (0, -ESHUTDOWN); *@wake: a sleeper must be woken. */
int exe__tp_enqueue(struct thread_pool *tp, struct exe_future *f, bool *wake);
/* Queue the chain @head of @n futures (0, -ESHUTDOWN); *@nwake sleepers to wake. */
int exe__tp_enqueue_many(struct thread_pool *tp, struct exe_future *head, size_t n, unsigned *nwake);
/* The shared queue's next entry, or NULL. */
struct exe_future *exe__tp_dequeue(struct thread_pool *tp);
/* The oldest task of another worker's deque (@self: -1 for none), or NULL. */
struct exe_future *exe__tp_steal_any(struct thread_pool *tp, int self);
void exe__tp_park(struct thread_pool *tp);
enum idle exe__tp_stop_spinning(struct thread_pool *tp);

/* ---- accounting, workers, nested waits (tp_worker.c) ---- */

void exe__tp_space_released(struct thread_pool *tp);
uint64_t exe__tp_finished_count(struct thread_pool *tp);
uint64_t exe__tp_submitted_count(struct thread_pool *tp);
bool exe__tp_all_finished(struct thread_pool *tp);
extern const struct exe__future_ops exe__tp_task_ops;
/* Destroy takes it for writing: no thread outside the pool still looks at
 * its queue (task_help_other()). */
extern pthread_rwlock_t exe__tp_pools_alive;
void *exe__tp_worker_main(void *arg);

#endif
