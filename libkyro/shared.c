/*
 * shared.c - the LOCK file.
 *
 * Writers serialize with flock(LOCK_EX) on it.  Its first 4096 bytes are
 * also a page that every process maps shared, so that a long-running
 * reader learns of another process's commit with one atomic load (the idea
 * of LMDB's lock file).  The page is a cache of what is on disk, never the
 * truth: it is in native byte order, never leaves the machine, and is
 * trusted only when its boot id matches this boot (a page from before a
 * reboot may describe writes the disk never kept) and its checksum holds.
 *
 * Layout version 2:
 *
 *    0  8  magic "KYROLOCK"
 *    8  4  layout version (2)
 *   12  4  flags: bit 0, the bytes after the committed end are void
 *          (SHARED_VOID_TAIL, shared.h); other bits zero.  Binaries
 *          before the flag wrote zero here and ignore it.
 *   16 16  boot id of the writer that last published (binary)
 *   32  8  change counter: a seqlock, odd while a writer publishes
 *   40  8  manifest generation
 *   48  8  WAL segment of the committed end
 *   56  8  byte offset of the committed end in that segment
 *   64  8  last committed sequence number
 *   72  8  XXH3-64 of bytes 0..71, computed with the counter at the even
 *          value it has once the publish is complete (so a flipped byte
 *          anywhere, the counter included, is caught)
 *   80     zero up to 4096
 *
 * Rules.  A writer that dies halfway through publishing leaves the counter
 * odd; a page that fails its checksum, is odd, is of another boot or of
 * layout version 1 (written by older binaries, without a checksum) is not
 * trusted: readers keep what they have and the next writer rebuilds it
 * from the files under the lock.  Even a trusted page is checked against
 * the WAL by every writer before it appends (writer.c): a page that
 * claims more committed data than the files hold is refused, a tail it
 * marks void is cut, any other disagreement is settled in favour of the
 * files.  Readers check the
 * checksum only when the counter moved: the fast path stays one load.
 *
 * The counter's low 32 bits are also a futex: every publish ends with a
 * FUTEX_WAKE on it, so that a change-feed follower (feed.c) sleeps in
 * FUTEX_WAIT until the next commit instead of polling.  A writer that
 * does not wake (an older build) only delays a follower to its timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <linux/futex.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "fsio.h"
#include "internal.h"
#include "shared.h"

#define PAGE SHARED_PAGE
static const char magic[8] = "KYROLOCK";

static void boot_id(unsigned char id[16])
{
	static unsigned char cached[16];
	static int have;
	memset(id, 0, 16);
	if (!have) {
		char text[64] = "";
		FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
		if (f) {
			if (!fgets(text, sizeof text, f))
				text[0] = 0;
			fclose(f);
		}
		/* Pack the hex digits; without /proc the id stays zero and
		 * the page is still trusted, as on a system that never
		 * reboots under a reader. */
		int n = 0;
		for (const char *p = text; *p && n < 32; p++) {
			int v = *p >= '0' && *p <= '9'   ? *p - '0'
				: *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
							 : -1;
			if (v < 0)
				continue;
			cached[n / 2] |= (unsigned char)(n % 2 ? v : v << 4);
			n++;
		}
		have = 1;
	}
	memcpy(id, cached, 16);
}

int kyro__shared_open(char *msg, struct shared *s, const char *dir,
		      int writable)
{
	uint64_t size;
	memset(s, 0, sizeof *s);
	s->fd = -1;
	int rc = kyro__path(s->path, dir, KYRO_LOCKFILE);
	if (rc)
		return kyro__fail(msg, rc, "cannot open '%s/%s'", dir,
				  KYRO_LOCKFILE);
	if (!writable) {
		/* Readers open it read-write when they may, to map it; a
		 * read-only store (or none yet) means no news, not an
		 * error. */
		if (kyro__fs_open(NULL, s->path, O_RDONLY, 0, &s->fd))
			return 0;
		if (!kyro__fs_size(NULL, s->fd, s->path, &size) && size >= PAGE)
			kyro__fs_map(NULL, s->fd, PAGE, 0, s->path,
				     (void **)&s->page);
		return 0;
	}
	rc = kyro__fs_open(msg, s->path, O_RDWR | O_CREAT, 0644, &s->fd);
	if (!rc)
		rc = kyro__fs_size(msg, s->fd, s->path, &size);
	/* Allocating is idempotent, so racing openers are harmless: a zero
	 * page has no magic and is simply not trusted yet.  Real blocks,
	 * not a hole: the page is written through the mapping, where a
	 * full disk would be SIGBUS instead of an error. */
	if (!rc && size < PAGE)
		rc = kyro__fs_allocate(msg, s->fd, PAGE, s->path);
	if (!rc)
		rc = kyro__fs_map(msg, s->fd, PAGE, 1, s->path,
				  (void **)&s->page);
	if (rc)
		kyro__shared_close(s);
	return rc;
}

void kyro__shared_close(struct shared *s)
{
	if (s->locked)
		kyro__shared_unlock(s);
	kyro__fs_unmap(s->page, PAGE);
	kyro__fs_close(s->fd);
	s->page = NULL;
	s->fd = -1;
}

int kyro__shared_lock(char *msg, struct shared *s)
{
	int rc = kyro__fs_lock(msg, s->fd, LOCK_EX, s->path);
	if (!rc)
		s->locked = 1;
	return rc;
}

void kyro__shared_unlock(struct shared *s)
{
	if (s->locked)
		kyro__fs_lock(NULL, s->fd, LOCK_UN, s->path);
	s->locked = 0;
}

static uint64_t *field(const struct shared *s, int off)
{
	return (uint64_t *)(s->page + off);
}

