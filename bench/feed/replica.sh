#!/bin/sh
# bench/feed/replica.sh - read replicas: replication lag while RATE
# (default 10000) single-record batches a second are committed on the
# primary for DUR seconds, and catch-up from CATCHUP (default 1000000)
# changes behind; the peers, in the same run, are two redis-server
# --replicaof pairs on the same load, one without persistence and one
# whose replica fsyncs its append-only file at every write.  One machine,
# loopback.
#
#   sh bench/feed/replica.sh
#   RATE=5000 DUR=5 RUNS=1 CATCHUP=200000 sh bench/feed/replica.sh
#   REPLICA_SYNC=always sh bench/feed/replica.sh   # the durable kyro only
#
# Lag: bench/feed/feedbench.c commits on the primary's directory through
# libkyro (KYRO_SYNC_NONE; the primary kyro-serve runs --sync=none) and
# one subscriber reads the replica's own /v1/subscribe, so a change counts
# when the replica has committed it and published it.  The replica runs
# once for each of REPLICA_SYNC (default "always none"): --sync=always
# (row "kyro": one fsync per local commit, before readers see it) and
# --sync=none (row "kyro-sync-none").  Redis, row "redis": feedbench
# PUBLISHes on the master and subscribes on the replica (PUBLISH travels
# the replication stream like any write); neither server persists.
# Redis, row "redis-aof": the replica runs --appendonly yes
# --appendfsync always, feedbench SETs the key named by the sequence
# number on the master and subscribes to the replica's keyevent
# notifications (PUBLISH is never written to the append-only file); Redis
# sends them to subscribers after the fsync of the write, as kyro does.
# One clock, commit start to delivery.
# Catch-up: the replica is stopped (SIGSTOP), CATCHUP changes are written
# to the primary (kyro-put --replay, batches of 100; redis-benchmark SET
# -P 100 for Redis), and the time from SIGCONT until the replica has
# applied the last one is measured (/health's applied_seq; Redis: the
# replica's replication offset reaching the master's).  The kyro primary
# runs with --sync=none, the Redis masters without persistence.
# Results: bench/results/replica/replica.csv.
set -eu
cd "$(dirname "$0")/../.."
ROOT=$PWD
RATE=${RATE:-10000}
DUR=${DUR:-10}
RUNS=${RUNS:-3}
CATCHUP=${CATCHUP:-1000000}
REPLICA_SYNC=${REPLICA_SYNC:-always none}
P_KP=${P_KP:-3151} P_KR=${P_KR:-3152} P_RM=${P_RM:-3153} P_RR=${P_RR:-3154}
WORK=${WORK:-$ROOT/bench/data/replica}
OUT=${OUT:-$ROOT/bench/results/replica}
for t in redis-server redis-cli redis-benchmark curl; do
	command -v "$t" >/dev/null || {
		echo "replica.sh: $t is missing; run: sh tests/deps.sh redis-server" >&2
		exit 2
	}
done
[ -x bin/kyro-serve ] || { echo "replica.sh: bin/kyro-serve is not built; run make" >&2; exit 2; }
mkdir -p "$WORK" "$OUT"
${CC:-cc} -O2 -std=c11 -Ilibkyro bench/feed/feedbench.c build/libkyro.a \
	-l:libcpu_features.a -lxxhash -lm -pthread -o "$WORK/feedbench"

PIDS=
cleanup() {
	for p in $PIDS; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
	for p in $PIDS; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK/primary" "$WORK/replica" "$WORK/replica.bootstrap" "$WORK/redis-replica"
}
trap cleanup EXIT INT TERM

