/*
 * errors.c - the error hook, exe_strerror() and the library clock.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "errors.h"
#include <executor.h>

struct hook {
	exe_error_hook_fn *fn;
	void *arg;
};

/* The hook and its argument change together: published as one pointer to an
 * immutable pair. Old pairs are never freed (a handful per process at most),
 * so a reader never sees a freed pair. */
static _Atomic(struct hook *) current_hook;

static void default_hook(const char *what, int code, const char *msg, void *arg)
{
	(void)arg;
	fprintf(stderr, "libexecutor: %s failed: %s%s%s\n", what, exe_strerror(code), msg ? ": " : "",
	        msg ? msg : "");
}

void exe_set_error_hook(exe_error_hook_fn *fn, void *arg)
{
	static struct hook pairs[64];
	static _Atomic unsigned used;
	unsigned i;

	if (!fn) {
		atomic_store_explicit(&current_hook, NULL, memory_order_release);
		return;
	}
	i = atomic_fetch_add_explicit(&used, 1, memory_order_relaxed) % 64;
	pairs[i].fn = fn;
	pairs[i].arg = arg;
	/* Pairs with the acquire load in exe__report_error(). */
	atomic_store_explicit(&current_hook, &pairs[i], memory_order_release);
}

void exe__report_error(const char *what, int code, const char *msg)
{
	struct hook *h = atomic_load_explicit(&current_hook, memory_order_acquire);

	if (h)
		h->fn(what, code, msg, h->arg);
	else
		default_hook(what, code, msg, NULL);
}

/* The words of the table in common.h: one meaning per code. */
const char *exe_strerror(int code)
{
	/* -INT_MIN does not exist: no code is that large, so it is unknown. */
	if (code == INT_MIN)
		return "unknown error code";
	if (code < 0)
		code = -code;
	switch (code) {
	case 0: return "success";
	case EINVAL: return "invalid argument";
	case ENOMEM: return "out of memory";
	case EAGAIN: return "resource temporarily exhausted (full queue, no thread or process for now)";
	case ETIMEDOUT: return "not finished within the time given";
	case ETIME: return "task ran past its time limit";
	case ECANCELED: return "cancelled";
	case EBUSY: return "already running (cancel requested)";
	case EALREADY: return "already finished";
	case ESHUTDOWN: return "shut down";
	case EPIPE: return "closed or ended";
	case ENOTRECOVERABLE: return "broken for good (recreate it)";
	case ECHILD: return "worker process died";
	case EBADMSG: return "malformed bytes or corrupted shared memory";
	case EMSGSIZE: return "message too long";
	case EOWNERDEAD: return "previous owner died (repair, then mark consistent)";
	case EDEADLK: return "would wait on itself forever";
	case EOPNOTSUPP: return "not supported by this object or backend";
	case ENOENT: return "no such name";
	default: return strerror(code);
	}
}

const char *exe_version(void)
{
	return EXE_VERSION_STRING;
}

int64_t exe_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t exe__deadline(int64_t timeout_ns)
{
	int64_t now;

	if (timeout_ns < 0)
		return -1;
	now = exe_now_ns();
	return timeout_ns > INT64_MAX - now ? -1 : now + timeout_ns;
}
