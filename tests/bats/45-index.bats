#!/usr/bin/env bats
# The learned index from the command line: kyro-rmi-build, kyro-warmup,
# kyro-snapshot --rmi, kyro-verify --deep, and a damaged, truncated or
# stale index refused with lookups still right.

bats_require_minimum_version 1.5.0
load helpers

# A store of N keys spread over the key space, snapshotted; the expected
# dump is kept in "$BATS_TEST_TMPDIR/want".
make_store() {
	local n=${1:-5000}
	# %.0f: awk's %d stops at 2^31 - 1; doubles are exact below 2^53.
	awk -v n="$n" 'BEGIN { srand(7); for (i = 0; i < n; i++) {
		k = int(rand() * 2^40) * 4096 + i; printf "%.0f\tv%d\n", k, i } }' |
		sort -n -k1,1 -u >"$BATS_TEST_TMPDIR/in.tsv"
	kyro-put -d "$D" <"$BATS_TEST_TMPDIR/in.tsv"
	kyro-snapshot -d "$D"
	kyro-get -d "$D" --all >"$BATS_TEST_TMPDIR/want"
	cut -f1 "$BATS_TEST_TMPDIR/in.tsv" >"$BATS_TEST_TMPDIR/keys"
	[ "$(wc -l <"$BATS_TEST_TMPDIR/keys")" -eq "$n" ]
}

# Add KEY VALUE to the store and to the expected lookups (the smallest key
# of all, so it comes first in both).
add_small() {
	printf '%s\t%s\n' "$1" "$2" | kyro-put -d "$D"
	{ echo "$1"; cat "$BATS_TEST_TMPDIR/keys"; } >"$BATS_TEST_TMPDIR/k2"
	mv "$BATS_TEST_TMPDIR/k2" "$BATS_TEST_TMPDIR/keys"
}

# Every key answers its value, in order, whatever the index's state.
lookups_are_right() {
	run -0 --separate-stderr kyro-get -d "$D" -f tsv <"$BATS_TEST_TMPDIR/keys"
	diff <(printf '%s\n' "$output") "$BATS_TEST_TMPDIR/want"
}

idx() { ls "$D"/rmi-*.idx; }

