#!/usr/bin/env bats
#
# Fault injection (issue 2, "Tests" and the bad-input list): failing write,
# fsync (of files and of the directory), rename, open and ftruncate, short
# writes, and a full disk, both simulated (ENOSPC from libfiu) and real (a
# small tmpfs).  Every time, kyro-put and kyro-snapshot print one line
# "kyro-TOOL: what failed 'PATH': why" on stderr and exit 2; the batch is
# not visible; everything committed before reads back byte for byte; and
# kyro-verify is clean, at once or at the latest after the next writer.
# A failed fsync is never followed by exit 0.
#
# libfiu failure points used (see /usr/share/doc/fiu-utils/function_list):
#   posix/io/rw/write, posix/io/rw/write/reduce (short writes),
#   posix/io/sync/fsync, posix/io/sync/* (fsync, fdatasync,
#   sync_file_range), posix/io/dir/rename, posix/io/oc/open,
#   posix/io/rw/ftruncate, posix/io/* (random: also pwrite, writev,
#   close, unlink...), with failinfo = errno.
# For "the Nth call only" (each call site in turn, the directory fsync),
# tests/crash/failnth.c: see fault-helpers.bash.

bats_require_minimum_version 1.5.0

load helpers
load fault-helpers

setup_file() {
	need_fiu
	build_failnth
	pin_bin
}

setup() {
	use_pinned_bin
	kyro_setup
	MNT=
}

teardown() {
	if [ -n "$MNT" ] && mountpoint -q "$MNT"; then
		umount "$MNT"
	fi
}

# status_is N: the last run exited N (with its output shown when not).
status_is() {
	if [ "$status" -ne "$1" ]; then
		batslib_print_kv_single_or_multi 8 want "$1" status "$status" \
			stdout "$output" stderr "$stderr" |
			batslib_decorate 'unexpected exit status' | fail
	fi
}

# walk FUNC ERRNO MIN ERE TOOL ARGS...: for N = 1, 2, ... start from a
# fresh copy of the store "base" in $D and run TOOL ARGS (stdin from
# $WALK_IN, default /dev/null) with the Nth call of FUNC failing with
# ERRNO.  Each run that reaches the Nth call must exit 2 with one line
# "TOOL: " ERE on stderr, leave the store reading exactly as before and
# kyro-verify clean; then a kyro-snapshot and a kyro-put on it must
# succeed and keep it so.  The first N that the tool never reaches ends
# the walk: that run must exit 0, and MIN calls must have been failed by
# then.  Sets WALK_N (calls failed) and WALK_DIR (how many failures named
# the directory $D itself).  With WALK_TOLERANT=FILE, a run that exits 0
# in spite of the failed call is accepted when it did its whole job: the
# store then dumps as FILE (counted in WALK_SWALLOWED).  Never for fsync.
walk() {
	local func=$1 err=$2 min=$3 ere=$4 tool=$5 n
	shift 5
	WALK_DIR=0
	WALK_SWALLOWED=0
	for n in $(seq 1 200); do
		clone_store base "$D"
		dump "$D" before.tsv
		run --separate-stderr nth "$func" "$n" "$err" "$tool" "$@" <"${WALK_IN:-/dev/null}"
		fired || break
		if [ "$status" -eq 0 ] && [ -n "${WALK_TOLERANT:-}" ]; then
			# The failed call was retried or not needed after all:
			# fine, if the tool did all it should have.
			assert_equal "$stderr" ''
			expect_same "$D" "$WALK_TOLERANT"
			verify_clean "$D"
			WALK_SWALLOWED=$((WALK_SWALLOWED + 1))
			continue
		fi
		if [ "$status" -ne 2 ]; then
			batslib_print_kv_single_or_multi 8 "call" "$func #$n" \
				status "$status" stdout "$output" stderr "$stderr" |
				batslib_decorate "$tool did not exit 2 when $func failed" |
				fail
		fi
		tool_error "$tool" "$ere"
		[[ "$stderr" == *"'$D':"* ]] && WALK_DIR=$((WALK_DIR + 1))
		expect_same "$D" before.tsv
		verify_clean "$D"
		run -0 --separate-stderr kyro-snapshot -d "$D"
		expect_same "$D" before.tsv
		run -0 --separate-stderr kyro-put -d "$D" 3 after-the-fault
		verify_clean "$D"
	done
	WALK_N=$((n - 1))
	fired && fail "$tool still calling $func after 200 calls"
	status_is 0
	[ "$WALK_N" -ge "$min" ] ||
		fail "$tool made only $WALK_N calls of $func, expected at least $min"
}

