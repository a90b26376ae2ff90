/*
 * verify_snap.c - kyro_verify()'s check of the snapshot the manifest
 * names, and of the learned index and vectors built from it (verify.c
 * checks the WAL and the shared page, and repairs).
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>

#include "fsio.h"
#include "internal.h"
#include "rmi.h"
#include "snapshot.h"
#include "vec_store.h"
#include "verify.h"

/* The index the manifest names must load against its snapshot; with
 * KYRO_VERIFY_DEEP every key must also lie inside its own window. */
static void verify_index(struct vctx *c, const char *dir,
			 const struct manifest *m, const struct snap *s,
			 unsigned flags)
{
	char path[PATH_MAX], msg[KMSG_MAX], err[256];
	const unsigned char *img = NULL;
	uint64_t size = 0, bad = 0, first = 0;
	struct kyro__rmi *r = NULL;
	int fd = -1;
	if (!m->rmi_gen || m->rmi_snap != m->snap_gen)
		return;
	if (kyro__path_gen(path, dir, "rmi-", m->rmi_gen, ".idx") ||
	    kyro__fs_open(msg, path, O_RDONLY, 0, &fd) ||
	    kyro__fs_size(msg, fd, path, &size) ||
	    kyro__fs_map(msg, fd, (size_t)size, 0, path, (void **)&img)) {
		kyro__vdamage(c, msg);
		kyro__fs_close(fd);
		return;
	}
	kyro__fs_close(fd);
	if (kyro__rmi_load(&r, img, (size_t)size, s->keys, s->n, s->gen,
			   s->hdr_sum, err, sizeof err)) {
		kyro__vsay(c, path, 0, "learned index refused: %s", err);
		c->damaged = 1;
	} else if ((flags & KYRO_VERIFY_DEEP) &&
		   kyro__rmi_check_all(r, &bad, &first)) {
		kyro__vsay(c, path, 0,
		    "%llu keys lie outside their index window (first: index "
		    "%llu, key %llu)",
		    (unsigned long long)bad, (unsigned long long)first,
		    (unsigned long long)(first < s->n ? s->keys[first] : 0));
		c->damaged = 1;
	}
	kyro__rmi_free(r);
	kyro__fs_unmap((void *)img, (size_t)size);
}

/* One vector file the manifest names (the snapshot's vectors, or its
 * graph): it must open, belong to snapshot S, and with FULL pass every
 * block and structural check. */
static void verify_vec_file(struct vctx *c, const char *path,
			    const struct snap *s, int full)
{
	char msg[KMSG_MAX];
	struct kyro__hnsw *h = NULL;
	if (kyro__hnsw_open(msg, path, &h)) {
		kyro__vdamage(c, msg);
		c->damaged = 1;
		return;
	}
	if (h->generation != s->gen || h->binding != s->hdr_sum) {
		kyro__vsay(c, path, 64, "not built from snapshot %llu",
		    (unsigned long long)s->gen);
		c->damaged = 1;
	} else if (full && kyro__hnsw_verify(msg, h)) {
		kyro__vdamage(c, msg);
		c->damaged = 1;
	}
	kyro__hnsw_free(h);
}

/* The snapshot's vectors are data: checked whole, like its blocks.  The
 * graph is an index: its header always, every block and link with
 * KYRO_VERIFY_DEEP. */
static void verify_vectors(struct vctx *c, const char *dir,
			   const struct manifest *m, const struct snap *s,
			   unsigned flags)
{
	char path[PATH_MAX];
	if (m->vec_snap != m->snap_gen)
		return;
	if (!kyro__vstore_path(path, dir, m->snap_gen))
		verify_vec_file(c, path, s, 1);
	if (m->hnsw_gen && m->hnsw_snap == m->snap_gen &&
	    !kyro__vstore_graph_path(path, dir, m->hnsw_gen))
		verify_vec_file(c, path, s, (flags & KYRO_VERIFY_DEEP) != 0);
}

static void forward(void *arg, const char *file, uint64_t off,
		    const char *text)
{
	struct vctx *c = arg;
	c->damaged = 1;
	c->report(c->arg, file, off, text);
}

/* The snapshot the manifest names: its blocks, its sequence number, and
 * the learned index and vectors built from it. */
void kyro__verify_snapshot(struct vctx *c, const char *dir,
			   const struct manifest *m, unsigned flags)
{
	char msg[KMSG_MAX];
	struct snap s;
	if (!m->snap_gen)
		return;
	if (kyro__snap_open(msg, &s, dir, m->snap_gen, m->snap_keys)) {
		kyro__vdamage(c, msg);
		return;
	}
	if (s.last_seq != m->snap_seq) {
		kyro__vsay(c, s.bin_path, 32,
			   "last sequence number %llu, but the manifest says "
			   "%llu",
			   (unsigned long long)s.last_seq,
			   (unsigned long long)m->snap_seq);
		c->damaged = 1;
	}
	kyro__snap_verify(&s, forward, c);
	verify_index(c, dir, m, &s, flags);
	verify_vectors(c, dir, m, &s, flags);
	kyro__snap_close(&s);
}
