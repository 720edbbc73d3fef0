/*
 * alloc.h - every allocation of the library goes through here, so tests can
 * make the Nth allocation fail and check that no path leaks or crashes.
 */
#ifndef EXE_ALLOC_H
#define EXE_ALLOC_H

#include <stddef.h>

/* The library's thread-locals: initial-exec, so each access in the shared
 * library is one %fs-relative load instead of a __tls_get_addr() call (the
 * hot paths - a future's allocation, run and wait - touch them per task).
 * The library's whole TLS is a few dozen bytes, well within what glibc
 * reserves for a dlopen()ed library's static TLS. */
#define EXE__TLS _Thread_local __attribute__((tls_model("initial-exec")))

void *exe__malloc(size_t size);
void *exe__calloc(size_t n, size_t size);
/* Zeroed memory aligned to @align (a power of two, >= sizeof(void *)), for
 * structures with cache-line aligned members; freed with exe__free(). */
void *exe__aligned_calloc(size_t align, size_t n, size_t size);
char *exe__vasprintf(const char *fmt, __builtin_va_list ap);
void exe__free(void *p);

/* Blocks of up to EXE__SMALL_SIZE bytes (futures) from per-thread caches
 * backed by a shared depot of batches and slabs: no malloc per task on the
 * submit and finish paths. The same failure injection applies. A block may
 * be freed on any thread, with exe__small_free() only (never exe__free()).
 * Under AddressSanitizer these are plain malloc/free, so reuse never hides a
 * use after free. */
#define EXE__SMALL_SIZE 112 /* sizeof(struct exe_future), checked in future.c */
void *exe__small_alloc(void);
void exe__small_free(void *p);

/* Tests: the next @n allocations succeed, then every one fails until reset
 * with a negative @n. Not thread-scoped: use from single-threaded tests. */
void exe__alloc_fail_after(long n);

#endif
