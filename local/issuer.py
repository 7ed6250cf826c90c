"""A local stand-in for Firebase Authentication's ID-token issuer and App Check.

Run as `python -m local.issuer --port P --project PROJECT [--project-number N]`.
At start it makes an RSA-2048 key and a self-signed X.509 certificate for it
(ID tokens), and a second RSA key (App Check tokens), then serves:

- `GET /certs`: `{kid: PEM certificate}` with `Cache-Control: public,
  max-age=3600`, the shape of Google's securetoken x509 endpoint, so the
  functions verify tokens exactly as in production, only with another
  certificate URL (`PIXME_AUTH_CERTS_URL`).
- `POST /token` with JSON `{"uid": "...", "ttl_s": 3600, "claims": {...}}`:
  `{"id_token": "<RS256 JWT>"}` carrying the claims of a Firebase ID token
  (iss `https://securetoken.google.com/<project>`, aud `<project>`, sub and
  user_id = uid, iat, auth_time, exp, firebase.sign_in_provider). `ttl_s`
  (default 3600) may be negative to get an already expired token; `claims`
  overrides or adds claims, and `header` the JWS header (a null value drops
  a field), for tests of rejection paths; the token is always RS256-signed
  with the issuer's key, whatever the header says.
- `GET /appcheck/jwks`: the App Check key as a JWKS (`kid`, `kty`, `alg`, `n`,
  `e`, `use`), `Cache-Control: public, max-age=21600` like Firebase's
  (`PIXME_APP_CHECK_JWKS_URL`).
- `POST /appcheck/token` with JSON `{"app_id": "1:123:android:abc", "ttl_s":
  3600, "claims": {...}, "header": {...}}`: `{"token": "<RS256 JWT>"}` with
  the claims of an App Check token (iss
  `https://firebaseappcheck.googleapis.com/<project number>`, aud
  `["projects/<project number>", "projects/<project>"]`, sub = app_id, iat,
  exp); `ttl_s`, `claims` and `header` as for `/token`.
- `GET /healthz`: 200.

`mint_token(issuer_url, uid)` and `mint_app_check_token(issuer_url, app_id)`
ask a running issuer for a token.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .procs import serve_until_interrupted

DEFAULT_TTL_S = 3600
CERTS_MAX_AGE_S = 3600
JWKS_MAX_AGE_S = 21600
# A project number is digits; this one is obviously not a real project's.
DEFAULT_PROJECT_NUMBER = "000000000000"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def encode_rs256(
    private_key: rsa.RSAPrivateKey,
    kid: str,
    claims: Mapping[str, Any],
    header: Mapping[str, Any] | None = None,
) -> str:
    """A compact JWS (JWT) signed with RS256; `header` overrides fields of the
    JWS header (None drops one), to make tokens that lie about themselves."""
    fields = {"alg": "RS256", "kid": kid, "typ": "JWT", **(header or {})}
    fields = {k: v for k, v in fields.items() if v is not None}
    signing_input = (
        _b64url(json.dumps(fields, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(dict(claims), separators=(",", ":")).encode())
    )
    signature = private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(signature)


def firebase_claims(
    project: str, uid: str, ttl_s: int = DEFAULT_TTL_S, now: int | None = None
) -> dict[str, Any]:
    """The claims of a Firebase ID token for a custom-token sign-in."""
    now = int(time.time()) if now is None else now
    return {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "auth_time": now,
        "user_id": uid,
        "sub": uid,
        "iat": now,
        "exp": now + ttl_s,
        "firebase": {"identities": {}, "sign_in_provider": "custom"},
    }


def app_check_claims(
    project_number: str, project: str, app_id: str, ttl_s: int = DEFAULT_TTL_S, now: int | None = None
) -> dict[str, Any]:
    """The claims of a Firebase App Check token for `app_id`."""
    now = int(time.time()) if now is None else now
    return {
        "iss": f"https://firebaseappcheck.googleapis.com/{project_number}",
        "aud": [f"projects/{project_number}", f"projects/{project}"],
        "sub": app_id,
        "iat": now,
        "exp": now + ttl_s,
    }


@dataclass
class SigningKey:
    """An RSA key with a self-signed certificate and a key id."""

    private_key: rsa.RSAPrivateKey
    certificate_pem: str
    kid: str

    @classmethod
    def generate(cls, common_name: str = "pixme-local-issuer") -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        kid = hashlib.sha1(der).hexdigest()
        pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return cls(private_key=key, certificate_pem=pem, kid=kid)

    def certs(self) -> dict[str, str]:
        return {self.kid: self.certificate_pem}

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK, the shape of App Check's JWKS entries."""
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kid": self.kid,
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }

    def sign(self, claims: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> str:
        return encode_rs256(self.private_key, self.kid, claims, header)


class _Handler(BaseHTTPRequestHandler):
    server: IssuerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        sys.stderr.write(f"issuer: {self.address_string()} {fmt % args}\n")

    def _send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/certs":
            self._send_json(
                200,
                self.server.key.certs(),
                {"Cache-Control": f"public, max-age={CERTS_MAX_AGE_S}"},
            )
        elif path == "/appcheck/jwks":
            self._send_json(
                200,
                {"keys": [self.server.app_check_key.jwk()]},
                {"Cache-Control": f"public, max-age={JWKS_MAX_AGE_S}"},
            )
        elif path == "/healthz":
            self._send_json(200, {"ok": True})
        elif path == "/":
            self._send_json(
                200,
                {
                    "project": self.server.project,
                    "project_number": self.server.project_number,
                    "certs": "/certs",
                    "token": "POST /token {uid}",
                    "app_check_jwks": "/appcheck/jwks",
                    "app_check_token": "POST /appcheck/token {app_id}",
                },
            )
        else:
            self._send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/token", "/appcheck/token"):
            self._send_json(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            req = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, json.JSONDecodeError):
            self._send_json(400, {"error": "body must be JSON"})
            return
        if not isinstance(req, dict):
            self._send_json(400, {"error": "body must be a JSON object"})
            return
        if path == "/token":
            self._id_token(req)
        else:
            self._app_check_token(req)

    def _overrides(self, req: Mapping[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
        """`ttl_s`, `claims` and `header` of a mint request, or None once a 400 is sent."""
        ttl = req.get("ttl_s", DEFAULT_TTL_S)
        claims = req.get("claims") or {}
        header = req.get("header") or {}
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not isinstance(claims, dict):
            self._send_json(400, {"error": "ttl_s must be an integer and claims an object"})
            return None
        if not isinstance(header, dict):
            self._send_json(400, {"error": "header must be an object"})
            return None
        return ttl, claims, header

    def _id_token(self, req: Mapping[str, Any]) -> None:
        uid = req.get("uid")
        if not isinstance(uid, str) or not uid:
            self._send_json(400, {"error": "uid (non-empty string) is required"})
            return
        overrides = self._overrides(req)
        if overrides is None:
            return
        ttl, extra, header = overrides
        claims = firebase_claims(self.server.project, uid, ttl)
        claims.update(extra)
        self._send_json(200, {"id_token": self.server.key.sign(claims, header)})

    def _app_check_token(self, req: Mapping[str, Any]) -> None:
        app_id = req.get("app_id")
        if not isinstance(app_id, str) or not app_id:
            self._send_json(400, {"error": "app_id (non-empty string) is required"})
            return
        overrides = self._overrides(req)
        if overrides is None:
            return
        ttl, extra, header = overrides
        claims = app_check_claims(self.server.project_number, self.server.project, app_id, ttl)
        claims.update(extra)
        self._send_json(200, {"token": self.server.app_check_key.sign(claims, header)})


class IssuerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        project: str,
        key: SigningKey | None = None,
        project_number: str = DEFAULT_PROJECT_NUMBER,
        app_check_key: SigningKey | None = None,
    ) -> None:
        self.project = project
        self.project_number = project_number
        self.key = key or SigningKey.generate()
        self.app_check_key = app_check_key or SigningKey.generate("pixme-local-app-check")
        super().__init__((host, port), _Handler)


def _mint(issuer_url: str, path: str, body: Mapping[str, Any], field: str, timeout: float) -> str:
    req = urllib.request.Request(
        issuer_url.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return str(json.load(resp)[field])


def _mint_body(
    ttl_s: int | None, claims: Mapping[str, Any] | None, header: Mapping[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if ttl_s is not None:
        body["ttl_s"] = ttl_s
    if claims:
        body["claims"] = dict(claims)
    if header:
        body["header"] = dict(header)
    return body


def mint_token(
    issuer_url: str,
    uid: str,
    ttl_s: int | None = None,
    claims: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
    header: Mapping[str, Any] | None = None,
) -> str:
    """An ID token for `uid` from a running issuer."""
    body = {"uid": uid, **_mint_body(ttl_s, claims, header)}
    return _mint(issuer_url, "/token", body, "id_token", timeout)


def mint_app_check_token(
    issuer_url: str,
    app_id: str,
    ttl_s: int | None = None,
    claims: Mapping[str, Any] | None = None,
    header: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> str:
    """An App Check token for `app_id` from a running issuer."""
    body = {"app_id": app_id, **_mint_body(ttl_s, claims, header)}
    return _mint(issuer_url, "/appcheck/token", body, "token", timeout)


def fetch_certs(issuer_url: str, timeout: float = 10.0) -> dict[str, str]:
    with urllib.request.urlopen(issuer_url.rstrip("/") + "/certs", timeout=timeout) as resp:
        certs: dict[str, str] = json.load(resp)
    return certs


def fetch_jwks(issuer_url: str, timeout: float = 10.0) -> dict[str, Any]:
    with urllib.request.urlopen(issuer_url.rstrip("/") + "/appcheck/jwks", timeout=timeout) as resp:
        jwks: dict[str, Any] = json.load(resp)
    return jwks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.issuer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument(
        "--project-number",
        default=DEFAULT_PROJECT_NUMBER,
        help="the number App Check tokens name in iss and aud (PIXME_PROJECT_NUMBER)",
    )
    args = parser.parse_args(argv)
    if not args.project_number.isdigit():
        parser.error("--project-number must be digits")
    server = IssuerServer(args.host, args.port, args.project, project_number=args.project_number)
    print(
        f"issuer: project {args.project} ({args.project_number}), kid {server.key.kid}, "
        f"app check kid {server.app_check_key.kid}, listening on http://{args.host}:{server.server_address[1]}",
        flush=True,
    )
    return serve_until_interrupted(server)


if __name__ == "__main__":
    sys.exit(main())
