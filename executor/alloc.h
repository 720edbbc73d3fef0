/*
 * alloc.h - every allocation of the library goes through here, so tests can
 * make the Nth allocation fail and check that no path leaks or crashes.
 */
#ifndef EXE_ALLOC_H
#define EXE_ALLOC_H

#include <stddef.h>

void *exe__malloc(size_t size);
void *exe__calloc(size_t n, size_t size);
/* Zeroed memory aligned to @align (a power of two, >= sizeof(void *)), for
 * structures with cache-line aligned members; freed with exe__free(). */
void *exe__aligned_calloc(size_t align, size_t n, size_t size);
char *exe__vasprintf(const char *fmt, __builtin_va_list ap);
void exe__free(void *p);

/* Tests: the next @n allocations succeed, then every one fails until reset
 * with a negative @n. Not thread-scoped: use from single-threaded tests. */
void exe__alloc_fail_after(long n);

#endif
