/*
 * file_copy - copy a file with reads and writes in flight at the same time,
 * through io futures (after liburing's io_uring-cp), and check the copy.
 *
 * The file is cut into blocks; --depth blocks are in flight at once. Each
 * slot reads its block and, as soon as that read completes, writes it at the
 * same offset, then takes the next block. So reads and writes of different
 * blocks overlap, and the kernel always has work queued. Main waits for
 * "any of these futures" (exe_wait with EXE_WAIT_ANY) and moves each
 * finished slot on; short reads and writes are resumed where they stopped.
 * For comparison the same copy is done with a plain read()/write() loop.
 *
 * Run: file_copy [--size-mb 32] [--block-kb 128] [--depth 8] [SRC [DST]]
 *   Without SRC a file of random bytes is made (and removed) in /tmp.
 * Exits non-zero when the copy's checksum differs from the source's.
 */
#include <executor.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTH 64

enum slot_state { IDLE, READING, WRITING };

struct slot {
	enum slot_state state;
	char *buf;
	int64_t off; /* file offset of the block */
	size_t len;  /* block length */
	size_t done; /* bytes of the current read or write completed */
	struct exe_future *f;
};

struct copy {
	struct exe_io *io;
	int in, out;
	int64_t size, next;
	size_t block;
	long reads, writes, short_ops;
};

static int submit(struct copy *c, struct slot *s)
{
	if (s->state == READING) {
		c->reads++;
		return exe_io_read(c->io, c->in, s->buf + s->done, s->len - s->done,
		                   s->off + (int64_t)s->done, &s->f);
	}
	c->writes++;
	return exe_io_write(c->io, c->out, s->buf + s->done, s->len - s->done, s->off + (int64_t)s->done,
	                    &s->f);
}

/* Give @s the next block, or leave it idle at the end of the file. */
static int next_block(struct copy *c, struct slot *s)
{
	if (c->next >= c->size) {
		s->state = IDLE;
		return 0;
	}
	s->off = c->next;
	s->len = (size_t)(c->size - c->next < (int64_t)c->block ? c->size - c->next : (int64_t)c->block);
	s->done = 0;
	s->state = READING;
	c->next += (int64_t)s->len;
	return submit(c, s);
}

static int copy_io(struct copy *c, struct slot *slots, int depth)
{
	struct exe_future *fs[MAX_DEPTH];
	int idx[MAX_DEPTH];
	int rc = 0;

	for (int i = 0; i < depth && rc == 0; i++)
		rc = next_block(c, &slots[i]);
	for (;;) {
		int n = 0;

		for (int i = 0; i < depth; i++) {
			if (slots[i].state != IDLE && slots[i].f) {
				fs[n] = slots[i].f;
				idx[n++] = i;
			}
		}
		if (n == 0)
			return rc;
		/* After an error, only drain: the buffers are the kernel's
		 * until their futures finish. */
		if (exe_wait(fs, (size_t)n, rc ? EXE_WAIT_ALL : EXE_WAIT_ANY, 60 * EXE_NS_PER_S) < 0)
			return -ETIMEDOUT;
		for (int k = 0; k < n; k++) {
			struct slot *s = &slots[idx[k]];
			int64_t res;

			if (!exe_future_is_finished(s->f))
				continue;
			res = exe_io_res(s->f, 0);
			exe_future_unref(s->f);
			s->f = NULL;
			if (rc) {
				s->state = IDLE;
				continue;
			}
			if (res <= 0) { /* 0: the file shrank under us */
				rc = res < 0 ? (int)res : -EIO;
				s->state = IDLE;
				continue;
			}
			s->done += (size_t)res;
			if (s->done < s->len) {
				c->short_ops++; /* resume where it stopped */
				rc = submit(c, s);
			} else if (s->state == READING) {
				s->state = WRITING;
				s->done = 0;
				rc = submit(c, s);
			} else {
				rc = next_block(c, s);
			}
		}
	}
}

static int copy_plain(int in, int out, size_t block)
{
	char *buf = malloc(block);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	while ((n = read(in, buf, block)) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));

			if (w < 0) {
				free(buf);
				return -errno;
			}
			off += w;
		}
	}
	free(buf);
	return n < 0 ? -errno : 0;
}

/* FNV-1a 64 of a whole file; 0 on a read error (and a message). */
static uint64_t checksum(const char *path, int64_t *len)
{
	static char buf[1 << 16];
	uint64_t h = 0xcbf29ce484222325ull;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	*len = 0;
	if (fd < 0)
		return 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			h ^= (unsigned char)buf[i];
			h *= 0x100000001b3ull;
		}
		*len += n;
	}
	close(fd);
	return n < 0 ? 0 : h;
}

