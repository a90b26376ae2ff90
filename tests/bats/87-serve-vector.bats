#!/usr/bin/env bats
#
# kyro-serve's vector routes: insert, batch insert and search (and the
# seed's names), every bad input, the graph build job, auth and the rate
# limit, and the vector figures of /metrics.

load helpers
load serve-helpers

bats_require_minimum_version 1.5.0

setup() {
	kyro_setup
	unset KYRODB_AUTH_TOKEN KYRODB_MAX_VALUE_BYTES KYRODB_RATE_LIMIT_RPS \
		KYRODB_RATE_LIMIT_BURST KYRODB_AUTO_SNAPSHOT_RECORDS KYRODB_LOG_LEVEL \
		KYRODB_DISABLE_HTTP_LOG KYRODB_WARM_ON_START KYRODB_MAX_BATCH_KEYS \
		KYRODB_MAX_RANGE KYRODB_MAX_VECTOR_BATCH_BYTES KYRODB_VECTOR_RECALL_EVERY \
		NOTIFY_SOCKET
}

teardown() {
	serve_teardown
}

# vsearch BODY: POST /v1/vector/search; must answer 200.
vsearch() {
	http POST /v1/vector/search --data-binary "$1"
	assert_equal "$HTTP_STATUS" 200
}

# keys_of: the result keys of the last answer, space-separated.
keys_of() {
	python3 -c 'import json,sys; print(" ".join(str(r["key"]) for r in json.load(sys.stdin)["results"]))' \
		<<<"$HTTP_BODY"
}

# field NAME: a top-level member of the last answer, as JSON.
field() {
	python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin).get(sys.argv[1])))' "$1" \
		<<<"$HTTP_BODY"
}

# gen_batch FILE N DIM SEED FIRST: an insert_batch body of N vectors of
# DIM, keys FIRST.., in clusters, seeded.
gen_batch() {
	python3 - "$@" <<'PY'
import json, random, sys
f, n, dim, seed, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rnd = random.Random(seed)
centres = [[rnd.uniform(-1, 1) for _ in range(dim)] for _ in range(16)]
items = []
for i in range(n):
    c = centres[rnd.randrange(16)]
    items.append({"key": first + i, "vector": [round(x + rnd.gauss(0, 0.1), 5) for x in c]})
json.dump({"items": items}, open(f, "w"))
PY
}

# ---- the round trip ----

@test "kyro-serve vectors: insert then search, nearest first, values in the answer" {
	serve_start
	http POST /v1/vector/insert --data-binary '{"key":1,"vector":[0,0,1],"value":"one"}'
	expect 200 '{"offset":2}'
	http POST /v1/vector/insert --data-binary '{"key":2,"vector":[0,1,1]}'
	expect 200 '{"offset":3}'
	http POST /v1/vector/insert --data-binary '{"key":18446744073709551615,"vector":[-1.5,0,1e-3]}'
	expect 200 '{"offset":4}'
	printf 'a\377' >"$BATS_TEST_TMPDIR/bin"
	http PUT /v1/kv/2 --data-binary @"$BATS_TEST_TMPDIR/bin"
	vsearch '{"vector":[0,0.5,1],"k":2}'
	assert_equal "$HTTP_BODY" '{"results":[{"key":1,"distance":0.25},{"key":2,"distance":0.25}],"exact":true}'
	vsearch '{"vector":[0,0,1],"k":10,"with_values":true}'
	assert_equal "$HTTP_BODY" '{"results":[{"key":1,"distance":0,"value":"one"},{"key":2,"distance":1,"value_base64":"Yf8="},{"key":18446744073709551615,"distance":3.248001,"value":null}],"exact":true}'
	assert_equal "$(header Content-Type)" "application/json"
	# Exact on request, a key range, and another metric.
	vsearch '{"vector":[0,0,1],"k":10,"exact":true,"range":{"lo":2,"hi":18446744073709551615}}'
	assert_equal "$(keys_of)" "2 18446744073709551615"
	vsearch '{"vector":[0,0,1],"k":10,"range":{"hi":1}}'
	assert_equal "$(keys_of)" "1"
	vsearch '{"vector":[0,0,2],"k":1,"metric":"cosine"}'
	assert_equal "$HTTP_BODY" '{"results":[{"key":1,"distance":0}],"exact":true}'
	# The value alone is left as it was by a vector-only insert.
	http POST /v1/vector/insert --data-binary '{"key":1,"vector":[5,5,5]}'
	http GET '/v1/lookup?key=1'
	expect 200 '{"key":1,"value":"one"}'
	# A delete takes the vector with the value.
	http POST /v1/delete --data-binary '{"key":1}'
	vsearch '{"vector":[5,5,5],"k":10}'
	assert_equal "$(keys_of)" "2 18446744073709551615"
}

