#!/usr/bin/env bats
#
# kyro-get: lookups, formats (value, tsv, json, raw), escapes on output,
# missing keys, keys from stdin, --all and --range over snapshot and WAL,
# dump and restore, the data directory (man/kyro-get.1, issue 2).

bats_require_minimum_version 1.5.0

load helpers

# A small store: 1 = one, 2 = two, 16 = sixteen.
small() {
	printf '1\tone\n2\ttwo\n16\tsixteen\n' >small.tsv
	put_file small.tsv
}

# Write to FILE the escaped form, as kyro-get prints it, of the bytes
# 0..255 in order (computed here, independently of the tools).  The text is
# built as a printf format: "\\NNN" (octal) stands for a byte as itself.
escaped_all_bytes() {
	local b o fmt=''
	for ((b = 0; b < 256; b++)); do
		case $b in
		92) fmt+='\\\\' ;;
		9) fmt+='\\t' ;;
		10) fmt+='\\n' ;;
		13) fmt+='\\r' ;;
		0) fmt+='\\0' ;;
		*)
			if ((b < 32 || b == 127)); then
				printf -v o '\\\\x%02x' "$b"
			else
				printf -v o '\\%03o' "$b"
			fi
			fmt+=$o
			;;
		esac
	done
	printf "$fmt" >"$1"
}

# Write the bytes 0..255 to FILE.
all_bytes() {
	local b o fmt=''
	for ((b = 0; b < 256; b++)); do
		printf -v o '\\%03o' "$b"
		fmt+=$o
	done
	printf "$fmt" >"$1"
}

@test "kyro-get: a present key prints its value and a newline, exit 0" {
	small
	run -0 --separate-stderr kyro-get -d "$D" 2
	assert_output 'two'
	stderr_is ''
}

@test "kyro-get: an absent key exits 1, prints nothing on stdout and 'KEY: not found' on stderr" {
	small
	run -1 --separate-stderr kyro-get -d "$D" 7
	assert_output ''
	stderr_is 'kyro-get: 7: not found'
}

@test "kyro-get: the other keys are still answered, in order, around a missing one" {
	small
	run -1 --separate-stderr kyro-get -d "$D" -f tsv 1 7 0x10
	assert_output $'1\tone\n16\tsixteen'
	stderr_is 'kyro-get: 7: not found'
	run -1 --separate-stderr kyro-get -d "$D" 16 8 9 2
	assert_output $'sixteen\ntwo'
	stderr_is $'kyro-get: 8: not found\nkyro-get: 9: not found'
}

@test "kyro-get: keys are read from stdin, one per line, when none is given" {
	small
	printf '16\n7\n0x2\n1' >keys.txt
	run -1 --separate-stderr kyro-get -d "$D" -f tsv <keys.txt
	assert_output $'16\tsixteen\n2\ttwo\n1\tone'
	stderr_is 'kyro-get: 7: not found'
	printf '1\n2\n' >keys.txt
	run -0 --separate-stderr kyro-get -d "$D" <keys.txt
	assert_output $'one\ntwo'
	stderr_is ''
}

@test "kyro-get: a malformed key operand is an error, exit 2" {
	small
	for k in -1 +1 18446744073709551616 x 0x ' 1' ''; do
		run -2 --separate-stderr kyro-get -d "$D" -- "$k"
		assert_output ''
		stderr_starts_with 'kyro-get: '
		[[ "$stderr" == *"'$k'"* ]]
	done
}

@test "kyro-get: a malformed key on stdin is an error naming its line, exit 2" {
	small
	printf '1\n1x\n' >keys.txt
	run -2 --separate-stderr kyro-get -d "$D" -f tsv <keys.txt
	assert_output $'1\tone'
	stderr_starts_with 'kyro-get: line 2: '
	[[ "$stderr" == *"'1x'"* ]]
}

@test "kyro-get: a deleted key is not found" {
	small
	run -0 --separate-stderr kyro-put -d "$D" --delete 2
	run -1 --separate-stderr kyro-get -d "$D" 2
	assert_output ''
	stderr_is 'kyro-get: 2: not found'
}

