/*
 * stress_deque.c - the work-stealing deque (executor/deque.h) against a
 * sequential specification, with one owner and several thieves racing:
 *  - every pushed item is returned exactly once (by take or steal), none is
 *    lost or duplicated, also for the last item that owner and thieves race
 *    for (the owner often takes down to empty while thieves steal);
 *  - each thief's steals come in push order (steals are FIFO at the top and
 *    items are pushed in increasing order);
 *  - the owner's takes are LIFO: a take never returns an item older than one
 *    the same owner pushed later and has not been returned yet;
 *  - a full deque refuses a push and keeps its items.
 * Plain program, run under ThreadSanitizer too.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "deque.h"

#if defined(__SANITIZE_THREAD__)
#define ITEMS 200000
#else
#define ITEMS 3000000
#endif
#define THIEVES 3

static struct exe__deque q;
static _Atomic uint8_t *seen; /* per item: times returned */
static _Atomic int done;
static _Atomic long stolen_total;

/* Items are ids scaled by 16, never NULL or EXE__DEQUE_ABORT ((void *)1),
 * as pointers to real objects are. */
#define ITEM(id) ((void *)((uintptr_t)(id) * 16))
#define ID(x) ((uintptr_t)(x) / 16)

static void fail(const char *what, long a, long b)
{
	fprintf(stderr, "stress_deque: %s (%ld, %ld)\n", what, a, b);
	exit(1);
}

static void record(uintptr_t id)
{
	if (id == 0 || id > ITEMS)
		fail("an item that was never pushed", (long)id, 0);
	if (atomic_fetch_add_explicit(&seen[id], 1, memory_order_relaxed) != 0)
		fail("an item returned twice", (long)id, 0);
}

static void *thief(void *arg)
{
	uintptr_t last = 0;
	long n = 0;

	(void)arg;
	for (;;) {
		void *x = exe__deque_steal(&q);

		if (x == EXE__DEQUE_ABORT)
			continue;
		if (x == EXE__DEQUE_EMPTY) {
			if (atomic_load_explicit(&done, memory_order_acquire))
				break;
			continue;
		}
		if (ID(x) <= last)
			fail("a thief's steals out of push order", (long)last, (long)ID(x));
		last = ID(x);
		record(last);
		n++;
	}
	atomic_fetch_add(&stolen_total, n);
	return NULL;
}

static unsigned rnd(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 16;
}

int main(void)
{
	pthread_t t[THIEVES];
	uintptr_t next = 1;
	unsigned seed = 12345;
	long taken = 0;

	seen = calloc(ITEMS + 1, sizeof(*seen));
	exe__deque_init(&q);

	/* Capacity: a full deque refuses and keeps everything. */
	for (uintptr_t i = 1; i <= EXE__DEQUE_CAP; i++)
		if (!exe__deque_push(&q, ITEM(i)))
			fail("push refused below capacity", (long)i, 0);
	if (exe__deque_push(&q, ITEM(EXE__DEQUE_CAP + 1)))
		fail("push accepted past capacity", EXE__DEQUE_CAP, 0);
	for (uintptr_t i = EXE__DEQUE_CAP; i >= 1; i--)
		if (ID(exe__deque_take(&q)) != i)
			fail("take on a full deque not LIFO", (long)i, 0);
	if (exe__deque_take(&q) != NULL || exe__deque_steal(&q) != EXE__DEQUE_EMPTY)
		fail("drained deque not empty", 0, 0);

	for (int i = 0; i < THIEVES; i++)
		pthread_create(&t[i], NULL, thief, NULL);
	while (next <= ITEMS) {
		unsigned push = 1 + rnd(&seed) % 64, take = rnd(&seed) % 80;
		uintptr_t newest = 0;

		for (unsigned i = 0; i < push && next <= ITEMS; i++) {
			if (!exe__deque_push(&q, ITEM(next)))
				break; /* full: take some first */
			newest = next++;
		}
		for (unsigned i = 0; i < take; i++) {
			uintptr_t x = ID(exe__deque_take(&q));

			if (!x)
				break;
			/* LIFO: the first take after pushing returns the newest
			 * item unless a thief took it (then it was the last). */
			if (i == 0 && newest && x != newest && atomic_load(&seen[newest]) == 0)
				fail("take did not return the newest item", (long)newest, (long)x);
			record(x);
			taken++;
			newest = 0;
		}
	}
	/* Drain what is left, racing the thieves to the end. */
	for (uintptr_t x; (x = ID(exe__deque_take(&q)));) {
		record(x);
		taken++;
	}
	atomic_store_explicit(&done, 1, memory_order_release);
	for (int i = 0; i < THIEVES; i++)
		pthread_join(t[i], NULL);
	for (long i = 1; i <= ITEMS; i++)
		if (atomic_load(&seen[i]) != 1)
			fail("an item lost", i, atomic_load(&seen[i]));
	if (taken + atomic_load(&stolen_total) != ITEMS)
		fail("count mismatch", taken, atomic_load(&stolen_total));
	printf("stress_deque: %d items, %ld taken by the owner, %ld stolen by %d thieves\n", ITEMS, taken,
	       atomic_load(&stolen_total), THIEVES);
	free((void *)seen);
	return 0;
}
