/*
 * test_remote_proto - the frame format of the remote_cmd examples
 * (examples/remote_proto.h): round trips, partial input, and refusal of
 * every kind of malformed frame without reading past the buffer.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote_proto.h"

TestSuite(remote_proto, .timeout = 10);

static char *frame_of(const struct rp_header *h, const char *body, size_t len, size_t *n)
{
	char *f = NULL;

	cr_assert_eq(rp_encode(h, body, len, &f, n), 0);
	return f;
}

/* A frame from a hand-written header, to test what rp_encode never makes. */
static char *raw(const char *header, const char *body, size_t *n)
{
	size_t hl = strlen(header), bl = strlen(body);
	char *f = malloc(4 + hl + bl);

	f[0] = (char)(hl >> 24);
	f[1] = (char)(hl >> 16);
	f[2] = (char)(hl >> 8);
	f[3] = (char)hl;
	memcpy(f + 4, header, hl);
	memcpy(f + 4 + hl, body, bl);
	*n = 4 + hl + bl;
	return f;
}

Test(remote_proto, exec_frame_round_trips)
{
	struct rp_header h = {.type = RP_EXEC, .id = 42, .timeout_ms = 250}, g;
	const void *body;
	size_t n;
	char *f;

	strcpy(h.token, "s3cret");
	f = frame_of(&h, "uname -a", 8, &n);
	cr_assert_eq(rp_parse(f, n, RP_MAX_BODY, &g, &body, NULL), (long)n);
	cr_assert_eq(g.type, RP_EXEC);
	cr_assert_eq(g.id, 42);
	cr_assert_eq(g.total_size, 8);
	cr_assert_eq(g.timeout_ms, 250);
	cr_assert_str_eq(g.token, "s3cret");
	cr_assert_eq(g.hash, rp_hash("uname -a", 8));
	cr_assert_eq(memcmp(body, "uname -a", 8), 0);
	free(f);
}

Test(remote_proto, out_exit_and_error_frames_round_trip)
{
	struct rp_header o = {.type = RP_OUT, .id = 1, .stream = RP_STDERR};
	struct rp_header x = {.type = RP_EXIT,
	                      .id = 1,
	                      .exit_status = -9,
	                      .timed_out = true,
	                      .stdout_size = 3,
	                      .stderr_size = 4};
	struct rp_header e = {.type = RP_ERROR, .id = 2}, g;
	const void *body;
	size_t n;
	char *f;

	f = frame_of(&o, "oops", 4, &n);
	cr_assert_eq(rp_parse(f, n, 16, &g, &body, NULL), (long)n);
	cr_assert_eq(g.stream, RP_STDERR);
	free(f);
	f = frame_of(&x, NULL, 0, &n);
	cr_assert_eq(rp_parse(f, n, 16, &g, &body, NULL), (long)n);
	cr_assert_eq(g.exit_status, -9);
	cr_assert(g.timed_out);
	cr_assert_eq(g.stdout_size, 3);
	cr_assert_eq(g.stderr_size, 4);
	free(f);
	strcpy(e.error, "bad token");
	f = frame_of(&e, NULL, 0, &n);
	cr_assert_eq(rp_parse(f, n, 16, &g, &body, NULL), (long)n);
	cr_assert_str_eq(g.error, "bad token");
	free(f);
}

Test(remote_proto, every_prefix_of_a_frame_asks_for_more)
{
	struct rp_header h = {.type = RP_OUT, .id = 3, .stream = RP_STDOUT}, g;
	const void *body;
	size_t n;
	char *f = frame_of(&h, "hello world", 11, &n);

	for (size_t i = 0; i < n; i++) {
		/* A copy of exactly i bytes, so ASan sees any read past it. */
		char *p = malloc(i ? i : 1);

		memcpy(p, f, i);
		cr_assert_eq(rp_parse(p, i, 64, &g, &body, NULL), 0, "prefix %zu", i);
		free(p);
	}
	free(f);
}

Test(remote_proto, two_frames_back_to_back_parse_one_at_a_time)
{
	struct rp_header h = {.type = RP_OUT, .id = 1}, g;
	const void *body;
	size_t n1, n2;
	char *a = frame_of(&h, "one", 3, &n1), *b = frame_of(&h, "two!", 4, &n2);
	char *both = malloc(n1 + n2);

	memcpy(both, a, n1);
	memcpy(both + n1, b, n2);
	cr_assert_eq(rp_parse(both, n1 + n2, 64, &g, &body, NULL), (long)n1);
	cr_assert_eq(rp_parse(both + n1, n2, 64, &g, &body, NULL), (long)n2);
	cr_assert_eq(memcmp(body, "two!", 4), 0);
	free(a);
	free(b);
	free(both);
}

Test(remote_proto, header_length_out_of_range_is_emsgsize)
{
	struct rp_header g;
	const void *body;
	const char *why = NULL;
	unsigned char zero[4] = {0}, huge[4] = {0xff, 0xff, 0xff, 0xff};

	cr_assert_eq(rp_parse(zero, 4, 64, &g, &body, &why), -EMSGSIZE);
	cr_assert_not_null(why);
	cr_assert_eq(rp_parse(huge, 4, 64, &g, &body, NULL), -EMSGSIZE);
}

