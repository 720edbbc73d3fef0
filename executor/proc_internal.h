/*
 * proc_internal.h - the process pool's pieces as its files see them: the
 * channel frame, the fork-server messages, the task record, the pool.
 *
 * Files: process_pool.c (create, submit, queue, shutdown, stats),
 * proc_bytes.c (bytes tasks: input copies, result bytes), proc_map.c (the
 * chunked map),
 * proc_collector.c (the collector thread: worker channels, dispatch, deaths,
 * deadlines), proc_worker.c (the fork server and the worker loop, in the
 * child processes), proc_frame.c (framing and memfd payloads, both sides),
 * proc_arena.c (the shared payload arena), proc_ring.c (the shared task
 * ring and the result cells, both sides). Chunked maps: proc_map.c
 * queues them, proc_worker.c runs them, proc_collector.c finishes them.
 */
#ifndef EXE_PROC_INTERNAL_H
#define EXE_PROC_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <executor.h>
#include "pool_internal.h"

/* ---- the channel frame ---- */

#define EXE__FRAME_MAGIC 0x45584546u  /* "FEXE" little-endian */
#define EXE__INLINE_MAX (32u * 1024)  /* larger payloads travel in a memfd */
#define EXE__PAYLOAD_MAX (1ull << 40) /* memfd payloads: sanity bound */
#define EXE__RX_CAP (2 * (EXE__INLINE_MAX + 64))
#define EXE__RX_FDS 8

/* Adaptive spin before sleeping, both sides of a channel: a wait that ended
 * within the maximum spin doubles the next budget (at least the minimum),
 * a longer one halves it. Waking a sleeping process costs ~5-50 us; polling
 * a socket ~0.5 us. */
#define EXE__SPIN_MIN_NS 2000
#define EXE__SPIN_MAX_NS 50000

static inline int64_t exe__spin_adapt(int64_t budget, int64_t waited)
{
	if (waited <= EXE__SPIN_MAX_NS) {
		budget = budget * 2 < EXE__SPIN_MIN_NS ? EXE__SPIN_MIN_NS : budget * 2;
		return budget > EXE__SPIN_MAX_NS ? EXE__SPIN_MAX_NS : budget;
	}
	return budget / 2;
}

/*
 * Tasks and results travel through shared memory (the ring and the cells
 * below); the channel carries only what cannot: init's outcome, memfd
 * payloads, and wake-ups of a sleeping collector. The task kinds double as
 * the ring slots' kinds; the result kinds as the cells' result kinds.
 */
enum exe__frame_kind {
	EXE__F_TASK_PTR = 1,     /* a slot: word = fn, arg = arg */
	EXE__F_TASK_BYTES = 2,   /* parent -> worker: the memfd input of the claimed task
	                          * (word = fn, out/out_cap = arena block); also a slot kind */
	EXE__F_READY = 3,        /* worker -> parent: init done, status = its code */
	EXE__F_RESULT_PTR = 4,   /* a result: status, word = value */
	EXE__F_RESULT_BYTES = 5, /* worker -> parent: a memfd result (out = slot);
	                          * also a result kind */
	EXE__F_TASK_CHUNK = 6,   /* a slot: word = fn, payload = args */
	EXE__F_RESULT_CHUNK = 7, /* a result: word = values (in the cell), status */
	EXE__F_NEED = 8,         /* worker -> parent: send the memfd input of task id
	                          * (out = slot) */
	EXE__F_WAKE = 9,         /* worker -> parent: the collector slept; look at the cells */
	EXE__F_KIND_MAX = 9,
};

#define EXE__FF_MEMFD (1u << 0) /* the payload is the memfd sent with the header */
#define EXE__FF_MSG (1u << 1)   /* the payload is an error message (status != 0) */
#define EXE__FF_ARENA (1u << 2) /* the payload is in the arena (task: at arg; result: at out) */
#define EXE__FF_ALL (EXE__FF_MEMFD | EXE__FF_MSG | EXE__FF_ARENA)

