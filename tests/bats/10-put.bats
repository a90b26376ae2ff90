#!/usr/bin/env bats
#
# kyro-put: keys, escapes, atomic batches, the 16 MiB limit, --sync,
# --print-offset, -v and --delete (man/kyro-put.1, issue 2).

bats_require_minimum_version 1.5.0

load helpers

MAX=16777216 # 16 MiB, the largest value

# A store holding key 100 = "keep", for tests that must show a rejected
# batch changed nothing.
seed() {
	run -0 --separate-stderr kyro-put -d "$D" 100 keep
	assert_output ''
	stderr_is ''
}

# reject_batch LINE FILE: kyro-put -d $D < FILE exits 2 with nothing on
# stdout and exactly one line "kyro-put: line LINE: REASON" on stderr.
reject_batch() {
	run -2 --separate-stderr kyro-put -d "$D" <"$2"
	assert_output ''
	stderr_matches "^kyro-put: line $1: [^"$'\n'"]+$"
}

# bad_input BADLINE: write a batch to a file and print its name.  Lines 1
# to 3 are good (line 1 overwrites key 100, lines 2 and 3 put keys 1 and
# 2), line 4 is BADLINE (printf %b text: '\t' is a tab, '\\' a backslash)
# and line 5 puts key 4.
bad_input() {
	{
		printf '100\tchanged\n1\tone\n2\ttwo\n'
		printf '%b\n' "$1"
		printf '4\tfour\n'
	} >"$BATS_TEST_TMPDIR/bad.tsv"
	printf '%s\n' "$BATS_TEST_TMPDIR/bad.tsv"
}

# Nothing of a rejected batch landed: keys 1, 2 and 4 are absent and key
# 100 still reads "keep".
nothing_committed() {
	run -1 --separate-stderr kyro-get -d "$D" -f tsv 1 2 100 4
	assert_output $'100\tkeep'
	stderr_is $'kyro-get: 1: not found\nkyro-get: 2: not found\nkyro-get: 4: not found'
}

@test "kyro-put: a KEY VALUE pair is stored silently and reads back" {
	run -0 --separate-stderr kyro-put -d "$D" 42 'hello, world'
	assert_output ''
	stderr_is ''
	run -0 --separate-stderr kyro-get -d "$D" 42
	assert_output 'hello, world'
	stderr_is ''
}

@test "kyro-put: a missing data directory is created with a new store" {
	[ ! -e "$D" ]
	run -0 --separate-stderr kyro-put -d "$D" 1 one
	assert_output ''
	stderr_is ''
	[ -f "$D/MANIFEST" ]
}

@test "kyro-put: keys are decimal or 0x hexadecimal and name the same key" {
	run -0 --separate-stderr kyro-put -d "$D" 0x2a hex
	assert_output ''
	stderr_is ''
	run -0 --separate-stderr kyro-get -d "$D" -f tsv 42
	assert_output $'42\thex'
	printf '0x2A\tupper\n0\tzero\n0x0\tzero-hex\n' >in.tsv
	put_file in.tsv
	expect_all $'0\tzero-hex\n42\tupper'
}

@test "kyro-put: the largest key 18446744073709551615 is accepted in decimal and in hex" {
	run -0 --separate-stderr kyro-put -d "$D" 18446744073709551615 dec
	assert_output ''
	stderr_is ''
	expect_all $'18446744073709551615\tdec'
	run -0 --separate-stderr kyro-put -d "$D" 0xffffffffffffffff hex
	assert_output ''
	stderr_is ''
	expect_all $'18446744073709551615\thex'
}

@test "kyro-put: leading zeros are allowed in decimal and in hexadecimal keys" {
	# Both lie in 0..18446744073709551615, which is all the man page asks.
	run -0 --separate-stderr kyro-put -d "$D" 000000000000000000000042 dec
	assert_output ''
	stderr_is ''
	run -0 --separate-stderr kyro-put -d "$D" 0x0000000000000000002b hex
	assert_output ''
	stderr_is ''
	expect_all $'42\tdec\n43\thex'
}

