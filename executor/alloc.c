/*
 * alloc.c - the library's allocator front door, with failure injection for
 * tests. The injection counter is one relaxed atomic: cheap enough to keep in
 * release builds, so the code under test is the code that ships.
 *
 * Small blocks (futures), design: each thread keeps a LIFO list of free
 * blocks; allocation pops, free pushes on the freeing thread's list. A list
 * that grows past 2 * BATCH gives BATCH blocks to a shared depot (a
 * mutex-guarded stack of batches), and an empty list takes a batch back:
 * one lock per BATCH blocks moved, so a producer thread allocating what
 * workers free (fire and forget, callbacks) is fed without malloc. When the
 * depot is empty too, one malloc carves a slab of SLAB blocks. Blocks are
 * never returned to malloc: the process keeps the memory of its peak number
 * of live futures (112 B each, malloc's chunk for them would be 128 B) for reuse, as
 * slab allocators do; a task
 * costs no malloc and no free. A thread's list goes to the depot when the
 * thread exits.
 *
 * Invariants
 *  - A free block's first word links the thread list or the batch; the first
 *    block of a batch in the depot links the next batch and holds the
 *    batch's length.
 *  - The thread list is touched by its thread only; the depot only under
 *    depot_lock, which orders a block's last use by one thread before its
 *    reuse by another. fork() happens with depot_lock held (pthread_atfork,
 *    armed before the first depot use).
 */
#include "alloc.h"
#include "sanitizer.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* < 0: injection off; otherwise allocations left before failures start. */
static _Atomic long fail_after = -1;

static int injected_failure(void)
{
	long n = atomic_load_explicit(&fail_after, memory_order_relaxed);

	if (__builtin_expect(n < 0, 1))
		return 0;
	if (n == 0)
		return 1;
	atomic_fetch_sub_explicit(&fail_after, 1, memory_order_relaxed);
	return 0;
}

void exe__alloc_fail_after(long n)
{
	atomic_store_explicit(&fail_after, n, memory_order_relaxed);
}

void *exe__malloc(size_t size)
{
	return injected_failure() ? NULL : malloc(size);
}

void *exe__calloc(size_t n, size_t size)
{
	return injected_failure() ? NULL : calloc(n, size);
}

void *exe__aligned_calloc(size_t align, size_t n, size_t size)
{
	size_t bytes;
	void *p;

	if (n && size > SIZE_MAX / n)
		return NULL;
	bytes = n * size > 0 ? n * size : 1;
	if (injected_failure() || posix_memalign(&p, align, bytes))
		return NULL;
	memset(p, 0, bytes);
	return p;
}

char *exe__vasprintf(const char *fmt, va_list ap)
{
	char *s = NULL;

	if (injected_failure() || vasprintf(&s, fmt, ap) < 0)
		return NULL;
	return s;
}

void exe__free(void *p)
{
	free(p);
}

/* ---- small blocks ---- */

/* Under ASan every block is a plain malloc, so ASan sees each use after free. */
#if defined(EXE_ASAN)
#define EXE_SMALL_CACHE 0
#else
#define EXE_SMALL_CACHE 1
#endif

#define BATCH 256u /* blocks moved to or from the depot at once */
#define SLAB 64u   /* blocks carved from one malloc */

struct block {
	struct block *next;       /* thread list, or within a batch */
	struct block *next_batch; /* first block of a depot batch only */
	size_t count;             /* first block of a depot batch: its length */
};

struct small_cache {
	struct block *head;
	size_t n;
	bool registered; /* the thread-exit destructor is armed */
};

static EXE__TLS struct small_cache tcache;
static pthread_mutex_t depot_lock = PTHREAD_MUTEX_INITIALIZER;
static struct block *depot;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

/* Give @batch (@count blocks linked by next) to the depot. */
static void depot_put(struct block *batch, size_t count)
{
	batch->count = count;
	pthread_mutex_lock(&depot_lock);
	batch->next_batch = depot;
	depot = batch;
	pthread_mutex_unlock(&depot_lock);
}

static struct block *depot_take(size_t *count)
{
	struct block *batch;

	pthread_mutex_lock(&depot_lock);
	batch = depot;
	if (batch)
		depot = batch->next_batch;
	pthread_mutex_unlock(&depot_lock);
	if (batch)
		*count = batch->count;
	return batch;
}

/* Detach the first @count blocks of @c's list as one batch. */
static struct block *cut_batch(struct small_cache *c, size_t count)
{
	struct block *batch = c->head, *last = batch;

	for (size_t i = 1; i < count; i++)
		last = last->next;
	c->head = last->next;
	last->next = NULL;
	c->n -= count;
	return batch;
}

/* A thread exits: its list goes to the depot. */
static void cache_exit(void *arg)
{
	struct small_cache *c = arg;

	if (c->n)
		depot_put(cut_batch(c, c->n), c->n);
	c->registered = false;
}

/* fork() copies the depot in whatever state another thread left it: hold
 * the lock across the fork so the child (a process-pool fork server or
 * worker that allocates futures) never inherits it locked. */
static void depot_lock_for_fork(void)
{
	pthread_mutex_lock(&depot_lock);
}

static void depot_unlock_after_fork(void)
{
	pthread_mutex_unlock(&depot_lock);
}

static void make_exit_key(void)
{
	pthread_key_create(&exit_key, cache_exit);
	pthread_atfork(depot_lock_for_fork, depot_unlock_after_fork, depot_unlock_after_fork);
}

/* Arm the thread-exit destructor once per thread that holds blocks. */
static void cache_register(struct small_cache *c)
{
	if (c->registered)
		return;
	/* A non-NULL value makes the destructor run at thread exit. */
	pthread_once(&exit_once, make_exit_key);
	pthread_setspecific(exit_key, c);
	c->registered = true;
}

/* Fill the empty list: a batch from the depot, else a new slab. */
static bool refill(struct small_cache *c)
{
	char *slab;

	cache_register(c);
	c->head = depot_take(&c->n);
	if (c->head)
		return true;
	slab = malloc(SLAB * EXE__SMALL_SIZE);
	if (!slab)
		return false;
	for (unsigned i = 0; i < SLAB; i++) {
		struct block *b = (struct block *)(slab + i * EXE__SMALL_SIZE);

		b->next = c->head;
		c->head = b;
	}
	c->n = SLAB;
	return true;
}

void *exe__small_alloc(void)
{
	struct small_cache *c = &tcache;
	struct block *b;

	if (injected_failure())
		return NULL;
	if (!EXE_SMALL_CACHE)
		return malloc(EXE__SMALL_SIZE);
	if (!c->head && !refill(c))
		return NULL;
	b = c->head;
	c->head = b->next;
	c->n--;
	return b;
}

void exe__small_free(void *p)
{
	struct small_cache *c = &tcache;
	struct block *b = p;

	if (!b)
		return;
	if (!EXE_SMALL_CACHE) {
		free(b);
		return;
	}
	cache_register(c);
	if (c->n >= 2 * BATCH)
		depot_put(cut_batch(c, BATCH), BATCH);
	b->next = c->head;
	c->head = b;
	c->n++;
}
