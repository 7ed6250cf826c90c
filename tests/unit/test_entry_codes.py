"""Every error code the code can raise, reached through an entry point.

Each scenario drives the real path that produces its code: the edge's own
checks, the services' rules over fakes of our ports, the real token and App
Check verifiers (keys fetched from a closed loopback port), and the real
Gemini adapter with the real SDK against a loopback server answering as
Gemini does. Where a code is produced by a Google client that only its
emulator can drive (Firestore contention, transient storage and database
failures), the fake store fails the way the adapter does, through the
adapter's own mapping where it has one. `test_every_raised_code_has_a_scenario`
keeps the list complete: a new code without a scenario fails it.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google import genai
from google.api_core import exceptions as gexc
from google.genai import types
from test_entry_readme import REASON_CLASS, raised_codes
from test_entry_routes import Records, Stack, client, payload
from werkzeug.test import TestResponse

from fakes import png, settings
from local.issuer import SigningKey, firebase_claims
from pixme import web, wiring
from pixme.adapters import firestore as firestore_adapter
from pixme.adapters import gcs as gcs_adapter
from pixme.adapters.appcheck import AppCheckVerifier
from pixme.adapters.auth import CertCache, FirebaseTokenVerifier
from pixme.adapters.gemini import GeminiModel, client_for
from pixme.api import UploadRequest
from pixme.config import ENV_VARS, ModelAlias
from pixme.errors import Unavailable
from pixme.layout import upload_object

# What each scenario observed: (status, code).
Observed = tuple[int, str]
# A scenario gets the fakes installed, the test's monkeypatch and the loopback Gemini.
Scenario = Callable[[Stack, pytest.MonkeyPatch, "GeminiStub"], Observed]
SCENARIOS: dict[str, Scenario] = {}
REAL_SETTINGS = wiring.settings  # the composition root's own, before any test replaces it


def scenario(code: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[code] = fn
        return fn

    return register


def seen(resp: TestResponse) -> Observed:
    assert b"Traceback" not in resp.data and resp.mimetype == "application/json", resp.data[:300]
    return resp.status_code, json.loads(resp.data)["error"]["code"]


def restack(monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> Stack:
    stack = Stack(settings(no_face="allow", **overrides))
    stack.install(monkeypatch)
    return stack


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


# --- the edge ------------------------------------------------------------------------------------


@scenario("missing_token")
def _missing_token(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    return seen(stack.call("generate", "POST", token=None, body={}))


@scenario("invalid_token")
def _invalid_token(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    return seen(stack.call("generate", "POST", token="nobody", body={}))


@scenario("invalid_app_check")
def _invalid_app_check(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    stack.app_check = AppCheckVerifier(settings(app_check="enforce", project_number="123456789012"))
    return seen(stack.call("generate", "POST", body={}, headers={"X-Firebase-AppCheck": "not.a.jwt"}))


@scenario("auth_unavailable")
def _auth_unavailable(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    certs = CertCache(f"http://127.0.0.1:{closed_port()}/certs", timeout_s=1)
    stack.verifier = FirebaseTokenVerifier(settings(), certs)
    token = SigningKey.generate().sign(firebase_claims("demo-test", "alice", 3600))
    resp = stack.call("generate", "POST", token=token, body={})
    assert int(resp.headers["Retry-After"]) >= 1
    return seen(resp)


@scenario("anonymous_not_allowed")
def _anonymous(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    stack = restack(mp, anonymous="deny")
    return seen(stack.call("generate", "POST", token="guest", body={}))


@scenario("invalid_json")
def _invalid_json(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    return seen(client("generate").post("/", data=b'{"style": ', headers={"Authorization": "Bearer alice"}))


@scenario("body_too_large")
def _body_too_large(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    raw = b" " * (web.MAX_BODY + 1)
    return seen(client("edit").post("/", data=raw, headers={"Authorization": "Bearer alice"}))


@scenario("method_not_allowed")
def _method_not_allowed(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    resp = stack.call("uploads", "PUT")
    assert resp.headers["Allow"] == "POST"  # the methods of this path (/), not of the function
    return seen(resp)


@scenario("route_not_found")
def _route_not_found(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    return seen(stack.call("account", path="/nowhere"))


@scenario("internal")
def _internal(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("a bug with a secret in it")

    mp.setattr(stack.world.blobs, "signed_url", broken)
    resp = stack.call("uploads", "POST", body={"content_type": "image/png"})
    assert b"secret" not in resp.data
    return seen(resp)


@scenario("misconfigured")
def _misconfigured(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    for name in ENV_VARS:
        mp.delenv(name, raising=False)
    mp.setenv("GOOGLE_CLOUD_PROJECT", "p")  # the buckets are missing
    mp.setattr(wiring, "settings", REAL_SETTINGS)
    REAL_SETTINGS.cache_clear()
    return seen(stack.call("sessions", path="/styles", token=None))


# --- request validation --------------------------------------------------------------------------


def _generate(stack: Stack, **body: Any) -> Observed:
    return seen(stack.call("generate", "POST", body={"upload_id": "u_1", "style": "comics", **body}))


@scenario("missing_field")
def _missing_field(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    return seen(stack.call("generate", "POST", body={"upload_id": "u_1"}))


@scenario("invalid_field")
def _invalid_field(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    return _generate(stack, upload_id=5)


@scenario("field_too_long")
def _field_too_long(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    return _generate(stack, prompt="x" * (stack.s.max_text_chars + 1))


@scenario("unknown_style")
def _unknown_style(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    return _generate(stack, style="vaporwave")


@scenario("invalid_idempotency_key")
def _invalid_key(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    body = {"upload_id": "u_1", "style": "comics"}
    return seen(stack.call("generate", "POST", body=body, headers={"Idempotency-Key": "no spaces"}))


# --- the services' rules -------------------------------------------------------------------------


@scenario("upload_not_found")
def _upload_not_found(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    return _generate(stack, upload_id="u_missing")


@scenario("session_not_found")
def _session_not_found(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    return seen(stack.call("edit", "POST", body={"session_id": "s_missing", "instruction": "a hat"}))


def _session(stack: Stack) -> str:
    resp = stack.generate(stack.upload())
    assert resp.status_code == 201, resp.data
    session_id: str = payload(resp)["session_id"]
    return session_id


@scenario("turn_not_found")
def _turn_not_found(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    body = {"session_id": _session(stack), "instruction": "a hat", "from_turn": "t_missing"}
    return seen(stack.call("edit", "POST", body=body))


@scenario("stale_head")
def _stale_head(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    body = {"session_id": _session(stack), "instruction": "a hat", "if_head": "t_older"}
    resp = stack.call("edit", "POST", body=body)
    assert payload(resp)["error"]["head_turn_id"]
    return seen(resp)


@scenario("turn_exists")
def _turn_exists(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    # Ids drawn twice alike: the session store refuses to record a turn id again.
    mp.setattr("pixme.services.avatars.new_id", lambda prefix: prefix + "same")
    body = {"session_id": _session(stack), "instruction": "a hat"}
    return seen(stack.call("edit", "POST", body=body))


@scenario("object_not_found")
def _object_not_found(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    upload_id = stack.upload()
    image_path = stack.world.uploads.get("alice", upload_id).image_path  # type: ignore[union-attr]
    stack.world.blobs.delete(stack.s.assets_bucket, str(image_path))  # removed behind the document
    return _generate(stack, upload_id=upload_id)


@scenario("upload_rejected")
def _upload_rejected(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    resp = stack.generate(stack.upload(data=b"GIF89a, not a photo"))
    assert payload(resp)["error"]["reason"] == "unsupported_format"
    return seen(resp)


def _while_ingesting(stack: Stack, mp: pytest.MonkeyPatch, during: Callable[[str], object]) -> str:
    """Register an upload and deliver its event; `during(upload_id)` runs while the
    trigger holds the upload (processing), from inside its read of the object."""
    upload_id: str = stack.world.service.start("alice", UploadRequest(content_type="image/png")).upload_id
    path = upload_object("alice", upload_id)
    stack.world.blobs.write("up", path, png(), "image/png")
    read = stack.world.blobs.read
    fired: list[bool] = []

    def reading(bucket: str, name: str, generation: str | None = None) -> bytes:
        if name == path and not fired:
            fired.append(True)
            during(upload_id)
        data: bytes = read(bucket, name, generation)
        return data

    mp.setattr(stack.world.blobs, "read", reading)
    assert stack.deliver(path).status_code == 200
    assert fired
    return upload_id


@scenario("upload_processing")
def _upload_processing(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    inner: list[TestResponse] = []
    _while_ingesting(stack, mp, lambda upload_id: inner.append(stack.generate(upload_id)))
    return seen(inner[0])


@scenario("upload_in_progress")
def _upload_in_progress(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    # A redelivery while the first delivery works: retried by the platform (a 500 to
    # Eventarc, no JSON body), with the code as the ingest line's reason.
    statuses: list[int] = []
    with Records("pixme.main") as lines:
        _while_ingesting(
            stack,
            mp,
            lambda upload_id: statuses.append(stack.deliver(upload_object("alice", upload_id)).status_code),
        )
    [retry] = [r for r in lines.ingest_lines() if r.outcome == "retry"]  # type: ignore[attr-defined]
    return statuses[0], str(retry.reason)  # type: ignore[attr-defined]


@scenario("idempotency_key_reused")
def _key_reused(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    upload_id = stack.upload()
    key = {"Idempotency-Key": "retry-key-001"}
    assert stack.generate(upload_id, headers=key).status_code == 201
    return seen(stack.generate(upload_id, headers=key, prompt="another body"))


def _during_model_call(
    stack: Stack, mp: pytest.MonkeyPatch, inner: Callable[[], TestResponse]
) -> list[TestResponse]:
    """Arrange for `inner` (a second request) to run while the next model call is under way;
    its answer lands in the returned list."""
    answers: list[TestResponse] = []
    model = stack.world.model
    real = model.generate

    def generate(*args: Any) -> Any:
        if not answers:
            answers.append(inner())
        return real(*args)

    mp.setattr(model, "generate", generate)
    return answers


@scenario("request_in_progress")
def _in_progress(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    upload_id = stack.upload()
    key = {"Idempotency-Key": "retry-key-002"}
    answers = _during_model_call(stack, mp, lambda: stack.generate(upload_id, headers=key))
    assert stack.generate(upload_id, headers=key).status_code == 201
    return seen(answers[0])


@scenario("too_many_in_flight")
def _in_flight(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    stack = restack(mp, user_max_in_flight=1)
    upload_id = stack.upload()
    answers = _during_model_call(stack, mp, lambda: stack.generate(upload_id))
    assert stack.generate(upload_id).status_code == 201
    return seen(answers[0])


@scenario("model_not_allowed")
def _model_not_allowed(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    aliases = {"pro": ModelAlias("pro", "gemini-3-pro-image", 4, ("plan", "pro"))}
    stack = restack(mp, models={"pro": "gemini-3-pro-image"}, aliases=aliases)
    assert (
        stack.generate(stack.upload("pro"), token="pro", model="pro").status_code == 201
    )  # the claim admits
    return seen(stack.generate(stack.upload(), model="pro"))


@scenario("quota_exceeded")
def _quota(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    stack = restack(mp, daily_generations=1)
    upload_id = stack.upload()
    assert stack.generate(upload_id).status_code == 201
    resp = stack.generate(upload_id)
    assert resp.headers["RateLimit-Remaining"] == "0" and int(resp.headers["Retry-After"]) > 0
    return seen(resp)


@scenario("budget_exhausted")
def _budget(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    stack = restack(mp, daily_budget=1)
    upload_id = stack.upload()
    assert stack.generate(upload_id).status_code == 201
    return seen(stack.generate(stack.upload("bob"), token="bob"))  # project-wide: bob is refused too


@scenario("upload_quota_exceeded")
def _upload_quota(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    stack = restack(mp, daily_uploads=1)
    stack.upload()
    return seen(stack.call("uploads", "POST", body={"content_type": "image/png"}))


@scenario("too_many_pending_uploads")
def _pending(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    stack = restack(mp, max_pending_uploads=1)
    assert stack.call("uploads", "POST", body={"content_type": "image/png"}).status_code == 201
    return seen(stack.call("uploads", "POST", body={"content_type": "image/png"}))


# --- stores failing as their adapters do ---------------------------------------------------------


@scenario("storage_unavailable")
def _storage_down(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    def signed_url(*args: object, **kwargs: object) -> str:
        with gcs_adapter._transient_as_unavailable():
            raise gexc.ServiceUnavailable("storage is down")  # type: ignore[no-untyped-call]
        raise AssertionError("unreachable")

    mp.setattr(stack.world.blobs, "signed_url", signed_url)
    return seen(stack.call("uploads", "POST", body={"content_type": "image/png"}))


@scenario("database_unavailable")
def _database_down(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    def get(*args: object) -> None:
        with firestore_adapter._transient_as_unavailable():
            raise gexc.DeadlineExceeded("firestore is slow")  # type: ignore[no-untyped-call]

    mp.setattr(stack.world.uploads, "get", get)
    return seen(stack.call("uploads", path="/u_1"))


@scenario("database_contention")
def _contention(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    # What FirestoreSessions.append raises once every optimistic retry lost its race
    # (the retry loop itself: test_store_retries.py; against the emulator: the e2e suite).
    session_id = _session(stack)

    def append(*args: object, **kwargs: object) -> None:
        raise Unavailable("database_contention", "Too many concurrent edits; retry.")

    mp.setattr(stack.world.sessions, "append", append)
    resp = stack.call("edit", "POST", body={"session_id": session_id, "instruction": "a hat"})
    assert resp.headers["Retry-After"] == "5"
    return seen(resp)


# --- the real Gemini adapter against a loopback Gemini -------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _candidate(parts: list[dict[str, Any]], finish: str = "STOP") -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}]}


def _api_error(status: int, name: str, message: str = "refused") -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": status, "message": message, "status": name}}


IMAGE = {"inlineData": {"mimeType": "image/png", "data": _b64(png())}}
GEMINI_ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "prompt_blocked": (200, {"promptFeedback": {"blockReason": "SAFETY"}}),
    "image_safety": (200, _candidate([], "IMAGE_SAFETY")),
    "image_recitation": (200, _candidate([], "IMAGE_RECITATION")),
    "no_image": (200, {"candidates": []}),
    "text_only": (200, _candidate([{"text": "Could you send a clearer photo?"}])),
    "missing_thought_signature": (200, _candidate([IMAGE])),
    "model_account_limited": (200, _candidate([], "PUP_LIMITED_DISABLED")),
    "model_rejected_history": _api_error(
        400, "INVALID_ARGUMENT", "Image part is missing a thought_signature"
    ),
    "model_unavailable_here": _api_error(400, "FAILED_PRECONDITION", "not available in your region"),
    "model_invalid_argument": _api_error(400, "INVALID_ARGUMENT"),
    "model_access_denied": _api_error(403, "PERMISSION_DENIED"),
    "model_not_found": _api_error(404, "NOT_FOUND"),
    "model_error": _api_error(409, "ABORTED"),
    "model_rate_limited": _api_error(429, "RESOURCE_EXHAUSTED"),
    "model_unavailable": _api_error(503, "UNAVAILABLE"),
}


class GeminiStub(ThreadingHTTPServer):
    """Answers every generateContent with one canned reply; `delay_s` holds it back."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _GeminiHandler)
        self.answer: tuple[int, dict[str, Any]] = (200, {})
        self.delay = threading.Event()
        self.calls = 0


