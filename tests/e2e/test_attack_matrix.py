# ruff: noqa: E501  (the cases are tables: one case, one line)
"""The attack matrix: tokens, App Check, ownership, bodies, spend and deletion,
each case through the local stack with the status and code it must get. None
may answer 5xx unless it names the documented 503, and none may show another
user's data. The stack runs the hardened configuration: App Check enforced,
anonymous sign-ins refused, small quotas, a gated Pro model. (The upload
attacks are in test_attack_uploads.py.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from local.audit import audit
from local.issuer import encode_rs256, firebase_claims, mint_app_check_token, mint_token
from local.stack import Stack
from pixme.adapters.firestore import usage_key
from samples import SELFIE

MODELS = (
    "flash=gemini-3.1-flash-image,"
    "pro=gemini-3-pro-image;cost=2;requires=plan:pro,"
    "busy=gemini-3.1-flash-image@429,"
    "unsafe=gemini-3.1-flash-image@image_safety,"
    "slow=gemini-3.1-flash-image@timeout"
)
QUOTA = 3
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    env = {
        "PIXME_MODELS": MODELS,
        "PIXME_APP_CHECK": "enforce",
        "PIXME_ANONYMOUS": "deny",
        "PIXME_DAILY_GENERATIONS": str(QUOTA),
        "PIXME_DAILY_EDITS": str(QUOTA),
        "PIXME_USER_MAX_IN_FLIGHT": "2",
        "PIXME_MODEL_TIMEOUT_S": "3",
        "PIXME_BUDGET_CACHE_S": "0",
    }
    with Stack(env_overrides=env, log_dir=ROOT / "out" / "stack" / "test-attack", quiet=True) as s:
        yield s


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Client:
    """One user of the app, with a valid App Check token unless told otherwise."""

    def __init__(self, stack: Stack, uid: str | None = None, token: str | None = None, **claims: Any) -> None:
        self.stack = stack
        self.uid = uid or f"user{uuid.uuid4().hex[:8]}"
        self.token = token if token is not None else mint_token(stack.issuer_url or "", self.uid, claims=claims)
        self.app_check: str | None = stack.app_check_token()

    def headers(self, **extra: str) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.token}"}
        if self.app_check is not None:
            out["X-Firebase-AppCheck"] = self.app_check
        out.update(extra)
        return out

    def call(self, method: str, function: str, path: str = "/", body: Any = None, **kw: Any) -> requests.Response:
        url = self.stack.functions[function].rstrip("/") + path
        headers = self.headers(**kw.pop("headers", {}))
        if isinstance(body, bytes | str) or callable(getattr(body, "__next__", None)):
            return requests.request(method, url, data=body, headers=headers, timeout=60, **kw)
        return requests.request(method, url, json=body, headers=headers, timeout=60, **kw)

    def upload(self) -> str:
        ticket = self.call("POST", "uploads", "/", {"content_type": "image/png"}).json()
        assert requests.put(ticket["upload_url"], data=SELFIE, headers=ticket["headers"], timeout=30).ok
        deadline = time.monotonic() + 30
        while self.call("GET", "uploads", f"/{ticket['upload_id']}").json()["status"] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        return str(ticket["upload_id"])

    def generate(self, upload_id: str, headers: dict[str, str] | None = None, **body: Any) -> requests.Response:
        body = {"upload_id": upload_id, "style": "sketch", **body}
        return self.call("POST", "generate", "/", body, headers=headers or {})


@dataclass
class World:
    stack: Stack
    alice: Client
    upload_id: str
    session_id: str
    turn_id: str


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    alice = Client(stack, plan="pro")
    upload_id = alice.upload()
    first = alice.generate(upload_id)
    assert first.status_code == 201, first.text
    return World(stack, alice, upload_id, first.json()["session_id"], first.json()["turn_id"])


def expect(resp: requests.Response, status: int, code: str | None) -> None:
    assert resp.status_code == status, resp.text[:500]
    assert "Traceback" not in resp.text
    if code:
        assert resp.json()["error"]["code"] == code, resp.text[:500]


# --- tokens ------------------------------------------------------------------------

def forged(stack: Stack, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """Signed with a key that is not the issuer's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = next(iter(requests.get(f"{stack.issuer_url}/certs", timeout=10).json()))
    return encode_rs256(key, kid, claims, header)