# ---- write ----

@test "kyro-put: a failing write exits 2 with the reason, and nothing of the batch is visible" {
	seed_store "$D"
	dump "$D" before.tsv
	size=$(wal_bytes "$D")
	batch_file b.tsv 500 1
	run -2 --separate-stderr fiu_run "enable name=posix/io/rw/write,failinfo=$EIO" kyro-put -d "$D" <b.tsv
	tool_error kyro-put "cannot write '$D/wal-[0-9a-f]{16}\.log': Input/output error$"
	expect_same "$D" before.tsv
	assert_equal "$(wal_bytes "$D")" "$size"
	verify_clean "$D"
}

@test "kyro-put: a write failing at any point of a batch larger than the write buffer leaves nothing of it" {
	seed_store base
	batch_file b.tsv 30000 3 # about 4 MB: several buffer flushes
	WALK_IN=b.tsv walk write "$EIO" 4 \
		"cannot write '$D/wal-[0-9a-f]{16}\.log': Input/output error\$" \
		kyro-put -d "$D"
	clone_store base ref
	"$BIN/kyro-put" -d ref <b.tsv
	dump ref after.tsv
	expect_same "$D" after.tsv # the last run, which no fault reached
}

@test "kyro-put: when both the write and the rollback's truncate fail, at most a torn tail is left and the next writer removes it" {
	seed_store "$D"
	dump "$D" before.tsv
	batch_file b.tsv 30000 3
	export FAILNTH_ALWAYS=ftruncate
	run -2 --separate-stderr nth write 2 "$EIO" kyro-put -d "$D" <b.tsv
	unset FAILNTH_ALWAYS
	fired
	tool_error kyro-put "cannot write '$D/wal-[0-9a-f]{16}\.log': Input/output error$"
	expect_same "$D" before.tsv
	fake_reboot "$D" # even recovering from the files alone
	expect_same "$D" before.tsv
	verify_clean_or_torn "$D"
	run -0 --separate-stderr kyro-put -d "$D" 5 next
	verify_clean "$D"
	clone_store "$D" ref
	run -0 kyro-put -d ref --delete 5
	expect_same ref before.tsv
}

@test "kyro-put: when the commit's fsync and the rollback's truncate both fail, the failed batch never becomes visible" {
	# The batch is complete in the file (its commit record written, its
	# fsync failed) and cannot be cut: neither the next writer nor a
	# repair may take it for a batch whose writer died before publishing.
	seed_store base
	dump base before.tsv
	batch_file b.tsv 500 1
	local how
	for how in writer repair; do
		clone_store base "$D"
		export FAILNTH_ALWAYS=ftruncate
		run -2 --separate-stderr nth fsync 1 "$EIO" kyro-put -d "$D" <b.tsv
		unset FAILNTH_ALWAYS
		fired
		tool_error kyro-put "cannot sync '$D/wal-[0-9a-f]{16}\.log': Input/output error$"
		expect_same "$D" before.tsv
		verify_clean_or_torn "$D"
		if [ "$how" = repair ]; then
			run -0 --separate-stderr kyro-verify --repair -d "$D"
			expect_same "$D" before.tsv
			verify_clean "$D"
		fi
		run -0 --separate-stderr kyro-put -d "$D" 5 next
		verify_clean "$D"
		run -0 kyro-put -d "$D" --delete 5
		expect_same "$D" before.tsv
	done
}

