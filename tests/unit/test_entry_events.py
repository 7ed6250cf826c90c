"""on_upload with malformed and unusual deliveries, and the edge's token header.

Eventarc's payload is the storage object's JSON, but nothing guarantees its
shape: a field of the wrong type or a payload that is not an object must end
as an `ingest` line, never as a crash the platform retries for a day.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from test_entry_codes import REAL_SETTINGS
from test_entry_routes import Records, Stack, client, error_code
from werkzeug.test import TestResponse

from fakes import png
from pixme import wiring
from pixme.api import UploadRequest
from pixme.config import ENV_VARS
from pixme.events import FINALIZED, storage_object
from pixme.layout import upload_object

REAL_INGEST = wiring.ingest


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    s = Stack()
    s.install(monkeypatch)
    yield s
    REAL_SETTINGS.cache_clear()


@pytest.fixture
def ingest_lines() -> Iterator[list[logging.LogRecord]]:
    with Records("pixme.main") as lines:
        yield lines.records


def deliver(data: Any, **attrs: str) -> TestResponse:
    event = CloudEvent({"type": FINALIZED, "source": "//storage", "id": "e-odd", **attrs}, data)
    headers, body = to_structured(event)
    resp: TestResponse = client("on_upload").post("/", headers=headers, data=body)
    return resp


def outcome(records: list[logging.LogRecord]) -> tuple[str, str | None]:
    [line] = [r for r in records if getattr(r, "event", None) == "ingest"]
    return line.outcome, getattr(line, "reason", None)  # type: ignore[attr-defined]


@pytest.mark.parametrize("data", ["not an object", ["up", "uploads/x"], None, 7])
def test_a_payload_that_is_not_an_object_is_ignored(
    stack: Stack, ingest_lines: list[logging.LogRecord], data: Any
) -> None:
    assert deliver(data).status_code == 200
    assert outcome(ingest_lines) == ("ignored", "ignored_bucket")


@pytest.mark.parametrize("size", ["abc", None, "-5", [1], "1e3"])
def test_a_malformed_size_does_not_stop_a_real_upload(
    stack: Stack, ingest_lines: list[logging.LogRecord], size: Any
) -> None:
    upload_id = stack.world.service.start("alice", UploadRequest(content_type="image/png")).upload_id
    path = upload_object("alice", upload_id)
    stack.world.blobs.write("up", path, png(), "image/png")
    data = {"bucket": "up", "name": path, "generation": "1", "size": size, "timeCreated": "yesterday"}
    assert deliver(data).status_code == 200
    assert outcome(ingest_lines) == ("ready", None)  # the bytes read are what is checked


def test_storage_object_reads_what_it_can() -> None:
    attrs = {"type": FINALIZED, "source": "//storage", "id": "e", "time": "2026-11-24T12:00:00Z"}
    odd = storage_object(CloudEvent(attrs, {"bucket": 5, "size": "x", "timeCreated": "not a time"}))
    assert (odd.bucket, odd.name, odd.generation, odd.size) == ("5", "", "", 0)
    assert odd.time_created == datetime(2026, 11, 24, 12, tzinfo=UTC)  # the event's own time
    clean = storage_object(CloudEvent(attrs, {"size": "42", "timeCreated": "2026-11-24T11:59:00.5Z"}))
    assert clean.size == 42 and clean.time_created == datetime(2026, 11, 24, 11, 59, 0, 500000, tzinfo=UTC)
    odd_times = {"type": FINALIZED, "source": "//s", "id": "e", "time": "soon"}
    neither = storage_object(CloudEvent(odd_times, {"timeCreated": 3}))
    assert neither.time_created is None


def test_a_misconfigured_trigger_fails_permanently_without_a_retry(
    stack: Stack, ingest_lines: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real composition root, with no settings in the environment: the
    # ingest service cannot be built, and no Google client is.
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(wiring, "settings", REAL_SETTINGS)
    monkeypatch.setattr(wiring, "ingest", REAL_INGEST)
    REAL_SETTINGS.cache_clear()
    assert deliver({"bucket": "up", "name": "uploads/alice/u_1", "generation": "1"}).status_code == 200
    assert outcome(ingest_lines) == ("failed", "misconfigured")
    [line] = [r for r in ingest_lines if getattr(r, "event", None) == "ingest"]
    assert line.levelno == logging.ERROR and line.__dict__["@type"].endswith("ReportedErrorEvent")


@pytest.mark.parametrize("header", ["Basic YWxpY2U=", "Bearer", "Bearer    ", "alice", "Token alice"])
def test_an_authorization_header_without_a_bearer_token_is_missing_token(stack: Stack, header: str) -> None:
    resp = client("account").get("/usage", headers={"Authorization": header})
    assert resp.status_code == 401 and error_code(resp) == "missing_token"


def test_the_bearer_scheme_is_case_insensitive_and_the_token_trimmed(stack: Stack) -> None:
    resp = client("account").get("/usage", headers={"Authorization": "bearer   alice  "})
    assert resp.status_code == 200, resp.data