@test "kyro-get: --format=tsv prints the key in decimal, a tab and the escaped value" {
	run -0 --separate-stderr kyro-put -d "$D" 0xff 'a b'
	run -0 --separate-stderr kyro-get -d "$D" --format=tsv 0xff
	assert_output $'255\ta b'
	stderr_is ''
	run -0 --separate-stderr kyro-get -d "$D" -f tsv 255
	assert_output $'255\ta b'
}

@test "kyro-get: value and tsv formats write every escape" {
	printf '1\t%s\n' 'a\\b\tc\nd\re\0f\x01\x1f\x7f\xff\x41' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-get -d "$D" 1
	assert_output "$(printf 'a\\\\b\\tc\\nd\\re\\0f\\x01\\x1f\\x7f\377A')"
	stderr_is ''
	run -0 --separate-stderr kyro-get -d "$D" -f tsv 1
	assert_output "$(printf '1\ta\\\\b\\tc\\nd\\re\\0f\\x01\\x1f\\x7f\377A')"
	stderr_is ''
}

@test "kyro-get: every byte 0..255 is escaped exactly as the man page says" {
	all_bytes bytes.bin
	# Load the value through its escaped form, which kyro-put decodes.
	escaped_all_bytes want.txt
	{ printf '1\t'; cat want.txt; printf '\n'; } >in.tsv
	put_file in.tsv
	run_to got.txt kyro-get -d "$D" 1
	[ "$status" -eq 0 ]
	stderr_is ''
	{ cat want.txt; printf '\n'; } | cmp - got.txt
	run_to got.bin kyro-get -d "$D" -f raw 1
	[ "$status" -eq 0 ]
	cmp bytes.bin got.bin
}

@test "kyro-get: --format=raw prints exactly the bytes, with nothing added" {
	printf '1\tno newline\\0\\xff\n2\t\n' >in.tsv
	put_file in.tsv
	run_to got.bin kyro-get -d "$D" --format=raw 1
	[ "$status" -eq 0 ]
	stderr_is ''
	printf 'no newline\0\377' | cmp - got.bin
	run_to empty.bin kyro-get -d "$D" -f raw 2
	[ "$status" -eq 0 ]
	[ ! -s empty.bin ]
}

@test "kyro-get: --format=raw with two keys is a usage error" {
	small
	run -2 --separate-stderr kyro-get -d "$D" -f raw 1 2
	usage_error kyro-get '^kyro-get: .*raw'
	run -2 --separate-stderr kyro-get -d "$D" --format=raw 1 1
	usage_error kyro-get '^kyro-get: .*raw'
}

@test "kyro-get: --format=raw with two keys on stdin is an error" {
	small
	printf '1\n2\n' >keys.txt
	run -2 --separate-stderr kyro-get -d "$D" -f raw <keys.txt
	stderr_starts_with 'kyro-get: line 2: '
	stderr_matches 'raw'
	# Keys on stdin stream, so the first value may already be out.
	[[ "$output" == '' || "$output" == 'one' ]]
	# One key on stdin is fine.
	printf '2\n' >key.txt
	run -0 --separate-stderr kyro-get -d "$D" -f raw <key.txt
	assert_output 'two'
	stderr_is ''
}

@test "kyro-get: --format=raw of a missing key prints nothing and exits 1" {
	small
	run -1 --separate-stderr kyro-get -d "$D" -f raw 9
	assert_output ''
	stderr_is 'kyro-get: 9: not found'
}

@test "kyro-get: --format=json prints one object per line with the value as a string" {
	run -0 --separate-stderr kyro-put -d "$D" 42 hello
	run -0 --separate-stderr kyro-put -d "$D" 18446744073709551615 max
	run -0 --separate-stderr kyro-put -d "$D" 3 ''
	run -0 --separate-stderr kyro-get -d "$D" --format=json 42 3 18446744073709551615
	assert_output '{"key":42,"value":"hello"}
{"key":3,"value":""}
{"key":18446744073709551615,"value":"max"}'
	stderr_is ''
}

