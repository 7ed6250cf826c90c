"""Checks V4 signed URLs as Cloud Storage does, in front of fake-gcs-server.

Run as `python -m local.signed_urls --port P --upstream URL --key-file KEY`.
fake-gcs-server accepts any request that looks like a signed URL and checks
none of it, so the local stack's public storage host is this server instead:
every path-style request `METHOD /{bucket}/{object}?X-Goog-...` is verified
against the service-account key the stack signs with, and only then forwarded
to fake-gcs (same method, path, query and body) with its answer relayed back.

Checked, with Cloud Storage's XML error answers:

- no signature parameters at all: 403 AccessDenied (an anonymous caller on a
  private bucket);
- malformed parameters (algorithm, credential scope, date, an expiry outside
  1..604800 s, `host` not signed): 400 MalformedSecurityHeader;
- expired (X-Goog-Date + X-Goog-Expires in the past): 400 ExpiredToken; a date
  more than 15 minutes ahead: 403 AccessDenied;
- a signed header the request lacks, or an x-goog-* header it sends unsigned:
  400 MalformedSecurityHeader;
- anything else that changes the canonical request (method, path, query,
  header values) or another key: 403 SignatureDoesNotMatch;
- `x-goog-content-length-range: MIN,MAX` (signed): a body outside it is
  refused with 400 EntityTooLarge / EntityTooSmall before anything is stored;
  a declared Content-Length is checked before reading the body, a chunked body
  is counted while read and abandoned once past MAX;
- `x-goog-if-generation-match: N` (signed): 412 PreconditionFailed unless the
  object's live generation is N (0: it must not exist). fake-gcs ignores this
  header on its XML path, so it is checked here, under a lock per object, so
  that two concurrent create-only PUTs can never both succeed.

With `--cors-origin ORIGIN` (repeatable; the stack passes the playground's),
a browser page of that origin may use the URLs as a bucket with that CORS
configuration allows: its preflight (OPTIONS, for GET, HEAD or PUT) is
answered, and every answer to it carries Access-Control-Allow-Origin. Other
origins' preflights are refused (403), as without CORS.

`GET /healthz` answers 200. One log line per request on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import http.client
import io
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .procs import serve_until_interrupted

ALGORITHM = "GOOG4-RSA-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_EXPIRES_S = 604_800
# A V4 signature is usable from 15 minutes before its X-Goog-Date
# (Cloud Storage's "Signatures" page, active datetime).
EARLY_USE_S = 15 * 60
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
SIGNATURE_PARAMS = (
    "x-goog-algorithm",
    "x-goog-credential",
    "x-goog-date",
    "x-goog-expires",
    "x-goog-signedheaders",
    "x-goog-signature",
)
LENGTH_RANGE = "x-goog-content-length-range"
GENERATION_MATCH = "x-goog-if-generation-match"
# Enforced here; fake-gcs would ignore them, so they are not forwarded.
HANDLED_HEADERS = frozenset({LENGTH_RANGE, GENERATION_MATCH})
# Standard headers that matter to fake-gcs (stored metadata, ranges, conditions).
FORWARDED_HEADERS = frozenset(
    {
        "accept-encoding",
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-md5",
        "content-type",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-unmodified-since",
        "range",
    }
)
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Our own Server and Date headers are sent; the upstream's would duplicate them.
NOT_RELAYED = HOP_BY_HOP | {"content-length", "date", "server"}
PERMISSIONS = {"GET": "get", "HEAD": "get", "PUT": "create", "POST": "create", "DELETE": "delete"}
READ_CHUNK = 64 * 1024
# After a refusal, what the client still sends is read and dropped for this
# long, so that closing the socket does not reset the connection (see _linger).
LINGER_S = 2.0
UPSTREAM_TIMEOUT_S = 30.0
# What a listed page may do cross-origin: read an image, send a photo.
CORS_METHODS = ("GET", "HEAD", "PUT")
CORS_MAX_AGE_S = 3600

ACCESS_DENIED = "Access denied."
MALFORMED = "Your request has a malformed header."
SIGNATURE_DETAILS = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your Google secret key and signing method."
)


# --- refusals -----------------------------------------------------------------


@dataclass(eq=False)
class Refusal(Exception):
    """A request Cloud Storage would refuse: status and XML error fields."""

    status: int
    code: str
    message: str
    details: str | None = None
    parameter: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.details or self.message}"

    def xml(self) -> bytes:
        parts = [f"<Code>{escape(self.code)}</Code>", f"<Message>{escape(self.message)}</Message>"]
        if self.parameter:
            parts.append(f"<ParameterName>{escape(self.parameter)}</ParameterName>")
        if self.details:
            parts.append(f"<Details>{escape(self.details)}</Details>")
        parts += [f"<{tag}>{escape(text)}</{tag}>" for tag, text in self.extra]
        return ("<?xml version='1.0' encoding='UTF-8'?><Error>" + "".join(parts) + "</Error>").encode()


def malformed(parameter: str, details: str) -> Refusal:
    return Refusal(400, "MalformedSecurityHeader", MALFORMED, details, parameter)


def anonymous(method: str) -> Refusal:
    perm = f"storage.objects.{PERMISSIONS.get(method, 'get')}"
    return Refusal(
        403,
        "AccessDenied",
        ACCESS_DENIED,
        f"Anonymous caller does not have {perm} access to the Google Cloud Storage object. "
        f"Permission '{perm}' denied on resource (or it may not exist).",
    )


def signature_mismatch(string_to_sign: str = "", canonical: str = "") -> Refusal:
    # Like Cloud Storage, hand back what was signed: it is what a client needs
    # to see why its signature differs.
    extra = (("StringToSign", string_to_sign), ("CanonicalRequest", canonical)) if string_to_sign else ()
    return Refusal(403, "SignatureDoesNotMatch", ACCESS_DENIED, SIGNATURE_DETAILS, extra=extra)


# --- the signing key ------------------------------------------------------------


@dataclass(frozen=True)
class ServiceAccountKey:
    """The public half of the service-account key the stack signs URLs with."""

    email: str
    public_key: rsa.RSAPublicKey

    @classmethod
    def from_file(cls, path: str | Path) -> ServiceAccountKey:
        info = json.loads(Path(path).read_text())
        private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: private_key is not an RSA key")
        return cls(email=str(info["client_email"]), public_key=private.public_key())

    def verifies(self, signature: bytes, message: str) -> bool:
        try:
            self.public_key.verify(signature, message.encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


# --- the request's signature parameters ---------------------------------------------


@dataclass(frozen=True)
class SignatureParams:
    """The X-Goog-* query parameters of a V4 signed URL, parsed and checked for form."""

    email: str
    scope: str
    date: dt.datetime
    date_text: str
    expires_s: int
    signed_headers_text: str
    signed_headers: tuple[str, ...]
    signature: bytes

    @property
    def expires_at(self) -> dt.datetime:
        return self.date + dt.timedelta(seconds=self.expires_s)


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """(name, value) pairs, percent-decoded, in the order sent."""
    pairs = []
    for item in raw_query.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((urllib.parse.unquote(name), urllib.parse.unquote(value)))
    return pairs


def signature_values(pairs: Sequence[tuple[str, str]]) -> dict[str, str] | None:
    """The signature parameters by lowercase name, or None when none is present
    (an anonymous request). Cloud Storage accepts them in any letter case."""
    found: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key in SIGNATURE_PARAMS:
            if key in found:
                raise malformed(name, "Parameter given more than once.")
            found[key] = value
    if not found:
        return None
    for key in SIGNATURE_PARAMS:
        if key not in found:
            raise malformed(key, "Missing required signature parameter.")
    return found


def parse_signature_params(values: Mapping[str, str]) -> SignatureParams:
    if values["x-goog-algorithm"] != ALGORITHM:
        raise malformed("X-Goog-Algorithm", f"Unsupported algorithm; this host accepts {ALGORITHM}.")
    date_text = values["x-goog-date"]
    try:
        date = dt.datetime.strptime(date_text, DATE_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise malformed("X-Goog-Date", "Date not in ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'.") from None
    email, scope = parse_credential(values["x-goog-credential"], date_text[:8])
    expires_s = parse_expires(values["x-goog-expires"])
    text = values["x-goog-signedheaders"]
    names = tuple(text.split(";"))
    if "host" not in names or any(not n or n != n.lower() for n in names):
        raise malformed("X-Goog-SignedHeaders", "Signed headers must be lowercase and include host.")
    try:
        signature = bytes.fromhex(values["x-goog-signature"])
    except ValueError:
        raise malformed("X-Goog-Signature", "Signature is not hex encoded.") from None
    return SignatureParams(
        email=email,
        scope=scope,
        date=date,
        date_text=date_text,
        expires_s=expires_s,
        signed_headers_text=text,
        signed_headers=names,
        signature=signature,
    )


def parse_credential(credential: str, date: str) -> tuple[str, str]:
    """(email, scope) of `email/YYYYMMDD/location/storage/goog4_request`.

    The location is not checked: the Python client writes `auto`, others write a
    region, and Cloud Storage accepts both; it is part of what was signed."""
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not parts[0] or not parts[2] or parts[3:] != ["storage", "goog4_request"]:
        raise malformed("X-Goog-Credential", "Credential must be email/date/location/storage/goog4_request.")
    if parts[1] != date:
        raise malformed("X-Goog-Credential", "Credential scope date does not match X-Goog-Date.")
    return parts[0], "/".join(parts[1:])


def parse_expires(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_EXPIRES_S:
        raise malformed("X-Goog-Expires", f"Expires must be between 1 and {MAX_EXPIRES_S}.")
    return int(text)


def check_window(params: SignatureParams, now: dt.datetime) -> None:
    if now > params.expires_at:
        stamp = params.expires_at.isoformat()
        raise Refusal(
            400, "ExpiredToken", "The provided token has expired.", f"Request signature expired at: {stamp}"
        )
    if now < params.date - dt.timedelta(seconds=EARLY_USE_S):
        raise Refusal(
            403, "AccessDenied", ACCESS_DENIED, "Request is not yet valid: X-Goog-Date is in the future."
        )


# --- the canonical request -----------------------------------------------------------


def canonical_uri(raw_path: str) -> str:
    """The path percent-encoded the way the signer encodes it, whichever way the
    client encoded it (`@` and `%40` are the same object name)."""
    return urllib.parse.quote(urllib.parse.unquote(raw_path), safe="/~")


def canonical_query(pairs: Sequence[tuple[str, str]]) -> str:
    encoded = [
        f"{urllib.parse.quote(name, safe='~')}={urllib.parse.quote(value, safe='~')}"
        for name, value in pairs
        if name.lower() != "x-goog-signature"
    ]
    return "&".join(sorted(encoded))


def header_values(headers: Message, names: Sequence[str]) -> dict[str, str]:
    """Each signed header's canonical value: repeated headers joined with commas,
    runs of whitespace folded to one space. A signed header the request lacks is
    refused as Cloud Storage refuses it."""
    values = {}
    for name in names:
        sent = headers.get_all(name)
        if not sent:
            raise malformed(name, "Header was included in signedheaders, but not in the request.")
        values[name] = ",".join(" ".join(str(v).split()) for v in sent)
    return values


def check_unsigned_extensions(headers: Message, signed: Sequence[str]) -> None:
    # An x-goog-* header changes what the request does (metadata, ACLs,
    # preconditions, size limits), so Cloud Storage refuses one the URL does not sign.
    for name in headers:
        lower = name.lower()
        if lower.startswith("x-goog-") and lower not in signed:
            raise malformed(lower, "Header was included in the request, but not in signedheaders.")


def canonical_request(
    method: str,
    raw_path: str,
    pairs: Sequence[tuple[str, str]],
    params: SignatureParams,
    signed_values: Mapping[str, str],
) -> str:
    header_block = "".join(f"{name}:{signed_values[name]}\n" for name in sorted(signed_values))
    # A signed x-goog-content-sha256 stands in for the payload, as the signer
    # has it; the body itself is not hashed here (no client of ours signs one).
    payload = signed_values.get("x-goog-content-sha256", UNSIGNED_PAYLOAD)
    return "\n".join(
        [
            method,
            canonical_uri(raw_path),
            canonical_query(pairs),
            header_block,
            params.signed_headers_text,
            payload,
        ]
    )


def string_to_sign(params: SignatureParams, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return "\n".join([ALGORITHM, params.date_text, params.scope, digest])


# --- verification ---------------------------------------------------------------


@dataclass(frozen=True)
class Verified:
    """A request whose signature holds: the values of its signed headers."""

    signed: Mapping[str, str]

    def length_range(self) -> tuple[int, int] | None:
        raw = self.signed.get(LENGTH_RANGE)
        if raw is None:
            return None
        low, sep, high = raw.replace(" ", "").partition(",")
        if not sep or not low.isdigit() or not high.isdigit() or int(low) > int(high):
            raise Refusal(400, "InvalidArgument", "Invalid argument.", f"{LENGTH_RANGE} must be MIN,MAX.")
        return int(low), int(high)

    def generation_match(self) -> int | None:
        raw = self.signed.get(GENERATION_MATCH)
        if raw is None:
            return None
        if not raw.isdigit():
            raise Refusal(
                400, "InvalidArgument", "Invalid argument.", f"{GENERATION_MATCH} must be a number."
            )
        return int(raw)


@dataclass(frozen=True)
class Verifier:
    key: ServiceAccountKey

    def verify(
        self, method: str, raw_path: str, raw_query: str, headers: Message, now: dt.datetime
    ) -> Verified:
        pairs = parse_query(raw_query)
        values = signature_values(pairs)
        if values is None:
            raise anonymous(method)
        params = parse_signature_params(values)
        check_window(params, now)
        signed = header_values(headers, params.signed_headers)
        check_unsigned_extensions(headers, params.signed_headers)
        canonical = canonical_request(method, raw_path, pairs, params, signed)
        to_sign = string_to_sign(params, canonical)
        # A credential naming another account cannot be verified with this key:
        # to the client it is the same failure as a wrong signature.
        if params.email != self.key.email or not self.key.verifies(params.signature, to_sign):
            raise signature_mismatch(to_sign, canonical)
        return Verified(signed)


# --- the request body ---------------------------------------------------------------


def too_large() -> Refusal:
    return Refusal(
        400,
        "EntityTooLarge",
        "Your proposed upload is larger than the maximum object size specified in your Policy Document.",
        "Content-length exceeds upper bound on range",
    )


def too_small() -> Refusal:
    return Refusal(
        400,
        "EntityTooSmall",
        "Your proposed upload is smaller than the minimum object size specified in your Policy Document.",
        "Content-length is smaller than lower bound on range",
    )


def bad_body(details: str) -> Refusal:
    return Refusal(400, "InvalidArgument", "Invalid argument.", details)


def declared_length(headers: Message) -> int | None:
    """Content-Length, or None for a chunked body (which takes precedence)."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return None
    raw = headers.get("Content-Length", "0").strip()
    if not raw.isdigit():
        raise bad_body("Content-Length is not a number.")
    return int(raw)


