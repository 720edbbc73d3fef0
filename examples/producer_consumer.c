/*
 * producer_consumer - producers make "buns", consumers eat them, through a
 * queue: first threads over exe_queue, then processes over the
 * process-shared exe_ipc_queue.
 *
 * The teaching text ends its consumers with a None sentinel per consumer,
 * which the producers (or the main program) must count out exactly. Here the
 * main program closes the queue once every producer has finished: consumers
 * drain what is left, then their get fails with -EPIPE and they stop. No
 * sentinel, no counting, and a late put fails instead of vanishing.
 *
 * Each item is counted and folded into an order-independent checksum on both
 * sides; the two must match.
 *
 * Run: producer_consumer [--producers 3] [--consumers 2] [--items 20]
 *      [--max-delay-ms 5] [--capacity 4]
 * Exits non-zero when an item was lost or duplicated (counts or checksums
 * differ).
 */
#include <executor.h>

#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long nprod = 3, ncons = 2, nitems = 20, max_delay_ms = 5, capacity = 4;
static int verbose = 1;

struct totals {
	uint64_t count;
	uint64_t checksum;
};

/* A strong mix of the item number: summing these is order-independent, yet a
 * lost or duplicated item changes the sum. */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Work of random length, the teaching text's random sleep (shortened). */
static void work(unsigned *seed)
{
	long us = max_delay_ms > 0 ? rand_r(seed) % (max_delay_ms * 1000) : 0;
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};

	nanosleep(&ts, NULL);
}

/* ---- threads and exe_queue ---- */

static struct exe_queue *tq;

struct role {
	long id;
	struct totals t;
};

/* Items are integers carried in the pointer: producer p's i-th bun is
 * p * nitems + i + 1 (never 0, though NULL would be a fine item too). */
static int thread_producer(void *arg, void **result)
{
	struct role *r = arg;
	unsigned seed = (unsigned)r->id * 7919u;

	for (long i = 0; i < nitems; i++) {
		uint64_t item = (uint64_t)(r->id * nitems + i + 1);

		work(&seed);
		if (exe_queue_put(tq, (void *)(uintptr_t)item, EXE_FOREVER))
			return -EPIPE;
		r->t.count++;
		r->t.checksum += mix(item);
		if (verbose)
			printf("  producer %ld made bun %lu\n", r->id, (unsigned long)item);
	}
	*result = NULL;
	return 0;
}

static int thread_consumer(void *arg, void **result)
{
	struct role *r = arg;
	unsigned seed = (unsigned)r->id * 104729u;
	void *item;

	/* -EPIPE: closed and drained - the end of the stream. */
	while (exe_queue_get(tq, &item, EXE_FOREVER) == 0) {
		work(&seed);
		r->t.count++;
		r->t.checksum += mix((uintptr_t)item);
		if (verbose)
			printf("  consumer %ld ate bun %lu\n", r->id, (unsigned long)(uintptr_t)item);
	}
	*result = NULL;
	return 0;
}

static int run_threads(struct totals *made, struct totals *eaten, double *secs)
{
	struct role roles[64];
	struct exe_future *fs[64];
	struct exe_pool *pool;
	int64_t t0 = exe_now_ns();
	int rc;

	/* One worker per role: they block on the queue for as long as it
	 * lives, so they must not wait behind each other. */
	rc = exe_thread_pool_create(&pool, &(struct exe_pool_opts){.workers = (unsigned)(nprod + ncons),
	                                                           .name = "pc",
	                                                           .no_caller_runs = true});
	if (rc)
		return rc;
	rc = exe_queue_create(&tq, &(struct exe_queue_opts){.capacity = (size_t)capacity});
	if (rc) {
		exe_pool_destroy(pool);
		return rc;
	}
	for (long i = 0; i < nprod + ncons; i++) {
		roles[i] = (struct role){.id = i < nprod ? i : i - nprod};
		exe_pool_submit(pool, i < nprod ? thread_producer : thread_consumer, &roles[i], &fs[i]);
	}
	/* The producers finish, then the queue closes behind them. */
	exe_wait(fs, (size_t)nprod, EXE_WAIT_ALL, EXE_FOREVER);
	exe_queue_close(tq);
	if (verbose)
		printf("  main: producers done, queue closed\n");
	exe_wait(fs + nprod, (size_t)ncons, EXE_WAIT_ALL, EXE_FOREVER);
	*secs = (double)(exe_now_ns() - t0) / 1e9;
	for (long i = 0; i < nprod + ncons; i++) {
		struct totals *t = i < nprod ? made : eaten;

		t->count += roles[i].t.count;
		t->checksum += roles[i].t.checksum;
		exe_future_unref(fs[i]);
	}
	exe_pool_destroy(pool);
	exe_queue_destroy(tq);
	return 0;
}

