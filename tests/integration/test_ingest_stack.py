"""Ingest through the real entry point: on_upload served by functions-framework,
called with binary-mode CloudEvents as Eventarc sends them, against the
Firestore emulator and fake-gcs-server.

No bridge here: the test is the event source, so it decides when and how often
an event arrives (duplicates, concurrency) and sees every answer. A 5xx answer
is what makes Eventarc redeliver; `deliver` does the same.

The hostile-file corpus is generated here: every file, the extension it is
uploaded with, and the outcome the README documents for it. Faces come from
the one real selfie in the repository (pasted twice for a group photo,
rotated by the inverse of an EXIF orientation, scaled up to 48 MP); the
no-face pictures are the cat and the coffee cup.
"""

from __future__ import annotations

import io
import json
import random
import struct
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud.firestore_v1.base_query import FieldFilter
from PIL import Image, ImageCms

from local.app import AppClient
from local.audit import audit
from local.stack import Stack
from samples import CAT_PATH, COFFEE_PATH, INVERSE, SELFIE_PATH, two_faces_image

ROOT = Path(__file__).resolve().parents[2]
SELFIE, CAT, COFFEE = SELFIE_PATH, CAT_PATH, COFFEE_PATH


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    ext: str
    status: str  # "ready" | "rejected"
    reason: str | None = None


def _save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    if fmt == "HEIF":
        from pillow_heif import register_heif_opener

        register_heif_opener()
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def selfie() -> Image.Image:
    return Image.open(SELFIE).convert("RGB")


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    return exif


