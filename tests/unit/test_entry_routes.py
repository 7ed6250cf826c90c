"""Every route of main.py, in process, with the real services over fakes of our ports.

The entry points run as the platform runs them
(`functions_framework.create_app(...).test_client()`, CloudEvents posted in
structured mode); the wiring's factories hand out services built exactly as
wiring.py builds them, but over tests/unit/fakes.py instead of Google's
clients. `Stack` is shared by the other test_entry_* files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from flask import Flask
from test_avatars import World
from werkzeug.test import TestResponse

from fakes import png, settings
from pixme import wiring
from pixme.api import UploadRequest
from pixme.config import Settings
from pixme.errors import Unauthenticated
from pixme.events import FINALIZED
from pixme.identity import Caller
from pixme.layout import upload_object
from pixme.services.accounts import Accounts
from pixme.services.cleanup import Cleanup
from pixme.services.ingest import Ingest

SOURCE = Path(__file__).resolve().parents[2] / "functions" / "main.py"


class Tokens:
    """Our TokenVerifier port: a token is its user's name; "guest" signed in anonymously."""

    USERS = ("alice", "bob")

    def verify(self, token: str) -> Caller:
        if token in self.USERS:
            return Caller(token, "password")
        if token == "guest":
            return Caller("guest", "anonymous")
        if token == "pro":
            return Caller("pro", "password", {"plan": "pro"})
        raise Unauthenticated("invalid_token", "The ID token is not valid.")


class Records(logging.Handler):
    """The records one logger emits while attached (`with Records("pixme.main") as r`)."""

    def __init__(self, logger: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(logger)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Records:
        self.level_before = self.logger.level
        self.logger.addHandler(self)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level_before)

    def ingest_lines(self) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "event", None) == "ingest"]


class AppCheckOff:
    def check(self, token: str | None) -> str | None:
        return None


class Stack:
    """The services main.py calls, over one World of fakes."""

    def __init__(self, s: Settings | None = None) -> None:
        self.world = w = World(s)
        self.s = w.s
        self.accounts = Accounts(
            w.s, w.blobs, w.uploads, w.sessions, w.idempotency, w.usage, w.spending, w.clock
        )
        self.cleanup = Cleanup(w.s, w.blobs, w.uploads, w.sessions, w.clock, w.idempotency, w.usage)
        self.ingest = Ingest(w.s, w.blobs, w.uploads, w.clock)
        self.verifier: Any = Tokens()
        self.app_check: Any = AppCheckOff()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        w = self.world
        factories: dict[str, Any] = {
            "settings": lambda: self.s,
            "verifier": lambda: self.verifier,
            "app_check": lambda: self.app_check,
            "blobs": lambda: w.blobs,  # the edge signs the answers' images with it
            "upload_service": lambda: w.service,
            "avatars": lambda: w.avatars,
            "library": lambda: w.library,
            "accounts": lambda: self.accounts,
            "cleanup": lambda: self.cleanup,
            "ingest": lambda: self.ingest,
        }
        for name, factory in factories.items():
            monkeypatch.setattr(wiring, name, factory)

    # --- calls as the app makes them -------------------------------------------------------

    def call(
        self,
        target: str,
        method: str = "GET",
        path: str = "/",
        token: str | None = "alice",
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> TestResponse:
        h = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        data = json.dumps(body) if body is not None else None
        resp: TestResponse = client(target).open(path, method=method, headers=h, data=data)
        assert b"Traceback" not in resp.data
        return resp

    def deliver(self, name: str, generation: str = "1", **attrs: str) -> TestResponse:
        event = CloudEvent(
            {
                "type": FINALIZED,
                "source": "//storage.googleapis.com/projects/_/buckets/up",
                "id": "e1",
                **attrs,
            },
            {"bucket": self.s.uploads_bucket, "name": name, "generation": generation, "size": "1"},
        )
        headers, data = to_structured(event)
        resp: TestResponse = client("on_upload").post("/", headers=headers, data=data)
        return resp

    def upload(self, owner: str = "alice", data: bytes | None = None) -> str:
        """An upload made through the functions: ticket, PUT (into the fake bucket), trigger."""
        resp = self.call("uploads", "POST", token=owner, body={"content_type": "image/png"})
        assert resp.status_code == 201, resp.data
        upload_id: str = payload(resp)["upload_id"]
        path = upload_object(owner, upload_id)
        self.world.blobs.write(self.s.uploads_bucket, path, png() if data is None else data, "image/png")
        assert self.deliver(path).status_code == 200
        return upload_id

    def generate(
        self, upload_id: str, token: str = "alice", headers: dict[str, str] | None = None, **body: Any
    ) -> TestResponse:
        body = {"upload_id": upload_id, "style": "comics", **body}
        return self.call("generate", "POST", token=token, body=body, headers=headers)


_apps: dict[str, Flask] = {}


def client(target: str) -> Any:
    if target not in _apps:
        _apps[target] = functions_framework.create_app(target, source=str(SOURCE))  # type: ignore[no-untyped-call]
    return _apps[target].test_client()


def payload(resp: TestResponse) -> Any:
    """The JSON answer (werkzeug's `.json` is Optional to the type checker)."""
    return json.loads(resp.data)


def error_code(resp: TestResponse) -> str:
    code: str = json.loads(resp.data)["error"]["code"]
    return code


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    s = Stack()
    s.install(monkeypatch)
    yield s


# --- uploads -----------------------------------------------------------------------------------


def test_uploads_post_get_delete(stack: Stack) -> None:
    ticket = stack.call("uploads", "POST", body={"content_type": "image/png"})
    assert ticket.status_code == 201 and payload(ticket)["status"] == "pending"
    upload_id = payload(ticket)["upload_id"]
    assert payload(stack.call("uploads", path=f"/{upload_id}"))["status"] == "pending"
    stack.world.blobs.write("up", upload_object("alice", upload_id), png(), "image/png")
    assert stack.deliver(upload_object("alice", upload_id)).status_code == 200
    status = stack.call("uploads", path=f"/{upload_id}")
    assert status.status_code == 200 and payload(status)["status"] == "ready"
    assert stack.call("uploads", path=f"/{upload_id}", token="bob").status_code == 404  # not bob's
    gone = stack.call("uploads", "DELETE", f"/{upload_id}")
    assert gone.status_code == 200 and payload(gone)["deleted"] is True
    assert error_code(stack.call("uploads", path=f"/{upload_id}")) == "upload_not_found"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", "/", "POST"), ("DELETE", "/", "POST"), ("POST", "/u1", "GET, DELETE")],
)
def test_uploads_other_methods_are_refused_with_the_paths_own_allow(
    stack: Stack, method: str, path: str, allow: str
) -> None:
    resp = stack.call("uploads", method, path)
    assert resp.status_code == 405 and error_code(resp) == "method_not_allowed"
    assert resp.headers["Allow"] == allow


