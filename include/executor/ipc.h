/*
 * executor/ipc.h - coordination between processes: a robust mutex, a
 * bounded queue of byte messages and an event, all living in shared memory.
 *
 * Sharing. exe_ipc_*_create() maps anonymous shared memory
 * (MAP_SHARED|MAP_ANONYMOUS): create before fork(), and the children
 * inherit the handle. To share by name instead, place the object in memory
 * you mapped yourself (shm_open, memfd_create + passing the fd) with
 * exe_ipc_*_init_at() in one process and exe_ipc_*_attach_at() in the
 * others; exe_ipc_*_mem_size() says how many bytes to map.
 *
 * Handles. The handle is process-local (it is copied by fork, which is
 * fine); the object it points to is shared. exe_ipc_*_destroy() in the
 * process that created (or initialised) the object tears the object down and
 * unmaps it; in any other process it only releases that process's handle.
 * Destroy in the creator last, when no other process uses the object.
 *
 * Validation. The shared part starts with a magic number, a version and a
 * checksum of its geometry, checked on every call, and every index read from
 * shared memory is bounds-checked before use: a corrupted or foreign segment
 * makes calls fail with -EBADMSG instead of crashing.
 *
 * Dead participants. A process that dies holding the mutex cannot wedge the
 * others: the kernel hands the lock to the next locker with -EOWNERDEAD (the
 * mutex reports it to you; the queue repairs itself, as every change to it
 * is logged before it is applied, and never reports it). Wake-ups go through
 * futex words that no sleeper has to acknowledge, so a process killed while
 * waiting cannot swallow a wake-up meant for another. A process killed in
 * the middle of a put loses that message only if the put had not returned.
 *
 * Timeouts are nanoseconds on CLOCK_MONOTONIC: negative waits forever, 0
 * polls (never waits), positive waits at most that long; a wait whose bound
 * passed, 0 included, is -ETIMEDOUT. The bound covers the queue's internal
 * lock too: a process stopped while it holds the lock (SIGSTOP, a debugger)
 * delays nobody past their timeout, and exe_ipc_queue_close() and
 * exe_ipc_queue_count() never wait for it (count then reports the count as
 * of the last completed put or get). A forever wait behind a stopped holder
 * waits for it, as it would on any lock.
 */
#ifndef EXECUTOR_IPC_H
#define EXECUTOR_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- robust process-shared mutex ---- */

struct exe_ipc_mutex;

/*
 * exe_ipc_mutex_create - map a new robust process-shared mutex, with
 * @data_bytes of zeroed shared memory it guards (see exe_ipc_mutex_data()).
 * Ownership: *@out is the caller's; free with exe_ipc_mutex_destroy() in
 * every process that holds the handle.
 * Return: 0 with *@out set; -EINVAL NULL @out; -ENOMEM; a code from mmap or
 * pthread_mutex_init.
 */
EXE_API int exe_ipc_mutex_create(struct exe_ipc_mutex **out, size_t data_bytes);

/*
 * exe_ipc_mutex_mem_size - bytes of shared memory exe_ipc_mutex_init_at()
 * needs for a mutex guarding @data_bytes.
 * Return: the byte count; 0 when @data_bytes is too large.
 */
EXE_API size_t exe_ipc_mutex_mem_size(size_t data_bytes);

/*
 * exe_ipc_mutex_init_at - build a mutex guarding @data_bytes in @mem, which
 * the caller mapped shared and keeps mapped (8-byte aligned, at least
 * exe_ipc_mutex_mem_size(@data_bytes) long: pass that length in @len).
 * Ownership: as exe_ipc_mutex_create(), but destroy never unmaps @mem.
 * Return: 0; -EINVAL (NULL, misaligned or short @mem); -ENOMEM.
 */
EXE_API int exe_ipc_mutex_init_at(struct exe_ipc_mutex **out, void *mem, size_t len, size_t data_bytes);

/*
 * exe_ipc_mutex_attach_at - a handle to a mutex another process built at
 * its own mapping of the same memory.
 * Return: 0; -EINVAL bad arguments; -EBADMSG not a valid mutex; -ENOMEM.
 */
EXE_API int exe_ipc_mutex_attach_at(struct exe_ipc_mutex **out, void *mem, size_t len);

/*
 * exe_ipc_mutex_destroy - release the handle; in the creating process also
 * destroy the mutex and unmap (create) the shared memory. NULL is a no-op.
 */
EXE_API void exe_ipc_mutex_destroy(struct exe_ipc_mutex *m);

/*
 * exe_ipc_mutex_data - the guarded shared bytes (64-byte aligned, zeroed at
 * create). Borrowed.
 * Return: the bytes; NULL if @data_bytes was 0, @m is NULL or corrupted.
 */