@test "kyro-put: key operands with a sign, overflow, junk, spaces or nothing are refused and nothing is written" {
	seed
	for k in +1 18446744073709551616 0x10000000000000000 0x 0xg 12a 1.0 ' 1' '1 ' ''; do
		run -2 --separate-stderr kyro-put -d "$D" -- "$k" value
		assert_output ''
		stderr_starts_with "kyro-put: invalid key '$k'"
	done
	# A negative key operand is taken for an option unless after --.
	run -2 --separate-stderr kyro-put -d "$D" -- -1 value
	assert_output ''
	stderr_starts_with "kyro-put: invalid key '-1'"
	expect_all $'100\tkeep'
}

@test "kyro-put: a key with a sign on stdin rejects the whole batch with its line number" {
	seed
	reject_batch 4 "$(bad_input '-3\tminus')"
	nothing_committed
	reject_batch 4 "$(bad_input '+3\tplus')"
	nothing_committed
}

@test "kyro-put: a key that overflows 64 bits on stdin rejects the whole batch" {
	seed
	reject_batch 4 "$(bad_input '18446744073709551616\tover')"
	nothing_committed
	reject_batch 4 "$(bad_input '99999999999999999999\tover')"
	nothing_committed
	reject_batch 4 "$(bad_input '0x1ffffffffffffffff\tover')"
	nothing_committed
}

@test "kyro-put: an empty key on stdin rejects the whole batch" {
	seed
	reject_batch 4 "$(bad_input '\tempty-key')"
	nothing_committed
}

@test "kyro-put: a key with junk or spaces on stdin rejects the whole batch" {
	seed
	for k in 3x 0x 0xz 3.0 ' 3' '3 ' 'three' '0b11'; do
		reject_batch 4 "$(bad_input "$k\\tjunk")"
		nothing_committed
	done
}

@test "kyro-put: a line without a tab rejects the whole batch" {
	seed
	reject_batch 4 "$(bad_input '3 no-tab')"
	nothing_committed
}

@test "kyro-put: an empty line rejects the whole batch" {
	seed
	reject_batch 4 "$(bad_input '')"
	nothing_committed
}

@test "kyro-put: every escape on stdin decodes to its byte" {
	# \\ \t \n \r \0 \xHH (either case), then literal bytes.
	printf '1\t%s\n' 'a\\b\tc\nd\re\0f\x41\xfF\x7f\x00g' >in.tsv
	put_file in.tsv
	printf 'a\\b\tc\nd\re\0fA\377\177\0g' >want.bin
	run_to got.bin kyro-get -d "$D" -f raw 1
	[ "$status" -eq 0 ]
	stderr_is ''
	cmp want.bin got.bin
}

@test "kyro-put: bytes 0x80 and above and a CR inside a value are literal" {
	printf '1\tcaf\303\251 \377\n2\td\ros\n3\ta\tb\tc\n' >in.tsv
	put_file in.tsv
	kyro-get -d "$D" -f raw 1 >got1.bin
	printf 'caf\303\251 \377' | cmp - got1.bin
	kyro-get -d "$D" -f raw 2 >got2.bin
	printf 'd\ros' | cmp - got2.bin
	# Further tabs belong to the value.
	kyro-get -d "$D" -f raw 3 >got3.bin
	printf 'a\tb\tc' | cmp - got3.bin
}

@test "kyro-put: a final line without a newline is a record" {
	printf '1\tone\n2\ttwo' >in.tsv
	put_file in.tsv
	expect_all $'1\tone\n2\ttwo'
}

@test "kyro-put: an empty value is stored and reads back as an empty line" {
	printf '1\t\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-put -d "$D" 2 ''
	assert_output ''
	stderr_is ''
	run -0 --separate-stderr kyro-get -d "$D" -f tsv 1 2
	assert_output $'1\t\n2\t'
	stderr_is ''
}

@test "kyro-put: a VALUE operand is taken literally, without escapes" {
	run -0 --separate-stderr kyro-put -d "$D" 1 'a\tb\x41\'
	assert_output ''
	stderr_is ''
	kyro-get -d "$D" -f raw 1 >got.bin
	printf '%s' 'a\tb\x41\' | cmp - got.bin
}

@test "kyro-put: an unknown escape like \\q rejects the whole batch" {
	seed
	reject_batch 4 "$(bad_input '3\tbad\\q')"
	nothing_committed
	reject_batch 4 "$(bad_input '3\tbad\\a')"
	nothing_committed
}

