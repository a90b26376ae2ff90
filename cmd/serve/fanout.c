/*
 * fanout.c - the shared window of encoded batch events (see fanout.h).
 *
 * The window is a ring of chunk pointers in sequence order, each chunk
 * starting where the one before it ends, so a lookup is a binary search
 * on the first sequence numbers, kept in a ring of their own: the
 * chunks themselves are all over the heap, and a search through them
 * cost a cache miss a step, a million lookups a second at 100
 * subscribers.  One mutex guards the ring; a chunk's
 * bytes are immutable once published and its reference count is atomic,
 * so a subscriber copies them without the lock.  A chunk larger than a
 * quarter of the byte cap is not kept (the window restarts after it):
 * subscribers read so large a batch from their own feeds, as they did
 * before the window existed, rather than pin it here.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fanout.h"

#define FAN_SLOTS 16384              /* a power of two */
#define FAN_BYTES ((size_t)2 << 20)  /* what the window keeps, at most */

static struct {
	pthread_mutex_t mu;
	struct fan_chunk *ring[FAN_SLOTS];
	uint64_t first[FAN_SLOTS];  /* ring[i]->first */
	size_t head, n, bytes;  /* the oldest slot, chunks, their bytes */
	size_t hint;            /* the slot after the last one found */
	uint64_t next;          /* where the next chunk must start */
	int live;
} fan = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct fan_chunk *fan_chunk_new(uint64_t first, uint64_t next,
				uint64_t changes, const void *bytes,
				size_t len)
{
	struct fan_chunk *c = malloc(sizeof *c + len);
	if (!c)
		return NULL;
	c->first = first;
	c->next = next;
	c->changes = changes;
	c->len = len;
	c->refs = 1;
	c->gone = NULL;
	memcpy(c->bytes, bytes, len);
	return c;
}

void fan_put(struct fan_chunk *c)
{
	if (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(c);
}

/* Take the oldest chunk off the ring onto *GONE; under FAN.mu.  What
 * leaves is freed after the unlock (drop()). */
static void pop_oldest(struct fan_chunk **gone)
{
	struct fan_chunk *c = fan.ring[fan.head];
	fan.ring[fan.head] = NULL;
	fan.head = (fan.head + 1) & (FAN_SLOTS - 1);
	fan.n--;
	fan.bytes -= c->len;
	c->gone = *gone;
	*gone = c;
}

static void drop(struct fan_chunk *gone)
{
	while (gone) {
		struct fan_chunk *next = gone->gone;
		fan_put(gone);
		gone = next;
	}
}

static void reset(uint64_t next, int live)
{
	struct fan_chunk *gone = NULL;
	pthread_mutex_lock(&fan.mu);
	while (fan.n)
		pop_oldest(&gone);
	fan.next = next;
	fan.live = live;
	pthread_mutex_unlock(&fan.mu);
	drop(gone);
}

void fan_restart(uint64_t next) { reset(next, 1); }
void fan_stall(void) { reset(0, 0); }

void fan_publish(struct fan_chunk *c)
{
	struct fan_chunk *gone = NULL;
	pthread_mutex_lock(&fan.mu);
	if (c->len > FAN_BYTES / 4 || !fan.live || c->first != fan.next) {
		while (fan.n)
			pop_oldest(&gone);
		fan.live = 1;
		fan.next = c->next;
		if (c->len > FAN_BYTES / 4) {
			pthread_mutex_unlock(&fan.mu);
			drop(gone);
			fan_put(c);
			return;
		}
	}
	while (fan.n && (fan.n == FAN_SLOTS || fan.bytes + c->len > FAN_BYTES))
		pop_oldest(&gone);
	fan.ring[(fan.head + fan.n) & (FAN_SLOTS - 1)] = c;
	fan.first[(fan.head + fan.n) & (FAN_SLOTS - 1)] = c->first;
	fan.n++;
	fan.bytes += c->len;
	fan.next = c->next;
	pthread_mutex_unlock(&fan.mu);
	drop(gone);
}

struct fan_chunk *fan_get(uint64_t pos, int *caught_up)
{
	struct fan_chunk *c = NULL;
	pthread_mutex_lock(&fan.mu);
	*caught_up = fan.live && pos == fan.next;
	/* Subscribers walk the window one chunk after another, each
	 * usually from where the one before it has just been. */
	size_t at = fan.hint;
	if (fan.n && pos >= fan.first[fan.head] && pos < fan.next &&
	    ((at - fan.head) & (FAN_SLOTS - 1)) < fan.n &&
	    fan.first[at] == pos) {
		c = fan.ring[at];
		__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
		fan.hint = (at + 1) & (FAN_SLOTS - 1);
	} else if (fan.n && pos >= fan.first[fan.head] && pos < fan.next) {
		size_t lo = 0, hi = fan.n;
		while (hi - lo > 1) {
			size_t mid = lo + (hi - lo) / 2;
			size_t slot = (fan.head + mid) & (FAN_SLOTS - 1);
			if (fan.first[slot] <= pos)
				lo = mid;
			else
				hi = mid;
		}
		at = (fan.head + lo) & (FAN_SLOTS - 1);
		if (fan.first[at] == pos) {
			c = fan.ring[at];
			__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
			fan.hint = (at + 1) & (FAN_SLOTS - 1);
		}
	}
	pthread_mutex_unlock(&fan.mu);
	return c;
}
