/*
 * sweep.c - the damage sweep.  It builds a small store with the real tools
 * (every kind of file present: WAL with committed batches and vectors, a
 * snapshot, its learned index, its vectors and their graph, MANIFEST,
 * LOCK, SNAPSHOT.lock), then, for every byte of every file, flips the byte
 * in a copy of the store and runs the tools on the copy:
 *
 *   kyro-verify -d D         must exit non-zero and name the damaged file
 *                            (--deep for the graph);
 *   kyro-get -d D -f tsv     with every key ever written on stdin: the
 *                            right answers, or exit 2 with a message;
 *   kyro-get --nearest       through the graph and with --exact, a few
 *                            query vectors: the exact answer (the graph
 *                            is searched with ef >= n), or exit 2 with a
 *                            message;
 *   kyro-put -d D            one new batch: exit 0 and then every
 *                            acknowledged batch reads right (or the read
 *                            exits 2 with a message), or exit 2.
 *
 * The expected state lives here, outside the store.  The tools are black
 * boxes: this program never links libkyro, so it judges what a user would
 * see.  tests/damage/README.md says how to run it and what the counts mean.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PROG "sweep"

/* Sanitizer runtimes exit with this status when they report, so a report
 * is told apart from the tools' own 0, 1 and 2. */
#define SANITIZER_EXIT 86

/* Files over this size get a sample of positions instead of every byte. */
#define SMALL_FILE (64 * 1024)
#define BIG_FILE_HEADER 512
#define BIG_FILE_POSITIONS 2000

/* Detail lines printed per category and file. */
#define FIRST_FEW 5

/*
 * Bytes that provably carry no data: a flip there changes no answer and no
 * later write, so kyro-verify need not report it.  Every entry must be
 * listed as padding in docs/FORMAT.md, with the same bounds.  The format's
 * design leaves none (reserved bytes must be zero, padding lies inside a
 * checksum, the LOCK page's unused bytes must be zero), so the table is
 * empty; the mechanism stays so that a format that ever needs an entry
 * states it here and in docs/FORMAT.md together.
 */
static const struct nodata {
	const char *prefix, *suffix; /* file name pattern */
	uint64_t lo, hi;	     /* bytes lo..hi, both included */
} nodata[] = {
	{ NULL, NULL, 0, 0 },
};

/* ---------------------------------------------------------------------- */
/* Small helpers                                                          */

static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xmalloc(n), s, n);
}

static char *xasprintf(const char *fmt, ...)
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

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A growable byte buffer. */
struct buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Read a whole file into b (replacing its contents); 0 or errno. */
static int read_file(const char *path, struct buf *b)
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

static void write_file(const char *path, const void *p, size_t n)
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

static void rm_rf(const char *path)
{
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) && errno != ENOENT)
		fprintf(stderr, PROG ": cannot remove '%s': %s\n", path,
			strerror(errno));
}

/* Remove every entry of a flat directory (the tools make no subdirs). */
static void empty_dir(const char *dir)
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

static const char *bindir = "bin";
static double timeout_s = 10;
static char **tool_env;

enum { RUN_EXIT, RUN_SIGNAL, RUN_TIMEOUT, RUN_SANITIZER };

