/*
 * mpi_serve.c - a worker rank: receive tasks from the client, run them on a
 * local process (or thread) pool, send the results back.
 *
 * Design
 *  - The serving thread (the one that called exe_mpi_pool_create()) makes
 *    every MPI call of this rank. It polls for client messages with a matched
 *    probe and sleeps with a back-off on a condition variable, which a local
 *    task's done callback signals: a finished task is sent at once even while
 *    the loop sleeps.
 *  - A bytes task goes to the local pool as a bytes task (the local pool
 *    copies the input and isolates crashes); a chunk goes as one bytes task
 *    running chunk_runner(), which calls the registered function on each
 *    element in the worker process (same binary, so its address is valid
 *    there). With the thread backend both run on a thread pool in place.
 *  - Results are sent without a copy from where they lie (the local
 *    future's bytes); the local future is kept until that send completed.
 *
 * Invariants
 *  - A work record is on exactly one of: the running list, the done list
 *    (under srv.lock), the sending list. Only the serving thread touches the
 *    running and sending lists.
 *  - BYE is answered only when nothing runs and every send completed, so
 *    the client can free its communicator right after the BYE_ACK.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_internal.h"

struct srv;

struct work {
	struct work *next, *prev; /* running list, then sending list */
	struct work *done_next;   /* done list, under srv.lock */
	struct srv *srv;
	uint64_t id;
	bool chunk;
	bool thread;    /* the thread backend's record: fn and output below */
	bool kill;      /* the client asked for kill on cancel */
	uint32_t count; /* chunk elements */
	void *fn;
	void *in_msg; /* the received message (the input lies inside it) */
	const unsigned char *in;
	size_t in_len;
	struct exe_future *lf; /* the local task */
	/* thread backend output */
	void *out;
	size_t out_len;
	uint64_t done;
	int code;
	/* sending */
	void *hdr_msg;
	MPI_Request reqs[2];
	int nreqs;
};

struct srv {
	MPI_Comm comm;
	int client;
	int rank;
	char host[64];
	struct exe_pool *pool;
	bool threads;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct work *done;   /* finished locally, under lock (LIFO; order does not matter) */
	struct work running; /* circular list */
	struct work *sending;
	unsigned nrunning;
};

/* ---- the chunk runner: in a local worker process ---- */

/* Input: [fn][arg0][arg1]...; output: [done][code][value0]... . A failure
 * at the first element returns the code itself, so its message
 * (exe_task_set_error()) travels with it. */
static int chunk_runner(const void *in, size_t in_len, void **out, size_t *out_len)
{
	const uint64_t *w = in;
	size_t n = in_len / 8 - 1, i;
	exe_task_fn *fn;
	uint64_t *o;
	int code = 0;

	if (in_len < 16 || in_len % 8)
		return -EBADMSG;
	fn = (exe_task_fn *)(uintptr_t)w[0];
	o = malloc((2 + n) * 8);
	if (!o)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		void *v = NULL;

		code = fn((void *)(uintptr_t)w[1 + i], &v);
		if (code) {
			if (code > 0)
				code = -code;
			if (i == 0) {
				free(o);
				return code;
			}
			break;
		}
		o[2 + i] = (uint64_t)(uintptr_t)v;
	}
	o[0] = i;
	o[1] = (uint64_t)(int64_t)code;
	*out = o;
	*out_len = (2 + i) * 8;
	return 0;
}

/* ---- the thread backend's task ---- */