@test "kyro-serve vectors: a vector is found by the search made the moment its insert returned" {
	serve_start
	local i
	for i in $(seq 1 40); do
		http POST /v1/vector/insert --data-binary "{\"key\":$i,\"vector\":[$i,$((i * 7 % 13)),1]}"
		assert_equal "$HTTP_STATUS" 200
		vsearch "{\"vector\":[$i,$((i * 7 % 13)),1],\"k\":1}"
		assert_equal "$HTTP_BODY" "{\"results\":[{\"key\":$i,\"distance\":0}],\"exact\":true}"
	done
}

@test "kyro-serve vectors: the seed's /v1/insert {doc_id, embedding} and /v1/search {query_embedding, k}" {
	serve_start
	http POST /v1/insert --data-binary '{"doc_id":7,"embedding":[1,2],"value":"seven"}'
	expect 200 '{"offset":2}'
	http POST /v1/insert --data-binary '{"doc_id":8,"embedding":[1,3]}'
	expect 200 '{"offset":3}'
	http POST /v1/search --data-binary '{"query_embedding":[1,2],"k":1,"with_values":true}'
	expect 200 '{"results":[{"key":7,"distance":0,"value":"seven"}],"exact":true}'
	http POST /v1/search --data-binary '{"query_embedding":[1,3]}'
	expect 200 '{"results":[{"key":8,"distance":0},{"key":7,"distance":1}],"exact":true}'
	# The native names are not the seed's, and the seed's not native.
	http POST /v1/insert --data-binary '{"key":9,"vector":[1,2]}'
	expect 400 '{"error":"unknown field '"'"'key'"'"'"}'
	http POST /v1/search --data-binary '{"vector":[1,2]}'
	assert_equal "$HTTP_STATUS" 400
	# The daemon keeps no unversioned names.
	http POST /vector/search --data-binary '{"vector":[1,2]}'
	expect 404 '{"error":"no such route"}'
	http GET /v1/vector/search
	assert_equal "$HTTP_STATUS" 405
	assert_equal "$(header Allow)" "POST"
}

@test "kyro-serve vectors: an answer whose values pass 64 MiB is refused, not built" {
	serve_start
	head -c 12000000 /dev/zero | tr '\0' 'v' >"$BATS_TEST_TMPDIR/big"
	local i
	for i in 1 2 3 4 5 6; do
		http PUT "/v1/kv/$i" --data-binary @"$BATS_TEST_TMPDIR/big"
		http POST /v1/vector/insert --data-binary "{\"key\":$i,\"vector\":[$i]}"
		assert_equal "$HTTP_STATUS" 200
	done
	vsearch '{"vector":[0],"k":5,"with_values":true}'
	assert_equal "$(keys_of)" "1 2 3 4 5"
	http POST /v1/vector/search --data-binary '{"vector":[0],"k":6,"with_values":true}'
	expect 400 '{"error":"the answer with values is over 64 MiB: ask for fewer results or without values"}'
	vsearch '{"vector":[0],"k":6}'
	assert_equal "$(keys_of)" "1 2 3 4 5 6"
}

@test "kyro-serve vectors: an empty store answers no results, exactly" {
	serve_start
	vsearch '{"vector":[1,2,3]}'
	assert_equal "$HTTP_BODY" '{"results":[],"exact":true}'
	# Values only: still no vectors, any dimension.
	put_json 1 '"v"'
	vsearch '{"vector":[1],"k":10000,"with_values":true}'
	assert_equal "$HTTP_BODY" '{"results":[],"exact":true}'
}

