#!/usr/bin/env bats
#
# kyro-snapshot: compaction into a new snapshot, -v, repeated runs, data
# kept, files removed (man/kyro-snapshot.1, issue 2).

bats_require_minimum_version 1.5.0

load helpers

# The sum of the sizes of the snapshot files of generation G (16 hex
# digits) in $D.
snap_bytes() {
	echo $(($(file_size "$D/snap-$1.bin") + $(file_size "$D/snap-$1.data")))
}

# The files of $D, one per line, sorted.
files() {
	(cd "$D" && LC_ALL=C ls -A)
}

# Check that $D holds exactly MANIFEST, LOCK, SNAPSHOT.lock, the snapshot
# files of generation G and WAL segments, nothing else.
only_generation() {
	local g=$1 f extra=''
	while IFS= read -r f; do
		case $f in
		MANIFEST | LOCK | SNAPSHOT.lock | "snap-$g.bin" | "snap-$g.data") ;;
		wal-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f].log) ;;
		*) extra+=" $f" ;;
		esac
	done < <(files)
	[ -z "$extra" ] || {
		echo "unexpected files in the store:$extra" >&2
		files >&2
		return 1
	}
	[ -f "$D/snap-$g.bin" ] && [ -f "$D/snap-$g.data" ]
}

@test "kyro-snapshot: a snapshot is silent on success and keeps every value" {
	printf '1\tone\n2\ttwo\n3\tthree\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	assert_output ''
	stderr_is ''
	expect_all $'1\tone\n2\ttwo\n3\tthree'
	run -0 --separate-stderr kyro-get -d "$D" 2
	assert_output 'two'
	only_generation 0000000000000001
}

@test "kyro-snapshot: -v prints 'generation G: K keys, B bytes in T s' on stderr" {
	printf '1\tone\n2\ttwo\n3\tthree\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-snapshot -v -d "$D"
	assert_output ''
	stderr_matches "^kyro-snapshot: generation 1: 3 keys, $(snap_bytes 0000000000000001) bytes in [0-9]+(\.[0-9]+)? s$"
	run -0 --separate-stderr kyro-put -d "$D" 4 four
	run -0 --separate-stderr kyro-snapshot -v -d "$D"
	assert_output ''
	stderr_matches "^kyro-snapshot: generation 2: 4 keys, $(snap_bytes 0000000000000002) bytes in [0-9]+(\.[0-9]+)? s$"
}

@test "kyro-snapshot: deleted keys are dropped and overwritten keys keep their last value" {
	printf '1\ta\n2\tb\n3\tc\n4\td\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-put -d "$D" --delete 2 4
	run -0 --separate-stderr kyro-put -d "$D" 3 C
	run -0 --separate-stderr kyro-snapshot -v -d "$D"
	assert_output ''
	stderr_matches "^kyro-snapshot: generation 1: 2 keys, "
	expect_all $'1\ta\n3\tC'
}

@test "kyro-snapshot: a second snapshot in a row is a no-op that succeeds" {
	printf '1\tone\n2\ttwo\n3\tthree\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	before=$(files)
	cp "$D/MANIFEST" manifest.before
	run -0 --separate-stderr kyro-snapshot -d "$D"
	assert_output ''
	stderr_is ''
	expect_all $'1\tone\n2\ttwo\n3\tthree'
	only_generation 0000000000000001
	run -0 --separate-stderr kyro-verify -d "$D"
	assert_output ''
	stderr_is ''
	[ "$(files)" = "$before" ]
}

@test "kyro-snapshot: -v on a no-op snapshot still reports the current snapshot truthfully" {
	printf '1\tone\n2\ttwo\n3\tthree\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	run -0 --separate-stderr kyro-snapshot -v -d "$D"
	assert_output ''
	# Nothing new: the generation, keys and bytes are those of the files
	# on disk, which did not change.
	stderr_matches "^kyro-snapshot: generation 1: 3 keys, $(snap_bytes 0000000000000001) bytes in [0-9]+(\.[0-9]+)? s$"
}

