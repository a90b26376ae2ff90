# serve-helpers.bash - start and stop kyro-serve in bats tests, and talk
# to it with curl.
#
# Load after helpers (`load helpers; load serve-helpers`).  serve_start
# picks a free loopback port, starts the daemon in the background with fd
# 3 closed (bats waits on fd 3), and polls /health for at most 5 s.
# serve_teardown (called by the teardown below) kills it and waits, so no
# test leaves a daemon behind.

SERVE_PID=
SERVE_LOG=

# A loopback port nobody listens on (a connect that fails); the daemon
# may still lose a race for it, which serve_start retries.
free_port() {
	local p i lo=32768 hi=60999
	# Outside the kernel's ephemeral range: a port there can be taken as
	# the local end of any outgoing connection while a test's daemon is
	# down between a kill and its restart on the same port.
	read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	for i in $(seq 1 50); do
		if [ "$lo" -gt 12000 ]; then
			p=$((10000 + RANDOM % (lo - 10000)))
		else
			p=$((hi + 1 + RANDOM % (65535 - hi)))
		fi
		if ! (exec 9<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# serve_start [OPTION...]: start kyro-serve on $D; sets PORT, URL,
# SERVE_PID; the daemon's stderr goes to $SERVE_LOG.
serve_start() {
	local try i code
	SERVE_LOG="$BATS_TEST_TMPDIR/serve.log"
	for try in 1 2 3 4 5; do
		PORT=$(free_port) || return 1
		URL="http://127.0.0.1:$PORT"
		# SERVE_WRAP runs the daemon under a wrapper that execs it
		# (fiu-run -x), so SERVE_PID is still the daemon's.
		${SERVE_WRAP:-} kyro-serve -d "$D" -l "127.0.0.1:$PORT" "$@" 2>>"$SERVE_LOG" 3>&- &
		SERVE_PID=$!
		for i in $(seq 1 100); do
			# Not yet listening is curl's status 7, which errexit
			# (bats runs tests under set -e) would make fatal.
			code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/health" 2>/dev/null) || true
			[ "$code" = 200 ] && return 0
			kill -0 "$SERVE_PID" 2>/dev/null || break
			sleep 0.05
		done
		# The daemon may be gone already (it lost the port): under
		# errexit a failed kill would end serve_start with no retry.
		kill -KILL "$SERVE_PID" 2>/dev/null || true
		wait "$SERVE_PID" 2>/dev/null || true
		SERVE_PID=
	done
	echo "kyro-serve did not become ready; its log:" >&2
	cat "$SERVE_LOG" >&2
	return 1
}

# serve_stop [SIGNAL]: signal the daemon (default TERM) and wait; sets
# SERVE_STATUS to its exit status.
serve_stop() {
	SERVE_STATUS=
	[ -n "$SERVE_PID" ] || return 0
	kill "-${1:-TERM}" "$SERVE_PID" 2>/dev/null
	SERVE_STATUS=0
	wait "$SERVE_PID" 2>/dev/null || SERVE_STATUS=$?
	SERVE_PID=
}

serve_teardown() {
	if [ -n "$SERVE_PID" ]; then
		kill -KILL "$SERVE_PID" 2>/dev/null
		wait "$SERVE_PID" 2>/dev/null
		SERVE_PID=
	fi
}

# http METHOD PATH [CURL-ARG...]: one request; sets HTTP_STATUS, HTTP_BODY
# (the body as text; the bytes are in $BATS_TEST_TMPDIR/body) and
# HTTP_HEADERS (CRs removed).
http() {
	local m=$1 p=$2
	shift 2
	HTTP_STATUS=$(curl -s -X "$m" -o "$BATS_TEST_TMPDIR/body" \
		-D "$BATS_TEST_TMPDIR/headers" -w '%{http_code}' "$@" "$URL$p")
	HTTP_BODY=$(cat "$BATS_TEST_TMPDIR/body")
	HTTP_HEADERS=$(tr -d '\r' <"$BATS_TEST_TMPDIR/headers")
}

# header NAME: the value of header NAME in the last answer.
header() {
	grep -i "^$1:" <<<"$HTTP_HEADERS" | head -n 1 | sed 's/^[^:]*: *//'
}

# expect STATUS BODY: the last answer had exactly this status and body.
expect() {
	assert_equal "$HTTP_STATUS $HTTP_BODY" "$1 $2"
}

# put_json KEY VALUE_JSON: POST /v1/put; must answer 200.
put_json() {
	http POST /v1/put --data-binary "{\"key\":$1,\"value\":$2}"
	assert_equal "$HTTP_STATUS" 200
}

# raw_request FILE: send FILE's bytes on a fresh connection and print
# what comes back within 2 s (for requests curl cannot send).
raw_request() {
	local f=$1
	(
		exec 5<>"/dev/tcp/127.0.0.1/$PORT" || exit 1
		cat "$f" >&5 2>/dev/null
		timeout 2 cat <&5 2>/dev/null
	) || true
}

# raw FORMAT [ARG...]: send printf FORMAT's bytes on a fresh connection
# (for requests curl will not send); sets RAW to the answer, CRs removed,
# RAW_STATUS to the status of its first response and RAW_COUNT to the
# number of responses (a request smuggled behind another is a second one).
raw() {
	local f="$BATS_TEST_TMPDIR/raw.req"
	# shellcheck disable=SC2059 # the format is the request
	printf "$@" >"$f"
	RAW=$(raw_request "$f" | tr -d '\r')
	RAW_STATUS=$(sed -n '1s/^HTTP\/1\.[01] \([0-9]*\).*/\1/p' <<<"$RAW")
	RAW_COUNT=$(grep -c '^HTTP/1\.[01] [0-9]' <<<"$RAW" || true)
}

# metric NAME: the value of the sample NAME (no labels) in HTTP_BODY.
metric() {
	sed -n "s/^$1 //p" <<<"$HTTP_BODY"
}

# ---- the change feed (86-serve-feed.bats) ----

SSE_PIDS=()

# wait_until SECONDS COMMAND...: run COMMAND every 20 ms until it
# succeeds; fails (status 1) when SECONDS pass first.
wait_until() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -le "$end" ] || return 1
		sleep 0.02
	done
}

