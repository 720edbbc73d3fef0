/*
 * mpi_progress.c - the client's progress thread: hands queued tasks to ranks
 * with free workers, receives results, completes futures (their callbacks
 * run here), forwards cancels, notices failed ranks, and says BYE at the end.
 *
 * Design
 *  - Load balance: each rank said in its HELLO how many local workers it
 *    has; a rank gets a task only while it runs fewer than that, and the
 *    rank with the most free workers gets it (among equals the one used
 *    last, which is polling hot). So no task waits behind a busy rank while
 *    another idles, and a chunk is one task.
 *  - A task in flight sits in its rank's table at a free slot; its id is
 *    (sequence << 20 | slot). A result is accepted only when the slot holds
 *    a task with that very id: a stale or corrupted id can never reach a
 *    freed record.
 *  - Polling: MPI has no descriptor to sleep on, so while anything is in
 *    flight the thread polls with MPI_Improbe, busy for a short time after
 *    the last message and then with a doubling sleep (capped by
 *    poll_max_ns). With nothing in flight it sleeps on the pool's condition
 *    variable until a submit, cancel or shutdown signals it.
 *  - Errors: the communicator returns errors (MPI_ERRORS_RETURN). An error
 *    on a call aimed at one rank fails that rank's tasks (-ECHILD); one that
 *    names no rank (a probe from any source) fails every rank. With no rank
 *    left the pool is broken and queued tasks fail. Nothing waits on a rank
 *    that failed.
 *
 * Invariants
 *  - Rank tables, the sequence and every MPI call belong to this thread.
 *  - The thread exits only after shutdown with an empty queue and nothing
 *    in flight, and after every live rank acknowledged BYE.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "mpi_internal.h"

#define SLOT_BITS 20
#define SLOT_MASK ((1u << SLOT_BITS) - 1)

/* ---- failures ---- */

static void fail_queued(struct exe__mpi_pool *mp)
{
	for (;;) {
		struct exe__mpi_task *t;

		pthread_mutex_lock(&mp->lock);
		for (t = mp->qhead.next; t != &mp->qhead; t = t->next) {
			if (exe__future_claim(t->f))
				break;
		}
		if (t == &mp->qhead) {
			pthread_mutex_unlock(&mp->lock);
			return;
		}
		t->prev->next = t->next;
		t->next->prev = t->prev;
		mp->queued--;
		pthread_mutex_unlock(&mp->lock);
		exe__mpi_task_finish(mp, t, -ENOTRECOVERABLE, NULL, NULL, exe__pool_broken_msg(&mp->base));
	}
}

/* Rank @idx is gone: fail its tasks with -ECHILD and @why (taken). */
static void rank_failed_msg(struct exe__mpi_pool *mp, int idx, char *why)
{
	struct exe__mpi_rank *r = &mp->ranks[idx];
	unsigned i;

	if (r->dead) {
		free(why);
		return;
	}
	r->dead = true;
	atomic_fetch_sub_explicit(&mp->live_slots, r->slots, memory_order_relaxed);
	for (i = 0; i < r->slots; i++) {
		struct exe__mpi_task *t = r->table[i];

		if (!t)
			continue;
		r->table[i] = NULL;
		if (t->send != MPI_REQUEST_NULL)
			MPI_Request_free(&t->send);
		atomic_fetch_sub_explicit(&mp->running, 1, memory_order_relaxed);
		exe__mpi_task_finish(mp, t, -ECHILD, NULL, NULL, why ? strdup(why) : NULL);
	}
	r->inflight = 0;
	if (atomic_fetch_sub_explicit(&mp->live_ranks, 1, memory_order_relaxed) == 1) {
		exe__pool_mark_broken(&mp->base, "no worker rank left (%s)", why ? why : "MPI error");
		fail_queued(mp);
	}
	free(why);
}

static void rank_failed(struct exe__mpi_pool *mp, int idx, int mpi_rc)
{
	struct exe__mpi_rank *r = &mp->ranks[idx];

	rank_failed_msg(mp, idx,
	                exe__mpi_errmsg(mpi_rc, "worker rank %d on host %s failed", r->rank, r->host));
}