/* Fixed-size header, then @len payload bytes (none with EXE__FF_MEMFD).
 * Both ends run the same binary, so host byte order is fine. */
struct exe__frame {
	uint32_t magic;
	uint16_t kind;
	uint16_t flags;
	uint64_t id; /* task id; 0 for READY */
	uint64_t word;
	uint64_t arg;
	uint64_t len;
	uint64_t out;     /* TASK_BYTES: arena offset for the result */
	uint64_t out_cap; /* ... and its capacity; 0: none */
	int32_t status;
	uint32_t check; /* hash of every field above */
};
_Static_assert(sizeof(struct exe__frame) == 64, "frame header layout");

void exe__frame_seal(struct exe__frame *h);

/* Check a received header. Return 0, or -EBADMSG with a static reason. */
int exe__frame_check(const struct exe__frame *h, const char **why);

/* Send @h with @len payload bytes from @payload (inline) or the memfd @fd
 * (>= 0; then h->flags has EXE__FF_MEMFD). Blocking; never raises SIGPIPE.
 * Return 0 or -errno. */
int exe__frame_send(int sock, struct exe__frame *h, const void *payload, int fd);

/* A receive buffer for one end of a channel, with the descriptors that came
 * with the bytes (in order: frame N's memfd arrives no later than its
 * header). */
struct exe__rx {
	unsigned char *buf;
	size_t start, end;
	int fds[EXE__RX_FDS];
	unsigned nfds;
};

int exe__rx_init(struct exe__rx *rx);
void exe__rx_fini(struct exe__rx *rx); /* closes descriptors still held */

/* Read what is available (@nonblock) or at least one byte. Return bytes
 * read, 0 at end of stream, -EAGAIN, -EBADMSG (descriptors truncated), or
 * -errno. */
ssize_t exe__rx_fill(struct exe__rx *rx, int sock, bool nonblock);

/* The next complete frame: 1 with *@h, *@payload (inline bytes, valid until
 * the next fill) and *@fd (its memfd, now the caller's, or -1); 0 when more
 * bytes are needed; -EBADMSG with *@why. */
int exe__rx_next(struct exe__rx *rx, struct exe__frame *h, const unsigned char **payload, int *fd,
                 const char **why);

/* A sealed memfd holding a copy of @len bytes. Return the fd or -errno. */
int exe__memfd_from(const void *data, size_t len, const char *name);

/* Map a received memfd read-only after checking its seals and size.
 * Return 0 with *@map, or -EBADMSG with *@why, or -errno. */
int exe__memfd_map(int fd, uint64_t len, void **map, const char **why);

/* ---- the shared payload arena (proc_arena.c) ---- */

#define EXE__ARENA_SIZE ((size_t)256 << 20) /* virtual; pages come on use */
#define EXE__ARENA_CLASSES 9                /* 64 KiB .. 16 MiB blocks */

struct exe__arena;

int exe__arena_create(struct exe__arena **out, size_t size);
void exe__arena_ref(struct exe__arena *a);
void exe__arena_unref(struct exe__arena *a);
void *exe__arena_base(const struct exe__arena *a);
size_t exe__arena_size(const struct exe__arena *a);
size_t exe__arena_class_size(int cls);
/* A block of at least @len bytes: its class with *@off, or -1 (use a
 * memfd). */
int exe__arena_alloc(struct exe__arena *a, size_t len, uint64_t *off);
void exe__arena_free(struct exe__arena *a, int cls, uint64_t off);

/* ---- map chunks ---- */

#define EXE__CHUNK_MAX 1024u     /* elements per chunk: 8 KiB of arguments */
#define EXE__CHUNK_AUTO_MAX 256u /* the largest automatic chunk */

/* ---- the task ring and the result cells (proc_ring.c) ---- */