@test "kyro-put and kyro-snapshot: short writes are completed, not taken for errors" {
	seed_store "$D"
	batch_file b.tsv 30000 3
	clone_store "$D" ref
	"$BIN/kyro-put" -d ref <b.tsv
	dump ref after.tsv
	run -0 --separate-stderr fiu_run 'enable name=posix/io/rw/write/reduce' kyro-put -d "$D" <b.tsv
	assert_equal "$stderr" ''
	expect_same "$D" after.tsv
	run -0 --separate-stderr fiu_run 'enable name=posix/io/rw/write/reduce' kyro-snapshot -d "$D"
	assert_equal "$stderr" ''
	expect_same "$D" after.tsv
	verify_clean "$D"
}

# ---- ENOSPC ----

@test "kyro-put: ENOSPC from write exits 2 with 'No space left on device' and loses nothing" {
	seed_store "$D"
	dump "$D" before.tsv
	batch_file b.tsv 30000 3
	run -2 --separate-stderr fiu_run "enable name=posix/io/rw/write,failinfo=$ENOSPC" kyro-put -d "$D" <b.tsv
	tool_error kyro-put "cannot write '$D/wal-[0-9a-f]{16}\.log': No space left on device$"
	expect_same "$D" before.tsv
	verify_clean "$D"
	run -2 --separate-stderr fiu_run "enable name=posix/io/rw/write,failinfo=$ENOSPC" kyro-put -d "$D" --sync=always 9 x
	tool_error kyro-put "cannot write '$D/wal-[0-9a-f]{16}\.log': No space left on device$"
	expect_same "$D" before.tsv
	verify_clean "$D"
}

@test "kyro-snapshot: ENOSPC at any write exits 2 and the store reads the same" {
	seed_store base
	walk write "$ENOSPC" 4 "cannot write '[^']*': No space left on device\$" \
		kyro-snapshot -d "$D"
}

@test "a real full disk: kyro-put and kyro-snapshot fail cleanly and the store recovers once space is freed" {
	MNT="$BATS_TEST_TMPDIR/mnt"
	mkdir "$MNT"
	mount -t tmpfs -o size=16m tmpfs "$MNT" 2>/dev/null ||
		skip "cannot mount a tmpfs here (needs root); ENOSPC is covered through libfiu"
	D="$MNT/data"
	seed_store "$D"
	dump "$D" before.tsv
	batch_file b.tsv 30000 3 # about 4 MB
	clone_store "$D" ref
	"$BIN/kyro-put" -d ref <b.tsv
	dump ref after.tsv
	# Fill the disk, then free 64 KiB: the batch's first write is short,
	# the next one fails.
	dd if=/dev/zero of="$MNT/small" bs=64k count=1 status=none
	dd if=/dev/zero of="$MNT/fill" bs=64k status=none 2>/dev/null || true
	rm "$MNT/small"
	run -2 --separate-stderr kyro-put -d "$D" <b.tsv
	tool_error kyro-put "cannot write '$D/wal-[0-9a-f]{16}\.log': No space left on device$"
	expect_same "$D" before.tsv
	verify_clean "$D"
	run -2 --separate-stderr kyro-put -d "$D" --sync=always <b.tsv
	tool_error kyro-put "cannot write '$D/wal-[0-9a-f]{16}\.log': No space left on device$"
	expect_same "$D" before.tsv
	verify_clean "$D"
	# A snapshot needs room for a second copy of the data.
	dd if=/dev/zero of="$MNT/fill2" bs=4k status=none 2>/dev/null || true
	run -2 --separate-stderr kyro-snapshot -d "$D"
	tool_error kyro-snapshot "cannot write '[^']*': No space left on device$"
	expect_same "$D" before.tsv
	verify_clean "$D"
	rm "$MNT/fill" "$MNT/fill2"
	run -0 --separate-stderr kyro-put -d "$D" <b.tsv
	expect_same "$D" after.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	expect_same "$D" after.tsv
	verify_clean "$D"
}