@test "kyro-serve vectors: the fast body parser reads a query exactly as the general one" {
	serve_start
	http POST /v1/vector/insert_batch --data-binary \
		'{"items":[{"key":1,"vector":[0,0,0]},{"key":2,"vector":[1e-45,-0.1,16777217]},{"key":3,"vector":[3.4e38,1,-1]}]}'
	assert_equal "$HTTP_STATUS" 200
	local v fast general n=0
	for v in '0,0,0' '1e-45,-0.1,16777217' '1E+2,-0,0.30000000000000004' \
		'123456789012345678,1.5e-10,-7' '3.4028234e38,2,-2.5E-3' ' 1 , 2 , 3 ' \
		'0.1,0.2,0.3' '-1e-46,4.9406564584124654e-324,1'; do
		# The same query: as the fast parser takes it, and with a
		# whole-key range, which only the general parser reads.
		http POST /v1/vector/search --data-binary "{\"vector\":[$v],\"k\":3,\"ef\":16}"
		fast="$HTTP_STATUS $HTTP_BODY"
		http POST /v1/vector/search --data-binary \
			"{\"vector\":[$v],\"k\":3,\"ef\":16,\"range\":{\"lo\":0}}"
		general="$HTTP_STATUS $HTTP_BODY"
		assert_equal "$fast" "$general"
		n=$((n + 1))
	done
	# Forms only the general parser takes, or refuses, answer as it does.
	http POST /v1/vector/search --data-binary '{"\u0076ector":[0,0,0],"k":1}'
	expect 200 '{"results":[{"key":1,"distance":0}],"exact":true}'
	http POST /v1/vector/search --data-binary '{"vector":[0,0,0],"k":1,"k":2}'
	assert_equal "$HTTP_STATUS" 400
	http POST /v1/vector/search --data-binary '{"vector":[01,0,0]}'
	assert_equal "$HTTP_STATUS" 400
	http POST /v1/vector/search --data-binary '{"vector":[.5,0,0]}'
	assert_equal "$HTTP_STATUS" 400
	http POST /v1/vector/search --data-binary '{"vector":[1.,0,0]}'
	assert_equal "$HTTP_STATUS" 400
	http POST /v1/vector/search --data-binary '{"vector":[0,0,0]}x'
	assert_equal "$HTTP_STATUS" 400
	http GET /metrics
	assert_equal "$(metric kyro_vector_search_bodies_fast_total)" "$n"
}

# ---- batches ----

@test "kyro-serve vectors: a batch is one commit; a bad item writes nothing of it" {
	KYRODB_MAX_BATCH_KEYS=3 serve_start
	http POST /v1/vector/insert_batch --data-binary \
		'{"items":[{"key":1,"vector":[1,0]},{"key":2,"vector":[0,1],"value":"two"}]}'
	expect 200 '{"offset":3,"count":2}'
	http GET /v1/replay
	assert_equal "$(python3 -c 'import json,sys; print(" ".join("%d-%d:%s" % (c["batch_first"], c["batch_last"], c["op"]) for c in json.load(sys.stdin)["changes"]))' <<<"$HTTP_BODY")" \
		"1-3:vector 1-3:vector 1-3:put"
	local body
	for body in \
		'{"items":[{"key":3,"vector":[1,0]},{"key":4,"vector":[1,0,0]}]}' \
		'{"items":[{"key":3,"vector":[1,0]},{"key":4,"vector":[1,1e39]}]}' \
		'{"items":[{"key":3,"vector":[1,0]},{"key":4,"vector":[1,"1"]}]}' \
		'{"items":[{"key":3,"vector":[1,0]},{"vector":[1,1]}]}' \
		'{"items":[{"key":3,"vector":[1,0]},{"key":-4,"vector":[1,1]}]}' \
		'{"items":[{"key":3,"vector":[1,0]},{"key":4,"vector":[1,1],"value":5}]}' \
		'{"items":[{"key":3,"vector":[1,0]},{"key":4,"vector":[1,1],"x":1}]}' \
		'{"items":[{"key":3,"vector":[1,0]},[4,[1,1]]]}' \
		'{"items":[{"key":3,"vector":[1,0,0]},{"key":4,"vector":[1,1,1]}]}' \
		'{"items":[]}' '{"items":{}}' '{"item":[]}' '{"items":[{"key":3,"vector":[1,0]}],"more":1}'; do
		http POST /v1/vector/insert_batch --data-binary "$body"
		assert_equal "$HTTP_STATUS for $body" "400 for $body"
	done
	http POST /v1/vector/insert_batch --data-binary \
		'{"items":[{"key":3,"vector":[1,0]},{"key":4,"vector":[1,0]},{"key":5,"vector":[1,0]},{"key":6,"vector":[1,0]}]}'
	expect 413 '{"error":"at most 3 items per batch"}'
	http GET /v1/offset
	expect 200 '{"offset":3}'
	vsearch '{"vector":[1,0],"k":10}'
	assert_equal "$(keys_of)" "1 2"
}

