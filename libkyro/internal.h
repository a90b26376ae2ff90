/*
 * internal.h - what every libkyro module shares: the message buffer, the
 * error helpers, little-endian codecs and path building.  Not installed.
 */
#ifndef KYRO_INTERNAL_H
#define KYRO_INTERNAL_H

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "kyro.h"
#include "banned.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
/* Snapshot key arrays are used straight from mmap as uint64_t[]; a
 * big-endian port needs a byte-swapping read path first. */
#error "libkyro assumes a little-endian host"
#endif

#define KMSG_MAX 1024

/* Fill MSG with the formatted text followed by ": " and the name of RC,
 * and return RC, so that a failure is one line: return kyro__fail(...). */
int kyro__fail(char *msg, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* As kyro__fail(), without the ": why" suffix. */
int kyro__failx(char *msg, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static inline uint32_t get_le32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline uint64_t get_le64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline uint16_t get_le16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

/* A double or a float stored as its IEEE-754 bits, little-endian. */
static inline double get_lef64(const void *p)
{
	double d;
	memcpy(&d, p, sizeof d);
	return d;
}

static inline float get_lef32(const void *p)
{
	float f;
	memcpy(&f, p, sizeof f);
	return f;
}

static inline void put_le16(void *p, uint16_t v) { memcpy(p, &v, sizeof v); }
static inline void put_le32(void *p, uint32_t v) { memcpy(p, &v, sizeof v); }
static inline void put_le64(void *p, uint64_t v) { memcpy(p, &v, sizeof v); }
static inline void put_lef64(void *p, double d) { memcpy(p, &d, sizeof d); }
static inline void put_lef32(void *p, float f) { memcpy(p, &f, sizeof f); }

static inline uint64_t align8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

/* Always-on check for an invariant whose failure would corrupt data. */
#define KYRO_VERIFY(cond)                                                      \
	do {                                                                   \
		if (!(cond))                                                   \
			kyro__invariant_failed(#cond, __FILE__, __LINE__);     \
	} while (0)
_Noreturn void kyro__invariant_failed(const char *what, const char *file,
				      int line);

/* Names of the files in a data directory. */
#define KYRO_MANIFEST "MANIFEST"
#define KYRO_LOCKFILE "LOCK"
#define KYRO_SNAPLOCK "SNAPSHOT.lock"

/* DIR "/" NAME into OUT (PATH_MAX bytes); ENAMETOOLONG when it does not fit. */
int kyro__path(char *out, const char *dir, const char *name);
/* DIR "/" PREFIX "%016llx" SUFFIX. */
int kyro__path_gen(char *out, const char *dir, const char *prefix, uint64_t gen,
		   const char *suffix);

#endif
