/*
 * remote_cmd_server - the teaching text's "remote command execution" server,
 * made safe to run.
 *
 * A client sends a frame (remote_proto.h: 4-byte big-endian header length, a
 * JSON header, a body) whose body is a shell command. Each connection is
 * served by a task of a thread pool; each command runs in a child process
 * (exe_process_start() + exec of /bin/sh -c) in its own process group, and
 * its stdout and stderr stream back as "out" frames as they are produced,
 * then an "exit" frame with the status and the sizes.
 *
 * What the original lacks, and this adds:
 *  - it binds 127.0.0.1 unless --host says otherwise;
 *  - every request must carry the shared token, read from a file
 *    (--token-file) or the REMOTE_CMD_TOKEN environment variable - never
 *    from the command line, where `ps` shows it to every user; there is no
 *    default, and the variable is removed before any command runs;
 *  - header and body sizes are bounded (4 KiB header, --max-cmd bytes of
 *    command), output is capped (--max-output), and every command is killed
 *    after --timeout-ms (a client may ask for less, not more);
 *  - a malformed frame (bad length, bad JSON, bad hash, wrong token, a frame
 *    cut short) gets an "error" frame and the connection is closed: never a
 *    crash or a hang;
 *  - time is bounded per frame, not per recv(): a new connection's first
 *    frame (and the token in it) must be complete --auth-ms after connect,
 *    each later frame --idle-s after the previous answer, so a client that
 *    drips a byte now and then is dropped like a silent one;
 *  - connections that have not shown the token yet have slots of their own
 *    (--max-pending); when those are full, a new connection evicts the
 *    oldest unauthenticated one. So slow or silent strangers can neither
 *    take the --max-clients slots of authenticated clients nor keep a new
 *    client from authenticating. Past --max-clients, "server busy";
 *  - every process a command starts ends with the command, on timeout, or
 *    when the server dies (remote_util.c: a subreaper supervisor, and a PID
 *    namespace where allowed; --no-namespace uses the subreaper only);
 *  - accept() failing for want of descriptors or memory backs off instead
 *    of spinning.
 * It runs commands of whoever knows the token with this user's rights: keep
 * it on loopback, or behind something that authenticates properly.
 *
 * Run: remote_cmd_server --token-file FILE (or REMOTE_CMD_TOKEN=secret in the
 *      environment) [--port 8081] [--host 127.0.0.1] [--timeout-ms 5000]
 *      [--max-clients 8] [--max-pending 4] [--auth-ms 3000]
 *      [--max-output 1048576] [--max-cmd 4096] [--idle-s 10] [--no-namespace]
 * Stop with Ctrl-C or SIGTERM.
 */
#include <executor.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remote_util.h"

#define MAX_CLIENTS 256
#define MAX_PENDING 64

static struct config {
	char token[RP_TOKEN_MAX + 2];
	size_t token_len;
	long timeout_ms, max_clients, max_pending, auth_ms, max_output, max_cmd, idle_s;
} cfg = {.timeout_ms = 5000,
         .max_clients = 8,
         .max_pending = 4,
         .auth_ms = 3000,
         .max_output = 1 << 20,
         .max_cmd = 4096,
         .idle_s = 10};

/*
 * Connections being served, so a stop can shut them down at once: the ones
 * that have not shown the token yet (pending) and the authenticated ones
 * (conns) have separate slots, so strangers can never fill the slots of
 * clients that know the token. A slot holds the connection's fd, which
 * stays open (so unique) until its task unregisters.
 */
struct slot {
	int fd;
	int64_t since; /* pending: when it connected */
};
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot conns[MAX_CLIENTS], pending[MAX_PENDING];
static long served, refused, evicted, commands;
static bool stopping; /* under conns_lock */

/* Take a free slot of @tab (@n long) for @fd. With @evict, when none is
 * free take the oldest one and shut its connection down: its task then
 * ends and finds its slot no longer holds its fd.
 * Return: the slot, -1 all taken, -2 the server is stopping. */