def hs256_with_cert(stack: Stack) -> str:
    certs = requests.get(f"{stack.issuer_url}/certs", timeout=10).json()
    kid, pem = next(iter(certs.items()))
    head = b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    body = b64(json.dumps(firebase_claims(stack.project, "eve")).encode())
    sig = hmac.new(pem.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def alg_none(stack: Stack) -> str:
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{b64(json.dumps(firebase_claims(stack.project, 'eve')).encode())}."


def issued(stack: Stack, uid: str = "eve", **kw: Any) -> str:
    return mint_token(stack.issuer_url or "", uid, **kw)


NOW = int(time.time())
TOKENS: dict[str, tuple[Callable[[Stack], str | None], int, str]] = {
    "no token": (lambda s: None, 401, "missing_token"),
    "not a jwt": (lambda s: "not-a-jwt", 401, "invalid_token"),
    "two segments": (lambda s: "a.b", 401, "invalid_token"),
    "alg none": (alg_none, 401, "invalid_token"),
    "hs256 keyed with the certificate": (hs256_with_cert, 401, "invalid_token"),
    "unknown kid": (lambda s: issued(s, header={"kid": "no-such-key"}), 401, "invalid_token"),
    "forged with the real kid": (lambda s: forged(s, firebase_claims(s.project, "eve")), 401, "invalid_token"),
    "kid is a list": (lambda s: issued(s, header={"kid": ["a", "b"]}), 401, "invalid_token"),
    "kid is an object": (lambda s: issued(s, header={"kid": {"k": 1}}), 401, "invalid_token"),
    "kid missing": (lambda s: issued(s, header={"kid": None}), 401, "invalid_token"),
    "jku header": (lambda s: issued(s, header={"jku": "http://127.0.0.1:9/keys"}), 401, "invalid_token"),
    "x5u header": (lambda s: issued(s, header={"x5u": "http://127.0.0.1:9/cert"}), 401, "invalid_token"),
    "expired": (lambda s: issued(s, ttl_s=-60), 401, "invalid_token"),
    "iat in the future": (lambda s: issued(s, claims={"iat": NOW + 3600}), 401, "invalid_token"),
    "auth_time in the future": (lambda s: issued(s, claims={"auth_time": NOW + 3600}), 401, "invalid_token"),
    "wrong audience": (lambda s: issued(s, claims={"aud": "another-project"}), 401, "invalid_token"),
    "wrong issuer": (
        lambda s: issued(s, claims={"iss": "https://securetoken.google.com/another"}), 401, "invalid_token",
    ),
    "empty sub": (lambda s: issued(s, claims={"sub": ""}), 401, "invalid_token"),
    "sub of 129 chars": (lambda s: issued(s, claims={"sub": "x" * 129}), 401, "invalid_token"),
    "sub with a slash": (lambda s: issued(s, claims={"sub": "a/b"}), 401, "invalid_token"),
    "sub is ..": (lambda s: issued(s, claims={"sub": ".."}), 401, "invalid_token"),
    "token of 8 000 bytes": (lambda s: "a" * 8000, 401, "invalid_token"),
    # Over the HTTP server's header limit (gunicorn locally, like Cloud Run): refused before our code runs.
    "token of 9 KB": (lambda s: "a" * 9000, 431, ""),
    "anonymous sign-in refused by policy": (
        lambda s: issued(s, claims={"firebase": {"sign_in_provider": "anonymous"}}), 403, "anonymous_not_allowed",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TOKENS))
def test_tokens(stack: Stack, case: str) -> None:
    make, status, code = TOKENS[case]
    token = make(stack)
    headers = {"X-Firebase-AppCheck": stack.app_check_token()}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    for function in ("sessions", "uploads", "account"):
        path = "/usage" if function == "account" else "/"
        method = "POST" if function == "uploads" else "GET"
        url = stack.functions[function].rstrip("/") + path
        expect(requests.request(method, url, json={"content_type": "image/png"}, headers=headers, timeout=30),
               status, code)  # fmt: skip


def test_uids_with_dots_at_signs_and_colons_are_accepted(stack: Stack) -> None:
    user = Client(stack, uid=f"ana.{uuid.uuid4().hex[:6]}@example.com:7")
    expect(user.call("GET", "sessions", "/"), 200, None)
    expect(user.call("POST", "uploads", "/", {"content_type": "image/jpeg"}), 201, None)


# --- App Check ---------------------------------------------------------------------

APP_CHECK: dict[str, tuple[Callable[[Stack], str | None], int, str | None]] = {
    "missing": (lambda s: None, 401, "invalid_app_check"),
    "garbage": (lambda s: "garbage", 401, "invalid_app_check"),
    "an ID token instead": (lambda s: issued(s), 401, "invalid_app_check"),
    "forged with another key": (
        lambda s: forged(s, {"iss": "https://firebaseappcheck.googleapis.com/000000000000",
                             "aud": ["projects/000000000000"], "sub": "1:0:android:x",
                             "iat": NOW, "exp": NOW + 3600}),
        401, "invalid_app_check",
    ),
    "wrong audience": (
        lambda s: mint_app_check_token(s.issuer_url or "", "1:0:android:x", claims={"aud": ["projects/999"]}),
        401, "invalid_app_check",
    ),
    "wrong issuer": (
        lambda s: mint_app_check_token(
            s.issuer_url or "", "1:0:android:x", claims={"iss": "https://firebaseappcheck.googleapis.com/999"}),
        401, "invalid_app_check",
    ),
    "expired": (lambda s: mint_app_check_token(s.issuer_url or "", "1:0:android:x", ttl_s=-60), 401,
                "invalid_app_check"),
    "valid": (lambda s: s.app_check_token(), 200, None),
}  # fmt: skip


@pytest.mark.parametrize("case", list(APP_CHECK))
def test_app_check_is_enforced(stack: Stack, case: str) -> None:
    make, status, code = APP_CHECK[case]
    user = Client(stack)
    user.app_check = make(stack)
    expect(user.call("GET", "sessions", "/"), status, code)
    expect(user.call("GET", "account", "/usage"), status, code)


# --- ownership ---------------------------------------------------------------------

OWNERSHIP: dict[str, tuple[Callable[[Client, World], requests.Response], int, str]] = {
    "read her upload": (lambda b, w: b.call("GET", "uploads", f"/{w.upload_id}"), 404, "upload_not_found"),
    "read her upload by the old route": (
        lambda b, w: b.call("GET", "sessions", f"/uploads/{w.upload_id}"), 404, "upload_not_found",
    ),
    "delete her upload": (lambda b, w: b.call("DELETE", "uploads", f"/{w.upload_id}"), 404, "upload_not_found"),
    "generate from her upload": (lambda b, w: b.generate(w.upload_id), 404, "upload_not_found"),
    "read her session": (lambda b, w: b.call("GET", "sessions", f"/{w.session_id}"), 404, "session_not_found"),
    "delete her session": (
        lambda b, w: b.call("DELETE", "sessions", f"/{w.session_id}"), 404, "session_not_found",
    ),
    "edit her session": (
        lambda b, w: b.call("POST", "edit", "/", {"session_id": w.session_id, "instruction": "add glasses"}),
        404, "session_not_found",
    ),
    "edit her turn": (
        lambda b, w: b.call("POST", "edit", "/", {"session_id": w.session_id, "instruction": "x",
                                                  "from_turn": w.turn_id}),
        404, "session_not_found",
    ),
    "reference her session": (
        lambda b, w: b.generate(b.upload(), references=[w.session_id]), 404, "session_not_found",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(OWNERSHIP))
def test_another_user_can_neither_see_nor_touch_her_data(world: World, case: str) -> None:
    bob = Client(world.stack)
    run, status, code = OWNERSHIP[case]
    resp = run(bob, world)
    expect(resp, status, code)
    assert world.upload_id not in resp.text and world.session_id not in resp.text
    expect(world.alice.call("GET", "sessions", f"/{world.session_id}"), 200, None)
    expect(world.alice.call("GET", "uploads", f"/{world.upload_id}"), 200, None)


def test_another_users_export_and_deletion_contain_and_touch_nothing_of_hers(world: World) -> None:
    bob = Client(world.stack)
    export = bob.call("GET", "account", "/export")
    expect(export, 200, None)
    assert world.alice.uid not in export.text and export.json()["sessions"] == []
    expect(bob.call("DELETE", "account", "/"), 200, None)
    expect(world.alice.call("GET", "sessions", f"/{world.session_id}"), 200, None)


# --- bodies -------------------------------------------------------------------------

def chunked(size: int) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        yield b"{" * 65536
        sent += 65536


BODIES: dict[str, tuple[str, str, Any, int, str]] = {
    "body over 64 KB": ("POST", "generate", b'{"style": "' + b"x" * 70000 + b'"}', 400, "body_too_large"),
    "chunked body of 20 MB": ("POST", "generate", "chunked", 400, "body_too_large"),
    "arrays nested 10 000 deep": ("POST", "generate", b"[" * 10000 + b"]" * 10000, 400, "invalid_json"),
    "objects nested 10 000 deep": ("POST", "edit", b'{"a":' * 10000 + b"1" + b"}" * 10000, 400, "invalid_json"),
    "a 5 000-digit integer": ("POST", "generate", b'{"upload_id": ' + b"9" * 5000 + b"}", 400, "invalid_json"),
    "NaN": ("POST", "generate", b'{"upload_id": NaN}', 400, "invalid_json"),
    "not an object": ("POST", "edit", b'["session_id"]', 400, "invalid_json"),
    "not JSON": ("POST", "generate", b"{nope", 400, "invalid_json"),
    "style is a number": ("POST", "generate", {"upload_id": "u_1", "style": 7}, 400, "invalid_field"),
    "upload_id is a list": ("POST", "generate", {"upload_id": ["u_1"], "style": "manga"}, 400, "invalid_field"),
    "upload_id is ..": ("POST", "generate", {"upload_id": "..", "style": "manga"}, 400, "invalid_field"),
    "session_id __x__": ("POST", "edit", {"session_id": "__x__", "instruction": "hi"}, 400, "invalid_field"),
    "session_id of 1 501 bytes": ("POST", "edit", {"session_id": "s" * 1501, "instruction": "hi"}, 400,
                                  "field_too_long"),
    "instruction too long": ("POST", "edit", {"session_id": "s_1", "instruction": "x" * 501}, 400,
                             "field_too_long"),
    "a NUL in the prompt": ("POST", "generate", {"upload_id": "u_1", "style": "manga", "prompt": "a\u0000b"},
                            400, "invalid_field"),
    "unknown style": ("POST", "generate", {"upload_id": "u_1", "style": "vaporwave"}, 400, "unknown_style"),
    "unknown model": ("POST", "generate", {"upload_id": "u_1", "style": "manga", "model": "gpt"}, 400,
                      "invalid_field"),
    "too many references": ("POST", "generate", {"upload_id": "u_1", "style": "manga",
                                                 "references": ["s_1", "s_2", "s_3"]}, 400, "invalid_field"),
    "upload of an svg": ("POST", "uploads", {"content_type": "image/svg+xml"}, 400, "invalid_field"),
    "path id __x__": ("GET", "sessions", "/__x__", 400, "invalid_field"),
    "path id of 1 501 bytes": ("GET", "sessions", "/" + "s" * 1501, 400, "invalid_field"),
    "path id with a dot": ("GET", "uploads", "/u_1.png", 400, "invalid_field"),
    "unknown route": ("GET", "account", "/nope", 404, "route_not_found"),
    "wrong method": ("GET", "generate", None, 405, "method_not_allowed"),
    "delete the session list": ("DELETE", "sessions", "/", 405, "method_not_allowed"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BODIES))
def test_hostile_input_is_a_clean_4xx(stack: Stack, case: str) -> None:
    method, function, body, status, code = BODIES[case]
    user = Client(stack)
    path = "/"
    if isinstance(body, str) and body.startswith("/"):
        path, body = body, None
    if body == "chunked":
        body = chunked(20 * 1024 * 1024)
    expect(user.call(method, function, path, body), status, code)


def test_a_bad_idempotency_key_is_refused(world: World) -> None:
    resp = world.alice.generate(world.upload_id, headers={"Idempotency-Key": "short"})
    expect(resp, 400, "invalid_idempotency_key")


# --- spend --------------------------------------------------------------------------

def test_the_pro_model_needs_its_plan(world: World) -> None:
    bob = Client(world.stack)
    expect(bob.generate(bob.upload(), model="pro"), 403, "model_not_allowed")
    resp = world.alice.generate(world.upload_id, model="pro")  # alice has plan=pro
    expect(resp, 201, None)
    assert resp.headers["RateLimit-Remaining"] == str(QUOTA - 1 - 2)  # her first image, then 2 units


def test_a_user_stops_at_the_quota_with_headers_that_say_so(stack: Stack) -> None:
    user = Client(stack)
    upload_id = user.upload()
    for left in range(QUOTA - 1, -1, -1):
        resp = user.generate(upload_id)
        expect(resp, 201, None)
        assert resp.headers["RateLimit-Limit"] == str(QUOTA)
        assert resp.headers["RateLimit-Remaining"] == str(left)
        assert 0 < int(resp.headers["RateLimit-Reset"]) <= 86_400
    resp = user.generate(upload_id)
    expect(resp, 429, "quota_exceeded")
    assert int(resp.headers["Retry-After"]) == int(resp.headers["RateLimit-Reset"])
    assert resp.headers["RateLimit-Remaining"] == "0"
    usage = user.call("GET", "account", "/usage").json()
    assert usage["generations"] == {"limit": QUOTA, "used": QUOTA, "remaining": 0}


def test_failures_that_are_not_the_users_are_refunded_refusals_are_not(stack: Stack) -> None:
    user = Client(stack)
    upload_id = user.upload()
    busy = user.generate(upload_id, model="busy")
    expect(busy, 429, "model_rate_limited")
    assert busy.headers["RateLimit-Remaining"] == str(QUOTA)
    unsafe = user.generate(upload_id, model="unsafe")
    expect(unsafe, 422, "image_safety")
    assert unsafe.headers["RateLimit-Remaining"] == str(QUOTA - 1)
    assert user.call("GET", "account", "/usage").json()["generations"]["used"] == 1


def test_a_user_cannot_hold_more_than_two_model_calls(stack: Stack) -> None:
    user = Client(stack)
    upload_id = user.upload()
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(user.generate, upload_id, model="slow") for _ in range(2)]
        time.sleep(1.0)  # both are now waiting on the model
        third = user.generate(upload_id, model="slow")
        first, second = (f.result() for f in futures)
    expect(third, 429, "too_many_in_flight")
    assert int(third.headers["Retry-After"]) >= 1
    for resp in (first, second):
        expect(resp, 503, "model_timeout")  # on us: refunded
    assert user.call("GET", "account", "/usage").json()["generations"]["used"] == 0


def test_the_budget_switch_stops_everyone_at_run_time(world: World) -> None:
    db = world.stack.firestore_client()
    switch = db.collection("config").document("budget")
    user = Client(world.stack)
    upload_id = user.upload()
    try:
        switch.set({"daily_budget": 0})
        for who, upload in ((user, upload_id), (world.alice, world.upload_id)):
            resp = who.generate(upload)
            expect(resp, 503, "budget_exhausted")
            assert int(resp.headers["Retry-After"]) > 0
        edit = world.alice.call("POST", "edit", "/", {"session_id": world.session_id, "instruction": "warmer"})
        expect(edit, 503, "budget_exhausted")
    finally:
        switch.delete()
    expect(user.generate(upload_id), 201, None)
    log = world.stack.logs()["fn-generate"].read_text()
    assert "budget exhausted" in log


# --- deletion -----------------------------------------------------------------------

def test_deleting_a_session_removes_its_turns_and_images(stack: Stack) -> None:
    user = Client(stack)
    upload_id = user.upload()
    created = user.generate(upload_id).json()
    image = created["image_url"]
    assert requests.get(image, timeout=10).status_code == 200
    resp = user.call("DELETE", "sessions", f"/{created['session_id']}")
    expect(resp, 200, None)
    assert resp.json()["images_deleted"] == 1
    expect(user.call("GET", "sessions", f"/{created['session_id']}"), 404, "session_not_found")
    assert requests.get(image, timeout=10).status_code == 404
    expect(user.call("DELETE", "sessions", f"/{created['session_id']}"), 404, "session_not_found")


def test_the_export_has_everything_and_its_links_work(stack: Stack) -> None:
    user = Client(stack)
    upload_id = user.upload()
    session = user.generate(upload_id).json()
    export = user.call("GET", "account", "/export")
    expect(export, 200, None)
    body = export.json()
    assert [u["upload_id"] for u in body["uploads"]] == [upload_id]
    assert [s["session_id"] for s in body["sessions"]] == [session["session_id"]]
    for url in (body["uploads"][0]["image_url"], body["sessions"][0]["turns"][0]["image_url"]):
        assert requests.get(url, timeout=10).status_code == 200


def test_deleting_the_account_leaves_nothing_of_the_user_anywhere(stack: Stack) -> None:
    user = Client(stack)
    upload_id = user.upload()
    sid = user.generate(upload_id).json()["session_id"]
    expect(user.call("POST", "edit", "/", {"session_id": sid, "instruction": "add glasses"},
                     headers={"Idempotency-Key": "key-" + uuid.uuid4().hex}), 201, None)  # fmt: skip
    user.call("POST", "uploads", "/", {"content_type": "image/png"})  # one pending, never sent
    resp = user.call("DELETE", "account", "/")
    expect(resp, 200, None)
    assert resp.json()["complete"] is True and resp.json()["deleted"]["sessions"] == 1
    db, gcs = stack.firestore_client(), stack.storage_client()
    for bucket in (stack.uploads_bucket, stack.assets_bucket):
        left = [b.name for b in gcs.list_blobs(bucket) if f"/{user.uid}/" in b.name]
        assert left == [], left
    for collection in ("uploads", "sessions", "idempotency"):
        assert list(db.collection(collection).where("owner", "==", user.uid).stream()) == [], collection
    # The day's counters outlive the account, under a hash of the uid, holding counts only:
    # deleting must not reset a quota, and what stays names nobody.
    assert not db.collection("usage").document(f"user:{user.uid}").get().exists
    counters = db.collection("usage").document(usage_key(user.uid)).get().to_dict() or {}
    assert counters.get("edits") == 1 and user.uid not in str(counters)
    turns = [str(t.to_dict().get("image_path")) for t in db.collection_group("turns").stream()]
    assert not any(f"/{user.uid}/" in path for path in turns)
    again = user.call("DELETE", "account", "/")
    expect(again, 200, None)
    assert set(again.json()["deleted"].values()) == {0}
    report = audit(db, gcs, (stack.uploads_bucket, stack.assets_bucket))
    assert report.ok, report.summary()
