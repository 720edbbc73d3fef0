/*
 * executor/common.h - what every part of libexecutor shares: the export
 * macro, the rules every call follows (below) and the error hook.
 *
 * Timeouts. A timeout argument (int64_t timeout_ns, nanoseconds on
 * CLOCK_MONOTONIC): < 0 (EXE_FOREVER) waits forever; 0 polls and never
 * blocks, not even on an internal lock; > 0 waits at most that long. Every
 * call that takes one follows this: futures, exe_wait, as_completed, joins,
 * queues, ipc, map, lazy-map next. An option field (a member of a *_opts
 * struct) is different: 0 always means "the default", and the default is
 * spelled out next to the field ("0: no limit", "0: 200 ms"); where a field
 * can also mean forever, that is EXE_FOREVER; a negative value where it
 * makes no sense is -EINVAL. A negative timer delay or interval is -EINVAL;
 * a delay of 0 runs as soon as possible.
 *
 * Errors. A fallible call returns int: 0 (or a non-negative count) on success
 * and -errno on failure. Each code has one meaning across the library, and
 * exe_strerror() says it in these words:
 *
 *   -EINVAL      a bad argument (NULL object, NULL function, unknown flag or
 *                enum value, bad length)
 *   -ENOMEM      out of memory
 *   -EAGAIN      a resource is temporarily exhausted and the call does not
 *                wait (a bounded pool queue is full on a submit without
 *                EXE_SUBMIT_BLOCK; the system refused a thread or process)
 *   -ETIMEDOUT   not finished within the time given; the object is
 *                unchanged (every wait whose bound passed, 0 included, and
 *                every non-waiting query of something not finished yet)
 *   -ETIME       a task ran past its own time limit and failed (a process
 *                pool's task timeout); never a caller's wait
 *   -ECANCELED   the work was cancelled
 *   -EBUSY       cancel of work already running: a request was sent, it may
 *                still finish
 *   -EALREADY    the thing already finished (cancel or completion of a
 *                finished future, cancel of a timer that ran)
 *   -ESHUTDOWN   submit or operation after shutdown (pool, io context)
 *   -EPIPE       closed or ended: nothing more will come (a closed and
 *                drained queue, a put to a closed queue, an iterator that has
 *                yielded everything)
 *   -ENOTRECOVERABLE  broken for good, recreate it (a pool whose worker
 *                init failed or whose fork server died; a robust mutex never
 *                made consistent)
 *   -ECHILD      a worker process died while running the task
 *   -EBADMSG     malformed bytes: a bad frame, a corrupted shared-memory
 *                segment (never -EINVAL for corruption)
 *   -EMSGSIZE    a message over a bound
 *   -EOWNERDEAD  a robust lock was taken over from a dead holder (you hold
 *                it: repair, then mark it consistent)
 *   -EDEADLK     the call would wait on itself forever (a task waiting on
 *                its own future, shutdown(WAIT) from a task of the same
 *                pool, a lock the calling thread already holds)
 *   -EOPNOTSUPP  not supported by this kind of object or backend (a bytes
 *                task on a thread pool)
 *   -ENOENT      a name that is not registered
 *   -ENOSYS, -EPERM  passed through from the kernel: io_uring unavailable
 *                when it was explicitly required
 *
 * Any other code passes through unchanged from a task or from the kernel.
 * Where a failure needs more words, the future carries a message
 * (exe_future_error()). The library never prints and never leaves its
 * answer in errno, with one documented exception: the default error hook.
 *
 * NULL. A public call never crashes on NULL: int-returning calls return
 * -EINVAL, queries return the neutral value their comment names (false, 0,
 * NULL), *_destroy and *_unref take NULL as a no-op. (No nonnull
 * attribute: it would let the compiler delete the checks.)
 *
 * Callbacks take the library's inputs first, then the user's void *arg,
 * then out-pointers: it reads like the call that registered it and keeps
 * arg in one place (exe_task_fn, exe_done_fn, exe_then_fn, exe_timer_fn,
 * exe_error_hook_fn). A callback's int return is 0 for fine or a negative
 * code (it fails the future it belongs to, or goes to the error hook where
 * there is no future); positive values only where a named constant says so
 * (EXE_TIMER_STOP).
 *
 * Names. Constructors take the out-pointer first (exe_x_create(&out, ...),
 * exe_x_init_at(&out, mem, len, ...), exe_x_attach_at(&out, mem, len));
 * operations take the object first and an optional out-pointer last.
 * exe_x_mem_size() is bytes of shared memory to map; exe_x_count() is items
 * (size_t). Predicates return bool.
 *
 * Iterators (exe_as_completed_next(), exe_map_next()) return 0 with an
 * item, -EPIPE when the iteration is over, -ETIMEDOUT when the wait ran out
 * (call again), another negative code for an error:
 * while (exe_as_completed_next(it, &f, timeout) == 0) is the natural loop.
 */
#ifndef EXECUTOR_COMMON_H
#define EXECUTOR_COMMON_H

#include <stdbool.h>
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

/* The version, in this one place: CMake reads these lines (project version,
 * soname, pkg-config, package version file), exe_version() returns them.
 * 0.x: each minor release may change the API and ABI. */
#define EXE_VERSION_MAJOR 0
#define EXE_VERSION_MINOR 2
#define EXE_VERSION_PATCH 0
#define EXE__STR2(x) #x
#define EXE__STR(x) EXE__STR2(x)
#define EXE_VERSION_STRING                                                                                   \
	EXE__STR(EXE_VERSION_MAJOR) "." EXE__STR(EXE_VERSION_MINOR) "." EXE__STR(EXE_VERSION_PATCH)

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
 * Return: nothing.
 */
EXE_API void exe_set_error_hook(exe_error_hook_fn *hook, void *arg);

/*
 * exe_strerror - a short description of a library or errno code (negative
 * or positive), in the words of the table above for the library's codes.
 * Return: a static string, never NULL (any int is accepted).
 */
EXE_API const char *exe_strerror(int code);

/*
 * exe_now_ns - CLOCK_MONOTONIC in nanoseconds, the clock every deadline uses.
 * Return: the time now.
 */
EXE_API int64_t exe_now_ns(void);

/*
 * exe_version - the version of the library the program runs with, which may
 * differ from the EXE_VERSION_STRING it was compiled against.
 * Return: "MAJOR.MINOR.PATCH", a static string.
 */
EXE_API const char *exe_version(void);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_COMMON_H */