static void all_failed(struct exe__mpi_pool *mp, int mpi_rc)
{
	int i;

	for (i = 0; i < mp->nranks; i++)
		rank_failed(mp, i, mpi_rc);
}

/* Ranks silent for longer than the liveness bound while they owe us
 * something (tasks in flight, or a BYE_ACK when @acks is given) are taken
 * for dead. */
static void check_liveness(struct exe__mpi_pool *mp, const bool *acks)
{
	int64_t now = exe_now_ns();
	int i;

	if (mp->liveness_ns < 0)
		return;
	for (i = 0; i < mp->nranks; i++) {
		struct exe__mpi_rank *r = &mp->ranks[i];

		if (r->dead || (acks ? acks[i] : r->inflight == 0) || now - r->last_heard <= mp->liveness_ns)
			continue;
		{
			char *why = exe__mpi_strdupf(
			    "worker rank %d on host %s: no word for %lld ms (it died or hangs)", r->rank,
			    r->host, (long long)((now - r->last_heard) / EXE_NS_PER_MS));

			rank_failed_msg(mp, i, why);
		}
	}
}

/* ---- dispatch ---- */

/* The rank with the most free workers; among equals, the one that got a
 * task last: it is polling hot, while an idle rank may sleep up to
 * poll_max_ns before it looks (round robin would wake a cold rank for
 * every task of a one-at-a-time caller). */
static int pick_rank(struct exe__mpi_pool *mp)
{
	unsigned best_free = 0;
	uint64_t best_seq = 0;
	int best = -1, i;

	for (i = 0; i < mp->nranks; i++) {
		struct exe__mpi_rank *r = &mp->ranks[i];
		unsigned free_slots = r->dead ? 0 : r->slots - r->inflight;

		if (free_slots > best_free ||
		    (free_slots && free_slots == best_free && r->last_seq > best_seq)) {
			best_free = free_slots;
			best_seq = r->last_seq;
			best = i;
		}
	}
	return best;
}

static struct exe__mpi_task *take(struct exe__mpi_pool *mp)
{
	struct exe__mpi_task *t;

	pthread_mutex_lock(&mp->lock);
	for (t = mp->qhead.next; t != &mp->qhead; t = t->next) {
		/* A record whose claim fails was cancelled: its hook unlinks it. */
		if (exe__future_claim(t->f)) {
			t->prev->next = t->next;
			t->next->prev = t->prev;
			t->prev = t->next = NULL;
			mp->queued--;
			pthread_mutex_unlock(&mp->lock);
			return t;
		}
	}
	pthread_mutex_unlock(&mp->lock);
	return NULL;
}

static bool dispatch(struct exe__mpi_pool *mp)
{
	bool did = false;

	for (;;) {
		int idx = pick_rank(mp), rc;
		struct exe__mpi_rank *r;
		struct exe__mpi_task *t;
		unsigned slot;

		if (idx < 0)
			break;
		t = take(mp);
		if (!t)
			break;
		r = &mp->ranks[idx];
		for (slot = 0; r->table[slot]; slot++)
			;
		t->msg->id = (++mp->seq << SLOT_BITS) | slot;
		r->last_seq = mp->seq;
		t->rank_idx = idx;
		r->table[slot] = t;
		if (r->inflight++ == 0)
			r->last_heard = exe_now_ns(); /* silence counts from here */
		atomic_fetch_add_explicit(&mp->running, 1, memory_order_relaxed);
		rc = MPI_Isend(t->msg, (int)t->msg_len, MPI_BYTE, r->rank, EXE__MPI_TAG_HDR, mp->comm,
		               &t->send);
		if (rc != MPI_SUCCESS) {
			t->send = MPI_REQUEST_NULL;
			rank_failed(mp, idx, rc);
		}
		did = true;
	}
	return did;
}

/* ---- cancel ---- */

