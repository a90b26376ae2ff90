#!/usr/bin/env bats
#
# Sharding behind nginx (docs/SCALING.md): three kyro-serve primaries, a
# read replica of the first, and contrib/nginx/kyro-shards.conf in front.
# Each key put through the proxy lands on exactly one primary and gets
# return it; the replica serves its shard's reads and converges on the
# writes; what the proxy cannot route to one owner it refuses; a killed
# node's keys fail at once with a 502 while the other shards answer; and
# a promoted replica takes its shard's keys, no other.  Each test starts
# four daemons and an nginx, so the tests are few and long.

load helpers
load serve-helpers
load scaling-helpers

bats_require_minimum_version 1.5.0

setup_file() {
	# 200 keys: 0, 2^64-1, 38 small ones and 160 over the whole range
	# (a xorshift, printed unsigned).
	local x=88172645463325252 i
	{
		seq 0 38
		for i in $(seq 1 160); do
			x=$((x ^ (x << 13)))
			x=$((x ^ ((x >> 7) & 0x01ffffffffffffff)))
			x=$((x ^ (x << 17)))
			printf '%u\n' "$x"
		done
		echo 18446744073709551615
	} | sort -un >"$BATS_FILE_TMPDIR/keys"
}

setup() {
	kyro_setup
	# The docs test needs no cluster.
	[[ "$BATS_TEST_DESCRIPTION" != docs/SCALING.md:* ]] || return 0
	unset KYRODB_AUTH_TOKEN KYRODB_RATE_LIMIT_RPS KYRODB_RATE_LIMIT_BURST \
		KYRODB_AUTO_SNAPSHOT_RECORDS KYRODB_LOG_LEVEL NOTIFY_SOCKET
	[ -x "$NGINX" ] ||
		skip "nginx is not installed (tests/deps.sh installs it as root)"
	cp "$BATS_FILE_TMPDIR/keys" keys
	[ "$(wc -l <keys)" -eq 200 ]
	nodes_start a b c
	node_start ra --replica-of "$(node_url a)"
	nginx_start
	# Reads that must see the writes just made ask for the primary;
	# those meant for the replica go without.
	PROXY_HEADER="X-Kyro-Read: primary"
}

teardown() {
	sse_teardown
	scaling_teardown
}

# none FILE: succeed when FILE is empty; else print it and fail.
none() {
	if [ -s "$1" ]; then
		cat "$1" >&2
		return 1
	fi
}

# all_status STATUS FILE: every request of FILE (bulk's or requests')
# was answered STATUS.
all_status() {
	awk -v s="$1" '$1 != s' "$2" >bad
	none bad
}

# values_are NODE PREFIX: each value in NODE's directory, read with
# kyro-get, is PREFIX then its key.
values_are() {
	kyro-get -d "$1" --all -f tsv | awk -F '\t' -v p="$2" '$2 != p $1' >bad
	none bad
}

# kv_gets NODE: how many GET /v1/kv/{key} the node answered 200.
kv_gets() {
	curl -s "$(node_url "$1")/metrics" |
		awk 'index($0, "kyro_http_requests_total{route=\"GET /v1/kv/{key}\",code=\"200\"} ") == 1 {
			n = $NF } END { print n + 0 }'
}

# converged KEYFILE PREFIX: a GET through the front of each key answers
# 200 with PREFIX then the key.
converged() {
	bulk GET conv "$1" &&
		! awk '$1 != 200 { bad = 1 } END { exit !bad }' conv &&
		bodies_are conv.d "$1" "$2" 2>/dev/null
}