static int slot_take(struct slot *tab, long n, int fd, bool evict)
{
	int slot = -1, oldest = -1;

	pthread_mutex_lock(&conns_lock);
	if (stopping) {
		pthread_mutex_unlock(&conns_lock);
		return -2;
	}
	for (int i = 0; i < n; i++) {
		if (tab[i].fd < 0) {
			slot = i;
			break;
		}
		if (oldest < 0 || tab[i].since < tab[oldest].since)
			oldest = i;
	}
	if (slot < 0 && evict && oldest >= 0) {
		shutdown(tab[oldest].fd, SHUT_RDWR);
		evicted++;
		slot = oldest;
	}
	if (slot >= 0)
		tab[slot] = (struct slot){.fd = fd, .since = exe_now_ns()};
	pthread_mutex_unlock(&conns_lock);
	return slot;
}

static void slot_drop(struct slot *tab, int slot, int fd)
{
	pthread_mutex_lock(&conns_lock);
	if (slot >= 0 && tab[slot].fd == fd)
		tab[slot].fd = -1;
	pthread_mutex_unlock(&conns_lock);
}

/* Compare without an early exit, so the time taken does not tell an
 * attacker how many leading bytes of a guess were right. */
static bool token_ok(const char *t)
{
	size_t n = strlen(t);
	unsigned char diff = n != cfg.token_len;

	for (size_t i = 0; i < cfg.token_len; i++)
		diff |= (unsigned char)cfg.token[i] ^ (unsigned char)(i < n ? t[i] : 0);
	return diff == 0;
}

static void send_error(int fd, uint64_t id, const char *what, const char *detail)
{
	struct rp_header h = {.type = RP_ERROR, .id = id};

	snprintf(h.error, sizeof(h.error), "%s%s", what, detail);
	rp_send(fd, &h, NULL, 0);
}

struct stream_state {
	int fd;
	uint64_t id;
	uint64_t sizes[3]; /* by enum rp_stream */
	bool send_failed, too_much;
};

/* Each piece of output becomes an "out" frame at once: the client sees a
 * long command's output while it runs. */
static int stream_out(enum rp_stream stream, const void *data, size_t len, void *arg)
{
	struct stream_state *st = arg;
	struct rp_header h = {.type = RP_OUT, .id = st->id, .stream = stream};

	if (st->sizes[RP_STDOUT] + st->sizes[RP_STDERR] + len > (uint64_t)cfg.max_output) {
		st->too_much = true;
		return 1;
	}
	if (rp_send(st->fd, &h, data, len)) {
		st->send_failed = true;
		return 1;
	}
	st->sizes[stream] += len;
	return 0;
}

static void run_command(int fd, const struct rp_header *req, const void *body)
{
	struct stream_state st = {.fd = fd, .id = req->id};
	struct rp_header h = {.type = RP_EXIT, .id = req->id};
	int64_t timeout = cfg.timeout_ms;
	struct cmd_result res;
	char *cmd;
	int rc;

	if (req->timeout_ms && (int64_t)req->timeout_ms < timeout)
		timeout = (int64_t)req->timeout_ms;
	cmd = strndup(body, req->total_size);
	if (!cmd) {
		send_error(fd, req->id, "out of memory", "");
		return;
	}
	__atomic_add_fetch(&commands, 1, __ATOMIC_RELAXED);
	rc = cmd_run(cmd, timeout * EXE_NS_PER_MS, stream_out, &st, &res);
	free(cmd);
	if (rc) {
		send_error(fd, req->id, "cannot start the command: ", exe_strerror(rc));
		return;
	}
	if (st.send_failed)
		return;
	if (st.too_much) {
		send_error(fd, req->id, "output over the limit: command killed", "");
		return;
	}
	h.exit_status = res.exit_status;
	h.timed_out = res.timed_out;
	h.stdout_size = st.sizes[RP_STDOUT];
	h.stderr_size = st.sizes[RP_STDERR];
	rp_send(fd, &h, NULL, 0);
}

/* One connection, on a pool thread: requests one after another, as the
 * original's inner loop. Any protocol violation ends the connection. */
