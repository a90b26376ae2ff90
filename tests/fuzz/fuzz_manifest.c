/*
 * fuzz_manifest.c - libFuzzer target for the MANIFEST parser.
 *
 * The input is a MANIFEST file image.  kyro__manifest_decode() must never read
 * outside it, and must either refuse it with a message or accept it; an
 * accepted manifest must encode back to exactly the input bytes (anything
 * the decoder lets through but the encoder would not write is a file two
 * readers could disagree about).  A failed check calls abort(), which
 * libFuzzer reports as a crash.
 *
 * The checksum would stop almost every mutation at the first check, so a
 * 96-byte input is also tried a second time with its checksum recomputed:
 * that lets the fuzzer reach the field rules behind it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "internal.h"
#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);

/* UBSan only prints by default, and libFuzzer would go on as if nothing
 * happened: make undefined behaviour a crash, with its input saved. */
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

static void fail(const char *what, const char *msg)
{
	fprintf(stderr, "fuzz_manifest: %s (%s)\n", what, msg);
	abort();
}

static void check(const unsigned char *b, size_t len)
{
	char msg[KMSG_MAX];
	struct manifest m;
	memset(msg, 0, sizeof msg);
	memset(&m, 0, sizeof m);
	int rc = kyro__manifest_decode(msg, b, len, "fuzz", &m);
	if (rc) {
		if (rc != KYRO_ENOTDB && rc != KYRO_EVERSION &&
		    rc != KYRO_ECORRUPT)
			fail("unexpected result code", msg);
		if (msg[0] == 0 || memchr(msg, 0, sizeof msg) == NULL)
			fail("refused without a message", "");
		return;
	}
	unsigned char again[MANIFEST_SIZE];
	kyro__manifest_encode(&m, again);
	/* Version 1 is read, never written: it names no vectors, and is
	 * otherwise version 2's first 80 bytes. */
	if (len == MANIFEST_V1_SIZE && get_le32(b + 8) == 1) {
		if (m.vec_snap || m.hnsw_gen || m.hnsw_snap ||
		    memcmp(again + 16, b + 16, 64) != 0)
			fail("accepted a version 1 manifest that does not "
			     "decode to its fields",
			     "round trip");
	} else if (len != MANIFEST_SIZE ||
		   memcmp(again, b, MANIFEST_SIZE) != 0)
		fail("accepted a manifest that does not encode back to its "
		     "bytes",
		     "round trip");
	if (m.wal_first == 0 || m.wal_first > m.wal_last ||
	    (m.snap_gen == 0 && m.snap_keys != 0))
		fail("accepted inconsistent fields", "field rules");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check(data, size);
	if (size == MANIFEST_SIZE || size == MANIFEST_V1_SIZE) {
		unsigned char fixed[MANIFEST_SIZE];
		memcpy(fixed, data, size);
		put_le64(fixed + size - 8, XXH3_64bits(fixed, size - 8));
		check(fixed, size);
	}
	return 0;
}
