#!/usr/bin/env bats
#
# Read replicas: kyro-serve --replica-of URL bootstraps from the primary's
# GET /v1/image, follows its /v1/subscribe (each batch applied from its
# event, or from a page when the event cannot carry it exactly), refuses
# writes naming the primary, resumes after its own SIGKILL and a primary
# restart with no gap and no duplicate, bootstraps again when the primary
# no longer retains what it needs or no longer holds the replica's last
# change (a primary restored from an older copy), reports its lag, stops
# on a change it cannot apply, applies a /v1/replicate page whole or not
# at all, speaks page format 1 with the release before format 2 either
# way, and is promoted by a restart without --replica-of.  The crash test
# kills either side at random moments during writes.  Every wait polls
# with a deadline; no sleep stands in for one.

load helpers
load serve-helpers

bats_require_minimum_version 1.5.0

setup() {
	kyro_setup
	unset KYRODB_AUTH_TOKEN KYRODB_RATE_LIMIT_RPS KYRODB_RATE_LIMIT_BURST \
		KYRODB_AUTO_SNAPSHOT_RECORDS KYRODB_LOG_LEVEL NOTIFY_SOCKET \
		KYRODB_REPLICA_TOKEN
	command -v python3 >/dev/null || skip "python3 is not installed"
	P_DIR="$BATS_TEST_TMPDIR/primary"
	R_DIR="$BATS_TEST_TMPDIR/replica"
	P_PORT=$(free_port)
	R_PORT=$(free_port)
	while [ "$R_PORT" = "$P_PORT" ]; do R_PORT=$(free_port); done
	P_URL="http://127.0.0.1:$P_PORT"
	R_URL="http://127.0.0.1:$R_PORT"
	P_PID= R_PID= W_PID= F_PID=
	HERE="$BATS_TEST_DIRNAME/replica"
}

