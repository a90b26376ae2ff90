# scaling-helpers.bash - several kyro-serve nodes behind one nginx, as
# docs/SCALING.md describes, for 89-scaling.bats.
#
# Load after helpers and serve-helpers.  node_start starts a daemon on a
# loopback port of its own, with its own directory; nginx_start runs
# contrib/nginx/kyro-shards.conf as it is, with only the addresses
# replaced, in an nginx of its own (prefix, pid, logs and temp files under
# $BATS_TEST_TMPDIR/nginx, in the foreground).  scaling_teardown kills
# every process they started and waits for it.

NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
CONTRIB="$BATS_TEST_DIRNAME/../../contrib/nginx"

declare -gA NODE_PID NODE_PORT
NGINX_PID=
NGINX_PORTS=
FRONT=
# A header every request of bulk and requests carries, when set.
PROXY_HEADER=

# node_spawn NAME [OPTION...]: start kyro-serve on $BATS_TEST_TMPDIR/NAME
# in the background, on NODE_PORT[NAME] when set (a restart), else on a
# free port (NODE_PORT[NAME] is then set).
node_spawn() {
	local name=$1
	shift
	mkdir -p "$BATS_TEST_TMPDIR/$name"
	[ -n "${NODE_PORT[$name]:-}" ] || NODE_PORT[$name]=$(free_port) ||
		return 1
	kyro-serve -d "$BATS_TEST_TMPDIR/$name" \
		-l "127.0.0.1:${NODE_PORT[$name]}" --timeout 5 "$@" \
		2>>"$BATS_TEST_TMPDIR/$name.log" 3>&- &
	NODE_PID[$name]=$!
}

# node_ready NAME: poll the node's /health for 200, for at most 5 s.
node_ready() {
	local code
	for _ in $(seq 1 100); do
		code=$(curl -s -o /dev/null -w '%{http_code}' \
			"$(node_url "$1")/health") || true
		[ "$code" != 200 ] || return 0
		kill -0 "${NODE_PID[$1]}" 2>/dev/null || break
		sleep 0.05
	done
	echo "kyro-serve $1 did not become ready; its log:" >&2
	cat "$BATS_TEST_TMPDIR/$1.log" >&2
	return 1
}

# nodes_start NAME...: start a node per NAME, all at once, and wait for
# each to be ready.  A node that lost the race for its port is started
# again on another.
nodes_start() {
	local n
	for n in "$@"; do
		node_spawn "$n" || return 1
	done
	for n in "$@"; do
		for _ in 1 2 3 4; do
			! node_ready "$n" 2>/dev/null || continue 2
			node_kill "$n"
			NODE_PORT[$n]=
			node_spawn "$n" || return 1
		done
		node_ready "$n" || return 1
	done
}

# node_start NAME [OPTION...]: start one node and wait for it to be
# ready: again on its port when it ran before, else on a free port (and
# on another when it lost the race for that one).
node_start() {
	local again=${NODE_PORT[$1]:-}
	for _ in 1 2 3 4; do
		node_spawn "$@" || return 1
		[ -z "$again" ] || break
		! node_ready "$1" 2>/dev/null || return 0
		node_kill "$1"
		NODE_PORT[$1]=
	done
	node_ready "$1"
}

# node_kill NAME [SIGNAL]: signal the node (default KILL) and wait for it.
node_kill() {
	local pid=${NODE_PID[$1]:-}
	[ -n "$pid" ] || return 0
	kill "-${2:-KILL}" "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	NODE_PID[$1]=
}

# node_url NAME: the node's own address, bypassing nginx.
node_url() {
	echo "http://127.0.0.1:${NODE_PORT[$1]}"
}

