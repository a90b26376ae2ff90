/*
 * history.c - the history ID files (see history.h).
 *
 * THE FILES, in the data directory beside the store's own (no part of
 * the store's format: the library and the shell tools never read them,
 * and an image from GET /v1/image does not carry them):
 *
 *   HISTORY  a primary's: 33 bytes, 32 lowercase hex digits (16 bytes
 *            from getrandom(2)) and a newline.  Made by the first
 *            kyro-serve to run on the directory as a primary, and kept.
 *   FOLLOWS  a replica's: the same 33 bytes, the ID of the primary
 *            history its store is a copy of.  Written into DIR.bootstrap
 *            with the image, so that it arrives with the store it
 *            describes in the one rename that swaps them in.
 *
 * Recovery: each is written to a temporary name, fsynced, renamed, and
 * the directory fsynced, so it is whole or absent.  A file that is not
 * exactly 33 such bytes is an error naming it (remove it, and the next
 * start makes it again: a new history for a primary, a bootstrap for a
 * replica).  A missing FOLLOWS makes a replica bootstrap; a missing
 * HISTORY makes a primary a new history.
 *
 * A change's sum (history_change_sum()) is no file: XXH3-64 of its bytes,
 * seeded with XXH3-64 of a 21-byte little-endian header (sequence number,
 * key, byte length, op), computed alike by both sides from their feeds.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <xxhash.h>

#include "history.h"
#include "kyro.h"
#include "serve.h"

#define FILE_LEN (HISTORY_ID_LEN + 1)

static char served[HISTORY_ID_LEN + 1];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

void history_get(char id[HISTORY_ID_LEN + 1])
{
	pthread_mutex_lock(&mu);
	memcpy(id, served, sizeof served);
	pthread_mutex_unlock(&mu);
}

void history_set(const char *id)
{
	pthread_mutex_lock(&mu);
	snprintf(served, sizeof served, "%s", id);
	pthread_mutex_unlock(&mu);
}

int history_valid(const char *s)
{
	size_t i = 0;
	for (; i < HISTORY_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[i] == 0;
}

/* DIR/NAME into ID: 0, 1 when it does not exist, -1 with ERR set. */
static int read_id(const char *dir, const char *name,
		   char id[HISTORY_ID_LEN + 1], char *err, size_t errlen)
{
	char path[PATH_MAX], buf[FILE_LEN + 1];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		snprintf(err, errlen, "cannot open '%s': %s", path,
			 strerror(errno));
		return -1;
	}
	ssize_t n = read(fd, buf, sizeof buf);
	int e = errno;
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read '%s': %s", path,
			 strerror(e));
		return -1;
	}
	if (n != FILE_LEN || buf[HISTORY_ID_LEN] != '\n' ||
	    (buf[HISTORY_ID_LEN] = 0, !history_valid(buf))) {
		snprintf(err, errlen, "'%s' is not a history ID (32 hex "
			 "digits and a newline): remove it and start again",
			 path);
		return -1;
	}
	memcpy(id, buf, HISTORY_ID_LEN + 1);
	return 0;
}

int serve_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int rc = fsync(fd) ? errno : 0;
	close(fd);
	return rc;
}

static int write_id(const char *dir, const char *name, const char *id,
		    char *err, size_t errlen)
{
	char tmp[PATH_MAX], path[PATH_MAX], buf[FILE_LEN];
	snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	memcpy(buf, id, HISTORY_ID_LEN);
	buf[HISTORY_ID_LEN] = '\n';
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int rc = fd < 0 ? errno : 0;
	if (!rc && write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
		rc = errno ? errno : EIO;
	if (!rc && fsync(fd))
		rc = errno;
	if (fd >= 0 && close(fd) && !rc)
		rc = errno;
	if (!rc && rename(tmp, path))
		rc = errno;
	if (!rc)
		rc = serve_sync_dir(dir);
	if (rc) {
		unlink(tmp);
		snprintf(err, errlen, "cannot write '%s': %s", path,
			 strerror(rc));
		return -1;
	}
	return 0;
}

int history_init_primary(const char *dir, char *err, size_t errlen)
{
	char id[HISTORY_ID_LEN + 1], path[PATH_MAX];
	unsigned char r[HISTORY_ID_LEN / 2];
	snprintf(path, sizeof path, "%s/FOLLOWS", dir);
	if (unlink(path) == 0) {
		int rc = serve_sync_dir(dir);
		if (rc) {
			snprintf(err, errlen, "cannot remove '%s': %s", path,
				 strerror(rc));
			return -1;
		}
	} else if (errno != ENOENT) {
		snprintf(err, errlen, "cannot remove '%s': %s", path,
			 strerror(errno));
		return -1;
	}
	int rc = read_id(dir, "HISTORY", id, err, errlen);
	if (rc == 1) {
		if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
			snprintf(err, errlen, "getrandom: %s",
				 strerror(errno));
			return -1;
		}
		for (size_t i = 0; i < sizeof r; i++)
			snprintf(id + 2 * i, 3, "%02x", r[i]);
		rc = write_id(dir, "HISTORY", id, err, errlen);
	}
	if (rc)
		return -1;
	history_set(id);
	return 0;
}

int history_read_follows(const char *dir, char id[HISTORY_ID_LEN + 1],
			 char *err, size_t errlen)
{
	return read_id(dir, "FOLLOWS", id, err, errlen);
}

int history_write_follows(const char *dir, const char *id, char *err,
			  size_t errlen)
{
	return write_id(dir, "FOLLOWS", id, err, errlen);
}

int history_valid_sum(const char *s, uint64_t *sum)
{
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		int c = s[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return 0;
		v = v << 4 | (uint64_t)d;
	}
	if (s[16])
		return 0;
	*sum = v;
	return 1;
}

struct one {
	uint64_t seq, sum;
	int found;
};

static void le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static int sum_one(void *arg, const struct kyro_change *c)
{
	struct one *o = arg;
	unsigned char h[21];
	if (c->seq != o->seq)
		return 1; /* SEQ was not where the feed began: not found */
	le(h, c->seq, 8);
	le(h + 8, c->key, 8);
	le(h + 16, c->len, 4);
	h[20] = (unsigned char)c->op;
	o->sum = XXH3_64bits_withSeed(c->val, c->len, XXH3_64bits(h, 21));
	o->found = 1;
	return 1;
}

int history_change_sum(const char *dir, uint64_t seq, uint64_t *sum,
		       char *err, size_t errlen)
{
	struct one o = {.seq = seq};
	kyro_feed *f = NULL;
	int rc = kyro_feed_open(&f, dir, seq);
	if (rc == KYRO_EEXPIRED) {
		kyro_feed_close(f);
		return HISTORY_GONE;
	}
	/* The feed reads only what is committed; it never waits here. */
	if (!rc)
		rc = kyro_feed_read(f, 1, sum_one, &o, NULL);
	if (rc == 1)
		rc = 0;
	if (rc) {
		snprintf(err, errlen, "cannot read change %llu: %s",
			 (unsigned long long)seq,
			 f ? kyro_feed_errmsg(f) : kyro_strerror(rc));
		kyro_feed_close(f);
		return -1;
	}
	kyro_feed_close(f);
	if (!o.found)
		return HISTORY_AHEAD;
	*sum = o.sum;
	return 0;
}
