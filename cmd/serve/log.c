/*
 * log.c - messages and access lines on stderr.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "serve.h"

static int level = LOG_INFO;
static const char *const names[] = {"error", "warn", "info", "debug"};

int log_parse_level(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

void log_set_level(int l) { level = l; }

int log_enabled(int l) { return l <= level; }

static void emit(const char *buf, size_t n)
{
	while (n) {
		ssize_t w = write(2, buf, n);
		if (w <= 0)
			return; /* nowhere left to complain */
		buf += w;
		n -= (size_t)w;
	}
}

void log_msg(int l, const char *fmt, ...)
{
	if (!log_enabled(l))
		return;
	char buf[1024];
	int n = snprintf(buf, sizeof buf, "%s: [%s] ", SERVE_PROG, names[l]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	size_t len = (size_t)n + (size_t)m;
	if (len > sizeof buf - 2)
		len = sizeof buf - 2;
	buf[len++] = '\n';
	emit(buf, len);
}

/* Copy S into OUT with quotes, backslashes and control bytes escaped, so
 * a client cannot forge log lines. */
static size_t clean(char *out, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (; *s && o + 5 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = 0;
	return o;
}

void log_access(const char *client, const char *method, const char *uri,
		unsigned status, uint64_t bytes, uint64_t usec)
{
	char m[24], u[512], buf[700];
	clean(m, sizeof m, method ? method : "-");
	clean(u, sizeof u, uri ? uri : "-");
	int n = snprintf(buf, sizeof buf, "%s: %s \"%s %s\" %u %llu %lluus\n",
			 SERVE_PROG, client, m, u, status,
			 (unsigned long long)bytes, (unsigned long long)usec);
	if (n > 0)
		emit(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

uint64_t serve_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
