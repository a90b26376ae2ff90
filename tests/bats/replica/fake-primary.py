#!/usr/bin/env python3
"""fake-primary.py PORT FIRST OP: answers /v1/offset with FIRST and
/v1/subscribe with one event: a batch of one change at sequence number
FIRST whose op is OP (a change a replica may not know how to apply).
For the test that an unknown op stops replication."""
import http.server
import sys

port, first, op = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path.startswith("/v1/offset"):
            body = b'{"offset":%d}\n' % first
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.startswith("/v1/subscribe"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            ev = ('id: %d\ndata: {"first":%d,"last":%d,"changes":[{"seq":%d,'
                  '"batch_first":%d,"batch_last":%d,"op":"%s","key":7,'
                  '"value":"x"}]}\n\n') % ((first,) * 6 + (op,))
            self.wfile.write(b": from %d\n\n" % first + ev.encode())
            self.wfile.flush()
            self.rfile.read(1)  # until the replica hangs up
            return
        self.send_response(404)
        self.end_headers()


http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
