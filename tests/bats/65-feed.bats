#!/usr/bin/env bats
#
# The change feed from the shell: kyro-get --changes [--from SEQ]
# [--follow] in its three formats, kyro-put --replay, retention
# (kyro-snapshot --retain) and its errors, and a follower's signals.
# Background processes close fd 3 (3>&-) so that bats does not wait for
# them; they are reaped in the test or killed in teardown.  Nothing waits
# on a fixed sleep: wait_for polls a condition, with a deadline.

bats_require_minimum_version 1.5.0

load helpers

teardown() {
	local pid
	for pid in ${BG_PIDS-}; do
		kill "$pid" 2>/dev/null || true
	done
}

# wait_for SECONDS CMD...: run CMD every 10 ms until it succeeds; fail
# after SECONDS.
wait_for() {
	local limit=$(($1 * 100)) i=0
	shift
	until "$@"; do
		i=$((i + 1))
		if [ "$i" -ge "$limit" ]; then
			echo "timed out waiting for: $*" >&2
			return 1
		fi
		sleep 0.01
	done
}

# exited PID: the background process PID has ended.
exited() {
	! kill -0 "$1" 2>/dev/null
}

# has_seq FILE SEQ: FILE (tsv changes) has a line for sequence number SEQ.
has_seq() {
	grep -q "^$2	" "$1"
}

# The seqs in FILE (tsv changes) are exactly 1..N, in order.
seqs_are() {
	local want
	want=$(seq 1 "$2")
	[ "$(cut -f1 "$1")" = "$want" ] || {
		echo "seqs of $1 are not 1..$2:" >&2
		cut -f1 "$1" | head -50 >&2
		return 1
	}
}

@test "feed: changes in order, in tsv, json and replay, with escapes" {
	printf '1\tone\n2\ttab\\there\n' | kyro-put -d "$D"
	kyro-put -d "$D" --delete 1
	printf '3\tnl\\nbs\\\\nul\\0\n4\thi\\xff\n' | kyro-put -d "$D"
	run -0 --separate-stderr kyro-get -d "$D" --changes
	assert_output "$(printf '1\tput\t1\tone\n2\tput\t2\ttab\\there\n3\tdelete\t1\t\n4\tput\t3\tnl\\nbs\\\\nul\\0\n5\tput\t4\thi\xff')"
	stderr_is ''
	run -0 kyro-get -d "$D" --changes --format=json --from 3
	assert_output "$(cat <<'EOF'
{"seq":3,"batch_first":3,"batch_last":3,"op":"delete","key":1}
{"seq":4,"batch_first":4,"batch_last":5,"op":"put","key":3,"value":"nl\nbs\\nul\u0000"}
{"seq":5,"batch_first":4,"batch_last":5,"op":"put","key":4,"value_base64":"aGn/"}
EOF
)"
	run -0 kyro-get -d "$D" --changes -f replay --from 2
	assert_output "$(printf 'put\t2\t2\ttab\\there\ncommit\t2\ndelete\t3\t1\ncommit\t3\nput\t4\t3\tnl\\nbs\\\\nul\\0\nput\t5\t4\thi\xff\ncommit\t5')"
	# From inside a batch: its rest, closed by its commit.
	run -0 kyro-get -d "$D" --changes -f replay --from 5
	assert_output "$(printf 'put\t5\t4\thi\xff\ncommit\t5')"
	# Past the end: nothing, and success.
	run -0 --separate-stderr kyro-get -d "$D" --changes --from 99
	assert_output ''
	stderr_is ''
}

@test "feed: usage errors" {
	kyro-put -d "$D" 1 a
	run -2 --separate-stderr kyro-get -d "$D" --from 3
	stderr_matches 'go with --changes'
	run -2 --separate-stderr kyro-get -d "$D" --changes 5
	stderr_matches 'takes no KEY'
	run -2 --separate-stderr kyro-get -d "$D" --changes --from x
	stderr_matches "invalid sequence number 'x'"
	run -2 --separate-stderr kyro-get -d "$D" -f replay 1
	stderr_matches 'goes with --changes'
	run -2 --separate-stderr kyro-snapshot -d "$D" --retain 5parsecs
	stderr_matches "invalid --retain '5parsecs'"
	run -2 --separate-stderr kyro-get -d nowhere --changes
	stderr_matches '^kyro-get: .*nowhere'
}

