#!/bin/sh
# bench/serve/run.sh - kyro-serve under wrk, against nginx serving a small
# static file (the machine's HTTP ceiling) and redis (redis-benchmark,
# not pipelined), in one run, on one machine, load generator included.
#
#   sh bench/serve/run.sh            # 10M keys, 3 runs of 10 s each
#   KEYS=1000000 RUNS=5 DUR=5s sh bench/serve/run.sh
#
# Needs: wrk nginx-light redis-server (sh tests/deps.sh wrk nginx-light
# redis-server installs them).  Results: bench/results/serve/ (raw tool
# output, serve.csv, summary.md); the summary is also printed.
set -eu
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=$ROOT/bin
BENCH_DIR=$ROOT/bench/serve
export BENCH_DIR
KEYS=${KEYS:-10000000}
export KEYS
RUNS=${RUNS:-3}
DUR=${DUR:-10s}
CONNS=${CONNS:-64}
LAT_CONNS=${LAT_CONNS:-2}
BATCH_CONNS=${BATCH_CONNS:-16}
WORK=${WORK:-$ROOT/bench/data/serve}
OUT=${OUT:-$ROOT/bench/results/serve}
P_KYRO=${P_KYRO:-3131}
P_NGINX=${P_NGINX:-3132}
P_REDIS=${P_REDIS:-3133}
mkdir -p "$WORK" "$OUT"
rm -f "$OUT"/*.txt "$OUT/serve.csv"

for t in wrk nginx redis-server redis-benchmark; do
	command -v "$t" >/dev/null || {
		echo "run.sh: $t is missing; run: sh tests/deps.sh wrk nginx-light redis-server" >&2
		exit 2
	}
done
[ -x "$BIN/kyro-serve" ] || { echo "run.sh: bin/kyro-serve is not built; run make" >&2; exit 2; }

pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	[ -f "$WORK/nginx/nginx.pid" ] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_http() { # URL
	i=0
	until curl -sf -o /dev/null "$1"; do
		i=$((i + 1))
		[ "$i" -lt 400 ] || { echo "run.sh: $1 did not come up" >&2; exit 2; }
		sleep 0.05
	done
}

# ---- the store: KEYS keys of the keys.lua formula, 16-byte values ----
STORE=$WORK/store-$KEYS
if [ ! -f "$STORE/.loaded" ]; then
	rm -rf "$STORE"
	echo "loading $KEYS keys into $STORE"
	t0=$(date +%s.%N)
	awk -v n="$KEYS" 'BEGIN { for (i = 1; i <= n; i++) {
		k = (i * 48271) % 2147483647; printf "%.0f\tv-%014.0f\n", k, k } }' |
		"$BIN/kyro-put" -d "$STORE" --sync=none
	"$BIN/kyro-snapshot" -d "$STORE" --rmi
	t1=$(date +%s.%N)
	echo "loaded and snapshotted in $(echo "$t1 - $t0" | bc) s"
	touch "$STORE/.loaded"
fi

# ---- the servers ----
start_kyro() { # extra options
	KYRODB_DISABLE_HTTP_LOG=1 KYRODB_AUTO_SNAPSHOT_RECORDS=0 KYRODB_WARM_ON_START=1 \
		"$BIN/kyro-serve" -d "$STORE" -l "127.0.0.1:$P_KYRO" --threads 2 "$@" \
		2>>"$OUT/kyro-serve.log" &
	kyro_pid=$!
	pids="$pids $kyro_pid"
	wait_http "http://127.0.0.1:$P_KYRO/health"
}
start_kyro

mkdir -p "$WORK/nginx/html"
printf 'v-00000000012345' >"$WORK/nginx/html/value" # 16 bytes, as a stored value
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
daemon on;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 1000000000;
	client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
	fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
	server { listen 127.0.0.1:$P_NGINX; root $WORK/nginx/html; }
}
EOF
nginx -c "$WORK/nginx/nginx.conf"
wait_http "http://127.0.0.1:$P_NGINX/value"

redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no \
	--io-threads 2 >"$OUT/redis.log" 2>&1 &
pids="$pids $!"
until redis-cli -p "$P_REDIS" ping >/dev/null 2>&1; do sleep 0.05; done

# ---- measuring ----
rps() { sed -n 's/^Requests\/sec: *//p' "$1"; }
rbench() { tr '\r' '\n' <"$1" | sed -n 's/^[A-Z]*: \([0-9.]*\) requests per second.*/\1/p' | tail -n 1; }
record() { echo "$1,$2,$3" >>"$OUT/serve.csv"; } # test,run,value
WRK="wrk -t 2 -d $DUR"