struct run {
	int how;    /* RUN_* */
	int code;   /* exit status or signal */
	struct buf out, err;
};

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
static void run_tool(const char *wdir, const char *in, struct run *r,
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
static void describe_crash(char *d, size_t cap, const char *tool,
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
static void first_line(char *d, size_t cap, const char *what,
		       const struct buf *b)
{
	const char *s = b->p ? b->p : "";
	const char *e = strchr(s, '\n');
	snprintf(d, cap, "%s%.*s", what, e ? (int)(e - s) : (int)strlen(s), s);
}

/* ---------------------------------------------------------------------- */
/* The expected state                                                     */

struct val {
	int present;
	size_t len;
	char *p;
};

/* Every key ever written (and a few never written), in the order of the
 * key list given to kyro-get. */
static uint64_t *keys;
static size_t nkeys;
static struct val *state;   /* now */
static struct val *state1;  /* after the sweep's own new batch */

static size_t key_index(uint64_t k)
{
	for (size_t i = 0; i < nkeys; i++)
		if (keys[i] == k)
			return i;
	keys = xrealloc(keys, (nkeys + 1) * sizeof *keys);
	state = xrealloc(state, (nkeys + 1) * sizeof *state);
	keys[nkeys] = k;
	state[nkeys] = (struct val){ 0, 0, NULL };
	return nkeys++;
}

/* For answering "which key is this line about" in O(log n) per line. */
struct kidx {
	uint64_t key;
	size_t i;
};
static struct kidx *sorted;

static int kidx_cmp(const void *a, const void *b)
{
	const struct kidx *x = a, *y = b;
	return x->key < y->key ? -1 : x->key > y->key;
}

static long find_key(uint64_t k)
{
	size_t lo = 0, hi = nkeys;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sorted[mid].key < k)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < nkeys && sorted[lo].key == k ? (long)sorted[lo].i : -1;
}

/* kyro-put's input escapes (kyro-put(1)). */
static void escape(struct buf *b, const char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		char e[4] = { '\\', 0, 0, 0 };
		size_t el = 2;
		switch (c) {
		case '\\': e[1] = '\\'; break;
		case '\t': e[1] = 't'; break;
		case '\n': e[1] = 'n'; break;
		case '\r': e[1] = 'r'; break;
		case 0: e[1] = '0'; break;
		default:
			if (c < 0x20 || c == 0x7f) {
				e[1] = 'x';
				e[2] = hex[c >> 4];
				e[3] = hex[c & 15];
				el = 4;
			} else {
				e[0] = (char)c;
				el = 1;
			}
		}
		buf_add(b, e, el);
	}
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode kyro-get's escapes from S (N bytes) into b; 0, or -1 when S is
 * not a validly escaped value. */
static int unescape(struct buf *b, const char *s, size_t n)
{
	b->len = 0;
	buf_add(b, "", 0);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c != '\\') {
			buf_add(b, &c, 1);
			continue;
		}
		if (++i == n)
			return -1;
		switch (s[i]) {
		case '\\': c = '\\'; break;
		case 't': c = '\t'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case '0': c = 0; break;
		case 'x': {
			int h1 = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
			int h2 = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
			if (h1 < 0 || h2 < 0)
				return -1;
			c = (char)(h1 << 4 | h2);
			i += 2;
			break;
		}
		default:
			return -1;
		}
		buf_add(b, &c, 1);
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Building the store                                                     */

/* Spread, not uniform, so that the learned index has a shape to learn. */
static uint64_t key_of(unsigned i)
{
	return (uint64_t)i * i * 7919u + (uint64_t)i * 13u;
}

/* Value number I written by generation G: empty, short, with every kind
 * of byte that needs an escape, medium, and a few KB for two of them. */
static void value_of(struct buf *b, unsigned i, unsigned g)
{
	b->len = 0;
	buf_add(b, "", 0);
	if (i == 18) {
		for (unsigned j = 0; j < 700; j++)
			buf_add(b, &"abcdefghijklmnopqrstuvwxyz0123456789"[(j + g) % 36], 1);
		return;
	}
	if (i == 45) {
		for (unsigned j = 0; j < 300; j++) {
			char c = (char)(j * 7 + g);
			buf_add(b, &c, 1);
		}
		return;
	}
	switch (i % 5) {
	case 0:
		return;
	case 2: {
		static const char esc[] = "\t\n\\\r\0\001\037\177\200\376\377 x\\t";
		buf_add(b, esc, sizeof esc - 1);
		buf_printf(b, "e%u.%u", i, g);
		return;
	}
	case 3:
		buf_printf(b, "medium %u.%u ", i, g);
		for (unsigned j = 0; j < i % 17; j++)
			buf_add(b, "-", 1);
		return;
	default:
		buf_printf(b, "v%u.%u", i, g);
	}
}

struct batch {
	struct buf in;    /* kyro-put's stdin */
	int del;
	size_t *idx;      /* keys written, by index */
	struct val *val;
	size_t n;
};

static void batch_put(struct batch *bt, uint64_t k, const char *p, size_t n)
{
	buf_printf(&bt->in, "%" PRIu64 "\t", k);
	escape(&bt->in, p, n);
	buf_add(&bt->in, "\n", 1);
	bt->idx = xrealloc(bt->idx, (bt->n + 1) * sizeof *bt->idx);
	bt->val = xrealloc(bt->val, (bt->n + 1) * sizeof *bt->val);
	bt->idx[bt->n] = key_index(k);
	char *c = xmalloc(n);
	memcpy(c, p, n);
	bt->val[bt->n++] = (struct val){ 1, n, c };
}

static void batch_del(struct batch *bt, uint64_t k)
{
	bt->del = 1;
	buf_printf(&bt->in, "%" PRIu64 "\n", k);
	bt->idx = xrealloc(bt->idx, (bt->n + 1) * sizeof *bt->idx);
	bt->val = xrealloc(bt->val, (bt->n + 1) * sizeof *bt->val);
	bt->idx[bt->n] = key_index(k);
	bt->val[bt->n++] = (struct val){ 0, 0, NULL };
}

static void apply(struct val *st, const struct batch *bt)
{
	for (size_t j = 0; j < bt->n; j++)
		st[bt->idx[j]] = bt->val[j];
}

/* ---------------------------------------------------------------------- */
/* The vectors                                                            */

/*
 * Every component is a small integer, every query component a multiple of
 * 1/4: each squared difference and every partial sum is then exact in
 * float32, so the distance the tools print does not depend on the order
 * in which a kernel adds, and the sweep's own sums are the tools' to the
 * bit.  The graph is built with M 2, the smallest the format allows (each
 * byte of its link lists costs six tool runs).
 */
#define VDIM 8
#define NEAREST_K 6
#define NEAREST_EF 64
#define NQUERIES 4

struct vec {
	uint64_t key;
	int present;
	float v[VDIM];
};
static struct vec *vstate;	/* every key ever given a vector, now */
static size_t nvkeys;
static float queries[NQUERIES][VDIM];

static size_t vkey_index(uint64_t k)
{
	for (size_t i = 0; i < nvkeys; i++)
		if (vstate[i].key == k)
			return i;
	vstate = xrealloc(vstate, (nvkeys + 1) * sizeof *vstate);
	vstate[nvkeys] = (struct vec){ k, 0, { 0 } };
	return nvkeys++;
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15u;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
	return x ^ (x >> 31);
}

/* Vector number I of generation G: integers from -8 to 8. */
static void vec_of(float *v, unsigned i, unsigned g)
{
	for (unsigned j = 0; j < VDIM; j++)
		v[j] = (float)((int)(mix((uint64_t)i << 16 | g << 8 | j) % 17)
			       - 8);
}

static void vec_text(struct buf *b, const float *v)
{
	for (unsigned j = 0; j < VDIM; j++)
		buf_printf(b, "%s%g", j ? "," : "", (double)v[j]);
}

/* A batch of kyro-put --vectors: KEY<TAB>VECTOR, or with a value. */
struct vbatch {
	struct buf in;
	struct batch values;	/* the values of three-field lines */
	size_t *vi;
	float (*v)[VDIM];
	size_t n;
};

static void vbatch_put(struct vbatch *vb, uint64_t k, const float *v,
		       const char *val, size_t vlen)
{
	buf_printf(&vb->in, "%" PRIu64 "\t", k);
	if (val) {
		escape(&vb->in, val, vlen);
		buf_add(&vb->in, "\t", 1);
		batch_put(&vb->values, k, val, vlen);
	} else {
		key_index(k);	/* asked too: a key with a vector and no value
				 * reads as not found */
	}
	vec_text(&vb->in, v);
	buf_add(&vb->in, "\n", 1);
	vb->vi = xrealloc(vb->vi, (vb->n + 1) * sizeof *vb->vi);
	vb->v = xrealloc(vb->v, (vb->n + 1) * sizeof *vb->v);
	vb->vi[vb->n] = vkey_index(k);
	memcpy(vb->v[vb->n++], v, sizeof *vb->v);
}

/* A DELETE removes the key's vector with its value. */
static void vec_apply_deletes(const struct batch *bt)
{
	for (size_t j = 0; j < bt->n; j++)
		if (!bt->val[j].present)
			for (size_t i = 0; i < nvkeys; i++)
				if (vstate[i].key == keys[bt->idx[j]])
					vstate[i].present = 0;
}

static void setup_vbatch(const char *top, const char *store, struct vbatch *vb)
{
	char *in = xasprintf("%s/setup.in", top);
	write_file(in, vb->in.p, vb->in.len);
	struct run r = { 0 };
	run_tool(top, in, &r, "kyro-put", "-d", store, "--vectors", NULL);
	if (r.how != RUN_EXIT || r.code != 0 || r.out.len || r.err.len)
		die("building the store: kyro-put --vectors failed (%s %d): %s",
		    r.how == RUN_EXIT ? "exit" : "signal/timeout/sanitizer",
		    r.code, r.err.p);
	apply(state, &vb->values);
	for (size_t j = 0; j < vb->n; j++) {
		vstate[vb->vi[j]].present = 1;
		memcpy(vstate[vb->vi[j]].v, vb->v[j], sizeof vb->v[j]);
	}
	free(in);
	free(r.out.p);
	free(r.err.p);
	free(vb->in.p);
	free(vb->values.in.p);
	free(vb->values.idx);
	free(vb->values.val);
	free(vb->vi);
	free(vb->v);
	*vb = (struct vbatch){ 0 };
}

/* Squared L2: exact here, see above. */
static float dist(const float *a, const float *b)
{
	float s = 0;
	for (unsigned j = 0; j < VDIM; j++)
		s += (a[j] - b[j]) * (a[j] - b[j]);
	return s;
}

struct hit {
	float d;
	uint64_t key;
};

static int hit_cmp(const void *a, const void *b)
{
	const struct hit *x = a, *y = b;
	if (x->d != y->d)
		return x->d < y->d ? -1 : 1;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* The expected answers: for each query the NEAREST_K live vectors by
 * distance, equal distances in key order as kyro-get(1) says. */
static struct hit expect[NQUERIES][NEAREST_K];
static size_t nexpect[NQUERIES];

static void expect_nearest(void)
{
	struct hit *h = xmalloc(nvkeys * sizeof *h);
	for (unsigned q = 0; q < NQUERIES; q++) {
		size_t n = 0;
		for (size_t i = 0; i < nvkeys; i++)
			if (vstate[i].present)
				h[n++] = (struct hit){
					dist(queries[q], vstate[i].v),
					vstate[i].key };
		qsort(h, n, sizeof *h, hit_cmp);
		nexpect[q] = n < NEAREST_K ? n : NEAREST_K;
		memcpy(expect[q], h, nexpect[q] * sizeof *h);
	}
	free(h);
}

/* ---------------------------------------------------------------------- */
/* Building the store: the batches                                        */

/* Run kyro-put on one batch of the setup; it must succeed silently. */
static void setup_batch(const char *top, const char *store, struct batch *bt)
{
	char *in = xasprintf("%s/setup.in", top);
	write_file(in, bt->in.p, bt->in.len);
	struct run r = { 0 };
	if (bt->del)
		run_tool(top, in, &r, "kyro-put", "-d", store, "--delete", NULL);
	else
		run_tool(top, in, &r, "kyro-put", "-d", store, NULL);
	if (r.how != RUN_EXIT || r.code != 0 || r.out.len || r.err.len)
		die("building the store: kyro-put failed (%s %d): %s",
		    r.how == RUN_EXIT ? "exit" : "signal/timeout/sanitizer",
		    r.code, r.err.p);
	apply(state, bt);
	vec_apply_deletes(bt);
	free(in);
	free(r.out.p);
	free(r.err.p);
	free(bt->in.p);
	*bt = (struct batch){ 0 };
}

/*
 * More than 256 keys are asked (kyro-get answers stdin in groups of 256),
 * but the snapshot keeps only 30 of them, so that the sweep stays
 * small (every byte of every file costs six tool runs): most keys
 * written before it are deleted before it too.
 */
static void build_store(const char *top, const char *store)
{
	struct buf v = { 0 };
	struct batch bt = { 0 };

	/* Before the snapshot: puts, overwrites, deletes. */
	for (unsigned i = 0; i < 270; i++) {
		value_of(&v, i, 1);
		batch_put(&bt, key_of(i), v.p, v.len);
	}
	batch_put(&bt, UINT64_MAX, "the largest key", 15);
	setup_batch(top, store, &bt);
	for (unsigned i = 3; i < 270; i += 7) {
		value_of(&v, i, 2);
		batch_put(&bt, key_of(i), v.p, v.len);
	}
	setup_batch(top, store, &bt);
	for (unsigned i = 0; i < 270; i++)
		if (i % 9)
			batch_del(&bt, key_of(i));
	setup_batch(top, store, &bt);

	/* Vectors for twelve snapshot keys (two of them put with a new
	 * value) and four keys with a vector and no value; the graph of
	 * these 16 is built by the snapshot. */
	struct vbatch vb = { 0 };
	float vec[VDIM];
	for (unsigned i = 0; i < 100; i += 9) {
		vec_of(vec, i, 1);
		if (i == 36 || i == 72) {
			value_of(&v, i, 4);
			vbatch_put(&vb, key_of(i), vec, v.p, v.len);
		} else {
			vbatch_put(&vb, key_of(i), vec, NULL, 0);
		}
	}
	for (unsigned i = 200; i < 240; i += 10) {
		vec_of(vec, i, 1);
		vbatch_put(&vb, key_of(i) + 2, vec, NULL, 0);
	}
	setup_vbatch(top, store, &vb);

	/* The smallest index the format allows (a 2^8-entry router, two
	 * leaves): its every byte is flipped, and each costs six tool runs. */
	struct run r = { 0 };
	/* No retained history: the folded segment (every byte of it under
	 * 64 KiB, so 20,000 more flips) would double the sweep; retained
	 * segments are checked by kyro-verify as live ones are, and tested
	 * in test_feed.c and 65-feed.bats. */
	run_tool(top, NULL, &r, "kyro-snapshot", "-d", store, "--retain", "0",
		 "--vectors", "--m", "2", NULL);
	if (r.how != RUN_EXIT || r.code != 0 || r.err.len)
		die("building the store: kyro-snapshot failed: %s", r.err.p);
	run_tool(top, NULL, &r, "kyro-rmi-build", "-d", store, "--router-bits=8",
		 "--leaves=2", NULL);
	if (r.how != RUN_EXIT || r.code != 0 || r.err.len)
		die("building the store: kyro-rmi-build failed: %s", r.err.p);

	/* After it: new keys between and beyond the snapshot's, overwrites
	 * and deletes of snapshot keys, a deleted key written again. */
	for (unsigned i = 1; i < 270; i += 27) {
		value_of(&v, i + 1000, 3);
		batch_put(&bt, key_of(i) + 1, v.p, v.len);
	}
	for (unsigned i = 9; i < 270; i += 54) {
		value_of(&v, i, 3);
		batch_put(&bt, key_of(i), v.p, v.len);
	}
	setup_batch(top, store, &bt);
	/* After the snapshot: a snapshot key's vector replaced (the graph
	 * keeps the old one), a vector given to a snapshot key that the next
	 * batch deletes, new keys with and without a value.  That batch also
	 * deletes key_of(27), whose vector is in the graph, and the last one
	 * writes its value again, which brings back no vector. */
	vec_of(vec, 54, 2);
	vbatch_put(&vb, key_of(54), vec, NULL, 0);
	vec_of(vec, 108, 2);
	vbatch_put(&vb, key_of(108), vec, NULL, 0);
	vec_of(vec, 240, 2);
	vbatch_put(&vb, key_of(240) + 1, vec, "a new key with a vector", 23);
	for (unsigned i = 250; i < 270; i += 10) {
		vec_of(vec, i, 2);
		vbatch_put(&vb, key_of(i) + 1, vec, NULL, 0);
	}
	setup_vbatch(top, store, &vb);
	for (unsigned i = 27; i < 270; i += 81)
		batch_del(&bt, key_of(i));
	setup_batch(top, store, &bt);
	value_of(&v, 2, 5);
	batch_put(&bt, key_of(27), v.p, v.len);
	batch_put(&bt, key_of(400), "beyond", 6);
	batch_put(&bt, 0, "", 0);
	setup_batch(top, store, &bt);
	free(v.p);
	free(r.out.p);
	free(r.err.p);
}

/* ---------------------------------------------------------------------- */
/* Judging kyro-get                                                       */

enum { ANS_NONE, ANS_MISSING, ANS_VALUE };

struct answers {
	unsigned char *kind;    /* ANS_* per key */
	size_t *off, *len;      /* value in vals */
	struct buf vals;
	struct buf tmp;
	char other[160];        /* first unexpected stderr line */
};

static void answers_init(struct answers *a)
{
	a->kind = xmalloc(nkeys);
	a->off = xmalloc(nkeys * sizeof *a->off);
	a->len = xmalloc(nkeys * sizeof *a->len);
}

/* Short printable form of a value for a detail line. */
static void show(char *d, size_t cap, const char *p, size_t n)
{
	struct buf b = { 0 };
	buf_add(&b, "\"", 1);
	escape(&b, p, n > 24 ? 24 : n);
	buf_add(&b, n > 24 ? "...\"" : "\"", n > 24 ? 4 : 1);
	snprintf(d, cap, "%zu bytes %s", n, b.p);
	free(b.p);
}

static int parse_u64(const char *s, size_t n, uint64_t *k)
{
	if (n == 0 || n > 20)
		return -1;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*k = v;
	return 0;
}

/*
 * Read kyro-get's answers (exit 0 or 1) into A.  Returns 0 when they are
 * well-formed, or -1 with a detail in D (a line that is not an answer, a
 * key answered twice or out of order).
 */
static int parse_answers(const struct run *r, struct answers *a, char *d,
			 size_t cap)
{
	memset(a->kind, ANS_NONE, nkeys);
	a->vals.len = 0;
	a->other[0] = 0;
	long last = -1;
	const char *s = r->out.p, *end = s + r->out.len;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (!nl) {
			snprintf(d, cap, "output ends without a newline");
			return -1;
		}
		const char *tab = memchr(s, '\t', (size_t)(nl - s));
		uint64_t k;
		long i;
		if (!tab || parse_u64(s, (size_t)(tab - s), &k) ||
		    (i = find_key(k)) < 0) {
			snprintf(d, cap, "output line is not an answer: %.*s",
				 (int)((nl - s) > 60 ? 60 : (nl - s)), s);
			return -1;
		}
		if (a->kind[i] != ANS_NONE || i <= last) {
			snprintf(d, cap, "key %" PRIu64 " answered twice or out of order", k);
			return -1;
		}
		if (unescape(&a->tmp, tab + 1, (size_t)(nl - tab - 1))) {
			snprintf(d, cap, "key %" PRIu64 ": value with a bad escape", k);
			return -1;
		}
		a->kind[i] = ANS_VALUE;
		a->off[i] = a->vals.len;
		a->len[i] = a->tmp.len;
		buf_add(&a->vals, a->tmp.p, a->tmp.len);
		last = i;
		s = nl + 1;
	}
	static const char pre[] = "kyro-get: ", post[] = ": not found";
	s = r->err.p;
	end = s + r->err.len;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		if (!nl)
			nl = end;
		size_t n = (size_t)(nl - s);
		uint64_t k;
		long i = -1;
		if (n > sizeof pre + sizeof post - 2 && !memcmp(s, pre, sizeof pre - 1) &&
		    !memcmp(nl - (sizeof post - 1), post, sizeof post - 1) &&
		    !parse_u64(s + sizeof pre - 1, n - (sizeof pre - 1) - (sizeof post - 1), &k))
			i = find_key(k);
		if (i >= 0) {
			if (a->kind[i] != ANS_NONE) {
				snprintf(d, cap, "key %" PRIu64 " answered twice", k);
				return -1;
			}
			a->kind[i] = ANS_MISSING;
		} else if (!a->other[0]) {
			snprintf(a->other, sizeof a->other, "%.*s",
				 (int)(n > 100 ? 100 : n), s);
		}
		s = nl + 1;
	}
	return 0;
}

