#!/bin/sh
# Run each unit-test binary given; print one line per binary and a total.
pass=0 fail=0
for t in "$@"; do
	if out=$("$t" 2>&1); then
		pass=$((pass + 1)); echo "ok   $t"
	else
		fail=$((fail + 1)); echo "FAIL $t"; echo "$out" | tail -20 | sed 's/^/    /'
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
