#!/usr/bin/env bats
#
# The crash test: kyro-put batches and kyro-snapshot runs are killed with
# SIGKILL, at random moments and at every system call in turn.  Some
# ranges are written with a vector per key beside the value, in the same
# batch (crashtool vput, through the library); their vectors must follow
# their values exactly: present with the value's batch, gone with a delete.
# After each crash: every batch that exited 0 is there whole (latest
# values as written), no batch is partly visible, kyro-verify reports at
# most a torn tail before the next writer and nothing at all after it, and
# a killed snapshot never loses data.
#
# The expected state is kept outside the killed processes (as RocksDB's
# db_crashtest.py does): this driver writes an operation to its state file
# before starting it and "ack G" only after the process has exited 0.
# Each batch writes one key range of its own, key R<<32 | j, with values
# that name the range, the operation and j; tests/crash/crashtool.c
# generates the batches, runs and kills the processes, and checks a dump
# against the state file (see its header for the rules).
#
# KYRODB_CRASH_ROUNDS (default 150) bounds the random test;
# KYRODB_CRASH_SEED replays one (the seed is printed on failure).

bats_require_minimum_version 1.5.0

load helpers
load fault-helpers

setup_file() {
	pin_bin
	build_failnth
	local top="$CRASH_SRC/../.."
	cc -O2 -Wall -Wextra -I"$top/libkyro" -o "$BATS_FILE_TMPDIR/crashtool" \
		"$CRASH_SRC/crashtool.c" "$top/build/libkyro.a" \
		-l:libcpu_features.a -lxxhash -lm -pthread
}

setup() {
	use_pinned_bin
	kyro_setup
	CT="$BATS_FILE_TMPDIR/crashtool"
	STATE="$BATS_TEST_TMPDIR/state"
	: >"$STATE"
	G=0
	NEXT_RANGE=1
	SEED=
}

# ---- the driver's bookkeeping ----

# new_op: the next operation number in $G.
new_op() {
	G=$((G + 1))
}

# check_dump DUMP [STATE [VDUMP]]: the dump (and the vectors) satisfy
# the state file.
check_dump() {
	run --separate-stderr "$CT" check "${2:-$STATE}" "$1" ${3:+"$3"}
	if [ "$status" -ne 0 ]; then
		batslib_print_kv_single_or_multi 8 seed "${SEED:-none}" \
			problems "$output$stderr" |
			batslib_decorate "the store does not hold what was acknowledged" |
			fail
	fi
}

# check_store: dump $D, values and vectors, and check it.
check_store() {
	dump "$D" "$BATS_TEST_TMPDIR/store.tsv"
	run -0 --separate-stderr "$CT" vdump "$D" $((NEXT_RANGE + 10))
	printf '%s' "$output${output:+$'\n'}" >"$BATS_TEST_TMPDIR/store.vec"
	check_dump "$BATS_TEST_TMPDIR/store.tsv" "$STATE" "$BATS_TEST_TMPDIR/store.vec"
}

# sentinel TEXT: a writer that is not killed: key 0 = TEXT, must exit 0.
sentinel() {
	run -0 --separate-stderr kyro-put -d "$D" 0 "$1"
	echo "sentinel $1" >>"$STATE"
}

# after_crash: the checks after one or more processes were killed.
after_crash() {
	local tag=$1
	verify_clean_or_torn "$D"
	check_store
	sentinel "$tag"
	verify_clean "$D"
}

# vput_range R N: an acknowledged batch writing range R (N keys), each
# key with its vector.
vput_range() {
	local r=$1 n=$2
	new_op
	"$CT" gen "$r" "$G" "$n" >"$BATS_TEST_TMPDIR/batch"
	echo "vput $r $G $n" >>"$STATE"
	run -0 --separate-stderr "$CT" vput "$D" <"$BATS_TEST_TMPDIR/batch"
	echo "ack $G" >>"$STATE"
}

# put_range R N [OPTIONS]: an acknowledged batch writing range R (N keys).
put_range() {
	local r=$1 n=$2
	shift 2
	new_op
	"$CT" gen "$r" "$G" "$n" >"$BATS_TEST_TMPDIR/batch"
	echo "put $r $G $n" >>"$STATE"
	run -0 --separate-stderr kyro-put -d "$D" "$@" <"$BATS_TEST_TMPDIR/batch"
	echo "ack $G" >>"$STATE"
}

