#!/usr/bin/env bats
#
# Several processes on one store at once: parallel writers, readers that
# must never see part of a batch, a snapshot while writers run (man/kyro.7
# "Durability and concurrency", issue 2).  Background processes close fd 3
# (3>&-) so that bats does not wait for them, and are reaped in the test.

bats_require_minimum_version 1.5.0

load helpers

# wait_all PID...: wait for each; fail if any exited non-zero.
wait_all() {
	local pid rc bad=0
	for pid in "$@"; do
		rc=0
		wait "$pid" || rc=$?
		if [ "$rc" -ne 0 ]; then
			echo "background process $pid exited $rc" >&2
			bad=1
		fi
	done
	return "$bad"
}

# any_alive PID...: is any of them still running?
any_alive() {
	local pid
	for pid in "$@"; do
		kill -0 "$pid" 2>/dev/null && return 0
	done
	return 1
}

teardown() {
	# Never leave a writer behind, even when an assertion failed midway.
	local pid
	for pid in ${BG_PIDS-}; do
		pkill -P "$pid" 2>/dev/null || true
		kill "$pid" 2>/dev/null || true
	done
}

@test "concurrency: parallel kyro-put processes with distinct keys all land" {
	BG_PIDS=''
	: >expected.tsv
	for w in 1 2 3 4; do
		for b in 1 2 3 4 5; do
			seq $((w * 100000 + b * 1000)) $((w * 100000 + b * 1000 + 299)) |
				awk -v w=$w -v b=$b '{ printf "%s\twriter %s batch %s key %s\n", $1, w, b, $1 }' \
					>"w$w-b$b.tsv"
			cat "w$w-b$b.tsv" >>expected.tsv
		done
	done
	for w in 1 2 3 4; do
		(
			for b in 1 2 3 4 5; do
				kyro-put -d "$D" <"w$w-b$b.tsv" || exit 1
			done
		) 3>&- &
		BG_PIDS+=" $!"
	done
	# The first writer to come creates the store; the others must not
	# trip over it.
	wait_all $BG_PIDS
	sort -n expected.tsv >want.tsv
	dump "$D" got.tsv
	cmp want.tsv got.tsv
	[ "$(wc -l <got.tsv)" -eq 6000 ]
	run -0 --separate-stderr kyro-verify -d "$D"
	assert_output ''
	stderr_is ''
}

# A batch that sets keys 1..200 all to the same MARKER (with padding, so a
# batch is tens of kilobytes and many records), written to FILE.
marker_batch() {
	awk -v m="$1" 'BEGIN {
		pad = sprintf("%0200d", 0)
		for (k = 1; k <= 200; k++) printf "%d\t%s %s\n", k, m, pad
	}' >"$2"
}

# check_whole FILE: FILE, a --all dump of a store written only by
# marker_batch batches, has keys 1..200 and one marker for all of them;
# prints the marker.  Every batch sets every key, so any state made of
# whole batches shows the last batch's marker everywhere; a mixture means
# part of a batch was seen.
check_whole() {
	awk -F '\t' '
		{ split($2, f, " "); m[f[1]]++; n++; if ($1 != n) bad = 1 }
		END {
			k = 0; for (x in m) k++
			if (n != 200 || k != 1 || bad) {
				printf "%s: %d keys, %d markers:", FILENAME, n, k > "/dev/stderr"
				for (x in m) printf " %s(%d)", x, m[x] > "/dev/stderr"
				printf "\n" > "/dev/stderr"
				exit 1
			}
			for (x in m) print x
		}' "$1"
}

@test "concurrency: a reader running while writers write sees only whole batches" {
	BG_PIDS=''
	marker_batch seed seed.tsv
	put_file seed.tsv
	for w in 1 2 3; do
		for b in $(seq 1 25); do
			marker_batch "w$w-b$b" "w$w-b$b.tsv"
		done
	done
	for w in 1 2 3; do
		(
			for b in $(seq 1 25); do
				kyro-put -d "$D" <"w$w-b$b.tsv" || exit 1
			done
		) 3>&- &
		BG_PIDS+=" $!"
	done
	reads=0
	seen=''
	while any_alive $BG_PIDS || [ "$reads" -lt 5 ]; do
		reads=$((reads + 1))
		kyro-get -d "$D" --all >"read.$reads.tsv"
		seen+=" $(check_whole "read.$reads.tsv")"
		# A single-key lookup sees a whole marker too.
		v=$(kyro-get -d "$D" 137)
		[[ "$v" =~ ^(seed|w[1-3]-b[0-9]+)\ 0{200}$ ]]
		[ "$reads" -lt 5000 ]
	done
	wait_all $BG_PIDS
	dump "$D" final.tsv
	check_whole final.tsv
	echo "# $reads reads, markers seen:$seen" >&3
	run -0 --separate-stderr kyro-verify -d "$D"
	assert_output ''
}

