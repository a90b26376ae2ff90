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
	node_start a
	node_start b
	node_start c
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