@test "kyro-serve vectors: concurrent first inserts of two dimensions: one wins, the others are 400, writes go on" {
	serve_start
	local i pids=()
	for i in $(seq 1 24); do
		if ((i % 2)); then
			curl -s -o "$BATS_TEST_TMPDIR/a$i" -w '%{http_code}' \
				--data-binary "{\"items\":[{\"key\":$i,\"vector\":[$i,1]},{\"key\":$((i + 100)),\"vector\":[$i,2]}]}" \
				"$URL/v1/vector/insert_batch" >"$BATS_TEST_TMPDIR/s$i" &
		else
			curl -s -o "$BATS_TEST_TMPDIR/a$i" -w '%{http_code}' \
				--data-binary "{\"key\":$i,\"vector\":[$i,1,0]}" \
				"$URL/v1/vector/insert" >"$BATS_TEST_TMPDIR/s$i" &
		fi
		pids+=($!)
	done
	wait "${pids[@]}"
	local ok2=0 ok3=0 bad=0 s
	for i in $(seq 1 24); do
		s=$(cat "$BATS_TEST_TMPDIR/s$i")
		case "$s:$((i % 2))" in
		200:1) ok2=$((ok2 + 2)) ;;
		200:0) ok3=$((ok3 + 1)) ;;
		400:*) bad=$((bad + 1))
			grep -q 'dimensions' "$BATS_TEST_TMPDIR/a$i" || fail "$(cat "$BATS_TEST_TMPDIR/a$i")" ;;
		*) fail "request $i answered $s: $(cat "$BATS_TEST_TMPDIR/a$i")" ;;
		esac
	done
	# Exactly one dimension won, and every 200 of it is searchable.
	((ok2 == 0 || ok3 == 0))
	((ok2 + ok3 > 0))
	http GET /health
	expect 200 '{"status":"ok"}'
	if ((ok2)); then q='[0,0]'; n=$ok2; else q='[0,0,0]'; n=$ok3; fi
	vsearch "{\"vector\":$q,\"k\":100}"
	assert_equal "$(keys_of | wc -w)" "$n"
	http POST /v1/vector/insert --data-binary "{\"key\":999,\"vector\":$q}"
	expect 200 "{\"offset\":$((n + 1))}"
}

# ---- bad input ----

@test "kyro-serve vectors: bad inserts are 400 with a clear message and write nothing" {
	serve_start
	http POST /v1/vector/insert --data-binary '{"key":1,"vector":[1,2,3]}'
	expect 200 '{"offset":1}'
	http POST /v1/vector/insert --data-binary '{"key":2,"vector":[1,2]}'
	expect 400 '{"error":"the vector has 2 dimensions; the store'"'"'s vectors have 3"}'
	http POST /v1/vector/insert --data-binary '{"key":2,"vector":[1,2,1e39]}'
	expect 400 '{"error":"'"'"'vector'"'"'[2] is not a finite float32 (1e+39)"}'
	http POST /v1/vector/insert --data-binary '{"key":2,"vector":[1,2,1e999]}'
	assert_equal "$HTTP_STATUS" 400
	[[ $HTTP_BODY == '{"error":"invalid JSON: real number overflow'* ]]
	http POST /v1/vector/insert --data-binary '{"key":2,"vector":[1,"2",3]}'
	expect 400 '{"error":"'"'"'vector'"'"'[1] is not a number"}'
	local body
	for body in '' 'nope' '[1]' '{"key":2}' '{"vector":[1,2,3]}' '{"key":2,"vector":[]}' \
		'{"key":2,"vector":null}' '{"key":2,"vector":[[1],2,3]}' '{"key":2,"vector":[1,2,NaN]}' \
		'{"key":2,"vector":[1,2,null]}' '{"key":2,"vector":[1,2,true]}' '{"key":-2,"vector":[1,2,3]}' \
		'{"key":2.5,"vector":[1,2,3]}' '{"key":"2","vector":[1,2,3]}' \
		'{"key":2,"vector":[1,2,3],"value":7}' '{"key":2,"vector":[1,2,3],"extra":1}' \
		'{"key":2,"key":3,"vector":[1,2,3]}' '{"key":2,"vector":[1,2,3]} x' \
		'{"key":2,"vector":[1,2,3'; do
		http POST /v1/vector/insert --data-binary "$body"
		assert_equal "$HTTP_STATUS for $body" "400 for $body"
		[[ $HTTP_BODY == '{"error":"'* ]] || fail "not a JSON error: $HTTP_BODY"
	done
	http GET /v1/offset
	expect 200 '{"offset":1}'
	http GET /health
	expect 200 '{"status":"ok"}'
}

