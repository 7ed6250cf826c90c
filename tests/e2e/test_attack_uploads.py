"""Attacks on the upload path, through the whole local stack: each names the
status it must get, and each ends with the attacker's and the victim's
objects audited (nothing planted survives, nothing is left behind)."""

from __future__ import annotations

import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.cloud.storage import _signing
from google.oauth2 import service_account
from test_flow import App

from local.audit import audit
from local.stack import Stack
from samples import CAT, SELFIE


def user(stack: Stack, who: str) -> App:
    return App(stack, f"{who}{uuid.uuid4().hex[:8]}")


def clean(stack: Stack, *apps: App) -> None:
    db, gcs = stack.firestore_client(), stack.storage_client()
    for app in apps:
        report = audit(db, gcs, (stack.uploads_bucket, stack.assets_bucket), prefix=app.uid)
        assert report.ok, report.summary()


def stored(stack: Stack, app: App) -> list[str]:
    gcs = stack.storage_client()
    return [b.name for b in gcs.list_blobs(stack.uploads_bucket, prefix=f"uploads/{app.uid}/")]


def plant(stack: Stack, name: str, data: bytes) -> None:
    """Write straight into the uploads bucket, as anyone holding bucket access could."""
    stack.storage_client().bucket(stack.uploads_bucket).blob(name).upload_from_string(data)


def gone(stack: Stack, name: str, timeout_s: float = 15) -> bool:
    bucket = stack.storage_client().bucket(stack.uploads_bucket)
    deadline = time.monotonic() + timeout_s
    while bucket.get_blob(name) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def victim(stack: Stack) -> App:
    app = user(stack, "victim")
    app.upload_named(SELFIE, "selfie")
    assert app.wait_named("selfie")["status"] == "ready"
    return app


def test_a_planted_object_never_becomes_the_users_photo(stack: Stack, victim: App) -> None:
    name = f"uploads/{victim.uid}/planted"
    plant(stack, name, SELFIE)
    assert gone(stack, name)
    resp = victim.post("generate", {"upload_id": "planted", "style": "comics"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "upload_not_found"
    assert victim.request("GET", "uploads", "/planted").status_code == 404
    clean(stack, victim)


@pytest.mark.parametrize("suffix", ["", ".jpg", ".png", "/x"])
def test_writing_over_a_ready_upload_under_any_name_changes_nothing(
    stack: Stack, victim: App, suffix: str
) -> None:
    before = victim.wait_named("selfie")
    name = f"uploads/{victim.uid}/{victim.ids['selfie']}{suffix}"
    plant(stack, name, CAT)
    assert gone(stack, name)
    assert victim.wait_named("selfie") == before
    clean(stack, victim)


def test_a_second_put_to_one_upload_is_refused(stack: Stack) -> None:
    app = user(stack, "twice")
    ticket = app.start_upload("image/png")
    assert app.put(ticket, SELFIE).status_code == 200
    second = app.put(ticket, CAT)
    assert second.status_code in (200, 412), second.text
    status = app.wait_upload(ticket["upload_id"])
    assert status["status"] == "ready" and status["face_box"], status
    clean(stack, app)


def tamper(url: str, param: str, change: Any) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [(k, change(v) if k == param else v) for k, v in urllib.parse.parse_qsl(parts.query)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="/")))


def flip_last_hex(sig: str) -> str:
    return sig[:-1] + ("0" if sig[-1] != "0" else "1")