/* Is key i's answer in A the expected E?  0 yes; else a detail in D. */
static int check_key(const struct answers *a, size_t i, const struct val *e,
		     char *d, size_t cap)
{
	char x[96], y[96];
	switch (a->kind[i]) {
	case ANS_NONE:
		snprintf(d, cap, "key %" PRIu64 " not answered", keys[i]);
		return -1;
	case ANS_MISSING:
		if (!e->present)
			return 0;
		show(x, sizeof x, e->p, e->len);
		snprintf(d, cap, "key %" PRIu64 " was written (%s) but reads as not found",
			 keys[i], x);
		return -1;
	default:
		show(y, sizeof y, a->vals.p + a->off[i], a->len[i]);
		if (!e->present) {
			snprintf(d, cap, "key %" PRIu64 " is absent but reads as %s",
				 keys[i], y);
			return -1;
		}
		if (e->len == a->len[i] && !memcmp(e->p, a->vals.p + a->off[i], e->len))
			return 0;
		show(x, sizeof x, e->p, e->len);
		/* The shown prefixes may agree: say where the bytes part. */
		size_t at = 0;
		while (at < e->len && at < a->len[i] && e->p[at] == a->vals.p[a->off[i] + at])
			at++;
		snprintf(d, cap, "key %" PRIu64 ": read %.70s, wrote %.70s, first difference at byte %zu",
			 keys[i], y, x, at);
		return -1;
	}
}