#define EXE__RING_SLOTS 64u               /* tasks placed where workers take them */
#define EXE__SLOT_INLINE (8u * 1024)      /* input bytes in a slot (a chunk's arguments fit) */
#define EXE__RESULTS 8u                   /* result entries per cell */
#define EXE__RESULT_INLINE (4096u - 64u)  /* result bytes (or message) in an entry */

/* A slot's state word: FREE and PENDING are written by the parent (under
 * the pool lock), CLAIMED by the worker that takes it, with its cell. */
#define EXE__SLOT_FREE 0u
#define EXE__SLOT_PENDING 1u
#define EXE__SLOT_CLAIMED(cell) (2u | ((uint32_t)(cell) + 1) << 8)

struct exe__slot {
	_Atomic uint32_t state;
	uint16_t kind, flags; /* flags: EXE__FF_* of the input */
	_Atomic uint64_t pos; /* the ring position it holds (or last held) */
	uint64_t id, fn, arg, len, out, out_cap;
	alignas(64) unsigned char payload[EXE__SLOT_INLINE];
};

/* In memory shared with every worker (mapped before the fork server). The
 * parent publishes positions in order; workers take them first come, first
 * served, each by one compare-and-swap on the slot's state. */
struct exe__ring {
	alignas(64) _Atomic uint64_t put; /* positions published (parent, under the pool lock) */
	_Atomic uint32_t bell;            /* futex: moves with every put and every stop */
	alignas(64) _Atomic uint64_t take; /* the next position to look at (a hint: workers) */
	alignas(64) _Atomic uint32_t sleepers; /* workers asleep on bell */
	alignas(64) _Atomic uint32_t collector_asleep; /* set by the collector before it sleeps */
	struct exe__slot slots[EXE__RING_SLOTS];
};

/* One result as a worker posts it in its cell. */
struct exe__result {
	uint64_t id;
	uint32_t slot;
	uint16_t kind;  /* EXE__F_RESULT_PTR / _BYTES / _CHUNK */
	uint16_t flags; /* EXE__FF_ARENA: the bytes are in the task's out block; EXE__FF_MSG */
	int32_t status;
	uint32_t pad;
	uint64_t word; /* PTR: the value; CHUNK: values done (in the cell's vals) */
	uint64_t len;  /* bytes in data (inline bytes or message), or in the arena */
	alignas(64) unsigned char data[EXE__RESULT_INLINE];
};

/*
 * A worker's cell, in memory shared with every worker. Each worker process
 * owns one for its life: it posts its claims and results here, and its
 * progress through a map chunk, so a death mid-chunk loses nothing that
 * finished before it. The collector reads it (and after a death, drains it).
 */
struct exe__cell {
	alignas(64) _Atomic uint64_t claim; /* last task taken: (slot + 1) << 48 | id */
	_Atomic int64_t start;              /* ... when (CLOCK_MONOTONIC), stored before claim */
	_Atomic uint32_t stop;              /* the collector asks it to exit when idle */
	alignas(64) _Atomic uint32_t posted; /* results posted (worker) */
	alignas(64) _Atomic uint32_t acked;  /* results consumed (collector); futex */
	_Atomic uint32_t ack_waiting;        /* the worker sleeps on acked */
	alignas(64) _Atomic uint64_t id;     /* the chunk task being run */
	_Atomic uint64_t done;               /* elements finished, their values below */
	uint64_t vals[EXE__CHUNK_MAX];
	struct exe__result results[EXE__RESULTS];
};

/* The fields of a result entry the collector acts on, copied out of the
 * shared entry once (the worker may rewrite it meanwhile). */
struct exe__result_head {
	uint16_t kind, flags;
	int32_t status;
	uint64_t word, len;
};

/* Check @r against the task it names: its kind (EXE__F_TASK_*), its chunk
 * length (chunks) and the arena block it was offered (@out_cap, 0: none).
 * Return 0, or -EBADMSG with a static reason in *@why. */
