/*
 * remote_cmd_client - the client of remote_cmd_server: sends each command
 * given on the command line as an "exec" frame and prints the stdout and
 * stderr frames that stream back, then the exit status.
 *
 * --verify also runs each command here, locally, and checks that the
 * remote stdout, stderr and exit status are the same bytes.
 * --malformed sends a series of broken frames (absurd lengths, not JSON,
 * a wrong token, a body that does not match its hash, a frame cut short,
 * ...), each on a fresh connection, and checks that each one is answered by
 * an error frame or a closed connection, never by silence; then checks that
 * the server still runs a command.
 *
 * Run: remote_cmd_client --token-file FILE (or REMOTE_CMD_TOKEN=secret in the
 *      environment) [--port 8081] [--host 127.0.0.1] [--verify]
 *      [--malformed] [--quiet] [--timeout-ms N] 'uname -a' 'ls /nonexistent' ...
 * The token is never an argument: `ps` would show it to every user.
 * Exits non-zero when a command could not be run remotely, a verification
 * failed, or a malformed frame went unanswered.
 */
#include <executor.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remote_util.h"

static struct sockaddr_in server;
static char token[RP_TOKEN_MAX + 1];
static long timeout_ms;
static int quiet;

struct buf {
	char *data;
	size_t len;
};

