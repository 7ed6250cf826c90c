"""Ingest as the app meets it: upload through a signed URL, the trigger fires
(fake-gcs → Pub/Sub → bridge → on_upload), read the outcome over HTTP, and
generate from the face-centred crop."""

from __future__ import annotations

import time
import uuid
from typing import Any

from test_flow import App

from local.stack import Stack
from samples import CAT, SELFIE, two_faces


class User(App):
    """A fresh user who also looks behind the API, at the documents and objects."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack, "ingest" + uuid.uuid4().hex[:8])

    def doc(self, name: str) -> dict[str, Any]:
        snap = self.stack.firestore_client().document(f"uploads/{self.uid}:{self.ids[name]}").get()
        return dict(snap.to_dict() or {})

    def original_exists(self, name: str) -> bool:
        bucket = self.stack.storage_client().bucket(self.stack.uploads_bucket)
        return bucket.get_blob(f"uploads/{self.uid}/{self.ids[name]}") is not None


def test_a_selfie_is_ready_with_its_face_and_generation_uses_the_crop(stack: Stack) -> None:
    user = User(stack)
    user.upload_named(SELFIE, "me")
    public = user.wait_named("me")
    assert public["status"] == "ready" and public["face_box"]["score"] >= 70
    assert set(public["timings_ms"]) == {"read", "decode", "face", "encode", "write"}
    assert not user.original_exists("me")  # only the normalized copies are kept
    doc = user.doc("me")
    resp = user.post("generate", {"upload_id": "me", "style": "comics"})
    assert resp.status_code == 201, resp.text
    session = stack.firestore_client().document(f"sessions/{resp.json()['session_id']}").get().to_dict()
    assert session["selfie_path"] == doc["face_path"] != doc["image_path"]


def test_photos_that_are_not_one_face_are_rejected_and_the_originals_removed(stack: Stack) -> None:
    user = User(stack)
    user.upload_named(two_faces(), "group")
    user.upload_named(CAT, "cat")
    group, cat = user.wait_named("group"), user.wait_named("cat")
    assert (group["status"], group["reason"]) == ("rejected", "multiple_faces") and group["message"]
    assert (cat["status"], cat["reason"]) == ("rejected", "no_face") and cat["message"]
    assert not user.original_exists("group") and not user.original_exists("cat")
    resp = user.post("generate", {"upload_id": "cat", "style": "comics"})
    assert resp.status_code == 409 and resp.json()["error"]["reason"] == "no_face"


def test_one_upload_id_takes_one_photo(stack: Stack) -> None:
    user = User(stack)
    ticket = user.start_upload("image/png")
    user.ids["once"] = ticket["upload_id"]
    assert user.put(ticket, SELFIE).status_code == 200
    # While the first photo is stored, the create-only precondition refuses a second.
    second = user.put(ticket, CAT)
    assert user.wait_named("once")["status"] == "ready"
    if second.status_code == 200:
        # It slipped in after ingest had deleted the original: the trigger
        # deletes it, and the ready photo stays the first one.
        time.sleep(1.0)
    else:
        assert second.status_code == 412, second.text
    assert user.wait_named("once")["status"] == "ready"
    assert user.doc("once")["face_box"]
    deadline = time.monotonic() + 10
    while user.original_exists("once") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not user.original_exists("once")
    # And once ready, another PUT through the same URL never replaces it.
    assert user.put(ticket, CAT).status_code in (200, 412)
    time.sleep(1.0)
    assert user.doc("once")["status"] == "ready" and not user.original_exists("once")
