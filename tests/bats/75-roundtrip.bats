#!/usr/bin/env bats
#
# The round trip of issue 2's "Tests": 1M random binary values (KEY<TAB>
# ESCAPED lines, every escape and raw byte kyro-put allows) go in through
# kyro-put and come back byte for byte through kyro-get --all
# --format=tsv, from the WAL, from a snapshot and through a dump | load
# into another directory; then a subset is overwritten and deleted.
#
# The input and the expected dumps come from tests/crash/gen-roundtrip.c
# (the oracle, which never runs a KyroDB tool), generated once per file,
# and loaded once (in setup_file, which fails unless kyro-put exits 0
# silently); each test works on its own copy of that store.
# KYRODB_ROUNDTRIP_N sets the number of records (default 1000000).

bats_require_minimum_version 1.5.0

load helpers
load fault-helpers

setup_file() {
	pin_bin
	RT="$BATS_FILE_TMPDIR/rt"
	mkdir -p "$RT"
	cc -O2 -Wall -Wextra -o "$BATS_FILE_TMPDIR/gen-roundtrip" \
		"$CRASH_SRC/gen-roundtrip.c"
	"$BATS_FILE_TMPDIR/gen-roundtrip" "${KYRODB_ROUNDTRIP_SEED:-20261121}" \
		"${KYRODB_ROUNDTRIP_N:-1000000}" "$RT"
	# The 1M-record batch, loaded once.
	"$BATS_FILE_TMPDIR/bin/kyro-put" -d "$BATS_FILE_TMPDIR/loaded" \
		<"$RT/load.tsv" >"$RT/load.out" 2>"$RT/load.err" || {
		echo "kyro-put of load.tsv failed: $(cat "$RT/load.err")" >&2
		return 1
	}
	[ ! -s "$RT/load.out" ] && [ ! -s "$RT/load.err" ] || {
		echo "kyro-put of load.tsv was not silent" >&2
		return 1
	}
}

setup() {
	use_pinned_bin
	kyro_setup
	RT="$BATS_FILE_TMPDIR/rt"
}

# loaded DIR: a copy of the store that holds load.tsv (only in its WAL).
loaded() {
	clone_store "$BATS_FILE_TMPDIR/loaded" "$1"
}

# load_file DIR FILE [OPTIONS...]: kyro-put -d DIR OPTIONS < FILE, silent.
load_file() {
	local dir=$1 file=$2
	shift 2
	run -0 --separate-stderr kyro-put -d "$dir" "$@" <"$file"
	assert_output ''
	assert_equal "$stderr" ''
}

# same_as_expected DIR EXPECTED: the dump of DIR is EXPECTED byte for byte
# (on a mismatch, the first differing lines are shown).
same_as_expected() {
	expect_same "$1" "$2"
}

@test "the generated input really is binary: NUL, tab, newline, CR, backslash and high bytes, raw and escaped" {
	# A guard on the oracle, so the round trip cannot pass on tame data.
	local f="$RT/load.tsv"
	[ "$(wc -l <"$f")" -ge 100 ]
	grep -q -a -F '\0' "$f"
	grep -q -a -F '\n' "$f"
	grep -q -a -F '\\' "$f"
	grep -q -a -i -F '\xff' "$f"
	LC_ALL=C grep -q -a -P '\t[^\n]*\t' "$f" # a raw tab inside a value
	[ "$(LC_ALL=C tr -dc '\000' <"$f" | wc -c)" -gt 1000 ] # raw NULs
	[ "$(LC_ALL=C tr -dc '\r' <"$f" | wc -c)" -gt 1000 ]   # raw CRs
	[ "$(LC_ALL=C tr -dc '\200-\377' <"$f" | wc -c)" -gt 1000 ] # raw high bytes
	LC_ALL=C grep -q -a -P '^0x[0-9A-F]*[A-F]' "$f" # upper-case hex keys
	LC_ALL=C grep -q -a -P '^(18446744073709551615|0x[fF]{16})\t' "$f"
	LC_ALL=C grep -q -a -P '^(0|0x0+|000+0)\t' "$f"
	[ "$(cut -f1 "$RT/expect1.tsv" | sort -u | wc -l)" -eq "$(wc -l <"$RT/expect1.tsv")" ]
	# Keys repeat inside the batch (the last one must win).
	[ "$(wc -l <"$RT/expect1.tsv")" -lt "$(wc -l <"$f")" ]
}