@test "kyro-put: creating a store on an almost full disk exits 2 with a message, never dies of a signal" {
	MNT="$BATS_TEST_TMPDIR/mnt"
	mkdir "$MNT"
	mount -t tmpfs -o size=1m tmpfs "$MNT" 2>/dev/null ||
		skip "cannot mount a tmpfs here (needs root)"
	local pages=$(($(stat -f -c %b "$MNT") * $(stat -f -c %S "$MNT") / 4096))
	for free in 0 1 2 3 4 5 6; do
		rm -rf "$MNT/data" "$MNT/fill"
		dd if=/dev/zero of="$MNT/fill" bs=4k count=$((pages - free)) status=none
		run --separate-stderr kyro-put -d "$MNT/data" 1 one
		if [ "$status" -eq 0 ]; then
			assert_equal "$stderr" ''
			run -0 --separate-stderr kyro-get -d "$MNT/data" 1
			assert_output one
			verify_clean "$MNT/data"
		else
			[ "$status" -eq 2 ] ||
				fail "with $free free pages kyro-put exited $status (a signal?), stderr: '$stderr'"
			tool_error kyro-put "[^']*'$MNT/data[^']*': No space left on device$"
		fi
	done
}

# ---- fsync ----

@test "kyro-put: a failing fsync exits 2 and the batch is not visible" {
	seed_store "$D"
	dump "$D" before.tsv
	batch_file b.tsv 500 1
	run -2 --separate-stderr fiu_run "enable name=posix/io/sync/fsync,failinfo=$EIO" kyro-put -d "$D" <b.tsv
	tool_error kyro-put "cannot sync '$D/wal-[0-9a-f]{16}\.log': Input/output error$"
	expect_same "$D" before.tsv
	verify_clean "$D"
	# fsync, fdatasync and sync_file_range: whichever it uses.
	run -2 --separate-stderr fiu_run "enable name=posix/io/sync/*,failinfo=$EIO" kyro-put -d "$D" --sync=always <b.tsv
	tool_error kyro-put "cannot sync '$D/wal-[0-9a-f]{16}\.log': Input/output error$"
	expect_same "$D" before.tsv
	verify_clean "$D"
}

@test "kyro-put: a batch whose fsync failed does not come back when the store is recovered from its files" {
	# After a reboot the shared state in LOCK is stale and recovery reads
	# the WAL alone: a batch that kyro-put reported as failed must not be
	# there to find.  (fake_reboot makes the page stale the same way.)
	seed_store base
	batch_file b.tsv 500 1
	clone_store base "$D"
	dump "$D" before.tsv
	run -2 --separate-stderr fiu_run "enable name=posix/io/sync/fsync,failinfo=$EIO" kyro-put -d "$D" <b.tsv
	tool_error kyro-put "cannot sync '$D/wal-[0-9a-f]{16}\.log': Input/output error$"
	fake_reboot "$D"
	expect_same "$D" before.tsv
	verify_clean "$D"
	# --sync=always: whichever fsync fails, the last (the commit's) too.
	printf '1\tone\n2\ttwo\n3\tthree\n' >small.tsv
	for n in 1 2 3 4; do
		clone_store base "$D"
		run -2 --separate-stderr nth fsync "$n" "$EIO" kyro-put -d "$D" --sync=always <small.tsv
		fired
		fake_reboot "$D"
		expect_same "$D" before.tsv
		verify_clean "$D"
	done
}

@test "kyro-put: a failing fsync at any call (--sync=always, batch, a torn tail's truncation) never exits 0" {
	seed_store "$D"
	printf '1\tone\n2\ttwo\n3\tthree\n4\tfour\n' >b.tsv
	for mode in always batch; do
		dump "$D" before.tsv
		for n in $(seq 1 20); do
			run --separate-stderr nth fsync "$n" "$EIO" kyro-put -d "$D" --sync=$mode <b.tsv
			fired || break
			status_is 2
			tool_error kyro-put "cannot sync '$D/wal-[0-9a-f]{16}\.log': Input/output error$"
			expect_same "$D" before.tsv
			verify_clean "$D"
		done
		fired && fail "--sync=$mode: still syncing after 20 fsyncs"
		status_is 0
		if [ $mode = always ]; then
			[ "$n" -ge 5 ] || fail "--sync=always made only $((n - 1)) fsyncs for 4 records"
		fi
		run -0 kyro-put -d "$D" --delete 1 2 3 4
	done
	# A torn tail: the next writer truncates it and syncs the truncation
	# before appending; when that fsync fails, nothing is appended.
	dump "$D" before.tsv
	w=$(ls "$D"/wal-*.log | tail -1)
	printf 'half a record' >>"$w"
	run -2 --separate-stderr nth fsync 1 "$EIO" kyro-put -d "$D" 7 seven
	fired
	tool_error kyro-put "cannot sync '$w': Input/output error$"
	expect_same "$D" before.tsv
	verify_clean_or_torn "$D"
	run -0 --separate-stderr kyro-put -d "$D" 7 seven
	verify_clean "$D"
}

