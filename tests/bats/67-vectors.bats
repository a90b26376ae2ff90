#!/usr/bin/env bats
#
# Vectors from the shell: kyro-put --vectors and --fvecs, kyro-get
# --nearest (exact, graph, range, values, json, several queries) and
# --info, vector changes in the feed and their replay, and the graph
# built by kyro-snapshot --vectors and kyro-rmi-build --vectors.  The
# generated sets are small and seeded; recall is a floor, never a timing.

bats_require_minimum_version 1.5.0

load helpers

# gen_vecs N DIM SEED [FIRST]: N lines KEY<TAB>v1,...,vDIM, keys from
# FIRST (default 1), components in clusters: reproducible for a seed.
gen_vecs() {
	awk -v n="$1" -v dim="$2" -v seed="$3" -v first="${4:-1}" 'BEGIN {
		srand(seed)
		for (c = 0; c < 8; c++)
			for (j = 0; j < dim; j++)
				ctr[c, j] = rand() * 10
		for (i = 0; i < n; i++) {
			c = int(rand() * 8)
			line = (first + i) "\t"
			for (j = 0; j < dim; j++)
				line = line (j ? "," : "") \
					sprintf("%.4f", ctr[c, j] + rand() - 0.5)
			print line
		}
	}'
}

# to_fvecs: KEY<TAB>VECTOR (or bare VECTOR) lines on stdin as .fvecs on
# stdout.
to_fvecs() {
	perl -ne 'chomp; s/^.*\t//; my @v = split /,/;
		print pack("l<", scalar @v), pack("f<*", @v);'
}

# The vector changes of $D: KEY<TAB>VECTOR lines, in commit order.
vector_changes() {
	kyro-get -d "$D" --changes | awk -F '\t' '$2 == "vector" { print $3 "\t" $4 }'
}

@test "vectors: text lines put vectors that the feed gives back exactly" {
	printf '1\t0.5,-2,3e-4\n7\t1,2,3\n' >in.tsv
	run -0 --separate-stderr kyro-put -d "$D" --vectors -v <in.tsv
	stderr_is 'kyro-put: 2 records (0 puts, 2 vectors, 0 deletes), last offset 2'
	run -0 vector_changes
	assert_output "$(printf '1\t0.5,-2,0.0003\n7\t1,2,3')"
	# A vector leaves the key's value alone: there is none.
	run -1 --separate-stderr kyro-get -d "$D" 1
	stderr_is 'kyro-get: 1: not found'
}

@test "vectors: KEY<TAB>VALUE<TAB>VECTOR puts the value too, and operands put one vector" {
	printf '5\thello\\tworld\t1,1\n' | kyro-put -d "$D" --vectors
	run -0 kyro-get -d "$D" 5
	assert_output 'hello\tworld'
	run -0 --separate-stderr kyro-put -d "$D" --vectors 6 ' 2 , 4 '
	run -0 vector_changes
	assert_output "$(printf '5\t1,1\n6\t2,4')"
	run -2 --separate-stderr kyro-put -d "$D" --vectors 6 '2,x'
	usage_error kyro-put "^kyro-put: invalid vector: component 2 is not a number: 'x'$"
}

@test "vectors: .fvecs from a file and from stdin, keys from --first-key" {
	gen_vecs 5 3 11 | to_fvecs >a.fvecs
	[ "$(file_size a.fvecs)" -eq $((5 * 16)) ]
	run -0 --separate-stderr kyro-put -d "$D" --fvecs a.fvecs
	stderr_is ''
	run -0 --separate-stderr kyro-put -d "$D" --fvecs --first-key 100 <a.fvecs
	run -0 vector_changes
	want=$(gen_vecs 5 3 11 0; gen_vecs 5 3 11 100)
	# The components went through float32: compare at 4 decimals.
	assert_equal "$(awk -F '\t' '{ n = split($2, v, ","); s = $1 "\t";
		for (i = 1; i <= n; i++) s = s (i > 1 ? "," : "") sprintf("%.4f", v[i]);
		print s }' <<<"$output")" "$want"
}