Test(remote_proto, body_over_the_limit_is_emsgsize_before_it_arrives)
{
	struct rp_header h = {.type = RP_OUT, .id = 1}, g;
	const void *body;
	size_t n;
	char *f = frame_of(&h, "0123456789", 10, &n);

	/* The header alone is enough to refuse it. */
	cr_assert_eq(rp_parse(f, n - 10, 9, &g, &body, NULL), -EMSGSIZE);
	free(f);
}

Test(remote_proto, body_not_matching_its_hash_is_ebadmsg)
{
	struct rp_header h = {.type = RP_OUT, .id = 1}, g;
	const void *body;
	size_t n;
	char *f = frame_of(&h, "payload", 7, &n);

	f[n - 1] ^= 0x20;
	cr_assert_eq(rp_parse(f, n, 64, &g, &body, NULL), -EBADMSG);
	free(f);
}

Test(remote_proto, malformed_headers_are_ebadmsg)
{
	static const char *bad[] = {
	    "not json",
	    "[1,2]",
	    "\"exec\"",
	    "{}",
	    "{\"type\":\"exec\"}",
	    "{\"type\":\"launch\",\"id\":1,\"total_size\":0,\"hash\":\"cbf29ce484222325\"}",
	    "{\"type\":\"exec\",\"id\":-1,\"total_size\":0,\"hash\":\"cbf29ce484222325\",\"token\":\"t\"}",
	    "{\"type\":\"exec\",\"id\":1.5,\"total_size\":0,\"hash\":\"cbf29ce484222325\",\"token\":\"t\"}",
	    "{\"type\":\"exec\",\"id\":1,\"total_size\":\"0\",\"hash\":\"cbf29ce484222325\",\"token\":\"t\"}",
	    "{\"type\":\"exec\",\"id\":1,\"total_size\":0,\"hash\":\"xyz\",\"token\":\"t\"}",
	    "{\"type\":\"exec\",\"id\":1,\"total_size\":0,\"hash\":\"CBF29CE484222325\",\"token\":\"t\"}",
	    "{\"type\":\"exec\",\"id\":1,\"total_size\":0,\"hash\":\"cbf29ce484222325\"}",
	    "{\"type\":\"exec\",\"id\":1,\"total_size\":0,\"hash\":\"cbf29ce484222325\",\"token\":"
	    "\"t\\u0000x\"}",
	    "{\"type\":\"exec\",\"type\":\"exec\",\"id\":1,\"total_size\":0,\"hash\":\"cbf29ce484222325\","
	    "\"token\":\"t\"}",
	    "{\"type\":\"out\",\"id\":1,\"total_size\":0,\"hash\":\"cbf29ce484222325\",\"stream\":\"stdin\"}",
	    "{\"type\":\"exit\",\"id\":1,\"total_size\":0,\"hash\":\"cbf29ce484222325\",\"exit_status\":999,"
	    "\"stdout_size\":0,\"stderr_size\":0}",
	    "{\"type\":\"exit\",\"id\":1,\"total_size\":0,\"hash\":\"cbf29ce484222325\",\"exit_status\":0}",
	    "{\"type\":\"error\",\"id\":1,\"total_size\":0,\"hash\":\"cbf29ce484222325\",\"error\":7}",
	    "{\"type\":\"exec\",\"id\":1,\"total_size\":0,\"hash\":\"cbf29ce484222325\",\"token\":\"t\"} "
	    "trailing",
	};
	struct rp_header g;
	const void *body;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = NULL;
		size_t n;
		char *f = raw(bad[i], "", &n);

		cr_assert_eq(rp_parse(f, n, 64, &g, &body, &why), -EBADMSG, "case %zu: %s", i, bad[i]);
		cr_assert_not_null(why);
		free(f);
	}
}

Test(remote_proto, a_token_too_long_is_refused)
{
	char header[400];
	struct rp_header g;
	const void *body;
	size_t n;
	char *f;

	snprintf(
	    header, sizeof(header),
	    "{\"type\":\"exec\",\"id\":1,\"total_size\":0,\"hash\":\"cbf29ce484222325\",\"token\":\"%0*d\"}",
	    (int)RP_TOKEN_MAX + 1, 0);
	f = raw(header, "", &n);
	cr_assert_eq(rp_parse(f, n, 64, &g, &body, NULL), -EBADMSG);
	free(f);
}

Test(remote_proto, encode_refuses_oversized_bodies_and_bad_types)
{
	struct rp_header h = {.type = RP_OUT};
	char *f;
	size_t n;

	cr_assert_eq(rp_encode(&h, "x", RP_MAX_BODY + 1, &f, &n), -EINVAL);
	h.type = (enum rp_type)9;
	cr_assert_eq(rp_encode(&h, NULL, 0, &f, &n), -EINVAL);
}
