/*
 * mpi_registry.c - tasks by name, and small helpers every MPI file uses
 * (polling back-off, MPI error messages).
 *
 * Design: a growing array under one mutex. Registration happens at start-up
 * (constructors, or before exe_mpi_pool_create()); lookups are per message,
 * a linear scan of a few entries, cheaper than the message itself.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpi_internal.h"

struct entry {
	char name[EXE_MPI_NAME_MAX + 1];
	size_t len;
	enum exe__mpi_kind kind;
	void *fn;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *entries;
static size_t nentries, cap;

static int reg(const char *name, enum exe__mpi_kind kind, void *fn)
{
	size_t len, i;
	int rc = 0;

	if (!name || !fn)
		return -EINVAL;
	len = strnlen(name, EXE_MPI_NAME_MAX + 1);
	if (len == 0 || len > EXE_MPI_NAME_MAX)
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	for (i = 0; i < nentries; i++) {
		if (entries[i].len == len && !memcmp(entries[i].name, name, len)) {
			rc = entries[i].fn == fn && entries[i].kind == kind ? 0 : -EINVAL;
			goto out;
		}
	}
	if (nentries == cap) {
		size_t ncap = cap ? 2 * cap : 16;
		struct entry *e = realloc(entries, ncap * sizeof(*e));

		if (!e) {
			rc = -ENOMEM;
			goto out;
		}
		entries = e;
		cap = ncap;
	}
	memcpy(entries[nentries].name, name, len);
	entries[nentries].name[len] = 0;
	entries[nentries].len = len;
	entries[nentries].kind = kind;
	entries[nentries].fn = fn;
	nentries++;
out:
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

int exe_mpi_register(const char *name, exe_proc_task_fn *fn)
{
	return reg(name, EXE__MPI_BYTES, (void *)fn);
}

int exe_mpi_register_ptr(const char *name, exe_task_fn *fn)
{
	return reg(name, EXE__MPI_PTR, (void *)fn);
}

void *exe__mpi_lookup(const char *name, size_t len, enum exe__mpi_kind kind)
{
	void *fn = NULL;
	size_t i;

	pthread_mutex_lock(&reg_lock);
	for (i = 0; i < nentries; i++) {
		if (entries[i].kind == kind && entries[i].len == len && !memcmp(entries[i].name, name, len)) {
			fn = entries[i].fn;
			break;
		}
	}
	pthread_mutex_unlock(&reg_lock);
	return fn;
}

size_t exe__mpi_name_of(exe_task_fn *fn, char *buf)
{
	size_t i, len = 0;

	pthread_mutex_lock(&reg_lock);
	for (i = 0; i < nentries; i++) {
		if (entries[i].kind == EXE__MPI_PTR && entries[i].fn == (void *)fn) {
			/* A copy: the array may move when it grows. */
			len = entries[i].len;
			memcpy(buf, entries[i].name, len);
			break;
		}
	}
	pthread_mutex_unlock(&reg_lock);
	return len;
}

/* ---- helpers ---- */

void exe__mpi_backoff(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t last_active, unsigned *round,
                      int64_t max_ns)
{
	int64_t now = exe_now_ns(), sleep_ns, until;
	struct timespec ts;

	if (now - last_active < EXE__MPI_SPIN_NS) {
		/* Hot: poll again at once, letting a waiting thread run. */
		pthread_mutex_unlock(lock);
		sched_yield();
		pthread_mutex_lock(lock);
		return;
	}
	sleep_ns = (int64_t)2000 << (*round < 20 ? *round : 20);
	if (sleep_ns > max_ns)
		sleep_ns = max_ns;
	(*round)++;
	until = now + sleep_ns;
	ts.tv_sec = until / EXE_NS_PER_S;
	ts.tv_nsec = until % EXE_NS_PER_S;
	pthread_cond_timedwait(cond, lock, &ts);
}

char *exe__mpi_strdupf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

char *exe__mpi_errmsg(int rc, const char *fmt, ...)
{
	char what[256], err[MPI_MAX_ERROR_STRING];
	int elen = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (MPI_Error_string(rc, err, &elen) != MPI_SUCCESS)
		snprintf(err, sizeof(err), "MPI error %d", rc);
	return exe__mpi_strdupf("%s: %s", what, err);
}

bool exe__mpi_thread_ok(void)
{
	int init = 0, fin = 0, level = 0;

	MPI_Initialized(&init);
	MPI_Finalized(&fin);
	if (!init || fin)
		return false;
	MPI_Query_thread(&level);
	return level >= MPI_THREAD_MULTIPLE;
}
