#!/bin/sh
# index-e2e.sh - end to end, does the learned index make kyro-get faster?
#
# Builds a store of N records (kyro-put, then kyro-snapshot --rmi), then
# runs kyro-get of M present keys, output to /dev/null, with the index and
# with KYRODB_INDEX=binary, alternating run by run (RUNS each, after one
# unrecorded warm-up of each) so that a neighbour on the machine slows both
# alike.  Times are wall clock from bench/store/timeit.c.
#
# Output: bench/results/index-e2e.csv (mode,run,wall,user,sys) and
# bench/results/index-e2e.md (medians, min-max, ratio).
# Environment: E2E_N (10000000), E2E_M (1000000), E2E_RUNS (11), E2E_SEED
# (42), E2E_DATA (bench/data).  Needs bin/ built (make all).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${E2E_N:-10000000}
M=${E2E_M:-1000000}
RUNS=${E2E_RUNS:-11}
SEED=${E2E_SEED:-42}
DATA=${E2E_DATA:-$ROOT/bench/data}
RES=$ROOT/bench/results
B=$DATA/bin
K=$B/e2e

for t in kyro-put kyro-get kyro-snapshot; do
	[ -x "$ROOT/bin/$t" ] || { echo "index-e2e: bin/$t missing: run 'make all'" >&2; exit 2; }
done
mkdir -p "$K" "$RES"
# A private copy: others may rebuild bin/ while this runs.
cp "$ROOT/bin/kyro-put" "$ROOT/bin/kyro-get" "$ROOT/bin/kyro-snapshot" "$K/"
for p in gen timeit; do
	cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$B/$p" "$ROOT/bench/store/$p.c"
done

TSV=$DATA/store-n$N-s$SEED.tsv
KEYS=$DATA/store-n$N-s$SEED-m$M.keys
if [ ! -s "$TSV" ] || [ ! -s "$KEYS" ]; then
	echo "index-e2e: generating $N records and $M keys" >&2
	"$B/gen" "$N" "$SEED" "$TSV.tmp" "$M" "$KEYS.tmp"
	mv "$KEYS.tmp" "$KEYS"
	mv "$TSV.tmp" "$TSV"
fi
DB=$DATA/e2e.db
rm -rf "$DB"
"$K/kyro-put" -d "$DB" --sync=none <"$TSV"
"$K/kyro-snapshot" -v -d "$DB" --rmi
cat "$KEYS" >/dev/null

CSV=$RES/index-e2e.csv
T=$DATA/e2e.timeit
echo "mode,run,wall,user,sys" >"$CSV"
for run in $(seq 0 "$RUNS"); do
	for mode in index binary; do
		: >"$T"
		if [ "$mode" = binary ]; then
			KYRODB_INDEX=binary "$B/timeit" "$T" "$K/kyro-get" -d "$DB" <"$KEYS" >/dev/null
		else
			"$B/timeit" "$T" "$K/kyro-get" -d "$DB" <"$KEYS" >/dev/null
		fi
		read -r wall user sys _ <"$T"
		[ "$run" -gt 0 ] && echo "$mode,$run,$wall,$user,$sys" >>"$CSV"
	done
done

# Medians, spread, the ratio, and in how many of the paired runs the
# index was the faster.
awk -F, -v n="$N" -v m="$M" -v date="$(date -u '+%Y-%m-%d %H:%M UTC')" \
    -v load="$(cut -d' ' -f1-3 /proc/loadavg)" 'NR > 1 {
	w[$1, ++c[$1]] = $3
	if ($1 == "index") idx[$2] = $3; else bin[$2] = $3
}
function med(k,   i, j, t, a, cnt) {
	cnt = c[k]
	for (i = 1; i <= cnt; i++) a[i] = w[k, i]
	for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++)
		if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	lo[k] = a[1]; hi[k] = a[cnt]
	return cnt % 2 ? a[(cnt + 1) / 2] : (a[cnt / 2] + a[cnt / 2 + 1]) / 2
}
END {
	mi = med("index"); mb = med("binary")
	wins = 0
	for (r in idx) if (idx[r] < bin[r]) wins++
	printf "kyro-get of %d present keys on a %d-key store, output to /dev/null; %s, load %s\n\n", m, n, date, load
	print "| mode | median s | min | max | keys/s |"
	print "|---|---:|---:|---:|---:|"
	printf "| index | %.3f | %.3f | %.3f | %.2fM |\n", mi, lo["index"], hi["index"], m / mi / 1e6
	printf "| KYRODB_INDEX=binary | %.3f | %.3f | %.3f | %.2fM |\n", mb, lo["binary"], hi["binary"], m / mb / 1e6
	printf "\nbinary/index: %.2fx; the index run was faster in %d of %d pairs\n", mb / mi, wins, c["index"]
}' "$CSV" >"$RES/index-e2e.md"
cat "$RES/index-e2e.md"
rm -rf "$DB"
