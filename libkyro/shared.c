/*
 * shared.c - the LOCK file.
 *
 * Writers serialize with flock(LOCK_EX) on it.  Its first 4096 bytes are
 * also a page that every process maps shared, so that a long-running
 * reader learns of another process's commit with one atomic load (the idea
 * of LMDB's lock file).  The page is a cache of what is on disk, never the
 * truth: it is in native byte order, never leaves the machine, and is
 * trusted only when its boot id matches this boot (a page from before a
 * reboot may describe writes the disk never kept).
 *
 *    0  8  magic "KYROLOCK"
 *    8  4  layout version (1)
 *   12  4  reserved
 *   16 16  boot id of the writer that last published (binary)
 *   32  8  change counter: a seqlock, odd while a writer publishes
 *   40  8  manifest generation
 *   48  8  WAL segment of the committed end
 *   56  8  byte offset of the committed end in that segment
 *   64  8  last committed sequence number
 *
 * A writer that dies halfway through publishing leaves the counter odd;
 * readers then treat the page as untrustworthy until the next writer,
 * which recovers from the files under the lock and publishes afresh.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

#include "fsio.h"
#include "internal.h"
#include "shared.h"

#define PAGE 4096
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

int shared_open(char *msg, struct shared *s, const char *dir, int writable)
{
	uint64_t size;
	memset(s, 0, sizeof *s);
	s->fd = -1;
	int rc = kpath(s->path, dir, KYRO_LOCKFILE);
	if (rc)
		return kfail(msg, rc, "cannot open '%s/%s'", dir,
			     KYRO_LOCKFILE);
	if (!writable) {
		/* Readers open it read-write when they may, to map it; a
		 * read-only store (or none yet) means no news, not an
		 * error. */
		if (fs_open(NULL, s->path, O_RDONLY, 0, &s->fd))
			return 0;
		if (!fs_size(NULL, s->fd, s->path, &size) && size >= PAGE)
			fs_map(NULL, s->fd, PAGE, 0, s->path,
			       (void **)&s->page);
		return 0;
	}
	rc = fs_open(msg, s->path, O_RDWR | O_CREAT, 0644, &s->fd);
	if (!rc)
		rc = fs_size(msg, s->fd, s->path, &size);
	/* Allocating is idempotent, so racing openers are harmless: a zero
	 * page has no magic and is simply not trusted yet.  Real blocks,
	 * not a hole: the page is written through the mapping, where a
	 * full disk would be SIGBUS instead of an error. */
	if (!rc && size < PAGE)
		rc = fs_allocate(msg, s->fd, PAGE, s->path);
	if (!rc)
		rc = fs_map(msg, s->fd, PAGE, 1, s->path, (void **)&s->page);
	if (rc)
		shared_close(s);
	return rc;
}

void shared_close(struct shared *s)
{
	if (s->locked)
		shared_unlock(s);
	fs_unmap(s->page, PAGE);
	fs_close(s->fd);
	s->page = NULL;
	s->fd = -1;
}

int shared_lock(char *msg, struct shared *s)
{
	int rc = fs_lock(msg, s->fd, LOCK_EX, s->path);
	if (!rc)
		s->locked = 1;
	return rc;
}

void shared_unlock(struct shared *s)
{
	if (s->locked)
		fs_lock(NULL, s->fd, LOCK_UN, s->path);
	s->locked = 0;
}

static uint64_t *field(const struct shared *s, int off)
{
	return (uint64_t *)(s->page + off);
}

int shared_read(const struct shared *s, struct shared_state *st,
		uint64_t *change)
{
	unsigned char id[16];
	if (!s->page)
		return -1;
	boot_id(id);
	for (int tries = 0; tries < 4; tries++) {
		uint64_t c1 = __atomic_load_n(field(s, 32), __ATOMIC_ACQUIRE);
		if (c1 & 1)
			continue;
		int ok = memcmp(s->page, magic, 8) == 0 &&
			 get_le32(s->page + 8) == 1 &&
			 memcmp(s->page + 16, id, 16) == 0;
		st->manifest_gen = __atomic_load_n(field(s, 40), __ATOMIC_RELAXED);
		st->wal_seg = __atomic_load_n(field(s, 48), __ATOMIC_RELAXED);
		st->wal_end = __atomic_load_n(field(s, 56), __ATOMIC_RELAXED);
		st->last_seq = __atomic_load_n(field(s, 64), __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(field(s, 32), __ATOMIC_RELAXED) != c1)
			continue;
		*change = c1;
		return ok ? 0 : -1;
	}
	return -1;
}

void shared_publish(struct shared *s, const struct shared_state *st)
{
	unsigned char id[16];
	KYRO_VERIFY(s->locked && s->page);
	boot_id(id);
	uint64_t c = __atomic_load_n(field(s, 32), __ATOMIC_RELAXED);
	/* Leave the odd value of a writer that died mid-publish behind. */
	c = (c | 1) + 0;
	__atomic_store_n(field(s, 32), c, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(s->page, magic, 8);
	put_le32(s->page + 8, 1);
	memcpy(s->page + 16, id, 16);
	__atomic_store_n(field(s, 40), st->manifest_gen, __ATOMIC_RELAXED);
	__atomic_store_n(field(s, 48), st->wal_seg, __ATOMIC_RELAXED);
	__atomic_store_n(field(s, 56), st->wal_end, __ATOMIC_RELAXED);
	__atomic_store_n(field(s, 64), st->last_seq, __ATOMIC_RELAXED);
	__atomic_store_n(field(s, 32), c + 1, __ATOMIC_RELEASE);
}
