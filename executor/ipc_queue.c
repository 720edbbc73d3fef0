/*
 * ipc_queue.c - a bounded FIFO of byte messages in shared memory, for
 * producers and consumers in different processes.
 *
 * Design
 *  - One shared segment: an immutable header (magic, version, geometry,
 *    checksum), a robust process-shared mutex (ipc_mutex.c), the queue
 *    state, then a byte ring. A message is a 4-byte length and its payload,
 *    copied in at put and out at get; either may wrap around the ring's end.
 *    The ring has room for max_msgs headers plus max_bytes of payload plus
 *    a spare word, so a put that passes the count and byte bounds always
 *    fits, and a full ring is never mistaken for an empty one.
 *  - Waiting is on two futex words (not_empty_seq, not_full_seq), bumped
 *    under the lock by every change that may let a waiter proceed, and
 *    woken with FUTEX_WAKE after unlocking. A waiter reads the word under
 *    the lock, unlocks and sleeps on that value, so a bump in between makes
 *    the sleep return at once. Condition variables would be simpler, but a
 *    process killed inside pthread_cond_wait leaves glibc's condvar with a
 *    waiter that never acknowledges its signal, and later signals can be
 *    lost or pthread_cond_destroy can hang; a futex word has no such state.
 *    Wakes go to every sleeper: a woken process that dies before taking its
 *    item then cannot strand the others.
 *  - A process can die holding the lock; the next locker gets EOWNERDEAD.
 *    A put or get copies bytes only into free space (put) or out of the
 *    ring (get), then replaces the state (head, tail, count, bytes) through
 *    a one-record redo log (commit()): a locker that finds the log marked
 *    finishes the change. So a death at any instruction leaves either the
 *    old or the new state, and the queue stays usable; the mutex is made
 *    consistent at once.
 *  - A waiter counts itself in get_waiters/put_waiters, so a put or get
 *    makes a wake system call only when someone sleeps. A process killed
 *    while counted leaves the count high: that costs spare wake calls only.
 *  - Every call bounds its wait for the lock by the caller's timeout, not
 *    only its wait for room or a message: a holder that is stopped
 *    (SIGSTOP, a debugger, swapped out) or a lock word scribbled over by
 *    someone else looks the same from here, and timeout 0 must never wait
 *    on either. close takes no lock at all (it sets an atomic flag and
 *    bumps both futex words); count tries the lock once and, when it is
 *    held, reads the copy of the message count every commit publishes. So
 *    both return at once whoever holds the lock.
 *
 * Invariants (under lock, checked by locked() on every call)
 *  - count <= max_msgs, bytes <= max_bytes, head and tail < ring size, and
 *    (tail - head) mod ring size == bytes + 4 * count.
 *  - Each length read from the ring is <= bytes before it is used.
 *  - The mutex's type word is the one exe__ipc_mutex_init() writes
 *    (exe__ipc_mutex_sane()): a lock of another type (PI, recursive) could
 *    block or succeed in ways this file does not expect.
 *  - A waiter reads its futex word BEFORE it checks closed: close (which
 *    takes no lock) sets closed, then bumps the words, so a waiter that saw
 *    closed clear sleeps on a value that close changes afterwards.
 * Anything else is -EBADMSG: the segment was written by someone else.
 */
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "errors.h"
#include "ipc_internal.h"
#include <executor/ipc.h>

#define QUEUE_MAGIC 0x65786551U /* "exeQ" */
#define DEFAULT_MSGS 64
#define DEFAULT_BYTES (64 * 1024)
#define MAX_MSGS (1u << 24)
#define MAX_BYTES (1u << 30)
#define HDR ((uint64_t)sizeof(uint32_t))

/* Everything a put or get changes. */
struct qstate {
	uint64_t head, tail, count, bytes;
};

struct queue_shm {
	/* Immutable after init. */
	uint32_t magic;
	uint32_t version;
	uint64_t max_msgs, max_bytes, ring_size;
	uint64_t check;

