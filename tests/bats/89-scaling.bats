#!/usr/bin/env bats
#
# Sharding behind nginx (docs/SCALING.md): three kyro-serve primaries and
# contrib/nginx/kyro-shards.conf in front of them.  Each key put through
# the proxy lands on exactly one primary, gets return it, what the proxy
# cannot route to one owner it refuses, and a killed primary's keys fail
# at once with a 502 while the other shards answer.

load helpers
load serve-helpers
load scaling-helpers

bats_require_minimum_version 1.5.0

setup() {
	kyro_setup
	unset KYRODB_AUTH_TOKEN KYRODB_RATE_LIMIT_RPS KYRODB_RATE_LIMIT_BURST \
		KYRODB_AUTO_SNAPSHOT_RECORDS KYRODB_LOG_LEVEL NOTIFY_SOCKET
	[ -x "$NGINX" ] ||
		skip "nginx is not installed (tests/deps.sh installs it as root)"
	nodes_start a b c
	nginx_start
	# 300 keys: 0, 2^64-1, 48 small ones and 250 over the whole range.
	python3 -c 'import random
r = random.Random(89)
ks = {0, 2**64 - 1} | set(range(1, 49))
while len(ks) < 300:
    ks.add(r.getrandbits(64))
print("\n".join(map(str, sorted(ks))))' >keys
	[ "$(wc -l <keys)" -eq 300 ]
}

teardown() {
	scaling_teardown
}

# none FILE: succeed when FILE is empty; else print it and fail.
none() {
	if [ -s "$1" ]; then
		cat "$1" >&2
		return 1
	fi
}

@test "scaling: each key put through nginx is on exactly one primary, all three hold a fair share, and gets return it" {
	bulk PUT put keys v
	awk '$1 != 200' put >bad
	none bad
	[ "$(wc -l <put)" -eq 300 ]

	owners keys >own
	awk 'NF != 2' own >bad
	none bad
	for n in a b c; do
		count=$(awk -v n="$n" '$2 == n' own | wc -l)
		echo "$n holds $count of 300 keys"
		[ "$count" -ge 50 ]
		# The value in the directory is the one put.
		kyro-get -d "$n" --all -f tsv | awk -F '\t' '$2 != "v" $1' >bad
		none bad
	done
	# The proxy names the shard it sent the key to: the one holding it.
	awk '{ print $2, $3 }' put | sort -n | diff - own

	bulk GET get keys
	awk '$1 != 200' get >bad
	none bad
	awk '{ print $2, $3 }' get | sort -n | diff - own
	bodies_are get.d keys v
}

@test "scaling: the proxy refuses what it cannot send to one owner, and no shard sees it" {
	# The daemon reads 042 and 0x2a as 42, the hash would not; keys in a
	# body, several keys, or a query the daemon reads otherwise; routes of
	# the whole store, which are asked of each shard.
	requests got <<'EOF'
GET /v1/kv/042
GET /v1/get_fast/0x2a
GET /v1/lookup_fast/+1
PUT /v1/kv/007 x
DELETE /v1/kv/0x7
POST /v1/put {"key":7,"value":"x"}
POST /v1/delete {"key":7}
POST /v1/lookup_batch {"keys":[7,8]}
GET /v1/lookup?key=7&key=8
GET /v1/lookup?KEY=8&key=7
GET /v1/lookup?key=7&x=1
GET /v1/range
GET /v1/offset
GET /v1/subscribe
POST /v1/snapshot
GET /shard/d/health
GET /shard/a/v1/kv/7
GET /shard/a/v1/offset
GET /shard/b/v1/offset
GET /shard/c/v1/offset
EOF
	# Answered 400 by the front itself (no shard named), with a JSON
	# error; and no write reached a shard.
	head -n 17 got | awk '$1 != 400 || $2 != "-"' >bad
	none bad
	grep -Lx '{"error":"[^"]*"}' $(seq -f got.d/%g 1 17) >bad
	none bad
	tail -n 3 got | awk '{ print $1, $2 }' >shards
	printf '200 %s\n' a b c | diff - shards
	cat got.d/18 got.d/19 got.d/20 | sort -u >offsets
	echo '{"offset":0}' | diff - offsets
}

