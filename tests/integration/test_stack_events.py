"""The local stack end to end, with stand-in functions (stack_fixtures/main.py).

One stack for the module: Firestore, Pub/Sub, fake-gcs, the bridge, the
issuer, and two functions (on_upload and sessions). Every loop has a deadline.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.auth.jwt
import google.auth.transport.requests
import pytest
import requests
from google.cloud.firestore_v1.base_query import FieldFilter
from google.oauth2 import id_token, service_account

from local.issuer import SigningKey, fetch_certs, firebase_claims
from local.stack import Stack

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIXTURE_SOURCE = HERE / "stack_fixtures" / "main.py"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as mp:
        # Leftovers of some other run must not reach the functions...
        mp.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
        mp.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
        for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"):
            mp.delenv(var, raising=False)
        # ...while the caller's PIXME_* settings do.
        mp.setenv("PIXME_MAX_SIDE", "512")
        s = Stack(
            components=["firestore", "pubsub", "storage", "bridge", "issuer", "functions"],
            source=FIXTURE_SOURCE,
            targets=["on_upload", "sessions"],
            env_overrides={"PIXME_RETENTION_DAYS": "7"},
            log_dir=ROOT / "out" / "stack" / "test-events",
        )
        s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def db(stack: Stack) -> Any:
    return stack.firestore_client()


def _deliveries(db: Any, bucket: str, name: str) -> list[dict[str, Any]]:
    docs = db.collection("stack_events").where(filter=FieldFilter("data.name", "==", name)).stream()
    return sorted((d.to_dict() for d in docs if d.get("data.bucket") == bucket), key=lambda d: d["attempt"])


def _wait_for(db: Any, bucket: str, name: str, count: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = _deliveries(db, bucket, name)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_upload_reaches_the_cloudevent_function(stack: Stack, db: Any) -> None:
    client = stack.storage_client()
    name = f"uploads/u1/{uuid.uuid4().hex}.png"
    blob = client.bucket(stack.uploads_bucket).blob(name)
    blob.metadata = {"client": "test"}
    blob.upload_from_string(b"\x89PNG fake bytes", content_type="image/png")

    found = _wait_for(db, stack.uploads_bucket, name, 1, timeout_s=15)
    assert len(found) == 1, f"no CloudEvent for {name}; see {stack.logs()['bridge']}"
    ev = found[0]
    assert ev["ce_type"] == "google.cloud.storage.object.v1.finalized"
    assert ev["ce_source"] == f"//storage.googleapis.com/projects/_/buckets/{stack.uploads_bucket}"
    assert ev["ce_subject"] == f"objects/{name}"
    assert ev["ce_time"]
    data = ev["data"]
    assert data["bucket"] == stack.uploads_bucket
    assert data["name"] == name
    assert data["generation"] == str(blob.generation)
    assert data["size"] == str(len(b"\x89PNG fake bytes"))
    assert data["metageneration"] == "1"
    assert data["contentType"] == "image/png"
    assert data["metadata"] == {"client": "test"}
    assert data["md5Hash"] and data["timeCreated"] and data["updated"]
    assert ev["attempt"] == 1


def test_assets_bucket_writes_do_not_trigger(stack: Stack, db: Any) -> None:
    client = stack.storage_client()
    asset = f"avatars/{uuid.uuid4().hex}.png"
    client.bucket(stack.assets_bucket).blob(asset).upload_from_string(b"x", content_type="image/png")
    marker = f"uploads/u1/{uuid.uuid4().hex}.png"
    client.bucket(stack.uploads_bucket).blob(marker).upload_from_string(b"y", content_type="image/png")
    assert len(_wait_for(db, stack.uploads_bucket, marker, 1, timeout_s=15)) == 1
    time.sleep(0.5)
    assert _deliveries(db, stack.assets_bucket, asset) == []


def test_failed_delivery_is_redelivered(stack: Stack, db: Any) -> None:
    client = stack.storage_client()
    name = f"uploads/u2/{uuid.uuid4().hex}.png"
    blob = client.bucket(stack.uploads_bucket).blob(name)
    blob.metadata = {"fail_times": "2"}
    t0 = time.monotonic()
    blob.upload_from_string(b"retry me", content_type="image/png")

    found = _wait_for(db, stack.uploads_bucket, name, 3, timeout_s=20)
    took = time.monotonic() - t0
    assert [d["attempt"] for d in found] == [1, 2, 3], f"after {took:.1f} s: {found}"
    assert len({d["ce_id"] for d in found}) == 1, "a redelivery keeps the event id"
    assert all(d["data"]["generation"] == str(blob.generation) for d in found)
    # The third attempt succeeded: nothing more arrives.
    time.sleep(1.5)
    assert len(_deliveries(db, stack.uploads_bucket, name)) == 3
    log = stack.logs()["bridge"].read_text()
    assert "Pub/Sub redelivers" in log and "-> ack" in log


def test_issuer_tokens_verify_against_certs(stack: Stack) -> None:
    assert stack.issuer_url
    resp = requests.get(stack.issuer_url + "/certs", timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "public, max-age=3600"
    certs = resp.json()
    assert len(certs) == 1
    kid, pem = next(iter(certs.items()))
    assert pem.startswith("-----BEGIN CERTIFICATE-----")

    token = stack.token("alice")
    header = google.auth.jwt.decode_header(token)
    assert header == {"alg": "RS256", "kid": kid, "typ": "JWT"}
    claims = google.auth.jwt.decode(token, certs=certs, audience=stack.project)
    assert claims["iss"] == f"https://securetoken.google.com/{stack.project}"
    assert claims["aud"] == stack.project
    assert claims["sub"] == claims["user_id"] == "alice"
    assert claims["iat"] <= time.time() < claims["exp"]
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["auth_time"] <= claims["iat"]
    assert claims["firebase"] == {"identities": {}, "sign_in_provider": "custom"}

    # What the functions use: google-auth's verifier with the issuer's certs URL.
    verified = id_token.verify_token(
        token,
        google.auth.transport.requests.Request(),
        audience=stack.project,
        certs_url=stack.issuer_url + "/certs",
    )
    assert verified["sub"] == "alice"


def test_foreign_or_bad_tokens_do_not_verify(stack: Stack) -> None:
    assert stack.issuer_url
    certs = fetch_certs(stack.issuer_url)
    kid = next(iter(certs))
    # Same claims and kid, another key.
    forged = SigningKey.generate()
    forged.kid = kid
    token = forged.sign(firebase_claims(stack.project, "mallory"))
    with pytest.raises(ValueError):
        google.auth.jwt.decode(token, certs=certs, audience=stack.project)
    # Unknown kid.
    other = SigningKey.generate()
    with pytest.raises(ValueError):
        google.auth.jwt.decode(other.sign(firebase_claims(stack.project, "m")), certs=certs)
    # The issuer's own key, but wrong audience, or expired.
    with pytest.raises(ValueError):
        google.auth.jwt.decode(stack.token("bob"), certs=certs, audience="another-project")
    with pytest.raises(ValueError):
        google.auth.jwt.decode(stack.token("bob", ttl_s=-60), certs=certs, audience=stack.project)
    assert requests.post(stack.issuer_url + "/token", json={"uid": ""}, timeout=5).status_code == 400


def test_v4_signed_url_downloads_from_fake_gcs(stack: Stack) -> None:
    assert stack.signing_key_file and stack.storage_url
    client = stack.storage_client()
    content = b"avatar bytes " + uuid.uuid4().bytes
    blob = client.bucket(stack.assets_bucket).blob(f"avatars/{uuid.uuid4().hex}.png")
    blob.upload_from_string(content, content_type="image/png")
    creds = service_account.Credentials.from_service_account_file(stack.signing_key_file)
    assert creds.service_account_email == f"pixme-local@{stack.project}.iam.gserviceaccount.com"

    url = blob.generate_signed_url(
        version="v4",
        expiration=dt.timedelta(minutes=15),
        method="GET",
        credentials=creds,
        api_access_endpoint=stack.storage_url,
    )
    assert url.startswith(stack.storage_url + "/")
    assert "X-Goog-Signature=" in url
    resp = requests.get(url, timeout=5)
    assert resp.status_code == 200
    assert resp.content == content

    # An upload through a signed PUT URL lands in the bucket too.
    put_blob = client.bucket(stack.assets_bucket).blob(f"avatars/{uuid.uuid4().hex}.png")
    put_url = put_blob.generate_signed_url(
        version="v4",
        expiration=dt.timedelta(minutes=15),
        method="PUT",
        content_type="image/png",
        credentials=creds,
        api_access_endpoint=stack.storage_url,
    )
    put = requests.put(put_url, data=b"put bytes", headers={"Content-Type": "image/png"}, timeout=5)
    assert put.status_code == 200, put.text
    assert put_blob.download_as_bytes() == b"put bytes"


def test_functions_get_the_stack_environment(stack: Stack) -> None:
    from pixme.config import ENV_VARS

    resp = requests.get(
        stack.functions["sessions"] + "/styles", headers={"Authorization": "Bearer x"}, timeout=5
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["target"] == "sessions" and body["path"] == "/styles"
    env = body["env"]
    assert env["FIRESTORE_EMULATOR_HOST"] == stack.firestore_host
    assert env["STORAGE_EMULATOR_HOST"] == stack.storage_url
    assert env["PUBSUB_EMULATOR_HOST"] == stack.pubsub_host
    assert env["GOOGLE_CLOUD_PROJECT"] == stack.project
    assert env["PIXME_UPLOADS_BUCKET"] == stack.uploads_bucket
    assert env["PIXME_ASSETS_BUCKET"] == stack.assets_bucket
    assert env["PIXME_AUTH_CERTS_URL"] == f"{stack.issuer_url}/certs"
    assert env["PIXME_SIGNING_KEY_FILE"] == stack.signing_key_file
    assert env["PIXME_PUBLIC_STORAGE_URL"] == stack.storage_url
    assert env["PIXME_LOG_FORMAT"] == "text"
    assert env["PIXME_RETENTION_DAYS"] == "7"  # env_overrides
    assert env["PIXME_MAX_SIDE"] == "512"  # the caller's PIXME_* pass through
    assert "GEMINI_API_KEY" not in env  # no renderer, no key: no model settings
    # Every setting the stack gives the functions is one they read.
    assert {k for k in env if k.startswith("PIXME_")} <= set(ENV_VARS)
    for key, value in env.items():
        assert stack.env.get(key) == value, key


def test_wipe_firestore(stack: Stack, db: Any) -> None:
    db.collection("stack_scratch").document("a").set({"x": 1})
    assert db.collection("stack_scratch").document("a").get().exists
    stack.wipe_firestore()
    assert not db.collection("stack_scratch").document("a").get().exists
