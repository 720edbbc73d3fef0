/*
 * errors.c - the error hook, exe_strerror() and the library clock.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "executor/errors.h"
#include "executor.h"

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

const char *exe_strerror(int code)
{
	if (code < 0)
		code = -code;
	switch (code) {
	case 0: return "success";
	case ECANCELED: return "cancelled";
	case ETIMEDOUT: return "timed out";
	case ESHUTDOWN: return "pool is shut down";
	case EPIPE: return "pool is broken or queue is closed";
	case ECHILD: return "worker process died";
	case EBADMSG: return "malformed message";
	case EOWNERDEAD: return "previous owner died";
	case EAGAIN: return "queue is full";
	case EBUSY: return "already running";
	case EALREADY: return "already finished";
	default: return strerror(code);
	}
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
