/*
 * remote_proto.c - encode and decode the frames described in remote_proto.h.
 * The JSON is jansson's: a hand-written parser is where malformed input turns
 * into crashes. Every length is checked before it is used; nothing here
 * trusts the peer.
 */
#include "remote_proto.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t rp_hash(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

const char *rp_type_name(enum rp_type t)
{
	switch (t) {
	case RP_EXEC: return "exec";
	case RP_OUT: return "out";
	case RP_EXIT: return "exit";
	case RP_ERROR: return "error";
	}
	return "?";
}

static int type_from_name(const char *s)
{
	for (int t = RP_EXEC; t <= RP_ERROR; t++)
		if (strcmp(s, rp_type_name((enum rp_type)t)) == 0)
			return t;
	return 0;
}

static json_t *header_json(const struct rp_header *h, size_t len, uint64_t hash)
{
	char hex[17];
	json_t *o;
	int bad = 0;

	snprintf(hex, sizeof(hex), "%016" PRIx64, hash);
	o = json_object();
	if (!o)
		return NULL;
	bad |= json_object_set_new(o, "type", json_string(rp_type_name(h->type)));
	bad |= json_object_set_new(o, "id", json_integer((json_int_t)h->id));
	bad |= json_object_set_new(o, "total_size", json_integer((json_int_t)len));
	bad |= json_object_set_new(o, "hash", json_string(hex));
	switch (h->type) {
	case RP_EXEC:
		bad |= json_object_set_new(o, "token", json_string(h->token));
		if (h->timeout_ms)
			bad |= json_object_set_new(o, "timeout_ms", json_integer((json_int_t)h->timeout_ms));
		break;
	case RP_OUT:
		bad |= json_object_set_new(o, "stream",
		                           json_string(h->stream == RP_STDERR ? "stderr" : "stdout"));
		break;
	case RP_EXIT:
		bad |= json_object_set_new(o, "exit_status", json_integer(h->exit_status));
		bad |= json_object_set_new(o, "timed_out", json_boolean(h->timed_out));
		bad |= json_object_set_new(o, "stdout_size", json_integer((json_int_t)h->stdout_size));
		bad |= json_object_set_new(o, "stderr_size", json_integer((json_int_t)h->stderr_size));
		break;
	case RP_ERROR: bad |= json_object_set_new(o, "error", json_string(h->error)); break;
	}
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int rp_encode(const struct rp_header *h, const void *body, size_t len, char **out, size_t *out_len)
{
	json_t *o;
	char *js, *frame;
	size_t hl;

	if (!h || !out || !out_len || (len && !body) || len > RP_MAX_BODY || h->type < RP_EXEC ||
	    h->type > RP_ERROR || h->id > INT64_MAX)
		return -EINVAL;
	/* Strings must be valid UTF-8 for JSON: json_string() refuses others. */
	o = header_json(h, len, rp_hash(body, len));
	if (!o)
		return -EINVAL;
	js = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!js)
		return -ENOMEM;
	hl = strlen(js);
	if (hl == 0 || hl > RP_MAX_HEADER) {
		free(js);
		return -EINVAL;
	}
	frame = malloc(4 + hl + len);
	if (!frame) {
		free(js);
		return -ENOMEM;
	}
	frame[0] = (char)(hl >> 24);
	frame[1] = (char)(hl >> 16);
	frame[2] = (char)(hl >> 8);
	frame[3] = (char)hl;
	memcpy(frame + 4, js, hl);
	if (len)
		memcpy(frame + 4 + hl, body, len);
	free(js);
	*out = frame;
	*out_len = 4 + hl + len;
	return 0;
}

