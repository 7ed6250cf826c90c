"""The playground page in a real browser, against the stack's real functions.

Headless Debian Chromium (/usr/bin/chromium, which `make test` installs with
apt; no test tool downloads a browser), driven by Playwright for Python, goes
through sign-in → upload through the signed URL → a style → two edits → undo →
an edit from there (a branch) → download → delete everything. Screenshots of
each step go to out/playground/<model mode>/. The CORS answers the page relies
on, and their absence for any other origin, are checked over plain HTTP.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from local.app import AppClient
from local.playground.server import PlaygroundServer
from local.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
SELFIE = ROOT / "assets" / "selfie-astronaut.png"
OUT = ROOT / "out" / "playground"
CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that would call Google hosts (the network is closed):
# no QUIC, first-run, background, component-update or sync traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-sandbox",  # Chromium's sandbox cannot start as root
]
STEP_TIMEOUT_MS = 60_000
OTHER_ORIGIN = "http://evil.example"


class Browser:
    """One page in a fresh profile, collecting the page's errors."""

    def __init__(self, page: Any, shots: Path) -> None:
        self.page, self.shots = page, shots
        self.errors: list[str] = []
        page.on("pageerror", lambda err: self.errors.append(f"page error: {err}"))
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        # No step of the flow expects a refusal: each one is a defect to name.
        page.on("response", lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.set_default_timeout(STEP_TIMEOUT_MS)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector))

    def wait_text(self, selector: str, pattern: str) -> str:
        """Wait until the element's text matches `pattern`; fail with what it said."""
        self.page.wait_for_function(
            "([sel, pat]) => new RegExp(pat).test(document.querySelector(sel)?.textContent || '')",
            arg=[selector, pattern],
        )
        return self.text(selector)

    def loaded(self, selector: str) -> bool:
        """The image decoded (a broken or empty src has no natural width)."""
        return bool(self.page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))

    def turns(self) -> list[str]:
        return [
            str(t)
            for t in self.page.eval_on_selector_all(".turn .what", "els => els.map(e => e.textContent)")
        ]


@pytest.fixture
def browser(stack: Stack, tmp_path: Path) -> Iterator[Browser]:
    # A missing browser is a failed setup, not a reason to skip the test.
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get)"
    from playwright.sync_api import sync_playwright

    shots = OUT / stack.model_mode
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # empty: a new user-data-dir each run
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": 1200, "height": 900},
        )
        try:
            yield Browser(context.new_page(), shots)
        finally:
            context.close()


def test_playground_flow_in_chromium(stack: Stack, browser: Browser, tmp_path: Path) -> None:
    assert stack.playground_url, "the stack did not start the playground"
    page, uid = browser.page, f"pg{uuid.uuid4().hex[:10]}"
    page.goto(stack.playground_url)
    assert page.title() == "Pix Me! playground"
    page.fill("#uid", uid)
    page.click("#signin-button")
    assert browser.wait_text("#who", uid) == f"signed in as {uid}"
    browser.wait_text("#quota", "generations")

    # Upload: the browser asks for a ticket, PUTs to the signed URL, polls ingest.
    page.set_input_files("#file", str(SELFIE))
    status = browser.wait_text("#upload-status", "Ready|Rejected|error|refused")
    assert status.startswith("Ready"), status
    page.wait_for_function("() => document.querySelector('#crop').naturalWidth > 0")
    assert browser.loaded("#normalized") and browser.loaded("#crop")
    box = page.eval_on_selector("#facebox", "el => el.getBoundingClientRect().toJSON()")
    photo = page.eval_on_selector("#normalized", "el => el.getBoundingClientRect().toJSON()")
    assert 0 < box["width"] < photo["width"] and photo["left"] <= box["left"] < photo["right"], (box, photo)
    assert "score" in browser.text("#ingest-facts")
    browser.shot("1-ingest")

    # A style and the default model.
    page.click("button.style[data-style='comics']")
    page.click("#generate")
    made = browser.wait_text("#generate-status", r"made in|error|\d{3} ")
    assert made.startswith("1 of 1 made"), made
    assert browser.loaded(".avatar img") and browser.text(".avatar .model-text").strip()
    page.wait_for_function("() => document.querySelector('#current-image').naturalWidth > 0")
    browser.shot("2-avatar")

    # Two edits, each from the turn shown.
    for n, instruction in enumerate(("add glasses", "make it black and white"), start=2):
        page.fill("#instruction", instruction)
        page.click("#edit-button")
        said = browser.wait_text("#edit-status", rf"Turn {n} in|error|\d{{3}} ")
        assert said.startswith(f"Turn {n} in"), said
    assert browser.turns() == ["Comic book (generated)", "add glasses", "make it black and white"]
    after_two = page.get_attribute("#current-image", "src")
    browser.shot("3-two-edits")

    # Undo: back to the first edit's picture, which is not the latest one.
    page.click("#undo")
    assert browser.text(".turn.current .what") == "add glasses"
    shown = page.get_attribute("#current-image", "src")
    assert shown != after_two
    assert shown == page.get_attribute(".turn.current img", "src")
    browser.shot("4-undo")

    # An edit from there is a branch: "add glasses" now has two children.
    page.fill("#instruction", "add a blue background")
    page.click("#edit-button")
    said = browser.wait_text("#edit-status", r"Turn 4 in|error|\d{3} ")
    assert said.startswith("Turn 4 in"), said
    children = page.eval_on_selector_all(
        ".turn[data-turn]",
        """buttons => buttons.filter(b => b.querySelector('.what').textContent === 'add glasses')
             .map(b => b.parentElement.querySelectorAll(':scope > ol > li').length)""",
    )
    assert children == [2], children
    browser.shot("5-branch")

    # Download the version shown: the bytes of an image, named after its turn.
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "download"
    download.value.save_as(saved)
    data = saved.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff", data[:8]
    turn_id = page.get_attribute(".turn.current", "data-turn")
    assert turn_id and turn_id in download.value.suggested_filename

    # The quota shown is the server's.
    usage = AppClient(stack.functions, stack.token(uid)).call("GET", "account", "/usage")
    quota = browser.text("#quota")
    assert quota == (
        f"{usage['generations']['remaining']} generations · {usage['edits']['remaining']} edits left today"
    )
    assert usage["edits"]["used"] == 3 and usage["generations"]["used"] == 1

    # Delete everything, then check on the server that nothing is left.
    page.click("#delete-account")
    gone = browser.wait_text("#data-status", "deleted|error")
    assert gone.startswith("All your data is deleted"), gone
    exported = AppClient(stack.functions, stack.token(uid)).call("GET", "account", "/export")
    assert exported["uploads"] == [] and exported["sessions"] == []
    assert "locked" in (page.get_attribute("#style", "class") or "")
    browser.shot("6-deleted")
    assert browser.errors == []


