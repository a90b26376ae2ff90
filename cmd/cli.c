/*
 * cli.c - the command-line helpers every kyro tool shares.
 *
 * Long options match exactly: a prefix never selects an option (iproute2
 * learnt the hard way that `-c` can silently mean the wrong thing).
 */
#include <errno.h>
#include <stdio_ext.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cli_init(struct cli *c, int argc, char **argv)
{
	/* One write per message line, not one per fprintf piece: a run
	 * that reports many absent keys costs a third of the system calls,
	 * and lines from processes sharing a terminal do not interleave. */
	setvbuf(stderr, NULL, _IOLBF, BUFSIZ);
	c->argc = argc;
	c->argv = argv;
	c->ind = 1;
	c->arg = NULL;
	c->shorts = NULL;
	c->ops = 1;
	c->nops = 0;
	c->done = 0;
	/* The tools are single-threaded: stdio's per-call locking is pure
	 * overhead when a value is printed per lookup. */
	__fsetlocking(stdin, FSETLOCKING_BYCALLER);
	__fsetlocking(stdout, FSETLOCKING_BYCALLER);
}

static void print_usage(const struct cli *c, FILE *f)
{
	for (int i = 0; c->usage[i]; i++)
		fprintf(f, "%s %s %s\n", i ? "      " : "usage:", c->prog,
			c->usage[i]);
}

static void print_help(const struct cli *c)
{
	print_usage(c, stdout);
	printf("\n%s\n\nOptions:\n", c->summary);
	for (const struct cli_opt *o = c->opts; o->id; o++) {
		char left[64];
		int n = 0;
		if (o->shrt)
			n = snprintf(left, sizeof left, "-%c%s", o->shrt,
				     o->lng ? ", " : "");
		else
			n = snprintf(left, sizeof left, "    ");
		if (o->lng)
			n += snprintf(left + n, sizeof left - (size_t)n,
				      "--%s", o->lng);
		if (o->metavar)
			snprintf(left + n, sizeof left - (size_t)n, "%s%s",
				 o->lng ? "=" : " ", o->metavar);
		printf("  %-24s %s\n", left, o->help);
	}
	printf("  %-24s %s\n", "-h, --help", "show this help and exit");
	printf("  %-24s %s\n", "    --version", "show the version and exit");
	if (c->epilog)
		printf("\n%s", c->epilog);
	printf("\nExit status: 0 success, 1 a negative answer, 2 an error.\n");
}

_Noreturn void cli_usage_error(const struct cli *c, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", c->prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	print_usage(c, stderr);
	fprintf(stderr, "Try '%s --help'.\n", c->prog);
	exit(EXIT_ERR);
}