@test "kyro-put: a failing directory fsync while creating a store exits 2, and the next kyro-put creates it cleanly" {
	for n in $(seq 1 10); do
		rm -rf "$D"
		export FAILNTH_DIR=1
		run --separate-stderr nth fsync "$n" "$EIO" kyro-put -d "$D" 1 first
		unset FAILNTH_DIR
		fired || break
		status_is 2
		tool_error kyro-put "cannot sync '[^']*': Input/output error$"
		run -0 --separate-stderr kyro-put -d "$D" 2 second
		run -0 --separate-stderr kyro-get -d "$D" --all --format=tsv
		assert_output "$(printf '2\tsecond')"
		verify_clean "$D"
	done
	[ "$n" -ge 3 ] || fail "only $((n - 1)) directory fsyncs while creating a store"
	fired && fail "still syncing directories after 10"
	status_is 0
}

@test "kyro-snapshot: a failing fsync at any call, of a file or of the directory, exits 2 and loses nothing" {
	seed_store base
	walk fsync "$EIO" 6 "cannot sync '[^']*': Input/output error\$" \
		kyro-snapshot -d "$D"
	[ "$WALK_DIR" -ge 3 ] ||
		fail "only $WALK_DIR directory fsyncs failed (expected one after each new file and rename)"
	# No garbage is left behind once a snapshot has succeeded.
	run -1 bash -c "ls '$D' | grep -Ev '^(LOCK|MANIFEST|SNAPSHOT\.lock|wal-[0-9a-f]{16}\.log|snap-[0-9a-f]{16}\.(bin|data))\$'"
	assert_output ''
}

@test "kyro-snapshot: a failing directory fsync, wherever it comes, exits 2 and loses nothing" {
	seed_store base
	export FAILNTH_DIR=1
	walk fsync "$EIO" 3 "cannot sync '$D': Input/output error\$" \
		kyro-snapshot -d "$D"
	unset FAILNTH_DIR
	[ "$WALK_DIR" -eq "$WALK_N" ]
}

# ---- rename ----

@test "kyro-snapshot: a failing rename at any call exits 2 and loses nothing" {
	seed_store "$D"
	dump "$D" before.tsv
	run -2 --separate-stderr fiu_run "enable name=posix/io/dir/rename,failinfo=$EIO" kyro-snapshot -d "$D"
	tool_error kyro-snapshot "cannot rename '[^']*' to '[^']*': Input/output error$"
	expect_same "$D" before.tsv
	verify_clean "$D"
	mv "$D" base
	walk rename "$EIO" 4 "cannot rename '[^']*' to '[^']*': Input/output error\$" \
		kyro-snapshot -d "$D"
}

@test "kyro-put: a failing rename while creating a store exits 2 and the next kyro-put creates it" {
	run -2 --separate-stderr fiu_run "enable name=posix/io/dir/rename,failinfo=$EIO" kyro-put -d "$D" 1 first
	tool_error kyro-put "cannot rename '$D/MANIFEST.tmp' to '$D/MANIFEST': Input/output error$"
	run -1 --separate-stderr kyro-get -d "$D" 1
	run -0 --separate-stderr kyro-put -d "$D" 2 second
	run -0 --separate-stderr kyro-get -d "$D" --all --format=tsv
	assert_output "$(printf '2\tsecond')"
	verify_clean "$D"
}

