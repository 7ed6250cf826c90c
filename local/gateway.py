"""One base URL for the local functions, routed as Cloud Functions' own host routes them.

    python -m local.gateway --port P --route uploads=http://127.0.0.1:8081 ... [--prefix pixme]

`https://REGION-PROJECT.cloudfunctions.net/pixme-generate/x` reaches the
generate function with the path `/x`; so does `http://127.0.0.1:P/pixme-generate/x`
here. The OpenAPI document (openapi.json) describes the API that way, so a
generated client, schemathesis (`make fuzz`) and curl can all use one base URL,
`API_URL` in stack.env. `GET /openapi.json` serves the committed document.

Only loopback, only the functions the stack started, bodies capped: it is a
development convenience, never deployed.
"""

from __future__ import annotations

import argparse
import http.client
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from local.procs import REPO_ROOT, serve_until_interrupted

MAX_BODY = 1024 * 1024  # the functions refuse bodies over 64 KiB; this only bounds the proxy
TIMEOUT_S = 180  # above the model deadline: a generate may take a while
READ_TIMEOUT_S = 30  # for a client's request to arrive whole
# Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the message's.
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


def make_handler(routes: dict[str, str], prefix: str) -> type[BaseHTTPRequestHandler]:
    targets = {
        f"{prefix}-{name.replace('_', '-')}": urllib.parse.urlsplit(url) for name, url in routes.items()
    }

    class Gateway(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # the functions log every request themselves

        def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _route(self) -> None:
            # The body first, whatever the route: on a kept-alive connection an
            # unread body would be taken for the next request.
            self.connection.settimeout(READ_TIMEOUT_S)
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                # Not needed by any client of the API (bodies are small JSON).
                self.close_connection = True
                self._answer(411, b'{"error": {"code": "invalid_json", "message": "Send a Content-Length."}}')
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self.close_connection = True
                self._answer(413, b'{"error": {"code": "body_too_large", "message": "Too large."}}')
                return
            try:
                body = self.rfile.read(length) if length else None
            except TimeoutError:
                self.close_connection = True
                self._answer(408, b'{"error": {"code": "invalid_json", "message": "The body ended early."}}')
                return
            parts = urllib.parse.urlsplit(self.path)
            if parts.path == "/healthz":
                self._answer(200, b'{"ok": true}')
                return
            if parts.path == "/openapi.json" and self.command == "GET":
                self._answer(200, (REPO_ROOT / "openapi.json").read_bytes())
                return
            first, _, rest = parts.path.lstrip("/").partition("/")
            target = targets.get(first)
            if target is None:
                self._answer(404, b'{"error": {"code": "route_not_found", "message": "No such function."}}')
                return
            path = "/" + rest + (f"?{parts.query}" if parts.query else "")
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in HOP | {"host", "content-length"}
            }
            conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=TIMEOUT_S)
            try:
                conn.request(self.command, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except OSError as exc:
                message = f'{{"error": {{"code": "gateway_unreachable", "message": "{type(exc).__name__}"}}}}'
                self._answer(502, message.encode())
                return
            finally:
                conn.close()
            self.send_response(resp.status)
            for name, value in resp.getheaders():
                if name.lower() not in HOP | {"content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def __getattr__(self, name: str) -> object:
            # Every method (QUERY, TRACE...) goes to the function, which answers
            # 405 for those it does not take, as on Cloud Run.
            if name.startswith("do_"):
                return self._route
            raise AttributeError(name)

    return Gateway


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--prefix", default="pixme", help="the functions' name prefix (Terraform's name_prefix)"
    )
    parser.add_argument("--route", action="append", default=[], help="function=url, once per function")
    args = parser.parse_args()
    routes = dict(item.split("=", 1) for item in args.route)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(routes, args.prefix))
    serve_until_interrupted(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