void cli_warn(const char *prog, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void cli_db_error(const char *prog, const kyro_db *db, int rc)
{
	const char *m = kyro_errmsg(db);
	if (!db || !strcmp(m, "no error"))
		m = kyro_strerror(rc);
	fprintf(stderr, "%s: %s\n", prog, m);
}

static const struct cli_opt *find_long(const struct cli *c, const char *name,
				       size_t len)
{
	for (const struct cli_opt *o = c->opts; o->id; o++)
		if (o->lng && strlen(o->lng) == len &&
		    !memcmp(o->lng, name, len))
			return o;
	return NULL;
}

static const struct cli_opt *find_short(const struct cli *c, char ch)
{
	for (const struct cli_opt *o = c->opts; o->id; o++)
		if (o->shrt == ch)
			return o;
	return NULL;
}

static void reverse(char **v, int lo, int hi)
{
	for (hi--; lo < hi; lo++, hi--) {
		char *t = v[lo];
		v[lo] = v[hi];
		v[hi] = t;
	}
}

/* The option just parsed took argv[ops+nops..ind): move it in front of
 * the operands passed over so far, keeping their order.  Rotating by
 * three reversals costs the operands passed over, once per option, so
 * `kyro-get $(seq 100000) -f tsv` stays linear. */
static void settle(struct cli *c)
{
	int first = c->ops + c->nops;
	if (c->nops && c->ind > first) {
		reverse(c->argv, c->ops, first);
		reverse(c->argv, first, c->ind);
		reverse(c->argv, c->ops, c->ind);
	}
	c->ops += c->ind - first;
}

/* No option left: the operands are argv[ops..argc). */
static int operands(struct cli *c)
{
	c->ind = c->ops;
	c->done = 1;
	return 0;
}

int cli_next(struct cli *c)
{
	c->arg = NULL;
	if (c->done)
		return 0;
	if (c->shorts && *c->shorts) {
		char ch = *c->shorts++;
		const struct cli_opt *o = find_short(c, ch);
		if (ch == 'h') {
			print_help(c);
			exit(cli_finish(c->prog, EXIT_OK));
		}
		if (!o)
			cli_usage_error(c, "unknown option '-%c'", ch);
		if (o->metavar) {
			if (*c->shorts) {
				c->arg = c->shorts;
			} else if (c->ind < c->argc) {
				c->arg = c->argv[c->ind++];
			} else {
				cli_usage_error(c, "option '-%c' needs %s", ch,
						o->metavar);
			}
			c->shorts = NULL;
		}
		return o->id;
	}
	c->shorts = NULL;
	settle(c);
	const char *a;
	for (;; c->ind++, c->nops++) {
		if (c->ind >= c->argc)
			return operands(c);
		a = c->argv[c->ind];
		if (a[0] == '-' && a[1] != 0)
			break;
	}
	c->ind++;
	if (a[1] != '-') {
		c->shorts = a + 1;
		return cli_next(c);
	}
	if (a[2] == 0) {
		/* "--" ends the options: it goes, and every later argument
		 * joins the operands passed over. */
		settle(c);
		return operands(c);
	}
	const char *name = a + 2, *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name);
	if (len == 4 && !memcmp(name, "help", 4) && !eq) {
		print_help(c);
		exit(cli_finish(c->prog, EXIT_OK));
	}
	if (len == 7 && !memcmp(name, "version", 7) && !eq) {
		printf("%s (KyroDB) %s\n", c->prog, KYRO_VERSION_STRING);
		exit(cli_finish(c->prog, EXIT_OK));
	}
	const struct cli_opt *o = find_long(c, name, len);
	if (!o)
		cli_usage_error(c, "unknown option '--%.*s'", (int)len, name);
	if (o->metavar) {
		if (eq)
			c->arg = eq + 1;
		else if (c->ind < c->argc)
			c->arg = c->argv[c->ind++];
		else
			cli_usage_error(c, "option '--%s' needs %s", o->lng,
					o->metavar);
	} else if (eq) {
		cli_usage_error(c, "option '--%s' takes no argument", o->lng);
	}
	return o->id;
}

const char *cli_dir(const char *opt)
{
	const char *env = getenv("KYRODB_DIR");
	if (opt)
		return opt;
	if (env && *env)
		return env;
	return "./kyrodb-data";
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int cli_parse_key(const char *s, size_t len, uint64_t *key)
{
	uint64_t v = 0;
	size_t i = 0;
	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		i = 2;
		while (i + 1 < len && s[i] == '0')
			i++; /* leading zeros, as decimal allows them */
		if (len - i > 16)
			return -1;
		for (; i < len; i++) {
			int h = hexval((unsigned char)s[i]);
			if (h < 0)
				return -1;
			v = v << 4 | (uint64_t)h;
		}
		*key = v;
		return 0;
	}
	if (len == 0)
		return -1;
	while (i + 1 < len && s[i] == '0')
		i++;
	/* 19 digits never overflow, so only a 20th needs the check: no
	 * division or compare in the dependent chain of the common case. */
	size_t digits = len - i;
	if (digits > 20)
		return -1;
	size_t fast = digits < 19 ? digits : 19;
	for (size_t k = 0; k < fast; k++, i++) {
		unsigned d = (unsigned)((unsigned char)s[i] - '0');
		if (d > 9)
			return -1;
		v = v * 10 + d;
	}
	if (i < len) {
		unsigned d = (unsigned)((unsigned char)s[i] - '0');
		if (d > 9 || __builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)d, &v))
			return -1;
	}
	*key = v;
	return 0;
}

