/*
 * err.c - result codes, their names, and the per-handle message helpers.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

const char *kyro_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case KYRO_ENOTFOUND:
		return "not found";
	case KYRO_ECORRUPT:
		return "data is corrupt";
	case KYRO_EVERSION:
		return "unsupported format version";
	case KYRO_ENOTDB:
		return "not a KyroDB data directory";
	case KYRO_EFAILED:
		return "an earlier write failed; no more writes on this handle";
	case KYRO_ETOOBIG:
		return "value larger than 16 MiB";
	case KYRO_ERDONLY:
		return "store opened read-only";
	case KYRO_EBATCH:
		return "batch calls out of order";
	case KYRO_ETORN:
		return "torn tail";
	case KYRO_EDAMAGED:
		return "damage found";
	case KYRO_EEXPIRED:
		return "history no longer retained";
	case KYRO_EDIM:
		return "wrong vector dimension";
	}
	if (err > 0)
		return strerror(err);
	return "unknown error";
}

__attribute__((format(printf, 4, 0)))
static int vfail(char *msg, int rc, int why, const char *fmt, va_list ap)
{
	if (!msg)
		return rc;
	int n = vsnprintf(msg, KMSG_MAX, fmt, ap);
	if (why && n >= 0 && n < KMSG_MAX)
		snprintf(msg + n, KMSG_MAX - (size_t)n, ": %s",
			 kyro_strerror(rc));
	return rc;
}

int kyro__fail(char *msg, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(msg, rc, 1, fmt, ap);
	va_end(ap);
	return rc;
}

int kyro__failx(char *msg, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(msg, rc, 0, fmt, ap);
	va_end(ap);
	return rc;
}

/* The one place the library stops a process: continuing after a broken
 * invariant would write corrupt data to disk, which is worse. */
_Noreturn void kyro__invariant_failed(const char *what, const char *file,
				      int line)
{
	(void)what;
	(void)file;
	(void)line;
	abort();
}

int kyro__path(char *out, const char *dir, const char *name)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
	return (n < 0 || n >= PATH_MAX) ? ENAMETOOLONG : 0;
}

int kyro__path_gen(char *out, const char *dir, const char *prefix, uint64_t gen,
		   const char *suffix)
{
	int n = snprintf(out, PATH_MAX, "%s/%s%016llx%s", dir, prefix,
			 (unsigned long long)gen, suffix);
	return (n < 0 || n >= PATH_MAX) ? ENAMETOOLONG : 0;
}