static int thread_task(void *arg, void **result)
{
	struct work *w = arg;
	size_t i;

	(void)result;
	if (!w->chunk) {
		exe_proc_task_fn *fn = (exe_proc_task_fn *)w->fn;

		w->out = NULL;
		w->out_len = 0;
		w->code = fn(w->in_len ? w->in : NULL, w->in_len, &w->out, &w->out_len);
		if (w->code > 0)
			w->code = -w->code;
		if (w->code) {
			free(w->out);
			w->out = NULL;
			w->out_len = 0;
		}
		return w->code;
	}
	w->out = malloc((size_t)w->count * 8);
	if (!w->out)
		return -ENOMEM;
	for (i = 0; i < w->count; i++) {
		exe_task_fn *fn = (exe_task_fn *)w->fn;
		uint64_t a;
		void *v = NULL;
		int code;

		memcpy(&a, w->in + i * 8, 8);
		code = fn((void *)(uintptr_t)a, &v);
		if (code) {
			w->code = code > 0 ? -code : code;
			break;
		}
		((uint64_t *)w->out)[i] = (uint64_t)(uintptr_t)v;
	}
	w->done = i;
	w->out_len = i * 8;
	/* A failure at the first element fails the local future, so its
	 * message goes with it; later ones travel as the chunk's code. */
	return i == 0 && w->code ? w->code : 0;
}

/* ---- local completion ---- */

/* A local task finished (any thread): hand it to the serving thread. */
static int on_local_done(struct exe_future *f, void *arg)
{
	struct work *w = arg;
	struct srv *s = w->srv;

	(void)f;
	pthread_mutex_lock(&s->lock);
	w->done_next = s->done;
	s->done = w;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void work_free(struct work *w)
{
	if (w->lf)
		exe_future_unref(w->lf);
	free(w->in_msg);
	free(w->hdr_msg);
	if (w->thread)
		free(w->out);
	free(w);
}

static void unlink_running(struct srv *s, struct work *w)
{
	w->prev->next = w->next;
	w->next->prev = w->prev;
	s->nrunning--;
}

/* "worker 4121 killed by signal 11 (...)" -> "worker 4121 on host h (rank
 * 2) killed by signal 11 (...)"; other messages get the place in front. */
static char *placed_msg(struct srv *s, const char *msg)
{
	const char *p;

	if (!msg)
		return NULL;
	if (!strncmp(msg, "worker ", 7)) {
		p = msg + 7;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p > msg + 7)
			return exe__mpi_strdupf("%.*s on host %s (rank %d)%s", (int)(p - msg), msg, s->host,
			                        s->rank, p);
	}
	return exe__mpi_strdupf("rank %d on host %s: %s", s->rank, s->host, msg);
}

/* Send a RESULT; the record moves to the sending list until MPI is done
 * with its buffers. */
static int send_result(struct srv *s, struct work *w, int code, const char *msg, const void *data, size_t len,
                       uint32_t count)
{
	size_t mlen = msg ? strlen(msg) : 0, inl = len <= EXE__MPI_INLINE_MAX ? len : 0;
	struct exe__mpi_hdr *h = malloc(sizeof(*h) + mlen + inl);
	int rc;

	if (!h)
		return -ENOMEM;
	memset(h, 0, sizeof(*h));
	h->type = EXE__M_RESULT;
	h->id = w->id;
	h->code = code;
	h->name_len = (uint32_t)mlen;
	h->len = len;
	h->ext = len > EXE__MPI_INLINE_MAX;
	h->count = count;
	if (mlen)
		memcpy(h + 1, msg, mlen);
	if (inl)
		memcpy((char *)(h + 1) + mlen, data, inl);
	w->hdr_msg = h;
	w->nreqs = 0;
	rc = MPI_Isend(h, (int)(sizeof(*h) + mlen + inl), MPI_BYTE, s->client, EXE__MPI_TAG_HDR, s->comm,
	               &w->reqs[w->nreqs++]);
	if (rc == MPI_SUCCESS && h->ext)
		rc = MPI_Isend(data, (int)len, MPI_BYTE, s->client, EXE__MPI_TAG_PAYLOAD, s->comm,
		               &w->reqs[w->nreqs++]);
	w->next = s->sending;
	s->sending = w;
	return rc == MPI_SUCCESS ? 0 : -ENOTRECOVERABLE;
}

