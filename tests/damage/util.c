/*
 * util.c - the sweep's small helpers (memory, buffers, files) and how it
 * runs a tool: spawned with a deadline, its output collected, a crash
 * or a sanitizer report told apart from an exit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sweep.h"

const char *bindir = "bin";
double timeout_s = 10;
char **tool_env;

/* ---------------------------------------------------------------------- */
/* Small helpers                                                          */

void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xmalloc(n), s, n);
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *s = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A growable byte buffer. */

void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Read a whole file into b (replacing its contents); 0 or errno. */
int read_file(const char *path, struct buf *b)
{
	b->len = 0;
	buf_add(b, "", 0);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	char tmp[65536];
	for (;;) {
		ssize_t n = read(fd, tmp, sizeof tmp);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return e;
		}
		if (n == 0)
			break;
		buf_add(b, tmp, (size_t)n);
	}
	close(fd);
	return 0;
}

void write_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("cannot create '%s': %s", path, strerror(errno));
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("cannot write '%s': %s", path, strerror(errno));
		c += w;
		n -= (size_t)w;
	}
	if (close(fd))
		die("cannot write '%s': %s", path, strerror(errno));
}

static int rm_one(const char *path, const struct stat *st, int type,
		  struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) ? -1 : 0;
}

void rm_rf(const char *path)
{
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) && errno != ENOENT)
		fprintf(stderr, PROG ": cannot remove '%s': %s\n", path,
			strerror(errno));
}

/* Remove every entry of a flat directory (the tools make no subdirs). */
void empty_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		die("cannot open '%s': %s", dir, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0))
			die("cannot remove '%s/%s': %s", dir, e->d_name,
			    strerror(errno));
	}
	closedir(d);
}

/* ---------------------------------------------------------------------- */
/* Running a tool                                                         */




static int sanitizer_report(const struct buf *err)
{
	static const char *const marks[] = {
		"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
		"runtime error:", "UndefinedBehaviorSanitizer",
	};
	for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
		if (err->p && strstr(err->p, marks[i]))
			return 1;
	return 0;
}

/*
 * Run bindir/TOOL with ARGS (NULL-terminated, without argv[0]), stdin from
 * IN, stdout and stderr into files in WDIR, and collect both.  A tool that
 * outlives timeout_s is killed: a hang is as bad as a crash.  SIGCHLD is
 * blocked in this process, so the wait can sleep on it with a deadline.
 */
void run_tool(const char *wdir, const char *in, struct run *r,
	      const char *tool, ...)
{
	char *argv[16];
	int argc = 0;
	argv[argc++] = xasprintf("%s/%s", bindir, tool);
	va_list ap;
	va_start(ap, tool);
	const char *a;
	while ((a = va_arg(ap, const char *)) && argc < 15)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;

	char *out = xasprintf("%s/out", wdir), *err = xasprintf("%s/err", wdir);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, in ? in : "/dev/null",
					 O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out,
					 O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_addopen(&fa, 2, err,
					 O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	sigset_t none, def;
	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGCHLD);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &def);
	posix_spawnattr_setflags(&at,
				 POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int e = posix_spawn(&pid, argv[0], &fa, &at, argv, tool_env);
	if (e)
		die("cannot run '%s': %s", argv[0], strerror(e));
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);

	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	const double deadline = now() + timeout_s;
	int st = 0;
	r->how = RUN_EXIT;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			die("waitpid: %s", strerror(errno));
		double left = deadline - now();
		if (left <= 0) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			r->how = RUN_TIMEOUT;
			break;
		}
		struct timespec ts = { (time_t)left,
				       (long)((left - (double)(time_t)left) * 1e9) };
		sigtimedwait(&chld, NULL, &ts);
	}
	if (r->how != RUN_TIMEOUT) {
		if (WIFSIGNALED(st)) {
			r->how = RUN_SIGNAL;
			r->code = WTERMSIG(st);
		} else {
			r->code = WEXITSTATUS(st);
		}
	}
	if ((e = read_file(out, &r->out)) || (e = read_file(err, &r->err)))
		die("cannot read the output of %s: %s", tool, strerror(e));
	if (r->how == RUN_EXIT &&
	    (r->code == SANITIZER_EXIT || sanitizer_report(&r->err)))
		r->how = RUN_SANITIZER;
	free(argv[0]);
	free(out);
	free(err);
}

/* One line saying how a run that is not a normal exit ended. */
void describe_crash(char *d, size_t cap, const char *tool,
		    const struct run *r)
{
	if (r->how == RUN_SIGNAL) {
		snprintf(d, cap, "%s: killed by signal %d (%s)", tool, r->code,
			 strsignal(r->code));
	} else if (r->how == RUN_TIMEOUT) {
		snprintf(d, cap, "%s: still running after %.0f s, killed", tool,
			 timeout_s);
	} else {
		const char *s = NULL;
		static const char *const marks[] = { "runtime error:",
						     "ERROR: AddressSanitizer",
						     "ERROR: LeakSanitizer",
						     "SUMMARY:" };
		for (size_t i = 0; !s && i < 4; i++)
			s = strstr(r->err.p, marks[i]);
		if (!s)
			s = r->err.p;
		const char *e = strchr(s, '\n');
		snprintf(d, cap, "%s: sanitizer report (exit %d): %.*s", tool,
			 r->code, e ? (int)(e - s) : (int)strlen(s), s);
	}
}

/* The first line of a message, for details. */
void first_line(char *d, size_t cap, const char *what,
		const struct buf *b)
{
	const char *s = b->p ? b->p : "";
	const char *e = strchr(s, '\n');
	snprintf(d, cap, "%s%.*s", what, e ? (int)(e - s) : (int)strlen(s), s);
}
