/*
 * test_commit.c - the commit point, kyro__db_commit() (handle.h): an edit is
 * applied to the generation its maker read, or refused untouched; a
 * caller that lost the race reads again and retries, and its edit lands
 * exactly once.
 */
#include <stdint.h>

#include "harness.h"
#include "kyro.h"

#include "internal.h"
#include "manifest.h"
#include "handle.h"

static kyro_db *open_rw(const char *dir)
{
	kyro_db *db;
	int rc = kyro_open(&db, dir, KYRO_RDWR);
	if (rc) {
		h_note("kyro_open '%s': %s", dir, kyro_errmsg(db));
		kyro_close(db);
		return NULL;
	}
	return db;
}

struct bump {
	int calls;   /* times the edit ran */
	uint64_t by; /* rmi_gen += BY: a relative edit, so twice shows */
};

/* An edit that says, if applied twice, that it was. */
static int bump_rmi_gen(void *arg, struct manifest *m,
			const struct db_tail *tail)
{
	struct bump *b = arg;
	(void)tail;
	b->calls++;
	m->rmi_gen += b->by;
	return 0;
}

static int read_manifest(const char *dir, struct manifest *m)
{
	char msg[KMSG_MAX];
	int rc = kyro__manifest_read(msg, dir, m);
	if (rc)
		h_note("kyro__manifest_read: %s", msg);
	return rc;
}

TEST(a_commit_that_lost_its_generation_race_is_refused_then_retried_once)
{
	const char *dir = h_tmpdir();
	kyro_db *a = open_rw(dir), *b = open_rw(dir);
	REQUIRE(a && b);
	CHECK_RC(kyro_put(a, 1, "one", 3, NULL), 0);
	struct manifest m0, m;
	REQUIRE(read_manifest(dir, &m0) == 0);
	const uint64_t g = m0.gen;

	/* A read generation G and works on it; meanwhile B commits. */
	struct bump eb = {.by = 100};
	CHECK_RC(kyro__db_commit(b, "test", g, bump_rmi_gen, &eb), 0);
	CHECK_EQ_U64(eb.calls, 1);
	REQUIRE(read_manifest(dir, &m) == 0);
	CHECK_EQ_U64(m.gen, g + 1);
	CHECK_EQ_U64(m.rmi_gen, m0.rmi_gen + 100);

	/* A's commit, still expecting G, is refused: the edit never ran,
	 * and the manifest is B's, untouched. */
	struct bump ea = {.by = 1};
	CHECK_RC(kyro__db_commit(a, "test", g, bump_rmi_gen, &ea), KYRO_EBATCH);
	CHECK_STR_HAS(kyro_errmsg(a), "another commit came first");
	CHECK_STR_HAS(kyro_errmsg(a), dir);
	CHECK_EQ_U64(ea.calls, 0);
	struct manifest after;
	REQUIRE(read_manifest(dir, &after) == 0);
	CHECK_EQ_U64(after.gen, g + 1);
	CHECK_EQ_U64(after.rmi_gen, m0.rmi_gen + 100);

	/* A reads again and retries: applied exactly once, on top of B's. */
	CHECK_RC(kyro__db_commit(a, "test", after.gen, bump_rmi_gen, &ea), 0);
	CHECK_EQ_U64(ea.calls, 1);
	REQUIRE(read_manifest(dir, &m) == 0);
	CHECK_EQ_U64(m.gen, g + 2);
	CHECK_EQ_U64(m.rmi_gen, m0.rmi_gen + 101);
	CHECK_EQ_U64(m.snap_gen, m0.snap_gen);
	CHECK_EQ_U64(m.wal_first, m0.wal_first);
	CHECK_EQ_U64(m.wal_last, m0.wal_last);

	/* Both handles go on writing and reading across the commits. */
	CHECK_RC(kyro_put(b, 2, "two", 3, NULL), 0);
	const void *v;
	size_t len;
	CHECK_RC(kyro_get(a, 2, &v, &len), 0);
	CHECK_RC(kyro_get(b, 1, &v, &len), 0);
	kyro_close(a);
	kyro_close(b);
}

static int no_change(void *arg, struct manifest *m,
		     const struct db_tail *tail)
{
	(void)arg;
	(void)m;
	(void)tail;
	return 0;
}

static int refuse(void *arg, struct manifest *m, const struct db_tail *tail)
{
	(void)arg;
	m->rmi_gen += 7; /* changed, then refused: must not be written */
	(void)tail;
	return KYRO_ENOTFOUND;
}

TEST(an_edit_that_changes_nothing_or_refuses_commits_nothing)
{
	const char *dir = h_tmpdir();
	kyro_db *a = open_rw(dir);
	REQUIRE(a);
	struct manifest m0, m;
	REQUIRE(read_manifest(dir, &m0) == 0);
	CHECK_RC(kyro__db_commit(a, "test", m0.gen, no_change, NULL), 0);
	CHECK_RC(kyro__db_commit(a, "test", m0.gen, refuse, NULL),
		 KYRO_ENOTFOUND);
	REQUIRE(read_manifest(dir, &m) == 0);
	CHECK_EQ_U64(m.gen, m0.gen);
	CHECK_EQ_U64(m.rmi_gen, m0.rmi_gen);
	kyro_close(a);
}

struct tail_seen {
	struct db_tail t;
};

static int rotate_once(void *arg, struct manifest *m,
		       const struct db_tail *tail)
{
	struct tail_seen *s = arg;
	s->t = *tail;
	m->wal_last++;
	return 0;
}

TEST(a_rotation_moves_the_writer_to_a_new_segment_after_the_last_record)
{
	const char *dir = h_tmpdir();
	kyro_db *a = open_rw(dir);
	REQUIRE(a);
	uint64_t seq;
	CHECK_RC(kyro_put(a, 1, "one", 3, NULL), 0);
	CHECK_RC(kyro_put(a, 2, "two", 3, &seq), 0);
	struct manifest m0, m;
	REQUIRE(read_manifest(dir, &m0) == 0);
	struct tail_seen s = {{0, 0}};
	CHECK_RC(kyro__db_commit(a, "test", m0.gen, rotate_once, &s), 0);
	CHECK_EQ_U64(s.t.last_seq, seq);
	REQUIRE(read_manifest(dir, &m) == 0);
	CHECK_EQ_U64(m.gen, m0.gen + 1);
	CHECK_EQ_U64(m.wal_last, m0.wal_last + 1);
	/* The next record goes to the new segment, numbered on. */
	uint64_t next;
	CHECK_RC(kyro_put(a, 3, "three", 5, &next), 0);
	CHECK_EQ_U64(next, seq + 1);
	kyro_db *r;
	REQUIRE(kyro_open(&r, dir, KYRO_RDONLY) == 0);
	const void *v;
	size_t len;
	CHECK_RC(kyro_get(r, 1, &v, &len), 0);
	CHECK_RC(kyro_get(r, 3, &v, &len), 0);
	CHECK_MEM(v, "three", 5);
	kyro_close(r);
	kyro_close(a);
}
