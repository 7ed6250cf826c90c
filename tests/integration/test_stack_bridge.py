"""The bridge's conversion of Pub/Sub storage notifications into CloudEvents (no processes)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from local.bridge import FINALIZED, Unconvertible, to_cloudevent


def _push(event_type: str = "OBJECT_FINALIZE", obj: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = obj if obj is not None else {
        "kind": "storage#object",
        "name": "uploads/u1/a b.png",
        "bucket": "pixme-uploads",
        "generation": 1795507536790813,
        "size": 3,
        "contentType": "image/png",
        "timeCreated": "2026-11-24T08:05:36.790802Z",
        "updated": "2026-11-24T08:05:36.790805Z",
        "md5Hash": "kAFQmDzST7DWlj99KOF/cg==",
        "metadata": {"k": "v"},
    }  # fmt: skip
    return {
        "subscription": "projects/demo-pixme/subscriptions/s",
        "message": {
            "attributes": {
                "eventType": event_type,
                "bucketId": "pixme-uploads",
                "objectId": "uploads/u1/a b.png",
                "objectGeneration": "1795507536790813",
                "payloadFormat": "JSON_API_V1",
            },
            "data": base64.b64encode(json.dumps(obj).encode()).decode(),
            "messageId": "42",
            "publishTime": "2026-11-24T08:05:37.000Z",
        },
    }


def test_finalize_becomes_an_eventarc_cloudevent() -> None:
    converted = to_cloudevent(_push())
    assert converted is not None
    headers, body = converted
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "42",
        "ce-source": "//storage.googleapis.com/projects/_/buckets/pixme-uploads",
        "ce-type": FINALIZED,
        "ce-subject": "objects/uploads/u1/a b.png",
        "ce-time": "2026-11-24T08:05:36.790805Z",
        "content-type": "application/json",
    }
    data = json.loads(body)
    assert data["generation"] == "1795507536790813" and data["size"] == "3"
    assert data["metageneration"] == "1"
    assert data["metadata"] == {"k": "v"} and data["contentType"] == "image/png"


def test_missing_fields_come_from_the_attributes() -> None:
    converted = to_cloudevent(_push(obj={"size": "1"}))
    assert converted is not None
    data = json.loads(converted[1])
    assert data["bucket"] == "pixme-uploads" and data["name"] == "uploads/u1/a b.png"
    assert data["generation"] == "1795507536790813"
    assert converted[0]["ce-time"] == "2026-11-24T08:05:37.000Z"


def test_other_event_types_are_not_forwarded() -> None:
    assert to_cloudevent(_push("OBJECT_DELETE")) is None
    assert to_cloudevent(_push("OBJECT_METADATA_UPDATE")) is None


@pytest.mark.parametrize(
    "push",
    [
        {},
        {
            "message": {
                "attributes": {"eventType": "OBJECT_FINALIZE"},
                "data": "not base64!",
                "messageId": "1",
            }
        },
        {"message": {"attributes": {"eventType": "OBJECT_FINALIZE"}, "data": "W10=", "messageId": "1"}},
    ],
)
def test_unconvertible_messages(push: dict[str, Any]) -> None:
    with pytest.raises(Unconvertible):
        to_cloudevent(push)
