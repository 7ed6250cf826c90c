"""Use case: enforce retention. Deletes expired sessions with their images,
and expired uploads with the original and the normalized selfie.

Runs in bounded batches so one invocation never outlives its timeout; what is
left is picked up by the next scheduled run.
"""

from __future__ import annotations

import logging
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
        sessions_deleted = images_deleted = uploads_deleted = 0
        for _ in range(MAX_BATCHES):
            batch = self.sessions.expired(now, BATCH)
            for session in batch:
                # Images first: a crash in between leaves a document that the
                # next run retries, never an image nobody can find.
                images_deleted += self.blobs.delete_prefix(
                    self.settings.assets_bucket, f"avatars/{session.owner}/{session.session_id}/"
                )
                self.sessions.delete(session.session_id)
                sessions_deleted += 1
            if len(batch) < BATCH:
                break
        for _ in range(MAX_BATCHES):
            expired = self.uploads.expired(now, BATCH)
            for upload in expired:
                assets = self.settings.assets_bucket
                quarantined = quarantine_path(upload.owner, upload.upload_id, upload.generation)
                for path in (upload.image_path, upload.face_path, quarantined):
                    if path:
                        self.blobs.delete(assets, path)
                self.blobs.delete(upload.source_bucket, upload.source_path)
                self.uploads.delete(upload)
                uploads_deleted += 1
            if len(expired) < BATCH:
                break
        keys_deleted = 0
        for _ in range(MAX_BATCHES):
            purged = self.idempotency.purge(now, BATCH)
            keys_deleted += purged
            if purged < BATCH:
                break
        result = {
            "sessions_deleted": sessions_deleted,
            "images_deleted": images_deleted,
            "uploads_deleted": uploads_deleted,
            "idempotency_keys_deleted": keys_deleted,
        }
        log.info("cleanup done: %s", result)
        return result