def read_exact(rfile: io.BufferedIOBase, length: int) -> bytes:
    data = bytearray()
    while len(data) < length:
        chunk = rfile.read(min(READ_CHUNK, length - len(data)))
        if not chunk:
            raise Refusal(400, "IncompleteBody", "The request body ended before its Content-Length.")
        data += chunk
    return bytes(data)


def read_chunked(rfile: io.BufferedIOBase, limit: int | None) -> bytes:
    """A chunked body; refused as soon as its declared chunks pass `limit`, so no
    more than `limit` bytes are ever held."""
    data = bytearray()
    while True:
        size_line = rfile.readline(1024).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise bad_body("Malformed chunked body.") from None
        if size == 0:
            break
        if limit is not None and len(data) + size > limit:
            raise too_large()
        data += read_exact(rfile, size)
        rfile.readline(8)  # the CRLF after each chunk
    while rfile.readline(8192).strip():  # trailers, up to the empty line
        pass
    return bytes(data)


def read_body(rfile: io.BufferedIOBase, headers: Message, length_range: tuple[int, int] | None) -> bytes:
    """The body, checked against a signed length range; a declared length is
    checked before a single byte is read."""
    low, high = length_range if length_range else (0, None)
    length = declared_length(headers)
    if length is None:
        body = read_chunked(rfile, high)
    else:
        if high is not None and length > high:
            raise too_large()
        if length < low:
            raise too_small()
        body = read_exact(rfile, length)
    if len(body) < low:
        raise too_small()
    return body