@test "kyro-put: \\x with fewer than two hex digits rejects the whole batch" {
	seed
	reject_batch 4 "$(bad_input '3\tend\\x4')"
	nothing_committed
	reject_batch 4 "$(bad_input '3\tmid\\x4g-more')"
	nothing_committed
	reject_batch 4 "$(bad_input '3\tnone\\x')"
	nothing_committed
}

@test "kyro-put: a backslash at the end of a value rejects the whole batch" {
	seed
	reject_batch 4 "$(bad_input '3\ttrailing\\')"
	nothing_committed
}

@test "kyro-put: a value of exactly 16 MiB is stored and reads back byte-exact" {
	# Random bytes but for newline and backslash, which would need escapes:
	# NUL, tab, CR and bytes >= 0x80 stand for themselves on stdin.
	head -c "$MAX" /dev/urandom | tr '\n\\' 'AB' >want.bin
	[ "$(file_size want.bin)" -eq "$MAX" ]
	{ printf '7\t'; cat want.bin; printf '\n'; } >big.tsv
	put_file big.tsv
	run_to got.bin kyro-get -d "$D" -f raw 7
	[ "$status" -eq 0 ]
	stderr_is ''
	cmp want.bin got.bin
}

@test "kyro-put: a value one byte over 16 MiB rejects the whole batch" {
	seed
	{
		printf '100\tchanged\n1\tone\n2\ttwo\n3\t'
		head -c $((MAX + 1)) /dev/zero | tr '\0' v
		printf '\n4\tfour\n'
	} >over.tsv
	reject_batch 4 over.tsv
	nothing_committed
}

@test "kyro-put: a value over 16 MiB made of escapes is rejected too" {
	seed
	# 16 MiB of 'a' plus one escaped byte: the decoded value is too big.
	{
		printf '100\tchanged\n1\tone\n2\ttwo\n3\t'
		head -c "$MAX" /dev/zero | tr '\0' a
		printf '\\x00\n4\tfour\n'
	} >over.tsv
	reject_batch 4 over.tsv
	nothing_committed
}

@test "kyro-put: a bad line after many good ones commits nothing" {
	seed
	{
		printf '100\tchanged\n'
		seq 1 5000 | sed 's/$/\tv/'
		printf 'oops\tbad\n'
	} >in.tsv
	reject_batch 5002 in.tsv
	run -1 --separate-stderr kyro-get -d "$D" -f tsv 100 1 5000
	assert_output $'100\tkeep'
	stderr_is $'kyro-get: 1: not found\nkyro-get: 5000: not found'
}

@test "kyro-put: the same key twice in one batch keeps the last value" {
	printf '5\tfirst\n6\tsix\n5\tlast\n' >in.tsv
	put_file in.tsv
	expect_all $'5\tlast\n6\tsix'
}

@test "kyro-put: writing a key again replaces its value" {
	run -0 --separate-stderr kyro-put -d "$D" 5 old
	run -0 --separate-stderr kyro-put -d "$D" 5 new
	assert_output ''
	stderr_is ''
	expect_all $'5\tnew'
}

@test "kyro-put: --sync=always, --sync=batch and --sync=none are accepted" {
	n=0
	for mode in always batch none; do
		n=$((n + 1))
		run -0 --separate-stderr kyro-put -d "$D" --sync=$mode $n $mode
		assert_output ''
		stderr_is ''
	done
	printf '10\ta\n11\tb\n' >in.tsv
	run -0 --separate-stderr kyro-put -d "$D" --sync always <in.tsv
	assert_output ''
	stderr_is ''
	expect_all $'1\talways\n2\tbatch\n3\tnone\n10\ta\n11\tb'
}

@test "kyro-put: --sync=bogus is a usage error and creates nothing" {
	run -2 --separate-stderr kyro-put -d "$D" --sync=bogus 1 x
	usage_error kyro-put "^kyro-put: .*bogus"
	[ ! -e "$D" ]
	run -2 --separate-stderr kyro-put -d "$D" --sync= 1 x
	usage_error kyro-put "^kyro-put: "
	[ ! -e "$D" ]
}

