/*
 * proc_collector.h - the collector thread's worker records, as its two
 * files see them: proc_collector.c (spawning, deaths, deadlines, the loop)
 * and proc_results.c (reading what workers report: their cells and their
 * channels). Everything here is the collector thread's alone.
 */
#ifndef EXE_PROC_COLLECTOR_H
#define EXE_PROC_COLLECTOR_H

#include "proc_internal.h"

enum wstate { W_SPAWNING, W_STARTING, W_READY, W_RETIRING };

struct exe__pworker {
	struct exe__pworker *next; /* pp->workers */
	uint64_t seq;
	unsigned slot;
	enum wstate state;
	bool in_slot; /* pp->slots[slot] == this */
	bool chan_open;
	bool counted;     /* in live_workers */
	bool stop_sent;   /* SIGTERM or SIGKILL sent */
	bool ready_early; /* READY came before the server's SPAWNED */
	pid_t pid;
	int chan, pidfd;
	int exit_code, exit_status;
	struct exe__ptask *head, *tail; /* attached, unfinished */
	struct exe__ptask *cur;         /* ... the one its claim word names, if unfinished */
	unsigned ninflight, dispatched; /* dispatched: claims seen */
	unsigned cell;                  /* its cell (pp->cells) */
	uint32_t seen_posted;           /* results read from the cell */
	uint64_t seen_claim;            /* the last claim word handled */
	uint64_t last_done;             /* the id of the last task of it finished */
	int64_t kill_at;                /* SIGKILL after SIGTERM; 0: none */
	int stop_sig;                   /* the signal stop_sent sent (again once its pidfd comes) */
	int fail_code;                  /* why we stopped it; 0: we did not */
	uint64_t fail_id;               /* the task that reason is for; 0: all */
	char *fail_msg;
	struct exe__rx rx;
};

/* proc_collector.c */
char *exe__proc_fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
/* Stop a worker on purpose (@sig): its task @id (0: whatever it runs) fails
 * with @code and @msg (owned) when it is reaped. */
void exe__proc_stop_worker(struct exe__proc_pool *pp, struct exe__pworker *w, int code, uint64_t id,
                           char *msg, int sig, int64_t now);
/* The worker broke the protocol: killed, its channel closed. */
void exe__proc_bad_frame(struct exe__proc_pool *pp, struct exe__pworker *w, const char *why, int64_t now);
/* Let a worker exit once idle; @replace: start its slot's successor now. */
void exe__proc_retire(struct exe__proc_pool *pp, struct exe__pworker *w, bool replace);
/* Give up a worker's slot; @replace: start its successor. */
void exe__proc_vacate(struct exe__proc_pool *pp, struct exe__pworker *w, bool replace);
void exe__proc_chan_close(struct exe__proc_pool *pp, struct exe__pworker *w);

/* proc_results.c */
/* Take a finished (or failed) task off its worker's in-flight list. */
void exe__proc_unlink_inflight(struct exe__pworker *w, struct exe__ptask *t);
/* Read @w's cell: new results in order, then its latest claim. Return true
 * when there was news. */
bool exe__proc_poll_cell(struct exe__proc_pool *pp, struct exe__pworker *w, int64_t now);
bool exe__proc_poll_cells(struct exe__proc_pool *pp, int64_t now);
/* Whether any cell has news, without touching it. */
bool exe__proc_cells_dirty(struct exe__proc_pool *pp);
/* Read what @w's channel holds and handle every frame; @drain: to the end
 * (a dead worker). */
void exe__proc_read_worker(struct exe__proc_pool *pp, struct exe__pworker *w, int64_t now, bool drain);

#endif
