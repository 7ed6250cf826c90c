"""Cloud Functions entry points. Each parses, calls one service and hands its typed
result to the edge (`web.serve`), which presents it."""

from __future__ import annotations

import logging
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent
from flask import Request

from pixme import logs, wiring
from pixme import responses as r
from pixme.api import EditRequest, GenerateRequest, PageRequest, UploadRequest, valid_id
from pixme.errors import NotFound, PixmeError
from pixme.events import FINALIZED, storage_object
from pixme.spending import model_choices
from pixme.web import Outcome, Response, body_of, caller, error_response, serve, signed_asset

log = logging.getLogger("pixme.main")


# A path the framework's own router refuses (one holding a newline, say) gets
# the API's JSON 404 too, not Flask's HTML page. The hook exists only while
# functions-framework loads this module (not when a test imports it).
_errorhandler = getattr(functions_framework, "errorhandler", None)
if _errorhandler is not None:
    _errorhandler(404)(lambda _error: error_response(NotFound("route_not_found", "No such route.")))


@functions_framework.cloud_event
def on_upload(event: CloudEvent) -> None:
    """Storage finalized: validate and normalize a selfie. Raising asks for a retry.

    Logs one `ingest` line per delivery (outcome, reason), every line of it
    with the event id and a trace, so one upload's deliveries read together."""
    event_id = str(event.get("id") or "")
    with logs.scope(logs.event_trace(event.get("traceparent"), event_id), event_id=event_id):
        if event["type"] != FINALIZED:
            _ingest_line(logging.INFO, "ignored", "event_type", f"ignoring event type {event['type']}")
            return
        obj = storage_object(event)
        try:
            outcome = wiring.ingest().handle(obj)
        except PixmeError as err:
            if err.retryable:
                # Transient, or another delivery holds the upload: the platform redelivers.
                _ingest_line(
                    logging.WARNING, "retry", err.code, f"ingest gen {obj.generation} will be retried"
                )
                raise
            _ingest_line(logging.ERROR, "failed", err.code, f"ingest gen {obj.generation} failed permanently")
            return
        except Exception:
            _ingest_line(
                logging.ERROR, "failed", "internal", f"ingest gen {obj.generation} failed", exc_info=True
            )
            raise
        if outcome in ("ready", "rejected"):
            # A rejection's reason was bound by the ingest service.
            _ingest_line(logging.INFO, outcome, None, f"ingest gen {obj.generation}: {outcome}")
        else:
            _ingest_line(logging.INFO, "ignored", outcome, f"ingest gen {obj.generation}: {outcome}")


def _ingest_line(level: int, outcome: str, reason: str | None, message: str, exc_info: bool = False) -> None:
    fields: dict[str, Any] = {"event": "ingest", "outcome": outcome}
    if reason is not None:
        fields["reason"] = reason
    if level >= logging.ERROR:
        fields["@type"] = logs.REPORTED_ERROR_EVENT
    log.log(level, message, exc_info=exc_info, extra=fields)


@functions_framework.http
def uploads(request: Request) -> Response:
    """POST / (a signed upload URL), GET /{upload_id} (its status), DELETE /{upload_id}."""

    def action() -> Outcome:
        parts = [p for p in request.path.split("/") if p]
        if len(parts) > 1:
            raise NotFound("route_not_found", "No such route.")
        if request.method == "POST" and not parts:
            uid = caller(request).uid
            req = UploadRequest.parse(body_of(request))
            return 201, wiring.upload_service().start(uid, req)
        if request.method in ("GET", "DELETE") and parts:
            uid = caller(request).uid
            upload_id = valid_id(parts[0], "upload_id")
            service = wiring.upload_service()
            if request.method == "GET":
                return 200, service.status(uid, upload_id)
            return 200, service.delete(uid, upload_id)
        raise NotFound("route_not_found", "No such route.")

    return serve(request, "uploads", action)


@functions_framework.http
def generate(request: Request) -> Response:
    def action() -> Outcome:
        who = caller(request)
        req = GenerateRequest.parse(body_of(request), wiring.settings())
        answer = wiring.avatars().generate(who, req, request.headers.get("Idempotency-Key"))
        return 201, answer.body, answer.headers

    return serve(request, "generate", action, signed_asset)


@functions_framework.http
def edit(request: Request) -> Response:
    def action() -> Outcome:
        who = caller(request)
        req = EditRequest.parse(body_of(request), wiring.settings())
        answer = wiring.avatars().edit(who, req, request.headers.get("Idempotency-Key"))
        return 201, answer.body, answer.headers

    return serve(request, "edit", action, signed_asset)


@functions_framework.http
def sessions(request: Request) -> Response:
    """GET /styles, GET /models (the aliases the caller may use), GET / (my
    sessions), GET or DELETE /{session_id};
    GET /uploads/{upload_id} is kept as an alias of `uploads`' GET."""

    def action() -> Outcome:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["styles"]:
            from pixme.services.library import styles

            return 200, styles()
        if parts == ["models"]:
            return 200, r.ModelList(models=model_choices(wiring.settings(), caller(request)))
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "uploads"):
            raise NotFound("route_not_found", "No such route.")
        uid = caller(request).uid
        if len(parts) == 2:
            return 200, wiring.upload_service().status(uid, valid_id(parts[1], "upload_id"))
        session_id = valid_id(parts[0], "session_id") if parts else None
        if session_id is None:
            return 200, wiring.library().sessions_of(uid)
        if request.method == "DELETE":
            return 200, wiring.library().delete(uid, session_id)
        page = PageRequest.parse(request.args)
        return 200, wiring.library().session(uid, session_id, page)

    return serve(request, "sessions", action, signed_asset)


@functions_framework.http
def account(request: Request) -> Response:
    """GET /usage (quotas left), GET /export (everything stored, with signed URLs),
    DELETE / (everything, idempotent and resumable)."""

    def action() -> Outcome:
        parts = [p for p in request.path.split("/") if p]
        who = caller(request)
        service = wiring.accounts()
        if request.method == "GET" and parts == ["usage"]:
            return 200, service.usage_of(who)
        if request.method == "GET" and parts == ["export"]:
            return 200, service.export(who)
        if request.method == "DELETE" and not parts:
            return 200, service.delete(who)
        raise NotFound("route_not_found", "No such route: GET /usage, GET /export or DELETE /.")

    return serve(request, "account", action, signed_asset)


@functions_framework.http
def cleanup(request: Request) -> Response:
    """Called by Cloud Scheduler; IAM lets only the scheduler's account invoke it."""
    return serve(request, "cleanup", lambda: (200, wiring.cleanup().run()))