int exe__result_check(const struct exe__result_head *r, uint16_t task_kind, uint64_t chunk_len, uint64_t out_cap,
                      const char **why);

#define EXE__CLAIM(slot, id) (((uint64_t)(slot) + 1) << 48 | ((id) & ((1ull << 48) - 1)))
#define EXE__CLAIM_SLOT(c) ((uint32_t)((c) >> 48) - 1)
#define EXE__CLAIM_ID(c) ((c) & ((1ull << 48) - 1))

/* One exe_pool_map_opts() call as its chunk tasks see it: the collector
 * writes a chunk's values and progress, then completes the chunk's future;
 * the map reads them after the future finished. Shared by the map and every
 * chunk task (a map that stopped early may leave chunks running). */
struct exe__pmap {
	_Atomic uint32_t refs;
	uint64_t *vals; /* n values, in element order */
	uint32_t *done; /* per chunk: elements finished (before its failure) */
};

void exe__pmap_unref(struct exe__pmap *m);

/* ---- fork-server messages (SOCK_SEQPACKET) ---- */

#define EXE__CTL_MAGIC 0x4c544345u

enum exe__ctl_type {
	EXE__CTL_SPAWN = 1,   /* parent -> server, with the worker's channel end */
	EXE__CTL_SPAWNED = 2, /* server -> parent: pid (or -errno), with its pidfd */
	EXE__CTL_EXITED = 3,  /* server -> parent: pid reaped, si_code, si_status */
};

struct exe__ctl_msg {
	uint32_t magic;
	uint32_t type;
	uint64_t seq; /* the parent's worker serial */
	int32_t slot;
	int32_t cell; /* SPAWN: the worker's cell */
	int32_t pid;
	int32_t code; /* CLD_EXITED, CLD_KILLED, CLD_DUMPED */
	int32_t status;
	int32_t pad;
};

int exe__ctl_send(int sock, const struct exe__ctl_msg *m, int fd);
/* Return 1 with *@m and *@fd (or -1), 0 at end, -errno. */
int exe__ctl_recv(int sock, struct exe__ctl_msg *m, int *fd, bool nonblock);

/* ---- tasks and the pool ---- */

struct exe__ptask {
	struct exe__ptask *prev, *next; /* the pool queue (lock), or collector lists */
	struct exe_future *f;           /* the producer's reference */
	uint64_t id;
	uint64_t fn, arg;
	int64_t timeout_ns;  /* 0: none */
	int64_t deadline;    /* set when the task starts */
	int memfd;           /* large input, or -1 */
	int in_cls, out_cls; /* arena blocks (input, result), or -1 */
	uint64_t in_off, out_off;
	struct exe__pmap *map; /* EXE__F_TASK_CHUNK: its map (a reference) */
	size_t first;          /* ... its first element */
	size_t chunk;          /* ... its index in the map */
	uint16_t kind;         /* EXE__F_TASK_PTR / _BYTES / _CHUNK */
	bool kill_on_cancel;
	bool queued; /* linked in the pool queue */
	int slot;    /* its ring slot while placed; -1 not placed, -2 withdrawn (cancel) */
	size_t in_len;
	unsigned char in[]; /* small input (a chunk: its arguments) */
};

struct exe__pworker;

struct exe__proc_pool {
	struct exe_pool base;

	/* Read-only after create (also in every child process). */
	unsigned nworkers;
	size_t capacity;
	char name[16];
	exe_init_fn *init;
	void *init_arg;
	unsigned max_tasks;
	int64_t task_timeout_ns;
	int64_t term_grace_ns;
	int64_t destroy_grace_ns;
	bool kill_on_cancel;
	pid_t parent_pid;
	struct exe__arena *arena;
	struct exe__cell *cells; /* kid_cap worker cells, shared */
	size_t cells_size;
	struct exe__ring *ring; /* shared */
	_Atomic int out_hint; /* arena class for the next large result, or -1 */

