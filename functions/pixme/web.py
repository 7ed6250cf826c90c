"""The HTTP edge: authenticate, parse JSON, call one service, present its
answer (`present`: the one place image URLs are signed), map errors.

Every failure leaves as `{"error": {"code", "message", ...}}` with a fitting
status; unexpected exceptions are logged with their stack and answered with
a bare `internal` error, so no trace ever reaches a caller. A body is read
with a cap as it arrives (chunked bodies have no length to check first), and
whatever a request leaves unread is discarded in pieces, never buffered.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, NoReturn

from flask import Request, after_this_request
from flask import Response as FlaskResponse
from pydantic import BaseModel

from pixme import logs, wiring
from pixme import responses as r
from pixme.errors import (
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    PixmeError,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from pixme.identity import Caller
from pixme.routes import allowed_methods

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
# Bodies are read in pieces this big, so no read allocates more than this.
CHUNK = 64 * 1024
# How much of a body the edge throws away after answering, so that a client
# still sending reads its answer instead of a connection reset. Above Cloud
# Run's HTTP/1 request cap (32 MiB), so in the cloud every client gets its
# answer; locally it bounds the work an endless stream can cause. Past it the
# server drops the connection.
DRAIN_LIMIT = 64 * 1024 * 1024
# No field is a number, so a longer integer is an attack, not a value; the
# limit does not depend on the interpreter's int_max_str_digits either.
MAX_INT_DIGITS = 64
Response = tuple[str, int, dict[str, str]]
# path of an object in the assets bucket -> its signed GET URL
Signer = Callable[[str], str]
# What an entry point's action gives back: a status and a JSON body, and
# optionally headers to send with them.
Outcome = tuple[int, BaseModel] | tuple[int, BaseModel, dict[str, str]]
# CORS, for the pages PIXME_CORS_ORIGINS lists: the headers their scripts may
# send, the answer headers they may read, and how long a preflight holds.
CORS_REQUEST_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Firebase-AppCheck"
CORS_EXPOSED_HEADERS = "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After"
CORS_MAX_AGE_S = 600
# Each signature is an IAM signBlob round trip in the cloud: an answer's image
# URLs are signed this many at a time.
SIGNING_THREADS = 8


def present(body: BaseModel, sign: Signer | None) -> dict[str, Any]:
    """The one presenter: a response model as the app gets it. It keeps exactly
    the fields the service set, each as its declaration says, and each image
    (`responses.Image`) becomes the URL `sign` gives for its path, the paths
    signed SIGNING_THREADS at a time."""
    paths: set[str] = set()
    body.model_dump(mode="json", exclude_unset=True, context={r.COLLECT: paths})
    found = sorted(paths)
    if not found:
        urls: dict[str, str] = {}
    elif sign is None:
        raise RuntimeError(f"{type(body).__name__} shows images, and this function signs none")
    elif len(found) == 1:
        urls = {found[0]: sign(found[0])}
    else:
        with ThreadPoolExecutor(min(SIGNING_THREADS, len(found)), thread_name_prefix="sign") as pool:
            urls = dict(zip(found, pool.map(sign, found), strict=True))
    return body.model_dump(mode="json", exclude_unset=True, context={r.SIGNED: urls})


def signed_asset(path: str) -> str:
    """A GET URL of an object of the assets bucket, valid for url_ttl_s: the
    signer of the functions whose answers show images. Only they are given it
    (`serve`'s `sign`), so only they need the right to sign (infra/)."""
    s = wiring.settings()
    return wiring.blobs().signed_url(s.assets_bucket, path, s.url_ttl_s)


def _json(
    status: int,
    body: dict[str, Any] | BaseModel,
    extra: dict[str, str] | None = None,
    sign: Signer | None = None,
) -> Response:
    """A response model (presented) or an error's dict, as JSON."""
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    headers.update(extra or {})
    if isinstance(body, BaseModel):
        body = present(body, sign)
    return json.dumps(body), status, headers


def error_response(err: PixmeError) -> Response:
    extra = dict(err.headers)
    if isinstance(err, RateLimited | Unavailable):
        extra["Retry-After"] = str(err.retry_after_s)
    return _json(err.status, err.body(), extra)


def caller(request: Request) -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing_token", "Send a Firebase ID token as 'Authorization: Bearer <token>'.")
    # App Check first: in enforce mode a client that is not our app is turned
    # away before its ID token is even looked at.
    wiring.app_check().check(request.headers.get("X-Firebase-AppCheck"))
    who = wiring.verifier().verify(token.strip())
    logs.bind_uid(who.uid)  # every later line of the request carries its hash
    if who.anonymous and wiring.settings().anonymous == "deny":
        raise Forbidden(
            "anonymous_not_allowed", "Sign in with an account to use Pix Me! (guest access is off)."
        )
    return who


def _too_large() -> InvalidRequest:
    return InvalidRequest("body_too_large", f"The request body must be at most {MAX_BODY} bytes.")


def _read_at_most(stream: IO[bytes], limit: int) -> bytes:
    """Up to `limit` bytes of `stream`, however much the client sends: a chunked
    body has no Content-Length to check first."""
    pieces: list[bytes] = []
    size = 0
    while size < limit:
        piece = stream.read(min(CHUNK, limit - size))
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)


def body_of(request: Request) -> dict[str, Any]:
    """The JSON object in the body, read with a cap: one more byte than allowed is
    enough to refuse, and nothing past that is held in memory."""
    if (request.content_length or 0) > MAX_BODY:
        raise _too_large()
    try:
        raw = _read_at_most(request.stream, MAX_BODY + 1)
    except Exception:
        # The client went away or sent a malformed chunk; each server raises its
        # own type for that, and the answer is the same.
        log.info("request body could not be read", exc_info=True)
        raise InvalidRequest("invalid_json", "The request body ended early or is malformed.") from None
    if len(raw) > MAX_BODY:
        raise _too_large()
    return parse_json(raw)