/* A non-negative integer member; -1 when missing or of another type. */
static int get_uint(json_t *o, const char *key, bool required, uint64_t *v)
{
	json_t *j = json_object_get(o, key);

	if (!j)
		return required ? -1 : 0;
	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return -1;
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

/* A string member copied into @dst (@cap bytes with the NUL). */
static int get_str(json_t *o, const char *key, char *dst, size_t cap)
{
	json_t *j = json_object_get(o, key);
	size_t n;

	if (!json_is_string(j))
		return -1;
	n = json_string_length(j);
	if (n >= cap || memchr(json_string_value(j), '\0', n))
		return -1;
	memcpy(dst, json_string_value(j), n + 1);
	return 0;
}

static int parse_hash(const char *s, uint64_t *v)
{
	uint64_t h = 0;

	if (strlen(s) != 16)
		return -1;
	for (int i = 0; i < 16; i++) {
		int c = s[i], d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return -1;
		h = h << 4 | (uint64_t)d;
	}
	*v = h;
	return 0;
}

#define FAIL(msg)                                                                                            \
	do {                                                                                                 \
		*why = (msg);                                                                                \
		goto bad;                                                                                    \
	} while (0)

int rp_decode_header(const void *json, size_t len, struct rp_header *h, const char **why)
{
	const char *dummy;
	char buf[32];
	json_t *o, *j;
	int t;

	if (!why)
		why = &dummy;
	memset(h, 0, sizeof(*h));
	if (len == 0 || len > RP_MAX_HEADER) {
		*why = "header length out of range";
		return -EBADMSG;
	}
	/* No JSON_ALLOW_NUL: a NUL inside a string is refused. */
	o = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
	if (!o) {
		*why = "header is not valid JSON";
		return -EBADMSG;
	}
	if (!json_is_object(o))
		FAIL("header is not a JSON object");
	if (get_str(o, "type", buf, sizeof(buf)) || !(t = type_from_name(buf)))
		FAIL("missing or unknown \"type\"");
	h->type = (enum rp_type)t;
	if (get_uint(o, "id", true, &h->id))
		FAIL("missing or bad \"id\"");
	if (get_uint(o, "total_size", true, &h->total_size))
		FAIL("missing or bad \"total_size\"");
	if (get_str(o, "hash", buf, sizeof(buf)) || parse_hash(buf, &h->hash))
		FAIL("missing or bad \"hash\"");
	switch (h->type) {
	case RP_EXEC:
		if (get_str(o, "token", h->token, sizeof(h->token)))
			FAIL("missing or bad \"token\"");
		if (get_uint(o, "timeout_ms", false, &h->timeout_ms))
			FAIL("bad \"timeout_ms\"");
		break;
	case RP_OUT:
		if (get_str(o, "stream", buf, sizeof(buf)))
			FAIL("missing \"stream\"");
		if (strcmp(buf, "stdout") == 0)
			h->stream = RP_STDOUT;
		else if (strcmp(buf, "stderr") == 0)
			h->stream = RP_STDERR;
		else
			FAIL("bad \"stream\"");
		break;
	case RP_EXIT:
		j = json_object_get(o, "exit_status");
		if (!json_is_integer(j) || json_integer_value(j) < -128 || json_integer_value(j) > 255)
			FAIL("missing or bad \"exit_status\"");
		h->exit_status = (int)json_integer_value(j);
		j = json_object_get(o, "timed_out");
		if (j && !json_is_boolean(j))
			FAIL("bad \"timed_out\"");
		h->timed_out = j && json_is_true(j);
		if (get_uint(o, "stdout_size", true, &h->stdout_size) ||
		    get_uint(o, "stderr_size", true, &h->stderr_size))
			FAIL("missing or bad output sizes");
		break;
	case RP_ERROR:
		if (get_str(o, "error", h->error, sizeof(h->error)))
			FAIL("missing or bad \"error\"");
		break;
	}
	json_decref(o);
	return 0;
bad:
	json_decref(o);
	return -EBADMSG;
}

long rp_parse(const void *buf, size_t len, size_t max_body, struct rp_header *h, const void **body,
              const char **why)
{
	const unsigned char *p = buf;
	const char *dummy;
	uint32_t hl;
	int rc;

	if (!why)
		why = &dummy;
	if (max_body > RP_MAX_BODY)
		max_body = RP_MAX_BODY;
	if (len < 4)
		return 0;
	hl = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
	if (hl == 0 || hl > RP_MAX_HEADER) {
		*why = "header length out of range";
		return -EMSGSIZE;
	}
	if (len - 4 < hl)
		return 0;
	rc = rp_decode_header(p + 4, hl, h, why);
	if (rc)
		return rc;
	if (h->total_size > max_body) {
		*why = "body too large";
		return -EMSGSIZE;
	}
	if (len - 4 - hl < h->total_size)
		return 0;
	if (rp_hash(p + 4 + hl, h->total_size) != h->hash) {
		*why = "body does not match its hash";
		return -EBADMSG;
	}
	*body = p + 4 + hl;
	return (long)(4 + hl + h->total_size);
}