@test "kyro-serve vectors: bad searches are 400 with a clear message" {
	serve_start
	http POST /v1/vector/insert --data-binary '{"key":1,"vector":[1,2,3]}'
	http POST /v1/vector/search --data-binary '{"vector":[1,2]}'
	expect 400 '{"error":"the query has 2 dimensions; the store'"'"'s vectors have 3"}'
	http POST /v1/vector/search --data-binary '{"vector":[1,2,3],"k":0}'
	expect 400 '{"error":"'"'"'k'"'"' must be an integer from 1 to 10000"}'
	http POST /v1/vector/search --data-binary '{"vector":[1,2,3],"k":10001}'
	expect 400 '{"error":"'"'"'k'"'"' must be an integer from 1 to 10000"}'
	http POST /v1/vector/search --data-binary '{"vector":[1,2,-1e39]}'
	expect 400 '{"error":"'"'"'vector'"'"'[2] is not a finite float32 (-1e+39)"}'
	local body
	for body in '' '{}' '{"vector":[1,2,1e999]}' '{"vector":[1,2,"3"]}' '{"vector":[]}' \
		'{"vector":[1,2,3],"k":18446744073709551615}' '{"vector":[1,2,3],"k":-1}' \
		'{"vector":[1,2,3],"k":2.5}' '{"vector":[1,2,3],"k":"2"}' '{"vector":[1,2,3],"ef":0}' \
		'{"vector":[1,2,3],"ef":65537}' '{"vector":[1,2,3],"range":{"lo":5,"hi":4}}' \
		'{"vector":[1,2,3],"range":[1,2]}' '{"vector":[1,2,3],"range":{"lo":1,"to":2}}' \
		'{"vector":[1,2,3],"exact":1}' '{"vector":[1,2,3],"with_values":"yes"}' \
		'{"vector":[1,2,3],"metric":"manhattan"}' '{"vector":[1,2,3],"query":1}' \
		'{"query_embedding":[1,2,3]}'; do
		http POST /v1/vector/search --data-binary "$body"
		assert_equal "$HTTP_STATUS for $body" "400 for $body"
		[[ $HTTP_BODY == '{"error":"'* ]] || fail "not a JSON error: $HTTP_BODY"
	done
	vsearch '{"vector":[1,2,3],"k":10000,"ef":65536}'
	assert_equal "$(keys_of)" "1"
	http GET /health
	expect 200 '{"status":"ok"}'
}