# flip_byte FILE OFFSET: invert every bit of one byte (a write of a fixed
# value may leave the byte as it was, and test nothing).
flip_byte() {
	local b
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "\\$(printf %03o $((b ^ 255)))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

@test "kyro-rmi-build: builds and commits an index silently; lookups use it and stay right" {
	make_store
	run -0 --separate-stderr kyro-rmi-build -d "$D"
	assert_output ""
	stderr_is ""
	[ "$(ls "$D"/rmi-*.idx | wc -l)" -eq 1 ]
	lookups_are_right
	stderr_is ""
	run -0 --separate-stderr kyro-verify -d "$D" --deep
	assert_output ""
}

@test "kyro-rmi-build: -v prints the index's shape, size and time on stderr only" {
	make_store
	run -0 --separate-stderr kyro-rmi-build -v -d "$D"
	assert_output ""
	stderr_matches '^kyro-rmi-build: index 1: [0-9]+ keys, [0-9]+ leaves, router bits [0-9]+, mean window [0-9.]+, max window [0-9]+, [0-9]+ bytes in [0-9.]+ s$'
}

@test "kyro-rmi-build: --leaves and --router-bits are obeyed" {
	make_store
	run -0 --separate-stderr kyro-rmi-build -v -d "$D" --leaves 64 --router-bits 10
	stderr_matches ' 64 leaves, router bits 10,'
	lookups_are_right
}

@test "kyro-rmi-build: a second build replaces the first, whose file is removed" {
	make_store
	kyro-rmi-build -d "$D"
	run -0 --separate-stderr kyro-rmi-build -d "$D" --leaves 32
	[ "$(idx)" = "$D/rmi-0000000000000002.idx" ]
	lookups_are_right
}

@test "kyro-rmi-build: router bits outside 8..24 and junk numbers are usage errors" {
	make_store 100
	for a in "--router-bits 7" "--router-bits 25" "--leaves 0" "--leaves x" "--max-size -1"; do
		# shellcheck disable=SC2086
		run -2 --separate-stderr kyro-rmi-build -d "$D" $a
		assert_output ""
		stderr_matches "Try 'kyro-rmi-build --help'\.\$"
	done
}

@test "kyro-rmi-build: a store without a snapshot is an error, exit 2" {
	kyro-put -d "$D" 1 one
	run -2 --separate-stderr kyro-rmi-build -d "$D"
	assert_output ""
	stderr_matches "^kyro-rmi-build: '.*' has no snapshot to index \(run kyro-snapshot first\)\$"
}

@test "kyro-rmi-build: a missing directory is an error and creates nothing" {
	run -2 --separate-stderr kyro-rmi-build -d "$D"
	stderr_matches "^kyro-rmi-build: cannot open '.*': No such file or directory\$"
	[ ! -e "$D" ]
}

@test "kyro-snapshot --rmi: commits the new snapshot with its index in one step" {
	make_store
	printf '5\tfive\n' | kyro-put -d "$D"
	run -0 --separate-stderr kyro-snapshot -d "$D" --rmi -v
	stderr_matches 'index 1: [0-9]+ leaves'
	[ -e "$D/rmi-0000000000000001.idx" ]
	run -0 --separate-stderr kyro-verify -d "$D" --deep
	run -0 kyro-get -d "$D" 5
	assert_output five
}

@test "kyro-snapshot: a new snapshot without --rmi retires the old index (binary search, no warning)" {
	make_store
	kyro-rmi-build -d "$D"
	add_small 5 five
	kyro-snapshot -d "$D"
	run -0 ls "$D"
	refute_output --partial rmi-
	kyro-get -d "$D" --all >"$BATS_TEST_TMPDIR/want"
	lookups_are_right
	stderr_is ""
}

@test "a damaged index is refused with a warning, and every lookup is still right" {
	make_store
	kyro-rmi-build -d "$D"
	size=$(stat -c %s "$(idx)")
	flip_byte "$(idx)" $((size / 2))
	lookups_are_right
	stderr_matches "^kyro-get: warning: learned index '.*rmi-0000000000000001.idx' refused: .*; using binary search\$"
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --partial "rmi-0000000000000001.idx: offset 0: learned index refused"
}

@test "one-key lookups read a damaged index as a hint, stay right and say nothing" {
	make_store
	kyro-rmi-build -d "$D"
	size=$(stat -c %s "$(idx)")
	# The header intact (it is checked at open), the router entries and
	# leaf records a lookup reads damaged all over.
	for ((off = 64; off < size - 8; off += 97)); do
		flip_byte "$(idx)" "$off"
	done
	# One key per process: each answered before the index would load.
	while read -r k v; do
		run -0 --separate-stderr kyro-get -d "$D" "$k"
		[ "$output" = "$v" ] || { echo "key $k: '$output', want '$v'"; false; }
		stderr_is ""
		run -1 --separate-stderr kyro-get -d "$D" $((k + 1))
		assert_output ""
	done < <(awk 'NR % 125 == 1' "$BATS_TEST_TMPDIR/in.tsv")
	# Many keys load it: refused, and still right.
	lookups_are_right
	stderr_matches 'refused: .*; using binary search$'
}

@test "a truncated index is refused with a warning, and every lookup is still right" {
	make_store
	kyro-rmi-build -d "$D"
	truncate -s 100 "$(idx)"
	lookups_are_right
	stderr_matches 'learned index .* refused: .*; using binary search$'
	run -1 --separate-stderr kyro-verify -d "$D"
}

@test "a stale index (built for another snapshot) is refused, and lookups are still right" {
	make_store
	kyro-rmi-build -d "$D"
	cp "$(idx)" "$BATS_TEST_TMPDIR/old.idx"
	add_small 5 five
	kyro-snapshot -d "$D" --rmi
	kyro-get -d "$D" --all >"$BATS_TEST_TMPDIR/want"
	# Put the index of the previous snapshot in place of the current one.
	cp "$BATS_TEST_TMPDIR/old.idx" "$(idx)"
	lookups_are_right
	stderr_matches 'refused: .*; using binary search$'
}

@test "a missing index file is refused with a warning, and lookups are still right" {
	make_store
	kyro-rmi-build -d "$D"
	rm "$(idx)"
	lookups_are_right
	stderr_matches 'learned index refused: .*No such file or directory; using binary search$'
}

@test "KYRODB_INDEX=binary gives the same answers as the index, and every KYRODB_SIMD variant too" {
	make_store
	kyro-rmi-build -d "$D"
	KYRODB_INDEX=binary lookups_are_right
	for s in scalar sse4 avx2 avx512; do
		KYRODB_SIMD=$s lookups_are_right
	done
	# absent keys and ranges through the index
	run -1 --separate-stderr kyro-get -d "$D" 1 3
	stderr_is $'kyro-get: 1: not found\nkyro-get: 3: not found'
	lo=$(sed -n 10p "$BATS_TEST_TMPDIR/keys") hi=$(sed -n 20p "$BATS_TEST_TMPDIR/keys")
	run -0 kyro-get -d "$D" --range "$lo" "$hi"
	[ "${#lines[@]}" -eq 11 ]
}

@test "kyro-warmup: silent on success; -v reports megabytes and time" {
	make_store
	kyro-rmi-build -d "$D"
	run -0 --separate-stderr kyro-warmup -d "$D"
	assert_output ""
	stderr_is ""
	run -0 --separate-stderr kyro-warmup -v -d "$D"
	stderr_matches '^kyro-warmup: [0-9]+\.[0-9] MB in [0-9.]+ s$'
}

@test "kyro-warmup: a store without a snapshot warms nothing and succeeds" {
	kyro-put -d "$D" 1 one
	run -0 --separate-stderr kyro-warmup -v -d "$D"
	stderr_matches '^kyro-warmup: 0\.0 MB in '
}

@test "kyro-warmup: a missing directory and an operand are errors, exit 2" {
	run -2 --separate-stderr kyro-warmup -d "$D"
	stderr_matches "^kyro-warmup: cannot open '.*': No such file or directory\$"
	kyro-put -d "$D" 1 one
	run -2 --separate-stderr kyro-warmup -d "$D" extra
	stderr_matches "Try 'kyro-warmup --help'\.\$"
}

@test "kyro-verify --deep: a flipped byte in the index is reported, exit 1" {
	make_store
	kyro-rmi-build -d "$D" --leaves 8
	f=$(idx)
	# The test of the library's own checks belongs to the unit tests; here
	# a damaged index must at least never make kyro-verify --deep crash or
	# pass silently: it is refused (checksum) and reported, exit 1.
	cp "$f" "$BATS_TEST_TMPDIR/orig.idx"
	flip_byte "$f" 200
	! cmp -s "$f" "$BATS_TEST_TMPDIR/orig.idx"
	run -1 --separate-stderr kyro-verify -d "$D" --deep
	assert_output --partial 'learned index refused'
}

@test "an index of format version 2 is still used, and kyro-rmi-build rewrites it as version 4" {
	fix=$BATS_TEST_DIRNAME/../fixtures
	cp -R "$fix/store-rmi2" "$D"
	[ "$(od -A n -t u4 -j 8 -N 4 "$(idx)" | tr -d ' ')" = 2 ]
	cut -f1 "$fix/store-rmi2.tsv" >"$BATS_TEST_TMPDIR/keys"
	cp "$fix/store-rmi2.tsv" "$BATS_TEST_TMPDIR/want"
	lookups_are_right
	stderr_is ""
	# --deep checks every key against the index's own window: it was
	# loaded, not refused.
	run -0 --separate-stderr kyro-verify -d "$D" --deep
	assert_output ""
	run -0 --separate-stderr kyro-rmi-build -d "$D"
	[ "$(od -A n -t u4 -j 8 -N 4 "$(idx)" | tr -d ' ')" = 4 ]
	lookups_are_right
	stderr_is ""
	run -0 --separate-stderr kyro-verify -d "$D" --deep
	assert_output ""
}

@test "an index of the previous format (version 3) is still used, and kyro-rmi-build rewrites it as version 4" {
	fix=$BATS_TEST_DIRNAME/../fixtures
	cp -R "$fix/store-rmi3" "$D"
	[ "$(od -A n -t u4 -j 8 -N 4 "$(idx)" | tr -d ' ')" = 3 ]
	cut -f1 "$fix/store-rmi3.tsv" >"$BATS_TEST_TMPDIR/keys"
	cp "$fix/store-rmi3.tsv" "$BATS_TEST_TMPDIR/want"
	lookups_are_right
	stderr_is ""
	run -0 --separate-stderr kyro-verify -d "$D" --deep
	assert_output ""
	run -0 --separate-stderr kyro-rmi-build -d "$D"
	[ "$(od -A n -t u4 -j 8 -N 4 "$(idx)" | tr -d ' ')" = 4 ]
	lookups_are_right
	stderr_is ""
	run -0 --separate-stderr kyro-verify -d "$D" --deep
	assert_output ""
}