	pthread_mutex_t lock;

	/* Under lock. */
	struct qstate st;
	struct qstate redo; /* the change being applied while dirty != 0 */
	_Atomic uint32_t dirty;
	uint32_t get_waiters, put_waiters;

	/* Written without the lock (close) and read under it: seq_cst, pairs
	 * with the waiters' seq_cst loads of the futex words. */
	_Atomic uint32_t closed;
	/* st.count, published after every commit for exe_ipc_queue_count()
	 * when the lock is held. Relaxed: it is a hint, nothing is read
	 * through it. */
	_Atomic uint64_t count_hint;

	/* Bumped under lock, slept on without it. */
	_Atomic uint32_t not_empty_seq, not_full_seq;

	alignas(64) unsigned char ring[];
};

struct exe_ipc_queue {
	struct queue_shm *shm;
	size_t len;
	pid_t owner;
	bool mapped;
};

/* ---- geometry and validation ---- */

static int geometry(const struct exe_ipc_queue_opts *opts, uint64_t *msgs, uint64_t *bytes, size_t *len)
{
	uint64_t m = opts && opts->max_msgs ? opts->max_msgs : DEFAULT_MSGS;
	uint64_t b = opts && opts->max_bytes ? opts->max_bytes : DEFAULT_BYTES;

	if (m > MAX_MSGS || b > MAX_BYTES)
		return -EINVAL;
	*msgs = m;
	*bytes = b;
	*len = offsetof(struct queue_shm, ring) + (size_t)(b + HDR * m + HDR);
	return 0;
}

size_t exe_ipc_queue_mem_size(const struct exe_ipc_queue_opts *opts)
{
	uint64_t m, b;
	size_t len;

	return geometry(opts, &m, &b, &len) ? 0 : len;
}

static uint64_t header_check(const struct queue_shm *s)
{
	return exe__ipc_check((uint64_t)s->magic << 32 | s->version, s->max_msgs, s->max_bytes,
	                      s->ring_size ^ (uint64_t)sizeof(*s) << 48);
}

static struct queue_shm *valid(const struct exe_ipc_queue *q)
{
	struct queue_shm *s = q->shm;

	if (s->magic != QUEUE_MAGIC || s->version != EXE_IPC_VERSION || s->check != header_check(s))
		return NULL;
	if (s->max_msgs > MAX_MSGS || s->max_bytes > MAX_BYTES ||
	    s->ring_size != s->max_bytes + HDR * s->max_msgs + HDR ||
	    s->ring_size > q->len - offsetof(struct queue_shm, ring))
		return NULL;
	return s;
}

static bool state_ok(const struct queue_shm *s)
{
	const struct qstate *st = &s->st;
	uint64_t used;

	if (st->count > s->max_msgs || st->bytes > s->max_bytes || st->head >= s->ring_size ||
	    st->tail >= s->ring_size)
		return false;
	used = (st->tail + s->ring_size - st->head) % s->ring_size;
	return used == st->bytes + HDR * st->count;
}

/* How long the next lock attempt may wait: the caller's timeout minus what
 * was spent already (< 0 forever, 0 once). */
static int64_t time_left(int64_t timeout_ns, int64_t deadline)
{
	int64_t left;

	if (timeout_ns <= 0 || deadline < 0)
		return timeout_ns <= 0 ? timeout_ns : -1;
	left = deadline - exe_now_ns();
	return left > 0 ? left : 0;
}

/* Validate, lock within @wait_ns (time_left()), recover from a dead holder,
 * check the state. @timeout_ns is the caller's, for the verdict on a miss.
 * Return: the locked segment in *@out and 0, or a negative code (unlocked):
 * a lock not had in time is what a full or empty queue would return then
 * (exe__blocked_verdict). */
