#!/usr/bin/env python3
"""writer.py PORT LOG: PUT /v1/kv/KEY on the primary in a loop, one
keep-alive connection, reconnecting when the primary goes away; every
write answered 200 is acknowledged, and its line "SEQ<TAB>put<TAB>KEY<TAB>
VALUE" goes to LOG (flushed at once, so a SIGKILL of this writer loses
nothing it counted).  Runs until killed."""
import http.client
import random
import sys
import time

port, log = int(sys.argv[1]), open(sys.argv[2], "a", buffering=1)
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
conn, i = None, 0
while True:
    i += 1
    key, val = rng.randrange(1, 2000), "w%d" % i
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("PUT", "/v1/kv/%d" % key, body=val)
        r = conn.getresponse()
        body = r.read().decode()
        if r.status == 200:
            seq = int(body.split(":")[1].rstrip("}\n"))
            log.write("%d\tput\t%d\t%s\n" % (seq, key, val))
    except (OSError, http.client.HTTPException, ValueError):
        conn = None
        time.sleep(0.01)