# A source store with several batches (puts, overwrites, deletes, escapes)
# across a snapshot, whose history is retained.
make_source() {
	printf '1\ta\n2\tb\n3\tc\\td\n' | kyro-put -d "$1"
	kyro-put -d "$1" --delete 2
	printf '1\tA\n4\t\\x00\\xfe\n5\tline\\nbreak\n' | kyro-put -d "$1"
	kyro-snapshot -d "$1"
	printf '2\tback\n6\tsix\n' | kyro-put -d "$1"
	kyro-put -d "$1" --delete 5 3
	kyro-put -d "$1" 7 ''
}

@test "feed: a replay rebuilds a store: same contents, same batches" {
	make_source "$D"
	kyro-get -d "$D" --changes --from 0 --format=replay >replay.txt
	kyro-put -d copy --replay <replay.txt
	kyro-get -d "$D" --range 0 18446744073709551615 >src.tsv
	kyro-get -d copy --range 0 18446744073709551615 >copy.tsv
	cmp src.tsv copy.tsv
	[ "$(wc -l <src.tsv)" -eq 5 ]
	# The same batches, change for change, in the copy's own feed.
	kyro-get -d "$D" --changes -f json >src.json
	kyro-get -d copy --changes -f json >copy.json
	cmp src.json copy.json
	[ "$(grep -c '"batch_first":10,"batch_last":11' copy.json)" -eq 2 ]
	# Through a pipe, as the man page shows it.
	kyro-get -d "$D" --changes --from 0 --format=replay | kyro-put -d copy2 --replay
	kyro-get -d copy2 --range 0 18446744073709551615 >copy2.tsv
	cmp src.tsv copy2.tsv
}

@test "feed: kyro-put --replay refuses a gap, a stray commit and a cut batch" {
	printf 'put\t1\t1\ta\ncommit\t1\nput\t3\t2\tb\ncommit\t3\n' >gap.txt
	run -2 --separate-stderr kyro-put -d "$D" --replay <gap.txt
	stderr_matches 'line 3: sequence number out of order'
	# The batch before the gap was committed; nothing after it.
	run -0 kyro-get -d "$D" --changes
	assert_output "$(printf '1\tput\t1\ta')"
	printf 'put\t1\t1\ta\ncommit\t2\n' >stray.txt
	run -2 --separate-stderr kyro-put -d d2 --replay <stray.txt
	stderr_matches 'commit does not close'
	printf 'put\t1\t1\ta\ncommit\t1\nput\t2\t2\tb\ndelete\t3\t1\n' >cut.txt
	run -2 --separate-stderr kyro-put -d d3 --replay <cut.txt
	stderr_matches 'ends inside a batch \(after sequence number 3\)'
	run -0 kyro-get -d d3 --changes
	assert_output "$(printf '1\tput\t1\ta')"
}

@test "feed: history older than retained: exit 2, the oldest seq, bootstrap" {
	make_source "$D"
	# Retained by default: the whole history is there.
	run -0 kyro-get -d "$D" --changes --from 1
	[ "${#lines[@]}" -eq 12 ]
	kyro-snapshot -d "$D" --retain 0
	run -2 --separate-stderr kyro-get -d "$D" --changes --from 1
	assert_output ''
	stderr_matches "history before sequence number 13 is no longer retained.*bootstrap from a snapshot.*13"
	run -0 kyro-get -d "$D" --changes --from 13
	assert_output ''
	kyro-put -d "$D" 9 nine
	run -0 kyro-get -d "$D" --changes --from 13
	assert_output "$(printf '13\tput\t9\tnine')"
	[ ! -e "$D/wal-0000000000000001.log" ]
}

@test "feed: retention keeps folded segments by size and by age" {
	for i in 1 2 3; do
		kyro-put -d "$D" "$i" "value $i"
		kyro-snapshot -d "$D" --retain 1G
	done
	[ -e "$D/wal-0000000000000001.log" ]
	kyro-put -d "$D" 4 four
	# A byte budget for one segment: the newest folded one stays.
	size=$(stat -c %s "$D/wal-0000000000000003.log")
	kyro-snapshot -d "$D" --retain "$((size + 8))"
	[ ! -e "$D/wal-0000000000000003.log" ]
	[ -e "$D/wal-0000000000000004.log" ]
	run -2 --separate-stderr kyro-get -d "$D" --changes
	stderr_matches 'history before sequence number 4 is no longer retained'
	run -0 kyro-get -d "$D" --changes --from 4
	assert_output "$(printf '4\tput\t4\tfour')"
	run -0 --separate-stderr kyro-verify -d "$D"
	assert_output ''
	# By age: a segment last written over a day ago goes.
	touch -d '2 days ago' "$D/wal-0000000000000004.log"
	kyro-snapshot -d "$D" --retain 64M,1d
	[ ! -e "$D/wal-0000000000000004.log" ]
}