/* The outcome of a finished local task, as a RESULT. */
static int report(struct srv *s, struct work *w)
{
	int code = exe_future_code(w->lf);
	char *msg = NULL;
	const void *data = NULL;
	size_t len = 0;
	uint32_t count = 0;
	int rc;

	if (code) {
		msg = placed_msg(s, exe_future_error(w->lf));
	} else if (w->thread) {
		code = w->chunk ? w->code : 0;
		data = w->out;
		len = w->out_len;
		count = (uint32_t)w->done;
	} else if (exe_future_bytes(w->lf, &data, &len, 0) == 0 && w->chunk) {
		const uint64_t *o = data;
		int64_t c;

		if (len < 16) {
			code = -EBADMSG;
			len = 0;
		} else {
			count = (uint32_t)o[0];
			memcpy(&c, &o[1], 8);
			code = (int)c;
			data = o + 2;
			len -= 16;
		}
	}
	rc = send_result(s, w, code, msg, data, len, count);
	free(msg);
	return rc;
}

/* ---- incoming tasks ---- */

static int fail_now(struct srv *s, struct work *w, int code, const char *msg)
{
	w->next = w->prev = NULL;
	return send_result(s, w, code, msg, NULL, 0, 0);
}

static int start_task(struct srv *s, const struct exe__mpi_hdr *h, void *buf, int total)
{
	const char *name = (const char *)(h + 1);
	struct work *w = calloc(1, sizeof(*w));
	struct exe_submit_opts o = {.flags = EXE_SUBMIT_BLOCK};
	int rc;

	if (!w) {
		free(buf);
		return -ENOMEM;
	}
	w->srv = s;
	w->id = h->id;
	w->chunk = h->type == EXE__M_CHUNK;
	w->in_msg = buf;
	w->thread = s->threads;
	if ((size_t)total < sizeof(*h) + h->name_len || h->name_len > EXE_MPI_NAME_MAX ||
	    (size_t)total - sizeof(*h) - h->name_len != h->len ||
	    (w->chunk && h->len != (uint64_t)h->count * 8)) {
		return fail_now(s, w, -EBADMSG, "malformed task message");
	}
	w->in = (const unsigned char *)name + h->name_len;
	w->in_len = h->len;
	w->count = h->count;
	w->fn = exe__mpi_lookup(name, h->name_len, w->chunk ? EXE__MPI_PTR : EXE__MPI_BYTES);
	if (!w->fn) {
		char msg[EXE_MPI_NAME_MAX + 160];

		snprintf(msg, sizeof(msg), "no %s task named '%.*s' is registered on rank %d (host %s)",
		         w->chunk ? "pointer" : "bytes", (int)h->name_len, name, s->rank, s->host);
		return fail_now(s, w, -ENOENT, msg);
	}
	/* Always killable here; a plain CANCEL kills only when the client asked
	 * for it (see cancel_task()), a forced one (destroy's grace is over)
	 * always does. */
	o.flags |= EXE_SUBMIT_KILL_ON_CANCEL;
	w->kill = h->flags & EXE__MPI_F_KILL;
	o.task_timeout_ns = h->timeout_ns;
	if (s->threads) {
		rc = exe_pool_submit(s->pool, thread_task, w, &w->lf);
	} else if (!w->chunk) {
		rc = exe_pool_submit_bytes(s->pool, (exe_proc_task_fn *)w->fn, w->in, w->in_len, &o, &w->lf);
	} else {
		/* [fn][args...]: the arguments already sit after the name; put
		 * the function in the 8 bytes before them (the name's tail is
		 * copied out first). */
		unsigned char *p = malloc(8 + w->in_len);
		uint64_t fn = (uint64_t)(uintptr_t)w->fn;

		if (!p) {
			rc = -ENOMEM;
		} else {
			memcpy(p, &fn, 8);
			memcpy(p + 8, w->in, w->in_len);
			rc = exe_pool_submit_bytes(s->pool, chunk_runner, p, 8 + w->in_len, &o, &w->lf);
			free(p);
		}
	}
	if (rc) {
		char msg[160];

		snprintf(msg, sizeof(msg), "rank %d (host %s) could not start the task", s->rank, s->host);
		w->lf = NULL;
		return fail_now(s, w, rc, msg);
	}
	if (!s->threads && !w->chunk) {
		/* The local pool copied the input. */
		free(w->in_msg);
		w->in_msg = NULL;
	}
	w->next = &s->running;
	w->prev = s->running.prev;
	s->running.prev->next = w;
	s->running.prev = w;
	s->nrunning++;
	/* May run at once, on this thread, if the task already finished. */
	exe_future_on_done(w->lf, on_local_done, w);
	return 0;
}

