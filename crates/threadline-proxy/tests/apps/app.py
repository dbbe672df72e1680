"""A small app in Python's standard library, for the proxy's tests and docs.

GET /echo          answers the request headers it received, as JSON
GET /call?to=URL   calls URL forwarding every header it received (through the egress
                   proxy named by THREADLINE_EGRESS, when set), answers what URL answered
GET /slow?ms=N     answers after N milliseconds
POST /count        reads the whole body, answers its length and a checksum

Every request logs one JSON line on stdout with the ids the proxy forwarded, so the
app's own logs join the rest of the fleet's. The first stdout line is `PORT <n>`.
"""

import hashlib
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1] if len(sys.argv) > 1 else "app"
EGRESS = os.environ.get("THREADLINE_EGRESS")
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({"http": EGRESS} if EGRESS else {})
)


def log(**fields):
    print(json.dumps(fields), flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # the JSON line below replaces the default log
        pass

    def answer(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def ids(self):
        tp = self.headers.get("traceparent", "")
        parts = tp.split("-")
        return {
            "correlation_id": self.headers.get("x-correlation-id"),
            "trace_id": parts[1] if len(parts) == 4 else None,
            "parent_id": parts[2] if len(parts) == 4 else None,
            "tenant_id": self.headers.get("x-tenant-id"),
        }

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        log(service=NAME, msg="handled", path=url.path, **self.ids())
        if url.path == "/echo":
            headers = {}
            for k, v in self.headers.items():
                headers.setdefault(k.lower(), []).append(v)
            self.answer(200, json.dumps({"app": NAME, "headers": headers}))
        elif url.path == "/call":
            to = query["to"][0]
            forwarded = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("host", "connection", "content-length")
            }
            req = urllib.request.Request(to, headers=forwarded)
            with opener.open(req, timeout=20) as resp:
                self.answer(200, resp.read())
        elif url.path == "/slow":
            time.sleep(int(query.get("ms", ["100"])[0]) / 1000)
            self.answer(200, json.dumps({"app": NAME, "slept": True}))
        else:
            self.answer(404, json.dumps({"app": NAME, "error": "not found"}))

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        digest = hashlib.sha256()
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        log(service=NAME, msg="body read", bytes=length - left, **self.ids())
        self.answer(200, json.dumps({"app": NAME, "bytes": length - left, "sha256": digest.hexdigest()}))


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