def expired_ticket(stack: Stack, ticket: dict[str, Any]) -> str:
    """The same URL signed an hour ago with the stack's key: what the app's
    ticket becomes once its TTL has passed."""
    credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        stack.signing_key_file
    )
    path = urllib.parse.urlsplit(ticket["upload_url"]).path
    headers = {k: v for k, v in ticket["headers"].items() if k.lower() != "content-type"}
    return str(
        _signing.generate_signed_url_v4(
            credentials,
            path,
            expiration=600,
            api_access_endpoint=stack.signed_urls_url,
            method="PUT",
            content_type=ticket["headers"]["Content-Type"],
            headers=headers,
            _request_timestamp=(datetime.now(UTC) - timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ"),
        )
    )


def send(ticket: dict[str, Any], data: Any, url: str | None = None, **changes: Any) -> requests.Response:
    headers = {**ticket["headers"], **changes.pop("headers", {})}
    headers = {k: v for k, v in headers.items() if v is not None}
    method = changes.pop("method", ticket["method"])
    return requests.request(method, url or ticket["upload_url"], data=data, headers=headers, timeout=30)


def oversize(ticket: dict[str, Any]) -> bytes:
    return SELFIE + b"\0" * (int(ticket["max_bytes"]) + 1 - len(SELFIE))


def chunks(data: bytes, size: int = 1 << 20) -> Any:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def with_headers(**headers: str | None) -> dict[str, str | None]:
    return {k.replace("_", "-"): v for k, v in headers.items()}


Attack = Any  # (stack, ticket) -> response
REFUSALS: dict[str, tuple[int, Attack]] = {
    "tampered signature": (
        403, lambda s, t: send(t, SELFIE, tamper(t["upload_url"], "X-Goog-Signature", flip_last_hex)),
    ),
    "expired url": (400, lambda s, t: send(t, SELFIE, expired_ticket(s, t))),
    "another method": (403, lambda s, t: send(t, SELFIE, method="POST")),
    "read instead of write": (403, lambda s, t: send(t, None, method="GET")),
    "another content type": (403, lambda s, t: send(t, SELFIE, headers={"Content-Type": "text/html"})),
    "no length range": (
        400, lambda s, t: send(t, SELFIE, headers=with_headers(x_goog_content_length_range=None)),
    ),
    "widened length range": (
        403, lambda s, t: send(t, SELFIE, headers=with_headers(x_goog_content_length_range="1,99999999999")),
    ),
    "no create-only precondition": (
        400, lambda s, t: send(t, SELFIE, headers=with_headers(x_goog_if_generation_match=None)),
    ),
    "body over max_bytes": (400, lambda s, t: send(t, oversize(t))),
    "chunked body over max_bytes": (400, lambda s, t: send(t, chunks(oversize(t)))),
    "empty body": (400, lambda s, t: send(t, b"")),
    "another object name": (
        403, lambda s, t: send(t, SELFIE, t["upload_url"].replace(t["upload_id"], t["upload_id"] + "x")),
    ),
}  # fmt: skip


@pytest.mark.parametrize("attack", list(REFUSALS))
def test_a_signed_url_used_otherwise_than_signed_is_refused_and_stores_nothing(
    stack: Stack, attack: str
) -> None:
    app = user(stack, "mallory")
    ticket = app.start_upload("image/png")
    status, run = REFUSALS[attack]
    resp = run(stack, ticket)
    assert resp.status_code == status, resp.text
    assert resp.content.startswith(b"<?xml") and b"<Error><Code>" in resp.content
    assert stored(stack, app) == []
    assert app.upload_status(ticket["upload_id"])["status"] == "pending"
    # The genuine request still works afterwards: nothing was used up.
    assert app.put(ticket, SELFIE).status_code == 200
    assert app.wait_upload(ticket["upload_id"])["status"] == "ready"
    clean(stack, app)


def test_another_users_upload_is_invisible(stack: Stack, victim: App) -> None:
    mallory = user(stack, "mallory")
    upload_id = victim.ids["selfie"]
    for method in ("GET", "DELETE"):
        resp = mallory.request(method, "uploads", f"/{upload_id}")
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "upload_not_found"
    assert mallory.get(f"/uploads/{upload_id}").status_code == 404
    resp = mallory.post("generate", {"upload_id": upload_id, "style": "comics"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "upload_not_found"
    # Her own signed URL cannot be pointed at the victim's object.
    ticket = mallory.start_upload("image/png")
    url = ticket["upload_url"].replace(f"/{mallory.uid}/{ticket['upload_id']}", f"/{victim.uid}/{upload_id}")
    assert send(ticket, CAT, url).status_code == 403
    assert victim.wait_named("selfie")["status"] == "ready"
    clean(stack, victim, mallory)


def test_concurrent_upload_requests_never_get_more_than_the_limit(stack: Stack) -> None:
    app = user(stack, "burst")
    with ThreadPoolExecutor(10) as pool:
        answers = list(
            pool.map(lambda _: app.request("POST", "uploads", "/", {"content_type": "image/png"}), range(10))
        )
    granted = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    codes = [(a.status_code, a.json().get("error", {}).get("code")) for a in answers]
    # Never more than the limit. Under a loaded machine a request may also be
    # told to retry because the user's usage document was contended.
    assert 1 <= len(granted) <= 3 and (429, "too_many_pending_uploads") in codes, codes
    assert set(codes) <= {(201, None), (429, "too_many_pending_uploads"), (503, "database_contention")}, codes
    for resp in refused:
        assert int(resp.headers["Retry-After"]) >= 1
    # Finishing one frees one place.
    ticket = granted[0].json()
    assert app.put(ticket, SELFIE).status_code == 200
    assert app.wait_upload(ticket["upload_id"])["status"] == "ready"
    assert app.request("POST", "uploads", "/", {"content_type": "image/png"}).status_code == 201
    assert app.request("POST", "uploads", "/", {"content_type": "image/png"}).status_code == 429
    clean(stack, app)


def test_a_user_may_start_only_so_many_uploads_a_day(stack: Stack) -> None:
    app = user(stack, "daily")
    limit = 20  # the default PIXME_DAILY_UPLOADS
    for _ in range(limit):
        ticket = app.start_upload("image/jpeg")
        assert app.request("DELETE", "uploads", f"/{ticket['upload_id']}").status_code == 200
    resp = app.request("POST", "uploads", "/", {"content_type": "image/jpeg"})
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "upload_quota_exceeded"
    assert 0 < int(resp.headers["Retry-After"]) <= 86_400
    clean(stack, app)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "missing_field"),
        ({"content_type": "image/svg+xml"}, "invalid_field"),
        ({"content_type": ["image/png"]}, "invalid_field"),
    ],
)
def test_an_upload_request_must_name_an_image_type(stack: Stack, body: dict[str, Any], code: str) -> None:
    app = user(stack, "types")
    resp = app.request("POST", "uploads", "/", body)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == code
    assert app.request("POST", "uploads", "/", None, headers={"Authorization": ""}).status_code == 401