@test "vectors: another dimension than the store's is refused, naming the line, and nothing is written" {
	kyro-put -d "$D" --vectors 1 1,2,3
	printf '2\t1,2,3\n3\t1,2\n4\t5,6,7\n' >in.tsv
	run -2 --separate-stderr kyro-put -d "$D" --vectors <in.tsv
	assert_output ''
	stderr_is "kyro-put: line 2: 2 components, but the store's dimension is 3"
	run -0 vector_changes
	assert_output "$(printf '1\t1,2,3')"
	gen_vecs 2 4 1 | to_fvecs >four.fvecs
	run -2 --separate-stderr kyro-put -d "$D" --fvecs four.fvecs
	stderr_is "kyro-put: record 1: 4 components, but the store's dimension is 3"
	run -2 --separate-stderr kyro-put -d "$D" --vectors 9 1,2
	stderr_is "kyro-put: VECTOR: 2 components, but the store's dimension is 3"
	run -0 vector_changes
	assert_output "$(printf '1\t1,2,3')"
}

@test "vectors: an input whose dimensions differ is refused before the store has one" {
	printf '1\t1,2\n2\t3,4\n3\t5,6,7\n' >in.tsv
	run -2 --separate-stderr kyro-put -d "$D" --vectors <in.tsv
	stderr_is 'kyro-put: line 3: 3 components, but line 1 has 2'
	run -0 vector_changes
	assert_output ''
	# The store took no dimension from the dropped batch.
	run -0 kyro-put -d "$D" --vectors 1 1,2,3
}

@test "vectors: NaN, infinity, overflow, an empty or bad component is refused with its line" {
	local bad
	kyro-put -d "$D" --vectors 1 1,2
	for bad in 'nan,1:component 1 is not finite' '1,inf:component 2 is not finite' \
		'1e39,1:component 1 is not finite' '1,,2:component 2 is empty' \
		'1,2x:component 2 is not a number' '1;2:component 1 is not a number'; do
		printf '2\t0,0\n3\t%s\n' "${bad%%:*}" >in.tsv
		run -2 --separate-stderr kyro-put -d "$D" --vectors <in.tsv
		stderr_starts_with "kyro-put: line 2: ${bad#*:}"
	done
	printf '2\t0,0\n3 1,2\n' >in.tsv
	run -2 --separate-stderr kyro-put -d "$D" --vectors <in.tsv
	stderr_is 'kyro-put: line 2: no tab between key and vector'
	run -0 vector_changes
	assert_output "$(printf '1\t1,2')"
}

@test "vectors: a truncated or non-finite .fvecs record is refused with its number" {
	gen_vecs 3 4 2 | to_fvecs >ok.fvecs
	head -c $((3 * 20 - 3)) ok.fvecs >cut.fvecs
	run -2 --separate-stderr kyro-put -d "$D" --fvecs cut.fvecs
	stderr_is 'kyro-put: record 3: truncated: 13 of its 16 bytes of components'
	head -c $((2 * 20 + 2)) ok.fvecs >cut2.fvecs
	run -2 --separate-stderr kyro-put -d "$D" --fvecs <cut2.fvecs
	stderr_is 'kyro-put: record 3: truncated: the input ends inside the dimension word'
	{ head -c 20 ok.fvecs; perl -e 'print pack("l<f<f<", 2, 1, 9**9**9)'; } >inf.fvecs
	run -2 --separate-stderr kyro-put -d "$D" --fvecs inf.fvecs
	stderr_is 'kyro-put: record 2: component 2 is not finite'
	perl -e 'print pack("l<", 0)' >zero.fvecs
	run -2 --separate-stderr kyro-put -d "$D" --fvecs zero.fvecs
	stderr_is 'kyro-put: record 1: dimension 0 is outside 1..65536 (not an .fvecs file?)'
	run -0 vector_changes
	assert_output ''
	run -2 --separate-stderr kyro-put -d "$D" --fvecs missing.fvecs
	stderr_matches "^kyro-put: cannot open 'missing.fvecs': "
}

# near ARGS...: like `run --separate-stderr kyro-get ARGS`, with each empty
# line of stdout shown as "--" ($output would lose the last one).
near() {
	run_to out.tsv kyro-get "$@"
	output=$(sed 's/^$/--/' out.tsv)
}

