/*
 * proc_arena.c - the process pool's shared payload arena: one shared
 * anonymous mapping made before the fork server, so every worker has it at
 * the same address, carved into power-of-two blocks by the parent alone.
 *
 * Why. A fresh memfd per large payload costs a page allocation per page on
 * both sides (on the target machines ~2 us per 4 KiB page, 0.5 ms per MiB),
 * several times the copy itself. Arena blocks are reused, so their pages
 * stay allocated and mapped: a 1 MiB input is one copy at submit, read in
 * place by the worker; a 1 MiB result is one copy by the worker into a block
 * the parent chose at dispatch, and the future takes the block over.
 *
 * Design
 *  - Only the parent allocates and frees; workers only read the input block
 *    and write the output block named in their task frame. The free lists
 *    live in parent memory, so a worker scribbling over the arena can spoil
 *    payloads but never the allocator.
 *  - Blocks are powers of two from 64 KiB to EXE__ARENA_MAX_BLOCK; free lists
 *    per size class, a bump pointer for new blocks, no coalescing. When the
 *    arena is full or the payload larger, callers fall back to a memfd.
 *  - The arena is reference counted: the pool holds one reference and every
 *    block owned by a future holds one, so results outlive the pool. The
 *    mapping goes away with the last reference.
 *
 * Invariants
 *  - A block is returned only when no worker can touch it any more: after
 *    its task's result arrived, or after its worker was reaped.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "alloc.h"
#include "proc_internal.h"

#define MIN_SHIFT 16

struct exe__arena {
	_Atomic uint32_t refs;
	pthread_mutex_t lock;
	unsigned char *base;
	size_t size, bump;
	uint64_t *free[EXE__ARENA_CLASSES]; /* offsets */
	size_t nfree[EXE__ARENA_CLASSES], cap[EXE__ARENA_CLASSES];
};

int exe__arena_create(struct exe__arena **out, size_t size)
{
	struct exe__arena *a = exe__calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	a->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (a->base == MAP_FAILED) {
		int rc = -errno;

		exe__free(a);
		return rc;
	}
	a->size = size;
	atomic_init(&a->refs, 1);
	pthread_mutex_init(&a->lock, NULL);
	*out = a;
	return 0;
}

void exe__arena_ref(struct exe__arena *a)
{
	atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
}

void exe__arena_unref(struct exe__arena *a)
{
	unsigned c;

	if (!a || atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1)
		return;
	munmap(a->base, a->size);
	for (c = 0; c < EXE__ARENA_CLASSES; c++)
		exe__free(a->free[c]);
	pthread_mutex_destroy(&a->lock);
	exe__free(a);
}

void *exe__arena_base(const struct exe__arena *a)
{
	return a->base;
}

size_t exe__arena_size(const struct exe__arena *a)
{
	return a->size;
}

static int class_of(size_t len)
{
	int c = 0;

	while (((size_t)1 << (MIN_SHIFT + c)) < len) {
		if (++c >= EXE__ARENA_CLASSES)
			return -1;
	}
	return c;
}

size_t exe__arena_class_size(int cls)
{
	return (size_t)1 << (MIN_SHIFT + cls);
}

int exe__arena_alloc(struct exe__arena *a, size_t len, uint64_t *off)
{
	int c = class_of(len);
	size_t bs;

	if (!a || c < 0)
		return -1;
	bs = exe__arena_class_size(c);
	pthread_mutex_lock(&a->lock);
	if (a->nfree[c]) {
		*off = a->free[c][--a->nfree[c]];
	} else if (a->bump + bs <= a->size) {
		*off = a->bump;
		a->bump += bs;
	} else {
		c = -1;
	}
	pthread_mutex_unlock(&a->lock);
	return c;
}

void exe__arena_free(struct exe__arena *a, int cls, uint64_t off)
{
	pthread_mutex_lock(&a->lock);
	if (a->nfree[cls] == a->cap[cls]) {
		size_t n = a->cap[cls] ? 2 * a->cap[cls] : 8;
		uint64_t *v = exe__malloc(n * sizeof(*v));

		if (!v) {
			/* Keep the block out of use rather than fail a free. */
			pthread_mutex_unlock(&a->lock);
			return;
		}
		if (a->nfree[cls])
			memcpy(v, a->free[cls], a->nfree[cls] * sizeof(*v));
		exe__free(a->free[cls]);
		a->free[cls] = v;
		a->cap[cls] = n;
	}
	a->free[cls][a->nfree[cls]++] = off;
	pthread_mutex_unlock(&a->lock);
}