/* Are the answers A right for the state E, exit status included? */
static int check_answers(const struct run *r, const struct answers *a,
			 const struct val *e, char *d, size_t cap)
{
	int absent = 0;
	for (size_t i = 0; i < nkeys; i++) {
		absent |= !e[i].present;
		if (check_key(a, i, &e[i], d, cap))
			return -1;
	}
	if (r->code != absent) {
		snprintf(d, cap, "right answers but exit %d (expected %d)", r->code,
			 absent);
		return -1;
	}
	return 0;
}

/* Same answer for key i in A and B? */
static int same_answer(const struct answers *a, const struct answers *b, size_t i)
{
	if (a->kind[i] != b->kind[i])
		return 0;
	if (a->kind[i] != ANS_VALUE)
		return 1;
	return a->len[i] == b->len[i] &&
	       !memcmp(a->vals.p + a->off[i], b->vals.p + b->off[i], a->len[i]);
}

/* ---------------------------------------------------------------------- */
/* The store files and the trials                                         */

struct file {
	char *name;
	struct buf data;
};
static struct file *files;
static size_t nfiles;

static int file_cmp(const void *a, const void *b)
{
	return strcmp(((const struct file *)a)->name, ((const struct file *)b)->name);
}

static void load_store(const char *store)
{
	DIR *d = opendir(store);
	if (!d)
		die("cannot open '%s': %s", store, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		files = xrealloc(files, (nfiles + 1) * sizeof *files);
		struct file *f = &files[nfiles++];
		*f = (struct file){ xstrdup(e->d_name), { 0 } };
		char *p = xasprintf("%s/%s", store, e->d_name);
		int rc = read_file(p, &f->data);
		if (rc)
			die("cannot read '%s': %s", p, strerror(rc));
		free(p);
	}
	closedir(d);
	qsort(files, nfiles, sizeof *files, file_cmp);
}

/* Lay the clean store out in DIR, with byte OFF of file F xored with
 * MASK (F < 0: no damage). */
static void lay_out(const char *dir, long f, uint64_t off, unsigned mask)
{
	for (size_t i = 0; i < nfiles; i++) {
		char *p = xasprintf("%s/%s", dir, files[i].name);
		struct buf *b = &files[i].data;
		if ((long)i == f) {
			b->p[off] ^= (char)mask;
			write_file(p, b->p, b->len);
			b->p[off] ^= (char)mask;
		} else {
			write_file(p, b->p, b->len);
		}
		free(p);
	}
}

static int exempt(const char *name, uint64_t off)
{
	size_t n = strlen(name);
	for (const struct nodata *x = nodata; x->prefix; x++) {
		size_t pl = strlen(x->prefix), sl = strlen(x->suffix);
		if (n >= pl + sl && !strncmp(name, x->prefix, pl) &&
		    !strcmp(name + n - sl, x->suffix) && off >= x->lo &&
		    off <= x->hi)
			return 1;
	}
	return 0;
}

enum { V_DETECTED, V_UNDETECTED, V_EXEMPT, V_CRASH };
enum { G_RIGHT, G_REFUSED, G_WRONG, G_CRASH, G_ODD };
enum { P_OK, P_REFUSED, P_CRASH, P_ODD };
enum { A_NOTRUN, A_RIGHT, A_REFUSED, A_LOST, A_SAMEWRONG, A_CRASH, A_ODD };

struct trial {
	uint32_t file;
	uint32_t mask;
	uint64_t off;
};

#define DETAIL 200
struct result {
	unsigned char done, verify, get, put, after, get_msg;
	unsigned char nearest, exact, near_msg;	/* G_* */
	char vdetail[DETAIL], gdetail[DETAIL], pdetail[DETAIL], adetail[DETAIL];
	char ndetail[DETAIL], xdetail[DETAIL];
};

struct shared {
	uint64_t next;
	struct result res[];
};

static struct trial *trials;
static size_t ntrials;
static struct shared *sh;

static int failed(const struct result *r)
{
	return !r->done || r->verify == V_UNDETECTED || r->verify == V_CRASH ||
	       r->get == G_WRONG || r->get == G_CRASH || r->get == G_ODD ||
	       r->nearest == G_WRONG || r->nearest == G_CRASH ||
	       r->nearest == G_ODD || r->exact == G_WRONG ||
	       r->exact == G_CRASH || r->exact == G_ODD ||
	       r->put == P_CRASH || r->put == P_ODD || r->after == A_LOST ||
	       r->after == A_CRASH || r->after == A_ODD;
}

/* The batch every trial writes: a new key, an overwrite of a snapshot key
 * and of a key last written in the WAL. */
static struct batch newbatch;

static void make_newbatch(void)
{
	batch_put(&newbatch, key_of(300) + 5, "written after the damage", 24);
	batch_put(&newbatch, key_of(36), "overwrites a snapshot key", 25);
	batch_put(&newbatch, key_of(63), "overwrites a WAL key", 20);
}

struct worker {
	char *dir, *store, *keysfile, *batchfile, *queryfile;
	struct run r;
	struct answers before, after;
	struct buf tmp;
};

