/*
 * remote_util.h - what remote_cmd_server and remote_cmd_client share beyond
 * the frame format: frame I/O over a blocking socket, and running a shell
 * command in a child with a time limit while its output streams out.
 */
#ifndef REMOTE_UTIL_H
#define REMOTE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "remote_proto.h"

/* Bytes received but not yet parsed; one per connection. */
struct rp_reader {
	char *buf;
	size_t len, cap;
	size_t last; /* length of the frame handed out last, still at the front */
};

/* rp_send - encode and send one frame, all of it (MSG_NOSIGNAL).
 * Return: 0; -EINVAL; -ENOMEM; -errno of send (-EAGAIN: send timeout). */
int rp_send(int fd, const struct rp_header *h, const void *body, size_t len);

/*
 * rp_recv - receive the next frame into @r and parse it (rp_parse()); *@body
 * points into @r's buffer and stays valid until the next call. The whole
 * frame must arrive by @deadline_ns (CLOCK_MONOTONIC, exe_now_ns(); < 0:
 * only the socket's own receive timeout bounds each recv()).
 * Return: 1 a frame; 0 the peer closed between frames; -EMSGSIZE, -EBADMSG
 * (with *@why); -EPIPE closed in the middle of a frame; -ETIMEDOUT the
 * deadline passed; -EAGAIN the socket's receive timeout passed; -errno of
 * recv; -ENOMEM.
 */
int rp_recv(int fd, struct rp_reader *r, size_t max_body, int64_t deadline_ns, struct rp_header *h,
            const void **body, const char **why);

void rp_reader_free(struct rp_reader *r);

/* Called with each piece of output as it arrives; non-zero stops the
 * command (it is killed). */
typedef int cmd_output_fn(enum rp_stream stream, const void *data, size_t len, void *arg);

struct cmd_result {
	int exit_status; /* exit status, or -signo when killed by a signal */
	bool timed_out;
	bool stopped; /* the output callback asked to stop */
};

/*
 * cmd_run - run `/bin/sh -c @cmd` (stdin from /dev/null) under a supervisor
 * process that contains everything it starts (remote_util.c says how), and
 * pass its stdout and stderr to @fn as they come. The command is over when
 * its shell exits: whatever it left running (`sleep 100 &`, a setsid
 * daemon) is killed then. After @timeout_ns - also when the command closed
 * its stdout and stderr early - every process it started is killed and
 * ->timed_out set; likewise when @fn asks to stop. If the calling thread
 * dies, so does everything the command started.
 * Return: 0 with *@res; a negative code when the child could not start.
 */
int cmd_run(const char *cmd, int64_t timeout_ns, cmd_output_fn *fn, void *arg, struct cmd_result *res);

/* cmd_set_no_namespace - true: contain commands with the subreaper only,
 * never a PID namespace (to test that fallback, or where namespaces are
 * unwelcome). Call before the first cmd_run(). */
void cmd_set_no_namespace(bool off);

#endif /* REMOTE_UTIL_H */
