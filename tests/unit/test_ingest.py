"""The ingest use case: what happens to each object the trigger sees."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from PIL import Image

from fakes import FakeBlobs, FakeClock, FakeSessions, FakeUploads, png, settings
from pixme.api import UploadRequest
from pixme.config import Settings
from pixme.conversation import Upload
from pixme.errors import Unavailable
from pixme.layout import upload_object
from pixme.services.ingest import STALE_CLAIM, Ingest, StorageObject
from pixme.services.uploads import PENDING_GRACE, Uploads
from samples import CAT, SELFIE, two_faces


class World:
    """The trigger's world: uploads registered the way the `uploads` function does."""

    def __init__(self, s: Settings | None = None) -> None:
        self.settings = s or settings()
        self.blobs, self.uploads, self.clock = FakeBlobs(), FakeUploads(), FakeClock()
        self.sessions = FakeSessions()
        self.ingest = Ingest(self.settings, self.blobs, self.uploads, self.clock)
        self.service = Uploads(self.settings, self.blobs, self.uploads, self.sessions, self.clock)
        self.upload_id = ""

    def register(self, owner: str = "alice") -> str:
        self.upload_id = self.service.start(owner, UploadRequest(content_type="image/jpeg")).upload_id
        return upload_object(owner, self.upload_id)

    def put(self, data: bytes, gen: str = "1", name: str | None = None) -> StorageObject:
        if name is None:
            name = upload_object("alice", self.upload_id) if self.upload_id else self.register()
        self.blobs.write("up", name, data, "application/octet-stream")
        return StorageObject("up", name, gen, len(data), self.clock.now())

    def event(self, name: str, size: int, gen: str = "1") -> StorageObject:
        return StorageObject("up", name, gen, size, self.clock.now())

    def assets(self) -> set[str]:
        return {path for bucket, path in self.blobs.objects if bucket == "assets"}

    def originals(self) -> set[str]:
        return {path for bucket, path in self.blobs.objects if bucket == "up"}

    def doc(self) -> Upload:
        doc = self.uploads.get("alice", self.upload_id)
        assert doc is not None
        return doc


@pytest.fixture
def world() -> World:
    return World()


def test_a_selfie_becomes_ready_with_a_normalized_image_and_a_face_crop(world: World) -> None:
    obj = world.put(SELFIE)
    assert world.ingest.handle(obj) == "ready"
    doc, uid = world.doc(), world.upload_id
    assert doc.status == "ready" and (doc.width, doc.height) == (512, 512)
    assert (
        doc.image_path == f"selfies/alice/{uid}-1.jpg" and doc.face_path == f"selfies/alice/{uid}-1-face.jpg"
    )
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
    # The original (with its metadata) is gone once the normalized copies exist.
    assert world.originals() == set()
    assert sorted(doc.objects("assets")) == sorted(("assets", p) for p in (doc.image_path, doc.face_path))


def test_garbage_is_rejected_with_a_reason_and_nothing_written(world: World) -> None:
    obj = world.put(b"GIF89a" + b"\0" * 64)
    assert world.ingest.handle(obj) == "rejected"
    doc = world.doc()
    assert doc.status == "rejected" and doc.reason == "unsupported_format" and doc.message
    assert doc.image_path is None and doc.face_path is None
    assert world.assets() == set()
    assert world.originals() == set()  # default policy: delete
    assert doc.objects("assets") == []


@pytest.mark.parametrize(
    ("data", "code"),
    [(CAT, "no_face"), (png(size=(640, 480)), "no_face"), (two_faces(), "multiple_faces")],
    ids=["cat", "blank", "two-faces"],
)
def test_the_face_gate_rejects_by_default(world: World, data: bytes, code: str) -> None:
    assert world.ingest.handle(world.put(data)) == "rejected"
    assert world.doc().reason == code
    assert world.assets() == set()


def test_a_deployment_may_let_photos_without_a_face_through() -> None:
    w = World(settings(no_face="allow"))
    assert w.ingest.handle(w.put(CAT)) == "ready"
    doc = w.doc()
    assert doc.face_path is None and doc.face_box is None and doc.image_path
    assert w.assets() == {doc.image_path}


def test_a_deployment_may_allow_group_photos_and_crop_the_largest_face() -> None:
    w = World(settings(multiple_faces="allow"))
    assert w.ingest.handle(w.put(two_faces())) == "ready"
    doc = w.doc()
    assert doc.face_box is not None and doc.face_path in w.assets()


def test_objects_in_other_buckets_are_ignored(world: World) -> None:
    world.register()
    obj = StorageObject("assets", upload_object("alice", world.upload_id), "1", 10, world.clock.now())
    world.blobs.write("assets", obj.name, SELFIE, "image/png")
    assert world.ingest.handle(obj) == "ignored_bucket"
    assert world.doc().status == "pending" and ("assets", obj.name) in world.blobs.objects


@pytest.mark.parametrize(
    "name",
    [
        "uploads/alice/planted",  # no upload registered under this id
        "uploads/bob/{id}",  # alice's id under another user
        "uploads/alice/{id}.jpg",  # the same id with an extension
        "uploads/alice/{id}/x",
        "uploads/../alice/{id}",
        "selfies/alice/x.jpg",
        "anything.png",
    ],
)
def test_an_object_no_pending_upload_names_is_deleted_and_never_becomes_an_upload(
    world: World, name: str
) -> None:
    world.register()
    obj = world.put(SELFIE, name=name.format(id=world.upload_id))
    assert world.ingest.handle(obj) == "unregistered"
    assert ("up", obj.name) not in world.blobs.objects
    assert world.doc().status == "pending" and world.assets() == set()
    assert [u.upload_id for u in world.uploads.docs.values()] == [world.upload_id]


