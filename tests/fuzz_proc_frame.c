/*
 * fuzz_proc_frame - libFuzzer target for the process pool's channel frames
 * (executor/proc_frame.c), the bytes a worker process - which runs user code
 * and may write anything into its channel - sends to the parent. Any bytes,
 * arriving in any pieces, must give "need more", a frame whose payload lies
 * inside what was received, or -EBADMSG; never a crash, a leak or a read
 * past the input. Frames that pass are also put through a seal/check round
 * trip. The same bytes are also read as result entries (what a worker
 * writes into its shared cell) and put through exe__result_check(): an
 * entry it accepts never makes the collector read past the entry or the
 * arena block.
 *
 * The first input byte picks how the stream is cut into writes, so the
 * receive buffer's compaction and partial frames are exercised as in the
 * collector's read loop (a nonblocking socketpair, exe__rx_fill()). Its top
 * bit asks for sealed headers: each 64-byte header in the input gets a
 * correct magic and checksum (what a buggy but well-meaning sender would
 * write), so mutations reach the checks behind the checksum.
 *
 * Built and run by scripts/test.sh when clang is available:
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude -I. tests/fuzz_proc_frame.c
 *         executor/proc_frame.c executor/alloc.c && ./fuzz -max_total_time=20
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proc_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int drain(struct exe__rx *rx)
{
	for (;;) {
		const unsigned char *payload;
		struct exe__frame h, copy;
		const char *why = NULL;
		int fd, rc = exe__rx_next(rx, &h, &payload, &fd, &why);

		if (rc == 0)
			return 0;
		if (rc < 0) {
			if (rc != -EBADMSG || !why)
				abort();
			return rc;
		}
		if (fd >= 0)
			abort(); /* no descriptor was ever sent */
		if (!(h.flags & (EXE__FF_MEMFD | EXE__FF_ARENA))) {
			if (h.len > EXE__INLINE_MAX ||
			    (h.len && (payload < rx->buf || payload + h.len > rx->buf + rx->end)))
				abort();
		}
		/* Sealing a checked header again gives the same header. */
		copy = h;
		exe__frame_seal(&copy);
		if (memcmp(&copy, &h, sizeof(h)) != 0 || exe__frame_check(&copy, &why) != 0)
			abort();
	}
}

static void feed(const uint8_t *data, size_t size, size_t piece);

/* Each 48 bytes: a result head, then the task it names (kind, chunk
 * length, offered block). */
static void check_results(const uint8_t *data, size_t size)
{
	for (size_t at = 0; at + 48 <= size; at += 48) {
		struct exe__result_head h;
		uint16_t task_kind;
		uint64_t chunk_len, out_cap;
		const char *why = "unset";

		memcpy(&h, data + at, sizeof(h));
		memcpy(&task_kind, data + at + 24, sizeof(task_kind));
		memcpy(&chunk_len, data + at + 32, sizeof(chunk_len));
		memcpy(&out_cap, data + at + 40, sizeof(out_cap));
		task_kind = (uint16_t)(task_kind % 3 + 1); /* PTR, BYTES, CHUNK... */
		if (task_kind == 3)
			task_kind = EXE__F_TASK_CHUNK;
		chunk_len = chunk_len % (EXE__CHUNK_MAX + 1);
		if (exe__result_check(&h, task_kind, chunk_len, out_cap, &why) != 0) {
			if (!why)
				abort();
			continue;
		}
		if (why || h.status > 0)
			abort();
		if (!(h.flags & EXE__FF_ARENA) && h.len > EXE__RESULT_INLINE)
			abort(); /* would read past the entry */
		if ((h.flags & EXE__FF_ARENA) && (h.len > out_cap || h.status))
			abort(); /* would read past the block */
		if (task_kind == EXE__F_TASK_CHUNK && h.word > chunk_len)
			abort(); /* would copy values past the chunk */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t piece;

	if (size < 1)
		return 0;
	check_results(data, size);
	piece = (size_t)(data[0] & 0x7f) * 73 + 1; /* 1 .. ~9 KiB per write */
	if (data[0] & 0x80) {
		uint8_t *copy = malloc(size);
		size_t at = 1;

		if (!copy)
			return 0;
		memcpy(copy, data, size);
		while (at + sizeof(struct exe__frame) <= size) {
			struct exe__frame h;

			memcpy(&h, copy + at, sizeof(h));
			exe__frame_seal(&h);
			memcpy(copy + at, &h, sizeof(h));
			at += sizeof(h) + (h.len < size ? (size_t)h.len : size);
		}
		feed(copy + 1, size - 1, piece);
		free(copy);
		return 0;
	}
	feed(data + 1, size - 1, piece);
	return 0;
}

static void feed(const uint8_t *data, size_t size, size_t piece)
{
	struct exe__rx rx;
	size_t off = 0;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	if (exe__rx_init(&rx)) {
		close(sv[0]);
		close(sv[1]);
		return;
	}
	while (off < size) {
		size_t n = size - off < piece ? size - off : piece;
		ssize_t w = write(sv[1], data + off, n);
		ssize_t got;

		if (w <= 0)
			break;
		off += (size_t)w;
		while ((got = exe__rx_fill(&rx, sv[0], true)) > 0)
			if (drain(&rx) < 0)
				goto out;
		if (got == -EBADMSG)
			abort(); /* no descriptors were sent: never truncated */
		/* A full buffer that holds no complete frame cannot happen: an
		 * inline frame always fits (EXE__RX_CAP). */
		if (rx.end - rx.start == EXE__RX_CAP)
			abort();
	}
out:
	exe__rx_fini(&rx);
	close(sv[0]);
	close(sv[1]);
}