echo "test,run,value" >"$OUT/serve.csv"
for r in $(seq 1 "$RUNS"); do
	echo "run $r/$RUNS"
	$WRK -c "$CONNS" "http://127.0.0.1:$P_NGINX/value" >"$OUT/nginx.$r.txt"
	record nginx_static "$r" "$(rps "$OUT/nginx.$r.txt")"
	$WRK -c "$CONNS" -s "$BENCH_DIR/get_fast.lua" "http://127.0.0.1:$P_KYRO" >"$OUT/get_fast.$r.txt"
	record kyro_get_fast "$r" "$(rps "$OUT/get_fast.$r.txt")"
	redis-benchmark -p "$P_REDIS" -t set -n 2000000 -r "$KEYS" -d 16 -c "$CONNS" --threads 2 -q \
		>"$OUT/redis-set.$r.txt" 2>&1
	record redis_set "$r" "$(rbench "$OUT/redis-set.$r.txt")"
	redis-benchmark -p "$P_REDIS" -t get -n 2000000 -r "$KEYS" -d 16 -c "$CONNS" --threads 2 -q \
		>"$OUT/redis-get.$r.txt" 2>&1
	record redis_get "$r" "$(rbench "$OUT/redis-get.$r.txt")"
	$WRK -c "$BATCH_CONNS" -s "$BENCH_DIR/lookup_batch.lua" "http://127.0.0.1:$P_KYRO" >"$OUT/batch.$r.txt"
	record kyro_lookup_batch_keys "$r" "$(rps "$OUT/batch.$r.txt" | awk '{ printf "%.0f", $1 * 100 }')"
	# wrk has no fixed request rate (wrk2 is not packaged): fewer
	# connections, one wrk thread, stand in for "half the peak rate".
	wrk -t 1 -d "$DUR" -c "$LAT_CONNS" --latency -s "$BENCH_DIR/get_fast.lua" "http://127.0.0.1:$P_KYRO" >"$OUT/latency.$r.txt"
	record kyro_get_fast_low_load "$r" "$(rps "$OUT/latency.$r.txt")"
	p99=$(awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
		f = (u == "us") ? 0.001 : (u == "ms") ? 1 : 1000; print v * f }' "$OUT/latency.$r.txt")
	record kyro_get_fast_low_load_p99_ms "$r" "$p99"
	$WRK -c "$CONNS" -s "$BENCH_DIR/put.lua" "http://127.0.0.1:$P_KYRO" >"$OUT/put.$r.txt"
	record kyro_put_sync_always "$r" "$(rps "$OUT/put.$r.txt")"
done
curl -s "http://127.0.0.1:$P_KYRO/metrics" >"$OUT/metrics.txt"

# ---- the summary ----
median() { # test
	awk -F, -v t="$1" '$1 == t { print $3 }' "$OUT/serve.csv" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ngx=$(median nginx_static)
get=$(median kyro_get_fast)
rget=$(median redis_get)
rset=$(median redis_set)
batch=$(median kyro_lookup_batch_keys)
low=$(median kyro_get_fast_low_load)
p99=$(median kyro_get_fast_low_load_p99_ms)
put=$(median kyro_put_sync_always)
groups=$(sed -n 's/^kyro_group_commit_size_count //p' "$OUT/metrics.txt")
writes=$(sed -n 's/^kyro_group_commit_size_sum //p' "$OUT/metrics.txt")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
{
	echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, $(uname -r);" \
		"$(date -u +%Y-%m-%d); median of $RUNS runs of $DUR; $KEYS keys; wrk -t2," \
		"load generator on the same machine."
	echo
	echo "| test | median | target | ratio |"
	echo "| --- | ---: | --- | ---: |"
	echo "| nginx static 16-byte file, $CONNS conns | $ngx req/s | ceiling | 1.00 |"
	echo "| GET /v1/get_fast, $CONNS conns | $get req/s | >= 0.9x nginx | $(ratio "$get" "$ngx") |"
	echo "| redis GET (redis-benchmark, $CONNS conns, no pipelining) | $rget req/s | get_fast >= this | $(ratio "$get" "$rget") |"
	echo "| redis SET (same) | $rset req/s | | |"
	echo "| GET /v1/get_fast, $LAT_CONNS conns | $low req/s, p99 $p99 ms | p99 < 1 ms at ~half peak | $(ratio "$low" "$get") of peak |"
	echo "| POST /v1/put --sync=always, $CONNS conns | $put req/s | >= 0.3x get_fast | $(ratio "$put" "$get") |"
	echo "| POST /v1/lookup_batch of 100 keys, $BATCH_CONNS conns | $batch keys/s | >= 2M keys/s | $(ratio "$batch" 2000000) |"
	echo
	echo "Group commit over the whole run: $writes writes in $groups groups" \
		"(mean $(ratio "${writes:-0}" "${groups:-1}") writes per fsync)."
} | tee "$OUT/summary.md"