# A base store: three ranges in a snapshot, and two with vectors; in the
# WAL one more range, rewrites of a snapshot range and of a vector range,
# and two deletes (one of a vector range).
base_store() {
	put_range 1 500
	put_range 2 3000
	put_range 3 200
	vput_range 4 300
	vput_range 5 100
	run -0 kyro-snapshot -d "$D"
	put_range 6 1000
	put_range 2 3000
	vput_range 4 300
	new_op
	echo "del 3 $G" >>"$STATE"
	run -0 kyro-put -d "$D" --delete < <(seq 0 199 | awk '{ printf "%.0f\n", 3 * 4294967296 + $1 }')
	echo "ack $G" >>"$STATE"
	new_op
	echo "del 5 $G" >>"$STATE"
	run -0 kyro-put -d "$D" --delete < <(seq 0 99 | awk '{ printf "%.0f\n", 5 * 4294967296 + $1 }')
	echo "ack $G" >>"$STATE"
	NEXT_RANGE=7
	sentinel base
}

# ---- a torn tail, made deterministically ----

@test "a kyro-put killed between two writes of its batch leaves a torn tail: invisible, reported as such, and gone after the next writer" {
	base_store
	new_op
	"$CT" gen 9 "$G" 20000 >big.tsv # about 3 MB: the first 1 MB goes out alone
	echo "put 9 $G 20000" >>"$STATE"
	size=$(wal_bytes "$D")
	run -137 env FAILNTH_KILL=1 FAILNTH_FUNC=write FAILNTH_N=2 \
		LD_PRELOAD="$BATS_FILE_TMPDIR/failnth.so" "$BIN/kyro-put" -d "$D" <big.tsv
	[ "$(wal_bytes "$D")" -gt "$((size + 1000000))" ] || fail "the first write did not reach the WAL"
	check_store
	# kyro-get of a key of the torn batch: not found.
	run -1 --separate-stderr kyro-get -d "$D" $((9 << 32))
	# kyro-verify: exit 1, one finding, a torn tail in the last segment.
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp "^$D/wal-[0-9a-f]{16}\.log: offset [0-9]+: torn tail: [0-9]+ bytes after the last complete batch\$"
	assert_equal "$stderr" ''
	fake_reboot "$D" # recovery from the files alone agrees
	check_store
	sentinel next
	verify_clean "$D"
	[ "$(wal_bytes "$D")" -lt "$((size + 1000))" ] || fail "the next writer did not truncate the torn tail"
	check_store
}

@test "after a crash in the middle of a 16 MiB value, a kyro-put and a kyro-snapshot started together never die of a signal" {
	# The crash leaves a 16 MiB torn tail.  Whichever of the two takes
	# the writer lock first truncates it; the other must not be reading
	# the truncated part through a mapping at that moment (SIGBUS).
	run -0 kyro-put -d "$D" 1 one
	awk 'BEGIN { printf "7\t"; for (i = 0; i < 262143; i++) printf "%064d", i; printf "abcde\n" }' >huge.tsv
	# kill kyro-put just before its 3rd write: the record header and the
	# whole value are in the file, the padding and the commit are not
	run -137 env FAILNTH_KILL=1 FAILNTH_FUNC=write FAILNTH_N=3 \
		LD_PRELOAD="$BATS_FILE_TMPDIR/failnth.so" "$BIN/kyro-put" -d "$D" <huge.tsv
	run -1 --separate-stderr kyro-verify -d "$D"
	assert_output --regexp ': torn tail: 1677[0-9]{4} bytes after the last complete batch$'
	mv "$D" crashed
	for round in $(seq 1 10); do
		rm -rf "$D"
		cp -a crashed "$D"
		"$BIN/kyro-snapshot" -d "$D" 2>snap.err &
		local snap=$! st=0 pst=0
		"$BIN/kyro-put" -d "$D" 2 two 2>put.err &
		local put=$!
		wait "$snap" || st=$?
		wait "$put" || pst=$?
		[ "$pst" -eq 0 ] || fail "round $round: kyro-put exited $pst: $(cat put.err)"
		[ "$st" -eq 0 ] || fail "round $round: kyro-snapshot exited $st: $(cat snap.err)"
		run -0 --separate-stderr kyro-get -d "$D" --all --format=tsv
		assert_output "$(printf '1\tone\n2\ttwo')"
		verify_clean "$D"
	done
}

# ---- every system call in turn ----

