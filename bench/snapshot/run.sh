#!/usr/bin/env bash
# bench/snapshot/run.sh - kyro-snapshot against the time the disk takes to
# write as many bytes, in one run.
#
# For each N in SNAP_NS: N records (bench/store's gen: random u64 keys,
# 16-byte values) loaded once with kyro-put --sync=batch into a base store;
# then SNAP_RUNS rounds, each of which, variant by variant (interleaved, so
# a neighbour on the machine slows all alike), copies the base store
# (cp -a, then sync: the copy is not timed) and times one of
#   plain       kyro-snapshot -d COPY          (the binaries measured)
#   rmi         kyro-snapshot -d COPY --rmi    (with the learned index)
#   before_*    the same with SNAP_BEFORE's binaries, when given
#   dd          dd if=/dev/zero bs=1M conv=fsync of as many bytes as the
#               snapshot's two files, on the same file system: the floor
# Every store is warm (just copied), as after a day of writes.
#
# Output: bench/results/snapshot.csv (n,variant,run,wall,user,sys,keys_per_s),
# snapshot-summary.md (medians, rates, ratios to dd and to before),
# snapshot.png, snapshot-meta.txt (machine, load).
#
# Environment: SNAP_NS ("10000000 100000000"), SNAP_RUNS (3), SNAP_SEED (42),
# SNAP_DATA (bench/data), SNAP_BIN (bin/), SNAP_BEFORE (a directory with
# other kyro-put/kyro-snapshot binaries to compare, e.g. main's; unset: none).
# Needs bin/kyro-* built (make all), cc, gnuplot; about 50 bytes of disk
# per record three times over (base, copy, snapshot) and about 52 bytes
# of memory per record.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/snapshot
NS=${SNAP_NS:-10000000 100000000}
RUNS=${SNAP_RUNS:-3}
SEED=${SNAP_SEED:-42}
DATA=${SNAP_DATA:-$ROOT/bench/data}
BEFORE=${SNAP_BEFORE:-}
RES=$ROOT/bench/results
HBIN=$DATA/bin
KBIN=$HBIN/snap-after
BBIN=$HBIN/snap-before

say() { printf 'snapshot: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

SRCBIN=${SNAP_BIN:-$ROOT/bin}
for t in kyro-put kyro-snapshot; do
	[ -x "$SRCBIN/$t" ] || die "$SRCBIN/$t missing: run 'make all' first"
	[ -z "$BEFORE" ] || [ -x "$BEFORE/$t" ] || die "$BEFORE/$t missing"
done
for t in cc gnuplot; do
	command -v "$t" >/dev/null || die "$t not found"
done
mkdir -p "$DATA" "$HBIN" "$KBIN" "$RES"
# Measure private copies: others may rebuild bin/ while this runs.
cp "$SRCBIN/kyro-put" "$SRCBIN/kyro-snapshot" "$KBIN/"
VARIANTS="plain rmi"
if [ -n "$BEFORE" ]; then
	mkdir -p "$BBIN"
	cp "$BEFORE/kyro-put" "$BEFORE/kyro-snapshot" "$BBIN/"
	VARIANTS="before_plain before_rmi plain rmi"
fi
for p in gen timeit; do
	cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$HBIN/$p" "$ROOT/bench/store/$p.c"
done

CSV=$RES/snapshot.csv
META=$RES/snapshot-meta.txt
T=$DATA/timeit.last
. "$ROOT/bench/machine.sh"
{
	machine_lines "$DATA"
	echo "binaries: $(cd "$KBIN" && sha256sum kyro-snapshot | awk '{printf "%.12s", $1}') from $SRCBIN"
	[ -z "$BEFORE" ] || echo "before: $(cd "$BBIN" && sha256sum kyro-snapshot | awk '{printf "%.12s", $1}') from $BEFORE"
	echo "NS=$NS RUNS=$RUNS SEED=$SEED"
	load_line start
} >"$META"
echo "n,variant,run,wall,user,sys,keys_per_s" >"$CSV"

# timed N VARIANT RUN CMD...: run CMD under timeit and record it.
timed() {
	local n=$1 v=$2 run=$3
	shift 3
	: >"$T"
	"$HBIN/timeit" "$T" "$@" || die "$v run $run at $n failed: $*"
	local wall user sys
	read -r wall user sys _ <"$T"
	awk -v n="$n" -v v="$v" -v r="$run" -v w="$wall" -v u="$user" -v s="$sys" \
		'BEGIN {printf "%d,%s,%d,%.6f,%.6f,%.6f,%.1f\n", n, v, r, w, u, s, n / w}' >>"$CSV"
	say "$(printf '%-10s %-13s run %d: %8.3f s  (user %.2f, sys %.2f)' "$n" "$v" "$run" "$wall" "$user" "$sys")"
}

# fresh: a copy of the base store to snapshot, its pages written and
# synced so that the snapshot's fsyncs do not flush the copy.
fresh() {
	rm -rf "$WORK"
	cp -a "$BASE" "$WORK"
	sync
}

for n in $NS; do
	BASE=$DATA/snap-n$n-s$SEED.base
	WORK=$DATA/snap-n$n.work
	if [ ! -s "$BASE/MANIFEST" ]; then
		say "loading $n records"
		rm -rf "$BASE"
		"$HBIN/gen" "$n" "$SEED" /dev/stdout | "$KBIN/kyro-put" -d "$BASE" --sync=batch
	fi
	# The bytes the snapshot writes, for dd: from one unrecorded run.
	fresh
	"$KBIN/kyro-snapshot" -d "$WORK"
	bytes=$(cat "$WORK"/snap-*.bin "$WORK"/snap-*.data | wc -c)
	mb=$(( (bytes + 1048575) / 1048576 ))
	echo "n=$n: snapshot files $bytes bytes; dd writes $mb MiB" >>"$META"
	for run in $(seq 1 "$RUNS"); do
		for v in $VARIANTS; do
			bin=$KBIN
			case $v in before_*) bin=$BBIN ;; esac
			args=()
			case $v in *rmi) args=(--rmi) ;; esac
			fresh
			timed "$n" "$v" "$run" "$bin/kyro-snapshot" -d "$WORK" "${args[@]}"
		done
		rm -rf "$WORK" && sync
		timed "$n" dd "$run" dd if=/dev/zero of="$DATA/snap-dd.out" bs=1M count="$mb" conv=fsync status=none
		rm -f "$DATA/snap-dd.out" && sync
	done
	rm -rf "$WORK"
	load_line "after n=$n" >>"$META"
