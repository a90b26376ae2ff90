# bench/machine.sh - sourced by the benchmark scripts: what a result file
# must say about the machine it came from, written the same way by each.

# Other processes above 5% CPU: the neighbours a shared machine has.
neighbours() { ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 5 {printf "%s(%s%%) ", $2, $1}'; }

# "load: L1 L5 L15; busy: ..." now, after LABEL.
load_line() { echo "$1: load $(cut -d' ' -f1-3 /proc/loadavg); busy: $(neighbours)"; }

# The date, the tree (ROOT), CPU, memory, kernel and the file system of
# DIR, one "name: value" line each.
machine_lines() {
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "tree: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- libkyro cmd 2>/dev/null || echo ' (libkyro/cmd modified)')"
	echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
	echo "ram: $(free -h | awk '/^Mem:/ {print $2}')"
	echo "kernel: $(uname -r)"
	df -T "$1" | tail -1 | awk '{print "filesystem: " $1 " " $2 ", " $5 " KiB free"}'
}