/* A thread task only learns of the request (exe_task_cancelled()); a
 * process task is killed when it was submitted with kill on cancel or when
 * the client forces it (destroy). Otherwise it runs on, as the client's
 * exe_future_cancel() said (-EBUSY). */
static void cancel_task(struct srv *s, uint64_t id, bool force)
{
	struct work *w;

	for (w = s->running.next; w != &s->running; w = w->next) {
		if (w->id == id) {
			if (s->threads || w->kill || force)
				exe_future_cancel(w->lf);
			return;
		}
	}
}

/* ---- the loop ---- */

static int pump_sends(struct srv *s)
{
	struct work **pp = &s->sending, *w;
	int progressed = 0;

	while ((w = *pp)) {
		int flag = 0;

		if (MPI_Testall(w->nreqs, w->reqs, &flag, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
			return -ENOTRECOVERABLE;
		if (flag) {
			*pp = w->next;
			work_free(w);
			progressed = 1;
		} else {
			pp = &w->next;
		}
	}
	return progressed;
}

static int serve_loop(struct srv *s, int64_t poll_max)
{
	int64_t last = exe_now_ns(), last_beat = last;
	unsigned round = 0;
	bool bye = false;

	for (;;) {
		bool did = false;
		struct work *done;
		int flag = 1, rc;

		while (flag) {
			MPI_Message m;
			MPI_Status st;
			struct exe__mpi_hdr *h;
			int count;

			if (MPI_Improbe(s->client, EXE__MPI_TAG_HDR, s->comm, &flag, &m, &st) != MPI_SUCCESS)
				return -ENOTRECOVERABLE;
			if (!flag)
				break;
			did = true;
			MPI_Get_count(&st, MPI_BYTE, &count);
			h = malloc(count > (int)sizeof(*h) ? (size_t)count : sizeof(*h));
			if (!h)
				return -ENOMEM;
			if (MPI_Mrecv(h, count, MPI_BYTE, &m, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
				free(h);
				return -ENOTRECOVERABLE;
			}
			if (count < (int)sizeof(*h)) {
				free(h);
				continue; /* nothing to answer: no id */
			}
			switch (h->type) {
			case EXE__M_TASK:
			case EXE__M_CHUNK:
				if (start_task(s, h, h, count) == -ENOTRECOVERABLE)
					return -ENOTRECOVERABLE;
				break;
			case EXE__M_CANCEL:
				cancel_task(s, h->id, h->flags & EXE__MPI_F_FORCE);
				free(h);
				break;
			case EXE__M_BYE:
				bye = true;
				free(h);
				break;
			default: free(h); break;
			}
		}
		pthread_mutex_lock(&s->lock);
		done = s->done;
		s->done = NULL;
		pthread_mutex_unlock(&s->lock);
		while (done) {
			struct work *w = done;

			done = w->done_next;
			unlink_running(s, w);
			if (report(s, w) == -ENOTRECOVERABLE)
				return -ENOTRECOVERABLE;
			did = true;
		}
		rc = pump_sends(s);
		if (rc < 0)
			return rc;
		if (rc)
			did = true;
		/* While tasks run, tell the client this rank is alive (it takes a
		 * long silence for death where MPI reports nothing). */
		if (s->nrunning && exe_now_ns() - last_beat >= EXE__MPI_HEARTBEAT_NS) {
			struct exe__mpi_hdr beat = {.type = EXE__M_HEARTBEAT};

			if (MPI_Send(&beat, sizeof(beat), MPI_BYTE, s->client, EXE__MPI_TAG_HDR, s->comm) !=
			    MPI_SUCCESS)
				return -ENOTRECOVERABLE;
			last_beat = exe_now_ns();
		}
		if (bye && !s->nrunning && !s->sending) {
			struct exe__mpi_hdr ack = {.type = EXE__M_BYE_ACK};

			if (MPI_Send(&ack, sizeof(ack), MPI_BYTE, s->client, EXE__MPI_TAG_HDR, s->comm) !=
			    MPI_SUCCESS)
				return -ENOTRECOVERABLE;
			return EXE_MPI_SERVED;
		}
		if (did) {
			last = exe_now_ns();
			round = 0;
			continue;
		}
		pthread_mutex_lock(&s->lock);
		if (!s->done)
			exe__mpi_backoff(&s->cond, &s->lock, last, &round, poll_max);
		pthread_mutex_unlock(&s->lock);
	}
}

int exe__mpi_serve(MPI_Comm comm, int client, const struct exe_mpi_pool_opts *opts, int refuse)
{
	struct exe_pool_opts po = {
	    .workers = opts->workers_per_rank, .no_caller_runs = true, .name = "exe-mpi"};
	struct exe__mpi_hdr *hello;
	struct srv s;
	size_t hlen;
	int rc, ret;

	memset(&s, 0, sizeof(s));
	s.comm = comm;
	s.client = client;
	s.threads = opts->backend == EXE_MPI_THREADS;
	s.running.next = s.running.prev = &s.running;
	MPI_Comm_rank(comm, &s.rank);
	if (gethostname(s.host, sizeof(s.host) - 1))
		snprintf(s.host, sizeof(s.host), "?");
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_destroy(&s.cond);
		pthread_cond_init(&s.cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (refuse)
		rc = refuse;
	else
		rc = s.threads ? exe_thread_pool_create(&s.pool, &po) : exe_process_pool_create(&s.pool, &po);
	/* The client waits for a HELLO from every rank: always send one, with
	 * 0 workers when the local pool could not start (the client then
	 * fails the create instead of waiting forever). */
	hlen = strlen(s.host);
	hello = calloc(1, sizeof(*hello) + hlen);
	if (!hello) {
		exe_pool_destroy(s.pool);
		return -ENOMEM;
	}
	hello->type = EXE__M_HELLO;
	hello->name_len = (uint32_t)hlen;
	memcpy(hello + 1, s.host, hlen);
	/* The local pool's own default: one worker per online CPU. */
	hello->code =
	    opts->workers_per_rank ? (int32_t)opts->workers_per_rank : (int32_t)sysconf(_SC_NPROCESSORS_ONLN);
	if (hello->code < 1)
		hello->code = 1;
	if (rc)
		hello->code = rc < 0 ? rc : -rc;
	ret = MPI_Send(hello, (int)(sizeof(*hello) + hlen), MPI_BYTE, client, EXE__MPI_TAG_HDR, comm);
	free(hello);
	if (rc)
		return rc;
	if (ret != MPI_SUCCESS) {
		exe_pool_destroy(s.pool);
		return -ENOTRECOVERABLE;
	}
	ret = serve_loop(&s, opts->poll_max_ns > 0 ? opts->poll_max_ns : EXE__MPI_DEFAULT_POLL_MAX);
	/* Everything left (only after an MPI failure) is dropped with the pool. */
	exe_pool_destroy(s.pool);
	while (s.done) {
		struct work *w = s.done;

		s.done = w->done_next;
		unlink_running(&s, w);
		work_free(w);
	}
	while (s.sending) {
		struct work *w = s.sending;

		s.sending = w->next;
		work_free(w);
	}
	pthread_cond_destroy(&s.cond);
	pthread_mutex_destroy(&s.lock);
	return ret;
}
