/*
 * park.h - where the library's blocking waits meet fibers.
 *
 * Every wait of the library ends in one of two places: a futex word
 * (futex.h: futures' waiters, exe_wait, as_completed) or a condition
 * variable (the queue). Both check exe__tls_fiber first: on a plain thread
 * they block as always; in a fiber they park the fiber instead
 * (fiber/park.c) and its io thread runs other fibers until a waker makes it
 * ready again. A fiber's wait on a future takes a shortcut with the same
 * parking (exe__fiber_wait_future: a done callback wakes it, so finishing
 * the future costs no futex call).
 *
 * Waits that park may return -ECANCELED (the fiber was cancelled) besides
 * their usual codes: every caller passes it up.
 */
#ifndef EXE_PARK_H
#define EXE_PARK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct exe__fiber;
struct exe_future;

/* The fiber running on this thread, NULL on a thread's own stack. */
extern _Thread_local struct exe__fiber *exe__tls_fiber;

static inline bool exe__in_fiber(void)
{
	return exe__tls_fiber != NULL;
}

/* Fiber only: park while *@word == @expected, until woken through
 * exe__park_wake(@word) or @deadline_ns (< 0: none).
 * Return: 0 (woken, possibly spuriously), -ETIMEDOUT, -ECANCELED. */
int exe__fiber_park_word(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns);

/* Wake up to @n fibers parked on @key (a futex word or a condvar). Any
 * thread; cheap when no fiber is parked on a key of its hash bucket. */
void exe__park_wake(const void *key, int n);

/* Fiber only: pthread_cond_timedwait() for a fiber, with @m held on entry
 * and on return (deadline absolute, < 0: none). The signaller must call
 * exe__park_wake(@c) with @m held. Return: 0, -ETIMEDOUT, -ECANCELED. */
int exe__fiber_cond_wait(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ns);

/* Fiber only: exe_future_wait() for a fiber (@f not finished, @timeout_ns
 * not 0). Return: 0, -ETIMEDOUT, -ECANCELED, -EDEADLK (its own future). */
int exe__fiber_wait_future(struct exe_future *f, int64_t timeout_ns);

#endif
