#!/usr/bin/env bats
#
# The command-line contract every tool shares: --help, --version, usage
# errors, exact long options, --, the forms of -d, the data directory
# errors, and write errors on stdout (man/kyro.7, STYLE.md "The tools").

bats_require_minimum_version 1.5.0

load helpers

TOOLS=(kyro-put kyro-get kyro-snapshot kyro-verify)

# A store in $D with key 1 = one.
store() {
	run -0 --separate-stderr kyro-put -d "$D" 1 one
}

@test "every tool: --help prints the usage on stdout and exits 0" {
	for t in "${TOOLS[@]}"; do
		run -0 --separate-stderr "$t" --help
		stderr_is ''
		assert_line --index 0 --regexp "^usage: $t( |$)"
		assert_output --partial '--help'
		assert_output --partial '--version'
		assert_output --partial '--dir'
	done
}

@test "every tool: -h prints the same help as --help" {
	for t in "${TOOLS[@]}"; do
		want=$("$t" --help)
		run -0 --separate-stderr "$t" -h
		assert_output "$want"
		stderr_is ''
	done
}

@test "every tool: --version prints 'TOOL (KyroDB) 0.1.0' and exits 0" {
	for t in "${TOOLS[@]}"; do
		run -0 --separate-stderr "$t" --version
		assert_output "$t (KyroDB) 0.1.0"
		stderr_is ''
	done
}

@test "every tool: an unknown long option is a usage error: usage and Try on stderr, exit 2" {
	for t in "${TOOLS[@]}"; do
		run -2 --separate-stderr "$t" -d "$D" --bogus
		usage_error "$t" "^$t: [^"$'\n'"]*--bogus"
	done
	[ ! -e "$D" ]
}

@test "every tool: an unknown short option is a usage error" {
	for t in "${TOOLS[@]}"; do
		run -2 --separate-stderr "$t" -d "$D" -Z
		usage_error "$t" "^$t: [^"$'\n'"]*-Z"
	done
	[ ! -e "$D" ]
}

@test "every tool: -d without its argument is a usage error" {
	for t in "${TOOLS[@]}"; do
		run -2 --separate-stderr "$t" -d
		usage_error "$t" "^$t: "
		run -2 --separate-stderr "$t" --dir
		usage_error "$t" "^$t: "
	done
	[ ! -e kyrodb-data ]
}

@test "kyro-put: long options must be spelled out: --verb, --del, --print-off and --sy are refused" {
	for o in --verb --del --print-off --sy=none --verbos --delete-; do
		run -2 --separate-stderr kyro-put -d "$D" "$o" 1 x
		usage_error kyro-put "^kyro-put: [^"$'\n'"]*${o%%=*}"
	done
	[ ! -e "$D" ]
}

@test "kyro-get: long options must be spelled out: --form, --al and --rang are refused" {
	store
	for o in --form=tsv --al --rang --forma=json --di="$D"; do
		run -2 --separate-stderr kyro-get -d "$D" "$o" 1
		usage_error kyro-get "^kyro-get: [^"$'\n'"]*${o%%=*}"
	done
}

@test "kyro-snapshot and kyro-verify: long options must be spelled out" {
	store
	for o in --verb --di="$D" --verbosee; do
		run -2 --separate-stderr kyro-snapshot -d "$D" "$o"
		usage_error kyro-snapshot "^kyro-snapshot: [^"$'\n'"]*${o%%=*}"
	done
	[ ! -e "$D/snap-0000000000000001.bin" ]
	for o in --rep --repai --verb --repair=yes; do
		run -2 --separate-stderr kyro-verify -d "$D" "$o"
		usage_error kyro-verify "^kyro-verify: [^"$'\n'"]*${o%%=*}"
	done
}

@test "every tool: an option that takes no argument refuses one given with =" {
	store
	run -2 --separate-stderr kyro-put -d "$D" --delete=1
	usage_error kyro-put '^kyro-put: .*--delete'
	run -2 --separate-stderr kyro-get -d "$D" --all=yes
	usage_error kyro-get '^kyro-get: .*--all'
	run -2 --separate-stderr kyro-snapshot -d "$D" --verbose=1
	usage_error kyro-snapshot '^kyro-snapshot: .*--verbose'
	expect_all $'1\tone'
}

@test "kyro-put: -- ends the options, so a value may start with a hyphen" {
	run -0 --separate-stderr kyro-put -d "$D" -- 1 -v
	assert_output ''
	stderr_is ''
	run -0 --separate-stderr kyro-put -d "$D" -- 2 --delete
	assert_output ''
	stderr_is ''
	expect_all $'1\t-v\n2\t--delete'
	run -0 --separate-stderr kyro-put -d "$D" --delete -- 1
	expect_all $'2\t--delete'
}

