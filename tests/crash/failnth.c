/*
 * failnth.c - an LD_PRELOAD library that fails exactly the Nth call of one
 * system call wrapper, so a test can walk N = 1, 2, ... through every call
 * site of a tool deterministically.
 *
 * Why not libfiu alone: fiu-run fails a point always or with a
 * probability, but cannot say "only the 3rd fsync" (say, the directory
 * fsync after a rename), and this system's libfiu 1.1 crashes when a
 * program other than its own preload library calls fiu_enable*() (so
 * fiu_enable_external() with a counting callback is not an option).
 * The always/probability cases stay with fiu-run; this covers the rest.
 *
 *   FAILNTH_FUNC   open, write, fsync, fdatasync, rename, ftruncate, unlink
 *   FAILNTH_N      the call to fail, counting from 1
 *   FAILNTH_ERRNO  errno to fail with (default 5, EIO)
 *   FAILNTH_DIR=1  count only calls on directories (fsync, fdatasync)
 *   FAILNTH_MARK   a file created when the failure fires, so the test
 *                  knows the Nth call happened (written with raw system
 *                  calls, which this library does not see)
 *   FAILNTH_KILL=1 instead of failing the Nth call, kill the process with
 *                  SIGKILL just before it (a crash at that exact point,
 *                  for the crash test)
 *   FAILNTH_ALWAYS a second function that fails on every call from the
 *                  moment the Nth call has failed (say ftruncate, so that
 *                  the rollback after a failed write fails too)
 *
 * Only the named function is counted; every other call passes through.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static const char *func, *always;
static int fired;
static long target, calls;
static int err = EIO, dironly, killer;

__attribute__((constructor)) static void failnth_init(void)
{
	const char *n = getenv("FAILNTH_N");
	const char *e = getenv("FAILNTH_ERRNO");
	const char *d = getenv("FAILNTH_DIR");
	func = getenv("FAILNTH_FUNC");
	always = getenv("FAILNTH_ALWAYS");
	target = n ? strtol(n, NULL, 10) : 0;
	if (e)
		err = (int)strtol(e, NULL, 10);
	dironly = d && *d == '1';
	const char *k = getenv("FAILNTH_KILL");
	killer = k && *k == '1';
}

/* Is this call of NAME (on FD, or -1) the one to fail? */
static int fail_now(const char *name, int fd)
{
	if (fired && always && strcmp(always, name) == 0) {
		errno = err;
		return 1;
	}
	if (!func || target <= 0 || strcmp(func, name) != 0)
		return 0;
	if (dironly) {
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode))
			return 0;
	}
	if (++calls != target)
		return 0;
	fired = 1;
	const char *mark = getenv("FAILNTH_MARK");
	if (mark) {
		long m = syscall(SYS_openat, AT_FDCWD, mark,
				 O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (m >= 0)
			syscall(SYS_close, m);
	}
	if (killer)
		syscall(SYS_kill, (long)getpid(), (long)SIGKILL);
	errno = err;
	return 1;
}

#define REAL(ret, name, ...)                                                 \
	static ret (*real_##name)(__VA_ARGS__);                              \
	if (!real_##name)                                                    \
		*(void **)&real_##name = dlsym(RTLD_NEXT, #name)

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	REAL(int, open, const char *, int, ...);
	if (fail_now("open", -1))
		return -1;
	return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	REAL(int, open64, const char *, int, ...);
	if (fail_now("open", -1))
		return -1;
	return real_open64(path, flags, mode);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(ssize_t, write, int, const void *, size_t);
	if (fail_now("write", fd))
		return -1;
	return real_write(fd, buf, n);
}

int fsync(int fd)
{
	REAL(int, fsync, int);
	if (fail_now("fsync", fd))
		return -1;
	return real_fsync(fd);
}

int fdatasync(int fd)
{
	REAL(int, fdatasync, int);
	if (fail_now("fdatasync", fd))
		return -1;
	return real_fdatasync(fd);
}

int rename(const char *from, const char *to)
{
	REAL(int, rename, const char *, const char *);
	if (fail_now("rename", -1))
		return -1;
	return real_rename(from, to);
}

int ftruncate(int fd, off_t len)
{
	REAL(int, ftruncate, int, off_t);
	if (fail_now("ftruncate", fd))
		return -1;
	return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off_t len)
{
	REAL(int, ftruncate64, int, off_t);
	if (fail_now("ftruncate", fd))
		return -1;
	return real_ftruncate64(fd, len);
}

int unlink(const char *path)
{
	REAL(int, unlink, const char *);
	if (fail_now("unlink", -1))
		return -1;
	return real_unlink(path);
}