# wait_up SECONDS COMMAND...: until it succeeds.
wait_up() {
	end=$(($(date +%s) + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$end" ] || { echo "replica.sh: not up: $*" >&2; exit 2; }
		sleep 0.01
	done
}

now() { date +%s.%N; }
applied() { curl -s "http://127.0.0.1:$P_KR/health" | sed -n 's/.*"applied_seq":\([0-9]*\).*/\1/p'; }
kyro_at() { [ "$(applied)" = "$1" ]; }
redis_off() { redis-cli -p "$1" info replication | tr -d '\r' | sed -n "s/^$2:\([0-9]*\)$/\1/p"; }
redis_at() { [ "$(redis_off "$P_RR" slave_repl_offset)" -ge "$1" ]; }

echo "system,run,measure,rate,changes,p50_us,p99_us,p999_us,max_us,seconds,changes_per_s,uptime_load1" >"$OUT/replica.csv"
lag_row() { # SYSTEM RUN SUMMARY-LINE
	load=$(cut -d' ' -f1 /proc/loadavg)
	echo "$3" | awk -v s="$1" -v r="$2" -v l="$load" '{
		for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		printf "%s,%s,lag,%s,%s,%s,%s,%s,%s,,,%s\n", s, r, v["rate"], v["delivered"],
			v["p50_us"], v["p99_us"], v["p999_us"], v["max_us"], l }' >>"$OUT/replica.csv"
	echo "$1 run $2 lag: $3 (load $load)"
}
catchup_row() { # SYSTEM RUN SECONDS
	load=$(cut -d' ' -f1 /proc/loadavg)
	rate=$(echo "$CATCHUP / $3" | bc -l | cut -d. -f1)
	echo "$1,$2,catchup,,$CATCHUP,,,,,$3,$rate,$load" >>"$OUT/replica.csv"
	echo "$1 run $2 catch-up: $CATCHUP changes in $3 s, $rate changes/s (load $load)"
}

# kyro_pair RUN SYNC: a kyro-serve primary and a --replica-of replica
# running --sync=SYNC; lag, then catch-up.
kyro_pair() {
	sys=kyro
	[ "$2" = always ] || sys=kyro-sync-$2
	rm -rf "$WORK/primary" "$WORK/replica"
	KYRODB_DISABLE_HTTP_LOG=1 bin/kyro-serve -d "$WORK/primary" -l "127.0.0.1:$P_KP" \
		--sync=none 2>"$WORK/primary.log" &
	KP=$!
	PIDS="$KP"
	wait_up 10 curl -sf "http://127.0.0.1:$P_KP/health"
	KYRODB_DISABLE_HTTP_LOG=1 bin/kyro-serve -d "$WORK/replica" -l "127.0.0.1:$P_KR" \
		--replica-of "http://127.0.0.1:$P_KP" --sync="$2" 2>"$WORK/replica.log" &
	KR=$!
	PIDS="$KP $KR"
	wait_up 10 curl -sf "http://127.0.0.1:$P_KR/health"
	s=$("$WORK/feedbench" sse "$P_KR" "$WORK/primary" 1 "$RATE" "$DUR" "$WORK/kyro-lag.csv")
	lag_row "$sys" "$1" "$s"

	last=$(curl -s "http://127.0.0.1:$P_KP/v1/offset" | sed 's/[^0-9]//g')
	awk -v s="$last" -v n="$CATCHUP" 'BEGIN { for (i = 1; i <= n; i++) {
		s++; printf "put\t%d\t%d\tvalue-%012d\n", s, s % 4000000, s
		if (i % 100 == 0 || i == n) printf "commit\t%d\n", s } }' >"$WORK/catchup.replay"
	wait_up 10 kyro_at "$last"
	kill -STOP "$KR"
	bin/kyro-put -d "$WORK/primary" --sync=none --replay <"$WORK/catchup.replay"
	t0=$(now)
	kill -CONT "$KR"
	wait_up 600 kyro_at "$((last + CATCHUP))"
	t1=$(now)
	catchup_row "$sys" "$1" "$(echo "$t1 - $t0" | bc -l | cut -c1-8)"
	kill "$KR" "$KP"; wait "$KR" "$KP" 2>/dev/null || true
	PIDS=
}

# redis_pair RUN SYSTEM FEEDBENCH-MODE REPLICA-ARG...: a redis-server
# master without persistence and a --replicaof replica with the
# arguments given; lag, then catch-up.
redis_pair() {
	run=$1 sys=$2 mode=$3
	shift 3
	rm -rf "$WORK/redis-replica"
	mkdir -p "$WORK/redis-replica"
	redis-server --port "$P_RM" --dir "$WORK" --save '' --appendonly no --daemonize no \
		--logfile "$WORK/redis-master.log" &
	RM=$!
	PIDS="$RM"
	wait_up 10 redis-cli -p "$P_RM" ping
	redis-server --port "$P_RR" --dir "$WORK/redis-replica" --save '' --daemonize no \
		--replicaof 127.0.0.1 "$P_RM" --logfile "$WORK/redis-replica.log" "$@" &
	RR=$!
	PIDS="$RM $RR"
	wait_up 10 sh -c "redis-cli -p $P_RR info replication | grep -q 'master_link_status:up'"
	s=$(FEEDBENCH_WRITE_PORT=$P_RM "$WORK/feedbench" "$mode" "$P_RR" - 1 "$RATE" "$DUR" \
		"$WORK/redis-lag.csv")
	lag_row "$sys" "$run" "$s"

	redis-cli -p "$P_RM" config set client-output-buffer-limit 'replica 0 0 0' >/dev/null
	redis-cli -p "$P_RM" config set repl-backlog-size 1gb >/dev/null
	kill -STOP "$RR"
	redis-benchmark -p "$P_RM" -t set -n "$CATCHUP" -r 4000000 -d 18 -P 100 -q >/dev/null
	target=$(redis_off "$P_RM" master_repl_offset)
	t0=$(now)
	kill -CONT "$RR"
	wait_up 600 redis_at "$target"
	t1=$(now)
	catchup_row "$sys" "$run" "$(echo "$t1 - $t0" | bc -l | cut -c1-8)"
	kill "$RR" "$RM"; wait "$RR" "$RM" 2>/dev/null || true
	PIDS=
	rm -rf "$WORK/redis-replica"
}

for run in $(seq 1 "$RUNS"); do
	for sync in $REPLICA_SYNC; do
		kyro_pair "$run" "$sync"
	done
	redis_pair "$run" redis redis --appendonly no
	redis_pair "$run" redis-aof redis-set --appendonly yes --appendfsync always \
		--notify-keyspace-events 'E$'
done
rm -f "$WORK/kyro-lag.csv" "$WORK/redis-lag.csv" "$WORK/catchup.replay"
echo "results: $OUT/replica.csv"