def test_cors_answers_only_the_playground_origin(stack: Stack) -> None:
    assert stack.playground_url
    origin = stack.playground_url
    generate = stack.functions["generate"]
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = requests.options(generate, headers={"Origin": origin, **asked}, timeout=10)
    assert ok.status_code == 204, ok.text
    assert ok.headers["Access-Control-Allow-Origin"] == origin
    assert ok.headers["Access-Control-Allow-Methods"] == "POST"
    assert "Authorization" in ok.headers["Access-Control-Allow-Headers"]
    other = requests.options(generate, headers={"Origin": OTHER_ORIGIN, **asked}, timeout=10)
    assert other.status_code == 405 and "Access-Control-Allow-Origin" not in other.headers
    # An answer (here a refusal) carries the header for the playground only.
    for who, expected in ((origin, origin), (OTHER_ORIGIN, None)):
        resp = requests.post(generate, json={}, headers={"Origin": who}, timeout=10)
        assert resp.status_code == 401
        assert resp.headers.get("Access-Control-Allow-Origin") == expected

    # The signed-URL host: a preflight for the PUT with its x-goog-* headers.
    client = AppClient(stack.functions, stack.token(f"cors{uuid.uuid4().hex[:8]}"))
    ticket = client.start_upload("image/png")
    put_asked = {
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": ",".join(h.lower() for h in ticket["headers"]),
    }
    ok = requests.options(ticket["upload_url"], headers={"Origin": origin, **put_asked}, timeout=10)
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == origin
    assert set(ok.headers["Access-Control-Allow-Headers"].split(",")) >= {"x-goog-if-generation-match"}
    other = requests.options(ticket["upload_url"], headers={"Origin": OTHER_ORIGIN, **put_asked}, timeout=10)
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers
    client.call("DELETE", "uploads", f"/{ticket['upload_id']}")


def _serve(spec: Path) -> tuple[PlaygroundServer, str]:
    server = PlaygroundServer("127.0.0.1", 0, {"functions": {}, "issuer_url": ""}, spec)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_openapi_is_served_from_the_committed_file_or_404(tmp_path: Path) -> None:
    spec = tmp_path / "openapi.json"
    server, url = _serve(spec)
    try:
        missing = requests.get(f"{url}/openapi.json", timeout=10)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "openapi_missing"
        assert str(spec) in missing.json()["error"]["message"]
        spec.write_text(json.dumps({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}}))
        found = requests.get(f"{url}/openapi.json", timeout=10)
        assert found.status_code == 200 and found.json()["openapi"] == "3.1.0"
        page = requests.get(url, timeout=10)
        assert page.status_code == 200 and 'href="/openapi.json"' in page.text
        assert re.search(r"default-src 'none'", page.headers["Content-Security-Policy"])
    finally:
        server.shutdown()
        server.server_close()


def test_stack_env_exports_the_playground_url(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from local.stack import _write_env_file

    # The file `make up` writes, here away from a running `make up`'s.
    monkeypatch.setattr(stack, "log_dir", tmp_path)
    text = _write_env_file(stack, None).read_text()
    assert f"export PLAYGROUND_URL='{stack.playground_url}'" in text
    assert (
        requests.get(f"{stack.playground_url}/config.json", timeout=10).json()["functions"]["generate"]
        == (stack.functions["generate"])
    )
