"""One error hierarchy: a stable code, an HTTP status, and whether to retry.

Codes are part of the API: the app switches on them, so they never change
meaning. Messages are for people and may be shown in the app.
"""

from __future__ import annotations

from typing import Any


class PixmeError(Exception):
    status = 500
    retryable = False

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        # Response headers the edge adds (e.g. RateLimit-* once a quota was read).
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        error.update(self.details)
        return {"error": error}


class InvalidRequest(PixmeError):
    status = 400


class Unauthenticated(PixmeError):
    status = 401


class Forbidden(PixmeError):
    """Authenticated, but this caller may not do this (tier, plan, policy)."""

    status = 403


class NotFound(PixmeError):
    status = 404


class MethodNotAllowed(PixmeError):
    status = 405


class Conflict(PixmeError):
    status = 409


class NotReady(PixmeError):
    """The resource exists but cannot be used yet (or was rejected)."""

    status = 409


class ModelRefused(PixmeError):
    """The model answered but produced no usable image (safety, text only...)."""

    status = 422


class RateLimited(PixmeError):
    status = 429
    retryable = True

    def __init__(self, code: str, message: str, retry_after_s: int = 10, **details: Any) -> None:
        super().__init__(code, message, retry_after_s=retry_after_s, **details)
        self.retry_after_s = retry_after_s


class Unavailable(PixmeError):
    """A dependency is down or too slow; the caller may retry later."""

    status = 503
    retryable = True

    def __init__(self, code: str, message: str, retry_after_s: int = 5, **details: Any) -> None:
        super().__init__(code, message, retry_after_s=retry_after_s, **details)
        self.retry_after_s = retry_after_s


class UpstreamMisconfigured(PixmeError):
    """The operator must act: retired model id, model access denied, bad setting."""

    status = 502


class ConfigError(PixmeError):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__("misconfigured", message)


class Rejected(PixmeError):
    """A permanent ingest failure: the upload is recorded as rejected with this code."""

    status = 422
