/*
 * ipc_event.c - a process-shared event (Python's multiprocessing.Event):
 * set, clear, wait with a timeout, in shared memory.
 *
 * Design
 *  - The whole event is one 32-bit futex word: 0 clear, 1 set. wait()
 *    sleeps on the word while it reads 0; set() stores 1 and wakes every
 *    sleeper. No sleeper registers or acknowledges anything, so a process
 *    killed while waiting (or while setting) leaves nothing behind: the
 *    next set() still wakes everyone who sleeps. A condvar-based event
 *    (Python's) can lose wake-ups when a waiter dies inside
 *    pthread_cond_wait.
 *  - The word is compared by value: a set() followed by a clear() before a
 *    sleeper ran may be missed by it, as with any level-triggered event
 *    (Python's too). Waiters that must see every set use a queue.
 *  - Header validation as in ipc_mutex.c: magic, version, checksum.
 *
 * Invariants
 *  - word is 0 or 1; any other value is corruption (-EBADMSG).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "errors.h"
#include <executor/ipc.h>
#include "ipc_internal.h"

#define EVENT_MAGIC 0x65786545U /* "exeE" */

struct event_shm {
	uint32_t magic;
	uint32_t version;
	uint64_t check;
	_Atomic uint32_t word;
};

struct exe_ipc_event {
	struct event_shm *shm;
	pid_t owner; /* the process that built the event */
	bool mapped; /* we mmap()ed it (create) rather than the caller */
};

static uint64_t header_check(const struct event_shm *s)
{
	return exe__ipc_check(s->magic, s->version, sizeof(*s), EVENT_MAGIC);
}

/* Return: the shared part if intact, else NULL. */
static struct event_shm *valid(const struct exe_ipc_event *e)
{
	struct event_shm *s = e->shm;
	uint32_t w;

	if (s->magic != EVENT_MAGIC || s->version != EXE_IPC_VERSION || s->check != header_check(s))
		return NULL;
	w = atomic_load_explicit(&s->word, memory_order_relaxed);
	return w <= 1 ? s : NULL;
}

size_t exe_ipc_event_mem_size(void)
{
	return sizeof(struct event_shm);
}

static int build(void *mem, bool mapped, struct exe_ipc_event **out)
{
	struct event_shm *s = mem;
	struct exe_ipc_event *e = exe__calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	s->magic = EVENT_MAGIC;
	s->version = EXE_IPC_VERSION;
	s->check = header_check(s);
	e->shm = s;
	e->owner = getpid();
	e->mapped = mapped;
	*out = e;
	return 0;
}

int exe_ipc_event_create(struct exe_ipc_event **out)
{
	void *mem;
	int err;

	if (!out)
		return -EINVAL;
	mem = mmap(NULL, sizeof(struct event_shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	err = build(mem, true, out);
	if (err)
		munmap(mem, sizeof(struct event_shm));
	return err;
}

int exe_ipc_event_init_at(struct exe_ipc_event **out, void *mem, size_t len)
{
	if (!mem || !out || len < sizeof(struct event_shm) || (uintptr_t)mem % 8)
		return -EINVAL;
	return build(mem, false, out);
}

int exe_ipc_event_attach_at(struct exe_ipc_event **out, void *mem, size_t len)
{
	struct exe_ipc_event tmp = {.shm = mem}, *e;

	if (!mem || !out || len < sizeof(struct event_shm) || (uintptr_t)mem % 8)
		return -EINVAL;
	if (!valid(&tmp))
		return -EBADMSG;
	e = exe__calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	*e = tmp;
	e->owner = -1; /* never the creator: destroy only drops the handle */
	*out = e;
	return 0;
}

void exe_ipc_event_destroy(struct exe_ipc_event *e)
{
	if (!e)
		return;
	if (valid(e) && e->owner == getpid())
		e->shm->magic = 0; /* later attaches and stale handles see -EBADMSG */
	if (e->mapped)
		munmap(e->shm, sizeof(struct event_shm));
	exe__free(e);
}

int exe_ipc_event_set(struct exe_ipc_event *e)
{
	struct event_shm *s;

	if (!e)
		return -EINVAL;
	if (!(s = valid(e)))
		return -EBADMSG;
	/* release: what the setter wrote before set() is visible to a waiter
	 * that sees 1 (acquire in wait). Wake only on a 0 -> 1 change. */
	if (atomic_exchange_explicit(&s->word, 1, memory_order_acq_rel) == 0)
		exe__futex_wake_shared(&s->word, EXE_FUTEX_WAKE_ALL_SHARED);
	return 0;
}

int exe_ipc_event_clear(struct exe_ipc_event *e)
{
	struct event_shm *s;

	if (!e)
		return -EINVAL;
	if (!(s = valid(e)))
		return -EBADMSG;
	atomic_store_explicit(&s->word, 0, memory_order_release);
	return 0;
}

bool exe_ipc_event_is_set(struct exe_ipc_event *e)
{
	struct event_shm *s;

	if (!e || !(s = valid(e)))
		return false;
	return atomic_load_explicit(&s->word, memory_order_acquire) == 1;
}

int exe_ipc_event_wait(struct exe_ipc_event *e, int64_t timeout_ns)
{
	int64_t deadline = exe__deadline(timeout_ns);
	struct event_shm *s;

	if (!e)
		return -EINVAL;
	for (;;) {
		if (!(s = valid(e)))
			return -EBADMSG;
		if (atomic_load_explicit(&s->word, memory_order_acquire) == 1)
			return 0;
		if (timeout_ns == 0)
			return -ETIMEDOUT;
		if (deadline >= 0 && exe_now_ns() >= deadline)
			return -ETIMEDOUT;
		/* Sleeps only while the word still reads 0: a set() between
		 * our load and the sleep changes it, and the call returns. */
		exe__futex_wait_shared(&s->word, 0, deadline);
	}
}
