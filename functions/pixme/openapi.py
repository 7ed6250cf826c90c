"""The API's OpenAPI 3.1 document, generated from the request and response models.

`ROUTES` is the API surface: every function, method and path the entry
points answer, with its request model, its answer's model and the error
codes it may give. `document()` turns it into OpenAPI; the committed
`openapi.json` is its output (`make docs` rewrites it, a test fails when it
drifts), the local stack serves it, and schemathesis fuzzes the stack with it.

Each function has its own URL. Paths here are as Cloud Functions' own host
routes them, `https://REGION-PROJECT.cloudfunctions.net/<function>/<route>`
(the function sees `/<route>`); the local stack's gateway routes the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pixme import responses as r
from pixme.api import EditRequest, GenerateRequest, PageRequest, UploadRequest
from pixme.errors import CODES

TITLE = "Pix Me! API"
VERSION = "1.0.0"
PREFIX = "pixme"  # Terraform's default name_prefix: functions are pixme-<name>

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

_REF = "#/components/schemas/"


def _schemas() -> dict[str, Any]:
    """Every model's JSON Schema under components/schemas, by model name."""
    models: list[tuple[type[BaseModel], Any]] = []
    for route in ROUTES:
        answers = route.answer if isinstance(route.answer, tuple) else (route.answer,)
        models += [(m, "serialization") for m in answers]
        if route.body is not None:
            models.append((route.body, "validation"))
    models.append((r.ErrorBody, "serialization"))
    _, top = models_json_schema(list(dict.fromkeys(models)), ref_template=_REF + "{model}")
    return dict(sorted(top.get("$defs", {}).items()))


def _error_response(status: int, codes: list[str]) -> dict[str, Any]:
    lines = "\n".join(f"- `{code}`: {CODES[code][1]}" for code in codes)
    headers = {}
    if status in (429, 503):
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    schema = {
        "allOf": [
            {"$ref": _REF + "ErrorBody"},
            {"properties": {"error": {"properties": {"code": {"enum": codes}}}}},
        ]
    }
    out: dict[str, Any] = {
        "description": lines,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        out["headers"] = headers
    return out


def _parameters(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in (p.strip("{}") for p in route.path.split("/") if p.startswith("{")):
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
            }
        )
    if route.query is not None:
        schema = route.query.model_json_schema()
        for name, prop in schema.get("properties", {}).items():
            params.append({"name": name, "in": "query", "required": False, "schema": _plain(prop)})
    if route.spends:
        params.append({"$ref": "#/components/parameters/Idempotency-Key"})
    if route.authenticated:
        params.append({"$ref": "#/components/parameters/X-Firebase-AppCheck"})
    return params


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: its nullable form collapsed (a query has no null)."""
    choices = schema.get("anyOf")
    if choices:
        concrete = [c for c in choices if c.get("type") != "null"]
        if len(concrete) == 1:
            return {**{k: v for k, v in schema.items() if k != "anyOf"}, **concrete[0]}
    return {k: v for k, v in schema.items() if k != "title"}


def _operation(route: Route) -> dict[str, Any]:
    answers = route.answer if isinstance(route.answer, tuple) else (route.answer,)
    refs = [{"$ref": _REF + m.__name__} for m in answers]
    ok: dict[str, Any] = {
        "description": answers[0].__doc__.strip().splitlines()[0] if answers[0].__doc__ else "OK",
        "content": {"application/json": {"schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}},
    }
    if route.spends:
        ok["headers"] = {
            name: {"$ref": f"#/components/headers/{name}"}
            for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
        }
    responses: dict[str, Any] = {str(route.status): ok}
    codes = list(dict.fromkeys((*route.errors, *(COMMON if route.authenticated else _OPEN))))
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(CODES[code][0], []).append(code)
    for status in sorted(by_status):
        responses[str(status)] = _error_response(status, by_status[status])
    op: dict[str, Any] = {
        "operationId": f"{route.function}_{route.method.lower()}_"
        + ("_".join(p.strip("{}") for p in route.path.split("/") if p) or "root"),
        "summary": route.summary,
        "tags": [route.function],
        "parameters": _parameters(route),
        "responses": responses,
    }
    if route.description:
        op["description"] = route.description
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF + route.body.__name__}}},
        }
    op["security"] = [{"firebase": []}] if route.authenticated else []
    return op


# What an unauthenticated route can still answer.
_OPEN = ("method_not_allowed", "route_not_found", "database_unavailable", "storage_unavailable", "internal",
         "misconfigured")  # fmt: skip


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        path = f"/{PREFIX}-{route.function}{route.path.rstrip('/')}"
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Selfies to styled avatars, edited by conversation. Every call but the style "
            'catalog carries a Firebase ID token; errors are `{"error": {"code", "message", ...}}` with a '
            "stable code. Each function has its own URL: the first path segment names it "
            "(`/pixme-generate` is the generate function's root).",
        },
        "servers": [
            {
                "url": "https://{region}-{project}.cloudfunctions.net",
                "description": "the deployed functions (Terraform output function_urls)",
                "variables": {"region": {"default": "europe-west1"}, "project": {"default": "my-project"}},
            },
            {"url": "http://127.0.0.1:8480", "description": "the local stack's gateway (make up: API_URL)"},
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "firebase": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "a Firebase Authentication ID token (anonymous sign-ins have their own"
                    " quotas)",
                }
            },
            "parameters": {
                "Idempotency-Key": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "a retry with the same key and body gets the first answer (replayed:"
                    " true) instead of a second generation; kept 24 h",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,128}$"},
                },
                "X-Firebase-AppCheck": {
                    "name": "X-Firebase-AppCheck",
                    "in": "header",
                    "required": False,
                    "description": "the app's App Check token (required when the deployment enforces"
                    " App Check)",
                    "schema": {"type": "string"},
                },
            },
            "headers": {
                "Retry-After": {
                    "description": "seconds to wait before retrying",
                    "schema": {"type": "integer"},
                },
                "RateLimit-Limit": {
                    "description": "the caller's daily quota of this kind, in cost units",
                    "schema": {"type": "integer"},
                },
                "RateLimit-Remaining": {
                    "description": "cost units left today",
                    "schema": {"type": "integer"},
                },
                "RateLimit-Reset": {
                    "description": "seconds to the quota's reset (UTC midnight)",
                    "schema": {"type": "integer"},
                },
            },
        },
    }


def rendered() -> str:
    """The document as committed in openapi.json."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"