def oriented_jpeg(img: Image.Image, orientation: int, **kwargs: object) -> bytes:
    stored = img
    for op in INVERSE[orientation]:
        stored = stored.transpose(op)
    return _save(stored, "JPEG", quality=90, exif=_exif(orientation), **kwargs)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int, depth: int = 8, colour: int = 2, idat: bytes = b"") -> bytes:
    """A PNG whose header says `width` x `height`, with the IDAT given."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + (_chunk(b"IDAT", idat) if idat else b"")
        + _chunk(b"IEND", b"")
    )


def png_bomb(width: int, height: int) -> bytes:
    """A real 1-bit PNG of width x height black pixels: a few KB on disk, one
    byte per pixel once Pillow decodes it."""
    row = b"\0" + b"\0" * ((width + 7) // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return png_declaring(width, height, depth=1, colour=0, idat=body)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is rewritten to claim another size."""
    data = bytearray(_save(Image.new("RGB", (64, 64), (120, 90, 60)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def png16(img: Image.Image) -> bytes:
    """A 16-bit-per-channel PNG of an L or RGB image (Pillow writes neither)."""
    raw = img.tobytes()
    rows = []
    channels = len(img.getbands())
    stride = img.width * channels
    for y in range(img.height):
        line = raw[y * stride : (y + 1) * stride]
        wide = bytearray(len(line) * 2)
        wide[0::2] = line
        wide[1::2] = line
        rows.append(b"\0" + bytes(wide))
    ihdr = struct.pack(">IIBBBBB", img.width, img.height, 16, 2 if channels == 3 else 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
        + _chunk(b"IEND", b"")
    )


def zip_polyglot(jpeg: bytes) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.js", "alert(document.cookie)")
    return jpeg + archive.getvalue()


def jpeg_with_comment(jpeg: bytes, comment: bytes) -> bytes:
    segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    return jpeg[:2] + segment + jpeg[2:]


def cases() -> Iterator[Case]:
    face = selfie()
    face_jpeg = _save(face, "JPEG", quality=90)
    face_png = SELFIE.read_bytes()

    # Photos that must be accepted, in every format and mode.
    yield Case("png", face_png, "png", "ready")
    yield Case("jpeg", face_jpeg, "jpg", "ready")
    yield Case("jpeg-progressive", _save(face, "JPEG", quality=85, progressive=True), "jpg", "ready")
    yield Case("webp-lossy", _save(face, "WEBP", quality=80), "webp", "ready")
    yield Case("webp-lossless", _save(face, "WEBP", lossless=True), "webp", "ready")
    yield Case("heic", _save(face, "HEIF", quality=70), "heic", "ready")
    for orientation in range(1, 9):
        yield Case(f"exif-orientation-{orientation}", oriented_jpeg(face, orientation), "jpg", "ready")
    yield Case("jpeg-named-png", face_jpeg, "png", "ready")
    yield Case("png-named-heic", face_png, "heic", "ready")
    yield Case("cmyk-jpeg", _save(face.convert("CMYK"), "JPEG", quality=90), "jpg", "ready")
    yield Case("grey-16bit-png", png16(face.convert("L")), "png", "ready")
    yield Case("rgb-16bit-png", png16(face), "png", "ready")
    palette = face.quantize(colors=200)
    palette.info["transparency"] = 0
    yield Case("palette-alpha-png", _save(palette, "PNG"), "png", "ready")
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.new("L", face.size, 255).crop((0, 0, *face.size)))
    rgba.paste((0, 0, 0, 0), (0, 0, face.width, 24))
    yield Case("rgba-png", _save(rgba, "PNG"), "png", "ready")
    yield Case("grey-alpha-png", _save(face.convert("LA"), "PNG"), "png", "ready")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    yield Case("icc-jpeg", _save(face, "JPEG", quality=90, icc_profile=srgb), "jpg", "ready")
    canvas = Image.new("RGB", (8000, 6000), (70, 80, 90))
    canvas.paste(face.resize((6000, 6000), Image.Resampling.BILINEAR), (1000, 0))
    yield Case("48mp-jpeg-exif6-gps", oriented_jpeg(canvas, 6), "jpg", "ready")

    # Not a photo of one face.
    yield Case("no-face-cat", CAT.read_bytes(), "png", "rejected", "no_face")
    yield Case("no-face-coffee", COFFEE.read_bytes(), "png", "rejected", "no_face")
    yield Case("no-face-blank", _save(Image.new("RGB", (640, 480), (200, 180, 160)), "JPEG"), "jpg",
               "rejected", "no_face")  # fmt: skip
    yield Case("two-faces", _save(two_faces_image(), "JPEG", quality=90), "jpg", "rejected", "multiple_faces")
    yield Case("tiny-32px", _save(face.resize((32, 32)), "PNG"), "png", "rejected", "too_small")
    yield Case("tiny-1px", _save(Image.new("RGB", (1, 1)), "PNG"), "png", "rejected", "too_small")
    yield Case("sliver-4000x40", _save(face.resize((4000, 40)), "JPEG"), "jpg", "rejected", "too_small")

    # Empty, truncated, corrupt.
    yield Case("zero-bytes", b"", "jpg", "rejected", "empty")
    yield Case("truncated-jpeg", face_jpeg[: len(face_jpeg) // 2], "jpg", "rejected", "truncated")
    yield Case("truncated-png", face_png[: len(face_png) // 2], "png", "rejected", "truncated")
    webp = _save(face, "WEBP", quality=80)
    yield Case("truncated-webp", webp[: len(webp) // 2], "webp", "rejected", "unreadable")
    heic = _save(face, "HEIF", quality=70)
    yield Case("truncated-heic", heic[: len(heic) // 2], "heic", "rejected", "unreadable")
    yield Case("jpeg-magic-only", b"\xff\xd8\xff", "jpg", "rejected", "unreadable")
    yield Case("png-header-no-data", png_declaring(640, 480), "png", "rejected", "unreadable")
    yield Case("png-garbage-data", png_declaring(640, 480, idat=b"\x78\x9c" + b"\xaa" * 4000), "png",
               "rejected", "unreadable")  # fmt: skip
    yield Case("random-bytes", bytes(range(256)) * 64, "jpg", "rejected", "unsupported_format")

    # Bombs and lying headers.
    yield Case("png-bomb-200mp", png_bomb(16_384, 12_208), "png", "rejected", "too_many_pixels")
    yield Case("jpeg-header-200mp", jpeg_declaring(16_384, 12_208), "jpg", "rejected", "too_many_pixels")
    yield Case("png-header-60000sq", png_declaring(60_000, 60_000), "png", "rejected", "too_many_pixels")
    yield Case("png-header-60mp", png_declaring(9_000, 6_700), "png", "rejected", "too_many_pixels")
    yield Case("jpeg-header-65535sq", jpeg_declaring(65_535, 65_535), "jpg", "rejected", "too_many_pixels")
    yield Case("over-byte-cap", face_jpeg + b"\0" * (40 * 1024 * 1024), "jpg", "rejected", "too_large")

    # Animations.
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    yield Case("animated-gif", _save(frames[0], "GIF", save_all=True, append_images=frames[1:]), "gif",
               "rejected", "unsupported_format")  # fmt: skip
    yield Case("animated-webp", _save(frames[0], "WEBP", save_all=True, append_images=frames[1:]), "webp",
               "rejected", "animated")  # fmt: skip
    yield Case("apng", _save(frames[0], "PNG", save_all=True, append_images=frames[1:]), "png",
               "rejected", "animated")  # fmt: skip

    # Other formats, and files that are two things at once.
    svg = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'><script>alert(2)</script></svg>"
    yield Case("svg-script", svg, "png", "rejected", "unsupported_format")
    yield Case("pdf", b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "jpg", "rejected",
               "unsupported_format")  # fmt: skip
    yield Case("tiff", _save(face, "TIFF"), "jpg", "rejected", "unsupported_format")
    yield Case("bmp", _save(face, "BMP"), "png", "rejected", "unsupported_format")
    yield Case("gif-js-polyglot", b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=alert(1)//;", "gif", "rejected",
               "unsupported_format")  # fmt: skip
    yield Case("jpeg-zip-polyglot", zip_polyglot(face_jpeg), "jpg", "rejected", "polyglot")
    yield Case("jpeg-html-polyglot", jpeg_with_comment(face_jpeg, b"<html><script>alert(1)</script>"),
               "jpg", "rejected", "polyglot")  # fmt: skip
    yield Case("png-pdf-polyglot", face_png[:33] + _chunk(b"tEXt", b"c\0%PDF-1.4 1 0 obj") + face_png[33:],
               "png", "rejected", "polyglot")  # fmt: skip


# --- the tests ---------------------------------------------------------------

FINALIZED = "google.cloud.storage.object.v1.finalized"
CASES = list(cases())
MAX_SIDE = 1536


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack(
        components=["firestore", "storage", "signed_urls", "issuer", "functions"],
        targets=["on_upload", "uploads", "sessions"],
        env_overrides={
            "PIXME_REJECTED_ORIGINALS": "quarantine",
            "PIXME_MAX_SIDE": str(MAX_SIDE),
            # The corpus and the duplicate test start many uploads per user.
            "PIXME_DAILY_UPLOADS": "1000",
            "PIXME_MAX_PENDING_UPLOADS": "200",
        },
        log_dir=ROOT / "out" / "stack" / "test-ingest",
        quiet=True,
    )
    with s:
        yield s


@pytest.fixture(scope="module")
def db(stack: Stack) -> Any:
    return stack.firestore_client()


@pytest.fixture(scope="module")
def gcs(stack: Stack) -> Any:
    return stack.storage_client()


CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "heic": "image/heic"}


def app(stack: Stack, owner: str) -> AppClient:
    return AppClient(stack.functions, stack.token(owner))


def signed_put(client: AppClient, data: bytes, ext: str) -> tuple[str, requests.Response]:
    """The app's upload: a ticket from `uploads`, then the PUT it describes.
    A client may declare any allowed type; the trigger judges the bytes."""
    ticket = client.start_upload(CONTENT_TYPES.get(ext, "image/png"))
    return str(ticket["upload_id"]), client.put(ticket, data)


def resource_of(stack: Stack, gcs: Any, name: str) -> dict[str, Any]:
    """The object resource a finalized event carries for what is stored under `name`."""
    blob = gcs.bucket(stack.uploads_bucket).get_blob(name)
    assert blob is not None, f"{name} is not stored"
    created = (blob.time_created or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return {
        "bucket": stack.uploads_bucket,
        "name": name,
        "generation": str(blob.generation),
        "metageneration": "1",
        "size": str(blob.size),
        "contentType": blob.content_type or "application/octet-stream",
        "timeCreated": created,
        "updated": created,
    }


def put(stack: Stack, gcs: Any, owner: str, data: bytes, ext: str = "jpg") -> tuple[str, dict[str, Any]]:
    """Upload through the signed path; the upload id and the event's object resource."""
    upload_id, resp = signed_put(app(stack, owner), data, ext)
    assert resp.status_code == 200, resp.text
    return upload_id, resource_of(stack, gcs, f"uploads/{owner}/{upload_id}")


def plant(stack: Stack, gcs: Any, name: str, data: bytes) -> dict[str, Any]:
    """Write straight into the uploads bucket, as someone holding bucket access could."""
    gcs.bucket(stack.uploads_bucket).blob(name).upload_from_string(data, content_type="image/png")
    return resource_of(stack, gcs, name)


def post_event(stack: Stack, resource: dict[str, Any], event_id: str) -> int:
    headers = {
        "ce-id": event_id,
        "ce-specversion": "1.0",
        "ce-type": FINALIZED,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{resource['bucket']}",
        "ce-subject": f"objects/{resource['name']}",
        "ce-time": resource["timeCreated"],
        "Content-Type": "application/json",
    }
    resp = requests.post(stack.functions["on_upload"], data=json.dumps(resource), headers=headers, timeout=60)
    return resp.status_code


def deliver(stack: Stack, resource: dict[str, Any], event_id: str, deadline_s: float = 90) -> int:
    """Deliver until acknowledged, as Eventarc does (with a much shorter backoff);
    returns how many attempts it took."""
    deadline = time.monotonic() + deadline_s
    attempts = 0
    while True:
        attempts += 1
        status = post_event(stack, resource, event_id)
        if 200 <= status < 300:
            return attempts
        assert status >= 500, status
        assert time.monotonic() < deadline, f"{resource['name']} never acknowledged"
        time.sleep(random.uniform(0.2, 0.5))


def assets_under(stack: Stack, gcs: Any, prefix: str) -> dict[str, bytes]:
    blobs = gcs.list_blobs(stack.assets_bucket, prefix=prefix)
    return {b.name: b.download_as_bytes() for b in blobs}


def new_log(stack: Stack, offset: int) -> str:
    with open(stack.logs()["fn-on_upload"], "rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


def log_size(stack: Stack) -> int:
    return stack.logs()["fn-on_upload"].stat().st_size


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_hostile_file_ends_in_its_documented_outcome(
    stack: Stack, db: Any, gcs: Any, case: Case
) -> None:
    owner = "corpus" + uuid.uuid4().hex[:8]
    client = app(stack, owner)
    upload_id, resp = signed_put(client, case.data, case.ext)
    name = f"uploads/{owner}/{upload_id}"
    if case.reason in ("empty", "too_large"):
        # The signed URL's length range refuses these before anything is stored.
        assert resp.status_code == 400, resp.text
        assert gcs.bucket(stack.uploads_bucket).get_blob(name) is None
        assert client.upload_status(upload_id)["status"] == "pending"
        return
    assert resp.status_code == 200, resp.text
    resource = resource_of(stack, gcs, name)
    offset = log_size(stack)

    # Accepted or rejected, the first delivery is acknowledged: no crash, no retry.
    assert post_event(stack, resource, uuid.uuid4().hex) == 200
    assert "Traceback" not in new_log(stack, offset)

    doc = db.document(f"uploads/{owner}:{upload_id}").get().to_dict()
    assert (doc["status"], doc["reason"]) == (case.status, case.reason), doc.get("message")
    outputs = assets_under(stack, gcs, f"selfies/{owner}/")
    original = gcs.bucket(stack.uploads_bucket).get_blob(name)
    quarantined = assets_under(stack, gcs, f"quarantine/{owner}/")

    if case.status == "ready":
        # Exactly the two files the document names, both readable, no metadata.
        assert set(outputs) == {doc["image_path"], doc["face_path"]}
        img = Image.open(io.BytesIO(outputs[doc["image_path"]]))
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (doc["width"], doc["height"])
        assert max(img.size) <= MAX_SIDE and not img.getexif() and "icc_profile" not in img.info
        assert b"PhoneMaker" not in outputs[doc["image_path"]]
        crop = Image.open(io.BytesIO(outputs[doc["face_path"]]))
        assert crop.width == crop.height <= 1024
        box = doc["face_box"]
        assert box["score"] >= 70
        if img.size == (512, 512):
            # Upright and unmirrored: the face is where it is in the selfie.
            assert abs(box["x"] - 181) <= 12 and abs(box["y"] - 66) <= 12, box
        assert set(doc["timings_ms"]) == {"read", "decode", "face", "encode", "write"}
        # The original, with its metadata, is deleted once the copies exist.
        assert original is None and quarantined == {}
    else:
        assert doc["message"] and not doc.get("image_path") and not doc.get("face_path")
        assert outputs == {}
        assert original is None  # quarantined, then deleted from the uploads bucket
        copy = f"quarantine/{owner}/{upload_id}-{resource['generation']}"
        assert quarantined == {copy: case.data} and doc["quarantine_path"] == copy

    # The owner reads the outcome through the API; no internal path leaks.
    public = client.upload_status(upload_id)
    assert public["status"] == case.status and "path" not in json.dumps(public)
    if case.status == "ready":
        assert public["face_box"] == doc["face_box"] and public["width"] == doc["width"]
    else:
        assert public["reason"] == case.reason and public["message"] == doc["message"]
    # The old route stays as an alias.
    alias = client.call("GET", "sessions", f"/uploads/{upload_id}")
    assert alias == public


def test_objects_nobody_was_invited_to_write_are_deleted_and_start_nothing(
    stack: Stack, db: Any, gcs: Any
) -> None:
    owner = "planted" + uuid.uuid4().hex[:8]
    selfie = SELFIE.read_bytes()
    upload_id, _ = put(stack, gcs, owner, selfie)
    offset = log_size(stack)
    for name in (
        f"uploads/{owner}/planted",  # no upload registered
        f"uploads/{owner}/{upload_id}.jpg",  # the same id under another name
        f"uploads/{owner}/{upload_id}/x",
        f"uploads/{owner}.png",
        f"selfies/{owner}/x.png",
    ):
        assert post_event(stack, plant(stack, gcs, name, selfie), uuid.uuid4().hex) == 200
        assert gcs.bucket(stack.uploads_bucket).get_blob(name) is None, name
    assert "deleting unregistered object" in new_log(stack, offset)
    # An event claiming to come from the assets bucket (where outputs go) is ignored.
    blob = gcs.bucket(stack.assets_bucket).blob(f"uploads/{owner}/c.png")
    blob.upload_from_string(selfie)
    resource = resource_of(stack, gcs, f"uploads/{owner}/{upload_id}") | {"bucket": stack.assets_bucket}
    assert post_event(stack, resource, uuid.uuid4().hex) == 200
    mine = db.collection("uploads").where(filter=FieldFilter("owner", "==", owner))
    docs = [d.to_dict() for d in mine.stream()]
    assert [(d["upload_id"], d["status"]) for d in docs] == [(upload_id, "pending")]
    blob.delete()  # the test's own write to the assets bucket


def test_an_event_older_than_the_max_age_is_dropped(stack: Stack, db: Any, gcs: Any) -> None:
    owner = "stale" + uuid.uuid4().hex[:8]
    upload_id, resource = put(stack, gcs, owner, SELFIE.read_bytes())
    resource["timeCreated"] = "2020-01-01T00:00:00Z"
    offset = log_size(stack)
    assert post_event(stack, resource, uuid.uuid4().hex) == 200
    assert db.document(f"uploads/{owner}:{upload_id}").get().to_dict()["status"] == "pending"
    time.sleep(0.3)
    assert "dropping event older than" in new_log(stack, offset)


def test_duplicate_and_concurrent_deliveries_have_exactly_one_effect(stack: Stack, db: Any, gcs: Any) -> None:
    owner = "dup" + uuid.uuid4().hex[:8]
    jpeg = io.BytesIO()
    Image.open(SELFIE).convert("RGB").save(jpeg, "JPEG", quality=85)
    # One user's tickets one after another (they serialize on the user's usage
    # document anyway), then the 100 PUTs at once.
    client = app(stack, owner)
    tickets = [client.start_upload("image/jpeg") for _ in range(100)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        sent = list(pool.map(lambda t: client.put(t, jpeg.getvalue()).status_code, tickets))
    assert sent == [200] * 100
    resources = [resource_of(stack, gcs, f"uploads/{owner}/{t['upload_id']}") for t in tickets]
    # Each event three times under one event id, as a redelivery is; the three
    # copies are submitted together, so they mostly run at the same time.
    deliveries = [(r, f"{r['name']}#{r['generation']}") for r in resources for _ in range(3)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=12) as pool:
        attempts = list(pool.map(lambda d: deliver(stack, *d), deliveries))
    took = time.monotonic() - started

    docs = [
        d.to_dict() for d in db.collection("uploads").where(filter=FieldFilter("owner", "==", owner)).stream()
    ]
    assert len(docs) == 100 and {d["status"] for d in docs} == {"ready"}
    outputs = assets_under(stack, gcs, f"selfies/{owner}/")
    normalized = {p for p in outputs if not p.endswith("-face.jpg")}
    crops = {p for p in outputs if p.endswith("-face.jpg")}
    assert len(normalized) == 100 and len(crops) == 100
    assert normalized == {d["image_path"] for d in docs} and crops == {d["face_path"] for d in docs}
    assert list(gcs.list_blobs(stack.uploads_bucket, prefix=f"uploads/{owner}/")) == []
    retried = sum(a > 1 for a in attempts)
    print(f"\n300 deliveries of 100 uploads in {took:.1f} s; {retried} were asked to retry")


def test_a_claim_left_by_a_dead_delivery_is_taken_over(stack: Stack, db: Any, gcs: Any) -> None:
    owner = "dead" + uuid.uuid4().hex[:8]
    upload_id, resource = put(stack, gcs, owner, SELFIE.read_bytes())
    now = datetime.now(UTC)
    # What a delivery that crashed six minutes ago, mid-way, leaves behind.
    db.document(f"uploads/{owner}:{upload_id}").update(
        {"status": "processing", "generation": resource["generation"], "claim_id": "crashed",
         "claimed_at": now - timedelta(minutes=6), "expires_at": now + timedelta(days=30)}
    )  # fmt: skip
    assert post_event(stack, resource, uuid.uuid4().hex) == 200
    doc = db.document(f"uploads/{owner}:{upload_id}").get().to_dict()
    assert doc["status"] == "ready" and doc["claim_id"] != "crashed"


def test_after_all_of_the_above_every_object_is_named_by_exactly_one_document(
    stack: Stack, db: Any, gcs: Any
) -> None:
    report = audit(db, gcs, (stack.uploads_bucket, stack.assets_bucket))
    assert report.ok, report.summary()
    assert report.objects > 100
