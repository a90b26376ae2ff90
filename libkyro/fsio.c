/*
 * fsio.c - file I/O against the OS, with messages that name the path.
 *
 * Why one module: durability rules live in one place (write, fsync,
 * rename, fsync the directory), fault injection (libfiu's POSIX preload)
 * reaches every call, and no other module has to remember EINTR.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsio.h"
#include "internal.h"

int kyro__fs_open(char *msg, const char *path, int flags, mode_t mode, int *fd)
{
	int f;
	do
		f = open(path, flags | O_CLOEXEC, mode);
	while (f < 0 && errno == EINTR);
	if (f < 0)
		return kyro__fail(msg, errno, "cannot open '%s'", path);
	*fd = f;
	return 0;
}

void kyro__fs_close(int fd)
{
	if (fd >= 0)
		close(fd);
}

int kyro__fs_write_all(char *msg, int fd, const void *buf, size_t n,
		       const char *path)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return kyro__fail(msg, errno, "cannot write '%s'",
					  path);
		}
		if (w == 0)
			return kyro__fail(msg, EIO, "cannot write '%s'", path);
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int kyro__fs_pread_all(char *msg, int fd, void *buf, size_t n, uint64_t off,
		       const char *path, size_t *got)
{
	char *p = buf;
	size_t done = 0;
	while (done < n) {
		ssize_t r = pread(fd, p + done, n - done, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return kyro__fail(msg, errno, "cannot read '%s'", path);
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	*got = done;
	return 0;
}

int kyro__fs_fsync(char *msg, int fd, const char *path)
{
	/* No retry on EINTR or anything else: after a failed fsync the
	 * kernel may have dropped the dirty pages, so a second call that
	 * succeeds proves nothing (PostgreSQL's "fsyncgate"). */
	if (fsync(fd) < 0)
		return kyro__fail(msg, errno, "cannot sync '%s'", path);
	return 0;
}

void kyro__fs_writeback(int fd, uint64_t off, uint64_t len)
{
	sync_file_range(fd, (off64_t)off, (off64_t)len, SYNC_FILE_RANGE_WRITE);
}

int kyro__fs_fsync_dir(char *msg, const char *dir)
{
	int fd, rc = kyro__fs_open(msg, dir, O_RDONLY | O_DIRECTORY, 0, &fd);
	if (rc)
		return rc;
	rc = kyro__fs_fsync(msg, fd, dir);
	close(fd);
	return rc;
}

int kyro__fs_rename(char *msg, const char *from, const char *to)
{
	if (rename(from, to) < 0)
		return kyro__fail(msg, errno, "cannot rename '%s' to '%s'",
				  from, to);
	return 0;
}

int kyro__fs_unlink(char *msg, const char *path)
{
	if (unlink(path) < 0 && errno != ENOENT)
		return kyro__fail(msg, errno, "cannot remove '%s'", path);
	return 0;
}

int kyro__fs_truncate(char *msg, int fd, uint64_t len, const char *path)
{
	int r;
	do
		r = ftruncate(fd, (off_t)len);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return kyro__fail(msg, errno, "cannot truncate '%s'", path);
	return 0;
}

int kyro__fs_allocate(char *msg, int fd, uint64_t len, const char *path)
{
	int r = posix_fallocate(fd, 0, (off_t)len);
	if (r == EOPNOTSUPP || r == ENOSYS) {
		/* No fallocate here: write the zeros ourselves. */
		static const char zeros[4096];
		for (uint64_t off = 0; off < len; off += sizeof zeros) {
			size_t n = len - off < sizeof zeros ? (size_t)(len - off)
							    : sizeof zeros;
			if (pwrite(fd, zeros, n, (off_t)off) != (ssize_t)n)
				return kyro__fail(msg, errno ? errno : EIO,
						  "cannot write '%s'", path);
		}
		return 0;
	}
	if (r)
		return kyro__fail(msg, r, "cannot write '%s'", path);
	return 0;
}

int kyro__fs_size(char *msg, int fd, const char *path, uint64_t *size)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return kyro__fail(msg, errno, "cannot stat '%s'", path);
	*size = (uint64_t)st.st_size;
	return 0;
}

int kyro__fs_seek(char *msg, int fd, uint64_t off, const char *path)
{
	if (lseek(fd, (off_t)off, SEEK_SET) < 0)
		return kyro__fail(msg, errno, "cannot seek '%s'", path);
	return 0;
}

int kyro__fs_lock(char *msg, int fd, int op, const char *path)
{
	int r;
	do
		r = flock(fd, op);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return kyro__fail(msg, errno, "cannot lock '%s'", path);
	return 0;
}