@test "kyro-snapshot: data survives snapshot, more writes, and another snapshot" {
	printf '1\ta\n2\tb\n3\tc\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	printf '2\tB\n4\td\n' >more.tsv
	put_file more.tsv
	run -0 --separate-stderr kyro-put -d "$D" --delete 1
	dump "$D" before.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	assert_output ''
	stderr_is ''
	dump "$D" after.tsv
	cmp before.tsv after.tsv
	expect_all $'2\tB\n3\tc\n4\td'
	run -0 --separate-stderr kyro-put -d "$D" 5 e
	run -0 --separate-stderr kyro-snapshot -d "$D"
	expect_all $'2\tB\n3\tc\n4\td\n5\te'
	run -0 --separate-stderr kyro-verify -d "$D"
	assert_output ''
	stderr_is ''
}

@test "kyro-snapshot: old snapshot files are removed, and folded WAL segments with --retain 0" {
	# By default folded segments stay as history (65-feed.bats).
	printf '1\ta\n2\tb\n' >in.tsv
	put_file in.tsv
	wal1=$(only_wal "$D")
	run -0 --separate-stderr kyro-snapshot -d "$D" --retain 0
	[ ! -e "$wal1" ]
	only_generation 0000000000000001
	run -0 --separate-stderr kyro-put -d "$D" 3 c
	wal2=$(only_wal "$D")
	run -0 --separate-stderr kyro-snapshot -d "$D" --retain 0
	[ ! -e "$wal2" ]
	[ ! -e "$D/snap-0000000000000001.bin" ]
	[ ! -e "$D/snap-0000000000000001.data" ]
	only_generation 0000000000000002
	run ls "$D"
	assert_output --regexp '^LOCK
MANIFEST
SNAPSHOT\.lock
snap-0000000000000002\.bin
snap-0000000000000002\.data(
wal-[0-9a-f]{16}\.log)*$'
	expect_all $'1\ta\n2\tb\n3\tc'
}

@test "kyro-snapshot: a snapshot of an empty store gives an empty store" {
	: >empty.tsv
	put_file empty.tsv
	run -0 --separate-stderr kyro-snapshot -v -d "$D"
	assert_output ''
	# With nothing to fold, writing no snapshot (generation 0) is as
	# right as writing an empty one; either way the report says so.
	if [ -e "$D/snap-0000000000000001.bin" ]; then
		g=1 bytes=$(snap_bytes 0000000000000001)
	else
		g=0 bytes=0
	fi
	stderr_matches "^kyro-snapshot: generation $g: 0 keys, $bytes bytes in [0-9]+(\.[0-9]+)? s$"
	expect_all ''
	run -0 --separate-stderr kyro-verify -d "$D"
	assert_output ''
}

@test "kyro-snapshot: binary values come through a snapshot byte-exact" {
	printf '7\t\\0\\xff\\n\\t\\\\end\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	run_to got.bin kyro-get -d "$D" -f raw 7
	[ "$status" -eq 0 ]
	printf '\0\377\n\t\\end' | cmp - got.bin
}

@test "kyro-snapshot: an operand is a usage error" {
	run -0 --separate-stderr kyro-put -d "$D" 1 a
	run -2 --separate-stderr kyro-snapshot -d "$D" extra
	usage_error kyro-snapshot "^kyro-snapshot: .*'extra'"
	[ ! -e "$D/snap-0000000000000001.bin" ]
}

@test "kyro-snapshot: KYRODB_DIR and ./kyrodb-data name the store without -d" {
	run -0 --separate-stderr kyro-put -d "$D" 1 env
	run -0 --separate-stderr env KYRODB_DIR="$D" kyro-snapshot
	assert_output ''
	stderr_is ''
	[ -f "$D/snap-0000000000000001.bin" ]
	mkdir work
	cd work
	run -0 --separate-stderr kyro-put 1 default
	run -0 --separate-stderr kyro-snapshot
	assert_output ''
	stderr_is ''
	[ -f kyrodb-data/snap-0000000000000001.bin ]
}

@test "kyro-snapshot: a non-empty directory that is not a store is refused and left alone" {
	mkdir other
	echo precious >other/notes.txt
	run -2 --separate-stderr kyro-snapshot -d other
	assert_output ''
	stderr_matches "^kyro-snapshot: [^"$'\n'"]*'other'[^"$'\n'"]*$"
	run ls -A other
	assert_output 'notes.txt'
}

@test "kyro-snapshot: a MANIFEST of a newer format version is refused, exit 2" {
	run -0 --separate-stderr kyro-put -d "$D" 1 a
	patch_byte "$D/MANIFEST" 8 '\x03'
	cp -a "$D" copy
	run -2 --separate-stderr kyro-snapshot -d "$D"
	assert_output ''
	stderr_starts_with 'kyro-snapshot: '
	stderr_matches 'version 3'
	diff -r "$D" copy
}

