#!/bin/sh
# make demo: load a sample data set, snapshot it, read it back, and show
# what each step did.  Everything happens in ./demo-data (recreated).
set -eu
cd "$(dirname "$0")/.."
PATH="$PWD/bin:$PATH"
export KYRODB_DIR="$PWD/demo-data"
rm -rf "$KYRODB_DIR" demo-data.copy

# Each step shows the command, then runs exactly that text.
step() {
	if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
		printf '\n\033[1m$ %s\033[0m\n' "$1"
	else
		printf '\n$ %s\n' "$1"
	fi
	eval "$1"
}

echo "KyroDB demo: data directory $KYRODB_DIR (set by KYRODB_DIR)"
step 'seq 1 100000 | awk '\''{ printf "%d\tuser-%d\\tscore=%d\n", $1 * 7, $1, ($1 * 7919) % 1000 }'\'' | kyro-put -v'
step 'kyro-get 7 70 700'
step 'kyro-get -f tsv 7 8 || echo "exit status $? (key 8 is absent)"'
step 'kyro-put --print-offset 8 "a value with spaces"'
step 'printf '\''9\thello\\0world\\xff\n'\'' | kyro-put && kyro-get -f json 9 8'
step 'kyro-snapshot -v'
step 'kyro-rmi-build -v && kyro-warmup -v'
step 'kyro-put --delete 14 && kyro-get --range 0 35'
step 'seq 7 7 35 | kyro-get -f tsv || echo "exit status $? (14 was deleted)"'
step 'kyro-verify -v'
step 'ls -l "$KYRODB_DIR"'
step 'kyro-get --all -f tsv | kyro-put -d demo-data.copy'
step 'kyro-get --all -f tsv | cksum; kyro-get -d demo-data.copy --all -f tsv | cksum'
rm -rf demo-data.copy
printf '\nDone.  Try: KYRODB_DIR=%s kyro-get --all | head\n' "$KYRODB_DIR"

# The same store over HTTP: kyro-serve on 127.0.0.1:3030, curl calls, stop.
echo
echo "kyro-serve: the same store over HTTP on 127.0.0.1:3030 (docs/API.md)"
KYRODB_DISABLE_HTTP_LOG=1 kyro-serve -l 127.0.0.1:3030 2>demo-serve.log &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null' EXIT
i=0
until curl -sf -o /dev/null http://127.0.0.1:3030/health; do
	i=$((i + 1))
	if [ "$i" -gt 100 ] || ! kill -0 "$serve_pid" 2>/dev/null; then
		echo "kyro-serve did not start (is port 3030 taken?):" >&2
		cat demo-serve.log >&2
		exit 1
	fi
	sleep 0.05
done
K=127.0.0.1:3030
step 'curl -s -d '\''{"key":123,"value":"over http"}'\'' $K/v1/put'
step 'curl -s "$K/v1/lookup?key=123"'
step 'curl -s $K/v1/get_fast/70; echo'
step 'curl -s $K/v1/lookup_fast/123 | od -An -tu8'
step 'curl -s "$K/v1/range?start=0&end=30&limit=3"'
step 'curl -s $K/v1/offset'
step 'curl -s $K/health'
step 'curl -s $K/metrics | grep -E "^kyro_(http_requests_total|group_commit_size_count|lookups_total)"'
step 'kill -TERM $serve_pid && wait $serve_pid && echo "kyro-serve stopped, exit status $?"'
trap - EXIT
rm -f demo-serve.log
