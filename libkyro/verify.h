/*
 * verify.h - shared by kyro_verify()'s two halves: verify.c (the WAL, the
 * shared page, repair) and verify_snap.c (the snapshot and what is built
 * from it).
 */
#ifndef KYRO_VERIFY_H
#define KYRO_VERIFY_H

#include <stdint.h>

#include "kyro.h"
#include "manifest.h"

struct vctx {
	kyro_report_fn report;
	void *arg;
	int damaged; /* something was reported */
};

/* Report a finding in FILE at byte OFF (UINT64_MAX: none). */
void kyro__vsay(struct vctx *c, const char *file, uint64_t off,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Report a module's message ("'FILE': offset N: text") as a finding. */
void kyro__vdamage(struct vctx *c, const char *msg);

/* verify_snap.c */
void kyro__verify_snapshot(struct vctx *c, const char *dir,
			   const struct manifest *m, unsigned flags);

#endif