# Four points whose L2 distances from the origin are 0, 1, 4 and 18.
four_points() {
	printf '1\tone\t0,0\n2\t1,0\n3\tthree\t0,2\n4\tfour\t3,3\n' |
		kyro-put -d "$D" --vectors
}

@test "nearest: exact answers, nearest first, each answer ended by an empty line" {
	four_points
	near -d "$D" --nearest 2 <<<'0,0'
	assert_equal "$status" 0
	assert_output "$(printf '1\t0\n2\t1\n--')"
	# One query or several: the same rule.
	printf '0,0\n3,3\n' >q.txt
	near -d "$D" --nearest 3 --exact <q.txt
	assert_equal "$status" 0
	assert_output "$(printf '1\t0\n2\t1\n3\t4\n--\n4\t0\n3\t10\n2\t13\n--')"
	stderr_is ''
	# K past the number of vectors: all of them.
	near -d "$D" --nearest 10 <<<'0,0'
	assert_output "$(printf '1\t0\n2\t1\n3\t4\n4\t18\n--')"
	# Queries in .fvecs give the same answers.
	to_fvecs <q.txt >q.fvecs
	near -d "$D" --nearest 3 --fvecs <q.fvecs
	assert_equal "$status" 0
	assert_output "$(printf '1\t0\n2\t1\n3\t4\n--\n4\t0\n3\t10\n2\t13\n--')"
}

@test "nearest: --with-values, json, and the other metrics" {
	four_points
	near -d "$D" --nearest 2 --with-values <<<'0.5,0'
	assert_output "$(printf '1\t0.25\tone\n2\t0.25\n--')"
	printf '0,0\n0,2\n' >q.txt
	run -0 kyro-get -d "$D" --nearest 2 --with-values --format=json <q.txt
	assert_output "$(printf '%s\n' \
		'{"query":1,"hits":[{"key":1,"distance":0,"value":"one"},{"key":2,"distance":1,"value":null}]}' \
		'{"query":2,"hits":[{"key":3,"distance":0,"value":"three"},{"key":1,"distance":4,"value":"one"}]}')"
	run -0 kyro-get -d "$D" --nearest 1 -f json <<<'3,3'
	assert_output '{"query":1,"hits":[{"key":4,"distance":0}]}'
	# 1 - dot product: (3,3) first, then (0,2), (1,0), (0,0).
	near -d "$D" --nearest 4 --metric ip <<<'1,1'
	assert_output "$(printf '4\t-5\n3\t-1\n2\t0\n1\t1\n--')"
}

@test "nearest: --range LO HI searches only those keys" {
	four_points
	near -d "$D" --nearest 2 --range 3 4 <<<'0,0'
	assert_equal "$status" 0
	assert_output "$(printf '3\t4\n4\t18\n--')"
	near -d "$D" --range 2 3 --nearest 5 --exact <<<'0,0'
	assert_equal "$status" 0
	assert_output "$(printf '2\t1\n3\t4\n--')"
}

@test "nearest: nothing found is exit 1; bad queries and options are exit 2" {
	mkdir "$D"
	near -d "$D" --nearest 3 <<<'1,2'
	assert_equal "$status" 1
	assert_equal "$output" '--'
	stderr_is 'kyro-get: line 1: no vector found'
	four_points
	near -d "$D" --nearest 3 --range 5 9 <<<'1,2'
	assert_equal "$status" 1
	stderr_is 'kyro-get: line 1: no vector found'
	printf '0,0\n1,2,3\n0,2\n' >q.txt
	near -d "$D" --nearest 1 <q.txt
	assert_equal "$status" 2
	assert_output "$(printf '1\t0\n--')"
	stderr_starts_with 'kyro-get: line 2: '
	run -2 --separate-stderr kyro-get -d "$D" --nearest 1 <<<'nan,0'
	stderr_is "kyro-get: line 1: component 1 is not finite: 'nan'"
	run -2 --separate-stderr kyro-get -d "$D" --nearest 0
	usage_error kyro-get "^kyro-get: --nearest needs a number from 1 to 10000, not '0'$"
	run -2 --separate-stderr kyro-get -d "$D" --nearest 10001
	usage_error kyro-get "^kyro-get: --nearest needs a number from 1 to 10000"
	run -2 --separate-stderr kyro-get -d "$D" --exact 5
	usage_error kyro-get "^kyro-get: --ef, --exact, --metric, --with-values and --fvecs go with --nearest$"
	run -2 --separate-stderr kyro-get -d "$D" --nearest 1 7
	usage_error kyro-get "^kyro-get: --nearest reads its queries from stdin, and takes no KEY$"
	run -2 --separate-stderr kyro-get -d "$D" --nearest 1 --metric l1
	usage_error kyro-get "^kyro-get: invalid metric 'l1' \(l2, ip or cosine\)$"
	run -2 --separate-stderr kyro-get -d "$D" --nearest 1 --range 9 2
	usage_error kyro-get '^kyro-get: --range needs LO <= HI$'
	run -2 --separate-stderr kyro-get -d "$D" --nearest 1 --ef 100001
	usage_error kyro-get "^kyro-get: --ef needs a number from 1 to 100000, not '100001'$"
	run -2 --separate-stderr kyro-get -d "$D" --nearest 1 -f raw
	usage_error kyro-get "^kyro-get: --nearest and --info print tsv or json$"
}

