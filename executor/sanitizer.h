/*
 * sanitizer.h - what the library tells the sanitizers, in one place:
 *  - EXE_ASAN is defined in AddressSanitizer builds (gcc's
 *    __SANITIZE_ADDRESS__ or clang's __has_feature), with ASan's interface
 *    (fiber stack switches, poisoning); EXE_TSAN comes from the build
 *    (-DEXE_SANITIZE=thread), with TSan's interface.
 *  - Hand-off annotations for ThreadSanitizer. ck's atomics are inline
 *    assembly that TSan cannot see; each hand-off of an object through a ck
 *    structure is marked release (before publishing) / acquire (after
 *    taking). Empty outside TSan builds.
 */
#ifndef EXE_SANITIZER_H
#define EXE_SANITIZER_H

#if defined(__SANITIZE_ADDRESS__)
#define EXE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EXE_ASAN 1
#endif
#endif

#if defined(EXE_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(EXE_TSAN)
#include <sanitizer/tsan_interface.h>
#define exe__tsan_release(p) __tsan_release(p)
#define exe__tsan_acquire(p) __tsan_acquire(p)
#else
#define exe__tsan_release(p) ((void)(p))
#define exe__tsan_acquire(p) ((void)(p))
#endif

#endif
