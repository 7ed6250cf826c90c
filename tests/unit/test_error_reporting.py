"""5xx answers become Cloud Error Reporting events, and never leak a trace.

Through the real entry points in process, with the wiring faked as in
test_edge.py: a misconfigured deployment, a service failing with a 5xx
PixmeError and an unhandled exception each log one JSON line with the
ReportedErrorEvent @type, `context.httpRequest`, the error's `code` and, once
the caller is known, `uid_hash` (never the uid); the HTTP answer is the bare
JSON error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask import Flask
from werkzeug.test import TestResponse

from pixme import logs, wiring
from pixme.config import ENV_VARS
from pixme.errors import InvalidRequest, Unauthenticated, Unavailable
from pixme.identity import Caller

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "functions" / "main.py"
ENV = {"GOOGLE_CLOUD_PROJECT": "p", "PIXME_UPLOADS_BUCKET": "u", "PIXME_ASSETS_BUCKET": "a"}
UID = "alice-uid-7"
GOOD = {"Authorization": "Bearer good"}
ERROR_EVENT = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"


class FakeVerifier:
    def verify(self, token: str) -> Caller:
        if token == "good":
            return Caller(uid=UID)
        raise Unauthenticated("invalid_token", "The ID token is not valid.")


class NoAppCheck:
    def check(self, token: str | None) -> None:
        return None


class FailingUploads:
    """The upload service, failing the way it is told to."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def start(self, uid: str, req: object) -> dict[str, Any]:
        raise self.error


class Lines(logging.Handler):
    """The JSON lines the edge logs, as Cloud Logging would receive them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logs.JsonFormatter("p"))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    wiring.settings.cache_clear()
    monkeypatch.setattr(wiring, "verifier", FakeVerifier)
    monkeypatch.setattr(wiring, "app_check", NoAppCheck)
    handler = Lines()
    logger = logging.getLogger("pixme.web")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)
    wiring.settings.cache_clear()


_apps: dict[str, Flask] = {}


def post_upload(headers: dict[str, str] | None = None) -> TestResponse:
    if "uploads" not in _apps:
        _apps["uploads"] = functions_framework.create_app("uploads", source=str(SOURCE))  # type: ignore[no-untyped-call]
    client = _apps["uploads"].test_client()
    return client.post("/", json={"content_type": "image/jpeg"}, headers=headers or GOOD)


def reports(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("@type") == ERROR_EVENT]


def bare_error(resp: TestResponse, status: int, code: str) -> None:
    assert resp.status_code == status, resp.data[:300]
    assert resp.mimetype == "application/json"
    assert json.loads(resp.data)["error"]["code"] == code
    for leak in (b"Traceback", b'File "', b"secret"):
        assert leak not in resp.data


def test_a_misconfigured_deployment_is_reported_without_a_trace_in_the_answer(
    lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIXME_ASSETS_BUCKET")
    bare_error(post_upload(), 500, "misconfigured")
    [event] = reports(lines)
    assert event["severity"] == "ERROR" and event["code"] == "misconfigured"
    assert event["context"] == {"httpRequest": {"method": "POST", "url": "/", "responseStatusCode": 500}}
    assert "PIXME_ASSETS_BUCKET" in event["message"]
    assert "uid_hash" not in event  # settings fail before anyone is authenticated


def test_an_unhandled_exception_is_reported_with_its_stack_in_the_log_only(
    lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = FailingUploads(RuntimeError("a secret detail"))
    monkeypatch.setattr(wiring, "upload_service", lambda: service)
    bare_error(post_upload(), 500, "internal")
    [event] = reports(lines)
    assert event["severity"] == "ERROR" and event["code"] == "internal"
    assert event["context"]["httpRequest"] == {"method": "POST", "url": "/", "responseStatusCode": 500}
    assert "RuntimeError: a secret detail" in event["stack_trace"]
    assert event["uid_hash"] == hashlib.sha256(UID.encode()).hexdigest()[:16]
    assert UID not in json.dumps(event)


def test_a_handled_5xx_carries_its_code_and_the_callers_hash(
    lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = FailingUploads(Unavailable("storage_unavailable", "Storage is unavailable.", retry_after_s=2))
    monkeypatch.setattr(wiring, "upload_service", lambda: service)
    bare_error(post_upload(), 503, "storage_unavailable")
    [event] = reports(lines)
    assert event["code"] == "storage_unavailable"
    assert event["context"]["httpRequest"]["responseStatusCode"] == 503
    assert event["uid_hash"] == logs.uid_hash(UID) and UID not in json.dumps(event)
    assert "stack_trace" not in event


def test_4xx_answers_are_not_error_reports(
    lines: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = FailingUploads(InvalidRequest("invalid_field", "Nope."))
    monkeypatch.setattr(wiring, "upload_service", lambda: service)
    assert post_upload().status_code == 400
    assert post_upload({"Authorization": "Bearer bad"}).status_code == 401
    assert lines and not reports(lines)


def test_the_caller_is_forgotten_after_the_request() -> None:
    assert logs.uid_var.get() is None
