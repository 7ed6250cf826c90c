"""The API surface: every function, method and path the entry points answer,
with the request model, the answer's model and the error codes of each.

The edge answers 405 (with `Allow`) from this table, and `pixme.openapi`
turns it into the OpenAPI document.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from pixme import responses as r
from pixme.api import EditRequest, GenerateRequest, PageRequest, UploadRequest

# Answered by every authenticated route.
COMMON = (
    "missing_token",
    "invalid_token",
    "invalid_app_check",
    "anonymous_not_allowed",
    "method_not_allowed",
    "route_not_found",
    "auth_unavailable",
    "database_unavailable",
    "database_contention",
    "storage_unavailable",
    "internal",
    "misconfigured",
)
BODY = ("missing_field", "invalid_field", "field_too_long", "invalid_json", "body_too_large")
MODEL_CALL = (
    "invalid_idempotency_key",
    "idempotency_key_reused",
    "request_in_progress",
    "model_not_allowed",
    "prompt_blocked",
    "image_safety",
    "image_recitation",
    "no_image",
    "text_only",
    "quota_exceeded",
    "too_many_in_flight",
    "model_rate_limited",
    "model_not_found",
    "model_account_limited",
    "model_access_denied",
    "model_invalid_argument",
    "model_rejected_history",
    "missing_thought_signature",
    "model_unavailable_here",
    "model_error",
    "budget_exhausted",
    "model_unavailable",
    "model_timeout",
    "model_unreachable",
    "object_not_found",
)


@dataclass(frozen=True)
class Route:
    function: str
    method: str
    path: str  # as the function sees it
    summary: str
    answer: type[BaseModel] | tuple[type[BaseModel], ...]
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[str, ...] = ()
    authenticated: bool = True
    spends: bool = False  # generate/edit: Idempotency-Key and RateLimit-* headers
    description: str = ""
    tags: tuple[str, ...] = field(default=())


ROUTES: tuple[Route, ...] = (
    Route(
        "uploads", "POST", "/", "Get a signed URL to upload a selfie", r.UploadTicket, 201, UploadRequest,
        errors=(*BODY, "upload_quota_exceeded", "too_many_pending_uploads"),
        description="Registers a pending upload and signs a PUT for it; send the photo with exactly the "
        "returned method and headers (no Authorization), then poll GET /{upload_id}.",
    ),
    Route(
        "uploads", "GET", "/{upload_id}", "An upload's status: pending, processing, ready (with the face) or "
        "rejected (with the reason)", r.UploadStatus, errors=("invalid_field", "upload_not_found"),
    ),
    Route(
        "uploads", "DELETE", "/{upload_id}", "Delete an upload with its images and the sessions made from it",
        r.UploadDeleted, errors=("invalid_field", "upload_not_found"),
    ),
    Route(
        "generate", "POST", "/", "Make a styled avatar (or a style pack) of a ready upload",
        (r.AvatarTurn, r.StylePack), 201, GenerateRequest, spends=True,
        errors=(*BODY, *MODEL_CALL, "unknown_style", "upload_not_found", "upload_processing",
                "upload_rejected", "session_not_found"),
    ),
    Route(
        "edit", "POST", "/", "Edit an avatar by instruction: a new turn of its session", r.AvatarTurn, 201,
        EditRequest, spends=True,
        errors=(*BODY, *MODEL_CALL, "session_not_found", "turn_not_found", "stale_head", "turn_exists"),
    ),
    Route(
        "sessions", "GET", "/styles", "The style catalog", r.StyleCatalog, authenticated=False,
    ),
    Route("sessions", "GET", "/models", "The model aliases, their cost and whether the caller may use them",
          r.ModelList),
    Route("sessions", "GET", "/", "The caller's sessions, newest first", r.SessionList),
    Route(
        "sessions", "GET", "/{session_id}", "A session and one page of its turns", r.SessionPage,
        query=PageRequest, errors=("invalid_field", "session_not_found"),
    ),
    Route(
        "sessions", "DELETE", "/{session_id}", "Delete a session, its turns and images", r.SessionDeleted,
        errors=("invalid_field", "session_not_found"),
    ),
    Route(
        "sessions", "GET", "/uploads/{upload_id}", "Alias of GET uploads/{upload_id} (kept for older apps)",
        r.UploadStatus, errors=("invalid_field", "upload_not_found"),
    ),
    Route("account", "GET", "/usage", "Quotas left today, upload limits and models", r.Usage),
    Route("account", "GET", "/export", "Everything stored for the caller, with signed URLs", r.Export),
    Route(
        "account", "DELETE", "/", "Delete everything stored for the caller (idempotent, resumable)",
        r.AccountDeleted,
    ),
    Route(
        "cleanup", "POST", "/", "Enforce retention (Cloud Scheduler only: IAM lets no one else call it)",
        r.CleanupReport, authenticated=False,
    ),
)  # fmt: skip


# What an unauthenticated route can still answer.
OPEN = ("method_not_allowed", "route_not_found", "database_unavailable", "storage_unavailable", "internal",
         "misconfigured")  # fmt: skip


def _matches(template: str, path: str) -> bool:
    want = [p for p in template.split("/") if p]
    got = [p for p in path.split("/") if p]
    return len(want) == len(got) and all(w.startswith("{") or w == g for w, g in zip(want, got, strict=True))


def allowed_methods(function: str, path: str) -> tuple[str, ...]:
    """The methods `function` takes at `path`: those of the routes it names
    literally (`/styles`), else of the templates it fits (`/{session_id}`), else,
    on a path no route matches, all of the function's (the answer is then 404)."""
    mine = [route for route in ROUTES if route.function == function]
    literal = [r.method for r in mine if "{" not in r.path and _matches(r.path, path)]
    fitting = [r.method for r in mine if _matches(r.path, path)]
    return tuple(dict.fromkeys(literal or fitting or [r.method for r in mine]))
