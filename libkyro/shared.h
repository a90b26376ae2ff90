/* shared.h - the LOCK file: writers' flock and the shared state page. */
#ifndef KYRO_SHARED_H
#define KYRO_SHARED_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

/* What a writer publishes after each commit. */
struct shared_state {
	uint64_t manifest_gen;
	uint64_t wal_seg;  /* segment holding the committed end */
	uint64_t wal_end;  /* byte offset of the committed end in it */
	uint64_t last_seq; /* last committed sequence number */
	uint64_t flags;    /* SHARED_VOID_TAIL */
};

/* The bytes after the committed end in its segment are a batch whose
 * commit failed and which its writer could not cut off: never committed,
 * whatever they look like.  The next writer cuts them instead of taking
 * them for a batch whose writer died before publishing it. */
#define SHARED_VOID_TAIL 0x1

#define SHARED_PAGE 4096
#define SHARED_LAYOUT 2
#define SHARED_SUM 72  /* offset of the checksum: it covers bytes 0..71 */
#define SHARED_USED 80 /* bytes in use; the rest of the page is zero */

/* What kyro__shared_check() makes of a page. */
enum {
	SHARED_OK,         /* trusted */
	SHARED_FRESH,      /* all zero: nothing published yet */
	SHARED_OLD,        /* layout version 1 (no checksum): rebuilt */
	SHARED_OTHER_BOOT, /* intact, but from before the last reboot */
	SHARED_ODD,        /* a writer died while publishing */
	SHARED_BAD,        /* damaged: bad magic, version, checksum or tail */
};

struct shared {
	int fd;
	char path[PATH_MAX];
	unsigned char *page; /* NULL when the file could not be mapped */
	int locked;
};

/* Open (creating when WRITABLE) and map DIR/LOCK.  A reader that cannot
 * open or map it still works; it just never hears of news. */
int kyro__shared_open(char *msg, struct shared *s, const char *dir,
		      int writable);
void kyro__shared_close(struct shared *s);
int kyro__shared_lock(char *msg, struct shared *s);
void kyro__shared_unlock(struct shared *s);

/* The change counter: one atomic load, no system call.  Readers compare
 * it with the value they last saw. */
static inline uint64_t shared_change(const struct shared *s)
{
	if (!s->page)
		return 0;
	return __atomic_load_n((const uint64_t *)(s->page + 32),
			       __ATOMIC_ACQUIRE);
}

/* Read a consistent state.  Returns 0 with *ST filled, or -1 when the
 * page holds nothing trustworthy (fresh, from another boot, or a writer
 * is halfway through publishing); *CHANGE gets the counter it matched. */
int kyro__shared_read(const struct shared *s, struct shared_state *st,
		      uint64_t *change);
/* Judge the page image B of LEN bytes (SHARED_USED, or SHARED_PAGE to
 * check the zero tail as well): returns SHARED_*, with *OFF and *WHY
 * saying what is wrong when it is not SHARED_OK.  *ST is filled for
 * SHARED_OK and SHARED_OTHER_BOOT. */
int kyro__shared_check(const unsigned char *b, size_t len,
		       struct shared_state *st, uint64_t *off,
		       const char **why);
/* Publish ST (the caller holds the lock), then wake the waiters. */
void kyro__shared_publish(struct shared *s, const struct shared_state *st);
/* Wake every thread of every process waiting in kyro__shared_wait(). */
void kyro__shared_wake(const struct shared *s);
/* Sleep until the change counter is no longer CHANGE (as read from
 * shared_change()), a wake, a signal or TIMEOUT_MS (negative: no limit).
 * 0 when woken or the counter had moved already (maybe spuriously: check
 * again), ETIMEDOUT, EINTR, or ENOENT when no page is mapped. */
int kyro__shared_wait(const struct shared *s, uint64_t change, int timeout_ms);

#endif
