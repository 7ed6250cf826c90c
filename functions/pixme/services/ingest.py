"""Use case: a selfie landed in the uploads bucket; make it usable or reject it.

Effects are idempotent per (bucket, name, generation) because delivery is at
least once: the upload document is claimed with a create, the normalized
image has a deterministic path, and the document is written last.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from pixme import images
from pixme.config import Settings
from pixme.conversation import Upload, expiry
from pixme.errors import Rejected
from pixme.ports import BlobStore, Clock, UploadStore

log = logging.getLogger(__name__)

UPLOAD_NAME = re.compile(
    r"^uploads/(?P<owner>[A-Za-z0-9_-]{1,128})/(?P<upload_id>[A-Za-z0-9_-]{1,64})\.[A-Za-z0-9]{1,5}$"
)
# A claim left "processing" this long belongs to a delivery that died.
STALE_CLAIM = timedelta(minutes=5)


@dataclass(frozen=True)
class StorageObject:
    bucket: str
    name: str
    generation: str
    size: int
    time_created: datetime | None


def selfie_path(owner: str, upload_id: str) -> str:
    return f"selfies/{owner}/{upload_id}.jpg"


class Ingest:
    def __init__(self, settings: Settings, blobs: BlobStore, uploads: UploadStore, clock: Clock) -> None:
        self.settings = settings
        self.blobs = blobs
        self.uploads = uploads
        self.clock = clock

    def handle(self, obj: StorageObject) -> str:
        """Process one finalized object; returns what happened, for the log."""
        if obj.bucket != self.settings.uploads_bucket:
            return "ignored_bucket"
        match = UPLOAD_NAME.match(obj.name)
        if not match:
            log.info("ignoring object outside the upload layout: %s", obj.name)
            return "ignored_name"
        now = self.clock.now()
        if obj.time_created and now - obj.time_created > timedelta(seconds=self.settings.max_event_age_s):
            log.warning("dropping event older than %ss: %s", self.settings.max_event_age_s, obj.name)
            return "dropped_stale"

        owner, upload_id = match["owner"], match["upload_id"]
        claim = Upload(
            owner=owner,
            upload_id=upload_id,
            status="processing",
            source_bucket=obj.bucket,
            source_path=obj.name,
            generation=obj.generation,
            created_at=now,
            expires_at=expiry(now, self.settings.retention_days),
        )
        existing = self.uploads.claim(claim)
        if existing is not None:
            same = existing.generation == obj.generation
            if same and (existing.status != "processing" or now - existing.created_at < STALE_CLAIM):
                return "duplicate"
            # A new generation of the same upload id, or a dead claim: take over.
            self.uploads.save(claim)

        started = time.perf_counter()
        data = self.blobs.read(obj.bucket, obj.name)
        read_ms = int((time.perf_counter() - started) * 1000)
        s = self.settings
        try:
            t0 = time.perf_counter()
            normalized = images.normalize(data, s.max_upload_bytes, s.max_upload_pixels, s.max_side)
            normalize_ms = int((time.perf_counter() - t0) * 1000)
        except Rejected as rejected:
            claim.status = "rejected"
            claim.reason = rejected.code
            claim.message = rejected.message
            self.uploads.save(claim)
            log.info("rejected %s: %s", obj.name, rejected.code)
            return "rejected"

        path = selfie_path(owner, upload_id)
        t0 = time.perf_counter()
        self.blobs.write(s.assets_bucket, path, normalized.data, normalized.mime_type)
        write_ms = int((time.perf_counter() - t0) * 1000)
        claim.status = "ready"
        claim.image_path = path
        claim.width = normalized.width
        claim.height = normalized.height
        claim.timings_ms = {"read": read_ms, "normalize": normalize_ms, "write": write_ms}
        self.uploads.save(claim)
        return "ready"
