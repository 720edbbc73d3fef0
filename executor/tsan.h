/*
 * tsan.h - hand-off annotations for ThreadSanitizer. ck's atomics are inline
 * assembly that TSan cannot see; each hand-off of an object through a ck
 * structure is marked release (before publishing) / acquire (after taking).
 * Empty outside TSan builds.
 */
#ifndef EXE_TSAN_H
#define EXE_TSAN_H

#if defined(EXE_TSAN)
#include <sanitizer/tsan_interface.h>
#define exe__tsan_release(p) __tsan_release(p)
#define exe__tsan_acquire(p) __tsan_acquire(p)
#else
#define exe__tsan_release(p) ((void)(p))
#define exe__tsan_acquire(p) ((void)(p))
#endif

#endif
