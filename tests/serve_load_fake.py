#!/usr/bin/env python3
"""serve_load_fake.py MODE — a fake OpenAI streaming server on a free loopback port (printed on
the first stdout line) for tests/test_serve_load.sh: the warm-up request (max_tokens 8) always
gets a good chunked SSE stream; the others get MODE: `good`, `garbage` (a data: event that is
not JSON), `trunc` (the stream ends without data: [DONE]), `stall` (one chunk, then silence),
`status` (HTTP 500). Standard library only."""
import http.server
import json
import sys
import time

MODE = sys.argv[1]
CHUNK = 'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def ch(self, s):
        b = s.encode()
        self.wfile.write(b"%x\r\n" % len(b) + b + b"\r\n")
        self.wfile.flush()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = "good" if body.get("max_tokens") == 8 else MODE
        if mode == "status":
            self.send_response(500)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if mode == "good":
            for _ in range(3):
                self.ch(CHUNK)
                time.sleep(0.01)
            self.ch('data: {"choices":[],"usage":{"completion_tokens":3}}\n\ndata: [DONE]\n\n')
        elif mode == "garbage":
            self.ch(CHUNK + "data: {oops\n\n")
        elif mode == "trunc":
            self.ch(CHUNK)
        elif mode == "stall":
            self.ch(CHUNK)
            time.sleep(10)  # past serve_load's --timeout in the test
            return
        self.ch("")


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
print(srv.server_address[1], flush=True)
srv.serve_forever()
