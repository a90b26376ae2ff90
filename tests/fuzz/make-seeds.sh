#!/bin/sh
# make-seeds.sh - (re)generate the seed inputs of the fuzz corpus.
#
# Builds small real stores with bin/kyro-put and bin/kyro-snapshot, then
# copies their files, and damaged variants of them, into
# tests/fuzz/corpus/{manifest,snapshot,wal}/seed-*.  Only seed-* files are
# replaced; the entries the fuzzer found (named by their SHA-1) stay.
# The output is deterministic: running it twice gives the same bytes.
#
# Usage: sh tests/fuzz/make-seeds.sh      (from anywhere in the tree)
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
for t in kyro-put kyro-snapshot; do
	[ -x "bin/$t" ] || ${MAKE:-make} -j2 all
done
put=$top/bin/kyro-put
snapshot=$top/bin/kyro-snapshot

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kyro-seeds.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

man=tests/fuzz/corpus/manifest
wal=tests/fuzz/corpus/wal
snap=tests/fuzz/corpus/snapshot
mkdir -p "$man" "$wal" "$snap"
rm -f "$man"/seed-* "$wal"/seed-* "$snap"/seed-*

seg() { printf '%s/wal-%016x.log' "$1" "$2"; }

# patch FILE OFFSET OCTAL...: overwrite bytes in place.
patch() {
	_f=$1 _off=$2
	shift 2
	for _b in "$@"; do
		printf "\\$_b" | dd of="$_f" bs=1 seek="$_off" conv=notrunc \
			2>/dev/null
		_off=$((_off + 1))
	done
}

# copy8 FILE FROM TO: copy 8 bytes of FILE from offset FROM to offset TO.
copy8() {
	dd if="$1" of="$1" bs=1 skip="$2" seek="$3" count=8 conv=notrunc \
		2>/dev/null
}

# le32 N: N as 4 little-endian bytes.
le32() {
	printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $(($1 & 255)) \
		$(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)))"
}

# snapseed OUT DIR GEN [FLAG]: the snapshot fuzzer's input: the .bin size
# (with bit 31 set when FLAG is 1: the fuzzer recomputes the checksums),
# the .bin, the .data.
snapseed() {
	_b=$(printf '%s/snap-%016x.bin' "$2" "$3")
	_d=$(printf '%s/snap-%016x.data' "$2" "$3")
	_n=$(wc -c <"$_b")
	[ "${4:-0}" = 1 ] && _n=$((_n + 2147483648))
	{ le32 "$_n"; cat "$_b" "$_d"; } >"$1"
}

# ---- store A: batches of every kind, two snapshots ----
A=$tmp/a
"$put" -d "$A" 1 one
printf '2\t\n3\tb\\x00\\xff\\t\\n\n4\tfour\n6\tsix\n' | "$put" -d "$A"
awk 'BEGIN { for (i = 10; i < 20; i++) printf "%d\tvalue-%d\n", i, i * i }' |
	"$put" -d "$A"
"$put" -d "$A" --delete 4 12
"$put" -d "$A" 0x2a "$(printf '%0100d' 7)"
"$put" -d "$A" 18446744073709551615 max
"$put" -d "$A" 3 overwritten

cp "$A/MANIFEST" "$man/seed-fresh"
cp "$(seg "$A" 1)" "$wal/seed-seg1"
head -c 48 "$(seg "$A" 1)" >"$wal/seed-header-only"
head -c 30 "$(seg "$A" 1)" >"$wal/seed-short-header"
# A torn tail: the last batch loses its COMMIT and a bit more.
len=$(wc -c <"$(seg "$A" 1)")
head -c $((len - 37)) "$(seg "$A" 1)" >"$wal/seed-torn-tail"
# A damaged value in the first record, with valid records after it.
cp "$(seg "$A" 1)" "$wal/seed-corrupt-middle"
patch "$wal/seed-corrupt-middle" 81 170
# A newer format version.
cp "$(seg "$A" 1)" "$wal/seed-version2"
patch "$wal/seed-version2" 8 002

"$snapshot" -d "$A"
cp "$A/MANIFEST" "$man/seed-snapshot"
cp "$(seg "$A" 2)" "$wal/seed-seg2-empty"
snapseed "$snap/seed-gen1" "$A" 1
snapseed "$snap/seed-gen1-fix" "$A" 1 1
# Keys out of order (key 0 copied over key 1), checksums fixed up.
snapseed "$snap/seed-unsorted-fix" "$A" 1 1
copy8 "$snap/seed-unsorted-fix" $((4 + 128)) $((4 + 136))
# A payload offset past the end of the data, checksums fixed up: the
# last but one offset (the file ends with the last offset and a block
# table of one entry).
b=$(wc -c <"$A/snap-0000000000000001.bin")
snapseed "$snap/seed-badoffset-fix" "$A" 1 1
patch "$snap/seed-badoffset-fix" $((4 + b - 8 - 16)) 377 377 0 0 0 0 0 0
# The .data file cut short.
head -c $((4 + b + 40)) "$snap/seed-gen1" >"$snap/seed-short-data"

printf '5\tfive\n6\t\\x00\n' | "$put" -d "$A"
"$put" -d "$A" --delete 1 2 3
cp "$(seg "$A" 2)" "$wal/seed-seg2"
"$snapshot" -d "$A"
cp "$A/MANIFEST" "$man/seed-snapshot2"
snapseed "$snap/seed-gen2" "$A" 2

# ---- store B: everything deleted: a snapshot of no keys ----
B=$tmp/b
"$put" -d "$B" 7 seven
"$put" -d "$B" --delete 7
"$snapshot" -d "$B"
snapseed "$snap/seed-empty" "$B" 1
cp "$(seg "$B" 2)" "$wal/seed-after-empty-snapshot"

# ---- store C: a few hundred keys, values up to 2 KiB ----
C=$tmp/c
awk 'BEGIN { for (i = 0; i < 150; i++) printf "%d\tv%d\n", i * 7919, i }' |
	"$put" -d "$C"
"$put" -d "$C" 5 "$(printf '%01000d' 5)"
cp "$(seg "$C" 1)" "$wal/seed-large"
"$snapshot" -d "$C"
snapseed "$snap/seed-150keys" "$C" 1

# ---- manifests that must be refused ----
cp "$man/seed-fresh" "$man/seed-version2"
patch "$man/seed-version2" 8 002
head -c 95 "$man/seed-fresh" >"$man/seed-short"
{ cat "$man/seed-fresh"; printf 'x'; } >"$man/seed-long"
cp "$man/seed-fresh" "$man/seed-bad-checksum"
patch "$man/seed-bad-checksum" 20 001
: >"$man/seed-empty"

for d in "$man" "$wal" "$snap"; do
	printf '%s: %s files, %s bytes\n' "$d" "$(ls "$d" | wc -l)" \
		"$(cat "$d"/* | wc -c)"
done