@test "kyro-put: --print-offset prints the batch's last sequence number, rising across runs" {
	run -0 --separate-stderr kyro-put -d "$D" --print-offset 1 a
	assert_output '1'
	stderr_is ''
	printf '2\tb\n3\tc\n4\td\n' >in.tsv
	run -0 --separate-stderr kyro-put -d "$D" --print-offset <in.tsv
	assert_output '4'
	stderr_is ''
	run -0 --separate-stderr kyro-put -d "$D" --print-offset --delete 2 3
	assert_output '6'
	stderr_is ''
	# A snapshot does not restart the numbering.
	run -0 --separate-stderr kyro-snapshot -d "$D"
	run -0 --separate-stderr kyro-put -d "$D" --print-offset 9 z
	assert_output '7'
	stderr_is ''
}

@test "kyro-put: -v prints the summary on stderr and nothing on stdout" {
	printf '1\tone\n2\tline one\\nline two\n3\tcol\\tcol\n' >records.tsv
	run -0 --separate-stderr kyro-put -d "$D" -v <records.tsv
	assert_output ''
	stderr_is 'kyro-put: 3 records (3 puts, 0 deletes), last offset 3'
	run -0 --separate-stderr kyro-put -d "$D" -v --delete 1 3
	assert_output ''
	stderr_is 'kyro-put: 2 records (0 puts, 2 deletes), last offset 5'
	run -0 --separate-stderr kyro-put -d "$D" -v --print-offset 7 x
	assert_output '6'
	stderr_is 'kyro-put: 1 records (1 puts, 0 deletes), last offset 6'
}

@test "kyro-put: --delete with key operands deletes them silently" {
	printf '1\ta\n2\tb\n3\tc\n4\td\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-put -d "$D" --delete 1 0x3
	assert_output ''
	stderr_is ''
	expect_all $'2\tb\n4\td'
	run -1 --separate-stderr kyro-get -d "$D" 1
	assert_output ''
	stderr_is 'kyro-get: 1: not found'
}

@test "kyro-put: --delete reads keys from stdin, one per line" {
	printf '1\ta\n2\tb\n3\tc\n4\td\n' >in.tsv
	put_file in.tsv
	printf '2\n0x4\n' >keys.txt
	run -0 --separate-stderr kyro-put -d "$D" --delete <keys.txt
	assert_output ''
	stderr_is ''
	expect_all $'1\ta\n3\tc'
}

@test "kyro-put: --delete of an absent key succeeds" {
	run -0 --separate-stderr kyro-put -d "$D" 1 a
	run -0 --separate-stderr kyro-put -d "$D" --delete 99
	assert_output ''
	stderr_is ''
	expect_all $'1\ta'
}

@test "kyro-put: a bad key on --delete's stdin deletes nothing" {
	printf '1\ta\n2\tb\n3\tc\n' >in.tsv
	put_file in.tsv
	printf '1\n2\n-3\n' >keys.txt
	run -2 --separate-stderr kyro-put -d "$D" --delete <keys.txt
	assert_output ''
	stderr_matches $'^kyro-put: line 3: [^\n]+$'
	expect_all $'1\ta\n2\tb\n3\tc'
}

@test "kyro-put: a bad key operand of --delete deletes nothing" {
	printf '1\ta\n2\tb\n' >in.tsv
	put_file in.tsv
	run -2 --separate-stderr kyro-put -d "$D" --delete 1 2x
	assert_output ''
	stderr_starts_with "kyro-put: invalid key '2x'"
	expect_all $'1\ta\n2\tb'
}

@test "kyro-put: one operand, or three, is a usage error" {
	run -2 --separate-stderr kyro-put -d "$D" 1
	usage_error kyro-put '^kyro-put: '
	run -2 --separate-stderr kyro-put -d "$D" 1 a b
	usage_error kyro-put '^kyro-put: '
	[ ! -e "$D" ]
}

@test "kyro-put: a non-empty directory that is not a store is refused and left alone" {
	mkdir other
	echo precious >other/notes.txt
	run -2 --separate-stderr kyro-put -d other 1 x
	assert_output ''
	stderr_matches "^kyro-put: [^"$'\n'"]*'other'[^"$'\n'"]*$"
	run ls -A other
	assert_output 'notes.txt'
	[ "$(cat other/notes.txt)" = precious ]
}

@test "kyro-put: an empty existing directory becomes a store" {
	mkdir empty
	run -0 --separate-stderr kyro-put -d empty 1 x
	assert_output ''
	stderr_is ''
	[ -f empty/MANIFEST ]
}