EXE_API void *exe_ipc_mutex_data(struct exe_ipc_mutex *m);

/*
 * exe_ipc_mutex_lock - lock @m, waiting up to @timeout_ns.
 * Threading: any thread of any process sharing @m; not recursive.
 * Return:
 *   0             locked.
 *   -EOWNERDEAD   locked, but the previous holder died holding it: the
 *                 guarded state may be half-updated. Repair it, call
 *                 exe_ipc_mutex_consistent(), then unlock. Unlocking without
 *                 that makes the mutex unusable (-ENOTRECOVERABLE forever).
 *   -ENOTRECOVERABLE  a previous owner-died lock was never made consistent.
 *   -ETIMEDOUT    still held when @timeout_ns passed (at once for 0).
 *   -EDEADLK      the calling thread already holds it.
 *   -EINVAL NULL @m; -EBADMSG corrupted shared memory (the header or the
 *                 lock's own bytes).
 */
EXE_API int exe_ipc_mutex_lock(struct exe_ipc_mutex *m, int64_t timeout_ns);

/*
 * exe_ipc_mutex_consistent - after a lock that returned -EOWNERDEAD and a
 * repair of the guarded state, mark the mutex usable again. Call before
 * unlocking, from the thread that holds the lock.
 * Return: 0; -EINVAL not in the owner-died state or not the holder;
 * -EBADMSG corrupted shared memory.
 */
EXE_API int exe_ipc_mutex_consistent(struct exe_ipc_mutex *m);

/*
 * exe_ipc_mutex_unlock - unlock @m.
 * Return: 0; -EPERM the calling thread does not hold it; -EINVAL NULL @m;
 * -EBADMSG corrupted shared memory (the header or the lock's own bytes).
 */
EXE_API int exe_ipc_mutex_unlock(struct exe_ipc_mutex *m);

/* ---- bounded process-shared message queue ---- */

struct exe_ipc_queue;

struct exe_ipc_queue_opts {
	/* At most this many messages queued; 0: 64. */
	size_t max_msgs;
	/* At most this many payload bytes queued (so also the largest
	 * message); 0: 64 KiB. */
	size_t max_bytes;
};

/*
 * exe_ipc_queue_create - map a new FIFO queue of byte messages shared with
 * processes forked afterwards. Messages are copied in at put and out at get:
 * the caller's buffers are never retained.
 * @opts may be NULL (defaults above).
 * Ownership: *@out is the caller's; exe_ipc_queue_destroy() in each process.
 * Return: 0 with *@out set; -EINVAL (NULL @out, sizes too large);
 * -ENOMEM; a code from mmap.
 */
EXE_API int exe_ipc_queue_create(struct exe_ipc_queue **out, const struct exe_ipc_queue_opts *opts);

/*
 * exe_ipc_queue_mem_size - bytes of shared memory exe_ipc_queue_init_at()
 * needs for @opts (NULL: defaults).
 * Return: the byte count; 0 if the sizes are too large.
 */
EXE_API size_t exe_ipc_queue_mem_size(const struct exe_ipc_queue_opts *opts);

/*
 * exe_ipc_queue_init_at - as exe_ipc_mutex_init_at(): build a queue in
 * caller-mapped shared memory (8-byte aligned, @len >=
 * exe_ipc_queue_mem_size(@opts)).
 * Return: 0 with *@out; -EINVAL; -ENOMEM.
 */
EXE_API int exe_ipc_queue_init_at(struct exe_ipc_queue **out, void *mem, size_t len,
                                  const struct exe_ipc_queue_opts *opts);

/*
 * exe_ipc_queue_attach_at - a handle to a queue another process built at its
 * own mapping of the same memory.
 * Return: 0 with *@out; -EINVAL; -EBADMSG (not a valid queue); -ENOMEM.
 */
EXE_API int exe_ipc_queue_attach_at(struct exe_ipc_queue **out, void *mem, size_t len);

/*
 * exe_ipc_queue_destroy - release the handle; in the creating process also
 * tear down and unmap the shared queue. Queued messages are dropped. NULL is
 * a no-op.
 */
EXE_API void exe_ipc_queue_destroy(struct exe_ipc_queue *q);

/*
 * exe_ipc_queue_put - copy @len bytes from @msg (may be NULL when @len is 0)
 * into @q, waiting up to @timeout_ns for room (message count and byte bound).
 * Threading: any thread of any process sharing @q.
 * Return: 0; -EMSGSIZE @len exceeds max_bytes (it could never fit);
 * -ETIMEDOUT still full when @timeout_ns passed (at once for 0); -EPIPE
 * closed; -EINVAL bad arguments; -EBADMSG corrupted shared memory.
 */