@test "concurrency: successive readers never see an older value after a newer one" {
	BG_PIDS=''
	run -0 --separate-stderr kyro-put -d "$D" 7 0
	(
		for i in $(seq 1 80); do
			kyro-put -d "$D" --sync=none 7 "$i" || exit 1
		done
	) 3>&- &
	BG_PIDS=$!
	last=0
	reads=0
	while any_alive $BG_PIDS; do
		v=$(kyro-get -d "$D" 7)
		[[ "$v" =~ ^[0-9]+$ ]]
		if [ "$v" -lt "$last" ]; then
			echo "read $v after $last" >&2
			false
		fi
		last=$v
		reads=$((reads + 1))
	done
	wait_all $BG_PIDS
	run -0 --separate-stderr kyro-get -d "$D" 7
	assert_output '80'
}

@test "concurrency: kyro-snapshot running while writers write loses nothing and leaves a clean store" {
	BG_PIDS=''
	seq 1 500 | sed 's/$/\tbefore/' >seed.tsv
	put_file seed.tsv
	cp seed.tsv expected.tsv
	for w in 1 2 3; do
		for b in $(seq 1 10); do
			seq $((w * 100000 + b * 1000)) $((w * 100000 + b * 1000 + 199)) |
				sed "s/\$/\twriter $w batch $b/" >"w$w-b$b.tsv"
			cat "w$w-b$b.tsv" >>expected.tsv
		done
	done
	for w in 1 2 3; do
		(
			for b in $(seq 1 10); do
				kyro-put -d "$D" <"w$w-b$b.tsv" || exit 1
			done
		) 3>&- &
		BG_PIDS+=" $!"
	done
	snaps=0
	while any_alive $BG_PIDS || [ "$snaps" -lt 2 ]; do
		run -0 --separate-stderr kyro-snapshot -d "$D"
		assert_output ''
		stderr_is ''
		snaps=$((snaps + 1))
		# Every key written before the writers started is there throughout.
		kyro-get -d "$D" --range 1 500 >during.tsv
		cmp seed.tsv during.tsv
		[ "$snaps" -lt 500 ]
	done
	wait_all $BG_PIDS
	sort -n expected.tsv >want.tsv
	dump "$D" got.tsv
	cmp want.tsv got.tsv
	run -0 --separate-stderr kyro-verify -d "$D"
	assert_output ''
	stderr_is ''
	# And once more after a last snapshot.
	run -0 --separate-stderr kyro-snapshot -d "$D"
	dump "$D" got2.tsv
	cmp want.tsv got2.tsv
	run -0 --separate-stderr kyro-verify -d "$D"
	assert_output ''
	stderr_is ''
}

@test "concurrency: two kyro-snapshot runs at once both succeed and keep everything" {
	BG_PIDS=''
	seq 1 3000 | sed 's/$/\tvalue/' >in.tsv
	put_file in.tsv
	kyro-snapshot -d "$D" 3>&- &
	BG_PIDS=$!
	run -0 --separate-stderr kyro-snapshot -d "$D"
	assert_output ''
	stderr_is ''
	wait_all $BG_PIDS
	dump "$D" got.tsv
	cmp in.tsv got.tsv
	run -0 --separate-stderr kyro-verify -d "$D"
	assert_output ''
	stderr_is ''
}

@test "concurrency: writers racing to create a store all land (20 rounds of 6)" {
	for round in $(seq 1 20); do
		rm -rf "$D"
		pids=''
		for w in 1 2 3 4 5 6; do
			kyro-put -d "$D" "$w" "v$w" 2>>errors.txt 3>&- &
			pids+=" $!"
		done
		for p in $pids; do
			wait "$p" || fail "round $round: a writer failed: $(cat errors.txt)"
		done
		run -0 kyro-get -d "$D" 1 2 3 4 5 6
		assert_output $'v1\nv2\nv3\nv4\nv5\nv6'
	done
	[ ! -s errors.txt ]
}
