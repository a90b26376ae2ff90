#!/bin/sh
# check-symbols.sh LIB HEADER - fail when the static library LIB defines a
# global symbol that a program linking it could collide with: every one
# must be declared in HEADER (the public kyro_ names) or carry the private
# kyro__ prefix.
set -eu
lib=$1 hdr=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Functions and variables kyro.h declares: a kyro_ name before '('.
grep -o 'kyro_[a-z0-9_]*[[:space:]]*(' "$hdr" | sed 's/[[:space:]]*($//' |
	sort -u >"$tmp/public"
nm -g --defined-only "$lib" | awk 'NF == 3 { print $3 }' | sort -u >"$tmp/defined"
npub=$(wc -l <"$tmp/public")
ndef=$(wc -l <"$tmp/defined")
# An empty list would pass anything: refuse to judge from one.
if [ "$npub" -lt 10 ] || [ "$ndef" -lt 10 ]; then
	echo "check-symbols: found $npub public names in $hdr and $ndef symbols in $lib: cannot judge" >&2
	exit 2
fi
grep -v '^kyro__' "$tmp/defined" | comm -23 - "$tmp/public" >"$tmp/bad" || true
if [ -s "$tmp/bad" ]; then
	echo "check-symbols: $lib defines $(wc -l <"$tmp/bad") global symbols that are neither declared in $hdr nor prefixed kyro__:" >&2
	sed 's/^/  /' "$tmp/bad" >&2
	exit 1
fi
echo "check-symbols: $ndef global symbols in $lib, all public (kyro.h) or kyro__"