@test "kyro-serve vectors: bodies over the limits are 413 and write nothing" {
	KYRODB_MAX_VALUE_BYTES=10 KYRODB_MAX_VECTOR_BATCH_BYTES=1048576 serve_start
	http POST /v1/vector/insert --data-binary '{"key":1,"vector":[1],"value":"0123456789x"}'
	expect 413 '{"error":"the value is larger than 10 bytes"}'
	# A search body over 64 KiB + 2 MiB, an insert over that and the
	# value limit, a batch over KYRODB_MAX_VECTOR_BATCH_BYTES.
	python3 -c 'print("{\"vector\":[" + ",".join(["1"] * 1200000) + "]}")' >"$BATS_TEST_TMPDIR/big"
	http POST /v1/vector/search --data-binary @"$BATS_TEST_TMPDIR/big"
	expect 413 '{"error":"the body is larger than the limit"}'
	http POST /v1/vector/insert --data-binary @"$BATS_TEST_TMPDIR/big"
	expect 413 '{"error":"the body is larger than the limit"}'
	gen_batch "$BATS_TEST_TMPDIR/batch" 400 400 1 1
	[ "$(stat -c %s "$BATS_TEST_TMPDIR/batch")" -gt 1048576 ]
	http POST /v1/vector/insert_batch --data-binary @"$BATS_TEST_TMPDIR/batch"
	expect 413 '{"error":"the body is larger than the limit"}'
	# A vector over KYRO_MAX_DIM components fits the body, not the store.
	python3 -c 'print("{\"vector\":[" + ",".join(["1"] * 65537) + "]}")' >"$BATS_TEST_TMPDIR/wide"
	http POST /v1/vector/search --data-binary @"$BATS_TEST_TMPDIR/wide"
	expect 400 '{"error":"'"'"'vector'"'"' must be an array of 1 to 65536 numbers"}'
	http GET /v1/offset
	expect 200 '{"offset":0}'
}

# ---- auth and the rate limit ----

@test "kyro-serve vectors: the vector routes need the token and count against the rate limit" {
	KYRODB_AUTH_TOKEN=vtoken serve_start
	local p
	for p in /v1/vector/insert /v1/vector/insert_batch /v1/vector/search /v1/insert /v1/search \
		/v1/vector/build; do
		http POST "$p" --data-binary '{"key":1,"vector":[1]}'
		expect 401 '{"error":"a valid bearer token is needed"}'
	done
	http POST /v1/vector/insert -H 'Authorization: Bearer vtoken' --data-binary '{"key":1,"vector":[1]}'
	expect 200 '{"offset":1}'
	http POST /v1/vector/search -H 'Authorization: Bearer vtoken' --data-binary '{"vector":[1]}'
	expect 200 '{"results":[{"key":1,"distance":0}],"exact":true}'
	serve_stop
	KYRODB_RATE_LIMIT_RPS=1 KYRODB_RATE_LIMIT_BURST=2 serve_start
	local u="$URL/v1/vector/search" codes
	codes=$(curl -s -w '%{http_code} ' --data-binary '{"vector":[1]}' \
		-o /dev/null "$u" -o /dev/null "$u" -o /dev/null "$u")
	assert_equal "$codes" "200 200 429 "
}

# ---- the graph ----

