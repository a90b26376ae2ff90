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
 * The expected state lives outside the store (model.c), and the tools'
 * answers are judged against it (judge.c).  The tools are black boxes:
 * this program never links libkyro, so it judges what a user would see.
 * tests/damage/README.md says how to run it and what the counts mean.
 * This file builds the store, makes the trials, runs them in worker
 * processes, and checks the clean store before any flip.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sweep.h"

extern char **environ;

/* Files over this size get a sample of positions instead of every byte. */
#define SMALL_FILE (64 * 1024)
#define BIG_FILE_HEADER 512
#define BIG_FILE_POSITIONS 2000

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
/* Building the store: the batches                                        */

/* Run kyro-put --vectors on one batch of the setup; it must succeed
 * silently. */
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
/* The store files and the trials                                         */

struct file *files;
size_t nfiles;

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

struct trial *trials;
size_t ntrials;
struct shared *sh;

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
	index_keys();
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

	const uint64_t nfailed = report(only_file != NULL);
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
	       (uint64_t)ntrials - nfailed, nfailed);
	return nfailed ? 1 : 0;
}