static void judge_get(const struct run *r, struct answers *a,
		      const struct val *e, struct result *res)
{
	if (r->how != RUN_EXIT) {
		res->get = G_CRASH;
		describe_crash(res->gdetail, DETAIL, "kyro-get", r);
	} else if (r->code == 2) {
		res->get = r->err.len ? G_REFUSED : G_ODD;
		if (res->get == G_ODD)
			snprintf(res->gdetail, DETAIL, "kyro-get: exit 2 without a message");
	} else if (r->code > 2) {
		res->get = G_ODD;
		snprintf(res->gdetail, DETAIL, "kyro-get: exit %d", r->code);
	} else if (parse_answers(r, a, res->gdetail, DETAIL) ||
		   check_answers(r, a, e, res->gdetail, DETAIL)) {
		res->get = G_WRONG;
	} else {
		res->get = G_RIGHT;
		res->get_msg = a->other[0] != 0;
	}
}

/* ---------------------------------------------------------------------- */
/* Judging kyro-get --nearest                                             */

/*
 * The queries: near the vector of key_of(27) (deleted since the snapshot,
 * still in the graph), near key_of(54)'s vector in the graph (replaced
 * since), near key_of(108)'s (put and deleted after the snapshot), and one
 * anywhere.  Components off the lattice by quarters, so few distances tie.
 */
static void make_queries(void)
{
	vec_of(queries[0], 27, 1);
	vec_of(queries[1], 54, 1);
	vec_of(queries[2], 108, 2);
	for (unsigned j = 0; j < VDIM; j++) {
		queries[0][j] += 0.25f * (float)(j % 3);
		queries[1][j] -= 0.25f * (float)(j % 2);
		queries[2][j] += j == 5 ? 0.75f : 0;
		queries[3][j] =
			(float)((int)(mix(999u << 8 | j) % 65) - 32) / 4;
	}
}

/* Is the hit on the line from S to NL the expected X, with its key's value
 * as a third field when the key has one and none when it has none?  0
 * yes; else a detail in D. */
static int check_hit(const char *s, const char *nl, const struct hit *x,
		     struct buf *tmp, char *d, size_t cap)
{
	const char *t1 = memchr(s, '\t', (size_t)(nl - s)), *t2 = NULL;
	if (t1)
		t2 = memchr(t1 + 1, '\t', (size_t)(nl - t1 - 1));
	const char *de = t2 ? t2 : nl;
	char num[48], *e;
	uint64_t k;
	if (!t1 || parse_u64(s, (size_t)(t1 - s), &k) ||
	    (size_t)(de - t1 - 1) >= sizeof num) {
		snprintf(d, cap, "not a hit: %.*s",
			 (int)(nl - s > 60 ? 60 : nl - s), s);
		return -1;
	}
	memcpy(num, t1 + 1, (size_t)(de - t1 - 1));
	num[de - t1 - 1] = 0;
	const float got = strtof(num, &e);
	if (*e || !*num || k != x->key || got != x->d) {
		snprintf(d, cap, "key %" PRIu64 " at %s, expected key %" PRIu64
			 " at %g", k, num, x->key, (double)x->d);
		return -1;
	}
	const long i = find_key(k);
	const struct val *v = i >= 0 ? &state[i] : NULL;
	int right = v && v->present == (t2 != NULL);
	if (right && t2)
		right = !unescape(tmp, t2 + 1, (size_t)(nl - t2 - 1)) &&
			tmp->len == v->len && !memcmp(tmp->p, v->p, v->len);
	if (!right) {
		snprintf(d, cap, "key %" PRIu64 ": wrong value or none", k);
		return -1;
	}
	return 0;
}

/*
 * Is kyro-get --nearest's answer (tsv, --with-values) to the queries the
 * expected one, exit status included?  0 yes; else a detail in D.  Each
 * answer is its hits, then an empty line.
 */
static int check_nearest(const struct run *r, struct buf *tmp, char *d,
			 size_t cap)
{
	const char *s = r->out.p, *end = s + r->out.len;
	char hd[150];
	for (unsigned q = 0; q < NQUERIES; q++) {
		for (size_t h = 0;; h++) {
			const char *nl = memchr(s, '\n', (size_t)(end - s));
			if (!nl) {
				snprintf(d, cap, "query %u: answer cut short",
					 q + 1);
				return -1;
			}
			if (nl == s && h == nexpect[q]) {
				s = nl + 1;
				break;
			}
			if (nl == s || h == nexpect[q]) {
				snprintf(d, cap, "query %u: %s hits than the %zu expected",
					 q + 1, nl == s ? "fewer" : "more",
					 nexpect[q]);
				return -1;
			}
			if (check_hit(s, nl, &expect[q][h], tmp, hd,
				      sizeof hd)) {
				snprintf(d, cap, "query %u, hit %zu: %s", q + 1,
					 h + 1, hd);
				return -1;
			}
			s = nl + 1;
		}
	}
	if (s != end) {
		snprintf(d, cap, "output after the last answer: %.60s", s);
		return -1;
	}
	if (r->code != 0) {
		snprintf(d, cap, "right answers but exit %d", r->code);
		return -1;
	}
	return 0;
}

/* Judge one run of kyro-get --nearest into *RES (G_*) and DETAIL. */
static void judge_nearest(const struct run *r, struct buf *tmp,
			  const char *what, unsigned char *res, char *detail,
			  unsigned char *msg)
{
	char d[DETAIL];
	if (r->how != RUN_EXIT) {
		*res = G_CRASH;
		describe_crash(detail, DETAIL, what, r);
	} else if (r->code == 2) {
		*res = r->err.len ? G_REFUSED : G_ODD;
		if (*res == G_ODD)
			snprintf(detail, DETAIL, "%s: exit 2 without a message", what);
	} else if (r->code > 2) {
		*res = G_ODD;
		snprintf(detail, DETAIL, "%s: exit %d", what, r->code);
	} else if (check_nearest(r, tmp, d, sizeof d)) {
		*res = G_WRONG;
		snprintf(detail, DETAIL, "%s: %.150s", what, d);
	} else {
		*res = G_RIGHT;
		*msg |= r->err.len != 0;
	}
}

#define STR_(x) #x
#define STR(x) STR_(x)

/* kyro-get --nearest through the graph (or EXACT: --exact) of every
 * query, with values. */
static void run_nearest(struct worker *w, const char *store, int exact)
{
	run_tool(w->dir, w->queryfile, &w->r, "kyro-get", "-d", store,
		 "--nearest", STR(NEAREST_K), "--ef", STR(NEAREST_EF),
		 "--with-values", exact ? "--exact" : NULL, NULL);
}

static void judge_after(struct worker *w, struct result *res)
{
	const struct run *r = &w->r;
	if (r->how != RUN_EXIT) {
		res->after = A_CRASH;
		describe_crash(res->adetail, DETAIL, "kyro-get after kyro-put", r);
		return;
	}
	if (r->code == 2) {
		res->after = r->err.len ? A_REFUSED : A_ODD;
		if (r->err.len)
			first_line(res->adetail, DETAIL, "kyro-get after kyro-put: ", &r->err);
		else
			snprintf(res->adetail, DETAIL, "kyro-get after kyro-put: exit 2 without a message");
		return;
	}
	if (r->code > 2) {
		res->after = A_ODD;
		snprintf(res->adetail, DETAIL, "kyro-get after kyro-put: exit %d", r->code);
		return;
	}
	char d[DETAIL];
	if (parse_answers(r, &w->after, d, sizeof d)) {
		res->after = A_LOST;
		snprintf(res->adetail, DETAIL, "after kyro-put exit 0: %.170s", d);
		return;
	}
	/* A key the damage already made read wrong, and that the new batch
	 * did not touch, reading the same wrong way is that read failure,
	 * already counted, not a loss. */
	unsigned char *touched = xmalloc(nkeys);
	memset(touched, 0, nkeys);
	for (size_t j = 0; j < newbatch.n; j++)
		touched[newbatch.idx[j]] = 1;
	int excused = 0;
	res->after = A_RIGHT;
	for (size_t i = 0; i < nkeys; i++) {
		if (!check_key(&w->after, i, &state1[i], d, sizeof d))
			continue;
		if (res->get == G_WRONG && !touched[i] &&
		    same_answer(&w->before, &w->after, i)) {
			excused = 1;
			continue;
		}
		res->after = A_LOST;
		snprintf(res->adetail, DETAIL, "after kyro-put exit 0: %.170s", d);
		break;
	}
	free(touched);
	if (res->after == A_RIGHT && excused)
		res->after = A_SAMEWRONG;
}

