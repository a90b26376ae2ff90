/*
 * rmi_build.h - what the learned index's build shares between its two
 * files: rmi_build.c (the shape, the router, the image) and rmi_leaves.c
 * (fitting, checking and splitting the leaves).  Private to them.
 */
#ifndef KYRO_RMI_BUILD_H
#define KYRO_RMI_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "rmi_model.h"

/* Split leaves: a leaf whose window exceeds SPLIT_WINDOW keys is split
 * into sub-leaves whose windows do not, if the reserve holds them (else
 * the bound is relaxed, see kyro__rmi_split_all()).  A window of
 * SPLIT_WINDOW keys always lies in the fast path's 32 keys
 * (rmi_lookup.h), so no lookup takes the slow path.  The reserve is at
 * most 1 / SPLIT_RESERVE of the records the budget holds. */
#define SPLIT_WINDOW 23
#define SPLIT_RESERVE 16
#define SPLIT_MAX_SUBS 65535

/* A leaf whose window is over SPLIT_WINDOW keys, left to
 * kyro__rmi_split_all(): its number, run and window. */
struct wide_leaf {
	uint64_t l, pos, cnt, w;
};

/* The wide leaves, in leaf order (V malloc'd). */
struct wide_list {
	struct wide_leaf *v;
	size_t n;
};

/* What kyro__rmi_split_all() did. */
struct kyro__rmi_split {
	uint64_t splits, subs; /* leaves split, and their sub-leaves */
	uint64_t bound;	       /* the window bound met, 0 for none */
};

/* The end of leaf L's run of keys, which starts at POS: the first i >= pos
 * routed past L (rmi_build.c). */
uint64_t kyro__rmi_leaf_end(const struct model *m, const uint64_t *keys,
			    uint64_t n, uint64_t pos, uint64_t l);

/* The start of the run of keys routed to L, which contains position I. */
uint64_t kyro__rmi_leaf_start(const struct model *m, const uint64_t *keys,
			      uint64_t i, uint64_t l);

/* The next of a reproducible sequence of random numbers, state *S. */
uint64_t kyro__rmi_splitmix(uint64_t *s);

/* The least squares line of k[0..m), and its errors *EL, *EH measured
 * with the lookups' prediction (rmi_leaves.c). */
double kyro__rmi_best_slope(const uint64_t *k, uint64_t m, uint64_t *el,
			    uint64_t *eh);

/* Fit and check the LEAVES routed leaves of M into RECS, on two threads
 * when THREADS allows; with SPLIT, leaves wider than SPLIT_WINDOW are
 * left unchecked in *WIDE for kyro__rmi_split_all().  ENOMEM, EOVERFLOW,
 * KYRO_ECORRUPT. */
int kyro__rmi_fit_all(const struct model *m, unsigned char *recs,
		      const uint64_t *keys, uint64_t n, uint64_t leaves,
		      unsigned threads, int split, double *wsum, double *wmax,
		      struct wide_list *wide, char *errbuf, size_t errlen);

/* The records to set aside for sub-leaves out of LEAVES. */
uint64_t kyro__rmi_plan_reserve(const struct model *m, const uint64_t *keys,
				uint64_t n, uint64_t leaves);

/* Split the wide leaves into at most CAP - ROUTED sub-leaves, and check
 * their keys.  ENOMEM, KYRO_ECORRUPT. */
int kyro__rmi_split_all(const struct model *m, unsigned char *recs,
			const uint64_t *keys, uint64_t routed, uint64_t cap,
			const struct wide_list *wide,
			struct kyro__rmi_split *res, double *wsum,
			double *wmax, char *errbuf, size_t errlen);

#endif /* KYRO_RMI_BUILD_H */
