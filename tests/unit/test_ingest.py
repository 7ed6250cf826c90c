"""The ingest use case: what happens to each object the trigger sees."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image

from fakes import FakeBlobs, FakeClock, FakeUploads, png, settings
from pixme.config import Settings
from pixme.conversation import Upload
from pixme.errors import Unavailable
from pixme.services.ingest import STALE_CLAIM, Ingest, StorageObject
from samples import CAT, SELFIE, two_faces


class World:
    def __init__(self, s: Settings | None = None) -> None:
        self.blobs, self.uploads, self.clock = FakeBlobs(), FakeUploads(), FakeClock()
        self.ingest = Ingest(s or settings(), self.blobs, self.uploads, self.clock)

    def put(self, name: str, data: bytes, gen: str = "1") -> StorageObject:
        self.blobs.write("up", name, data, "application/octet-stream")
        return StorageObject("up", name, gen, len(data), self.clock.now())

    def assets(self) -> set[str]:
        return {path for bucket, path in self.blobs.objects if bucket == "assets"}

    def doc(self, owner: str = "alice", upload_id: str = "u1") -> Upload:
        doc = self.uploads.get(owner, upload_id)
        assert doc is not None
        return doc


@pytest.fixture
def world() -> World:
    return World()


def test_a_selfie_becomes_ready_with_a_normalized_image_and_a_face_crop(world: World) -> None:
    obj = world.put("uploads/alice/u1.png", SELFIE)
    assert world.ingest.handle(obj) == "ready"
    doc = world.doc()
    assert doc.status == "ready" and (doc.width, doc.height) == (512, 512)
    assert doc.image_path == "selfies/alice/u1-1.jpg" and doc.face_path == "selfies/alice/u1-1-face.jpg"
    assert world.assets() == {doc.image_path, doc.face_path}
    assert set(doc.timings_ms) == {"read", "decode", "face", "encode", "write"}
    box = doc.face_box
    assert box is not None and box["score"] >= 70
    # The face is where the astronaut's face is (about x 180, y 65, 85 x 110).
    assert 150 < box["x"] < 210 and 40 < box["y"] < 90 and 60 < box["w"] < 120
    crop = Image.open(io.BytesIO(world.blobs.objects[("assets", doc.face_path)][0]))
    assert crop.width == crop.height and 2 * box["h"] <= crop.width <= 1024
    public = doc.public()
    assert public["face_box"] == box and public["status"] == "ready"
    assert not any("path" in key for key in public)
    assert ("up", "uploads/alice/u1.png") in world.blobs.objects  # the original is kept until retention


def test_garbage_is_rejected_with_a_reason_and_nothing_written(world: World) -> None:
    obj = world.put("uploads/alice/u1.jpg", b"GIF89a" + b"\0" * 64)
    assert world.ingest.handle(obj) == "rejected"
    doc = world.doc()
    assert doc.status == "rejected" and doc.reason == "unsupported_format" and doc.message
    assert doc.image_path is None and doc.face_path is None
    assert world.assets() == set()
    assert ("up", "uploads/alice/u1.jpg") not in world.blobs.objects  # default policy: delete


@pytest.mark.parametrize(
    ("data", "code"),
    [(CAT, "no_face"), (png(size=(640, 480)), "no_face"), (two_faces(), "multiple_faces")],
    ids=["cat", "blank", "two-faces"],
)
def test_the_face_gate_rejects_by_default(world: World, data: bytes, code: str) -> None:
    assert world.ingest.handle(world.put("uploads/alice/u1.png", data)) == "rejected"
    assert world.doc().reason == code
    assert world.assets() == set()


def test_a_deployment_may_let_photos_without_a_face_through() -> None:
    w = World(settings(no_face="allow"))
    assert w.ingest.handle(w.put("uploads/alice/u1.png", CAT)) == "ready"
    doc = w.doc()
    assert doc.face_path is None and doc.face_box is None and doc.image_path
    assert w.assets() == {doc.image_path}


def test_a_deployment_may_allow_group_photos_and_crop_the_largest_face() -> None:
    w = World(settings(multiple_faces="allow"))
    assert w.ingest.handle(w.put("uploads/alice/u1.jpg", two_faces())) == "ready"
    doc = w.doc()
    assert doc.face_box is not None and doc.face_path in w.assets()


@pytest.mark.parametrize(
    ("bucket", "name"),
    [
        ("assets", "uploads/alice/u1.png"),  # our own output bucket
        ("up", "selfies/alice/u1.jpg"),
        ("up", "uploads/u1.png"),
        ("up", "uploads/alice/../bob/u1.png"),
        ("up", "uploads/alice/sub/u1.png"),
        ("up", "quarantine/alice/u1-1"),
    ],
)
def test_objects_outside_the_upload_layout_are_ignored(world: World, bucket: str, name: str) -> None:
    obj = StorageObject(bucket, name, "1", 10, world.clock.now())
    assert world.ingest.handle(obj).startswith("ignored")
    assert world.uploads.docs == {}


def test_a_redelivered_event_has_one_effect(world: World) -> None:
    obj = world.put("uploads/alice/u1.png", SELFIE)
    assert world.ingest.handle(obj) == "ready"
    before = dict(world.blobs.objects)
    world.blobs.objects.pop(("assets", "selfies/alice/u1-1.jpg"))
    assert world.ingest.handle(obj) == "duplicate"
    assert ("assets", "selfies/alice/u1-1.jpg") not in world.blobs.objects  # nothing redone
    assert len(before) == 3


def test_a_delivery_that_finds_another_at_work_asks_to_be_retried(world: World) -> None:
    obj = world.put("uploads/alice/u1.png", SELFIE)
    live = Upload(
        "alice", "u1", "processing", "up", obj.name, "1", world.clock.now(),
        world.clock.now() + timedelta(days=30), claim_id="other",
    )  # fmt: skip
    world.uploads.claim(live)
    with pytest.raises(Unavailable) as caught:
        world.ingest.handle(obj)
    assert caught.value.retryable and caught.value.code == "upload_in_progress"
    assert world.doc().claim_id == "other" and world.assets() == set()
    # The other delivery died: once its claim is stale, a redelivery takes over.
    world.clock.advance(seconds=STALE_CLAIM.total_seconds() + 1)
    assert world.ingest.handle(obj) == "ready"
    assert world.doc().status == "ready"


def test_a_new_generation_replaces_the_old_one_and_late_old_events_change_nothing(world: World) -> None:
    old = world.put("uploads/alice/u1.png", b"junk", gen="1")
    assert world.ingest.handle(old) == "rejected"
    new = world.put("uploads/alice/u1.png", SELFIE, gen="2")
    assert world.ingest.handle(new) == "ready"
    doc = world.doc()
    assert doc.status == "ready" and doc.generation == "2" and doc.image_path == "selfies/alice/u1-2.jpg"
    assert world.ingest.handle(old) == "superseded"
    assert world.doc().generation == "2"


def test_events_older_than_the_max_age_are_dropped(world: World) -> None:
    obj = world.put("uploads/alice/u1.png", SELFIE)
    world.clock.advance(seconds=settings().max_event_age_s + 1)
    assert world.ingest.handle(obj) == "dropped_stale"
    assert world.uploads.docs == {}


def test_a_file_over_the_byte_cap_is_rejected_without_being_read(world: World) -> None:
    obj = StorageObject("up", "uploads/alice/u1.jpg", "1", settings().max_upload_bytes + 1, world.clock.now())
    assert world.ingest.handle(obj) == "rejected"  # not even in the fake bucket: never read
    assert world.doc().reason == "too_large"


def test_an_object_deleted_before_processing_is_recorded_as_gone(world: World) -> None:
    obj = StorageObject("up", "uploads/alice/u1.jpg", "1", 10, world.clock.now())
    assert world.ingest.handle(obj) == "rejected"
    assert world.doc().reason == "gone"


@pytest.mark.parametrize("policy", ["delete", "quarantine", "keep"])
def test_rejected_originals_follow_the_policy(policy: str) -> None:
    w = World(settings(rejected_originals=policy))
    junk = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    assert w.ingest.handle(w.put("uploads/alice/u1.png", junk)) == "rejected"
    original_left = ("up", "uploads/alice/u1.png") in w.blobs.objects
    assert original_left == (policy == "keep")
    if policy == "quarantine":
        assert w.blobs.objects[("assets", "quarantine/alice/u1-1")][0] == junk
    else:
        assert w.assets() == set()


class FlakyUploads(FakeUploads):
    """The database fails the final write a given number of times."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def finish(self, upload: Upload) -> bool:
        if self.failures:
            self.failures -= 1
            raise Unavailable("database_unavailable", "down")
        return super().finish(upload)