@test "kyro-serve vectors: the build job, then searches use the graph and still see new inserts" {
	serve_start
	gen_batch "$BATS_TEST_TMPDIR/b1" 600 16 7 1
	http POST /v1/vector/insert_batch --data-binary @"$BATS_TEST_TMPDIR/b1"
	expect 200 '{"offset":600,"count":600}'
	vsearch '{"vector":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}'
	assert_equal "$(field exact)" true
	http POST '/v1/vector/build?m=8&ef_construction=abc'
	expect 400 '{"error":"?ef_construction= must be an integer from 1 to 65536"}'
	http POST '/v1/vector/build?m=1'
	assert_equal "$HTTP_STATUS" 400
	http POST '/v1/vector/build?metric=hamming'
	assert_equal "$HTTP_STATUS" 400
	http POST '/v1/vector/build?wait=1&m=8&ef_construction=100'
	assert_equal "$HTTP_STATUS" 200
	assert_equal "$(field kind)" '"vector_build"'
	assert_equal "$(field vectors)" 600
	assert_equal "$(field m)" 8
	assert_equal "$(field ef_construction)" 100
	assert_equal "$(field metric)" '"l2"'
	assert_equal "$(field snapshot)" true
	# Every stored vector finds itself through the graph.
	local i v
	for i in 1 77 300 600; do
		v=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["items"][int(sys.argv[2]) - 1]["vector"]))' \
			"$BATS_TEST_TMPDIR/b1" "$i")
		vsearch "{\"vector\":$v,\"k\":1,\"ef\":50}"
		assert_equal "$HTTP_BODY" "{\"results\":[{\"key\":$i,\"distance\":0}],\"exact\":false,\"ef\":50}"
	done
	vsearch '{"vector":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],"k":20}'
	assert_equal "$(field ef)" 64
	# A new vector is searchable at once beside the graph; a deleted
	# one is gone from it.
	http POST /v1/vector/insert --data-binary '{"key":5000,"vector":[9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9]}'
	vsearch '{"vector":[9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9],"k":1}'
	assert_equal "$HTTP_BODY" '{"results":[{"key":5000,"distance":0}],"exact":false,"ef":64}'
	v=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["items"][76]["vector"]))' \
		"$BATS_TEST_TMPDIR/b1")
	http POST /v1/delete --data-binary '{"key":77}'
	vsearch "{\"vector\":$v,\"k\":1}"
	[ "$(keys_of)" != 77 ]
	# Exact on request still, and without the graph's metric.
	vsearch '{"vector":[9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9],"k":1,"exact":true}'
	assert_equal "$(field exact)" true
	http GET /metrics
	assert_equal "$(metric kyro_vector_indexed)" 1
	assert_equal "$(metric kyro_vector_dimension)" 16
	assert_equal "$(metric kyro_vector_snapshot_vectors)" 600
	assert_equal "$(metric kyro_vector_delta)" 2
	grep -q '^kyro_vector_searches_total{mode="graph"} [1-9]' <<<"$HTTP_BODY"
	grep -q '^kyro_vector_search_ef_bucket{le="64"} [1-9]' <<<"$HTTP_BODY"
	grep -q '^kyro_job_runs_total{job="vector_build"} 1$' <<<"$HTTP_BODY"
	[ "$(metric kyro_vector_distances_total)" -gt 0 ]
	# Without a new vector the job rebuilds the snapshot's graph with
	# the parameters given, keeping the others.
	http POST '/v1/vector/build?wait=1&ef_construction=50'
	assert_equal "$HTTP_STATUS" 200
	assert_equal "$(field snapshot)" true
	http POST '/v1/vector/build?wait=1&metric=ip'
	assert_equal "$(field snapshot)" false
	assert_equal "$(field m)" 8
	assert_equal "$(field ef_construction)" 50
	assert_equal "$(field metric)" '"ip"'
}

@test "kyro-serve vectors: the build job with no vectors is 409; /v1/snapshot?vectors=1 builds the graph" {
	serve_start
	http POST '/v1/vector/build?wait=1'
	assert_equal "$HTTP_STATUS" 409
	http POST '/v1/snapshot?vectors=2'
	expect 400 '{"error":"?vectors= is 0 or 1"}'
	gen_batch "$BATS_TEST_TMPDIR/b1" 100 4 3 1
	http POST /v1/vector/insert_batch --data-binary @"$BATS_TEST_TMPDIR/b1"
	assert_equal "$HTTP_STATUS" 200
	http POST '/v1/snapshot?vectors=1&wait=1'
	assert_equal "$HTTP_STATUS" 200
	vsearch '{"vector":[0,0,0,0]}'
	assert_equal "$(field exact)" false
	http GET /metrics
	assert_equal "$(metric kyro_vector_indexed)" 1
	assert_equal "$(metric kyro_vector_delta)" 0
}

@test "kyro-serve vectors: searches keep answering while the graph is rebuilt" {
	serve_start
	local i
	for i in 0 1 2 3 4 5 6 7; do
		gen_batch "$BATS_TEST_TMPDIR/b$i" 1000 32 "$i" $((i * 1000 + 1))
		http POST /v1/vector/insert_batch --data-binary @"$BATS_TEST_TMPDIR/b$i"
		assert_equal "$HTTP_STATUS" 200
	done
	local q during=0 running
	q=$(python3 -c 'print("{\"vector\":[" + ",".join(["0.1"] * 32) + "],\"k\":10}")')
	http POST '/v1/vector/build?ef_construction=1000&threads=1'
	assert_equal "$HTTP_STATUS" 202
	# Search until the job is over; a search seen between two scrapes
	# that both say "running" ran during the build.
	for i in $(seq 1 5000); do
		http GET /metrics
		running=$(sed -n 's/^kyro_job_running{job="vector_build"} //p' <<<"$HTTP_BODY")
		[ "$running" = 1 ] || break
		vsearch "$q"
		assert_equal "$(grep -o '"key":' <<<"$HTTP_BODY" | wc -l)" 10
		http GET /metrics
		[ "$(sed -n 's/^kyro_job_running{job="vector_build"} //p' <<<"$HTTP_BODY")" = 1 ] &&
			during=$((during + 1))
	done
	[ "$running" = 0 ]
	grep -q '^kyro_job_failures_total{job="vector_build"} 0$' <<<"$HTTP_BODY"
	[ "$during" -gt 0 ] || skip "the build ended before a search could run during it"
	vsearch "$q"
	assert_equal "$(field exact)" false
}

