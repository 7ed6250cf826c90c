"""Use case: a selfie landed in the uploads bucket; make it usable or reject it.

Only registered uploads are processed: the object must be the one a live
pending upload document names (`uploads/{uid}/{upload_id}`, created when the
app asked for its signed URL). Anything else written into the bucket, or a
second object for an upload already claimed, is deleted and logged, and never
becomes anyone's upload.

Delivery is at least once, so effects are exactly once per (bucket, name,
generation):

- The pending document is claimed in a transaction; the claim names the
  delivery that owns it. A delivery that finds a live claim of the same
  generation raises a retryable error: if the owner dies, a later redelivery
  finds the claim stale and takes it over, so an upload never stays
  "processing".
- Outputs have deterministic paths per generation (a redelivery rewrites the
  same bytes) in the assets bucket, which the trigger does not watch.
- The document is written last, and only by the claim's owner; an owner that
  cannot write it removes what it wrote, so there is never a document
  pointing at a missing image, nor an image nobody references. The original
  is deleted once the document no longer needs it.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from PIL import Image

from pixme import faces, images, logs
from pixme.config import Settings
from pixme.conversation import PENDING, PROCESSING, READY, REJECTED, Upload, expiry
from pixme.errors import NotFound, Rejected, Unavailable
from pixme.layout import face_path, loggable, parse_upload_object, quarantine_path, selfie_path
from pixme.ports import BlobStore, Clock, UploadStore

log = logging.getLogger(__name__)

# A claim left "processing" this long belongs to a delivery that died: the
# function's timeout (180 s) is well below it.
STALE_CLAIM = timedelta(minutes=5)
FACE_QUALITY = 90


@dataclass(frozen=True)
class StorageObject:
    bucket: str
    name: str
    generation: str
    size: int
    time_created: datetime | None


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, int] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0) + round((now - self._t) * 1000)
        self._t = now


class Ingest:
    def __init__(self, settings: Settings, blobs: BlobStore, uploads: UploadStore, clock: Clock) -> None:
        self.settings = settings
        self.blobs = blobs
        self.uploads = uploads
        self.clock = clock

    def handle(self, obj: StorageObject) -> str:
        """Process one finalized object; returns what happened, for the log.

        Raises Unavailable (retryable) when storage or the database is down,
        or when another delivery of the same object is still at work.
        """
        if obj.bucket != self.settings.uploads_bucket:
            return "ignored_bucket"
        now = self.clock.now()
        if obj.time_created and now - obj.time_created > timedelta(seconds=self.settings.max_event_age_s):
            log.warning(
                "dropping event older than %ss: %s gen %s (created %s)",
                self.settings.max_event_age_s,
                loggable(obj.name),
                obj.generation,
                obj.time_created.isoformat(),
            )
            return "dropped_stale"
        target = parse_upload_object(obj.name)
        if target is not None:
            logs.bind_uid(target.owner)
            logs.bind(upload_id=target.upload_id)
        existing = self.uploads.get(target.owner, target.upload_id) if target else None
        if existing is None:
            return self._unregistered(obj, "no upload was registered under this name")
        claim = replace(
            existing,
            status=PROCESSING,
            generation=obj.generation,
            expires_at=expiry(now, self.settings.retention_days),
            url_expires_at=None,
            claimed_at=now,
            claim_id=secrets.token_hex(8),
        )
        settled = self._acquire(obj, existing, claim, now)
        if settled:
            return settled
        try:
            return self._process(obj, claim)
        except Exception:
            self._release(claim)
            raise

    # -- claiming --------------------------------------------------------------------

    def _acquire(self, obj: StorageObject, existing: Upload, claim: Upload, now: datetime) -> str | None:
        """None when this delivery owns the document; else what happened."""
        if existing.generation == obj.generation:
            if existing.status != PROCESSING:
                return "duplicate"
            claimed_at = existing.claimed_at or existing.created_at
            if existing.claim_id is not None and now - claimed_at < STALE_CLAIM:
                # Not "duplicate": if that delivery dies, only a retry of this
                # one can finish the upload.
                raise Unavailable(
                    "upload_in_progress", "Another delivery is processing this upload.", retry_after_s=10
                )
            log.warning("taking over the stale claim on %s gen %s", loggable(obj.name), obj.generation)
        elif existing.status != PENDING or not existing.live(now):
            # One upload id takes one object: the first one written wins.
            return self._unregistered(obj, f"its upload is already {existing.status}")
        if not self.uploads.take_over(existing, claim):
            raise Unavailable(
                "upload_in_progress", "Another delivery took this upload first.", retry_after_s=10
            )
        return None

    def _unregistered(self, obj: StorageObject, why: str) -> str:
        """An object nobody was invited to write: delete it (that generation only)."""
        log.warning("deleting unregistered object %s gen %s: %s", loggable(obj.name), obj.generation, why)
        self.blobs.delete(obj.bucket, obj.name, obj.generation)
        return "unregistered"

    def _release(self, claim: Upload) -> None:
        """After a failure, let the platform's next delivery start at once
        instead of waiting for this claim to go stale."""
        try:
            self.uploads.take_over(claim, replace(claim, claim_id=None))
        except Exception as exc:
            log.warning("could not release the claim on %s: %r", loggable(claim.source_path), exc)

    # -- processing ------------------------------------------------------------------

    def _process(self, obj: StorageObject, claim: Upload) -> str:
        s = self.settings
        clock = _Clock()
        if obj.size > s.max_upload_bytes:
            # The event says so: no need to download it to know.
            too_large = Rejected(
                "too_large", f"The file is larger than {s.max_upload_bytes / (1024 * 1024):.0f} MB."
            )
            return self._reject(obj, claim, too_large, None, clock)
        data: bytes | None
        try:
            # The event's own generation: a newer upload under the same name is
            # another event's business.
            data = self.blobs.read(obj.bucket, obj.name, obj.generation)
        except NotFound:
            data = None
        if data is None:
            gone = Rejected("gone", "The photo was deleted before it could be processed.")
            return self._reject(obj, claim, gone, None, clock)
        clock.lap("read")
        try:
            img = images.decode(data, s.max_upload_bytes, s.max_upload_pixels, s.max_side)
            clock.lap("decode")
            face = self._face(img)
            clock.lap("face")
            picture = selfie_path(claim.owner, claim.upload_id, claim.generation)
            outputs = {picture: images.encode(img)}
            crop = None
            if face is not None:
                crop = face_path(claim.owner, claim.upload_id, claim.generation)
                outputs[crop] = images.encode(faces.crop(img, face), FACE_QUALITY)
            clock.lap("encode")
        except Rejected as rejected:
            return self._reject(obj, claim, rejected, data, clock)

        self._write(outputs)
        clock.lap("write")
        done = replace(
            claim,
            status=READY,
            image_path=picture,
            width=img.width,
            height=img.height,
            face_path=crop,
            face_box=face.box() if face else None,
            timings_ms=clock.timings,
        )
        if not self._finish(done, list(outputs)):
            return "taken_over"
        log.info("ready %s gen %s %sx%s in %s", loggable(obj.name), obj.generation, *img.size, clock.timings)
        # The normalized copies are all the system uses: the original, with
        # its metadata (GPS included), goes now rather than at retention.
        self._dispose(obj)
        return "ready"

    def _face(self, img: Image.Image) -> faces.Face | None:
        found = faces.detect(img, min_score=self.settings.face_min_score)
        if not found:
            if self.settings.no_face == "reject":
                raise Rejected(
                    "no_face", "No face was found in this photo. Use a well-lit selfie, facing the camera."
                )
            return None
        main = faces.prominent(found, ratio=self.settings.second_face_ratio)
        if len(main) > 1 and self.settings.multiple_faces == "reject":
            raise Rejected(
                "multiple_faces",
                "This photo shows more than one face. Use a selfie of just you.",
                faces=len(main),
            )
        return main[0]

    def _write(self, outputs: dict[str, bytes]) -> None:
        written: list[str] = []
        try:
            for path, data in outputs.items():
                self.blobs.write(self.settings.assets_bucket, path, data, images.CANONICAL_MIME)
                written.append(path)
        except Exception:
            self._remove(written)
            raise

    def _finish(self, claim: Upload, written: list[str]) -> bool:
        """Write the document; on failure, leave nothing it would have referenced."""
        try:
            won = self.uploads.finish(claim)
        except Exception:
            # Unless the write landed after all, or another delivery of this
            # generation now owns these paths, take back what was written.
            if self._still_claimed(claim):
                self._remove(written)
            raise
        if not won:
            current = self.uploads.get(claim.owner, claim.upload_id)
            if current is None or current.generation != claim.generation:
                # Deleted meanwhile, or another object owns the document; its paths differ.
                self._remove(written)
            log.info("%s gen %s: the claim was taken over", loggable(claim.source_path), claim.generation)
        return won

    def _still_claimed(self, claim: Upload) -> bool:
        try:
            current = self.uploads.get(claim.owner, claim.upload_id)
        except Exception:
            return False  # unknown: keep the files rather than risk a dangling document
        return current is not None and current.claim_id == claim.claim_id and current.status == PROCESSING

    def _remove(self, paths: list[str]) -> None:
        for path in paths:
            try:
                self.blobs.delete(self.settings.assets_bucket, path)
            except Exception:
                log.warning("could not remove %s; the bucket's lifecycle rule will", loggable(path))

    # -- rejection -------------------------------------------------------------------

    def _reject(
        self, obj: StorageObject, claim: Upload, rejected: Rejected, data: bytes | None, clock: _Clock
    ) -> str:
        policy = self.settings.rejected_originals
        written: list[str] = []
        quarantined = None
        if policy == "quarantine" and data is not None:
            quarantined = quarantine_path(claim.owner, claim.upload_id, claim.generation)
            self.blobs.write(self.settings.assets_bucket, quarantined, data, "application/octet-stream")
            written.append(quarantined)
        keep = policy == "keep" and rejected.code != "gone"
        done = replace(
            claim,
            status=REJECTED,
            reason=rejected.code,
            message=rejected.message,
            timings_ms=clock.timings,
            quarantine_path=quarantined,
            original_kept=keep,
        )
        if not self._finish(done, written):
            return "taken_over"
        logs.bind(reason=rejected.code)  # on the event's `ingest` line (functions/main.py)
        log.info(
            "rejected %s gen %s: %s %s",
            loggable(obj.name),
            obj.generation,
            rejected.code,
            rejected.details or "",
        )
        if not keep and rejected.code != "gone":
            self._dispose(obj)
        return "rejected"

    def _dispose(self, obj: StorageObject) -> None:
        """Delete the original once the document no longer names it; best
        effort, the document is what counts. Only this event's generation is
        touched, so nothing written later is.

        Retention cleanup and the bucket's lifecycle rule delete whatever is left.
        """
        try:
            self.blobs.delete(obj.bucket, obj.name, obj.generation)
        except Exception as exc:
            log.warning("could not delete the original %s: %r", loggable(obj.name), exc)
