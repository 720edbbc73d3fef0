/*
 * proc_frame.c - the process pool's channel: framing, descriptor passing
 * and memfd payloads, used by both the parent and the workers. Payloads that
 * fit an arena block (proc_arena.c) do not travel at all: the frame names
 * the block (EXE__FF_ARENA).
 *
 * Design
 *  - A channel is a SOCK_STREAM socketpair: a fixed 64-byte header (magic,
 *    kind, flags, task id, two words, length, result place, status,
 *    check) then the inline
 *    payload. The stream keeps one task's bytes in order without message
 *    size limits; the header gives the boundaries back and is checked on
 *    both sides (magic, a hash of the header, kind, flags, length bound), so
 *    anything else written into the socket is caught at the first header.
 *  - Payloads past EXE__INLINE_MAX go in a memfd passed with the header
 *    (SCM_RIGHTS): one copy into the memfd by the sender, a mapping on the
 *    receiving side. The sender seals it (no write, no shrink, no grow)
 *    before passing it, and the receiver refuses an unsealed one or one
 *    whose size differs from the header: a shrink under our mapping would be
 *    a SIGBUS in the parent.
 *  - A unix stream socket delivers passed descriptors with the first byte
 *    of the write they came with, never later, so the receiver keeps them in
 *    a FIFO and gives the next one to the next memfd frame. A stray
 *    descriptor only makes a later memfd frame fail its checks.
 *
 * Invariants
 *  - Inline frames fit in the receive buffer (EXE__RX_CAP > header +
 *    EXE__INLINE_MAX), so a frame is always parsed from contiguous bytes.
 *  - Every descriptor is created close-on-exec and received with
 *    MSG_CMSG_CLOEXEC.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "proc_internal.h"

static uint32_t header_hash(const struct exe__frame *h)
{
	const unsigned char *p = (const unsigned char *)h;
	uint32_t x = 2166136261u; /* FNV-1a */
	size_t i;

	for (i = 0; i < offsetof(struct exe__frame, check); i++)
		x = (x ^ p[i]) * 16777619u;
	return x;
}

void exe__frame_seal(struct exe__frame *h)
{
	h->magic = EXE__FRAME_MAGIC;
	h->check = header_hash(h);
}

int exe__frame_check(const struct exe__frame *h, const char **why)
{
	if (h->magic != EXE__FRAME_MAGIC)
		*why = "bad magic";
	else if (h->check != header_hash(h))
		*why = "bad header checksum";
	else if (h->kind < 1 || h->kind > EXE__F_KIND_MAX)
		*why = "unknown frame kind";
	else if (h->flags & ~EXE__FF_ALL)
		*why = "unknown frame flags";
	else if ((h->flags & EXE__FF_MEMFD) && (h->flags & EXE__FF_ARENA))
		*why = "payload both in a memfd and in the arena";
	else if ((h->flags & (EXE__FF_MEMFD | EXE__FF_ARENA)) && (h->len == 0 || h->len > EXE__PAYLOAD_MAX))
		*why = "out-of-line payload length out of range";
	else if (!(h->flags & (EXE__FF_MEMFD | EXE__FF_ARENA)) && h->len > EXE__INLINE_MAX)
		*why = "inline payload over the limit";
	else if ((h->flags & EXE__FF_MSG) && h->status == 0)
		*why = "error message on a successful result";
	else
		return 0;
	return -EBADMSG;
}

int exe__result_check(const struct exe__result_head *r, uint16_t task_kind, uint64_t chunk_len, uint64_t out_cap,
                      const char **why)
{
	uint16_t want = task_kind == EXE__F_TASK_PTR     ? EXE__F_RESULT_PTR
	                : task_kind == EXE__F_TASK_CHUNK ? EXE__F_RESULT_CHUNK
	                                                 : EXE__F_RESULT_BYTES;
	bool arena = r->flags & EXE__FF_ARENA, msg = r->flags & EXE__FF_MSG;

	*why = NULL;
	if (r->kind != want || (r->flags & ~(EXE__FF_ARENA | EXE__FF_MSG)) || r->status > 0 ||
	    r->status == INT32_MIN)
		*why = "malformed result";
	else if (!arena && r->len > EXE__RESULT_INLINE)
		*why = "result longer than its entry";
	else if (msg && (!r->status || arena))
		*why = "message without a failure";
	else if (!msg && r->status && r->len)
		*why = "failure with bytes that are not a message";
	else if (arena && (r->status || want != EXE__F_RESULT_BYTES || !out_cap || r->len > out_cap))
		*why = "arena result outside its block";
	else if (want == EXE__F_RESULT_CHUNK && (r->status ? r->word >= chunk_len : r->word != chunk_len))
		*why = "malformed chunk result";
	else if (want == EXE__F_RESULT_CHUNK && !r->status && r->len)
		*why = "chunk result with bytes";
	return *why ? -EBADMSG : 0;
}

/* ---- sending ---- */