@test "kyro-serve vectors: the recall spot-check answers sampled graph searches exactly" {
	KYRODB_VECTOR_RECALL_EVERY=1 serve_start
	gen_batch "$BATS_TEST_TMPDIR/b1" 500 8 5 1
	http POST /v1/vector/insert_batch --data-binary @"$BATS_TEST_TMPDIR/b1"
	http POST '/v1/vector/build?wait=1'
	assert_equal "$HTTP_STATUS" 200
	local i
	for i in $(seq 1 20); do
		vsearch "{\"vector\":[0.$i,0,0,0,0,0,0,0.$i],\"k\":5}"
		assert_equal "$(field exact)" false
	done
	checked() {
		http GET /metrics
		[ "$(metric kyro_vector_recall_checks_total)" -ge 1 ]
	}
	wait_until 20 checked
	local r
	r=$(metric kyro_vector_recall)
	python3 -c 'import sys; r = float(sys.argv[1]); sys.exit(not 0.5 <= r <= 1)' "$r"
	grep -q '^kyro_vector_recall_neighbours_total{found="yes"} [1-9]' <<<"$HTTP_BODY"
}

@test "kyro-serve vectors: the recall spot-check keeps within 1% of a core" {
	# Each check scans 20,000 x 256 floats, a few ms; the searches leave
	# the cores idle 10 ms between them, so a checker that sampled every
	# search would check most of them.
	python3 - "$BATS_TEST_TMPDIR/v.fvecs" <<'PY'
import array, random, sys
rnd = random.Random(7)
with open(sys.argv[1], "wb") as f:
    for _ in range(20000):
        array.array("i", [256]).tofile(f)
        array.array("f", [rnd.random() for _ in range(256)]).tofile(f)
PY
	kyro-put -d "$D" --fvecs --first-key 1 "$BATS_TEST_TMPDIR/v.fvecs"
	kyro-snapshot -d "$D" --vectors --m 8 --ef-construction 16
	KYRODB_VECTOR_RECALL_EVERY=1 serve_start
	local t n s
	t=$(python3 - "$PORT" <<'PY'
import http.client, json, random, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
rnd = random.Random(8)
t0 = time.monotonic()
for _ in range(100):
    q = [round(rnd.random(), 4) for _ in range(256)]
    c.request("POST", "/v1/vector/search", json.dumps({"vector": q, "k": 5}))
    r = c.getresponse()
    assert r.status == 200 and b'"exact":false' in r.read()
    time.sleep(0.01)
print(time.monotonic() - t0)
PY
)
	sleep 0.5
	http GET /metrics
	n=$(metric kyro_vector_recall_checks_total)
	s=$(metric kyro_vector_recall_cpu_seconds_total)
	echo "$n checks, $s CPU seconds, searches over $t s"
	[ "$n" -ge 1 ]
	[ $((n + $(metric kyro_vector_recall_skipped_total))) -eq 100 ]
	# After a check, 99 times its cost without one: the checks took 1%
	# of the time, plus the last one's cost (counted as twice the mean).
	python3 -c 'import sys; n, s, t = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]) + 0.5; sys.exit(not s <= t / 100 + 2 * s / n)' "$n" "$s" "$t"
}

@test "kyro-serve vectors: the change feed carries vector changes as op vector" {
	serve_start
	http POST /v1/vector/insert --data-binary '{"key":3,"vector":[0.5,-2,1e-7]}'
	http GET /v1/replay
	expect 200 '{"changes":[{"seq":1,"batch_first":1,"batch_last":1,"op":"vector","key":3,"vector":[0.5,-2,1e-07]}],"next":2,"more":false}'
}
