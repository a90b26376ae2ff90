#!/usr/bin/env bats
#
# kyro-serve's change feed: GET /v1/replay (pages, whole batches, 410
# past retention) and GET /v1/subscribe (SSE framing, resume, many
# subscribers, the shell tools' commits, heartbeats, a slow subscriber's
# bounded memory, shutdown), with auth and bad parameters.

load helpers
load serve-helpers

bats_require_minimum_version 1.5.0

setup() {
	kyro_setup
	unset KYRODB_AUTH_TOKEN KYRODB_RATE_LIMIT_RPS KYRODB_RATE_LIMIT_BURST \
		KYRODB_AUTO_SNAPSHOT_RECORDS KYRODB_LOG_LEVEL NOTIFY_SOCKET
	command -v python3 >/dev/null || skip "python3 is not installed"
}

teardown() {
	sse_teardown
	serve_teardown
}

# batch KEY...: one kyro-put batch putting vKEY at each KEY.
batch() {
	local k
	for k in "$@"; do printf '%s\tv%s\n' "$k" "$k"; done | kyro-put -d "$D"
}

# page_field EXPR: a python expression on the last answer's JSON (j).
page_field() {
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
		"$BATS_TEST_TMPDIR/body" "$1"
}

@test "kyro-serve feed: replay pages end at batch boundaries, in order, a large batch whole" {
	batch 1 2 3
	batch 4
	batch 5 6 7 8 9
	batch 10
	serve_start
	http GET '/v1/replay?limit=2'
	assert_equal "$HTTP_STATUS" 200
	# A batch of three over a limit of two comes whole.
	assert_equal "$(page_field '[c["seq"] for c in j["changes"]]')" "[1, 2, 3]"
	assert_equal "$(page_field '(j["next"], j["more"])')" "(4, True)"
	assert_equal "$(header X-Kyro-Next-Start)" 4
	http GET '/v1/replay?start=4&limit=2'
	# 4 fits; the batch of five would pass the limit: the page ends.
	assert_equal "$(page_field '[c["seq"] for c in j["changes"]]')" "[4]"
	assert_equal "$(page_field '(j["next"], j["more"])')" "(5, True)"
	http GET '/v1/replay?start=5&limit=100'
	assert_equal "$(page_field '[c["seq"] for c in j["changes"]]')" "[5, 6, 7, 8, 9, 10]"
	assert_equal "$(page_field '(j["next"], j["more"])')" "(11, False)"
	[ -z "$(header X-Kyro-Next-Start)" ]
	# ?end= inside a batch returns that batch whole, then stops.
	http GET '/v1/replay?start=2&end=5'
	assert_equal "$(page_field '[c["seq"] for c in j["changes"]]')" "[2, 3, 4, 5, 6, 7, 8, 9]"
	assert_equal "$(page_field '(j["next"], j["more"])')" "(10, False)"
	# The representation is kyro-get --changes --format=json's.
	http GET '/v1/replay?start=5&end=5'
	kyro-get -d "$D" --changes --from 5 --format=json | head -n 5 >want.jsonl
	page_field '"\n".join(json.dumps(c, separators=(",", ":")) for c in j["changes"])' >got.jsonl
	diff want.jsonl got.jsonl
	# Past the last commit: empty, nothing more.
	http GET '/v1/replay?start=50'
	expect 200 '{"changes":[],"next":50,"more":false}'
}