@test "scaling: each key put through nginx is on exactly one primary, all three hold a share, gets return it, and shard a's replica serves its reads" {
	# Shard a's change feed, through both tiers, from its primary.
	URL=$FRONT sse_start feed '/shard/a/v1/subscribe?from=1'
	bulk PUT put keys v
	# 200, never the replica's 421: no write went to the replica.
	all_status 200 put
	[ "$(wc -l <put)" -eq 200 ]
	owners keys >own
	awk 'NF != 2' own >bad
	none bad
	for n in a b c; do
		count=$(awk -v n="$n" '$2 == n' own | wc -l)
		echo "$n holds $count of 200 keys"
		[ "$count" -ge 20 ]
		values_are "$n" v
	done
	# The proxy names the shard it sent each key to: the one holding it.
	awk '{ print $2, $3 }' put | sort -n | diff - own
	bulk GET get keys
	all_status 200 get
	awk '{ print $2, $3 }' get | sort -n | diff - own
	bodies_are get.d keys v

	# Without X-Kyro-Read: primary, shard a's reads are its replica's
	# (none the primary's), and they converge on the writes.
	awk '$2 == "a" { print $1 }' own >a-keys
	count=$(wc -l <a-keys)
	PROXY_HEADER= wait_until 10 converged a-keys v
	r0=$(kv_gets ra) p0=$(kv_gets a)
	PROXY_HEADER= bulk GET get a-keys
	r1=$(kv_gets ra) p1=$(kv_gets a)
	assert_equal "$((r1 - r0)) $((p1 - p0))" "$count 0"
	bulk GET get a-keys
	r2=$(kv_gets ra) p2=$(kv_gets a)
	assert_equal "$((r2 - r1)) $((p2 - p1))" "0 $count"
	wait_until 10 sse_has feed "$count"
	grep -o '"seq":[0-9]*' feed | cut -d : -f 2 | diff <(seq 1 "$count") -

	# A value over nginx's default 1 MB limit and its body buffers goes
	# through both tiers' temporary files, and comes back whole.
	head -c 2000000 /dev/urandom >big
	k=$(head -n 1 keys)
	run curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @big \
		"$FRONT/v1/kv/$k"
	assert_output 200
	curl -s -H "$PROXY_HEADER" -o got-big "$FRONT/v1/kv/$k"
	cmp big got-big
}

