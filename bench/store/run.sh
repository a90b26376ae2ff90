#!/usr/bin/env bash
# bench/store/run.sh - KyroDB against LMDB on the same data, in one run.
#
# Figures (their targets are in bench/README.md), each measured STORE_RUNS
# times after one unrecorded warm-up run, kyro and LMDB interleaved run by
# run so that a neighbour on the machine slows both alike:
#   load        kyro-put --sync=batch < N lines   vs lmdb_load (one txn, one commit)
#   snapshot    kyro-snapshot of the N-record WAL (no LMDB counterpart)
#   get_file    kyro-get < M present keys > file  vs lmdb_get (same output bytes)
#   get_devnull the same, output to /dev/null
#   open_10M    kyro-get of one key, N-key snapshot (hyperfine)  vs lmdb_get
#   open_1K     the same on a 1000-key store
# Everything is warm: the inputs are read once before measuring, and every
# store was just written, so its pages are in the page cache.
#
# Output: bench/results/store.csv (metric,system,run,seconds,rate),
# store-rusage.csv (user and system CPU per run), store-summary.md (medians,
# ratios, pass/fail), store.png, store-meta.txt (machine, load), and with
# STORE_PROFILE=1 (default) perf profiles store-profile-*.txt.
#
# Environment: STORE_N (10000000), STORE_M (1000000), STORE_RUNS (5),
# STORE_SEED (42), STORE_DATA (bench/data), STORE_PROFILE (1), STORE_BIN (the
# kyro binaries to measure: bin/).
# Needs bin/kyro-* built (make all), cc, liblmdb-dev, hyperfine, jq, gnuplot;
# perf for the profile.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/store
N=${STORE_N:-10000000}
M=${STORE_M:-1000000}
RUNS=${STORE_RUNS:-5}
SEED=${STORE_SEED:-42}
DATA=${STORE_DATA:-$ROOT/bench/data}
PROFILE=${STORE_PROFILE:-1}
RES=$ROOT/bench/results
HBIN=$DATA/bin
KBIN=$HBIN/kyro

