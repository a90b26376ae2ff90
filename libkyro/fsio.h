/*
 * fsio.h - the only module that calls the operating system for file I/O.
 * Every function fills MSG (KMSG_MAX bytes, may be NULL) with
 * "what failed 'PATH': why" on failure and returns the errno.  None retries
 * a failed fsync: a failure is final for the caller.
 */
#ifndef KYRO_FSIO_H
#define KYRO_FSIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

int kyro__fs_open(char *msg, const char *path, int flags, mode_t mode, int *fd);
void kyro__fs_close(int fd);
/* Write all N bytes at the file position, across short writes and EINTR. */
int kyro__fs_write_all(char *msg, int fd, const void *buf, size_t n,
		       const char *path);
int kyro__fs_pread_all(char *msg, int fd, void *buf, size_t n, uint64_t off,
		       const char *path, size_t *got);
int kyro__fs_fsync(char *msg, int fd, const char *path);
/* Start writeback of [OFF, OFF+LEN) without waiting (best effort): a large
 * file written this way leaves little for its final fsync, so a small
 * fsync elsewhere on the disk is not stuck behind it in the journal. */
void kyro__fs_writeback(int fd, uint64_t off, uint64_t len);
int kyro__fs_fsync_dir(char *msg, const char *dir);
int kyro__fs_rename(char *msg, const char *from, const char *to);
int kyro__fs_unlink(char *msg, const char *path);
int kyro__fs_truncate(char *msg, int fd, uint64_t len, const char *path);
/* Reserve blocks for [0, LEN) so that writes through a mapping cannot hit
 * a full disk (which would be SIGBUS, not an error). */
int kyro__fs_allocate(char *msg, int fd, uint64_t len, const char *path);
int kyro__fs_size(char *msg, int fd, const char *path, uint64_t *size);
/* What stat(2) says of a file: which file it is, and enough to tell
 * whether it was written since. */
struct fs_id {
	uint64_t dev, ino, size;
	int64_t ctime_sec, ctime_nsec;
};
int kyro__fs_id(char *msg, int fd, const char *path, struct fs_id *id);
/* The same of the file PATH names now; -1 when it cannot be had. */
int kyro__fs_id_path(const char *path, struct fs_id *id);
int kyro__fs_seek(char *msg, int fd, uint64_t off, const char *path);
/* flock(2); OP is LOCK_EX, LOCK_SH or LOCK_UN, optionally | LOCK_NB. */
int kyro__fs_lock(char *msg, int fd, int op, const char *path);
/* Map LEN bytes of FD from offset 0, shared; LEN 0 gives *P = NULL. */
int kyro__fs_map(char *msg, int fd, size_t len, int writable, const char *path,
		 void **p);
int kyro__fs_remap(char *msg, void *old, size_t oldlen, size_t newlen,
		   const char *path, void **p);
void kyro__fs_unmap(void *p, size_t len);
/* A mapping that lookups will read at random: no read-ahead, and huge
 * mappings where the page cache has large folios (fewer TLB misses). */
void kyro__fs_advise_random(const void *p, size_t len);
/* Fault a mapping in ahead of a sequential pass (best effort). */
void kyro__fs_populate(const void *p, size_t len);
/* Anonymous memory on transparent huge pages where the kernel has them;
 * NULL when it cannot be had.  Free with kyro__fs_free_huge(p, len). */
void *kyro__fs_alloc_huge(size_t len);
/* LEN bytes of zeroed memory whose pages the kernel supplies on first
 * touch (no memset, no fault for a page never used); NULL on failure.
 * Free with kyro__fs_free_huge(). */
void *kyro__fs_alloc_lazy(size_t len);
void kyro__fs_free_huge(void *p, size_t len);
/* Fault in LEN bytes of private memory at P (page-aligned) for writing,
 * ahead of their use (best effort). */
void kyro__fs_prefault(void *p, size_t len);
/* The machine's physical memory in bytes (0 when it cannot be told). */
uint64_t kyro__fs_mem_total(void);
/* Create DIR (mode 0755) and fsync its parent, so that the directory
 * survives a crash before anything is named inside it. */
int kyro__fs_mkdir_durable(char *msg, const char *dir);
/* *ISDIR: whether PATH names a directory (following symbolic links). */
int kyro__fs_is_dir(char *msg, const char *path, int *isdir);
/* PATH's size and last modification time (seconds since the epoch). */
int kyro__fs_stat(char *msg, const char *path, uint64_t *size,
		  int64_t *mtime);
/* Call FN with the name of every entry of DIR but "." and "..", until it
 * returns non-zero, which is returned. */
int kyro__fs_list_dir(char *msg, const char *dir,
		      int (*fn)(void *arg, const char *name), void *arg);

/* Write BUF to PATH atomically: PATH.tmp, fsync, rename, fsync DIR. */
int kyro__fs_replace_file(char *msg, const char *dir, const char *path,
			  const void *buf, size_t n);

#endif