static int locked(struct exe_ipc_queue *q, struct queue_shm **out, int64_t timeout_ns, int64_t wait_ns)
{
	struct queue_shm *s;
	int rc;

	if (!q)
		return -EINVAL;
	s = valid(q);
	if (!s || !exe__ipc_mutex_sane(&s->lock))
		return -EBADMSG;
	rc = exe__ipc_mutex_lock_timeout(&s->lock, wait_ns);
	if (rc == -EOWNERDEAD) {
		/* The holder died. If it was inside commit(), redo is complete
		 * (written before dirty was set): finish its change. */
		if (atomic_load_explicit(&s->dirty, memory_order_relaxed)) {
			s->st = s->redo;
			atomic_signal_fence(memory_order_seq_cst);
			atomic_store_explicit(&s->dirty, 0, memory_order_relaxed);
		}
		atomic_store_explicit(&s->count_hint, s->st.count, memory_order_relaxed);
		pthread_mutex_consistent(&s->lock);
		rc = 0;
	}
	if (rc == -EAGAIN || rc == -ETIMEDOUT)
		return exe__blocked_verdict(false, timeout_ns, true);
	if (rc == -EDEADLK || rc == -EINVAL)
		return -EBADMSG; /* never held across calls: a forged owner word */
	if (rc)
		return rc;
	if (!state_ok(s)) {
		pthread_mutex_unlock(&s->lock);
		return -EBADMSG;
	}
	*out = s;
	return 0;
}

/* Replace the state as one step, even if this process dies half-way: the
 * new state goes to redo first, dirty marks it complete, and a locker that
 * finds dirty set after EOWNERDEAD copies it (locked()). Death comes at an
 * instruction boundary of this thread and the next locker acquires the
 * mutex after it, so compiler barriers are enough to keep the three steps
 * in order. */