say() { printf 'store: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

SRCBIN=${STORE_BIN:-$ROOT/bin}
for t in kyro-put kyro-get kyro-snapshot; do
	[ -x "$SRCBIN/$t" ] || die "$SRCBIN/$t missing: run 'make all' first"
done
for t in cc hyperfine jq gnuplot; do
	command -v "$t" >/dev/null || die "$t not found"
done
mkdir -p "$DATA" "$HBIN" "$KBIN" "$RES"
# Measure a private copy: others may rebuild bin/ while this runs.
cp "$SRCBIN/kyro-put" "$SRCBIN/kyro-get" "$SRCBIN/kyro-snapshot" "$KBIN/"

# --- helpers, built here so the benchmark needs nothing from the Makefile
# The LMDB peers link cmd/cli.c (and libkyro.a, which it names): the same
# key parsing, escapes and output code as kyro-put and kyro-get, and
# link as the tools do (docs/DECISIONS.md): liblmdb and libc are the only
# shared objects they map.
[ -f "$ROOT/build/libkyro.a" ] || die "$ROOT/build/libkyro.a missing: run 'make all' first"
for p in gen timeit; do
	cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$HBIN/$p" "$HERE/$p.c"
done
for p in lmdb_load lmdb_get; do
	cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -I"$ROOT/cmd" -I"$ROOT/libkyro" \
		-o "$HBIN/$p" "$HERE/$p.c" "$ROOT/cmd/cli.c" "$ROOT/build/libkyro.a" \
		-Wl,--as-needed -llmdb -l:libcpu_features.a -l:libxxhash.a -lm
done

# --- data sets (kept between runs: the name says how they were made)
TSV=$DATA/store-n$N-s$SEED.tsv
KEYS=$DATA/store-n$N-s$SEED-m$M.keys
SMALL=$DATA/store-n1000-s$SEED.tsv
if [ ! -s "$TSV" ] || [ ! -s "$KEYS" ]; then
	say "generating $N records and $M keys"
	"$HBIN/gen" "$N" "$SEED" "$TSV.tmp" "$M" "$KEYS.tmp"
	mv "$KEYS.tmp" "$KEYS"
	mv "$TSV.tmp" "$TSV"
fi
[ -s "$SMALL" ] || "$HBIN/gen" 1000 "$SEED" "$SMALL"

KDB=$DATA/kyro.db
LDB=$DATA/lmdb.db
KOUT=$DATA/get.kyro.out
LOUT=$DATA/get.lmdb.out
CSV=$RES/store.csv
RUSAGE=$RES/store-rusage.csv
META=$RES/store-meta.txt
T=$DATA/timeit.last

# --- the machine, and who else is using it
. "$ROOT/bench/machine.sh"
{
	machine_lines "$DATA"
	echo "data dir: $DATA"
	echo "lmdb: liblmdb-dev $(dpkg-query -W -f '${Version}' liblmdb-dev 2>/dev/null || echo '?')"
	echo "binaries from: $SRCBIN"
	echo "binaries: $(cd "$KBIN" && sha256sum kyro-put kyro-get kyro-snapshot | awk '{printf "%s %.12s  ", $2, $1}')"
	echo "N=$N M=$M RUNS=$RUNS SEED=$SEED"
	load_line start
} >"$META"

echo "metric,system,run,seconds,rate" >"$CSV"
echo "metric,system,run,wall,user,sys" >"$RUSAGE"

# timed METRIC SYSTEM RUN COUNT CMD...: run CMD under timeit; RUN 0 is the
# warm-up and is not recorded.  A failing command stops the benchmark.
timed() {
	local metric=$1 sys=$2 run=$3 count=$4
	shift 4
	: >"$T"
	if ! "$HBIN/timeit" "$T" "$@"; then
		die "$metric/$sys run $run failed: $*"
	fi
	local wall user cpu_sys
	read -r wall user cpu_sys _ <"$T"
	if [ "$run" -gt 0 ]; then
		awk -v m="$metric" -v s="$sys" -v r="$run" -v w="$wall" -v n="$count" \
			'BEGIN {printf "%s,%s,%d,%.6f,%.1f\n", m, s, r, w, n / w}' >>"$CSV"
		echo "$metric,$sys,$run,$wall,$user,$cpu_sys" >>"$RUSAGE"
	fi
	say "$(printf '%-12s %-5s run %d: %8.3f s  (user %.2f, sys %.2f)' "$metric" "$sys" "$run" "$wall" "$user" "$cpu_sys")"
}

say "warming the page cache with the inputs"
cat "$TSV" "$KEYS" "$SMALL" >/dev/null

# --- 1 and 3: load, then snapshot what was loaded (the WAL holds N records)
for run in $(seq 0 "$RUNS"); do
	rm -rf "$KDB" && sync
	timed load kyro "$run" "$N" "$KBIN/kyro-put" -d "$KDB" --sync=batch <"$TSV"
	timed snapshot kyro "$run" "$N" "$KBIN/kyro-snapshot" -d "$KDB"
	rm -rf "$LDB" && sync
	if [ "$run" -eq 0 ]; then
		# The warm-up also checks that LMDB holds the N distinct keys.
		timed load lmdb "$run" "$N" "$HBIN/lmdb_load" -v "$LDB" <"$TSV" >"$DATA/lmdb_load.log"
		grep -q " $N entries" "$DATA/lmdb_load.log" || die "lmdb_load: $(cat "$DATA/lmdb_load.log")"
	else
		timed load lmdb "$run" "$N" "$HBIN/lmdb_load" "$LDB" <"$TSV"
	fi
done
load_line "after load" >>"$META"

# --- 2: M lookups of present keys, to a file on the data disk and to /dev/null
for run in $(seq 0 "$RUNS"); do
	timed get_file kyro "$run" "$M" "$KBIN/kyro-get" -d "$KDB" <"$KEYS" >"$KOUT"
	timed get_file lmdb "$run" "$M" "$HBIN/lmdb_get" "$LDB" <"$KEYS" >"$LOUT"
	timed get_devnull kyro "$run" "$M" "$KBIN/kyro-get" -d "$KDB" <"$KEYS" >/dev/null
	timed get_devnull lmdb "$run" "$M" "$HBIN/lmdb_get" "$LDB" <"$KEYS" >/dev/null
done
[ "$(wc -l <"$KOUT")" -eq "$M" ] || die "kyro-get printed $(wc -l <"$KOUT") lines, not $M"
cmp -s "$KOUT" "$LOUT" || die "kyro-get and lmdb_get printed different output"

# --- 4: opening cost: one key on the N-key store and on a 1000-key store
SDB=$DATA/kyro-1K.db
SLDB=$DATA/lmdb-1K.db
rm -rf "$SDB" "$SLDB"
"$KBIN/kyro-put" -d "$SDB" <"$SMALL"
"$KBIN/kyro-snapshot" -d "$SDB"
"$HBIN/lmdb_load" "$SLDB" <"$SMALL"
KEY_BIG=$(head -1 "$KEYS")
KEY_SMALL=$(head -1 "$SMALL" | cut -f1)
for c in "$KBIN/kyro-get -d $KDB $KEY_BIG" "$KBIN/kyro-get -d $SDB $KEY_SMALL" \
	 "$HBIN/lmdb_get $LDB $KEY_BIG" "$HBIN/lmdb_get $SLDB $KEY_SMALL"; do
	$c >/dev/null || die "not found: $c"
done
OPEN_RUNS=$((RUNS * 20))
hyperfine -N --style none --warmup 20 --runs "$OPEN_RUNS" --export-json "$DATA/open.json" \
	-n "open_10M,kyro" "$KBIN/kyro-get -d $KDB $KEY_BIG" \
	-n "open_1K,kyro" "$KBIN/kyro-get -d $SDB $KEY_SMALL" \
	-n "open_10M,lmdb" "$HBIN/lmdb_get $LDB $KEY_BIG" \
	-n "open_1K,lmdb" "$HBIN/lmdb_get $SLDB $KEY_SMALL" >&2
jq -r '.results[] | .command as $c | .times | to_entries[] |
	"\($c),\(.key + 1),\(.value),\(1 / .value)"' "$DATA/open.json" >>"$CSV"
jq -r '.results[] | "\(.command),mean=\(.mean),median=\(.median),stddev=\(.stddev),min=\(.min),max=\(.max),user=\(.user),system=\(.system)"' \
	"$DATA/open.json" >"$RES/store-open.txt"
load_line end >>"$META"

# --- summary: medians, spread, ratios, targets
# stat METRIC SYSTEM COLUMN FILE: "median min max" of a column, over runs.
stat() {
	awk -F, -v m="$1" -v s="$2" -v c="$3" '$1 == m && $2 == s {print $c}' "$4" | sort -g |
		awk '{a[NR] = $1} END {if (!NR) {print "NaN NaN NaN"; exit}
			printf "%.9g %.9g %.9g\n", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2, a[1], a[NR]}'
}
# cpu METRIC SYSTEM: median of user + sys over the runs.
cpu() {
	awk -F, -v m="$1" -v s="$2" '$1 == m && $2 == s {print $5 + $6}' "$RUSAGE" | sort -g |
		awk '{a[NR] = $1} END {if (!NR) print "NaN"; else printf "%.9g\n", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
# row LABEL METRIC COUNT MINRATE MINRATIO: one throughput row of the table.
row() {
	local k l
	k=$(stat "$2" kyro 4 "$CSV")
	l=$(stat "$2" lmdb 4 "$CSV")
	awk -v lab="$1" -v n="$3" -v rmin="$4" -v xmin="$5" -v k="$k" -v l="$l" \
	    -v kc="$(cpu "$2" kyro)" -v lc="$(cpu "$2" lmdb)" 'BEGIN {
		split(k, K, " "); split(l, L, " ")
		kr = n / K[1]; ok = kr >= rmin
		lr = (L[1] == "NaN") ? "-" : sprintf("%.2f M/s", n / L[1] / 1e6)
		x = (L[1] == "NaN") ? "-" : sprintf("%.1fx", L[1] / K[1])
		if (L[1] != "NaN") ok = ok && L[1] / K[1] >= xmin
		xc = (L[1] == "NaN") ? "-" : sprintf("%.1fx", lc / kc)
		tgt = sprintf(">= %g M/s", rmin / 1e6) (xmin > 0 ? sprintf(", >= %gx", xmin) : "")
		printf "| %s | %.3f s (%.3f-%.3f) | %s | %.2f M/s | %s | %s | %.2f M/s | %s | %s | %s |\n",
			lab, K[1], K[2], K[3],
			L[1] == "NaN" ? "-" : sprintf("%.3f s (%.3f-%.3f)", L[1], L[2], L[3]),
			kr / 1e6, lr, x, n / kc / 1e6, xc, tgt, ok ? "pass" : "**FAIL**"
	}'
}
SUMMARY=$RES/store-summary.md
{
	echo "Wall time: median of $RUNS runs (min-max). CPU: median user+sys of the same runs;"
	echo "N / CPU is the rate the process would reach alone on an idle core (I/O waits aside)."
	echo
	echo "| figure | kyro wall | LMDB wall | kyro rate | LMDB rate | LMDB/kyro wall | kyro N/CPU | LMDB/kyro CPU | target | wall result |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	row "bulk load, $N records" load "$N" 2e6 5
	row "get $M present keys, output to a file" get_file "$M" 2e6 3
	row "get $M present keys, output to /dev/null" get_devnull "$M" 2e6 3
	row "snapshot of $N keys" snapshot "$N" 5e6 0
	echo
	echo "One key per process (hyperfine -N, --warmup 20, $OPEN_RUNS runs; median (min-max), mean):"
	echo
	echo "| store | kyro-get | lmdb_get | target | result |"
	echo "|---|---|---|---|---|"
	for m in open_10M open_1K; do
		jq -r --arg m "$m" --arg N "$N" '
			def ms: (. * 1e5 | round) / 100 | tostring;
			[.results[] | select(.command | startswith($m + ","))] as $r |
			($r[] | select(.command | endswith("kyro"))) as $k |
			($r[] | select(.command | endswith("lmdb"))) as $l |
			"| \(if $m == "open_10M" then $N else "1000" end) keys | \($k.median | ms) ms (\($k.min | ms)-\($k.max | ms)), mean \($k.mean | ms) | \($l.median | ms) ms (\($l.min | ms)-\($l.max | ms)), mean \($l.mean | ms) | " +
			(if $m == "open_10M" then "< 5 ms | " + (if $k.median < 0.005 then "pass" else "**FAIL**" end) + " |"
			 else "no growth | ratio below |" end)' "$DATA/open.json"
	done
	kb=$(stat open_10M kyro 4 "$CSV" | cut -d' ' -f1); k1=$(stat open_1K kyro 4 "$CSV" | cut -d' ' -f1)
	lb=$(stat open_10M lmdb 4 "$CSV" | cut -d' ' -f1); l1=$(stat open_1K lmdb 4 "$CSV" | cut -d' ' -f1)
	echo
	awk -v kb="$kb" -v k1="$k1" -v lb="$lb" -v l1="$l1" -v n="$N" 'BEGIN {
		printf "Median time of one lookup, %d-key store / 1000-key store: kyro %.2f, LMDB %.2f.\n", n, kb / k1, lb / l1 }'
} >"$SUMMARY"

