/*
 * rmi.h - private header of the learned index: a two-stage
 * recursive model index over a snapshot's sorted key array.
 *
 * The index never holds keys: it is built over, and loaded next to, the
 * snapshot's own array of n sorted unique u64 keys.  rmi.c opens with the
 * byte layout of the index file and the rules by which load refuses one.
 *
 * Results follow kyro.h: 0, a positive errno, or a negative KYRO_E* code
 * (KYRO_ECORRUPT for an index that fails its checksum, its rules, or does
 * not match the snapshot it is loaded against; KYRO_EVERSION for another
 * format version).  Functions taking ERRBUF write a one-line message there
 * on failure (ERRBUF may be NULL when ERRLEN is 0).  Nothing here prints.
 */
#ifndef KYRO_RMI_H
#define KYRO_RMI_H

#include <stddef.h>
#include <stdint.h>

#include "kyro.h"

#define KYRO_RMI_VERSION 4
/* The previous versions, still loaded: 3 has no split leaves, and 2 is
 * also bound to its snapshot by a sample of keys spread over the array
 * (see rmi.c). */
#define KYRO_RMI_VERSION_UNSPLIT 3
#define KYRO_RMI_VERSION_SAMPLED 2
#define KYRO_RMI_MIN_BITS 8
#define KYRO_RMI_MAX_BITS 24
/* Window histogram buckets: bucket 0 counts empty windows, bucket b > 0
 * windows of 2^(b-1) .. 2^b - 1 keys; the last bucket takes the rest. */
#define KYRO_RMI_HIST 33

/* Build parameters: struct kyro_rmi_params of kyro.h (0 in a field means
 * "choose automatically"; max_size defaults to 2% of the keys' 8n bytes,
 * at least 4 KiB).  Explicit leaves and router_bits are not bound by the
 * default budget, only by an explicit max_size. */

struct kyro__rmi_build_stats {
	uint64_t leaves;
	uint64_t router_bits;
	int router_log;     /* 1: logarithmic router, 0: linear */
	uint64_t bytes;     /* size of the index image */
	double mean_window; /* mean keys probed per lookup of a present key */
	double max_window;  /* largest window of any present key */
	uint64_t split_leaves; /* leaves split into sub-leaves */
	uint64_t sub_leaves;   /* their sub-leaves (leaves counts these too) */
	uint64_t bound;        /* no split leaf's sub-leaf has a wider window
				* (0: none split) */
};

/*
 * Lookup counters, owned by the caller: the lookups add to the struct
 * they are passed (NULL counts nothing), so a caller that swaps indexes
 * keeps counting in the same one.  Only the thread doing the lookups may
 * pass a given struct; it writes each field with a relaxed atomic store,
 * so another thread may read the fields with relaxed atomic loads (a
 * snapshot read while lookups run may be a few counts apart between
 * fields).  Start it zeroed.  The window histogram stays 0 unless
 * kyro__rmi_count_windows() turned it on for the index; its sum is then
 * the number of lookups counted.
 */
struct kyro__rmi_counters {
	uint64_t mispredicts; /* the answer lay outside the model's window;
			       * each was answered by a binary search over
			       * the whole array.  0 for a sound index. */
	uint64_t fallbacks;   /* lookups in a leaf whose error exceeded the
			       * 16-bit window fields: the window was the
			       * whole leaf (a bounded binary search) */
	uint64_t window_hist[KYRO_RMI_HIST]; /* keys probed per lookup */
};

/* A loaded index: a view over an image (borrowed) and a key array
 * (borrowed).  Used from any number of threads at once. */
struct kyro__rmi;

/*
 * Build the index over keys[0..N) (sorted, unique; N may be 0, KEYS may
 * then be NULL) for the snapshot of generation SNAP_GEN whose .bin header
 * checksum is SNAP_SUM (struct snap's hdr_sum; any value outside a store,
 * as long as load is given the same).  P may be NULL (all
 * automatic).  On success *BUF holds the complete file image (malloc'd,
 * the caller frees it) and *SIZE its length; ST, when not NULL, is filled.
 * Every key is checked to lie inside its own window, with the function
 * lookups use, before the image is returned.  Returns 0, EINVAL (keys not
 * sorted and unique, or bad parameters), ENOMEM, or EOVERFLOW (a leaf
 * would hold 2^32 keys or more: ask for more leaves).
 */
int kyro__rmi_train(const uint64_t *keys, uint64_t n, uint64_t snap_gen,
		    uint64_t snap_sum, const struct kyro_rmi_params *p, void **buf, size_t *size,
		    struct kyro__rmi_build_stats *st, char *errbuf,
		    size_t errlen);

/*
 * Check IMAGE[0..SIZE) against its own rules and against the snapshot it
 * is to serve (KEYS[0..N), generation SNAP_GEN, .bin header checksum
 * SNAP_SUM), and on success set *RP to
 * a new handle.  IMAGE and KEYS are borrowed: both must stay mapped, and
 * unchanged, until kyro__rmi_free(*RP).  IMAGE needs no particular
 * alignment.  On failure *RP is NULL.  Returns 0, ENOMEM, KYRO_EVERSION or
 * KYRO_ECORRUPT, with the reason in ERRBUF.  Lookups use the best SIMD
 * level the CPU supports (kyro__simd_selected()) until
 * kyro__rmi_set_simd() says otherwise.
 */
int kyro__rmi_load(struct kyro__rmi **rp, const void *image, size_t size,
		   const uint64_t *keys, uint64_t n, uint64_t snap_gen,
		   uint64_t snap_sum, char *errbuf, size_t errlen);