@test "kyro-get: --format=json escapes what JSON must, and jq decodes the exact bytes" {
	command -v jq >/dev/null || skip "jq is not installed"
	# Valid UTF-8 with a quote, a backslash, controls, DEL, NUL and a
	# 2-, 3- and 4-byte character.
	printf '1\t%s\n' 'q"b\\t\tn\nr\rz\0c\x01d\x7fé€😀' >in.tsv
	put_file in.tsv
	run_to want.bin kyro-get -d "$D" -f raw 1
	run_to got.json kyro-get -d "$D" -f json 1
	[ "$status" -eq 0 ]
	stderr_is ''
	[ "$(wc -l <got.json)" -eq 1 ]
	[ "$(jq -r 'keys_unsorted | join(",")' got.json)" = key,value ]
	[ "$(jq -r .key got.json)" = 1 ]
	jq -j .value got.json >decoded.bin
	cmp want.bin decoded.bin
}

@test "kyro-get: --format=json gives value_base64 for a value that is not UTF-8" {
	command -v jq >/dev/null || skip "jq is not installed"
	# A stray continuation byte, 0xff, an overlong '/', a surrogate, a
	# code point past U+10FFFF and a truncated sequence.
	printf '1\t\\xff\\xfe\n2\ta\\x80b\n3\t\\xc0\\xaf\n4\t\\xed\\xa0\\x80\n5\t\\xf4\\x90\\x80\\x80\n6\tok\\xe2\\x82\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-get -d "$D" -f json 1
	assert_output '{"key":1,"value_base64":"//4="}'
	stderr_is ''
	for k in 2 3 4 5 6; do
		run_to want.bin kyro-get -d "$D" -f raw $k
		run_to got.json kyro-get -d "$D" -f json $k
		[ "$status" -eq 0 ]
		[ "$(jq -r 'keys_unsorted | join(",")' got.json)" = key,value_base64 ]
		jq -r .value_base64 got.json | base64 -d >decoded.bin
		cmp want.bin decoded.bin
	done
}

@test "kyro-get: an unknown --format is a usage error" {
	small
	run -2 --separate-stderr kyro-get -d "$D" --format=xml 1
	usage_error kyro-get "^kyro-get: .*'xml'"
}

@test "kyro-get: --all lists every key in ascending numeric order as tsv" {
	printf '10\tten\n9\tnine\n18446744073709551615\tmax\n100\thundred\n0x20\tthirty-two\n0\tzero\n' >in.tsv
	put_file in.tsv
	expect_all $'0\tzero\n9\tnine\n10\tten\n32\tthirty-two\n100\thundred\n18446744073709551615\tmax'
	run -0 --separate-stderr kyro-get -d "$D" --all --format=value
	assert_output $'zero\nnine\nten\nthirty-two\nhundred\nmax'
	stderr_is ''
}

@test "kyro-get: --all merges the snapshot with newer puts, overwrites and deletes" {
	printf '1\ta\n2\tb\n3\tc\n4\td\n5\te\n10\tj\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	printf '2\tB\n10\tJ\n' >over.tsv
	put_file over.tsv
	run -0 --separate-stderr kyro-put -d "$D" --delete 3 5
	printf '0\tnew-zero\n7\tnew-seven\n11\tnew-eleven\n' >new.tsv
	put_file new.tsv
	# A key deleted and then put again is back.
	run -0 --separate-stderr kyro-put -d "$D" --delete 7
	run -0 --separate-stderr kyro-put -d "$D" 7 seven-again
	expect_all $'0\tnew-zero\n1\ta\n2\tB\n4\td\n7\tseven-again\n10\tJ\n11\tnew-eleven'
	run -0 --separate-stderr kyro-get -d "$D" --all -f json
	assert_output '{"key":0,"value":"new-zero"}
{"key":1,"value":"a"}
{"key":2,"value":"B"}
{"key":4,"value":"d"}
{"key":7,"value":"seven-again"}
{"key":10,"value":"J"}
{"key":11,"value":"new-eleven"}'
	stderr_is ''
}

