#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# A local HTTPS upstream for api_use_test: it answers brokered calls made by
# cofferd, so the test can see what reached the upstream. Every request is
# appended to a log file as one JSON line (method, path with query, headers,
# body) before it is answered. It never reaches out to anything.
#
#   echo_upstream.py PORT CERT KEY LOG [REFRESH_TOKENS CLIENT_SECRET]
#
# With REFRESH_TOKEN and CLIENT_SECRET it is also an OAuth2 token endpoint
# (RFC 6749 section 6) for the client "coffer-test-client": it accepts the
# refresh-token grant with that client secret, sent with HTTP Basic or in the
# body, and a refresh token it issued (to begin with, those of REFRESH_TOKENS,
# separated by commas). The
# access tokens it issues are "fresh-access-token-N", N counting the grants
# it answered, each valid for 3600 seconds.
#
# Paths:
#   /allowed/echo...    200, the request as JSON; the bearer token or the "key"
#                       query parameter it received is echoed raw in the header
#                       X-Echo and in the body raw, base64 and URL-encoded
#   /allowed/redirect-out  302 to /other/landing (outside the spec)
#   /allowed/redirect-in   302 to /allowed/echo (inside)
#   /allowed/big        200 with 2 MiB of body
#   /allowed/slow       200 "slow" after a pause of 3 seconds (a call held in flight)
#   /oauth/token        the token endpoint; the refresh token stays valid
#   /oauth/token-rotate the same, but each grant issues a new refresh token
#                       ("rotated-refresh-token-N") and the old one stops working
#   /oauth/token-slow   the same as /oauth/token after a pause of 1.5 seconds
#   /oauth/token-fail   400 {"error": "invalid_grant"} to every grant
#   anything else       404
import base64
import json
import ssl
import sys
import threading
import time
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
        elif url.path.startswith("/oauth/token"):
            self._token(url.path, body)
        elif url.path == "/allowed/slow":
            time.sleep(3)
            self._send(200, b"slow\n", {"Content-Type": "text/plain"})
        elif url.path == "/allowed/big":
            self._send(200, b"x" * (2 * 1024 * 1024), {"Content-Type": "text/plain"})
        else:
            self._send(404, b"no such path\n", {"Content-Type": "text/plain"})

    def _json(self, status, obj):
        self._send(status, json.dumps(obj).encode(),
                   {"Content-Type": "application/json", "Cache-Control": "no-store"})

    def _client_ok(self, form):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            pair = base64.b64decode(auth[6:]).decode()
            cid, _, secret = pair.partition(":")
            cid = urllib.parse.unquote_plus(cid)
            secret = urllib.parse.unquote_plus(secret)
        else:
            cid = form.get("client_id", [""])[0]
            secret = form.get("client_secret", [""])[0]
        return cid == "coffer-test-client" and secret == self.server.client_secret

    def _token(self, path, body):
        state = self.server
        if self.command != "POST" or not state.client_secret:
            self._send(405, b"", {})
            return
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        if path == "/oauth/token-slow":
            time.sleep(1.5)
        if not self._client_ok(form):
            self._json(401, {"error": "invalid_client"})
            return
        if form.get("grant_type", [""])[0] != "refresh_token":
            self._json(400, {"error": "unsupported_grant_type"})
            return
        if path == "/oauth/token-fail":
            self._json(400, {"error": "invalid_grant",
                             "error_description": "refresh token revoked"})
            return
        with state.lock:
            given = form.get("refresh_token", [""])[0]
            if given not in state.refresh_tokens:
                self._json(400, {"error": "invalid_grant"})
                return
            state.grants += 1
            n = state.grants
            answer = {"access_token": "fresh-access-token-%d" % n,
                      "token_type": "Bearer", "expires_in": 3600}
            if path == "/oauth/token-rotate":
                state.refresh_tokens.discard(given)
                answer["refresh_token"] = "rotated-refresh-token-%d" % n
                state.refresh_tokens.add(answer["refresh_token"])
        self._json(200, answer)

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle
    do_HEAD = _handle


def main():
    port, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.log_path = log
    srv.lock = threading.Lock()
    srv.grants = 0
    srv.refresh_tokens = set(sys.argv[5].split(",")) if len(sys.argv) > 5 else set()
    srv.client_secret = sys.argv[6] if len(sys.argv) > 6 else ""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
