/*
 * ipc_mutex.c - a robust, process-shared mutex in shared memory, with an
 * optional block of shared bytes it guards.
 *
 * Design
 *  - A pthread mutex with PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST:
 *    the kernel walks a dying thread's robust list (set up by glibc) and
 *    marks every mutex it held FUTEX_OWNER_DIED, so the next locker gets
 *    EOWNERDEAD instead of sleeping forever. Nothing of ours runs in the
 *    dying process, so SIGKILL is covered. ERRORCHECK type, so a relock by
 *    the holder and an unlock by a non-holder are errors, not deadlocks or
 *    silent corruption.
 *  - The shared segment: header (magic, version, data size, checksum), the
 *    mutex, then the guarded data on a cache line of its own. The handle is
 *    process-local: it records the mapping length (which a corrupted header
 *    cannot change) and the creating pid (only the creator tears down).
 *
 * Invariants
 *  - Every public call validates the header against the handle's length
 *    before touching the mutex: -EBADMSG for anything that does not match.
 *  - The guarded data is never touched by this file after create.
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

#define MUTEX_MAGIC 0x6578654dU /* "exeM" */

struct mutex_shm {
	uint32_t magic;
	uint32_t version;
	uint64_t data_bytes;
	uint64_t check;
	pthread_mutex_t mutex;
	alignas(64) unsigned char data[];
};

struct exe_ipc_mutex {
	struct mutex_shm *shm;
	size_t len;  /* bytes of shared memory behind shm */
	pid_t owner; /* the process that built the mutex */
	bool mapped; /* we mmap()ed it (create) rather than the caller */
};

/* ---- shared with ipc_queue.c ---- */

int exe__ipc_mutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	int err;

	err = pthread_mutexattr_init(&a);
	if (err)
		return -err;
	err = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	if (!err)
		err = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (!err)
		err = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
	if (!err)
		err = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	return -err;
}

#ifdef __GLIBC__
/* The type word of a freshly initialised mutex with our attributes; -1
 * until first needed (racing first callers compute the same value). */
static _Atomic int expected_kind = -1;

bool exe__ipc_mutex_sane(const pthread_mutex_t *m)
{
	int want = atomic_load_explicit(&expected_kind, memory_order_relaxed);

	if (want < 0) {
		pthread_mutex_t probe;

		if (exe__ipc_mutex_init(&probe))
			return true; /* cannot tell: let the lock decide */
		want = probe.__data.__kind;
		pthread_mutex_destroy(&probe);
		atomic_store_explicit(&expected_kind, want, memory_order_relaxed);
	}
	return __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) == want;
}
#else
bool exe__ipc_mutex_sane(const pthread_mutex_t *m)
{
	(void)m;
	return true;
}
#endif

/* pthread's EINVAL on a mutex that passed our header check means its own
 * bytes are corrupted (a bad kind or owner word): that is -EBADMSG here,
 * -EINVAL being reserved for bad arguments. */
static int lock_code(int err)
{
	return err == EINVAL ? -EBADMSG : -err;
}

int exe__ipc_mutex_lock_timeout(pthread_mutex_t *m, int64_t timeout_ns)
{
	struct timespec ts;
	int64_t deadline;
	int err;

	if (timeout_ns == 0) {
		err = pthread_mutex_trylock(m);
		return err == EBUSY ? -ETIMEDOUT : lock_code(err);
	}
	deadline = exe__deadline(timeout_ns);
	if (deadline < 0)
		return lock_code(pthread_mutex_lock(m));
	ts.tv_sec = deadline / EXE_NS_PER_S;
	ts.tv_nsec = deadline % EXE_NS_PER_S;
	return lock_code(pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts));
}

/* ---- public ---- */

static size_t data_offset(void)
{
	return offsetof(struct mutex_shm, data);
}

size_t exe_ipc_mutex_mem_size(size_t data_bytes)
{
	if (data_bytes > SIZE_MAX - data_offset())
		return 0;
	return data_offset() + data_bytes;
}

