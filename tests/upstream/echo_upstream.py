#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# A local HTTPS upstream for api_use_test: it answers brokered calls made by
# cofferd, so the test can see what reached the upstream. Every request is
# appended to a log file as one JSON line (method, path with query, headers,
# body) before it is answered. It never reaches out to anything.
#
#   echo_upstream.py PORT CERT KEY LOG
#
# Paths:
#   /allowed/echo...    200, the request as JSON; the bearer token or the "key"
#                       query parameter it received is echoed raw in the header
#                       X-Echo and in the body raw, base64 and URL-encoded
#   /allowed/redirect-out  302 to /other/landing (outside the spec)
#   /allowed/redirect-in   302 to /allowed/echo (inside)
#   /allowed/big        200 with 2 MiB of body
#   anything else       404
import base64
import json
import ssl
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _record(self, body):
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": {k: v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        with open(self.server.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        return entry

    def _send(self, status, body, headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        entry = self._record(body)
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/allowed/echo"):
            auth = self.headers.get("Authorization", "")
            secret = auth[7:] if auth.startswith("Bearer ") else ""
            if not secret:
                secret = urllib.parse.parse_qs(url.query).get("key", [""])[0]
            raw = secret.encode()
            entry["raw"] = secret
            entry["b64"] = base64.b64encode(raw).decode()
            entry["url"] = urllib.parse.quote(secret, safe="")
            out = json.dumps(entry).encode()
            self._send(200, out, {"Content-Type": "application/json", "X-Echo": secret})
        elif url.path == "/allowed/redirect-out":
            self._send(302, b"", {"Location": "/other/landing"})
        elif url.path == "/allowed/redirect-in":
            self._send(302, b"", {"Location": "/allowed/echo-after-redirect"})
        elif url.path == "/allowed/big":
            self._send(200, b"x" * (2 * 1024 * 1024), {"Content-Type": "text/plain"})
        else:
            self._send(404, b"no such path\n", {"Content-Type": "text/plain"})

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle
    do_HEAD = _handle


def main():
    port, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.log_path = log
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