static int serve(void *arg, void **result)
{
	int fd = (int)(intptr_t)arg;
	struct rp_reader rd = {0};
	struct rp_header h;
	const void *body;
	const char *why = "";
	int64_t deadline = exe_now_ns() + cfg.auth_ms * EXE_NS_PER_MS;
	int pslot = slot_take(pending, cfg.max_pending, fd, true), slot = -1, rc;

	*result = NULL;
	if (pslot < 0) {
		send_error(fd, 0, "server stopping", "");
		close(fd);
		return 0;
	}
	for (;;) {
		rc = rp_recv(fd, &rd, (size_t)cfg.max_cmd, deadline, &h, &body, &why);
		if (rc <= 0) {
			/* 0: a clean close. A timeout or a cut frame gets no answer
			 * that could be read; a bad frame is told why. */
			if (rc == -EMSGSIZE || rc == -EBADMSG)
				send_error(fd, 0, "malformed frame: ", why);
			break;
		}
		if (h.type != RP_EXEC) {
			send_error(fd, h.id, "unexpected frame type: ", rp_type_name(h.type));
			break;
		}
		if (!token_ok(h.token)) {
			send_error(fd, h.id, "bad token", "");
			break;
		}
		if (slot < 0) {
			/* Authenticated: from a stranger's slot to a client's. */
			slot = slot_take(conns, cfg.max_clients, fd, false);
			slot_drop(pending, pslot, fd);
			pslot = -1;
			if (slot < 0) {
				send_error(fd, h.id, slot == -1 ? "server busy" : "server stopping", "");
				break;
			}
		}
		if (h.total_size == 0 || memchr(body, '\0', h.total_size)) {
			send_error(fd, h.id, "the command must be non-empty text", "");
			break;
		}
		run_command(fd, &h, body);
		deadline = exe_now_ns() + cfg.idle_s * EXE_NS_PER_S;
	}
	rp_reader_free(&rd);
	slot_drop(pending, pslot, fd);
	slot_drop(conns, slot, fd);
	close(fd);
	return 0;
}

/* The token from a file: its first line, without the newline. Exits on
 * failure. */
