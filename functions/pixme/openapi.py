"""The API's OpenAPI 3.1 document, generated from the request and response models.

`document()` turns the route table (`pixme.routes`) into OpenAPI; the committed
`openapi.json` is its output (`make docs` rewrites it, a test fails when it
drifts), the local stack serves it, and schemathesis fuzzes the stack with it.

Each function has its own URL. Paths here are as Cloud Functions' own host
routes them, `https://REGION-PROJECT.cloudfunctions.net/<function>/<route>`
(the function sees `/<route>`); the local stack's gateway routes the same way.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pixme import responses as r
from pixme.errors import CODES
from pixme.routes import COMMON, OPEN, ROUTES, Route

TITLE = "Pix Me! API"
VERSION = "1.0.0"
PREFIX = "pixme"  # Terraform's default name_prefix: functions are pixme-<name>

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


# Ids as the API issues them ("s_" + 16, "u_" + 16): a session id is never
# "styles" or "models", which are routes of their own.
PATH_IDS = {"session_id": "^s_[A-Za-z0-9_-]{1,62}$", "upload_id": "^u_[A-Za-z0-9_-]{1,62}$"}


def _parameters(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in (p.strip("{}") for p in route.path.split("/") if p.startswith("{")):
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": "as the API issued it",
                "schema": {"type": "string", "pattern": PATH_IDS[name]},
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
    codes = list(dict.fromkeys((*route.errors, *(COMMON if route.authenticated else OPEN))))
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
            {
                "url": "http://127.0.0.1:{port}",
                "description": "the local stack's gateway (make up: API_URL)",
                "variables": {"port": {"default": "8480"}},
            },
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
