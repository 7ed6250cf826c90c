"""How a session or an upload is removed with everything it owns.

Objects go first and the document last: a crash in between leaves a
document that the next attempt (cleanup, or the user's retry) finds again,
never an object no document names.
"""

from __future__ import annotations

from pixme.conversation import Session, Upload
from pixme.layout import avatar_prefix
from pixme.ports import BlobStore, SessionStore, UploadStore


def remove_session(blobs: BlobStore, sessions: SessionStore, assets_bucket: str, session: Session) -> int:
    """Delete a session's images, turns and document; returns the images deleted."""
    images = blobs.delete_prefix(assets_bucket, avatar_prefix(session.owner, session.session_id))
    sessions.delete(session.session_id)
    return images


def remove_upload(blobs: BlobStore, uploads: UploadStore, assets_bucket: str, upload: Upload) -> int:
    """Delete an upload's original, normalized picture, crop, quarantined copy
    and document; returns the objects it tried to delete."""
    owned = [(upload.source_bucket, upload.source_path)]
    owned += [(b, p) for b, p in upload.objects(assets_bucket) if (b, p) not in owned]
    for bucket, path in owned:
        blobs.delete(bucket, path)
    uploads.delete(upload)
    return len(owned)