static uint64_t page_sum(const unsigned char *b, uint64_t change)
{
	unsigned char tmp[SHARED_SUM];
	memcpy(tmp, b, SHARED_SUM);
	memcpy(tmp + 32, &change, 8);
	return XXH3_64bits(tmp, SHARED_SUM);
}

int kyro__shared_check(const unsigned char *b, size_t len,
		       struct shared_state *st, uint64_t *off, const char **why)
{
	static const unsigned char zero[16];
	unsigned char id[16];
	uint64_t change;
	*off = 0;
	if (len < SHARED_USED || memcmp(b, magic, 8) != 0) {
		for (size_t i = 0; i < len; i++)
			if (b[i]) {
				*off = i;
				*why = "not a shared page (bad magic)";
				return SHARED_BAD;
			}
		*why = "never published";
		return SHARED_FRESH;
	}
	if (get_le32(b + 8) != SHARED_LAYOUT) {
		*off = 8;
		*why = "layout version 1, written without a checksum";
		return get_le32(b + 8) == 1 ? SHARED_OLD : SHARED_BAD;
	}
	memcpy(&change, b + 32, 8);
	if (change & 1) {
		*off = 32;
		*why = "a writer died while publishing it";
		return SHARED_ODD;
	}
	if (page_sum(b, change) != get_le64(b + SHARED_SUM)) {
		*off = SHARED_SUM;
		*why = "fails its checksum";
		return SHARED_BAD;
	}
	for (size_t i = SHARED_USED; i < len; i += sizeof zero) {
		size_t n = len - i < sizeof zero ? len - i : sizeof zero;
		if (memcmp(b + i, zero, n)) {
			while (!b[i])
				i++;
			*off = i;
			*why = "bytes after the checksum are not zero";
			return SHARED_BAD;
		}
	}
	memcpy(&st->manifest_gen, b + 40, 8);
	memcpy(&st->wal_seg, b + 48, 8);
	memcpy(&st->wal_end, b + 56, 8);
	memcpy(&st->last_seq, b + 64, 8);
	uint32_t flags;
	memcpy(&flags, b + 12, 4);
	st->flags = flags;
	boot_id(id);
	if (memcmp(b + 16, id, 16) != 0) {
		*off = 16;
		*why = "published before the last reboot";
		return SHARED_OTHER_BOOT;
	}
	return SHARED_OK;
}

int kyro__shared_read(const struct shared *s, struct shared_state *st,
		      uint64_t *change)
{
	if (!s->page)
		return -1;
	for (int tries = 0; tries < 4; tries++) {
		uint64_t copy[SHARED_USED / 8], off;
		const char *why;
		uint64_t c1 = __atomic_load_n(field(s, 32), __ATOMIC_ACQUIRE);
		if (c1 & 1)
			continue;
		for (int i = 0; i < SHARED_USED / 8; i++)
			copy[i] = __atomic_load_n(field(s, 8 * i),
						  __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(field(s, 32), __ATOMIC_RELAXED) != c1)
			continue;
		*change = c1;
		return kyro__shared_check((const unsigned char *)copy,
					  sizeof copy, st, &off,
					  &why) == SHARED_OK
			       ? 0
			       : -1;
	}
	return -1;
}

void kyro__shared_publish(struct shared *s, const struct shared_state *st)
{
	uint64_t b[SHARED_USED / 8];
	KYRO_VERIFY(s->locked && s->page);
	uint64_t c = __atomic_load_n(field(s, 32), __ATOMIC_RELAXED);
	/* Leave the odd value of a writer that died mid-publish behind. */
	c |= 1;
	__atomic_store_n(field(s, 32), c, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memset(b, 0, sizeof b);
	memcpy(b, magic, 8);
	put_le32((unsigned char *)b + 8, SHARED_LAYOUT);
	uint32_t flags = (uint32_t)st->flags;
	memcpy((unsigned char *)b + 12, &flags, 4);
	boot_id((unsigned char *)b + 16);
	b[5] = st->manifest_gen;
	b[6] = st->wal_seg;
	b[7] = st->wal_end;
	b[8] = st->last_seq;
	b[9] = page_sum((const unsigned char *)b, c + 1);
	for (int i = 0; i < SHARED_USED / 8; i++)
		if (i != 4)
			__atomic_store_n(field(s, 8 * i), b[i],
					 __ATOMIC_RELAXED);
	/* Whatever an older layout or damage left after the fields goes:
	 * a page of this layout is zero there. */
	memset(s->page + SHARED_USED, 0, PAGE - SHARED_USED);
	__atomic_store_n(field(s, 32), c + 1, __ATOMIC_RELEASE);
	kyro__shared_wake(s);
}

/* The futex is the counter's low half (offset 32 on this little-endian
 * host): it changes with every publish.  Not FUTEX_PRIVATE: waiters are
 * other processes mapping the same file, keyed by inode and offset. */
static uint32_t *futex_word(const struct shared *s)
{
	return (uint32_t *)(s->page + 32);
}

void kyro__shared_wake(const struct shared *s)
{
	if (s->page)
		syscall(SYS_futex, futex_word(s), FUTEX_WAKE, INT_MAX, NULL,
			NULL, 0);
}

int kyro__shared_wait(const struct shared *s, uint64_t change, int timeout_ms)
{
	struct timespec ts, *t = NULL;
	if (!s->page)
		return ENOENT;
	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
		t = &ts;
	}
	if (syscall(SYS_futex, futex_word(s), FUTEX_WAIT, (uint32_t)change, t,
		    NULL, 0) == 0)
		return 0;
	/* EAGAIN: the counter moved before the wait began, which is news
	 * too. */
	return errno == EAGAIN ? 0 : errno;
}
