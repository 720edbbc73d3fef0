/*
 * remote_proto.h - the fixed-length-header protocol of remote_cmd_server and
 * remote_cmd_client, after the teaching text's "remote command execution".
 *
 * TCP is a byte stream: it keeps no message boundaries (the text's "sticky
 * packets"). Each message is therefore framed as
 *
 *	u32 big-endian   header length H   (1 .. RP_MAX_HEADER)
 *	H bytes          the header: one JSON object, UTF-8
 *	total_size bytes the body
 *
 * and the header says how long the body is. Header fields:
 *	"type"        "exec" (client -> server: run the body as a shell command),
 *	              "out" (a chunk of the command's output), "exit" (the
 *	              command ended), "error" (the request was refused)
 *	"id"          the request's number, echoed in every answer
 *	"total_size"  body length in bytes
 *	"hash"        FNV-1a 64 of the body, 16 lowercase hex digits
 *	exec:  "token" (the shared secret), "timeout_ms" (optional)
 *	out:   "stream": "stdout" | "stderr"
 *	exit:  "exit_status" (the status, or -signo when killed), "timed_out",
 *	       "stdout_size", "stderr_size" (the bytes streamed before it)
 *	error: "error" (a message)
 * Unknown fields are ignored; a missing or mistyped required field, a body
 * that does not match its hash, or a size over the limits is an error.
 *
 * Pure functions over byte buffers, no I/O, so they can be unit-tested and
 * fuzzed on their own.
 */
#ifndef REMOTE_PROTO_H
#define REMOTE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RP_MAX_HEADER 4096u    /* header bytes, both directions */
#define RP_MAX_BODY (1u << 20) /* body bytes of any frame */
#define RP_TOKEN_MAX 128u
#define RP_ERROR_MAX 256u

enum rp_type {
	RP_EXEC = 1,
	RP_OUT = 2,
	RP_EXIT = 3,
	RP_ERROR = 4,
};

enum rp_stream {
	RP_STDOUT = 1,
	RP_STDERR = 2,
};

struct rp_header {
	enum rp_type type;
	uint64_t id;
	uint64_t total_size;
	uint64_t hash;
	/* exec */
	char token[RP_TOKEN_MAX + 1];
	uint64_t timeout_ms; /* 0: the server's default */
	/* out */
	enum rp_stream stream;
	/* exit */
	int exit_status;
	bool timed_out;
	uint64_t stdout_size, stderr_size;
	/* error */
	char error[RP_ERROR_MAX + 1];
};

/* FNV-1a, 64 bits: a cheap integrity check of a body, not a MAC. */
uint64_t rp_hash(const void *data, size_t len);

/*
 * rp_encode - build a whole frame for @h and @body (@len bytes; NULL when 0):
 * total_size and hash are computed here, the other fields taken from @h.
 * *@out is malloc()ed, *@out_len its length.
 * Return: 0; -EINVAL (bad type, body or header over the limits); -ENOMEM.
 */
int rp_encode(const struct rp_header *h, const void *body, size_t len, char **out, size_t *out_len);

/*
 * rp_decode_header - parse and validate the JSON header in @json (@len
 * bytes, not NUL-terminated) into @h.
 * Return: 0; -EBADMSG (not a valid header: *@why says why, static text).
 */
int rp_decode_header(const void *json, size_t len, struct rp_header *h, const char **why);

/*
 * rp_parse - look for one complete frame at the start of @buf (@len bytes
 * received so far). @max_body (<= RP_MAX_BODY) bounds the body.
 * Return: 0 need more bytes; > 0 the frame's whole length, with @h filled
 * in and *@body pointing at the body inside @buf (its hash checked);
 * -EMSGSIZE header or body length over the limits; -EBADMSG a malformed
 * header or a body that does not match its hash. On error *@why (may be
 * NULL) says why.
 */
long rp_parse(const void *buf, size_t len, size_t max_body, struct rp_header *h, const void **body,
              const char **why);

/* rp_type_name - "exec", "out", "exit", "error", or "?". */
const char *rp_type_name(enum rp_type t);

#endif /* REMOTE_PROTO_H */