# nginx_conf DIR FRONT SHARD_A SHARD_B SHARD_C: the contrib files in DIR,
# kyro-shards.conf's addresses replaced by this test's: the front on
# FRONT, the shard servers on the three next ports, the nodes a, b, c
# and ra (shard a's replica) on theirs.  Fails when an address to replace
# is missing from the file, so the test cannot pass on a file it did not
# rewrite.
nginx_conf() {
	local dir=$1 front=$2 sa=$3 sb=$4 sc=$5 user=
	local src="$CONTRIB/kyro-shards.conf" out="$dir/kyro-shards.conf"
	awk 'BEGIN {
			n = split("listen 8080;|127.0.0.1:7101|127.0.0.1:7102|" \
				"127.0.0.1:7103|10.0.0.1:3030|10.0.0.2:3030|" \
				"10.0.0.3:3030|10.0.0.4:3030", want, "|")
		}
		{ for (i = 1; i <= n; i++) if (index($0, want[i])) seen[i] = 1 }
		END {
			for (i = 1; i <= n; i++) if (!seen[i]) {
				print FILENAME ": no \"" want[i] "\" to replace"
				bad = 1
			}
			exit bad
		}' "$src" >&2 || return 1
	sed -e "s/listen 8080;/listen 127.0.0.1:$front;/" \
		-e "s/127\.0\.0\.1:7101/127.0.0.1:$sa/g" \
		-e "s/127\.0\.0\.1:7102/127.0.0.1:$sb/g" \
		-e "s/127\.0\.0\.1:7103/127.0.0.1:$sc/g" \
		-e "s/10\.0\.0\.1:3030/127.0.0.1:${NODE_PORT[a]}/g" \
		-e "s/10\.0\.0\.2:3030/127.0.0.1:${NODE_PORT[b]}/g" \
		-e "s/10\.0\.0\.3:3030/127.0.0.1:${NODE_PORT[c]}/g" \
		-e "s/10\.0\.0\.4:3030/127.0.0.1:${NODE_PORT[ra]}/g" \
		"$src" >"$out"
	if grep -nE '10\.0\.0\.|:710[0-9]|listen 8080' "$out" >&2; then
		echo "$out: an address left unreplaced" >&2
		return 1
	fi
	cp "$CONTRIB/kyro_proxy_params" "$dir/"
	# Run as root, the master would hand the workers to nobody, who
	# cannot reach this test's directory.
	[ "$(id -u)" -ne 0 ] || user='user root root;'
	cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
$user
pid $dir/nginx.pid;
error_log $dir/error.log info;
events { worker_connections 512; }
http {
	access_log $dir/access.log;
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	include kyro-shards.conf;
}
EOF
}

# nginx_start: nginx in front of the nodes a, b, c and ra; sets FRONT.  Ready when the front answers, within 5 s.
nginx_start() {
	local dir="$BATS_TEST_TMPDIR/nginx" code front
	mkdir -p "$dir"
	for _ in 1 2 3 4 5; do
		front=$(free_port) || return 1
		NGINX_PORTS="$front $(free_port) $(free_port) $(free_port)" ||
			return 1
		# Two servers on one port would be one socket, not an error.
		[ "$(tr ' ' '\n' <<<"$NGINX_PORTS" | sort -u | wc -l)" -eq 4 ] ||
			continue
		# shellcheck disable=SC2086 # four ports
		nginx_conf "$dir" $NGINX_PORTS || return 1
		"$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
			3>&- &
		NGINX_PID=$!
		for _ in $(seq 1 100); do
			code=$(curl -s -o /dev/null -w '%{http_code}' \
				"http://127.0.0.1:$front/") || true
			if [ "$code" = 400 ]; then
				FRONT="http://127.0.0.1:$front"
				return 0
			fi
			kill -0 "$NGINX_PID" 2>/dev/null || break
			sleep 0.05
		done
		nginx_stop
	done
	echo "nginx did not become ready; its log:" >&2
	cat "$dir/error.log" >&2
	return 1
}

# nginx_reload: the configuration again, with the nodes' addresses as
# they are now, and SIGHUP; the new workers take over within a moment.
nginx_reload() {
	# shellcheck disable=SC2086 # four ports
	nginx_conf "$BATS_TEST_TMPDIR/nginx" $NGINX_PORTS &&
		kill -HUP "$NGINX_PID"
}

nginx_stop() {
	local workers
	[ -n "$NGINX_PID" ] || return 0
	# TERM: the master stops its workers and waits for them, so none
	# outlives the test; should it hang, both are killed.
	workers=$(pgrep -P "$NGINX_PID") || true
	kill -TERM "$NGINX_PID" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$NGINX_PID" 2>/dev/null || break
		sleep 0.05
	done
	# shellcheck disable=SC2086 # a list of pids
	kill -KILL "$NGINX_PID" $workers 2>/dev/null || true
	wait "$NGINX_PID" 2>/dev/null || true
	NGINX_PID=
}

