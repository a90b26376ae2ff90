#!/bin/sh
# Install the Debian packages the build and the tests need, when run as
# root; otherwise print the one apt-get line to run, and fail.
set -eu
pkgs="gcc libc6-dev make clang libclang-rt-14-dev pkg-config libxxhash-dev
libcpu-features-dev libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev bats bats-support
bats-assert libfiu-dev fiu-utils mandoc zsh fish curl python3 nginx"
[ $# -gt 0 ] && pkgs="$*"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
	echo "missing packages; run as root:" >&2
	echo "  apt-get install -y$missing" >&2
	exit 1
fi