@test "feed: a damaged retained segment is an error naming file and offset" {
	make_source "$D"
	# Flip a byte of the second record of the first (folded) segment.
	printf '\x55' | dd of="$D/wal-0000000000000001.log" bs=1 seek=$((48 + 40 + 30)) conv=notrunc 2>/dev/null
	run -2 --separate-stderr kyro-get -d "$D" --changes
	stderr_matches "wal-0000000000000001.log': offset 88: "
	# The damage is in the first batch: none of it is printed.
	assert_output ''
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --partial "wal-0000000000000001.log: offset 88"
	assert_output --partial "retained history"
	sum=$(md5sum <"$D/wal-0000000000000001.log")
	run -1 --separate-stderr kyro-verify -d "$D" --repair
	[ "$(md5sum <"$D/wal-0000000000000001.log")" = "$sum" ]
	# The store reads right; dropping the history clears it.
	run -0 kyro-get -d "$D" 1
	assert_output 'A'
	kyro-snapshot -d "$D" --retain 0
	run -0 --separate-stderr kyro-verify -d "$D"
}

@test "feed: a follower past what a repair cut exits 2 and says to bootstrap" {
	BG_PIDS=''
	kyro-put -d "$D" 1 one
	kyro-put -d "$D" 2 two
	kyro-put -d "$D" 3 three
	kyro-get -d "$D" --changes --follow >out.tsv 2>err.txt 3>&- &
	follower=$!
	BG_PIDS="$follower"
	wait_for 10 has_seq out.tsv 3
	# Damage in the second batch, valid records after it: lost data.
	wal=$D/wal-0000000000000001.log
	off=$(grep -obUa two "$wal" | head -1 | cut -d: -f1)
	flip_byte "$wal" "$off"
	run -1 --separate-stderr kyro-verify -d "$D" --repair
	kyro-put -d "$D" 9 nine
	wait_for 10 exited "$follower"
	rc=0
	wait "$follower" || rc=$?
	[ "$rc" -eq 2 ]
	grep -q "^kyro-get: .*a repair cut the log.*up to sequence number 3.*bootstrap from a snapshot" err.txt
	seqs_are out.tsv 3
	# A new reader from the start sees what the store holds now.
	run -0 kyro-get -d "$D" --changes --from 1
	assert_output "$(printf '1\tput\t1\tone\n2\tput\t9\tnine')"
}

@test "feed: --follow delivers through snapshots and rotations, each seq once" {
	BG_PIDS=''
	kyro-put -d "$D" 1 first
	kyro-get -d "$D" --changes --follow >out.tsv 2>err.txt 3>&- &
	follower=$!
	BG_PIDS="$follower"
	wait_for 10 has_seq out.tsv 1
	n=1
	for round in 1 2 3; do
		for i in 1 2 3 4 5; do
			printf '%d\tr%d\n%d\tr%d-b\n' "$i" "$round" "$((i + 100))" "$round" | kyro-put -d "$D"
			n=$((n + 2))
		done
		wait_for 10 has_seq out.tsv "$n"
		# A snapshot rotates the segment the follower reads and
		# folds it; the last one also removes the history under it.
		if [ "$round" -eq 3 ]; then
			kyro-snapshot -d "$D" --retain 0
		else
			kyro-snapshot -d "$D"
		fi
	done
	kyro-put -d "$D" --delete 1
	n=$((n + 1))
	wait_for 10 has_seq out.tsv "$n"
	kill -INT "$follower"
	rc=0
	wait "$follower" || rc=$?
	[ "$rc" -eq 0 ]
	[ ! -s err.txt ]
	seqs_are out.tsv "$n"
	tail -1 out.tsv | grep -qx "$n	delete	1	"
}