teardown() {
	local p f
	# A failure shows what the daemons said.
	if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
		for f in "$BATS_TEST_TMPDIR"/*.log; do
			[ -f "$f" ] && { echo "--- $f"; grep -v '" 200 ' "$f" | tail -n 20; } >&3
		done
	fi
	for p in $W_PID $F_PID $R_PID $P_PID; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
}

# code URL: the status of GET URL ("000" when nobody answers).
code() {
	curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true
}

# wait_for SECONDS COMMAND...: run COMMAND every 20 ms until it succeeds;
# fail after SECONDS.
wait_for() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		if [ $SECONDS -ge $end ]; then
			echo "timed out waiting for: $*" >&2
			return 1
		fi
		sleep 0.02
	done
}

up() { [ "$(code "$1/health")" = "$2" ]; }

# start_primary [OPTION...]
start_primary() {
	kyro-serve -d "$P_DIR" -l "127.0.0.1:$P_PORT" "$@" \
		2>>"$BATS_TEST_TMPDIR/primary.log" 3>&- &
	P_PID=$!
	wait_for 10 up "$P_URL" 200 || {
		tail -5 "$BATS_TEST_TMPDIR/primary.log" >&2
		return 1
	}
}

# start_replica [OPTION...]: started; not waited for (see following).
start_replica() {
	kyro-serve -d "$R_DIR" -l "127.0.0.1:$R_PORT" \
		--replica-of "$P_URL" "$@" \
		2>>"$BATS_TEST_TMPDIR/replica.log" 3>&- &
	R_PID=$!
}

stop() { # stop VAR [SIGNAL]
	local pid=${!1}
	[ -n "$pid" ] || return 0
	kill "-${2:-TERM}" "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	eval "$1="
}

field() { # field JSON NAME: a number or string field of a flat object
	sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$1"
}

primary_seq() {
	field "$(curl -s "$P_URL/v1/offset")" offset
}

# The replica has applied everything the primary has committed.
caught_up() {
	local h want
	h=$(curl -s "$R_URL/health" 2>/dev/null) || return 1
	want=$(primary_seq) || return 1
	[ -n "$want" ] && [ "$(field "$h" applied_seq)" = "$want" ] &&
		[ "$(field "$h" state)" = following ]
}

# The replica has applied up to SEQ.
caught_up_to() {
	[ "$(field "$(curl -s "$R_URL/health" 2>/dev/null)" applied_seq)" = "$1" ]
}

# metric NAME: its value in the replica's /metrics (empty if absent).
metric() {
	curl -s "$R_URL/metrics" 2>/dev/null | sed -n "s/^$1 //p"
}

# put KEY VALUE on the primary.
put() {
	[ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary "$2" \
		"$P_URL/v1/kv/$1")" = 200 ]
}

# Both stores hold the same keys and values, and their feeds agree from
# the replica's first change on: same numbers, changes, values.
same_stores() {
	kyro-get -d "$P_DIR" -f tsv --all >p.all
	kyro-get -d "$R_DIR" -f tsv --all >r.all
	diff p.all r.all
	# The replica's history begins after the image it bootstrapped from.
	local first=1 b
	b=$(curl -s "$R_URL/v1/replay?start=1&limit=1")
	[[ $b != *'"oldest":'* ]] || first=$(field "$b" oldest)
	kyro-get -d "$R_DIR" --changes --from "$first" >r.feed
	kyro-get -d "$P_DIR" --changes --from "$first" |
		head -n "$(wc -l <r.feed)" >p.feed
	diff p.feed r.feed
}

@test "replica: bootstraps from the primary's snapshot and index, then follows" {
	start_primary
	for k in 1 2 3 4 5; do put $k v$k; done
	curl -s -X POST "$P_URL/v1/snapshot?wait=1" >/dev/null
	curl -s -X POST "$P_URL/v1/rmi/build?wait=1" >/dev/null
	put 6 six
	curl -s -X DELETE "$P_URL/v1/kv/1" >/dev/null
	start_replica
	wait_for 10 caught_up
	[ -f "$R_DIR/snap-0000000000000001.bin" ]
	ls "$R_DIR" | grep -q '^rmi-.*\.idx$'
	[ ! -e "$R_DIR.bootstrap" ]
	same_stores
	assert_equal "$(curl -s "$R_URL/v1/kv/6")" six
	assert_equal "$(code "$R_URL/v1/kv/1")" 404
	# New writes arrive.
	put 7 seven
	wait_for 10 caught_up
	assert_equal "$(curl -s "$R_URL/v1/kv/7")" seven
	# The replica's directory is an ordinary store.
	run -0 kyro-verify -d "$R_DIR"
	run -0 kyro-get -d "$R_DIR" 7
	assert_output seven
}

@test "replica: vector changes are replicated, in the image and in the feed" {
	start_primary
	printf '1\tred\t1,0,0\n2\t0,1,0\n' | kyro-put -d "$P_DIR" --vectors
	curl -s -X POST "$P_URL/v1/snapshot?wait=1" >/dev/null
	kyro-snapshot -d "$P_DIR" --vectors
	start_replica
	wait_for 10 caught_up
	ls "$R_DIR" | grep -q '^vec-.*\.vec$'
	printf '3\tblue\t0,0,1\n' | kyro-put -d "$P_DIR" --vectors
	wait_for 10 caught_up
	same_stores
	echo 0,0,1 | kyro-get -d "$R_DIR" --nearest 1 >near
	[ "$(cut -f 1 near | head -n 1)" = 3 ]
	run -0 kyro-verify -d "$R_DIR"
}

@test "replica: every write route is refused with 421 naming the primary" {
	start_primary
	start_replica
	wait_for 10 caught_up
	want="{\"error\":\"read replica of $P_URL: write to the primary\"}"
	HTTP_STATUS=$(curl -s -o body -w '%{http_code}' -X PUT --data-binary x "$R_URL/v1/kv/1")
	assert_equal "$HTTP_STATUS $(cat body)" "421 $want"
	HTTP_STATUS=$(curl -s -o body -w '%{http_code}' -X DELETE "$R_URL/v1/kv/1")
	assert_equal "$HTTP_STATUS $(cat body)" "421 $want"
	HTTP_STATUS=$(curl -s -o body -w '%{http_code}' --data '{"key":1,"value":"x"}' "$R_URL/v1/put")
	assert_equal "$HTTP_STATUS $(cat body)" "421 $want"
	HTTP_STATUS=$(curl -s -o body -w '%{http_code}' --data '{"key":1}' "$R_URL/v1/delete")
	assert_equal "$HTTP_STATUS $(cat body)" "421 $want"
	HTTP_STATUS=$(curl -s -o body -w '%{http_code}' -X POST "$R_URL/v1/snapshot")
	assert_equal "$HTTP_STATUS $(cat body)" "421 $want"
	HTTP_STATUS=$(curl -s -o body -w '%{http_code}' -X POST "$R_URL/v1/rmi/build")
	assert_equal "$HTTP_STATUS $(cat body)" "421 $want"
	local route
	for route in vector/insert insert; do
		HTTP_STATUS=$(curl -s -o body -w '%{http_code}' --data '{"key":1,"doc_id":1,"vector":[1],"embedding":[1]}' "$R_URL/v1/$route")
		assert_equal "$HTTP_STATUS $(cat body)" "421 $want"
	done
	HTTP_STATUS=$(curl -s -o body -w '%{http_code}' --data '{"items":[{"key":1,"vector":[1]}]}' "$R_URL/v1/vector/insert_batch")
	assert_equal "$HTTP_STATUS $(cat body)" "421 $want"
	HTTP_STATUS=$(curl -s -o body -w '%{http_code}' -X POST "$R_URL/v1/vector/build")
	assert_equal "$HTTP_STATUS $(cat body)" "421 $want"
	# Nothing was written.
	assert_equal "$(field "$(curl -s "$R_URL/v1/offset")" offset)" 0
	assert_equal "$(code "$R_URL/v1/kv/1")" 404
}

@test "replica: lag in sequence numbers and seconds is in /health and /metrics" {
	start_primary
	start_replica
	wait_for 10 caught_up
	h=$(curl -s "$R_URL/health")
	assert_equal "$(field "$h" role)" replica
	assert_equal "$(field "$h" primary)" "$P_URL"
	assert_equal "$(field "$h" lag_seq)" 0
	# Behind: the replica's writer lock, held here, keeps it from
	# applying what it receives.
	exec 8<"$R_DIR/LOCK"
	flock 8
	for k in 1 2 3; do put $k v$k; done
	behind() {
		local h
		h=$(curl -s "$R_URL/health")
		[ "$(field "$h" lag_seq)" = 3 ] &&
			awk -v s="$(field "$h" lag_seconds)" 'BEGIN { exit !(s > 0) }'
	}
	wait_for 10 behind
	curl -s "$R_URL/metrics" >m
	grep -qx 'kyro_replica_lag_seq 3' m
	grep -q '^kyro_replica_lag_seconds [0-9.]*$' m
	grep -qx "kyro_replica_primary_seq 3" m
	flock -u 8
	exec 8>&-
	wait_for 10 caught_up
	curl -s "$R_URL/metrics" >m
	grep -qx 'kyro_replica_lag_seq 0' m
	grep -qx 'kyro_replica_lag_seconds 0.000' m
	grep -qx 'kyro_replica_applied_seq 3' m
}

@test "replica: resumes after its own SIGKILL with no gap and no duplicate" {
	start_primary
	for k in $(seq 1 20); do put $k a$k; done
	start_replica
	wait_for 10 caught_up
	stop R_PID KILL
	for k in $(seq 10 40); do put $k b$k; done
	start_replica
	wait_for 10 caught_up
	same_stores
	# Exactly one bootstrap in the replica's life: it resumed.
	assert_equal "$(grep -c bootstrapped "$BATS_TEST_TMPDIR/replica.log")" 1
	cut -f 1 r.feed >seqs
	seq 1 "$(primary_seq)" | diff - seqs
}

@test "replica: while following, it applies a batch from its event, and reads a page for what the event cannot carry exactly" {
	start_primary
	start_replica
	wait_for 10 caught_up
	for k in 1 2 3; do put $k "v$k"; wait_for 10 caught_up; done
	# Taken from the events: no page since.
	pages=$(metric kyro_replica_pages_total)
	[ "$(metric kyro_replica_stream_changes_total)" -ge 3 ]
	# A value that is not UTF-8 (base64 in the event), a delete, and a
	# batch of more than 64 changes: each exactly as the primary has it.
	printf '\xff\xfe\x00\x01' >bin.val
	curl -s -o /dev/null -X PUT --data-binary @bin.val "$P_URL/v1/kv/10"
	curl -s -o /dev/null -X DELETE "$P_URL/v1/kv/2"
	seq 100 199 | awk '{ printf "%d\tw%d\n", $1, $1 }' | kyro-put -d "$P_DIR"
	put 4 v4
	wait_for 10 caught_up
	[ "$(metric kyro_replica_pages_total)" -gt "$pages" ]
	curl -s "$R_URL/v1/kv/10" | cmp - bin.val
	assert_equal "$(code "$R_URL/v1/kv/2")" 404
	same_stores
	cut -f 1 r.feed >seqs
	seq 1 "$(primary_seq)" | diff - seqs
	stop R_PID
	run -0 kyro-verify -d "$R_DIR"
}

@test "replica: far behind, it catches up by pages and opens its doorbell again where it stands" {
	start_primary
	put 1 one
	start_replica
	wait_for 10 caught_up
	kill -STOP "$R_PID"
	awk 'BEGIN { s = 1; for (i = 1; i <= 1000000; i++) {
		s++; printf "put\t%d\t%d\tv%d\n", s, i, i
		if (i % 100 == 0) printf "commit\t%d\n", s } }' |
		kyro-put -d "$P_DIR" --sync=none --replay
	kill -CONT "$R_PID"
	wait_for 60 caught_up
	# The events of the changes the pages brought are not sent: the
	# stream that would carry them as JSON is dropped for one that
	# starts after them.  What the socket buffers took before is all.
	sent() { curl -s "$P_URL/metrics" | sed -n 's/^kyro_feed_changes_total //p'; }
	settled() { local a; a=$(sent); sleep 0.3; [ "$a" = "$(sent)" ]; }
	wait_for 30 settled
	[ "$(sent)" -lt 500000 ]
	put 2 two
	wait_for 10 caught_up
	assert_equal "$(curl -s "$R_URL/v1/kv/2")" two
}

@test "replica: SIGKILL of either side while it catches up loses and repeats nothing" {
	start_primary
	# The replica's automatic snapshot (every 1M changes) may come at the
	# end of its last catch-up: its folded history is kept whole, so
	# that its feed can be held against every sequence number.
	keep=--retain=1G
	wal_bytes() {
		stat -c %s "$R_DIR"/wal-*.log 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
	}
	following() { [ "$(field "$(curl -s "$R_URL/health")" state)" = following ]; }
	grown() { [ "$(wal_bytes)" -gt $(($1 + 1000000)) ] || caught_up; }
	for round in 1 2 3; do
		# 400,000 changes behind, in batches of 100: about 20 MB of
		# pages.
		awk -v r="$round" 'BEGIN { s = (r - 1) * 400000
			for (i = 1; i <= 400000; i++) { s++
				printf "put\t%d\t%d\tvalue-%020d\n", s, s, s
				if (i % 100 == 0) printf "commit\t%d\n", s } }' |
			kyro-put -d "$P_DIR" --sync=none --replay
		start_replica "$keep"
		# Pages have begun (the torn tail of the round before is cut
		# by then) and a megabyte more is in the replica's WAL: most
		# likely inside a page, not committed.  Either way nothing
		# may be lost or repeated.
		wait_for 20 following
		wait_for 20 grown "$(wal_bytes)"
		if [ "$round" = 2 ]; then
			stop P_PID KILL
			start_primary
		fi
		stop R_PID KILL
	done
	start_replica "$keep"
	wait_for 60 caught_up
	same_stores
	cut -f 1 r.feed >seqs
	seq 1 "$(primary_seq)" | diff - seqs
	stop R_PID
	run -0 kyro-verify -d "$R_DIR"
}

@test "replica: its automatic snapshot runs beside the follower and leaves the copy whole" {
	mkdir -p "$P_DIR"
	awk 'BEGIN { for (i = 1; i <= 300000; i++) {
		printf "put\t%d\t%d\tv%d\n", i, i % 1000, i
		if (i % 100 == 0) printf "commit\t%d\n", i } }' |
		kyro-put -d "$P_DIR" --sync=none --replay
	start_primary
	KYRODB_AUTO_SNAPSHOT_RECORDS=50000 start_replica
	wait_for 60 caught_up
	snapshotted() { ls "$R_DIR" | grep -q '^snap-.*\.bin$'; }
	wait_for 30 snapshotted
	put 7 after
	wait_for 10 caught_up
	same_stores
	cut -f 1 r.feed >seqs
	seq "$(head -n 1 seqs)" "$(primary_seq)" | diff - seqs
	stop R_PID
	run -0 kyro-verify -d "$R_DIR"
	assert_equal "$(kyro-get -d "$R_DIR" 7)" after
}

@test "replica: follows the primary across its restart" {
	start_primary
	put 1 one
	start_replica
	wait_for 10 caught_up
	stop P_PID
	# Down: the replica keeps serving reads.
	assert_equal "$(curl -s "$R_URL/v1/kv/1")" one
	start_primary
	put 2 two
	put 1 uno
	wait_for 15 caught_up
	same_stores
	assert_equal "$(curl -s "$R_URL/v1/kv/1")" uno
}

@test "replica: bootstraps again by itself when the primary no longer retains its next change" {
	start_primary --retain 0
	for k in 1 2 3; do put $k a$k; done
	start_replica
	wait_for 10 caught_up
	stop R_PID
	for k in 4 5; do put $k b$k; done
	curl -s -X POST "$P_URL/v1/snapshot?wait=1" >/dev/null
	put 6 c6
	curl -s -X POST "$P_URL/v1/snapshot?wait=1" >/dev/null
	put 7 d7
	# The replica's next change (4) is gone from the primary.
	[ "$(code "$P_URL/v1/replay?start=4")" = 410 ]
	start_replica
	wait_for 15 caught_up
	grep -q 'bootstrapping again' "$BATS_TEST_TMPDIR/replica.log"
	grep -qx 'kyro_replica_bootstraps_total 1' <(curl -s "$R_URL/metrics")
	kyro-get -d "$P_DIR" -f tsv --all >p.all
	kyro-get -d "$R_DIR" -f tsv --all >r.all
	diff p.all r.all
	[ ! -e "$R_DIR.bootstrap" ]
	run -0 kyro-verify -d "$R_DIR"
}

@test "replica: pointed at another primary, it bootstraps from it instead of mixing the two" {
	start_primary
	for k in 1 2 3; do put $k p$k; done
	start_replica
	wait_for 10 caught_up
	stop R_PID
	stop P_PID
	# Another store on the same address, further along: its changes 4
	# and 5 are what the replica would ask for next.
	P_DIR="$BATS_TEST_TMPDIR/other"
	start_primary
	for k in 1 2 3 4 5; do put $k q$k; done
	start_replica
	wait_for 15 caught_up
	grep -q 'is not this store.*bootstrapping again' "$BATS_TEST_TMPDIR/replica.log"
	kyro-get -d "$P_DIR" -f tsv --all >p.all
	kyro-get -d "$R_DIR" -f tsv --all >r.all
	diff p.all r.all
	cmp "$P_DIR/HISTORY" "$R_DIR/FOLLOWS"
	assert_equal "$(field "$(curl -s "$R_URL/health")" history)" \
		"$(cat "$P_DIR/HISTORY")"
	run -0 kyro-verify -d "$R_DIR"
}

# The primary's directory goes back to the copy in "$BATS_TEST_TMPDIR/old",
# made when it held keys 1-3: same history ID, fewer changes.
restore_primary() {
	stop R_PID
	stop P_PID
	rm -rf "$P_DIR"
	mv "$BATS_TEST_TMPDIR/old" "$P_DIR"
}

# A primary with keys 1-3, copied while stopped, then 4 and 5, and a
# replica that has followed it to change 5.
replica_past_a_copy() {
	start_primary
	for k in 1 2 3; do put $k a$k; done
	stop P_PID
	cp -a "$P_DIR" "$BATS_TEST_TMPDIR/old"
	start_primary
	for k in 4 5; do put $k b$k; done
	start_replica
	wait_for 10 caught_up
	assert_equal "$(primary_seq)" 5
}

@test "replica: a primary restored from an older copy that wrote on is bootstrapped from, not resumed" {
	replica_past_a_copy
	restore_primary
	# Changes 4-6 of the restored primary are not the replica's 4-5.
	start_primary
	for k in 6 7 8; do put $k c$k; done
	start_replica
	wait_for 15 caught_up
	grep -q "change 5 of this store is not the replica's.*bootstrapping again" \
		"$BATS_TEST_TMPDIR/replica.log"
	kyro-get -d "$P_DIR" -f tsv --all >p.all
	kyro-get -d "$R_DIR" -f tsv --all >r.all
	diff p.all r.all
	run -1 kyro-get -d "$R_DIR" 5
	run -0 kyro-verify -d "$R_DIR"
}

@test "replica: a primary that lost changes the replica holds is bootstrapped from, not waited on" {
	replica_past_a_copy
	restore_primary
	start_primary
	start_replica
	wait_for 15 caught_up
	grep -q 'this store has no change 5.*bootstrapping again' \
		"$BATS_TEST_TMPDIR/replica.log"
	put 9 d9
	wait_for 10 caught_up
	kyro-get -d "$P_DIR" -f tsv --all >p.all
	kyro-get -d "$R_DIR" -f tsv --all >r.all
	diff p.all r.all
	run -1 kyro-get -d "$R_DIR" 4
}

@test "replica: ?prev= is checked: a malformed sum is 400, the same change goes on" {
	start_primary
	for k in 1 2; do put $k v$k; done
	local h
	h=$(cat "$P_DIR/HISTORY")
	[ "$(code "$P_URL/v1/replicate?from=3&history=$h&prev=xyz")" = 400 ]
	[ "$(code "$P_URL/v1/replicate?from=3&history=$h&prev=0000000000000000")" = 410 ]
	[ "$(code "$P_URL/v1/replicate?from=3&history=$h&prev=-")" = 200 ]
	[ "$(code "$P_URL/v1/replicate?from=4&history=$h&prev=-")" = 410 ]
	[ "$(code "$P_URL/v1/replicate?from=1&history=$h&prev=-")" = 200 ]
}

@test "replica: its own subscribers get a last reset event when it bootstraps again" {
	start_primary
	for k in 1 2 3; do put $k p$k; done
	start_replica
	wait_for 10 caught_up
	curl -sN "$R_URL/v1/subscribe?from=1" >sub.out 2>/dev/null &
	W_PID=$!
	wait_for 10 grep -q '^id: 3' sub.out
	stop P_PID
	P_DIR="$BATS_TEST_TMPDIR/other"
	start_primary
	for k in 1 2 3 4 5; do put $k q$k; done
	wait_for 15 caught_up
	wait_for 10 grep -q '^event: reset' sub.out
	grep -A1 '^event: reset' sub.out | grep -qx 'data: {"next":4}'
	# Nothing of the new store came down the old stream.
	! grep -q 'q[1-5]' sub.out
	# A new subscription reads the new store.
	curl -sN -m 2 "$R_URL/v1/subscribe?from=5" >sub2.out 2>/dev/null || true
	grep -q 'q5' sub2.out
}

@test "replica: a store with no record of the history it copies is bootstrapped, not trusted" {
	start_primary
	for k in 1 2; do put $k v$k; done
	start_replica
	wait_for 10 caught_up
	stop R_PID
	cmp "$P_DIR/HISTORY" "$R_DIR/FOLLOWS"
	rm "$R_DIR/FOLLOWS"
	put 3 v3
	start_replica
	wait_for 15 caught_up
	grep -q 'has no record of the history' "$BATS_TEST_TMPDIR/replica.log"
	grep -qx 'kyro_replica_bootstraps_total 1' <(curl -s "$R_URL/metrics")
	cmp "$P_DIR/HISTORY" "$R_DIR/FOLLOWS"
	assert_equal "$(field "$(curl -s "$R_URL/health")" history)" \
		"$(cat "$P_DIR/HISTORY")"
	same_stores
}

@test "replica: restarting without --replica-of promotes it to a primary" {
	start_primary
	for k in 1 2 3; do put $k v$k; done
	start_replica
	wait_for 10 caught_up
	stop R_PID
	stop P_PID
	kyro-serve -d "$R_DIR" -l "127.0.0.1:$R_PORT" 2>>promoted.log 3>&- &
	R_PID=$!
	wait_for 10 up "$R_URL" 200
	run -0 curl -s -X PUT --data-binary four "$R_URL/v1/kv/4"
	assert_output '{"offset":4}'
	assert_equal "$(curl -s "$R_URL/v1/kv/2")" v2
	# Its history parts from the old primary's at that write.
	[ ! -e "$R_DIR/FOLLOWS" ]
	[ -s "$R_DIR/HISTORY" ]
	! cmp -s "$P_DIR/HISTORY" "$R_DIR/HISTORY"
	stop R_PID
	run -0 kyro-verify -d "$R_DIR"
}

# fake_replica FAKE-ARGS...: a replica whose store ends at 1, following
# fake-primary.py (its next change 2) started with FAKE-ARGS.
fake_replica() {
	rm -rf "$R_DIR"
	mkdir -p "$R_DIR"
	printf '1\tv1\n' | kyro-put -d "$R_DIR"
	# A replica of the fake's history (it checks none), so that the
	# replica resumes rather than bootstraps.
	printf '%032x\n' 1 >"$R_DIR/FOLLOWS"
	python3 "$HERE/fake-primary.py" "$P_PORT" 2 "$@" 3>&- &
	F_PID=$!
	wait_for 10 bash -c "curl -s http://127.0.0.1:$P_PORT/v1/offset >/dev/null"
	start_replica
}

# unknown_op FORMAT: a change with op 9 in a page of FORMAT.
unknown_op() {
	fake_replica 9 "$1"
	stopped() { [ "$(code "$R_URL/health")" = 503 ]; }
	wait_for 10 stopped
	h=$(curl -s "$R_URL/health")
	assert_equal "$(field "$h" state)" stopped
	[[ $h == *"change 2 has op 9, which this build cannot apply; replication stopped"* ]]
	grep -qx 'kyro_replica_stopped 1' <(curl -s "$R_URL/metrics")
	# Not skipped: the store still ends at 1, and reads still work.
	assert_equal "$(field "$(curl -s "$R_URL/v1/offset")" offset)" 1
	assert_equal "$(curl -s "$R_URL/v1/kv/1")" v1
}

@test "replica: a change with an op it does not know stops replication, reported in /health" {
	unknown_op 2
}

@test "replica: follows a primary of the release before page format 2" {
	# That fake ignores ?format=2 and sends the page whole, header first.
	unknown_op 1
	stop R_PID
	stop F_PID
	fake_replica 1 1
	wait_for 10 caught_up_to 2
	assert_equal "$(curl -s "$R_URL/v1/kv/7")" x
}

@test "replica: a page arriving in pieces is applied, a page cut before its end record is not" {
	fake_replica 1 2 cut
	# Each try breaks off after the change: it is aborted, not committed.
	tries() { [ "$(metric kyro_replica_reconnects_total)" -ge 2 ]; }
	wait_for 10 tries
	assert_equal "$(field "$(curl -s "$R_URL/health")" applied_seq)" 1
	assert_equal "$(code "$R_URL/v1/kv/7")" 404
	stop R_PID
	stop F_PID
	# Whole, three bytes a chunk: every record is gathered from pieces.
	fake_replica 1 2
	wait_for 10 caught_up_to 2
	assert_equal "$(curl -s "$R_URL/v1/kv/7")" x
	stop R_PID
	run -0 kyro-verify -d "$R_DIR"
}

@test "replica: a primary answers a replica of the release before format 2 with format 1" {
	start_primary
	printf '1\tone\n2\ttwo\n' | kyro-put -d "$P_DIR"
	# Format 1: a 16-byte header (next 3, last 2), the changes, no end.
	curl -s -o page1 "$P_URL/v1/replicate?from=1"
	python3 - page1 <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
assert struct.unpack_from("<QQ", b, 0) == (3, 2), b[:16]
seq, last, key, n, op = struct.unpack_from("<QQQIB", b, 16)
assert (seq, last, key, n, op) == (1, 2, 1, 3, 1) and b[48:51] == b"one"
seq, last, key, n, op = struct.unpack_from("<QQQIB", b, 51)
assert (seq, last, key, n, op) == (2, 2, 2, 3, 1) and b[83:86] == b"two"
assert len(b) == 86, len(b)
PY
	# Format 2: the same changes, then the end record.
	curl -s -D hdrs -o page2 "$P_URL/v1/replicate?from=1&format=2"
	grep -qi '^X-Kyro-Page-Format: 2' hdrs
	cmp <(tail -c +17 page1) <(head -c 70 page2)
	python3 - page2 <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
assert len(b) == 102, len(b)
assert struct.unpack_from("<QQQIB3x", b, 70) == (3, 2, 0, 0, 255)
PY
	run -0 curl -s -o /dev/null -w '%{http_code}' "$P_URL/v1/replicate?from=1&format=3"
	assert_output 400
}

@test "replica: the primary's token is sent with --replica-token-file" {
	printf 's3cret\n' >token
	chmod 600 token
	start_primary --auth-token-file token
	put_auth() {
		[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer s3cret' \
			-X PUT --data-binary "$2" "$P_URL/v1/kv/$1")" = 200 ]
	}
	put_auth 1 one
	start_replica --replica-token-file token
	applied_one() { [ "$(field "$(curl -s "$R_URL/health")" applied_seq)" = 1 ]; }
	wait_for 10 applied_one
	assert_equal "$(curl -s -H 'Authorization: Bearer s3cret' "$R_URL/v1/kv/1")" one
	stop R_PID
	# Without the token the primary refuses, and /health says why.
	R_DIR="$BATS_TEST_TMPDIR/replica2"
	start_replica
	refused() { [[ $(curl -s "$R_URL/health") == *"HTTP 401"* ]]; }
	wait_for 10 refused
}

# REPLICA_CRASH_ROUNDS (default 20) sets the rounds; make
# bench-replica-crash runs 200.
@test "replica crash test: SIGKILL of the primary and the replica at random moments during writes, REPLICA_CRASH_ROUNDS rounds (20 by default)" {
	start_primary --sync=always
	start_replica
	wait_for 10 caught_up
	python3 "$HERE/writer.py" "$P_PORT" acked.log "$RANDOM" 3>&- &
	W_PID=$!
	for round in $(seq 1 "${REPLICA_CRASH_ROUNDS:-20}"); do
		# A random moment: the writer runs meanwhile.
		sleep "0.$((RANDOM % 20 + 5))"
		case $((RANDOM % 3)) in
		0) stop P_PID KILL ;;
		1) stop R_PID KILL ;;
		2) stop P_PID KILL; stop R_PID KILL ;;
		esac
		[ -n "$P_PID" ] || start_primary --sync=always
		[ -n "$R_PID" ] || start_replica
	done
	stop W_PID KILL
	wait_for 30 caught_up
	# Every acknowledged write is in the primary's feed, as acknowledged.
	kyro-get -d "$P_DIR" --changes >p.changes
	[ -s acked.log ]
	sort acked.log >acked.sorted
	sort p.changes | comm -23 acked.sorted - >missing
	[ ! -s missing ]
	# The replica holds exactly the primary's changes up to its applied
	# sequence number: no duplicate, no gap, the same values.
	same_stores
	cut -f 1 r.feed >seqs
	seq 1 "$(primary_seq)" | diff - seqs
	stop R_PID
	run -0 kyro-verify -d "$R_DIR"
}
