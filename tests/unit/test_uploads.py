"""The app's way in: signed upload tickets, statuses, limits and deletion, against fakes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from fakes import FakeBlobs, FakeClock, FakeSessions, FakeUploads, presented, settings
from pixme.api import UPLOAD_CONTENT_TYPES, UploadRequest
from pixme.config import Settings
from pixme.conversation import Session
from pixme.errors import InvalidRequest, NotFound, RateLimited
from pixme.layout import avatar_path, upload_object
from pixme.responses import UploadTicket
from pixme.services.ingest import Ingest, StorageObject
from pixme.services.uploads import PENDING_GRACE, Uploads
from samples import SELFIE


class World:
    def __init__(self, s: Settings | None = None) -> None:
        self.s = s or settings()
        self.blobs, self.uploads, self.sessions = FakeBlobs(), FakeUploads(), FakeSessions()
        self.clock = FakeClock()
        self.service = Uploads(self.s, self.blobs, self.uploads, self.sessions, self.clock)
        self.ingest = Ingest(self.s, self.blobs, self.uploads, self.clock)

    def start(self, owner: str = "alice", content_type: str = "image/jpeg") -> UploadTicket:
        return self.service.start(owner, UploadRequest(content_type=content_type))

    def shown(self, body: BaseModel) -> dict[str, Any]:
        """An answer as the app gets it, presented by the edge."""
        return presented(body, self.blobs, self.s)

    def send(self, owner: str, upload_id: str, data: bytes = SELFIE) -> str:
        name = upload_object(owner, upload_id)
        self.blobs.write("up", name, data, "image/png")
        return self.ingest.handle(StorageObject("up", name, "1", len(data), self.clock.now()))


@pytest.fixture
def world() -> World:
    return World()


def test_a_ticket_names_a_server_chosen_object_and_binds_type_size_and_create_only(world: World) -> None:
    ticket = world.shown(world.start(content_type="image/png"))
    upload_id = str(ticket["upload_id"])
    assert ticket["method"] == "PUT" and ticket["status"] == "pending"
    assert ticket["max_bytes"] == world.s.max_upload_bytes
    assert ticket["headers"] == {
        "Content-Type": "image/png",
        "x-goog-content-length-range": f"1,{world.s.max_upload_bytes}",
        "x-goog-if-generation-match": "0",
    }
    ((method, bucket, path, content_type, signed),) = world.blobs.signed
    assert (method, bucket, path, content_type) == ("PUT", "up", f"uploads/alice/{upload_id}", "image/png")
    assert signed == {k: v for k, v in ticket["headers"].items() if k != "Content-Type"}  # type: ignore[attr-defined]
    # The pending document exists before the URL is handed out.
    assert world.service.status("alice", upload_id).status == "pending"
    again = world.start()
    assert again.upload_id != upload_id and len(upload_id) >= 16


def test_only_image_types_may_be_declared() -> None:
    for allowed in UPLOAD_CONTENT_TYPES:
        assert UploadRequest.parse({"content_type": allowed.upper()}).content_type == allowed
    for body, code in (
        ({}, "missing_field"),
        ({"content_type": "text/html"}, "invalid_field"),
        ({"content_type": "image/gif"}, "invalid_field"),
        ({"content_type": 7}, "invalid_field"),
    ):
        with pytest.raises(InvalidRequest) as caught:
            UploadRequest.parse(body)
        assert caught.value.code == code


def test_status_follows_the_upload_and_belongs_to_its_owner(world: World) -> None:
    upload_id = str(world.start().upload_id)
    assert world.send("alice", upload_id) == "ready"
    status = world.shown(world.service.status("alice", upload_id))
    assert status["status"] == "ready" and status["face_box"] and "image_path" not in status
    with pytest.raises(NotFound):
        world.service.status("bob", upload_id)
    with pytest.raises(NotFound):
        world.service.delete("bob", upload_id)


def test_daily_uploads_are_limited_until_the_next_utc_day() -> None:
    w = World(settings(daily_uploads=3, max_pending_uploads=10))
    for _ in range(3):
        w.start()
    with pytest.raises(RateLimited) as caught:
        w.start()
    assert caught.value.code == "upload_quota_exceeded"
    # Retry-After reaches the next UTC midnight (the fake clock says 12:00).
    assert 12 * 3600 <= caught.value.retry_after_s <= 12 * 3600 + 1
    w.start(owner="bob")  # per user
    w.clock.advance(hours=12, seconds=1)
    w.start()


def test_unfinished_uploads_are_limited_and_free_their_place_when_they_end() -> None:
    w = World(settings(daily_uploads=20, max_pending_uploads=2))
    first, second = (str(w.start().upload_id) for _ in range(2))
    with pytest.raises(RateLimited) as caught:
        w.start()
    assert caught.value.code == "too_many_pending_uploads"
    assert 0 < caught.value.retry_after_s <= w.s.upload_url_ttl_s + PENDING_GRACE.total_seconds()
    assert w.send("alice", first) == "ready"
    third = str(w.start().upload_id)
    w.service.delete("alice", second)
    w.start()
    with pytest.raises(RateLimited):
        w.start()
    # A pending upload never sent stops counting once its URL can no longer be used.
    w.clock.advance(seconds=w.s.upload_url_ttl_s + PENDING_GRACE.total_seconds() + 1)
    w.start()
    assert third


def test_deleting_an_upload_removes_its_objects_document_and_the_sessions_made_from_it(world: World) -> None:
    upload_id = str(world.start().upload_id)
    assert world.send("alice", upload_id) == "ready"
    doc = world.uploads.get("alice", upload_id)
    assert doc is not None and doc.face_path
    now = world.clock.now()
    for sid in ("s_a", "s_b"):
        path = avatar_path("alice", sid, "t_1", "image/png")
        world.blobs.write("assets", path, b"png", "image/png")
        world.sessions.sessions[sid] = Session(
            sid, "alice", "comics", "m", upload_id, doc.face_path, now, now, now, "t_1", 1
        )
    world.blobs.write("assets", avatar_path("alice", "s_other", "t_1", "image/png"), b"x", "image/png")
    answer = world.shown(world.service.delete("alice", upload_id))
    assert answer == {"upload_id": upload_id, "deleted": True, "sessions_deleted": 2, "images_deleted": 2}
    assert world.uploads.get("alice", upload_id) is None
    assert set(world.sessions.sessions) == set()
    assert list(world.blobs.objects) == [("assets", avatar_path("alice", "s_other", "t_1", "image/png"))]
    with pytest.raises(NotFound):
        world.service.status("alice", upload_id)
    # A PUT that still arrives through the old URL is not accepted.
    assert world.send("alice", upload_id) == "unregistered"
    assert ("up", upload_object("alice", upload_id)) not in world.blobs.objects


def test_a_ticket_that_cannot_be_signed_leaves_no_document(world: World) -> None:
    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("signBlob refused")

    world.blobs.signed_url = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        world.start()
    assert world.uploads.docs == {}
