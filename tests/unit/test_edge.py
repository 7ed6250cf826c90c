"""The HTTP edge under attack: hostile bodies, ids, sizes and streams.

Every request goes through the real entry points in process
(`functions_framework.create_app(...).test_client()`), with a fake token
verifier and tripwires where the services would start: each case here must be
refused by validation, with a 4xx and a stable code, and never reach storage,
the database or the model. No response may be a 5xx or carry a trace.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, NoReturn

import functions_framework
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from local.issuer import IssuerServer, mint_token
from pixme import web, wiring
from pixme.api import MAX_CONTEXT, EditRequest, GenerateRequest, valid_id
from pixme.config import ENV_VARS
from pixme.errors import InvalidRequest, Unauthenticated
from pixme.identity import Caller

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "functions" / "main.py"
ENV = {"GOOGLE_CLOUD_PROJECT": "p", "PIXME_UPLOADS_BUCKET": "u", "PIXME_ASSETS_BUCKET": "a"}
GOOD = {"Authorization": "Bearer good"}
POST_TARGETS = ("generate", "edit", "uploads")
MB = 1024 * 1024
# The services main.py calls, and the Google clients behind them.
SERVICES = ("avatars", "library", "upload_service")
CLIENTS = ("blobs", "_db", "model")

# A body that passes validation up to one field, per POST target.
VALID = {
    "generate": {"upload_id": "u1", "style": "comics"},
    "edit": {"session_id": "s1", "instruction": "add glasses"},
    "uploads": {"content_type": "image/jpeg"},
}
# A body each POST target refuses before any I/O, and how.
REFUSED = {
    "generate": ({"upload_id": "u1", "style": "vaporwave"}, "unknown_style"),
    "edit": ({"session_id": "s1"}, "missing_field"),
    "uploads": ({"content_type": "text/html"}, "invalid_field"),
}


class FakeVerifier:
    """Our TokenVerifier port: "good" is user u1, anything else is refused."""

    def verify(self, token: str) -> Caller:
        if token == "good":
            return Caller(uid="u1")
        raise Unauthenticated("invalid_token", "The ID token is not valid.")


class Tripwire:
    """Stands in for a service: main.py may build it before parsing, but any use
    means a request got past validation."""

    def __getattr__(self, name: str) -> Callable[..., NoReturn]:
        def used(*args: object, **kwargs: object) -> NoReturn:
            raise AssertionError(f"the request got past validation, to {name}()")

        return used


def _no_client() -> NoReturn:
    raise AssertionError("a Google client was built")


@pytest.fixture(autouse=True)
def edge(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV_VARS:  # the developer's shell must not change what is tested
        monkeypatch.delenv(name, raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    wiring.settings.cache_clear()
    monkeypatch.setattr(wiring, "verifier", FakeVerifier)
    for name in SERVICES:
        monkeypatch.setattr(wiring, name, Tripwire)
    for name in CLIENTS:
        monkeypatch.setattr(wiring, name, _no_client)
    yield
    wiring.settings.cache_clear()


_apps: dict[str, Flask] = {}


def client(target: str) -> FlaskClient:
    # create_app executes main.py; once per target is enough (nothing there reads the env).
    if target not in _apps:
        _apps[target] = functions_framework.create_app(target, source=str(SOURCE))  # type: ignore[no-untyped-call]
    return _apps[target].test_client()


def checked(resp: TestResponse) -> TestResponse:
    """The invariants of every answer: no 5xx, no trace, the error shape."""
    assert resp.status_code < 500, resp.data[:300]
    assert b"Traceback" not in resp.data
    if resp.status_code >= 400 and resp.mimetype == "application/json":
        error = json.loads(resp.data)["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return resp


def post(target: str, data: bytes | str, headers: dict[str, str] | None = None, **kw: Any) -> TestResponse:
    return checked(client(target).post("/", data=data, headers={**GOOD, **(headers or {})}, **kw))


def error_of(resp: TestResponse) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(resp.data)["error"]
    return error


def refused(resp: TestResponse, code: str, field: str | None = None, status: int = 400) -> None:
    assert resp.status_code == status, resp.data[:300]
    assert resp.mimetype == "application/json"
    error = error_of(resp)
    assert error["code"] == code, error
    if field is not None:
        assert error.get("field") == field, error


# --- hostile JSON ------------------------------------------------------------------------------

DEEP = 10_000
HOSTILE_JSON = {
    "nested arrays": "[" * DEEP + "]" * DEEP,
    "nested objects": '{"a":' * DEEP + "1" + "}" * DEEP,
    "nested in a field": '{"style": ' + "[" * DEEP + "]" * DEEP + "}",
    "nested objects in a field": '{"upload_id": ' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
    "5000-digit integer": '{"style": "comics", "n": ' + "9" * 5000 + "}",
    "5000-digit negative integer": '{"n": -' + "9" * 5000 + "}",
    "bare 5000-digit integer": "9" * 5000,
    "65-digit integer": '{"n": ' + "1" * 65 + "}",
    "NaN": '{"style": "comics", "upload_id": NaN}',
    "Infinity": '{"n": Infinity}',
    "-Infinity": '{"n": -Infinity}',
    "float overflowing to inf": '{"n": 1e400}',
    "long float overflowing to inf": '{"n": 1' + "0" * 5000 + ".5}",
    "array": "[]",
    "string": '"comics"',
    "number": "1",
    "null": "null",
    "true": "true",
    "truncated": '{"style": "comics"',
    "trailing garbage": '{"style": "comics"} x',
    "only whitespace": "   ",
    "single quotes": "{'style': 'comics'}",
}


@pytest.mark.parametrize("target", POST_TARGETS)
@pytest.mark.parametrize("body", HOSTILE_JSON.values(), ids=HOSTILE_JSON.keys())
def test_hostile_json_is_invalid_json(target: str, body: str) -> None:
    refused(post(target, body), "invalid_json")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"style": "\xff"}',
        b'\xef\xbb\xbf{"style": "comics"}',  # a BOM, which RFC 8259 forbids senders to add
        '{"style": "comics"}'.encode("utf-16"),
        b'{"style": "comics\x00"',
    ],
    ids=["invalid utf-8", "utf-8 bom", "utf-16", "nul in a truncated body"],
)
@pytest.mark.parametrize("target", POST_TARGETS)
def test_bodies_that_are_not_utf8_json_are_invalid_json(target: str, raw: bytes) -> None:
    refused(post(target, raw), "invalid_json")


def test_small_numbers_in_unknown_fields_are_still_json() -> None:
    body, code = REFUSED["generate"]
    refused(post("generate", json.dumps({**body, "n": 12, "f": 1.5e300, "neg": -3})), code)


@pytest.mark.parametrize("target", POST_TARGETS)
def test_an_empty_body_names_the_missing_field(target: str) -> None:
    missing = {"generate": "style", "edit": "session_id", "uploads": "content_type"}[target]
    refused(post(target, b""), "missing_field", missing)


@pytest.mark.parametrize("target", POST_TARGETS)
def test_a_json_body_with_another_content_type_is_still_read(target: str) -> None:
    # Mobile HTTP stacks send text/plain or nothing; Bearer tokens make CSRF moot.
    body, code = REFUSED[target]
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "image/png"):
        refused(post(target, json.dumps(body), {"Content-Type": content_type}), code)


# --- wrong types, ids and characters in fields -------------------------------------------------

WRONG_TYPES = [5, 1.5, True, [], ["comics"], {}, {"a": 1}]
FIELDS = {
    "generate": ["style", "upload_id", "model", "prompt", "context", "caption", "aspect_ratio", "image_size"],
    "edit": ["session_id", "instruction", "from_turn", "if_head"],
    "uploads": ["content_type"],
}
TYPE_CASES = [(t, f, v) for t, fields in FIELDS.items() for f in fields for v in WRONG_TYPES]


@pytest.mark.parametrize(("target", "field", "value"), TYPE_CASES)
def test_a_value_of_the_wrong_type_is_invalid_field(target: str, field: str, value: object) -> None:
    refused(post(target, json.dumps({**VALID[target], field: value})), "invalid_field", field)


BAD_IDS = {
    "dot": ".",
    "dotdot": "..",
    "traversal": "../x",
    "slash": "a/b",
    "reserved": "__x__",
    "reserved-empty": "____",
    "65 chars": "a" * 65,
    "1501 bytes": "a" * 1501,
    "unicode": "séance",
    "emoji": "s\U0001f600",
    "fullwidth": "ｓ1",
    "nul": "s\x001",
    "space inside": "s 1",
    "percent": "s%2F1",
}
ID_FIELDS = {"generate": ["upload_id"], "edit": ["session_id", "from_turn", "if_head"]}
ID_CASES = [(t, f, v) for t, fields in ID_FIELDS.items() for f in fields for v in BAD_IDS.values()]


@pytest.mark.parametrize(("target", "field", "value"), ID_CASES)
def test_a_malformed_id_in_a_body_is_invalid_field(target: str, field: str, value: str) -> None:
    # A body id is a string field first: one over 64 characters is too long before it is malformed.
    code = "field_too_long" if len(value) > 64 else "invalid_field"
    refused(post(target, json.dumps({**VALID[target], field: value})), code, field)


@pytest.mark.parametrize(
    "references",
    ["s1", {"s1": 1}, [5], [["s1"]], [None], ["s1\n"], ["s1", "s2", "s3"], *([v] for v in BAD_IDS.values())],
)
def test_references_must_be_a_short_list_of_session_ids(references: object) -> None:
    body = {**VALID["generate"], "references": references}
    refused(post("generate", json.dumps(body)), "invalid_field", "references")


CONTROL = {
    "nul": "a\x00b",
    "bell": "a\x07b",
    "escape sequence": "\x1b[31mred",
    "vertical tab": "a\x0bb",
    "delete": "a\x7fb",
    "c1 control": "a\x85b",
}
TEXT_FIELDS = {"generate": ["prompt", "context", "caption", "style"], "edit": ["instruction"]}
TEXT_CASES = [(t, f, v) for t, fields in TEXT_FIELDS.items() for f in fields for v in CONTROL.values()]


@pytest.mark.parametrize(("target", "field", "value"), TEXT_CASES)
def test_control_characters_in_text_are_invalid_field(target: str, field: str, value: str) -> None:
    refused(post(target, json.dumps({**VALID[target], field: value})), "invalid_field", field)


@pytest.mark.parametrize("field", ["prompt", "caption"])
def test_a_lone_surrogate_is_invalid_field(field: str) -> None:
    # Valid JSON, but a str that cannot be encoded as UTF-8 (for Firestore, the model, the logs).
    raw = json.dumps({**VALID["generate"], field: "a\ud800b"})  # sent as the escape \ud800
    refused(post("generate", raw), "invalid_field", field)


def test_text_keeps_newlines_tabs_and_any_script() -> None:
    text = "line one\r\nline two\twith a tab,日本語, emoji \U0001f3a8, zero-width joiner \u200d"
    req = GenerateRequest.parse({**VALID["generate"], "prompt": text, "context": text}, wiring.settings())
    assert req.prompt == text.strip() and req.context == text.strip()
    edit = EditRequest.parse({**VALID["edit"], "instruction": text}, wiring.settings())
    assert edit.instruction == text.strip()


def test_a_paired_surrogate_escape_is_one_character() -> None:
    raw = b'{"upload_id": "u1", "style": "comics", "caption": "\\ud83c\\udfa8"}'
    req = GenerateRequest.parse(web.parse_json(raw), wiring.settings())
    assert req.caption == "\U0001f3a8"


def test_overlong_text_is_field_too_long() -> None:
    body = {**VALID["generate"], "context": "x" * (MAX_CONTEXT + 1)}
    refused(post("generate", json.dumps(body)), "field_too_long", "context")


@pytest.mark.parametrize("value", ["u1", "U-1_x", "a" * 64, "_x_", "__x", "x__", "_"])
def test_valid_id_accepts_what_we_issue(value: str) -> None:
    assert valid_id(value, "upload_id") == value


@pytest.mark.parametrize("value", [*BAD_IDS.values(), "", "u1\n", "\nu1", " u1", 5, None, ["u1"]])
def test_valid_id_refuses_the_rest_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        valid_id(value, "session_id")
    assert caught.value.code == "invalid_field" and caught.value.details["field"] == "session_id"


# --- ids in paths (these need main.py to call valid_id on path segments) -------------------------

PATH_IDS = {
    "dot": "/.",
    "dotdot": "/..",
    "encoded dotdot": "/%2E%2E",
    "reserved": "/__x__",
    "reserved encoded": "/%5F%5Fx%5F%5F",
    "1501 bytes": "/" + "a" * 1501,
    "65 chars": "/" + "a" * 65,
    "unicode": "/s%C3%A9ance",
    "invalid utf-8": "/s%FF",
    "nul": "/s%001",
    "space": "/s%201",
    "tab": "/s%091",
}
PATH_ROUTES = [
    ("sessions", "GET", "", "session_id"),
    ("sessions", "GET", "/uploads", "upload_id"),
    ("uploads", "GET", "", "upload_id"),
    ("uploads", "DELETE", "", "upload_id"),
]
PATH_CASES = [
    *(
        pytest.param(target, method, prefix + path, field, id=f"{target}-{method}{prefix}-{name}")
        for target, method, prefix, field in PATH_ROUTES
        for name, path in PATH_IDS.items()
    ),
    # werkzeug decodes %2F before routing: this is the uploads alias with a reserved id.
    pytest.param("sessions", "GET", "/uploads%2F__x__", "upload_id", id="sessions-GET-encoded-slash"),
]


@pytest.mark.parametrize(("target", "method", "path", "field"), PATH_CASES)
def test_a_malformed_id_in_a_path_is_invalid_field(target: str, method: str, path: str, field: str) -> None:
    resp = checked(client(target).open(path, method=method, headers=GOOD))
    refused(resp, "invalid_field", field)


@pytest.mark.parametrize(
    ("target", "method", "path"),
    [
        ("sessions", "GET", "/s1%2Fx"),
        ("sessions", "GET", "/a/b/c"),
        ("sessions", "GET", "/styles%2Fx"),
        ("uploads", "GET", "/u1%2Fx"),
        ("uploads", "DELETE", "/u1%2F..%2F..%2Fx"),
    ],
)
def test_an_encoded_slash_is_a_separator_not_part_of_an_id(target: str, method: str, path: str) -> None:
    # werkzeug decodes %2F before routing: the segments never reach a service as one id.
    refused(checked(client(target).open(path, method=method, headers=GOOD)), "route_not_found", status=404)


@pytest.mark.parametrize("target", ["sessions", "uploads"])
def test_a_newline_in_a_path_matches_no_route(target: str) -> None:
    # werkzeug's path converter stops at a newline: the framework's router answers
    # 404 itself, through our handler, in the API's JSON like every other error.
    resp = checked(client(target).get("/s1%0A", headers=GOOD))
    refused(resp, "route_not_found", status=404)


@pytest.mark.parametrize("target", ["sessions", "uploads"])
def test_a_path_id_without_a_token_is_401_first(target: str) -> None:
    refused(checked(client(target).get("/..")), "missing_token", status=401)


def test_styles_need_no_token_and_no_io() -> None:
    resp = checked(client("sessions").get("/styles"))
    assert resp.status_code == 200 and json.loads(resp.data)["styles"]


# --- body size, with and without Content-Length ------------------------------------------------


class Source(io.RawIOBase):
    """A request body produced as it is read, as a socket would give it: no length
    to look at first, and a count of what the app pulled from it."""

    def __init__(self, size: int, fail_after: int | None = None) -> None:
        self.size, self.fail_after, self.sent = size, fail_after, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise OSError("malformed chunk")
        n = min(len(buffer), self.size - self.sent)
        buffer[:n] = b" " * n
        self.sent += n
        return n


def chunked(target: str, source: io.IOBase, headers: dict[str, str] | None = None) -> TestResponse:
    """POST `source` as a server hands over a chunked body (`wsgi.input_terminated`)."""
    environ = {"wsgi.input": source, "wsgi.input_terminated": True}
    h = {"Transfer-Encoding": "chunked", **GOOD, **(headers or {})}
    return checked(client(target).post("/", headers=h, environ_overrides=environ))


@pytest.mark.parametrize("target", POST_TARGETS)
def test_a_declared_length_over_the_limit_is_refused(target: str) -> None:
    refused(post(target, b" " * (web.MAX_BODY + 1)), "body_too_large")


@pytest.mark.parametrize("target", POST_TARGETS)
def test_a_body_of_exactly_the_limit_is_parsed(target: str) -> None:
    body, code = REFUSED[target]
    raw = json.dumps(body).encode()
    refused(post(target, raw.ljust(web.MAX_BODY)), code)
    refused(chunked(target, io.BytesIO(raw.ljust(web.MAX_BODY))), code)


@pytest.mark.parametrize("target", POST_TARGETS)
def test_a_chunked_body_one_byte_over_the_limit_is_refused(target: str) -> None:
    refused(chunked(target, Source(web.MAX_BODY + 1)), "body_too_large")


@pytest.mark.parametrize("target", POST_TARGETS)
def test_a_50_mb_chunked_body_is_refused_in_bounded_memory(target: str) -> None:
    source = Source(50 * MB)
    tracemalloc.start()
    try:
        resp = chunked(target, source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    refused(resp, "body_too_large")
    assert source.sent == source.size  # drained, so the client reads its answer, not a reset
    assert peak < 4 * MB, peak


def _bounded_drain(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(web, "DRAIN_LIMIT", MB)
    return web.MAX_BODY + 1 + MB + web.CHUNK


def test_past_the_drain_limit_the_rest_is_never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not by us, and not by functions-framework's after-request read either.
    bound = _bounded_drain(monkeypatch)
    source = Source(100 * MB)
    refused(chunked("generate", source), "body_too_large")
    assert source.sent <= bound


@pytest.mark.parametrize("target", [*POST_TARGETS, "sessions"])
def test_a_huge_body_refused_before_it_is_read_is_not_buffered(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A missing token is refused before the body is looked at; the body must
    # still not be read whole by anyone.
    bound = _bounded_drain(monkeypatch)
    source = Source(100 * MB)
    environ = {"wsgi.input": source, "wsgi.input_terminated": True}
    method = "GET" if target == "sessions" else "POST"
    resp = checked(client(target).open("/", method=method, environ_overrides=environ))
    refused(resp, "missing_token", status=401)
    assert source.sent <= bound


def test_a_declared_length_with_a_short_body_is_refused_without_waiting() -> None:
    # The client announced more than it sent (or went away): no 5xx, no hang.
    body, _ = REFUSED["generate"]
    raw = json.dumps(body).encode()
    environ = {"wsgi.input": io.BytesIO(raw), "CONTENT_LENGTH": str(len(raw) + 100)}
    resp = checked(client("generate").post("/", headers=GOOD, environ_overrides=environ))
    refused(resp, "invalid_json")
    environ = {"wsgi.input": io.BytesIO(raw), "CONTENT_LENGTH": str(200 * MB)}
    resp = checked(client("generate").post("/", headers=GOOD, environ_overrides=environ))
    refused(resp, "body_too_large")


def test_a_body_that_breaks_while_read_is_invalid_json() -> None:
    refused(chunked("generate", Source(50 * MB, fail_after=1000)), "invalid_json")


def test_a_body_that_breaks_after_the_answer_is_harmless() -> None:
    refused(chunked("generate", Source(50 * MB, fail_after=web.MAX_BODY + 10)), "body_too_large")


# --- the same against a real functions-framework process ---------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _worker_pid(master: int) -> int:
    """gunicorn's worker: the one child of the functions-framework process."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("the worker did not start")


