/*
 * push.c - framing a round's events once and writing them to parked
 * subscribers' sockets (see push.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "fanout.h"
#include "push.h"

void push_round_reset(struct push_round *r)
{
	r->built = 0;
}

void push_round_free(struct push_round *r)
{
	sb_free(&r->b);
	r->built = 0;
}

/* The chunk is built in place: room for the longest size line is left
 * at the front, and the size line, known at the end, goes right before
 * the events, where the chunk then starts (R->head). */
#define SIZE_LINE 18 /* 16 hex digits, CR, LF */

int push_frame(struct push_round *r, uint64_t pos)
{
	int caught_up;
	if (r->built && r->from == pos)
		return r->events ? 1 : 0;
	struct fan_chunk *c = fan_get(pos, &caught_up);
	if (!c)
		return caught_up ? 0 : -1;
	r->b.len = 0;
	r->b.oom = 0;
	r->from = r->next = pos;
	r->events = r->changes = 0;
	r->more = 0;
	if (sb_reserve(&r->b, SIZE_LINE)) {
		fan_put(c);
		return -1;
	}
	r->b.len = SIZE_LINE;
	while (c) {
		sb_put(&r->b, c->bytes, c->len);
		r->next = c->next;
		r->events++;
		r->changes += c->changes;
		fan_put(c);
		r->more = r->b.len - SIZE_LINE >= PUSH_MAX;
		c = r->more ? NULL : fan_get(r->next, &caught_up);
	}
	sb_put(&r->b, "\r\n", 2);
	if (r->b.oom)
		return -1; /* the subscriber's own path copes */
	r->data = r->b.len - SIZE_LINE - 2;
	char line[SIZE_LINE + 1];
	int n = snprintf(line, sizeof line, "%zx\r\n", r->data);
	r->head = SIZE_LINE - (size_t)n;
	memcpy(r->b.p + r->head, line, (size_t)n);
	r->built = 1;
	return 1;
}

static enum push_result write_some(struct push *p, const char *b,
				   size_t len, size_t *done)
{
	ssize_t n = send(p->fd, b, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0 && errno == EINTR)
		n = send(p->fd, b, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0) {
		*done = 0;
		return errno == EAGAIN || errno == EWOULDBLOCK ? PUSH_AGAIN
							       : PUSH_DEAD;
	}
	*done = (size_t)n;
	return (size_t)n == len ? PUSH_SENT : PUSH_OWING;
}

enum push_result push_send(struct push *p, const struct push_round *r,
			   uint64_t now)
{
	size_t len = r->b.len - r->head, done;
	const char *b = r->b.p + r->head;
	enum push_result rc = write_some(p, b, len, &done);
	if (rc != PUSH_OWING)
		return rc;
	p->owe.len = 0;
	p->owe.oom = 0;
	p->owe_off = 0;
	sb_put(&p->owe, b + done, len - done);
	p->owe_since = now;
	/* Without the rest the stream cannot go on: it is cut. */
	return p->owe.oom ? PUSH_DEAD : PUSH_OWING;
}

enum push_result push_flush(struct push *p, uint64_t now)
{
	size_t done;
	enum push_result rc = write_some(p, p->owe.p + p->owe_off,
					 p->owe.len - p->owe_off, &done);
	if (rc == PUSH_AGAIN)
		return PUSH_OWING;
	if (rc == PUSH_DEAD)
		return rc;
	p->owe_off += done;
	p->owe_since = now;
	if (rc == PUSH_OWING)
		return rc;
	p->owe.len = p->owe_off = 0;
	if (p->owe.cap > PUSH_MAX * 2)
		sb_free(&p->owe);
	return PUSH_SENT;
}
