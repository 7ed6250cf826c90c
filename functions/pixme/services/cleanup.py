"""Use case: enforce retention. Deletes expired sessions with their images,
and expired uploads with the original and the normalized selfie.

Runs in bounded batches so one invocation never outlives its timeout; what is
left is picked up by the next scheduled run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pixme.config import Settings
from pixme.ports import BlobStore, Clock, IdempotencyStore, SessionStore, UploadStore
from pixme.services.ingest import quarantine_path

log = logging.getLogger(__name__)
BATCH = 100
MAX_BATCHES = 20


class Cleanup:
    def __init__(
        self,
        settings: Settings,
        blobs: BlobStore,
        uploads: UploadStore,
        sessions: SessionStore,
        clock: Clock,
        idempotency: IdempotencyStore,
    ) -> None:
        self.settings = settings
        self.blobs = blobs
        self.uploads = uploads
        self.sessions = sessions
        self.clock = clock
        self.idempotency = idempotency

    def run(self) -> dict[str, Any]:
        now = self.clock.now()
        images_deleted = 0

        def sessions_batch() -> int:
            nonlocal images_deleted
            batch = self.sessions.expired(now, BATCH)
            for session in batch:
                # Images first: a crash in between leaves a document that the
                # next run retries, never an image nobody can find.
                images_deleted += self.blobs.delete_prefix(
                    self.settings.assets_bucket, f"avatars/{session.owner}/{session.session_id}/"
                )
                self.sessions.delete(session.session_id)
            return len(batch)

        def uploads_batch() -> int:
            batch = self.uploads.expired(now, BATCH)
            for upload in batch:
                quarantined = quarantine_path(upload.owner, upload.upload_id, upload.generation)
                for path in (upload.image_path, upload.face_path, quarantined):
                    if path:
                        self.blobs.delete(self.settings.assets_bucket, path)
                self.blobs.delete(upload.source_bucket, upload.source_path)
                self.uploads.delete(upload)
            return len(batch)

        sessions_deleted = _drain(sessions_batch)
        result = {
            "sessions_deleted": sessions_deleted,
            "images_deleted": images_deleted,
            "uploads_deleted": _drain(uploads_batch),
            "idempotency_keys_deleted": _drain(lambda: self.idempotency.purge(now, BATCH)),
        }
        log.info("cleanup done: %s", result)
        return result


def _drain(batch: Callable[[], int]) -> int:
    """Run `batch` until it handles less than a full batch, at most MAX_BATCHES times."""
    total = 0
    for _ in range(MAX_BATCHES):
        handled = batch()
        total += handled
        if handled < BATCH:
            break
    return total