# sse_start FILE PATH [CURL-ARG...]: subscribe in the background, the
# stream into FILE; sse_teardown ends every such client.
sse_start() {
	local f=$1 p=$2
	shift 2
	curl -sN "$@" "$URL$p" >"$f" 2>/dev/null 3>&- &
	SSE_PIDS+=($!)
}

sse_teardown() {
	local p
	for p in "${SSE_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	SSE_PIDS=()
}

# sse_has FILE ID: FILE holds a complete event with id ID.
sse_has() {
	grep -qx "id: $2" "$1" 2>/dev/null &&
		awk -v id="id: $2" '$0 == id { on = 1 } on && $0 == "" { ok = 1 }
			END { exit !ok }' "$1"
}

# sse_changes FILE: the sequence numbers of the changes in the SSE stream
# FILE, one a line, in the order received; fails when an event is not
# framed as the API says (id: the batch's last seq, one data: line of a
# whole batch, a blank line after) or the changes do not follow each
# other.  An unterminated last event, or a last control event, is left
# out.
sse_changes() {
	python3 - "$1" <<'PY'
import json, sys
text = open(sys.argv[1], encoding="utf-8").read()
blocks = text.split("\n\n")[:-1]
prev = None
for b in blocks:
    lines = b.split("\n")
    fields = [l for l in lines if not l.startswith(":")]
    if not fields:
        continue
    kv = [l.split(": ", 1) for l in fields]
    names = [k[0] for k in kv]
    if names == ["event", "data"] and b is blocks[-1]:
        break  # a stream's last event (expired, error, shutdown)
    if names != ["id", "data"]:
        sys.exit("unexpected fields %r" % names)
    eid, data = int(kv[0][1]), json.loads(kv[1][1])
    ch = data["changes"]
    if eid != data["last"] or ch[-1]["seq"] != eid:
        sys.exit("id %d is not the batch's last" % eid)
    if prev is None and ch[0]["seq"] != data["first"]:
        pass  # a subscription that starts inside a batch
    elif ch[0]["seq"] != data["first"]:
        sys.exit("batch %d split" % eid)
    for c in ch:
        if c["batch_first"] != data["first"] or c["batch_last"] != eid:
            sys.exit("change %d names another batch" % c["seq"])
        if prev is not None and c["seq"] != prev + 1:
            sys.exit("change %d after %d" % (c["seq"], prev))
        prev = c["seq"]
        print(c["seq"])
PY
}

# sse_stuck_client PATH GOFILE OUT [HEADER...]: subscribe with a small
# receive buffer and read nothing (a slow subscriber) until GOFILE
# exists (60 s at most), then read until the stream ends or 30 s pass;
# OUT gets the status line and headers, a blank line, and the body
# unchunked.  Run it in the background; it prints nothing.
sse_stuck_client() {
	python3 - "$PORT" "$@" <<'PY'
import os, socket, sys, time
port, path, go, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
hdrs = "".join(h + "\r\n" for h in sys.argv[5:])
s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, hdrs)).encode())
# Bounded: a test that never says go (or fails first) leaves no client.
give_up = time.time() + 60
while not os.path.exists(go) and time.time() < give_up:
    time.sleep(0.02)
s.settimeout(5)
end = time.time() + 30
parts = []
while time.time() < end:
    try:
        b = s.recv(65536)
    except socket.timeout:
        break
    if not b:
        break
    parts.append(b)
raw = b"".join(parts)
# The status line and headers, then the body's chunks, unframed.
head, _, rest = raw.partition(b"\r\n\r\n")
body, at = [], 0
while True:
    eol = rest.find(b"\r\n", at)
    n = int(rest[at:eol], 16) if eol > at else 0
    if not n:
        break
    body.append(rest[eol + 2:eol + 2 + n])
    at = eol + 4 + n
with open(out, "wb") as f:
    f.write(head + b"\n\n" + b"".join(body))
PY
}

# rss_anon PID: the process's anonymous resident memory, in KiB.
rss_anon() {
	sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"
}
