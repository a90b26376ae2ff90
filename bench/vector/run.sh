#!/usr/bin/env bash
# bench/vector/run.sh - the vector index against hnswlib and FAISS: recall
# against queries per second, build time and memory, file size,
# open-to-first-answer, and exact search against FAISS IndexFlatL2.
#
# Data sets (bench/vector/data.py): "fashion", Fashion-MNIST from Debian's
# dataset-fashion-mnist (60,000 base vectors, 10,000 queries, 784
# dimensions, L2), and "clustered", generated and seeded (VEC_N vectors of
# 128 dimensions in 1,000 clusters, VEC_NQ queries).  Ground truth: the
# 10 nearest by KyroDB's exact search (computed on 2 threads, not timed).
#
# Every system runs on one thread, with the same M and efConstruction,
# one after the other in this run: KyroDB (bench/vector/vecbench.c, over
# libkyro's index: searched straight from its file's mapping, "kyro-mmap",
# twice: "kyro-mmap" with the page cache as the build's writes left it,
# in 4 KiB folios, and "kyro-mmap-reread" after dropping the file's pages
# so that the searches fault it back in from disk, in 2 MiB folios mapped
# as huge pages where the kernel and file system do so; and after
# kyro__hnsw_pin(), "kyro-pinned"), hnswlib (Debian's
# libhnswlib-dev headers, bench/vector/hnswlib_peer.cpp, g++ -O3
# -march=native) and FAISS IndexHNSWFlat (python3-faiss, one OpenMP
# thread, the queries in one call).  Each sweep starts with a warm-up pass
# over the queries at the largest ef.  Queries per second are given by the
# wall clock (qps) and by the thread's CPU time (qps_cpu): on a shared
# machine the second is the one other processes disturb least.
#
# Output in bench/results/ (VEC_APPEND=1 adds to the files of an earlier
# run instead of starting them afresh): vector.csv (set,system,ef,recall,qps,qps_cpu),
# vector-summary.csv (set,system,figure,value), vector-SET.png,
# vector-meta.txt (machine, load at each step).  Open-to-first-answer is
# timed with the file in the page cache and after dropping only that
# file's pages from it (posix_fadvise), against hnswlib's loadIndex.
# Environment: VEC_SETS ("fashion clustered"), VEC_M (16), VEC_EFC (200),
# VEC_EFS ("10 16 24 32 48 64 128 256"), VEC_N (1000000), VEC_NQ
# (10000), VEC_EXACT_NQ (300: queries timed by exact search), VEC_FAISS
# (the sets FAISS IndexHNSWFlat is built for: "fashion clustered"; its
# single-threaded build of the 1M set takes the longest), VEC_DATA
# (bench/data/vector; the 1M set takes about 1.5 GB there, and the
# indexes as much again).
# Needs: build/libkyro.a (make all), g++, libhnswlib-dev, /usr/bin/python3
# with numpy and faiss (python3-faiss), dataset-fashion-mnist, gnuplot.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SETS=${VEC_SETS:-fashion clustered}
M=${VEC_M:-16}
EFC=${VEC_EFC:-200}
EFS=${VEC_EFS:-10 16 24 32 48 64 128 256}
N=${VEC_N:-1000000}
NQ=${VEC_NQ:-10000}
EXACT_NQ=${VEC_EXACT_NQ:-300}
FAISS_SETS=${VEC_FAISS-fashion clustered}
DATA=${VEC_DATA:-$ROOT/bench/data/vector}
RES=$ROOT/bench/results
PY=/usr/bin/python3
HERE=$ROOT/bench/vector

