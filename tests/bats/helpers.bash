# helpers.bash - what every tests/bats/NN-*.bats file of the tools shares.
#
# Load it with `load helpers`.  It loads bats-support and bats-assert, puts
# the freshly built bin/ first on PATH, and gives every test its own data
# directory "$D" under $BATS_TEST_TMPDIR (not created: kyro-put creates it)
# with KYRODB_DIR unset, so that no test can see another's store or the
# caller's.  Each test runs with $BATS_TEST_TMPDIR as its working directory.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

BIN="$(cd "$BATS_TEST_DIRNAME/../../bin" 2>/dev/null && pwd)"

kyro_setup() {
	if [ -z "$BIN" ] || [ ! -x "$BIN/kyro-put" ]; then
		echo "bin/kyro-put is not built; run 'make all' first" >&2
		return 1
	fi
	PATH="$BIN:$PATH"
	export PATH
	unset KYRODB_DIR
	D="$BATS_TEST_TMPDIR/data"
	cd "$BATS_TEST_TMPDIR" || return 1
	# A tool that reads stdin by mistake must see EOF, not hang the run.
	exec </dev/null
}

# A file can redefine setup(); it should then call kyro_setup itself.
setup() {
	kyro_setup
}

# stderr_is TEXT: the test's last `run --separate-stderr` wrote exactly TEXT
# on standard error (bats-assert here has no assert_stderr).
stderr_is() {
	assert_equal "$stderr" "$1"
}

# stderr_matches ERE: standard error matches the extended regular
# expression (anchor it yourself).
stderr_matches() {
	if ! [[ "$stderr" =~ $1 ]]; then
		batslib_print_kv_single_or_multi 8 \
			'regexp' "$1" 'stderr' "$stderr" |
			batslib_decorate 'stderr does not match regular expression' |
			fail
	fi
}

# stderr_starts_with TEXT: standard error begins with TEXT, taken literally.
stderr_starts_with() {
	if [[ "$stderr" != "$1"* ]]; then
		batslib_print_kv_single_or_multi 8 \
			'prefix' "$1" 'stderr' "$stderr" |
			batslib_decorate 'stderr does not start with prefix' |
			fail
	fi
}

# The usage lines of TOOL's --help: its first lines, up to the blank line.
usage_of() {
	"$1" --help | sed '/^$/q' | sed '/^$/d'
}

# usage_error TOOL FIRST_LINE_ERE: the last run was a usage error of TOOL:
# exit 2 (checked by `run -2`), nothing on stdout, and stderr is one line
# matching FIRST_LINE_ERE, then the usage, then "Try 'TOOL --help'.".
usage_error() {
	local tool=$1 first=$2 usage
	assert_output ''
	usage=$(usage_of "$tool")
	local want_tail
	want_tail=$(printf "%s\nTry '%s --help'." "$usage" "$tool")
	local line1=${stderr%%$'\n'*}
	local rest=${stderr#*$'\n'}
	if ! [[ "$line1" =~ $first ]]; then
		batslib_print_kv_single_or_multi 8 \
			'regexp' "$first" 'line 1' "$line1" |
			batslib_decorate 'first line of stderr does not match' |
			fail
	fi
	assert_equal "$rest" "$want_tail"
}

# run_to FILE CMD...: like `run --separate-stderr CMD`, but stdout goes to
# FILE byte for byte (for binary output, which $output would mangle).
run_to() {
	local out=$1
	shift
	status=0
	"$@" >"$out" 2>"$BATS_TEST_TMPDIR/run_to.err" || status=$?
	stderr=$(cat "$BATS_TEST_TMPDIR/run_to.err")
	output=''
}

# put_file FILE: load FILE into $D through kyro-put's stdin; must succeed
# silently.
put_file() {
	run -0 --separate-stderr kyro-put -d "$D" <"$1"
	assert_output ''
	stderr_is ''
}

# put_lines LINE...: write the lines (printf %b escapes in them are NOT
# interpreted; pass real tabs) to a file and load it.
put_lines() {
	local f="$BATS_TEST_TMPDIR/put_lines.$RANDOM.tsv"
	printf '%s\n' "$@" >"$f"
	put_file "$f"
}

# dump DIR FILE: `kyro-get --all --format=tsv` of DIR into FILE; must
# succeed silently.
dump() {
	local err="$BATS_TEST_TMPDIR/dump.err"
	kyro-get -d "$1" --all --format=tsv >"$2" 2>"$err" || {
		echo "kyro-get --all failed on $1: $(cat "$err")" >&2
		return 1
	}
	if [ -s "$err" ]; then
		echo "kyro-get --all wrote on stderr: $(cat "$err")" >&2
		return 1
	fi
}

# expect_all TEXT: `kyro-get --all` of $D prints exactly TEXT (tsv lines
# joined by newlines), exit 0, nothing on stderr.
expect_all() {
	run -0 --separate-stderr kyro-get -d "$D" --all
	assert_output "$1"
	stderr_is ''
}

# The only WAL segment of a store that has not been snapshotted since it
# was created, or the last one; fails unless exactly one exists.
only_wal() {
	local w=("$1"/wal-*.log)
	[ "${#w[@]}" -eq 1 ] && [ -f "${w[0]}" ] || {
		echo "expected exactly one WAL segment in $1, found: ${w[*]}" >&2
		return 1
	}
	printf '%s\n' "${w[0]}"
}

# patch_byte FILE OFFSET BYTE_IN_OCTAL_OR_HEX_ESCAPE: overwrite one byte.
patch_byte() {
	printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# flip_byte FILE OFFSET: invert every bit of the byte at OFFSET.
flip_byte() {
	local b
	b=$(od -A n -t u1 -j "$2" -N 1 "$1" | tr -d ' ')
	[ -n "$b" ] || { echo "no byte at $2 in $1" >&2; return 1; }
	patch_byte "$1" "$2" "$(printf '\\%03o' $((255 - b)))"
}

# file_size FILE
file_size() {
	stat -c %s "$1"
}