int kyro__fs_map(char *msg, int fd, size_t len, int writable, const char *path,
		 void **p)
{
	*p = NULL;
	if (len == 0)
		return 0;
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	void *m = mmap(NULL, len, prot, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return kyro__fail(msg, errno, "cannot map '%s'", path);
	*p = m;
	return 0;
}

int kyro__fs_remap(char *msg, void *old, size_t oldlen, size_t newlen,
		   const char *path, void **p)
{
	void *m = mremap(old, oldlen, newlen, MREMAP_MAYMOVE);
	if (m == MAP_FAILED)
		return kyro__fail(msg, errno, "cannot map '%s'", path);
	*p = m;
	return 0;
}

void kyro__fs_unmap(void *p, size_t len)
{
	if (p && len)
		munmap(p, len);
}

void kyro__fs_advise_random(const void *p, size_t len)
{
	if (!p || !len)
		return;
	madvise((void *)p, len, MADV_RANDOM);
	madvise((void *)p, len, MADV_HUGEPAGE);
}

void kyro__fs_populate(const void *p, size_t len)
{
	/* Where the page cache holds large folios, huge mappings spare the
	 * TLB walks of the random reads that follow. */
	if (p && len)
		madvise((void *)p, len, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_READ
	/* One call maps every page, instead of one fault per page. */
	if (p && len && madvise((void *)p, len, MADV_POPULATE_READ) == 0)
		return;
#endif
	if (p && len)
		madvise((void *)p, len, MADV_WILLNEED);
}

void *kyro__fs_alloc_huge(size_t len)
{
	if (len == 0)
		return NULL;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_HUGEPAGE);
	return p;
}

void kyro__fs_prefault(void *p, size_t len)
{
#ifdef MADV_POPULATE_WRITE
	if (p && len)
		madvise(p, len, MADV_POPULATE_WRITE);
#else
	(void)p;
	(void)len;
#endif
}

uint64_t kyro__fs_mem_total(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
	return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

void *kyro__fs_alloc_lazy(size_t len)
{
	if (len == 0)
		return NULL;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void kyro__fs_free_huge(void *p, size_t len)
{
	if (p && len)
		munmap(p, len);
}

int kyro__fs_mkdir_durable(char *msg, const char *dir)
{
	if (mkdir(dir, 0755) < 0)
		return kyro__fail(msg, errno, "cannot create '%s'", dir);
	char parent[PATH_MAX];
	snprintf(parent, sizeof parent, "%s", dir);
	return kyro__fs_fsync_dir(msg, dirname(parent));
}

int kyro__fs_is_dir(char *msg, const char *path, int *isdir)
{
	struct stat st;
	*isdir = 0;
	if (stat(path, &st) < 0)
		return kyro__fail(msg, errno, "cannot open '%s'", path);
	*isdir = S_ISDIR(st.st_mode) != 0;
	return 0;
}

static void fill_id(const struct stat *st, struct fs_id *id)
{
	id->dev = (uint64_t)st->st_dev;
	id->ino = (uint64_t)st->st_ino;
	id->size = (uint64_t)st->st_size;
	id->ctime_sec = (int64_t)st->st_ctim.tv_sec;
	id->ctime_nsec = (int64_t)st->st_ctim.tv_nsec;
}

int kyro__fs_id(char *msg, int fd, const char *path, struct fs_id *id)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return kyro__fail(msg, errno, "cannot stat '%s'", path);
	fill_id(&st, id);
	return 0;
}

int kyro__fs_id_path(const char *path, struct fs_id *id)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return -1;
	fill_id(&st, id);
	return 0;
}

int kyro__fs_stat(char *msg, const char *path, uint64_t *size,
		  int64_t *mtime)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return kyro__fail(msg, errno, "cannot stat '%s'", path);
	*size = (uint64_t)st.st_size;
	*mtime = (int64_t)st.st_mtime;
	return 0;
}

int kyro__fs_list_dir(char *msg, const char *dir,
		      int (*fn)(void *arg, const char *name), void *arg)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;
	if (!d)
		return kyro__fail(msg, errno, "cannot read '%s'", dir);
	while (!rc && (e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			rc = fn(arg, e->d_name);
	closedir(d);
	return rc;
}

int kyro__fs_replace_file(char *msg, const char *dir, const char *path,
			  const void *buf, size_t n)
{
	char tmp[PATH_MAX];
	int fd = -1, rc;
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return kyro__fail(msg, ENAMETOOLONG, "cannot write '%s'", path);
	rc = kyro__fs_open(msg, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644, &fd);
	if (rc)
		goto out;
	rc = kyro__fs_write_all(msg, fd, buf, n, tmp);
	if (!rc)
		rc = kyro__fs_fsync(msg, fd, tmp);
	if (!rc)
		rc = kyro__fs_rename(msg, tmp, path);
	if (!rc)
		rc = kyro__fs_fsync_dir(msg, dir);
out:
	kyro__fs_close(fd);
	if (rc)
		unlink(tmp);
	return rc;
}
