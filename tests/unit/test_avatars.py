"""Generate and edit: the conversation as the app sees it, against fakes of our ports."""

from __future__ import annotations

import pytest

from fakes import (
    FakeBlobs,
    FakeClock,
    FakeIdempotency,
    FakeModel,
    FakeSessions,
    FakeUploads,
    FakeUsage,
    png,
    settings,
)
from pixme.api import EditRequest, GenerateRequest, UploadRequest
from pixme.config import Settings
from pixme.errors import Conflict, InvalidRequest, NotFound, NotReady, RateLimited
from pixme.identity import Caller
from pixme.layout import upload_object
from pixme.services.avatars import Avatars
from pixme.services.ingest import Ingest, StorageObject
from pixme.services.library import Library
from pixme.services.uploads import Uploads
from pixme.spending import Spending


class World:
    def __init__(self, s: Settings | None = None) -> None:
        self.s = s or settings(no_face="allow")  # the fake selfies are plain colours
        self.blobs, self.uploads, self.sessions = FakeBlobs(), FakeUploads(), FakeSessions()
        self.model, self.clock = FakeModel(), FakeClock()
        self.idempotency = FakeIdempotency()
        self.usage = FakeUsage()
        self.spending = Spending(self.s, self.usage, self.clock)
        self.avatars = Avatars(
            self.s, self.blobs, self.uploads, self.sessions, self.model, self.clock, self.idempotency,
            self.spending,
        )  # fmt: skip
        self.library = Library(self.s, self.blobs, self.sessions, self.clock)
        self.service = Uploads(self.s, self.blobs, self.uploads, self.sessions, self.clock)
        # The tests' names for uploads ("u1") → the ids the server chose.
        self.ids: dict[str, str] = {}

    def upload(self, owner: str = "alice", name: str | None = None, data: bytes | None = None) -> str:
        """An upload as the app makes it: registered, PUT, ingested by the trigger."""
        name = name or ("u1" if owner == "alice" else f"u1-{owner}")
        upload_id = self.service.start(owner, UploadRequest("image/png"))["upload_id"]
        self.ids[name] = upload_id
        path = upload_object(owner, upload_id)
        data = png() if data is None else data
        self.blobs.write("up", path, data, "image/png")
        Ingest(self.s, self.blobs, self.uploads, self.clock).handle(
            StorageObject("up", path, "1", len(data), self.clock.now())
        )
        return upload_id

    def request(self, **body: object) -> GenerateRequest:
        fields = {"upload_id": self.ids["u1"], "style": "comics", **body}
        return GenerateRequest.parse(fields, self.s)

    def edit_request(self, session_id: str, instruction: str) -> EditRequest:
        return EditRequest.parse({"session_id": session_id, "instruction": instruction}, self.s)

    def generate(self, owner: str | Caller = "alice", key: str | None = None, **body: object) -> dict:  # type: ignore[type-arg]
        uid = owner.uid if isinstance(owner, Caller) else owner
        name = str(body.pop("upload_id", "u1" if uid == "alice" else f"u1-{uid}"))
        fields = {"upload_id": self.ids.get(name, name), "style": "comics", **body}
        caller = owner if isinstance(owner, Caller) else Caller(owner)
        return self.avatars.generate(caller, GenerateRequest.parse(fields, self.s), key).body

    def edit(
        self, session_id: str, instruction: str, owner: str = "alice", key: str | None = None, **body: object
    ) -> dict:  # type: ignore[type-arg]
        req = EditRequest.parse({"session_id": session_id, "instruction": instruction, **body}, self.s)
        return self.avatars.edit(Caller(owner), req, key).body


@pytest.fixture
def world() -> World:
    w = World()
    w.upload()
    return w


def test_generate_stores_the_image_and_starts_a_session(world: World) -> None:
    result = world.generate(prompt="add a hat")
    assert result["text"] == "image 1" and result["turn_count"] == 1
    assert result["image_url"].startswith("https://signed.example/assets/avatars/alice/")
    session = world.sessions.get(result["session_id"])
    assert session is not None and session.head_turn == result["turn_id"]
    ((model_id, messages),) = world.model.calls
    assert model_id == world.s.model
    assert "add a hat" in messages[0].texts[0] and "comic book" in messages[0].texts[0]


def test_generate_needs_a_ready_upload_of_the_caller(world: World) -> None:
    with pytest.raises(NotFound):
        world.generate(owner="mallory")
    world.upload(name="bad", data=b"nope")
    with pytest.raises(NotReady) as caught:
        world.generate(upload_id="bad")
    assert caught.value.code == "upload_rejected"


def test_edits_chain_and_send_only_a_bounded_history(world: World) -> None:
    first = world.generate()
    sid = first["session_id"]
    for i in range(6):
        world.edit(sid, f"change {i}")
    _, messages = world.model.calls[-1]
    assert [m.role for m in messages] == ["user", "model", "user"]
    assert sum(len(m.images) for m in messages) == 2  # the selfie and the current image only
    assert messages[1].images[0].thought_signature == b"sig-6"
    memory = messages[0].texts[1]
    assert "change 0" in memory and "change 4" in memory and "change 5" not in memory
    assert messages[2].texts[0].startswith("Edit the last image: change 5")