scaling_teardown() {
	local n
	nginx_stop
	for n in "${!NODE_PID[@]}"; do
		node_kill "$n"
	done
}

# bulk METHOD OUT KEYFILE [VALUE_PREFIX]: one request per key of KEYFILE
# through the front, on one curl's kept-alive connection; a PUT's body is
# VALUE_PREFIX then the key.  OUT gets a line "STATUS KEY SHARD SECONDS"
# per request (SHARD: the proxy's X-Kyro-Shard, or -), and a GET's body
# goes to OUT.d/KEY.
bulk() {
	local m=$1 out=$2 keys=$3 prefix=${4:-}
	mkdir -p "$out.d"
	# max-time bounds every request: a hang is a failure, not a stuck
	# test (options do not carry past "next", so each block has it).
	awk -v front="$FRONT" -v m="$m" -v out="$out.d" -v prefix="$prefix" \
		-v hdr="$PROXY_HEADER" '
		NR > 1 { print "next" }
		{
			print "url = \"" front "/v1/kv/" $1 "\""
			print "request = \"" m "\""
			if (m == "PUT") {
				print "data-binary = \"" prefix $1 "\""
				print "output = \"/dev/null\""
			} else {
				print "output = \"" out "/" $1 "\""
			}
			print "write-out = \"%{http_code} " $1 \
				" %header{x-kyro-shard} %{time_total}\\n\""
			print "max-time = 10"
			if (hdr != "")
				print "header = \"" hdr "\""
		}' "$keys" >"$out.curlrc"
	curl -s -K "$out.curlrc" | sed 's/  / - /' >"$out"
}

# requests OUT: the requests on stdin, one a line "METHOD PATH [BODY]"
# (BODY: the rest of the line), through the front on one curl; OUT gets
# "STATUS SHARD METHOD PATH" a request (SHARD: X-Kyro-Shard, or -) and
# OUT.d/N the body of the Nth.
requests() {
	local out=$1
	mkdir -p "$out.d"
	awk -v front="$FRONT" -v out="$out.d" -v hdr="$PROXY_HEADER" '
		NR > 1 { print "next" }
		{
			body = $0
			sub(/^[^ ]* [^ ]* ?/, "", body)
			print "url = \"" front $2 "\""
			print "request = \"" $1 "\""
			if (body != "") {
				gsub(/[\\"]/, "\\\\&", body)
				print "data-binary = \"" body "\""
			}
			print "output = \"" out "/" NR "\""
			print "write-out = \"%{http_code} %header{x-kyro-shard} " \
				$1 " " $2 "\\n\""
			print "max-time = 10"
			if (hdr != "")
				print "header = \"" hdr "\""
		}' >"$out.curlrc"
	curl -s -K "$out.curlrc" | sed 's/^\([0-9]*\)  /\1 - /' >"$out"
}

# bodies_are DIR KEYFILE PREFIX [--exact]: DIR/KEY holds PREFIX then KEY
# (with --exact: PREFIX alone) for each key of KEYFILE; else print the
# keys that differ and fail.
bodies_are() {
	awk -v dir="$1" -v prefix="$3" -v exact="${4:-}" '{
		f = dir "/" $1
		v = "(missing)"
		getline v <f
		close(f)
		if (v != prefix (exact ? "" : $1)) {
			print "key " $1 ": got \"" v "\"" >"/dev/stderr"
			bad = 1
		}
	} END { exit bad }' "$2"
}

# owners KEYFILE: for each key, the shards among a, b, c whose primary's
# directory holds it, read with kyro-get (not through any daemon): "KEY
# SHARD...".  A shard's primary is the node of the same name, or
# PRIMARY[shard] once a replica has been promoted.
declare -gA PRIMARY
owners() {
	local n
	for n in a b c; do
		kyro-get -d "$BATS_TEST_TMPDIR/${PRIMARY[$n]:-$n}" --all -f tsv |
			cut -f 1 | sed "s/\$/ $n/"
	done | awk 'NR == FNR { want[$1] = 1; next }
		$1 in want { has[$1] = has[$1] " " $2 }
		END { for (k in want) print k has[k] }' "$1" - | sort -n
}