@test "1M random binary values load in one batch and kyro-get --all --format=tsv prints exactly the latest value of each key" {
	# (loaded by setup_file: one kyro-put, exit 0, silent)
	D="$BATS_FILE_TMPDIR/loaded"
	same_as_expected "$D" "$RT/expect1.tsv"
	verify_clean "$D"
}

@test "the round trip holds after kyro-snapshot, and after a second snapshot with nothing new" {
	loaded "$D"
	run -0 --separate-stderr kyro-snapshot -d "$D"
	assert_equal "$stderr" ''
	same_as_expected "$D" "$RT/expect1.tsv"
	run -0 --separate-stderr kyro-snapshot -d "$D"
	same_as_expected "$D" "$RT/expect1.tsv"
	verify_clean "$D"
}

@test "kyro-get --all --format=tsv | kyro-put into another directory reproduces a snapshotted store exactly" {
	# (From the WAL: the next test but one.)
	loaded "$D"
	run -0 kyro-snapshot -d "$D"
	set -o pipefail
	kyro-get -d "$D" --all --format=tsv | kyro-put -d copy
	same_as_expected copy "$RT/expect1.tsv"
	verify_clean copy
}

@test "overwriting and deleting a subset (over a snapshot and the WAL) shows the latest values and no deleted key, before and after a snapshot" {
	loaded "$D"
	run -0 kyro-snapshot -d "$D"
	load_file "$D" "$RT/over.tsv"
	load_file "$D" "$RT/del.txt" --delete
	same_as_expected "$D" "$RT/expect2.tsv"
	run -0 --separate-stderr kyro-snapshot -d "$D"
	same_as_expected "$D" "$RT/expect2.tsv"
	verify_clean "$D"
}

@test "overwrites and deletes land the same without a snapshot in between, and a dump of the result loads back identically" {
	loaded "$D"
	load_file "$D" "$RT/over.tsv" --sync=none
	load_file "$D" "$RT/del.txt" --delete
	same_as_expected "$D" "$RT/expect2.tsv"
	set -o pipefail
	kyro-get -d "$D" --all --format=tsv | kyro-put -d copy
	same_as_expected copy "$RT/expect2.tsv"
	verify_clean copy
}

@test "point lookups agree with the listing, for keys in the snapshot, in the WAL, deleted and never written" {
	loaded "$D"
	run -0 kyro-snapshot -d "$D"
	load_file "$D" "$RT/over.tsv"
	load_file "$D" "$RT/del.txt" --delete
	# Every 97th present key, from stdin, answered in input order.
	awk 'NR % 97 == 1' "$RT/expect2.tsv" >want.tsv
	cut -f1 want.tsv >keys.txt
	run_to got.tsv kyro-get -d "$D" --format=tsv <keys.txt
	[ "$status" -eq 0 ] || fail "kyro-get exited $status: $stderr"
	cmp want.tsv got.tsv
	# Deleted keys that were present before (in the snapshot): not found.
	cut -f1 "$RT/expect1.tsv" | sort >k1.txt
	cut -f1 "$RT/expect2.tsv" | sort >k2.txt
	comm -23 k1.txt k2.txt | head -500 >gone.txt
	[ "$(wc -l <gone.txt)" -gt 100 ]
	run -1 --separate-stderr kyro-get -d "$D" <gone.txt
	assert_output ''
	assert_equal "$(grep -c ': not found$' <<<"$stderr")" "$(wc -l <gone.txt)"
}
