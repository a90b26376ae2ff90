#!/usr/bin/env bats
#
# The documentation agrees with the tools: each tool's --help usage lines
# are its man page's SYNOPSIS (as git's t0450 checks), every page is
# mandoc-lint clean, and the shell completions parse and cover every
# option.  A tool whose binary is not built yet is skipped, not failed.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

bats_require_minimum_version 1.5.0

ROOT="$BATS_TEST_DIRNAME/../.."
BIN="$ROOT/bin"
MAN="$ROOT/man"
COMP="$ROOT/completions"

# Every tool that has a man page and completions.  (kyro-serve comes in a
# later issue; it is named only on the zsh #compdef line so far.)
TOOLS=(kyro-put kyro-get kyro-snapshot kyro-verify kyro-rmi-build kyro-warmup)

# Print the usage lines of TOOL's man page SYNOPSIS as rendered by mandoc
# with OUTPUT (-Tascii or -Tutf8): one line per synopsis, wrapped lines
# joined, whitespace squeezed.  The sed strips mandoc's overstrike bold
# and underline.
man_synopsis() {
	local tool=$1 output=$2
	mandoc "$output" "$MAN/$tool.1" |
		LC_ALL=C.UTF-8 sed 's/.\x08//g' |
		awk -v tool="$tool" '
			/^[^ \t]/ { insyn = ($0 == "SYNOPSIS"); next }
			!insyn { next }
			{
				line = $0
				gsub(/[ \t]+/, " ", line)
				sub(/^ /, "", line)
				sub(/ $/, "", line)
				if (line == "")
					next
				if (line == tool || index(line, tool " ") == 1) {
					if (cur != "")
						print cur
					cur = line
				} else {
					cur = cur " " line
				}
			}
			END { if (cur != "") print cur }'
}

# Print the usage lines at the head of a --help text on stdin, without a
# leading "usage:" or "or:", whitespace squeezed.
help_usage() {
	local tool=$1
	awk -v tool="$tool" '
		{
			line = $0
			gsub(/[ \t]+/, " ", line)
			sub(/^ /, "", line)
			sub(/ $/, "", line)
			sub(/^([Uu]sage|USAGE|or): ?/, "", line)
			if (line == tool || index(line, tool " ") == 1) {
				print line
				seen = 1
			} else if (seen) {
				exit
			}
		}'
}

require_binary() {
	[[ -x $BIN/$1 ]] || skip "bin/$1 is not built yet"
}

# Check that TOOL's --help usage lines equal its SYNOPSIS under both
# renderings of the page.
check_synopsis() {
	local tool=$1 usage output
	require_binary "$tool"
	run -0 --separate-stderr "$BIN/$tool" --help
	[[ -z $stderr ]] || fail "$tool --help wrote to stderr: $stderr"
	usage=$(help_usage "$tool" <<<"$output")
	[[ -n $usage ]] || fail "no usage line found in $tool --help: $output"
	for output in -Tascii -Tutf8; do
		assert_equal "$usage" "$(man_synopsis "$tool" "$output")"
	done
}

@test "kyro-put: the usage lines of --help are the SYNOPSIS of kyro-put.1" {
	check_synopsis kyro-put
}

@test "kyro-get: the usage lines of --help are the SYNOPSIS of kyro-get.1" {
	check_synopsis kyro-get
}

@test "kyro-snapshot: the usage lines of --help are the SYNOPSIS of kyro-snapshot.1" {
	check_synopsis kyro-snapshot
}

@test "kyro-verify: the usage lines of --help are the SYNOPSIS of kyro-verify.1" {
	check_synopsis kyro-verify
}

@test "kyro-rmi-build: the usage lines of --help are the SYNOPSIS of kyro-rmi-build.1" {
	check_synopsis kyro-rmi-build
}

@test "kyro-warmup: the usage lines of --help are the SYNOPSIS of kyro-warmup.1" {
	check_synopsis kyro-warmup
}

