#!/usr/bin/env python3
"""fake-primary.py PORT FIRST OP [FORMAT [cut]]: a primary whose next
change, at sequence number FIRST, has op number OP (one a replica may not
know how to apply, or 1, a put of key 7): /v1/offset answers FIRST,
/v1/replicate a binary page holding that one change (cmd/serve/primary.c
has the layouts), /v1/subscribe one event and then holds the stream open.
FORMAT 1 (the default) is a primary of the release before page format 2:
it ignores ?format= and sends a whole page after its header.  FORMAT 2
sends the page chunked, three bytes a chunk, so that every record
arrives in pieces, then its end record; with "cut" it breaks the
connection after the change instead, with no end record.  For the tests
that an unknown op stops replication and that pages are applied whole or
not at all."""
import http.server
import struct
import sys

port, first, op = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
fmt = int(sys.argv[4]) if len(sys.argv) > 4 else 1
cut = len(sys.argv) > 5 and sys.argv[5] == "cut"


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, ctype, body):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def chunked(self, body, end):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Kyro-Page-Format", "2")
        self.end_headers()
        for i in range(0, len(body), 3):
            piece = body[i:i + 3]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        if end:
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def do_GET(self):
        val = b"x"
        change = struct.pack("<QQQIB3x", first, first, 7, len(val), op) + val
        if self.path.startswith("/v1/offset"):
            self.answer("application/json", b'{"offset":%d}\n' % first)
        elif self.path.startswith("/v1/replicate") and fmt == 1:
            self.answer("application/octet-stream",
                        struct.pack("<QQ", first + 1, first) + change)
        elif self.path.startswith("/v1/replicate"):
            if cut:
                self.chunked(change, False)
            else:
                end = struct.pack("<QQQIB3x", first + 1, first, 0, 0, 255)
                self.chunked(change + end, True)
        elif self.path.startswith("/v1/subscribe"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b": from %d\n\nid: %d\ndata: {}\n\n"
                             % (first, first))
            self.wfile.flush()
            self.rfile.read(1)  # until the replica hangs up
            self.close_connection = True
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
