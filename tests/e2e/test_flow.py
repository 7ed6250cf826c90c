"""The user's flow over HTTP through the local stack: upload, ingest by trigger,
generate, edit, branch, read back, isolation between users, cleanup."""

from __future__ import annotations

import io
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from local.app import AppClient, content_type_of
from local.stack import Stack

SELFIE = Path(__file__).resolve().parents[2] / "assets" / "selfie-astronaut.png"


class App(AppClient):
    """A mobile app's calls, for one signed-in user. Tests name their uploads
    ("selfie1"); the server chooses the ids, which `ids` maps those names to."""

    def __init__(self, stack: Stack, uid: str) -> None:
        super().__init__(stack.functions, stack.token(uid), timeout_s=60)
        self.stack, self.uid = stack, uid
        self.ids: dict[str, str] = {}

    def post(self, function: str, body: dict[str, Any]) -> requests.Response:
        if "upload_id" in body:
            body = {**body, "upload_id": self.ids.get(body["upload_id"], body["upload_id"])}
        return self.request("POST", function, "/", body)

    def get(self, path: str) -> requests.Response:
        return self.request("GET", "sessions", path, timeout=30)

    def upload_named(self, data: bytes, name: str) -> str:
        """Upload through the signed path, as the app does; returns the upload id."""
        self.ids[name] = self.upload(data, content_type_of(data))
        return self.ids[name]

    def wait_named(self, name: str, timeout_s: float = 30) -> dict[str, Any]:
        return self.wait_upload(self.ids[name], timeout_s)


def png_of(resp: requests.Response) -> Image.Image:
    assert resp.status_code == 200, resp.status_code
    img = Image.open(io.BytesIO(resp.content))
    img.load()
    return img


def backdate(stack: Stack, path: str) -> None:
    """Let retention pass for one document, by moving its expiry into the past."""
    from google.cloud import firestore

    os.environ.update(stack.client_env())
    db = firestore.Client(project=stack.project)
    db.document(path).update({"expires_at": datetime.now(UTC) - timedelta(seconds=1)})


