#!/usr/bin/env python3
"""fake-primary.py PORT FIRST OP: a primary whose next change, at
sequence number FIRST, has op number OP (one a replica may not know how
to apply): /v1/offset answers FIRST, /v1/replicate a binary page holding
that one change (cmd/serve/primary.c has the layout), /v1/subscribe one
event and then holds the stream open.  For the test that an unknown op
stops replication."""
import http.server
import struct
import sys

port, first, op = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def answer(self, ctype, body):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/v1/offset"):
            self.answer("application/json", b'{"offset":%d}\n' % first)
        elif self.path.startswith("/v1/replicate"):
            val = b"x"
            page = struct.pack("<QQ", first + 1, first)
            page += struct.pack("<QQQIB3x", first, first, 7, len(val), op)
            self.answer("application/octet-stream", page + val)
        elif self.path.startswith("/v1/subscribe"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b": from %d\n\nid: %d\ndata: {}\n\n"
                             % (first, first))
            self.wfile.flush()
            self.rfile.read(1)  # until the replica hangs up
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
