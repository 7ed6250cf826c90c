"""Cloud Functions entry points. Each parses, calls one service, maps the result."""

from __future__ import annotations

import logging
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent
from flask import Request

from pixme import wiring
from pixme.api import EditRequest, GenerateRequest, UploadRequest
from pixme.errors import NotFound, PixmeError
from pixme.events import FINALIZED, storage_object
from pixme.web import Response, body_of, caller, serve

log = logging.getLogger("pixme.main")


@functions_framework.cloud_event
def on_upload(event: CloudEvent) -> None:
    """Storage finalized: validate and normalize a selfie. Raising asks for a retry."""
    if event["type"] != FINALIZED:
        log.info("ignoring event type %s", event["type"])
        return
    obj = storage_object(event)
    try:
        outcome = wiring.ingest().handle(obj)
    except PixmeError as err:
        if err.retryable:
            # Transient, or another delivery holds the upload: the platform redelivers.
            log.warning("ingest of %s gen %s will be retried: %s", obj.name, obj.generation, err.code)
            raise
        log.error("ingest of %s failed permanently: %s", obj.name, err.code)
        return
    log.info("ingest %s gen %s: %s", obj.name, obj.generation, outcome)


@functions_framework.http
def uploads(request: Request) -> Response:
    """POST / (a signed upload URL), GET /{upload_id} (its status), DELETE /{upload_id}."""

    def action() -> tuple[int, dict[str, Any]]:
        parts = [p for p in request.path.split("/") if p]
        if len(parts) > 1:
            raise NotFound("route_not_found", "No such route.")
        if request.method == "POST" and not parts:
            uid = caller(request).uid
            return 201, wiring.upload_service().start(uid, UploadRequest.parse(body_of(request)))
        if request.method in ("GET", "DELETE") and parts:
            uid = caller(request).uid
            service = wiring.upload_service()
            if request.method == "GET":
                return 200, service.status(uid, parts[0])
            return 200, service.delete(uid, parts[0])
        raise NotFound("route_not_found", "No such route.")

    return serve(request, ("POST", "GET", "DELETE"), action)


@functions_framework.http
def generate(request: Request) -> Response:
    def action() -> tuple[int, dict[str, Any]]:
        uid = caller(request).uid
        req = GenerateRequest.parse(body_of(request), wiring.settings())
        return 201, wiring.avatars().generate(uid, req, request.headers.get("Idempotency-Key"))

    return serve(request, ("POST",), action)


@functions_framework.http
def edit(request: Request) -> Response:
    def action() -> tuple[int, dict[str, Any]]:
        uid = caller(request).uid
        req = EditRequest.parse(body_of(request), wiring.settings())
        return 201, wiring.avatars().edit(uid, req, request.headers.get("Idempotency-Key"))

    return serve(request, ("POST",), action)


@functions_framework.http
def sessions(request: Request) -> Response:
    """GET /styles, GET / (my sessions), GET /{session_id};
    GET /uploads/{upload_id} is kept as an alias of `uploads`' GET."""

    def action() -> tuple[int, dict[str, Any]]:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["styles"]:
            from pixme.services.library import styles

            return 200, styles()
        uid = caller(request).uid
        library = wiring.library()
        if not parts:
            return 200, library.sessions_of(uid)
        if len(parts) == 1:
            return 200, library.session(uid, parts[0])
        if len(parts) == 2 and parts[0] == "uploads":
            return 200, wiring.upload_service().status(uid, parts[1])
        raise NotFound("route_not_found", "No such route.")

    return serve(request, ("GET",), action)


@functions_framework.http
def cleanup(request: Request) -> Response:
    """Called by Cloud Scheduler; IAM lets only the scheduler's account invoke it."""
    return serve(request, ("POST", "GET"), lambda: (200, wiring.cleanup().run()))