# Every line of the last run's stdout is one of the lines of FILE.
only_lines_of() {
	local extra
	extra=$(grep -vxF -f "$1" <<<"$output" || true)
	[ -z "$extra" ] || {
		echo "lines that are not in $1:" >&2
		echo "$extra" >&2
		return 1
	}
}

@test "kyro-get: a flipped byte in a snapshot's .bin or .data exits 2 naming the file, never a wrong value" {
	seq 1 600 | awk '{print $1"\tv"$1}' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	bin=$D/snap-0000000000000001.bin data=$D/snap-0000000000000001.data
	cp "$bin" bin.orig
	cp "$data" data.orig
	# A payload offset: its block also holds the first offset, which
	# opening checks.
	patch_byte "$bin" 4942 '\xff'
	run -2 --separate-stderr kyro-get -d "$D" -f tsv $(seq 1 600)
	assert_output ''
	stderr_is "kyro-get: '$bin': offset 4096: block fails its checksum"
	# A key: lookups that need its block fail, the others are right.
	cp bin.orig "$bin"
	flip_byte "$bin" 200
	run -2 --separate-stderr kyro-get -d "$D" -f tsv $(seq 1 600)
	only_lines_of in.tsv
	[ "${#lines[@]}" -gt 0 ]
	stderr_matches "^kyro-get: '$bin': offset 0: block fails its checksum"
	run -2 --separate-stderr kyro-get -d "$D" --all
	assert_output ''
	stderr_is "kyro-get: '$bin': offset 0: block fails its checksum"
	# A value.
	cp bin.orig "$bin"
	flip_byte "$data" 1000
	run -2 --separate-stderr kyro-get -d "$D" -f tsv $(seq 1 600)
	only_lines_of in.tsv
	stderr_matches "^kyro-get: '$data': offset 0: block fails its checksum"
	seq 1 200 >keys
	run -2 --separate-stderr kyro-get -d "$D" <keys
	assert_output ''
	stderr_is "kyro-get: '$data': offset 0: block fails its checksum"
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --partial "$data"
	cp data.orig "$data"
	run -0 --separate-stderr kyro-verify -d "$D"
	run -0 --separate-stderr kyro-get -d "$D" -f tsv $(seq 1 600)
	assert_output "$(cat in.tsv)"
}

@test "kyro-snapshot: a store of the previous release (snapshot format 1) is read, and rewritten as format 2" {
	fix=$BATS_TEST_DIRNAME/../fixtures
	cp -R "$fix/store-v1" "$D"
	v1=$D/snap-0000000000000001.bin
	[ "$(od -A n -t u4 -j 8 -N 4 "$v1" | tr -d ' ')" = 1 ]
	expect_all "$(cat "$fix/store-v1.tsv")"
	# Every key alone, through the learned index the old release built.
	cut -f1 "$fix/store-v1.tsv" >keys
	run -0 --separate-stderr kyro-get -d "$D" -f tsv <keys
	assert_output "$(cat "$fix/store-v1.tsv")"
	stderr_is ''
	run -0 --separate-stderr kyro-verify -d "$D"
	stderr_is ''
	# A damaged old snapshot is refused when opened: its array
	# checksums are verified then.
	cp "$D/snap-0000000000000001.data" data.orig
	flip_byte "$D/snap-0000000000000001.data" 100
	run -2 --separate-stderr kyro-get -d "$D" 13
	assert_output ''
	stderr_is "kyro-get: '$D/snap-0000000000000001.data': offset 32: payloads fail their checksum"
	cp data.orig "$D/snap-0000000000000001.data"
	run -0 --separate-stderr kyro-snapshot --rmi -d "$D"
	v2=$D/snap-0000000000000002.bin
	[ ! -e "$v1" ]
	[ "$(od -A n -t u4 -j 8 -N 4 "$v2" | tr -d ' ')" = 2 ]
	[ "$(od -A n -t u4 -j 8 -N 4 "$D/snap-0000000000000002.data" | tr -d ' ')" = 2 ]
	expect_all "$(cat "$fix/store-v1.tsv")"
	run -0 --separate-stderr kyro-get -d "$D" -f tsv <keys
	assert_output "$(cat "$fix/store-v1.tsv")"
	run -0 --separate-stderr kyro-verify -d "$D"
	stderr_is ''
}