static void run_trial(struct worker *w, const struct trial *t, struct result *res,
		      const char *keep)
{
	const char *name = files[t->file].name;
	const char *store = keep ? keep : w->store;
	if (!keep)
		empty_dir(store);
	lay_out(store, (long)t->file, t->off, t->mask);
	if (keep) {
		/* An untouched damaged copy beside the one the tools ran on. */
		char *pristine = xasprintf("%s.damaged", keep);
		if (mkdir(pristine, 0755) && errno != EEXIST)
			die("cannot create '%s': %s", pristine, strerror(errno));
		lay_out(pristine, (long)t->file, t->off, t->mask);
		free(pristine);
	}
	memset(res, 0, sizeof *res);

	struct run *r = &w->r;
	/* The graph's blocks and links are checked by --deep only. */
	run_tool(w->dir, NULL, r, "kyro-verify", "-d", store,
		 strncmp(name, "hnsw-", 5) ? NULL : "--deep", NULL);
	if (r->how != RUN_EXIT) {
		res->verify = V_CRASH;
		describe_crash(res->vdetail, DETAIL, "kyro-verify", r);
	} else if (r->code != 0 && (strstr(r->out.p, name) || strstr(r->err.p, name))) {
		res->verify = V_DETECTED;
	} else {
		res->verify = exempt(name, t->off) ? V_EXEMPT : V_UNDETECTED;
		if (r->code == 0)
			snprintf(res->vdetail, DETAIL, "kyro-verify: exit 0");
		else
			first_line(res->vdetail, DETAIL, "kyro-verify: does not name the file: ",
				   r->out.len ? &r->out : &r->err);
	}

	run_tool(w->dir, w->keysfile, r, "kyro-get", "-d", store, "-f", "tsv", NULL);
	judge_get(r, &w->before, state, res);

	run_nearest(w, store, 0);
	judge_nearest(r, &w->tmp, "kyro-get --nearest", &res->nearest,
		      res->ndetail, &res->near_msg);
	run_nearest(w, store, 1);
	judge_nearest(r, &w->tmp, "kyro-get --nearest --exact", &res->exact,
		      res->xdetail, &res->near_msg);

	run_tool(w->dir, w->batchfile, r, "kyro-put", "-d", store, NULL);
	if (r->how != RUN_EXIT) {
		res->put = P_CRASH;
		describe_crash(res->pdetail, DETAIL, "kyro-put", r);
	} else if (r->code == 0) {
		res->put = P_OK;
	} else if (r->code == 2 && r->err.len) {
		res->put = P_REFUSED;
	} else {
		res->put = P_ODD;
		snprintf(res->pdetail, DETAIL, "kyro-put: exit %d%s", r->code,
			 r->err.len ? "" : " without a message");
	}

	res->after = A_NOTRUN;
	if (res->put == P_OK) {
		run_tool(w->dir, w->keysfile, r, "kyro-get", "-d", store, "-f", "tsv", NULL);
		judge_after(w, res);
	}
	res->done = 1;
}

static void worker_init(struct worker *w, const char *top, int n)
{
	w->dir = xasprintf("%s/w%d", top, n);
	w->store = xasprintf("%s/store", w->dir);
	w->keysfile = xasprintf("%s/keys", top);
	w->batchfile = xasprintf("%s/batch", top);
	w->queryfile = xasprintf("%s/queries", top);
	if (mkdir(w->dir, 0755) || mkdir(w->store, 0755))
		die("cannot create '%s': %s", w->store, strerror(errno));
	answers_init(&w->before);
	answers_init(&w->after);
}

static void worker_loop(const char *top, int n)
{
	struct worker w = { 0 };
	worker_init(&w, top, n);
	for (;;) {
		uint64_t i = __atomic_fetch_add(&sh->next, 1, __ATOMIC_RELAXED);
		if (i >= ntrials)
			break;
		run_trial(&w, &trials[i], &sh->res[i], NULL);
	}
	_exit(0);
}

/* ---------------------------------------------------------------------- */
/* The clean store must be right before damage means anything.            */

/*
 * The graph is approximate, but a beam at least as wide as the graph (ef
 * >= n) visits every node reachable from the entry: so when every
 * expected neighbour is reachable, as the clean store must show, the graph
 * search gives the exact answer, and any other answer with exit 0 under
 * damage is a wrong answer.  Check that the graph is in use, small enough,
 * and right, before any flip.
 */
static void check_clean_nearest(struct worker *w)
{
	struct run *r = &w->r;
	char d[DETAIL];
	run_tool(w->dir, NULL, r, "kyro-get", "-d", w->store, "--info", NULL);
	const char *n = strstr(r->out.p, "\nvector_snapshot\t");
	if (r->how != RUN_EXIT || r->code != 0 ||
	    !strstr(r->out.p, "\nvector_index\thnsw\n") || !n ||
	    strtol(n + 17, NULL, 10) > NEAREST_EF)
		die("the clean store: no graph of at most %d vectors in use: %s%s",
		    NEAREST_EF, r->out.p, r->err.p);
	for (int exact = 0; exact < 2; exact++) {
		run_nearest(w, w->store, exact);
		if (r->how != RUN_EXIT || r->code != 0 || r->err.len ||
		    check_nearest(r, &w->tmp, d, sizeof d))
			die("the clean store: kyro-get --nearest%s (exit %d): %s%s",
			    exact ? " --exact" : "", r->code, r->err.p,
			    r->err.len ? "" : d);
	}
}

static void check_clean(const char *top)
{
	struct worker w = { 0 };
	worker_init(&w, top, 99);
	lay_out(w.store, -1, 0, 0);
	struct run *r = &w.r;
	char d[DETAIL];

	run_tool(w.dir, NULL, r, "kyro-verify", "-d", w.store, NULL);
	if (r->how != RUN_EXIT || r->code != 0 || r->out.len || r->err.len)
		die("the clean store: kyro-verify exits %d: %s%s", r->code, r->out.p,
		    r->err.p);

	run_tool(w.dir, NULL, r, "kyro-verify", "-d", w.store, "--deep", NULL);
	if (r->how != RUN_EXIT || r->code != 0 || r->out.len || r->err.len)
		die("the clean store: kyro-verify --deep exits %d: %s%s", r->code,
		    r->out.p, r->err.p);
	check_clean_nearest(&w);

	run_tool(w.dir, w.keysfile, r, "kyro-get", "-d", w.store, "-f", "tsv", NULL);
	if (r->how != RUN_EXIT || r->code > 1)
		die("the clean store: kyro-get fails (exit %d): %s", r->code, r->err.p);
	if (parse_answers(r, &w.before, d, sizeof d) ||
	    check_answers(r, &w.before, state, d, sizeof d))
		die("the clean store: kyro-get: %s", d);
	if (w.before.other[0])
		die("the clean store: kyro-get says: %s", w.before.other);

	run_tool(w.dir, w.batchfile, r, "kyro-put", "-d", w.store, NULL);
	if (r->how != RUN_EXIT || r->code != 0 || r->err.len)
		die("the clean store: kyro-put fails (exit %d): %s", r->code, r->err.p);
	run_tool(w.dir, w.keysfile, r, "kyro-get", "-d", w.store, "-f", "tsv", NULL);
	if (r->how != RUN_EXIT || r->code > 1)
		die("the clean store after kyro-put: kyro-get fails (exit %d): %s",
		    r->code, r->err.p);
	if (parse_answers(r, &w.after, d, sizeof d) ||
	    check_answers(r, &w.after, state1, d, sizeof d))
		die("the clean store after kyro-put: kyro-get: %s", d);
	run_tool(w.dir, NULL, r, "kyro-verify", "-d", w.store, NULL);
	if (r->how != RUN_EXIT || r->code != 0 || r->out.len)
		die("the clean store after kyro-put: kyro-verify exits %d: %s",
		    r->code, r->out.p);
	rm_rf(w.dir);
}