# --- the chart: medians, kyro beside LMDB
PLOT=$DATA/store-plot.dat
{
	rate() { awk -v n="$3" -v s="$(stat "$1" "$2" 4 "$CSV" | cut -d' ' -f1)" \
		'BEGIN {if (s == "NaN") print "NaN"; else printf "%.3f\n", n / s / 1e6}'; }
	ms() { awk -v s="$(stat "$1" "$2" 4 "$CSV" | cut -d' ' -f1)" 'BEGIN {printf "%.3f\n", s * 1e3}'; }
	echo "# label kyro lmdb (M/s)"
	echo "\"bulk load\" $(rate load kyro "$N") $(rate load lmdb "$N")"
	echo "\"get, to a file\" $(rate get_file kyro "$M") $(rate get_file lmdb "$M")"
	echo "\"get, to /dev/null\" $(rate get_devnull kyro "$M") $(rate get_devnull lmdb "$M")"
	echo "\"snapshot\" $(rate snapshot kyro "$N") NaN"
	echo
	echo
	echo "# label kyro lmdb (ms)"
	echo "\"$N keys\" $(ms open_10M kyro) $(ms open_10M lmdb)"
	echo "\"1000 keys\" $(ms open_1K kyro) $(ms open_1K lmdb)"
} >"$PLOT"
gnuplot -e "datafile='$PLOT'; outfile='$RES/store.png'; subtitle='$(sed -n 's/^cpu: //p' "$META"), $(sed -n 's/^date: //p' "$META" | cut -c1-10), medians of $RUNS runs'" \
	"$HERE/plot.gp"

# --- profiles: where the time goes (perf sampling on cpu-clock; this VM
# exposes no hardware counters, so no instructions/cycles)
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null; then
	PDB=$DATA/kyro-prof.db
	rm -rf "$PDB"
	prof() { # NAME CMD...: a flat profile by symbol, self time
		local name=$1
		shift
		rm -f "$DATA/perf-$name.data" "$DATA/perf-$name.data.old"
		perf record -q -e cpu-clock -F 1999 -o "$DATA/perf-$name.data" -- "$@"
		perf report -q -i "$DATA/perf-$name.data" --stdio --no-children \
			--sort dso,sym --percent-limit 0.5 2>/dev/null |
			grep -v '^$' | head -30 >"$RES/store-profile-$name.txt"
		say "profile of $name in $RES/store-profile-$name.txt"
	}
	prof put "$KBIN/kyro-put" -d "$PDB" --sync=batch <"$TSV"
	prof snapshot "$KBIN/kyro-snapshot" -d "$PDB"
	prof get "$KBIN/kyro-get" -d "$PDB" <"$KEYS" >"$KOUT"
	rm -rf "$PDB"
fi

cat "$SUMMARY"
say "results in $RES: store.csv store-summary.md store.png store-meta.txt"