static bool do_cancels(struct exe__mpi_pool *mp)
{
	struct exe_future **fs;
	size_t n, k;
	int i;

	pthread_mutex_lock(&mp->lock);
	n = mp->ncancels;
	fs = mp->cancels;
	if (n) {
		mp->cancels = NULL;
		mp->ncancels = mp->cancels_cap = 0;
	}
	pthread_mutex_unlock(&mp->lock);
	for (k = 0; k < n; k++) {
		for (i = 0; i < mp->nranks; i++) {
			struct exe__mpi_rank *r = &mp->ranks[i];
			unsigned s;

			for (s = 0; !r->dead && s < r->slots; s++) {
				struct exe__mpi_task *t = r->table[s];
				struct exe__mpi_hdr h = {.type = EXE__M_CANCEL};
				int rc;

				if (!t || t->f != fs[k])
					continue;
				h.id = t->msg->id;
				rc = MPI_Send(&h, sizeof(h), MPI_BYTE, r->rank, EXE__MPI_TAG_HDR, mp->comm);
				if (rc != MPI_SUCCESS)
					rank_failed(mp, i, rc);
				break;
			}
		}
		exe_future_unref(fs[k]);
	}
	free(fs);
	return n != 0;
}

/* Destroy: once nothing is queued, running tasks get destroy_grace_ns,
 * then a forced cancel each (their workers are killed). */
static bool destroy_grace(struct exe__mpi_pool *mp)
{
	bool destroying;
	size_t queued;
	int i;

	pthread_mutex_lock(&mp->lock);
	destroying = mp->destroying;
	queued = mp->queued;
	pthread_mutex_unlock(&mp->lock);
	if (!destroying || queued || mp->forced || mp->destroy_grace_ns < 0)
		return false;
	if (!mp->grace_from)
		mp->grace_from = exe_now_ns();
	if (exe_now_ns() - mp->grace_from < mp->destroy_grace_ns)
		return false;
	mp->forced = true;
	for (i = 0; i < mp->nranks; i++) {
		struct exe__mpi_rank *r = &mp->ranks[i];
		unsigned s;

		for (s = 0; !r->dead && s < r->slots; s++) {
			struct exe__mpi_hdr h = {.type = EXE__M_CANCEL, .flags = EXE__MPI_F_FORCE};
			int rc;

			if (!r->table[s])
				continue;
			h.id = r->table[s]->msg->id;
			rc = MPI_Send(&h, sizeof(h), MPI_BYTE, r->rank, EXE__MPI_TAG_HDR, mp->comm);
			if (rc != MPI_SUCCESS)
				rank_failed(mp, i, rc);
		}
	}
	return true;
}

/* ---- results ---- */

/* A RESULT message from rank @idx; @alloc holds a struct exe__mpi_bytes
 * followed by the message @h (@count bytes). Takes @alloc. */
