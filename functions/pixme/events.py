"""Turning a storage CloudEvent into the plain value the ingest service takes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pixme.services.ingest import StorageObject

FINALIZED = "google.cloud.storage.object.v1.finalized"


def _time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def _size(raw: Any) -> int:
    # A string in the event (int64 as JSON); a malformed one must not become a
    # crash the platform retries for a day: the bytes read are checked anyway.
    try:
        return max(0, int(raw or 0))
    except (TypeError, ValueError):
        return 0


def storage_object(event: Any) -> StorageObject:
    data = event.data if isinstance(event.data, dict) else {}
    return StorageObject(
        bucket=str(data.get("bucket", "")),
        name=str(data.get("name", "")),
        generation=str(data.get("generation", "")),
        size=_size(data.get("size")),
        time_created=_time(data.get("timeCreated")) or _time(event.get("time")),
    )