static int send_all(int sock, struct msghdr *mh)
{
	for (;;) {
		ssize_t n = sendmsg(sock, mh, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* A blocking stream socket writes everything unless a signal
		 * cuts in: step past what went, without the descriptor. */
		mh->msg_control = NULL;
		mh->msg_controllen = 0;
		while (n > 0 && mh->msg_iovlen) {
			struct iovec *v = mh->msg_iov;

			if ((size_t)n < v->iov_len) {
				v->iov_base = (char *)v->iov_base + n;
				v->iov_len -= (size_t)n;
				n = 0;
				break;
			}
			n -= (ssize_t)v->iov_len;
			mh->msg_iov++;
			mh->msg_iovlen--;
		}
		while (mh->msg_iovlen && mh->msg_iov->iov_len == 0) {
			mh->msg_iov++;
			mh->msg_iovlen--;
		}
		if (!mh->msg_iovlen)
			return 0;
	}
}

int exe__frame_send(int sock, struct exe__frame *h, const void *payload, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov[2] = {{h, sizeof(*h)}, {(void *)payload, 0}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 1};

	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	} else if (h->len && !(h->flags & EXE__FF_ARENA)) {
		iov[1].iov_len = h->len;
		mh.msg_iovlen = 2;
	}
	exe__frame_seal(h);
	return send_all(sock, &mh);
}

/* ---- receiving ---- */

int exe__rx_init(struct exe__rx *rx)
{
	rx->buf = exe__malloc(EXE__RX_CAP);
	rx->start = rx->end = 0;
	rx->nfds = 0;
	return rx->buf ? 0 : -ENOMEM;
}

void exe__rx_fini(struct exe__rx *rx)
{
	unsigned i;

	for (i = 0; i < rx->nfds; i++)
		close(rx->fds[i]);
	rx->nfds = 0;
	exe__free(rx->buf);
	rx->buf = NULL;
}

static int keep_fds(struct exe__rx *rx, struct msghdr *mh)
{
	struct cmsghdr *c;
	int rc = 0;

	for (c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t n, i;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (rx->nfds < EXE__RX_FDS) {
				rx->fds[rx->nfds++] = fd;
			} else {
				close(fd);
				rc = -EBADMSG;
			}
		}
	}
	if (mh->msg_flags & MSG_CTRUNC)
		rc = -EBADMSG;
	return rc;
}

ssize_t exe__rx_fill(struct exe__rx *rx, int sock, bool nonblock)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * EXE__RX_FDS)];
		struct cmsghdr align;
	} cm;
	struct iovec iov;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;
	int rc;

	if (rx->start == rx->end) {
		rx->start = rx->end = 0;
	} else if (rx->start) {
		memmove(rx->buf, rx->buf + rx->start, rx->end - rx->start);
		rx->end -= rx->start;
		rx->start = 0;
	}
	iov.iov_base = rx->buf + rx->end;
	iov.iov_len = EXE__RX_CAP - rx->end;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | (nonblock ? MSG_DONTWAIT : 0));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	rc = keep_fds(rx, &mh);
	if (rc)
		return rc;
	rx->end += (size_t)n;
	return n;
}

int exe__rx_next(struct exe__rx *rx, struct exe__frame *h, const unsigned char **payload, int *fd,
                 const char **why)
{
	size_t have = rx->end - rx->start;

	*fd = -1;
	if (have < sizeof(*h))
		return 0;
	memcpy(h, rx->buf + rx->start, sizeof(*h));
	if (exe__frame_check(h, why))
		return -EBADMSG;
	if (h->flags & EXE__FF_MEMFD) {
		if (!rx->nfds) {
			*why = "memfd frame without a descriptor";
			return -EBADMSG;
		}
		*fd = rx->fds[0];
		memmove(rx->fds, rx->fds + 1, (--rx->nfds) * sizeof(int));
		*payload = NULL;
		rx->start += sizeof(*h);
		return 1;
	}
	if (h->flags & EXE__FF_ARENA) {
		*payload = NULL;
		rx->start += sizeof(*h);
		return 1;
	}
	if (have < sizeof(*h) + h->len)
		return 0;
	*payload = rx->buf + rx->start + sizeof(*h);
	rx->start += sizeof(*h) + h->len;
	return 1;
}

/* ---- memfd payloads ---- */

int exe__memfd_from(const void *data, size_t len, const char *name)
{
	const char *p = data;
	size_t left = len;
	int fd, rc;

	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	while (left) {
		ssize_t n = write(fd, p, left);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto fail;
		}
		p += n;
		left -= (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		rc = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return rc;
}

int exe__memfd_map(int fd, uint64_t len, void **map, const char **why)
{
	const int need = F_SEAL_SHRINK | F_SEAL_WRITE;
	struct stat st;
	int seals;
	void *m;

	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & need) != need) {
		*why = "payload descriptor is not a sealed memfd";
		return -EBADMSG;
	}
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size < 0 || (uint64_t)st.st_size != len) {
		*why = "memfd size differs from the frame length";
		return -EBADMSG;
	}
	/* Populate now: the reader touches every page anyway, and one call
	 * costs less than a fault per page. */
	m = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	*map = m;
	return 0;
}

/* ---- fork-server messages ---- */

int exe__ctl_send(int sock, const struct exe__ctl_msg *m, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = {(void *)m, sizeof(*m)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(*m) ? 0 : -EIO;
}

int exe__ctl_recv(int sock, struct exe__ctl_msg *m, int *fd, bool nonblock)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = {m, sizeof(*m)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf)};
	struct cmsghdr *c;
	ssize_t n;

	*fd = -1;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | (nonblock ? MSG_DONTWAIT : 0));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t k, cnt;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < cnt; k++) {
			int got;

			memcpy(&got, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
			if (*fd < 0)
				*fd = got;
			else
				close(got);
		}
	}
	if (n == 0)
		return 0;
	if (n != (ssize_t)sizeof(*m) || m->magic != EXE__CTL_MAGIC) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -EBADMSG;
	}
	return 1;
}
