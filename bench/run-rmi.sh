#!/bin/sh
# run-rmi.sh - the learned-index benchmark: RMI against binary search, an
# Eytzinger layout and LMDB over the same keys.  Writes
# bench/results/rmi.csv, bench/results/rmi-table.md and bench/results/rmi.png
# (bench/README.md says how to read them).
#
# Usage: bench/run-rmi.sh [SOSD_FILE...]
# Environment: RMI_SIZES (default "1000000 10000000 100000000"),
#   RMI_DISTS (default "uniform normal lognormal clustered"),
#   RMI_LMDB_MAX (largest key count LMDB runs at; default 10000000: loading
#   and querying LMDB at 100M keys takes ~2 minutes per distribution, which
#   does not fit the ~20 minute budget of this script), RMI_RUNS (5),
#   TMPDIR (the LMDB environment, ~3 GB at 100M keys).
set -eu
cd "$(dirname "$0")/.."
OUT=bench/results
CSV=$OUT/rmi.csv
B=bench/build/rmi_bench
SIZES=${RMI_SIZES:-"1000000 10000000 100000000"}
DISTS=${RMI_DISTS:-"uniform normal lognormal clustered"}
LMDB_MAX=${RMI_LMDB_MAX:-10000000}
RUNS=${RMI_RUNS:-5}
TMP=${TMPDIR:-/tmp}

mkdir -p "$OUT"
sh bench/build-rmi.sh >/dev/null
rm -f "$CSV"
{
	echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cpus"
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "thp: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
	echo "command: bench/run-rmi.sh $*"
} >"$OUT/rmi-env.txt"

for n in $SIZES; do
	for d in $DISTS; do
		m=rmi,rmi-windows,rmi-predict,rmi-batch,binary,eytzinger
		[ "$n" -le 10000000 ] && m=$m,rmi-nocount
		[ "$n" -le "$LMDB_MAX" ] && m=$m,lmdb
		"$B" -d "$d" -n "$n" -r "$RUNS" -m "$m" -o "$CSV" -t "$TMP"
	done
done
# Each SIMD probe, and the two key/offset layouts, at 10M uniform keys.
"$B" -d uniform -n 10000000 -r "$RUNS" -o "$CSV" \
	-m rmi-scalar,rmi-sse4,rmi-avx2,rmi-avx512,rmi-soa+off,rmi-aos+off
# Without huge pages, at the largest size: the store maps its snapshot
# files, which the kernel backs with 4 KiB pages, so this is the store's
# own situation; with huge pages (above) binary search and Eytzinger lose
# less to TLB misses and are at their best.
big=$(echo $SIZES | awk '{print $NF}')
for d in $DISTS; do
	"$B" -H -d "$d" -n "$big" -r "$RUNS" -o "$CSV" \
		-m rmi,rmi-windows,rmi-batch,binary,eytzinger
done
# SOSD key files named on the command line.
for f in "$@"; do
	"$B" -f "$f" -r "$RUNS" -o "$CSV" -t "$TMP" \
		-m rmi,rmi-predict,rmi-batch,binary,eytzinger
done

# The table: medians of present-key lookups, and ratios; one row per key
# set and page size.
awk -F, 'NR > 1 && $4 == "present" {
	key = $1 SUBSEP $2 SUBSEP $5
	if (!(key in seen)) { seen[key] = 1; order[++k] = key }
	v[key, $3] = $8
}
function f(x) { return x == "" ? "-" : sprintf("%.1f", x) }
function x(a, b) { return (a && b) ? sprintf("%.2fx", a / b) : "-" }
END {
	print "| keys | dist | pages | rmi | rmi-windows | rmi-batch | rmi-predict | binary | eytzinger | lmdb | binary/rmi | best peer/rmi | best peer/rmi-windows | binary/rmi-batch | best peer/rmi-batch |"
	print "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= k; i++) {
		split(order[i], p, SUBSEP)
		r = v[order[i], "rmi"]; rb = v[order[i], "rmi-batch"]
		rw = v[order[i], "rmi-windows"]
		b = v[order[i], "binary"]
		e = v[order[i], "eytzinger"]; l = v[order[i], "lmdb"]
		if (r == "")
			continue
		best = e; if (l != "" && (best == "" || l < best)) best = l
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			p[2], p[1], p[3] == 1 ? "2M" : "4K", f(r), f(rw), f(rb),
			f(v[order[i], "rmi-predict"]), f(b), f(e), f(l),
			x(b, r), x(best, r), x(best, rw), x(b, rb), x(best, rb)
	}
}' "$CSV" >"$OUT/rmi-table.md"

if command -v gnuplot >/dev/null 2>&1; then
	gnuplot -e "csv='$CSV'; out='$OUT/rmi.png'; dists='$DISTS'" bench/plot_rmi.gp
fi
cat "$OUT/rmi-env.txt" "$OUT/rmi-table.md"

# End to end: kyro-get with the index and with KYRODB_INDEX=binary.
if [ -x bin/kyro-get ]; then
	sh bench/index-e2e.sh
else
	echo "run-rmi: bin/ not built, skipping bench/index-e2e.sh (make all)" >&2
fi