static uint64_t header_check(const struct mutex_shm *s)
{
	return exe__ipc_check(s->magic, s->version, s->data_bytes, sizeof(*s));
}

/* Return: the shared part if its header is intact, else NULL. */
static struct mutex_shm *valid(const struct exe_ipc_mutex *m)
{
	struct mutex_shm *s = m->shm;

	if (s->magic != MUTEX_MAGIC || s->version != EXE_IPC_VERSION || s->check != header_check(s))
		return NULL;
	if (s->data_bytes > m->len - data_offset())
		return NULL;
	return s;
}

static int build(void *mem, size_t len, size_t data_bytes, bool mapped, struct exe_ipc_mutex **out)
{
	struct mutex_shm *s = mem;
	struct exe_ipc_mutex *m;
	int err;

	m = exe__calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	memset(s, 0, len);
	err = exe__ipc_mutex_init(&s->mutex);
	if (err) {
		exe__free(m);
		return err;
	}
	s->magic = MUTEX_MAGIC;
	s->version = EXE_IPC_VERSION;
	s->data_bytes = data_bytes;
	s->check = header_check(s);
	m->shm = s;
	m->len = len;
	m->owner = getpid();
	m->mapped = mapped;
	*out = m;
	return 0;
}

int exe_ipc_mutex_create(struct exe_ipc_mutex **out, size_t data_bytes)
{
	size_t len = exe_ipc_mutex_mem_size(data_bytes);
	void *mem;
	int err;

	if (!out || !len)
		return -EINVAL;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	err = build(mem, len, data_bytes, true, out);
	if (err)
		munmap(mem, len);
	return err;
}

int exe_ipc_mutex_init_at(struct exe_ipc_mutex **out, void *mem, size_t len, size_t data_bytes)
{
	size_t need = exe_ipc_mutex_mem_size(data_bytes);

	if (!mem || !out || !need || len < need || (uintptr_t)mem % 8)
		return -EINVAL;
	return build(mem, len, data_bytes, false, out);
}

int exe_ipc_mutex_attach_at(struct exe_ipc_mutex **out, void *mem, size_t len)
{
	struct exe_ipc_mutex tmp = {.shm = mem, .len = len}, *m;

	if (!mem || !out || len < data_offset() || (uintptr_t)mem % 8)
		return -EINVAL;
	if (!valid(&tmp))
		return -EBADMSG;
	m = exe__calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	*m = tmp;
	m->owner = -1; /* never the creator: destroy only drops the handle */
	*out = m;
	return 0;
}

void exe_ipc_mutex_destroy(struct exe_ipc_mutex *m)
{
	struct mutex_shm *s;

	if (!m)
		return;
	s = valid(m);
	if (s && m->owner == getpid()) {
		pthread_mutex_destroy(&s->mutex);
		s->magic = 0; /* later attaches and stale handles see -EBADMSG */
	}
	if (m->mapped)
		munmap(m->shm, m->len);
	exe__free(m);
}

void *exe_ipc_mutex_data(struct exe_ipc_mutex *m)
{
	struct mutex_shm *s = m ? valid(m) : NULL;

	return s && s->data_bytes ? s->data : NULL;
}

int exe_ipc_mutex_lock(struct exe_ipc_mutex *m, int64_t timeout_ns)
{
	struct mutex_shm *s;

	if (!m)
		return -EINVAL;
	s = valid(m);
	if (!s)
		return -EBADMSG;
	return exe__ipc_mutex_lock_timeout(&s->mutex, timeout_ns);
}

int exe_ipc_mutex_consistent(struct exe_ipc_mutex *m)
{
	struct mutex_shm *s;

	if (!m)
		return -EINVAL;
	s = valid(m);
	if (!s)
		return -EBADMSG;
	return -pthread_mutex_consistent(&s->mutex);
}

int exe_ipc_mutex_unlock(struct exe_ipc_mutex *m)
{
	struct mutex_shm *s;

	if (!m)
		return -EINVAL;
	s = valid(m);
	if (!s)
		return -EBADMSG;
	return lock_code(pthread_mutex_unlock(&s->mutex));
}
