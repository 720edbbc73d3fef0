/*
 * stack.c - fiber stacks: mmap'd, a PROT_NONE guard page below, touched
 * lazily, kept per io context for reuse.
 *
 * Design
 *  - One mapping per stack: [guard page][usable ... header]. The header
 *    (struct exe__stack) sits at the very top, so a pooled stack needs no
 *    separate allocation and the page it is on is the first one a fiber
 *    touches anyway. The kernel hands out zero pages on first touch: a
 *    fiber that stays shallow costs a page or two of memory, whatever its
 *    size.
 *  - ThreadSanitizer builds keep one TSan fiber context per stack, created
 *    with it and destroyed when it is unmapped: a context per fiber costs
 *    TSan a thread's worth of state each time (milliseconds), and one
 *    stack runs one fiber at a time, like a pool thread runs tasks.
 *  - The pool is a list on the io context, used only by its hub thread
 *    (fibers start and are reaped there): no lock. It keeps up to
 *    POOL_MAX_BYTES of stacks; a reused stack keeps the pages its last
 *    fiber touched (that is the point: no faults the second time).
 */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fiber_obj.h"

#include "sanitizer.h"

#define DEFAULT_STACK ((size_t)64 * 1024)
#define MIN_STACK ((size_t)16 * 1024)
#define MAX_STACK ((size_t)1 << 30)
#define POOL_MAX_BYTES ((size_t)32 << 20)

struct exe__stack {
	struct exe__stack *next; /* in the pool */
	void *tsan_fiber;        /* TSan builds: the context of whatever runs here */
	size_t size;             /* usable bytes below this header */
	void *map;               /* the mapping, guard page first */
	size_t map_len;
};

static size_t page_size(void)
{
	static _Atomic size_t cached;
	size_t p = atomic_load_explicit(&cached, memory_order_relaxed);

	if (!p) {
		long v = sysconf(_SC_PAGESIZE);

		p = v > 0 ? (size_t)v : 4096;
		atomic_store_explicit(&cached, p, memory_order_relaxed);
	}
	return p;
}

int exe__stack_size(size_t requested, size_t *out)
{
	size_t pg = page_size();

	if (requested == 0)
		requested = DEFAULT_STACK;
	if (requested < MIN_STACK || requested > MAX_STACK)
		return -EINVAL;
	*out = (requested + pg - 1) / pg * pg;
	return 0;
}

static struct exe__stack *header_of(void *map, size_t map_len)
{
	/* 64-byte aligned at the top; the usable stack ends below it. */
	uintptr_t top = (uintptr_t)map + map_len - sizeof(struct exe__stack);

	return (struct exe__stack *)(top & ~(uintptr_t)63);
}

int exe__stack_get(struct exe__fiber_sched *s, size_t size, struct exe__stack **out)
{
	struct exe__stack **pp, *st;
	size_t pg = page_size(), len;
	void *map;

	for (pp = &s->pool; (st = *pp); pp = &st->next) {
		if (st->size == size) {
			*pp = st->next;
			s->pooled_bytes -= st->map_len;
#if defined(EXE_ASAN)
			/* Frames of the last fiber may have left poisoned
			 * redzones behind: start clean. */
			ASAN_UNPOISON_MEMORY_REGION((char *)st->map + pg,
			                            (size_t)((char *)st - ((char *)st->map + pg)));
#endif
			*out = st;
			return 0;
		}
	}
	/* The header takes room from the top: one page more than asked keeps
	 * the usable size at least @size. */
	len = pg + size + pg;
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
	           -1, 0);
	if (map == MAP_FAILED)
		return -ENOMEM;
	if (mprotect(map, pg, PROT_NONE)) {
		munmap(map, len);
		return -ENOMEM;
	}
	st = header_of(map, len);
	st->next = NULL;
	st->tsan_fiber = NULL;
	st->size = size;
	st->map = map;
	st->map_len = len;
	*out = st;
	return 0;
}

static void unmap(struct exe__stack *st)
{
#if defined(EXE_TSAN)
	if (st->tsan_fiber)
		__tsan_destroy_fiber(st->tsan_fiber);
#endif
	munmap(st->map, st->map_len);
}

void exe__stack_put(struct exe__fiber_sched *s, struct exe__stack *st)
{
	if (s->pooled_bytes + st->map_len > POOL_MAX_BYTES) {
		unmap(st);
		return;
	}
	st->next = s->pool;
	s->pool = st;
	s->pooled_bytes += st->map_len;
}

void exe__stack_drain(struct exe__fiber_sched *s)
{
	struct exe__stack *st;

	while ((st = s->pool)) {
		s->pool = st->next;
		unmap(st);
	}
	s->pooled_bytes = 0;
}

void *exe__stack_top(struct exe__stack *st, size_t *usable)
{
	char *bottom = (char *)st->map + page_size();

	/* make_fcontext aligns the top down itself; keep clear of the header. */
	*usable = (size_t)((char *)st - bottom);
	return st;
}

void *exe__stack_bottom(struct exe__stack *st)
{
	return (char *)st->map + page_size();
}

void **exe__stack_tsan_fiber(struct exe__stack *st)
{
	return &st->tsan_fiber;
}