static void on_result(struct exe__mpi_pool *mp, int idx, void *alloc, struct exe__mpi_hdr *h, int count)
{
	struct exe__mpi_rank *r = &mp->ranks[idx];
	unsigned slot = (unsigned)(h->id & SLOT_MASK);
	struct exe__mpi_task *t = slot < r->slots ? r->table[slot] : NULL;
	size_t avail = (size_t)count - sizeof(*h);
	unsigned char *payload = NULL;
	const unsigned char *data;
	char *msg = NULL;
	int code = h->code, rc;

	if (h->name_len > avail || (!h->ext && h->len != avail - h->name_len) || h->len > (uint64_t)INT32_MAX)
		code = -EBADMSG;
	if (h->ext && h->len <= (uint64_t)INT32_MAX) {
		/* Receive the payload even for a result we cannot use: it is the
		 * next one from this rank and must not be taken for another. */
		payload = malloc(h->len ? h->len : 1);
		if (!payload) {
			code = -ENOMEM;
			rc = MPI_Recv(NULL, 0, MPI_BYTE, r->rank, EXE__MPI_TAG_PAYLOAD, mp->comm,
			              MPI_STATUS_IGNORE);
		} else {
			rc = MPI_Recv(payload, (int)h->len, MPI_BYTE, r->rank, EXE__MPI_TAG_PAYLOAD, mp->comm,
			              MPI_STATUS_IGNORE);
		}
		if (rc != MPI_SUCCESS) {
			free(payload);
			free(alloc);
			rank_failed(mp, idx, rc);
			return;
		}
	}
	if (!t || t->msg->id != h->id) {
		/* Not a task of ours in flight there: drop it. */
		free(payload);
		free(alloc);
		return;
	}
	r->table[slot] = NULL;
	r->inflight--;
	atomic_fetch_sub_explicit(&mp->running, 1, memory_order_relaxed);
	MPI_Wait(&t->send, MPI_STATUS_IGNORE); /* received there, so complete */
	if (code == -EBADMSG) {
		free(payload);
		free(alloc);
		exe__mpi_task_finish(mp, t, -EBADMSG, NULL, NULL,
		                     exe__mpi_strdupf("malformed result from rank %d", r->rank));
		return;
	}
	if (h->name_len)
		msg = strndup((const char *)(h + 1), h->name_len);
	data = payload ? payload : (const unsigned char *)(h + 1) + h->name_len;
	if (t->bytes) {
		struct exe__mpi_bytes *b = alloc;

		if (code) {
			free(payload);
			free(alloc);
			exe__mpi_task_finish(mp, t, code, NULL, NULL, msg);
			return;
		}
		b->buf = payload;
		b->data = data;
		b->len = h->len;
		exe__mpi_task_finish(mp, t, 0, b, exe__mpi_bytes_free, msg);
		return;
	}
	/* A chunk (a pointer task is a chunk of one). */
	if (h->len != (uint64_t)h->count * 8 || h->count > t->msg->count ||
	    (!code && h->count != t->msg->count)) {
		code = -EBADMSG;
		free(msg);
		msg = exe__mpi_strdupf("malformed chunk result from rank %d", r->rank);
	}
	if (t->map) {
		if (code != -EBADMSG) {
			memcpy(t->map->vals + t->first, data, (size_t)h->count * 8);
			/* Published by the completion (release), read after it. */
			t->map->done[t->chunk] = h->count;
		}
		exe__mpi_task_finish(mp, t, code, NULL, NULL, msg);
	} else {
		uint64_t v = 0;

		if (!code)
			memcpy(&v, data, 8);
		exe__mpi_task_finish(mp, t, code, (void *)(uintptr_t)v, NULL, msg);
	}
	free(payload);
	free(alloc);
}

/* Receive what has arrived. Returns whether anything did. */
static bool receive(struct exe__mpi_pool *mp, bool *bye_acks)
{
	bool did = false;

	for (;;) {
		struct exe__mpi_hdr *h;
		MPI_Message m;
		MPI_Status st;
		void *alloc;
		int flag = 0, count = 0, idx, rc;

		rc = MPI_Improbe(MPI_ANY_SOURCE, EXE__MPI_TAG_HDR, mp->comm, &flag, &m, &st);
		if (rc != MPI_SUCCESS) {
			all_failed(mp, rc);
			return true;
		}
		if (!flag)
			return did;
		did = true;
		MPI_Get_count(&st, MPI_BYTE, &count);
		/* Room for the value's header in front, so a bytes result keeps
		 * this very buffer without a copy. */
		alloc = malloc(sizeof(struct exe__mpi_bytes) + (size_t)count + sizeof(*h));
		h = alloc ? (struct exe__mpi_hdr *)((struct exe__mpi_bytes *)alloc + 1) : NULL;
		rc = MPI_Mrecv(h, alloc ? count : 0, MPI_BYTE, &m, MPI_STATUS_IGNORE);
		idx = st.MPI_SOURCE >= 0 && st.MPI_SOURCE < mp->comm_size ? mp->rank_idx[st.MPI_SOURCE] : -1;
		if (rc != MPI_SUCCESS) {
			free(alloc);
			if (idx >= 0)
				rank_failed(mp, idx, rc);
			else
				all_failed(mp, rc);
			continue;
		}
		if (!alloc || idx < 0 || mp->ranks[idx].dead || count < (int)sizeof(*h)) {
			free(alloc);
			continue;
		}
		mp->ranks[idx].last_heard = exe_now_ns();
		if (h->type == EXE__M_RESULT) {
			on_result(mp, idx, alloc, h, count);
		} else {
			if (h->type == EXE__M_BYE_ACK && bye_acks)
				bye_acks[idx] = true;
			free(alloc);
		}
	}
}