size_t cli_key_len(const char *s, size_t len)
{
	if (len && s[len - 1] == '\n')
		len--;
	if (len && s[len - 1] == '\r')
		len--;
	return len;
}

const char *cli_quote(char *buf, size_t size, const void *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = s;
	size_t o = 0, n = len > 64 ? 64 : len;
	for (size_t i = 0; i < n && o + 5 < size; i++) {
		unsigned char ch = p[i];
		char e = ch == '\\' ? '\\' : ch == '\t' ? 't' : ch == '\n' ? 'n' :
			 ch == '\r' ? 'r' : ch == 0 ? '0' : 0;
		if (e) {
			buf[o++] = '\\';
			buf[o++] = e;
		} else if (ch < 0x20 || ch == 0x7f) {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[ch >> 4];
			buf[o++] = hex[ch & 15];
		} else {
			buf[o++] = (char)ch;
		}
	}
	if (n < len && o + 4 <= size) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = 0;
	return buf;
}

/* The values kyro(7) documents: cli_open() passes each SIMD name to
 * kyro_set_simd(), and takes "binary" for KYRO_BINARY_SEARCH and anything
 * else as "rmi", the default.  Any other value is ignored after a warning
 * from cli_env_warnings(). */
static const char *const simd_names[] = {"scalar", "sse4", "avx2", "avx512", NULL};
static const char *const index_names[] = {"binary", "rmi", NULL};

static void env_check(const char *name, const char *const *ok,
		      void (*warn)(void *arg, const char *text), void *arg)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return;
	for (int i = 0; ok[i]; i++)
		if (!strcmp(v, ok[i]))
			return;
	char q[CLI_QUOTE_MAX], text[512];
	int n = snprintf(text, sizeof text, "ignoring %s='%s' (expected %s", name,
			 cli_quote(q, sizeof q, v, strlen(v)),
			 ok[1] ? "one of " : "");
	for (int i = 0; ok[i] && n > 0 && (size_t)n < sizeof text; i++)
		n += snprintf(text + n, sizeof text - (size_t)n, "%s%s",
			      i ? ", " : "", ok[i]);
	if (n > 0 && (size_t)n < sizeof text)
		snprintf(text + n, sizeof text - (size_t)n, ")");
	warn(arg, text);
}

void cli_env_warnings(void (*warn)(void *arg, const char *text), void *arg)
{
	env_check("KYRODB_SIMD", simd_names, warn, arg);
	env_check("KYRODB_INDEX", index_names, warn, arg);
}

int cli_open(kyro_db **db, const char *dir, unsigned flags)
{
	const char *index = getenv("KYRODB_INDEX");
	const char *simd = getenv("KYRODB_SIMD");
	if (index && !strcmp(index, "binary"))
		flags |= KYRO_BINARY_SEARCH;
	int rc = kyro_open(db, dir, flags);
	/* A name the library refuses, or a level this CPU lacks, leaves the
	 * automatic choice: the first was warned about, the second is as
	 * kyro(7) says. */
	if (!rc && simd && *simd)
		(void)kyro_set_simd(*db, simd);
	return rc;
}

void cli_warn_env(void *prog, const char *text)
{
	cli_warn(prog, "warning: %s", text);
}

int cli_buf_reserve(struct cli_buf *b, size_t n)
{
	if (n <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < n)
		cap *= 2;
	unsigned char *p = realloc(b->p, cap);
	if (!p)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

int cli_unescape(const char *s, size_t len, struct cli_buf *b,
		 const char **why)
{
	b->len = 0;
	if (cli_buf_reserve(b, len + 1)) {
		*why = "out of memory";
		return -1;
	}
	const char *bs = memchr(s, '\\', len);
	if (!bs) {
		memcpy(b->p, s, len);
		b->len = len;
		return 0;
	}
	unsigned char *o = b->p;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch != '\\') {
			*o++ = ch;
			continue;
		}
		if (++i == len) {
			*why = "backslash at the end of the value";
			return -1;
		}
		switch (s[i]) {
		case '\\': *o++ = '\\'; break;
		case 't': *o++ = '\t'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case '0': *o++ = 0; break;
		case 'x': {
			int h1 = i + 1 < len ? hexval((unsigned char)s[i + 1]) : -1;
			int h2 = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
			if (h1 < 0 || h2 < 0) {
				*why = "'\\x' must be followed by two hex digits";
				return -1;
			}
			*o++ = (unsigned char)(h1 << 4 | h2);
			i += 2;
			break;
		}
		default:
			*why = "unknown escape (use \\\\ \\t \\n \\r \\0 \\xHH)";
			return -1;
		}
	}
	b->len = (size_t)(o - b->p);
	return 0;
}

