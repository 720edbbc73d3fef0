/*
 * fuzz_ipc_queue - libFuzzer target for the process-shared queue's segment
 * as another process may have left it (executor/ipc_queue.c): attach to any
 * bytes, then put, get (timeout 0 and 1 us), count and close must each
 * return a documented code, never crash, read out of bounds or hang
 * (run with -timeout so a hang is a finding).
 *
 * Arbitrary bytes almost never pass the header's checksum, so the first
 * input byte picks a mode:
 *   0  the bytes are the segment, as they are;
 *   1  a real queue is built (geometry from the next two bytes, a few
 *      messages queued), then the rest of the input is XORed over it from
 *      the end of the header on: the lock, the state and the ring;
 *   2  the same queue, then (offset, value) pairs overwrite single bytes
 *      anywhere, the header included.
 *
 * Built and run by scripts/test.sh when clang is available:
 *   clang -fsanitize=fuzzer,address,undefined ... && ./fuzz -max_total_time=20 -timeout=5
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <executor.h>

#define HEADER_BYTES 40 /* magic, version, three geometry words, checksum */
#define MAX_SEGMENT (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every code put and get document (-EMSGSIZE: a message over the bound, or
 * longer than the buffer). */
static bool documented(int rc)
{
	return rc == 0 || rc == -EAGAIN || rc == -ETIMEDOUT || rc == -EPIPE || rc == -EBADMSG ||
	       rc == -ENOTRECOVERABLE || rc == -EMSGSIZE;
}

static void exercise(struct exe_ipc_queue *q)
{
	char buf[256];
	size_t len, n;
	int rc;

	for (int i = 0; i < 2; i++) {
		int64_t t = i ? 1000 : 0;

		rc = exe_ipc_queue_put(q, "fuzz", 4, t);
		if (!documented(rc))
			abort();
		rc = exe_ipc_queue_get(q, buf, sizeof(buf), &len, t);
		if (!documented(rc) || (rc == 0 && len > sizeof(buf)))
			abort();
	}
	rc = exe_ipc_queue_count(q, &n);
	if (rc && rc != -EBADMSG)
		abort();
	rc = exe_ipc_queue_close(q);
	if (rc && rc != -EBADMSG)
		abort();
	rc = exe_ipc_queue_get(q, buf, sizeof(buf), &len, 0);
	if (!documented(rc))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned char *mem;
	struct exe_ipc_queue *built = NULL, *q;
	size_t len;

	if (!mem) {
		/* Shared like a real segment; 8-byte aligned as attach wants. */
		mem = mmap(NULL, MAX_SEGMENT, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			abort();
	}
	if (size < 1)
		return 0;
	if (data[0] % 3 == 0) {
		len = size - 1 < MAX_SEGMENT ? size - 1 : MAX_SEGMENT;
		memcpy(mem, data + 1, len);
	} else {
		struct exe_ipc_queue_opts o = {
		    .max_msgs = 1 + (size > 1 ? data[1] % 16 : 0),
		    .max_bytes = 1 + (size > 2 ? (size_t)data[2] * 16 : 0),
		};

		len = exe_ipc_queue_mem_size(&o);
		if (!len || len > MAX_SEGMENT)
			abort();
		memset(mem, 0, len);
		if (exe_ipc_queue_init_at(&built, mem, len, &o))
			abort();
		for (size_t i = 0; i < o.max_msgs / 2; i++)
			exe_ipc_queue_put(built, "seed message", 1 + i % 12 < o.max_bytes ? 1 + i % 12 : 0,
			                  0);
		if (data[0] % 3 == 1) {
			for (size_t i = 3; i < size && HEADER_BYTES + i - 3 < len; i++)
				mem[HEADER_BYTES + i - 3] ^= data[i];
		} else {
			for (size_t i = 3; i + 2 < size; i += 3)
				mem[((size_t)data[i] << 8 | data[i + 1]) % len] = data[i + 2];
		}
	}
	if (exe_ipc_queue_attach_at(&q, mem, len) == 0) {
		exercise(q);
		exe_ipc_queue_destroy(q);
	}
	/* The builder's handle: it tears the queue down, never unmaps @mem. */
	exe_ipc_queue_destroy(built);
	return 0;
}
