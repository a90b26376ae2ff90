#!/usr/bin/env bash
# bench/open/run.sh - what opening a store costs as it grows: kyro-get of
# one key against LMDB's lmdb_get of one key, on stores of the same keys.
#
# For each N in OPEN_NS: N records (bench/store's gen, seed 42: random u64
# keys, 16-byte values) loaded into a kyro store (kyro-put, then
# kyro-snapshot --rmi) and into an LMDB store (lmdb_load); then, in one
# hyperfine run per N (commands interleaved by hyperfine's order, warm
# cache), kyro-get -d STORE KEY and lmdb_get STORE KEY, and with
# OPEN_BEFORE=DIR the kyro-get of DIR on a copy of the store whose index
# that build wrote (hard links to the same snapshot files).
#
# Output: bench/results/open.csv (n,system,median_s,mean_s,min_s,user_s,
# sys_s), open.png, open-meta.txt (machine, load).
# Environment: OPEN_NS ("200000 1000000 10000000 100000000"), OPEN_RUNS
# (100), OPEN_DATA (bench/data/open), OPEN_BEFORE (unset), OPEN_KEEP (0:
# the stores are removed at the end; 1 keeps them for another run).
# Needs bin/ built (make all), cc, liblmdb-dev, hyperfine, jq, gnuplot.
# 100M keys take about 3 GB (kyro) + 5 GB (LMDB) of disk and as much page
# cache.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NS=${OPEN_NS:-200000 1000000 10000000 100000000}
RUNS=${OPEN_RUNS:-100}
DATA=${OPEN_DATA:-$ROOT/bench/data/open}
BEFORE=${OPEN_BEFORE:-}
KEEP=${OPEN_KEEP:-0}
RES=$ROOT/bench/results
HBIN=$DATA/bin

say() { printf 'open: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }
for t in cc hyperfine jq gnuplot; do
	command -v "$t" >/dev/null || die "$t not found"
done
[ -f "$ROOT/build/libkyro.a" ] || die "build/libkyro.a missing: run 'make all' first"
mkdir -p "$HBIN" "$RES"
cp "$ROOT/bin/kyro-put" "$ROOT/bin/kyro-snapshot" "$ROOT/bin/kyro-get" \
	"$ROOT/bin/kyro-rmi-build" "$HBIN/"
[ -z "$BEFORE" ] || cp "$BEFORE/kyro-get" "$HBIN/kyro-get-before"
[ -z "$BEFORE" ] || cp "$BEFORE/kyro-rmi-build" "$HBIN/kyro-rmi-build-before"
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$HBIN/gen" "$ROOT/bench/store/gen.c"
# The peers link as the tools do (docs/DECISIONS.md): each process maps
# its engine's library and libc, nothing more.
for p in lmdb_load lmdb_get; do
	cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -I"$ROOT/cmd" -I"$ROOT/libkyro" \
		-o "$HBIN/$p" "$ROOT/bench/store/$p.c" "$ROOT/cmd/cli.c" \
		"$ROOT/build/libkyro.a" -Wl,--as-needed -llmdb -l:libcpu_features.a -l:libxxhash.a -lm
done

META=$RES/open-meta.txt
CSV=$RES/open.csv
. "$ROOT/bench/machine.sh"
{
	machine_lines "$DATA"
	echo "before: ${BEFORE:-none}; runs: $RUNS"
	load_line start
} >"$META"
echo "n,system,median_s,mean_s,min_s,user_s,sys_s" >"$CSV"

# The key looked up: the first the generator draws, present at every N.
KEY=$("$HBIN/gen" 1 42 /dev/stdout | cut -f1)
for n in $NS; do
	K=$DATA/kyro-$n.db L=$DATA/lmdb-$n.db
	if [ ! -s "$K/MANIFEST" ] || [ ! -s "$L/data.mdb" ]; then
		say "building the stores of $n keys"
		rm -rf "$K" "$L"
		"$HBIN/gen" "$n" 42 /dev/stdout | "$HBIN/kyro-put" -d "$K" --sync=batch
		"$HBIN/kyro-snapshot" -d "$K" --rmi
		"$HBIN/gen" "$n" 42 /dev/stdout | "$HBIN/lmdb_load" "$L"
	fi
	cmds=(-n "$n,kyro" "$HBIN/kyro-get -d $K $KEY" -n "$n,lmdb" "$HBIN/lmdb_get $L $KEY")
	if [ -n "$BEFORE" ]; then
		# The same snapshot files, with the index the old build writes.
		B=$DATA/kyro-$n-before.db
		rm -rf "$B" && mkdir "$B"
		ln "$K"/snap-* "$B/" && cp "$K"/MANIFEST "$K"/wal-* "$B/"
		"$HBIN/kyro-rmi-build-before" -d "$B"
		cmds+=(-n "$n,before" "$HBIN/kyro-get-before -d $B $KEY")
	fi
	for c in "$HBIN/kyro-get -d $K $KEY" "$HBIN/lmdb_get $L $KEY"; do
		[ -z "$($c 2>&1 >/dev/null)" ] || die "$c: $($c 2>&1 >/dev/null)"
	done
	say "measuring $n keys"
	hyperfine -N --style none --warmup 20 --runs "$RUNS" \
		--export-json "$DATA/open-$n.json" "${cmds[@]}" >&2
	jq -r '.results[] | "\(.command),\(.median),\(.mean),\(.min),\(.user),\(.system)"' \
		"$DATA/open-$n.json" >>"$CSV"
	echo "after $n: load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$META"
	[ "$KEEP" = 1 ] || rm -rf "$K" "$L" "$DATA/kyro-$n-before.db"
done

awk -F, 'NR > 1 {print $1, $2, $3 * 1000}' "$CSV" >"$DATA/open-plot.dat"
gnuplot -e "data='$DATA/open-plot.dat'; out='$RES/open.png'" "$ROOT/bench/open/plot.gp"
column -s, -t "$CSV" >&2
