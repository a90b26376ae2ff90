#!/usr/bin/env bats
#
# kyro-verify: a clean store, torn tails and --repair, corruption in the
# WAL, the snapshot and the MANIFEST, and what the other tools do with
# them (man/kyro-verify.1, man/kyro.7, issue 2).
#
# Offsets come from the formats in libkyro/wal.c, snapshot.c and
# manifest.c: a WAL segment has a 48-byte header, so its first record is
# at offset 48; the MANIFEST is 128 bytes.

bats_require_minimum_version 1.5.0

load helpers

WAL1=wal-0000000000000001.log

# A store of three batches (1 = one; 2 = two, 3 = three; 4 = four) in one
# WAL segment, $D/$WAL1, with no snapshot.
three_batches() {
	run -0 --separate-stderr kyro-put -d "$D" 1 one
	printf '2\ttwo\n3\tthree\n' >b2.tsv
	put_file b2.tsv
	run -0 --separate-stderr kyro-put -d "$D" 4 four
	[ "$(only_wal "$D")" = "$D/$WAL1" ]
}

ALL3=$'1\tone\n2\ttwo\n3\tthree\n4\tfour'

# verify_clean: kyro-verify -d $D exits 0 and prints nothing.
verify_clean() {
	run -0 --separate-stderr kyro-verify -d "$D"
	assert_output ''
	stderr_is ''
}

