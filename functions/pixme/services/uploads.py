"""Use cases: the app's way in. It asks for an upload, PUTs the photo to the
signed URL it gets, polls the upload's status, and may delete it.

The server chooses the object name (`uploads/{uid}/{upload_id}`, an
unguessable id) and registers it as pending before signing, so the trigger
can tell a photo the app was invited to send from anything else written into
the bucket. The signature binds the method, the name, the content type, the
size range and a create-only precondition: nobody can plant, replace or
oversize a user's photo through it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from pixme.api import UploadRequest
from pixme.config import Settings
from pixme.conversation import PENDING, Upload, new_id
from pixme.errors import NotFound
from pixme.layout import upload_object
from pixme.limits import admit_upload
from pixme.ports import BlobStore, Clock, SessionStore, UploadStore
from pixme.removal import remove_session, remove_upload
from pixme.responses import UploadDeleted, UploadStatus, UploadTicket

log = logging.getLogger(__name__)

# A pending document outlives its URL a little: a PUT that started just
# before the URL expired may still be arriving.
PENDING_GRACE = timedelta(minutes=15)


class Uploads:
    def __init__(
        self,
        settings: Settings,
        blobs: BlobStore,
        uploads: UploadStore,
        sessions: SessionStore,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.blobs = blobs
        self.uploads = uploads
        self.sessions = sessions
        self.clock = clock

    def start(self, owner: str, req: UploadRequest) -> UploadTicket:
        s = self.settings
        now = self.clock.now()
        url_expires_at = now + timedelta(seconds=s.upload_url_ttl_s)
        upload_id = new_id("u_")
        upload = Upload(
            owner=owner,
            upload_id=upload_id,
            status=PENDING,
            source_bucket=s.uploads_bucket,
            source_path=upload_object(owner, upload_id),
            generation="",
            created_at=now,
            expires_at=url_expires_at + PENDING_GRACE,
            content_type=req.content_type,
            url_expires_at=url_expires_at,
        )
        # Registered first: the trigger only accepts objects it was told about.
        self.uploads.register(upload, admit_upload(s, now))
        signed = {
            "x-goog-content-length-range": f"1,{s.max_upload_bytes}",
            # One upload id takes one object: a second PUT is refused (412).
            "x-goog-if-generation-match": "0",
        }
        try:
            url = self.blobs.signed_url(
                s.uploads_bucket,
                upload.source_path,
                s.upload_url_ttl_s,
                method="PUT",
                content_type=req.content_type,
                headers=signed,
            )
        except Exception:
            self.uploads.delete(upload)
            raise
        log.info("upload %s registered", upload_id, extra={"upload_id": upload_id})
        # Signed here, not at the edge: the signature binds this upload's content
        # type and size range.
        return UploadTicket(
            upload_id=upload_id,
            status="pending",
            upload_url=url,
            method="PUT",
            headers={"Content-Type": req.content_type, **signed},
            expires_at=url_expires_at.isoformat(),
            max_bytes=s.max_upload_bytes,
        )

    def status(self, owner: str, upload_id: str) -> UploadStatus:
        # Validated from the fields the upload's state has, so only those are set.
        return UploadStatus.model_validate(self._owned(owner, upload_id).public())

    def delete(self, owner: str, upload_id: str) -> UploadDeleted:
        """Remove the upload with its objects, and the sessions made from it
        (their avatars show the same face)."""
        upload = self._owned(owner, upload_id)
        sessions = self.sessions.made_from(owner, upload_id)
        images = sum(
            remove_session(self.blobs, self.sessions, self.settings.assets_bucket, session)
            for session in sessions
        )
        remove_upload(self.blobs, self.uploads, self.settings.assets_bucket, upload)
        log.info(
            "upload %s deleted with %s sessions", upload_id, len(sessions), extra={"upload_id": upload_id}
        )
        return UploadDeleted(
            upload_id=upload_id, deleted=True, sessions_deleted=len(sessions), images_deleted=images
        )

    def _owned(self, owner: str, upload_id: str) -> Upload:
        # Someone else's upload and an expired one look exactly like a missing one.
        upload = self.uploads.get(owner, upload_id)
        if upload is None or not upload.live(self.clock.now()):
            raise NotFound("upload_not_found", "No upload with this id.")
        return upload