@test "kyro-put: a CR before the newline rejects the whole batch, and the message shows it as \\r" {
	seed
	run -2 --separate-stderr kyro-put -d "$D" <"$(bad_input '3\tdos\r')"
	assert_output ''
	stderr_is "kyro-put: line 4: carriage return at the end of the line '3\\tdos\\r' (convert CR LF line endings to LF; write a CR that ends a value as \\r)"
	nothing_committed
	# The last line, without a newline, follows the same rule.
	printf '1\tone\n2\ttwo\r' >in.tsv
	reject_batch 2 in.tsv
	nothing_committed
}

@test "kyro-put: a value ending in CR is written with the \\r escape" {
	printf '2\tdos\\r\n' >in.tsv
	put_file in.tsv
	run_to got.bin kyro-get -d "$D" -f raw 2
	[ "$status" -eq 0 ]
	printf 'dos\r' | cmp - got.bin
}

@test "kyro-put: --delete accepts keys with CR LF line endings, on stdin and as operands" {
	printf '1\ta\n2\tb\n3\tc\n4\td\n' >in.tsv
	put_file in.tsv
	printf '2\r\n0x4\r\n' >keys.txt
	run -0 --separate-stderr kyro-put -d "$D" --delete <keys.txt
	assert_output ''
	stderr_is ''
	expect_all $'1\ta\n3\tc'
	run -0 --separate-stderr kyro-put -d "$D" --delete $'3\r'
	stderr_is ''
	run -0 --separate-stderr kyro-put -d "$D" $'5\r' five
	stderr_is ''
	expect_all $'1\ta\n5\tfive'
}

@test "kyro-put: running out of memory while reading stdin commits nothing, exit 2" {
	seed
	# Under a 64 MiB address space limit, getline() cannot grow its
	# buffer for the 128 MiB line 4: it fails with ENOMEM, without
	# ferror(), after three good lines.
	run -2 --separate-stderr bash -c '{ printf "100\tchanged\n1\tone\n2\ttwo\n"; head -c 134217728 /dev/zero | tr "\0" x; } |
		{ ulimit -v 65536; exec kyro-put -d "$1"; }' _ "$D"
	assert_output ''
	stderr_is 'kyro-put: cannot read standard input: Cannot allocate memory'
	run -1 --separate-stderr kyro-get -d "$D" -f tsv 1 2 100
	assert_output $'100\tkeep'
	stderr_is $'kyro-get: 1: not found\nkyro-get: 2: not found'
}

@test "kyro-put: under random allocation failures each run commits its whole batch with exit 0 or nothing with exit 2" {
	command -v fiu-run >/dev/null && [ -f /usr/lib/fiu/fiu_posix_preload.so ] ||
		fail "libfiu is missing: apt-get install fiu-utils libfiu-dev"
	# Values doubling to 4 KiB: getline() and the value buffer grow
	# (realloc) over and over, so a failure can hit any of them.
	awk 'BEGIN { v = "x"; for (i = 1; i <= 13; i++) { printf "%d\t%s\n", i, v; v = v v } }' >in.tsv
	local r ok=0 failed=0
	for r in $(seq 1 12); do
		rm -rf "$D"
		run --separate-stderr fiu-run -x -f '' \
			-c 'enable_random name=libc/mm/realloc,probability=0.3,failinfo=12' \
			kyro-put -d "$D" <in.tsv
		assert_output ''
		case $status in
		0)
			stderr_is ''
			dump "$D" got.tsv
			cmp in.tsv got.tsv
			ok=$((ok + 1))
			;;
		2)
			stderr_matches $'^kyro-put: [^\n]*(out of memory|Cannot allocate memory)$'
			if [ -e "$D/MANIFEST" ]; then
				dump "$D" got.tsv
				[ ! -s got.tsv ] || fail "run $r: exit 2 but committed: $(head -c 200 got.tsv)"
			fi
			failed=$((failed + 1))
			;;
		*) fail "run $r: exit $status: $stderr" ;;
		esac
	done
	echo "# $ok runs committed everything, $failed nothing" >&3
}

@test "kyro-put: an empty batch commits nothing and --print-offset prints the store's last sequence number" {
	run -0 --separate-stderr kyro-put -d "$D" --print-offset </dev/null
	assert_output '0'
	stderr_is ''
	printf '1\ta\n2\tb\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-put -d "$D" --print-offset </dev/null
	assert_output '2'
	stderr_is ''
	expect_all $'1\ta\n2\tb'
}
