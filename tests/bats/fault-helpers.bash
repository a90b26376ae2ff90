# fault-helpers.bash - what the fault, round-trip and crash tests share
# (70-faults.bats, 75-roundtrip.bats, 80-crash.bats).  Load it after
# helpers: `load helpers` then `load fault-helpers`.
#
# Fault injection comes two ways:
#   - libfiu's POSIX preload (fiu-run -x): a failure point failing always
#     or with a probability, e.g. `fiu_run 'enable name=posix/io/sync/fsync,
#     failinfo=5' kyro-put ...` (failinfo is the errno);
#   - tests/crash/failnth.c, built by build_failnth into
#     $BATS_FILE_TMPDIR/failnth.so: fail exactly the Nth call of one
#     function, so a test walks every call site of a tool in turn.

FIU_RUN=${FIU_RUN:-fiu-run}
CRASH_SRC="$BATS_TEST_DIRNAME/../crash"

EIO=5
EACCES=13
ENOSPC=28

# pin_bin (from setup_file) and use_pinned_bin (from setup): run the whole
# file against one copy of bin/, taken when the file starts, so that a
# `make` running meanwhile in the same tree (re-linking bin/kyro-put under
# a test) cannot make a test fail for a reason that is not the store's.
pin_bin() {
	local t
	mkdir -p "$BATS_FILE_TMPDIR/bin"
	for t in kyro-put kyro-get kyro-snapshot kyro-verify; do
		cp "$BIN/$t" "$BATS_FILE_TMPDIR/bin/$t.tmp" &&
			mv "$BATS_FILE_TMPDIR/bin/$t.tmp" "$BATS_FILE_TMPDIR/bin/$t" &&
			"$BATS_FILE_TMPDIR/bin/$t" --version >/dev/null || {
			echo "cannot copy a working $BIN/$t (is bin/ built?)" >&2
			return 1
		}
	done
}

use_pinned_bin() {
	BIN="$BATS_FILE_TMPDIR/bin"
}

# build_failnth: compile the Nth-call fault library (from setup_file).
build_failnth() {
	command -v cc >/dev/null || { echo "no C compiler (cc)" >&2; return 1; }
	cc -O2 -Wall -Wextra -shared -fPIC -o "$BATS_FILE_TMPDIR/failnth.so" \
		"$CRASH_SRC/failnth.c" -ldl
}

# need_fiu: fail (not skip: fault injection is part of `make test`, and
# tests/deps.sh installs it) when libfiu's tools are missing.
need_fiu() {
	command -v "$FIU_RUN" >/dev/null && [ -f /usr/lib/fiu/fiu_posix_preload.so ] || {
		echo "libfiu is missing: apt-get install fiu-utils libfiu-dev" >&2
		return 1
	}
}

# fiu_run FIU_COMMAND TOOL ARGS...: run a KyroDB tool under fiu-run with
# the POSIX preload and one remote-control command; no control FIFO.
fiu_run() {
	local cmd=$1 tool=$2
	shift 2
	"$FIU_RUN" -x -f '' -c "$cmd" "$BIN/$tool" "$@"
}

# nth FUNC N ERRNO TOOL ARGS...: run TOOL with the Nth call of FUNC failing
# with ERRNO; $BATS_TEST_TMPDIR/fired exists afterwards iff it fired.
# FAILNTH_DIR=1 / FAILNTH_ALWAYS=FUNC in the environment pass through.
nth() {
	local func=$1 n=$2 err=$3 tool=$4
	shift 4
	rm -f "$BATS_TEST_TMPDIR/fired"
	LD_PRELOAD="$BATS_FILE_TMPDIR/failnth.so" FAILNTH_FUNC="$func" \
		FAILNTH_N="$n" FAILNTH_ERRNO="$err" \
		FAILNTH_MARK="$BATS_TEST_TMPDIR/fired" "$BIN/$tool" "$@"
}

fired() {
	[ -e "$BATS_TEST_TMPDIR/fired" ]
}

