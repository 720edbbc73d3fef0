/*
 * stress_queue.c - 8 producers and 8 consumers move N items (default
 * 1 000 000) through struct exe_queue and check that none is lost or
 * duplicated: a seen-bitmap catches duplicates, counts and a checksum catch
 * losses. The items are split over three phases, one per kind (bounded FIFO,
 * unbounded LIFO, bounded priority), and the threads mix blocking, timed and
 * non-blocking calls so every wait path runs.
 *
 * A plain program (Criterion cannot run under ThreadSanitizer).
 * Usage: stress_queue [items]   (or EXE_STRESS_QUEUE_ITEMS=n)
 * Exit status 0 on success; one result line on stdout.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <executor.h>

#define PRODUCERS 8
#define CONSUMERS 8
#define DEFAULT_ITEMS 1000000UL

struct phase {
	struct exe_queue *q;
	enum exe_queue_kind kind;
	unsigned long first, n; /* items first .. first + n - 1 */
};

struct thread_arg {
	struct phase *ph;
	int id;
	uint64_t sum, sumsq;
	unsigned long count;
	unsigned long waits; /* -ETIMEDOUT seen (polls included) */
};

static _Atomic uint64_t *seen;
static atomic_int failed;

static void fail(const char *what, int rc)
{
	fprintf(stderr, "stress_queue: %s: %d (%s)\n", what, rc, exe_strerror(rc));
	atomic_store(&failed, 1);
}

static void *produce(void *arg)
{
	struct thread_arg *t = arg;
	struct phase *ph = t->ph;
	unsigned long per = ph->n / PRODUCERS, lo = ph->first + t->id * per;
	unsigned long hi = t->id == PRODUCERS - 1 ? ph->first + ph->n : lo + per;

	for (unsigned long v = lo; v < hi && !atomic_load_explicit(&failed, memory_order_relaxed); v++) {
		int64_t timeout = t->id % 4 == 0 ? 0 : t->id % 4 == 1 ? 100 * EXE_NS_PER_US : EXE_FOREVER;
		int rc;

		while ((rc = exe_queue_put_prio(ph->q, (void *)(uintptr_t)v, (int64_t)(v % 17), timeout)) ==
		       -ETIMEDOUT) {
			t->waits++;
			if (timeout == 0)
				sched_yield();
		}
		if (rc) {
			fail("put", rc);
			break;
		}
		t->sum += v;
		t->sumsq += (uint64_t)v * v;
		t->count++;
	}
	return NULL;
}

static void *consume(void *arg)
{
	struct thread_arg *t = arg;
	struct phase *ph = t->ph;

	for (;;) {
		int64_t timeout = t->id % 4 == 0 ? 0 : t->id % 4 == 1 ? 100 * EXE_NS_PER_US : EXE_FOREVER;
		void *p;
		uint64_t v, bit;
		int rc = exe_queue_get(ph->q, &p, timeout);

		if (rc == -ETIMEDOUT) {
			t->waits++;
			if (timeout == 0)
				sched_yield();
			continue;
		}
		if (rc == -EPIPE)
			break;
		if (rc) {
			fail("get", rc);
			break;
		}
		v = (uintptr_t)p;
		if (v < ph->first || v >= ph->first + ph->n) {
			fprintf(stderr, "stress_queue: foreign item %llu\n", (unsigned long long)v);
			atomic_store(&failed, 1);
			break;
		}
		bit = atomic_fetch_or_explicit(&seen[v / 64], 1ULL << (v % 64), memory_order_relaxed);
		if (bit & (1ULL << (v % 64))) {
			fprintf(stderr, "stress_queue: item %llu received twice\n", (unsigned long long)v);
			atomic_store(&failed, 1);
		}
		t->sum += v;
		t->sumsq += v * v;
		t->count++;
		rc = exe_queue_task_done(ph->q);
		if (rc)
			fail("task_done", rc);
	}
	return NULL;
}