	/* The queue and lifecycle flags. */
	pthread_mutex_t lock;
	pthread_cond_t cond;     /* room in a bounded queue; collector start */
	struct exe__ptask qhead; /* sentinel of a circular list */
	struct exe__ptask *unplaced;  /* the first queued task not in the ring (or &qhead):
	                               * the ones before it are placed or withdrawn */
	struct exe__ptask *slot_task[EXE__RING_SLOTS]; /* what each slot holds; NULL: free */
	uint64_t put;                 /* the next ring position */
	size_t queued;
	unsigned space_waiters;
	uint64_t next_id;
	bool shutdown, destroying;
	int start_rc; /* collector start: 1 pending, 0 ok, <0 failed */

	/* Counters: written by submitters, cancellers and the collector. */
	_Atomic uint64_t submitted, started, completed, failed, cancelled, restarts;
	_Atomic unsigned live_workers;
	_Atomic bool stopped; /* the collector has exited */

	/* Waking the collector: one eventfd write per sleep. wake_pending is
	 * set while the collector is awake or already woken (under the lock);
	 * kicks counts every wake request (under the lock, read by the spinning
	 * collector without it). */
	int evfd;
	_Atomic uint32_t wake_pending;
	_Atomic uint32_t kicks;

	/* Collector thread. */
	pthread_t collector;
	pthread_mutex_t life_lock; /* serializes join */
	bool joined;
	struct exe__proc_pool *live_next; /* registry of live pools (cancel wake) */

	/* Owned by the collector thread (and set up before it starts). */
	int epfd;
	int ctl;       /* our end of the fork-server socket */
	int ctl_child; /* the server's end, closed after fork */
	pid_t server_pid;
	int server_pidfd;
	struct exe__pworker *workers;             /* every worker process not yet reaped */
	struct exe__pworker **slots;              /* the active worker of each slot */
	uint64_t worker_seq;
	int64_t drain_deadline;   /* destroy: when stragglers get killed */
	unsigned nprocs;          /* worker objects alive (limit: kid_cap) */
	unsigned char *cell_used; /* kid_cap flags: cells owned by a worker */

	/* The fork server's tables, allocated before it is forked so that it
	 * never allocates. */
	unsigned kid_cap;
	void *server_mem;
};

/* A worker that fails init or cannot start breaks the pool:
 * exe__pool_mark_broken() on &pp->base (pool_internal.h). */

/* Wake the collector (any thread). */
void exe__proc_wake(struct exe__proc_pool *pp);

/* The front end's tables (process_pool.c). */
extern const struct exe__pool_ops exe__proc_pool_ops;
extern const struct exe__future_ops exe__proc_ptr_ops;   /* pointer tasks, map chunks */
extern const struct exe__future_ops exe__proc_bytes_ops; /* bytes tasks */
/* The bytes of a DONE bytes task (the ops' bytes hook). */
void exe__proc_bytes_of(const struct exe_future *f, const void **data, size_t *len);

/* A zeroed task record with room for @inline_len input bytes. */
struct exe__ptask *exe__proc_task_new(size_t inline_len);
void exe__proc_task_free(struct exe__ptask *t);
/* Queue @t (its input already copied) with a new future; takes ownership
 * of @t. Return: 0 with *@out (may be NULL), or the submit codes. */
int exe__proc_enqueue(struct exe__proc_pool *pp, struct exe__ptask *t, const struct exe__future_ops *ops,
                      const struct exe_submit_opts *o, struct exe_future **out);
/* exe__pool_ops.map and .map_open (proc_map.c). */
int exe__proc_map(struct exe_pool *p, exe_task_fn *fn, void *const *args, size_t n, void **results,
                  int64_t deadline, size_t chunk, size_t *failed_index);
int exe__proc_map_open(struct exe_map_iter **out, struct exe_pool *p, exe_task_fn *fn, void *const *args,
                       size_t n, size_t window, size_t chunk);