@test "kyro-get: -- ends the options, so a later argument is a key" {
	store
	run -0 --separate-stderr kyro-get -d "$D" -- 1
	assert_output 'one'
	stderr_is ''
	# After --, '--all' and '-v' are (malformed) keys, not options.
	run -2 --separate-stderr kyro-get -d "$D" -- --all
	assert_output ''
	stderr_starts_with 'kyro-get: '
	[[ "$stderr" == *"'--all'"* ]]
	[[ "$stderr" != *"unknown option"* ]]
}

@test "kyro-snapshot and kyro-verify: -- ends the options" {
	store
	run -0 --separate-stderr kyro-snapshot -d "$D" --
	assert_output ''
	stderr_is ''
	[ -f "$D/snap-0000000000000001.bin" ]
	run -0 --separate-stderr kyro-verify -d "$D" --
	assert_output ''
	stderr_is ''
}

@test "every tool: --dir=DIR, --dir DIR, -dDIR and -d DIR name the same store" {
	run -0 --separate-stderr kyro-put --dir="$D" 1 a
	run -0 --separate-stderr kyro-put --dir "$D" 2 b
	run -0 --separate-stderr kyro-put -d"$D" 3 c
	run -0 --separate-stderr kyro-put -d "$D" 4 d
	assert_output ''
	stderr_is ''
	want=$'1\ta\n2\tb\n3\tc\n4\td'
	for form in "--dir=$D" "-d$D"; do
		run -0 --separate-stderr kyro-get "$form" --all
		assert_output "$want"
		stderr_is ''
	done
	run -0 --separate-stderr kyro-get --dir "$D" --all
	assert_output "$want"
	for form in "--dir=$D" "-d$D"; do
		run -0 --separate-stderr kyro-verify "$form"
		assert_output ''
		stderr_is ''
	done
	run -0 --separate-stderr kyro-verify --dir "$D"
	assert_output ''
	run -0 --separate-stderr kyro-snapshot -d"$D"
	[ -f "$D/snap-0000000000000001.bin" ]
	run -0 --separate-stderr kyro-put --dir "$D" 5 e
	run -0 --separate-stderr kyro-snapshot --dir="$D"
	[ -f "$D/snap-0000000000000002.bin" ]
	run -0 --separate-stderr kyro-put --dir "$D" 6 f
	run -0 --separate-stderr kyro-snapshot --dir "$D"
	assert_output ''
	stderr_is ''
	[ -f "$D/snap-0000000000000003.bin" ]
	[ ! -e ./kyrodb-data ]
}

@test "kyro-put: short options group, as -vd DIR" {
	run -0 --separate-stderr kyro-put -vd "$D" 1 a
	assert_output ''
	stderr_is 'kyro-put: 1 records (1 puts, 0 deletes), last offset 1'
}

@test "every tool: -d naming a regular file fails with 'cannot open': Not a directory, exit 2" {
	echo data >plain
	for t in "${TOOLS[@]}"; do
		run -2 --separate-stderr "$t" -d plain </dev/null
		assert_output ''
		stderr_is "$t: cannot open 'plain': Not a directory"
	done
	run -2 --separate-stderr kyro-put -d plain 1 x
	assert_output ''
	stderr_is "kyro-put: cannot open 'plain': Not a directory"
	run -2 --separate-stderr kyro-get -d plain 1
	assert_output ''
	stderr_is "kyro-get: cannot open 'plain': Not a directory"
	[ "$(cat plain)" = data ]
}

@test "every tool: a MANIFEST of a newer format version is refused with a message naming the version, exit 2" {
	store
	patch_byte "$D/MANIFEST" 8 '\x03'
	cp "$D/MANIFEST" manifest.v3
	run -2 --separate-stderr kyro-get -d "$D" 1
	assert_output ''
	stderr_starts_with 'kyro-get: '
	stderr_matches 'version 3'
	run -2 --separate-stderr kyro-put -d "$D" 1 changed
	assert_output ''
	stderr_starts_with 'kyro-put: '
	stderr_matches 'version 3'
	run -2 --separate-stderr kyro-verify -d "$D"
	stderr_matches 'version 3'
	run -2 --separate-stderr kyro-snapshot -d "$D"
	assert_output ''
	stderr_matches 'version 3'
	cmp manifest.v3 "$D/MANIFEST"
}