# ERE for the start of a problem line about FILE in $D at OFFSET: the file
# may be named with the directory in front.
at() {
	local f=${1//./\\.}
	printf '^([^\n]*/)?%s: offset %s: ' "$f" "$2"
}

@test "kyro-verify: a clean store exits 0 and prints nothing" {
	three_batches
	verify_clean
	run -0 --separate-stderr kyro-snapshot -d "$D"
	run -0 --separate-stderr kyro-put -d "$D" 5 five
	verify_clean
}

@test "kyro-verify: -v prints a summary on stderr only" {
	three_batches
	run -0 --separate-stderr kyro-verify -v -d "$D"
	assert_output ''
	stderr_matches $'^kyro-verify: [^\n]+$'
}

@test "kyro-verify: garbage after the last batch is a torn tail with file and offset, exit 1" {
	three_batches
	end=$(file_size "$D/$WAL1")
	printf 'garbage' >>"$D/$WAL1"
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "$(at $WAL1 "$end")torn tail[^"$'\n'"]*$"
	stderr_is ''
	# A torn tail is not an error for readers: the log ends before it.
	expect_all "$ALL3"
}

@test "kyro-verify: a truncated record after the last batch is a torn tail" {
	three_batches
	cp -a "$D" longer
	run -0 --separate-stderr kyro-put -d longer 5 "a value long enough to cut in the middle"
	end=$(file_size "$D/$WAL1")
	# The first 40 bytes of the next batch, as a crash would leave them.
	head -c $((end + 40)) "longer/$WAL1" | tail -c 40 >>"$D/$WAL1"
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "$(at $WAL1 "$end")torn tail[^"$'\n'"]*$"
	stderr_is ''
	expect_all "$ALL3"
	run -1 --separate-stderr kyro-get -d "$D" 5
	stderr_is 'kyro-get: 5: not found'
}

@test "kyro-verify: a batch without its commit record is a torn tail, and is not visible" {
	three_batches
	cp -a "$D" longer
	printf '5\tfive\n6\tsix\n' >b.tsv
	run -0 --separate-stderr kyro-put -d longer <b.tsv
	end=$(file_size "$D/$WAL1")
	full=$(file_size "longer/$WAL1")
	# Everything of the batch but its last (COMMIT) record, 32 bytes.
	head -c $((full - 32)) "longer/$WAL1" | tail -c $((full - 32 - end)) >>"$D/$WAL1"
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "$(at $WAL1 "$end")torn tail[^"$'\n'"]*$"
	expect_all "$ALL3"
}

@test "kyro-verify: --repair truncates a torn tail, exits 0, and the store is clean and intact" {
	three_batches
	cp "$D/$WAL1" wal.orig
	end=$(file_size "$D/$WAL1")
	printf 'garbage' >>"$D/$WAL1"
	run -0 --separate-stderr kyro-verify --repair -d "$D"
	assert_output --regexp "$(at $WAL1 "$end")torn tail[^"$'\n'"]*repaired"
	stderr_is ''
	cmp wal.orig "$D/$WAL1"
	verify_clean
	expect_all "$ALL3"
}

@test "kyro-verify: --repair on a clean store changes nothing and prints nothing" {
	three_batches
	cp -a "$D" copy
	run -0 --separate-stderr kyro-verify --repair -d "$D"
	assert_output ''
	stderr_is ''
	cmp "copy/$WAL1" "$D/$WAL1"
	cmp copy/MANIFEST "$D/MANIFEST"
}

@test "kyro-verify: the next writer truncates a torn tail and the store is clean after" {
	three_batches
	end=$(file_size "$D/$WAL1")
	printf 'garbage!' >>"$D/$WAL1"
	run -0 --separate-stderr kyro-put -d "$D" 5 five
	assert_output ''
	stderr_is ''
	verify_clean
	expect_all "$ALL3"$'\n5\tfive'
}

@test "kyro-verify: a flipped byte in an early record followed by valid records is corruption at that record" {
	three_batches
	# The first record is at 48; its value "one" starts 32 bytes in.
	flip_byte "$D/$WAL1" $((48 + 32))
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "$(at $WAL1 48)"
	refute_output --partial 'torn tail'
	stderr_is ''
}

@test "kyro-verify: --repair cuts a corrupt WAL before the damage, keeps a copy in lost+found, says what is lost, exit 1" {
	three_batches
	flip_byte "$D/$WAL1" $((48 + 32))
	cp "$D/$WAL1" wal.bad
	run -1 --separate-stderr kyro-verify --repair -d "$D"
	assert_output --regexp "$(at $WAL1 48)[^"$'\n'"]*sequence numbers 1\.\.4 \(4 records, at least 3 batches\)[^"$'\n'"]*lost\+found"
	stderr_is ''
	[ "$(file_size "$D/$WAL1")" -eq 48 ]
	cmp <(tail -c +49 wal.bad) "$D/lost+found/$WAL1.from-48"
	verify_clean
	run -1 --separate-stderr kyro-get -d "$D" 1
	run -0 --separate-stderr kyro-put -d "$D" 5 five
	expect_all $'5\tfive'
}

@test "kyro-get: a corrupt WAL record is an error naming the file and offset, exit 2" {
	three_batches
	flip_byte "$D/$WAL1" $((48 + 32))
	run -2 --separate-stderr kyro-get -d "$D" 4
	assert_output ''
	stderr_starts_with 'kyro-get: '
	stderr_matches "$WAL1[^"$'\n'"]*offset 48"
}

@test "kyro-put: after a reboot, a corrupt WAL record refuses the write, exit 2, and appends nothing" {
	three_batches
	flip_byte "$D/$WAL1" $((48 + 32))
	# A writer checks every record it has not checked itself, whatever
	# the shared page says; here the page is cleared too, as after a
	# reboot.
	dd if=/dev/zero of="$D/LOCK" bs=4096 count=1 conv=notrunc status=none
	cp "$D/$WAL1" wal.bad
	run -2 --separate-stderr kyro-put -d "$D" 5 five
	assert_output ''
	stderr_starts_with 'kyro-put: '
	stderr_matches "$WAL1[^"$'\n'"]*offset 48"
	cmp wal.bad "$D/$WAL1"
}

@test "kyro-snapshot: a corrupt WAL record is an error, exit 2, and the WAL is kept" {
	three_batches
	flip_byte "$D/$WAL1" $((48 + 32))
	cp "$D/$WAL1" wal.bad
	run -2 --separate-stderr kyro-snapshot -d "$D"
	assert_output ''
	stderr_starts_with 'kyro-snapshot: '
	stderr_matches "$WAL1[^"$'\n'"]*offset 48"
	cmp wal.bad "$D/$WAL1"
	[ ! -e "$D/snap-0000000000000001.bin" ]
}

@test "kyro-verify: a flipped byte in snap-*.data fails the payload checksum, exit 1" {
	three_batches
	run -0 --separate-stderr kyro-snapshot -d "$D"
	data=snap-0000000000000001.data
	# The payloads start after the 32-byte header.
	flip_byte "$D/$data" 33
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "$(at $data '[0-9]+')"
	stderr_is ''
}

@test "kyro-verify: a flipped byte in the key array of snap-*.bin is damage, exit 1" {
	three_batches
	run -0 --separate-stderr kyro-snapshot -d "$D"
	bin=snap-0000000000000001.bin
	# The key array starts after the 128-byte header.
	flip_byte "$D/$bin" 128
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "$(at $bin '[0-9]+')"
	stderr_is ''
}

@test "kyro-verify: a snapshot file named by the MANIFEST but missing is damage naming it" {
	three_batches
	run -0 --separate-stderr kyro-snapshot -d "$D"
	rm "$D/snap-0000000000000001.data"
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --partial 'snap-0000000000000001.data'
}

@test "kyro-verify: a corrupted MANIFEST is damage naming the file, exit 1" {
	three_batches
	flip_byte "$D/MANIFEST" 48
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "$(at MANIFEST '[0-9]+')"
}

@test "kyro-get and kyro-put: a corrupted MANIFEST is an error, exit 2, and nothing is changed" {
	three_batches
	flip_byte "$D/MANIFEST" 48
	cp -a "$D" copy
	run -2 --separate-stderr kyro-get -d "$D" 1
	assert_output ''
	stderr_starts_with 'kyro-get: '
	stderr_matches 'MANIFEST'
	run -2 --separate-stderr kyro-put -d "$D" 1 changed
	assert_output ''
	stderr_starts_with 'kyro-put: '
	stderr_matches 'MANIFEST'
	run -2 --separate-stderr kyro-snapshot -d "$D"
	assert_output ''
	stderr_starts_with 'kyro-snapshot: '
	stderr_matches 'MANIFEST'
	cmp copy/MANIFEST "$D/MANIFEST"
	cmp "copy/$WAL1" "$D/$WAL1"
}

@test "kyro-verify: a missing data directory is an error, exit 2" {
	run -2 --separate-stderr kyro-verify -d nowhere
	assert_output ''
	stderr_is "kyro-verify: cannot open 'nowhere': No such file or directory"
	[ ! -e nowhere ]
}

@test "kyro-verify: an operand is a usage error" {
	three_batches
	run -2 --separate-stderr kyro-verify -d "$D" extra
	usage_error kyro-verify "^kyro-verify: .*'extra'"
}

@test "kyro-verify: KYRODB_DIR and ./kyrodb-data name the store without -d" {
	three_batches
	printf 'x' >>"$D/$WAL1"
	run -1 --separate-stderr env KYRODB_DIR="$D" kyro-verify
	assert_output --partial 'torn tail'
	mkdir work
	cd work
	run -0 --separate-stderr kyro-put 1 a
	run -0 --separate-stderr kyro-verify
	assert_output ''
	stderr_is ''
}

# ---- the shared page (LOCK) and the WAL under damage ----
# LOCK layout 2 (libkyro/shared.c): committed end at 56, last sequence
# number at 64, checksum at 72, zeros from 80 to 4096.

@test "kyro-put: a flipped committed end in LOCK neither overwrites an acknowledged batch nor wedges anything" {
	three_batches
	flip_byte "$D/LOCK" 56
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "$(at LOCK 72)shared page fails its checksum: the next writer rebuilds it\$"
	expect_all "$ALL3"
	run -0 --separate-stderr kyro-put -d "$D" 5 five
	stderr_is ''
	expect_all "$ALL3"$'\n5\tfive'
	verify_clean
}

@test "kyro-get and kyro-verify --repair: a flipped last sequence number in LOCK is not believed, and repair rebuilds the page" {
	three_batches
	flip_byte "$D/LOCK" 64
	expect_all "$ALL3"
	run -0 --separate-stderr kyro-verify --repair -d "$D"
	assert_output --regexp "$(at LOCK 72)shared page fails its checksum: rebuilt from the files \\(repaired\\)\$"
	stderr_is ''
	verify_clean
	run -0 --separate-stderr kyro-put -d "$D" 5 five
	expect_all "$ALL3"$'\n5\tfive'
}

@test "kyro-verify: a non-zero byte after the fields of LOCK is damage naming LOCK" {
	three_batches
	patch_byte "$D/LOCK" 2000 '\001'
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "$(at LOCK 2000)[^"$'\n'"]*not zero: the next writer rebuilds it\$"
	run -0 --separate-stderr kyro-put -d "$D" 5 five
	verify_clean
}

@test "a WAL cut short in the same boot: readers and writers exit 2 naming the repair, which cuts, keeps a copy, says what is lost and exits 1" {
	three_batches
	truncate -s -3 "$D/$WAL1"
	run -2 --separate-stderr kyro-get -d "$D" 1
	assert_output ''
	stderr_matches "^kyro-get: [^"$'\n'"]*$WAL1[^"$'\n'"]*committed data is missing[^"$'\n'"]*run 'kyro-verify --repair'\$"
	run -2 --separate-stderr kyro-put -d "$D" 5 five
	assert_output ''
	stderr_matches "^kyro-put: [^"$'\n'"]*$WAL1[^"$'\n'"]*committed data is missing[^"$'\n'"]*run 'kyro-verify --repair'\$"
	[ "$(file_size "$D/$WAL1")" -eq 301 ]
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "$(at $WAL1 232)[^"$'\n'"]*sequence numbers 4\\.\\.4 \\(1 record, at least 1 batch\\)"
	run -1 --separate-stderr kyro-verify --repair -d "$D"
	assert_output --regexp "$(at $WAL1 232)[^"$'\n'"]*sequence numbers 4\\.\\.4[^"$'\n'"]*lost\\+found/$WAL1\\.from-232\$"
	stderr_is ''
	[ "$(file_size "$D/$WAL1")" -eq 232 ]
	[ "$(file_size "$D/lost+found/$WAL1.from-232")" -eq 69 ]
	verify_clean
	run -0 --separate-stderr kyro-put -d "$D" 5 five
	expect_all $'1\tone\n2\ttwo\n3\tthree\n5\tfive'
	verify_clean
}

@test "kyro-put: a flipped byte in a WAL segment header is refused, exit 2, and --repair rewrites the header keeping every record" {
	three_batches
	flip_byte "$D/$WAL1" 40
	cp "$D/$WAL1" wal.bad
	run -2 --separate-stderr kyro-put -d "$D" 5 five
	assert_output ''
	stderr_is "kyro-put: '$D/$WAL1': offset 0: bad segment header; run 'kyro-verify --repair'"
	cmp wal.bad "$D/$WAL1"
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "$(at $WAL1 0)bad segment header; 'kyro-verify --repair' rewrites it"
	run -0 --separate-stderr kyro-verify --repair -d "$D"
	assert_output --regexp "$(at $WAL1 0)bad segment header: rewritten [^"$'\n'"]*\\(repaired\\)\$"
	cmp <(tail -c +49 wal.bad) <(tail -c +49 "$D/$WAL1")
	verify_clean
	expect_all "$ALL3"
	run -0 --separate-stderr kyro-put -d "$D" 5 five
	expect_all "$ALL3"$'\n5\tfive'
}

@test "kyro-verify --repair: a torn tail of an unfinished batch after a reboot is still just truncated, exit 0, no copy kept" {
	three_batches
	printf 'garbage' >>"$D/$WAL1"
	dd if=/dev/zero of="$D/LOCK" bs=4096 count=1 conv=notrunc status=none
	run -0 --separate-stderr kyro-verify --repair -d "$D"
	assert_output --regexp "$(at $WAL1 304)torn tail[^"$'\n'"]*repaired \\(truncated\\)\$"
	[ ! -e "$D/lost+found" ]
	verify_clean
}
