"""The HTTP edge: authenticate, parse JSON, call one service, map errors.

Every failure leaves as `{"error": {"code", "message", ...}}` with a fitting
status; unexpected exceptions are logged with their stack and answered with
a bare `internal` error, so no trace ever reaches a caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Request

from pixme import logs, wiring
from pixme.errors import InvalidRequest, PixmeError, RateLimited, Unauthenticated, Unavailable
from pixme.identity import Caller

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
Response = tuple[str, int, dict[str, str]]


def _json(status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> Response:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    headers.update(extra or {})
    return json.dumps(body), status, headers


def error_response(err: PixmeError) -> Response:
    extra = {}
    if isinstance(err, RateLimited | Unavailable):
        extra["Retry-After"] = str(err.retry_after_s)
    return _json(err.status, err.body(), extra)


def caller(request: Request) -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing_token", "Send a Firebase ID token as 'Authorization: Bearer <token>'.")
    return wiring.verifier().verify(token.strip())


def body_of(request: Request) -> dict[str, Any]:
    if (request.content_length or 0) > MAX_BODY:
        raise InvalidRequest("body_too_large", f"The request body must be at most {MAX_BODY} bytes.")
    raw = request.get_data(cache=False, as_text=True)
    if len(raw) > MAX_BODY:
        raise InvalidRequest("body_too_large", f"The request body must be at most {MAX_BODY} bytes.")
    try:
        body = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise InvalidRequest("invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("invalid_json", "The request body must be a JSON object.")
    return body


def serve(
    request: Request,
    methods: tuple[str, ...],
    action: Callable[[], tuple[int, dict[str, Any]]],
) -> Response:
    """Run `action` for an allowed method and turn its outcome into a response."""
    token = logs.trace_var.set(logs.trace_from_headers(request.headers))
    try:
        wiring.settings()  # fail fast, as a clean 500, if the deployment is misconfigured
        if request.method not in methods:
            return _json(
                405,
                {"error": {"code": "method_not_allowed", "message": f"Use {' or '.join(methods)}."}},
                {"Allow": ", ".join(methods)},
            )
        status, body = action()
        return _json(status, body)
    except PixmeError as err:
        level = logging.ERROR if err.status >= 500 else logging.INFO
        log.log(level, "%s %s -> %s %s: %s", request.method, request.path, err.status, err.code, err.message)
        return error_response(err)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json(500, {"error": {"code": "internal", "message": "Internal error."}})
    finally:
        logs.trace_var.reset(token)