def has_body(headers: Message) -> bool:
    chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
    return chunked or headers.get("Content-Length", "0").strip() not in ("", "0")


# --- fake-gcs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Upstream:
    """fake-gcs-server, reached with one plain HTTP connection per request."""

    def __init__(self, base_url: str, timeout_s: float = UPSTREAM_TIMEOUT_S) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {base_url!r}")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.timeout_s = timeout_s

    def request(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes | None
    ) -> Answer:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return Answer(resp.status, resp.getheaders(), resp.read())
        except (OSError, http.client.HTTPException) as err:
            raise Refusal(502, "InternalError", "fake-gcs-server did not answer.", str(err)) from None
        finally:
            conn.close()

    def generation(self, bucket: str, name: str) -> int:
        """The live generation of an object, 0 when there is none (what
        x-goog-if-generation-match: 0 means), from fake-gcs's JSON API."""
        target = f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o/{urllib.parse.quote(name, safe='')}"
        answer = self.request("GET", target, [("Accept", "application/json")], None)
        if answer.status == 404:
            return 0
        if answer.status != 200:
            raise Refusal(502, "InternalError", "fake-gcs-server could not say whether the object exists.")
        return int(json.loads(answer.body)["generation"])


class ObjectLocks:
    """One lock per (bucket, object): a precondition check and the write it
    guards happen as one step. Locks are never dropped; a local stack touches
    few enough objects for that not to matter."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    @contextlib.contextmanager
    def hold(self, bucket: str, name: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault((bucket, name), threading.Lock())
        with lock:
            yield


def forwarded_headers(headers: Message) -> list[tuple[str, str]]:
    # Unsigned x-goog-* headers were refused already, so those left are signed.
    return [
        (name, str(value))
        for name, value in headers.items()
        if name.lower() in FORWARDED_HEADERS
        or (name.lower().startswith("x-goog-") and name.lower() not in HANDLED_HEADERS)
    ]


def split_target(path: str) -> tuple[str, str, str, str]:
    """(raw path, raw query, bucket, object name) of a path-style request target."""
    raw_path, _, raw_query = path.partition("?")
    bucket, _, name = raw_path.lstrip("/").partition("/")
    return raw_path, raw_query, urllib.parse.unquote(bucket), urllib.parse.unquote(name)


# --- the HTTP server ---------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: SignedUrlServer
    protocol_version = "HTTP/1.1"
    # Whether the current request's body has been consumed; a refusal that
    # leaves it unread must close the connection (see _linger).
    _body_read = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request from _serve instead

    def log_message(self, fmt: str, *args: Any) -> None:
        self.server.log(f"{self.address_string()} {fmt % args}")

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/healthz":
            self._send(200, [("Content-Type", "text/plain; charset=utf-8")], b"ok")
        else:
            self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        """A browser's preflight: answered for a listed origin and a method it
        may use, with the headers it asked for (the signature check still
        refuses any x-goog-* header the URL does not sign)."""
        self._body_read = not has_body(self.headers)
        origin = self.headers.get("Origin", "")
        method = self.headers.get("Access-Control-Request-Method", "")
        if origin not in self.server.cors_origins or method not in CORS_METHODS:
            self._refuse(Refusal(403, "AccessDenied", ACCESS_DENIED, "CORS request not allowed."))
            self.server.log(f"OPTIONS {self.path.split('?', 1)[0]} from {origin or '-'} -> 403 (CORS)")
            return
        headers = [
            ("Access-Control-Allow-Methods", ", ".join(CORS_METHODS)),
            ("Access-Control-Allow-Headers", self.headers.get("Access-Control-Request-Headers", "")),
            ("Access-Control-Max-Age", str(CORS_MAX_AGE_S)),
        ]
        self._send(200, headers, b"")
        self.server.log(f"OPTIONS {self.path.split('?', 1)[0]} from {origin} -> 200 (CORS {method})")

    def _serve(self) -> None:
        raw_path, raw_query, bucket, name = split_target(self.path)
        what = f"{self.command} {bucket}/{name}"
        self._body_read = not has_body(self.headers)
        try:
            answer, outcome = self._checked(raw_path, raw_query, bucket, name)
        except Refusal as refusal:
            self._refuse(refusal)
            self.server.log(f"{what} -> {refusal.status} {refusal.code}" + self._why(refusal))
            return
        self._send(answer.status, answer.headers, answer.body)
        self.server.log(f"{what} -> {answer.status} {outcome}")

    def _checked(self, raw_path: str, raw_query: str, bucket: str, name: str) -> tuple[Answer, str]:
        now = dt.datetime.now(dt.UTC)
        verified = self.server.verifier.verify(self.command, raw_path, raw_query, self.headers, now)
        length_range = verified.length_range()
        # Read (and range-checked) even when empty: a signed minimum refuses that too.
        body = read_body(self.rfile, self.headers, length_range)
        self._body_read = True
        expected = verified.generation_match()
        # The body is complete before the lock is taken: a slow client never
        # holds up others writing the same object.
        with self.server.locks.hold(bucket, name):
            if expected is not None and self.server.upstream.generation(bucket, name) != expected:
                raise Refusal(
                    412,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold.",
                    f"{GENERATION_MATCH}: {expected}",
                )
            sends_body = self.command in ("PUT", "POST")
            answer = self.server.upstream.request(
                self.command, self.path, forwarded_headers(self.headers), body if sends_body else None
            )
        return answer, f"forwarded ({len(body)} B in, {len(answer.body)} B out)"

    @staticmethod
    def _why(refusal: Refusal) -> str:
        detail = refusal.details if refusal.code != "SignatureDoesNotMatch" else None
        parts = [p for p in (refusal.parameter, detail) if p]
        return f" ({': '.join(parts)})" if parts else ""

    def _refuse(self, refusal: Refusal) -> None:
        # An unread body cannot be skipped to reach a next request: close after.
        self.close_connection = not self._body_read
        self._send(refusal.status, [("Content-Type", "application/xml; charset=UTF-8")], refusal.xml())
        if not self._body_read:
            self._linger()

    def _send(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        relayed_length = None
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                relayed_length = value
            elif lower not in NOT_RELAYED:
                self.send_header(name, value)
        # A HEAD answer has no body but announces the object's length.
        length = relayed_length if self.command == "HEAD" and relayed_length else str(len(body))
        self.send_header("Content-Length", length)
        if self.close_connection:
            self.send_header("Connection", "close")
        origin = self.headers.get("Origin", "")
        if origin in self.server.cors_origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _linger(self) -> None:
        """Close after a refusal that left the body unread. Closing a socket with
        unread input makes the kernel reset the connection, which can destroy the
        refusal before the client reads it; so stop sending, then read and drop
        (never keep) what the client still sends, for a bounded time."""
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_S
            while (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                if not self.connection.recv(READ_CHUNK):
                    break


class SignedUrlServer(ThreadingHTTPServer):
    """The verifying front: the key URLs are signed with, fake-gcs, and object locks."""

    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        upstream: Upstream,
        verifier: Verifier,
        cors_origins: Sequence[str] = (),
    ) -> None:
        self.upstream = upstream
        self.verifier = verifier
        self.cors_origins = frozenset(cors_origins)
        self.locks = ObjectLocks()
        super().__init__((host, port), _Handler)

    def log(self, line: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S.%f")[:-3]
        sys.stdout.write(f"{stamp} signed_urls: {line}\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.signed_urls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="fake-gcs-server's URL, e.g. http://127.0.0.1:4443")
    parser.add_argument("--key-file", required=True, help="the service-account JSON key URLs are signed with")
    parser.add_argument(
        "--cors-origin", action="append", default=[], help="a web origin whose pages may use the URLs"
    )
    args = parser.parse_args(argv)
    key = ServiceAccountKey.from_file(args.key_file)
    server = SignedUrlServer(
        args.host, args.port, Upstream(args.upstream), Verifier(key), cors_origins=args.cors_origin
    )
    server.log(
        f"listening on http://{args.host}:{server.server_address[1]}, upstream {args.upstream}, "
        f"signer {key.email}"
    )
    return serve_until_interrupted(server)


if __name__ == "__main__":
    sys.exit(main())