def test_uploads_other_shapes_are_route_not_found(stack: Stack) -> None:
    resp = stack.call("uploads", "GET", "/a/b")
    assert resp.status_code == 404 and error_code(resp) == "route_not_found"


# --- generate and edit -------------------------------------------------------------------------


def test_generate_then_edit_with_rate_limit_headers_and_a_replay(stack: Stack) -> None:
    upload_id = stack.upload()
    first = stack.generate(upload_id)
    assert first.status_code == 201 and payload(first)["turn_count"] == 1
    assert first.headers["RateLimit-Remaining"] == str(stack.s.daily_generations - 1)
    session_id = payload(first)["session_id"]
    key = {"Idempotency-Key": "edit-key-0001"}
    body = {"session_id": session_id, "instruction": "add glasses"}
    edited = stack.call("edit", "POST", body=body, headers=key)
    assert edited.status_code == 201 and payload(edited)["turn_count"] == 2
    again = stack.call("edit", "POST", body=body, headers=key)
    assert again.status_code == 201 and payload(again)["replayed"] is True
    assert payload(again)["turn_id"] == payload(edited)["turn_id"]
    assert len(stack.world.model.calls) == 2  # the replay paid for nothing


@pytest.mark.parametrize("target", ["generate", "edit"])
def test_generate_and_edit_are_post_only(stack: Stack, target: str) -> None:
    resp = stack.call(target, "GET")
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST"


# --- sessions ----------------------------------------------------------------------------------


def test_sessions_styles_models_list_get_page_delete_and_the_uploads_alias(stack: Stack) -> None:
    assert payload(stack.call("sessions", path="/styles", token=None))["styles"]
    models = payload(stack.call("sessions", path="/models"))["models"]
    assert {m["alias"] for m in models} == set(stack.s.aliases)
    upload_id = stack.upload()
    session_id = payload(stack.generate(upload_id))["session_id"]
    stack.call("edit", "POST", body={"session_id": session_id, "instruction": "add a hat"})
    listed = payload(stack.call("sessions"))["sessions"]
    assert [s["session_id"] for s in listed] == [session_id]
    page = payload(stack.call("sessions", path=f"/{session_id}?limit=1&order=newest"))
    assert len(page["turns"]) == 1 and page["next_page_token"]
    rest = stack.call(
        "sessions", path=f"/{session_id}?limit=1&order=newest&page_token={page['next_page_token']}"
    )
    assert payload(rest)["turns"][0]["turn_id"] != page["turns"][0]["turn_id"]
    alias = stack.call("sessions", path=f"/uploads/{upload_id}")
    assert payload(alias) == payload(stack.call("uploads", path=f"/{upload_id}"))
    assert stack.call("sessions", path=f"/{session_id}", token="bob").status_code == 404
    deleted = stack.call("sessions", "DELETE", f"/{session_id}")
    assert deleted.status_code == 200 and payload(deleted)["images_deleted"] == 2
    assert error_code(stack.call("sessions", path=f"/{session_id}")) == "session_not_found"


@pytest.mark.parametrize("path", ["/", "/styles", "/models", "/uploads/u1"])
def test_sessions_delete_only_a_session(stack: Stack, path: str) -> None:
    resp = stack.call("sessions", "DELETE", path)
    assert resp.status_code == 405 and error_code(resp) == "method_not_allowed"
    assert resp.headers["Allow"] == "GET"