@test "feed: vector changes in tsv, json and replay, and a replay copies them" {
	four_points
	kyro-put -d "$D" --delete 2
	printf '9\t-0.25,1e-10\n' | kyro-put -d "$D" --vectors
	run -0 kyro-get -d "$D" --changes
	assert_output "$(printf '%s\n' 1$'\t'put$'\t'1$'\t'one 2$'\t'vector$'\t'1$'\t'0,0 \
		3$'\t'vector$'\t'2$'\t'1,0 4$'\t'put$'\t'3$'\t'three 5$'\t'vector$'\t'3$'\t'0,2 \
		6$'\t'put$'\t'4$'\t'four 7$'\t'vector$'\t'4$'\t'3,3 8$'\t'delete$'\t'2$'\t' \
		9$'\t'vector$'\t'9$'\t'-0.25,1e-10)"
	run -0 kyro-get -d "$D" --changes --from 9 -f json
	assert_output '{"seq":9,"batch_first":9,"batch_last":9,"op":"vector","key":9,"vector":[-0.25,1e-10]}'
	run -0 kyro-get -d "$D" --changes --from 9 -f replay
	assert_output "$(printf 'vector\t9\t9\t-0.25,1e-10\ncommit\t9')"
	kyro-get -d "$D" --changes --from 0 --format=replay | kyro-put -d copy --replay
	run -0 kyro-get -d copy --changes
	assert_output "$(kyro-get -d "$D" --changes)"
	printf '0,0\n3,3\n-1,1\n' >q.txt
	run -0 kyro-get -d copy --nearest 5 --with-values <q.txt
	assert_output "$(kyro-get -d "$D" --nearest 5 --with-values <q.txt)"
	[ "$(grep -c . <<<"$output")" -eq 12 ]
	# A bad vector line in a replay drops its batch.
	printf 'vector\t1\t5\t1,nan\ncommit\t1\n' >bad.replay
	run -2 --separate-stderr kyro-put -d copy2 --replay <bad.replay
	stderr_is 'kyro-put: line 1: component 2 is not finite: '"'nan'"
	printf 'vector\t1\t5\t1,2,3\ncommit\t1\n' >dim.replay
	run -2 --separate-stderr kyro-put -d copy --replay <dim.replay
	stderr_is "kyro-put: line 1: 3 components, but the store's dimension is 2"
}

# recall FILE_A FILE_B K: the share of FILE_B's keys (answers in tsv,
# blank-line separated) that FILE_A's answer to the same query has too.
recall() {
	awk -v k="$3" '
		FNR == 1 { q = 0 }
		/^$/ { q++; next }
		FILENAME == ARGV[1] { got[q, $1] = 1; next }
		{ total++; if ((q, $1) in got) hit++ }
		END { printf "%.3f\n", total ? hit / total : 0 }' "$1" "$2"
}

