/*
 * sweep.h - what the damage sweep's files share: the tool runs, the
 * expected state it keeps outside the store (model.c), the judging of
 * the tools' answers against it (judge.c), the trials and their results,
 * and the report (report.c).  util.c holds the small helpers.
 */
#ifndef SWEEP_H
#define SWEEP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PROG "sweep"

/* Sanitizer runtimes exit with this status when they report, so a report
 * is told apart from the tools' own 0, 1 and 2. */
#define SANITIZER_EXIT 86

/* ---- util.c: helpers, and running a tool ---- */

/* A growable byte buffer. */
struct buf {
	char *p;
	size_t len, cap;
};

enum { RUN_EXIT, RUN_SIGNAL, RUN_TIMEOUT, RUN_SANITIZER };

struct run {
	int how;    /* RUN_* */
	int code;   /* exit status or signal */
	struct buf out, err;
};

extern const char *bindir;	/* the tools' directory */
extern double timeout_s;	/* a run killed after this */
extern char **tool_env;		/* the tools' environment */

__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);
void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
__attribute__((format(printf, 1, 2))) char *xasprintf(const char *fmt, ...);
double now(void);
void buf_add(struct buf *b, const void *p, size_t n);
__attribute__((format(printf, 2, 3)))
void buf_printf(struct buf *b, const char *fmt, ...);
int read_file(const char *path, struct buf *b);
void write_file(const char *path, const void *p, size_t n);
void rm_rf(const char *path);
void empty_dir(const char *dir);
void run_tool(const char *wdir, const char *in, struct run *r,
	      const char *tool, ...);
void describe_crash(char *d, size_t cap, const char *tool,
		    const struct run *r);
void first_line(char *d, size_t cap, const char *what, const struct buf *b);

/* ---- model.c: the expected state ---- */

struct val {
	int present;
	size_t len;
	char *p;
};

/* Every key ever written (and a few never written), in the order of the
 * key list given to kyro-get, and each one's value. */
extern uint64_t *keys;
extern size_t nkeys;
extern struct val *state;   /* now */
extern struct val *state1;  /* after the sweep's own new batch */

/* A batch of kyro-put: its input, and what it writes. */
struct batch {
	struct buf in;    /* kyro-put's stdin */
	int del;
	size_t *idx;      /* keys written, by index */
	struct val *val;
	size_t n;
};

/* The batch every trial writes. */
extern struct batch newbatch;

size_t key_index(uint64_t k);
void index_keys(void);
long find_key(uint64_t k);
void escape(struct buf *b, const char *p, size_t n);
int unescape(struct buf *b, const char *s, size_t n);
uint64_t key_of(unsigned i);
void value_of(struct buf *b, unsigned i, unsigned g);
void batch_put(struct batch *bt, uint64_t k, const char *p, size_t n);
void batch_del(struct batch *bt, uint64_t k);
void apply(struct val *st, const struct batch *bt);
void make_newbatch(void);

/*
 * The vectors.  Every component is a small integer, every query component
 * a multiple of 1/4: each squared difference and every partial sum is
 * then exact in float32, so the distance the tools print does not depend
 * on the order in which a kernel adds, and the sweep's own sums are the
 * tools' to the bit.  The graph is built with M 2, the smallest the
 * format allows (each byte of its link lists costs six tool runs).
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
extern struct vec *vstate;	/* every key ever given a vector, now */
extern size_t nvkeys;
extern float queries[NQUERIES][VDIM];

/* A batch of kyro-put --vectors: KEY<TAB>VECTOR, or with a value. */
struct vbatch {
	struct buf in;
	struct batch values;	/* the values of three-field lines */
	size_t *vi;
	float (*v)[VDIM];
	size_t n;
};

struct hit {
	float d;
	uint64_t key;
};

/* The expected answers: for each query the NEAREST_K live vectors by
 * distance, equal distances in key order as kyro-get(1) says. */
extern struct hit expect[NQUERIES][NEAREST_K];
extern size_t nexpect[NQUERIES];

size_t vkey_index(uint64_t k);
void vec_of(float *v, unsigned i, unsigned g);
void vec_text(struct buf *b, const float *v);
void vbatch_put(struct vbatch *vb, uint64_t k, const float *v,
		const char *val, size_t vlen);
void vec_apply_deletes(const struct batch *bt);
void expect_nearest(void);
void make_queries(void);

/* ---- the trials ---- */

/* The clean store's files, read once. */
struct file {
	char *name;
	struct buf data;
};
extern struct file *files;
extern size_t nfiles;

enum { V_DETECTED, V_UNDETECTED, V_EXEMPT, V_CRASH };
enum { G_RIGHT, G_REFUSED, G_WRONG, G_CRASH, G_ODD };
enum { P_OK, P_REFUSED, P_CRASH, P_ODD };
enum { A_NOTRUN, A_RIGHT, A_REFUSED, A_LOST, A_SAMEWRONG, A_CRASH, A_ODD };

/* One flip: byte OFF of file FILE xored with MASK. */
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

/* The workers' results, in memory shared with them. */
struct shared {
	uint64_t next;
	struct result res[];
};

extern struct trial *trials;
extern size_t ntrials;
extern struct shared *sh;

/* ---- judge.c: the tools' answers against the expected state ---- */

enum { ANS_NONE, ANS_MISSING, ANS_VALUE };

/* kyro-get's answers to the key list. */
struct answers {
	unsigned char *kind;    /* ANS_* per key */
	size_t *off, *len;      /* value in vals */
	struct buf vals;
	struct buf tmp;
	char other[160];        /* first unexpected stderr line */
};

/* One worker's scratch: its directory, the inputs, its last run. */
struct worker {
	char *dir, *store, *keysfile, *batchfile, *queryfile;
	struct run r;
	struct answers before, after;
	struct buf tmp;
};

void answers_init(struct answers *a);
int parse_answers(const struct run *r, struct answers *a, char *d,
		  size_t cap);
int check_answers(const struct run *r, const struct answers *a,
		  const struct val *e, char *d, size_t cap);
int check_nearest(const struct run *r, struct buf *tmp, char *d, size_t cap);
int failed(const struct result *r);
void judge_get(const struct run *r, struct answers *a, const struct val *e,
	       struct result *res);
void judge_nearest(const struct run *r, struct buf *tmp, const char *what,
		   unsigned char *res, char *detail, unsigned char *msg);
void judge_after(struct worker *w, struct result *res);

/* ---- report.c ---- */

/* Print the table and the details of the failures; the number of failed
 * trials.  ONLY_FILE: rows only for the files tried. */
uint64_t report(int only_file);

#endif