@test "feed: a follower never prints half a batch while batches commit" {
	BG_PIDS=''
	kyro-put -d "$D" 0 seed
	kyro-get -d "$D" --changes --follow -f json >out.json 3>&- &
	follower=$!
	BG_PIDS="$follower"
	# 40 batches of 50 records each, written while the follower reads.
	for b in $(seq 1 40); do
		seq 1 50 | awk -v b="$b" '{ printf "%d\tbatch %d\n", $1, b }' | kyro-put -d "$D"
	done
	last=$((1 + 40 * 50))
	wait_for 20 grep -q "\"seq\":$last," out.json
	kill -INT "$follower"
	wait "$follower"
	# Every batch is there whole, its records consecutive.
	awk -F'[:,]' '
		{ seq = $2; first = $4; last = $6
		  if (seq != prev + 1) { print "gap at " seq; bad = 1 }
		  if (seq == first) { if (inb) { print "batch cut before " seq; bad = 1 }; inb = 1 }
		  if (seq == last) inb = 0
		  prev = seq }
		END { if (inb) { print "last batch cut"; bad = 1 }; exit bad }' out.json
	[ "$(wc -l <out.json)" -eq "$last" ]
}

@test "feed: a live replay into a copy, stopped by SIGINT, matches the source" {
	BG_PIDS=''
	kyro-put -d "$D" 1 a
	mkfifo pipe
	kyro-get -d "$D" --changes --follow -f replay >pipe 3>&- &
	getter=$!
	kyro-put -d copy --replay <pipe 3>&- &
	putter=$!
	BG_PIDS="$getter $putter"
	for b in $(seq 1 20); do
		printf '%d\tv%d\n%d\tw%d\n' "$b" "$b" "$((b + 50))" "$b" | kyro-put -d "$D"
		if [ $((b % 5)) -eq 0 ]; then
			kyro-put -d "$D" --delete "$((b + 50))"
			kyro-snapshot -d "$D"
		fi
	done
	want=$(kyro-get -d "$D" --changes | tail -1 | cut -f1)
	copied() {
		[ "$(kyro-get -d copy --changes 2>/dev/null | tail -1 | cut -f1)" = "$want" ]
	}
	wait_for 20 copied
	kill -INT "$getter"
	wait "$getter"
	# The reader ended on a batch boundary: kyro-put sees a clean end.
	wait "$putter"
	kyro-get -d "$D" --range 0 18446744073709551615 >src.tsv
	kyro-get -d copy --range 0 18446744073709551615 >copy.tsv
	cmp src.tsv copy.tsv
}

@test "feed: SIGPIPE ends the reader with 0, following or not" {
	seq 1 20000 | awk '{ printf "%d\tvalue %d\n", $1, $1 }' | kyro-put -d "$D"
	run -0 bash -c 'kyro-get -d "$1" --changes | head -1; exit "${PIPESTATUS[0]}"' _ "$D"
	assert_output "$(printf '1\tput\t1\tvalue 1')"
	# A follower with nothing more to print notices its reader is gone.
	run -0 timeout 20 bash -c 'kyro-get -d "$1" --changes --follow --from 20000 | head -1; exit "${PIPESTATUS[0]}"' _ "$D"
	assert_output "$(printf '20000\tput\t20000\tvalue 20000')"
}

@test "feed: SIGINT and SIGTERM end a waiting follower with 0" {
	BG_PIDS=''
	kyro-put -d "$D" 1 a
	for sig in INT TERM; do
		kyro-get -d "$D" --changes --follow >"out.$sig" 3>&- &
		pid=$!
		BG_PIDS="$pid"
		wait_for 10 has_seq "out.$sig" 1
		kill -"$sig" "$pid"
		rc=0
		wait "$pid" || rc=$?
		[ "$rc" -eq 0 ]
	done
}

@test "feed: kyro-rmi-build applies --retain when it collects garbage" {
	seq 1 300 | awk '{ printf "%d\tv%d\n", $1, $1 }' | kyro-put -d "$D"
	kyro-snapshot -d "$D"
	[ -e "$D/wal-0000000000000001.log" ]
	kyro-rmi-build -d "$D" --retain 0
	[ ! -e "$D/wal-0000000000000001.log" ]
	run -2 --separate-stderr kyro-get -d "$D" --changes
	stderr_matches 'history before sequence number 301'
	run -2 --separate-stderr kyro-rmi-build -d "$D" --retain 1x
	stderr_matches "invalid --retain '1x'"
}