@test "kyro-get: a write error on stdout (/dev/full) is an error, exit 2" {
	[ -w /dev/full ] || skip "no /dev/full"
	store
	run -2 --separate-stderr bash -c 'kyro-get -d "$1" 1 >/dev/full' _ "$D"
	assert_output ''
	stderr_is 'kyro-get: cannot write to standard output: No space left on device'
	run -2 --separate-stderr bash -c 'kyro-get -d "$1" --all >/dev/full' _ "$D"
	stderr_is 'kyro-get: cannot write to standard output: No space left on device'
	run -2 --separate-stderr bash -c 'kyro-get -d "$1" -f raw 1 >/dev/full' _ "$D"
	stderr_is 'kyro-get: cannot write to standard output: No space left on device'
}

@test "every tool: --help and --version to /dev/full fail with exit 2" {
	[ -w /dev/full ] || skip "no /dev/full"
	for t in "${TOOLS[@]}"; do
		for o in --help --version; do
			run -2 --separate-stderr bash -c '"$1" "$2" >/dev/full' _ "$t" "$o"
			stderr_is "$t: cannot write to standard output: No space left on device"
		done
	done
}

@test "kyro-put: --print-offset to /dev/full is an error, exit 2" {
	[ -w /dev/full ] || skip "no /dev/full"
	run -2 --separate-stderr bash -c 'kyro-put -d "$1" --print-offset 1 x >/dev/full' _ "$D"
	stderr_is 'kyro-put: cannot write to standard output: No space left on device'
}

@test "kyro-get: a reader that closes the pipe early gets no error message" {
	seq 1 20000 | sed 's/$/\tsome value to fill the pipe/' >in.tsv
	put_file in.tsv
	run --separate-stderr bash -c 'kyro-get -d "$1" --all | head -n 1' _ "$D"
	assert_output $'1\tsome value to fill the pipe'
	stderr_is ''
}

ALL_TOOLS=(kyro-put kyro-get kyro-snapshot kyro-verify kyro-rmi-build kyro-warmup)

@test "kyro-get: options may follow the operands, as GNU tools allow" {
	printf '7\tseven\n10\tten\n11\televen\n12\ttwelve\n' >in.tsv
	put_file in.tsv
	run -0 --separate-stderr kyro-get 10 -d "$D"
	assert_output 'ten'
	stderr_is ''
	[ ! -e kyrodb-data ]
	run -0 --separate-stderr kyro-get --range 10 12 --format=tsv -d "$D"
	assert_output $'10\tten\n11\televen\n12\ttwelve'
	stderr_is ''
	run -0 --separate-stderr kyro-get -d "$D" 7 -f json
	assert_output '{"key":7,"value":"seven"}'
	stderr_is ''
	run -0 --separate-stderr kyro-get 7 --dir "$D" 12 -f tsv 10
	assert_output $'7\tseven\n12\ttwelve\n10\tten'
	stderr_is ''
}

@test "kyro-put: options may follow the operands, and the operands keep their order" {
	run -0 --separate-stderr kyro-put 1 one -d "$D"
	stderr_is ''
	run -0 --separate-stderr kyro-put 2 two --print-offset -d "$D"
	assert_output '2'
	stderr_is ''
	run -0 --separate-stderr kyro-put --delete 1 -d "$D" 2 -v
	assert_output ''
	stderr_is 'kyro-put: 2 records (0 puts, 2 deletes), last offset 4'
	expect_all ''
	[ ! -e kyrodb-data ]
}

@test "kyro-put and kyro-get: after --, operands that look like options are operands" {
	run -0 --separate-stderr kyro-put -d "$D" -- 5 -5
	assert_output ''
	stderr_is ''
	run -0 --separate-stderr kyro-put -d "$D" -- 6 -d
	stderr_is ''
	expect_all $'5\t-5\n6\t-d'
	run -2 --separate-stderr kyro-get -d "$D" -- 5 -5 6
	assert_output $'-5\n-d'
	stderr_is "kyro-get: invalid key '-5'"
	run -2 --separate-stderr kyro-put -d "$D" --delete -- -5
	usage_error kyro-put "^kyro-put: invalid key '-5'$"
	expect_all $'5\t-5\n6\t-d'
}

