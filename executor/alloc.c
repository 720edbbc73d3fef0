/*
 * alloc.c - the library's allocator front door, with failure injection for
 * tests. The injection counter is one relaxed atomic: cheap enough to keep in
 * release builds, so the code under test is the code that ships.
 */
#include "executor/alloc.h"

#include <stdarg.h>
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