/* ---- the end ---- */

static void say_bye(struct exe__mpi_pool *mp)
{
	bool *acks = calloc((size_t)mp->nranks, sizeof(bool));
	int64_t last = exe_now_ns();
	unsigned round = 0;
	int i;

	for (i = 0; i < mp->nranks; i++) {
		struct exe__mpi_hdr bye = {.type = EXE__M_BYE};
		int rc;

		if (mp->ranks[i].dead)
			continue;
		mp->ranks[i].last_heard = last; /* the answer is due from now */
		rc = MPI_Send(&bye, sizeof(bye), MPI_BYTE, mp->ranks[i].rank, EXE__MPI_TAG_HDR, mp->comm);
		if (rc != MPI_SUCCESS)
			rank_failed(mp, i, rc);
	}
	/* Poll, not a blocking receive: a rank that fails meanwhile is
	 * reported by the probe instead of hanging us. */
	for (;;) {
		bool all = true;

		if (receive(mp, acks)) {
			last = exe_now_ns();
			round = 0;
		}
		if (acks)
			check_liveness(mp, acks);
		for (i = 0; i < mp->nranks; i++)
			if (!mp->ranks[i].dead && !(acks && acks[i]))
				all = false;
		if (all || !acks)
			break;
		pthread_mutex_lock(&mp->lock);
		exe__mpi_backoff(&mp->cond, &mp->lock, last, &round, mp->poll_max_ns);
		pthread_mutex_unlock(&mp->lock);
	}
	free(acks);
}

void *exe__mpi_progress_main(void *arg)
{
	struct exe__mpi_pool *mp = arg;
	int64_t last = exe_now_ns();
	unsigned round = 0;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	prctl(PR_SET_NAME, mp->name);
	/* Back-off sleeps are microseconds: the default 50 us slack would
	 * make the shortest of them ten times longer. */
	prctl(PR_SET_TIMERSLACK, 1000UL);
	for (;;) {
		bool did = do_cancels(mp);

		did |= dispatch(mp);
		did |= receive(mp, NULL);
		check_liveness(mp, NULL);
		did |= destroy_grace(mp);
		pthread_mutex_lock(&mp->lock);
		if (mp->shutdown && mp->queued == 0 &&
		    !atomic_load_explicit(&mp->running, memory_order_relaxed) && !mp->ncancels) {
			pthread_mutex_unlock(&mp->lock);
			break;
		}
		if (did) {
			pthread_mutex_unlock(&mp->lock);
			last = exe_now_ns();
			round = 0;
			continue;
		}
		mp->sleeping = true;
		/* Nothing can arrive: sleep until told, once the hot phase after
		 * the last message is over (a program that submits again right
		 * after a result then finds the thread awake). */
		if (!atomic_load_explicit(&mp->running, memory_order_relaxed) && !mp->ncancels &&
		    (mp->queued == 0 || !atomic_load_explicit(&mp->live_ranks, memory_order_relaxed)) &&
		    exe_now_ns() - last >= EXE__MPI_SPIN_NS)
			pthread_cond_wait(&mp->cond, &mp->lock);
		else
			exe__mpi_backoff(&mp->cond, &mp->lock, last, &round, mp->poll_max_ns);
		mp->sleeping = false;
		pthread_mutex_unlock(&mp->lock);
	}
	say_bye(mp);
	pthread_mutex_lock(&mp->lock);
	mp->drained = true;
	pthread_cond_broadcast(&mp->done_cond);
	pthread_mutex_unlock(&mp->lock);
	return NULL;
}