EXE_API int exe_ipc_queue_put(struct exe_ipc_queue *q, const void *msg, size_t len, int64_t timeout_ns);

/*
 * exe_ipc_queue_get - copy the oldest message into @buf (@cap bytes) and
 * remove it, waiting up to @timeout_ns for one. *@len receives its length.
 * After close, the remaining messages are still delivered.
 * Return: 0; -EMSGSIZE the message is longer than @cap: it stays queued
 * and *@len says how long it is; -ETIMEDOUT still empty when @timeout_ns
 * passed (at once for 0); -EPIPE closed and empty; -EINVAL bad arguments;
 * -EBADMSG.
 */
EXE_API int exe_ipc_queue_get(struct exe_ipc_queue *q, void *buf, size_t cap, size_t *len,
                              int64_t timeout_ns);

/*
 * exe_ipc_queue_close - close @q for every process: puts fail with -EPIPE,
 * gets drain what is left then fail with -EPIPE, every waiter wakes.
 * Idempotent.
 * Return: 0; -EINVAL; -EBADMSG.
 */
EXE_API int exe_ipc_queue_close(struct exe_ipc_queue *q);

/*
 * exe_ipc_queue_count - the number of messages queued now (a hint) into
 * *@count.
 * Return: 0; -EINVAL (NULL @q or @count); -EBADMSG corrupted shared memory.
 */
EXE_API int exe_ipc_queue_count(struct exe_ipc_queue *q, size_t *count);

/* ---- process-shared event ---- */

/*
 * An event (Python's multiprocessing.Event): set, clear, wait. It is one
 * futex word, so a process killed while waiting or setting cannot wedge it:
 * the next exe_ipc_event_set() wakes every waiter. Level-triggered: a waiter
 * that did not run between a set and a clear may miss that set.
 */
struct exe_ipc_event;

/*
 * exe_ipc_event_create - map a new, clear event (create before fork()).
 * Ownership: as exe_ipc_mutex_create().
 * Return: 0 with *@out; -EINVAL (NULL @out); -ENOMEM; a code from mmap.
 */
EXE_API int exe_ipc_event_create(struct exe_ipc_event **out);

/*
 * exe_ipc_event_mem_size - bytes of shared memory exe_ipc_event_init_at()
 * needs.
 * Return: the byte count.
 */
EXE_API size_t exe_ipc_event_mem_size(void);

/*
 * exe_ipc_event_init_at - build a clear event in caller-mapped shared memory
 * (8-byte aligned, @len >= exe_ipc_event_mem_size()).
 * Return: 0 with *@out; -EINVAL; -ENOMEM.
 */
EXE_API int exe_ipc_event_init_at(struct exe_ipc_event **out, void *mem, size_t len);

/*
 * exe_ipc_event_attach_at - a handle to an event another process built at
 * its own mapping of the same memory.
 * Return: 0 with *@out; -EINVAL; -EBADMSG (not a valid event); -ENOMEM.
 */
EXE_API int exe_ipc_event_attach_at(struct exe_ipc_event **out, void *mem, size_t len);

/*
 * exe_ipc_event_destroy - release the handle; in the creating process also
 * invalidate the event and unmap (create) it. NULL is a no-op.
 */
EXE_API void exe_ipc_event_destroy(struct exe_ipc_event *e);

/*
 * exe_ipc_event_set - set the event and wake every waiter (in any process).
 * Writes made before it are visible to a waiter it wakes.
 * Return: 0; -EINVAL (NULL @e); -EBADMSG corrupted shared memory.
 */
EXE_API int exe_ipc_event_set(struct exe_ipc_event *e);

/*
 * exe_ipc_event_clear - clear the event.
 * Return: 0; -EINVAL (NULL @e); -EBADMSG corrupted shared memory.
 */
EXE_API int exe_ipc_event_clear(struct exe_ipc_event *e);

/*
 * exe_ipc_event_is_set - whether the event is set now (a snapshot).
 * Return: true when set; false when clear, for NULL @e and for a corrupted
 * segment (exe_ipc_event_wait() and the others report that as -EBADMSG).
 */
EXE_API bool exe_ipc_event_is_set(struct exe_ipc_event *e);

/*
 * exe_ipc_event_wait - wait until the event is set, up to @timeout_ns.
 * Return: 0 set; -ETIMEDOUT still clear when @timeout_ns passed (at once
 * for 0); -EINVAL (NULL @e); -EBADMSG corrupted shared memory.
 */
EXE_API int exe_ipc_event_wait(struct exe_ipc_event *e, int64_t timeout_ns);

#ifdef __cplusplus
}
#endif

#endif /* EXECUTOR_IPC_H */
