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
 *  - every request must carry the shared token (--token or the
 *    REMOTE_CMD_TOKEN environment variable; there is no default);
 *  - header and body sizes are bounded (4 KiB header, --max-cmd bytes of
 *    command), output is capped (--max-output), and every command is killed
 *    after --timeout-ms (a client may ask for less, not more);
 *  - a malformed frame (bad length, bad JSON, bad hash, wrong token, a frame
 *    cut short) gets an "error" frame and the connection is closed; an idle
 *    or stalled client is dropped after --idle-s: never a crash or a hang;
 *  - at most --max-clients connections are served at once; the next ones
 *    get an "error" frame ("busy").
 * It runs commands of whoever knows the token with this user's rights: keep
 * it on loopback, or behind something that authenticates properly.
 *
 * Run: REMOTE_CMD_TOKEN=secret remote_cmd_server [--port 8081]
 *      [--host 127.0.0.1] [--timeout-ms 5000] [--max-clients 8]
 *      [--max-output 1048576] [--max-cmd 4096] [--idle-s 10]
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
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remote_util.h"

#define MAX_CLIENTS 256

static struct config {
	const char *token;
	size_t token_len;
	long timeout_ms, max_clients, max_output, max_cmd, idle_s;
} cfg = {.timeout_ms = 5000, .max_clients = 8, .max_output = 1 << 20, .max_cmd = 4096, .idle_s = 10};

/* Connections being served, so a stop can shut them down at once. */
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static int conns[MAX_CLIENTS];
static long served, refused, commands;
static bool stopping; /* under conns_lock */

/* A slot, -1 when all are taken, -2 when the server is stopping. */
static int conn_register(int fd)
{
	int slot = -1;

	pthread_mutex_lock(&conns_lock);
	if (stopping)
		slot = -2;
	for (int i = 0; i < cfg.max_clients && slot == -1; i++) {
		if (conns[i] < 0) {
			conns[i] = fd;
			slot = i;
			break;
		}
	}
	pthread_mutex_unlock(&conns_lock);
	return slot;
}

static void conn_unregister(int slot)
{
	pthread_mutex_lock(&conns_lock);
	conns[slot] = -1;
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
	int slot = conn_register(fd), rc;

	*result = NULL;
	if (slot < 0) {
		send_error(fd, 0, slot == -1 ? "server busy" : "server stopping", "");
		close(fd);
		return 0;
	}
	for (;;) {
		rc = rp_recv(fd, &rd, (size_t)cfg.max_cmd, &h, &body, &why);
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
		if (h.total_size == 0 || memchr(body, '\0', h.total_size)) {
			send_error(fd, h.id, "the command must be non-empty text", "");
			break;
		}
		run_command(fd, &h, body);
	}
	rp_reader_free(&rd);
	conn_unregister(slot);
	close(fd);
	return 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
	        "usage: %s --token T [--port N] [--host ADDR] [--timeout-ms N] "
	        "[--max-clients N] [--max-output N] [--max-cmd N] [--idle-s N]\n"
	        "       (or REMOTE_CMD_TOKEN=T in the environment)\n",
	        argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"host", required_argument, NULL, 'H'},
	    {"token", required_argument, NULL, 'T'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"max-clients", required_argument, NULL, 'c'},
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
	int c, rc, lfd, sfd, one = 1;

	cfg.token = getenv("REMOTE_CMD_TOKEN");
	while ((c = getopt_long(argc, argv, "p:H:T:t:c:o:m:i:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': port = atol(optarg); break;
		case 'H': host = optarg; break;
		case 'T': cfg.token = optarg; break;
		case 't': cfg.timeout_ms = atol(optarg); break;
		case 'c': cfg.max_clients = atol(optarg); break;
		case 'o': cfg.max_output = atol(optarg); break;
		case 'm': cfg.max_cmd = atol(optarg); break;
		case 'i': cfg.idle_s = atol(optarg); break;
		default: usage(argv[0]);
		}
	}
	if (!cfg.token || !*cfg.token || strlen(cfg.token) > RP_TOKEN_MAX) {
		fprintf(stderr, "remote_cmd_server: a token (1..%u bytes) is required\n", RP_TOKEN_MAX);
		usage(argv[0]);
	}
	cfg.token_len = strlen(cfg.token);
	if (port < 0 || port > 65535 || cfg.timeout_ms < 1 || cfg.max_clients < 1 ||
	    cfg.max_clients > MAX_CLIENTS || cfg.max_output < 1 || cfg.max_cmd < 1 ||
	    cfg.max_cmd > (long)RP_MAX_BODY || cfg.idle_s < 1 ||
	    inet_pton(AF_INET, host, &addr.sin_addr) != 1)
		usage(argv[0]);
	addr.sin_port = htons((uint16_t)port);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < MAX_CLIENTS; i++)
		conns[i] = -1;

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

	/* One more worker than slots: the extra one answers "busy". A bounded
	 * queue behind them refuses floods instead of buffering them. */
	rc = exe_thread_pool_create(&pool, &(struct exe_pool_opts){.workers = (unsigned)cfg.max_clients + 1,
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
		if (fd < 0)
			continue;
		/* A stalled peer (half a frame, or a full receive window) fails
		 * the blocking call after idle_s instead of holding a worker. */
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
		if (conns[i] >= 0)
			shutdown(conns[i], SHUT_RDWR);
	pthread_mutex_unlock(&conns_lock);
	exe_pool_destroy(pool);
	close(sfd);
	printf("remote_cmd_server: %ld connections served, %ld refused, %ld commands run\n", served, refused,
	       __atomic_load_n(&commands, __ATOMIC_RELAXED));
	return 0;
}