def _refuse_constant(name: str) -> NoReturn:
    # json.loads accepts NaN and Infinity, which are not JSON (RFC 8259).
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 would silently become inf
        raise ValueError("number out of range")
    return value


def _short_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError("integer too long")
    return int(text)


def parse_json(raw: bytes) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes; anything else is 400 `invalid_json`, including
    what makes `json.loads` raise other than JSONDecodeError (deep nesting, huge
    integers, invalid UTF-8) or accept what JSON does not allow (NaN, Infinity)."""
    try:
        body = json.loads(
            raw.decode("utf-8") or "{}",
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_short_int,
        )
    except RecursionError:
        raise InvalidRequest("invalid_json", "The request body is nested too deeply.") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError and the refusals above
        raise InvalidRequest("invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("invalid_json", "The request body must be a JSON object.")
    return body


def _discard_unread_body(request: Request) -> None:
    """Throw away what the action left of the body, in pieces, up to DRAIN_LIMIT.

    functions-framework reads the rest of every request after the response (its
    `read_request` hook, so clients do not see a reset), into memory and at any
    size: a 200 MB body refused early, even for a missing token, would still be
    buffered whole. Past DRAIN_LIMIT the rest is hidden from that hook, and the
    server (gunicorn drains 64 KiB at most) closes the connection.
    """
    try:
        left = DRAIN_LIMIT
        while left > 0:
            piece = request.stream.read(min(CHUNK, left))
            if not piece:
                return
            left -= len(piece)
    except Exception:
        log.info("unread request body could not be drained", exc_info=True)
    # werkzeug's cached_property is settable: the hook then reads this, not the socket.
    request.stream = io.BytesIO()


def cors(request: Request, methods: tuple[str, ...]) -> Response | None:
    """CORS for an origin PIXME_CORS_ORIGINS lists (none by default, so none in
    the cloud): its preflight is answered here (returned, for serve() to send);
    any other request of it gets the headers that let its page read the answer.
    Other origins get nothing: a preflight of theirs falls through to the 405."""
    try:
        allowed = wiring.settings().cors_origins
    except PixmeError:
        return None  # serve() answers the misconfiguration
    origin = request.headers.get("Origin", "")
    if origin not in allowed:
        return None
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        headers["Access-Control-Allow-Methods"] = ", ".join(methods)
        headers["Access-Control-Allow-Headers"] = CORS_REQUEST_HEADERS
        headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
        return "", 204, headers
    headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS

    @after_this_request
    def add_cors(response: FlaskResponse) -> FlaskResponse:
        response.headers.update(headers)
        return response

    return None


def serve(
    request: Request,
    function: str,
    action: Callable[[], Outcome],
    sign: Signer | None = None,
) -> Response:
    """Run `action` for an allowed method and turn its outcome into a response;
    log one `request` line for it. The methods allowed are the route table's
    for this function and path (`pixme.routes`), so a 405's Allow is exact.
    `sign` signs the images of the answer (`signed_asset` where there are any)."""
    methods = allowed_methods(function, request.path)
    if (preflight := cors(request, methods)) is not None:
        return preflight
    started = time.perf_counter()
    with logs.scope(logs.trace_from_headers(request.headers)):
        failure: Exception | None = None
        try:
            response, error = _answer(request, methods, action, sign)
        except Exception as exc:
            failure = exc
            response = _json(500, {"error": {"code": "internal", "message": "Internal error."}})
            error = PixmeError("internal", "Internal error.")
        finally:
            _discard_unread_body(request)
        _log_request(request, response[1], error, started, failure)
        return response


def _answer(
    request: Request, methods: tuple[str, ...], action: Callable[[], Outcome], sign: Signer | None
) -> tuple[Response, PixmeError | None]:
    """The response, and the error it answers if it is one."""
    try:
        wiring.settings()  # fail fast, as a clean 500, if the deployment is misconfigured
        if request.method not in methods:
            refusal = MethodNotAllowed("method_not_allowed", f"Use {' or '.join(methods)}.")
            refusal.headers["Allow"] = ", ".join(methods)
            raise refusal
        status, body, *headers = action()
        # Presenting signs URLs, which may fail like any call (Unavailable).
        response = _json(status, body, headers[0] if headers else None, sign)
    except PixmeError as err:
        return error_response(err), err
    return response, None


def _log_request(
    request: Request, status: int, error: PixmeError | None, started: float, failure: Exception | None
) -> None:
    """One structured line per answer (jsonPayload.event = "request"); a 5xx is
    also an Error Reporting event, with the stack when the error was unexpected."""
    fields: dict[str, Any] = {
        "event": "request",
        "method": request.method,
        "path": request.path,
        "status": status,
        "latency_ms": int((time.perf_counter() - started) * 1000),
    }
    line = f"{request.method} {request.path} -> {status}"
    if error is not None:
        fields["code"] = error.code
        line = f"{line} {error.code}: {error.message}"
    if status >= 500:
        fields.update(logs.error_report(request.method, request.path, status, fields.get("code")))
        if failure is not None:
            log.error(
                "unhandled error on %s %s", request.method, request.path, exc_info=failure, extra=fields
            )
        else:
            log.error("%s", line, extra=fields)
        return
    # A refusal for quota or rate is worth seeing; other 4xx are the callers' mistakes.
    log.log(logging.WARNING if status == 429 else logging.INFO, "%s", line, extra=fields)