static int make_source(const char *path, long mb)
{
	uint64_t x = 0x243f6a8885a308d3ull, buf[8192];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	/* Plus an odd tail, so the last block is a short one. */
	for (long left = mb * 1024 * 1024 + 12345; left > 0;) {
		size_t n = left < (long)sizeof(buf) ? (size_t)left : sizeof(buf);

		for (size_t i = 0; i < sizeof(buf) / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x;
		}
		if (write(fd, buf, n) != (ssize_t)n) {
			close(fd);
			return -EIO;
		}
		left -= (long)n;
	}
	close(fd);
	return 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--size-mb N] [--block-kb N] [--depth N] [SRC [DST]]\n", argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"size-mb", required_argument, NULL, 's'},
	    {"block-kb", required_argument, NULL, 'b'},
	    {"depth", required_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	char src[4096], dst[4096], dst2[4200];
	struct slot slots[MAX_DEPTH] = {0};
	struct copy c = {.in = -1, .out = -1};
	long size_mb = 32, block_kb = 128, depth = 8;
	int opt, rc, own_src = 0, bad;
	struct stat st;
	int64_t t0, ls = 0, ld = 0, lp = 0;
	double t_io, t_plain;
	uint64_t hs, hd, hp;

	while ((opt = getopt_long(argc, argv, "s:b:d:h", longopts, NULL)) != -1) {
		if (opt == 's')
			size_mb = atol(optarg);
		else if (opt == 'b')
			block_kb = atol(optarg);
		else if (opt == 'd')
			depth = atol(optarg);
		else
			usage(argv[0]);
	}
	if (size_mb < 0 || size_mb > 4096 || block_kb < 1 || block_kb > 16384 || depth < 1 ||
	    depth > MAX_DEPTH || argc - optind > 2)
		usage(argv[0]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (optind < argc) {
		snprintf(src, sizeof(src), "%s", argv[optind]);
	} else {
		snprintf(src, sizeof(src), "/tmp/file_copy-src-%d", (int)getpid());
		printf("making %s: %ld MiB + 12345 bytes of random data\n", src, size_mb);
		rc = make_source(src, size_mb);
		if (rc) {
			fprintf(stderr, "%s: %s\n", src, exe_strerror(rc));
			return 1;
		}
		own_src = 1;
	}
	if (optind + 1 < argc)
		snprintf(dst, sizeof(dst), "%s", argv[optind + 1]);
	else
		snprintf(dst, sizeof(dst), "/tmp/file_copy-dst-%d", (int)getpid());
	snprintf(dst2, sizeof(dst2), "%s.plain", dst);

	c.block = (size_t)block_kb * 1024;
	c.in = open(src, O_RDONLY | O_CLOEXEC);
	c.out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (c.in < 0 || c.out < 0 || fstat(c.in, &st)) {
		perror("open");
		return 1;
	}
	c.size = st.st_size;
	for (long i = 0; i < depth; i++) {
		slots[i].buf = malloc(c.block);
		if (!slots[i].buf)
			return 1;
	}
	rc = exe_io_create(&c.io, NULL);
	if (rc) {
		fprintf(stderr, "io: %s\n", exe_strerror(rc));
		return 1;
	}
	printf("copying %s (%ld bytes) to %s: %ld KiB blocks, %ld in flight, io backend %s\n", src,
	       (long)c.size, dst, block_kb, depth, exe_io_backend(c.io));

	t0 = exe_now_ns();
	rc = copy_io(&c, slots, (int)depth);
	if (rc == 0) {
		/* The copy is only a copy once it is on disk. */
		struct exe_future *f;

		if (exe_io_fsync(c.io, c.out, 0, &f) == 0) {
			rc = (int)exe_io_res(f, 60 * EXE_NS_PER_S);
			rc = rc > 0 ? 0 : rc;
			exe_future_unref(f);
		}
	}
	t_io = (double)(exe_now_ns() - t0) / 1e9;
	exe_io_destroy(c.io);
	close(c.in);
	close(c.out);
	for (long i = 0; i < depth; i++)
		free(slots[i].buf);
	if (rc) {
		fprintf(stderr, "copy failed: %s\n", exe_strerror(rc));
		return 1;
	}

	/* The same copy, one blocking call at a time. */
	c.in = open(src, O_RDONLY | O_CLOEXEC);
	c.out = open(dst2, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	t0 = exe_now_ns();
	rc = c.in >= 0 && c.out >= 0 ? copy_plain(c.in, c.out, c.block) : -errno;
	if (rc == 0)
		fsync(c.out);
	t_plain = (double)(exe_now_ns() - t0) / 1e9;
	close(c.in);
	close(c.out);

	hs = checksum(src, &ls);
	hd = checksum(dst, &ld);
	hp = checksum(dst2, &lp);
	printf("\n                       seconds     MiB/s   ops\n");
	printf("  io futures, depth %-3ld %7.3f  %8.1f   %ld reads, %ld writes (%ld resumed)\n", depth, t_io,
	       (double)c.size / 1048576.0 / t_io, c.reads, c.writes, c.short_ops);
	printf("  read()/write() loop  %7.3f  %8.1f\n", t_plain, (double)c.size / 1048576.0 / t_plain);
	printf("checksums (FNV-1a 64): source %016lx, copy %016lx, plain copy %016lx\n", (unsigned long)hs,
	       (unsigned long)hd, (unsigned long)hp);
	bad = rc != 0 || hs != hd || ls != ld || ls != c.size || hs != hp;
	printf("(Both copies mostly move page-cache pages here; the overlap pays off on real disks.)\n");
	printf("%s\n", bad ? "FAILED: the copy differs from the source" : "OK: the copy is identical");
	unlink(dst2);
	if (optind + 1 >= argc)
		unlink(dst);
	if (own_src)
		unlink(src);
	return bad;
}
