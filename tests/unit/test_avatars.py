"""Generate and edit: the conversation as the app sees it, against fakes of our ports."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from fakes import (
    FakeBlobs,
    FakeClock,
    FakeIdempotency,
    FakeModel,
    FakeSessions,
    FakeUploads,
    FakeUsage,
    png,
    presented,
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
        upload_id = self.service.start(owner, UploadRequest(content_type="image/png")).upload_id
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

    def shown(self, body: BaseModel) -> dict[str, Any]:
        """An answer as the app gets it: presented by the edge, images signed."""
        return presented(body, self.blobs, self.s)

    def generate(self, owner: str | Caller = "alice", key: str | None = None, **body: object) -> dict:  # type: ignore[type-arg]
        uid = owner.uid if isinstance(owner, Caller) else owner
        name = str(body.pop("upload_id", "u1" if uid == "alice" else f"u1-{uid}"))
        fields = {"upload_id": self.ids.get(name, name), "style": "comics", **body}
        caller = owner if isinstance(owner, Caller) else Caller(owner)
        return self.shown(self.avatars.generate(caller, GenerateRequest.parse(fields, self.s), key).body)

    def edit(
        self, session_id: str, instruction: str, owner: str = "alice", key: str | None = None, **body: object
    ) -> dict:  # type: ignore[type-arg]
        req = EditRequest.parse({"session_id": session_id, "instruction": instruction, **body}, self.s)
        return self.shown(self.avatars.edit(Caller(owner), req, key).body)


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
    view = world.shown(world.library.session("alice", sid))
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
    assert world.library.sessions_of("mallory").sessions == []


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
    assert result.model_dump() == {
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


def test_an_idempotency_key_keeps_paths_and_a_replay_is_signed_afresh(world: World) -> None:
    first = world.generate(key="key-00000001")
    record = world.idempotency.entries[("alice", "key-00000001")]["result"]
    path = record["image_url"]
    assert path.startswith("avatars/alice/") and first["image_url"].endswith(
        f"/assets/{path}?ttl={world.s.url_ttl_s}&method=GET"
    )
    # image_path too: what the previous deploy replays from, should it be rolled back to.
    assert "replayed" not in record and record["image_path"] == path
    signed_before = len(world.blobs.signed)
    again = world.generate(key="key-00000001")
    assert again["image_url"] == first["image_url"] and len(world.blobs.signed) == signed_before + 1
    assert again == {**first, "replayed": True}


def test_records_of_the_previous_format_still_replay(world: World) -> None:
    """Before answers were models a record held `image_path` and no `image_url`."""
    first = world.generate(key="key-00000001")
    entry = world.idempotency.entries[("alice", "key-00000001")]
    path = entry["result"].pop("image_url")
    entry["result"]["image_path"] = path
    again = world.generate(key="key-00000001")
    assert again == {**first, "replayed": True}
    req = world.request(style=None, styles=["comics", "manga"])
    pack = world.shown(world.avatars.generate(Caller("alice"), req, "key-00000002").body)
    stored = world.idempotency.entries[("alice", "key-00000002")]["result"]
    stored["results"] = [
        {**{k: v for k, v in r.items() if k != "image_url"}, "image_path": r["image_url"]}
        for r in stored["results"]
    ]
    replayed = world.shown(world.avatars.generate(Caller("alice"), req, "key-00000002").body)
    assert replayed == {**pack, "replayed": True}


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


# --- every edit keeps what the user asked for -------------------------------------


def test_every_edit_carries_the_sessions_options_and_pinned_memory(world: World) -> None:
    from pixme.ports import RenderOptions

    earlier = world.generate()
    first = world.generate(
        style="manga", prompt="add a sailor hat", context="loves sailing, lives in Lisbon", caption="ANA",
        references=[earlier["session_id"]], aspect_ratio="16:9", image_size="2K",
    )  # fmt: skip
    sid = first["session_id"]
    assert world.model.options[-1] == RenderOptions("16:9", "2K")
    (gen,) = world.model.calls[-1][1]
    assert "square" not in " ".join(gen.texts) and "16:9" in gen.texts[0]
    edits = [f"change {i}" for i in range(15)]
    for instruction in edits:
        world.edit(sid, instruction)
    sent = zip(world.model.calls[2:], world.model.options[2:], strict=True)
    for n, ((_, messages), options) in enumerate(sent):
        assert options == RenderOptions("16:9", "2K"), n
        pinned, memory = messages[0].texts[0], messages[0].texts[1]
        assert "manga" in pinned.lower() and "add a sailor hat" in pinned
        assert "loves sailing, lives in Lisbon" in pinned and '"ANA"' in pinned
        # The generation's prompt is pinned, never an "earlier edit".
        assert "sailor" not in memory
        assert len(messages[0].images) == 2  # the selfie and the reference avatar
        everything = " ".join(t for m in messages for t in m.texts)
        assert "square" not in everything and "16:9" in messages[2].texts[0]
        assert messages[2].texts[0].startswith(f"Edit the last image: {edits[n]}.")
        assert (f"change {n - 1}" in memory) == (n >= 1)
    # After 15 edits the memory condenses only the edit list: the 12 latest verbatim.
    last_memory = world.model.calls[-1][1][0].texts[1]
    assert "2 earlier edits" in last_memory and "change 2" in last_memory and "change 1;" not in last_memory


def test_a_default_session_still_asks_for_a_square_image(world: World) -> None:
    from pixme.ports import RenderOptions

    sid = world.generate()["session_id"]
    world.edit(sid, "add glasses")
    assert world.model.options == [RenderOptions(), RenderOptions()]
    assert "one square image" in world.model.calls[-1][1][2].texts[0]


def test_an_edit_from_a_turn_stored_without_its_memory_walks_the_lineage(world: World) -> None:
    sid = world.generate()["session_id"]
    world.edit(sid, "add glasses")
    world.edit(sid, "make it warmer")
    for turn in world.sessions.turn_docs[sid].values():
        turn.memory = None  # as written before turns carried their memory
    world.edit(sid, "make it cooler")
    memory = world.model.calls[-1][1][0].texts[1]
    assert "add glasses; make it warmer" in memory


# --- O(1) per turn --------------------------------------------------------------------


class CountingSessions(FakeSessions):
    """Counts the documents each call reads, the way the Firestore adapter reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, session_id: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().get(session_id)

    def turn(self, session_id: str, turn_id: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().turn(session_id, turn_id)

    def turns(self, session_id: str):  # type: ignore[no-untyped-def]
        found = super().turns(session_id)
        self.reads += len(found)
        return found

    def append(self, session_id, turn, now, expected_head=None):  # type: ignore[no-untyped-def]
        self.reads += 2  # the session and the new turn's (absent) document
        return super().append(session_id, turn, now, expected_head)


def test_an_edit_reads_the_same_documents_at_turn_2_and_turn_60() -> None:
    w = World()
    w.sessions = CountingSessions()
    w.avatars.sessions = w.sessions
    w.library.sessions = w.sessions
    w.service.sessions = w.sessions
    w.upload()
    sid = w.generate()["session_id"]
    costs = []
    for i in range(60):
        before = w.sessions.reads
        w.edit(sid, f"change {i}")
        costs.append(w.sessions.reads - before)
    assert set(costs) == {4}, costs  # session, base turn; append: session + new turn


def test_a_session_is_read_in_pages_oldest_or_newest_first(world: World) -> None:
    from pixme.api import PageRequest
    from pixme.errors import InvalidRequest as Invalid

    first = world.generate()
    sid = first["session_id"]
    ids = [first["turn_id"]]
    for i in range(6):
        world.clock.advance(seconds=1)
        ids.append(world.edit(sid, f"change {i}")["turn_id"])
    seen: list[str] = []
    token = None
    while True:
        page = world.shown(world.library.session("alice", sid, PageRequest(limit=3, page_token=token)))
        assert len(page["turns"]) <= 3 and all(t["image_url"].startswith("https://") for t in page["turns"])
        seen += [t["turn_id"] for t in page["turns"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert seen == ids
    newest = world.shown(world.library.session("alice", sid, PageRequest(limit=2, order="newest")))
    assert [t["turn_id"] for t in newest["turns"]] == ids[::-1][:2]
    assert world.library.session("alice", sid).next_page_token is None
    with pytest.raises(Invalid):
        world.library.session("alice", sid, PageRequest(page_token="t_nope"))
    with pytest.raises(Invalid):
        PageRequest.parse({"limit": "0"})
    assert PageRequest.parse({"limit": "7", "order": "newest"}) == PageRequest(limit=7, order="newest")


# --- idempotency ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "stale_s"),
    [
        ({}, 180),  # the default: the functions' 120 s timeout and a margin
        # A short one (it must exceed the model deadline, so that is short too).
        ({"request_stale_s": 5, "model_timeout_s": 1, "model_deadline_s": 1}, 5),
    ],
)
def test_a_key_left_running_by_a_dead_request_is_taken_over(overrides: dict[str, int], stale_s: int) -> None:
    from datetime import timedelta

    from pixme.services.avatars import fingerprint

    world = World(settings(no_face="allow", **overrides))
    world.upload()
    assert world.s.request_stale_s == stale_s
    now = world.clock.now()
    # What a request killed mid-call leaves: its key reserved, still `running`.
    world.idempotency.begin(
        "alice", "key-00000001", fingerprint("generate", world.request()), now, now + timedelta(hours=24)
    )
    for age in (1, stale_s - 1):  # younger than the setting: it may still be running
        world.clock.current = now + timedelta(seconds=age)
        with pytest.raises(Conflict) as caught:
            world.generate(key="key-00000001")
        assert caught.value.code == "request_in_progress", age
    assert world.model.calls == []
    world.clock.current = now + timedelta(seconds=stale_s + 1)  # past it: that request is dead
    assert world.generate(key="key-00000001")["turn_count"] == 1
    assert world.generate(key="key-00000001")["replayed"] is True  # the new reservation finished


class Killed(BaseException):
    """The process dying: nothing after it runs, not even the key's release."""


@pytest.mark.parametrize("kind", ["generate", "edit", "pack"])
def test_a_retry_after_a_death_between_storing_and_finishing_answers_what_was_stored(kind: str) -> None:
    """A request killed after its turn was stored but before its key was marked
    done: the retry that takes the key over answers that turn, and neither
    stores a second turn nor calls (or charges) the model again."""
    from unittest import mock

    world = World()
    world.upload()
    session_id = world.generate()["session_id"] if kind == "edit" else None

    def attempt() -> dict:  # type: ignore[type-arg]
        if kind == "generate":
            return world.generate(key="key-00000001")
        if kind == "pack":
            return world.generate(key="key-00000001", style=None, styles=["comics", "manga"])
        assert session_id is not None
        return world.edit(session_id, "add glasses", key="key-00000001")

    with mock.patch.object(world.idempotency, "finish", side_effect=Killed), pytest.raises(Killed):
        attempt()
    calls, sessions = len(world.model.calls), dict(world.sessions.sessions)
    turns = {sid: set(world.sessions.turn_docs[sid]) for sid in sessions}
    used = dict(world.usage.used_units)
    world.clock.advance(seconds=world.s.request_stale_s + 1)  # the key is a dead request's now
    again = attempt()
    assert len(world.model.calls) == calls  # nothing made twice
    assert dict(world.sessions.sessions).keys() == sessions.keys()  # no second session
    assert {sid: set(world.sessions.turn_docs[sid]) for sid in sessions} == turns  # no second turn
    assert world.usage.used_units == used  # nor paid twice
    answered = again["results"] if kind == "pack" else [again]
    stored = {t for sid in sessions for t in world.sessions.turn_docs[sid]}
    assert {a["turn_id"] for a in answered} <= stored and len(answered) == (2 if kind == "pack" else 1)
    assert attempt()["replayed"] is True  # and the key is done now


def test_the_fingerprint_is_canonical_and_ignores_defaulted_fields(world: World) -> None:
    from pydantic import BaseModel

    from pixme.services.avatars import fingerprint

    req = world.request(prompt="add a hat")
    assert fingerprint("generate", req) == fingerprint("generate", world.request(prompt="add a hat"))
    assert fingerprint("generate", req) != fingerprint("edit", req)
    assert fingerprint("generate", req) != fingerprint("generate", world.request(prompt="add a cap"))

    class Before(BaseModel):
        session_id: str
        instruction: str

    class After(BaseModel):  # a deploy added a field with a default
        instruction: str
        session_id: str
        strength: float | None = None

    before = Before(session_id="s_1", instruction="x")
    assert fingerprint("edit", before) == fingerprint("edit", After(instruction="x", session_id="s_1"))
    # The fingerprint of an edit as the previous deploy computed it (dataclass fields).
    assert fingerprint("edit", EditRequest.parse({"session_id": "s_1", "instruction": "x"}, world.s)) == (
        fingerprint("edit", before)
    )


# --- a session does not outlive its selfie --------------------------------------------


def test_a_session_made_late_expires_with_its_upload(world: World) -> None:
    from pixme.services.cleanup import Cleanup

    upload = world.uploads.get("alice", world.ids["u1"])
    assert upload is not None
    world.clock.advance(days=world.s.retention_days - 2)
    sid = world.generate()["session_id"]
    session = world.sessions.get(sid)
    assert session is not None and session.expires_at == upload.expires_at
    world.edit(sid, "add glasses")
    world.clock.advance(days=2, seconds=1)
    with pytest.raises(NotFound) as caught:  # gone with the upload, not a missing selfie
        world.edit(sid, "make it warmer")
    assert caught.value.code == "session_not_found"
    Cleanup(
        world.s, world.blobs, world.uploads, world.sessions, world.clock, world.idempotency, world.usage
    ).run()
    assert world.sessions.get(sid) is None and world.blobs.objects == {}


# --- style packs ----------------------------------------------------------------------


def test_a_style_pack_makes_one_session_per_style_and_reports_each(world: World) -> None:
    from pixme.errors import ModelRefused

    world.model.fail_when["zombie"] = ModelRefused("image_safety", "refused")
    caller = Caller("alice")
    req = world.request(style=None, styles=["comics", "zombie", "manga", "pop_art"], caption="ANA")
    answer = world.avatars.generate(caller, req)
    body = world.shown(answer.body)
    results = body["results"]
    assert [r["style"] for r in results] == ["comics", "zombie", "manga", "pop_art"]
    assert results[1]["error"]["code"] == "image_safety" and "session_id" not in results[1]
    made = [r for r in results if "session_id" in r]
    assert len(made) == 3 and len({r["session_id"] for r in made}) == 3
    assert all("image_path" not in r and r["image_url"].startswith("https://") for r in made)
    assert body["succeeded"] == 3 and body["failed"] == 1
    # Quotas count per image (the refused one included: the model was paid), and
    # the fan-out never exceeds the caller's in-flight cap.
    assert world.usage.used("alice", "generations", world.clock.now().date().isoformat()) == 4
    assert world.usage.peak_in_flight <= world.s.user_max_in_flight
    assert answer.headers["RateLimit-Remaining"] == str(world.s.daily_generations - 4)
    for r in made:
        session = world.sessions.get(r["session_id"])
        assert session is not None and session.caption == "ANA" and session.style == r["style"]


def test_a_style_pack_that_makes_nothing_answers_with_the_error(world: World) -> None:
    from pixme.errors import ModelRefused

    world.model.fail_when["Answer"] = ModelRefused("image_safety", "refused")
    with pytest.raises(ModelRefused):
        world.avatars.generate(Caller("alice"), world.request(style=None, styles=["comics", "manga"]))


def test_a_style_pack_is_parsed_strictly_and_replayed_by_key(world: World) -> None:
    with pytest.raises(InvalidRequest) as caught:
        world.request(style=None, styles=["comics"] * 3 + ["manga"] * 4)
    assert caught.value.details["field"] == "styles"
    with pytest.raises(InvalidRequest):
        world.request(styles=["manga"])  # style and styles at once
    with pytest.raises(InvalidRequest):
        world.request(style=None, styles=[])
    req = world.request(style=None, styles=["comics", "manga", "comics"])
    assert req.styles == ("comics", "manga") and req.style == "comics"
    first = world.shown(world.avatars.generate(Caller("alice"), req, "key-00000009").body)
    again = world.shown(world.avatars.generate(Caller("alice"), req, "key-00000009").body)
    assert again["replayed"] is True and len(world.model.calls) == 2
    assert [r["session_id"] for r in again["results"]] == [r["session_id"] for r in first["results"]]
    assert all("image_path" not in r and "image_url" in r for r in again["results"])


def test_a_page_of_turns_is_signed_concurrently(world: World) -> None:
    import time

    sid = world.generate()["session_id"]
    for i in range(7):
        world.edit(sid, f"change {i}")
    signed = world.blobs.signed_url

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.1)  # an IAM signBlob round trip
        return signed(*args, **kwargs)

    world.blobs.signed_url = slow  # type: ignore[method-assign]
    started = time.perf_counter()
    view = world.shown(world.library.session("alice", sid))
    assert len(view["turns"]) == 8 and time.perf_counter() - started < 0.4
