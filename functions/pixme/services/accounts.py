"""Use cases: what the caller may still spend, everything stored about them
(a GDPR access request), and the deletion of all of it (app stores require
in-app account deletion).

Deletion is idempotent and resumable: objects go before the documents that
name them, in bounded batches, so an interrupted or partial run leaves only
documents that the next call finds again; it answers what it removed and
whether anything is left (`complete`).
"""

from __future__ import annotations

import logging

from pixme.config import Settings
from pixme.identity import Caller
from pixme.layout import user_prefixes
from pixme.limits import seconds_to_next_day, utc_day
from pixme.ports import BlobStore, Clock, IdempotencyStore, SessionStore, UploadStore, UsageStore
from pixme.removal import remove_session, remove_upload
from pixme.responses import (
    AccountDeleted,
    Export,
    ExportedSession,
    ExportedTurn,
    ExportedUpload,
    Quota,
    Removed,
    Stored,
    UploadLimits,
    Usage,
)
from pixme.spending import EDITS, GENERATIONS, Spending, model_choices

log = logging.getLogger(__name__)

BATCH = 100
# One call deletes at most this many sessions and uploads each; a larger
# account answers complete=false and the app calls again.
MAX_BATCHES = 10
EXPORT_LIMIT = 500


class Accounts:
    def __init__(
        self,
        settings: Settings,
        blobs: BlobStore,
        uploads: UploadStore,
        sessions: SessionStore,
        idempotency: IdempotencyStore,
        usage: UsageStore,
        spending: Spending,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.blobs = blobs
        self.uploads = uploads
        self.sessions = sessions
        self.idempotency = idempotency
        self.usage = usage
        self.spending = spending
        self.clock = clock

    def usage_of(self, caller: Caller) -> Usage:
        now = self.clock.now()
        quotas = {}
        for kind in (GENERATIONS, EDITS):
            a = self.spending.allowance(caller, kind)
            quotas[kind] = Quota(limit=a.limit, used=a.used, remaining=a.remaining)
        return Usage(
            uid=caller.uid,
            tier="anonymous" if caller.anonymous else "signed_in",
            day=utc_day(now),
            reset_in_s=seconds_to_next_day(now),
            generations=quotas[GENERATIONS],
            edits=quotas[EDITS],
            uploads=UploadLimits(
                daily_limit=self.settings.daily_uploads, max_pending=self.settings.max_pending_uploads
            ),
            max_in_flight=self.settings.user_max_in_flight,
            models=model_choices(self.settings, caller),
        )

    def export(self, caller: Caller) -> Export:
        """A manifest of everything stored for the caller; the edge signs its image URLs."""
        now = self.clock.now()
        uploads = [
            ExportedUpload.model_validate(
                {
                    **upload.public(),
                    "image_url": _image(upload.image_path),
                    "face_url": _image(upload.face_path),
                }
            )
            for upload in self.uploads.list_for(caller.uid, EXPORT_LIMIT)
        ]
        sessions = []
        for session in self.sessions.list_for(caller.uid, EXPORT_LIMIT):
            turns = sorted(self.sessions.turns(session.session_id), key=lambda t: t.created_at)
            sessions.append(
                ExportedSession(
                    session_id=session.session_id,
                    style=session.style,
                    model=session.model,
                    upload_id=session.upload_id,
                    caption=session.caption,
                    created_at=session.created_at.isoformat(),
                    expires_at=session.expires_at.isoformat(),
                    turns=[
                        ExportedTurn(
                            turn_id=t.turn_id,
                            parent_turn_id=t.parent,
                            instruction=t.instruction,
                            text=t.text,
                            model_version=t.model_version,
                            created_at=t.created_at.isoformat(),
                            image_url=_image(t.image_path),
                        )
                        for t in turns
                    ],
                )
            )
        return Export(
            uid=caller.uid,
            exported_at=now.isoformat(),
            urls_expire_in_s=self.settings.url_ttl_s,
            uploads=uploads,
            sessions=sessions,
            usage=self.usage_of(caller),
        )

    def delete(self, caller: Caller) -> AccountDeleted:
        """Every upload, session, turn, image, idempotency and usage record of the caller."""
        owner, assets = caller.uid, self.settings.assets_bucket
        removed = {"uploads": 0, "sessions": 0, "images": 0, "idempotency_keys": 0, "objects": 0}
        complete = True
        for _ in range(MAX_BATCHES):
            batch = self.sessions.list_for(owner, BATCH)
            for session in batch:
                removed["images"] += remove_session(self.blobs, self.sessions, assets, session)
            removed["sessions"] += len(batch)
            if len(batch) < BATCH:
                break
        else:
            complete = False
        for _ in range(MAX_BATCHES):
            found = self.uploads.list_for(owner, BATCH)
            for upload in found:
                remove_upload(self.blobs, self.uploads, assets, upload)
            removed["uploads"] += len(found)
            if len(found) < BATCH:
                break
        else:
            complete = False
        # Anything under the user's prefixes that no document named any more.
        for bucket, prefix in user_prefixes(owner, self.settings.uploads_bucket, assets):
            removed["objects"] += self.blobs.delete_prefix(bucket, prefix)
        for _ in range(MAX_BATCHES):
            gone = self.idempotency.forget(owner, BATCH)
            removed["idempotency_keys"] += gone
            if gone < BATCH:
                break
        else:
            complete = False
        # The day's usage counters stay until they expire (COUNTERS_KEPT): they
        # hold counts only, under a hash of the uid, and deleting an account
        # must not hand out a fresh day of quota.
        log.info("account deleted: %s (complete=%s)", removed, complete)  # uid_hash is on the line
        return AccountDeleted(uid=owner, deleted=Removed(**removed), complete=complete)


def _image(path: str | None) -> Stored | None:
    return Stored(path) if path else None