@test "kyro-get: --range LO HI is inclusive at both ends, in ascending order" {
	printf '1\ta\n2\tb\n3\tc\n4\td\n5\te\n10\tj\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	run -0 --separate-stderr kyro-put -d "$D" 3 C
	run -0 --separate-stderr kyro-put -d "$D" --delete 4
	run -0 --separate-stderr kyro-get -d "$D" --range 2 5
	assert_output $'2\tb\n3\tC\n5\te'
	stderr_is ''
	run -0 --separate-stderr kyro-get -d "$D" --range 0x3 0x3
	assert_output $'3\tC'
	run -0 --separate-stderr kyro-get -d "$D" --range 6 9
	assert_output ''
	stderr_is ''
	run -0 --separate-stderr kyro-get -d "$D" --range 5 2
	assert_output ''
	stderr_is ''
	run -0 --separate-stderr kyro-get -d "$D" -f value --range 4 10
	assert_output $'e\nj'
}

@test "kyro-get: --range covers key 0 and the largest key" {
	printf '0\tlow\n18446744073709551615\thigh\n5\tmid\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-get -d "$D" --range 0 18446744073709551615
	assert_output $'0\tlow\n5\tmid\n18446744073709551615\thigh'
	stderr_is ''
	run -0 --separate-stderr kyro-get -d "$D" --range 6 0xffffffffffffffff
	assert_output $'18446744073709551615\thigh'
}

@test "kyro-get: --range needs exactly two valid keys" {
	small
	run -2 --separate-stderr kyro-get -d "$D" --range 1
	usage_error kyro-get '^kyro-get: '
	run -2 --separate-stderr kyro-get -d "$D" --range 1 2 3
	usage_error kyro-get '^kyro-get: '
	run -2 --separate-stderr kyro-get -d "$D" --range 1 x
	usage_error kyro-get '^kyro-get: '
}

@test "kyro-get: --all with a key, --all with --range, and --all with raw are usage errors" {
	small
	run -2 --separate-stderr kyro-get -d "$D" --all 1
	usage_error kyro-get '^kyro-get: '
	run -2 --separate-stderr kyro-get -d "$D" --all --range 1 2
	usage_error kyro-get '^kyro-get: '
	run -2 --separate-stderr kyro-get -d "$D" --all -f raw
	usage_error kyro-get '^kyro-get: '
}

@test "kyro-get: --all of an empty store prints nothing and exits 0" {
	: >empty.tsv
	put_file empty.tsv
	[ -f "$D/MANIFEST" ]
	expect_all ''
	run -0 --separate-stderr kyro-snapshot -d "$D"
	expect_all ''
	run -0 --separate-stderr kyro-get -d "$D" --range 0 18446744073709551615
	assert_output ''
	stderr_is ''
}

@test "kyro-get: --all of a store whose keys were all deleted prints nothing" {
	small
	run -0 --separate-stderr kyro-put -d "$D" --delete 1 2 16
	expect_all ''
	run -0 --separate-stderr kyro-snapshot -d "$D"
	expect_all ''
}

@test "kyro-get: dump piped into kyro-put reproduces a store exactly, every byte 0..255 included" {
	all_bytes bytes.bin
	escaped_all_bytes esc.txt
	{
		# Every single byte as its own value, under keys 1000..1255.
		for ((b = 0; b < 256; b++)); do
			printf '%d\t\\x%02x\n' $((1000 + b)) "$b"
		done
		printf '1\t'; cat esc.txt; printf '\n'
		printf '2\t\n'
		printf '18446744073709551615\tlast\n'
		printf '3\tdeleted later\n'
	} >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	run -0 --separate-stderr kyro-put -d "$D" --delete 3
	run -0 --separate-stderr kyro-put -d "$D" 4 'after the snapshot'
	run -0 --separate-stderr bash -c 'set -o pipefail; kyro-get -d "$1" --all --format=tsv | kyro-put -d "$2"' _ "$D" other
	assert_output ''
	stderr_is ''
	dump "$D" a.tsv
	dump other b.tsv
	cmp a.tsv b.tsv
	[ "$(wc -l <b.tsv)" -eq 260 ]
	run_to got.bin kyro-get -d other -f raw 1
	cmp bytes.bin got.bin
	for ((b = 0; b < 256; b += 51)); do
		run_to one.bin kyro-get -d other -f raw $((1000 + b))
		printf "\\$(printf '%03o' "$b")" | cmp - one.bin
	done
}