# crash_walk FUNC MIN TOOL ARGS...: from a fresh copy of the base store
# each time, kill TOOL just before its Nth call of FUNC, for N = 1, 2, ...
# until it finishes; after each crash, the checks of after_crash, then a
# snapshot that must succeed and lose nothing.  TOOL kyro-put reads
# $BATS_TEST_TMPDIR/crash.in and is recorded as operation CRASH_G.
crash_walk() {
	local func=$1 min=$2 tool=$3 n
	shift 3
	for n in $(seq 1 300); do
		rm -rf "$D"
		cp -a base "$D"
		cp base.state "$STATE"
		if [ "$tool" != kyro-snapshot ]; then
			cat crash.op >>"$STATE"
		fi
		local cmd="$BIN/$tool"
		[ "$tool" != vput ] || cmd="$CT vput"
		run env FAILNTH_KILL=1 FAILNTH_FUNC="$func" FAILNTH_N="$n" \
			LD_PRELOAD="$BATS_FILE_TMPDIR/failnth.so" $cmd "$@" \
			<"$BATS_TEST_TMPDIR/crash.in"
		[ "$status" -eq 137 ] || break
		after_crash "killed-$func-$n"
		run -0 --separate-stderr kyro-snapshot -d "$D"
		check_store
	done
	[ "$status" -eq 0 ] || fail "$tool ($func #$n) exited $status: $output"
	[ "$((n - 1))" -ge "$min" ] || fail "$tool made only $((n - 1)) calls of $func"
	# The run that finished: acknowledged.
	if [ "$tool" != kyro-snapshot ]; then
		echo "ack $CRASH_G" >>"$STATE"
	fi
	check_store
	verify_clean "$D"
}

# prepare_walk: the base store, saved as ./base and ./base.state.
prepare_walk() {
	base_store
	cp -a "$D" base
	cp "$STATE" base.state
}

@test "kyro-put killed just before any write, fsync, truncate or rename of a large batch: all of the batch or none of it" {
	prepare_walk
	G=$((G + 1))
	CRASH_G=$G
	"$CT" gen 2 "$G" 3000 >"$BATS_TEST_TMPDIR/crash.in"   # rewrites range 2
	"$CT" gen 7 "$G" 30000 >>"$BATS_TEST_TMPDIR/crash.in" # and a new range
	# One batch, two ranges: visible in both or in neither.
	printf 'put 2 %s 3000\nput 7 %s 30000\n' "$G" "$G" >crash.op
	crash_walk write 3 kyro-put -d "$D"
	crash_walk fsync 1 kyro-put -d "$D"
	# A torn tail to truncate first: ftruncate and its fsync.
	w=$(ls base/wal-*.log | tail -1)
	printf 'torn' >>"$w"
	crash_walk ftruncate 1 kyro-put -d "$D"
	crash_walk fsync 2 kyro-put -d "$D"
}

@test "a batch of values and vectors killed just before any write or fsync: values and vectors all there or none" {
	prepare_walk
	G=$((G + 1))
	CRASH_G=$G
	"$CT" gen 4 "$G" 300 >"$BATS_TEST_TMPDIR/crash.in"     # rewrites range 4
	"$CT" gen 7 "$G" 20000 >>"$BATS_TEST_TMPDIR/crash.in"  # and a new range
	printf 'vput 4 %s 300\nvput 7 %s 20000\n' "$G" "$G" >crash.op
	crash_walk write 3 vput "$D"
	crash_walk fsync 1 vput "$D"
	# Synced record by record: a small batch, or the walk never ends.
	G=$((G + 1))
	CRASH_G=$G
	"$CT" gen 8 "$G" 3 >"$BATS_TEST_TMPDIR/crash.in"
	echo "vput 8 $G 3" >crash.op
	crash_walk fsync 6 vput "$D" always
}

@test "kyro-put --sync=always killed just before any fsync: the batch is all there or not at all" {
	prepare_walk
	G=$((G + 1))
	CRASH_G=$G
	"$CT" gen 8 "$G" 5 >"$BATS_TEST_TMPDIR/crash.in"
	echo "put 8 $G 5" >crash.op
	crash_walk fsync 6 kyro-put -d "$D" --sync=always
	crash_walk write 1 kyro-put -d "$D" --sync=always
}

@test "kyro-snapshot killed just before any write, fsync, rename, unlink or truncate loses nothing" {
	prepare_walk
	: >"$BATS_TEST_TMPDIR/crash.in"
	crash_walk write 4 kyro-snapshot -d "$D"
	crash_walk fsync 6 kyro-snapshot -d "$D"
	crash_walk rename 4 kyro-snapshot -d "$D"
	crash_walk unlink 2 kyro-snapshot -d "$D"
	crash_walk ftruncate 0 kyro-snapshot -d "$D"
}

