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
step 'kyro-put --delete 14 && kyro-get --range 0 35'
step 'seq 7 7 35 | kyro-get -f tsv || echo "exit status $? (14 was deleted)"'
step 'kyro-verify -v'
step 'ls -l "$KYRODB_DIR"'
step 'kyro-get --all -f tsv | kyro-put -d demo-data.copy'
step 'kyro-get --all -f tsv | cksum; kyro-get -d demo-data.copy --all -f tsv | cksum'
rm -rf demo-data.copy
printf '\nDone.  Try: KYRODB_DIR=%s kyro-get --all | head\n' "$KYRODB_DIR"