say() { printf 'vector: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }
for t in g++ gnuplot "$PY"; do
	command -v "$t" >/dev/null || die "$t not found"
done
[ -f "$ROOT/build/libkyro.a" ] || die "build/libkyro.a missing: run 'make all' first"
[ -f /usr/include/hnswlib/hnswlib.h ] || die "hnswlib headers missing: apt-get install libhnswlib-dev"
"$PY" -c 'import faiss, numpy' 2>/dev/null || die "$PY cannot import faiss: apt-get install python3-faiss"
mkdir -p "$DATA" "$RES"

cc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -I"$ROOT/libkyro" \
	-o "$DATA/vecbench" "$HERE/vecbench.c" "$ROOT/build/libkyro.a" \
	-l:libcpu_features.a -lxxhash -lm -pthread
g++ -O3 -march=native -o "$DATA/hnswlib_peer" "$HERE/hnswlib_peer.cpp"

. "$ROOT/bench/machine.sh"
META=$RES/vector-meta.txt
CSV=$RES/vector.csv
SUM=$RES/vector-summary.csv
if [ "${VEC_APPEND:-0}" != 1 ]; then
	: >"$META"
	echo "set,system,ef,recall,qps,qps_cpu" >"$CSV"
	echo "set,system,figure,value" >"$SUM"
fi
{
	machine_lines "$DATA"
	echo "M: $M; efConstruction: $EFC; ef: $EFS; clustered: $N x 128, $NQ queries"
	load_line start
} >>"$META"

# "a=1 b=2" lines of a tool into summary rows SET,SYSTEM,a,1 ...
summary() {
	local set=$1 sys=$2
	tr ' ' '\n' | grep = | sed "s/^/$set,$sys,/; s/=/,/" >>"$SUM"
}

# "ef=.. recall=.. qps=.. qps_cpu=.." lines into curve rows.
curve() {
	local set=$1 sys=$2
	grep '^ef=' | sed -E "s/^ef=([^ ]*) recall=([^ ]*) qps=([^ ]*) qps_cpu=([^ ]*).*/$set,$sys,\1,\2,\3,\4/" >>"$CSV"
}

# Run a command, its output shown on stderr and kept in $DATA/out.txt
# (tee /dev/stderr would truncate a log that stderr is redirected to).
keep() {
	"$@" >"$DATA/out.txt"
	cat "$DATA/out.txt" >&2
}

step() {
	say "$*"
	load_line "$*" >>"$META"
}

run_set() {
	local set=$1 base q gt
	base=$DATA/$set-base.fvecs q=$DATA/$set-query.fvecs gt=$DATA/$set-gt.ivecs
	if [ ! -f "$base" ] || [ ! -f "$q" ]; then
		step "$set: making the data"
		if [ "$set" = fashion ]; then
			"$PY" "$HERE/data.py" fashion "$DATA"
		else
			"$PY" "$HERE/data.py" clustered "$DATA" "$N" 128 "$NQ" 42
		fi
		rm -f "$gt"
	fi
	if [ ! -f "$gt" ]; then
		step "$set: ground truth by exact search"
		"$DATA/vecbench" gt "$base" "$q" 10 "$gt" 2
	fi

	step "$set: kyro build"
	keep "$DATA/vecbench" build "$base" "$M" "$EFC" "$DATA/$set-kyro.idx"
	summary "$set" kyro <"$DATA/out.txt"
	step "$set: hnswlib build"
	keep "$DATA/hnswlib_peer" build "$base" "$M" "$EFC" "$DATA/$set-hnswlib.bin"
	summary "$set" hnswlib <"$DATA/out.txt"

	step "$set: kyro open to first answer"
	for i in 1 2 3 4 5; do
		"$DATA/vecbench" open "$DATA/$set-kyro.idx" "$q"
	done >"$DATA/out.txt"
	cat "$DATA/out.txt" >&2
	sort -t= -k2 -n "$DATA/out.txt" | sed -n 3p | summary "$set" kyro-open-median-of-5
	step "$set: kyro open to first answer, the file out of the page cache"
	for i in 1 2 3; do
		"$DATA/vecbench" open-cold "$DATA/$set-kyro.idx" "$q"
	done >"$DATA/out.txt"
	cat "$DATA/out.txt" >&2
	sort -t= -k2 -n "$DATA/out.txt" | sed -n 2p | summary "$set" kyro-open-cold-median-of-3

	step "$set: kyro search from the mapping, page cache as the build left it"
	# shellcheck disable=SC2086
	keep "$DATA/vecbench" search "$DATA/$set-kyro.idx" "$q" "$gt" 10 $EFS
	curve "$set" kyro-mmap <"$DATA/out.txt"
	step "$set: kyro search from the mapping, the file read back from disk"
	# shellcheck disable=SC2086
	keep env VECBENCH_EVICT=1 "$DATA/vecbench" search "$DATA/$set-kyro.idx" "$q" "$gt" 10 $EFS
	curve "$set" kyro-mmap-reread <"$DATA/out.txt"
	step "$set: kyro search pinned"
	# shellcheck disable=SC2086
	keep env VECBENCH_PIN=1 "$DATA/vecbench" search "$DATA/$set-kyro.idx" "$q" "$gt" 10 $EFS
	curve "$set" kyro-pinned <"$DATA/out.txt"
	step "$set: hnswlib search"
	# shellcheck disable=SC2086
	keep "$DATA/hnswlib_peer" search "$DATA/$set-hnswlib.bin" "$base" "$q" "$gt" 10 $EFS
	curve "$set" hnswlib <"$DATA/out.txt"
	grep -v '^ef=' "$DATA/out.txt" | summary "$set" hnswlib
	step "$set: hnswlib load, the file out of the page cache"
	keep env HNSWLIB_COLD=1 "$DATA/hnswlib_peer" search "$DATA/$set-hnswlib.bin" "$base" "$q" "$gt" 10 64
	grep -v '^ef=' "$DATA/out.txt" | summary "$set" hnswlib-cold
	rm -f "$DATA/$set-hnswlib.bin"

	step "$set: exact search, $EXACT_NQ queries"
	keep "$DATA/vecbench" exact "$base" "$q" "$gt" 10 "$EXACT_NQ"
	summary "$set" kyro-exact <"$DATA/out.txt"
	keep "$PY" "$HERE/faiss_peer.py" flat "$base" "$q" "$gt" 10 "$EXACT_NQ"
	summary "$set" faiss-flat <"$DATA/out.txt"

	case " $FAISS_SETS " in
	*" $set "*)
		step "$set: faiss hnsw build and search"
		# shellcheck disable=SC2086
		keep "$PY" "$HERE/faiss_peer.py" hnsw "$base" "$q" "$gt" 10 "$M" "$EFC" $EFS
		curve "$set" faiss-hnsw <"$DATA/out.txt"
		grep -v '^ef=' "$DATA/out.txt" | summary "$set" faiss-hnsw
		;;
	*) step "$set: faiss hnsw skipped (VEC_FAISS)" ;;
	esac

	awk -F, -v s="$set" '$1 == s && $2 != "system" { print $2, $4, $6 }' "$CSV" >"$DATA/$set-plot.dat"
	gnuplot -e "data='$DATA/$set-plot.dat'; out='$RES/vector-$set.png'; name='$set: recall@10 vs queries/s (CPU time), M=$M, efC=$EFC'" "$HERE/plot.gp"
	rm -f "$DATA/$set-kyro.idx"
}

for set in $SETS; do
	run_set "$set"
done
load_line end >>"$META"
say "results in $CSV, $SUM, $RES/vector-*.png"
