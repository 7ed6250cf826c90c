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


# Every code an HTTPS call can answer with: its status and what it means. The
# OpenAPI document lists them per status; the app switches on them.
CODES: dict[str, tuple[int, str]] = {
    "missing_field": (400, "a required field is absent or blank (`field` names it)"),
    "invalid_field": (400, "a field has the wrong type or value (`field`; `allowed` for a closed set)"),
    "field_too_long": (400, "a text field is over its limit (`field`)"),
    "unknown_style": (400, "no such style (`allowed` lists the catalog)"),
    "invalid_json": (400, "the body is not one JSON object"),
    "body_too_large": (400, "the body is over 64 KiB"),
    "invalid_idempotency_key": (400, "Idempotency-Key is not 8-128 of A-Za-z0-9_-"),
    "missing_token": (401, "no `Authorization: Bearer <Firebase ID token>`"),
    "invalid_token": (401, "the ID token is expired, malformed, revoked or for another project"),
    "invalid_app_check": (401, "App Check is enforced and X-Firebase-AppCheck is missing or invalid"),
    "anonymous_not_allowed": (403, "guest (anonymous) sign-ins are turned off"),
    "model_not_allowed": (403, "the model alias needs a claim this caller lacks (`model`)"),
    "upload_not_found": (404, "no such upload of the caller (or it expired)"),
    "session_not_found": (404, "no such session of the caller (or it expired)"),
    "turn_not_found": (404, "no such turn in the session"),
    "route_not_found": (404, "no such route on this function"),
    "object_not_found": (404, "a stored image is gone (expired or deleted meanwhile)"),
    "method_not_allowed": (405, "this route does not take the method (`Allow` lists those it takes)"),
    "upload_processing": (409, "the photo is still being processed; retry shortly"),
    "upload_rejected": (409, "the photo was rejected by ingest (`reason`)"),
    "stale_head": (409, "`if_head` is no longer the session's head (`head_turn_id`)"),
    "turn_exists": (409, "the turn was already recorded (a retried write)"),
    "idempotency_key_reused": (409, "the Idempotency-Key was used for another request body"),
    "request_in_progress": (409, "the first request with this Idempotency-Key is still running"),
    "prompt_blocked": (422, "the model blocked the prompt"),
    "image_safety": (422, "the model withheld the image for safety"),
    "image_recitation": (422, "the model withheld the image for recitation"),
    "no_image": (422, "the model answered without an image"),
    "text_only": (422, "the model answered in words only (`message` holds them)"),
    "quota_exceeded": (429, "the caller's daily quota is used (`quota`, `limit`; Retry-After)"),
    "too_many_in_flight": (429, "the caller has too many images being made at once (Retry-After)"),
    "model_rate_limited": (429, "the model is rate-limiting the project (Retry-After)"),
    "upload_quota_exceeded": (429, "the caller's daily uploads are used (Retry-After)"),
    "too_many_pending_uploads": (429, "the caller has too many unfinished uploads (Retry-After)"),
    "model_not_found": (
        502,
        "the configured model id is retired or wrong (the operator must update PIXME_MODELS)",
    ),
    "model_account_limited": (502, "the project's model access is limited for policy reasons"),
    "model_access_denied": (502, "the functions may not call the model (IAM or API key)"),
    "model_invalid_argument": (502, "the model refused the request's shape"),
    "model_rejected_history": (502, "the model refused the conversation's history"),
    "missing_thought_signature": (502, "the model's image came without the signature an edit needs"),
    "model_unavailable_here": (502, "the model is not offered in the configured location"),
    "model_error": (502, "the model failed in an unexpected way"),
    "budget_exhausted": (503, "the project's daily budget is spent (Retry-After: next UTC midnight)"),
    "model_unavailable": (503, "the model is overloaded or down (Retry-After)"),
    "model_timeout": (503, "the model took longer than PIXME_MODEL_TIMEOUT_S"),
    "model_unreachable": (503, "the model could not be reached (Retry-After)"),
    "storage_unavailable": (503, "Cloud Storage is unavailable (Retry-After)"),
    "database_unavailable": (503, "Firestore is unavailable (Retry-After)"),
    "database_contention": (503, "too many concurrent writes to one document; retry (Retry-After)"),
    "auth_unavailable": (503, "the token keys could not be fetched (Retry-After)"),
    "internal": (500, "an unexpected error (logged with its stack, never shown)"),
    "misconfigured": (500, "the deployment's settings are wrong (the operator must act)"),
}