@test "scaling: lookup, delete, range, offset and the change feed reach the owning shard; what has no one owner is refused" {
	head -n 60 keys >some
	bulk PUT put some v
	all_status 200 put
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
	} | requests routes
	head -n 5 own | awk '{ print "200", $2 }' >want
	printf '200 %s\n404 %s\n' "$owner" "$owner" >>want
	printf '200 %s\n200 %s\n200 %s\n' a a a b b b c c c >>want
	awk '{ print $1, $2 }' routes | diff want -
	head -n 5 own |
		awk '{ printf "{\"key\":%s,\"value\":\"v%s\"}\n", $1, $1 }' >want
	cat routes.d/[1-5] | diff want -
	run -1 kyro-get -d "$owner" "$gone"
	# Each shard's range, offset and change feed hold its keys only.
	for n in a b c; do
		case $n in a) r=8 ;; b) r=11 ;; c) r=14 ;; esac
		awk -v n="$n" -v gone="$gone" '$2 == n && $1 != gone { print $1 }' \
			own >want
		sed 's/^{"key":\([0-9]*\),.*/\1/' "routes.d/$r" | diff want -
		changes=$(awk -v n="$n" '$2 == n' own | wc -l)
		[ "$n" != "$owner" ] || changes=$((changes + 1))
		echo "{\"offset\":$changes}" | diff - "routes.d/$((r + 1))"
		[ "$(grep -o '"seq":' "routes.d/$((r + 2))" | wc -l)" -eq "$changes" ]
	done

	# The daemon reads 042 and 0x2a as 42, the hash would not; keys in a
	# body, several keys, or a query the daemon reads otherwise; routes of
	# the whole store, which are asked of each shard.  The front answers
	# each 400 itself (no shard named) with a JSON error, and no write
	# reaches a shard: their offsets stay.
	requests refused <<'EOF'
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
EOF
	[ "$(wc -l <refused)" -eq 17 ]
	awk '$1 != 400 || $2 != "-"' refused >bad
	none bad
	grep -Lx '{"error":"[^"]*"}' refused.d/* >bad
	none bad
	# A range over the shards, merged as docs/SCALING.md shows, is every
	# live key in order.
	K=$FRONT
	for s in a b c; do
		curl -s "$K/shard/$s/v1/range?start=0&end=99999&limit=1000"
	done | sort -t : -k 2,2n >merged
	awk -v gone="$gone" '$1 <= 99999 && $1 != gone { printf "{\"key\":%s,\"value\":\"v%s\"}\n", $1, $1 }' \
		some | diff - merged
	[ "$(wc -l <merged)" -gt 20 ]

	cat routes.d/9 routes.d/12 routes.d/15 >before
	printf 'GET /shard/%s/v1/offset\n' a b c | requests after
	cat after.d/1 after.d/2 after.d/3 | diff before -
}

# holds NODE KEYFILE PREFIX: NODE's directory, read with kyro-get, holds
# PREFIX then the key at each key of KEYFILE.
holds() {
	kyro-get -d "$1" -f tsv <"$2" |
		awk -F '\t' -v p="$3" '$2 != p $1 { bad = 1 } END { exit bad }'
}

@test "scaling: a killed node's keys fail at once through nginx while the other shards answer, come back with it, and a promoted replica takes exactly its shard's keys" {
	bulk PUT put keys v
	owners keys >own
	awk '$2 == "a" { print $1 }' own >a-keys
	awk '$2 == "b" { print $1 }' own >b-keys
	awk '$2 == "c" { print $1 }' own >c-keys
	# b has no replica: its keys are answered 502, with the proxy's JSON
	# error, in well under proxy_connect_timeout (a refused connect fails
	# at once); the other keys answer as before.
	node_kill b
	bulk GET get keys
	bulk PUT put keys w
	for f in get put; do
		awk 'NR == FNR { own[$1] = $2; next }
			$1 != (own[$2] == "b" ? 502 : 200) || $3 != own[$2] ||
			$4 >= 1.5' own "$f" >bad
		none bad
	done
	bodies_are get.d b-keys '{"error":"shard b: no node answered"}' --exact
	bodies_are get.d a-keys v
	bodies_are get.d c-keys v
	# No write for b's keys went to another shard: b alone holds them,
	# with their first values; a and c hold the second.
	owners keys | diff - own
	values_are b v
	values_are a w
	values_are c w
	# a has a replica: without its primary, shard a still reads (from
	# the replica, once it has the writes) and refuses writes at once.
	PROXY_HEADER= wait_until 10 converged a-keys w
	node_kill a
	PROXY_HEADER= bulk GET get a-keys
	awk '$1 != 200 || $4 >= 1.5' get >bad
	none bad
	bodies_are get.d a-keys w
	bulk PUT put a-keys x
	awk '$1 != 502 || $4 >= 1.5' put >bad
	none bad
	# Without the replica as well, its reads fail too, at once.
	node_kill ra
	PROXY_HEADER= bulk GET get a-keys
	awk '$1 != 502 || $4 >= 1.5' get >bad
	none bad
	# Back on their addresses, the primaries answer again, at once; a's
	# reads too, while its replica is down.
	node_start b
	node_start a
	PROXY_HEADER= bulk GET get keys
	all_status 200 get
	bodies_are get.d b-keys v
	bodies_are get.d a-keys w
	bodies_are get.d c-keys w

	# a's primary is lost for good once its replica has caught up
	# again: the replica, restarted without --replica-of, becomes shard
	# a's primary once the shard points at it and nginx reloads.
	node_start ra --replica-of "$(node_url a)"
	wait_until 10 holds ra a-keys w
	node_kill a
	node_kill ra
	node_start ra
	NODE_PORT[a]=${NODE_PORT[ra]}
	nginx_reload
	wait_until 10 eval 'bulk PUT put a-keys z && ! grep -qv "^200 " put'
	bulk PUT put keys z
	all_status 200 put
	# The ring did not move: b and c hold what they held, ra all of a's.
	PRIMARY[a]=ra
	owners keys | diff - own
	values_are ra z
	values_are b z
	values_are c z
}

@test "docs/SCALING.md: every nginx block is in contrib/nginx word for word" {
	python3 - "$BATS_TEST_DIRNAME/../../docs/SCALING.md" "$CONTRIB"/* <<'PY'
import re, sys
doc = open(sys.argv[1]).read()
conf = "".join(open(f).read() for f in sys.argv[2:])
blocks = re.findall(r"^```nginx\n(.*?)^```$", doc, re.S | re.M)
if len(blocks) < 4:
    sys.exit("only %d nginx blocks" % len(blocks))
for b in blocks:
    if b not in conf:
        sys.exit("not in contrib/nginx:\n" + b)
PY
}