# ---- random moments ----

# start_op KIND LABEL CMD...: start CMD in the background under crashtool
# run, stdin from in.K; one time in four it runs to the end, otherwise it
# is killed after a random delay below 1.2 times the mean run time of its
# KIND (big, small, snap) so far, so that the kills land while it works.
# Its pid goes to PIDS, KIND and LABEL to KINDS and LABELS.
start_op() {
	local kind=$1 label=$2
	shift 2
	local delay=-1 k=${#PIDS[@]}
	if ((RANDOM % 4 != 0)); then
		delay=$(((RANDOM * 32768 + RANDOM) % (MEAN[$kind] * 12 / 10 + 1)))
	fi
	"$CT" run "$delay" "$BATS_TEST_TMPDIR/in.$k" "$BATS_TEST_TMPDIR/out.$k" \
		"$BATS_TEST_TMPDIR/err.$k" "$@" >"$BATS_TEST_TMPDIR/time.$k" &
	PIDS+=($!)
	KINDS+=("$kind")
	LABELS+=("$label (kill after $delay us)")
}

@test "SIGKILL at random moments during concurrent kyro-put batches and kyro-snapshot runs: acknowledged batches survive whole, none is partly visible, kyro-verify is clean after the next writer" {
	local rounds=${KYRODB_CRASH_ROUNDS:-150}
	SEED=${KYRODB_CRASH_SEED:-$((RANDOM * 32768 + RANDOM))}
	RANDOM=$SEED
	local live=() round r n sync k st kills=0 acks=0 torn=0 snaps=0 readers=0
	local killed w d kind took
	declare -A size last_ack isvec # per range: keys; "put" or "del",
	# acknowledged last; written with vectors
	declare -gA MEAN=([big]=40000 [small]=10000 [snap]=40000)
	sentinel s0
	for round in $(seq 1 "$rounds"); do
		PIDS=()
		KINDS=()
		LABELS=()
		local acks_pending=() op_range=() op_kind=()
		killed=0
		# A new range, small or large (multi-MB: several buffer flushes).
		r=$NEXT_RANGE
		NEXT_RANGE=$((NEXT_RANGE + 1))
		if ((RANDOM % 10 < 3)); then
			n=$((12000 + RANDOM % 13000))
		else
			n=$((1 + RANDOM % 3000))
		fi
		size[$r]=$n
		sync=batch
		if ((n <= 300 && RANDOM % 3 == 0)); then
			sync=always
		elif ((RANDOM % 10 == 0)); then
			sync=none
		fi
		new_op
		k=${#PIDS[@]}
		"$CT" gen "$r" "$G" "$n" >"$BATS_TEST_TMPDIR/in.$k"
		acks_pending+=("$G")
		op_range+=("$r")
		op_kind+=(put)
		kind=small
		((n <= 5000)) || kind=big
		# One range in four carries vectors (written through the
		# library by crashtool vput, and rewritten the same way).
		if ((RANDOM % 4 == 0)); then
			isvec[$r]=1
			echo "vput $r $G $n" >>"$STATE"
			start_op $kind "vput r$r n$n sync=$sync" \
				"$CT" vput "$D" $sync
		else
			echo "put $r $G $n" >>"$STATE"
			start_op $kind "put r$r n$n sync=$sync" \
				"$BIN/kyro-put" -d "$D" --sync=$sync
		fi
		# Sometimes rewrite a live range, sometimes delete the oldest.
		w=
		if ((${#live[@]} > 0 && RANDOM % 10 < 3)); then
			w=${live[RANDOM % ${#live[@]}]}
			new_op
			k=${#PIDS[@]}
			"$CT" gen "$w" "$G" "${size[$w]}" >"$BATS_TEST_TMPDIR/in.$k"
			acks_pending+=("$G")
			op_range+=("$w")
			op_kind+=(put)
			kind=small
			((size[$w] <= 5000)) || kind=big
			if [ -n "${isvec[$w]:-}" ]; then
				echo "vput $w $G ${size[$w]}" >>"$STATE"
				start_op $kind "rewrite r$w" "$CT" vput "$D"
			else
				echo "put $w $G ${size[$w]}" >>"$STATE"
				start_op $kind "rewrite r$w" "$BIN/kyro-put" -d "$D"
			fi
		fi
		if ((${#live[@]} > 3)); then
			d=${live[0]}
			if [ "$d" != "$w" ]; then
				new_op
				k=${#PIDS[@]}
				seq $((d << 32)) $(((d << 32) + size[$d] - 1)) >"$BATS_TEST_TMPDIR/in.$k"
				echo "del $d $G" >>"$STATE"
				acks_pending+=("$G")
				op_range+=("$d")
				op_kind+=(del)
				start_op small "delete r$d" "$BIN/kyro-put" -d "$D" --delete
			fi
		fi
		# A snapshot now and then, killed or not.
		if ((RANDOM % 10 < 3)); then
			snaps=$((snaps + 1))
			k=${#PIDS[@]}
			: >"$BATS_TEST_TMPDIR/in.$k"
			acks_pending+=(-)
			op_range+=(-)
			op_kind+=(-)
			start_op snap snapshot "$BIN/kyro-snapshot" -d "$D"
		fi
		# A reader meanwhile, never killed: what it sees must be
		# consistent with the state when it started.
		local reader=
		if ((RANDOM % 10 < 3)); then
			readers=$((readers + 1))
			cp "$STATE" "$BATS_TEST_TMPDIR/state.reader"
			"$BIN/kyro-get" -d "$D" --all --format=tsv >"$BATS_TEST_TMPDIR/reader.tsv" \
				2>"$BATS_TEST_TMPDIR/reader.err" &
			reader=$!
		fi
		for k in "${!PIDS[@]}"; do
			st=0
			wait "${PIDS[$k]}" || st=$?
			case $st in
			0)
				kind=${KINDS[$k]}
				read -r took <"$BATS_TEST_TMPDIR/time.$k"
				MEAN[$kind]=$(((MEAN[$kind] * 3 + took) / 4))
				if [ "${acks_pending[$k]}" != - ]; then
					echo "ack ${acks_pending[$k]}" >>"$STATE"
					last_ack[${op_range[$k]}]=${op_kind[$k]}
					acks=$((acks + 1))
				fi
				;;
			137)
				kills=$((kills + 1))
				killed=1
				;;
			*)
				fail "seed $SEED round $round: ${LABELS[$k]} exited $st: $(cat "$BATS_TEST_TMPDIR/err.$k")"
				;;
			esac
			if [ "$st" -ne 137 ] && [ -s "$BATS_TEST_TMPDIR/err.$k" ]; then
				fail "seed $SEED round $round: ${LABELS[$k]} wrote on stderr: $(cat "$BATS_TEST_TMPDIR/err.$k")"
			fi
		done
		if [ -n "$reader" ]; then
			wait "$reader" ||
				fail "seed $SEED round $round: a concurrent kyro-get --all failed: $(cat "$BATS_TEST_TMPDIR/reader.err")"
			check_dump "$BATS_TEST_TMPDIR/reader.tsv" "$BATS_TEST_TMPDIR/state.reader"
		fi
		# The ranges to rewrite or delete later: those whose last
		# acknowledged operation is a put, oldest first.
		live=()
		for r in $(seq 1 $((NEXT_RANGE - 1))); do
			[ "${last_ack[$r]:-}" != put ] || live+=("$r")
		done
		# The checks.  Before the next writer a torn tail is allowed
		# (only a killed writer can leave one).
		if [ "$killed" -eq 1 ]; then
			verify_clean_or_torn "$D"
			if [ "$status" -eq 1 ]; then torn=$((torn + 1)); fi
		else
			verify_clean "$D"
		fi
		check_store
		sentinel "s$round"
		verify_clean "$D"
	done
	# The test must have crashed things, and let some through.
	echo "# seed $SEED: $rounds rounds, $kills kills, $acks acks, $torn torn tails, $snaps snapshots, $readers readers; mean run times (us): ${MEAN[big]} big put, ${MEAN[small]} small put, ${MEAN[snap]} snapshot" >&3
	[ "$kills" -ge $((rounds / 2)) ] || fail "only $kills kills in $rounds rounds"
	[ "$acks" -ge $((rounds / 5)) ] || fail "only $acks batches acknowledged in $rounds rounds"
	# (Torn tails left at the end of a round are rare here, since a later
	# writer in the round truncates them; the first test makes one for
	# sure.  The count above shows how many this run saw.)
	# And the store still works end to end.
	run -0 --separate-stderr kyro-snapshot -d "$D"
	check_store
	verify_clean "$D"
}