static int needs_escape(unsigned char ch)
{
	return ch < 0x20 || ch == 0x7f || ch == '\\';
}

/* Does any of the 8 bytes in X need an escape (< 0x20, '\\' or 0x7f)?
 * The classic SWAR tests: a byte below N, and a byte equal to C. */
static int word_needs_escape(uint64_t x)
{
	const uint64_t ones = 0x0101010101010101ull, high = ones << 7;
	uint64_t below = (x - ones * 0x20) & ~x & high;
	uint64_t bs = x ^ (ones * '\\'), del = x ^ (ones * 0x7f);
	bs = (bs - ones) & ~bs & high;
	del = (del - ones) & ~del & high;
	return (below | bs | del) != 0;
}

void cli_put_escaped(FILE *f, const void *v, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = v, *end = p + len;
	/* Most values need no escape at all: find out 8 bytes at a time
	 * and write them in one call. */
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t x;
		memcpy(&x, p + i, 8);
		if (word_needs_escape(x))
			break;
	}
	while (i < len && !needs_escape(p[i]))
		i++;
	if (i == len) {
		fwrite(p, 1, len, f);
		return;
	}
	while (p < end) {
		const unsigned char *run = p;
		while (p < end && !needs_escape(*p))
			p++;
		if (p > run)
			fwrite(run, 1, (size_t)(p - run), f);
		if (p == end)
			break;
		unsigned char ch = *p++;
		char e[4] = {'\\', 0, 0, 0};
		size_t n = 2;
		switch (ch) {
		case '\\': e[1] = '\\'; break;
		case '\t': e[1] = 't'; break;
		case '\n': e[1] = 'n'; break;
		case '\r': e[1] = 'r'; break;
		case 0: e[1] = '0'; break;
		default:
			e[1] = 'x';
			e[2] = hex[ch >> 4];
			e[3] = hex[ch & 15];
			n = 4;
		}
		fwrite(e, 1, n, f);
	}
}

int cli_is_utf8(const void *v, size_t len)
{
	const unsigned char *p = v;
	size_t i = 0;
	while (i < len) {
		unsigned char c = p[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		uint32_t cp;
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (n >= len - i)
			return 0;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return 0;
		i += n + 1;
	}
	return 1;
}

void cli_put_json_string(FILE *f, const void *v, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = v;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = p[i];
		if (ch == '"' || ch == '\\') {
			fputc('\\', f);
			fputc(ch, f);
		} else if (ch == '\n') {
			fputs("\\n", f);
		} else if (ch == '\t') {
			fputs("\\t", f);
		} else if (ch == '\r') {
			fputs("\\r", f);
		} else if (ch < 0x20 || ch == 0x7f) {
			fprintf(f, "\\u00%c%c", hex[ch >> 4], hex[ch & 15]);
		} else {
			fputc(ch, f);
		}
	}
}

void cli_put_base64(FILE *f, const void *v, size_t len)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = v;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t x = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		char o[4] = {tab[x >> 18], tab[(x >> 12) & 63], tab[(x >> 6) & 63],
			     tab[x & 63]};
		fwrite(o, 1, 4, f);
	}
	if (len - i == 1) {
		uint32_t x = (uint32_t)p[i] << 16;
		char o[4] = {tab[x >> 18], tab[(x >> 12) & 63], '=', '='};
		fwrite(o, 1, 4, f);
	} else if (len - i == 2) {
		uint32_t x = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		char o[4] = {tab[x >> 18], tab[(x >> 12) & 63], tab[(x >> 6) & 63],
			     '='};
		fwrite(o, 1, 4, f);
	}
}

