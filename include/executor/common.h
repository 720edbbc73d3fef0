/*
 * executor/common.h - what every part of libexecutor shares: the export
 * macro, the error conventions and the error hook.
 *
 * Errors. A fallible call returns int: 0 (or a non-negative count) on success
 * and -errno on failure. Each code has one meaning across the library:
 *
 *   -EINVAL      a bad argument (NULL function, unknown flag, NULL array)
 *   -ENOMEM      out of memory
 *   -EAGAIN      a bounded queue is full and the caller asked not to block
 *   -ESHUTDOWN   submit after shutdown
 *   -ECANCELED   the work was cancelled
 *   -ETIMEDOUT   a wait's bound passed (the waited-for object is unchanged)
 *   -EBUSY       cancel of work that is already running (a request was sent)
 *   -EALREADY    cancel or completion of a future that has already finished
 *   -EPIPE       the pool is broken (a worker's init failed), or the queue
 *                is closed
 *   -ECHILD      a process-pool worker died while running the task
 *   -EBADMSG     malformed bytes: a bad frame on a worker channel, a
 *                corrupted shared-memory header
 *   -EMSGSIZE    a message over a queue's byte bound
 *   -EOWNERDEAD  a robust mutex was taken over from a holder that died
 *   -ENOSYS, -EPERM  io_uring unavailable when it was explicitly required
 *
 * Any other code passes through unchanged from a task or from the kernel.
 * Where a failure needs more words, the future carries a message
 * (exe_future_error()). The library never prints and never leaves its
 * answer in errno, with one documented exception: the default error hook.
 */
#ifndef EXECUTOR_COMMON_H
#define EXECUTOR_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(EXE_STATIC_DEFINE)
#define EXE_API
#elif defined(EXE_BUILDING_LIBRARY)
#define EXE_API __attribute__((visibility("default")))
#else
#define EXE_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define EXE_VERSION_MAJOR 0
#define EXE_VERSION_MINOR 1
#define EXE_VERSION_PATCH 0

/* Durations are nanoseconds on CLOCK_MONOTONIC. A negative timeout waits
 * forever; 0 polls. */
#define EXE_FOREVER ((int64_t)-1)
#define EXE_NS_PER_US ((int64_t)1000)
#define EXE_NS_PER_MS ((int64_t)1000000)
#define EXE_NS_PER_S ((int64_t)1000000000)

/* A destructor for a value the library owns on the caller's behalf. */
typedef void exe_free_fn(void *value);

/*
 * The error hook receives failures that have no caller to return to: a done
 * callback that returned non-zero, a callback that could not be moved to the
 * pool it named. @what says where ("done callback"), @code is the negative
 * code, @msg may be NULL. It may run on any library thread and must not block
 * for long.
 */
typedef void exe_error_hook_fn(const char *what, int code, const char *msg, void *arg);

/*
 * exe_set_error_hook - install the process-wide error hook.
 * NULL restores the default, which writes one line to stderr.
 * Thread-safe; the hook in place when an error happens is the one called.
 */
EXE_API void exe_set_error_hook(exe_error_hook_fn *hook, void *arg);

/*
 * exe_strerror - a short, static description of a library or errno code
 * (negative or positive). Never NULL.
 */
EXE_API const char *exe_strerror(int code);

/* exe_now_ns - CLOCK_MONOTONIC in nanoseconds, the clock every deadline uses. */
EXE_API int64_t exe_now_ns(void);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_COMMON_H */