@test "kyro-serve feed: history older than retained is 410 with the oldest seq; kept history replays" {
	serve_start --retain 0
	batch 1 2
	batch 3
	http POST '/v1/snapshot?wait=1'
	assert_equal "$HTTP_STATUS" 200
	batch 4
	http GET '/v1/replay?start=1'
	assert_equal "$HTTP_STATUS" 410
	assert_equal "$(page_field 'j["oldest"]')" 4
	[[ "$(page_field 'j["error"]')" == *"bootstrap from a snapshot"* ]]
	http GET '/v1/subscribe?from=2'
	assert_equal "$HTTP_STATUS" 410
	assert_equal "$(page_field 'j["oldest"]')" 4
	http GET '/v1/replay?start=4'
	assert_equal "$(page_field '[c["seq"] for c in j["changes"]]')" "[4]"
	http GET /metrics
	assert_equal "$(metric kyro_feed_gone_total)" 2
	serve_stop
	# With the default retention the same history is still there.
	rm -rf "$D"
	serve_start
	batch 1 2
	batch 3
	http POST '/v1/snapshot?wait=1'
	http GET '/v1/replay?start=1'
	assert_equal "$(page_field '[c["seq"] for c in j["changes"]]')" "[1, 2, 3]"
}

@test "kyro-serve feed: SSE framing is id, data, blank line, one event per batch" {
	batch 7
	batch 8 9
	serve_start
	sse_start s.txt '/v1/subscribe?from=1' -D s.hdr
	wait_until 5 sse_has s.txt 3
	sse_teardown
	printf '%s\n' ': from 1' '' 'id: 1' \
		'data: {"first":1,"last":1,"changes":[{"seq":1,"batch_first":1,"batch_last":1,"op":"put","key":7,"value":"v7"}]}' \
		'' 'id: 3' \
		'data: {"first":2,"last":3,"changes":[{"seq":2,"batch_first":2,"batch_last":3,"op":"put","key":8,"value":"v8"},{"seq":3,"batch_first":2,"batch_last":3,"op":"put","key":9,"value":"v9"}]}' \
		'' >want.txt
	diff want.txt s.txt
	grep -qix 'content-type: text/event-stream' <(tr -d '\r' <s.hdr)
	grep -qix 'cache-control: no-cache' <(tr -d '\r' <s.hdr)
}

@test "kyro-serve feed: resume by Last-Event-ID, no gap and no duplicate; it wins over ?from=" {
	serve_start
	batch 1
	batch 2 3
	sse_start a.txt '/v1/subscribe?from=1'
	wait_until 5 sse_has a.txt 3
	sse_teardown
	batch 4
	batch 5 6
	# A reconnecting EventSource repeats its URL (?from=1).
	sse_start b.txt '/v1/subscribe?from=1' -H 'Last-Event-ID: 3'
	batch 7
	wait_until 5 sse_has b.txt 7
	sse_changes a.txt >seqs
	sse_changes b.txt >>seqs
	assert_equal "$(tr '\n' ' ' <seqs)" "1 2 3 4 5 6 7 "
}

@test "kyro-serve feed: several subscribers each receive every change in order, from HTTP and kyro-put" {
	serve_start
	local i
	for i in 1 2 3 4 5 6; do
		sse_start "s$i.txt" /v1/subscribe
	done
	wait_until 5 grep -q '^: from' s6.txt
	for i in $(seq 1 40); do
		http PUT "/v1/kv/$i" --data-binary "h$i"
		batch "$((1000 + i))" "$((2000 + i))"
	done
	http GET /v1/offset
	assert_equal "$HTTP_BODY" '{"offset":120}'
	for i in 1 2 3 4 5 6; do
		wait_until 10 sse_has "s$i.txt" 120
		assert_equal "$(sse_changes "s$i.txt" | tr '\n' ' ')" "$(seq 1 120 | tr '\n' ' ')"
	done
	grep -q '"key":1040,"value":"v1040"' s3.txt
	http GET /metrics
	assert_equal "$(metric kyro_feed_subscribers)" 6
	assert_equal "$(metric kyro_feed_changes_total)" 720
}

@test "kyro-serve feed: a batch written by kyro-put alone is delivered to a waiting subscriber" {
	serve_start
	sse_start s.txt /v1/subscribe
	wait_until 5 grep -q '^: from 1$' s.txt
	batch 5 6 7
	wait_until 5 sse_has s.txt 3
	assert_equal "$(sse_changes s.txt | tr '\n' ' ')" "1 2 3 "
}

