"""What reaches the model, recorded on the wire (a counting proxy in front of
the offline renderer, the real SDK and adapter — bench/turns.py's machinery):
every edit of a 16:9, 2K session carries its image config and pinned brief,
and on Vertex AI the selfie travels as a gs:// reference while the model's own
image comes back inline with its thought signature."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from local.stack import Stack
from pixme.prompts import ImageRef

ROOT = Path(__file__).resolve().parents[2]


def bench_turns() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_turns", ROOT / "bench" / "turns.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def wire() -> Iterator[tuple[ModuleType, Stack, str]]:
    turns = bench_turns()
    logs = ROOT / "out" / "stack" / "test-wire"
    with Stack(components=["storage", "renderer"], log_dir=logs, quiet=True) as stack:
        turns.Counting.target = str(stack.renderer_url)
        server = ThreadingHTTPServer(("127.0.0.1", 0), turns.Counting)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield turns, stack, f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


SELFIE = ImageRef((ROOT / "assets" / "selfie-astronaut.png").read_bytes(), "image/png")


def test_every_request_of_a_wide_session_carries_its_format_and_pinned_brief(
    wire: tuple[ModuleType, Stack, str],
) -> None:
    turns, _, proxy = wire
    turns.BODIES.clear()
    assert turns.wire_check(proxy, SELFIE) == []


def test_on_vertex_the_selfie_goes_by_reference_and_the_model_image_inline_with_its_signature(
    wire: tuple[ModuleType, Stack, str],
) -> None:
    turns, stack, proxy = wire
    path = "selfies/wire/selfie.png"
    stack.storage_client().bucket(stack.assets_bucket).blob(path).upload_from_string(SELFIE.data)
    uri = f"gs://{stack.assets_bucket}/{path}"
    turns.BODIES.clear()
    sent = turns.ours(proxy, ImageRef(b"", "image/png", uri=uri), turns.vertex_client(proxy, stack.project))
    assert len(sent) == 21
    for body in turns.BODIES[1:]:
        parts: list[dict[str, Any]] = [p for c in body["contents"] for p in c["parts"]]
        files = [p for p in parts if "fileData" in p or "file_data" in p]
        inline = [p for p in parts if "inlineData" in p or "inline_data" in p]
        refs = [p.get("fileData") or p["file_data"] for p in files]
        assert [r.get("fileUri") or r.get("file_uri") for r in refs] == [uri]
        assert len(inline) == 1 and (inline[0].get("thoughtSignature") or inline[0].get("thought_signature"))
    # The selfie no longer travels: an edit is about one image smaller.
    assert sent[2]["bytes"] < 0.75 * turns.ours(proxy, SELFIE)[2]["bytes"]
