/*
 * fuzz_remote_proto - libFuzzer target for the remote_cmd frame parser
 * (examples/remote_proto.c): any bytes must give "need more", a frame or an
 * error, never a crash, a leak or a read past the input. Parsed frames must
 * survive an encode/parse round trip unchanged.
 *
 * Built and run by scripts/test.sh when clang is available:
 *   clang -fsanitize=fuzzer,address,undefined ... && ./fuzz -max_total_time=20
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remote_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rp_header h, g;
	const void *body, *body2;
	char *frame;
	size_t n;
	long rc;

	/* The raw bytes as a header too: random framing rarely gets a length
	 * right, so this reaches the JSON validation directly. */
	if (size && size <= RP_MAX_HEADER)
		rp_decode_header(data, size, &h, NULL);
	rc = rp_parse(data, size, 4096, &h, &body, NULL);
	if (rc <= 0)
		return 0;
	if ((size_t)rc > size)
		abort();
	if (rp_encode(&h, body, h.total_size, &frame, &n) != 0)
		return 0; /* e.g. a string the encoder will not write back */
	if (rp_parse(frame, n, 4096, &g, &body2, NULL) != (long)n || g.type != h.type || g.id != h.id ||
	    g.total_size != h.total_size || g.hash != h.hash || memcmp(body, body2, h.total_size) != 0)
		abort();
	free(frame);
	return 0;
}