@test "kyro-serve feed: the wait between commit rounds grows with the subscribers, 10 us each" {
	serve_start
	sse_start s1.txt /v1/subscribe
	wait_until 5 grep -q '^: from' s1.txt
	batch 1
	wait_until 5 sse_has s1.txt 1
	http GET /metrics
	assert_equal "$(metric kyro_feed_round_gap_seconds)" 0.000010
	sse_start s2.txt /v1/subscribe
	sse_start s3.txt /v1/subscribe
	wait_until 5 grep -q '^: from' s2.txt
	wait_until 5 grep -q '^: from' s3.txt
	batch 2
	wait_until 5 sse_has s3.txt 2
	http GET /metrics
	assert_equal "$(metric kyro_feed_round_gap_seconds)" 0.000030
}

@test "kyro-serve feed: a late subscriber reads the files, then joins the shared events, in order" {
	local i
	for i in 1 2 3 4 5; do batch "$i"; done
	serve_start
	sse_start s1.txt /v1/subscribe
	wait_until 5 grep -q '^: from 6$' s1.txt
	for i in $(seq 6 25); do batch "$i"; done
	# Sequence numbers 1-5 were committed before anyone subscribed, so
	# no window holds them: s2 reads them from the files.
	sse_start s2.txt '/v1/subscribe?from=1'
	for i in $(seq 26 45); do batch "$i"; done
	wait_until 10 sse_has s1.txt 45
	wait_until 10 sse_has s2.txt 45
	assert_equal "$(sse_changes s1.txt | tr '\n' ' ')" "$(seq 6 45 | tr '\n' ' ')"
	assert_equal "$(sse_changes s2.txt | tr '\n' ' ')" "$(seq 1 45 | tr '\n' ' ')"
	http GET /metrics
	assert_equal "$(metric kyro_feed_events_total)" 85
	local shared
	shared=$(metric kyro_feed_shared_events_total)
	echo "# shared events: $shared of 85" >&3
	[ "$shared" -ge 1 ] && [ "$shared" -le 80 ]
}

two_heartbeats() {
	[ "$(grep -cx ': heartbeat' s.txt)" -ge 2 ]
}

# big_batches FIRST LAST: one kyro-put batch of 16 values of 64 KiB (1
# MiB) for each I in FIRST..LAST, keys I*100+0..15.
big_batches() {
	local i
	for i in $(seq "$1" "$2"); do
		python3 -c 'import sys
for k in range(16): sys.stdout.write("%d\t%s\n" % (int(sys.argv[1]) * 100 + k, "x" * 65536))' "$i" |
			kyro-put -d "$D"
	done
}

@test "kyro-serve feed: an idle stream gets heartbeat comments" {
	serve_start --heartbeat 1
	sse_start s.txt /v1/subscribe
	wait_until 5 grep -qx ': heartbeat' s.txt
	# Only after about a second: the first comes at the heartbeat, not at once.
	http GET /metrics
	assert_equal "$(metric kyro_feed_subscribers_idle)" 1
	[ "$(metric kyro_feed_heartbeats_total)" -ge 1 ]
	wait_until 5 two_heartbeats
}

@test "kyro-serve feed: a subscriber that stops reading does not grow the daemon's memory" {
	# A socket that takes nothing for --timeout seconds is closed.
	serve_start --timeout 300
	sse_stuck_client /v1/subscribe?from=1 go slow.txt &
	SSE_PIDS+=($!)
	sse_start fast.txt /v1/subscribe?from=1
	wait_until 5 grep -q '^: from' fast.txt
	batch 0
	wait_until 5 sse_has fast.txt 1
	local before after
	before=$(rss_anon "$SERVE_PID")
	# 24 MiB of values while the slow one reads nothing; a daemon that
	# queued them for it would grow by as much.
	big_batches 1 24
	wait_until 20 sse_has fast.txt 385
	after=$(rss_anon "$SERVE_PID")
	echo "# RssAnon before ${before} kB, after ${after} kB" >&3
	[ "$((after - before))" -lt 8192 ]
	# The slow one, reading again, gets everything in order.
	touch go
	wait "${SSE_PIDS[0]}"
	sed '1,/^$/d' slow.txt >slow.sse
	assert_equal "$(sse_changes slow.sse | tr '\n' ' ')" "$(seq 1 385 | tr '\n' ' ')"
}