def _send(port: int, body: Callable[[], Iterator[bytes]] | bytes, token: str | None) -> tuple[int, str]:
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        if isinstance(body, bytes):
            conn.request("POST", "/", body=body, headers=headers)
        else:
            conn.request("POST", "/", body=body(), headers=headers, encode_chunked=True)
        resp = conn.getresponse()
        text = resp.read().decode()
        assert resp.status < 500 and "Traceback" not in text, text
        # The connection is still usable: the refused body was consumed, not left in the way.
        conn.request("POST", "/", body=b"{}", headers=headers)
        conn.getresponse().read()
        return resp.status, json.loads(text)["error"]["code"]
    finally:
        conn.close()


def _spaces(mb: int) -> Callable[[], Iterator[bytes]]:
    piece = b" " * (64 * 1024)
    return lambda: (piece for _ in range(mb * 16))


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"functions-framework did not start:\n{log.read_text()}") from None
            time.sleep(0.1)


@pytest.fixture
def live_generate(tmp_path: Path) -> Iterator[tuple[int, int, str]]:
    """A functions-framework process serving `generate` (gunicorn, as deployed), whose
    tokens come from a local issuer: (port, worker pid, a valid token)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to measure the worker's memory")
    issuer = IssuerServer("127.0.0.1", 0, "p")
    threading.Thread(target=issuer.serve_forever, daemon=True).start()
    issuer_url = f"http://127.0.0.1:{issuer.server_address[1]}"
    port, log = _free_port(), tmp_path / "functions-framework.log"
    env = {**os.environ, **ENV, "PIXME_AUTH_CERTS_URL": f"{issuer_url}/certs", "WORKERS": "1", "THREADS": "2"}
    ff = Path(sys.executable).with_name("functions-framework")
    argv = [str(ff), "--target=generate", f"--source={SOURCE}", f"--port={port}", "--host=127.0.0.1"]
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        _wait_for_port(proc, port, log)
        yield port, _worker_pid(proc.pid), mint_token(issuer_url, "u1")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        issuer.shutdown()
        issuer.server_close()


def test_a_real_worker_refuses_50_mb_without_growing(live_generate: tuple[int, int, str]) -> None:
    port, worker, token = live_generate
    # Warm up every path once (token verification, JSON, a drained body) before measuring.
    assert _send(port, b'{"upload_id": "u1", "style": "vaporwave"}', token) == (400, "unknown_style")
    assert _send(port, _spaces(2), token) == (400, "body_too_large")
    assert _send(port, _spaces(2), None) == (401, "missing_token")
    before = _peak_rss_kb(worker)
    started = time.monotonic()
    assert _send(port, _spaces(50), token) == (400, "body_too_large")
    assert _send(port, _spaces(50), None) == (401, "missing_token")
    assert _send(port, b" " * (50 * MB), token) == (400, "body_too_large")
    assert _send(port, b" " * (50 * MB), "bad") == (401, "invalid_token")
    grown_kb = _peak_rss_kb(worker) - before
    assert grown_kb < 8 * 1024, f"the worker's peak memory grew by {grown_kb} kB"
    assert time.monotonic() - started < 30
