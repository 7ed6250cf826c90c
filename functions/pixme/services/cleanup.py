"""Use case: enforce retention. Deletes expired sessions with their images,
expired uploads with every object they own, and pending uploads never sent.

Runs in bounded batches so one invocation never outlives its timeout; what is
left is picked up by the next scheduled run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pixme.config import Settings
from pixme.ports import BlobStore, Clock, IdempotencyStore, SessionStore, UploadStore, UsageStore
from pixme.removal import remove_session, remove_upload
from pixme.responses import CleanupReport

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
        usage: UsageStore,
    ) -> None:
        self.usage = usage
        self.settings = settings
        self.blobs = blobs
        self.uploads = uploads
        self.sessions = sessions
        self.clock = clock
        self.idempotency = idempotency

    def run(self) -> CleanupReport:
        """One cleanup pass, logged as one `cleanup` line (outcome done or failed)
        that the "cleanup failed" alert watches."""
        try:
            result = self._run()
        except Exception as exc:
            code = getattr(exc, "code", "internal")
            log.error(
                "cleanup failed: %s",
                code,
                exc_info=True,
                extra={"event": "cleanup", "outcome": "failed", "code": code},
            )
            raise
        counts = result.model_dump()
        log.info("cleanup done: %s", counts, extra={"event": "cleanup", "outcome": "done", **counts})
        return result

    def _run(self) -> CleanupReport:
        now = self.clock.now()
        images_deleted = 0

        def sessions_batch() -> int:
            nonlocal images_deleted
            batch = self.sessions.expired(now, BATCH)
            for session in batch:
                assets = self.settings.assets_bucket
                images_deleted += remove_session(self.blobs, self.sessions, assets, session)
            return len(batch)

        def uploads_batch() -> int:
            batch = self.uploads.expired(now, BATCH)
            for upload in batch:
                # Pending uploads whose URL expired unused end here too.
                remove_upload(self.blobs, self.uploads, self.settings.assets_bucket, upload)
            return len(batch)

        sessions_deleted = _drain(sessions_batch)
        return CleanupReport(
            sessions_deleted=sessions_deleted,
            images_deleted=images_deleted,
            uploads_deleted=_drain(uploads_batch),
            idempotency_keys_deleted=_drain(lambda: self.idempotency.purge(now, BATCH)),
            usage_records_deleted=_drain(lambda: self.usage.purge(now, BATCH)),
        )


def _drain(batch: Callable[[], int]) -> int:
    """Run `batch` until it handles less than a full batch, at most MAX_BATCHES times."""
    total = 0
    for _ in range(MAX_BATCHES):
        handled = batch()
        total += handled
        if handled < BATCH:
            break
    return total