def test_a_second_object_for_one_upload_is_deleted_and_the_first_stays(world: World) -> None:
    first = world.put(SELFIE, gen="1")
    assert world.ingest.handle(first) == "ready"
    ready = world.doc()
    # The signed URL forbids overwriting; should a second write land after the
    # original was deleted, it does not replace the ready photo.
    second = world.put(CAT, gen="2")
    assert world.ingest.handle(second) == "unregistered"
    assert world.originals() == set()
    assert world.doc() == ready and world.assets() == {ready.image_path, ready.face_path}
    assert world.ingest.handle(first) == "duplicate"  # a late redelivery of the first


def test_an_upload_whose_url_expired_unused_takes_no_object(world: World) -> None:
    world.register()
    world.clock.advance(seconds=world.settings.upload_url_ttl_s + PENDING_GRACE.total_seconds() + 1)
    obj = world.put(SELFIE)
    assert world.ingest.handle(obj) == "unregistered"
    assert world.originals() == set() and world.doc().status == "pending"


def test_a_redelivered_event_has_one_effect(world: World) -> None:
    obj = world.put(SELFIE)
    assert world.ingest.handle(obj) == "ready"
    picture = world.doc().image_path
    assert picture
    world.blobs.objects.pop(("assets", picture))
    assert world.ingest.handle(obj) == "duplicate"
    assert ("assets", picture) not in world.blobs.objects  # nothing redone


def test_a_delivery_that_finds_another_at_work_asks_to_be_retried(world: World) -> None:
    obj = world.put(SELFIE)
    pending = world.doc()
    live = replace(
        pending, status="processing", generation="1", claim_id="other", claimed_at=world.clock.now()
    )
    world.uploads.save(live)
    with pytest.raises(Unavailable) as caught:
        world.ingest.handle(obj)
    assert caught.value.retryable and caught.value.code == "upload_in_progress"
    assert world.doc().claim_id == "other" and world.assets() == set()
    # The other delivery died: once its claim is stale, a redelivery takes over.
    world.clock.advance(seconds=STALE_CLAIM.total_seconds() + 1)
    assert world.ingest.handle(obj) == "ready"
    assert world.doc().status == "ready"


def test_events_older_than_the_max_age_are_dropped(world: World) -> None:
    obj = world.put(SELFIE)
    world.clock.advance(seconds=settings().max_event_age_s + 1)
    assert world.ingest.handle(obj) == "dropped_stale"
    assert world.doc().status == "pending"


def test_a_file_over_the_byte_cap_is_rejected_without_being_read(world: World) -> None:
    obj = world.event(world.register(), settings().max_upload_bytes + 1)
    assert world.ingest.handle(obj) == "rejected"  # not even in the fake bucket: never read
    assert world.doc().reason == "too_large"


def test_an_object_deleted_before_processing_is_recorded_as_gone(world: World) -> None:
    obj = world.event(world.register(), 10)
    assert world.ingest.handle(obj) == "rejected"
    assert world.doc().reason == "gone"


@pytest.mark.parametrize("policy", ["delete", "quarantine", "keep"])
def test_rejected_originals_follow_the_policy(policy: str) -> None:
    w = World(settings(rejected_originals=policy))
    junk = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
    assert w.ingest.handle(w.put(junk)) == "rejected"
    assert (w.originals() != set()) == (policy == "keep")
    if policy == "quarantine":
        assert w.blobs.objects[("assets", f"quarantine/alice/{w.upload_id}-1")][0] == junk
    else:
        assert w.assets() == set()
    # The document accounts for exactly what is left.
    doc = w.doc()
    left = {(b, p) for b, p in w.blobs.objects}
    assert set(doc.objects("assets")) == left


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
    w.ingest.uploads = w.service.uploads = w.uploads
    obj = w.put(SELFIE)
    with pytest.raises(Unavailable):
        w.ingest.handle(obj)
    assert w.assets() == set()  # nothing half-written
    doc = w.doc()
    assert doc.status == "processing" and doc.claim_id is None  # released, not stuck for minutes
    assert w.ingest.handle(obj) == "ready"
    assert w.assets() == {w.doc().image_path, w.doc().face_path}


def test_storage_down_is_retryable(world: World) -> None:
    obj = world.put(SELFIE)

    def down(bucket: str, path: str, generation: str | None = None) -> bytes:
        raise Unavailable("storage_unavailable", "down")

    world.blobs.read = down  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        world.ingest.handle(obj)
    assert world.doc().status == "processing"


def test_an_upload_deleted_while_processing_leaves_nothing(world: World) -> None:
    obj = world.put(SELFIE, gen="1")
    write = world.blobs.write

    def write_then_the_user_deletes(bucket: str, path: str, data: bytes, content_type: str) -> None:
        write(bucket, path, data, content_type)
        if world.uploads.get("alice", world.upload_id):
            world.service.delete("alice", world.upload_id)

    world.blobs.write = write_then_the_user_deletes  # type: ignore[method-assign]
    assert world.ingest.handle(obj) == "taken_over"
    assert world.assets() == set() and world.originals() == set()
    assert world.uploads.docs == {}


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