@test "scaling: lookup, delete, range, offset and the change feed reach the owning shard" {
	head -n 60 keys >some
	bulk PUT put some v
	awk '$1 != 200' put >bad
	none bad
	owners some >own
	# Look five keys up, delete a sixth, then ask each shard.
	read -r gone owner < <(sed -n 6p own)
	{
		head -n 5 own | awk '{ print "GET /v1/lookup?key=" $1 }'
		echo "DELETE /v1/kv/$gone"
		echo "GET /v1/kv/$gone"
		for n in a b c; do
			echo "GET /shard/$n/v1/range?limit=1000"
			echo "GET /shard/$n/v1/offset"
			echo "GET /shard/$n/v1/replay?limit=1000"
		done
	} | requests got
	head -n 5 own | awk '{ print "200", $2 }' >want
	printf '200 %s\n404 %s\n' "$owner" "$owner" >>want
	printf '200 %s\n200 %s\n200 %s\n' a a a b b b c c c >>want
	awk '{ print $1, $2 }' got | diff want -
	head -n 5 own | awk '{ printf "{\"key\":%s,\"value\":\"v%s\"}\n", $1, $1 }' >want
	cat got.d/1 got.d/2 got.d/3 got.d/4 got.d/5 | diff want -
	run -1 kyro-get -d "$owner" "$gone"
	# Each shard's range, offset and change feed hold its keys only.
	for n in a b c; do
		case $n in a) r=8 ;; b) r=11 ;; c) r=14 ;; esac
		awk -v n="$n" -v gone="$gone" '$2 == n && $1 != gone { print $1 }' own >want
		sed 's/^{"key":\([0-9]*\),.*/\1/' "got.d/$r" | diff want -
		changes=$(awk -v n="$n" '$2 == n' own | wc -l)
		[ "$n" != "$owner" ] || changes=$((changes + 1))
		echo "{\"offset\":$changes}" | diff - "got.d/$((r + 1))"
		[ "$(grep -o '"seq":' "got.d/$((r + 2))" | wc -l)" -eq "$changes" ]
	done
}

@test "scaling: a killed primary's keys fail at once through nginx while the other shards answer, and come back with it" {
	bulk PUT put keys v
	owners keys >own
	awk '$2 == "b" { print $1 }' own >b-keys
	awk '$2 != "b" { print $1 }' own >other-keys
	node_kill b
	bulk GET get keys
	bulk PUT put2 keys w
	# b's keys: a 502 with the proxy's JSON error, in well under
	# proxy_connect_timeout (a refused connect fails at once); the other
	# keys answer as before.
	for f in get put2; do
		awk 'NR == FNR { own[$1] = $2; next }
			{ want = own[$2] == "b" ? 502 : 200 }
			$1 != want || $3 != own[$2] || $4 >= 1.5' own "$f" >bad
		none bad
	done
	bodies_are get.d b-keys '{"error":"shard b: no node answered"}' --exact
	bodies_are get.d other-keys v
	# No write for b's keys went to another shard: b alone holds them,
	# with their first values; a and c hold the second.
	owners keys | diff - own
	kyro-get -d b --all -f tsv | awk -F '\t' '$2 != "v" $1' >bad
	none bad
	for n in a c; do
		kyro-get -d "$n" --all -f tsv | awk -F '\t' '$2 != "w" $1' >bad
		none bad
	done
	# Back on its address, b answers again, at once.
	node_start b
	bulk GET get3 keys
	awk '$1 != 200' get3 >bad
	none bad
	bodies_are get3.d b-keys v
	bodies_are get3.d other-keys w
}
