"""Serves the playground page and what it needs to reach the local stack.

Run as `python -m local.playground.server --port P --config FILE` (the stack
does, with FILE naming the function URLs, the issuer and the storage host).

- `GET /`, `/app.js`, `/style.css`, `/favicon.svg`: the page (no build step; these files only).
- `GET /config.json`: the function URLs and hosts the page calls.
- `GET /sample.png`: the repository's sample selfie, for "use the sample".
- `POST /token {"uid"}`: an ID token for a local test user, minted by the
  stack's issuer. This route lives here, in local/, and nowhere in the
  functions: in the cloud tokens come from Firebase Authentication only.
- `GET /openapi.json`: the committed spec (`--openapi`, default openapi.json
  at the repository root), or 404 saying it is not in this checkout.
- `GET /healthz`: 200.

The page calls the functions and the signed-URL host itself, cross-origin:
the stack lists this server's origin in PIXME_CORS_ORIGINS and the signed-URL
front's --cors-origin. A Content-Security-Policy limits the page to exactly
those hosts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from local.issuer import mint_token
from local.procs import REPO_ROOT, serve_until_interrupted

HERE = Path(__file__).resolve().parent
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
SAMPLE = REPO_ROOT / "assets" / "selfie-astronaut.png"
DEFAULT_OPENAPI = REPO_ROOT / "openapi.json"
# The uids the page may ask a token for: what the functions accept as an id.
UID = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOKEN_TTL_S = 3600
MAX_BODY = 4096


def origin_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(config: Mapping[str, Any]) -> str:
    """Only this server, the functions and the storage host: the page loads
    nothing from anywhere else."""
    functions = sorted({origin_of(u) for u in config.get("functions", {}).values()})
    storage = [origin_of(config["storage_url"])] if config.get("storage_url") else []
    connect = " ".join(["'self'", *functions, *storage])
    images = " ".join(["'self'", "blob:", *storage])
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {images}; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


class _Handler(BaseHTTPRequestHandler):
    server: PlaygroundServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        sys.stderr.write(f"playground: {self.address_string()} {fmt % args}\n")

    def _send(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"error": {"code": code, "message": message}})

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in STATIC:
            name, content_type = STATIC[path]
            headers = {"Content-Security-Policy": self.server.csp} if name == "index.html" else {}
            self._send(200, (HERE / name).read_bytes(), content_type, headers)
        elif path == "/config.json":
            self._json(200, self.server.config)
        elif path == "/sample.png":
            self._send(200, SAMPLE.read_bytes(), "image/png")
        elif path == "/openapi.json":
            self._openapi()
        elif path == "/healthz":
            self._json(200, {"ok": True})
        else:
            self._error(404, "not_found", f"No such page: {path}")

    def _openapi(self) -> None:
        spec = self.server.openapi
        if spec.is_file():
            self._send(200, spec.read_bytes(), "application/json")
        else:
            self._error(
                404,
                "openapi_missing",
                f"No OpenAPI spec in this checkout: {spec} does not exist;"
                " the API is described in README.md.",
            )

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/token":
            self._error(404, "not_found", "Only POST /token exists here.")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._error(400, "body_too_large", f"At most {MAX_BODY} bytes.")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._error(400, "invalid_json", "The body must be JSON.")
            return
        uid = body.get("uid") if isinstance(body, dict) else None
        if not isinstance(uid, str) or not UID.fullmatch(uid):
            self._error(400, "invalid_field", "uid must be 1-64 of A-Z a-z 0-9 _ -.")
            return
        try:
            token = mint_token(self.server.config["issuer_url"], uid, ttl_s=TOKEN_TTL_S)
        except (OSError, urllib.error.URLError, KeyError) as err:
            self._error(502, "issuer_unavailable", f"The local issuer did not mint a token: {err}")
            return
        self._json(200, {"uid": uid, "id_token": token, "expires_in_s": TOKEN_TTL_S})


class PlaygroundServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, config: Mapping[str, Any], openapi: Path) -> None:
        self.config = dict(config)
        self.openapi = openapi
        self.csp = content_security_policy(config)
        super().__init__((host, port), _Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.playground.server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", required=True, help="JSON: functions, issuer_url, storage_url")
    parser.add_argument("--openapi", default=str(DEFAULT_OPENAPI), help="the spec served as /openapi.json")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    server = PlaygroundServer(args.host, args.port, config, Path(args.openapi))
    print(f"playground: listening on http://{args.host}:{server.server_address[1]}", flush=True)
    return serve_until_interrupted(server)


if __name__ == "__main__":
    sys.exit(main())