# small_batches FIRST LAST: one batch of one 2 KiB value for each
# sequence number FIRST..LAST, committed by one kyro-put --replay.
small_batches() {
	python3 -c 'import sys
for s in range(int(sys.argv[1]), int(sys.argv[2]) + 1):
    sys.stdout.write("put\t%d\t%d\t%s\ncommit\t%d\n" % (s, s, "y" * 2048, s))' "$1" "$2" |
		kyro-put -d "$D" --replay
}

# parked N, subscribed N: N subscribers are parked, or open.
parked() {
	http GET /metrics
	[ "$(metric kyro_feed_subscribers_idle)" = "$1" ]
}

subscribed() {
	http GET /metrics
	[ "$(metric kyro_feed_subscribers)" = "$1" ]
}

@test "kyro-serve feed: a parked subscriber whose socket fills inside a pushed chunk gets the rest, in order" {
	serve_start --timeout 300
	sse_stuck_client /v1/subscribe go slow.txt 3>&- &
	SSE_PIDS+=($!)
	wait_until 5 parked 1
	# Small batches, each in the shared window, written to the parked
	# socket a round at a time until it takes only part of a chunk.
	small_batches 1 3000
	http GET /metrics
	[ "$(metric kyro_feed_short_pushes_total)" -ge 1 ]
	[ "$(metric kyro_feed_pushes_total)" -ge 1 ]
	touch go
	wait "${SSE_PIDS[0]}"
	sed '1,/^$/d' slow.txt >slow.sse
	assert_equal "$(sse_changes slow.sse | tr '\n' ' ')" "$(seq 1 3000 | tr '\n' ' ')"
}

@test "kyro-serve feed: a parked subscriber stuck inside a pushed chunk is cut off after --timeout" {
	serve_start --timeout 2
	sse_stuck_client /v1/subscribe go slow.txt 3>&- &
	SSE_PIDS+=($!)
	sse_start fast.txt /v1/subscribe
	wait_until 5 parked 2
	small_batches 1 3000
	wait_until 10 sse_has fast.txt 3000
	http GET /metrics
	[ "$(metric kyro_feed_short_pushes_total)" -ge 1 ]
	# The stuck one goes; the one that reads stays.
	wait_until 10 subscribed 1
	wait_until 5 parked 1
	small_batches 3001 3001
	wait_until 5 sse_has fast.txt 3001
	touch go # the stuck client reads its cut stream and ends
}

@test "kyro-serve feed: an HTTP/1.0 subscriber (a proxy's default) gets the bare stream, no chunk framing" {
	serve_start
	sse_start old.txt /v1/subscribe --raw -0
	sse_start new.txt /v1/subscribe --raw
	wait_until 5 parked 2
	batch 1
	batch 2 3
	wait_until 5 sse_has old.txt 3
	wait_until 5 sse_has new.txt 3
	assert_equal "$(sse_changes old.txt | tr '\n' ' ')" "1 2 3 "
	# The HTTP/1.1 one is chunked, and was pushed to; the other not.
	grep -q $'^[0-9a-f]*\r$' new.txt
	! grep -q $'\r' old.txt
}

@test "kyro-serve feed: a parked subscriber that hung up is dropped at the next commit" {
	serve_start
	sse_start a.txt /v1/subscribe
	sse_start b.txt /v1/subscribe
	wait_until 5 parked 2
	kill "${SSE_PIDS[0]}"
	wait "${SSE_PIDS[0]}" 2>/dev/null || true
	batch 1
	batch 2
	wait_until 5 sse_has b.txt 2
	wait_until 5 subscribed 1
	wait_until 5 parked 1
}