@test "kyro-get: KYRODB_DIR names the data directory when -d is not given" {
	run -0 --separate-stderr kyro-put -d "$D" 1 from-env
	run -0 --separate-stderr env KYRODB_DIR="$D" kyro-get 1
	assert_output 'from-env'
	stderr_is ''
	# -d wins over KYRODB_DIR.
	run -0 --separate-stderr kyro-put -d other 1 from-option
	run -0 --separate-stderr env KYRODB_DIR="$D" kyro-get -d other 1
	assert_output 'from-option'
	stderr_is ''
}

@test "kyro-get: ./kyrodb-data is the data directory without -d or KYRODB_DIR" {
	mkdir work
	cd work
	run -0 --separate-stderr kyro-put 1 default
	assert_output ''
	stderr_is ''
	[ -f kyrodb-data/MANIFEST ]
	run -0 --separate-stderr kyro-get 1
	assert_output 'default'
	stderr_is ''
	# An empty KYRODB_DIR counts as unset.
	run -0 --separate-stderr env KYRODB_DIR= kyro-get 1
	assert_output 'default'
}

@test "kyro-get: a missing data directory is an error, exit 2, and is not created" {
	run -2 --separate-stderr kyro-get -d nowhere 1
	assert_output ''
	stderr_is "kyro-get: cannot open 'nowhere': No such file or directory"
	[ ! -e nowhere ]
	run -2 --separate-stderr kyro-get -d nowhere --all
	assert_output ''
	stderr_is "kyro-get: cannot open 'nowhere': No such file or directory"
}

@test "kyro-get: a non-empty directory that is not a store is an error, exit 2" {
	mkdir other
	echo x >other/file
	run -2 --separate-stderr kyro-get -d other 1
	assert_output ''
	stderr_matches "^kyro-get: [^"$'\n'"]*'other'[^"$'\n'"]*$"
	run ls -A other
	assert_output 'file'
}

@test "kyro-get: keys on stdin with CR LF line endings are answered as without" {
	small
	printf '16\r\n7\r\n0x2\r\n1\r' >keys.txt
	run -1 --separate-stderr kyro-get -d "$D" -f tsv <keys.txt
	assert_output $'16\tsixteen\n2\ttwo\n1\tone'
	stderr_is 'kyro-get: 7: not found'
}

@test "kyro-get: key operands ending in a CR, as from a CR LF list, are answered" {
	small
	run -1 --separate-stderr kyro-get -d "$D" -f tsv $'1\r' $'7\r' $'0x10\r'
	assert_output $'1\tone\n16\tsixteen'
	stderr_is 'kyro-get: 7: not found'
	run -0 --separate-stderr kyro-get -d "$D" --range $'1\r' $'2\r'
	assert_output $'1\tone\n2\ttwo'
	stderr_is ''
}

@test "kyro-get: a CR inside a key is still an error, and the message shows it as \\r" {
	small
	printf '1\r2\n' >keys.txt
	run -2 --separate-stderr kyro-get -d "$D" <keys.txt
	assert_output ''
	stderr_is "kyro-get: line 1: invalid key '1\\r2'"
}

@test "kyro-get: a damaged snapshot read through stdin ends the run with exit 2 and one message, not a crash" {
	seq 1 600 | awk '{print $1"\tv"$1}' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-snapshot -d "$D"
	patch_byte "$D/snap-0000000000000001.bin" 4942 '\xff'
	seq 1 2000 >keys.txt
	run -2 --separate-stderr kyro-get -d "$D" <keys.txt
	[[ "$stderr" != *$'\n'* ]] || fail "more than one line on stderr: $stderr"
	stderr_matches '^kyro-get: .*snap-0000000000000001\.bin'
}

@test "kyro-get: running out of memory while reading stdin is an error, exit 2, not the end of the input" {
	small
	# Under a 64 MiB address space limit, getline() cannot grow its
	# buffer for a 128 MiB line: it fails with ENOMEM, without ferror().
	run -2 --separate-stderr bash -c '{ printf "1\n"; head -c 134217728 /dev/zero | tr "\0" x; } |
		{ ulimit -v 65536; exec kyro-get -d "$1"; }' _ "$D"
	assert_output 'one'
	stderr_is 'kyro-get: cannot read standard input: Cannot allocate memory'
}