int cli_finish(const char *prog, int status)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return status;
	/* A reader that went away is its own business; anything else (a
	 * full disk under a redirect) must not look like success. */
	if (errno != EPIPE)
		cli_warn(prog, "cannot write to standard output: %s",
			 strerror(errno ? errno : EIO));
	return EXIT_ERR;
}

int cli_progress_wanted(void) { return isatty(2); }

void cli_progress(void *prog, uint64_t done, uint64_t total)
{
	int pct = total ? (int)(done * 100 / total) : 100;
	int bar = pct * 30 / 100;
	fprintf(stderr, "\r%s: [%.*s%*s] %3d%% ", (const char *)prog, bar,
		"##############################", 30 - bar, "", pct);
	if (done >= total)
		fputc('\n', stderr);
	fflush(stderr);
}

int cli_parse_sync(const char *s, int *mode)
{
	if (!strcmp(s, "always"))
		*mode = KYRO_SYNC_ALWAYS;
	else if (!strcmp(s, "batch"))
		*mode = KYRO_SYNC_BATCH;
	else if (!strcmp(s, "none"))
		*mode = KYRO_SYNC_NONE;
	else
		return -1;
	return 0;
}

/* One measure of --retain: a size (bytes, or K M G T with an optional
 * "iB" or "B", powers of 1024) or a duration (s, min, h, d). */
static int retain_part(const char *s, size_t len, uint64_t *bytes,
		       uint64_t *seconds)
{
	static const struct { const char *unit; int size; uint64_t mul; } u[] = {
		{"", 1, 1}, {"B", 1, 1},
		{"K", 1, 1ull << 10}, {"KB", 1, 1ull << 10}, {"KiB", 1, 1ull << 10},
		{"M", 1, 1ull << 20}, {"MB", 1, 1ull << 20}, {"MiB", 1, 1ull << 20},
		{"G", 1, 1ull << 30}, {"GB", 1, 1ull << 30}, {"GiB", 1, 1ull << 30},
		{"T", 1, 1ull << 40}, {"TB", 1, 1ull << 40}, {"TiB", 1, 1ull << 40},
		{"s", 0, 1}, {"min", 0, 60}, {"h", 0, 3600}, {"d", 0, 86400},
	};
	size_t n = 0;
	uint64_t v = 0;
	while (n < len && s[n] >= '0' && s[n] <= '9') {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[n++] - '0');
	}
	if (n == 0)
		return -1;
	for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
		if (strlen(u[i].unit) != len - n ||
		    memcmp(u[i].unit, s + n, len - n) != 0)
			continue;
		if (v > UINT64_MAX / u[i].mul)
			return -1;
		*(u[i].size ? bytes : seconds) = v * u[i].mul;
		return 0;
	}
	return -1;
}

int cli_parse_retain(const char *s, uint64_t *bytes, uint64_t *seconds)
{
	const char *comma = strchr(s, ',');
	*bytes = *seconds = KYRO_RETAIN_ANY;
	if (!strcmp(s, "0")) {
		*bytes = *seconds = 0;
		return 0;
	}
	if (!comma)
		return retain_part(s, strlen(s), bytes, seconds);
	uint64_t b2 = KYRO_RETAIN_ANY, s2 = KYRO_RETAIN_ANY;
	if (retain_part(s, (size_t)(comma - s), bytes, seconds) ||
	    retain_part(comma + 1, strlen(comma + 1), &b2, &s2))
		return -1;
	/* One size and one duration, in either order. */
	if ((*bytes != KYRO_RETAIN_ANY) == (b2 != KYRO_RETAIN_ANY))
		return -1;
	if (b2 != KYRO_RETAIN_ANY)
		*bytes = b2;
	if (s2 != KYRO_RETAIN_ANY)
		*seconds = s2;
	return 0;
}
