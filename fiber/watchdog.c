/*
 * watchdog.c - report fibers that run too long without switching: the
 * teaching text's trap (one wait that does not switch blocks every fiber of
 * the thread), detected while it happens.
 *
 * Design
 *  - While a bound is set, the hub stamps each switch into a fiber: the
 *    start time and the fiber's name go into the scheduler under a seqlock
 *    (wd_seq odd while they change), and each switch out clears the time.
 *    The name is copied (four words), never pointed at: the fiber may be
 *    gone by the time the watchdog reads it.
 *  - One thread per watched context samples every bound / 4. A stretch
 *    (one odd sequence value) that has lasted longer than the bound is
 *    reported once through the error hook, from the watchdog thread, while
 *    the fiber is still stuck: a fiber blocked for good is reported too.
 *
 * Invariants
 *  - Only the hub writes wd_seq, wd_since and wd_name; the watchdog only
 *    reads them, and trusts what it read only when wd_seq was the same even
 *    value before and after.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"
#include "futex.h"
#include "fiber_obj.h"

/* Seqlock writer: odd while the fields change. */
static void write_begin(struct exe__fiber_sched *s)
{
	uint32_t seq = atomic_load_explicit(&s->wd_seq, memory_order_relaxed);

	/* The field stores that follow are release stores: a reader that
	 * sees one of them also sees this odd value. */
	atomic_store_explicit(&s->wd_seq, seq + 1, memory_order_relaxed);
}

static void write_end(struct exe__fiber_sched *s)
{
	uint32_t seq = atomic_load_explicit(&s->wd_seq, memory_order_relaxed);

	/* release: the fields before it; pairs with the reader's first load. */
	atomic_store_explicit(&s->wd_seq, seq + 1, memory_order_release);
}

void exe__watchdog_enter(struct exe__fiber_sched *s, const struct exe__fiber *fb)
{
	uint64_t w[4];

	memcpy(w, fb->name, sizeof(w));
	write_begin(s);
	/* release: see write_begin(); pairs with the reader's acquire loads. */
	for (int i = 0; i < 4; i++)
		atomic_store_explicit(&s->wd_name[i], w[i], memory_order_release);
	atomic_store_explicit(&s->wd_since, exe_now_ns(), memory_order_release);
	write_end(s);
}

void exe__watchdog_leave(struct exe__fiber_sched *s)
{
	write_begin(s);
	/* 0: no fiber running. release: see write_begin(). */
	atomic_store_explicit(&s->wd_since, 0, memory_order_release);
	write_end(s);
}

static void *watchdog_main(void *arg)
{
	struct exe__fiber_sched *s = arg;
	int64_t reported = 0; /* the stretch last reported, by its start */

	pthread_setname_np(pthread_self(), "exe-fiber-wd");
	for (;;) {
		int64_t bound = atomic_load_explicit(&s->wd_bound, memory_order_relaxed);
		int64_t period = bound > 0 ? bound / 4 : 100 * EXE_NS_PER_MS;
		uint32_t seq1, seq2;
		uint64_t w[4];
		int64_t since, now;
		char name[33], msg[160];

		if (period < EXE_NS_PER_MS)
			period = EXE_NS_PER_MS;
		/* acquire: pairs with the release store in exe__watchdog_stop(). */
		if (atomic_load_explicit(&s->wd_stop, memory_order_acquire))
			break;
		exe__futex_wait(&s->wd_stop, 0, exe_now_ns() + period);
		if (atomic_load_explicit(&s->wd_stop, memory_order_acquire))
			break;
		if (bound <= 0)
			continue;
		/* Seqlock reader. acquire: pairs with write_end()'s release. */
		seq1 = atomic_load_explicit(&s->wd_seq, memory_order_acquire);
		/* acquire: pairs with the hub's release stores, and keeps
		 * the second read of seq after these. */
		since = atomic_load_explicit(&s->wd_since, memory_order_acquire);
		for (int i = 0; i < 4; i++)
			w[i] = atomic_load_explicit(&s->wd_name[i], memory_order_acquire);
		seq2 = atomic_load_explicit(&s->wd_seq, memory_order_relaxed);
		now = exe_now_ns();
		if ((seq1 & 1) || seq1 != seq2 || since == 0 || since == reported || now - since <= bound)
			continue;
		memcpy(name, w, sizeof(w));
		name[32] = '\0';
		snprintf(msg, sizeof(msg),
		         "fiber \"%s\" has run %" PRId64
		         " ms without switching: it blocks every fiber of its "
		         "io thread",
		         name, (now - since) / EXE_NS_PER_MS);
		exe__report_error("fiber watchdog", -ETIME, msg);
		reported = since;
	}
	return NULL;
}

void exe__watchdog_stop(struct exe__fiber_sched *s)
{
	pthread_mutex_lock(&s->wd_lock);
	if (s->wd_started) {
		/* release: pairs with the acquire loads in watchdog_main(). */
		atomic_store_explicit(&s->wd_stop, 1, memory_order_release);
		exe__futex_wake(&s->wd_stop, 1);
		pthread_join(s->wd_thread, NULL);
		s->wd_started = false;
	}
	pthread_mutex_unlock(&s->wd_lock);
}

int exe_fiber_watchdog(struct exe_io *io, int64_t bound_ns)
{
	struct exe__fiber_sched *s;
	int rc = 0;

	if (!io || bound_ns < 0)
		return -EINVAL;
	s = &io->fibers;
	pthread_mutex_lock(&s->wd_lock);
	if (bound_ns > 0 && !s->wd_started) {
		rc = -pthread_create(&s->wd_thread, NULL, watchdog_main, s);
		if (rc == 0)
			s->wd_started = true;
		else
			rc = -EAGAIN;
	}
	if (rc == 0)
		atomic_store_explicit(&s->wd_bound, bound_ns, memory_order_relaxed);
	pthread_mutex_unlock(&s->wd_lock);
	return rc;
}