@test "graph: kyro-snapshot --vectors builds it; answers keep a recall floor against --exact" {
	# Queries from the same clusters as the vectors, as in real use.
	gen_vecs 3100 16 5 >all.tsv
	head -n 3000 all.tsv | kyro-put -d "$D" --vectors
	tail -n 100 all.tsv | cut -f2 >q.txt
	run -0 --separate-stderr kyro-snapshot -d "$D" -v --vectors --m 8 --ef-construction 64
	stderr_matches $'^kyro-snapshot: generation 1: [0-9]+ keys, 3000 vectors, [0-9]+ bytes in [0-9.]+ s\nkyro-snapshot: vector index [0-9]+: 3000 vectors of dimension 16, metric l2, M 8, efConstruction 64, [0-9]+ bytes in [0-9.]+ s$'
	run -0 kyro-get -d "$D" --info
	assert_line "$(printf 'vector_index\thnsw')"
	assert_line "$(printf 'vector_dim\t16')"
	assert_line "$(printf 'vector_snapshot\t3000')"
	assert_line "$(printf 'vector_m\t8')"
	kyro-get -d "$D" --nearest 10 --exact <q.txt >exact.tsv
	kyro-get -d "$D" --nearest 10 --ef 32 <q.txt >graph.tsv
	[ "$(grep -c '^$' exact.tsv)" -eq 100 ]
	[ "$(grep -c . exact.tsv)" -eq 1000 ]
	# 0.996 when this was written.
	r=$(recall graph.tsv exact.tsv)
	echo "recall@10 $r"
	awk -v r="$r" 'BEGIN { exit !(r >= 0.95) }'
}

@test "graph: vectors written after the snapshot are found at once, deleted ones never" {
	gen_vecs 500 8 9 >base.tsv
	kyro-put -d "$D" --vectors <base.tsv
	kyro-snapshot -d "$D" --vectors
	kyro-put -d "$D" --vectors 100000 50,50,50,50,50,50,50,50
	run -0 kyro-get -d "$D" --nearest 1 <<<'50,50,50,50,50,50,50,50'
	assert_output "$(printf '100000\t0')"
	q=$(sed -n 7p base.tsv | cut -f2)
	run -0 kyro-get -d "$D" --nearest 1 <<<"$q"
	assert_output "$(printf '7\t0')"
	kyro-put -d "$D" --delete 7
	run -0 kyro-get -d "$D" --nearest 20 <<<"$q"
	refute_line --regexp $'^7\t'
	run -0 kyro-get -d "$D" --info
	assert_line "$(printf 'vector_delta\t2')"
}

@test "graph: kyro-rmi-build --vectors builds it for the current snapshot" {
	gen_vecs 400 8 3 | kyro-put -d "$D" --vectors
	kyro-snapshot -d "$D"
	run -0 kyro-get -d "$D" --info
	assert_line "$(printf 'vector_index\tnone')"
	run -0 --separate-stderr kyro-rmi-build -d "$D" --vectors --metric cosine -v
	stderr_matches '^kyro-rmi-build: vector index [0-9]+: 400 vectors of dimension 8, metric cosine, M 16, efConstruction 200, [0-9]+ bytes in [0-9.]+ s$'
	run -0 kyro-get -d "$D" --info -f json
	assert_output --regexp '"vector_index":"hnsw"'
	assert_output --regexp '"vector_metric":"cosine"'
	run -2 --separate-stderr kyro-rmi-build -d "$D" --vectors --leaves 4
	usage_error kyro-rmi-build '^kyro-rmi-build: --leaves, --router-bits and --max-size build the learned index, not --vectors$'
	run -2 --separate-stderr kyro-snapshot -d "$D" --m 4
	usage_error kyro-snapshot '^kyro-snapshot: --m, --ef-construction and --metric go with --vectors$'
	run -2 --separate-stderr kyro-rmi-build -d "$D" --vectors --m 1
	usage_error kyro-rmi-build "^kyro-rmi-build: --m needs a number from 2 to 128, not '1'$"
}

@test "graph: a store without vectors has none to build" {
	kyro-put -d "$D" 1 x
	kyro-snapshot -d "$D"
	run -2 --separate-stderr kyro-rmi-build -d "$D" --vectors
	assert_output ''
	stderr_starts_with 'kyro-rmi-build: '
	run -0 kyro-get -d "$D" --info
	assert_line "$(printf 'vector_dim\t0')"
	assert_line "$(printf 'vector_index\tnone')"
}