static void read_token_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, cfg.token, sizeof(cfg.token) - 1);

	if (n < 0) {
		fprintf(stderr, "remote_cmd_server: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	close(fd);
	cfg.token[n] = '\0';
	cfg.token[strcspn(cfg.token, "\r\n")] = '\0';
}

static void usage(const char *argv0)
{
	fprintf(stderr,
	        "usage: %s [--token-file FILE] [--port N] [--host ADDR] [--timeout-ms N] "
	        "[--max-clients N] [--max-pending N] [--auth-ms N] [--max-output N] [--max-cmd N] "
	        "[--idle-s N] [--no-namespace]\n"
	        "  The token is the first line of FILE, or REMOTE_CMD_TOKEN in the environment;\n"
	        "  never an argument, which `ps` shows to every user.\n",
	        argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"host", required_argument, NULL, 'H'},
	    {"token-file", required_argument, NULL, 'T'},
	    /* Named only to refuse it (and so that getopt does not take
	     * "--token" for an abbreviation of "--token-file"). */
	    {"token", required_argument, NULL, 'X'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"max-clients", required_argument, NULL, 'c'},
	    {"max-pending", required_argument, NULL, 'P'},
	    {"auth-ms", required_argument, NULL, 'a'},
	    {"no-namespace", no_argument, NULL, 'N'},
	    {"max-output", required_argument, NULL, 'o'},
	    {"max-cmd", required_argument, NULL, 'm'},
	    {"idle-s", required_argument, NULL, 'i'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t alen = sizeof(addr);
	const char *host = "127.0.0.1";
	long port = 8081;
	struct exe_pool *pool;
	struct pollfd pfd[2];
	sigset_t mask;
	long accept_errors = 0;
	int c, rc, lfd, sfd, one = 1;

	const char *env = getenv("REMOTE_CMD_TOKEN"), *token_file = NULL;

	while ((c = getopt_long(argc, argv, "p:H:T:t:c:P:a:No:m:i:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': port = atol(optarg); break;
		case 'H': host = optarg; break;
		case 'T': token_file = optarg; break;
		case 'X':
			fprintf(stderr,
			        "%s: --token is refused: `ps` shows a program's arguments to every "
			        "user; use --token-file FILE or REMOTE_CMD_TOKEN\n",
			        argv[0]);
			usage(argv[0]);
			break;
		case 't': cfg.timeout_ms = atol(optarg); break;
		case 'c': cfg.max_clients = atol(optarg); break;
		case 'P': cfg.max_pending = atol(optarg); break;
		case 'a': cfg.auth_ms = atol(optarg); break;
		case 'N': cmd_set_no_namespace(true); break;
		case 'o': cfg.max_output = atol(optarg); break;
		case 'm': cfg.max_cmd = atol(optarg); break;
		case 'i': cfg.idle_s = atol(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (optind < argc)
		usage(argv[0]);
	if (token_file)
		read_token_file(token_file);
	else if (env)
		snprintf(cfg.token, sizeof(cfg.token), "%s", env);
	/* The commands run by this server must not see it. */
	unsetenv("REMOTE_CMD_TOKEN");
	cfg.token_len = strlen(cfg.token);
	if (cfg.token_len < 1 || cfg.token_len > RP_TOKEN_MAX) {
		fprintf(stderr, "remote_cmd_server: a token (1..%u bytes) is required\n", RP_TOKEN_MAX);
		usage(argv[0]);
	}
	if (port < 0 || port > 65535 || cfg.timeout_ms < 1 || cfg.max_clients < 1 ||
	    cfg.max_clients > MAX_CLIENTS || cfg.max_pending < 1 || cfg.max_pending > MAX_PENDING ||
	    cfg.auth_ms < 1 || cfg.max_output < 1 || cfg.max_cmd < 1 || cfg.max_cmd > (long)RP_MAX_BODY ||
	    cfg.idle_s < 1 || inet_pton(AF_INET, host, &addr.sin_addr) != 1)
		usage(argv[0]);
	addr.sin_port = htons((uint16_t)port);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < MAX_CLIENTS; i++)
		conns[i].fd = -1;
	for (int i = 0; i < MAX_PENDING; i++)
		pending[i].fd = -1;

	/* Block the stop signals before any thread exists, so every thread
	 * inherits the mask and they arrive only through the signalfd. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sfd < 0 || lfd < 0)
		return perror("remote_cmd_server: socket"), 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 64) ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen))
		return perror("remote_cmd_server: bind/listen"), 1;

	/* A worker per slot of either kind, and one more that answers
	 * "busy". A bounded queue behind them refuses floods instead of
	 * buffering them. */
	rc = exe_thread_pool_create(
	    &pool, &(struct exe_pool_opts){.workers = (unsigned)(cfg.max_clients + cfg.max_pending + 1),
	                                   .queue_capacity = 16,
	                                   .name = "rcmd",
	                                   .no_caller_runs = true});
	if (rc) {
		fprintf(stderr, "remote_cmd_server: pool: %s\n", exe_strerror(rc));
		return 1;
	}
	printf("remote_cmd_server: listening on %s:%u, %ld clients at most, commands limited to "
	       "%ld ms and %ld bytes of output\n",
	       host, ntohs(addr.sin_port), cfg.max_clients, cfg.timeout_ms, cfg.max_output);

	pfd[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
	pfd[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
	for (;;) {
		struct timeval tv = {.tv_sec = cfg.idle_s};
		int fd;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (!pfd[0].revents)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors or memory: the listening socket
				 * stays readable, so retrying at once would spin. Wait
				 * a little for connections to end, watching only for a
				 * stop. */
				if (accept_errors++ == 0)
					fprintf(stderr, "remote_cmd_server: accept: %s (backing off)\n",
					        strerror(errno));
				if (poll(&pfd[1], 1, 50) > 0)
					break;
			}
			continue;
		}
		/* The socket's timeouts bound each blocking send and recv (a
		 * full receive window on the client's side); rp_recv()'s
		 * deadline bounds a whole frame. */
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		rc = exe_pool_submit(pool, serve, (void *)(intptr_t)fd, NULL);
		if (rc) {
			send_error(fd, 0, "server busy: ", exe_strerror(rc));
			close(fd);
			refused++;
			continue;
		}
		served++;
	}
	printf("remote_cmd_server: stopping\n");
	close(lfd);
	/* Wake every connection blocked in recv(): their tasks then end. */
	pthread_mutex_lock(&conns_lock);
	stopping = true;
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (conns[i].fd >= 0)
			shutdown(conns[i].fd, SHUT_RDWR);
	for (int i = 0; i < MAX_PENDING; i++)
		if (pending[i].fd >= 0)
			shutdown(pending[i].fd, SHUT_RDWR);
	pthread_mutex_unlock(&conns_lock);
	exe_pool_destroy(pool);
	close(sfd);
	printf("remote_cmd_server: %ld connections served, %ld refused, %ld unauthenticated evicted, %ld "
	       "commands run, %ld failed accepts\n",
	       served, refused, evicted, __atomic_load_n(&commands, __ATOMIC_RELAXED), accept_errors);
	return 0;
}