/* The ring, parent side (proc_ring.c; the pool lock held). */
/* Place queued tasks into free slots, in queue order; wake sleeping workers. */
void exe__ring_fill_locked(struct exe__proc_pool *pp);
/* Withdraw a queued task from the ring before it is cancelled: 0 (it will
 * never start), or -EBUSY (a worker took it: its future is now RUNNING). */
int exe__ring_revoke_locked(struct exe__proc_pool *pp, struct exe__ptask *t);
/* The task the worker of @cell claimed from @slot (its id must be @id):
 * take it off the queue, free the slot, claim its future (RUNNING), refill.
 * NULL when the slot does not hold that task claimed by that worker (a
 * lying or broken worker). */
struct exe__ptask *exe__ring_attach_locked(struct exe__proc_pool *pp, unsigned cell, uint64_t slot, uint64_t id);
/* Slots still claimed by the dead worker of @cell that it never reported:
 * put their tasks back in line (it died between its claim and its report,
 * so they never started), or, with @taken, take them off the queue
 * (RUNNING) and chain them there through ->next (a worker that broke the
 * protocol may have run them). Return how many. */
unsigned exe__ring_reclaim_locked(struct exe__proc_pool *pp, unsigned cell, struct exe__ptask **taken);
/* Ask the worker of @cell to exit once idle (also wakes it). */
void exe__ring_stop(struct exe__proc_pool *pp, unsigned cell);

/* The ring, worker side. */
/* Wait for a task and claim it: its slot index, or -1 when asked to stop.
 * @spin_ns adapts as the channels' spins do. */
int exe__ring_take(struct exe__ring *r, struct exe__cell *c, unsigned cell, int64_t *spin_ns);
/* Wait until the collector consumed all but @keep of this cell's results. */
void exe__cell_wait_acked(struct exe__cell *c, uint32_t keep);
/* Publish the result written at c->results[c->posted % EXE__RESULTS]
 * (after exe__cell_wait_acked(c, EXE__RESULTS - 1)). */
void exe__cell_post(struct exe__cell *c);
/* After a post or a claim: true when the collector sleeps and this caller
 * must wake it (one caller per sleep is told so). */
bool exe__ring_collector_wanted(struct exe__ring *r);

/* Collector side (proc_collector.c). */
void *exe__proc_collector_main(void *arg);
/* Take the next queued task no worker has taken (withdrawn from the ring)
 * and claim it (PENDING -> RUNNING), to fail it: NULL when there is none.
 * Takes the lock. */
struct exe__ptask *exe__proc_queue_take(struct exe__proc_pool *pp);
/* Finish a claimed task: complete, count, drop the producer reference,
 * free the record. Collector thread. */
void exe__proc_task_finish(struct exe__proc_pool *pp, struct exe__ptask *t, int code, void *value,
                           exe_free_fn *value_free, char *msg);
/* Return a task's arena blocks (pool lock or collector). */
void exe__proc_task_release(struct exe__proc_pool *pp, struct exe__ptask *t);
/* Result bytes -> the future's value: a copy, a mapping, or an arena block
 * taken over (@arena non-NULL). */
void *exe__proc_bytes_new(const void *copy, size_t len, void *map);
void *exe__proc_bytes_arena(struct exe__arena *arena, int cls, uint64_t off, size_t len);
void exe__proc_bytes_free(void *b);
/* Finish a chunk task with its first @done values from @vals (copied to its
 * map) and the outcome of the element after them (@code 0: all done).
 * Collector thread. */
void exe__proc_chunk_finish(struct exe__proc_pool *pp, struct exe__ptask *t, size_t done, const void *vals,
                            int code, char *msg);

/* Child side (proc_worker.c). The server's tables, allocated before the
 * fork; the server itself never returns. */
size_t exe__proc_server_mem_size(unsigned kid_cap);
__attribute__((noreturn)) void exe__proc_server_main(struct exe__proc_pool *pp, int ctl);

#endif