static void commit(struct queue_shm *s, const struct qstate *next)
{
	s->redo = *next;
	atomic_signal_fence(memory_order_seq_cst);
	atomic_store_explicit(&s->dirty, 1, memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
	s->st = *next;
	atomic_signal_fence(memory_order_seq_cst);
	atomic_store_explicit(&s->dirty, 0, memory_order_relaxed);
	atomic_store_explicit(&s->count_hint, next->count, memory_order_relaxed);
}

/* ---- the ring ---- */

static void ring_write(struct queue_shm *s, uint64_t at, const void *src, uint64_t n)
{
	uint64_t first = n < s->ring_size - at ? n : s->ring_size - at;

	if (!n)
		return; /* src may be NULL for an empty message */
	memcpy(s->ring + at, src, first);
	memcpy(s->ring, (const unsigned char *)src + first, n - first);
}

static void ring_read(const struct queue_shm *s, uint64_t at, void *dst, uint64_t n)
{
	uint64_t first = n < s->ring_size - at ? n : s->ring_size - at;

	if (!n)
		return; /* dst may be NULL for an empty message */
	memcpy(dst, s->ring + at, first);
	memcpy((unsigned char *)dst + first, s->ring, n - first);
}

/* ---- create / attach / destroy ---- */

static int build(void *mem, size_t len, const struct exe_ipc_queue_opts *opts, bool mapped,
                 struct exe_ipc_queue **out)
{
	struct queue_shm *s = mem;
	struct exe_ipc_queue *q;
	uint64_t m, b;
	size_t need;
	int err;

	err = geometry(opts, &m, &b, &need);
	if (err)
		return err;
	if (len < need)
		return -EINVAL;
	q = exe__calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	memset(s, 0, offsetof(struct queue_shm, ring));
	err = exe__ipc_mutex_init(&s->lock);
	if (err) {
		exe__free(q);
		return err;
	}
	s->magic = QUEUE_MAGIC;
	s->version = EXE_IPC_VERSION;
	s->max_msgs = m;
	s->max_bytes = b;
	s->ring_size = b + HDR * m + HDR;
	s->check = header_check(s);
	q->shm = s;
	q->len = len;
	q->owner = getpid();
	q->mapped = mapped;
	*out = q;
	return 0;
}

int exe_ipc_queue_create(struct exe_ipc_queue **out, const struct exe_ipc_queue_opts *opts)
{
	uint64_t m, b;
	size_t len;
	void *mem;
	int err;

	if (!out)
		return -EINVAL;
	err = geometry(opts, &m, &b, &len);
	if (err)
		return err;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	err = build(mem, len, opts, true, out);
	if (err)
		munmap(mem, len);
	return err;
}

int exe_ipc_queue_init_at(struct exe_ipc_queue **out, void *mem, size_t len,
                          const struct exe_ipc_queue_opts *opts)
{
	if (!mem || !out || (uintptr_t)mem % 8)
		return -EINVAL;
	return build(mem, len, opts, false, out);
}

int exe_ipc_queue_attach_at(struct exe_ipc_queue **out, void *mem, size_t len)
{
	struct exe_ipc_queue tmp = {.shm = mem, .len = len}, *q;

	if (!mem || !out || len < offsetof(struct queue_shm, ring) || (uintptr_t)mem % 8)
		return -EINVAL;
	if (!valid(&tmp))
		return -EBADMSG;
	q = exe__calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	*q = tmp;
	q->owner = -1;
	*out = q;
	return 0;
}

void exe_ipc_queue_destroy(struct exe_ipc_queue *q)
{
	struct queue_shm *s;

	if (!q)
		return;
	s = valid(q);
	if (s && q->owner == getpid()) {
		pthread_mutex_destroy(&s->lock);
		s->magic = 0;
	}
	if (q->mapped)
		munmap(q->shm, q->len);
	exe__free(q);
}

/* ---- put / get / close ---- */

int exe_ipc_queue_put(struct exe_ipc_queue *q, const void *msg, size_t len, int64_t timeout_ns)
{
	int64_t deadline = timeout_ns > 0 ? exe__deadline(timeout_ns) : -1;
	bool waiting = false, timed_out = false;
	struct queue_shm *s;
	uint32_t seq, len32, wake;
	int rc;

	if (!q || (!msg && len))
		return -EINVAL;
	s = valid(q);
	if (!s)
		return -EBADMSG;
	if (len > s->max_bytes)
		return -EMSGSIZE;
	len32 = (uint32_t)len;
	for (;;) {
		rc = locked(q, &s, timeout_ns, time_left(timeout_ns, deadline));
		if (rc)
			return rc;
		if (waiting) {
			s->put_waiters--;
			waiting = false;
		}
		/* Before the closed check: see the invariants. */
		seq = atomic_load_explicit(&s->not_full_seq, memory_order_seq_cst);
		if (atomic_load_explicit(&s->closed, memory_order_seq_cst)) {
			rc = -EPIPE;
			break;
		}
		if (s->st.count < s->max_msgs && s->st.bytes + len <= s->max_bytes) {
			struct qstate next = s->st;

			/* The copy goes to free space: harmless if we die here. */
			ring_write(s, next.tail, &len32, HDR);
			ring_write(s, (next.tail + HDR) % s->ring_size, msg, len);
			next.tail = (next.tail + HDR + len) % s->ring_size;
			next.count++;
			next.bytes += len;
			commit(s, &next);
			atomic_fetch_add_explicit(&s->not_empty_seq, 1, memory_order_relaxed);
			wake = s->get_waiters;
			pthread_mutex_unlock(&s->lock);
			if (wake)
				exe__futex_wake_shared(&s->not_empty_seq, EXE_FUTEX_WAKE_ALL_SHARED);
			return 0;
		}
		rc = exe__blocked_verdict(false, timeout_ns, timed_out);
		if (rc)
			break;
		s->put_waiters++;
		waiting = true;
		pthread_mutex_unlock(&s->lock);
		timed_out = exe__futex_wait_shared(&s->not_full_seq, seq, deadline) == -ETIMEDOUT;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int exe_ipc_queue_get(struct exe_ipc_queue *q, void *buf, size_t cap, size_t *len, int64_t timeout_ns)
{
	int64_t deadline = timeout_ns > 0 ? exe__deadline(timeout_ns) : -1;
	bool waiting = false, timed_out = false;
	struct queue_shm *s;
	uint32_t seq, n, wake;
	int rc;

	if (!q || !len || (!buf && cap))
		return -EINVAL;
	for (;;) {
		rc = locked(q, &s, timeout_ns, time_left(timeout_ns, deadline));
		if (rc)
			return rc;
		if (waiting) {
			s->get_waiters--;
			waiting = false;
		}
		/* Before the closed check: see the invariants. */
		seq = atomic_load_explicit(&s->not_empty_seq, memory_order_seq_cst);
		if (s->st.count) {
			struct qstate next = s->st;

			ring_read(s, next.head, &n, HDR);
			if (n > next.bytes) {
				rc = -EBADMSG;
				break;
			}
			*len = n;
			if (n > cap) {
				rc = -EMSGSIZE;
				break;
			}
			ring_read(s, (next.head + HDR) % s->ring_size, buf, n);
			next.head = (next.head + HDR + n) % s->ring_size;
			next.count--;
			next.bytes -= n;
			commit(s, &next);
			atomic_fetch_add_explicit(&s->not_full_seq, 1, memory_order_relaxed);
			wake = s->put_waiters;
			pthread_mutex_unlock(&s->lock);
			if (wake)
				exe__futex_wake_shared(&s->not_full_seq, EXE_FUTEX_WAKE_ALL_SHARED);
			return 0;
		}
		rc = exe__blocked_verdict(atomic_load_explicit(&s->closed, memory_order_seq_cst), timeout_ns,
		                          timed_out);
		if (rc)
			break;
		s->get_waiters++;
		waiting = true;
		pthread_mutex_unlock(&s->lock);
		timed_out = exe__futex_wait_shared(&s->not_empty_seq, seq, deadline) == -ETIMEDOUT;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int exe_ipc_queue_close(struct exe_ipc_queue *q)
{
	struct queue_shm *s;

	if (!q)
		return -EINVAL;
	s = valid(q);
	if (!s)
		return -EBADMSG;
	/* No lock (a stopped holder must not block close): the flag first,
	 * then the words the waiters sleep on - they read the word before the
	 * flag, so either they see the flag or their sleep sees a new word. */
	atomic_store_explicit(&s->closed, 1, memory_order_seq_cst);
	atomic_fetch_add_explicit(&s->not_empty_seq, 1, memory_order_seq_cst);
	atomic_fetch_add_explicit(&s->not_full_seq, 1, memory_order_seq_cst);
	/* Wake unconditionally: a waiter counted by a process that died does
	 * no harm, and close is rare. */
	exe__futex_wake_shared(&s->not_empty_seq, EXE_FUTEX_WAKE_ALL_SHARED);
	exe__futex_wake_shared(&s->not_full_seq, EXE_FUTEX_WAKE_ALL_SHARED);
	return 0;
}

int exe_ipc_queue_count(struct exe_ipc_queue *q, size_t *count)
{
	struct queue_shm *s;
	uint64_t n;
	int rc;

	if (!q || !count)
		return -EINVAL;
	/* Try the lock once: free (or left by a dead holder, which locked()
	 * repairs first), the count is exact. */
	rc = locked(q, &s, 0, 0);
	if (rc == 0) {
		*count = (size_t)s->st.count;
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (rc != -ETIMEDOUT && rc != -EAGAIN)
		return rc;
	/* Held: the copy the last commit published, rather than a wait on
	 * a holder that may be stopped. */
	s = valid(q);
	if (!s)
		return -EBADMSG;
	n = atomic_load_explicit(&s->count_hint, memory_order_relaxed);
	if (n > s->max_msgs)
		return -EBADMSG;
	*count = (size_t)n;
	return 0;
}