# ---- open, ftruncate ----

@test "kyro-put and kyro-snapshot: a failing open at any call exits 2 with the path and the reason, or does no harm" {
	seed_store base
	batch_file b.tsv 100 5
	clone_store base "$D"
	dump "$D" before.tsv
	run -2 --separate-stderr fiu_run "enable name=posix/io/oc/open,failinfo=$EACCES" kyro-put -d "$D" <b.tsv
	tool_error kyro-put "cannot open '$D/[^']+': Permission denied\$"
	expect_same "$D" before.tsv
	# An open that fails may be one whose file is read again later; then
	# exit 0 is right, provided the batch landed whole.
	clone_store base ref
	run -0 kyro-put -d ref <b.tsv
	dump ref after.tsv
	WALK_TOLERANT=after.tsv WALK_IN=b.tsv walk open "$EACCES" 3 \
		"cannot [a-z]+ '[^']*': Permission denied\$" kyro-put -d "$D"
	dump base base.tsv
	WALK_TOLERANT=base.tsv walk open "$EACCES" 8 \
		"cannot [a-z]+ '[^']*': Permission denied\$" kyro-snapshot -d "$D"
}

@test "kyro-put: when a torn tail cannot be truncated it exits 2 and appends nothing" {
	seed_store "$D"
	dump "$D" before.tsv
	w=$(ls "$D"/wal-*.log | tail -1)
	printf 'half a record' >>"$w"
	size=$(wal_bytes "$D")
	run -2 --separate-stderr fiu_run "enable name=posix/io/rw/ftruncate,failinfo=$EIO" kyro-put -d "$D" 7 seven
	tool_error kyro-put "cannot truncate '$w': Input/output error$"
	assert_equal "$(wal_bytes "$D")" "$size"
	expect_same "$D" before.tsv
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "^$w: offset [0-9]+: torn tail: 13 bytes after the last complete batch\$"
	run -0 --separate-stderr kyro-put -d "$D" 7 seven
	verify_clean "$D"
}

# ---- everything at once ----

@test "random faults in every I/O call: each run exits 0 or 2, and the store always holds exactly the runs that exited 0" {
	# (No loop variable named i here: bats' run assigns a global i.)
	seed_store "$D"
	clone_store "$D" ref
	local p=${KYRODB_FAULT_PROB:-0.02} fails=0 oks=0 round what
	local fiu="enable_random name=posix/io/*,probability=$p"
	for round in $(seq 1 40); do
		batch_file b.tsv $((RANDOM % 3000 + 1)) $((round * 3))
		case $((round % 4)) in
		0) what=kyro-snapshot ;;
		2) what="kyro-put --sync=always" ;;
		*) what=kyro-put ;;
		esac
		# shellcheck disable=SC2086
		run --separate-stderr fiu_run "$fiu" $what -d "$D" <b.tsv
		case $status in
		0)
			oks=$((oks + 1))
			assert_equal "$stderr" ''
			if [ "$what" != kyro-snapshot ]; then
				"$BIN/kyro-put" -d ref <b.tsv
			fi
			;;
		2)
			fails=$((fails + 1))
			[[ "$stderr" =~ ^kyro-(put|snapshot):\ [^$'\n']+$ ]] ||
				fail "run $round ($what): not a one-line error: '$stderr'"
			;;
		*) fail "run $round ($what) exited $status: '$stderr'" ;;
		esac
		local st=$status err=$stderr
		dump ref want.tsv
		expect_same "$D" want.tsv ||
			fail "after run $round ($what: exit $st, stderr '$err')"
		verify_clean_or_torn "$D"
	done
	[ "$oks" -gt 0 ] && [ "$fails" -gt 0 ] ||
		fail "$oks runs succeeded and $fails failed: adjust KYRODB_FAULT_PROB"
	run -0 kyro-put -d "$D" 1 last
	run -0 kyro-put -d ref 1 last
	dump ref want.tsv
	expect_same "$D" want.tsv
	verify_clean "$D"
}
