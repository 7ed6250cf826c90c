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


def storage_object(event: Any) -> StorageObject:
    data = event.data if isinstance(event.data, dict) else {}
    return StorageObject(
        bucket=str(data.get("bucket", "")),
        name=str(data.get("name", "")),
        generation=str(data.get("generation", "")),
        size=int(data.get("size") or 0),
        time_created=_time(data.get("timeCreated")) or _time(event.get("time")),
    )