def test_selfie_to_avatar_to_edits_to_cleanup(stack: Stack) -> None:
    alice = App(stack, f"alice{uuid.uuid4().hex[:8]}")
    selfie1 = alice.upload_named(SELFIE.read_bytes(), "selfie1")
    upload = alice.wait_named("selfie1")
    assert upload["status"] == "ready", upload
    assert max(upload["width"], upload["height"]) <= 1536

    styles = requests.get(alice.url("sessions", "/styles"), timeout=10).json()
    assert "comics" in {s["id"] for s in styles["styles"]}

    gen = alice.post("generate", {"upload_id": "selfie1", "style": "comics"})
    assert gen.status_code == 201, gen.text
    first = gen.json()
    assert first["text"] and first["turn_count"] == 1
    avatar = png_of(requests.get(first["image_url"], timeout=10))
    assert avatar.width >= 512

    glasses = alice.post("edit", {"session_id": first["session_id"], "instruction": "add glasses"})
    assert glasses.status_code == 201, glasses.text
    second = glasses.json()
    assert second["parent_turn_id"] == first["turn_id"] and second["turn_count"] == 2
    edited = png_of(requests.get(second["image_url"], timeout=10))
    assert edited.size == avatar.size and edited.tobytes() != avatar.tobytes()

    branch = alice.post(
        "edit",
        {
            "session_id": first["session_id"],
            "instruction": "make it black and white",
            "from_turn": first["turn_id"],
        },
    )
    assert branch.status_code == 201, branch.text
    third = branch.json()
    assert third["parent_turn_id"] == first["turn_id"]

    detail = alice.get(f"/{first['session_id']}").json()
    parents = {t["turn_id"]: t["parent_turn_id"] for t in detail["turns"]}
    assert parents == {
        first["turn_id"]: None,
        second["turn_id"]: first["turn_id"],
        third["turn_id"]: first["turn_id"],
    }
    assert detail["head_turn_id"] == third["turn_id"]
    listed = alice.get("/").json()["sessions"]
    assert [s["session_id"] for s in listed] == [first["session_id"]]

    # Another user sees none of it.
    mallory = App(stack, f"mallory{uuid.uuid4().hex[:8]}")
    assert mallory.get(f"/{first['session_id']}").status_code == 404
    assert mallory.get(f"/uploads/{selfie1}").status_code == 404
    assert mallory.request("GET", "uploads", f"/{selfie1}").status_code == 404
    assert mallory.request("DELETE", "uploads", f"/{selfie1}").status_code == 404
    stolen = mallory.post("edit", {"session_id": first["session_id"], "instruction": "add glasses"})
    assert stolen.status_code == 404 and stolen.json()["error"]["code"] == "session_not_found"
    assert mallory.get("/").json()["sessions"] == []

    # Retention passes for this session and upload; cleanup removes everything of theirs.
    backdate(stack, f"sessions/{first['session_id']}")
    backdate(stack, f"uploads/{alice.uid}:{selfie1}")
    resp = requests.post(stack.functions["cleanup"], timeout=60)
    assert resp.status_code == 200, resp.text
    counts = resp.json()
    assert counts["sessions_deleted"] >= 1 and counts["uploads_deleted"] >= 1
    assert counts["images_deleted"] >= 3
    assert alice.get(f"/{first['session_id']}").status_code == 404
    assert alice.request("GET", "uploads", f"/{selfie1}").status_code == 404
    assert requests.get(second["image_url"], timeout=10).status_code == 404
    storage = stack.storage_client()
    for prefix in (f"selfies/{alice.uid}/", f"avatars/{alice.uid}/"):
        assert list(storage.list_blobs(stack.assets_bucket, prefix=prefix)) == [], prefix
    assert list(storage.list_blobs(stack.uploads_bucket, prefix=f"uploads/{alice.uid}/")) == []


def test_a_file_that_is_not_a_photo_is_rejected_with_a_reason(stack: Stack) -> None:
    bob = App(stack, f"bob{uuid.uuid4().hex[:8]}")
    svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    bob.ids["evil"] = bob.upload(svg, "image/png")  # a client may lie about the type
    upload = bob.wait_named("evil")
    assert upload["status"] == "rejected" and upload["reason"] == "unsupported_format"
    assert upload["message"]
    resp = bob.post("generate", {"upload_id": "evil", "style": "comics"})
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "upload_rejected"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Bearer not-a-jwt"}, "invalid_token"),
        ({"Authorization": "Basic abc"}, "missing_token"),
    ],
)
def test_calls_without_a_valid_token_are_refused(stack: Stack, headers: dict[str, str], code: str) -> None:
    resp = requests.post(stack.functions["generate"], json={}, headers=headers, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == code


def test_a_token_signed_by_another_key_is_refused(stack: Stack) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from local.issuer import encode_rs256, firebase_claims

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = firebase_claims(stack.project, "eve")
    kid = next(iter(requests.get(f"{stack.issuer_url}/certs", timeout=10).json()))
    for forged in (encode_rs256(key, kid, claims), encode_rs256(key, "unknown-kid", claims)):
        resp = requests.get(
            stack.functions["sessions"], headers={"Authorization": f"Bearer {forged}"}, timeout=10
        )
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_token"


def test_errors_are_json_with_stable_codes(stack: Stack) -> None:
    app = App(stack, "carol")
    resp = app.post("generate", {"upload_id": "x", "style": "vaporwave"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "unknown_style" and "manga" in error["allowed"]
    resp = requests.get(stack.functions["generate"], headers=app.headers, timeout=10)
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"
    resp = requests.post(stack.functions["edit"], data="{nope", headers=app.headers, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"
    resp = app.post("generate", {"upload_id": "never-uploaded", "style": "comics"})
    assert resp.status_code == 404 and "Traceback" not in resp.text