static int run_phase(struct phase *ph, unsigned long *waits)
{
	struct exe_queue_opts o = {.kind = ph->kind, .capacity = ph->kind == EXE_QUEUE_LIFO ? 0 : 256};
	struct thread_arg p[PRODUCERS] = {0}, c[CONSUMERS] = {0};
	pthread_t tp[PRODUCERS], tc[CONSUMERS];
	uint64_t in = 0, insq = 0, out = 0, outsq = 0;
	unsigned long nin = 0, nout = 0;
	int rc;

	rc = exe_queue_create(&ph->q, &o);
	if (rc) {
		fail("create", rc);
		return -1;
	}
	for (int i = 0; i < CONSUMERS; i++) {
		c[i].ph = ph;
		c[i].id = i;
		pthread_create(&tc[i], NULL, consume, &c[i]);
	}
	for (int i = 0; i < PRODUCERS; i++) {
		p[i].ph = ph;
		p[i].id = i;
		pthread_create(&tp[i], NULL, produce, &p[i]);
	}
	for (int i = 0; i < PRODUCERS; i++) {
		pthread_join(tp[i], NULL);
		in += p[i].sum;
		insq += p[i].sumsq;
		nin += p[i].count;
		*waits += p[i].waits;
	}
	/* Every item put is taken and counted done before close. */
	if (!atomic_load(&failed)) {
		rc = exe_queue_join(ph->q, 60 * EXE_NS_PER_S);
		if (rc)
			fail("join", rc);
	}
	exe_queue_close(ph->q);
	for (int i = 0; i < CONSUMERS; i++) {
		pthread_join(tc[i], NULL);
		out += c[i].sum;
		outsq += c[i].sumsq;
		nout += c[i].count;
		*waits += c[i].waits;
	}
	if (exe_queue_count(ph->q) != 0)
		fail("items left after close", -EBADMSG);
	exe_queue_destroy(ph->q);
	if (nin != ph->n || nout != ph->n || in != out || insq != outsq) {
		fprintf(stderr, "stress_queue: kind %d: put %lu, got %lu of %lu; checksum %s\n", ph->kind,
		        nin, nout, ph->n, in == out && insq == outsq ? "ok" : "MISMATCH");
		atomic_store(&failed, 1);
	}
	return atomic_load(&failed) ? -1 : 0;
}

int main(int argc, char **argv)
{
	static const enum exe_queue_kind kinds[] = {EXE_QUEUE_FIFO, EXE_QUEUE_LIFO, EXE_QUEUE_PRIORITY};
	unsigned long items = DEFAULT_ITEMS, first = 0, waits = 0, missing = 0;
	const char *env = getenv("EXE_STRESS_QUEUE_ITEMS");
	int64_t t0 = exe_now_ns();

	if (argc > 1)
		items = strtoul(argv[1], NULL, 0);
	else if (env)
		items = strtoul(env, NULL, 0);
	if (items < 3 * PRODUCERS) {
		fprintf(stderr, "usage: %s [items >= %d]\n", argv[0], 3 * PRODUCERS);
		return 2;
	}
	seen = calloc(items / 64 + 1, sizeof(*seen));
	if (!seen)
		return 2;

	for (int k = 0; k < 3 && !atomic_load(&failed); k++) {
		struct phase ph = {.kind = kinds[k], .first = first, .n = items / 3};

		if (k == 2)
			ph.n = items - first;
		run_phase(&ph, &waits);
		first += ph.n;
	}
	for (unsigned long v = 0; v < items; v++)
		if (!(atomic_load_explicit(&seen[v / 64], memory_order_relaxed) & (1ULL << (v % 64))))
			missing++;
	if (missing) {
		fprintf(stderr, "stress_queue: %lu items never received\n", missing);
		atomic_store(&failed, 1);
	}
	free(seen);
	printf("stress_queue: %s: %lu items, %d producers x %d consumers, fifo/lifo/priority, %lu waits, "
	       "%.2f s\n",
	       atomic_load(&failed) ? "FAIL" : "ok", items, PRODUCERS, CONSUMERS, waits,
	       (double)(exe_now_ns() - t0) / 1e9);
	return atomic_load(&failed) ? 1 : 0;
}