@pytest.mark.parametrize("path", ["/a/b/c", "/styles/x", "/s1/turns"])
def test_sessions_deeper_paths_are_route_not_found(stack: Stack, path: str) -> None:
    resp = stack.call("sessions", path=path)
    assert resp.status_code == 404 and error_code(resp) == "route_not_found"


def test_sessions_models_need_a_token_and_styles_do_not(stack: Stack) -> None:
    assert stack.call("sessions", path="/models", token=None).status_code == 401
    assert stack.call("sessions", "POST", token=None).headers["Allow"] == "GET"
    assert stack.call("sessions", "POST", "/s_1", token=None).headers["Allow"] == "GET, DELETE"


# --- account -----------------------------------------------------------------------------------


def test_account_usage_export_and_delete(stack: Stack) -> None:
    upload_id = stack.upload()
    stack.generate(upload_id)
    usage = stack.call("account", path="/usage")
    assert usage.status_code == 200 and json.dumps(payload(usage)).count("generations")
    export = stack.call("account", path="/export")
    assert export.status_code == 200 and upload_id in json.dumps(payload(export))
    gone = stack.call("account", "DELETE", "/")
    assert gone.status_code == 200
    assert payload(stack.call("sessions"))["sessions"] == []
    assert error_code(stack.call("uploads", path=f"/{upload_id}")) == "upload_not_found"
    assert stack.call("account", "DELETE", "/").status_code == 200  # idempotent


def test_account_other_routes_are_route_not_found(stack: Stack) -> None:
    resp = stack.call("account", "GET", "/other")
    assert resp.status_code == 404 and error_code(resp) == "route_not_found"


@pytest.mark.parametrize(("method", "path", "allow"), [("GET", "/", "DELETE"), ("DELETE", "/usage", "GET")])
def test_account_other_methods_are_refused(stack: Stack, method: str, path: str, allow: str) -> None:
    resp = stack.call("account", method, path)
    assert resp.status_code == 405 and resp.headers["Allow"] == allow


# --- cleanup -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST"])
def test_cleanup_removes_what_expired(stack: Stack, method: str) -> None:
    stack.generate(stack.upload())
    assert payload(stack.call("cleanup", method, token=None))["sessions_deleted"] == 0
    stack.world.clock.advance(days=stack.s.retention_days + 1)
    done = payload(stack.call("cleanup", method, token=None))
    assert done["sessions_deleted"] == 1 and done["uploads_deleted"] == 1
    assert stack.call("cleanup", "DELETE", token=None).status_code == 405
    assert stack.call("cleanup", "GET", token=None).headers["Allow"] == "POST"  # as Cloud Scheduler calls


# --- on_upload ---------------------------------------------------------------------------------


def test_on_upload_outcomes(stack: Stack) -> None:
    world = stack.world
    ready = world.service.start("alice", UploadRequest(content_type="image/png")).upload_id
    path = upload_object("alice", ready)
    world.blobs.write("up", path, png(), "image/png")
    assert stack.deliver(path).status_code == 200
    assert world.uploads.get("alice", ready).status == "ready"  # type: ignore[union-attr]
    assert stack.deliver(path).status_code == 200  # a redelivery: duplicate, ignored
    rejected = world.service.start("alice", UploadRequest(content_type="image/png")).upload_id
    world.blobs.write("up", upload_object("alice", rejected), b"GIF89a not a selfie", "image/png")
    assert stack.deliver(upload_object("alice", rejected)).status_code == 200
    assert world.uploads.get("alice", rejected).reason == "unsupported_format"  # type: ignore[union-attr]
    planted = upload_object("bob", "u_planted")
    world.blobs.write("up", planted, png(), "image/png")
    assert stack.deliver(planted).status_code == 200  # no registered upload: deleted
    assert ("up", planted) not in world.blobs.objects
    other = stack.deliver(path, type="google.cloud.storage.object.v1.deleted")
    assert other.status_code == 200


def test_on_upload_drops_a_stale_event(stack: Stack) -> None:
    upload_id = stack.world.service.start("alice", UploadRequest(content_type="image/png")).upload_id
    path = upload_object("alice", upload_id)
    stack.world.blobs.write("up", path, png(), "image/png")
    stack.world.clock.advance(seconds=stack.s.max_event_age_s + 60)
    created = (stack.world.clock.now() - timedelta(seconds=stack.s.max_event_age_s + 30)).isoformat()
    event = CloudEvent(
        {"type": FINALIZED, "source": "//storage", "id": "e2"},
        {"bucket": "up", "name": path, "generation": "1", "timeCreated": created},
    )
    headers, data = to_structured(event)
    assert client("on_upload").post("/", headers=headers, data=data).status_code == 200
    assert stack.world.uploads.get("alice", upload_id).status == "pending"  # type: ignore[union-attr]


def test_stack_settings_are_the_fakes() -> None:
    # The routes above read wiring.settings(): the World's, not the developer's environment.
    assert Stack().s == settings(no_face="allow")