/* ---------------------------------------------------------------------- */
/* The report                                                             */

enum {
	C_TRIED, C_DETECTED, C_UNDETECTED, C_EXEMPT, C_GET_RIGHT, C_GET_REFUSED,
	C_WRONG, C_NN_RIGHT, C_NN_REFUSED, C_NN_WRONG, C_CRASH, C_PUT_OK,
	C_PUT_REFUSED, C_LOST, C_ODD, C_PUT_OK_READ_REFUSED, C_GET_MSG,
	C_NN_MSG, C_FAILED, NCOUNT
};

static const char *const head[NCOUNT] = {
	"tried", "detect", "undet", "exempt", "get-ok", "get-2", "wrong",
	"nn-ok", "nn-2", "nn-wr", "crash", "put-ok", "put-2", "lost", "odd",
};

static void count(uint64_t *c, const struct result *r)
{
	c[C_TRIED]++;
	c[C_DETECTED] += r->verify == V_DETECTED;
	c[C_UNDETECTED] += r->verify == V_UNDETECTED;
	c[C_EXEMPT] += r->verify == V_EXEMPT;
	c[C_GET_RIGHT] += r->get == G_RIGHT;
	c[C_GET_REFUSED] += r->get == G_REFUSED;
	c[C_WRONG] += r->get == G_WRONG;
	const int nn_bad = r->nearest == G_WRONG || r->exact == G_WRONG;
	c[C_NN_RIGHT] += r->nearest == G_RIGHT && r->exact == G_RIGHT;
	c[C_NN_WRONG] += nn_bad;
	c[C_NN_REFUSED] += !nn_bad && (r->nearest == G_REFUSED ||
				       r->exact == G_REFUSED);
	c[C_CRASH] += r->verify == V_CRASH || r->get == G_CRASH ||
		      r->nearest == G_CRASH || r->exact == G_CRASH ||
		      r->put == P_CRASH || r->after == A_CRASH;
	c[C_PUT_OK] += r->put == P_OK;
	c[C_PUT_REFUSED] += r->put == P_REFUSED;
	c[C_LOST] += r->after == A_LOST;
	c[C_ODD] += r->get == G_ODD || r->nearest == G_ODD ||
		    r->exact == G_ODD || r->put == P_ODD || r->after == A_ODD;
	c[C_PUT_OK_READ_REFUSED] += r->after == A_REFUSED;
	c[C_GET_MSG] += r->get_msg;
	c[C_NN_MSG] += r->near_msg;
	c[C_FAILED] += failed(r);
}

static void print_row(const char *name, const uint64_t *c)
{
	printf("%-26s", name);
	for (int j = 0; j <= C_ODD; j++)
		printf(" %*" PRIu64, j == C_TRIED ? 6 : 6, c[j]);
	printf("\n");
}

/* The first few trials of file F (or all files, F < 0) that failed in
 * category WHICH, with their details. */
static void print_details(const char *title, int which)
{
	for (size_t f = 0; f < nfiles; f++) {
		size_t shown = 0, total = 0;
		for (size_t i = 0; i < ntrials; i++) {
			const struct result *r = &sh->res[i];
			const struct trial *t = &trials[i];
			if (t->file != f)
				continue;
			const char *d = NULL;
			switch (which) {
			case C_UNDETECTED:
				d = r->verify == V_UNDETECTED ? r->vdetail : NULL;
				break;
			case C_WRONG:
				d = r->get == G_WRONG ? r->gdetail : NULL;
				break;
			case C_NN_WRONG:
				d = r->nearest == G_WRONG ? r->ndetail :
				    r->exact == G_WRONG ? r->xdetail : NULL;
				break;
			case C_CRASH:
				d = r->verify == V_CRASH ? r->vdetail :
				    r->get == G_CRASH ? r->gdetail :
				    r->nearest == G_CRASH ? r->ndetail :
				    r->exact == G_CRASH ? r->xdetail :
				    r->put == P_CRASH ? r->pdetail :
				    r->after == A_CRASH ? r->adetail : NULL;
				break;
			case C_LOST:
				d = r->after == A_LOST ? r->adetail : NULL;
				break;
			case C_PUT_OK_READ_REFUSED:
				d = r->after == A_REFUSED ? r->adetail : NULL;
				break;
			case C_ODD:
				d = r->get == G_ODD ? r->gdetail :
				    r->nearest == G_ODD ? r->ndetail :
				    r->exact == G_ODD ? r->xdetail :
				    r->put == P_ODD ? r->pdetail :
				    r->after == A_ODD ? r->adetail : NULL;
				break;
			}
			if (!d)
				continue;
			if (!total++)
				printf("%s: %s:\n", title, files[f].name);
			if (shown++ < FIRST_FEW)
				printf("  offset %" PRIu64 " xor 0x%02x: %s\n", t->off,
				       t->mask, d);
		}
		if (total > FIRST_FEW)
			printf("  ... and %zu more\n", total - FIRST_FEW);
	}
}