static int buf_add(struct buf *b, const void *data, size_t len)
{
	char *n = realloc(b->data, b->len + len + 1);

	if (!n)
		return -1;
	memcpy(n + b->len, data, len);
	b->data = n;
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

struct outcome {
	struct buf out, err;
	int exit_status;
	bool timed_out;
};

static void outcome_free(struct outcome *o)
{
	free(o->out.data);
	free(o->err.data);
	*o = (struct outcome){0};
}

static int dial(void)
{
	struct timeval tv = {.tv_sec = 10};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	/* Never wait forever on a silent server. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&server, sizeof(server))) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

/* Run one command on the server over @fd. Return 0, or a negative code with
 * a message printed. */
static int remote_run(int fd, struct rp_reader *rd, uint64_t id, const char *cmd, struct outcome *o)
{
	struct rp_header h = {.type = RP_EXEC, .id = id, .timeout_ms = (uint64_t)timeout_ms};
	const void *body;
	const char *why = "";
	int rc;

	snprintf(h.token, sizeof(h.token), "%s", token);
	rc = rp_send(fd, &h, cmd, strlen(cmd));
	while (rc == 0) {
		rc = rp_recv(fd, rd, RP_MAX_BODY, -1, &h, &body, &why);
		if (rc <= 0) {
			fprintf(stderr, "remote_cmd_client: %s\n",
			        rc == 0                             ? "server closed the connection"
			        : rc == -EBADMSG || rc == -EMSGSIZE ? why
			                                            : exe_strerror(rc));
			return rc ? rc : -EPIPE;
		}
		if (h.id != id) {
			fprintf(stderr, "remote_cmd_client: answer to request %lu, not %lu\n",
			        (unsigned long)h.id, (unsigned long)id);
			return -EBADMSG;
		}
		switch (h.type) {
		case RP_OUT:
			if (!quiet)
				fwrite(body, 1, h.total_size, h.stream == RP_STDERR ? stderr : stdout);
			rc = buf_add(h.stream == RP_STDERR ? &o->err : &o->out, body, h.total_size);
			break;
		case RP_EXIT:
			if (h.stdout_size != o->out.len || h.stderr_size != o->err.len) {
				fprintf(stderr, "remote_cmd_client: sizes do not add up\n");
				return -EBADMSG;
			}
			o->exit_status = h.exit_status;
			o->timed_out = h.timed_out;
			return 0;
		case RP_ERROR:
			fprintf(stderr, "remote_cmd_client: server says: %s\n", h.error);
			return -EPROTO;
		default:
			fprintf(stderr, "remote_cmd_client: unexpected \"%s\" frame\n", rp_type_name(h.type));
			return -EBADMSG;
		}
	}
	return rc;
}

static int collect(enum rp_stream stream, const void *data, size_t len, void *arg)
{
	struct outcome *o = arg;

	return buf_add(stream == RP_STDERR ? &o->err : &o->out, data, len);
}

static int local_run(const char *cmd, struct outcome *o)
{
	struct cmd_result res;
	int rc = cmd_run(cmd, (timeout_ms ? timeout_ms : 5000) * EXE_NS_PER_MS, collect, o, &res);

	o->exit_status = res.exit_status;
	o->timed_out = res.timed_out;
	return rc;
}

/* ---- malformed frames ---- */

struct bad_frame {
	const char *what;
	char *bytes;
	size_t len;
	bool cut; /* send then shut down our side: the frame ends early */
};

static void raw_frame(struct bad_frame *b, const char *what, uint32_t hlen, const char *header,
                      const char *body)
{
	size_t hl = strlen(header), bl = strlen(body);

	b->what = what;
	b->len = 4 + hl + bl;
	b->bytes = malloc(b->len);
	if (!b->bytes)
		exit(1);
	b->bytes[0] = (char)(hlen >> 24);
	b->bytes[1] = (char)(hlen >> 16);
	b->bytes[2] = (char)(hlen >> 8);
	b->bytes[3] = (char)hlen;
	memcpy(b->bytes + 4, header, hl);
	memcpy(b->bytes + 4 + hl, body, bl);
}

static void encoded_frame(struct bad_frame *b, const char *what, const struct rp_header *h, const char *body,
                          size_t len)
{
	b->what = what;
	if (rp_encode(h, body, len, &b->bytes, &b->len))
		exit(1);
}

/* Send one broken frame on a new connection; 0 when the server answered
 * with an error frame or closed the connection. */
static int try_bad_frame(const struct bad_frame *b)
{
	struct rp_reader rd = {0};
	struct rp_header h;
	const void *body;
	const char *why = "";
	const char *verdict;
	int fd = dial(), rc;

	if (fd < 0) {
		printf("  %-28s cannot connect: %s\n", b->what, exe_strerror(fd));
		return -1;
	}
	send(fd, b->bytes, b->len, MSG_NOSIGNAL);
	if (b->cut)
		shutdown(fd, SHUT_WR);
	rc = rp_recv(fd, &rd, RP_MAX_BODY, -1, &h, &body, &why);
	if (rc == 1 && h.type == RP_ERROR)
		verdict = h.error;
	else if (rc == 0 || rc == -ECONNRESET || rc == -EPIPE)
		verdict = "(connection closed)";
	else
		verdict = NULL;
	printf("  %-28s -> %s\n", b->what,
	       verdict         ? verdict
	       : rc == -EAGAIN ? "NO ANSWER (hang)"
	       : rc == 1       ? "NOT AN ERROR FRAME"
	                       : exe_strerror(rc));
	rp_reader_free(&rd);
	close(fd);
	return verdict ? 0 : -1;
}

static int malformed(void)
{
	struct bad_frame bf[12] = {0};
	struct rp_header h = {.type = RP_EXEC, .id = 7};
	char big[160];
	int n = 0, failed = 0;

	snprintf(h.token, sizeof(h.token), "%s", token);
	raw_frame(&bf[n++], "header length 4 GiB", 0xffffffffu, "{}", "");
	raw_frame(&bf[n++], "header length 0", 0, "", "");
	raw_frame(&bf[n++], "header not JSON", 11, "not json!!!", "");
	raw_frame(&bf[n++], "header a JSON array", 7, "[1,2,3]", "");
	snprintf(big, sizeof(big),
	         "{\"type\":\"exec\",\"id\":-1,\"total_size\":0,"
	         "\"hash\":\"cbf29ce484222325\",\"token\":\"x\"}");
	raw_frame(&bf[n++], "negative id", (uint32_t)strlen(big), big, "");
	snprintf(big, sizeof(big),
	         "{\"type\":\"exec\",\"id\":1,\"total_size\":1000000000,"
	         "\"hash\":\"0000000000000000\",\"token\":\"x\"}");
	raw_frame(&bf[n++], "body of 1 GB announced", (uint32_t)strlen(big), big, "");
	encoded_frame(&bf[n], "bad hash", &h, "echo hi", 7);
	bf[n].bytes[bf[n].len - 1] ^= 1; /* the body no longer matches */
	n++;
	snprintf(h.token, sizeof(h.token), "not-the-token");
	encoded_frame(&bf[n++], "wrong token", &h, "echo hi", 7);
	snprintf(h.token, sizeof(h.token), "%s", token);
	encoded_frame(&bf[n++], "NUL inside the command", &h, "echo\0hi", 7);
	h.type = RP_EXIT;
	encoded_frame(&bf[n++], "an exit frame to the server", &h, NULL, 0);
	h.type = RP_EXEC;
	encoded_frame(&bf[n], "frame cut short", &h, "echo hi", 7);
	bf[n].len = 6;
	bf[n++].cut = true;

	printf("malformed frames, each on a new connection:\n");
	for (int i = 0; i < n; i++) {
		failed |= try_bad_frame(&bf[i]) != 0;
		free(bf[i].bytes);
	}
	return failed ? -1 : 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
	        "usage: %s [--token-file FILE] [--port N] [--host ADDR] [--verify] [--malformed] "
	        "[--quiet] [--timeout-ms N] COMMAND...\n"
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
	    {"verify", no_argument, NULL, 'v'},
	    {"malformed", no_argument, NULL, 'm'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *host = "127.0.0.1";
	struct rp_reader rd = {0};
	long port = 8081;
	int c, fd, verify = 0, bad_frames = 0, failed = 0;

	const char *env = getenv("REMOTE_CMD_TOKEN"), *token_file = NULL;

	while ((c = getopt_long(argc, argv, "p:H:T:t:vmqh", longopts, NULL)) != -1) {
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
		case 't': timeout_ms = atol(optarg); break;
		case 'v': verify = 1; break;
		case 'm': bad_frames = 1; break;
		case 'q': quiet = 1; break;
		default: usage(argv[0]);
		}
	}
	server.sin_family = AF_INET;
	if (token_file) {
		FILE *f = fopen(token_file, "re");
		char line[RP_TOKEN_MAX + 2];

		if (!f || !fgets(line, sizeof(line), f)) {
			fprintf(stderr, "remote_cmd_client: %s: %s\n", token_file,
			        f ? "empty" : strerror(errno));
			return 2;
		}
		fclose(f);
		line[strcspn(line, "\r\n")] = '\0';
		if (strlen(line) > RP_TOKEN_MAX)
			usage(argv[0]);
		memcpy(token, line, strlen(line) + 1);
	} else if (env && strlen(env) <= RP_TOKEN_MAX) {
		memcpy(token, env, strlen(env) + 1);
	}
	if (!*token || strlen(token) > RP_TOKEN_MAX || port < 1 || port > 65535 || timeout_ms < 0 ||
	    inet_pton(AF_INET, host, &server.sin_addr) != 1)
		usage(argv[0]);
	server.sin_port = htons((uint16_t)port);
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (bad_frames) {
		failed |= malformed() != 0;
		printf("the server is still serving?\n");
		if (optind == argc)
			argv[--optind] = "echo yes"; /* at least one command follows */
	}
	if (optind == argc)
		return 0;
	fd = dial();
	if (fd < 0) {
		fprintf(stderr, "remote_cmd_client: connect: %s\n", exe_strerror(fd));
		return 1;
	}
	/* All commands over one connection, like the original's loop. */
	for (int i = optind; i < argc; i++) {
		struct outcome ro = {0}, lo = {0};
		int64_t t0 = exe_now_ns();

		if (!quiet)
			printf(">>> %s\n", argv[i]);
		if (remote_run(fd, &rd, (uint64_t)i, argv[i], &ro)) {
			failed = 1;
			outcome_free(&ro);
			break;
		}
		printf("[%s: exit status %d%s, %zu bytes stdout, %zu bytes stderr, %.1f ms]\n", argv[i],
		       ro.exit_status, ro.timed_out ? " (timed out)" : "", ro.out.len, ro.err.len,
		       (double)(exe_now_ns() - t0) / 1e6);
		if (verify && !ro.timed_out) {
			bool same;

			if (local_run(argv[i], &lo) != 0) {
				printf("  cannot run it locally\n");
				failed = 1;
			}
			same = ro.exit_status == lo.exit_status && ro.out.len == lo.out.len &&
			       ro.err.len == lo.err.len &&
			       (!ro.out.len || memcmp(ro.out.data, lo.out.data, ro.out.len) == 0) &&
			       (!ro.err.len || memcmp(ro.err.data, lo.err.data, ro.err.len) == 0);
			printf("  verify: %s\n", same ? "same stdout, stderr and status as a local run"
			                              : "DIFFERS from a local run");
			failed |= !same;
		}
		outcome_free(&ro);
		outcome_free(&lo);
	}
	rp_reader_free(&rd);
	close(fd);
	printf("%s\n", failed ? "FAILED" : "OK");
	return failed;
}