def test_editing_an_earlier_turn_branches_the_session(world: World) -> None:
    first = world.generate()
    sid = first["session_id"]
    second = world.edit(sid, "add glasses")
    branch = world.edit(sid, "make it warmer", from_turn=first["turn_id"])
    assert branch["parent_turn_id"] == first["turn_id"]
    _, messages = world.model.calls[-1]
    assert "add glasses" not in " ".join(messages[0].texts)
    view = world.library.session("alice", sid)
    parents = {t["turn_id"]: t["parent_turn_id"] for t in view["turns"]}
    assert parents == {
        first["turn_id"]: None,
        second["turn_id"]: first["turn_id"],
        branch["turn_id"]: first["turn_id"],
    }
    assert view["head_turn_id"] == branch["turn_id"]


def test_nobody_else_sees_or_edits_a_session(world: World) -> None:
    sid = world.generate()["session_id"]
    with pytest.raises(NotFound):
        world.edit(sid, "add glasses", owner="mallory")
    with pytest.raises(NotFound):
        world.library.session("mallory", sid)
    assert world.library.sessions_of("mallory") == {"sessions": []}


def test_an_expired_session_is_gone_even_before_cleanup(world: World) -> None:
    sid = world.generate()["session_id"]
    world.clock.advance(days=world.s.retention_days, seconds=1)
    with pytest.raises(NotFound):
        world.edit(sid, "add glasses")


def test_a_failed_model_call_writes_nothing(world: World) -> None:
    world.model.failures.append(RateLimited("model_rate_limited", "busy", retry_after_s=3))
    with pytest.raises(RateLimited):
        world.generate()
    assert world.sessions.sessions == {}
    assert not any(k[1].startswith("avatars/") for k in world.blobs.objects)


def test_unknown_turn_is_not_found(world: World) -> None:
    sid = world.generate()["session_id"]
    with pytest.raises(NotFound) as caught:
        world.edit(sid, "add glasses", from_turn="t_missing")
    assert caught.value.code == "turn_not_found"


def test_cleanup_removes_expired_sessions_images_and_uploads(world: World) -> None:
    from pixme.services.cleanup import Cleanup

    old = world.generate()["session_id"]
    world.clock.advance(days=world.s.retention_days - 1)
    world.upload(name="u2")
    fresh = world.generate(upload_id="u2")["session_id"]
    world.clock.advance(days=1, seconds=1)
    result = Cleanup(
        world.s, world.blobs, world.uploads, world.sessions, world.clock, world.idempotency, world.usage
    ).run()
    assert result == {
        "sessions_deleted": 1,
        "images_deleted": 1,
        "uploads_deleted": 1,
        "idempotency_keys_deleted": 0,
        "usage_records_deleted": 0,
    }
    assert world.sessions.get(old) is None and world.sessions.get(fresh) is not None
    assert world.uploads.get("alice", world.ids["u1"]) is None and world.uploads.get("alice", world.ids["u2"])
    assert not any(old in k[1] or world.ids["u1"] in k[1] for k in world.blobs.objects)


def test_a_retried_request_with_an_idempotency_key_returns_the_first_result(world: World) -> None:
    first = world.generate(key="key-00000001")
    again = world.generate(key="key-00000001")
    assert again["session_id"] == first["session_id"] and again["replayed"] is True
    assert len(world.model.calls) == 1  # the model was paid once
    assert "image_path" not in first and "image_path" not in again
    edit = world.edit(first["session_id"], "add glasses", key="key-00000002")
    assert world.edit(first["session_id"], "add glasses", key="key-00000002")["turn_id"] == edit["turn_id"]
    assert len(world.model.calls) == 2


def test_an_idempotency_key_reused_for_another_request_is_refused(world: World) -> None:
    world.generate(key="key-00000001")
    with pytest.raises(Conflict) as caught:
        world.generate(key="key-00000001", style="manga")
    assert caught.value.code == "idempotency_key_reused"
    with pytest.raises(InvalidRequest):
        world.generate(key="short")


def test_a_failed_request_releases_its_idempotency_key(world: World) -> None:
    world.model.failures.append(RateLimited("model_rate_limited", "busy", retry_after_s=3))
    with pytest.raises(RateLimited):
        world.generate(key="key-00000001")
    assert world.generate(key="key-00000001")["turn_count"] == 1


def test_if_head_refuses_an_edit_built_on_a_stale_head(world: World) -> None:
    first = world.generate()
    sid = first["session_id"]
    world.edit(sid, "add glasses")
    with pytest.raises(Conflict) as caught:
        world.edit(sid, "make it warmer", if_head=first["turn_id"])
    assert caught.value.code == "stale_head"
    # Without if_head, the same stale view simply branches from the turn it names.
    branch = world.edit(sid, "make it warmer", from_turn=first["turn_id"])
    assert branch["parent_turn_id"] == first["turn_id"]


def test_references_send_earlier_avatars_of_the_same_user(world: World) -> None:
    earlier = world.generate()
    world.generate(references=[earlier["session_id"]], style="manga")
    _, messages = world.model.calls[-1]
    assert len(messages[0].images) == 2 and messages[0].images[1].thought_signature is None
    with pytest.raises(NotFound):
        world.generate(owner="mallory", references=[earlier["session_id"]])
