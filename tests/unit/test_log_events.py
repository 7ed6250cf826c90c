"""The structured log lines that infra/monitoring.tf's metrics and alerts count.

Each event of README.md's "Logs" table, produced by the real code path (the
entry points in process, the services against fakes of our ports, the Gemini
adapter with a client that answers 404) and read back as the JSON Cloud
Logging receives: `event` and its fields in jsonPayload, the ids of the
request on every line, never a uid.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from flask import Flask
from google.genai import errors as genai_errors
from test_avatars import World
from test_error_reporting import UID, FakeVerifier, NoAppCheck
from test_error_reporting import Lines as ErrorLines

from fakes import settings
from pixme import logs, wiring
from pixme.adapters.gemini import GeminiModel
from pixme.api import UploadRequest
from pixme.config import ENV_VARS
from pixme.errors import ModelRefused, RateLimited, Unavailable
from pixme.layout import loggable, upload_object
from pixme.ports import RenderOptions
from pixme.prompts import Message
from pixme.services.cleanup import Cleanup
from pixme.services.ingest import Ingest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "functions" / "main.py"
ENV = {"GOOGLE_CLOUD_PROJECT": "p", "PIXME_UPLOADS_BUCKET": "up", "PIXME_ASSETS_BUCKET": "a"}


class Lines(ErrorLines):
    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lines]:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    wiring.settings.cache_clear()
    handler = Lines()
    # On the package's logger: loading main.py configures the root logger's handlers.
    pixme = logging.getLogger("pixme")
    old_level = pixme.level
    pixme.addHandler(handler)
    pixme.setLevel(logging.INFO)
    yield handler
    pixme.removeHandler(handler)
    pixme.setLevel(old_level)
    wiring.settings.cache_clear()


_apps: dict[str, Flask] = {}


def app(name: str) -> Flask:
    if name not in _apps:
        _apps[name] = functions_framework.create_app(name, source=str(SOURCE))  # type: ignore[no-untyped-call]
    return _apps[name]


class Failing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def start(self, uid: str, req: object) -> dict[str, Any]:
        raise self.error


def test_every_answer_is_one_request_line_with_status_code_and_the_callers_hash(
    lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wiring, "verifier", FakeVerifier)
    monkeypatch.setattr(wiring, "app_check", NoAppCheck)
    client = app("uploads").test_client()
    trace = {"X-Cloud-Trace-Context": "0af7651916cd43dd8448eb211c80319c/1;o=1"}
    auth = {"Authorization": "Bearer good", **trace}

    monkeypatch.setattr(wiring, "upload_service", lambda: Failing(RateLimited("quota_exceeded", "Used.")))
    assert client.post("/", json={"content_type": "image/png"}, headers=auth).status_code == 429
    monkeypatch.setattr(
        wiring, "upload_service", lambda: Failing(Unavailable("storage_unavailable", "Down."))
    )
    assert client.post("/", json={"content_type": "image/png"}, headers=auth).status_code == 503
    assert client.put("/", headers=auth).status_code == 405
    assert client.post("/", json={}, headers={"Authorization": "Bearer bad"}).status_code == 401

    limited, down, refused, unauthenticated = lines.events("request")
    assert (
        limited["severity"] == "WARNING" and limited["status"] == 429 and limited["code"] == "quota_exceeded"
    )
    assert down["severity"] == "ERROR" and down["status"] == 503 and down["code"] == "storage_unavailable"
    assert down["@type"].endswith("ReportedErrorEvent")
    assert refused["status"] == 405 and refused["code"] == "method_not_allowed"
    assert unauthenticated["severity"] == "INFO" and unauthenticated["code"] == "invalid_token"
    for line in (limited, down):
        assert line["uid_hash"] == logs.uid_hash(UID)
        assert line["logging.googleapis.com/trace"] == "projects/p/traces/0af7651916cd43dd8448eb211c80319c"
        assert line["method"] == "POST" and line["path"] == "/" and isinstance(line["latency_ms"], int)
    assert "uid_hash" not in unauthenticated  # nobody was verified
    assert UID not in json.dumps(lines.lines)
    assert logs.uid_var.get() is None and logs.trace_var.get() is None  # nothing outlives the request


def finalized(name: str, event_id: str = "evt-1", **attributes: str) -> CloudEvent:
    attrs = {
        "type": "google.cloud.storage.object.v1.finalized",
        "source": "//storage.googleapis.com/projects/_/buckets/up",
        "id": event_id,
        **attributes,
    }
    return CloudEvent(attrs, {"bucket": "up", "name": name, "generation": "7", "size": "10"})


def test_each_delivery_is_one_ingest_line_with_its_event_id_and_a_trace(
    lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(settings(uploads_bucket="up"))
    upload_id = world.service.start(UID, UploadRequest(content_type="image/png")).upload_id
    path = upload_object(UID, upload_id)
    world.blobs.write("up", path, b"not an image at all", "image/png")
    monkeypatch.setattr(wiring, "ingest", lambda: Ingest(world.s, world.blobs, world.uploads, world.clock))
    client = app("on_upload").test_client()

    def deliver(event: CloudEvent) -> int:
        headers, body = to_structured(event)
        return client.post("/", headers=headers, data=body).status_code

    assert deliver(finalized(path)) == 200
    assert (
        deliver(
            finalized(path, "evt-2", traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        )
        == 200
    )
    assert deliver(finalized(path, "evt-3", type="google.cloud.storage.object.v1.deleted")) == 200

    rejected, duplicate, other_type = lines.events("ingest")
    assert rejected["outcome"] == "rejected" and rejected["reason"] == "unsupported_format"
    assert rejected["event_id"] == "evt-1" and rejected["upload_id"] == upload_id
    assert rejected["uid_hash"] == logs.uid_hash(UID)
    assert duplicate["outcome"] == "ignored" and duplicate["reason"] == "duplicate"
    assert duplicate["logging.googleapis.com/trace"] == "projects/p/traces/4bf92f3577b34da6a3ce929d0e0e4736"
    assert other_type["outcome"] == "ignored" and other_type["reason"] == "event_type"
    # Without a traceparent the trace comes from the event id: every line of a delivery shares it.
    first = [line for line in lines.lines if line.get("event_id") == "evt-1"]
    assert len(first) >= 2 and len({line["logging.googleapis.com/trace"] for line in first}) == 1
    assert UID not in json.dumps(lines.lines)
    assert loggable(path) in json.dumps(lines.lines)


def test_a_retried_or_failed_delivery_says_so(lines: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def handle(self, obj: object) -> str:
            raise self.error

    client = app("on_upload").test_client()
    for error in (Unavailable("database_unavailable", "Down."), RuntimeError("bug")):
        monkeypatch.setattr(wiring, "ingest", lambda error=error: Broken(error))
        headers, body = to_structured(finalized("uploads/x/u_1"))
        assert client.post("/", headers=headers, data=body).status_code == 500  # the platform retries
    retry, failed = lines.events("ingest")
    assert retry["outcome"] == "retry" and retry["reason"] == "database_unavailable"
    assert retry["severity"] == "WARNING"
    assert failed["outcome"] == "failed" and failed["reason"] == "internal" and failed["severity"] == "ERROR"
    assert "RuntimeError: bug" in failed["stack_trace"]


def test_each_model_call_is_one_generation_line_with_outcome_latency_and_cost(lines: Lines) -> None:
    world = World()
    world.upload()
    with logs.scope("trace-1"):
        first = world.generate()
        world.model.failures.append(ModelRefused("image_safety", "No."))
        with pytest.raises(ModelRefused):
            world.edit(first["session_id"], "make it gory")
        world.model.failures.append(Unavailable("model_unavailable", "Busy."))
        with pytest.raises(Unavailable):
            world.edit(first["session_id"], "add a hat")
    made, refused, failed = lines.events("generation")
    assert made["outcome"] == "image" and made["kind"] == "generate" and made["style"] == "comics"
    assert made["cost"] == 1 and isinstance(made["latency_ms"], int) and "code" not in made
    assert made["session_id"] == first["session_id"] and made["model"]
    assert refused["outcome"] == "refused" and refused["code"] == "image_safety" and refused["kind"] == "edit"
    assert refused["cost"] == 1  # a refusal is the user's: not refunded
    assert failed["outcome"] == "failed" and failed["code"] == "model_unavailable" and failed["cost"] == 0
    assert refused["session_id"] == first["session_id"]


def test_a_style_pack_logs_each_style_with_its_own_session_and_the_requests_trace(lines: Lines) -> None:
    world = World()
    world.upload()
    with logs.scope("trace-pack"):
        logs.bind_uid("alice")
        body = world.generate(styles=["comics", "manga", "zombie"], style=None)
    made = lines.events("generation")
    assert sorted(line["style"] for line in made) == ["comics", "manga", "zombie"]
    assert {line["session_id"] for line in made} == {r["session_id"] for r in body["results"]}
    assert all(line["logging.googleapis.com/trace"] == "projects/p/traces/trace-pack" for line in made)
    assert all(line["uid_hash"] == logs.uid_hash("alice") for line in made)


def test_quota_refusals_are_counted_by_quota(lines: Lines) -> None:
    world = World(settings(no_face="allow", daily_generations=1))
    world.upload()
    world.generate()
    with pytest.raises(RateLimited):
        world.generate()
    [line] = lines.events("quota_exceeded")
    assert line["quota"] == "generations" and line["code"] == "quota_exceeded"


class NotFoundModels:
    """A genai client whose first model id is retired (404) and second answers."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def generate_content(self, model: str, contents: Any, config: Any) -> Any:
        self.asked.append(model)
        if model == "gemini-old":
            raise genai_errors.ClientError(
                404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
            )
        return self.answer


