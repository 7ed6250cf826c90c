"""Ingest as the app meets it: write to the uploads bucket, the trigger fires
(fake-gcs → Pub/Sub → bridge → on_upload), read the outcome over HTTP, and
generate from the face-centred crop."""

from __future__ import annotations

import time
import uuid
from typing import Any

import requests
from test_flow import App

from local.stack import Stack
from samples import CAT, SELFIE, two_faces


class User(App):
    """A fresh user who also looks behind the API, at the documents and objects."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack, "ingest" + uuid.uuid4().hex[:8])

    def outcome(
        self, upload_id: str, not_generation: str | None = None, timeout_s: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            resp = requests.get(
                f"{self.stack.functions['sessions']}/uploads/{upload_id}", headers=self.headers, timeout=30
            )
            if resp.status_code == 200 and resp.json()["status"] != "processing":
                doc = self.doc(upload_id)
                if doc["generation"] != not_generation:
                    return dict(resp.json())
            time.sleep(0.2)
        raise AssertionError(f"upload {upload_id} not ingested in {timeout_s} s")

    def doc(self, upload_id: str) -> dict[str, Any]:
        snap = self.stack.firestore_client().document(f"uploads/{self.uid}:{upload_id}").get()
        return dict(snap.to_dict() or {})

    def original_exists(self, upload_id: str, ext: str) -> bool:
        bucket = self.stack.storage_client().bucket(self.stack.uploads_bucket)
        return bucket.get_blob(f"uploads/{self.uid}/{upload_id}.{ext}") is not None


def test_a_selfie_is_ready_with_its_face_and_generation_uses_the_crop(stack: Stack) -> None:
    user = User(stack)
    user.upload(SELFIE, "me", "png")
    public = user.outcome("me")
    assert public["status"] == "ready" and public["face_box"]["score"] >= 70
    assert set(public["timings_ms"]) == {"read", "decode", "face", "encode", "write"}
    doc = user.doc("me")
    resp = requests.post(
        stack.functions["generate"],
        json={"upload_id": "me", "style": "comics"},
        headers=user.headers,
        timeout=60,
    )
    assert resp.status_code == 201, resp.text
    session = stack.firestore_client().document(f"sessions/{resp.json()['session_id']}").get().to_dict()
    assert session["selfie_path"] == doc["face_path"] != doc["image_path"]


def test_photos_that_are_not_one_face_are_rejected_and_the_originals_removed(stack: Stack) -> None:
    user = User(stack)
    user.upload(two_faces(), "group", "jpg")
    user.upload(CAT, "cat", "png")
    group, cat = user.outcome("group"), user.outcome("cat")
    assert (group["status"], group["reason"]) == ("rejected", "multiple_faces") and group["message"]
    assert (cat["status"], cat["reason"]) == ("rejected", "no_face") and cat["message"]
    assert not user.original_exists("group", "jpg") and not user.original_exists("cat", "png")
    resp = requests.post(
        stack.functions["generate"],
        json={"upload_id": "cat", "style": "comics"},
        headers=user.headers,
        timeout=60,
    )
    assert resp.status_code == 409 and resp.json()["error"]["reason"] == "no_face"


def test_uploading_again_under_the_same_id_replaces_the_outcome(stack: Stack) -> None:
    user = User(stack)
    user.upload(CAT, "again", "png")
    assert user.outcome("again")["reason"] == "no_face"
    first = user.doc("again")["generation"]
    # The rejected original is deleted right after the outcome is written;
    # until storage deletes by generation, a new upload waits for that.
    deadline = time.monotonic() + 10
    while user.original_exists("again", "png") and time.monotonic() < deadline:
        time.sleep(0.1)
    user.upload(SELFIE, "again", "png")
    assert user.outcome("again", not_generation=first)["status"] == "ready"
    assert user.doc("again")["generation"] != first
