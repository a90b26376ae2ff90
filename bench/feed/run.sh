#!/bin/sh
# bench/feed/run.sh - fan-out of the change feed: SUBS (default 100)
# /v1/subscribe streams on kyro-serve while RATE (default 10000) single-
# record batches a second are committed, for DUR seconds; and, as the
# peer, Redis pub/sub to as many subscribers at the same rate.  One run,
# one machine, load generator (bench/feed/feedbench.c) included.
#
#   sh bench/feed/run.sh
#   SUBS=50 RATE=5000 DUR=5 RUNS=3 sh bench/feed/run.sh
#
# The kyro writer commits through libkyro on the daemon's directory with
# KYRO_SYNC_NONE (10,000 fsyncs a second is not what is measured here),
# and the daemon runs --sync=none; Redis runs without persistence.
# Latency is from just before the commit (or PUBLISH) to the subscriber's
# read of the event, one clock.  Every subscriber must receive every
# change in order, or the run fails.  Needs redis-server and gnuplot.
# Results: bench/results/feed/ (feed.csv, the latency CDF of the last
# run of each as kyro-cdf.csv and redis-cdf.csv, feed.png).
set -eu
cd "$(dirname "$0")/../.."
ROOT=$PWD
SUBS=${SUBS:-100}
RATE=${RATE:-10000}
DUR=${DUR:-10}
RUNS=${RUNS:-3}
P_KYRO=${P_KYRO:-3141}
P_REDIS=${P_REDIS:-3142}
WORK=${WORK:-$ROOT/bench/data/feed}
OUT=${OUT:-$ROOT/bench/results/feed}
for t in redis-server redis-cli gnuplot curl; do
	command -v "$t" >/dev/null || {
		echo "run.sh: $t is missing; run: sh tests/deps.sh redis-server gnuplot" >&2
		exit 2
	}
done
[ -x bin/kyro-serve ] || { echo "run.sh: bin/kyro-serve is not built; run make" >&2; exit 2; }
mkdir -p "$WORK" "$OUT"
rm -f "$OUT"/*.csv "$OUT"/*.png
${CC:-cc} -O2 -std=c11 -Ilibkyro bench/feed/feedbench.c build/libkyro.a \
	-l:libcpu_features.a -lxxhash -lm -pthread -o "$WORK/feedbench"
ulimit -n 4096 2>/dev/null || true

KPID= RPID=
cleanup() {
	[ -z "$KPID" ] || { kill "$KPID" 2>/dev/null; wait "$KPID" 2>/dev/null; }
	[ -z "$RPID" ] || { kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; }
	rm -rf "$WORK/store"
}
trap cleanup EXIT INT TERM

# wait_up COMMAND...: until it succeeds, at most 10 s.
wait_up() {
	i=0
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		[ "$i" -lt 200 ] || { echo "run.sh: not up: $*" >&2; exit 2; }
		sleep 0.05
	done
}

echo "system,run,subscribers,rate,changes,delivered,p50_us,p99_us,p999_us,max_us,uptime_load1" >"$OUT/feed.csv"
row() { # SYSTEM RUN SUMMARY-LINE
	load=$(cut -d' ' -f1 /proc/loadavg)
	echo "$3" | awk -v s="$1" -v r="$2" -v l="$load" '{
		for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", s, r, v["subs"], v["rate"],
			v["changes"], v["delivered"], v["p50_us"], v["p99_us"],
			v["p999_us"], v["max_us"], l }' >>"$OUT/feed.csv"
	echo "$1 run $2: $3 (load $load)"
}

for run in $(seq 1 "$RUNS"); do
	rm -rf "$WORK/store"
	bash -c 'exec "$0" -d "$1" -l "127.0.0.1:$2" --sync=none --max-subscribers=1000 \
		2>"$3"' bin/kyro-serve "$WORK/store" "$P_KYRO" "$WORK/kyro-serve.log" &
	KPID=$!
	wait_up curl -sf "http://127.0.0.1:$P_KYRO/health"
	s=$("$WORK/feedbench" sse "$P_KYRO" "$WORK/store" "$SUBS" "$RATE" "$DUR" "$OUT/kyro-$run.csv")
	row kyro "$run" "$s"
	kill "$KPID"; wait "$KPID" 2>/dev/null || true; KPID=

	redis-server --port "$P_REDIS" --save '' --appendonly no --daemonize no \
		--logfile "$WORK/redis.log" &
	RPID=$!
	wait_up redis-cli -p "$P_REDIS" ping
	s=$("$WORK/feedbench" redis "$P_REDIS" - "$SUBS" "$RATE" "$DUR" "$OUT/redis-$run.csv")
	row redis "$run" "$s"
	kill "$RPID"; wait "$RPID" 2>/dev/null || true; RPID=
done

# The latency distribution of the last run of each, as a CDF.
for s in kyro redis; do
	tail -n +2 "$OUT/$s-$RUNS.csv" | cut -d, -f3 | sort -g |
		awk '{ a[NR] = $1 } END { for (i = 1; i <= NR; i += (NR > 20000 ? int(NR / 20000) : 1))
			print a[i] / 1000, i / NR }' >"$WORK/$s.cdf"
	# The per-delivery files are large (subscribers x changes lines):
	# the CDF is kept.
	(echo "latency_ms,fraction"; tr ' ' , <"$WORK/$s.cdf") >"$OUT/$s-cdf.csv"
	rm -f "$OUT/$s"-[0-9]*.csv
done
gnuplot <<GP
set terminal pngcairo size 900,540
set output "$OUT/feed.png"
set title "Fan-out to $SUBS subscribers at $RATE changes/s: delivery latency (run $RUNS)"
set xlabel "latency, ms (commit start to subscriber read)"
set ylabel "fraction of deliveries"
set logscale x
set key bottom right
set grid
plot "$WORK/kyro.cdf" using 1:2 with lines lw 2 title "kyro-serve /v1/subscribe (SSE)", \
     "$WORK/redis.cdf" using 1:2 with lines lw 2 title "Redis pub/sub"
GP
echo "results: $OUT/feed.csv, $OUT/feed.png"