/* ---------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sweep [--bin DIR] [--tmp DIR] [--jobs N] [--every N] [--bits N]\n"
		"             [--file NAME] [--offset N] [--mask M] [--keep] [--timeout S]\n");
}

int main(int argc, char **argv)
{
	const char *tmp = NULL, *only_file = NULL;
	long jobs = 2, every = 1, bits = 61, only_mask = -1;
	int64_t only_off = -1;
	int keep = 0;
	static const struct option opts[] = {
		{ "bin", required_argument, NULL, 'b' },
		{ "bits", required_argument, NULL, 'B' },
		{ "every", required_argument, NULL, 'e' },
		{ "file", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "keep", no_argument, NULL, 'k' },
		{ "mask", required_argument, NULL, 'm' },
		{ "offset", required_argument, NULL, 'o' },
		{ "timeout", required_argument, NULL, 't' },
		{ "tmp", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *end = NULL;
		switch (c) {
		case 'b': bindir = optarg; break;
		case 'B': bits = strtol(optarg, &end, 10); break;
		case 'e': every = strtol(optarg, &end, 10); break;
		case 'f': only_file = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'j': jobs = strtol(optarg, &end, 10); break;
		case 'k': keep = 1; break;
		case 'm': only_mask = strtol(optarg, &end, 0); break;
		case 'o': only_off = strtoll(optarg, &end, 0); break;
		case 't': timeout_s = strtod(optarg, &end); break;
		case 'T': tmp = optarg; break;
		default: usage(stderr); return 2;
		}
		if (end && (*end || end == optarg))
			die("invalid number '%s'", optarg);
	}
	if (optind != argc || jobs < 1 || jobs > 64 || every < 1 || bits < 0 ||
	    only_mask == 0 || only_mask > 255 || timeout_s <= 0) {
		usage(stderr);
		return 2;
	}
	/* Memory first: the tools' fsyncs cost nothing there, and what is
	 * swept is damage, not durability. */
	if (!tmp && !access("/dev/shm", W_OK | X_OK))
		tmp = "/dev/shm";
	if (!tmp)
		tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	char *put = xasprintf("%s/kyro-put", bindir);
	if (access(put, X_OK))
		die("'%s' is not an executable: %s", put, strerror(errno));
	free(put);

	/* The tools see no store but the one named, the default index and
	 * SIMD choice, and sanitizer runtimes that exit with a status of
	 * their own when they report.  No leak check: its scan at exit costs
	 * more than the run, and leaks are the unit tests' business. */
	size_t ne = 0;
	for (char **e = environ; *e; e++)
		ne++;
	tool_env = xmalloc((ne + 3) * sizeof *tool_env);
	size_t k = 0;
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "KYRODB_", 7) && strncmp(*e, "ASAN_OPTIONS=", 13) &&
		    strncmp(*e, "UBSAN_OPTIONS=", 14))
			tool_env[k++] = *e;
	tool_env[k++] = "ASAN_OPTIONS=exitcode=86:abort_on_error=0:detect_leaks=0";
	tool_env[k++] = "UBSAN_OPTIONS=exitcode=86:halt_on_error=1:print_stacktrace=1";
	tool_env[k] = NULL;

	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	const double t0 = now();
	char *top = xasprintf("%s/kyro-damage.XXXXXX", tmp);
	if (!mkdtemp(top))
		die("cannot create a directory in '%s': %s", tmp, strerror(errno));
	char *clean = xasprintf("%s/clean", top);

	build_store(top, clean);
	/* Never-written keys are asked too: they must read as not found. */
	key_index(1);
	key_index(key_of(77) + 2);
	make_queries();
	expect_nearest();
	make_newbatch();
	state1 = xmalloc(nkeys * sizeof *state1);
	memcpy(state1, state, nkeys * sizeof *state1);
	apply(state1, &newbatch);
	sorted = xmalloc(nkeys * sizeof *sorted);
	for (size_t i = 0; i < nkeys; i++)
		sorted[i] = (struct kidx){ keys[i], i };
	qsort(sorted, nkeys, sizeof *sorted, kidx_cmp);
	struct buf kb = { 0 };
	for (size_t i = 0; i < nkeys; i++)
		buf_printf(&kb, "%" PRIu64 "\n", keys[i]);
	char *p = xasprintf("%s/keys", top);
	write_file(p, kb.p, kb.len);
	free(p);
	kb.len = 0;
	for (unsigned q = 0; q < NQUERIES; q++) {
		vec_text(&kb, queries[q]);
		buf_add(&kb, "\n", 1);
	}
	p = xasprintf("%s/queries", top);
	write_file(p, kb.p, kb.len);
	free(p);
	p = xasprintf("%s/batch", top);
	write_file(p, newbatch.in.p, newbatch.in.len);
	free(p);
	load_store(clean);
	check_clean(top);

	/* Every byte of every file; a sample of a big file; single bits at
	 * every BITS-th byte, cycling through the bit positions. */
	for (size_t f = 0; f < nfiles; f++) {
		if (only_file && !strstr(files[f].name, only_file))
			continue;
		const uint64_t size = files[f].data.len;
		uint64_t stride = 1;
		if (size > SMALL_FILE)
			stride = (size - BIG_FILE_HEADER) / BIG_FILE_POSITIONS + 1;
		for (uint64_t off = 0; off < size; off++) {
			if (off >= BIG_FILE_HEADER && off + 64 < size &&
			    (off - BIG_FILE_HEADER) % stride)
				continue;
			if (only_off >= 0 && off != (uint64_t)only_off)
				continue;
			unsigned masks[2] = { 0xff, 0 };
			if (only_mask > 0)
				masks[0] = (unsigned)only_mask;
			else if (bits && off % (uint64_t)bits == 0)
				masks[1] = 1u << ((off / (uint64_t)bits) % 8);
			for (int m = 0; m < 2 && masks[m]; m++) {
				trials = xrealloc(trials, (ntrials + 1) * sizeof *trials);
				trials[ntrials++] = (struct trial){ (uint32_t)f, masks[m], off };
			}
		}
	}
	if (every > 1) {
		size_t n = 0;
		for (size_t i = 0; i < ntrials; i += (size_t)every)
			trials[n++] = trials[i];
		ntrials = n;
	}
	if (!ntrials)
		die("no position matches --file, --offset and --mask");
	if (keep && ntrials > 64)
		die("--keep leaves a store per position: choose at most 64 with --file, --offset or --mask (%zu chosen)",
		    ntrials);

	printf("damage sweep: %zu files, %zu flips (every %ld), tools from %s, %ld workers\n",
	       nfiles, ntrials, every, bindir, jobs);
	size_t shsize = sizeof *sh + ntrials * sizeof sh->res[0];
	sh = mmap(NULL, shsize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		  -1, 0);
	if (sh == MAP_FAILED)
		die("mmap: %s", strerror(errno));

	if (keep) {
		struct worker w = { 0 };
		worker_init(&w, top, 0);
		for (size_t i = 0; i < ntrials; i++) {
			const struct trial *t = &trials[i];
			char *dir = xasprintf("%s/%s-%" PRIu64 "-%02x", top,
					      files[t->file].name, t->off, t->mask);
			if (mkdir(dir, 0755))
				die("cannot create '%s': %s", dir, strerror(errno));
			run_trial(&w, t, &sh->res[i], dir);
			printf("kept: %s (after the tools ran) and %s.damaged (as damaged)\n",
			       dir, dir);
			free(dir);
		}
	} else {
		fflush(stdout);
		pid_t *pids = xmalloc((size_t)jobs * sizeof *pids);
		for (long j = 0; j < jobs; j++) {
			pids[j] = fork();
			if (pids[j] < 0)
				die("fork: %s", strerror(errno));
			if (pids[j] == 0)
				worker_loop(top, (int)j);
		}
		for (long j = 0; j < jobs; j++) {
			int st;
			while (waitpid(pids[j], &st, 0) < 0 && errno == EINTR)
				;
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				fprintf(stderr, PROG ": worker %ld failed\n", j);
		}
		free(pids);
	}
	const double t1 = now();

	uint64_t total[NCOUNT] = { 0 };
	printf("%-26s", "file");
	for (int j = 0; j <= C_ODD; j++)
		printf(" %6s", head[j]);
	printf("\n");
	for (size_t f = 0; f < nfiles; f++) {
		uint64_t cnt[NCOUNT] = { 0 };
		for (size_t i = 0; i < ntrials; i++)
			if (trials[i].file == f)
				count(cnt, &sh->res[i]);
		for (int j = 0; j < NCOUNT; j++)
			total[j] += cnt[j];
		if (cnt[C_TRIED] || !only_file)
			print_row(files[f].name, cnt);
	}
	print_row("total", total);
	printf("kyro-put exit 0, then kyro-get exit 2: %" PRIu64
	       "; kyro-get right with a message on stderr: %" PRIu64
	       "; kyro-get --nearest right with one: %" PRIu64 "\n",
	       total[C_PUT_OK_READ_REFUSED], total[C_GET_MSG], total[C_NN_MSG]);
	print_details("undetected by kyro-verify", C_UNDETECTED);
	print_details("silent wrong reads", C_WRONG);
	print_details("wrong nearest neighbours", C_NN_WRONG);
	print_details("crashes", C_CRASH);
	print_details("acknowledged batches lost", C_LOST);
	print_details("odd exits", C_ODD);
	/* Allowed (the damage may still be there), but where the writer
	 * acknowledged a batch into a store it then cannot read, a look is
	 * worth it. */
	print_details("acknowledged by kyro-put, then kyro-get exit 2 (allowed)",
		      C_PUT_OK_READ_REFUSED);
	/* CPU time says what the run would take on an idle machine, where
	 * the wall-clock time also counts other people's load. */
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	const double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
			   (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	printf("damage sweep: %zu flips in %.1f s (%.1f s of CPU in the tools and workers)\n",
	       ntrials, t1 - t0, cpu);
	if (!keep)
		rm_rf(top);
	else
		printf("scratch directory kept: %s\n", top);
	printf("damage sweep: %" PRIu64 " passed, %" PRIu64 " failed\n",
	       total[C_TRIED] - total[C_FAILED], total[C_FAILED]);
	return total[C_FAILED] ? 1 : 0;
}