/* ---- processes and exe_ipc_queue ---- */

/*
 * Both queues and the mutex are created before the fork, so every child
 * inherits handles to the same shared memory. Consumers add their totals to
 * shared memory guarded by the robust mutex; producers report theirs too, so
 * the parent compares what was made with what was eaten across processes.
 */
static struct exe_ipc_queue *pq;
static struct exe_ipc_mutex *pm;

struct shared_totals {
	struct totals made, eaten;
};

static void add_totals(int producer, const struct totals *t)
{
	struct shared_totals *st = exe_ipc_mutex_data(pm);
	int rc = exe_ipc_mutex_lock(pm, EXE_FOREVER);

	/* A process that died holding the lock had either added its totals
	 * or not: each is one pair of stores, nothing to repair. */
	if (rc == -EOWNERDEAD)
		exe_ipc_mutex_consistent(pm);
	else if (rc)
		return;
	if (producer) {
		st->made.count += t->count;
		st->made.checksum += t->checksum;
	} else {
		st->eaten.count += t->count;
		st->eaten.checksum += t->checksum;
	}
	exe_ipc_mutex_unlock(pm);
}

static int proc_producer(const void *arg, size_t len)
{
	long id = *(const long *)arg;
	unsigned seed = (unsigned)id * 7919u + (unsigned)getpid();
	struct totals t = {0};
	char msg[64];

	(void)len;
	for (long i = 0; i < nitems; i++) {
		uint64_t item = (uint64_t)(id * nitems + i + 1);
		int n = snprintf(msg, sizeof(msg), "bun %lu", (unsigned long)item);

		work(&seed);
		if (exe_ipc_queue_put(pq, msg, (size_t)n, EXE_FOREVER))
			return 1;
		t.count++;
		t.checksum += mix(item);
		if (verbose)
			printf("  pid %d made %s\n", (int)getpid(), msg);
	}
	add_totals(1, &t);
	return 0;
}

static int proc_consumer(const void *arg, size_t len)
{
	unsigned seed = (unsigned)getpid();
	struct totals t = {0};
	char msg[64];
	size_t n;

	(void)arg;
	(void)len;
	while (exe_ipc_queue_get(pq, msg, sizeof(msg) - 1, &n, EXE_FOREVER) == 0) {
		unsigned long item;

		msg[n] = '\0';
		if (sscanf(msg, "bun %lu", &item) != 1)
			return 1;
		work(&seed);
		t.count++;
		t.checksum += mix(item);
		if (verbose)
			printf("  pid %d ate %s\n", (int)getpid(), msg);
	}
	add_totals(0, &t);
	return 0;
}

