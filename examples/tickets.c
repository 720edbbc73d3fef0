/*
 * tickets - ten buyers in ten processes buy from a tiny JSON-file
 * "database" ({"count": N}) over a simulated network delay.
 *
 * Every buyer first checks the count (no lock: reading is harmless), then
 * buys: read the count, wait (the network), decrement, write it back. That
 * read-modify-write must not interleave across processes, so it runs under a
 * robust process-shared mutex (exe_ipc_mutex): exactly the available
 * tickets are sold. With --no-lock the buyers all read the same count before
 * any of them writes, and far more tickets are "sold" than exist: the
 * oversell the teaching text warns about.
 *
 * The mutex is robust: had a buyer died holding it, the next locker would
 * get -EOWNERDEAD, repair the state and go on, instead of hanging forever.
 *
 * Run: tickets [--tickets 3] [--buyers 10] [--delay-ms 100] [--no-lock]
 *      [--db FILE]
 * Exits non-zero when the demonstration did not hold: with the lock, tickets
 * sold != tickets available; with --no-lock, no oversell happened.
 */
#include <executor.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BUYERS 64

static char db_path[4096];
static long delay_ms = 100;
static struct exe_ipc_mutex *mutex; /* NULL with --no-lock */
static int64_t t_prog;

static void network_delay(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static double stamp(void)
{
	return (double)(exe_now_ns() - t_prog) / 1e9;
}

/* Read {"count": N}; -1 on a missing or garbled file. */
static long db_read(void)
{
	FILE *f = fopen(db_path, "r");
	long count = -1;

	if (!f)
		return -1;
	if (fscanf(f, " { \"count\" : %ld }", &count) != 1)
		count = -1;
	fclose(f);
	return count;
}

/* Write to a temporary file and rename it over the database: a reader
 * never sees a half-written file (the lock orders writers, not readers). */
static int db_write(long count)
{
	char tmp[4200];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", db_path, (int)getpid());
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "{\"count\": %ld}\n", count);
	if (fclose(f) != 0 || rename(tmp, db_path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The buy: the part that must be serial. Return 0 bought, 1 sold out. */
static int buy(void)
{
	long count = db_read();

	network_delay(delay_ms);
	if (count <= 0) {
		printf("  %5.2fs  pid %d: sold out\n", stamp(), (int)getpid());
		return 1;
	}
	if (db_write(count - 1)) {
		printf("  %5.2fs  pid %d: cannot write the database\n", stamp(), (int)getpid());
		return 2;
	}
	printf("  %5.2fs  pid %d: bought a ticket (%ld -> %ld)\n", stamp(), (int)getpid(), count, count - 1);
	return 0;
}

/* A buyer process: its exit status says what happened (0 bought). */
static int buyer(const void *arg, size_t len)
{
	int rc;

	(void)arg;
	(void)len;
	network_delay(delay_ms);
	printf("  %5.2fs  pid %d: sees %ld tickets left\n", stamp(), (int)getpid(), db_read());
	if (!mutex)
		return buy();

	rc = exe_ipc_mutex_lock(mutex, 60 * EXE_NS_PER_S);
	if (rc == -EOWNERDEAD) {
		/* A buyer died mid-purchase. The file is replaced atomically,
		 * so it holds either the old or the new count: nothing to
		 * repair but the mutex itself. */
		printf("  pid %d: previous holder died, recovering the lock\n", (int)getpid());
		exe_ipc_mutex_consistent(mutex);
	} else if (rc) {
		printf("  pid %d: lock: %s\n", (int)getpid(), exe_strerror(rc));
		return 3;
	}
	rc = buy();
	exe_ipc_mutex_unlock(mutex);
	return rc;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--tickets N] [--buyers N] [--delay-ms N] [--no-lock] [--db FILE]\n",
	        argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"tickets", required_argument, NULL, 't'},
	    {"buyers", required_argument, NULL, 'b'},
	    {"delay-ms", required_argument, NULL, 'd'},
	    {"no-lock", no_argument, NULL, 'n'},
	    {"db", required_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct exe_process *kids[MAX_BUYERS];
	long tickets = 3, nbuyers = 10, left;
	int c, rc, sold = 0, soldout = 0, errors = 0, use_lock = 1, own_db = 1, bad;

	while ((c = getopt_long(argc, argv, "t:b:d:nf:h", longopts, NULL)) != -1) {
		switch (c) {
		case 't': tickets = atol(optarg); break;
		case 'b': nbuyers = atol(optarg); break;
		case 'd': delay_ms = atol(optarg); break;
		case 'n': use_lock = 0; break;
		case 'f':
			snprintf(db_path, sizeof(db_path), "%s", optarg);
			own_db = 0;
			break;
		default: usage(argv[0]);
		}
	}
	if (tickets < 0 || nbuyers < 1 || nbuyers > MAX_BUYERS || delay_ms < 0 || delay_ms > 10000)
		usage(argv[0]);
	if (own_db)
		snprintf(db_path, sizeof(db_path), "/tmp/tickets-db-%d.json", (int)getpid());
	setvbuf(stdout, NULL, _IOLBF, 0);
	t_prog = exe_now_ns();

	if (db_write(tickets)) {
		fprintf(stderr, "cannot write %s\n", db_path);
		return 1;
	}
	if (use_lock) {
		/* Created before the fork: every buyer inherits the handle to
		 * the same shared mutex. */
		rc = exe_ipc_mutex_create(&mutex, 0);
		if (rc) {
			fprintf(stderr, "mutex: %s\n", exe_strerror(rc));
			return 1;
		}
	}
	printf("database %s holds {\"count\": %ld}; %ld buyer processes, network delay %ld ms, %s\n", db_path,
	       tickets, nbuyers, delay_ms, use_lock ? "purchases under the process-shared mutex" : "NO LOCK");

	for (long i = 0; i < nbuyers; i++) {
		rc = exe_process_start(&kids[i], buyer, NULL, 0, NULL);
		if (rc) {
			fprintf(stderr, "start buyer: %s\n", exe_strerror(rc));
			for (long j = 0; j < i; j++)
				exe_process_destroy(kids[j]);
			return 1;
		}
	}
	for (long i = 0; i < nbuyers; i++) {
		int code = -1;

		exe_process_join(kids[i], EXE_FOREVER);
		exe_process_exitcode(kids[i], &code);
		if (code == 0)
			sold++;
		else if (code == 1)
			soldout++;
		else
			errors++;
		exe_process_destroy(kids[i]);
	}
	left = db_read();
	exe_ipc_mutex_destroy(mutex);
	if (own_db)
		unlink(db_path);

	printf("\navailable %ld, sold %d, sold out %d, errors %d, database now says %ld left\n", tickets,
	       sold, soldout, errors, left);
	if (use_lock) {
		bad = errors || sold != (tickets < nbuyers ? tickets : nbuyers) || left != tickets - sold;
		printf("%s\n", bad ? "FAILED: the lock did not keep the count right"
		                   : "OK: with the lock exactly the available tickets were sold");
	} else {
		bad = !(sold > tickets || left != tickets - sold);
		printf("%s\n", bad ? "FAILED: no oversell this time (try a longer --delay-ms)"
		                   : "OK: without the lock more tickets were sold than existed");
	}
	return bad;
}