@test "every long option that a tool's --help names is in its man page and in all three completions" {
	local tool opt page bash_opts zsh_block missing= built=0
	for tool in "${TOOLS[@]}"; do
		[[ -x $BIN/$tool ]] || continue
		built=1
		run -0 --separate-stderr "$BIN/$tool" --help
		page=$(mandoc -Tascii "$MAN/$tool.1" | LC_ALL=C.UTF-8 sed 's/.\x08//g')
		bash_opts=" $(sed -n "s/.*_kyro_complete '\(.*\)'.*/\1/p" "$COMP/bash/$tool") "
		# The options common to every tool, and the tool's own case arm.
		zsh_block=$(awk -v arm="$tool)" '
			/^common=\(/, /^\)/ { print }
			$0 == arm, /;;/ { print }' "$COMP/zsh/_kyro")
		for opt in $(grep -oE -- '--[a-z][a-z0-9-]*' <<<"$output" | sort -u); do
			grep -qF -- "$opt" <<<"$page" ||
				missing+="man/$tool.1: $opt"$'\n'
			[[ $bash_opts == *" $opt "* || $bash_opts == *" $opt= "* ]] ||
				missing+="bash/$tool: $opt"$'\n'
			grep -qE -- "(^|[^a-z-])$opt[]=+[}]" <<<"$zsh_block" ||
				missing+="zsh/_kyro ($tool): $opt"$'\n'
			grep -qE -- "-l ${opt#--}( |\$)" "$COMP/fish/$tool.fish" ||
				missing+="fish/$tool.fish: $opt"$'\n'
		done
	done
	((built)) || skip "no tool is built yet"
	assert_equal "$missing" ""
}

@test "every man page is clean under mandoc -Tlint -Wwarning" {
	local page pages=("$MAN"/*.[1-9])
	((${#pages[@]} >= 7)) || fail "expected at least 7 man pages, found ${#pages[@]}"
	for page in "${pages[@]}"; do
		run mandoc -Tlint -Wwarning "$page"
		assert_success
		assert_output ""
	done
}

@test "every tool and kyro.7 have a man page" {
	local tool
	for tool in "${TOOLS[@]}"; do
		assert [ -f "$MAN/$tool.1" ]
	done
	assert [ -f "$MAN/kyro.7" ]
}

@test "every bash completion file passes bash -n" {
	local tool
	for tool in "${TOOLS[@]}"; do
		assert [ -f "$COMP/bash/$tool" ]
		run bash -n "$COMP/bash/$tool"
		assert_success
		assert_output ""
	done
}

@test "each bash completion file registers a completion for its own command" {
	local tool
	for tool in "${TOOLS[@]}"; do
		run bash -c 'source "$1" && complete -p "$2"' _ "$COMP/bash/$tool" "$tool"
		assert_success
		assert_output --partial " $tool"
	done
}

# Run TOOL's bash completion on the words given and print the candidates.
bash_complete() {
	local file=$1
	shift
	bash -c '
		source "$1"; shift
		fn=$(complete -p "$1" | sed "s/.*-F \([^ ]*\).*/\1/")
		COMP_WORDS=("$@")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		"$fn"
		printf "%s\n" "${COMPREPLY[@]}"
	' _ "$file" "$@"
}

@test "bash completion offers always, batch and none after kyro-put --sync=" {
	run -0 bash_complete "$COMP/bash/kyro-put" kyro-put --sync =
	assert_equal "$(sort <<<"$output" | tr '\n' ' ')" "always batch none "
}

@test "bash completion offers the five formats after kyro-get -f" {
	run -0 bash_complete "$COMP/bash/kyro-get" kyro-get -f ""
	assert_equal "$(sort <<<"$output" | tr '\n' ' ')" "json raw replay tsv value "
}

@test "bash completion offers only directories after -d" {
	mkdir "$BATS_TEST_TMPDIR/store" && touch "$BATS_TEST_TMPDIR/file"
	cd "$BATS_TEST_TMPDIR"
	run -0 bash_complete "$COMP/bash/kyro-snapshot" kyro-snapshot -d ""
	assert_output "store"
}

@test "the zsh completion names every tool on its #compdef line and passes zsh -n" {
	local tool
	run head -n 1 "$COMP/zsh/_kyro"
	for tool in "${TOOLS[@]}" kyro-serve; do
		assert_output --regexp "^#compdef( [a-z-]+)* $tool( |\$)"
	done
	command -v zsh >/dev/null || skip "zsh is not installed"
	run zsh -n "$COMP/zsh/_kyro"
	assert_success
	assert_output ""
}

@test "every fish completion file passes fish -n" {
	local tool
	for tool in "${TOOLS[@]}"; do
		assert [ -f "$COMP/fish/$tool.fish" ]
	done
	command -v fish >/dev/null || skip "fish is not installed"
	for tool in "${TOOLS[@]}"; do
		run fish -n "$COMP/fish/$tool.fish"
		assert_success
		assert_output ""
	done
}
