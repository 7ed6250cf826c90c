"""The ingest use case: what happens to each object the trigger sees."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fakes import FakeBlobs, FakeClock, FakeUploads, png, settings
from pixme.services.ingest import Ingest, StorageObject


@pytest.fixture
def world() -> tuple[Ingest, FakeBlobs, FakeUploads, FakeClock]:
    blobs, uploads, clock = FakeBlobs(), FakeUploads(), FakeClock()
    return Ingest(settings(), blobs, uploads, clock), blobs, uploads, clock


def put(blobs: FakeBlobs, clock: FakeClock, name: str, data: bytes, gen: str = "1") -> StorageObject:
    blobs.write("up", name, data, "image/png")
    return StorageObject("up", name, gen, len(data), clock.now())


def test_a_valid_selfie_becomes_ready_with_a_normalized_image(world) -> None:  # type: ignore[no-untyped-def]
    ingest, blobs, uploads, clock = world
    obj = put(blobs, clock, "uploads/alice/u1.png", png(size=(640, 480)))
    assert ingest.handle(obj) == "ready"
    doc = uploads.get("alice", "u1")
    assert doc is not None and doc.status == "ready"
    assert (doc.width, doc.height) == (640, 480)
    assert ("assets", "selfies/alice/u1.jpg") in blobs.objects
    assert set(doc.timings_ms) == {"read", "normalize", "write"}


def test_garbage_is_rejected_with_a_reason_and_no_image(world) -> None:  # type: ignore[no-untyped-def]
    ingest, blobs, uploads, clock = world
    obj = put(blobs, clock, "uploads/alice/u2.jpg", b"GIF89a" + b"\0" * 64)
    assert ingest.handle(obj) == "rejected"
    doc = uploads.get("alice", "u2")
    assert doc is not None and doc.status == "rejected" and doc.reason == "unsupported_format"
    assert doc.message
    assert not any(k[0] == "assets" for k in blobs.objects)


@pytest.mark.parametrize(
    ("bucket", "name"),
    [
        ("assets", "uploads/alice/u1.png"),  # our own output bucket
        ("up", "selfies/alice/u1.jpg"),
        ("up", "uploads/u1.png"),
        ("up", "uploads/alice/../bob/u1.png"),
        ("up", "uploads/alice/sub/u1.png"),
    ],
)
def test_objects_outside_the_upload_layout_are_ignored(world, bucket: str, name: str) -> None:  # type: ignore[no-untyped-def]
    ingest, _blobs, uploads, clock = world
    obj = StorageObject(bucket, name, "1", 10, clock.now())
    assert ingest.handle(obj).startswith("ignored")
    assert uploads.docs == {}


def test_a_redelivered_event_has_one_effect(world) -> None:  # type: ignore[no-untyped-def]
    ingest, blobs, _uploads, clock = world
    obj = put(blobs, clock, "uploads/alice/u1.png", png())
    assert ingest.handle(obj) == "ready"
    blobs.objects.pop(("assets", "selfies/alice/u1.jpg"))
    assert ingest.handle(obj) == "duplicate"
    assert ("assets", "selfies/alice/u1.jpg") not in blobs.objects  # nothing redone


def test_a_new_generation_of_the_same_upload_is_processed_again(world) -> None:  # type: ignore[no-untyped-def]
    ingest, blobs, uploads, clock = world
    ingest.handle(put(blobs, clock, "uploads/alice/u1.png", b"junk"))
    assert ingest.handle(put(blobs, clock, "uploads/alice/u1.png", png(), gen="2")) == "ready"
    doc = uploads.get("alice", "u1")
    assert doc is not None and doc.status == "ready" and doc.generation == "2"


def test_events_older_than_the_max_age_are_dropped(world) -> None:  # type: ignore[no-untyped-def]
    ingest, blobs, uploads, clock = world
    obj = put(blobs, clock, "uploads/alice/u1.png", png())
    clock.advance(seconds=settings().max_event_age_s + 1)
    assert ingest.handle(obj) == "dropped_stale"
    assert uploads.docs == {}


def test_a_dead_processing_claim_is_taken_over(world) -> None:  # type: ignore[no-untyped-def]
    ingest, blobs, uploads, clock = world
    obj = put(blobs, clock, "uploads/alice/u1.png", png())
    from pixme.conversation import Upload

    uploads.claim(
        Upload(
            "alice", "u1", "processing", "up", obj.name, "1", clock.now(), clock.now() + timedelta(days=30)
        )
    )
    assert ingest.handle(obj) == "duplicate"  # another delivery may still be working
    clock.advance(minutes=6)
    obj = StorageObject("up", obj.name, "1", obj.size, clock.now())
    assert ingest.handle(obj) == "ready"