@test "verify and warmup: -v says what of the vectors and the graph was checked" {
	gen_vecs 300 8 4 | kyro-put -d "$D" --vectors
	kyro-snapshot -d "$D"
	run -0 --separate-stderr kyro-verify -v -d "$D"
	stderr_is "$(printf '%s\n' "kyro-verify: $D: clean (0 findings)" \
		"kyro-verify: $D: 300 vectors checked whole; no graph")"
	kyro-rmi-build -d "$D" --vectors
	run -0 --separate-stderr kyro-verify -v -d "$D"
	stderr_matches "graph [0-9]+: header checked \(--deep checks every block and link\)$"
	run -0 --separate-stderr kyro-verify -v --deep -d "$D"
	stderr_matches "^kyro-verify: $D: clean \(0 findings\)"$'\n'"kyro-verify: $D: 300 vectors checked whole; graph [0-9]+: every block and link checked$"
	run -0 --separate-stderr kyro-warmup -v -d "$D"
	stderr_matches '^kyro-warmup: [0-9]+\.[0-9] MB in [0-9.]+ s, 300 vectors and their graph included$'
	# Damage in the graph is found by --deep, named with its file.
	local g=("$D"/hnsw-*.idx)
	flip_byte "${g[0]}" $(($(file_size "${g[0]}") - 4096 - 100))
	run -1 --separate-stderr kyro-verify --deep -d "$D"
	assert_output --partial "hnsw-"
}

@test "graph: a damaged graph header is refused and every vector compared; a damaged block is an error" {
	gen_vecs 300 8 4 >base.tsv
	kyro-put -d "$D" --vectors <base.tsv
	kyro-snapshot -d "$D" --vectors
	cut -f2 base.tsv | head -n 20 >q.txt
	kyro-get -d "$D" --nearest 5 --exact <q.txt >exact.tsv
	local g=("$D"/hnsw-*.idx)
	cp "${g[0]}" good.idx
	flip_byte "${g[0]}" 10
	run_to graph.tsv kyro-get -d "$D" --nearest 5 <q.txt
	assert_equal "$status" 0
	stderr_matches "^kyro-get: warning: .*hnsw-[0-9a-f]+\.idx.*; comparing with every vector$"
	cmp exact.tsv graph.tsv
	run -0 kyro-get -d "$D" --info
	assert_line "$(printf 'vector_index\trefused')"
	cp good.idx "${g[0]}"
	flip_byte "${g[0]}" $(($(file_size good.idx) / 2))
	run -2 --separate-stderr kyro-get -d "$D" --nearest 5 <q.txt
	stderr_matches "^kyro-get: '[^']*hnsw-[0-9a-f]+\.idx': offset [0-9]+: block fails its checksum$"
}

@test "graph: a later snapshot keeps a graph with its parameters; --vectors alone keeps them too" {
	gen_vecs 300 8 8 >base.tsv
	head -n 200 base.tsv | kyro-put -d "$D" --vectors
	kyro-snapshot -d "$D" --vectors --m 6 --metric ip
	tail -n 100 base.tsv | kyro-put -d "$D" --vectors
	run -0 --separate-stderr kyro-snapshot -d "$D" -v
	stderr_matches $'\nkyro-snapshot: vector index 2: 300 vectors of dimension 8, metric ip, M 6, efConstruction 200, [0-9]+ bytes in [0-9.]+ s$'
	run -0 kyro-get -d "$D" --info
	assert_line "$(printf 'vector_snapshot\t300')"
	assert_line "$(printf 'vector_delta\t0')"
	assert_line "$(printf 'vector_m\t6')"
	kyro-put -d "$D" --vectors 1000 1,1,1,1,1,1,1,1
	run -0 --separate-stderr kyro-snapshot -d "$D" -v --vectors
	stderr_matches 'metric ip, M 6, efConstruction 200, '
	kyro-put -d "$D" --vectors 1001 1,1,1,1,1,1,1,2
	run -0 --separate-stderr kyro-snapshot -d "$D" -v --vectors --ef-construction 50
	stderr_matches 'metric l2, M 16, efConstruction 50, '
}