@test "the tools without operands: an operand is refused wherever it stands, and after -- an option-like argument is one" {
	store
	for t in kyro-snapshot kyro-verify kyro-rmi-build kyro-warmup; do
		run -2 --separate-stderr "$t" extra -d "$D"
		usage_error "$t" "^$t: unexpected operand 'extra'$"
		run -2 --separate-stderr "$t" -d "$D" -- -v
		usage_error "$t" "^$t: unexpected operand '-v'$"
	done
	run -0 --separate-stderr kyro-snapshot --rmi -d "$D" -v
	assert_output ''
	stderr_matches '^kyro-snapshot: generation 1: '
	run -0 --separate-stderr kyro-verify --deep -d "$D"
	assert_output ''
	stderr_is ''
	[ ! -e kyrodb-data ]
}

# tool_args TOOL: ARGS for a run of TOOL on the store that succeeds.
tool_args() {
	case $1 in
	kyro-put) args=(-d "$D" 2 two) ;;
	kyro-get) args=(-d "$D" 1) ;;
	*) args=(-d "$D") ;;
	esac
}

@test "every tool: KYRODB_SIMD with a value the library ignores is warned about once on stderr, and the tool goes on" {
	store
	for t in "${ALL_TOOLS[@]}"; do
		tool_args "$t"
		run -0 --separate-stderr env KYRODB_SIMD=bogus "$t" "${args[@]}"
		stderr_is "$t: warning: ignoring KYRODB_SIMD='bogus' (expected one of scalar, sse4, avx2, avx512)"
	done
	run -0 --separate-stderr env KYRODB_SIMD=$'av\rx' kyro-get -d "$D" 1
	assert_output 'one'
	stderr_is "kyro-get: warning: ignoring KYRODB_SIMD='av\\rx' (expected one of scalar, sse4, avx2, avx512)"
}

@test "every tool: KYRODB_INDEX with a value the library ignores is warned about once on stderr, and the tool goes on" {
	store
	for t in "${ALL_TOOLS[@]}"; do
		tool_args "$t"
		run -0 --separate-stderr env KYRODB_INDEX=nonsense "$t" "${args[@]}"
		stderr_is "$t: warning: ignoring KYRODB_INDEX='nonsense' (expected one of binary, rmi)"
	done
	run -0 --separate-stderr env KYRODB_INDEX=nonsense KYRODB_SIMD=AVX2 kyro-get -d "$D" 1
	assert_output 'one'
	stderr_is "kyro-get: warning: ignoring KYRODB_SIMD='AVX2' (expected one of scalar, sse4, avx2, avx512)
kyro-get: warning: ignoring KYRODB_INDEX='nonsense' (expected one of binary, rmi)"
}

@test "every tool: KYRODB_SIMD and KYRODB_INDEX with values the library takes, or empty, give no warning" {
	store
	for v in scalar sse4 avx2 avx512 ''; do
		run -0 --separate-stderr env KYRODB_SIMD="$v" KYRODB_INDEX=rmi kyro-get -d "$D" 1
		assert_output 'one'
		stderr_is ''
	done
	run -0 --separate-stderr env KYRODB_INDEX= kyro-verify -d "$D"
	stderr_is ''
	run -0 --separate-stderr env KYRODB_INDEX=binary kyro-get -d "$D" 1
	assert_output 'one'
	stderr_is ''
}

@test "make install: a program links against the installed library through pkg-config, with and without --static" {
	command -v pkg-config >/dev/null || fail "pkg-config is missing"
	local root prefix="$BATS_TEST_TMPDIR/prefix"
	root=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
	run -0 --separate-stderr make -C "$root" --no-print-directory install PREFIX="$prefix"
	[ -f "$prefix/lib/pkgconfig/kyro.pc" ]
	cat >prog.c <<'PROG'
#include <stdio.h>
#include <string.h>
#include <kyro.h>

int main(int argc, char **argv)
{
	kyro_db *db;
	const void *v;
	size_t len;
	int rc = kyro_open(&db, argv[1], KYRO_RDWR);
	if (!rc)
		rc = kyro_put(db, 42, "linked", 6, NULL);
	if (!rc)
		rc = kyro_get(db, 42, &v, &len);
	if (rc) {
		fprintf(stderr, "prog: %s\n", kyro_errmsg(db));
		kyro_close(db);
		return 1;
	}
	printf("%.*s\n", (int)len, (const char *)v);
	kyro_close(db);
	return argc == 2 ? 0 : 1;
}
PROG
	for static in --static ''; do
		rm -f prog
		flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs $static kyro)
		run -0 --separate-stderr cc -o prog prog.c $flags
		stderr_is ''
		run -0 --separate-stderr ./prog "$D$static"
		assert_output 'linked'
		stderr_is ''
	done
	run -0 --separate-stderr "$prefix/bin/kyro-get" -d "$D--static" 42
	assert_output 'linked'
}