done

# --- summary: medians, rates, ratios
med() { # N VARIANT COLUMN: median over the runs
	awk -F, -v n="$1" -v v="$2" -v c="$3" '$1 == n && $2 == v {print $c}' "$CSV" | sort -g |
		awk '{a[NR] = $1} END {if (!NR) {print "NaN"; exit}
			printf "%.6f\n", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
SUMMARY=$RES/snapshot-summary.md
PLOT=$DATA/snapshot-plot.dat
{
	echo "Medians of $RUNS runs; $(sed -n 's/^cpu: //p' "$META"); $(sed -n 's/^date: //p' "$META")."
	echo "dd: dd if=/dev/zero bs=1M conv=fsync of as many bytes as the snapshot's files."
	echo
	echo "| keys | variant | wall | user | sys | keys/s | / dd | before / after |"
	echo "|---|---|---|---|---|---|---|---|"
	for n in $NS; do
		d=$(med "$n" dd 4)
		for v in $VARIANTS dd; do
			w=$(med "$n" "$v" 4)
			b=NaN
			case $v in plain|rmi) [ -z "$BEFORE" ] || b=$(med "$n" "before_$v" 4) ;; esac
			awk -v n="$n" -v v="$v" -v w="$w" -v u="$(med "$n" "$v" 5)" -v s="$(med "$n" "$v" 6)" \
			    -v d="$d" -v b="$b" 'BEGIN {
				printf "| %d | %s | %.3f s | %.2f s | %.2f s | %s | %.2fx | %s |\n", n, v, w, u, s,
					v == "dd" ? "-" : sprintf("%.2f M/s", n / w / 1e6), w / d,
					b == "NaN" ? "-" : sprintf("%.2fx", b / w) }'
		done
	done
	echo
	echo "Load: $(grep -E '^(start|after)' "$META" | tr '\n' ';')"
} >"$SUMMARY"
{
	echo "n $VARIANTS dd"
	for n in $NS; do
		printf '"%dM keys"' "$((n / 1000000))"
		for v in $VARIANTS dd; do printf ' %s' "$(med "$n" "$v" 4)"; done
		echo
	done
} >"$PLOT"
gnuplot -e "datafile='$PLOT'; outfile='$RES/snapshot.png'; ncols=$(( $(echo $VARIANTS | wc -w) + 1 )); subtitle='$(sed -n 's/^cpu: //p' "$META"), $(sed -n 's/^date: //p' "$META" | cut -c1-10), medians of $RUNS runs'" \
	"$HERE/plot.gp"
cat "$SUMMARY"
say "results in $RES: snapshot.csv snapshot-summary.md snapshot.png snapshot-meta.txt"