static int run_processes(struct totals *made, struct totals *eaten, double *secs)
{
	struct exe_process *kids[64];
	long ids[64];
	struct shared_totals *st;
	int64_t t0 = exe_now_ns();
	int rc, failed = 0;
	long started = 0;

	rc = exe_ipc_queue_create(&pq, &(struct exe_ipc_queue_opts){.max_msgs = (size_t)capacity});
	if (rc)
		return rc;
	rc = exe_ipc_mutex_create(&pm, sizeof(struct shared_totals));
	if (rc) {
		exe_ipc_queue_destroy(pq);
		return rc;
	}
	for (long i = 0; i < nprod + ncons && rc == 0; i++, started++) {
		ids[i] = i < nprod ? i : i - nprod;
		rc = exe_process_start(&kids[i], i < nprod ? proc_producer : proc_consumer, &ids[i],
		                       sizeof(ids[i]), NULL);
	}
	if (rc)
		started--;
	/* Wait for the producers, then close: consumers drain and stop. */
	for (long i = 0; i < started; i++) {
		int code = -1;

		if (i == nprod) {
			exe_ipc_queue_close(pq);
			if (verbose)
				printf("  main: producers done, queue closed\n");
		}
		exe_process_join(kids[i], EXE_FOREVER);
		exe_process_exitcode(kids[i], &code);
		failed |= code != 0;
		exe_process_destroy(kids[i]);
	}
	exe_ipc_queue_close(pq); /* idempotent; ends the stream if a start failed */
	*secs = (double)(exe_now_ns() - t0) / 1e9;
	st = exe_ipc_mutex_data(pm);
	*made = st->made;
	*eaten = st->eaten;
	exe_ipc_mutex_destroy(pm);
	exe_ipc_queue_destroy(pq);
	return rc ? rc : failed ? -ECHILD : 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
	        "usage: %s [--producers N] [--consumers N] [--items N] [--max-delay-ms N] "
	        "[--capacity N] [--quiet]\n",
	        argv0);
	exit(2);
}

static int report(const char *what, int rc, const struct totals *made, const struct totals *eaten,
                  double secs)
{
	int ok = rc == 0 && made->count == (uint64_t)(nprod * nitems) && made->count == eaten->count &&
	         made->checksum == eaten->checksum;

	printf("%-10s made %4lu (checksum %016lx)  eaten %4lu (checksum %016lx)  %.2f s  %s\n", what,
	       (unsigned long)made->count, (unsigned long)made->checksum, (unsigned long)eaten->count,
	       (unsigned long)eaten->checksum, secs, ok ? "match" : "MISMATCH");
	if (rc)
		printf("  error: %s\n", exe_strerror(rc));
	return !ok;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"producers", required_argument, NULL, 'p'},
	    {"consumers", required_argument, NULL, 'c'},
	    {"items", required_argument, NULL, 'n'},
	    {"max-delay-ms", required_argument, NULL, 'd'},
	    {"capacity", required_argument, NULL, 'k'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct totals tm = {0}, te = {0}, pmade = {0}, peaten = {0};
	double ts = 0, ps = 0;
	int c, rc, prc, bad = 0;

	while ((c = getopt_long(argc, argv, "p:c:n:d:k:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': nprod = atol(optarg); break;
		case 'c': ncons = atol(optarg); break;
		case 'n': nitems = atol(optarg); break;
		case 'd': max_delay_ms = atol(optarg); break;
		case 'k': capacity = atol(optarg); break;
		case 'q': verbose = 0; break;
		default: usage(argv[0]);
		}
	}
	if (nprod < 1 || ncons < 1 || nprod + ncons > 64 || nitems < 0 || nitems > 1000000 ||
	    max_delay_ms < 0 || max_delay_ms > 10000 || capacity < 1 || capacity > 4096)
		usage(argv[0]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("%ld producers x %ld buns, %ld consumers, queue capacity %ld, work up to %ld ms\n\n", nprod,
	       nitems, ncons, capacity, max_delay_ms);

	/* Processes first, while this program has no other thread to copy. */
	printf("== processes over exe_ipc_queue\n");
	prc = run_processes(&pmade, &peaten, &ps);
	printf("\n== threads over exe_queue\n");
	rc = run_threads(&tm, &te, &ts);
	printf("\n");
	bad |= report("processes", prc, &pmade, &peaten, ps);
	bad |= report("threads", rc, &tm, &te, ts);
	printf("Closing the queue ended every consumer once it was drained: no sentinel needed.\n");
	printf("%s\n", bad ? "FAILED" : "OK");
	return bad;
}