def test_a_retired_model_id_is_an_error_line_even_when_a_fallback_answers(lines: Lines) -> None:
    from google.genai import types

    answer = types.GenerateContentResponse(
        candidates=[
            types.Candidate(
                content=types.Content(
                    role="model",
                    parts=[
                        types.Part(
                            inline_data=types.Blob(data=b"\x89PNG\r\n\x1a\nxx", mime_type="image/png"),
                            thought_signature=b"sig",
                        )
                    ],
                ),
                finish_reason=types.FinishReason.STOP,
            )
        ]
    )
    client = type("Client", (), {"vertexai": False})()
    client.models = NotFoundModels(answer)
    model = GeminiModel(timeout_s=5, deadline_s=10, client=client, sleep=lambda s: None)
    reply = model.generate("gemini-old|gemini-new", [Message("user", ("hi",), ())], RenderOptions(None, None))
    assert reply.model_id == "gemini-new"
    [line] = lines.events("model_not_found")
    assert line["severity"] == "ERROR" and line["model"] == "gemini-old" and line["fallback"] == "gemini-new"


def test_each_cleanup_run_is_one_cleanup_line(lines: Lines) -> None:
    world = World()
    cleanup = Cleanup(
        world.s, world.blobs, world.uploads, world.sessions, world.clock, world.idempotency, world.usage
    )
    cleanup.run()

    class Down:
        def expired(self, now: object, limit: int) -> list[object]:
            raise Unavailable("database_unavailable", "Down.")

    broken = Cleanup(world.s, world.blobs, world.uploads, Down(), world.clock, world.idempotency, world.usage)  # type: ignore[arg-type]
    with pytest.raises(Unavailable):
        broken.run()
    done, failed = lines.events("cleanup")
    assert done["outcome"] == "done" and done["sessions_deleted"] == 0
    assert failed["outcome"] == "failed" and failed["code"] == "database_unavailable"
    assert failed["severity"] == "ERROR"
