"""Where every object lives: the one module that spells storage paths.

uploads bucket (written by the app through signed URLs only, watched by the trigger)
    uploads/{uid}/{upload_id}                        the original, until ingest is done with it
assets bucket (private; the trigger does not watch it, so outputs never re-trigger)
    selfies/{uid}/{upload_id}-{generation}.jpg       the normalized picture
    selfies/{uid}/{upload_id}-{generation}-face.jpg  the face-centred crop the model gets
    quarantine/{uid}/{upload_id}-{generation}        a rejected original, if the policy keeps a copy
    avatars/{uid}/{session_id}/{turn_id}.{ext}       one image per turn

Names are chosen by the server (upload, session and turn ids) and carry the
generation where one object name could otherwise be written twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pixme.logs import uid_hash

UPLOADS_PREFIX = "uploads/"
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
# Firebase uids may hold almost anything but a slash; server-made ids are
# letters, digits, '_' and '-'.
_UPLOAD_OBJECT = re.compile(r"^uploads/(?P<owner>[^/]{1,128})/(?P<upload_id>[A-Za-z0-9_-]{1,64})$")


@dataclass(frozen=True)
class UploadObject:
    owner: str
    upload_id: str


def upload_object(owner: str, upload_id: str) -> str:
    return f"{UPLOADS_PREFIX}{owner}/{upload_id}"


def parse_upload_object(name: str) -> UploadObject | None:
    """The owner and upload id an uploads-bucket object name stands for, if any."""
    match = _UPLOAD_OBJECT.match(name)
    if match is None or match["owner"] in (".", ".."):
        return None
    return UploadObject(match["owner"], match["upload_id"])


def selfie_path(owner: str, upload_id: str, generation: str) -> str:
    return f"selfies/{owner}/{upload_id}-{generation}.jpg"


def face_path(owner: str, upload_id: str, generation: str) -> str:
    return f"selfies/{owner}/{upload_id}-{generation}-face.jpg"


def quarantine_path(owner: str, upload_id: str, generation: str) -> str:
    return f"quarantine/{owner}/{upload_id}-{generation}"


def avatar_prefix(owner: str, session_id: str) -> str:
    return f"avatars/{owner}/{session_id}/"


def avatar_path(owner: str, session_id: str, turn_id: str, mime_type: str) -> str:
    return f"{avatar_prefix(owner, session_id)}{turn_id}.{_EXT.get(mime_type, 'bin')}"


def user_prefixes(owner: str, uploads_bucket: str, assets_bucket: str) -> list[tuple[str, str]]:
    """Every (bucket, prefix) under which one user's objects live."""
    return [
        (uploads_bucket, f"{UPLOADS_PREFIX}{owner}/"),
        (assets_bucket, f"selfies/{owner}/"),
        (assets_bucket, f"quarantine/{owner}/"),
        (assets_bucket, f"avatars/{owner}/"),
    ]


def loggable(path: str) -> str:
    """An object path fit for a log line: every layout above puts the owner's
    uid second, and logs carry its hash, never the uid itself."""
    parts = path.split("/", 2)
    if len(parts) < 3:
        return path
    return f"{parts[0]}/{uid_hash(parts[1])}/{parts[2]}"