@test "kyro-serve feed: a subscriber behind the retained history gets an expired event and the stream ends" {
	serve_start --retain 0 --timeout 300
	batch 1
	sse_stuck_client /v1/subscribe?from=1 go slow.txt &
	SSE_PIDS+=($!)
	# More than the socket buffers hold, so the subscriber's feed is
	# left behind in the first segment.
	big_batches 1 10
	http POST '/v1/snapshot?wait=1'
	# The daemon keeps the newest events in memory for subscribers that
	# caught up, but not a batch of 1 MiB: with one next, 162 is in
	# neither the files nor that window.
	big_batches 11 11
	batch 2
	http POST '/v1/snapshot?wait=1'
	batch 3
	touch go
	wait "${SSE_PIDS[0]}"
	sed '1,/^$/d' slow.txt >slow.sse
	# Everything up to the lost segment, in order, then the last event.
	sse_changes slow.sse >seqs
	assert_equal "$(head -n 1 seqs) $(tail -n 1 seqs)" "1 161"
	tail -n 3 slow.sse | cut -c 1-80 >last
	printf '%s\n' 'event: expired' \
		'data: {"error":"the history before sequence number 179 is no longer retained: bo' \
		'' >want
	diff want last
	grep -q '"oldest":179}$' slow.sse
	http GET /metrics
	assert_equal "$(metric kyro_feed_expired_total)" 1
}

@test "kyro-serve feed: SIGTERM ends every stream with a shutdown event, exit 0" {
	serve_start
	batch 1
	sse_start a.txt /v1/subscribe?from=1
	sse_start b.txt /v1/subscribe
	wait_until 5 sse_has a.txt 1
	wait_until 5 grep -q '^: from' b.txt
	serve_stop TERM
	assert_equal "$SERVE_STATUS" 0
	wait_until 5 grep -qx 'event: shutdown' a.txt
	tail -n 3 a.txt | diff <(printf '%s\n' 'event: shutdown' 'data: {"next":2}' '') -
	tail -n 3 b.txt | diff <(printf '%s\n' 'event: shutdown' 'data: {"next":2}' '') -
}

@test "kyro-serve feed: auth applies to replay and subscribe" {
	printf 'sekrit\n' >tok
	serve_start --auth-token-file tok
	http GET /v1/replay
	assert_equal "$HTTP_STATUS" 401
	http GET /v1/subscribe
	assert_equal "$HTTP_STATUS" 401
	http GET /v1/replay -H 'Authorization: Bearer sekrit'
	expect 200 '{"changes":[],"next":1,"more":false}'
	sse_start s.txt /v1/subscribe -H 'Authorization: Bearer sekrit'
	wait_until 5 grep -qx ': from 1' s.txt
}

@test "kyro-serve feed: bad parameters are 400; over --max-subscribers is 503" {
	serve_start --max-subscribers 1
	local q
	for q in 'replay?limit=0' 'replay?limit=x' 'replay?start=5&end=4' \
		'replay?start=1&start=2' 'replay?end=-1' 'replay?limit=100001' \
		'subscribe?from=abc' 'subscribe?from=1&from=2' 'subscribe?from=1x'; do
		http GET "/v1/$q"
		assert_equal "$q $HTTP_STATUS" "$q 400"
	done
	http GET /v1/subscribe -H 'Last-Event-ID: twelve'
	assert_equal "$HTTP_STATUS" 400
	sse_start s.txt /v1/subscribe
	wait_until 5 grep -q '^: from' s.txt
	http GET /v1/subscribe
	assert_equal "$HTTP_STATUS" 503
	http GET /metrics
	assert_equal "$(metric kyro_feed_refused_total)" 1
	run -2 --separate-stderr kyro-serve --retain 12q
	stderr_starts_with "kyro-serve: invalid --retain '12q'"
	run -2 --separate-stderr kyro-serve --heartbeat 0
	stderr_starts_with "kyro-serve: invalid --heartbeat '0'"
}
