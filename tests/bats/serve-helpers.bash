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
	local p i
	for i in $(seq 1 50); do
		p=$((20000 + RANDOM % 40000))
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
		kill -KILL "$SERVE_PID" 2>/dev/null
		wait "$SERVE_PID" 2>/dev/null
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