def test_a_failed_document_write_leaves_no_image_and_the_retry_starts_at_once() -> None:
    w = World()
    w.uploads = FlakyUploads(failures=1)
    w.ingest.uploads = w.uploads
    obj = w.put("uploads/alice/u1.png", SELFIE)
    with pytest.raises(Unavailable):
        w.ingest.handle(obj)
    assert w.assets() == set()  # nothing half-written
    doc = w.doc()
    assert doc.status == "processing" and doc.claim_id is None  # released, not stuck for minutes
    assert w.ingest.handle(obj) == "ready"
    assert w.assets() == {w.doc().image_path, w.doc().face_path}


def test_storage_down_is_retryable(world: World) -> None:
    obj = world.put("uploads/alice/u1.png", SELFIE)

    def down(bucket: str, path: str, generation: str | None = None) -> bytes:
        raise Unavailable("storage_unavailable", "down")

    world.blobs.read = down  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        world.ingest.handle(obj)
    assert world.doc().status == "processing"


def test_a_delivery_overtaken_by_a_newer_generation_removes_what_it_wrote(world: World) -> None:
    obj = world.put("uploads/alice/u1.png", SELFIE, gen="1")
    write = world.blobs.write

    def write_then_lose_the_race(bucket: str, path: str, data: bytes, content_type: str) -> None:
        write(bucket, path, data, content_type)
        doc = world.doc()
        if doc.generation == "1":  # gen 2 arrives and takes the document over meanwhile
            world.uploads.save(Upload("alice", "u1", "processing", "up", obj.name, "2",
                                      doc.created_at, doc.expires_at, claim_id="gen2"))  # fmt: skip

    world.blobs.write = write_then_lose_the_race  # type: ignore[method-assign]
    assert world.ingest.handle(obj) == "superseded"
    assert world.assets() == set()
    assert world.doc().generation == "2"


def test_ingest_settings_are_validated() -> None:
    from pixme.errors import ConfigError

    base = {"GOOGLE_CLOUD_PROJECT": "p", "PIXME_UPLOADS_BUCKET": "u", "PIXME_ASSETS_BUCKET": "a"}
    s = Settings.from_env(base)
    assert (s.no_face, s.multiple_faces, s.rejected_originals) == ("reject", "reject", "delete")
    s = Settings.from_env(base | {"PIXME_NO_FACE": "allow", "PIXME_REJECTED_ORIGINALS": "Quarantine"})
    assert s.no_face == "allow" and s.rejected_originals == "quarantine"
    for bad in (
        {"PIXME_NO_FACE": "maybe"},
        {"PIXME_MULTIPLE_FACES": "largest"},
        {"PIXME_REJECTED_ORIGINALS": "shred"},
        {"PIXME_MAX_UPLOAD_PIXELS": "200000000"},
    ):
        with pytest.raises(ConfigError):
            Settings.from_env(base | bad)