class _GeminiHandler(BaseHTTPRequestHandler):
    server: GeminiStub

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.calls += 1
        if self.server.delay.is_set():
            threading.Event().wait(1)  # past the client's 200 ms timeout
        status, body = self.server.answer
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture(scope="module")
def gemini() -> Iterator[GeminiStub]:
    server = GeminiStub()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _real_model(stack: Stack, base_url: str, timeout_ms: int | None = None) -> None:
    """The Gemini adapter with the SDK's own client: built by the adapter's
    client_for, or, for a timeout shorter than its whole seconds, directly."""
    if timeout_ms is None:
        sdk = client_for(settings(api_key="test-key", gemini_base_url=base_url), 5)
    else:
        sdk = genai.Client(
            api_key="test-key", http_options=types.HttpOptions(base_url=base_url, timeout=timeout_ms)
        )

    def no_wait(seconds: float) -> None:
        pass

    stack.world.avatars.model = GeminiModel(5, 10, client=sdk, sleep=no_wait)


def _via_gemini(code: str) -> Scenario:
    def run(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
        gemini.answer = GEMINI_ANSWERS[code]
        _real_model(stack, f"http://127.0.0.1:{gemini.server_address[1]}")
        return _generate(stack, upload_id=stack.upload())

    return run


for _code in GEMINI_ANSWERS:
    SCENARIOS[_code] = _via_gemini(_code)


@scenario("model_unreachable")
def _unreachable(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    _real_model(stack, f"http://127.0.0.1:{closed_port()}")
    return _generate(stack, upload_id=stack.upload())


@scenario("model_timeout")
def _timeout(stack: Stack, mp: pytest.MonkeyPatch, gemini: GeminiStub) -> Observed:
    gemini.answer = GEMINI_ANSWERS["no_image"]
    gemini.delay.set()
    try:
        _real_model(stack, f"http://127.0.0.1:{gemini.server_address[1]}", timeout_ms=200)
        return _generate(stack, upload_id=stack.upload())
    finally:
        gemini.delay.clear()


# --- the checks ----------------------------------------------------------------------------------


def _expected_status(code: str) -> set[int]:
    return {cls.status for cls in raised_codes()[code]}


@pytest.mark.parametrize("code", sorted(SCENARIOS))
def test_each_code_is_reached_through_an_entry_point(
    code: str, monkeypatch: pytest.MonkeyPatch, gemini: GeminiStub
) -> None:
    stack = Stack()
    stack.install(monkeypatch)
    try:
        status, observed = SCENARIOS[code](stack, monkeypatch, gemini)
    finally:
        REAL_SETTINGS.cache_clear()
    assert observed == code
    # The trigger's codes reach the platform as a 500 (redeliver); the rest as their class's status.
    assert status in ({500} if code == "upload_in_progress" else _expected_status(code)), status


def test_every_raised_code_has_a_scenario() -> None:
    # Ingest rejections are not answers but an upload's `reason` (test_ingest.py,
    # test_images.py); the README test checks each has its row.
    http = {code for code, classes in raised_codes().items() if REASON_CLASS not in classes}
    assert sorted(http - set(SCENARIOS)) == [], "codes no entry-point test reaches"
    assert sorted(set(SCENARIOS) - http) == [], "scenarios for codes nothing raises"


def test_the_gemini_scenarios_reach_the_stub(gemini: GeminiStub, monkeypatch: pytest.MonkeyPatch) -> None:
    # Proof the adapter really spoke HTTP: a success through the same stub is a 201.
    stack = Stack()
    stack.install(monkeypatch)
    before = gemini.calls
    gemini.answer = (200, _candidate([{**IMAGE, "thoughtSignature": _b64(b"sig")}]))
    _real_model(stack, f"http://127.0.0.1:{gemini.server_address[1]}")
    resp = stack.generate(stack.upload())
    assert resp.status_code == 201, resp.data
    assert gemini.calls == before + 1