# seed_store DIR: a store whose committed data lives both in a snapshot and
# in the WAL after it, with binary values, overwrites and deletes.
seed_store() {
	local dir=$1 f="$BATS_TEST_TMPDIR/seed.tsv"
	awk 'BEGIN {
		for (i = 1; i <= 3000; i++)
			printf "%d\tseed-%d\\x00\\t\\\\\\n\\xff\n", i * 7, i
	}' >"$f"
	"$BIN/kyro-put" -d "$dir" <"$f" || return 1
	"$BIN/kyro-snapshot" -d "$dir" || return 1
	awk 'BEGIN {
		for (i = 1; i <= 3000; i += 3)
			printf "%d\tnewer-%d\\r\n", i * 7, i
		printf "18446744073709551615\tmax\n0\t\n"
	}' >"$f"
	"$BIN/kyro-put" -d "$dir" <"$f" || return 1
	seq 14 70 21000 | "$BIN/kyro-put" -d "$dir" --delete || return 1
}

# batch_file FILE N FIRSTKEY: N records, keys FIRSTKEY, FIRSTKEY+7, ...
# (overlapping the seed's keys, so a batch also overwrites), each value
# about 100 bytes, with escapes.
batch_file() {
	awk -v n="$2" -v k0="$3" 'BEGIN {
		pad = sprintf("%090d", 0)
		for (i = 0; i < n; i++)
			printf "%d\tbatch-%d\\x01\\n%s\n", k0 + i * 7, i, pad
	}' >"$1"
}

# expect_same DIR FILE: the store in DIR dumps byte for byte as FILE.
expect_same() {
	local now="$BATS_TEST_TMPDIR/now.tsv"
	dump "$1" "$now" || return 1
	if ! cmp -s "$now" "$2"; then
		{
			echo "store $1 differs from $2:"
			diff "$2" "$now" | head -20
		} | fail
	fi
}

# verify_clean DIR: kyro-verify exits 0 and prints nothing.
verify_clean() {
	run --separate-stderr "$BIN/kyro-verify" -d "$1"
	if [ "$status" -ne 0 ] || [ -n "$output" ] || [ -n "$stderr" ]; then
		batslib_print_kv_single_or_multi 8 status "$status" \
			stdout "$output" stderr "$stderr" |
			batslib_decorate "kyro-verify -d $1 is not clean" | fail
	fi
}

# verify_clean_or_torn DIR: kyro-verify exits 0, or 1 with every line of
# its report a torn tail (allowed before the next writer), never anything
# else.
verify_clean_or_torn() {
	run --separate-stderr "$BIN/kyro-verify" -d "$1"
	local ok=0
	if [ "$status" -eq 0 ] && [ -z "$output" ] && [ -z "$stderr" ]; then
		ok=1
	elif [ "$status" -eq 1 ] && [ -n "$output" ] && [ -z "$stderr" ] &&
		! grep -qv ': offset [0-9]*: torn tail: ' <<<"$output"; then
		ok=1
	fi
	if [ "$ok" -ne 1 ]; then
		batslib_print_kv_single_or_multi 8 status "$status" \
			stdout "$output" stderr "$stderr" |
			batslib_decorate "kyro-verify -d $1: neither clean nor a torn tail" |
			fail
	fi
}

# tool_error TOOL ERE: the last `run --separate-stderr` of TOOL exited 2
# (checked by the caller's run -2), printed nothing on stdout, and exactly
# one line on stderr: "TOOL: " followed by something matching ERE, which
# should end in the reason (anchor with $).
tool_error() {
	assert_output ''
	if [[ "$stderr" == *$'\n'* ]] || ! [[ "$stderr" =~ ^$1:\ $2 ]]; then
		batslib_print_kv_single_or_multi 8 \
			'want' "$1: $2" 'stderr' "$stderr" |
			batslib_decorate 'not a one-line error of the expected form' |
			fail
	fi
}

# wal_bytes DIR: total size of the WAL segments (to show nothing appended).
wal_bytes() {
	cat "$1"/wal-*.log | wc -c
}

# fake_reboot DIR: zero the LOCK page, so that every process finds no
# shared state to trust and recovers from the files alone, as it does
# after a reboot (libkyro/shared.c).  Changing only the boot id would now
# break the page's checksum, which kyro-verify reports as damage; a
# zero page is one that was never published.
fake_reboot() {
	dd if=/dev/zero of="$1/LOCK" bs=4096 count=1 conv=notrunc status=none
}

# clone_store FROM TO: a copy of the store (a reference that sees the same
# operations without faults).
clone_store() {
	rm -rf "$2"
	cp -a "$1" "$2"
}