/* Release the handle (not the image or the keys).  NULL is accepted. */
void kyro__rmi_free(struct kyro__rmi *r);

/*
 * The exact lower bound: the first i with keys[i] >= KEY, or n.  Route,
 * predict, clamp to the leaf's error window, probe the window with the
 * selected SIMD variant, and confirm the answer against the keys just
 * outside the window; an unconfirmed answer (a mispredict: possible only
 * when the keys are not those the index was built over) is replaced by a
 * binary search over the whole array, so the answer is exact whenever
 * the keys are sorted.  Counted in C, unless C is NULL.
 */
uint64_t kyro__rmi_lower_bound(const struct kyro__rmi *r, uint64_t key,
			       struct kyro__rmi_counters *c);

/*
 * Count the window of every counted lookup (C not NULL) in its
 * window_hist (ON != 0), or not (ON == 0, the default).  Off by default
 * because it costs: the update depends on the leaf record's cache miss,
 * and at 100M keys it took about a quarter of a lookup's time.
 * Mispredicts and fallbacks are counted either way.  Call before lookups start, not while they run.
 */
void kyro__rmi_count_windows(struct kyro__rmi *r, int on);

/*
 * kyro__rmi_lower_bound() of Q[0..COUNT) into OUT[0..COUNT), faster than
 * one at a time: the windows of a group of keys are predicted and
 * prefetched before any is probed, so their cache misses overlap.
 * Counted in C like single lookups, unless C is NULL.
 */
void kyro__rmi_lower_bound_batch(const struct kyro__rmi *r, const uint64_t *q,
				 uint64_t *out, size_t count,
				 struct kyro__rmi_counters *c);

/*
 * The model's own window for KEY, before any probe or fallback: the exact
 * lower bound of KEY is claimed to be in [*LO, *HI], and a present key at
 * position i to satisfy *LO <= i < *HI.  For tests and kyro-verify --deep.
 */
void kyro__rmi_window(const struct kyro__rmi *r, uint64_t key, uint64_t *lo,
		      uint64_t *hi);

/* The model's prediction alone (route and predict, no window, no probe):
 * for measuring the share of the last-mile search. */
uint64_t kyro__rmi_predict(const struct kyro__rmi *r, uint64_t key);

/*
 * The deep check: every key is inside its own window.  Sets *BAD to the
 * number of keys that are not and *FIRST_BAD to the first such position
 * (n when none).  Returns 0 when all are, KYRO_ECORRUPT otherwise.
 */
int kyro__rmi_check_all(const struct kyro__rmi *r, uint64_t *bad,
			uint64_t *first_bad);

/* Use the lookups and probe of SIMD level LEVEL (KYRO_SIMD_*) on this
 * handle.  Not while lookups run.  Returns 0, or ENOTSUP when LEVEL is
 * unknown or the CPU cannot run it (the level in use stays). */
int kyro__rmi_set_simd(struct kyro__rmi *r, int level);

/* The shape of a loaded index. */
struct kyro__rmi_info {
	uint64_t keys, leaves, router_bits, bytes, generation;
	int simd; /* KYRO_SIMD_* level of the probe in use */
};
void kyro__rmi_info(const struct kyro__rmi *r, struct kyro__rmi_info *info);

/*
 * What the first RMI_HEAD_SIZE bytes HEAD of an index file of FILE_SIZE
 * bytes tell, without reading the rest: the header's checks (magic,
 * version, flags, shape, the size it implies) and whether it was built
 * for this snapshot (as kyro__rmi_load() judges it, but for version 2's
 * key sample).  0 with *INFO filled, or the error kyro__rmi_load() would
 * give.  The load still checks everything.
 */
#define RMI_HEAD_SIZE 64
int kyro__rmi_probe(const void *head, size_t file_size, uint64_t first,
		    uint64_t last, uint64_t n, uint64_t snap_gen,
		    uint64_t snap_sum, struct kyro__rmi_info *info,
		    char *errbuf, size_t errlen);

/*
 * An index that is not loaded, read as a hint for one lookup: HEAD is
 * the header kyro__rmi_probe() accepted for a file of FILE_SIZE bytes
 * over N keys, and RD(ARG, BUF, LEN, OFF) reads LEN bytes at OFF of the
 * file (0, or nonzero when it could not read them all).  Reads KEY's
 * router entries and leaf record (a split leaf's sub-leaves too), and
 * sets *LO <= *HI <= N to the window they give: for a sound index, KEY's
 * lower bound is in [*LO, *HI].  Nothing but the header was checked, so
 * the caller must confirm the window on the keys (keys[*LO - 1] < KEY <=
 * keys[*HI], where they exist).  Returns 0, or -1 for no hint: a read
 * failed, or the file points outside its own tables.
 */
typedef int (*kyro__rmi_read_fn)(void *arg, void *buf, size_t len,
				 uint64_t off);
int kyro__rmi_hint(const void *head, size_t file_size, uint64_t n,
		   uint64_t key, kyro__rmi_read_fn rd, void *arg, uint64_t *lo,
		   uint64_t *hi);

/*
 * Branchless binary search: the first i < N with keys[i] >= KEY, or N.
 * The read path's answer when a snapshot has no (valid) index.
 */
uint64_t kyro__lower_bound_binary(const uint64_t *keys, uint64_t n,
				  uint64_t key);

#endif /* KYRO_RMI_H */
